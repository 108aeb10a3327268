package validate

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"

	componentsapi "github.com/dapr/dapr/pkg/apis/components/v1alpha1"
	configurationapi "github.com/dapr/dapr/pkg/apis/configuration/v1alpha1"
)

// zipkinEndpoint is where compose's Configuration sends spans.
const zipkinEndpoint = "http://zipkin:9411/api/v2/spans"

// CheckComposeConfig proves components/compose/config.yaml is
// components/config.yaml with only Zipkin's address changed: both decode
// strictly into Dapr's Configuration type, and are deep-equal once that one
// field is set aside.
func CheckComposeConfig(root string) []error {
	var errs problems
	load := func(rel string) *configurationapi.Configuration {
		raw, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			errs.add("%v", err)
			return nil
		}
		var c configurationapi.Configuration
		if err := UnmarshalStrict(raw, &c); err != nil {
			errs.add("%s: %v", rel, err)
			return nil
		}
		return &c
	}
	local, compose := load("components/config.yaml"), load("components/compose/config.yaml")
	if local == nil || compose == nil {
		return errs
	}
	if compose.Spec.TracingSpec == nil || compose.Spec.TracingSpec.Zipkin == nil || compose.Spec.TracingSpec.Zipkin.EndpointAddresss != zipkinEndpoint {
		errs.add("components/compose/config.yaml: tracing.zipkin.endpointAddress must be %s", zipkinEndpoint)
		return errs
	}
	if local.Spec.TracingSpec == nil || local.Spec.TracingSpec.Zipkin == nil {
		errs.add("components/config.yaml: no tracing.zipkin")
		return errs
	}
	events := load("components/compose/events-config.yaml")
	if events != nil {
		// events-service's: the compose Configuration plus access control.
		errs = append(errs, CheckAccessControl("components/compose/events-config.yaml", events, "default")...)
		bare := events.DeepCopy()
		bare.Spec.AccessControlSpec = nil
		bare.Name = compose.Name
		if !reflect.DeepEqual(bare, compose) {
			errs.add("components/compose/events-config.yaml differs from components/compose/config.yaml in more than accessControl:\nconfig: %+v\nevents: %+v", compose.Spec, bare.Spec)
		}
	}
	compose.Spec.TracingSpec.Zipkin.EndpointAddresss = local.Spec.TracingSpec.Zipkin.EndpointAddresss
	if !reflect.DeepEqual(local, compose) {
		errs.add("components/compose/config.yaml differs from components/config.yaml in more than Zipkin's address:\nlocal:   %+v\ncompose: %+v", local.Spec, compose.Spec)
	}
	errs = append(errs, checkComposeResources(root)...)
	return errs
}

// checkComposeResources: components/compose/resources (compose's
// --resources-path) holds make up's components: the same files (links to
// them), but for the state store, which differs only in reading Redis's
// password from REDIS_PASSWORD.
func checkComposeResources(root string) []error {
	var errs problems
	dev := filepath.Join(root, "components")
	dir := filepath.Join(dev, "compose", "resources")
	files, _ := filepath.Glob(filepath.Join(dev, "*.yaml"))
	for _, f := range files {
		name := filepath.Base(f)
		if name == "config.yaml" {
			continue // a Configuration, given by --config
		}
		got := filepath.Join(dir, name)
		if name != "statestore.yaml" {
			if real, err := filepath.EvalSymlinks(got); err != nil || real != f {
				errs.add("components/compose/resources/%s must be a link to components/%s (got %q, %v)", name, name, real, err)
			}
			continue
		}
		load := func(path string) *componentsapi.Component {
			raw, err := os.ReadFile(path)
			if err != nil {
				errs.add("%v", err)
				return nil
			}
			var c componentsapi.Component
			if err := UnmarshalStrict(raw, &c); err != nil {
				errs.add("%s: %v", path, err)
				return nil
			}
			return &c
		}
		a, b := load(f), load(got)
		if a == nil || b == nil {
			continue
		}
		envRef := ""
		strip := func(c *componentsapi.Component) {
			kept := c.Spec.Metadata[:0]
			for _, m := range c.Spec.Metadata {
				if m.Name == "redisPassword" {
					if c == b {
						envRef = m.EnvRef
					}
					continue
				}
				kept = append(kept, m)
			}
			c.Spec.Metadata = kept
		}
		strip(a)
		strip(b)
		if envRef != "REDIS_PASSWORD" {
			errs.add("components/compose/resources/statestore.yaml: redisPassword must be envRef REDIS_PASSWORD")
		}
		if !reflect.DeepEqual(a, b) {
			errs.add("components/compose/resources/statestore.yaml differs from components/statestore.yaml in more than redisPassword")
		}
	}
	return errs
}

// RunFile is the part of the Dapr CLI's run file (`dapr run -f`, the CLI's
// pkg/runfileconfig and pkg/standalone RunConfig yaml keys) this project
// uses; decoding is strict, so a key the CLI does not know fails here.
type RunFile struct {
	Version int       `json:"version"`
	Common  RunCommon `json:"common"`
	Apps    []RunApp  `json:"apps"`
}

type RunCommon struct {
	ResourcesPaths     []string          `json:"resourcesPaths"`
	ConfigFilePath     string            `json:"configFilePath"`
	AppProtocol        string            `json:"appProtocol"`
	APIListenAddresses string            `json:"apiListenAddresses"`
	AppChannelAddress  string            `json:"appChannelAddress"`
	MaxBodySize        string            `json:"maxBodySize"`
	LogLevel           string            `json:"logLevel"`
	Env                map[string]string `json:"env"`
}

type RunApp struct {
	RunCommon            `json:",inline"`
	AppID                string   `json:"appID"`
	AppDirPath           string   `json:"appDirPath"`
	AppPort              int      `json:"appPort"`
	DaprHTTPPort         int      `json:"daprHTTPPort"`
	DaprGRPCPort         int      `json:"daprGRPCPort"`
	DaprInternalGRPCPort int      `json:"daprInternalGRPCPort"`
	MetricsPort          int      `json:"metricsPort"`
	Command              []string `json:"command"`
}

// Run-file settings that daprd gets from make up's flags, by flag.
func (c RunCommon) flags() map[string]string {
	return map[string]string{
		"--app-protocol":          c.AppProtocol,
		"--dapr-listen-addresses": c.APIListenAddresses,
		"--app-channel-address":   c.AppChannelAddress,
		"--max-body-size":         c.MaxBodySize,
		"--log-level":             c.LogLevel,
	}
}

// CheckDaprRun checks dapr.yaml: strict keys, files that exist, the same
// app ids, ports, components, Configuration and flags as make up.
func CheckDaprRun(root string, makeUp []Sidecar) []error {
	var errs problems
	raw, err := os.ReadFile(filepath.Join(root, "dapr.yaml"))
	if err != nil {
		return []error{err}
	}
	var rf RunFile
	if err := UnmarshalStrict(raw, &rf); err != nil {
		return []error{fmt.Errorf("dapr.yaml: %w", err)}
	}
	if rf.Version != 1 {
		errs.add("dapr.yaml: version %d, the CLI reads 1", rf.Version)
	}
	rel := func(p string) string { return filepath.Join(root, p) }
	want := ByAppID(makeUp)
	seen := map[string]bool{}
	for _, app := range rf.Apps {
		mu, ok := want[app.AppID]
		if !ok {
			errs.add("dapr.yaml: app %q is not one make up runs", app.AppID)
			continue
		}
		seen[app.AppID] = true
		upFlags, err := Flags(mu.Args)
		if err != nil {
			errs.add("%v", err)
			continue
		}
		ports := map[string][2]int{
			"appPort":              {app.AppPort, mu.AppPort},
			"daprHTTPPort":         {app.DaprHTTPPort, mu.DaprHTTPPort},
			"daprGRPCPort":         {app.DaprGRPCPort, mu.DaprGRPCPort},
			"daprInternalGRPCPort": {app.DaprInternalGRPCPort, mu.DaprInternalGRPCPort},
			"metricsPort":          {app.MetricsPort, mu.MetricsPort},
		}
		for k, v := range ports {
			if v[0] != v[1] {
				errs.add("dapr.yaml: %s %s %d, make up: %d", app.AppID, k, v[0], v[1])
			}
		}
		// An app's own setting overrides common, as in the CLI.
		merged := rf.Common.flags()
		for k, v := range app.RunCommon.flags() {
			if v != "" {
				merged[k] = v
			}
		}
		for flag, v := range merged {
			if upFlags[flag] != v {
				errs.add("dapr.yaml: %s %s %q, make up gives %q", app.AppID, flag, v, upFlags[flag])
			}
		}
		resources := rf.Common.ResourcesPaths
		if len(app.ResourcesPaths) > 0 {
			resources = app.ResourcesPaths
		}
		if len(resources) != 1 || filepath.Clean(rel(resources[0])) != upFlags["--resources-path"] {
			errs.add("dapr.yaml: %s resourcesPaths %v, make up: %s", app.AppID, resources, upFlags["--resources-path"])
		}
		config := rf.Common.ConfigFilePath
		if app.ConfigFilePath != "" {
			config = app.ConfigFilePath
		}
		if filepath.Clean(rel(config)) != upFlags["--config"] {
			errs.add("dapr.yaml: %s configFilePath %s, make up: %s", app.AppID, config, upFlags["--config"])
		}
		if _, err := os.Stat(rel(app.AppDirPath)); err != nil {
			errs.add("dapr.yaml: %s appDirPath: %v", app.AppID, err)
		}
		wantCmd := "./target/release/" + mu.Binary
		if len(app.Command) != 1 || app.Command[0] != wantCmd {
			errs.add("dapr.yaml: %s command %q, want [%s] (what cargo build --release builds)", app.AppID, app.Command, wantCmd)
		}
		for k, v := range app.Env {
			// Files the app is pointed at must exist (the models).
			if filepath.Ext(v) != "" && !filepath.IsAbs(v) {
				if _, err := os.Stat(filepath.Join(root, app.AppDirPath, v)); err != nil {
					errs.add("dapr.yaml: %s env %s: %v", app.AppID, k, err)
				}
			}
		}
	}
	for id := range want {
		if !seen[id] {
			errs.add("dapr.yaml: no app %s (make up runs it)", id)
		}
	}
	for _, p := range rf.Common.ResourcesPaths {
		if _, err := os.Stat(rel(p)); err != nil {
			errs.add("dapr.yaml: resourcesPaths: %v", err)
		}
	}
	if _, err := os.Stat(rel(rf.Common.ConfigFilePath)); err != nil {
		errs.add("dapr.yaml: configFilePath: %v", err)
	}
	if h := rf.Common.Env["DAPR_HOST_IP"]; h != "127.0.0.1" {
		errs.add("dapr.yaml: DAPR_HOST_IP %q, make up registers 127.0.0.1", h)
	}
	if r := rf.Common.Env["REDIS_HOST"]; r != "127.0.0.1:6379" {
		errs.add("dapr.yaml: REDIS_HOST %q, make up's Redis is 127.0.0.1:6379", r)
	}
	return errs
}

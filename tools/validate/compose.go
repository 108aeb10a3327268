package validate

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// The compose files, relative to the repository root.
var (
	ComposeDefault = []string{"docker-compose.yml"}
	ComposeWasm    = []string{"docker-compose.yml", "docker-compose.wasm.yml"}
)

// LoadCompose loads files as `docker compose -f … config` would: the
// compose-spec loader, with its schema validation (an unknown or misspelt
// key is an error), interpolation and paths resolved against root. The
// environment is only what the files default to, so a developer's shell
// does not change the result.
func LoadCompose(ctx context.Context, root string, files ...string) (*types.Project, error) {
	paths := make([]string, len(files))
	for i, f := range files {
		if filepath.IsAbs(f) {
			paths[i] = f
		} else {
			paths[i] = filepath.Join(root, f)
		}
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(root),
		cli.WithEnv([]string{}),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(ctx)
}

// composeSidecar is one daprd service of the compose file.
type composeSidecar struct {
	name    string // the sidecar's compose service
	app     string // the app's compose service (its network namespace)
	service types.ServiceConfig
	flags   map[string]string
}

// daprdImage is the image every sidecar runs: the project's Dapr version.
const daprdImage = "daprio/daprd:1.16.5"

// Flags a compose sidecar may set differently from make up, and why:
//   - --dapr-listen-addresses: other sidecars and the web front reach the
//     Dapr API over the compose network, not loopback.
//   - --resources-path, --config: container paths; checked to be mounts of
//     the same host files (config: components/compose/config.yaml, proven
//     equal to components/config.yaml but for Zipkin's address).
var composeFlagExceptions = map[string]bool{"--dapr-listen-addresses": true, "--resources-path": true, "--config": true}

// Flags only compose's sidecars give (make up, on loopback, runs no Sentry):
// mTLS on, certificates from the sentry service (checked in
// checkComposeSidecar).
var composeOnlyFlags = map[string]bool{"--enable-mtls": true, "--sentry-address": true}

// CheckCompose checks a loaded compose project against make up's sidecars
// and the rules the deployment promises (pinned images, health, limits,
// non-root, read-only, secrets as files, only four published ports).
func CheckCompose(root string, p *types.Project, makeUp []Sidecar) []error {
	var errs problems
	want := ByAppID(makeUp)

	// Sidecars: found by image, tied to their app by the network namespace
	// both join: their pod's (see podOf).
	sidecars := map[string]composeSidecar{} // by app id
	for name, s := range p.Services {
		if !strings.HasPrefix(s.Image, "daprio/daprd") {
			continue
		}
		if s.Image != daprdImage {
			errs.add("%s: sidecar image %s, want %s (the Dapr version tools/daprd builds)", name, s.Image, daprdImage)
		}
		app, err := appOfSidecar(p, name, s)
		if err != nil {
			errs.add("%v", err)
			continue
		}
		if len(s.Command) == 0 || s.Command[0] != "/daprd" {
			errs.add("%s: command must start with /daprd, got %q", name, s.Command)
			continue
		}
		flags, err := Flags(s.Command[1:])
		if err != nil {
			errs.add("%s: %v", name, err)
			continue
		}
		id := flags["--app-id"]
		if _, dup := sidecars[id]; dup {
			errs.add("%s: a second sidecar for app id %q", name, id)
		}
		sidecars[id] = composeSidecar{name: name, app: app, service: s, flags: flags}
	}
	for id := range want {
		if _, ok := sidecars[id]; !ok {
			errs.add("no daprd sidecar with --app-id %s (make up runs one)", id)
		}
	}
	for id, sc := range sidecars {
		mu, ok := want[id]
		if !ok {
			errs.add("%s: app id %q is not one make up runs", sc.name, id)
			continue
		}
		checkComposeSidecar(&errs, root, p, sc, mu)
	}

	checkComposeServices(&errs, root, p)
	checkComposeSecrets(&errs, root, p, sidecars)
	checkComposeSecretOwners(&errs, p)
	checkComposeSecurity(&errs, p, sidecars, want)
	checkComposeGrants(&errs, p)
	checkPrometheusTargets(&errs, root, p, sidecars, want)
	checkWebFront(&errs, p, sidecars, want)
	// Files that take their settings from the environment (Grafana's
	// provisioning, nginx's template) get every variable they name.
	checkTemplateVars(&errs, p, "grafana", "/etc/grafana/provisioning")
	checkTemplateVars(&errs, p, "web", "/etc/nginx/templates")
	return errs
}

// appOfSidecar finds the app a sidecar serves: the one other service in
// the network namespace the sidecar joins, which must be held by a pod
// service (a process that never exits, named on the network as the app):
// joined to the app itself, a sidecar keeps the namespace of the app's
// dead container after a restart and loses the app.
func appOfSidecar(p *types.Project, name string, s types.ServiceConfig) (string, error) {
	pod, ok := strings.CutPrefix(s.NetworkMode, "service:")
	if !ok {
		return "", fmt.Errorf("%s: network_mode %q, want service:<app>-pod (the namespace its app joins too)", name, s.NetworkMode)
	}
	holder, ok := p.Services[pod]
	if !ok {
		return "", fmt.Errorf("%s: network_mode names %s, which is not a service", name, pod)
	}
	if holder.NetworkMode != "" || strings.HasPrefix(holder.Image, "daprio/") || holder.Build != nil {
		return "", fmt.Errorf("%s: network_mode names %s, which must be a pod holding the namespace, not the app or a sidecar (a restarted app would be lost to its sidecar)", name, pod)
	}
	var apps []string
	for other, o := range p.Services {
		if other != name && o.NetworkMode == s.NetworkMode && !strings.HasPrefix(o.Image, "daprio/") {
			apps = append(apps, other)
		}
	}
	if len(apps) != 1 {
		return "", fmt.Errorf("%s: %d apps share its network namespace %s (%v), want one", name, len(apps), pod, apps)
	}
	app := apps[0]
	if net, ok := holder.Networks["default"]; !ok || net == nil || !slices.Contains(net.Aliases, app) {
		return "", fmt.Errorf("%s: must be named %s on the default network (aliases), the name other services reach the app at", pod, app)
	}
	if d, ok := p.Services[app].DependsOn[pod]; !ok || d.Condition != types.ServiceConditionStarted {
		return "", fmt.Errorf("%s: must depend on its pod %s with service_started", app, pod)
	}
	return app, nil
}

// isPod: a service whose network namespace others join (appOfSidecar).
func isPod(p *types.Project, name string) bool {
	for _, s := range p.Services {
		if s.NetworkMode == "service:"+name {
			return true
		}
	}
	return false
}

var templateVar = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)\}`)

// checkTemplateVars: every ${VAR} in the files mounted under dir in the
// service is set in its environment (unset, Grafana reads an empty string
// and nginx's envsubst step leaves the text as is: both fail at run time).
func checkTemplateVars(errs *problems, p *types.Project, service, dir string) {
	s, ok := p.Services[service]
	if !ok {
		return
	}
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind || !(v.Target == dir || strings.HasPrefix(v.Target, dir+"/")) {
			continue
		}
		_ = filepath.Walk(v.Source, func(path string, info os.FileInfo, err error) error {
			if err != nil || info.IsDir() {
				return nil
			}
			raw, err := os.ReadFile(path)
			if err != nil {
				errs.add("%s: %v", service, err)
				return nil
			}
			for _, m := range templateVar.FindAllStringSubmatch(string(raw), -1) {
				if val := s.Environment[m[1]]; val == nil || *val == "" {
					errs.add("%s: %s uses ${%s}, which the service's environment does not set", service, path, m[1])
				}
			}
			return nil
		})
	}
}

func checkComposeSidecar(errs *problems, root string, p *types.Project, sc composeSidecar, mu Sidecar) {
	upFlags, err := Flags(mu.Args)
	if err != nil {
		errs.add("stackctl daprd-args %s: %v", mu.AppID, err)
		return
	}
	for name, upValue := range upFlags {
		got, ok := sc.flags[name]
		switch {
		case !ok:
			errs.add("%s: lacks %s (make up: %s)", sc.name, name, upValue)
		case composeFlagExceptions[name]:
		case got != upValue:
			errs.add("%s: %s %s, make up gives %s", sc.name, name, got, upValue)
		}
	}
	for name := range sc.flags {
		if _, ok := upFlags[name]; !ok && !composeOnlyFlags[name] {
			errs.add("%s: %s is not a flag make up gives daprd (tools/stack/src/daprd.rs)", sc.name, name)
		}
	}
	// mTLS: on, with the compose file's own Sentry.
	if sc.flags["--enable-mtls"] != "true" {
		errs.add("%s: mTLS is off (want --enable-mtls=true: access control needs verified identities)", sc.name)
	}
	sentryHost, sentryPort, _ := strings.Cut(sc.flags["--sentry-address"], ":")
	if sentry, ok := p.Services[sentryHost]; !ok || !strings.HasPrefix(sentry.Image, "daprio/sentry:") {
		errs.add("%s: --sentry-address %q is not a daprio/sentry service of this file", sc.name, sc.flags["--sentry-address"])
	} else if f, err := Flags(sentry.Command[min(1, len(sentry.Command)):]); err != nil || f["--port"] != sentryPort {
		errs.add("%s: --sentry-address port %s is not the port %s listens on (%v)", sc.name, sentryPort, sentryHost, err)
	}
	if sc.service.Environment["DAPR_TRUST_ANCHORS"] == nil || !strings.Contains(*sc.service.Environment["DAPR_TRUST_ANCHORS"], "BEGIN CERTIFICATE") {
		errs.add("%s: DAPR_TRUST_ANCHORS holds no certificate (Sentry's root, deploy/compose/secrets/trust-anchors.env)", sc.name)
	}
	if got := sc.flags["--dapr-listen-addresses"]; got != "0.0.0.0" {
		errs.add("%s: --dapr-listen-addresses %q, want 0.0.0.0 (reached over the compose network)", sc.name, got)
	}
	// The container paths must be mounts of the compose copies of make up's
	// files (CheckComposeConfig proves what differs).
	composeResources := filepath.Join(root, "components", "compose", "resources")
	if host := hostPath(sc.service, sc.flags["--resources-path"]); host != composeResources {
		errs.add("%s: --resources-path %s is %q on the host, want %s", sc.name, sc.flags["--resources-path"], host, composeResources)
	}
	composeConfig := filepath.Join(root, "components", "compose", "config.yaml")
	if mu.AppID == "events-service" {
		composeConfig = filepath.Join(root, "components", "compose", "events-config.yaml")
	}
	if host := hostPath(sc.service, sc.flags["--config"]); host != composeConfig {
		errs.add("%s: --config %s is %q on the host, want %s", sc.name, sc.flags["--config"], host, composeConfig)
	}

	app, ok := p.Services[sc.app]
	if !ok {
		errs.add("%s: network_mode names %s, which is not a service", sc.name, sc.app)
		return
	}
	env := func(s types.ServiceConfig, k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	if got := env(app, "APP_PORT"); got != strconv.Itoa(mu.AppPort) {
		errs.add("%s: APP_PORT %q, make up: %d", sc.app, got, mu.AppPort)
	}
	if got := env(app, "DAPR_HTTP_PORT"); got != strconv.Itoa(mu.DaprHTTPPort) {
		errs.add("%s: DAPR_HTTP_PORT %q, its sidecar listens on %d", sc.app, got, mu.DaprHTTPPort)
	}
	if got := env(sc.service, "DAPR_HOST_IP"); got != sc.app {
		errs.add("%s: DAPR_HOST_IP %q, want %s (the address other sidecars reach it at)", sc.name, got, sc.app)
	}
	redis := env(sc.service, "REDIS_HOST")
	if host, _, _ := strings.Cut(redis, ":"); !strings.HasPrefix(serviceImage(p, host), "redis:") {
		errs.add("%s: REDIS_HOST %q is not a Redis service of this file", sc.name, redis)
	}
	if dep, ok := sc.service.DependsOn[sc.app]; !ok || dep.Condition != types.ServiceConditionStarted {
		errs.add("%s: must depend on %s with service_started (the app's health includes the sidecar's)", sc.name, sc.app)
	}
	// Mounts under daprd's working folder hold the shared SQLite name
	// resolution file: every sidecar must share one volume there.
	shared := false
	for _, v := range sc.service.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Target == sc.service.WorkingDir {
			shared = true
		}
	}
	if !shared {
		errs.add("%s: working_dir %q is not a named volume: the sidecars must share the name-resolution file", sc.name, sc.service.WorkingDir)
	}
}

// hostPath maps a container path to the host path bind-mounted there.
func hostPath(s types.ServiceConfig, container string) string {
	best := ""
	host := ""
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if container == v.Target || strings.HasPrefix(container, v.Target+"/") {
			if len(v.Target) > len(best) {
				best = v.Target
				host = filepath.Join(v.Source, strings.TrimPrefix(container, v.Target))
			}
		}
	}
	return host
}

func serviceImage(p *types.Project, name string) string {
	if s, ok := p.Services[name]; ok {
		return s.Image
	}
	return ""
}

// A version tag (1.2.3, v2.55.1, 7.4.1-alpine) or a digest: never latest or
// no tag at all.
var pinnedTag = regexp.MustCompile(`^[^:@]+(:[^:@]+)?@sha256:[0-9a-f]{64}$|^[^:@]+:v?[0-9][^:@]*$`)

// published are the only services with host ports.
var published = map[string]bool{"web": true, "grafana": true, "zipkin": true, "prometheus": true}

func checkComposeServices(errs *problems, root string, p *types.Project) {
	names := make([]string, 0, len(p.Services))
	for n := range p.Services {
		names = append(names, n)
	}
	sort.Strings(names)
	targets := dockerfileTargets(errs, p)
	for _, name := range names {
		s := p.Services[name]
		// daprd and sentry: distroless, nothing to run a check with.
		sidecar := strings.HasPrefix(s.Image, "daprio/")
		// A pod holds a network namespace and runs nothing to check.
		pod := isPod(p, name)
		oneShot := s.Restart == "no"
		if !pinnedTag.MatchString(s.Image) {
			errs.add("%s: image %q is not pinned to a version (a tag starting with a digit, or a digest)", name, s.Image)
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil && !filepath.IsAbs(s.Build.Dockerfile) {
				errs.add("%s: Dockerfile: %v", name, err)
			}
			if !targets[s.Build.Target] {
				errs.add("%s: build target %q is not a stage of %s", name, s.Build.Target, s.Build.Dockerfile)
			}
		}
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				errs.add("%s: mounts %s, which does not exist (%v)", name, v.Source, err)
			}
			if !v.ReadOnly {
				errs.add("%s: bind mount %s is writable; repository files are mounted read-only", name, v.Target)
			}
		}
		// Health: every long-running service, except the daprd sidecars
		// (distroless, nothing to run a check with; the app's /readyz
		// includes its sidecar).
		hc := s.HealthCheck
		if !sidecar && !oneShot && !pod && (hc == nil || (len(hc.Test) == 0 && !hc.Disable)) {
			errs.add("%s: no healthcheck", name)
		}
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			if !ok {
				errs.add("%s: depends on %s, which is not a service", name, dep)
				continue
			}
			healthy := target.HealthCheck != nil && !target.HealthCheck.Disable && len(target.HealthCheck.Test) > 0
			isOwnApp := s.NetworkMode != "" && target.NetworkMode == s.NetworkMode
			switch {
			case target.Restart == "no" && d.Condition != types.ServiceConditionCompletedSuccessfully:
				errs.add("%s: depends on the one-shot %s with %s, want service_completed_successfully", name, dep, d.Condition)
			case healthy && !isOwnApp && d.Condition != types.ServiceConditionHealthy:
				errs.add("%s: depends on %s with %s, want service_healthy", name, dep, d.Condition)
			}
		}
		if limit := memoryLimit(s); limit <= 0 {
			errs.add("%s: no memory limit", name)
		}
		if !s.ReadOnly {
			errs.add("%s: root filesystem is writable (read_only: true)", name)
		}
		user, _, _ := strings.Cut(s.User, ":")
		if user == "" || user == "0" || user == "root" {
			errs.add("%s: runs as root (set user)", name)
		}
		if len(s.Ports) > 0 && !published[name] {
			errs.add("%s: publishes ports; only %v may", name, keys(published))
		}
		for _, port := range s.Ports {
			if port.HostIP != "127.0.0.1" {
				errs.add("%s: port %s published on %q, want 127.0.0.1", name, port.Published, port.HostIP)
			}
		}
	}
	for name := range published {
		if s, ok := p.Services[name]; !ok || len(s.Ports) == 0 {
			errs.add("%s: should be published on the host", name)
		}
	}
	for name, sec := range p.Secrets {
		if sec.File == "" {
			errs.add("secret %s: not from a file", name)
		} else if _, err := os.Stat(sec.File); err != nil {
			errs.add("secret %s: %v", name, err)
		}
	}
	// The events service waits for the migration job.
	migrations := false
	for _, s := range p.Services {
		for dep, d := range s.DependsOn {
			if p.Services[dep].Restart == "no" && d.Condition == types.ServiceConditionCompletedSuccessfully {
				// The command is the migrate binary's arguments (its image's entrypoint).
				migrations = migrations || strings.Contains(strings.Join(p.Services[dep].Command, " "), "/migrations")
			}
		}
	}
	if !migrations {
		errs.add("no service waits (service_completed_successfully) for a one-shot migrate job")
	}
	// Grafana opens on the service overview, as an anonymous viewer.
	if g, ok := p.Services["grafana"]; ok {
		env := func(k string) string {
			if v := g.Environment[k]; v != nil {
				return *v
			}
			return ""
		}
		if g.Image != "grafana/grafana:11.3.0" {
			errs.add("grafana: image %s, the dashboards are written for grafana/grafana:11.3.0", g.Image)
		}
		if env("GF_AUTH_ANONYMOUS_ENABLED") != "true" || env("GF_AUTH_ANONYMOUS_ORG_ROLE") != "Viewer" {
			errs.add("grafana: anonymous access must be on, as Viewer")
		}
		home := hostPath(g, env("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"))
		if home != filepath.Join(root, "grafana", "dashboards", "service-overview.json") {
			errs.add("grafana: home dashboard is %q on the host, want grafana/dashboards/service-overview.json", home)
		}
	}
}

func memoryLimit(s types.ServiceConfig) int64 {
	if s.Deploy != nil && s.Deploy.Resources.Limits != nil && s.Deploy.Resources.Limits.MemoryBytes > 0 {
		return int64(s.Deploy.Resources.Limits.MemoryBytes)
	}
	return int64(s.MemLimit)
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// dockerfileTargets lists the stages (FROM … AS name) of every Dockerfile
// the project builds from.
func dockerfileTargets(errs *problems, p *types.Project) map[string]bool {
	stage := regexp.MustCompile(`(?i)^FROM\s+.*\s+AS\s+([A-Za-z0-9_.-]+)\s*$`)
	targets := map[string]bool{}
	seen := map[string]bool{}
	for _, s := range p.Services {
		if s.Build == nil {
			continue
		}
		path := s.Build.Dockerfile
		if !filepath.IsAbs(path) {
			path = filepath.Join(s.Build.Context, path)
		}
		if seen[path] {
			continue
		}
		seen[path] = true
		f, err := os.Open(path)
		if err != nil {
			errs.add("%v", err)
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if m := stage.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
				targets[m[1]] = true
			}
		}
		f.Close()
	}
	return targets
}

// checkComposeSecretOwners: outside Swarm a secret is the host file
// bind-mounted as it is (compose ignores uid/gid/mode), so each file must
// belong to the one user all its readers run as, mode 0400
// (scripts/compose-secrets.sh gives them away), and no reader may need a
// uid/gid/mode that would only work in Swarm.
func checkComposeSecretOwners(errs *problems, p *types.Project) {
	readers := map[string]map[string][]string{} // secret -> user -> services
	for name, s := range p.Services {
		for _, sec := range s.Secrets {
			if sec.UID != "" || sec.GID != "" || sec.Mode != nil {
				errs.add("%s: secret %s sets uid/gid/mode, which compose ignores outside Swarm: give the file its owner instead", name, sec.Source)
			}
			if readers[sec.Source] == nil {
				readers[sec.Source] = map[string][]string{}
			}
			readers[sec.Source][s.User] = append(readers[sec.Source][s.User], name)
		}
	}
	for secret, users := range readers {
		if len(users) != 1 {
			errs.add("secret %s: read by services running as different users %v; one file has one owner", secret, users)
			continue
		}
		def, ok := p.Secrets[secret]
		if !ok || def.File == "" {
			continue
		}
		for user := range users {
			info, err := os.Stat(def.File)
			if err != nil {
				continue // reported by checkComposeServices
			}
			st, ok := info.Sys().(*syscall.Stat_t)
			if !ok || os.Geteuid() != 0 {
				continue // only root can give files away: nothing to check
			}
			if got := fmt.Sprintf("%d:%d", st.Uid, st.Gid); got != user {
				errs.add("secret %s: %s belongs to %s, but its readers run as %s (scripts/compose-secrets.sh)", secret, def.File, got, user)
			}
			if info.Mode().Perm() != 0o400 {
				errs.add("secret %s: %s has mode %o, want 400 (its reader only)", secret, def.File, info.Mode().Perm())
			}
		}
	}
}

// checkComposeSecrets: the database password reaches MariaDB and the Dapr
// secret store only as compose secrets (files), the two agree, and no
// service has it in its environment.
func checkComposeSecrets(errs *problems, root string, p *types.Project, sidecars map[string]composeSidecar) {
	secretFile := func(service types.ServiceConfig, envName string) (string, bool) {
		v := service.Environment[envName]
		if v == nil {
			return "", false
		}
		name, ok := strings.CutPrefix(*v, "/run/secrets/")
		if !ok {
			return "", false
		}
		for _, s := range service.Secrets {
			if s.Source == name && (s.Target == "" || s.Target == name || s.Target == "/run/secrets/"+name) {
				return p.Secrets[name].File, true
			}
		}
		return "", false
	}
	db, ok := p.Services["mariadb"]
	if !ok {
		errs.add("no mariadb service")
		return
	}
	passwordFile, ok := secretFile(db, "MARIADB_PASSWORD_FILE")
	if !ok {
		errs.add("mariadb: MARIADB_PASSWORD_FILE must name a compose secret under /run/secrets")
		return
	}
	eventsPasswordFile, ok := secretFile(db, "EVENTS_DB_PASSWORD_FILE")
	if !ok {
		errs.add("mariadb: EVENTS_DB_PASSWORD_FILE must name a compose secret under /run/secrets (the events user, made by mariadb-users.sh)")
		return
	}
	envOf := func(k string) string {
		if v := db.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	if envOf("MARIADB_USER") == "events" {
		errs.add("mariadb: MARIADB_USER is events-service's user; it must be the migrate user (events may only SELECT, INSERT)")
	}
	// Each URL: the right user, database and host, with the password of
	// its file.
	checkURL := func(service types.ServiceConfig, what, wantUser, pwFile string) {
		secretsJSON, ok := secretFile(service, "SECRETS_FILE")
		if !ok {
			errs.add("%s: SECRETS_FILE must name a compose secret under /run/secrets (the local-file secret store)", what)
			return
		}
		password, err := os.ReadFile(pwFile)
		if err != nil {
			errs.add("%v", err)
			return
		}
		raw, err := os.ReadFile(secretsJSON)
		if err != nil {
			errs.add("%v", err)
			return
		}
		var secrets struct {
			DBURL struct {
				MySQL string `json:"MYSQL"`
			} `json:"DB_URL"`
		}
		if err := json.Unmarshal(raw, &secrets); err != nil {
			errs.add("%s: %v", secretsJSON, err)
			return
		}
		u, err := url.Parse(secrets.DBURL.MySQL)
		if err != nil || u.User == nil {
			errs.add("%s: DB_URL:MYSQL is not a URL with credentials", secretsJSON)
			return
		}
		pw, _ := u.User.Password()
		if pw != strings.TrimSpace(string(password)) {
			errs.add("the password in %s differs from %s", secretsJSON, pwFile)
		}
		if u.User.Username() != wantUser || strings.TrimPrefix(u.Path, "/") != envOf("MARIADB_DATABASE") || u.Hostname() != "mariadb" {
			errs.add("%s: DB_URL:MYSQL %s@%s%s, want user %s, database %s on mariadb", secretsJSON, u.User.Username(), u.Host, u.Path, wantUser, envOf("MARIADB_DATABASE"))
		}
		for name, s := range p.Services {
			for k, v := range s.Environment {
				if v != nil && strings.TrimSpace(string(password)) != "" && strings.Contains(*v, strings.TrimSpace(string(password))) {
					errs.add("%s: %s holds a database password in plain environment", name, k)
				}
			}
		}
	}
	if events, ok := sidecars["events-service"]; ok {
		checkURL(events.service, events.name, "events", eventsPasswordFile)
	}
	if migrate, ok := p.Services["migrate"]; ok {
		checkURL(migrate, "migrate", envOf("MARIADB_USER"), passwordFile)
	} else {
		errs.add("no migrate service")
	}
}

// checkPrometheusTargets: the file_sd targets compose mounts name every
// app's metrics listener (METRICS_ADDRESS) and every sidecar's metrics port, at the app's service
// (the sidecar shares its network namespace), labelled app_id and component.
func checkPrometheusTargets(errs *problems, root string, p *types.Project, sidecars map[string]composeSidecar, want map[string]Sidecar) {
	prom, ok := p.Services["prometheus"]
	if !ok {
		errs.add("no prometheus service")
		return
	}
	dir := hostPath(prom, "/etc/prometheus/targets")
	if dir == "" {
		errs.add("prometheus: nothing mounted at /etc/prometheus/targets (file_sd_configs)")
		return
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	// Every file_sd file prometheus.yml reads (relative to its folder,
	// /etc/prometheus) must be one compose mounts.
	if cfg := hostPath(prom, "/etc/prometheus/prometheus.yml"); cfg != "" {
		raw, err := os.ReadFile(cfg)
		if err != nil {
			errs.add("prometheus: %v", err)
		} else {
			var pc struct {
				ScrapeConfigs []struct {
					FileSD []struct {
						Files []string `json:"files"`
					} `json:"file_sd_configs"`
				} `json:"scrape_configs"`
			}
			if err := yaml.Unmarshal(raw, &pc); err != nil {
				errs.add("%s: %v", cfg, err)
			}
			for _, sc := range pc.ScrapeConfigs {
				for _, sd := range sc.FileSD {
					for _, f := range sd.Files {
						inContainer := f
						if !filepath.IsAbs(f) {
							inContainer = filepath.Join("/etc/prometheus", f)
						}
						matches, _ := filepath.Glob(hostPath(prom, inContainer))
						if len(matches) == 0 {
							errs.add("prometheus.yml reads %s, which compose does not provide", inContainer)
						}
					}
				}
			}
		}
	}
	type group struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels"`
	}
	got := map[string]string{} // "app_id/component" → target
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			errs.add("%v", err)
			continue
		}
		var groups []group
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&groups); err != nil {
			errs.add("%s: %v", f, err)
			continue
		}
		for _, g := range groups {
			for _, t := range g.Targets {
				got[g.Labels["app_id"]+"/"+g.Labels["component"]] = t
			}
		}
	}
	for id, sc := range sidecars {
		mu, ok := want[id]
		if !ok {
			continue
		}
		_, appMetrics, _ := strings.Cut(envValue(p.Services[sc.app], "METRICS_ADDRESS"), ":")
		for component, port := range map[string]string{"app": appMetrics, "daprd": strconv.Itoa(mu.MetricsPort)} {
			wantTarget := sc.app + ":" + port
			if got[id+"/"+component] != wantTarget {
				errs.add("prometheus targets: %s %s is %q, want %s", id, component, got[id+"/"+component], wantTarget)
			}
		}
	}
	if len(got) != 2*len(want) {
		errs.add("prometheus targets: %d, want %d (each app and each sidecar once)", len(got), 2*len(want))
	}
}

// checkWebFront: nginx's template gets each sidecar's Dapr HTTP API.
func checkWebFront(errs *problems, p *types.Project, sidecars map[string]composeSidecar, want map[string]Sidecar) {
	web, ok := p.Services["web"]
	if !ok {
		errs.add("no web service")
		return
	}
	for envName, id := range map[string]string{"GRAYSCALE_DAPR": "image-api-grayscale", "CLASSIFY_DAPR": "image-api-classify", "EVENTS_DAPR": "events-service"} {
		sc, ok := sidecars[id]
		if !ok {
			continue
		}
		wantAddr := sc.app + ":" + strconv.Itoa(want[id].DaprHTTPPort)
		if v := web.Environment[envName]; v == nil || *v != wantAddr {
			errs.add("web: %s should be %s (the %s sidecar's HTTP API)", envName, wantAddr, id)
		}
	}
	// The page's trace links are opened by the user's browser, on the host:
	// Zipkin as published there, not its name inside the compose network.
	if v := web.Environment["ZIPKIN_URL"]; v == nil || *v != "http://127.0.0.1:9411" {
		errs.add("web: ZIPKIN_URL should be http://127.0.0.1:9411 (where the browser reaches Zipkin)")
	}
}

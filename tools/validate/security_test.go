package validate

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	configurationapi "github.com/dapr/dapr/pkg/apis/configuration/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"
)

// expectFinding fails unless one of errs contains want.
func expectFinding(t *testing.T, what string, errs []error, want string) {
	t.Helper()
	for _, e := range errs {
		if strings.Contains(e.Error(), want) {
			t.Logf("%s: refused: %v", what, e)
			return
		}
	}
	t.Errorf("%s: no finding containing %q (got %d: %v)", what, want, len(errs), errs)
}

// Each mutation is applied to a freshly loaded project (the parsed
// structure, not the YAML text), and CheckCompose must name it.
func TestComposeSecurityChecksCatchMutations(t *testing.T) {
	root, up := RepoRoot(), makeUp(t)
	unset := func(p *types.Project, service, key string) {
		s := p.Services[service]
		delete(s.Environment, key)
		p.Services[service] = s
	}
	set := func(p *types.Project, service, key, value string) {
		s := p.Services[service]
		s.Environment[key] = &value
		p.Services[service] = s
	}
	memory := func(p *types.Project, service string, bytes int64) {
		s := p.Services[service]
		s.Deploy.Resources.Limits.MemoryBytes = types.UnitBytes(bytes)
		p.Services[service] = s
	}
	cases := []struct {
		name   string
		files  []string
		mutate func(p *types.Project)
		want   string
	}{
		{"a sidecar without a Dapr API token", ComposeDefault, func(p *types.Project) { unset(p, "grayscale-dapr", "DAPR_API_TOKEN") }, "no DAPR_API_TOKEN"},
		{"a sidecar without an app API token", ComposeDefault, func(p *types.Project) { unset(p, "events-dapr", "APP_API_TOKEN") }, "no APP_API_TOKEN"},
		{"an app without APP_API_TOKEN", ComposeDefault, func(p *types.Project) { unset(p, "classify", "APP_API_TOKEN") }, "classify: APP_API_TOKEN differs"},
		{"two apps sharing a token", ComposeDefault, func(p *types.Project) {
			set(p, "classify-dapr", "DAPR_API_TOKEN", envValue(p.Services["grayscale-dapr"], "DAPR_API_TOKEN"))
		}, "one token per app"},
		{"grayscale without rate limits", ComposeDefault, func(p *types.Project) { unset(p, "grayscale", "RATE_LIMIT_POLICIES") }, "no RATE_LIMIT_POLICIES"},
		{"classify without rate limits (wasm)", ComposeWasm, func(p *types.Project) { unset(p, "classify", "RATE_LIMIT_POLICIES") }, "no RATE_LIMIT_POLICIES"},
		{"classify's limits unlike make up", ComposeDefault, func(p *types.Project) { set(p, "classify", "RATE_LIMIT_POLICIES", "/classify=1000/500") }, "make up:"},
		{"a proxy trusted beyond the sidecar", ComposeDefault, func(p *types.Project) { set(p, "grayscale", "RATE_LIMIT_TRUSTED_PROXIES", "0.0.0.0/0") }, "RATE_LIMIT_TRUSTED_PROXIES"},
		{"an app on every interface", ComposeDefault, func(p *types.Project) { set(p, "events", "APP_HOST", "0.0.0.0") }, "APP_HOST"},
		// 152 MiB + 64 MiB = 216 MiB: over a 200 MiB limit natively.
		{"grayscale's budget over its limit", ComposeDefault, func(p *types.Project) { memory(p, "grayscale", 200<<20) }, "not below the memory limit"},
		// 240 MiB fits native (216 MiB) but not Wasm (152 + 96 = 248 MiB).
		{"grayscale's budget over its limit in Wasm only", ComposeWasm, func(p *types.Project) { memory(p, "grayscale", 240<<20) }, "wasm baseline"},
		// 288 + 192 = 480 MiB in Wasm.
		{"classify's budget over its limit in Wasm", ComposeWasm, func(p *types.Project) { memory(p, "classify", 470<<20) }, "wasm baseline"},
		{"no decode budget", ComposeDefault, func(p *types.Project) { unset(p, "classify", "DECODE_MEMORY_BYTES") }, "DECODE_MEMORY_BYTES"},
		{"mTLS off", ComposeDefault, func(p *types.Project) {
			s := p.Services["events-dapr"]
			var cmd types.ShellCommand
			for _, a := range s.Command {
				if a != "--enable-mtls=true" {
					cmd = append(cmd, a)
				}
			}
			s.Command = cmd
			p.Services["events-dapr"] = s
		}, "mTLS is off"},
		{"the web front without a sidecar's token", ComposeDefault, func(p *types.Project) { unset(p, "web", "EVENTS_DAPR_TOKEN") }, "EVENTS_DAPR_TOKEN"},
		{"events' sidecar on the plain Configuration", ComposeDefault, func(p *types.Project) {
			s := p.Services["events-dapr"]
			for i, a := range s.Command {
				if a == "/components/compose/events-config.yaml" {
					s.Command[i] = "/components/compose/config.yaml"
				}
			}
			p.Services["events-dapr"] = s
		}, "events-config.yaml"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := LoadCompose(context.Background(), root, c.files...)
			if err != nil {
				t.Fatal(err)
			}
			if errs := CheckCompose(root, p, up); len(errs) != 0 {
				t.Fatalf("the unmutated project already fails: %v", errs)
			}
			c.mutate(p)
			expectFinding(t, c.name, CheckCompose(root, p, up), c.want)
		})
	}
}

func loadConfiguration(t *testing.T, rel string) *configurationapi.Configuration {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(RepoRoot(), rel))
	if err != nil {
		t.Fatal(err)
	}
	var c configurationapi.Configuration
	if err := UnmarshalStrict(raw, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

// events-service's compose Configuration, mutated: no access control, allow
// by default, a caller that may not call, an operation that is not create_event.
func TestAccessControlCheckCatchesMutations(t *testing.T) {
	const rel = "components/compose/events-config.yaml"
	if errs := CheckAccessControl(rel, loadConfiguration(t, rel), "default"); len(errs) != 0 {
		t.Fatalf("the committed file fails: %v", errs)
	}
	allowAll := false
	for name, c := range map[string]struct {
		mutate func(c *configurationapi.Configuration)
		want   string
	}{
		"no accessControl":     {func(c *configurationapi.Configuration) { c.Spec.AccessControlSpec = nil }, "no accessControl"},
		"allow by default":     {func(c *configurationapi.Configuration) { c.Spec.AccessControlSpec.DefaultAction = "allow" }, "defaultAction \"allow\""},
		"another trust domain": {func(c *configurationapi.Configuration) { c.Spec.AccessControlSpec.TrustDomain = "cluster.local" }, "trustDomain"},
		"events may call itself": {func(c *configurationapi.Configuration) {
			c.Spec.AccessControlSpec.AppPolicies[0].AppName = "events-service"
		}, "only [image-api-grayscale image-api-classify]"},
		"grayscale may init": {func(c *configurationapi.Configuration) {
			c.Spec.AccessControlSpec.AppPolicies[0].AppOperationActions[0].Operation = "/init"
		}, "only POST /create_event"},
		"classify may GET": {func(c *configurationapi.Configuration) {
			c.Spec.AccessControlSpec.AppPolicies[1].AppOperationActions[0].HTTPVerb = []string{"*"}
		}, "only POST /create_event"},
		"mtls off": {func(c *configurationapi.Configuration) {
			c.Spec.MTLSSpec = &configurationapi.MTLSSpec{Enabled: &allowAll}
		}, "mtls disabled"},
	} {
		cfg := loadConfiguration(t, rel)
		c.mutate(cfg)
		expectFinding(t, name, CheckAccessControl(rel, cfg, "default"), c.want)
	}
}

func deployment(t *testing.T, objs []Object, name string) *appsv1.Deployment {
	t.Helper()
	for _, o := range objs {
		if o.Kind == "Deployment" && o.Name == name {
			return o.Obj.(*appsv1.Deployment)
		}
	}
	t.Fatalf("no Deployment %s", name)
	return nil
}

func dropEnv(d *appsv1.Deployment, name string) {
	c := &d.Spec.Template.Spec.Containers[0]
	var kept []corev1.EnvVar
	for _, e := range c.Env {
		if e.Name != name {
			kept = append(kept, e)
		}
	}
	c.Env = kept
}

// The same for the rendered overlays: decoded objects, mutated, checked.
func TestKubeSecurityChecksCatchMutations(t *testing.T) {
	up := makeUp(t)
	rendered := renderAll(t)
	cases := []struct {
		name    string
		overlay string
		mutate  func(t *testing.T, objs []Object)
		want    string
	}{
		{"a sidecar without an API token", "native", func(t *testing.T, objs []Object) {
			delete(deployment(t, objs, "image-api-classify").Spec.Template.Annotations, "dapr.io/api-token-secret")
		}, "no dapr.io/api-token-secret"},
		{"an app without an app token", "native", func(t *testing.T, objs []Object) {
			delete(deployment(t, objs, "events-service").Spec.Template.Annotations, "dapr.io/app-token-secret")
		}, "no dapr.io/app-token-secret"},
		{"an app not sending its token", "wasmedge", func(t *testing.T, objs []Object) {
			dropEnv(deployment(t, objs, "image-api-grayscale"), "APP_API_TOKEN")
		}, "env APP_API_TOKEN must read"},
		{"two apps sharing a Secret", "native", func(t *testing.T, objs []Object) {
			g := deployment(t, objs, "image-api-grayscale")
			deployment(t, objs, "image-api-classify").Spec.Template.Annotations["dapr.io/api-token-secret"] = g.Spec.Template.Annotations["dapr.io/api-token-secret"]
		}, "one token per app"},
		{"grayscale without rate limits", "native", func(t *testing.T, objs []Object) {
			dropEnv(deployment(t, objs, "image-api-grayscale"), "RATE_LIMIT_POLICIES")
		}, "no RATE_LIMIT_POLICIES"},
		{"classify without rate limits", "wasmedge", func(t *testing.T, objs []Object) {
			dropEnv(deployment(t, objs, "image-api-classify"), "RATE_LIMIT_POLICIES")
		}, "no RATE_LIMIT_POLICIES"},
		{"classify's budget over its limit", "native", func(t *testing.T, objs []Object) {
			deployment(t, objs, "image-api-classify").Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("440Mi")
		}, "native baseline"},
		{"grayscale's budget over its limit in Wasm only", "wasmedge", func(t *testing.T, objs []Object) {
			deployment(t, objs, "image-api-grayscale").Spec.Template.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("240Mi")
		}, "wasm baseline"},
		{"events' Configuration without access control", "native", func(t *testing.T, objs []Object) {
			for _, o := range objs {
				if c, ok := o.Obj.(*configurationapi.Configuration); ok && c.Spec.AccessControlSpec != nil {
					c.Spec.AccessControlSpec = nil
				}
			}
		}, "no accessControl"},
		{"events on the shared Configuration", "native", func(t *testing.T, objs []Object) {
			deployment(t, objs, "events-service").Spec.Template.Annotations["dapr.io/config"] = "dapr-wasm-config"
		}, "no accessControl"},
		{"mtls in an app Configuration", "native", func(t *testing.T, objs []Object) {
			on := true
			for _, o := range objs {
				if c, ok := o.Obj.(*configurationapi.Configuration); ok {
					c.Spec.MTLSSpec = &configurationapi.MTLSSpec{Enabled: &on}
				}
			}
		}, "spec.mtls is set"},
		{"metrics on the app port", "native", func(t *testing.T, objs []Object) {
			deployment(t, objs, "events-service").Spec.Template.Annotations["prometheus.io/port"] = "9007"
		}, "prometheus.io/port"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			objs, err := DecodeStrict(rendered[c.overlay])
			if err != nil {
				t.Fatal(err)
			}
			c.mutate(t, objs)
			expectFinding(t, c.name, CheckKube(objs, up, c.overlay == "wasmedge"), c.want)
		})
	}
}

// Nothing secret in the committed deployment files.
func TestNoCommittedSecrets(t *testing.T) {
	root := RepoRoot()
	files, err := GitFiles(root)
	if err != nil {
		t.Fatal(err)
	}
	report(t, CheckCommittedSecrets(root, files))
}

// The scan finds each kind of committed secret: files written to a temp
// tree, YAML produced by marshalling parsed structures (never by editing
// indented text), including the real docker-compose.yml with a token added.
func TestCommittedSecretsCheckCatchesLiterals(t *testing.T) {
	root := RepoRoot()
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose map[string]any
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	env := compose["services"].(map[string]any)["grayscale"].(map[string]any)["environment"].(map[string]any)
	env["DAPR_API_TOKEN"] = "9f2c4e6a8b0d1f3e"
	withToken, err := yaml.Marshal(compose)
	if err != nil {
		t.Fatal(err)
	}
	kubeEnv, _ := yaml.Marshal(map[string]any{"apiVersion": "v1", "kind": "Pod", "spec": map[string]any{"containers": []any{map[string]any{"name": "app", "env": []any{map[string]any{"name": "APP_API_TOKEN", "value": "a1b2c3d4e5"}}}}}})
	component, _ := yaml.Marshal(map[string]any{"kind": "Component", "spec": map[string]any{"metadata": []any{map[string]any{"name": "redisPassword", "value": "hunter22"}}}})
	tokenKey, _ := yaml.Marshal(map[string]any{"stringData": map[string]any{"token": "s3cr3tvalue"}})
	for name, c := range map[string]struct {
		file, content, want string
	}{
		"a token in docker-compose.yml":      {"docker-compose.yml", string(withToken), "DAPR_API_TOKEN holds a literal secret"},
		"an env token in a manifest":         {"deploy/kubernetes/base/apps/x.yaml", string(kubeEnv), "[APP_API_TOKEN].value"},
		"a Redis password in a component":    {"components/statestore.yaml", string(component), "[redisPassword].value"},
		"a token: value":                     {"deploy/kubernetes/base/secret.yaml", string(tokenKey), ".stringData.token"},
		"a committed secret file":            {"deploy/kubernetes/base/secrets/dapr-api-token", "abc", "a secret file is committed"},
		"the old development token":          {"deploy/kubernetes/base/apps/y.yaml", "# dev-api-token-change-me\n", "dev-api-token-change-me"},
		"credentials in a URL":               {"deploy/compose/secrets/../x.json", `{"u": "mysql://events:pw123@mariadb/events"}`, "credentials in a URL"},
		"a header value in nginx's template": {"web/nginx/default.conf.template", "proxy_set_header dapr-api-token: abcdef123;\n", "a dapr-api-token value"},
		"an env file with a password":        {"deploy/compose/app.env", "REDIS_PASSWORD=abcdef\n", "REDIS_PASSWORD holds a literal secret"},
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, c.file)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(c.content), 0o644); err != nil {
			t.Fatal(err)
		}
		expectFinding(t, name, CheckCommittedSecrets(dir, []string{filepath.Clean(c.file)}), c.want)
	}
}

// Without the operator's files the overlays do not render, and the check
// says how to create them; kustomize itself fails too.
func TestKubeRenderingNeedsTheSecretFiles(t *testing.T) {
	root := RepoRoot()
	tmp := t.TempDir()
	if out, err := exec.Command("cp", "-r", filepath.Join(root, KustomizeDir), tmp).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	base := filepath.Join(tmp, "kubernetes", "base")
	entries, _ := os.ReadDir(filepath.Join(base, "secrets"))
	for _, e := range entries {
		if e.Name() != "README.md" {
			os.Remove(filepath.Join(base, "secrets", e.Name()))
		}
	}
	err := KubeSecretFiles(base)
	if err == nil || !strings.Contains(err.Error(), "make k8s-secrets") {
		t.Fatalf("no error saying how to create the secrets: %v", err)
	}
	t.Logf("refused: %v", err)
	kustomize, kerr := Kustomize(root)
	if kerr != nil {
		t.Fatal(kerr)
	}
	if _, err := Render(kustomize, filepath.Join(tmp, "kubernetes", "overlays", "native")); err == nil {
		t.Error("kustomize rendered the overlay without the secret files")
	}
	// And the script makes them, after which both pass.
	if out, err := exec.Command(filepath.Join(root, "scripts", "k8s-secrets.sh"), filepath.Join(base, "secrets")).CombinedOutput(); err != nil {
		t.Fatalf("k8s-secrets.sh: %v %s", err, out)
	}
	if err := KubeSecretFiles(base); err != nil {
		t.Fatal(err)
	}
	if _, err := Render(kustomize, filepath.Join(tmp, "kubernetes", "overlays", "native")); err != nil {
		t.Fatal(err)
	}
}

// The compose script: 0600 files in a 0700 folder, a token per app, nothing
// rewritten on a second run.
func TestComposeSecretsScript(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	script := filepath.Join(RepoRoot(), "scripts", "compose-secrets.sh")
	if out, err := exec.Command(script, dir).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	before := map[string]string{}
	tokens := map[string]string{}
	_ = filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			if info.Mode().Perm() != 0o700 {
				t.Errorf("%s: mode %o, want 700", path, info.Mode().Perm())
			}
			return nil
		}
		// Env files stay the invoker's (compose reads them); the rest go to
		// the container user that reads them, 0400, when root runs it.
		want := os.FileMode(0o600)
		if !strings.HasSuffix(path, ".env") && !strings.HasSuffix(path, "redis_password") && os.Geteuid() == 0 {
			want = 0o400
		}
		if info.Mode().Perm() != want {
			t.Errorf("%s: mode %o, want %o", path, info.Mode().Perm(), want)
		}
		raw, _ := os.ReadFile(path)
		before[path] = string(raw)
		if strings.HasSuffix(path, ".env") && !strings.HasSuffix(path, "web.env") {
			for _, line := range strings.Split(string(raw), "\n") {
				if k, v, ok := strings.Cut(line, "="); ok && strings.HasSuffix(k, "API_TOKEN") {
					if other, dup := tokens[v]; dup {
						t.Errorf("%s %s repeats %s", path, k, other)
					}
					tokens[v] = path + " " + k
					if len(v) != 64 {
						t.Errorf("%s %s: %d hex digits, want 64", path, k, len(v))
					}
				}
			}
		}
		return nil
	})
	if len(tokens) != 6 {
		t.Errorf("%d tokens, want 6 (two per app)", len(tokens))
	}
	if out, err := exec.Command(script, dir).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for path, content := range before {
		if raw, _ := os.ReadFile(path); string(raw) != content {
			t.Errorf("%s changed on a second run", path)
		}
	}
}

func TestEventsUserGrants(t *testing.T) {
	scripts, err := EventsGrantScripts(RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	report(t, CheckEventsGrants(scripts))
	for name, bad := range map[string]string{
		"ALL on the database": "GRANT ALL ON `events`.* TO 'events'@'%'",
		"DELETE too":          "GRANT SELECT, INSERT, DELETE ON image_evts TO 'events'@'%'",
		"another table":       "GRANT SELECT, INSERT ON schema_migrations TO 'events'@'%'",
	} {
		with := map[string]string{}
		for k, v := range scripts {
			with[k] = v
		}
		with["extra.sh"] = bad
		expectFinding(t, name, CheckEventsGrants(with), "may only SELECT, INSERT on image_evts")
	}
	expectFinding(t, "no grant at all", CheckEventsGrants(map[string]string{"x.sh": "CREATE USER 'events'@'%';"}), "no script grants")
}

func TestComposeEventsWaitForTheGrants(t *testing.T) {
	root, up := RepoRoot(), makeUp(t)
	p, err := LoadCompose(context.Background(), root, ComposeDefault...)
	if err != nil {
		t.Fatal(err)
	}
	s := p.Services["events"]
	delete(s.DependsOn, "db-grants")
	p.Services["events"] = s
	expectFinding(t, "events not waiting for db-grants", CheckCompose(root, p, up), "mariadb-grants.sh")
}

// The baselines the memory check uses are the services' own: the
// MEMORY_BASELINE constant in each app.rs, read from the source, so the
// two cannot drift apart.
func TestMemoryBaselineMirrorsTheServices(t *testing.T) {
	for app, file := range map[string]string{
		"image-api-grayscale": "services/grayscale/src/app.rs",
		"image-api-classify":  "services/classify/src/app.rs",
	} {
		raw, err := os.ReadFile(filepath.Join(RepoRoot(), file))
		if err != nil {
			t.Fatal(err)
		}
		var native, wasm int64
		found := false
		for _, line := range strings.Split(string(raw), "\n") {
			if strings.HasPrefix(line, "pub const MEMORY_BASELINE: Baseline = Baseline::mib(") {
				_, err := fmt.Sscanf(strings.TrimPrefix(line, "pub const MEMORY_BASELINE: Baseline = Baseline::mib("), "%d, %d);", &native, &wasm)
				if err != nil {
					t.Fatalf("%s: cannot read MEMORY_BASELINE from %q: %v", file, line, err)
				}
				found = true
			}
		}
		if !found {
			t.Fatalf("%s: no `pub const MEMORY_BASELINE: Baseline = Baseline::mib(native, wasm);`", file)
		}
		want := MemoryBaseline[app]
		if want.Native != native<<20 || want.Wasm != wasm<<20 {
			t.Errorf("%s: MEMORY_BASELINE is %d/%d MiB, tools/validate's MemoryBaseline %d/%d MiB", app, native, wasm, want.Native>>20, want.Wasm>>20)
		}
	}
}

// The Dapr install's values: as shipped they pass; mTLS off or daprd
// keeping its capabilities fail.
func TestDaprValues(t *testing.T) {
	values, err := LoadDaprValues(RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	report(t, CheckDaprValues(values))
	for name, mutate := range map[string]func(v map[string]any){
		"mtls off": func(v map[string]any) {
			v["global"] = map[string]any{"mtls": map[string]any{"enabled": false}}
		},
		"capabilities kept": func(v map[string]any) { delete(v, "dapr_sidecar_injector") },
	} {
		v, _ := LoadDaprValues(RepoRoot())
		mutate(v)
		if errs := CheckDaprValues(v); len(errs) == 0 {
			t.Errorf("%s: no finding", name)
		} else {
			t.Logf("%s: %v", name, errs[0])
		}
	}
}

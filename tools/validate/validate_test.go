package validate

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func makeUp(t *testing.T) []Sidecar {
	t.Helper()
	sidecars, err := MakeUp(RepoRoot())
	if err != nil {
		t.Fatal(err)
	}
	return sidecars
}

func report(t *testing.T, errs []error) {
	t.Helper()
	for _, e := range errs {
		t.Error(e)
	}
}

// Both compose variants load through the compose-spec loader (schema and
// all) and keep every promise of the deployment.
func TestComposeVariants(t *testing.T) {
	root, up := RepoRoot(), makeUp(t)
	for name, files := range map[string][]string{"default": ComposeDefault, "wasm": ComposeWasm} {
		t.Run(name, func(t *testing.T) {
			p, err := LoadCompose(context.Background(), root, files...)
			if err != nil {
				t.Fatalf("compose-spec loader: %v", err)
			}
			report(t, CheckCompose(root, p, up))
		})
	}
}

func TestComposeWasmVariantRunsTheServicesUnderWasmEdge(t *testing.T) {
	root, up := RepoRoot(), makeUp(t)
	p, err := LoadCompose(context.Background(), root, ComposeWasm...)
	if err != nil {
		t.Fatal(err)
	}
	apps := 0
	for name, s := range p.Services {
		if strings.HasPrefix(s.Image, "daprio/daprd") {
			app, err := appOfSidecar(p, name, s)
			if err != nil {
				t.Fatal(err)
			}
			apps++
			a := p.Services[app]
			if a.Platform != "wasi/wasm" || a.Runtime != "io.containerd.wasmedge.v1" || a.Build == nil || !strings.HasSuffix(a.Build.Target, "-wasm") {
				t.Errorf("%s: platform %q runtime %q, want wasi/wasm on io.containerd.wasmedge.v1 from a *-wasm target", app, a.Platform, a.Runtime)
			}
		}
	}
	if apps != len(up) {
		t.Errorf("%d apps with sidecars, make up runs %d", apps, len(up))
	}
	def, err := LoadCompose(context.Background(), root, ComposeDefault...)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range def.Services {
		if s.Platform != "" || s.Runtime != "" {
			t.Errorf("%s: the default variant must run natively, got platform %q runtime %q", name, s.Platform, s.Runtime)
		}
	}
}

// A misspelt key is refused by the loader itself, as `docker compose` would.
func TestComposeRejectsAMisspeltKey(t *testing.T) {
	root := RepoRoot()
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, typo := range [][2]string{{"    read_only: true\n", "    readonly: true\n"}, {"    healthcheck:\n", "    healtcheck:\n"}, {"\nsecrets:\n", "\nsecret:\n"}} {
		if !strings.Contains(string(raw), typo[0]) {
			t.Fatalf("docker-compose.yml has no %q to misspell", typo[0])
		}
		bad := filepath.Join(t.TempDir(), "docker-compose.yml")
		if err := os.WriteFile(bad, []byte(strings.Replace(string(raw), typo[0], typo[1], 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCompose(context.Background(), root, bad); err == nil {
			t.Errorf("the loader accepted %q", strings.TrimSpace(typo[1]))
		} else {
			t.Logf("%q refused: %v", strings.TrimSpace(typo[1]), err)
		}
	}
}

// The flag check fails when a sidecar drifts from make up.
func TestComposeCheckCatchesDrift(t *testing.T) {
	root, up := RepoRoot(), makeUp(t)
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, drift := range [][2]string{
		{"      - --dapr-http-port\n      - \"3503\"\n", "      - --dapr-http-port\n      - \"3599\"\n"},
		{"      - 32Mi\n", "      - 4Mi\n"},
		{"image: redis:7.4.1-alpine", "image: redis:latest"},
		{"- \"127.0.0.1:${WEB_PORT:-8080}:8080\"", "- \"${WEB_PORT:-8080}:8080\""},
	} {
		if !strings.Contains(string(raw), drift[0]) {
			t.Fatalf("docker-compose.yml has no %q", drift[0])
		}
		// Written beside the original so relative paths resolve alike.
		bad := filepath.Join(root, ".drift-compose.yml")
		if err := os.WriteFile(bad, []byte(strings.Replace(string(raw), drift[0], drift[1], 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := LoadCompose(context.Background(), root, bad)
		os.Remove(bad)
		if err != nil {
			t.Fatal(err)
		}
		if errs := CheckCompose(root, p, up); len(errs) == 0 {
			t.Errorf("no finding for %q", strings.TrimSpace(drift[1]))
		} else {
			t.Logf("%q: %v", strings.TrimSpace(drift[1]), errs[0])
		}
	}
}

func TestComposeConfigDiffersOnlyInZipkinAddress(t *testing.T) {
	report(t, CheckComposeConfig(RepoRoot()))
}

func TestDaprRunFile(t *testing.T) {
	report(t, CheckDaprRun(RepoRoot(), makeUp(t)))
}

func renderAll(t *testing.T) map[string][]byte {
	t.Helper()
	root := RepoRoot()
	kustomize, err := Kustomize(root)
	if err != nil {
		t.Fatal(err)
	}
	overlays, err := Overlays(root)
	if err != nil || len(overlays) == 0 {
		t.Fatalf("no overlays: %v", err)
	}
	if err := KubeSecretFiles(filepath.Join(root, KustomizeDir, "base")); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, dir := range overlays {
		rendered, err := Render(kustomize, dir)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(dir)] = rendered
	}
	return out
}

// Every overlay renders, every object decodes strictly into its
// Kubernetes or Dapr type, and the deployment matches make up.
func TestKustomizeOverlays(t *testing.T) {
	up := makeUp(t)
	for name, rendered := range renderAll(t) {
		t.Run(name, func(t *testing.T) {
			objs, err := DecodeStrict(rendered)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%d objects", len(objs))
			report(t, CheckKube(objs, up, name == "wasmedge"))
		})
	}
}

// A typo in a Kubernetes field or in a Dapr resource fails decoding.
func TestKubeDecodingRejectsTypos(t *testing.T) {
	rendered := string(renderAll(t)["native"])
	for _, typo := range [][2]string{
		{"readinessProbe:", "readinesProbe:"},
		{"runAsNonRoot:", "runAsNonroot:"},
		{"averageUtilization:", "averageUtilisation:"},
		{"circuitBreaker: events-breaker", "circuitBreakr: events-breaker"},
		{"endpointAddress:", "endpointAdress:"},
		{"value: appid", "vaule: appid"},
		{"kind: Deployment\n", "kind: Deployment\nstatus: {}\nspec2: {}\n"},
	} {
		if !strings.Contains(rendered, typo[0]) {
			t.Fatalf("rendered output has no %q", typo[0])
		}
		if _, err := DecodeStrict([]byte(strings.Replace(rendered, typo[0], typo[1], 1))); err == nil {
			t.Errorf("decoding accepted %q", strings.TrimSpace(typo[1]))
		} else {
			t.Logf("%q refused: %v", strings.TrimSpace(typo[1]), err)
		}
	}
}

// The semantic check fails when the cluster drifts from make up.
func TestKubeCheckCatchesDrift(t *testing.T) {
	up := makeUp(t)
	rendered := string(renderAll(t)["native"])
	for _, drift := range [][2]string{
		{"dapr.io/app-port: \"9005\"", "dapr.io/app-port: \"9015\""},
		{"path: /readyz", "path: /healthz"},
		{"readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"},
		{"value: appid", "value: name"},
	} {
		if !strings.Contains(rendered, drift[0]) {
			t.Fatalf("rendered output has no %q", drift[0])
		}
		objs, err := DecodeStrict([]byte(strings.Replace(rendered, drift[0], drift[1], 1)))
		if err != nil {
			t.Fatal(err)
		}
		if errs := CheckKube(objs, up, false); len(errs) == 0 {
			t.Errorf("no finding for %q", drift[1])
		} else {
			t.Logf("%q: %v", drift[1], errs[0])
		}
	}
}

// The web front and the Prometheus and Grafana ConfigMaps render (from the
// repository's files), decode strictly and keep their promises; a web front
// sending one app's token to another fails.
func TestWebAndMonitoring(t *testing.T) {
	root := RepoRoot()
	kustomize, err := Kustomize(root)
	if err != nil {
		t.Fatal(err)
	}
	rendered, err := RenderWebAndMonitoring(kustomize, root)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := DecodeStrict(rendered)
	if err != nil {
		t.Fatal(err)
	}
	report(t, CheckWebAndMonitoring(root, objs))
	swapped := strings.Replace(string(rendered), "name: image-api-classify-dapr-api-token", "name: image-api-grayscale-dapr-api-token", 1)
	objs, err = DecodeStrict([]byte(swapped))
	if err != nil {
		t.Fatal(err)
	}
	if errs := CheckWebAndMonitoring(root, objs); len(errs) == 0 {
		t.Error("no finding for the web front sending grayscale's token to classify")
	} else {
		t.Logf("swapped token: %v", errs[0])
	}
}

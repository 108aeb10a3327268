package validate

// The production profile's security promises (issue 16): a Dapr API token
// and an app API token per app, mTLS and deny-by-default access control on
// events-service, apps reachable only by their sidecar, rate limits on, the
// decode memory budget under the container limit, and no secret committed.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
	configurationapi "github.com/dapr/dapr/pkg/apis/configuration/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// MemoryBaseline is each image service's memory before it decodes anything,
// natively and under WasmEdge, in bytes. It mirrors MEMORY_BASELINE in
// services/grayscale/src/app.rs and services/classify/src/app.rs (issue 15):
// change them together. DECODE_MEMORY_BYTES plus the baseline must stay
// below the container's memory limit, or the limit kills the process
// before the decode budget refuses a request.
var MemoryBaseline = map[string]struct{ Native, Wasm int64 }{
	"image-api-grayscale": {Native: 64 << 20, Wasm: 96 << 20},
	"image-api-classify":  {Native: 160 << 20, Wasm: 192 << 20},
}

// The apps whose routes are rate limited, and what they must trust: only
// the sidecar that shares their network namespace (or pod), on loopback.
const trustedFront = "127.0.0.1/32"

var rateLimited = []string{"image-api-grayscale", "image-api-classify"}

// The Configuration rules for events-service: who may call what.
var eventsCallers = []string{"image-api-grayscale", "image-api-classify"}

const appTrustDomain = "public"

func envValue(s types.ServiceConfig, k string) string {
	if v := s.Environment[k]; v != nil {
		return *v
	}
	return ""
}

// checkComposeSecurity: tokens, exposure, rate limits and the memory budget
// of each app and its sidecar in a loaded compose project.
func checkComposeSecurity(errs *problems, p *types.Project, sidecars map[string]composeSidecar, want map[string]Sidecar) {
	tokens := map[string]string{} // token → who has it
	ids := make([]string, 0, len(sidecars))
	for id := range sidecars {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		sc := sidecars[id]
		app, ok := p.Services[sc.app]
		if !ok {
			continue
		}
		for _, k := range []string{"DAPR_API_TOKEN", "APP_API_TOKEN"} {
			got := envValue(sc.service, k)
			if got == "" {
				errs.add("%s: no %s: the sidecar of %s runs without a token (env_file deploy/compose/secrets/<app>.env, make compose-secrets)", sc.name, k, id)
				continue
			}
			if envValue(app, k) != got {
				errs.add("%s: %s differs from its sidecar's (%s): the app must use the same token", sc.app, k, sc.name)
			}
			if other, dup := tokens[got]; dup {
				errs.add("%s: %s is the same as %s's: one token per app", sc.name, k, other)
			}
			tokens[got] = sc.name + " " + k
		}
		// Exposure: the app listens on loopback (its sidecar shares the
		// namespace), its metrics on a listener of their own.
		if h := envValue(app, "APP_HOST"); h != "127.0.0.1" {
			errs.add("%s: APP_HOST %q, want 127.0.0.1 (only its sidecar reaches it)", sc.app, h)
		}
		if m := envValue(app, "METRICS_ADDRESS"); !strings.HasPrefix(m, "0.0.0.0:") {
			errs.add("%s: METRICS_ADDRESS %q, want 0.0.0.0:<port> (Prometheus scrapes only /metrics there)", sc.app, m)
		}
		wasm := app.Platform == "wasi/wasm"
		checkRateLimits(errs, sc.app, id, want[id], func(k string) string { return envValue(app, k) })
		checkMemoryBudget(errs, sc.app, id, envValue(app, "DECODE_MEMORY_BYTES"), memoryLimit(app), wasm)
	}
	// The web front sends each sidecar its own token.
	if web, ok := p.Services["web"]; ok {
		for envName, id := range map[string]string{"GRAYSCALE_DAPR_TOKEN": "image-api-grayscale", "CLASSIFY_DAPR_TOKEN": "image-api-classify", "EVENTS_DAPR_TOKEN": "events-service"} {
			if sc, ok := sidecars[id]; ok && (envValue(web, envName) == "" || envValue(web, envName) != envValue(sc.service, "DAPR_API_TOKEN")) {
				errs.add("web: %s is not %s's DAPR_API_TOKEN (nginx sends it to that sidecar)", envName, sc.name)
			}
		}
		for _, k := range []string{"WEB_RATE", "WEB_BURST"} {
			if envValue(web, k) == "" {
				errs.add("web: %s unset (nginx's limit_req)", k)
			}
		}
	}
	// Redis requires a password, and the sidecars that use it have it.
	if r, ok := p.Services["redis"]; ok {
		conf := false
		for _, a := range r.Command {
			conf = conf || strings.HasPrefix(a, "/run/secrets/")
		}
		if !conf {
			errs.add("redis: no config file from a compose secret (requirepass)")
		}
		for _, id := range rateLimited {
			if sc, ok := sidecars[id]; ok && envValue(sc.service, "REDIS_PASSWORD") == "" {
				errs.add("%s: no REDIS_PASSWORD (the state store's envRef)", sc.name)
			}
		}
	}
}

var policyItem = regexp.MustCompile(`^/[A-Za-z0-9_/-]+=[0-9]+/[0-9]+(\.[0-9]+)?$`)

// checkRateLimits: the image services limit as make up does and trust only
// their sidecar.
func checkRateLimits(errs *problems, what, id string, mu Sidecar, env func(string) string) {
	limited := false
	for _, r := range rateLimited {
		limited = limited || r == id
	}
	if !limited {
		return
	}
	pol := env("RATE_LIMIT_POLICIES")
	switch {
	case pol == "":
		errs.add("%s: no RATE_LIMIT_POLICIES: the rate limiter is off", what)
		return
	case mu.RateLimits["RATE_LIMIT_POLICIES"] != "" && pol != mu.RateLimits["RATE_LIMIT_POLICIES"]:
		errs.add("%s: RATE_LIMIT_POLICIES %q, make up: %q", what, pol, mu.RateLimits["RATE_LIMIT_POLICIES"])
	}
	for _, item := range strings.Split(pol, ",") {
		if !policyItem.MatchString(strings.TrimSpace(item)) {
			errs.add("%s: RATE_LIMIT_POLICIES item %q is not route=burst/rate", what, item)
		}
	}
	if fm := env("RATE_LIMIT_FAIL_MODE"); fm != mu.RateLimits["RATE_LIMIT_FAIL_MODE"] {
		errs.add("%s: RATE_LIMIT_FAIL_MODE %q, make up: %q", what, fm, mu.RateLimits["RATE_LIMIT_FAIL_MODE"])
	}
	if tp := env("RATE_LIMIT_TRUSTED_PROXIES"); tp != trustedFront {
		errs.add("%s: RATE_LIMIT_TRUSTED_PROXIES %q, want %s (only the sidecar in front of it)", what, tp, trustedFront)
	}
}

// checkMemoryBudget: DECODE_MEMORY_BYTES + baseline < limit.
func checkMemoryBudget(errs *problems, what, id, budget string, limit int64, wasm bool) {
	base, ok := MemoryBaseline[id]
	if !ok {
		return
	}
	b, err := strconv.ParseInt(budget, 10, 64)
	if err != nil || b <= 0 {
		errs.add("%s: DECODE_MEMORY_BYTES %q is not a positive byte count", what, budget)
		return
	}
	baseline, variant := base.Native, "native"
	if wasm {
		baseline, variant = base.Wasm, "wasm"
	}
	if b+baseline >= limit {
		errs.add("%s: DECODE_MEMORY_BYTES %d + %s baseline %d = %d, not below the memory limit %d", what, b, variant, baseline, b+baseline, limit)
	}
}

// CheckAccessControl: events-service's Configuration denies by default and
// lets only the image services POST create_event, over mTLS identities.
func CheckAccessControl(what string, c *configurationapi.Configuration, namespace string) []error {
	var errs problems
	ac := c.Spec.AccessControlSpec
	if ac == nil {
		errs.add("%s: no accessControl: anyone who reaches events-service's sidecar may invoke it", what)
		return errs
	}
	if ac.DefaultAction != "deny" {
		errs.add("%s: accessControl.defaultAction %q, want deny", what, ac.DefaultAction)
	}
	if ac.TrustDomain != appTrustDomain {
		errs.add("%s: accessControl.trustDomain %q, want %s (the trust domain Sentry signs the apps' identities in)", what, ac.TrustDomain, appTrustDomain)
	}
	seen := map[string]bool{}
	for _, pol := range ac.AppPolicies {
		allowed := false
		for _, c := range eventsCallers {
			allowed = allowed || c == pol.AppName
		}
		if !allowed {
			errs.add("%s: a policy for %q: only %v may invoke events-service", what, pol.AppName, eventsCallers)
			continue
		}
		seen[pol.AppName] = true
		if pol.DefaultAction != "deny" {
			errs.add("%s: %s's defaultAction %q, want deny (only create_event allowed)", what, pol.AppName, pol.DefaultAction)
		}
		if pol.TrustDomain != appTrustDomain || pol.Namespace != namespace {
			errs.add("%s: %s's trustDomain/namespace %q/%q, want %s/%s", what, pol.AppName, pol.TrustDomain, pol.Namespace, appTrustDomain, namespace)
		}
		for _, op := range pol.AppOperationActions {
			if op.Action != "allow" {
				continue
			}
			if op.Operation != "/create_event" || len(op.HTTPVerb) != 1 || op.HTTPVerb[0] != "POST" {
				errs.add("%s: %s may %v %s: only POST /create_event is allowed", what, pol.AppName, op.HTTPVerb, op.Operation)
			}
		}
	}
	for _, c := range eventsCallers {
		if !seen[c] {
			errs.add("%s: no policy for %s (its create_event calls would be denied)", what, c)
		}
	}
	if c.Spec.MTLSSpec != nil && c.Spec.MTLSSpec.Enabled != nil && !*c.Spec.MTLSSpec.Enabled {
		errs.add("%s: mtls disabled: access control cannot verify callers", what)
	}
	return errs
}

// checkKubeApp: one Dapr-enabled Deployment's tokens, rate limits and
// memory budget (env: its app container's plain values; refs: secretKeyRef
// by env name).
func checkKubeApp(errs *problems, name, id string, ann map[string]string, c corev1.Container, mu Sidecar, wasm bool, secrets map[string]*corev1.Secret, usedSecrets map[string]string) {
	env := map[string]string{}
	refs := map[string]*corev1.SecretKeySelector{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef
		}
	}
	for annotation, envName := range map[string]string{"dapr.io/api-token-secret": "DAPR_API_TOKEN", "dapr.io/app-token-secret": "APP_API_TOKEN"} {
		secret := ann[annotation]
		if secret == "" {
			errs.add("Deployment %s: no %s annotation: its sidecar runs without %s", name, annotation, envName)
			continue
		}
		if s, ok := secrets[secret]; !ok {
			errs.add("Deployment %s: %s %q is not a rendered Secret", name, annotation, secret)
		} else if _, ok := s.Data["token"]; !ok {
			if _, ok := s.StringData["token"]; !ok {
				errs.add("Deployment %s: Secret %s has no key token (what Dapr reads)", name, secret)
			}
		}
		if other, dup := usedSecrets[secret]; dup {
			errs.add("Deployment %s: %s %s is also %s's: one token per app", name, annotation, secret, other)
		}
		usedSecrets[secret] = name
		if r := refs[envName]; r == nil || r.Name != secret || r.Key != "token" {
			errs.add("Deployment %s: env %s must read Secret %s key token (the same token as %s)", name, envName, secret, annotation)
		}
		if env[envName] != "" {
			errs.add("Deployment %s: env %s is a literal", name, envName)
		}
	}
	if !strings.HasPrefix(env["METRICS_ADDRESS"], "0.0.0.0:") {
		errs.add("Deployment %s: METRICS_ADDRESS %q, want 0.0.0.0:<port>", name, env["METRICS_ADDRESS"])
	} else if _, port, _ := strings.Cut(env["METRICS_ADDRESS"], ":"); ann["prometheus.io/port"] != port {
		errs.add("Deployment %s: prometheus.io/port %q, the metrics listener is on %s", name, ann["prometheus.io/port"], port)
	}
	checkRateLimits(errs, "Deployment "+name, id, mu, func(k string) string { return env[k] })
	checkMemoryBudget(errs, "Deployment "+name, id, env["DECODE_MEMORY_BYTES"], c.Resources.Limits.Memory().Value(), wasm)
}

// GitFiles lists the files git tracks under root.
func GitFiles(root string) ([]string, error) {
	out, err := exec.Command("git", "-C", root, "ls-files", "-z").Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files: %w", err)
	}
	var files []string
	for _, f := range strings.Split(string(out), "\x00") {
		if f != "" {
			files = append(files, f)
		}
	}
	return files, nil
}

// Where a committed secret would be shipped: the deployment files, the
// Dapr components, the web front's config, the run file.
func deploymentFile(f string) bool {
	for _, prefix := range []string{"deploy/", "components/", "observability/", "web/nginx/", "docker-compose", "dapr.yaml", "grafana/provisioning/"} {
		if strings.HasPrefix(f, prefix) {
			return true
		}
	}
	return false
}

var (
	// A key or env name that holds a secret (DAPR_API_TOKEN, redisPassword,
	// token, apiKey), not one that names where a secret is
	// (MARIADB_PASSWORD_FILE, dapr.io/api-token-secret).
	secretName = regexp.MustCompile(`(?i)(token|password|passwd|secret[_-]?key|api[_-]?key)$`)
	// user:password@ in a URL.
	urlCredentials = regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^/\s:@"'<>]+:[^@\s"'/<>${}]+@`)
	// The header with a value: dapr-api-token: x, dapr-api-token=x.
	headerLiteral = regexp.MustCompile(`(?i)dapr-api-token["']?\s*[:=]\s*["']?[A-Za-z0-9_.+/-]{6,}`)
	knownLeaks    = []string{"dev-api-token-change-me", "change-me", "changeme"}
)

// notSecret: values a secret-named key may hold without holding a secret.
func notSecret(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "0", "1", "true", "false", "yes", "no":
		return true
	}
	// A reference: a path, an interpolation, a file name.
	return strings.HasPrefix(v, "/") || strings.HasPrefix(v, "${") || strings.HasPrefix(v, "$(")
}

// CheckCommittedSecrets reads the deployment files among files (paths
// relative to root, as git lists them) and reports any that hold a secret:
// a generated secret file committed, a secret-named key or env var with a
// literal value, credentials in a URL, a dapr-api-token header value, a
// known development token.
func CheckCommittedSecrets(root string, files []string) []error {
	var errs problems
	for _, f := range files {
		if !deploymentFile(f) {
			continue
		}
		base := filepath.Base(f)
		if (strings.HasPrefix(f, "deploy/compose/secrets/") || strings.HasPrefix(f, "deploy/kubernetes/base/secrets/")) && base != "README.md" {
			errs.add("%s: a secret file is committed (generated by make compose-secrets / make k8s-secrets, git-ignored)", f)
			continue
		}
		raw, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			errs.add("%s: %v", f, err)
			continue
		}
		text := string(raw)
		for _, leak := range knownLeaks {
			if strings.Contains(strings.ToLower(text), leak) {
				errs.add("%s: holds the development secret %q", f, leak)
			}
		}
		if m := urlCredentials.FindString(text); m != "" && !strings.Contains(m, "user:password@") {
			errs.add("%s: credentials in a URL (%s…)", f, m[:min(len(m), 16)])
		}
		if m := headerLiteral.FindString(text); m != "" && !strings.Contains(m, "${") {
			errs.add("%s: a dapr-api-token value (%s…)", f, m[:min(len(m), 20)])
		}
		switch filepath.Ext(f) {
		case ".yaml", ".yml", ".json":
			for i, doc := range bytes.Split(raw, []byte("\n---")) {
				var v any
				if err := yaml.Unmarshal(doc, &v); err != nil {
					continue // not this check's business; the loaders report it
				}
				for _, path := range secretLiterals(v, "") {
					errs.add("%s (document %d): %s holds a literal secret", f, i, path)
				}
			}
		case ".env":
			sc := bufio.NewScanner(bytes.NewReader(raw))
			for sc.Scan() {
				k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
				if ok && !strings.HasPrefix(k, "#") && secretName.MatchString(k) && !notSecret(strings.Trim(v, `"'`)) {
					errs.add("%s: %s holds a literal secret", f, k)
				}
			}
		}
	}
	return errs
}

// secretLiterals walks parsed YAML: a secret-named map key with a literal
// string, or a {name: <secret-named>, value: <literal>} item (Kubernetes env,
// Dapr component metadata).
func secretLiterals(v any, path string) []string {
	var out []string
	switch t := v.(type) {
	case map[string]any:
		if name, ok := t["name"].(string); ok && secretName.MatchString(name) {
			if val, ok := t["value"].(string); ok && !notSecret(val) {
				out = append(out, path+"["+name+"].value")
			}
		}
		for k, child := range t {
			if s, ok := child.(string); ok && secretName.MatchString(k) && !notSecret(s) {
				out = append(out, path+"."+k)
				continue
			}
			out = append(out, secretLiterals(child, path+"."+k)...)
		}
	case []any:
		for i, child := range t {
			out = append(out, secretLiterals(child, fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return out
}

// A GRANT statement (SQL keywords upper case, as the scripts write them)
// to the events user.
var grantToEvents = regexp.MustCompile("\\bGRANT\\s+([A-Z][A-Z, ]*?)\\s+ON\\s+(\\S+)\\s+TO\\s+'events'")

// CheckEventsGrants: whatever the MariaDB scripts grant events-service's
// user is SELECT, INSERT on image_evts, and nothing more; something grants
// it that (or it could not record an event).
func CheckEventsGrants(scripts map[string]string) []error {
	var errs problems
	granted := false
	names := make([]string, 0, len(scripts))
	for n := range scripts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		var code []string // the script without its comment lines
		for _, line := range strings.Split(scripts[name], "\n") {
			if !strings.HasPrefix(strings.TrimSpace(line), "#") {
				code = append(code, line)
			}
		}
		for _, m := range grantToEvents.FindAllStringSubmatch(strings.Join(code, "\n"), -1) {
			privs := strings.Join(strings.Fields(strings.ToUpper(m[1])), " ")
			target := strings.ReplaceAll(m[2], "`", "")
			if privs != "SELECT, INSERT" || (target != "image_evts" && !strings.HasSuffix(target, ".image_evts")) {
				errs.add("%s: grants events %s ON %s: events-service's user may only SELECT, INSERT on image_evts", name, privs, m[2])
				continue
			}
			granted = true
		}
	}
	if !granted {
		errs.add("no script grants events SELECT, INSERT on image_evts")
	}
	return errs
}

// EventsGrantScripts reads the MariaDB scripts compose and Kubernetes share.
func EventsGrantScripts(root string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range []string{"mariadb-users.sh", "mariadb-grants.sh"} {
		raw, err := os.ReadFile(filepath.Join(root, KustomizeDir, "base", "backing", f))
		if err != nil {
			return nil, err
		}
		out[f] = string(raw)
	}
	return out, nil
}

// checkComposeGrants: events starts after the one-shot that runs the grants.
func checkComposeGrants(errs *problems, p *types.Project) {
	events, ok := p.Services["events"]
	if !ok {
		return
	}
	for dep, d := range events.DependsOn {
		s := p.Services[dep]
		if s.Restart == "no" && d.Condition == types.ServiceConditionCompletedSuccessfully && strings.Contains(strings.Join(s.Command, " "), "mariadb-grants.sh") {
			return
		}
	}
	errs.add("events: does not wait (service_completed_successfully) for the one-shot that runs mariadb-grants.sh: its DB user would have no privileges")
}

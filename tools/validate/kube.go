package validate

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	componentsapi "github.com/dapr/dapr/pkg/apis/components/v1alpha1"
	configurationapi "github.com/dapr/dapr/pkg/apis/configuration/v1alpha1"
	resiliencyapi "github.com/dapr/dapr/pkg/apis/resiliency/v1alpha1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	nodev1 "k8s.io/api/node/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// KustomizeDir holds the kustomize base and overlays.
const KustomizeDir = "deploy/kubernetes"

// Overlays lists deploy/kubernetes/overlays/*.
func Overlays(root string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, KustomizeDir, "overlays"))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, filepath.Join(root, KustomizeDir, "overlays", e.Name()))
		}
	}
	return out, nil
}

// Kustomize is the kustomize binary ($KUSTOMIZE, else .cache/tools/bin).
func Kustomize(root string) (string, error) {
	bin := os.Getenv("KUSTOMIZE")
	if bin == "" {
		bin = filepath.Join(root, ".cache", "tools", "kustomize-v5.7.1", "kustomize")
	}
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("kustomize not found (%v): `make validate-deploy` installs it", err)
	}
	return bin, nil
}

// Render runs `kustomize build dir`.
func Render(kustomize, dir string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(kustomize, "build", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w: %s", dir, err, stderr.String())
	}
	return out, nil
}

// WebAndMonitoringDir holds the web front and the Prometheus and Grafana
// ConfigMaps, built from files outside it (web/, observability/, grafana/).
const WebAndMonitoringDir = KustomizeDir + "/web-and-monitoring"

// RenderWebAndMonitoring runs `kustomize build --load-restrictor
// LoadRestrictionsNone` on it (its files are the repository's one copy).
func RenderWebAndMonitoring(kustomize, root string) ([]byte, error) {
	var stderr bytes.Buffer
	dir := filepath.Join(root, WebAndMonitoringDir)
	cmd := exec.Command(kustomize, "build", "--load-restrictor", "LoadRestrictionsNone", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w: %s", dir, err, stderr.String())
	}
	return out, nil
}

// CheckWebAndMonitoring: the nginx front is hardened like the apps, sends
// each app's own Dapr API token to that app's sidecar Service, and the
// Prometheus and Grafana ConfigMaps carry the repository's rules and every
// dashboard.
func CheckWebAndMonitoring(root string, objs []Object) []error {
	var errs problems
	byKind := map[string]map[string]any{}
	for _, o := range objs {
		if byKind[o.Kind] == nil {
			byKind[o.Kind] = map[string]any{}
		}
		byKind[o.Kind][o.Name] = o.Obj
	}
	d, ok := byKind["Deployment"]["web"].(*appsv1.Deployment)
	if !ok {
		errs.add("web-and-monitoring: no Deployment web")
		return errs
	}
	checkPodSpec(&errs, "Deployment web", &d.Spec.Template.Spec)
	env := map[string]corev1.EnvVar{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e
	}
	for prefix, app := range map[string]string{"GRAYSCALE": "image-api-grayscale", "CLASSIFY": "image-api-classify", "EVENTS": "events-service"} {
		// A full name: nginx resolves upstreams itself, with no search domains.
		if want := fmt.Sprintf("%s-dapr.%s.svc.cluster.local:80", app, d.Namespace); env[prefix+"_DAPR"].Value != want {
			errs.add("Deployment web: %s_DAPR %q, want %s (the operator's Service for the sidecar's HTTP API)", prefix, env[prefix+"_DAPR"].Value, want)
		}
		tok := env[prefix+"_DAPR_TOKEN"]
		if tok.ValueFrom == nil || tok.ValueFrom.SecretKeyRef == nil || tok.ValueFrom.SecretKeyRef.Name != app+"-dapr-api-token" {
			errs.add("Deployment web: %s_DAPR_TOKEN must read the Secret %s-dapr-api-token", prefix, app)
		}
	}
	if env["WEB_RESOLVER"].Value == "" {
		errs.add("Deployment web: WEB_RESOLVER must name the cluster's DNS (nginx looks the upstreams up through it)")
	}
	if _, ok := byKind["Ingress"]["web"]; !ok {
		errs.add("web-and-monitoring: no Ingress web")
	}
	prom, _ := byKind["ConfigMap"]["prometheus-dapr-wasm-stack"].(*corev1.ConfigMap)
	dash, _ := byKind["ConfigMap"]["grafana-dashboards-dapr-wasm-stack"].(*corev1.ConfigMap)
	if prom == nil || dash == nil {
		errs.add("web-and-monitoring: the ConfigMaps prometheus-dapr-wasm-stack and grafana-dashboards-dapr-wasm-stack must exist")
		return errs
	}
	for _, f := range []string{"alerts.yml", "slos.yml"} {
		raw, _ := os.ReadFile(filepath.Join(root, "observability", "rules", f))
		if prom.Data[f] != string(raw) {
			errs.add("ConfigMap prometheus-dapr-wasm-stack: %s is not observability/rules/%s", f, f)
		}
	}
	if dash.Labels["grafana_dashboard"] != "1" {
		errs.add("ConfigMap grafana-dashboards-dapr-wasm-stack: no label grafana_dashboard: \"1\" (Grafana's sidecar would skip it)")
	}
	files, _ := filepath.Glob(filepath.Join(root, "grafana", "dashboards", "*.json"))
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		if dash.Data[filepath.Base(f)] != string(raw) {
			errs.add("ConfigMap grafana-dashboards-dapr-wasm-stack: %s missing or stale", filepath.Base(f))
		}
	}
	return errs
}

// KubeSecretFiles checks that every file the base's secretGenerator reads
// exists, without kustomize: the operator's secrets are not committed, and
// kustomize alone would only say "no such file". The error says how to
// create them.
func KubeSecretFiles(base string) error {
	raw, err := os.ReadFile(filepath.Join(base, "kustomization.yaml"))
	if err != nil {
		return err
	}
	var k struct {
		SecretGenerator []struct {
			Name  string   `json:"name"`
			Files []string `json:"files"`
		} `json:"secretGenerator"`
	}
	if err := yaml.Unmarshal(raw, &k); err != nil {
		return fmt.Errorf("%s/kustomization.yaml: %w", base, err)
	}
	var missing []string
	for _, g := range k.SecretGenerator {
		for _, f := range g.Files {
			_, path, ok := strings.Cut(f, "=")
			if !ok {
				path = f
			}
			if st, err := os.Stat(filepath.Join(base, path)); err != nil || st.Size() == 0 {
				missing = append(missing, path)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("deploy/kubernetes: the Secrets' files are missing (%s): create them with `make k8s-secrets` (scripts/k8s-secrets.sh) or write your own, see deploy/kubernetes/base/secrets/README.md", strings.Join(missing, ", "))
	}
	return nil
}

// Object is one rendered manifest, decoded into its API type.
type Object struct {
	Kind string
	Name string
	Obj  any
}

// The types this deployment uses, by apiVersion and kind. A kind outside
// this list is an error: it would ship unchecked.
var kinds = map[string]func() any{
	"v1/Namespace":                             func() any { return &corev1.Namespace{} },
	"v1/Service":                               func() any { return &corev1.Service{} },
	"v1/ServiceAccount":                        func() any { return &corev1.ServiceAccount{} },
	"v1/Secret":                                func() any { return &corev1.Secret{} },
	"v1/ConfigMap":                             func() any { return &corev1.ConfigMap{} },
	"apps/v1/Deployment":                       func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":                      func() any { return &appsv1.StatefulSet{} },
	"batch/v1/Job":                             func() any { return &batchv1.Job{} },
	"autoscaling/v2/HorizontalPodAutoscaler":   func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
	"policy/v1/PodDisruptionBudget":            func() any { return &policyv1.PodDisruptionBudget{} },
	"networking.k8s.io/v1/NetworkPolicy":       func() any { return &networkingv1.NetworkPolicy{} },
	"networking.k8s.io/v1/Ingress":             func() any { return &networkingv1.Ingress{} },
	"node.k8s.io/v1/RuntimeClass":              func() any { return &nodev1.RuntimeClass{} },
	"rbac.authorization.k8s.io/v1/Role":        func() any { return &rbacv1.Role{} },
	"rbac.authorization.k8s.io/v1/RoleBinding": func() any { return &rbacv1.RoleBinding{} },
	"dapr.io/v1alpha1/Component":               func() any { return &componentsapi.Component{} },
	"dapr.io/v1alpha1/Configuration":           func() any { return &configurationapi.Configuration{} },
	"dapr.io/v1alpha1/Resiliency":              func() any { return &resiliencyapi.Resiliency{} },
}

// DecodeStrict splits a multi-document YAML stream and decodes each
// document into its Kubernetes or Dapr Go type, rejecting unknown and
// duplicate fields: a misspelt field is an error, not a silently dropped key.
func DecodeStrict(stream []byte) ([]Object, error) {
	var objs []Object
	for i, doc := range splitYAML(stream) {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		newObj, ok := kinds[meta.APIVersion+"/"+meta.Kind]
		if !ok {
			return nil, fmt.Errorf("document %d: %s %s is not a kind this validator knows", i, meta.APIVersion, meta.Kind)
		}
		obj := newObj()
		if err := UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("document %d (%s %s): %w", i, meta.Kind, nameOf(doc), err)
		}
		name := ""
		if m, ok := obj.(metav1.Object); ok {
			name = m.GetName()
		}
		objs = append(objs, Object{Kind: meta.Kind, Name: name, Obj: obj})
	}
	return objs, nil
}

// UnmarshalStrict decodes YAML as the Kubernetes API server decodes JSON:
// field names case-sensitive (encoding/json alone would take runAsNonroot
// for runAsNonRoot), unknown and duplicate fields are errors.
func UnmarshalStrict(doc []byte, obj any) error {
	raw, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	strict, err := kjson.UnmarshalStrict(raw, obj)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func nameOf(doc []byte) string {
	var m metav1.PartialObjectMetadata
	_ = yaml.Unmarshal(doc, &m)
	return m.Name
}

func splitYAML(stream []byte) [][]byte {
	var docs [][]byte
	for _, part := range bytes.Split(stream, []byte("\n---\n")) {
		if len(bytes.TrimSpace(bytes.TrimPrefix(part, []byte("---\n")))) > 0 {
			docs = append(docs, part)
		}
	}
	return docs
}

// CheckKube checks a rendered overlay: every app make up runs is a Dapr
// Deployment with the same app id and port, probes, hardening, metrics
// annotations; what the annotations and targets name exists; wasm says
// whether the overlay runs the services under WasmEdge.
func CheckKube(objs []Object, makeUp []Sidecar, wasm bool) []error {
	var errs problems
	byKind := map[string]map[string]any{}
	for _, o := range objs {
		if byKind[o.Kind] == nil {
			byKind[o.Kind] = map[string]any{}
		}
		if _, dup := byKind[o.Kind][o.Name]; dup {
			errs.add("%s %s rendered twice", o.Kind, o.Name)
		}
		byKind[o.Kind][o.Name] = o.Obj
	}
	has := func(kind, name string) bool { _, ok := byKind[kind][name]; return ok }

	want := ByAppID(makeUp)
	seen := map[string]bool{}
	deployments := map[string]*appsv1.Deployment{}
	secrets := map[string]*corev1.Secret{}
	for name, o := range byKind["Secret"] {
		secrets[name] = o.(*corev1.Secret)
	}
	usedSecrets := map[string]string{}
	for name, o := range byKind["Deployment"] {
		d := o.(*appsv1.Deployment)
		deployments[name] = d
		checkPodSpec(&errs, "Deployment "+name, &d.Spec.Template.Spec)
		ann := d.Spec.Template.Annotations
		if ann["dapr.io/enabled"] != "true" {
			continue
		}
		id := ann["dapr.io/app-id"]
		mu, ok := want[id]
		if !ok {
			errs.add("Deployment %s: dapr.io/app-id %q is not an app make up runs", name, id)
			continue
		}
		seen[id] = true
		port := strconv.Itoa(mu.AppPort)
		for k, v := range map[string]string{
			"dapr.io/app-port": port, "dapr.io/app-protocol": "http", "dapr.io/enable-metrics": "true",
			"dapr.io/max-body-size": flagOf(mu, "--max-body-size"), "dapr.io/log-level": flagOf(mu, "--log-level"),
			"dapr.io/graceful-shutdown-seconds": flagOf(mu, "--dapr-graceful-shutdown-seconds"),
			"prometheus.io/scrape":              "true", "prometheus.io/path": "/metrics",
		} {
			if ann[k] != v {
				errs.add("Deployment %s: annotation %s %q, want %q", name, k, ann[k], v)
			}
		}
		for _, k := range []string{"dapr.io/sidecar-cpu-request", "dapr.io/sidecar-memory-request", "dapr.io/sidecar-cpu-limit", "dapr.io/sidecar-memory-limit", "dapr.io/metrics-port"} {
			if ann[k] == "" {
				errs.add("Deployment %s: no %s annotation", name, k)
			}
		}
		if c := ann["dapr.io/config"]; !has("Configuration", c) {
			errs.add("Deployment %s: dapr.io/config %q is not a rendered Configuration", name, c)
		}
		if len(d.Spec.Template.Spec.Containers) != 1 {
			errs.add("Deployment %s: one app container expected (daprd is injected)", name)
			continue
		}
		c := d.Spec.Template.Spec.Containers[0]
		checkKubeApp(&errs, name, id, ann, c, mu, wasm, secrets, usedSecrets)
		if id == "events-service" {
			if cfg, ok := byKind["Configuration"][ann["dapr.io/config"]].(*configurationapi.Configuration); ok {
				errs = append(errs, CheckAccessControl("Configuration "+cfg.Name+" (events-service)", cfg, d.Namespace)...)
			}
		}
		if len(c.Ports) != 1 || c.Ports[0].ContainerPort != int32(mu.AppPort) {
			errs.add("Deployment %s: container port is not %d", name, mu.AppPort)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && !has("Secret", e.ValueFrom.SecretKeyRef.Name) {
				errs.add("Deployment %s: env %s reads Secret %s, which is not rendered", name, e.Name, e.ValueFrom.SecretKeyRef.Name)
			}
		}
		if env["APP_PORT"] != port || env["APP_HOST"] != "0.0.0.0" {
			errs.add("Deployment %s: APP_PORT/APP_HOST %q/%q, want %s/0.0.0.0 (probes and Prometheus come from outside the pod)", name, env["APP_PORT"], env["APP_HOST"], port)
		}
		probe := func(what string, p *corev1.Probe, path string) {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
				errs.add("Deployment %s: %s probe must GET %s", name, what, path)
			}
		}
		probe("liveness", c.LivenessProbe, "/healthz")
		probe("readiness", c.ReadinessProbe, "/readyz")
		if wasm {
			if rc := d.Spec.Template.Spec.RuntimeClassName; rc == nil || !has("RuntimeClass", *rc) {
				errs.add("Deployment %s: not on a rendered RuntimeClass (WasmEdge overlay)", name)
			}
			if !strings.HasSuffix(c.Image, "-wasm") {
				errs.add("Deployment %s: image %s is not a -wasm image", name, c.Image)
			}
		} else if d.Spec.Template.Spec.RuntimeClassName != nil {
			errs.add("Deployment %s: runtimeClassName set outside the WasmEdge overlay", name)
		}
	}
	for id := range want {
		if !seen[id] {
			errs.add("no Dapr-enabled Deployment for %s", id)
		}
	}
	for name, o := range byKind["StatefulSet"] {
		checkPodSpec(&errs, "StatefulSet "+name, &o.(*appsv1.StatefulSet).Spec.Template.Spec)
	}
	jobs := 0
	for name, o := range byKind["Job"] {
		j := o.(*batchv1.Job)
		checkPodSpec(&errs, "Job "+name, &j.Spec.Template.Spec)
		for _, c := range append(append([]corev1.Container{}, j.Spec.Template.Spec.InitContainers...), j.Spec.Template.Spec.Containers...) {
			if strings.Contains(c.Image, "migrate") {
				jobs++
			}
		}
	}
	if jobs == 0 {
		errs.add("no migration Job")
	}

	// Autoscalers and disruption budgets cover the image services and
	// point at Deployments that exist.
	scaled := map[string]bool{}
	for name, o := range byKind["HorizontalPodAutoscaler"] {
		h := o.(*autoscalingv2.HorizontalPodAutoscaler)
		if h.Spec.ScaleTargetRef.Kind != "Deployment" || deployments[h.Spec.ScaleTargetRef.Name] == nil {
			errs.add("HorizontalPodAutoscaler %s: target %s %s is not rendered", name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
			continue
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
			errs.add("HorizontalPodAutoscaler %s: minReplicas below 2 leaves no replica during a rollout", name)
		}
		scaled[deployments[h.Spec.ScaleTargetRef.Name].Spec.Template.Annotations["dapr.io/app-id"]] = true
	}
	budgeted := map[string]bool{}
	for name, o := range byKind["PodDisruptionBudget"] {
		p := o.(*policyv1.PodDisruptionBudget)
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		if err != nil {
			errs.add("PodDisruptionBudget %s: %v", name, err)
			continue
		}
		matched := false
		for _, d := range deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = true
				budgeted[d.Spec.Template.Annotations["dapr.io/app-id"]] = true
			}
		}
		if !matched {
			errs.add("PodDisruptionBudget %s selects no Deployment", name)
		}
	}
	for _, id := range []string{"image-api-grayscale", "image-api-classify"} {
		if !scaled[id] {
			errs.add("no HorizontalPodAutoscaler for %s", id)
		}
		if !budgeted[id] {
			errs.add("no PodDisruptionBudget for %s", id)
		}
	}
	for name, o := range byKind["Service"] {
		s := o.(*corev1.Service)
		sel := labels.SelectorFromSet(s.Spec.Selector)
		matched := false
		for _, d := range deployments {
			matched = matched || sel.Matches(labels.Set(d.Spec.Template.Labels))
		}
		for _, ss := range byKind["StatefulSet"] {
			matched = matched || sel.Matches(labels.Set(ss.(*appsv1.StatefulSet).Spec.Template.Labels))
		}
		if !matched {
			errs.add("Service %s selects no workload", name)
		}
	}

	checkDaprResources(&errs, byKind)
	if len(byKind["NetworkPolicy"]) == 0 {
		errs.add("no NetworkPolicy")
	}
	if wasm && len(byKind["RuntimeClass"]) == 0 {
		errs.add("the WasmEdge overlay renders no RuntimeClass")
	}
	return errs
}

func flagOf(mu Sidecar, flag string) string {
	f, _ := Flags(mu.Args)
	return f[flag]
}

// checkPodSpec: non-root, read-only root, no privilege escalation, all
// capabilities dropped, resource limits, for every container.
func checkPodSpec(errs *problems, what string, spec *corev1.PodSpec) {
	podNonRoot := spec.SecurityContext != nil && spec.SecurityContext.RunAsNonRoot != nil && *spec.SecurityContext.RunAsNonRoot
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil {
			errs.add("%s: container %s has no securityContext", what, c.Name)
			continue
		}
		if !podNonRoot && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
			errs.add("%s: container %s may run as root", what, c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			errs.add("%s: container %s has a writable root filesystem", what, c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			errs.add("%s: container %s allows privilege escalation", what, c.Name)
		}
		if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
			errs.add("%s: container %s does not drop ALL capabilities", what, c.Name)
		}
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Limits.Cpu().IsZero() {
			errs.add("%s: container %s has no CPU and memory limits", what, c.Name)
		}
		if !strings.Contains(c.Image, ":") && !strings.HasPrefix(c.Image, "dapr-wasm-stack/") {
			errs.add("%s: container %s image %s is not pinned", what, c.Name, c.Image)
		}
	}
}

// checkDaprResources: the state store shares keys across replicas, the
// secret store is Kubernetes', tracing goes to a rendered Zipkin Service,
// and the events call has a timeout, a retry and a circuit breaker.
func checkDaprResources(errs *problems, byKind map[string]map[string]any) {
	stores := map[string]bool{}
	for name, o := range byKind["Component"] {
		c := o.(*componentsapi.Component)
		stores[c.Spec.Type] = true
		if c.Spec.Type == "state.redis" {
			prefix := ""
			for _, m := range c.Spec.Metadata {
				if m.Name == "keyPrefix" {
					prefix = m.Value.String()
				}
			}
			if prefix != "appid" {
				errs.add("Component %s: keyPrefix %q, want appid (replicas of an app share its keys)", name, prefix)
			}
			password := false
			for _, m := range c.Spec.Metadata {
				if m.Name == "redisPassword" {
					password = m.SecretKeyRef.Name != "" && m.SecretKeyRef.Key != "" && m.Value.String() == ""
				}
			}
			if !password {
				errs.add("Component %s: redisPassword must be a secretKeyRef (Redis requires a password)", name)
			}
		}
	}
	for _, t := range []string{"state.redis", "secretstores.kubernetes"} {
		if !stores[t] {
			errs.add("no %s Component", t)
		}
	}
	configs := 0
	for name, o := range byKind["Configuration"] {
		configs++
		c := o.(*configurationapi.Configuration)
		// On Kubernetes mTLS is the control plane's (CheckDaprValues); an app
		// Configuration's spec.mtls is refused by Dapr's CRD without
		// controlPlaneTrustDomain and sentryAddress, which are the control
		// plane's to know.
		if c.Spec.MTLSSpec != nil {
			errs.add("Configuration %s: spec.mtls is set: on Kubernetes mTLS comes from the control plane's daprsystem Configuration (deploy/kubernetes/dapr-values.yaml), and Dapr's CRD requires controlPlaneTrustDomain and sentryAddress with it", name)
		}
		if c.Spec.TracingSpec == nil || c.Spec.TracingSpec.Zipkin == nil {
			errs.add("Configuration %s: no Zipkin tracing", name)
			continue
		}
		host := strings.Split(strings.TrimPrefix(c.Spec.TracingSpec.Zipkin.EndpointAddresss, "http://"), ".")[0]
		if _, ok := byKind["Service"][host]; !ok {
			errs.add("Configuration %s: Zipkin endpoint %s names no rendered Service", name, c.Spec.TracingSpec.Zipkin.EndpointAddresss)
		}
	}
	if configs == 0 {
		errs.add("no Dapr Configuration")
	}
	breaker := false
	for name, o := range byKind["Resiliency"] {
		r := o.(*resiliencyapi.Resiliency)
		p := r.Spec.Policies
		for app, t := range r.Spec.Targets.Apps {
			for what, ref := range map[string]string{"timeout": t.Timeout, "retry": t.Retry, "circuitBreaker": t.CircuitBreaker} {
				_, okT := p.Timeouts[ref]
				_, okR := p.Retries[ref]
				_, okC := p.CircuitBreakers[ref]
				if ref != "" && !okT && !okR && !okC {
					errs.add("Resiliency %s: %s %s names no policy %q", name, app, what, ref)
				}
			}
			if app == "events-service" && t.CircuitBreaker != "" && t.Timeout != "" && t.Retry != "" {
				breaker = true
			}
		}
		names := make([]string, 0, len(p.Retries))
		for k := range p.Retries {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if pol := p.Retries[k].Policy; pol != "exponential" && pol != "constant" {
				errs.add("Resiliency %s: retry %s policy %q", name, k, pol)
			}
		}
	}
	if !breaker {
		errs.add("no Resiliency with a timeout, retry and circuit breaker on the events-service call")
	}
}

// CheckDaprValues: the Dapr install the README prescribes
// (deploy/kubernetes/dapr-values.yaml, Helm values) keeps mTLS on (the
// apps' access control needs verified identities) and has the injector drop
// ALL of daprd's capabilities (the namespace enforces Pod Security
// `restricted`). The cluster test runs the real injector with these values.
func CheckDaprValues(values map[string]any) []error {
	var errs problems
	global, _ := values["global"].(map[string]any)
	mtls, _ := global["mtls"].(map[string]any)
	if v, ok := mtls["enabled"]; ok && v != true {
		errs.add("dapr-values.yaml: global.mtls.enabled %v: access control needs mTLS", v)
	}
	inj, _ := values["dapr_sidecar_injector"].(map[string]any)
	if inj["sidecarDropALLCapabilities"] != true {
		errs.add("dapr-values.yaml: dapr_sidecar_injector.sidecarDropALLCapabilities is not true: Pod Security `restricted` forbids every injected pod")
	}
	return errs
}

// LoadDaprValues reads deploy/kubernetes/dapr-values.yaml, the Helm values
// the README prescribes for the Dapr install.
func LoadDaprValues(root string) (map[string]any, error) {
	raw, err := os.ReadFile(filepath.Join(root, KustomizeDir, "dapr-values.yaml"))
	if err != nil {
		return nil, err
	}
	var v map[string]any
	if err := yaml.UnmarshalStrict(raw, &v); err != nil {
		return nil, fmt.Errorf("dapr-values.yaml: %w", err)
	}
	return v, nil
}

package validate

// The deployment through a real control plane (issue 26): etcd and
// kube-apiserver on 127.0.0.1, Dapr's CRDs, every overlay server-side
// dry-run then applied, then kube-controller-manager and Dapr's sentry and
// sidecar injector (and operator) as processes against that API server, so
// the Deployments' ReplicaSets create pods that go through the real
// injector and Pod Security `restricted`. No kubelet: the pods stay
// Pending, which is enough for admission. The binaries come from
// scripts/build-kube.sh ($KUBE_BIN); without it the test is skipped.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const stackNamespace = "dapr-wasm-stack"

func TestClusterAdmitsEveryOverlay(t *testing.T) {
	bin := os.Getenv("KUBE_BIN")
	if bin == "" {
		t.Skip("KUBE_BIN not set: `make validate-deploy` builds the control plane (scripts/build-kube.sh) and sets it")
	}
	root := RepoRoot()
	kustomize, err := Kustomize(root)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := startCluster(t, bin)
	t.Logf("etcd + kube-apiserver ready in %s", time.Since(start).Round(time.Millisecond))

	crds, err := daprCRDs()
	if err != nil {
		t.Fatal(err)
	}
	c.mustKubectl("apply", "--server-side", "-f", crds)
	c.mustKubectl("wait", "--for=condition=established", "--timeout=60s", "crd", "--all")
	// Namespaced objects cannot be dry-run before their namespace exists.
	c.mustKubectl("apply", "--server-side", "-f", filepath.Join(root, KustomizeDir, "base", "namespace.yaml"))

	values, err := LoadDaprValues(root)
	if err != nil {
		t.Fatal(err)
	}
	c.startDaprControlPlane(values)
	t.Logf("control plane (controller-manager, sentry, injector, operator) ready after %s", time.Since(start).Round(time.Millisecond))

	overlays, err := Overlays(root)
	if err != nil {
		t.Fatal(err)
	}
	var lastRendered string
	for _, dir := range overlays {
		name := filepath.Base(dir)
		rendered, err := Render(kustomize, dir)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(c.dir, name+".yaml")
		if err := os.WriteFile(file, rendered, 0o600); err != nil {
			t.Fatal(err)
		}
		lastRendered = file
		t.Run(name, func(t *testing.T) {
			// kubectl applies what it can and reports the rest (exit 1): go on
			// to admission either way, so one run shows every verdict.
			if out, err := c.kubectl("apply", "--server-side", "--dry-run=server", "-f", file); err != nil {
				t.Errorf("server-side dry-run of %s: %v\n%s", name, err, serverErrors(out))
			}
			out, err := c.kubectl("apply", "--server-side", "-f", file)
			if err != nil {
				t.Errorf("apply of %s: %v\n%s", name, err, serverErrors(out))
			}
			for _, l := range strings.Split(out, "\n") {
				if strings.HasPrefix(l, "Warning") {
					t.Logf("API server: %s", l)
				}
			}
			pods := c.podsOfCurrentTemplates(t)
			netpols := c.networkPolicies(t)
			injected := 0
			for _, p := range pods {
				errs := CheckInjectedPod(p, netpols)
				for _, e := range errs {
					t.Error(e)
				}
				if i := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == "daprd" }); i >= 0 {
					injected++
					if injected == 1 {
						d := p.Spec.Containers[i]
						t.Logf("%s's daprd: %s %s, drop %v", p.Name, d.Image, strings.Join(d.Args, " "), d.SecurityContext.Capabilities.Drop)
					}
				}
			}
			t.Logf("%d pods admitted, %d with daprd injected", len(pods), injected)
			c.operatorServices(t)
		})
	}
	if t.Failed() || lastRendered == "" {
		return
	}

	// The web front and the monitoring ConfigMaps, beside the last overlay.
	t.Run("web-and-monitoring", func(t *testing.T) {
		rendered, err := RenderWebAndMonitoring(kustomize, root)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(c.dir, "web-and-monitoring.yaml")
		if err := os.WriteFile(file, rendered, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, dry := range []string{"--dry-run=server", "--dry-run=none"} {
			if out, err := c.kubectl("apply", "--server-side", dry, "-f", file); err != nil {
				t.Fatalf("apply %s of web-and-monitoring: %v\n%s", dry, err, serverErrors(out))
			}
		}
		pods := c.podsOfCurrentTemplates(t)
		web := slices.IndexFunc(pods, func(p corev1.Pod) bool { return p.Labels["app.kubernetes.io/name"] == "web" })
		if web < 0 {
			t.Fatal("no web pod admitted")
		}
		// What prometheus.yml's relabelling keys on, on the admitted pods.
		for _, p := range pods {
			if p.Annotations["dapr.io/enabled"] != "true" {
				continue
			}
			if !hasPort(p, "app", "http") || !hasPort(p, "daprd", "dapr-metrics") || p.Annotations["prometheus.io/scrape"] != "true" {
				t.Errorf("pod %s: prometheus.yml finds the app by container app port http and prometheus.io/scrape, the sidecar by daprd port dapr-metrics", p.Name)
			}
		}
		c.promtoolCheck(t)
	})

	// What the API server and admission must refuse (issue 26's three).
	t.Run("rejects", func(t *testing.T) {
		c.negativeChecks(t)
	})
	t.Logf("whole check: %s", time.Since(start).Round(time.Millisecond))
}

// podsOfCurrentTemplates waits until every Deployment and StatefulSet of the
// namespace has pods of its current template (admitted: injected and past
// Pod Security), and fails on any FailedCreate (a forbidden pod).
func (c *cluster) podsOfCurrentTemplates(t *testing.T) []corev1.Pod {
	t.Helper()
	// A refusal can be transient (the RuntimeClass admission's cache may
	// not have the RuntimeClass created in the same apply yet; the
	// ReplicaSet retries): it fails the check if pods are still missing
	// 15 s after it was first seen.
	deadline := time.Now().Add(90 * time.Second)
	var refusedSince time.Time
	for {
		pods, missing := c.currentPods(t)
		if len(missing) == 0 {
			return pods
		}
		if failed := c.failedCreates(t); len(failed) > 0 {
			if refusedSince.IsZero() {
				refusedSince = time.Now()
			} else if time.Since(refusedSince) > 15*time.Second {
				t.Fatalf("no pods for %s; refused:\n%s", strings.Join(missing, ", "), strings.Join(failed, "\n"))
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pods for the current template of %s after 90 s", strings.Join(missing, ", "))
		}
		time.Sleep(time.Second)
	}
}

func (c *cluster) failedCreates(t *testing.T) []string {
	var events corev1.EventList
	c.getJSON(t, &events, "-n", stackNamespace, "get", "events")
	// One line per refused workload (a ReplicaSet retries, each time anew).
	var out []string
	seen := map[string]bool{}
	for _, e := range events.Items {
		if e.Reason == "FailedCreate" && !seen[e.InvolvedObject.Name] {
			seen[e.InvolvedObject.Name] = true
			out = append(out, fmt.Sprintf("%s/%s: %s", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Message))
		}
	}
	return out
}

// currentPods returns the pods of each workload's current template, and the
// workloads that have none yet. A Deployment's current ReplicaSet is the
// one with its revision; a StatefulSet's pods carry its update revision.
func (c *cluster) currentPods(t *testing.T) ([]corev1.Pod, []string) {
	var deps appsv1.DeploymentList
	var sets appsv1.ReplicaSetList
	var stss appsv1.StatefulSetList
	var jobs batchv1.JobList
	var pods corev1.PodList
	c.getJSON(t, &jobs, "-n", stackNamespace, "get", "jobs")
	c.getJSON(t, &deps, "-n", stackNamespace, "get", "deployments")
	c.getJSON(t, &sets, "-n", stackNamespace, "get", "replicasets")
	c.getJSON(t, &stss, "-n", stackNamespace, "get", "statefulsets")
	c.getJSON(t, &pods, "-n", stackNamespace, "get", "pods")
	owned := func(p corev1.Pod, kind, name string) bool {
		for _, o := range p.OwnerReferences {
			if o.Kind == kind && o.Name == name {
				return true
			}
		}
		return false
	}
	var out []corev1.Pod
	var missing []string
	for _, d := range deps.Items {
		rev := d.Annotations["deployment.kubernetes.io/revision"]
		found := false
		for _, rs := range sets.Items {
			if rs.Annotations["deployment.kubernetes.io/revision"] != rev || rev == "" || !slices.ContainsFunc(rs.OwnerReferences, func(o metav1.OwnerReference) bool { return o.Name == d.Name }) {
				continue
			}
			for _, p := range pods.Items {
				if owned(p, "ReplicaSet", rs.Name) {
					out = append(out, p)
					found = true
				}
			}
		}
		if !found {
			missing = append(missing, "Deployment "+d.Name)
		}
	}
	for _, s := range stss.Items {
		found := false
		for _, p := range pods.Items {
			if owned(p, "StatefulSet", s.Name) && s.Status.UpdateRevision != "" && p.Labels["controller-revision-hash"] == s.Status.UpdateRevision {
				out = append(out, p)
				found = true
			}
		}
		if !found {
			missing = append(missing, "StatefulSet "+s.Name)
		}
	}
	for _, j := range jobs.Items {
		if !slices.ContainsFunc(pods.Items, func(p corev1.Pod) bool { return owned(p, "Job", j.Name) }) {
			missing = append(missing, "Job "+j.Name)
		}
	}
	return out, missing
}

// operatorServices: Dapr's operator made each app's <app-id>-dapr Service
// (the sidecars' ports, Prometheus's 9090 among them).
func (c *cluster) operatorServices(t *testing.T) {
	t.Helper()
	want := []string{"image-api-grayscale-dapr", "image-api-classify-dapr", "events-service-dapr"}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.kubectl(append([]string{"-n", stackNamespace, "get", "services", "-o", "name"}, want...)...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("the operator made no <app-id>-dapr Services in 30 s: %s", out)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (c *cluster) networkPolicies(t *testing.T) []networkingv1.NetworkPolicy {
	var list struct {
		Items []networkingv1.NetworkPolicy `json:"items"`
	}
	c.getJSON(t, &list, "-n", stackNamespace, "get", "networkpolicies")
	return list.Items
}

// negativeChecks: each of issue 26's three faults, put back on purpose,
// must fail: the API server's own verdict where it gives one.
func (c *cluster) negativeChecks(t *testing.T) {
	// 1. A Configuration with mtls but no sentryAddress: Dapr's CRD refuses it.
	bad := `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: mtls-without-sentry
  namespace: ` + stackNamespace + `
spec:
  mtls:
    enabled: true
`
	out, err := c.kubectlStdin(bad, "apply", "--server-side", "--dry-run=server", "-f", "-")
	if err == nil || !strings.Contains(out, "spec.mtls.sentryAddress: Required value") {
		t.Errorf("a Configuration with mtls and no sentryAddress: want the API server's Required value, got %v: %s", err, out)
	} else {
		t.Logf("API server: %s", strings.Join(strings.Fields(out), " "))
	}

	// An injected app pod, as the ReplicaSet made it, to mutate below.
	var pods corev1.PodList
	c.getJSON(t, &pods, "-n", stackNamespace, "get", "pods", "-l", "app.kubernetes.io/name=image-api-grayscale")
	var pod *corev1.Pod
	for i := range pods.Items {
		if slices.ContainsFunc(pods.Items[i].Spec.Containers, func(c corev1.Container) bool { return c.Name == "daprd" }) {
			pod = &pods.Items[i]
			break
		}
	}
	if pod == nil {
		t.Fatal("no injected image-api-grayscale pod")
	}
	fresh := func(p *corev1.Pod, name string) *corev1.Pod {
		q := p.DeepCopy()
		q.ObjectMeta = metav1.ObjectMeta{Name: name, Namespace: stackNamespace, Labels: p.Labels, Annotations: p.Annotations}
		q.Status = corev1.PodStatus{}
		q.Spec.NodeName = ""
		return q
	}

	// 2. daprd without drop [ALL] under restricted: Pod Security refuses it
	// (the injector leaves a pod that already has daprd alone).
	noDrop := fresh(pod, "daprd-keeps-capabilities")
	for i := range noDrop.Spec.Containers {
		if noDrop.Spec.Containers[i].Name == "daprd" && noDrop.Spec.Containers[i].SecurityContext != nil {
			noDrop.Spec.Containers[i].SecurityContext.Capabilities = nil
		}
	}
	raw, _ := json.Marshal(noDrop)
	out, err = c.kubectlStdin(string(raw), "create", "--dry-run=server", "-f", "-")
	if err == nil || !strings.Contains(out, `violates PodSecurity "restricted:latest"`) || !strings.Contains(out, `container "daprd" must set securityContext.capabilities.drop=["ALL"]`) {
		t.Errorf("daprd without drop [ALL]: want Pod Security's refusal, got %v: %s", err, out)
	} else {
		t.Logf("API server: %s", firstLine(out))
	}

	// 3. A pod without dapr.io/sidecar-listen-addresses where the
	// NetworkPolicies let clients reach the Dapr HTTP port: the real injector
	// (a server-side dry-run goes through the webhook) binds daprd to
	// loopback, and the check says so.
	noListen := fresh(pod, "")
	noListen.GenerateName = "no-listen-addresses-"
	noListen.Spec.Containers = slices.DeleteFunc(noListen.Spec.Containers, func(c corev1.Container) bool { return c.Name == "daprd" })
	noListen.Spec.Volumes = slices.DeleteFunc(noListen.Spec.Volumes, func(v corev1.Volume) bool { return strings.HasPrefix(v.Name, "dapr-") })
	noListen.Annotations = map[string]string{}
	for k, v := range pod.Annotations {
		if k != "dapr.io/sidecar-listen-addresses" && !strings.HasPrefix(k, "dapr.io/injected") {
			noListen.Annotations[k] = v
		}
	}
	raw, _ = json.Marshal(noListen)
	out, err = c.kubectlStdin(string(raw), "create", "--dry-run=server", "-o", "json", "-f", "-")
	if err != nil {
		t.Fatalf("dry-run of a pod without the listen-addresses annotation: %v: %s", err, out)
	}
	var injected corev1.Pod
	if err := json.Unmarshal([]byte(out), &injected); err != nil {
		t.Fatal(err)
	}
	errs := CheckInjectedPod(injected, c.networkPolicies(t))
	if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), "listens on loopback only") }) {
		t.Errorf("a pod without dapr.io/sidecar-listen-addresses: want the listen-address check to fail, got %v", errs)
	} else {
		t.Logf("check: %v", errs)
	}
}

func hasPort(p corev1.Pod, container, port string) bool {
	for _, c := range p.Spec.Containers {
		if c.Name == container && slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == port }) {
			return true
		}
	}
	return false
}

// promtoolCheck: the Prometheus ConfigMap, as the API server stored it,
// is a configuration Prometheus loads (promconfig: Prometheus's own loader
// with Kubernetes discovery, which Debian's build lacks) and its rules pass
// promtool (Debian's prometheus package, as `make up` uses).
func (c *cluster) promtoolCheck(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (make deps installs Debian's prometheus): %v", err)
	}
	var cm corev1.ConfigMap
	c.getJSON(t, &cm, "-n", stackNamespace, "get", "configmap", "prometheus-dapr-wasm-stack")
	dir := filepath.Join(c.dir, "prometheus")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	var rules []string
	for k, v := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		if k != "prometheus.yml" {
			rules = append(rules, filepath.Join(dir, k))
		}
	}
	out, err := exec.Command(filepath.Join(c.bin, "promconfig"), filepath.Join(dir, "prometheus.yml")).CombinedOutput()
	if err != nil {
		t.Errorf("Prometheus's config loader: %v\n%s", err, out)
	} else {
		t.Logf("prometheus.yml: %s", strings.Join(strings.Fields(string(out)), " "))
	}
	if out, err := exec.Command(promtool, append([]string{"check", "rules"}, rules...)...).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// serverErrors keeps kubectl's error lines ("Error from server ...").
func serverErrors(out string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "rror") {
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		return out
	}
	return strings.Join(keep, "\n")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, url string, timeout time.Duration, alive func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if err := alive(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %s (%v)", url, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

package validate

import (
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// DaprdArgs reads an injected daprd's command line into flag -> value
// ("--flag value", "--flag=value", or a bare boolean "--flag" -> "true").
func DaprdArgs(c corev1.Container) map[string]string {
	args := append(slices.Clone(c.Command[min(1, len(c.Command)):]), c.Args...)
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			continue
		}
		if k, v, ok := strings.Cut(a, "="); ok {
			out[k] = v
		} else if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			out[a] = args[i+1]
			i++
		} else {
			out[a] = "true"
		}
	}
	return out
}

// CheckInjectedPod checks a pod the real Dapr injector mutated: daprd is
// there with mTLS on, the pod's own Configuration and tokens, hardened as
// Pod Security `restricted` asks, and listening where the NetworkPolicies
// expect clients (a policy that admits clients to the Dapr HTTP port is a
// promise only if daprd listens beyond loopback). Pods without
// dapr.io/enabled are not checked.
func CheckInjectedPod(pod corev1.Pod, netpols []networkingv1.NetworkPolicy) []error {
	var errs problems
	ann := pod.Annotations
	if ann["dapr.io/enabled"] != "true" {
		return nil
	}
	what := "pod " + pod.Name
	i := slices.IndexFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == "daprd" })
	if i < 0 {
		errs.add("%s: no daprd injected", what)
		return errs
	}
	d := pod.Spec.Containers[i]
	args := DaprdArgs(d)
	if args["--enable-mtls"] != "true" {
		errs.add("%s: daprd without --enable-mtls (the daprsystem Configuration's mtls)", what)
	}
	for flag, key := range map[string]string{"--app-id": "dapr.io/app-id", "--config": "dapr.io/config", "--app-port": "dapr.io/app-port"} {
		if args[flag] != ann[key] {
			errs.add("%s: daprd %s %q, the pod's %s is %q", what, flag, args[flag], key, ann[key])
		}
	}
	for env, key := range map[string]string{"DAPR_API_TOKEN": "dapr.io/api-token-secret", "APP_API_TOKEN": "dapr.io/app-token-secret"} {
		j := slices.IndexFunc(d.Env, func(e corev1.EnvVar) bool { return e.Name == env })
		if j < 0 || d.Env[j].ValueFrom == nil || d.Env[j].ValueFrom.SecretKeyRef == nil || d.Env[j].ValueFrom.SecretKeyRef.Name != ann[key] {
			errs.add("%s: daprd's %s is not from the Secret %s (%s)", what, env, ann[key], key)
		}
	}
	sc := d.SecurityContext
	if sc == nil || sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		errs.add("%s: daprd does not drop ALL capabilities (install Dapr with deploy/kubernetes/dapr-values.yaml)", what)
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		errs.add("%s: daprd allows privilege escalation", what)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		errs.add("%s: daprd has a writable root filesystem", what)
	}

	httpPort, _ := strconv.Atoi(args["--dapr-http-port"])
	if name := clientPolicyTo(pod, netpols, httpPort); name != "" {
		listen := strings.Split(args["--dapr-listen-addresses"], ",")
		if !slices.ContainsFunc(listen, func(a string) bool { return a == "0.0.0.0" || a == "[::]" || a == "::" }) {
			errs.add("%s: daprd listens on loopback only (--dapr-listen-addresses %s) while NetworkPolicy %s admits clients to its HTTP port %d: set dapr.io/sidecar-listen-addresses",
				what, args["--dapr-listen-addresses"], name, httpPort)
		}
	}
	return errs
}

// clientPolicyTo names a NetworkPolicy that selects pod and admits some
// peer to port, or "".
func clientPolicyTo(pod corev1.Pod, netpols []networkingv1.NetworkPolicy, port int) string {
	for _, np := range netpols {
		if np.Namespace != "" && np.Namespace != pod.Namespace {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port != nil && p.Port.IntValue() == port && len(rule.From) > 0 {
					return np.Name
				}
			}
		}
	}
	return ""
}

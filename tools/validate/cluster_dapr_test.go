package validate

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// The Dapr chart's injector values this test applies, and the environment
// variable the chart's injector Deployment turns each into.
var injectorValueEnv = map[string]string{
	"sidecarDropALLCapabilities":    "SIDECAR_DROP_ALL_CAPABILITIES",
	"sidecarRunAsNonRoot":           "SIDECAR_RUN_AS_NON_ROOT",
	"sidecarReadOnlyRootFilesystem": "SIDECAR_READ_ONLY_ROOT_FILESYSTEM",
	"sidecarImagePullPolicy":        "SIDECAR_IMAGE_PULL_POLICY",
	"enableK8sDownwardAPIs":         "ENABLE_K8S_DOWNWARD_APIS",
	"kubeClusterDomain":             "KUBE_CLUSTER_DOMAIN",
}

// injectorEnv: the chart's defaults (its dapr_sidecar_injector/values.yaml)
// overridden by deploy/kubernetes/dapr-values.yaml, as Helm would merge
// them. A value of ours that this test does not apply is an error: the test
// must run the install the README prescribes.
func injectorEnv(chart string, ours map[string]any) ([]string, error) {
	raw, err := os.ReadFile(filepath.Join(chart, "charts", "dapr_sidecar_injector", "values.yaml"))
	if err != nil {
		return nil, err
	}
	var merged map[string]any
	if err := yaml.Unmarshal(raw, &merged); err != nil {
		return nil, err
	}
	for k, v := range ours {
		switch k {
		case "dapr_sidecar_injector":
			m, _ := v.(map[string]any)
			for key, val := range m {
				if _, ok := injectorValueEnv[key]; !ok {
					return nil, fmt.Errorf("dapr-values.yaml: dapr_sidecar_injector.%s is not applied by this test (add it to injectorValueEnv)", key)
				}
				merged[key] = val
			}
		case "global":
			if fmt.Sprint(v) != "map[mtls:map[enabled:true]]" {
				return nil, fmt.Errorf("dapr-values.yaml: global %v: only mtls.enabled: true is applied by this test", v)
			}
		default:
			return nil, fmt.Errorf("dapr-values.yaml: %s is not applied by this test", k)
		}
	}
	var env []string
	for key, name := range injectorValueEnv {
		if v, ok := merged[key]; ok {
			env = append(env, fmt.Sprintf("%s=%v", name, v))
		}
	}
	sort.Strings(env)
	return env, nil
}

// What the chart installs besides the processes: the namespace, the
// control plane's Configuration, the trust bundle's (empty) Secret and
// ConfigMap that sentry fills, the Services and the webhook. The
// scheduler's StatefulSet with 0 replicas is how the injector is told there
// is no scheduler (cmd/scheduler cannot be built here). sentryAddress is
// sentry's host address (the chart's is its Service's DNS name).
const daprSystem = `apiVersion: v1
kind: Namespace
metadata: {name: dapr-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: dapr-injector, namespace: dapr-system}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: dapr-operator, namespace: dapr-system}
---
apiVersion: v1
kind: Secret
metadata: {name: dapr-trust-bundle, namespace: dapr-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: dapr-trust-bundle, namespace: dapr-system}
---
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: daprsystem, namespace: dapr-system}
spec:
  mtls:
    enabled: true
    workloadCertTTL: 24h
    allowedClockSkew: 15m
    controlPlaneTrustDomain: cluster.local
    sentryAddress: "127.0.0.1:%d"
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: dapr-scheduler-server, namespace: dapr-system}
spec:
  replicas: 0
  serviceName: dapr-scheduler-server
  selector: {matchLabels: {app: dapr-scheduler-server}}
  template:
    metadata: {labels: {app: dapr-scheduler-server}}
    spec: {containers: [{name: dapr-scheduler-server, image: daprio/scheduler:1.16.5}]}
---
apiVersion: v1
kind: Service
metadata: {name: dapr-sidecar-injector, namespace: dapr-system}
spec: {ports: [{port: 443, targetPort: 4000}], selector: {app: dapr-sidecar-injector}}
---
apiVersion: v1
kind: Service
metadata: {name: dapr-webhook, namespace: dapr-system}
spec: {ports: [{port: 443, targetPort: 19443}], selector: {app: dapr-operator}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: MutatingWebhookConfiguration
metadata: {name: dapr-sidecar-injector}
webhooks:
  - name: sidecar-injector.dapr.io
    reinvocationPolicy: IfNeeded
    clientConfig:
      service: {namespace: dapr-system, name: dapr-sidecar-injector, path: /mutate}
    rules:
      - {apiGroups: [""], apiVersions: [v1], resources: [pods], operations: [CREATE]}
    failurePolicy: Ignore
    sideEffects: None
    admissionReviewVersions: [v1, v1beta1]
`

// A control plane process proves who it is to sentry with a service-account
// token bound to a pod: these pods stand for the host processes (no
// kubelet runs them), as the chart's would.
const identityPod = `apiVersion: v1
kind: Pod
metadata:
  name: %[1]s-host-process
  namespace: dapr-system
  labels: {app: %[1]s}
  annotations: {dapr.io/control-plane: %[2]s}
spec:
  serviceAccountName: %[3]s
  containers: [{name: %[2]s, image: daprio/%[2]s:1.16.5}]
`

func (c *cluster) identityToken(app, controlPlane, serviceAccount string) string {
	c.t.Helper()
	c.mustApply(fmt.Sprintf(identityPod, app, controlPlane, serviceAccount))
	token := c.mustKubectl("-n", "dapr-system", "create", "token", serviceAccount, "--audience", "dapr.io/sentry",
		"--bound-object-kind", "Pod", "--bound-object-name", app+"-host-process")
	path := filepath.Join(c.dir, app+".token")
	if err := os.WriteFile(path, []byte(strings.TrimSpace(token)), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// startDaprControlPlane: kube-controller-manager, then Dapr's sentry,
// sidecar injector and operator, each a host process against the API
// server with the admin's kubeconfig (the chart gives each its own RBAC).
func (c *cluster) startDaprControlPlane(values map[string]any) {
	t := c.t
	crds, err := daprCRDs()
	if err != nil {
		t.Fatal(err)
	}
	injEnv, err := injectorEnv(filepath.Join(filepath.Dir(crds)), values)
	if err != nil {
		t.Fatal(err)
	}
	sentryPort := freePort(t)
	c.mustApply(fmt.Sprintf(daprSystem, sentryPort))

	// The controllers run with their own service accounts, as kubeadm's
	// do: the injector only serves pods created by those (or system:masters).
	cmPort := freePort(t)
	cm := c.start("kube-controller-manager", "kube-controller-manager", nil,
		"--kubeconfig", c.kubeconfig, "--authentication-kubeconfig", c.kubeconfig, "--authorization-kubeconfig", c.kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(cmPort), "--leader-elect=false",
		"--use-service-account-credentials", "--service-account-private-key-file", c.saKey, "--root-ca-file", c.caCert,
		"--controllers", "deployment,replicaset,statefulset,job,serviceaccount")

	// In Kubernetes mode Dapr insists on running as 65532; these are the
	// test's own host processes, under whatever user runs the test.
	env := []string{"NAMESPACE=dapr-system", "KUBE_CONFIG=" + c.kubeconfig, "KUBECONFIG=" + c.kubeconfig,
		"DAPR_UNSAFE_SKIP_CONTAINER_UID_GID_CHECK=true"}
	sentryHealth := freePort(t)
	// Sentry watches this folder even when its CA lives in a Secret.
	if err := os.Mkdir(filepath.Join(c.dir, "sentry-credentials"), 0o700); err != nil {
		t.Fatal(err)
	}
	sentry := c.start("sentry", "sentry", env,
		"--mode", "kubernetes", "--kubeconfig", c.kubeconfig, "--config", "daprsystem",
		"--issuer-credentials", filepath.Join(c.dir, "sentry-credentials"), "--trust-domain", "cluster.local",
		"--listen-address", "127.0.0.1", "--port", fmt.Sprint(sentryPort),
		"--healthz-listen-address", "127.0.0.1", "--healthz-port", fmt.Sprint(sentryHealth), "--enable-metrics=false")
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", sentryHealth), 60*time.Second, alive(sentry, "sentry"))

	// Sentry's root certificate, as the chart mounts it into the others.
	anchors := filepath.Join(c.dir, "trust-anchors.pem")
	deadline := time.Now().Add(30 * time.Second)
	for {
		ca, _ := c.kubectl("-n", "dapr-system", "get", "configmap", "dapr-trust-bundle", "-o", `jsonpath={.data.ca\.crt}`)
		if strings.Contains(ca, "BEGIN CERTIFICATE") {
			if err := os.WriteFile(anchors, []byte(ca), 0o600); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sentry wrote no trust bundle in 30 s")
		}
		time.Sleep(300 * time.Millisecond)
	}
	security := []string{"DAPR_TRUST_ANCHORS_FILE=" + anchors, "DAPR_CONTROL_PLANE_TRUST_DOMAIN=cluster.local",
		fmt.Sprintf("DAPR_SENTRY_ADDRESS=127.0.0.1:%d", sentryPort)}

	// The injector reads the controllers' service accounts once, at start.
	deadline = time.Now().Add(60 * time.Second)
	for {
		if _, err := c.kubectl("-n", "kube-system", "get", "serviceaccount", "replicaset-controller", "statefulset-controller", "job-controller"); err == nil {
			break
		}
		if err := alive(cm, "kube-controller-manager")(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("kube-controller-manager made no controller service accounts in 60 s")
		}
		time.Sleep(300 * time.Millisecond)
	}

	// One difference from a cluster stays: the injector gives daprd the
	// projected dapr-identity-token volume only when its own process has a
	// token file at /var/run/secrets/dapr.io/sentrytoken (pkg/injector's
	// pod_patch.go); a host process has none, so the injected pods here lack
	// that volume (daprd would fall back to the service-account token).
	// Dapr 1.16.5's healthz servers (sentry, injector, operator) and the
	// injector's webhook listen on ":port" whatever --*listen-address says
	// (pkg/healthz/server, the injector's Run): on every interface, on a
	// random port, for the test's few seconds. Everything else is on 127.0.0.1.
	injPort, injHealth := freePort(t), freePort(t)
	c.route("dapr-system", "dapr-sidecar-injector", 443, injPort)
	injector := c.start("injector", "injector",
		append(append(append(env, security...), injEnv...),
			"SIDECAR_IMAGE=daprio/daprd:1.16.5", "DAPR_SENTRY_TOKEN_FILE="+c.identityToken("dapr-sidecar-injector", "injector", "dapr-injector"),
			// The chart's global.actors defaults (no placement runs here;
			// the pods never start).
			"ACTORS_ENABLED=true", "ACTORS_SERVICE_NAME=placement", "ACTORS_SERVICE_ADDRESS=dapr-placement-server:50005"),
		"--kubeconfig", c.kubeconfig, "--port", fmt.Sprint(injPort),
		"--healthz-listen-address", "127.0.0.1", "--healthz-port", fmt.Sprint(injHealth), "--enable-metrics=false")
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", injHealth), 60*time.Second, alive(injector, "injector"))

	opPort, opWebhook, opHealth := freePort(t), freePort(t), freePort(t)
	c.route("dapr-system", "dapr-webhook", 443, opWebhook)
	operator := c.start("operator", "operator",
		append(env, "DAPR_SENTRY_TOKEN_FILE="+c.identityToken("dapr-operator", "operator", "dapr-operator")),
		"--kubeconfig", c.kubeconfig, "--config", "daprsystem", "--trust-anchors-file", anchors, "--disable-leader-election",
		"--listen-address", "127.0.0.1", "--port", fmt.Sprint(opPort),
		"--webhook-server-listen-address", "127.0.0.1", "--webhook-server-port", fmt.Sprint(opWebhook),
		"--healthz-listen-address", "127.0.0.1", "--healthz-port", fmt.Sprint(opHealth), "--enable-metrics=false")
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", opHealth), 60*time.Second, alive(operator, "operator"))
}

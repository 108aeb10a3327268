package validate

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cluster is one control plane on 127.0.0.1, started by the test and
// stopped (by pid) when it ends.
type cluster struct {
	t          *testing.T
	bin, dir   string
	kubeconfig string
	caCert     string
	caKey      any
	ca         *x509.Certificate
	saKey      string
	procs      []*exec.Cmd
	// The cluster network's stand-in (see egressProxy): Service
	// ClusterIP:port -> the host process's 127.0.0.1 port.
	mu     sync.Mutex
	routes map[string]string
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs one of the binaries with its output in <dir>/<name>.log; it is
// killed by its pid when the test ends, and its log's tail shown on failure.
func (c *cluster) start(name, binary string, env []string, args ...string) *exec.Cmd {
	c.t.Helper()
	logPath := filepath.Join(c.dir, name+".log")
	log, err := os.Create(logPath)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(c.bin, binary), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	// Killed with the test process too, should it die before its cleanups
	// (a -timeout panic runs none).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.procs = append(c.procs, cmd)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	c.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if c.t.Failed() {
			raw, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
			c.t.Logf("--- %s (pid %d), last lines of %s:\n%s", name, cmd.Process.Pid, logPath, strings.Join(lines[max(0, len(lines)-15):], "\n"))
		}
	})
	return cmd
}

func alive(cmd *exec.Cmd, name string) func() error {
	return func() error {
		if cmd.ProcessState != nil {
			return fmt.Errorf("%s exited: %s", name, cmd.ProcessState)
		}
		return nil
	}
}

func (c *cluster) kubectl(args ...string) (string, error) {
	return c.kubectlStdin("", args...)
}

func (c *cluster) kubectlStdin(stdin string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(c.bin, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (c *cluster) mustKubectl(args ...string) string {
	c.t.Helper()
	out, err := c.kubectl(args...)
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (c *cluster) mustApply(yamlText string) {
	c.t.Helper()
	if out, err := c.kubectlStdin(yamlText, "apply", "--server-side", "-f", "-"); err != nil {
		c.t.Fatalf("apply: %v\n%s\n%s", err, out, yamlText)
	}
}

func (c *cluster) getJSON(t *testing.T, into any, args ...string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(c.bin, "kubectl"), append(append([]string{"--kubeconfig", c.kubeconfig}, args...), "-o", "json")...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	if err := json.Unmarshal(out, into); err != nil {
		t.Fatal(err)
	}
}

// --- certificates (the cluster's CA, the API server's serving certificate,
// an admin in system:masters, the service-account signing key)

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (c *cluster) issue(name string, tmpl *x509.Certificate) (certPath, keyPath string) {
	c.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		c.t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	parent, signer := c.ca, c.caKey
	if c.ca == nil { // the CA itself
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		c.t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath = filepath.Join(c.dir, name+".crt"), filepath.Join(c.dir, name+".key")
	writePEM(c.t, certPath, "CERTIFICATE", der)
	writePEM(c.t, keyPath, "EC PRIVATE KEY", keyDER)
	if c.ca == nil {
		c.ca, _ = x509.ParseCertificate(der)
		c.caKey = key
	}
	return certPath, keyPath
}

func startCluster(t *testing.T, bin string) *cluster {
	dir, err := os.MkdirTemp("", "kube-check-")
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, bin: bin, dir: dir, routes: map[string]string{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs kept in %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	})

	c.caCert, _ = c.issue("ca", &x509.Certificate{Subject: pkix.Name{CommonName: "kube-check-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature})
	serveCert, serveKey := c.issue("apiserver", &x509.Certificate{Subject: pkix.Name{CommonName: "kube-apiserver"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost", "kubernetes.default.svc"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
	adminCert, adminKey := c.issue("admin", &x509.Certificate{Subject: pkix.Name{CommonName: "kube-check-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature})
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c.saKey = filepath.Join(dir, "sa.key")
	saPub := filepath.Join(dir, "sa.pub")
	writePEM(t, c.saKey, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(saKey))
	pubDER, _ := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	writePEM(t, saPub, "PUBLIC KEY", pubDER)

	// etcd: throwaway data, so no fsync.
	etcdClient, etcdPeer := freePort(t), freePort(t)
	etcd := c.start("etcd", "etcd", nil,
		"--name", "kube-check", "--data-dir", filepath.Join(dir, "etcd"), "--unsafe-no-fsync", "--log-level", "warn",
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPeer),
		"--initial-cluster", fmt.Sprintf("kube-check=http://127.0.0.1:%d", etcdPeer))
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/health", etcdClient), 30*time.Second, alive(etcd, "etcd"))

	// The API server's "cluster" traffic (webhooks called through their
	// Service) goes to an HTTP CONNECT proxy on a unix socket: no pod
	// network runs here, so the proxy routes a Service's ClusterIP to the
	// host process behind it. TLS stays end to end, with the Service's name.
	sock := filepath.Join(dir, "cluster-network.sock")
	c.egressProxy(sock)
	egress := filepath.Join(dir, "egress.yaml")
	if err := os.WriteFile(egress, []byte(`apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
  - name: cluster
    connection:
      proxyProtocol: HTTPConnect
      transport:
        uds:
          udsName: `+sock+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	apiPort := freePort(t)
	api := c.start("kube-apiserver", "kube-apiserver", nil,
		"--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdClient),
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", fmt.Sprint(apiPort),
		"--endpoint-reconciler-type", "none", "--cert-dir", filepath.Join(dir, "apiserver"),
		"--tls-cert-file", serveCert, "--tls-private-key-file", serveKey, "--client-ca-file", c.caCert,
		"--service-account-key-file", saPub, "--service-account-signing-key-file", c.saKey,
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range", "10.96.0.0/16",
		// RBAC as on any cluster; the admission plugins are the defaults
		// (PodSecurity, ServiceAccount, MutatingAdmissionWebhook among them).
		"--authorization-mode", "RBAC",
		"--egress-selector-config-file", egress)

	c.kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: kube-check, cluster: {server: "https://127.0.0.1:%d", certificate-authority: %s}}]
users: [{name: admin, user: {client-certificate: %s, client-key: %s}}]
contexts: [{name: kube-check, context: {cluster: kube-check, user: admin}}]
current-context: kube-check
`, apiPort, c.caCert, adminCert, adminKey)
	if err := os.WriteFile(c.kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := c.kubectl("get", "--raw", "/readyz")
		if err == nil && strings.TrimSpace(out) == "ok" {
			break
		}
		if err := alive(api, "kube-apiserver")(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("kube-apiserver not ready after 60 s: %s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	return c
}

// egressProxy serves HTTP CONNECT on a unix socket, to the routes only.
func (c *cluster) egressProxy(sock string) {
	l, err := net.Listen("unix", sock)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go c.proxy(conn)
		}
	}()
}

func (c *cluster) proxy(conn net.Conn) {
	defer conn.Close()
	br := bufio.NewReader(conn)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	c.mu.Lock()
	target, ok := c.routes[req.Host]
	c.mu.Unlock()
	if !ok {
		fmt.Fprintf(conn, "HTTP/1.1 502 Bad Gateway\r\n\r\nno route to %s\n", req.Host)
		return
	}
	up, err := net.Dial("tcp", target)
	if err != nil {
		fmt.Fprintf(conn, "HTTP/1.1 502 Bad Gateway\r\n\r\n%v\n", err)
		return
	}
	defer up.Close()
	fmt.Fprint(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
	go func() { _, _ = io.Copy(up, br); up.(*net.TCPConn).CloseWrite() }()
	_, _ = io.Copy(conn, up)
}

// route sends the Service's ClusterIP:port to 127.0.0.1:hostPort.
func (c *cluster) route(namespace, service string, port, hostPort int) {
	c.t.Helper()
	ip := strings.TrimSpace(c.mustKubectl("-n", namespace, "get", "service", service, "-o", "jsonpath={.spec.clusterIP}"))
	c.mu.Lock()
	c.routes[net.JoinHostPort(ip, fmt.Sprint(port))] = fmt.Sprintf("127.0.0.1:%d", hostPort)
	c.mu.Unlock()
}

// daprCRDs is the CRD folder of the dapr module tools/validate requires
// (v1.16.5, the sidecar's version).
func daprCRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/dapr/dapr").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m github.com/dapr/dapr: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "charts", "dapr", "crds")
	if _, err := os.Stat(dir); err != nil {
		return "", err
	}
	return dir, nil
}

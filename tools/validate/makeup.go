// Package validate checks the deployment files (docker-compose.yml and its
// Wasm override, deploy/kubernetes, dapr.yaml) against the compose-spec
// loader Docker Compose uses, the Kubernetes and Dapr API types, and against
// what `make up` runs: `stackctl daprd-args` prints the sidecars make up
// starts, from tools/stack/src/daprd.rs, the one place the flags are decided.
package validate

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

// Sidecar is one service beside its daprd as `make up` starts it.
type Sidecar struct {
	AppID                string   `json:"app_id"`
	Binary               string   `json:"binary"`
	AppPort              int      `json:"app_port"`
	DaprHTTPPort         int      `json:"dapr_http_port"`
	DaprGRPCPort         int      `json:"dapr_grpc_port"`
	DaprInternalGRPCPort int      `json:"dapr_internal_grpc_port"`
	MetricsPort          int      `json:"metrics_port"`
	Args                 []string `json:"args"`
	// The app's RATE_LIMIT_* settings under make up.
	RateLimits map[string]string `json:"rate_limits"`
}

// Flags returns daprd's flags as name → value ("--app-id" → "…"), and an
// error when they are not --name value pairs (or --name=value, the only way
// to give a boolean flag such as --enable-mtls) or a name repeats.
func Flags(args []string) (map[string]string, error) {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		name := args[i]
		if !strings.HasPrefix(name, "--") {
			return nil, fmt.Errorf("expected a --flag at position %d, got %q", i, name)
		}
		var value string
		if n, v, ok := strings.Cut(name, "="); ok {
			name, value = n, v
		} else {
			if i+1 >= len(args) {
				return nil, fmt.Errorf("flag %s has no value: %q", name, args)
			}
			i++
			value = args[i]
		}
		if _, dup := flags[name]; dup {
			return nil, fmt.Errorf("flag %s given twice", name)
		}
		flags[name] = value
	}
	return flags, nil
}

// RepoRoot is the repository this package sits in (tools/validate).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// MakeUp runs `stackctl daprd-args` ($STACKCTL, else target/debug/stackctl).
func MakeUp(root string) ([]Sidecar, error) {
	bin := os.Getenv("STACKCTL")
	if bin == "" {
		bin = filepath.Join(root, "target", "debug", "stackctl")
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("stackctl not found (%v): build it with `cargo build -p stack --bin stackctl` or set STACKCTL", err)
	}
	out, err := exec.Command(bin, "daprd-args").Output()
	if err != nil {
		return nil, fmt.Errorf("%s daprd-args: %w", bin, err)
	}
	var sidecars []Sidecar
	if err := json.Unmarshal(out, &sidecars); err != nil {
		return nil, fmt.Errorf("stackctl daprd-args printed no sidecar list: %w", err)
	}
	if len(sidecars) == 0 {
		return nil, fmt.Errorf("stackctl daprd-args printed no sidecars")
	}
	return sidecars, nil
}

// ByAppID indexes sidecars by app id.
func ByAppID(sidecars []Sidecar) map[string]Sidecar {
	m := map[string]Sidecar{}
	for _, s := range sidecars {
		m[s.AppID] = s
	}
	return m
}

// problems collects every finding, so one run reports them all.
type problems []error

func (p *problems) add(format string, args ...any) {
	*p = append(*p, fmt.Errorf(format, args...))
}

// promconfig loads a Prometheus configuration the way Prometheus does, with
// Kubernetes service discovery compiled in (Debian's prometheus 2.42 has it
// stripped, so its promtool refuses kubernetes_sd_configs). Used by
// tools/validate on deploy/kubernetes/web-and-monitoring/prometheus.yml.
//
//	promconfig <prometheus.yml>
package main

import (
	"fmt"
	"os"

	"github.com/prometheus/common/promslog"
	"github.com/prometheus/prometheus/config"
	_ "github.com/prometheus/prometheus/discovery/kubernetes" // registers kubernetes_sd_configs
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: promconfig <prometheus.yml>")
		os.Exit(2)
	}
	cfg, err := config.LoadFile(os.Args[1], false, promslog.NewNopLogger())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, sc := range cfg.ScrapeConfigs {
		fmt.Printf("job %s: %d discovery configs, %d relabel rules\n", sc.JobName, len(sc.ServiceDiscoveryConfigs), len(sc.RelabelConfigs))
	}
}

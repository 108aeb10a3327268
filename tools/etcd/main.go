// etcd, the Kubernetes API server's store, built from its Go module (no
// prebuilt binaries here) for scripts/kube-check.sh.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

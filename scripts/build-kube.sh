#!/usr/bin/env bash
# Builds what tools/validate's cluster test (make validate-deploy) runs, from
# Go modules only, into .cache/tools/kube/: etcd v3.6.5 (tools/etcd);
# kube-apiserver, kubectl and kube-controller-manager v1.35.4 (tools/kube);
# Dapr's sentry, operator and sidecar injector at the sidecar's version
# (tools/dapr-control-plane); Prometheus's config loader with Kubernetes
# discovery (tools/promconfig). Only when this script, those modules or the
# Go version changed. Cold: ~17 CPU-minutes, mostly Kubernetes (~9-11 min on
# 2 idle cores); Go's build cache makes a rebuild seconds. One go build at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

out=.cache/tools/kube
stamp=$( (cat "$0" tools/etcd/* tools/kube/* tools/dapr-control-plane/* tools/promconfig/*; go version) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

mkdir -p "$out"
echo "kube: building etcd, Kubernetes, Dapr's control plane and promconfig into $out (cold: ~10 min)"
start=$(date +%s)
export CGO_ENABLED=0
flags=(-trimpath -ldflags="-s -w")
( cd tools/etcd && go build "${flags[@]}" -o "../../$out/etcd" . )
# Kubernetes reads its version from ldflags; without it kubectl warns of a skew.
kv=$(sed -n 's/^require k8s.io\/kubernetes \(v.*\)$/\1/p' tools/kube/go.mod)
( cd tools/kube && go build -trimpath \
    -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kv -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(echo "$kv" | cut -d. -f2)" \
    -o "../../$out/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kube-controller-manager )
dv=$(sed -n 's/^\tgithub.com\/dapr\/dapr v\(.*\)$/\1/p' tools/daprd/go.mod | head -n1)
cv=$(sed -n 's/^require github.com\/dapr\/dapr v\(.*\)$/\1/p' tools/dapr-control-plane/go.mod)
if [ "$dv" != "$cv" ]; then
  echo "kube: tools/dapr-control-plane has dapr $cv, the sidecar (tools/daprd) $dv: make them equal" >&2
  exit 1
fi
( cd tools/dapr-control-plane && go build -trimpath -ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$dv" \
    -o "../../$out/" github.com/dapr/dapr/cmd/sentry github.com/dapr/dapr/cmd/operator github.com/dapr/dapr/cmd/injector )
( cd tools/promconfig && go build "${flags[@]}" -o "../../$out/promconfig" . )
echo "$stamp" > "$out/stamp"
echo "kube: built in $(( $(date +%s) - start )) s"

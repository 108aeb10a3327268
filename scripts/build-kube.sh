#!/usr/bin/env bash
# Builds the control plane scripts/kube-check.sh runs, from Go modules only:
# etcd v3.6.5 (tools/etcd), kube-apiserver, kubectl and kube-controller-manager
# v1.35.4 (tools/kube), and Dapr's sentry, operator and sidecar injector
# (tools/dapr-control-plane, at the sidecar's dapr version) into .cache/tools/kube/,
# only when this script, their go.mod/go.sum or the Go version changed. Cold: ~6-8 min of
# 2 cores; Go's build cache makes a rebuild seconds. One go build at a time.
set -euo pipefail
cd "$(dirname "$0")/.."

out=.cache/tools/kube
stamp=$( (cat "$0" tools/etcd/* tools/kube/* tools/dapr-control-plane/*; go version) | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

mkdir -p "$out"
echo "kube: building etcd, kube-apiserver, kubectl, kube-controller-manager and Dapr's control plane (cold: several minutes)"
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
echo "$stamp" > "$out/stamp"
echo "kube: built in $(( $(date +%s) - start )) s"

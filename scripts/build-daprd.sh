#!/usr/bin/env bash
# Builds the Dapr sidecar from tools/daprd (dapr v1.16.5, pinned in go.mod)
# into .cache/bin/daprd, and Dapr's certificate authority, Sentry (the same
# module's cmd/sentry: the production profile's mTLS), into
# .cache/bin/sentry, only when their sources or the Go version changed.
# The Go module and build caches make a rebuild on a warm machine seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

out=.cache/bin/daprd
stamp_file=.cache/bin/daprd.stamp
stamp=$( (cat tools/daprd/go.mod tools/daprd/go.sum tools/daprd/main.go; go version) | sha256sum | cut -d' ' -f1)
if [ -x "$out" ] && [ -x .cache/bin/sentry ] && [ "$(cat "$stamp_file" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi

mkdir -p .cache/bin
echo "daprd: building from tools/daprd (the first build downloads ~1 GB of Go modules and takes a few minutes)"
start=$(date +%s)
version=$(sed -n 's/^\tgithub.com\/dapr\/dapr v\(.*\)$/\1/p' tools/daprd/go.mod | head -n1)
( cd tools/daprd && CGO_ENABLED=0 go build -tags stablecomponents -trimpath \
    -ldflags="-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=${version}" -o "../../$out.tmp" . )
( cd tools/daprd && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o ../../.cache/bin/sentry.tmp \
    github.com/dapr/dapr/cmd/sentry )
mv .cache/bin/sentry.tmp .cache/bin/sentry
mv "$out.tmp" "$out"
echo "$stamp" > "$stamp_file"
echo "daprd: $("$out" --version) built in $(( $(date +%s) - start )) s"

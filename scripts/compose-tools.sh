#!/usr/bin/env bash
# The docker CLI plugins `make compose-up` needs, built from Go modules (no
# binary downloads here) and installed where every docker CLI looks, so plain
# `docker compose …` works afterwards:
#   docker-compose  Docker Compose v5.6.0 (tools/compose, a wrapper module
#                   pinning it with go.sum, as tools/daprd does for daprd)
#   docker-buildx   buildx v0.39.1: BuildKit builds (the Dockerfile's
#                   `RUN --mount`, build contexts); without it compose falls
#                   back to the classic builder, which cannot build them
# The binaries are kept outside the clone ($CACHE/bin), rebuilt only when
# their pins or Go change; Go's caches make a rebuild quick.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cache.sh

BUILDX_VERSION=v0.39.1
plugins=${DOCKER_CLI_PLUGINS:-/usr/local/lib/docker/cli-plugins}
mkdir -p "$CACHE/bin" "$plugins"

# build <name> <stamp> <function>: runs the function (which writes
# $CACHE/bin/<name>) unless the stamp is unchanged, then installs the plugin.
build() {
  local name=$1 stamp=$2
  shift 2
  if [ ! -x "$CACHE/bin/$name" ] || [ "$(cat "$CACHE/bin/$name.stamp" 2>/dev/null)" != "$stamp" ]; then
    echo "compose-tools: building $name (the first time a few minutes)"
    local start
    start=$(date +%s)
    "$@"
    echo "$stamp" > "$CACHE/bin/$name.stamp"
    echo "compose-tools: $name built in $(( $(date +%s) - start )) s"
  fi
  if ! cmp -s "$CACHE/bin/$name" "$plugins/$name"; then
    install -m 0755 "$CACHE/bin/$name" "$plugins/$name"
  fi
}

# Each writes $CACHE/bin/<plugin>, its version stamped in (compose refuses a
# buildx that reports none).
export CGO_ENABLED=0
compose_version=$(sed -n 's/^require github.com\/docker\/compose\/v5 //p' tools/compose/go.mod)
build_compose() {
  (cd tools/compose && go build -trimpath \
    -ldflags="-s -w -X github.com/docker/compose/v5/internal.Version=$compose_version" \
    -o "$CACHE/bin/docker-compose" github.com/docker/compose/v5/cmd)
}
build_buildx() {
  GOBIN=$CACHE/bin/buildx go install -trimpath \
    -ldflags="-s -w -X github.com/docker/buildx/version.Version=$BUILDX_VERSION" \
    "github.com/docker/buildx/cmd/buildx@$BUILDX_VERSION"
  mv "$CACHE/bin/buildx/buildx" "$CACHE/bin/docker-buildx"
}

build docker-compose "$( (cat tools/compose/go.mod tools/compose/go.sum; go version) | sha256sum | cut -d' ' -f1)" build_compose
build docker-buildx "$(echo "$BUILDX_VERSION ldflags-version $(go version)" | sha256sum | cut -d' ' -f1)" build_buildx

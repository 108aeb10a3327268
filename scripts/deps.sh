#!/usr/bin/env bash
# Installs what the stack and its tests need and this machine lacks.
# Idempotent and quick when everything is there; run by `make up` and `make test`.
set -euo pipefail

# command-to-check:debian-package
needs=(
  mariadbd:mariadb-server
  mariadb:mariadb-client
  redis-server:redis-server
  redis-cli:redis-tools
  clang:clang
  debootstrap:debootstrap  # the trixie root WasmEdge runs in (scripts/wasmedge.sh)
  prometheus:prometheus
  promtool:prometheus      # checks and unit-tests the alert rules
  java:default-jre-headless  # Zipkin (scripts/zipkin.sh)
  mvn:maven                # fetches the Zipkin jar
  nginx:nginx              # the web front (web/nginx), `make up` and tests
  chromium:chromium        # the browser tests drive Debian's, never a downloaded one
  openssl:openssl          # compose-secrets makes Sentry's issuer (validate-deploy runs it)
)
missing=()
for pair in "${needs[@]}"; do
  cmd=${pair%%:*} pkg=${pair##*:}
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
    missing+=("$pkg")
  fi
done
# Chromium needs a font to render the page's text in screenshots.
[ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
# wasi-libc has no command: zstd-sys and libz-sys need its headers for wasm32.
[ -d /usr/include/wasm32-wasi ] || missing+=(wasi-libc)

if [ ${#missing[@]} -gt 0 ]; then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  echo "deps: installing ${missing[*]}"
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The Wasm target for the same-source builds (rust-toolchain.toml names it
# too; this covers a toolchain that predates the file).
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  echo "deps: adding the wasm32-wasip1 Rust target"
  rustup target add wasm32-wasip1
fi

# daprd v1.16.5 needs Go >= 1.24; Debian's golang-go is older, so Go comes
# with the machine (the polyglot image has it in /usr/local/go).
if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go >= 1.24 is needed to build daprd and is not on PATH" >&2
  exit 1
fi

# The browser tests run playwright-core (web/package-lock.json) on Node >= 20;
# bookworm's nodejs is 18, so Node comes with the machine like Go. The e2e
# test runs `npm ci` itself, only when web/node_modules is missing or stale.
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' 2>/dev/null || ! command -v npm >/dev/null 2>&1; then
  echo "deps: Node >= 20 with npm is needed for the browser tests and is not on PATH" >&2
  exit 1
fi

# libLiteRt.so for classify's native backend, and the Python reference the
# tests compare it against (scripts/litert.sh: cached under .cache/).
scripts/litert.sh

#!/usr/bin/env bash
# Puts the services' wasm32-wasip1 modules and the shared models into the
# WasmEdge root (scripts/wasmedge.sh) and AOT-compiles each module there:
#   <root>/srv/wasm/<service>.wasm   the module cargo built (copied in: the
#   <root>/srv/wasm/<service>.so     chrooted wasmedge sees only the root)
#   <root>/srv/models/               ../shared/models, for classify
# The AOT output is WasmEdge's shared-library format, not the "universal"
# .wasm: 0.14.1's loader rejects the universal AOT section of a module as
# large as classify ("number of codes not matching") and silently falls back
# to the interpreter, ~200x slower. A .so has no bytecode to fall back to.
# A module is recompiled only when its .wasm changed (AOT takes minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

root=${WASMEDGE_ROOT:-$PWD/.cache/wasmedge-root}
built=${CARGO_TARGET_DIR:-target}/wasm32-wasip1/wasm
shared=${STACK_SHARED_DIR:-../shared}
services=(image-api-grayscale image-api-classify events-service)

fail() { echo "wasmedge-aot: $*" >&2; exit 1; }
[ -f "$root/.wasmedge-ready" ] || fail "no WasmEdge root at $root: run scripts/wasmedge.sh"
[ -d "$shared/models" ] || fail "no $shared/models: the shared models belong beside the repository"
mkdir -p "$root/srv/wasm" "$root/srv/models"

for f in "$shared"/models/*; do
  cmp -s "$f" "$root/srv/models/${f##*/}" || cp "$f" "$root/srv/models/"
done

# classify with only the TFLite plugin backend: not AOT-compiled (without
# the plugin it can only refuse to start, which the tests check).
tflite=$built/image-api-classify-tflite.wasm
if [ -f "$tflite" ]; then
  cmp -s "$tflite" "$root/srv/wasm/${tflite##*/}" || cp "$tflite" "$root/srv/wasm/"
fi

mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

# One module's AOT compile; prints how it went. wasmedge compile runs on one
# core, so the modules compile side by side: classify alone takes ~4 min,
# the other two ~1 min each.
compile() {
  local name=$1 src=$built/$1.wasm wasm=$root/srv/wasm/$1.wasm aot=$root/srv/wasm/$1.so sum start
  sum=$(sha256sum < "$src" | cut -d' ' -f1)
  if [ -f "$aot" ] && [ "$(cat "$aot.sha256" 2>/dev/null)" = "$sum" ]; then
    echo cached
    return
  fi
  cp "$src" "$wasm"
  start=$(date +%s)
  chroot "$root" wasmedge compile "/srv/wasm/$name.wasm" "/srv/wasm/$name.tmp.so" > "$aot.log" 2>&1 || return 1
  mv "$root/srv/wasm/$name.tmp.so" "$aot"
  echo "$sum" > "$aot.sha256"
  echo "compiled in $(( $(date +%s) - start )) s"
}

for name in "${services[@]}"; do
  [ -f "$built/$name.wasm" ] || fail "$built/$name.wasm is missing: run make wasm"
done
outcomes=$(mktemp -d)
trap 'rm -rf "$outcomes"' EXIT
declare -A job
for name in "${services[@]}"; do
  compile "$name" > "$outcomes/$name" &
  job[$name]=$!
done
failed=()
for name in "${services[@]}"; do
  if wait "${job[$name]}"; then
    printf 'wasmedge-aot: %-20s .wasm %9s  AOT %9s  (%s)\n' "$name" "$(mib "$root/srv/wasm/$name.wasm")" \
      "$(mib "$root/srv/wasm/$name.so")" "$(cat "$outcomes/$name")"
  else
    failed+=("$name")
  fi
done
[ ${#failed[@]} -eq 0 ] || fail "wasmedge compile failed for ${failed[*]}; see $root/srv/wasm/<name>.so.log"
[ -f "$tflite" ] && printf 'wasmedge-aot: %-20s .wasm %9s  (plugin backend only; not AOT-compiled)\n' "image-api-classify-tflite" "$(mib "$tflite")"
exit 0

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
for name in "${services[@]}"; do
  src=$built/$name.wasm wasm=$root/srv/wasm/$name.wasm aot=$root/srv/wasm/$name.so
  [ -f "$src" ] || fail "$src is missing: run make wasm"
  sum=$(sha256sum < "$src" | cut -d' ' -f1)
  if [ -f "$aot" ] && [ "$(cat "$aot.sha256" 2>/dev/null)" = "$sum" ]; then
    how=cached
  else
    cp "$src" "$wasm"
    start=$(date +%s)
    chroot "$root" wasmedge compile "/srv/wasm/$name.wasm" "/srv/wasm/$name.tmp.so" > "$aot.log" 2>&1 ||
      fail "wasmedge compile $name failed; see $aot.log"
    mv "$root/srv/wasm/$name.tmp.so" "$aot"
    echo "$sum" > "$aot.sha256"
    how="compiled in $(( $(date +%s) - start )) s"
  fi
  printf 'wasmedge-aot: %-20s .wasm %9s  AOT %9s  (%s)\n' "$name" "$(mib "$wasm")" "$(mib "$aot")" "$how"
done
[ -f "$tflite" ] && printf 'wasmedge-aot: %-20s .wasm %9s  (plugin backend only; not AOT-compiled)\n' "image-api-classify-tflite" "$(mib "$tflite")"
exit 0

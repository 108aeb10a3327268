#!/usr/bin/env bash
# LiteRT for classify's native `litert` backend, installed like every other
# dependency: the pinned PyPI wheel, downloaded once with pip (no install),
# and libLiteRt.so unpacked from it into .cache/litert/<version>/, where
# the build (LITERT_LIB_DIR, .cargo/config.toml) and the binaries' rpath
# (services/classify/build.rs) find it. No Python at run time.
#
# Also a small venv, .cache/litert-py, with the same wheel's Python
# interpreter: the reference the tests compare classify against
# (services/classify/reference/litert_reference.py). Both steps are skipped when done.
set -euo pipefail
cd "$(dirname "$0")/.."

# Must match the C headers the `litert` crate vendors (litert-sys 0.2.1:
# 2.1.4); another version's library fails at model load.
VERSION=2.1.4
LIB_SHA256=c590f1124053ce6d2ceaef6d1174af15f8103a76872059414d18ff2e9cfaf681
WHEEL_DIR=.cache/litert/wheel
LIB_DIR=.cache/litert/$VERSION
VENV=.cache/litert-py

lib_ok() { [ -f "$LIB_DIR/libLiteRt.so" ] && echo "$LIB_SHA256  $LIB_DIR/libLiteRt.so" | sha256sum -c --quiet - >/dev/null 2>&1; }

if ! lib_ok; then
  if ! ls "$WHEEL_DIR"/ai_edge_litert-"$VERSION"-*.whl >/dev/null 2>&1; then
    echo "litert: downloading the ai-edge-litert $VERSION wheel (once, into $WHEEL_DIR)"
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$WHEEL_DIR" "ai-edge-litert==$VERSION"
  fi
  mkdir -p "$LIB_DIR"
  python3 -m zipfile -e "$(ls "$WHEEL_DIR"/ai_edge_litert-"$VERSION"-*.whl | head -1)" "$WHEEL_DIR/unpacked"
  cp "$WHEEL_DIR/unpacked/ai_edge_litert/libLiteRt.so" "$LIB_DIR/libLiteRt.so"
  rm -rf "$WHEEL_DIR/unpacked"
  lib_ok || { echo "litert: $LIB_DIR/libLiteRt.so is not the $VERSION library expected (sha256)" >&2; exit 1; }
  echo "litert: libLiteRt.so $VERSION in $LIB_DIR"
fi

# The image build needs only the library (LITERT_LIB_ONLY=1).
[ -z "${LITERT_LIB_ONLY:-}" ] || exit 0

if ! "$VENV/bin/python" -c 'import ai_edge_litert.interpreter, numpy, PIL' >/dev/null 2>&1; then
  echo "litert: the Python reference interpreter (ai-edge-litert $VERSION, numpy, pillow) into $VENV"
  python3 -m venv "$VENV"
  # The wheel already downloaded, so only numpy, pillow and the wheel's small
  # dependencies come from the registry.
  "$VENV/bin/pip" install -q --find-links "$WHEEL_DIR" "ai-edge-litert==$VERSION" numpy pillow
fi

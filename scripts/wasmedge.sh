#!/usr/bin/env bash
# A minimal Debian trixie root with WasmEdge in it, under .cache/wasmedge-root.
# Bookworm has no WasmEdge package and trixie's must not be mixed into the
# host, so WasmEdge runs chrooted (`chroot <root> wasmedge ...`); the chroot
# shares the host network, so daprd and MariaDB on 127.0.0.1 stay reachable.
# Built once (~35 s here, ~350 MB); a stamp makes later runs instant.
set -euo pipefail
cd "$(dirname "$0")/.."

root=${WASMEDGE_ROOT:-$PWD/.cache/wasmedge-root}
stamp=$root/.wasmedge-ready

if [ -f "$stamp" ]; then
  echo "wasmedge: $(chroot "$root" wasmedge --version | head -n1) in $root"
  exit 0
fi

fail() { echo "wasmedge: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "debootstrap and chroot need root; run as root"
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || scripts/deps.sh
export PATH=$PATH:/usr/sbin:/sbin

. scripts/lib/debian-mirror.sh
mirror=$(debian_mirror) || mirror=""
[ -n "$mirror" ] || fail "no Debian mirror found in /etc/apt/sources.list{,.d/*}"

# Build aside and move into place only when complete, so an interrupted run
# never leaves a half root that looks usable.
tmp=$root.partial
rm -rf "$tmp"
mkdir -p "$(dirname "$root")"
echo "wasmedge: debootstrap trixie (minbase) from $mirror into $tmp"
start=$(date +%s)
debootstrap --variant=minbase trixie "$tmp" "$mirror" > "$tmp.log" 2>&1 ||
  fail "debootstrap failed; see $tmp.log"
cp /etc/resolv.conf "$tmp/etc/resolv.conf"
echo "wasmedge: apt-get install wasmedge in the trixie root"
chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y wasmedge >> "$tmp.log" 2>&1 ||
  fail "apt-get install wasmedge failed in the chroot; see $tmp.log"
chroot "$tmp" apt-get clean
rm -rf "$root"
mv "$tmp" "$root"
mv "$tmp.log" "$root.log"
touch "$stamp"
echo "wasmedge: root ready in $(( $(date +%s) - start )) s ($(du -sh "$root" | cut -f1))"
echo "wasmedge: $(chroot "$root" wasmedge --version | head -n1) in $root"

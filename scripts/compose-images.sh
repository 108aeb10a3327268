#!/usr/bin/env bash
# The images `make compose-up` needs that no registry gives this machine:
#   dapr-wasm-stack-local/bookworm-stack   a Debian bookworm root (debootstrap)
#       with Debian's MariaDB, Redis, nginx, Prometheus, Java 17 + the Zipkin jar,
#       busybox; deploy/compose/local/Dockerfile makes the stand-ins from it
#   dapr-wasm-stack-local/distroless-cc    glibc, libgcc, libstdc++, CA bundle,
#       nonroot user: what gcr.io/distroless/cc holds
#   dapr-wasm-stack-local/distroless-static  the same without libraries
#   dapr-wasm-stack-local/busybox          /bin/busybox alone
#   dapr-wasm-stack-local/daprd, /sentry   the project's own daprd and Sentry
#       (.cache/bin, scripts/build-daprd.sh) on distroless-static, laid out
#       as daprio/daprd and daprio/sentry (/daprd, /sentry)
# and stages the service binaries for the Dockerfile's `prebuilt` context:
#   scripts/compose-images.sh <folder with the built binaries>
# The root is cached outside the clone ($CACHE/compose) and each image is
# remade only when what it is made of changed (a label holds that stamp).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cache.sh
. scripts/lib/debian-mirror.sh
export PATH=$PATH:/usr/sbin:/sbin

binaries=${1:?usage: $0 <folder with image-api-grayscale, image-api-classify, events-service, migrate>}
fail() { echo "compose-images: $*" >&2; exit 1; }
# Only making an image needs root (debootstrap, chroot, file owners).
need_root() { [ "$(id -u)" = 0 ] || fail "making $1 needs root (debootstrap, chroot, chown); run as root once"; }

packages=(mariadb-server mariadb-client redis-server redis-tools nginx-light gettext-base prometheus
  openjdk-17-jre-headless busybox-static ca-certificates)
zipkin_jar=$(ls .cache/zipkin/zipkin-server-*-exec.jar 2>/dev/null | head -n1)
[ -s "$zipkin_jar" ] || fail "no Zipkin jar in .cache/zipkin (scripts/zipkin.sh)"

# stamp_of <image>: the stamp label of a local image, empty when absent.
stamp_of() { docker image inspect --format '{{index .Config.Labels "stamp"}}' "$1" 2>/dev/null || true; }

# import <image> <folder> <stamp> [--change …]: the folder as a one-layer image.
import() {
  local image=$1 dir=$2 stamp=$3
  shift 3
  tar --numeric-owner -C "$dir" -c . | docker import --change "LABEL stamp=$stamp" "$@" - "$image" > /dev/null
  echo "compose-images: $image"
}

# ---- the Debian root ---------------------------------------------------------
root_stamp=$( (printf '%s\n' "${packages[@]}"; basename "$zipkin_jar"; echo v1) | sha256sum | cut -c1-16)
root=$CACHE/compose/bookworm-root
if [ "$(cat "$root/.stamp" 2>/dev/null)" != "$root_stamp" ]; then
  need_root "the Debian root"
  mirror=$(debian_mirror) || fail "no Debian mirror in /etc/apt/sources.list{,.d/*}"
  # Built aside; a run that stopped after debootstrap goes on from there.
  tmp=$root.partial
  mkdir -p "$(dirname "$root")"
  echo "compose-images: debootstrap bookworm (minbase) from $mirror, then ${packages[*]} (a few minutes, once)"
  start=$(date +%s)
  if [ ! -f "$tmp/.debootstrapped" ]; then
    rm -rf "$tmp"
    debootstrap --variant=minbase bookworm "$tmp" "$mirror" > "$tmp.log" 2>&1 || fail "debootstrap failed; see $tmp.log"
    touch "$tmp/.debootstrapped"
  fi
  cp /etc/resolv.conf "$tmp/etc/resolv.conf"
  # No service starts inside the root while packages install.
  printf '#!/bin/sh\nexit 101\n' > "$tmp/usr/sbin/policy-rc.d"
  chmod +x "$tmp/usr/sbin/policy-rc.d"
  # Java's post-install runs java, which needs /proc: mounted for the
  # install only, and unmounted whatever happens.
  mount -t proc proc "$tmp/proc"
  trap 'umount "$tmp/proc" 2>/dev/null || true' EXIT
  chroot "$tmp" env DEBIAN_FRONTEND=noninteractive dpkg --configure -a >> "$tmp.log" 2>&1
  chroot "$tmp" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}" >> "$tmp.log" 2>&1 ||
    fail "apt-get install failed in the root; see $tmp.log"
  umount "$tmp/proc"
  trap - EXIT
  chroot "$tmp" apt-get clean
  rm -rf "$tmp"/var/lib/apt/lists/* "$tmp/usr/sbin/policy-rc.d" "$tmp/etc/resolv.conf" "$tmp/.debootstrapped"
  mkdir -p "$tmp/opt/zipkin"
  cp "$zipkin_jar" "$tmp/opt/zipkin/zipkin.jar"
  # The official images' healthchecks call wget; Debian's has none.
  ln -s /bin/busybox "$tmp/usr/local/bin/wget"
  echo "$root_stamp" > "$tmp/.stamp"
  rm -rf "$root"
  mv "$tmp" "$root"
  mv "$tmp.log" "$root.log"
  echo "compose-images: root ready in $(( $(date +%s) - start )) s ($(du -sh "$root" | cut -f1))"
fi

if [ "$(stamp_of dapr-wasm-stack-local/bookworm-stack)" != "$root_stamp" ]; then
  import dapr-wasm-stack-local/bookworm-stack "$root" "$root_stamp" --change 'CMD ["/bin/bash"]'
fi

# ---- distroless-like bases ---------------------------------------------------
# A folder with the files of some of the root's packages, plus what every
# distroless image has: passwd/group with root, nobody and nonroot (65532),
# the CA bundle, /tmp 1777, /home/nonroot.
distroless() {
  local dir=$1
  shift
  need_root "$dir"
  rm -rf "$dir"
  mkdir -p "$dir"/{etc/ssl/certs,tmp,home/nonroot,usr/bin}
  chmod 1777 "$dir/tmp"
  chown 65532:65532 "$dir/home/nonroot"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$dir/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$dir/etc/group"
  cp "$root/etc/ssl/certs/ca-certificates.crt" "$dir/etc/ssl/certs/"
  if [ $# -gt 0 ]; then
    # merged /usr: /lib and /lib64 are links, as in the root.
    ln -s usr/lib "$dir/lib"
    ln -s usr/lib64 "$dir/lib64"
    chroot "$root" dpkg -L "$@" | while read -r f; do
      [ -f "$root$f" ] || [ -L "$root$f" ] || continue
      case "$f" in /usr/share/doc/*|/usr/share/lintian/*|/usr/share/gdb/*) continue ;; esac
      f=${f#/}
      case "$f" in lib/*|lib64/*) f=usr/$f ;; esac
      mkdir -p "$dir/$(dirname "$f")"
      cp -a "$root/$f" "$dir/$f"
    done
  fi
}
# What the cc base holds: glibc, libgcc, libstdc++ as distroless/cc, and
# zlib, which the host's glibc builds of events-service and migrate link
# (mysql_async's compression; the registry build is static musl).
cc_packages=(libc6 libgcc-s1 libstdc++6 zlib1g)
base_stamp=$( (echo "$root_stamp ${cc_packages[*]}"; sed -n '/^distroless()/,/^}/p' "$0") | sha256sum | cut -c1-16)
work=$CACHE/compose/work
if [ "$(stamp_of dapr-wasm-stack-local/distroless-cc)" != "$base_stamp" ]; then
  distroless "$work/cc" "${cc_packages[@]}"
  import dapr-wasm-stack-local/distroless-cc "$work/cc" "$base_stamp" --change 'USER 65532:65532'
fi
if [ "$(stamp_of dapr-wasm-stack-local/distroless-static)" != "$base_stamp" ]; then
  distroless "$work/static"
  import dapr-wasm-stack-local/distroless-static "$work/static" "$base_stamp" --change 'USER 65532:65532'
fi
if [ "$(stamp_of dapr-wasm-stack-local/busybox)" != "$base_stamp" ]; then
  rm -rf "$work/busybox"
  mkdir -p "$work/busybox/bin"
  cp "$root/bin/busybox" "$work/busybox/bin/"
  # Every applet by its own name, as the official image has them.
  for applet in $("$root/bin/busybox" --list); do
    [ -e "$work/busybox/bin/$applet" ] || ln -s busybox "$work/busybox/bin/$applet"
  done
  import dapr-wasm-stack-local/busybox "$work/busybox" "$base_stamp" --change 'CMD ["/bin/busybox", "sh"]'
fi

# ---- the Dapr images, from the project's own builds --------------------------
for bin in daprd sentry; do
  [ -x ".cache/bin/$bin" ] || fail ".cache/bin/$bin is missing (scripts/build-daprd.sh)"
  stamp=$( (echo "$base_stamp"; sha256sum < ".cache/bin/$bin") | sha256sum | cut -c1-16)
  if [ "$(stamp_of "dapr-wasm-stack-local/$bin")" != "$stamp" ]; then
    distroless "$work/$bin"
    cp ".cache/bin/$bin" "$work/$bin/$bin"
    import "dapr-wasm-stack-local/$bin" "$work/$bin" "$stamp" --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot'
  fi
done
rm -rf "$work"

# ---- the service binaries, for the Dockerfile's `prebuilt` build context ------
# Debug information stripped: the images need the code, not 100s of MB of DWARF.
staged=target/docker-bin
mkdir -p "$staged"
for bin in image-api-grayscale image-api-classify events-service migrate; do
  [ -x "$binaries/$bin" ] || fail "$binaries/$bin is missing (cargo build)"
  if [ ! -e "$staged/$bin" ] || [ "$binaries/$bin" -nt "$staged/$bin" ]; then
    objcopy --strip-debug "$binaries/$bin" "$staged/$bin.tmp"
    mv "$staged/$bin.tmp" "$staged/$bin"
  fi
done
# classify's LiteRT library sits beside it (its rpath has $ORIGIN).
cp -u .cache/litert/2.1.4/libLiteRt.so "$staged/"
echo "compose-images: service binaries from $binaries staged in $staged"

#!/usr/bin/env bash
# Docker's engine for `make compose-up` and its tests, on Docker's default
# socket, so that plain `docker …` and `docker compose …` work afterwards.
#
#   scripts/docker-engine.sh start   use the engine that answers there, or
#                                    start Debian's dockerd (installed if missing)
#   scripts/docker-engine.sh stop    stop it again, only if `start` started it
#
# The engine we start changes nothing on the host: no firewall rules
# (--iptables=false: containers reach each other over their compose network's
# bridge, and the host reaches published ports through docker-proxy on
# 127.0.0.1), no IP forwarding, no default bridge. Its data (images, build
# cache, volumes) stays outside the clone, in $DOCKER_DATA, so a fresh clone
# finds the images an earlier run built.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/cache.sh

socket=/var/run/docker.sock
state=$CACHE/dockerd                 # what we started: pid file, log, exec root
data=${DOCKER_DATA:-$CACHE/docker}
pidfile=$state/dockerd.pid

answers() { docker -H "unix://$socket" version --format '{{.Server.Version}}' >/dev/null 2>&1; }

start() {
  if ! command -v dockerd >/dev/null; then
    echo "docker-engine: installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null 2>&1 ||
      { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io >/dev/null; }
  fi
  if answers; then
    [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null ||
      echo "docker-engine: using the engine that answers at $socket"
    return 0
  fi
  [ "$(id -u)" = 0 ] || { echo "docker-engine: no engine answers at $socket, and starting one needs root" >&2; exit 1; }
  mkdir -p "$state" "$data"
  # A stale socket from an engine that died would make dockerd refuse to start.
  [ -S "$socket" ] && rm -f "$socket"
  echo "docker-engine: starting dockerd (data in $data; log in $state/dockerd.log)"
  # setsid: the engine outlives this script, and a terminal's ^C does not reach it.
  setsid dockerd --data-root "$data" --exec-root "$state/exec" --pidfile "$pidfile" \
    -H "unix://$socket" --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --bridge=none --userland-proxy=true --log-level=warn \
    > "$state/dockerd.log" 2>&1 < /dev/null &
  echo $! > "$state/started-by-us"
  for _ in $(seq 1 120); do
    if answers; then
      echo "docker-engine: dockerd $(docker version --format '{{.Server.Version}}') answers at $socket"
      return 0
    fi
    kill -0 "$(cat "$state/started-by-us")" 2>/dev/null || break
    sleep 0.5
  done
  echo "docker-engine: dockerd did not come up; its log:" >&2
  tail -n 30 "$state/dockerd.log" >&2
  exit 1
}

stop() {
  [ -s "$state/started-by-us" ] || { echo "docker-engine: not started by us, left running"; return 0; }
  pid=$(cat "$state/started-by-us")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && { echo "docker-engine: dockerd ($pid) still runs after 30 s; killing it" >&2; kill -KILL "$pid"; }
  fi
  rm -f "$state/started-by-us"
  echo "docker-engine: dockerd stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

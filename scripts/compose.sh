#!/usr/bin/env bash
# The shipped docker-compose.yml, run on this machine with no registry:
#
#   scripts/compose.sh up <folder with the built binaries>   (make compose-up)
#   scripts/compose.sh down [--volumes]                       (make compose-down)
#
# up: Docker's engine (scripts/docker-engine.sh), the plugins
# (scripts/compose-tools.sh), the secrets (scripts/compose-secrets.sh), the
# local images (scripts/compose-images.sh), then `docker compose up --wait`
# with deploy/compose/local.yml over the shipped file. down: the stack (its
# volumes too with --volumes), then the engine if up started it.
set -euo pipefail
cd "$(dirname "$0")/.."

compose=(docker compose -f docker-compose.yml -f deploy/compose/local.yml)

case "${1:-}" in
  up)
    binaries=${2:?usage: $0 up <folder with the built binaries>}
    start=$(date +%s)
    scripts/docker-engine.sh start
    scripts/compose-tools.sh
    scripts/compose-secrets.sh
    scripts/compose-images.sh "$binaries"
    "${compose[@]}" build --quiet
    echo "compose: images ready in $(( $(date +%s) - start )) s; starting the stack"
    if ! "${compose[@]}" up --detach --wait --wait-timeout 300; then
      "${compose[@]}" ps --all >&2
      echo "compose: the stack did not come up healthy; the logs of what failed:" >&2
      for s in $("${compose[@]}" ps --all --format '{{.Service}} {{.State}} {{.Health}}' | awk '$2 != "running" || ($3 != "" && $3 != "healthy") {print $1}'); do
        echo "--- $s" >&2
        "${compose[@]}" logs --no-color --tail 40 "$s" >&2
      done
      exit 1
    fi
    "${compose[@]}" ps --format 'table {{.Service}}\t{{.State}}\t{{.Health}}\t{{.Ports}}'
    echo "compose: up in $(( $(date +%s) - start )) s: the web front on http://127.0.0.1:${WEB_PORT:-8080}," \
      "Zipkin on :${ZIPKIN_PORT:-9411}, Prometheus on :${PROMETHEUS_PORT:-9090}"
    echo "compose: plain 'docker compose -f docker-compose.yml -f deploy/compose/local.yml …' works from here"
    ;;
  down)
    if docker version >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
      "${compose[@]}" down --remove-orphans ${2:+"$2"}
    fi
    scripts/docker-engine.sh stop
    ;;
  *)
    echo "usage: $0 up <binaries folder> | down [--volumes]" >&2
    exit 2
    ;;
esac

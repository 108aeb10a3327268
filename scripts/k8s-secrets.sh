#!/usr/bin/env bash
# The Secrets of deploy/kubernetes, generated into
# deploy/kubernetes/base/secrets/ for kustomize's secretGenerator
# (deploy/kubernetes/base/kustomization.yaml). Nothing there but README.md is
# committed; without these files `kubectl apply -k` / `kustomize build` fails.
# Files that exist are kept; --force writes every one anew.
#
#   scripts/k8s-secrets.sh [--force] [dir]     (make k8s-secrets)
#   scripts/k8s-secrets.sh --check [dir]       exit 1 and say how, if any is missing
#
# Every value is 32 random bytes as hex (256 bits); files 0600, folder 0700.
set -euo pipefail
cd "$(dirname "$0")/.."

apps="grayscale classify events"
files="mariadb-password mariadb-events-password events-db-url migrate-db-url redis-password redis.conf"
for app in $apps; do files="$files $app-dapr-api-token $app-app-api-token"; done

force=0 check=0
case "${1:-}" in
  --force) force=1; shift ;;
  --check) check=1; shift ;;
esac
dir=${1:-deploy/kubernetes/base/secrets}

if [ "$check" = 1 ]; then
  missing=""
  for f in $files; do [ -s "$dir/$f" ] || missing="$missing $f"; done
  if [ -n "$missing" ]; then
    echo "deploy/kubernetes: the Secrets' files are missing in $dir:$missing" >&2
    echo "  create them with \`make k8s-secrets\` (scripts/k8s-secrets.sh), or put your own values there" >&2
    exit 1
  fi
  exit 0
fi

umask 077
mkdir -p "$dir"
chmod 700 "$dir"
who=k8s-secrets
# shellcheck source=scripts/lib/secret-files.sh
. scripts/lib/secret-files.sh

# MariaDB: migrate owns the schema (MARIADB_USER), events may only SELECT
# and INSERT (backing/mariadb-users.sh). Host names are the in-cluster Services.
migrate_pw=$(value mariadb-password)
events_pw=$(value mariadb-events-password)
write events-db-url "mysql://events:${events_pw}@mariadb:3306/events"
write migrate-db-url "mysql://migrate:${migrate_pw}@mariadb:3306/events"
redis_pw=$(value redis-password)
write redis.conf "requirepass ${redis_pw}
"
# One Dapr API token (dapr.io/api-token-secret) and one app API token
# (dapr.io/app-token-secret) per app.
for app in $apps; do
  value "$app-dapr-api-token" > /dev/null
  value "$app-app-api-token" > /dev/null
done

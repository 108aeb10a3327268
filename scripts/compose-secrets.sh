#!/usr/bin/env bash
# The secrets of `docker compose up` (the production profile), generated into
# deploy/compose/secrets/: nothing there but README.md is committed (see
# .gitignore). Files that exist are kept, so running this again never rotates
# a secret behind a running stack; --force writes every one anew.
#
#   scripts/compose-secrets.sh [--force] [dir]     (make compose-secrets)
#
# Every value is 32 random bytes as hex (256 bits). The folder is 0700; env
# files (read by `docker compose` itself) are 0600 and yours. Outside Swarm,
# compose ignores a secret's uid/gid/mode and bind-mounts the file as it is,
# so each file a container reads as a secret is given, last, to that
# container's user (docker-compose.yml's `user:`), mode 0400: readable by it
# and by no other user. What reads which file: deploy/compose/secrets/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."

force=0
if [ "${1:-}" = --force ]; then force=1; shift; fi
dir=${1:-deploy/compose/secrets}
umask 077
mkdir -p "$dir"
chmod 700 "$dir"

who=compose-secrets
# shellcheck source=scripts/lib/secret-files.sh
. scripts/lib/secret-files.sh

# MariaDB: the migrate user owns the schema (MARIADB_USER), the events user
# may only read and insert (deploy/kubernetes/base/backing/mariadb-users.sh).
migrate_pw=$(value db_password)
events_pw=$(value events_db_password)
write dapr-secrets.json "{\"DB_URL\": {\"MYSQL\": \"mysql://events:${events_pw}@mariadb:3306/events\"}}"
write migrate-secrets.json "{\"DB_URL\": {\"MYSQL\": \"mysql://migrate:${migrate_pw}@mariadb:3306/events\"}}"
value grafana_admin_password > /dev/null
# MariaDB's root: a file, so it never shows in `docker logs` (as
# MARIADB_RANDOM_ROOT_PASSWORD would print it). Nothing logs in as root.
value db_root_password > /dev/null

# Redis: requirepass for the server, REDIS_PASSWORD for the state store
# component (envRef) in the image services' sidecars, REDISCLI_AUTH for the
# healthcheck's redis-cli.
redis_pw=$(value redis_password)
write redis.conf "requirepass ${redis_pw}
"
write redis.env "REDIS_PASSWORD=${redis_pw}
REDISCLI_AUTH=${redis_pw}
"

# One Dapr API token and one app API token per app, in an env file that the
# app and its sidecar both read (daprd and kit take them only from the
# environment: DAPR_API_TOKEN, APP_API_TOKEN).
for app in grayscale classify events; do
  if [ "$force" = 1 ] || [ ! -s "$dir/$app.env" ]; then
    write "$app.env" "DAPR_API_TOKEN=$(rand)
APP_API_TOKEN=$(rand)
"
  fi
done
# The web front calls the three sidecars' invoke API: it sends each one's
# Dapr API token (web/nginx/default.conf.template).
tok() { sed -n 's/^DAPR_API_TOKEN=//p' "$dir/$1.env"; }
web="GRAYSCALE_DAPR_TOKEN=$(tok grayscale)
CLASSIFY_DAPR_TOKEN=$(tok classify)
EVENTS_DAPR_TOKEN=$(tok events)
"
if [ ! -s "$dir/web.env" ] || [ "$(cat "$dir/web.env")" != "$(printf '%s' "$web")" ]; then
  force_was=$force; force=1; write web.env "$web"; force=$force_was
fi

# mTLS: Dapr Sentry's issuer credentials (a root CA and an issuer below it),
# and the root as the sidecars' trust anchors (DAPR_TRUST_ANCHORS).
sentry=$dir/sentry
if [ "$force" = 1 ] || [ ! -s "$sentry/issuer.key" ]; then
  command -v openssl >/dev/null || { echo "compose-secrets: openssl is missing" >&2; exit 1; }
  mkdir -p "$sentry"
  chmod 700 "$sentry"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$tmp/ca.key" -sha256 -days 3650 -subj "/O=dapr-wasm-stack/CN=cluster.local" \
    -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$sentry/ca.crt"
  openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out "$sentry/issuer.key"
  openssl req -new -key "$sentry/issuer.key" -subj "/O=dapr-wasm-stack/CN=cluster.local" -out "$tmp/issuer.csr"
  printf 'basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' > "$tmp/ext"
  openssl x509 -req -in "$tmp/issuer.csr" -CA "$sentry/ca.crt" -CAkey "$tmp/ca.key" -CAserial "$tmp/ca.srl" -CAcreateserial \
    -days 365 -sha256 -extfile "$tmp/ext" -out "$sentry/issuer.crt" 2>/dev/null
  chmod 600 "$sentry"/*
  # The root CA's key is not kept: a new issuer means a new root (run with --force).
  echo "compose-secrets: wrote $sentry/{ca.crt,issuer.crt,issuer.key}" >&2
  force_was=$force; force=1
  write trust-anchors.env "DAPR_TRUST_ANCHORS=\"$(cat "$sentry/ca.crt")\"
"
  force=$force_was
fi

# The secrets' owners: the uid:gid each reading container runs as
# (docker-compose.yml; `make validate-deploy` checks the two agree). Only
# root can give a file away: anyone else gets a note (rootless Docker and
# Docker Desktop map container users differently: deploy/compose/secrets/README.md).
owners=(
  db_password=999:999 events_db_password=999:999 db_root_password=999:999  # mariadb, db-grants
  redis.conf=999:1000                                                       # redis
  dapr-secrets.json=65532:65532                                             # events' sidecar
  migrate-secrets.json=65531:65531                                          # the migrate job
  sentry/ca.crt=65533:65533 sentry/issuer.crt=65533:65533 sentry/issuer.key=65533:65533  # sentry
  grafana_admin_password=472:0                                              # grafana
)
for pair in "${owners[@]}"; do
  f=$dir/${pair%%=*} owner=${pair##*=}
  if [ "$(id -u)" = 0 ]; then
    chown "$owner" "$f"
    chmod 400 "$f"
  elif [ "$(stat -c %u:%g "$f")" != "$owner" ]; then
    echo "$who: $f must belong to $owner (the container user that reads it): run this as root, or see deploy/compose/secrets/README.md" >&2
  fi
done

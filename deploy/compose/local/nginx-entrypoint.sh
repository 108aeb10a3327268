#!/bin/sh
# The official nginx image's start, the part docker-compose.yml relies on:
# every /etc/nginx/templates/*.template rendered into /etc/nginx/conf.d with
# the environment (only variables that are set, so nginx's own $names stay),
# then the command.
set -eu
vars=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
for t in /etc/nginx/templates/*.template; do
  [ -e "$t" ] || continue
  out=/etc/nginx/conf.d/$(basename "$t" .template)
  envsubst "$vars" < "$t" > "$out"
  echo "entrypoint: rendered $out"
done
exec "$@"

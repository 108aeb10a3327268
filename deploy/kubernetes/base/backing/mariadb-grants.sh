#!/bin/bash
# After the migrations (compose: the db-grants job; Kubernetes: the
# events-migrate Job's second step): events-service's user may read and
# insert events, nothing else (no UPDATE, DELETE, DDL, no other table).
# Run as the migrate user, which owns the schema (mariadb-users.sh).
# A migration that adds a table events-service must use adds its grant here.
set -euo pipefail
MYSQL_PWD=$(cat "${MIGRATE_DB_PASSWORD_FILE:?MIGRATE_DB_PASSWORD_FILE names the migrate user password file}")
export MYSQL_PWD
exec mariadb --host="${DB_HOST:-mariadb}" --user=migrate "${MARIADB_DATABASE:-events}" \
  -e "GRANT SELECT, INSERT ON image_evts TO 'events'@'%'"

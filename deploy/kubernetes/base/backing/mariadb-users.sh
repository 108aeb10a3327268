# Sourced (not executable on purpose: the entrypoint then runs it with its
# own helpers, docker_process_sql) once by the MariaDB image's entrypoint on
# a fresh data folder (/docker-entrypoint-initdb.d, after MARIADB_USER is
# made). Used by docker-compose.yml and deploy/kubernetes alike.
#
# MARIADB_USER is `migrate`: it owns the schema (the migrate job and CLI
# apply migrations/ as it), and may pass on its privileges, so that after the
# migrations mariadb-grants.sh gives events-service's user what it needs.
# That user, `events`, is made here with no privileges at all: a grant on
# image_evts cannot be made before the first migration creates the table
# (MariaDB refuses table grants on a missing table).
# The password comes from a file (compose secret / Kubernetes Secret volume),
# never from argv or the environment.
pw_file=${EVENTS_DB_PASSWORD_FILE:?EVENTS_DB_PASSWORD_FILE names the events user password file}
pw=$(cat "$pw_file")
case "$pw" in *[!A-Za-z0-9]*) echo "mariadb-users: the events password must be alphanumeric" >&2; return 1 ;; esac
docker_process_sql --database=mysql <<SQL
CREATE USER IF NOT EXISTS 'events'@'%' IDENTIFIED BY '${pw}';
GRANT USAGE ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%' WITH GRANT OPTION;
SQL

#!/bin/bash
# The part of the official MariaDB image's entrypoint that docker-compose.yml
# relies on. On an empty data folder: the system tables, MARIADB_DATABASE,
# MARIADB_USER (password from MARIADB_PASSWORD_FILE, all privileges on that
# database), every /docker-entrypoint-initdb.d/*.sh sourced with
# docker_process_sql at hand, then root's password from
# MARIADB_ROOT_PASSWORD_FILE. Then mariadbd in the foreground. Any other
# command (db-grants runs a script with the client) runs as it is.
set -euo pipefail
case "${1:-}" in
  ''|-*|mariadbd|mysqld) [ "${1:-}" = mariadbd ] || [ "${1:-}" = mysqld ] && shift ;;
  *) exec "$@" ;;
esac
datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock
server=(mariadbd --no-defaults --datadir="$datadir" --socket="$socket" --pid-file=/run/mysqld/mysqld.pid
  --tmpdir=/tmp --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci --skip-name-resolve)

# What the init scripts call, as the official entrypoint defines it.
docker_process_sql() { mariadb --no-defaults --protocol=socket --socket="$socket" -uroot "$@"; }
sql_string() { local v=$1; v=${v//\\/\\\\}; printf "'%s'" "${v//\'/\\\'}"; }

if [ ! -d "$datadir/mysql" ]; then
  echo "entrypoint: initialising $datadir"
  mariadb-install-db --no-defaults --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve > /dev/null
  "${server[@]}" --skip-networking &
  pid=$!
  for _ in $(seq 1 60); do docker_process_sql -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.5; done
  user_pw=$(cat "${MARIADB_PASSWORD_FILE:?}")
  root_pw=$(cat "${MARIADB_ROOT_PASSWORD_FILE:?}")
  docker_process_sql --database=mysql <<SQL
CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE:?}\`;
CREATE USER '${MARIADB_USER:?}'@'%' IDENTIFIED BY $(sql_string "$user_pw");
GRANT ALL ON \`${MARIADB_DATABASE}\`.* TO '${MARIADB_USER}'@'%';
SQL
  for f in /docker-entrypoint-initdb.d/*.sh; do
    [ -e "$f" ] || continue
    echo "entrypoint: running $f"
    # shellcheck disable=SC1090
    . "$f"
  done
  docker_process_sql --database=mysql <<SQL
ALTER USER 'root'@'localhost' IDENTIFIED BY $(sql_string "$root_pw");
FLUSH PRIVILEGES;
SQL
  kill "$pid"
  wait "$pid" || true
  echo "entrypoint: initialised"
fi
exec "${server[@]}" --bind-address=0.0.0.0 --port=3306 "$@"

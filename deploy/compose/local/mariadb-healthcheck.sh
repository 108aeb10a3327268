#!/bin/bash
# healthcheck.sh --connect --innodb_initialized, as the official image has
# it: the server accepts TCP connections (mariadbd listens only once InnoDB
# is up, and not at all during the entrypoint's initialisation). A ping is
# answered "alive" even to an unknown user, so no credentials are needed.
exec mariadb-admin --no-defaults --protocol=tcp --host=127.0.0.1 --user=healthcheck --connect-timeout=2 ping > /dev/null 2>&1

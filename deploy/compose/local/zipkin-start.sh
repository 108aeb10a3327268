#!/bin/sh
# The official image's start: the server jar, in-memory storage by default.
# shellcheck disable=SC2086
exec java ${JAVA_OPTS:-} -jar /opt/zipkin/zipkin.jar "$@"

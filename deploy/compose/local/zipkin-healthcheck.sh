#!/bin/sh
# The official image's docker-healthcheck: Zipkin's own /health says UP.
wget -q -O - http://127.0.0.1:9411/health 2>/dev/null | grep -q '"UP"'

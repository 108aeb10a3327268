#!/usr/bin/env bash
# Fetches the Zipkin server (io.zipkin:zipkin-server, the self-contained
# "exec" jar) from Maven into .cache/zipkin/, once; the stack runs it with
# `java -jar`, in-memory storage. Maven's own downloads stay in .cache/m2.
set -euo pipefail
cd "$(dirname "$0")/.."

version=3.6.1
dir=.cache/zipkin
jar=$dir/zipkin-server-$version-exec.jar
[ -s "$jar" ] && exit 0
for tool in mvn java; do
  command -v "$tool" >/dev/null || { echo "zipkin: $tool is missing (scripts/deps.sh installs it)" >&2; exit 1; }
done
echo "zipkin: fetching zipkin-server $version (~135 MB, once)"
mkdir -p "$dir"
mvn -q -B -Dmaven.repo.local="$PWD/.cache/m2" dependency:copy \
  -Dartifact="io.zipkin:zipkin-server:$version:jar:exec" -DoutputDirectory="$dir" ||
  { echo "zipkin: the download failed; see the Maven output above" >&2; exit 1; }
[ -s "$jar" ] || { echo "zipkin: Maven finished but $jar is missing" >&2; exit 1; }

#!/usr/bin/env bash
# The SLO recording rules from the one SLO file: sloth reads one service per
# file, so split observability/slo/slos.yml at its `---` lines, generate each
# part, and join the parts' groups into one Prometheus rule file on stdout.
# Usage: scripts/slo-rules.sh <sloth binary> <slos.yml>
set -euo pipefail
sloth=$1 spec=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
awk -v dir="$work" 'BEGIN { n = 0; f = sprintf("%s/part-%02d.yml", dir, n) }
  /^---$/ { n++; f = sprintf("%s/part-%02d.yml", dir, n); next }
  { print > f }' "$spec"
first=1
for part in "$work"/part-*.yml; do
  "$sloth" generate --no-log -i "$part" -o "$part.rules" 2>/dev/null
  if [ "$first" = 1 ]; then
    cat "$part.rules"
    first=0
  else
    # Everything after this part's `groups:` line: its groups.
    sed '1,/^groups:$/d' "$part.rules"
  fi
done

# Sourced: debian_mirror prints the Debian mirror apt already uses here
# (deb822 `URIs:` or one-line `deb URI`), never a hard-coded host: this
# machine may only reach its own mirror.
debian_mirror() {
  local mirror
  mirror=$(
    # deb822: one stanza a paragraph; the first non-security stanza's URI.
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v RS= '
      $0 !~ /(^|\n)Enabled: *no/ && match($0, /(^|\n)Suites:[^\n]*/) && substr($0, RSTART, RLENGTH) !~ /-security/ &&
      match($0, /(^|\n)URIs: *[^ \n]+/) { s = substr($0, RSTART, RLENGTH); sub(/^\n?URIs: */, "", s); print s; exit }'
  )
  if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) !~ /-security/) { print $i; exit } break } }')
  fi
  [ -n "$mirror" ] || return 1
  printf '%s\n' "$mirror"
}

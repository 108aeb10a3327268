# Sourced by scripts/compose-secrets.sh and scripts/k8s-secrets.sh: random
# values and the files that keep them. Needs $dir (the folder), $force (1:
# overwrite) and $who (the script's name, for its messages).

# 256 random bits as hex.
rand() { od -An -N32 -tx1 /dev/urandom | tr -d ' \n'; }

# write <file> <content>: only when absent (or --force), always 0600.
write() {
  local f=$dir/$1
  if [ "$force" = 1 ] || [ ! -s "$f" ]; then
    printf '%s' "$2" > "$f.tmp"
    chmod 600 "$f.tmp"
    mv "$f.tmp" "$f"
    echo "$who: wrote $f" >&2
  fi
}

# value <file>: a single-value file's content, made first if needed.
value() {
  write "$1" "$(rand)"
  cat "$dir/$1"
}

#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ (cargo fuzz, AddressSanitizer, debug
# assertions on), each for FUZZ_SECONDS with one worker, one after another,
# and prints a summary line per target. `make fuzz` installs cargo-fuzz and
# calls this.
#
#   scripts/fuzz.sh [target...]      every target in fuzz/ when none is named
#
# Everything it writes stays under .cache/fuzz/: the build (target/), each
# target's corpus (corpus/<target>, seeded every run from fuzz/seeds and the
# shared photos, and kept between runs so it grows), crash inputs
# (artifacts/<target>/) and libFuzzer's output (logs/<target>.log).
# Exits non-zero if any target found a crash, leak, timeout or OOM.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-120}
shared=${STACK_SHARED_DIR:-../shared}
work=.cache/fuzz
fail() { echo "fuzz: $*" >&2; exit 1; }

if [ -n "${CARGO_FUZZ:-}" ]; then
  PATH=$(dirname "$CARGO_FUZZ"):$PATH
fi
command -v cargo-fuzz >/dev/null || fail "cargo-fuzz is not installed: run make fuzz"

# cargo fuzz passes -Z flags (sanitizer, coverage instrumentation): nightly
# takes them; stable does only with RUSTC_BOOTSTRAP=1.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  toolchain=(+nightly)
else
  echo "fuzz: no nightly toolchain, using stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  toolchain=()
fi
# The same flags for build and run, so run never rebuilds. Two jobs: the
# machine is small and often shared.
build_flags=(--debug-assertions --target-dir "$work/target")
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo "${toolchain[@]}" fuzz list)
fi
[ ${#targets[@]} -gt 0 ] || fail "no fuzz targets found in fuzz/"

# Real photos, whole and damaged: cut short (half, without the end-of-image
# marker, header only) and with single bytes flipped in the header and in
# the entropy-coded data. Regenerated each run: cheap, and always the same.
photo_variants() {
  local out=$1 photo name size
  mkdir -p "$out"
  for photo in "$shared"/images/*; do
    [ -f "$photo" ] || continue
    name=$(basename "$photo")
    size=$(stat -c %s "$photo")
    cp "$photo" "$out/$name"
    head -c $((size / 2)) "$photo" > "$out/cut-half-$name"
    head -c $((size - 2)) "$photo" > "$out/cut-eoi-$name"
    head -c 2048 "$photo" > "$out/cut-header-$name"
    for at in 3 20 160 $((size / 4)) $((size / 2)) $((size - 3)); do
      cp "$photo" "$out/flip-$at-$name"
      flip_byte "$out/flip-$at-$name" "$at"
    done
  done
}

# Invert the byte at offset $2 of file $1, in place.
flip_byte() {
  local byte
  byte=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
  # shellcheck disable=SC2059 # the format is the escaped byte itself
  printf "$(printf '\\%03o' $((byte ^ 0xff)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# The seeds of target $1, gathered afresh into $work/seeds/<target>.
gather_seeds() {
  local target=$1 seeds=$work/seeds/$1
  rm -rf "$seeds"
  mkdir -p "$seeds"
  case $target in
    event_json | grayscale_png_encode)
      cp fuzz/seeds/"$target"/* "$seeds"/
      ;;
    *) # the image targets
      cp fuzz/seeds/images/* "$seeds"/
      if [ -d "$shared/images" ]; then
        photo_variants "$work/seeds/photos"
        cp "$work"/seeds/photos/* "$seeds"/
      else
        echo "fuzz: no $shared/images beside the repository: seeding $target without the photos"
      fi
      ;;
  esac
}

# What libFuzzer gets besides the time limit, by target.
extra_args() {
  case $1 in
    # JSON tokens make valid-looking bodies far likelier.
    event_json) echo "-dict=fuzz/dicts/event_json.dict" ;;
    # Its inputs are small: the target stacks them into larger images.
    grayscale_png_encode) ;;
    # Without a limit libFuzzer mutates at the largest seed's size (a
    # 200 KB photo): measured 470 exec/s against 8,200 with small inputs,
    # and less coverage in the same time. The whole photos still run once
    # each, in the replay before fuzzing.
    *) echo "-max_len=16384" ;;
  esac
}

# One libFuzzer stat from the log, or "?" (a crash can cut the output short).
stat_of() {
  local value
  value=$(grep -m1 "^stat::$1:" "$2" | awk '{print $2}' || true)
  echo "${value:-?}"
}

# The services' own lock: the fuzzers build exactly the decoder versions the
# services ship (cargo drops what fuzz/ does not use and adds libfuzzer-sys).
# Copied again only when the root lock changed, so a rerun needs no registry.
lock_sum=$(sha256sum Cargo.lock | cut -d' ' -f1)
if [ ! -f fuzz/Cargo.lock ] || [ "$(cat "$work/root-lock.sha256" 2>/dev/null)" != "$lock_sum" ]; then
  cp Cargo.lock fuzz/Cargo.lock
  mkdir -p "$work"
  echo "$lock_sum" > "$work/root-lock.sha256"
fi

echo "fuzz: building ${#targets[@]} target(s) (${toolchain[*]:-stable}, ASan, debug assertions)"
for target in "${targets[@]}"; do
  cargo "${toolchain[@]}" fuzz build "${build_flags[@]}" "$target"
done

mkdir -p "$work/logs"
summary=()
crashed=0
for target in "${targets[@]}"; do
  corpus=$work/corpus/$target artifacts=$work/artifacts/$target log=$work/logs/$target.log
  gather_seeds "$target"
  # The corpus keeps what earlier runs found; seeds overwrite their own
  # copies (same names), so reruns add nothing twice.
  mkdir -p "$corpus" "$artifacts"
  cp "$work/seeds/$target"/* "$corpus"/
  found_before=$(find "$artifacts" -type f | wc -l)
  echo "fuzz: $target: every seed once whole, then ${seconds}s of fuzzing" \
    "($(find "$corpus" -type f | wc -l) inputs in $corpus; output in $log)"
  common=(-rss_limit_mb=2048 -timeout=30 -artifact_prefix="$artifacts/")
  status=0 failed_in=fuzzing
  # Replaying files writes no artifact: the failing seed is named in the log.
  cargo "${toolchain[@]}" fuzz run "${build_flags[@]}" "$target" "$work/seeds/$target"/* -- \
    "${common[@]}" > "$log" 2>&1 || status=$? failed_in=seeds
  if [ "$status" -eq 0 ]; then
    # shellcheck disable=SC2046 # extra_args is zero or more words
    cargo "${toolchain[@]}" fuzz run "${build_flags[@]}" "$target" "$corpus" -- \
      "${common[@]}" -max_total_time="$seconds" -print_final_stats=1 $(extra_args "$target") \
      >> "$log" 2>&1 || status=$?
  fi
  found=$(( $(find "$artifacts" -type f | wc -l) - found_before ))
  # The last status line: "#<runs> DONE cov: <edges> ft: <features> corp: <n>/<size> ...".
  # libFuzzer's corpus is what it keeps in memory; the folder also holds
  # inputs it later replaced with smaller ones.
  last=$(grep -E '^#[0-9]+' "$log" | tail -n1 || true)
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<< "$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<< "$last")
  corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<< "$last")
  line=$(printf '%-20s %9s execs %6s exec/s  cov %5s  ft %5s  corpus %12s (%s files on disk)  crashes %s' \
    "$target" "$(stat_of number_of_executed_units "$log")" "$(stat_of average_exec_per_sec "$log")" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$(find "$corpus" -type f | wc -l)" "$found")
  if [ "$status" -ne 0 ] || [ "$found" -gt 0 ]; then
    crashed=1
    line+="  FAILED in $failed_in (exit $status): see $log and $artifacts/"
  fi
  echo "$line"
  summary+=("$line")
done

echo
echo "fuzz: ${seconds}s per target"
printf '%s\n' "${summary[@]}"
exit "$crashed"

#!/bin/sh
# Run every fuzz target for SECONDS (default 60) on its seed corpus
# fuzz/corpus/<name without fuzz_>/; fail if any target finds a crash, a
# leak, a sanitizer report or a timeout. Build first: scripts/build-fuzz.sh
# (or `make fuzz-smoke`, which does both).
#
# New inputs go to a scratch corpus under build/fuzz/work/<name>/, never into
# the checked-in seeds; crashing inputs are kept as
# build/fuzz/artifacts/<name>-crash-*. A dictionary fuzz/<name>.dict is used
# when present.
set -u
cd "$(dirname "$0")/.." || exit 1

SECONDS_EACH=${1:-60}
case $SECONDS_EACH in ''|*[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2;; esac
OUT=build/fuzz
mkdir -p "$OUT/artifacts" "$OUT/work"

ran=0; failed=""
for f in fuzz/fuzz_*.c; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .c)
  bin=$OUT/$name
  seeds=fuzz/corpus/${name#fuzz_}
  if [ ! -x "$bin" ]; then
    echo "fuzz-smoke: $bin missing; run scripts/build-fuzz.sh" >&2
    failed="$failed $name"; continue
  fi
  mkdir -p "$OUT/work/$name"
  set -- "$OUT/work/$name"
  [ -d "$seeds" ] && set -- "$@" "$seeds"
  dict=""
  [ -f "fuzz/$name.dict" ] && dict="-dict=fuzz/$name.dict"
  echo "fuzz-smoke: $name for ${SECONDS_EACH}s"
  # shellcheck disable=SC2086
  "$bin" $dict -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 -artifact_prefix="$OUT/artifacts/$name-" "$@" \
      >"$OUT/$name.log" 2>&1
  rc=$?
  if [ "$rc" != 0 ]; then
    echo "fuzz-smoke: $name FAILED (exit $rc); log $OUT/$name.log" >&2
    grep -E 'ERROR:|SUMMARY:|Test unit written' "$OUT/$name.log" | head -5 >&2
    failed="$failed $name"
  else
    grep -E '^stat::number_of_executed_units' "$OUT/$name.log" | sed "s/^/  $name /"
  fi
  ran=$((ran + 1))
done

if [ -n "$failed" ]; then
  echo "fuzz-smoke: failing:$failed"
  exit 1
fi
echo "fuzz-smoke: $ran target(s) ran clean"

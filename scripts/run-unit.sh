#!/bin/sh
# Run every Check suite given as an argument; print each suite's own
# summary (and its time when 5 s or more), then one line counting all of
# them. VALGRIND=1 runs each under
# valgrind (Check's fork mode is kept; children are traced: the
# dripd-decode helpers, not the shell and the tools that make test inputs).
#
# The catalog suites also run against PostgreSQL: one throw-away server
# (scripts/pgtest.sh) serves the whole run, started here, outside valgrind,
# unless DRIPD_TEST_PG_DSN names one already. No server is a failure.
set -u
# One suite: `run-unit.sh --one SUITE OUT` leaves its output, exit status
# and seconds in OUT.out, OUT.rc and OUT.s (the loop below runs these
# UNIT_JOBS at a time).
if [ "${1:-}" = --one ]; then
  t=$2; o=$3; ts=$(date +%s)
  if [ "${VALGRIND:-0}" = 1 ]; then
    CK_DEFAULT_TIMEOUT=120 valgrind -q --trace-children=yes \
      --trace-children-skip='/bin/*,/usr/bin/*' --error-exitcode=99 \
      --leak-check=full --errors-for-leak-kinds=definite "$t" >"$o.out" 2>&1; rc=$?
  else
    "$t" >"$o.out" 2>&1; rc=$?
  fi
  echo "$rc" >"$o.rc"; echo $(($(date +%s) - ts)) >"$o.s"
  exit 0
fi
t0=$(date +%s)
pass=0; fail=0; bad=""
pgdir=""
res=$(mktemp -d /tmp/dripd-unit-res.XXXXXX)
if [ -z "${DRIPD_TEST_PG_DSN:-}" ]; then
  pgdir=$(mktemp -d /tmp/dripd-unit-pg.XXXXXX)
  DRIPD_TEST_PG_DSN=$(sh "$(dirname "$0")/pgtest.sh" start "$pgdir") || {
    echo "unit: cannot start PostgreSQL for the catalog suites (make deps)"; rm -rf "$pgdir" "$res"; exit 1; }
  export DRIPD_TEST_PG_DSN
fi
trap '[ -z "$pgdir" ] || { sh "$(dirname "$0")/pgtest.sh" stop "$pgdir"; rm -rf "$pgdir"; }; rm -rf "$res"' EXIT
# Most suites wait (fsync, PostgreSQL, child processes) far more than they
# compute, so UNIT_JOBS of them (default: one per core) run at once;
# each has its own temporary directories and PostgreSQL databases.
for t in "$@"; do echo "$t $res/$(basename "$t")"; done |
  xargs -P "${UNIT_JOBS:-$(nproc)}" -n 2 sh "$0" --one
for t in "$@"; do
  o=$res/$(basename "$t")
  out=$(cat "$o.out" 2>/dev/null); rc=$(cat "$o.rc" 2>/dev/null || echo 1); ts=$(cat "$o.s" 2>/dev/null || echo 0)
  echo "$out" | grep -E '^[0-9]+%: Checks|:[EF]:' || true
  [ "$ts" -lt 5 ] || echo "unit: $(basename "$t") took $ts s"
  line=$(echo "$out" | grep -E '^[0-9]+%: Checks' | tail -1)
  n=$(echo "$line" | sed -n 's/.*Checks: \([0-9]*\).*/\1/p'); n=${n:-0}
  f=$(echo "$line" | sed -n 's/.*Failures: \([0-9]*\).*/\1/p'); f=${f:-0}
  e=$(echo "$line" | sed -n 's/.*Errors: \([0-9]*\).*/\1/p'); e=${e:-0}
  pass=$((pass + n - f - e)); fail=$((fail + f + e))
  if [ "$rc" != 0 ] || [ -z "$line" ]; then
    bad="$bad $(basename "$t")"
    [ -z "$line" ] && { echo "$out" | tail -20; fail=$((fail + 1)); }
  fi
done
[ -n "$bad" ] && echo "unit: failing suites:$bad"
echo "unit: $# suites in $(($(date +%s) - t0)) s"
echo "unit: $pass passed, $fail failed"
[ "$fail" = 0 ] && [ -z "$bad" ]

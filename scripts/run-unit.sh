#!/bin/sh
# Run every Check suite given as an argument; print each suite's own
# summary, then one line counting all of them. VALGRIND=1 runs each under
# valgrind (Check's fork mode is kept; children are traced).
set -u
pass=0; fail=0; bad=""
for t in "$@"; do
  if [ "${VALGRIND:-0}" = 1 ]; then
    out=$(CK_DEFAULT_TIMEOUT=120 valgrind -q --trace-children=yes --error-exitcode=99 \
          --leak-check=full --errors-for-leak-kinds=definite "$t" 2>&1); rc=$?
  else
    out=$("$t" 2>&1); rc=$?
  fi
  echo "$out" | grep -E '^[0-9]+%: Checks|:[EF]:' || true
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
echo "unit: $pass passed, $fail failed"
[ "$fail" = 0 ] && [ -z "$bad" ]

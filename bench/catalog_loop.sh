#!/usr/bin/env bash
# bench/catalog_loop.sh: the catalog's CPU per small upload (intake, claim,
# last step) of one or more source trees, alone, alternating (A B A B),
# each run on a fresh catalog (bench/catalog_loop.c says what a round
# does). Usable on a shared VM: CPU time, not a rate.
#
#   TREES="A=path/to/tree B=..."  trees whose build/libdripd.a is built
#                                 (default: this tree as "this")
#   RUNS=5 ROUNDS=600 BATCH=34    BATCH: uploads per transaction (an
#                                 intake round under 64 clients: ~34)
#   TRACE=1  also SQLite's time per statement, from each tree's last run
# Output: a line per run on stderr; per tree the median [min-max] of each
# phase in us per upload, and each tree against the first.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-600}
BATCH=${BATCH:-34}
TREES=${TREES:-this=$(cd "$HERE/.." && pwd)}
B=$ANCHOR/bench-catalog-loop
rm -rf "$B"
mkdir -p "$B"
trap 'rm -rf "$B"' EXIT
names=""
for t in $TREES; do
  name=${t%%=*} dir=${t#*=}
  [ -f "$dir/build/libdripd.a" ] || die "$dir/build/libdripd.a: build that tree first (make)"
  # shellcheck disable=SC2046
  cc -O2 -D_GNU_SOURCE -I"$dir/include" -o "$B/loop-$name" "$HERE/catalog_loop.c" \
    -Wl,--wrap=sqlite3_open_v2 "$dir/build/libdripd.a" \
    $(pkg-config --libs libevent_pthreads libevent jansson yaml-0.1 libcurl openssl sqlite3 libpq expat) \
    -lhttp_parser -pthread -lm || die "cannot build bench/catalog_loop.c against $dir"
  names="$names $name"
done
for i in $(seq 1 "$RUNS"); do
  for name in $names; do
    trace=0
    [ "${TRACE:-0}" = 1 ] && [ "$i" = "$RUNS" ] && trace=1
    line=$(TRACE=$trace "$B/loop-$name" "$B/db-$name-$i" "$ROUNDS" "$BATCH" 2>"$B/trace-$name")
    log "run $i $name: $line"
    echo "$name $line" >> "$B/runs"
    [ "$trace" = 1 ] && { echo "== $name: SQLite's time per statement"; grep -v ' INFO ' "$B/trace-$name" || true; }
    rm -rf "$B/db-$name-$i"
  done
done
python3 - "$B/runs" $names <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
names = sys.argv[2:]
phases = ["intake_us", "claim_us", "step_us", "total_us"]
med = {}
print("tree " + " ".join(phases))
for n in names:
    vals = {p: [float(r[r.index(p) + 1]) for r in rows if r[0] == n] for p in phases}
    med[n] = {p: statistics.median(v) for p, v in vals.items()}
    print(n + " " + " | ".join(f"{med[n][p]:.1f} [{min(vals[p]):.1f}-{max(vals[p]):.1f}]" for p in phases))
for n in names[1:]:
    print(f"{n}/{names[0]} " + " ".join(f"{med[n][p] / med[names[0]][p]:.2f}" for p in phases))
PY

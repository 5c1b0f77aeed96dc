#!/usr/bin/env bash
# bench/tus_concat.sh: a 1 GiB tus upload with tus-js-client
# parallelUploads: 4 (four partial uploads, then a final upload that joins
# them with copy_file_range: issue 18, item 1) against the same file in one
# stream (parallelUploads: 1), both with tests/node/tus_parallel.mjs (one
# PATCH per part, chunkSize unlimited), to the same dripd, alternating
# (order rotated each round). Time from the first POST to the last 201/204,
# which dripd sends once the file is fsynced and its upload job committed;
# and, of the parallel runs, how long the final upload's POST took (the
# join: copy_file_range of every part, fsync, the job commit).
#
#   RUNS=3 (default)   SIZE=1073741824 (default)   PARALLEL=4
#
# Output: medians (min..max) in MB/s and the ratio parallel/one stream on
# stdout, every run on stderr, bench/results/tus_concat.json. Needs `make`
# and the npm test tools (sh scripts/node-deps.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-3}
SIZE=${SIZE:-$GIB}
PARALLEL=${PARALLEL:-4}
B=$(mktemp -d /tmp/dripd-bench-tusc.XXXXXX)
SRC=$B/src.bin
TOKEN=bench-token-0123456789
NODE_DIR=$ROOT/tests/node

[ -x "$ROOT/bin/dripd" ] || die "build first: make"
[ -d "$NODE_DIR/node_modules/tus-js-client" ] || die "npm test tools missing: sh scripts/node-deps.sh"
mkrand "$SRC" "$SIZE"
mkdir -p "$B/d"
cat > "$B/d/dripd.yaml" <<YAML
listen: ["127.0.0.1:0"]
data_dir: $B/d/var
users: [{name: bench, token: "$TOKEN", admin: true}]
processing: {enabled: false}
pipeline: {queue_limit: 100000}
log: {level: warn}
YAML
"$ROOT/bin/dripd" -c "$B/d/dripd.yaml" > "$B/d/dripd.log" 2>&1 &
DP=$!
cleanup() { stop_pid "$DP" dripd; rm -rf "$B"; }
trap cleanup EXIT; trap 'exit 143' INT TERM
for i in $(seq 1 300); do [ -s "$B/d/var/run/listen" ] && break; sleep 0.1; done
[ -s "$B/d/var/run/listen" ] || die "dripd did not start: $(tail -5 "$B/d/dripd.log")"
URL="http://$(head -1 "$B/d/var/run/listen")"
wait_http "$URL/healthz" || true

R=$B/results; mkdir -p "$R"
n=0
for i in $(seq 1 "$RUNS"); do
  order="1 $PARALLEL"; [ $((i % 2)) = 0 ] && order="$PARALLEL 1"
  for p in $order; do
    n=$((n + 1))
    out=$(cd "$NODE_DIR" && node tus_parallel.mjs --endpoint "$URL/v1/uploads" --token "$TOKEN" \
      --file "$SRC" --name "run$n.bin" --parallel "$p" --store "$B/urls-$n.json")
    read -r ms fms < <(echo "$out" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read().splitlines()[-1]); print(d["ms"], d["final_ms"] or 0)')
    mbs=$(awk -v s="$SIZE" -v ms="$ms" 'BEGIN{printf "%.1f", s/(ms/1000)/1e6}')
    echo "$mbs" >> "$R/p$p"
    [ "$p" = 1 ] || echo "$fms" >> "$R/final_ms"
    log "run $i parallelUploads=$p: $mbs MB/s (${ms} ms; the final upload's POST ${fms} ms)"
    sync  # the next run starts with a clean page cache's dirty pages
  done
done

python3 - "$R" "$ROOT/bench/results/tus_concat.json" "$SIZE" "$RUNS" "$PARALLEL" <<'PY'
import json, os, statistics, sys
R, out, size, runs, par = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
one = [float(x) for x in open(os.path.join(R, "p1")).read().split()]
many = [float(x) for x in open(os.path.join(R, "p" + par)).read().split()]
m1, mn = statistics.median(one), statistics.median(many)
print("%-34s %20s %20s %7s" % ("1 GiB tus upload (MB/s)", "one stream", "parallelUploads " + par, "ratio"))
print("%-34s %8.1f (%.1f..%.1f) %8.1f (%.1f..%.1f) %7.2f" % ("tus-js-client 4.3.1", m1, min(one), max(one),
      mn, min(many), max(many), mn / m1))
fin = [float(x) for x in open(os.path.join(R, "final_ms")).read().split()]
print("the final upload's POST (join + fsync + job), ms: median %.0f (%.0f..%.0f)" % (
      statistics.median(fin), min(fin), max(fin)))
os.makedirs(os.path.dirname(out), exist_ok=True)
json.dump({"size": size, "runs": runs, "parallel": int(par), "one": one, "parallel_mbs": many,
           "ratio_of_medians": mn / m1, "final_ms": fin, "pair_ratios": [b / a for a, b in zip(one, many)]},
          open(out, "w"), indent=2)
print("written", out)
PY

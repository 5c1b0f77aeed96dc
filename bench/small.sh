#!/usr/bin/env bash
# bench/small.sh: small files end to end (issue 15), dripd beside nginx
# WebDAV and @tus/server in the same run, alternating (A B A B), ratios of
# medians with their spread.
#
#   sustained: wrk -t2 -c64 PUTs of 4 KiB for DURATION_S (60) s, a unique
#     path each. nginx: its request rate. dripd: the uploads accepted (202)
#     and *available* (job done), counted from the first request until the
#     last job is done (the end-to-end rate), the jobs done while the
#     intake ran (jobs/s during the intake), and the intake's own rate
#     with its p50/p99.
#   tus: tus-js-client (bench/node/tus_small.mjs), 4 KiB uploads, 16 in
#     flight for TUS_S (20) s, against dripd, @tus/server + FileStore and
#     a discarding sink (the client's own ceiling).
#
#   RUNS=3 DURATION_S=60 TUS_S=20 SETTLE_S=65 SKIP="tus|sustained"
# On a fresh data_dir, after a settle (anchors/lib.sh). Results:
# bench/results/small.json and a table on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-3}
DURATION_S=${DURATION_S:-60}
TUS_S=${TUS_S:-20}
SKIP=${SKIP:-}
export QUIET_WAIT=${QUIET_WAIT:-5}
B=$ANCHOR/bench-small
R=$B/results
NGX_P=$B/nginx
SMALL=$ANCHOR/src-4k.bin
DPORT=18090
DURL=http://127.0.0.1:$DPORT
NURL=http://127.0.0.1:18080
TURL=http://127.0.0.1:18081/files/
SURL=http://127.0.0.1:18082/files/
TOKEN=bench-token-0123456789
skip() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }

[ "$(id -u)" = 0 ] || die "run as root (nginx workers, hwm of other users' processes)"
[ -x "$ROOT/bin/dripd" ] || die "build first: make"
for p in 18080 18081 18082 $DPORT; do port_free $p || die "127.0.0.1:$p is in use"; done
rm -rf "$B"; mkdir -p "$R" "$NGX_P"/{logs,data,tmp} "$B/tus/files" "$B/dripd"
chown nobody:nogroup "$NGX_P/data"
rm -f "$ANCHOR/busy.log"
mkrand "$SMALL" 4096
sh "$ROOT/scripts/node-deps.sh" >/dev/null
ln -sfn "$ROOT/tests/node/node_modules" "$HERE/node/node_modules"

cat > "$B/dripd.yaml" <<EOC
listen: ["127.0.0.1:$DPORT"]
data_dir: $B/dripd/var
users: [{name: bench, token: "$TOKEN", admin: true}]
pipeline: {queue_limit: 10000000}
limits: {max_connections: 20000, keepalive_timeout: 300s}
log: {level: warn}
EOC
"$ROOT/bin/dripd" -c "$B/dripd.yaml" > "$B/dripd.log" 2>&1 &
DRIPD=$!
nginx -p "$NGX_P/" -c "$HERE/anchors/nginx.conf" -e "$NGX_P/logs/error.log" &
NGX=$!
node "$HERE/node/tus_server.mjs" "$B/tus/files" > "$B/tus/server.log" 2>&1 &
TUS=$!
python3 "$HERE/node/tus_sink.py" 18082 > "$B/tus/sink.log" 2>&1 &
SINK=$!
cleanup() {
  stop_pid $SINK sink; stop_pid $TUS tus; stop_pid $NGX nginx; stop_pid $DRIPD dripd
  rm -rf "$B/dripd" "$NGX_P/data" "$B/tus/files"
}
trap cleanup EXIT; trap 'exit 143' INT TERM
wait_http "$DURL/healthz" || die "dripd did not start: $(tail -5 "$B/dripd.log")"
wait_http "$NURL/" || die "nginx did not start"
wait_http "$TURL" || die "tus server did not start"
for i in $(seq 1 100); do grep -q "tus sink" "$B/tus/sink.log" && break; sleep 0.05; done
now() { date +%s.%N; }
metric() { curl -sS "$DURL/metrics" | awk -v k="$1" 'index($1, k) == 1 && !v {v = $2} END {print v}'; }
done_up() { metric 'dripd_jobs_completed_total{pipeline="upload"}'; }
field() { echo "$1" | sed "s/.*$2=\([0-9.]*\).*/\1/"; }
settle

if ! skip sustained; then
  for i in $(seq 1 "$RUNS"); do
    sync; quiet
    timeout $((DURATION_S + 30)) wrk -t 2 -c 64 -d "${DURATION_S}s" -s "$HERE/anchors/put4k.lua" "$NURL" -- "s$i" > "$B/wrk-n.txt" 2>&1
    line=$(grep '^WRK ' "$B/wrk-n.txt") || die "wrk nginx: $(tail -3 "$B/wrk-n.txt")"
    field "$line" rps >> "$R/nginx_put4k"

    sync; quiet
    d0=$(done_up); t0=$(now)
    timeout $((DURATION_S + 30)) wrk -t 2 -c 64 -d "${DURATION_S}s" -s "$HERE/anchors/put4k_dripd.lua" "$DURL" -- "s$i" "$TOKEN" > "$B/wrk-d.txt" 2>&1
    t_in=$(now); d_in=$(done_up)
    line=$(grep '^WRK ' "$B/wrk-d.txt") || die "wrk dripd: $(tail -3 "$B/wrk-d.txt")"
    [ "$(field "$line" non2xx)" = 0 ] || log "dripd answered $(field "$line" non2xx) non-2xx"
    n=$(field "$line" requests)
    for k in $(seq 1 36000); do
      q=$(metric dripd_jobs_queue_depth)
      [ "${q:-1}" = 0 ] && break; sleep 0.05
    done
    t1=$(now); d1=$(done_up)
    field "$line" rps >> "$R/dripd_put4k"
    field "$line" p50_ms >> "$R/dripd_put4k_p50"
    field "$line" p99_ms >> "$R/dripd_put4k_p99"
    awk -v n="$((d1 - d0))" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f\n", n/(b-a)}' >> "$R/dripd_e2e"
    awk -v n="$((d_in - d0))" -v a="$t0" -v b="$t_in" 'BEGIN{printf "%.1f\n", n/(b-a)}' >> "$R/dripd_during"
    log "sustained run $i: nginx $(tail -1 "$R/nginx_put4k") req/s; dripd intake $(tail -1 "$R/dripd_put4k") req/s" \
        "(p50 $(tail -1 "$R/dripd_put4k_p50") ms, p99 $(tail -1 "$R/dripd_put4k_p99") ms, $n accepted)," \
        "end to end $(tail -1 "$R/dripd_e2e")/s ($((d1 - d0)) done in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}') s)," \
        "during the intake $(tail -1 "$R/dripd_during")/s"
  done
fi

if ! skip tus; then
  for i in $(seq 1 "$RUNS"); do
    for who in sink anchor dripd; do
      sync; quiet
      case $who in
        sink) out=$(node "$HERE/node/tus_small.mjs" "$SMALL" "$SURL" "$TUS_S" 16) ;;
        anchor) out=$(node "$HERE/node/tus_small.mjs" "$SMALL" "$TURL" "$TUS_S" 16) ;;
        dripd) out=$(node "$HERE/node/tus_small.mjs" "$SMALL" "$DURL/v1/uploads" "$TUS_S" 16 "$TOKEN" "/tus$i") ;;
      esac
      [ "$(field "$out" errors)" = 0 ] || log "tus $who: $(field "$out" errors) errors"
      field "$out" ups >> "$R/tus_$who"
      field "$out" p50_ms >> "$R/tus_${who}_p50"
      field "$out" p99_ms >> "$R/tus_${who}_p99"
    done
    log "tus run $i: sink $(tail -1 "$R/tus_sink"), @tus/server $(tail -1 "$R/tus_anchor"), dripd $(tail -1 "$R/tus_dripd") uploads/s" \
        "(dripd p50 $(tail -1 "$R/tus_dripd_p50") ms, p99 $(tail -1 "$R/tus_dripd_p99") ms)"
  done
fi

busy=$(sort -n "$ANCHOR/busy.log" 2>/dev/null | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "NA"}')
python3 - "$R" "$ROOT/bench/results/small.json" "$busy" <<'PY'
import json, os, statistics, sys
R, out, busy = sys.argv[1:4]
def vals(k):
    p = os.path.join(R, k)
    return [float(x) for x in open(p).read().split()] if os.path.exists(p) else []
def stat(k):
    v = vals(k)
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)} if v else None
rows = [
    ("4 KiB PUT intake, 64 conns (req/s)", "dripd_put4k", "nginx_put4k", 0.7),
    ("sustained end to end, available (uploads/s)", "dripd_e2e", "nginx_put4k", 0.5),
    ("jobs done during the intake (jobs/s)", "dripd_during", "dripd_e2e", 0.8),
    ("4 KiB PUT p50 / p99 (ms)", "dripd_put4k_p50", "dripd_put4k_p99", None),
    ("tus 4 KiB, 16 in flight (uploads/s)", "tus_dripd", "tus_anchor", 3.0),
    ("tus 4 KiB / client ceiling (a sink)", "tus_dripd", "tus_sink", 0.8),
    ("tus p50 / p99 (ms)", "tus_dripd_p50", "tus_dripd_p99", None),
]
res = {"busy_pct_median": busy, "scenarios": []}
print("%-46s %22s %22s %7s %6s" % ("scenario", "dripd med [min-max]", "anchor med [min-max]", "ratio", "target"))
f = lambda s: "%.1f [%.1f-%.1f]" % (s["median"], s["min"], s["max"]) if s else "-"
for name, d, a, target in rows:
    sd, sa = stat(d), stat(a)
    ratio = sd["median"] / sa["median"] if sd and sa and sa["median"] and target is not None else None
    res["scenarios"].append({"name": name, "dripd": sd, "anchor": sa, "anchor_key": a,
                             "ratio": ratio, "target": target})
    print("%-46s %22s %22s %7s %6s" % (name, f(sd), f(sa), "%.2fx" % ratio if ratio else "",
                                        "%.1fx" % target if target else ""))
print("machine busy (median %% of both CPUs before the runs): %s" % busy)
json.dump(res, open(out, "w"), indent=1)
PY

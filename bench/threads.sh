#!/usr/bin/env bash
# bench/threads.sh: does a second event-loop thread help? (issue 3: "use
# several event-loop threads ... where it helps. Measure it.")
#
# Two dripd nodes side by side, identical but for http.threads (1 vs N,
# default N = 0 = one loop per core), measured alternately in the same run:
#   healthz   GET /healthz, wrk -c64 keep-alive: parsing + routing only
#   get1m     100 concurrent 1 MiB GETs from the cache (ab): sendfile path
#   put4k     4 KiB PUTs, wrk -c64: each 202 durable (group commit)
#
#   RUNS=3 (default)  THREADS=0  (the "many" node's http.threads)
#
# Output: medians and ratios (many / one) on stdout, every run on stderr,
# bench/results/threads.json. Needs `make` first.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-3}
THREADS=${THREADS:-0}
B=$ANCHOR/threads
R=$B/results
MIB1=$ANCHOR/src-1m.bin
TOKEN=bench-token-0123456789
AUTH="Authorization: Bearer $TOKEN"
P1=18091
PN=18092

[ -x "$ROOT/bin/dripd" ] || die "build first: make"
command -v wrk >/dev/null && command -v ab >/dev/null || die "needs wrk and ab (make deps)"
for p in $P1 $PN; do port_free $p || die "127.0.0.1:$p is in use"; done
rm -rf "$B"; mkdir -p "$R"
mkrand "$MIB1" 1048576

start() {  # start NAME PORT THREADS
  mkdir -p "$B/$1"
  cat > "$B/$1/dripd.yaml" <<EOF
listen: ["127.0.0.1:$2"]
data_dir: $B/$1/var
users: [{name: bench, token: "$TOKEN", admin: true}]
http: {threads: $3}
pipeline: {queue_limit: 10000000}
limits: {max_connections: 20000, keepalive_timeout: 300s}
log: {level: warn}
EOF
  "$ROOT/bin/dripd" -c "$B/$1/dripd.yaml" > "$B/$1/dripd.log" 2>&1 &
  echo $!
}
D1=$(start one $P1 1)
DN=$(start many $PN "$THREADS")
cleanup() { stop_pid "$D1" one; stop_pid "$DN" many; rm -rf "$B/one" "$B/many"; }
trap cleanup EXIT; trap 'exit 143' INT TERM
wait_http "http://127.0.0.1:$P1/healthz" || die "dripd one: $(tail -5 "$B/one/dripd.log")"
wait_http "http://127.0.0.1:$PN/healthz" || die "dripd many: $(tail -5 "$B/many/dripd.log")"
loops() {  # event-loop threads of the node's http worker: dripd-http, dripd-http-1...
  local w; w=$(pgrep -P "$1" -x dripd-http | head -1)
  cat /proc/"$w"/task/*/comm | grep -c '^dripd-http'
}
log "loop threads: one=$(loops "$D1") many=$(loops "$DN")"

# a cached 1 MiB media on each node
declare -A M
for n in one many; do
  port=$P1; [ $n = many ] && port=$PN
  out=$(curl -sS -T "$MIB1" -H "$AUTH" "http://127.0.0.1:$port/v1/files/t/m1.bin")
  j=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["id"])')
  M[$n]=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["media"]["id"])')
  for k in $(seq 1 600); do
    st=$(curl -sS -H "$AUTH" "http://127.0.0.1:$port/v1/jobs/$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    [ "$st" = done ] && break; sleep 0.05
  done
  [ "$st" = done ] || die "1 MiB upload on $n: $st"
done

cat > "$B/get.lua" <<'EOF'
function done(summary, latency, requests)
  io.write(string.format("WRK rps=%.1f non2xx=%d\n", summary.requests / (summary.duration / 1e6),
    summary.errors.status))
end
EOF
for i in $(seq 1 "$RUNS"); do
  for n in one many; do  # alternate, order rotated each run
    [ $((i % 2)) = 0 ] && { [ $n = one ] && n=many || n=one; }
    port=$P1; [ $n = many ] && port=$PN
    quiet
    line=$(wrk -t 2 -c 64 -d 5s -s "$B/get.lua" "http://127.0.0.1:$port/healthz" | grep '^WRK ')
    echo "$line" | sed 's/.*rps=\([0-9.]*\).*/\1/' >> "$R/${n}_healthz"
    quiet
    ab -q -c 100 -n 3000 -H "$AUTH" "http://127.0.0.1:$port/v1/media/${M[$n]}/content" > "$B/ab.txt" 2>&1 ||
      die "ab $n: $(tail -3 "$B/ab.txt")"
    awk '/^Requests per second/ {print $4}' "$B/ab.txt" >> "$R/${n}_get1m"
    sync; quiet
    line=$(timeout 30 wrk -t 2 -c 64 -d 5s -s "$HERE/anchors/put4k_dripd.lua" "http://127.0.0.1:$port" \
           -- "r$i" "$TOKEN" | grep '^WRK ')
    echo "$line" | sed 's/.*rps=\([0-9.]*\).*/\1/' >> "$R/${n}_put4k"
    log "run $i $n: healthz $(tail -1 "$R/${n}_healthz") req/s, 1 MiB GET $(tail -1 "$R/${n}_get1m") req/s," \
        "4 KiB PUT $(tail -1 "$R/${n}_put4k") req/s"
  done
done

python3 - "$R" "$ROOT/bench/results/threads.json" "$THREADS" <<'PY'
import json, os, statistics, sys
R, out, threads = sys.argv[1], sys.argv[2], sys.argv[3]
def med(k):
    return statistics.median(float(x) for x in open(os.path.join(R, k)).read().split())
res = {"many_threads": int(threads), "scenarios": []}
print("%-34s %10s %10s %7s" % ("scenario (req/s)", "1 loop", "many", "ratio"))
for name, k in [("GET /healthz, 64 conns", "healthz"), ("1 MiB GET from cache, 100 conns", "get1m"),
                ("4 KiB PUT, 64 conns", "put4k")]:
    a, b = med("one_" + k), med("many_" + k)
    print("%-34s %10.0f %10.0f %7.2f" % (name, a, b, b / a))
    res["scenarios"].append({"name": name, "one_loop": a, "many_loops": b, "ratio": b / a})
os.makedirs(os.path.dirname(out), exist_ok=True)
json.dump(res, open(out, "w"), indent=2)
print("written", out)
PY

#!/usr/bin/env bash
# bench/put.sh: 1 GiB PUT throughput, dripd (PUT /v1/files, 202 = fsynced +
# durable job) against nginx WebDAV (PUT into the page cache, no fsync), on
# loopback, alternating runs (nginx, dripd, nginx, dripd, ...) because this
# machine's large-transfer speed drifts up to 2x; prints both medians and
# their ratio, plus dripd's peak RSS: the sum of VmHWM over the supervisor
# and its workers, reset through /proc/PID/clear_refs right before each
# dripd PUT.
#
#   RUNS=3 (default)     runs per server
#   QUIET_PCT=10         wait (<=120 s) until the machine is this idle before a run
#   DRIPD_BIN=bin/dripd  the binary to measure
#   COLD=1               keep every uploaded file until the end (as anchors/nginx.sh
#                        does), so each run writes into memory nobody freed just
#                        before; default: delete after each run, so both servers
#                        write into pages the previous run freed (see the anchors
#                        README: on this VM fresh pages cost up to 5x more)
#
# Output: detail on stderr; "RESULT name min=.. median=.. max=.. n=.." lines
# and a "RATIO" line on stdout. Run as root (clear_refs, chown for nginx).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-3}
DRIPD_BIN=${DRIPD_BIN:-$ROOT/bin/dripd}
B=$ANCHOR/put-bench
R=$B/results
BIG=$ANCHOR/src-1g.bin
DPORT=18092
NPORT=${NPORT:-18082}    # not 18080: bench/run.sh and the anchors use that one
DURL=http://127.0.0.1:$DPORT
NURL=http://127.0.0.1:$NPORT
TOKEN=put-bench-token-0123456789
AUTH="Authorization: Bearer $TOKEN"

[ "$(id -u)" = 0 ] || die "run as root (clear_refs of the workers, nginx data dir ownership)"
[ -x "$DRIPD_BIN" ] || die "build first: make ($DRIPD_BIN missing)"
for p in $NPORT $DPORT; do port_free $p || die "127.0.0.1:$p is in use"; done
rm -rf "$B"; mkdir -p "$R" "$B/nginx"/{logs,data,tmp} "$B/dripd"
chown nobody:nogroup "$B/nginx/data"
rm -f "$ANCHOR/busy.log"
mkrand "$BIG" $GIB

cat > "$B/dripd.yaml" <<EOF
listen: ["127.0.0.1:$DPORT"]
data_dir: $B/dripd/var
users: [{name: bench, token: "$TOKEN", admin: true}]
pipeline: {queue_limit: 1000000}
limits: {max_upload_size: 4GiB}
log: {level: warn}
EOF
"$DRIPD_BIN" -c "$B/dripd.yaml" > "$B/dripd.log" 2>&1 &
DRIPD=$!
# the anchor's nginx.conf, moved to our port
sed "s/127\.0\.0\.1:18080/127.0.0.1:$NPORT/" "$HERE/anchors/nginx.conf" > "$B/nginx.conf"
grep -q "127.0.0.1:$NPORT" "$B/nginx.conf" || die "could not set the nginx port in $B/nginx.conf"
nginx -p "$B/nginx/" -c "$B/nginx.conf" -e "$B/nginx/logs/error.log" &
NGX=$!
cleanup() { stop_pid $NGX nginx; stop_pid $DRIPD dripd; rm -rf "$B/nginx/data" "$B/dripd/var/spool"; }
trap cleanup EXIT; trap 'exit 143' INT TERM
wait_http "$DURL/healthz" || die "dripd did not start: $(tail -5 "$B/dripd.log")"
wait_http "$NURL/" || die "nginx did not start (see $B/nginx/logs/error.log)"
dpids() { echo "$DRIPD $(pgrep -P "$DRIPD" | tr '\n' ' ')"; }
log "dripd $(dpids)| nginx $NGX $(pgrep -P "$NGX" | tr '\n' ' ')"

# A finished upload may start pipeline work (encrypt, store) in the
# background; wait for it so it does not slow down the next measured run.
settle_job() {
  local id=$1 i st
  for i in $(seq 1 480); do
    st=$(curl -s -H "$AUTH" -o "$B/job.json" -w '%{http_code}' "$DURL/v1/jobs/$id" || true)
    [ "$st" = 200 ] || return 0               # no jobs API in this build: nothing to wait for
    grep -Eq '"state":"(done|failed)"' "$B/job.json" && return 0
    sleep 0.25
  done
  log "WARNING: job $id still not finished"
}

put_nginx() {
  local i=$1 code bytes secs
  sync; quiet
  read -r code bytes secs < <(curl -sS --max-time 600 -T "$BIG" -o /dev/null \
      -w '%{http_code} %{size_upload} %{time_total}\n' "$NURL/big/$i.bin")
  [ "$code" = 201 ] || die "nginx PUT returned $code"
  local mbs; mbs=$(awk -v b="$bytes" -v t="$secs" 'BEGIN{printf "%.1f", b/t/1e6}')
  log "nginx PUT run $i: ${secs}s $mbs MB/s"
  echo "$mbs" >> "$R/nginx_put"
  [ "${COLD:-0}" = 1 ] || curl -sS -o /dev/null -X DELETE "$NURL/big/$i.bin"
}

put_dripd() {
  local i=$1 code bytes secs pids
  sync; quiet
  pids=$(dpids)
  hwm_reset $pids
  read -r code bytes secs < <(curl -sS --max-time 600 -T "$BIG" -H "$AUTH" -o "$B/put.json" \
      -w '%{http_code} %{size_upload} %{time_total}\n' "$DURL/v1/files/bench/$i.bin")
  [ "$code" = 202 ] || die "dripd PUT returned $code: $(cat "$B/put.json")"
  local rss; rss=$(for p in $pids; do hwm_kib "$p"; done | awk '{s+=$1} END{printf "%.1f", s/1024}')
  local each; each=$(for p in $pids; do printf '%s=%.1f ' "$(cat /proc/$p/comm)" \
      "$(awk -v k="$(hwm_kib "$p")" 'BEGIN{print k/1024}')"; done)
  local mbs; mbs=$(awk -v b="$bytes" -v t="$secs" 'BEGIN{printf "%.1f", b/t/1e6}')
  log "dripd PUT run $i: ${secs}s $mbs MB/s, peak RSS sum ${rss} MiB ($each)"
  echo "$mbs" >> "$R/dripd_put"; echo "$rss" >> "$R/dripd_rss_sum"
  local job; job=$(sed -n 's/.*"job":{"id":"\([0-9A-Z]*\)".*/\1/p' "$B/put.json")
  [ -n "$job" ] && settle_job "$job"
  # drop a spool file no pipeline took (the disk must not fill up)
  [ "${COLD:-0}" = 1 ] || find "$B/dripd/var/spool" -name '*.part' -size +512M -delete 2>/dev/null || true
}

for i in $(seq 1 "$RUNS"); do
  put_nginx "$i"
  put_dripd "$i"
done

echo "RESULT put_other_load_busy_pct_before_runs $(stats < "$ANCHOR/busy.log")"
for k in nginx_put dripd_put dripd_rss_sum; do
  echo "RESULT $k $(stats < "$R/$k")"
done
med() { stats < "$R/$1" | sed 's/.*median=\([0-9.]*\).*/\1/'; }
echo "RATIO dripd/nginx PUT 1GiB (medians): $(awk -v a="$(med dripd_put)" -v b="$(med nginx_put)" \
  'BEGIN{printf "%.2f", a/b}')  (target >= 0.90; dripd peak RSS median $(med dripd_rss_sum) MiB, target <= 32)"

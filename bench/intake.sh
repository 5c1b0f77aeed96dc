#!/usr/bin/env bash
# bench/intake.sh: the 4 KiB PUT intake (issue 15) of two dripd builds,
# alternating (A B A B), each run beside an nginx run, with the CPU each
# dripd process spent per accepted upload (perf stat -e task-clock over
# the intake) and the upload jobs the pipeline completed while it ran.
#
#   BUILDS="A=path/to/bin B=path/to/bin ..."  the builds (directories
#                                holding a dripd), in their order; default
#                                "A=bin" (this tree's build)
#   RUNS=2 DURATION_S=30 CLIENTS=64 SETTLE_S=0 QUIET_WAIT=5
#   DRAIN=1   then wait until the queue is empty: the end-to-end rate
#             (jobs done from the first request until the last job is
#             done, as bench/small.sh) and jobs/s during the intake over it
#
# Every run gets a fresh data_dir (queue_limit above the run's total, so
# no upload waits for admission) and a fresh nginx root; the data is
# deleted at the end only, so one run's unlinks do not slow the next
# one's creates. Output: one line per run on stderr and a table of
# medians with min-max per build on stdout (ratios to nginx are per run).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"
DURATION_S=${DURATION_S:-30}
CLIENTS=${CLIENTS:-64}
export QUIET_WAIT=${QUIET_WAIT:-5}
declare -A EXE
builds_parse

bench_init intake
start_nginx
done_up() { metric 'dripd_jobs_completed_total{pipeline="upload"}'; }
[ "${SETTLE_S:-0}" = 0 ] || settle

for i in $(seq 1 "$RUNS"); do
  for b in $NAMES; do
    sync; quiet
    timeout $((DURATION_S + 30)) wrk -t 2 -c "$CLIENTS" -d "${DURATION_S}s" -s "$HERE/anchors/put4k.lua" \
      "$NURL" -- "n$i$b" > "$B/wrk-n.txt" 2>&1
    line=$(grep '^WRK ' "$B/wrk-n.txt") || die "wrk nginx: $(tail -3 "$B/wrk-n.txt")"
    nrps=$(field "$line" rps)

    mkdir -p "$B/dripd-$i$b"; rm -rf "$B/dripd"; ln -s "dripd-$i$b" "$B/dripd"
    DRIPD_EXE=${EXE[$b]} start_dripd "pipeline: {queue_limit: 10000000}
limits: {max_connections: 20000, keepalive_timeout: 300s}"
    http=$(role_pid dripd-http); pipe=$(role_pid dripd-pipeline)
    sync; quiet
    d0=$(done_up); t0=$(now); load=$(cut -d' ' -f1 /proc/loadavg)
    perf stat -e task-clock -x, -o "$B/perf-http.txt" -p "$http" &
    ph=$!
    perf stat -e task-clock -x, -o "$B/perf-pipe.txt" -p "$pipe" &
    pp=$!
    timeout $((DURATION_S + 30)) wrk -t 2 -c "$CLIENTS" -d "${DURATION_S}s" -s "$HERE/anchors/put4k_dripd.lua" \
      "$DURL" -- "d$i" "$TOKEN" > "$B/wrk-d.txt" 2>&1
    d1=$(done_up); t1=$(now)
    kill -INT "$ph" "$pp"; wait "$ph" "$pp" || true
    e2e=NA during_e2e=NA
    if [ "${DRAIN:-0}" = 1 ]; then
      wait_queue_empty || log "the queue did not empty"
      e2e=$(awk -v n=$(($(done_up) - d0)) -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.1f", n/(b-a)}')
      during_e2e=$(awk -v n=$((d1 - d0)) -v a="$t0" -v b="$t1" -v e="$e2e" 'BEGIN{printf "%.3f", n/(b-a)/e}')
    fi
    line=$(grep '^WRK ' "$B/wrk-d.txt") || die "wrk dripd: $(tail -3 "$B/wrk-d.txt")"
    [ "$(field "$line" non2xx)" = 0 ] || log "dripd answered $(field "$line" non2xx) non-2xx"
    n=$(field "$line" requests)
    ms_http=$(awk -F, '/task-clock/ {print $1}' "$B/perf-http.txt")
    ms_pipe=$(awk -F, '/task-clock/ {print $1}' "$B/perf-pipe.txt")
    rps=$(field "$line" rps)
    echo "$b $rps $nrps $(awk -v a="$rps" -v b="$nrps" 'BEGIN{printf "%.3f", a/b}') \
$(awk -v m="$ms_http" -v n="$n" 'BEGIN{printf "%.1f", m*1000/n}') \
$(awk -v m="$ms_pipe" -v n="$n" 'BEGIN{printf "%.1f", m*1000/n}') \
$(awk -v d=$((d1 - d0)) -v t="$DURATION_S" 'BEGIN{printf "%.1f", d/t}') \
$(field "$line" p50_ms) $(field "$line" p99_ms) $load $e2e $during_e2e" >> "$R/runs"
    log "run $i $b: $(tail -1 "$R/runs")"
    stop_pid "$DRIPD" dripd; DRIPD=''
  done
done
rm -rf "$B"/dripd-*

echo "build req/s nginx ratio http_us/req pipe_us/req jobs_during/s p50_ms p99_ms load1 e2e/s during/e2e"
medians_by_build "$R/runs"

#!/usr/bin/env bash
# bench/cpu_per_upload.sh: the CPU one 4 KiB upload costs end to end (issue
# 15), PUT accepted -> job done, per dripd process, of one or more builds
# run alternating (A B A B), each on a fresh data_dir.
#
#   BUILDS="A=path/to/bin B=..."  directories holding a dripd (default this tree's bin)
#   RUNS=3 N=20000 CLIENTS=16   N uploads (wrk keep-alive, 2 threads)
#   PERF=1   also perf record -g both processes (B/perf-<role>-<run>.data)
#   SYSCALLS=1  also count syscalls (perf stat -e raw_syscalls:sys_enter)
#
# CPU is utime+stime from /proc/<pid>/stat, from after start-up until the
# queue is empty (every job done), divided by the jobs completed; usable on
# a shared VM, where wall-clock rates are not. Output: one line per run on
# stderr, medians [min-max] per build on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"
N=${N:-20000}
CLIENTS=${CLIENTS:-16}
declare -A EXE
NAMES=''
for nb in ${BUILDS:-A=$ROOT/bin}; do
  NAMES="$NAMES ${nb%%=*}"; EXE[${nb%%=*}]=${nb#*=}/dripd
  [ -x "${EXE[${nb%%=*}]}" ] || die "no dripd in ${nb#*=}"
done
bench_init cpu
done_up() { metric 'dripd_jobs_completed_total{pipeline="upload"}'; }
role_pid() { local p; for p in $(pgrep -P "$DRIPD"); do [ "$(cat /proc/$p/comm)" = "$1" ] && echo "$p"; done; return 0; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

for i in $(seq 1 "$RUNS"); do
  for b in $NAMES; do
    rm -rf "$B/dripd"; mkdir -p "$B/dripd"
    DRIPD_EXE=${EXE[$b]} start_dripd "pipeline: {queue_limit: 10000000}
limits: {max_connections: 20000, keepalive_timeout: 300s}"
    http=$(role_pid dripd-http); pipe=$(role_pid dripd-pipeline)
    d0=$(done_up); h0=$(ticks "$http"); p0=$(ticks "$pipe")
    pids=''
    if [ "${PERF:-0}" = 1 ]; then
      perf record -g -o "$B/perf-http-$i$b.data" -p "$http" >/dev/null 2>&1 & pids="$pids $!"
      perf record -g -o "$B/perf-pipe-$i$b.data" -p "$pipe" >/dev/null 2>&1 & pids="$pids $!"
    fi
    if [ "${SYSCALLS:-0}" = 1 ]; then
      perf stat -e raw_syscalls:sys_enter -x, -o "$B/sys-http.txt" -p "$http" & pids="$pids $!"
      perf stat -e raw_syscalls:sys_enter -x, -o "$B/sys-pipe.txt" -p "$pipe" & pids="$pids $!"
    fi
    wrk -t 2 -c "$CLIENTS" -d 600s -s "$HERE/anchors/put4k_dripd.lua" \
      "$DURL" -- "c$i" "$TOKEN" $((N / 2)) > "$B/wrk.txt" 2>&1
    wait_queue_empty || log "the queue did not empty"
    h1=$(ticks "$http"); p1=$(ticks "$pipe"); n=$(($(done_up) - d0))
    # shellcheck disable=SC2086
    [ -z "$pids" ] || { kill -INT $pids; wait $pids || true; }
    sys=''
    if [ "${SYSCALLS:-0}" = 1 ]; then
      sys=" $(awk -F, -v n=$n '/sys_enter/ {printf "%.1f", $1/n}' "$B/sys-http.txt") \
$(awk -F, -v n=$n '/sys_enter/ {printf "%.1f", $1/n}' "$B/sys-pipe.txt")"
    fi
    echo "$b $n $(awk -v t=$((h1 - h0)) -v n=$n -v hz=$HZ 'BEGIN{printf "%.1f", t/hz*1e6/n}') \
$(awk -v t=$((p1 - p0)) -v n=$n -v hz=$HZ 'BEGIN{printf "%.1f", t/hz*1e6/n}')$sys" >> "$R/runs"
    log "run $i $b: $(tail -1 "$R/runs")"
    stop_pid "$DRIPD" dripd; DRIPD=''
  done
done
rm -rf "$B/dripd"
echo "build uploads http_us/upload pipe_us/upload${SYSCALLS:+ http_sys/upload pipe_sys/upload}"
for b in $NAMES; do
  awk -v b="$b" '$1 == b' "$R/runs" | python3 -c '
import sys, statistics as st
rows = [l.split() for l in sys.stdin]
cols = list(zip(*rows))
def f(v):
    v = sorted(map(float, v)); return "%g [%g-%g]" % (st.median(v), v[0], v[-1])
print(rows[0][0], " | ".join(f(c) for c in cols[1:]))'
done

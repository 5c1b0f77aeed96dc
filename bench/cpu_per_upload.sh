#!/usr/bin/env bash
# bench/cpu_per_upload.sh: the CPU one 4 KiB upload costs end to end (issue
# 15), PUT accepted -> job done, per dripd process, of one or more builds
# run alternating (A B A B), each on a fresh data_dir.
#
#   BUILDS="A=path/to/bin B=..."  directories holding a dripd (default this tree's bin)
#   RUNS=3 N=20000 CLIENTS=16   N uploads (wrk keep-alive, 2 threads)
#   PERF=1   also perf record -g both processes (B/perf-<role>-<run>.data)
#   PERF_CG="--call-graph dwarf -F 499"  perf's call-graph options instead
#            of -g (Debian's libsqlite3 and libc keep no frame pointers:
#            only dwarf unwinding attributes their time to callers)
#   SYSCALLS=1  also count syscalls (perf stat -e raw_syscalls:sys_enter)
#   CTXSW_THREADS=1  also the context switches per thread name (enc-N: all
#               the enc threads), per process, voluntary and not
#
# CPU is utime+stime from /proc/<pid>/stat, from after start-up until the
# queue is empty (every job done), divided by the jobs completed; usable on
# a shared VM, where wall-clock rates are not. Context switches (cs: the
# thread-wake-ups a job costs, issue 15) are voluntary + nonvoluntary, summed
# over /proc/<pid>/task/*/status over the same span (a thread that ended
# meanwhile is not counted), per job; the supervisor's (sup_cs: the relay
# of wake-up messages between the workers) too. wrk runs until its threads have had
# N answers between them (put4k_dripd.lua stops sending then, but wrk
# itself would sleep out its -d 600s): once N jobs are done it is stopped
# (SIGINT), and the jobs of the requests it had in flight are waited for.
# Each run starts after a settle (SETTLE_S, default 65 s; anchors/lib.sh):
# without it, ext4 without a journal (this VM's /) scans past the inodes
# the previous run's cleanup deleted at every file create, which was 21-24%
# of both processes' CPU in a profile (session 14).
# Also the disk's work per upload over the same span (disk_stat, lib.sh:
# the whole device, so other users' I/O counts too; compare builds in the
# same run): write requests, ms the disk spent writing, cache flushes
# (each fsync, fdatasync or syncfs ends in one) and ms flushing.
# Output: one line per run on stderr (with the load average before it),
# medians [min-max] per build on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"
N=${N:-20000}
CLIENTS=${CLIENTS:-16}
declare -A EXE
builds_parse
bench_init cpu
done_up() { metric 'dripd_jobs_completed_total{pipeline="upload"}'; }
# cs_snap PID: "tid name voluntary nonvoluntary" per thread
cs_snap() {
  awk '/^Name:/ {n = $2} /^voluntary_ctxt_switches:/ {v = $2}
       /^nonvoluntary_ctxt_switches:/ {split(FILENAME, a, "/"); print a[5], n, v, $2}' \
    /proc/"$1"/task/*/status 2>/dev/null || true
}
# cs_delta BEFORE AFTER: "name voluntary nonvoluntary" per thread alive at
# the end, since BEFORE (all of it for a thread started since)
cs_delta() { awk 'NR == FNR {v[$1] = $3; nv[$1] = $4; next} {print $2, $3 - v[$1], $4 - nv[$1]}' "$1" "$2"; }
# per_job FILE N: the context switches of a cs_delta per job
per_job() { awk -v n="$2" '{s += $2 + $3} END {printf "%.2f", s / n}' "$1"; }
WRK=''
trap '[ -z "$WRK" ] || kill -INT "$WRK" 2>/dev/null || true; bench_cleanup' EXIT

for i in $(seq 1 "$RUNS"); do
  for b in $NAMES; do
    rm -rf "$B/dripd"; mkdir -p "$B/dripd"
    settle # the last run's files were just deleted (anchors/lib.sh)
    DRIPD_EXE=${EXE[$b]} start_dripd "pipeline: {queue_limit: 10000000}
limits: {max_connections: 20000, keepalive_timeout: 300s}"
    http=$(role_pid dripd-http); pipe=$(role_pid dripd-pipeline)
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    d0=$(done_up); h0=$(ticks "$http"); p0=$(ticks "$pipe"); read -r w0 wms0 f0 fms0 < <(disk_stat "$B")
    cs_snap "$http" > "$B/cs-http0"; cs_snap "$pipe" > "$B/cs-pipe0"; cs_snap "$DRIPD" > "$B/cs-sup0"
    pids=''
    if [ "${PERF:-0}" = 1 ]; then
      # shellcheck disable=SC2086 # PERF_CG is several words
      perf record ${PERF_CG:--g} -o "$B/perf-http-$i$b.data" -p "$http" >/dev/null 2>&1 & pids="$pids $!"
      # shellcheck disable=SC2086
      perf record ${PERF_CG:--g} -o "$B/perf-pipe-$i$b.data" -p "$pipe" >/dev/null 2>&1 & pids="$pids $!"
    fi
    if [ "${SYSCALLS:-0}" = 1 ]; then
      perf stat -e raw_syscalls:sys_enter -x, -o "$B/sys-http.txt" -p "$http" & pids="$pids $!"
      perf stat -e raw_syscalls:sys_enter -x, -o "$B/sys-pipe.txt" -p "$pipe" & pids="$pids $!"
    fi
    wrk -t 2 -c "$CLIENTS" -d 600s -s "$HERE/anchors/put4k_dripd.lua" \
      "$DURL" -- "c$i" "$TOKEN" $((N / 2)) > "$B/wrk.txt" 2>&1 &
    WRK=$!
    "$PY" "$HERE/watch.py" least "$DURL/metrics" 'dripd_jobs_completed_total{pipeline="upload"}' \
      $((d0 + N / 2 * 2)) 1800 || log "$((N / 2 * 2)) uploads were not done"
    kill -INT "$WRK" 2>/dev/null || true; wait "$WRK" || true; WRK=''
    wait_queue_empty || log "the queue did not empty"
    h1=$(ticks "$http"); p1=$(ticks "$pipe"); n=$(($(done_up) - d0)); read -r w1 wms1 f1 fms1 < <(disk_stat "$B")
    cs_snap "$http" > "$B/cs-http1"; cs_snap "$pipe" > "$B/cs-pipe1"; cs_snap "$DRIPD" > "$B/cs-sup1"
    cs_delta "$B/cs-sup0" "$B/cs-sup1" > "$B/cs-sup"
    cs_delta "$B/cs-http0" "$B/cs-http1" > "$B/cs-http"
    cs_delta "$B/cs-pipe0" "$B/cs-pipe1" > "$B/cs-pipe"
    # shellcheck disable=SC2086
    [ -z "$pids" ] || { kill -INT $pids; wait $pids || true; }
    sys=''
    if [ "${SYSCALLS:-0}" = 1 ]; then
      sys=" $(awk -F, -v n=$n '/sys_enter/ {printf "%.1f", $1/n}' "$B/sys-http.txt") \
$(awk -F, -v n=$n '/sys_enter/ {printf "%.1f", $1/n}' "$B/sys-pipe.txt")"
    fi
    echo "$b $n $(awk -v t=$((h1 - h0)) -v n=$n -v hz=$HZ 'BEGIN{printf "%.1f", t/hz*1e6/n}') \
$(awk -v t=$((p1 - p0)) -v n=$n -v hz=$HZ 'BEGIN{printf "%.1f", t/hz*1e6/n}') \
$(per_job "$B/cs-http" "$n") $(per_job "$B/cs-pipe" "$n") $(per_job "$B/cs-sup" "$n") \
$(awk -v w=$((w1 - w0)) -v wms=$((wms1 - wms0)) -v f=$((f1 - f0)) -v fms=$((fms1 - fms0)) -v n=$n \
  'BEGIN{printf "%.3f %.3f %.3f %.3f", w/n, wms/n, f/n, fms/n}')$sys" >> "$R/runs"
    if [ "${CTXSW_THREADS:-0}" = 1 ]; then
      for role in http pipe; do # one line per thread name (numbers folded: enc-N)
        awk -v b="$b" -v r="$role" -v n="$n" '{sub(/-[0-9]+$/, "-N", $1); v[$1] += $2; nv[$1] += $3}
          END {for (k in v) printf "%s %s %s %.3f %.3f\n", b, r, k, v[k] / n, nv[k] / n}' \
          "$B/cs-$role" >> "$R/threads"
      done
    fi
    log "run $i $b (load $load before): $(tail -1 "$R/runs")"
    stop_pid "$DRIPD" dripd; DRIPD=''
  done
done
rm -rf "$B/dripd"
# the columns of the rows above
hdr="build uploads http_us/upload pipe_us/upload http_cs/upload pipe_cs/upload sup_cs/upload"
hdr="$hdr disk_writes/upload disk_write_ms/upload flushes/upload flush_ms/upload"
[ "${SYSCALLS:-0}" != 1 ] || hdr="$hdr http_sys/upload pipe_sys/upload"
echo "$hdr"
medians_by_build "$R/runs"
if [ "${CTXSW_THREADS:-0}" = 1 ]; then
  echo "build process thread voluntary_cs/upload nonvoluntary_cs/upload"
  sort -k1,1 -k2,2 -k3,3 "$R/threads" | python3 -c '
import sys, statistics as st, itertools
rows = [l.split() for l in sys.stdin]
def f(v):
    v = sorted(map(float, v)); return "%g [%g-%g]" % (st.median(v), v[0], v[-1])
for k, g in itertools.groupby(rows, key=lambda r: r[:3]):
    g = list(g)
    print(" ".join(k), f(r[3] for r in g), "|", f(r[4] for r in g))'
fi

#!/usr/bin/env bash
# bench/drain.sh: the upload pipeline's own rate for small files (issue
# 15), of one or more builds run alternating (A B A B): N 4 KiB PUTs are
# accepted with dripd-pipeline stopped (SIGSTOP), then it is let go and
# timed until every job is done; also its CPU per job (utime + stime of
# dripd-pipeline over the drain) and its peak RSS (VmHWM: it was stopped
# during the intake, so this is the drain's).
#
#   BUILDS="A=dir B=dir"  directories holding a dripd (default this tree's bin)
#   RUNS=3 N=16000        N uploads per run (wrk, 64 keep-alive clients)
#   PERF=1                also perf record -g the pipeline (B/perf-<build>-<run>.data)
#
# Each run of a build has a data_dir of its own, none deleted before the
# end (a deletion slows the next runs' file creation: anchors/lib.sh,
# "settle"); one settle before the first run.
# Output: a line per run on stderr, medians [min-max] per build on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"
N=${N:-16000}
declare -A EXE
builds_parse
bench_init drain
WRK='' PP=''
trap '[ -z "$WRK" ] || kill -INT "$WRK" 2>/dev/null || true; bench_cleanup' EXIT
settle
for i in $(seq 1 "$RUNS"); do
  for b in $NAMES; do
    # heartbeat_timeout: the stopped pipeline sends none (the default 10 s
    # kills it while quiet waits for the machine to settle)
    DRIPD_EXE=${EXE[$b]} DRIPD_DATA=$B/dripd/var-$b-$i start_dripd "pipeline: {queue_limit: 10000000}
limits: {max_connections: 20000, keepalive_timeout: 300s}
supervisor: {heartbeat_timeout: 15m}"
    pipe=$(role_pid dripd-pipeline)
    kill -STOP "$pipe"
    wrk -t 2 -c 64 -d 600s -s "$HERE/anchors/put4k_dripd.lua" "$DURL" -- "d$i" "$TOKEN" $((N / 2)) > "$B/wrk.txt" 2>&1 &
    WRK=$!
    "$PY" "$HERE/watch.py" least "$DURL/metrics" dripd_jobs_queue_depth "$N" 600 || log "the queue did not reach $N"
    kill -INT "$WRK" 2>/dev/null || true; wait "$WRK" || true; WRK=''
    q=$(metric dripd_jobs_queue_depth)
    sync; quiet
    if [ "${PERF:-0}" = 1 ]; then
      perf record -g -o "$B/perf-$b-$i.data" -p "$pipe" >/dev/null 2>&1 & PP=$!
    fi
    p0=$(ticks "$pipe"); t0=$(now)
    kill -CONT "$pipe"
    wait_queue_empty || log "the queue did not empty"
    t1=$(now); p1=$(ticks "$pipe")
    [ -z "$PP" ] || { kill -INT "$PP"; wait "$PP" || true; PP=''; }
    echo "$b $q $(awk -v q="$q" -v a="$t0" -v c="$t1" 'BEGIN{printf "%.0f", q/(c-a)}') \
$(awk -v t=$((p1 - p0)) -v q="$q" -v hz="$HZ" 'BEGIN{printf "%.1f", t/hz*1e6/q}') \
$(awk -v k="$(hwm_kib "$pipe")" 'BEGIN{printf "%.1f", k/1024}')" >> "$R/runs"
    log "run $i $b: $(tail -1 "$R/runs")"
    stop_pid "$DRIPD" dripd; DRIPD=''
  done
done
echo "build jobs drain_jobs_per_s pipe_us_per_job pipe_peak_rss_mib"
medians_by_build "$R/runs"

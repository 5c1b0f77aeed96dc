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
#     with its p50/p99; and how busy the catalog's one SQLite writer was
#     while the intake ran (% of the time held, all kinds of transactions:
#     dripd_catalog_writer_seconds_total), the bound of these rates when
#     near 100.
#   tus: tus-js-client (bench/node/tus_small.mjs), 4 KiB uploads, 16 in
#     flight for TUS_S (20) s, against dripd, @tus/server + FileStore and
#     a discarding sink (the client's own ceiling); then dripd and the sink
#     again with creation-with-upload (one round trip per upload; the
#     default two-request form stays the headline).
#
#   RUNS=3 DURATION_S=60 TUS_S=20 SETTLE_S=65 SKIP="tus|sustained"
#   BUILDS="A=dir B=dir"  directories holding a dripd: every run of each
#     scenario measures each build after the anchors, alternating (A B A
#     B), each run of a build on a data_dir of its own (none is deleted
#     before the end: a deletion slows the next runs' file creation,
#     anchors/lib.sh "settle"); rows per build (".A"), and B against A.
# On a fresh data_dir, after a settle (anchors/lib.sh). Results:
# bench/results/small.json and a table on stdout.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"
DURATION_S=${DURATION_S:-60}
TUS_S=${TUS_S:-20}
export QUIET_WAIT=${QUIET_WAIT:-5}
SMALL=$ANCHOR/src-4k.bin

declare -A EXE
if [ -n "${BUILDS:-}" ]; then
  builds_parse
else
  NAMES=-; EXE[-]=${DRIPD_EXE:-$ROOT/bin/dripd}
fi
# shellcheck disable=SC2086
set -- $NAMES; FIRST=$1
# sfx BUILD: the suffix of its result files ("" for the one build)
sfx() { [ "$1" = - ] || echo ".$1"; }
# dripd_up BUILD RUN: that build's dripd on a data_dir of its own
dripd_up() {
  [ -z "$DRIPD" ] || { stop_pid "$DRIPD" dripd; DRIPD=''; }
  DRIPD_EXE=${EXE[$1]} DRIPD_DATA=$B/dripd/var-$1-$2 start_dripd "pipeline: {queue_limit: 10000000}
limits: {max_connections: 20000, keepalive_timeout: 300s}"
}

bench_init small
mkrand "$SMALL" 4096
dripd_up "$FIRST" 0
start_nginx
skip tus || start_tus
done_up() { metric 'dripd_jobs_completed_total{pipeline="upload"}'; }
# seconds the catalog's writer was held so far, all kinds together
writer_held() { curl -sS "$DURL/metrics" | awk '/^dripd_catalog_writer_seconds_total\{.*phase="held"/ {s += $2} END {printf "%.6f", s}'; }
settle

if ! skip sustained; then
  for i in $(seq 1 "$RUNS"); do
    sync; quiet
    timeout $((DURATION_S + 30)) wrk -t 2 -c 64 -d "${DURATION_S}s" -s "$HERE/anchors/put4k.lua" "$NURL" -- "s$i" > "$B/wrk-n.txt" 2>&1
    line=$(grep '^WRK ' "$B/wrk-n.txt") || die "wrk nginx: $(tail -3 "$B/wrk-n.txt")"
    field "$line" rps >> "$R/nginx_put4k"

    for b in $NAMES; do
      x=$(sfx "$b")
      [ -z "${BUILDS:-}" ] || dripd_up "$b" "$i"
      sync; quiet
      d0=$(done_up); w0=$(writer_held); t0=$(now)
      timeout $((DURATION_S + 30)) wrk -t 2 -c 64 -d "${DURATION_S}s" -s "$HERE/anchors/put4k_dripd.lua" "$DURL" -- "s$i" "$TOKEN" > "$B/wrk-d.txt" 2>&1
      t_in=$(now); d_in=$(done_up); w_in=$(writer_held)
      line=$(grep '^WRK ' "$B/wrk-d.txt") || die "wrk dripd: $(tail -3 "$B/wrk-d.txt")"
      [ "$(field "$line" non2xx)" = 0 ] || log "dripd answered $(field "$line" non2xx) non-2xx"
      n=$(field "$line" requests)
      wait_queue_empty || log "the queue did not empty"
      t1=$(now); d1=$(done_up)
      field "$line" rps >> "$R/dripd_put4k$x"
      field "$line" p50_ms >> "$R/dripd_put4k_p50$x"
      field "$line" p99_ms >> "$R/dripd_put4k_p99$x"
      awk -v n="$((d1 - d0))" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f\n", n/(b-a)}' >> "$R/dripd_e2e$x"
      awk -v n="$((d_in - d0))" -v a="$t0" -v b="$t_in" 'BEGIN{printf "%.1f\n", n/(b-a)}' >> "$R/dripd_during$x"
      awk -v w="$w0" -v v="$w_in" -v a="$t0" -v b="$t_in" 'BEGIN{printf "%.1f\n", 100*(v-w)/(b-a)}' >> "$R/dripd_writer$x"
      log "sustained run $i$x: nginx $(tail -1 "$R/nginx_put4k") req/s; dripd intake $(tail -1 "$R/dripd_put4k$x") req/s" \
          "(p50 $(tail -1 "$R/dripd_put4k_p50$x") ms, p99 $(tail -1 "$R/dripd_put4k_p99$x") ms, $n accepted)," \
          "end to end $(tail -1 "$R/dripd_e2e$x")/s ($((d1 - d0)) done in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.0f", b-a}') s)," \
          "during the intake $(tail -1 "$R/dripd_during$x")/s, catalog writer held $(tail -1 "$R/dripd_writer$x")%"
    done
  done
fi

if ! skip tus; then
  for i in $(seq 1 "$RUNS"); do
    for who in sink anchor $(for b in $NAMES; do echo "dripd$(sfx "$b")"; done) sink_cwu \
      $(for b in $NAMES; do echo "dripd_cwu$(sfx "$b")"; done); do
      case $who in
        dripd.*) dripd_up "${who#dripd.}" "t$i" ;;
        dripd_cwu.*) dripd_up "${who#dripd_cwu.}" "tc$i" ;;
      esac
      sync; quiet
      case $who in
        sink) out=$(node "$HERE/node/tus_small.mjs" "$SMALL" "$SURL" "$TUS_S" 16) ;;
        anchor) out=$(node "$HERE/node/tus_small.mjs" "$SMALL" "$TURL" "$TUS_S" 16) ;;
        dripd_cwu*) out=$(node "$HERE/node/tus_small.mjs" "$SMALL" "$DURL/v1/uploads" "$TUS_S" 16 "$TOKEN" "/tusc$i" cwu) ;;
        dripd*) out=$(node "$HERE/node/tus_small.mjs" "$SMALL" "$DURL/v1/uploads" "$TUS_S" 16 "$TOKEN" "/tus$i") ;;
        sink_cwu) out=$(node "$HERE/node/tus_small.mjs" "$SMALL" "$SURL" "$TUS_S" 16 "" /x cwu) ;;
      esac
      [ "$(field "$out" errors)" = 0 ] || log "tus $who: $(field "$out" errors) errors"
      field "$out" ups >> "$R/tus_$who"
      field "$out" p50_ms >> "$R/tus_${who}_p50"
      field "$out" p99_ms >> "$R/tus_${who}_p99"
    done
    for b in $NAMES; do
      x=$(sfx "$b")
      log "tus run $i$x: sink $(tail -1 "$R/tus_sink"), @tus/server $(tail -1 "$R/tus_anchor"), dripd $(tail -1 "$R/tus_dripd$x") uploads/s" \
          "(dripd p50 $(tail -1 "$R/tus_dripd${x}_p50") ms, p99 $(tail -1 "$R/tus_dripd${x}_p99") ms)"
    done
  done
fi

# the rows of the table: per build, then each build against the first
rows() {
  local b x n
  for b in $NAMES; do
    x=$(sfx "$b"); n=${x:+ [$b]}
    cat <<EOF
4 KiB PUT intake, 64 conns (req/s)$n|dripd_put4k$x|nginx_put4k|0.7
sustained end to end, available (uploads/s)$n|dripd_e2e$x|nginx_put4k|0.5
jobs done during the intake (jobs/s)$n|dripd_during$x|dripd_e2e$x|0.8
4 KiB PUT p50 / p99 (ms)$n|dripd_put4k_p50$x|dripd_put4k_p99$x|-
catalog writer held during the intake (%)$n|dripd_writer$x||
tus 4 KiB, 16 in flight (uploads/s)$n|tus_dripd$x|tus_anchor|3.0
tus 4 KiB / client ceiling (a sink)$n|tus_dripd$x|tus_sink|0.8
tus p50 / p99 (ms)$n|tus_dripd${x}_p50|tus_dripd${x}_p99|-
tus creation-with-upload / its sink$n|tus_dripd_cwu$x|tus_sink_cwu|0.8
tus creation-with-upload p50 / p99 (ms)$n|tus_dripd_cwu${x}_p50|tus_dripd_cwu${x}_p99|-
EOF
  done
  for b in $NAMES; do
    [ "$b" != "$FIRST" ] || continue
    cat <<EOF
intake, $b against $FIRST (req/s)|dripd_put4k.$b|dripd_put4k.$FIRST|
end to end, $b against $FIRST (uploads/s)|dripd_e2e.$b|dripd_e2e.$FIRST|
tus, $b against $FIRST (uploads/s)|tus_dripd.$b|tus_dripd.$FIRST|
tus creation-with-upload, $b against $FIRST (uploads/s)|tus_dripd_cwu.$b|tus_dripd_cwu.$FIRST|
EOF
  done
}
rows | python3 "$HERE/report.py" "$R" "$ROOT/bench/results/small.json" "$(busy_median)"

#!/usr/bin/env bash
# bench/thumbs.sh: dripd's process stage against Debian's own thumbnailers,
# and what processing costs a file that is not media (issue 14).
#
#   photos    N (20) noisy 12 MP JPEGs (made like ../shared/anchors/thumbs.sh,
#             in the same $ANCHOR/photos), per run in alternating order:
#             (a) dripd: all N PUT into a fresh daemon (default config: thumb
#                 256 px WebP + preview 1280 px JPEG), as many uploads at once
#                 as there are cores; photos/s from the first PUT to the last
#                 job done (hash, encrypt, store and both variants, each
#                 variant sealed and stored too);
#             (b) vipsthumbnail: the same two variants, one CLI run each, as
#                 many photos in parallel as there are cores;
#             (c) ImageMagick convert -thumbnail, the same work.
#             Peak RSS of all dripd processes while (a) runs: the sum of
#             VmRSS over the supervisor and every descendant (workers and
#             dripd-decode helpers), sampled every 20 ms.
#             What watches (a) costs next to no CPU (bench/watch.py: one
#             process samples the RSS, one polls the catalog every 20 ms,
#             both started before the clock): until 2026-12-04 the shell's
#             sampler and poll loop forked ps, awk, sqlite3 and sleep ~100
#             times a second and took ~1.1 of the 2 cores while dripd ran,
#             which the CLI anchors never had to share.
#   nonmedia  1 GiB of random bytes through the upload pipeline (accepted
#             with the pipeline worker held, clock from SIGCONT to
#             available, as bench/pipeline.sh), processing on vs off,
#             alternating: a file that is not media costs one type check.
#
#   RUNS=3 bench/thumbs.sh      (default 3; medians and ratios of medians)
#   N=20  ONLY=photos|nonmedia  DRIPD_BIN=path (default bin/dripd)
#   DRIPD_ALT=path              photos: a second dripd build (its own
#                               dripd-decode beside it), run next to the
#                               first in every round, in alternating order:
#                               "alt" figures and alt / dripd
# Output: "RESULT name min=.. median=.. max=.. n=.." lines on stdout,
# detail on stderr. Data under $ANCHOR/thumbs (removed at the end; the
# photos stay in $ANCHOR/photos for the anchor script); daemons are
# stopped by pid, also on failure. The machine may be shared: the figures
# are only comparable within one run.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-3}
N=${N:-20}
P=$(nproc)
ONLY=${ONLY:-}
W=$ANCHOR/thumbs
D=$ANCHOR/photos
BIG=$ANCHOR/src-1g.bin
TOKEN=bench-thumbs-token-0123
AUTH="Authorization: Bearer $TOKEN"
DRIPD=${DRIPD_BIN:-$ROOT/bin/dripd}
[ -x "$DRIPD" ] || die "build first: make"
ALT=${DRIPD_ALT:-}
[ -z "$ALT" ] || [ -x "$ALT" ] || die "DRIPD_ALT=$ALT is not a program"
for t in ffmpeg vipsthumbnail sqlite3; do command -v $t >/dev/null || die "$t missing (make deps)"; done
[ -x /usr/bin/convert ] || die "ImageMagick missing (make deps)"

SUP=""
SAMPLER=""
WAITER=""
# bench/watch.py; the system's python when there is one (a pyenv shim costs
# ~0.5 s of CPU per start)
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3
cleanup() {
  [ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null || true
  [ -n "$WAITER" ] && kill "$WAITER" 2>/dev/null || true
  [ -n "$SUP" ] && stop_pid "$SUP" dripd
  [ -n "${KEEP:-}" ] && cp -r "$W" /tmp/media-benchkeep; rm -rf "$W"
}
trap cleanup EXIT; trap 'exit 143' INT TERM
mkdir -p "$W" "$D"

for i in $(seq 1 "$N"); do
  [ -s "$D/p$i.jpg" ] || ffmpeg -v error -y -f lavfi \
    -i "testsrc2=size=4000x3000:rate=1,noise=alls=$((i * 3)):allf=t" -frames:v 1 -q:v 2 "$D/p$i.jpg"
done

start_dripd() {  # start_dripd PROCESSING(true|false)
  rm -rf "$W/d"; mkdir -p "$W/d"
  cat > "$W/d/dripd.yaml" <<EOF
{"listen": ["127.0.0.1:0"], "data_dir": "$W/d/var",
 "users": [{"name": "bench", "token": "$TOKEN", "admin": true}],
 "pipeline": {"queue_limit": 100000},
 "cache": {"max_size": "4GiB"},
 "limits": {"max_upload_size": "2GiB"},
 "supervisor": {"heartbeat_timeout": "600s"},
 "processing": {"enabled": $1},
 "log": {"level": "${LOG_LEVEL:-info}"}}
EOF
  "$DRIPD" -c "$W/d/dripd.yaml" > "$W/d/dripd.log" 2>&1 &
  SUP=$!
  local i
  for i in $(seq 1 200); do [ -s "$W/d/var/run/listen" ] && break; sleep 0.05; done
  URL=http://$(head -1 "$W/d/var/run/listen")
  for i in $(seq 1 200); do curl -sf -o /dev/null "$URL/readyz" && break; sleep 0.05; done
}
stop_dripd() { stop_pid "$SUP" dripd; SUP=""; }
sql() { sqlite3 -readonly "$W/d/var/catalog.db" "$1"; }
now_s() { date +%s.%N; }
# wait_start SQL: poll the catalog (every 20 ms, one process) until SQL
# answers 1; wait_end: until it did (dies after 600 s)
wait_start() { "$PY" "$HERE/watch.py" wait "$W/d/var/catalog.db" "$1" 600 & WAITER=$!; }
wait_end() {
  local rc=0
  wait "$WAITER" || rc=$?
  WAITER=""
  [ "$rc" = 0 ] || die "timed out waiting for the jobs (watch.py wait: $rc)"
}

# CPU ticks (1/100 s) of pid and all its descendants, each split as
# "self reaped": a process's own utime+stime, and cutime+cstime (its reaped
# children: a pipeline worker's dripd-decode helpers). Prints
# "supervisor http pipeline helpers" in ticks.
tree_cpu() {
  local p comm rest sup=0 http=0 pipe=0 help=0 s c
  for p in $(ps -o pid= --ppid "$1" 2>/dev/null || true) "$1"; do
    rest=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    comm=$(cat "/proc/$p/comm" 2>/dev/null) || continue
    set -- $rest   # field 3 (state) is $1: utime $12 stime $13 cutime $14 cstime $15
    s=$(( ${12} + ${13} )); c=$(( ${14} + ${15} ))
    case "$comm" in
      dripd-http) http=$((http + s + c)) ;;
      dripd-pipeline) pipe=$((pipe + s)); help=$((help + c)) ;;
      *) sup=$((sup + s)) ;;
    esac
  done
  echo "$sup $http $pipe $help"
}

run_dripd() {  # run_dripd [SUFFIX]: photos/s; CPU, RSS into $W/cpu_dripd$1, $W/rss$1
  start_dripd true
  echo 0 > "$W/peak"
  "$PY" "$HERE/watch.py" rss "$SUP" "$W/peak" & SAMPLER=$!
  wait_start "SELECT count(*) = $N FROM jobs WHERE kind = 'upload' AND state IN ('done', 'failed')"
  sleep 0.2  # both started (their start is not timed)
  local t0 t1 c0 c1
  c0=$(tree_cpu "$SUP")
  t0=$(now_s)
  ls "$D"/p*.jpg | head -n "$N" | xargs -P "$P" -I{} sh -c \
    'curl -sS -o /dev/null -w "%{http_code}\n" -H "$1" -T "$2" "$3/v1/files/photos/$(basename "$2")"' \
    _ "$AUTH" {} "$URL" | grep -v '^202$' && die "an upload was refused"
  wait_end
  t1=$(now_s)
  c1=$(tree_cpu "$SUP")
  kill "$SAMPLER"; wait "$SAMPLER" 2>/dev/null || true; SAMPLER=""
  # CPU ms per photo: all dripd processes, and split (supervisor, http
  # worker, pipeline worker, decode helpers); helpers still running at t1
  # are none (every job is done)
  echo "$c0 $c1" | awk -v n="$N" '{ t = 0; for (i = 1; i <= 4; i++) { d[i] = ($(i+4) - $i) * 10 / n; t += d[i] }
    printf "%.0f %.0f %.0f %.0f %.0f\n", t, d[1], d[2], d[3], d[4] }' >> "$W/cpu_dripd${1:-}"
  [ "$(sql "SELECT count(*) FROM variants WHERE state = 'available'")" = $((2 * N)) ] ||
    die "not every photo got its two variants: $(sql "SELECT name, error FROM variants WHERE state <> 'available' LIMIT 3")"
  echo "$(cat "$W/peak")" >> "$W/rss${1:-}"
  [ -n "${KEEP:-}" ] && cp "$W/d/dripd.log" "$W/dripd-photos.log"
  stop_dripd
  awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f\n", n/(b-a)}'
}
vips_one() { vipsthumbnail "$1" -s 256 -o "$OUT/%s-t.webp" && vipsthumbnail "$1" -s 1280 -o "$OUT/%s-p.jpg[Q=82]"; }
im_one() { b=$(basename "$1" .jpg); /usr/bin/convert "$1" -auto-orient -thumbnail 256x256 -strip "$OUT/$b-t.webp" &&
           /usr/bin/convert "$1" -auto-orient -thumbnail 1280x1280 -strip -quality 82 "$OUT/$b-p.jpg"; }
export -f vips_one im_one
export OUT=$W/out
run_cli() {  # run_cli FUNCTION -> photos/s; CPU ms per photo into $W/cpu_$1
  rm -rf "$OUT"; mkdir -p "$OUT"
  local t0 t1; t0=$(now_s)
  /usr/bin/time -f "%U %S" -o "$W/time" bash -c \
    'ls "$1"/p*.jpg | head -n "$2" | xargs -P "$3" -I{} bash -c "$4 {}"' _ "$D" "$N" "$P" "$1"
  t1=$(now_s)
  awk -v n="$N" '{ printf "%.0f\n", ($1 + $2) * 1000 / n }' "$W/time" >> "$W/cpu_$1"
  awk -v n="$N" -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f\n", n/(b-a)}'
}

run_nonmedia() {  # run_nonmedia true|false -> MB/s accepted -> available
  start_dripd "$1"
  local pp mid out t0 ms
  pp=$(pgrep -P "$SUP" -x dripd-pipeline)
  kill -STOP "$pp"
  out=$(curl -sS -H "$AUTH" -T "$BIG" "$URL/v1/files/bench/big.bin")
  mid=$(echo "$out" | sed -n 's/.*"media":{"id":"\([0-9A-Z]*\)".*/\1/p')
  [ -n "$mid" ] || die "upload failed: $out"
  sync; sleep "${SETTLE_IO_S:-3}"
  wait_start "SELECT state = 'available' FROM media WHERE id = '$mid'"
  t0=$(date +%s%3N)
  kill -CONT "$pp"
  wait_end
  ms=$(( $(sql "SELECT uploaded_at FROM media WHERE id = '$mid'") - t0 ))
  stop_dripd
  awk -v b=$GIB -v ms="$ms" 'BEGIN { printf "%.1f\n", b / (ms / 1000) / 1e6 }'
}

if [ "$ONLY" != nonmedia ]; then
  for r in $(seq 1 "$RUNS"); do
    if [ $((r % 2)) = 1 ]; then
      a=$(run_dripd); [ -z "$ALT" ] || x=$(DRIPD=$ALT run_dripd _alt)
      v=$(run_cli vips_one); m=$(run_cli im_one)
    else
      m=$(run_cli im_one); v=$(run_cli vips_one)
      [ -z "$ALT" ] || x=$(DRIPD=$ALT run_dripd _alt); a=$(run_dripd)
    fi
    if [ -n "$ALT" ]; then
      log "run $r: alt dripd $x photos/s (peak RSS $(tail -1 "$W/rss_alt") KiB), CPU ms per photo $(tail -1 "$W/cpu_dripd_alt")"
      echo "$x" >> "$W/alt"
      awk -v a="$x" -v b="$v" 'BEGIN{printf "%.3f\n", a/b}' >> "$W/rxv"
      awk -v a="$x" -v b="$a" 'BEGIN{printf "%.3f\n", a/b}' >> "$W/rxa"
    fi
    log "run $r: dripd $a photos/s (peak RSS $(tail -1 "$W/rss") KiB), vipsthumbnail $v, convert $m ($P at a time, 2 variants each; load average $(cut -d' ' -f1-3 /proc/loadavg))"
    log "run $r: CPU ms per photo: dripd $(tail -1 "$W/cpu_dripd") (all, supervisor, http, pipeline, helpers), vipsthumbnail $(tail -1 "$W/cpu_vips_one"), convert $(tail -1 "$W/cpu_im_one")"
    echo "$a" >> "$W/dripd"; echo "$v" >> "$W/vips"; echo "$m" >> "$W/im"
    awk -v a="$a" -v b="$v" 'BEGIN{printf "%.3f\n", a/b}' >> "$W/rv"
    awk -v a="$a" -v b="$m" 'BEGIN{printf "%.3f\n", a/b}' >> "$W/rm"
  done
  echo "RESULT dripd_photos_per_s $(stats < "$W/dripd")"
  echo "RESULT vipsthumbnail_photos_per_s $(stats < "$W/vips")"
  echo "RESULT imagemagick_photos_per_s $(stats < "$W/im")"
  echo "RESULT ratio_dripd_over_vipsthumbnail $(stats < "$W/rv")"
  echo "RESULT ratio_dripd_over_imagemagick $(stats < "$W/rm")"
  echo "RESULT dripd_cpu_ms_per_photo $(cut -d' ' -f1 "$W/cpu_dripd" | stats)"
  echo "RESULT dripd_cpu_ms_per_photo_supervisor $(cut -d' ' -f2 "$W/cpu_dripd" | stats)"
  echo "RESULT dripd_cpu_ms_per_photo_http_worker $(cut -d' ' -f3 "$W/cpu_dripd" | stats)"
  echo "RESULT dripd_cpu_ms_per_photo_pipeline_worker $(cut -d' ' -f4 "$W/cpu_dripd" | stats)"
  echo "RESULT dripd_cpu_ms_per_photo_decode_helpers $(cut -d' ' -f5 "$W/cpu_dripd" | stats)"
  echo "RESULT vipsthumbnail_cpu_ms_per_photo $(stats < "$W/cpu_vips_one")"
  echo "RESULT imagemagick_cpu_ms_per_photo $(stats < "$W/cpu_im_one")"
  awk '{print $1 / 1024}' "$W/rss" > "$W/rss_mib"
  echo "RESULT dripd_peak_rss_all_processes_MiB $(stats < "$W/rss_mib")"
  if [ -n "$ALT" ]; then
    echo "RESULT alt_dripd_photos_per_s $(stats < "$W/alt")"
    echo "RESULT ratio_alt_over_vipsthumbnail $(stats < "$W/rxv")"
    echo "RESULT ratio_alt_over_dripd $(stats < "$W/rxa")"
    echo "RESULT alt_dripd_cpu_ms_per_photo $(cut -d' ' -f1 "$W/cpu_dripd_alt" | stats)"
    echo "RESULT alt_dripd_cpu_ms_per_photo_decode_helpers $(cut -d' ' -f5 "$W/cpu_dripd_alt" | stats)"
    awk '{print $1 / 1024}' "$W/rss_alt" > "$W/rss_alt_mib"
    echo "RESULT alt_dripd_peak_rss_all_processes_MiB $(stats < "$W/rss_alt_mib")"
  fi
fi
if [ "$ONLY" != photos ]; then
  mkrand "$BIG" $GIB
  for r in $(seq 1 "$RUNS"); do
    if [ $((r % 2)) = 1 ]; then on=$(run_nonmedia true); off=$(run_nonmedia false)
    else off=$(run_nonmedia false); on=$(run_nonmedia true); fi
    log "run $r: 1 GiB random, processing on $on MB/s, off $off MB/s"
    echo "$on" >> "$W/on"; echo "$off" >> "$W/off"
    awk -v a="$on" -v b="$off" 'BEGIN{printf "%.3f\n", a/b}' >> "$W/ron"
  done
  echo "RESULT nonmedia_1GiB_processing_on_MBps $(stats < "$W/on")"
  echo "RESULT nonmedia_1GiB_processing_off_MBps $(stats < "$W/off")"
  echo "RESULT ratio_nonmedia_on_over_off $(stats < "$W/ron")"
fi

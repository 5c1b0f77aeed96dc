#!/usr/bin/env bash
# bench/download.sh: downloads (issue 15), dripd beside nginx serving the
# same plaintext from disk, in the same run, alternating (A B A B), ratios
# of medians with their spread.
#
#   cold: NCOLD (4000) files of 1 MiB; before each run the page cache is
#     dropped (echo 3 > /proc/sys/vm/drop_caches) and dripd's cache
#     emptied; wrk -t2 -c32 for COLD_S (2) s (nginx reads ~1,400 a second
#     on a quiet machine: 2,500 in 3 s wrapped), a Lua script over the
#     files' paths (anchors/get_paths.lua), each requested once: dripd
#     fills every entry from its object (fetch, decrypt and verify), nginx
#     reads the file from disk. A run that got through every file and
#     started again (wraps > 0) says so: raise NCOLD.
#   warm: the first NWARM (300) of them, read once before (dripd: from its
#     cache, nginx: in the page cache), wrk -t2 -c32 for WARM_S (10) s.
#   big: a 1 GiB GET with curl, dripd from its cache, nginx static, both
#     files in the page cache.
#
#   alt: with ALT=DIR (another checkout, built), each cold run also
#     measures DIR/bin/dripd on the same data (dripd restarted between
#     the two, alternating which goes first): a before/after comparison
#     in one run, as "alt_cold" beside "dripd_cold".
#     ALT_DCONF (optional): the ALT run's config in place of this one's
#     (with ALT=. it compares two settings of one build).
#   CACHE_MAX (8GiB: never full here) is dripd's cache.max_size; a size
#     under what a cold run fills (e.g. 256MiB) measures the cache at its
#     bound, evicting as it fills (the steady state of a long-lived node).
#
#   floor: each cold round also runs bench/fill_floor.c on NFLOOR (300)
#     sealed 1 MiB objects of its own, page cache dropped: the CPU of the
#     bare fill (pread, AES-256-GCM with every tag checked, write into a
#     new file, rename) per object, beside dripd's and nginx's CPU per GET.
#     SKIP=floor leaves it out.
#   PERF=1: perf record -g of dripd's processes during each cold run of
#     this build (PERF_OF=alt_cold: of the ALT build), $R/*.perf.N.
#
#   RUNS=3 NCOLD=4000 NWARM=300 COLD_S=2 WARM_S=10 SKIP="cold warm big floor"
# Results: bench/results/download.json and a table on stdout. The machine
# is shared: the table says how busy it was before the runs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"
NCOLD=${NCOLD:-4000}
NWARM=${NWARM:-300}
NFLOOR=${NFLOOR:-300}
COLD_S=${COLD_S:-2}
WARM_S=${WARM_S:-10}
export QUIET_WAIT=${QUIET_WAIT:-5}
MIB1=$ANCHOR/src-1m.bin
BIG=$ANCHOR/src-1g.bin
LUA=$HERE/anchors/get_paths.lua

bench_init download
mkrand "$MIB1" 1048576
skip big || mkrand "$BIG" $GIB
CACHE_MAX=${CACHE_MAX:-8GiB}
ALT=${ALT:-}
DCONF="pipeline: {queue_limit: 10000000}
cache: {max_size: $CACHE_MAX, ttl: 2h}
limits: {max_connections: 20000, max_upload_size: 4GiB, keepalive_timeout: 300s}"
[ -z "$ALT" ] || [ -x "$ALT/bin/dripd" ] || die "ALT=$ALT: no $ALT/bin/dripd (build it)"
start_dripd "$DCONF"
start_nginx
CACHE=$B/dripd/var/cache

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }
# wrk_get NAME URL PATHS SECONDS [TOKEN]: one run, its figures into $R/NAME*
# (a cold run must not get through all its paths: it would not be cold),
# with the CPU time the server's processes spent per request (ms)
wrk_get() {
  local out line pids c0
  case $1 in nginx*) pids=$(nwork) ;; *) pids=$(dpids) ;; esac
  c0=$(cpu_s $pids)
  local m0; m0=$(head -1 /proc/stat)
  local perf=''
  if [ -n "${PERF:-}" ] && [ "$1" = "${PERF_OF:-dripd_cold}" ]; then  # profile this build's cold runs
    perf record -q -F 499 -g -p "$(echo $pids | tr ' ' ,)" -o "$R/$1.perf.$(wc -l < "$R/$1" 2>/dev/null || echo 0)" \
      -- sleep "$4" > /dev/null 2>&1 &
    perf=$!
  fi
  out=$(timeout $(($4 + 60)) wrk -t 2 -c 32 -d "${4}s" --timeout 30s -s "$LUA" "$2" -- "$3" 2 "${5:-}") ||
    die "wrk $1: $out"
  [ -z "$perf" ] || wait "$perf" || true
  line=$(echo "$out" | grep '^WRK ') || die "wrk $1: $out"
  awk -v a="$c0" -v b="$(cpu_s $pids)" -v n="$(field "$line" requests)" \
      'BEGIN{printf "%.3f\n", (n > 0 ? (b - a) * 1000 / n : 0)}' >> "$R/${1}_cpu"
  busy_between "$m0" "$(head -1 /proc/stat)" >> "$R/${1}_busy"
  [ "$(field "$line" non2xx)" = 0 ] || die "$1: $(field "$line" non2xx) answers were not 2xx"
  case $1 in *cold) [ "$(field "$line" wraps)" = 0 ] || log "WARNING: $1 went through every path $(field "$line" wraps) time(s): raise NCOLD" ;; esac
  field "$line" rps >> "$R/$1"
  field "$line" p50_ms >> "$R/${1}_p50"
  field "$line" p99_ms >> "$R/${1}_p99"
}

# ---- the files: nginx's on its disk, dripd's uploaded (stored, sealed) ----
log "storing $NCOLD files of 1 MiB on both sides"
mkdir -p "$NGX_P/data/m"
: > "$B/paths-n"; : > "$B/paths-d"
for i in $(seq 1 "$NCOLD"); do
  cp "$MIB1" "$NGX_P/data/m/$i.bin"
  echo "/m/$i.bin" >> "$B/paths-n"
done
chown -R nobody:nogroup "$NGX_P/data"
mkdir -p "$B/up"
for i in $(seq 1 "$NCOLD"); do  # one curl, 8 uploads at a time
  printf 'upload-file = "%s"\nurl = "%s"\noutput = "%s"\n' "$MIB1" "$DURL/v1/files/dl/$i.bin" "$B/up/$i.json"
done > "$B/up.cfg"
curl -sS --no-progress-meter -Z --parallel-max 8 -H "$AUTH" -K "$B/up.cfg"
python3 - "$B/up" "$NCOLD" >> "$B/paths-d" <<'PY'
import json, os, sys
for i in range(1, int(sys.argv[2]) + 1):
    print("/v1/media/%s/content" % json.load(open(os.path.join(sys.argv[1], "%d.json" % i)))["media"]["id"])
PY
rm -rf "$B/up" "$B/up.cfg"
wait_queue_empty || die "the uploads did not finish"
head -n "$NWARM" "$B/paths-n" > "$B/warm-n"
head -n "$NWARM" "$B/paths-d" > "$B/warm-d"
log "dripd $(dpids)| nginx $(nwork)"
if ! skip cold && ! skip floor; then
  cc -O2 -o "$B/fill_floor" "$HERE/fill_floor.c" -lcrypto || die "cannot build bench/fill_floor.c"
  "$B/fill_floor" prepare "$B/floor" "$NFLOOR" 1048576
fi

for i in $(seq 1 "$RUNS"); do
  if ! skip cold; then
    quiet; drop_caches
    wrk_get nginx_cold "$NURL" "$B/paths-n" "$COLD_S"
    order=dripd
    [ -z "$ALT" ] || { [ $((i % 2)) = 1 ] && order="dripd alt" || order="alt dripd"; }
    for who in $order; do
      if [ -n "$ALT" ]; then  # the build under test on the same data
        stop_pid "$DRIPD" dripd
        exe=$ROOT/bin/dripd conf=$DCONF
        [ $who != alt ] || { exe=$ALT/bin/dripd; conf=${ALT_DCONF:-$DCONF}; }
        DRIPD_EXE=$exe start_dripd "$conf"
      fi
      rm -f "$CACHE"/*  # the entries (a free pool, cache/.free, is dripd's own state)
      quiet; drop_caches
      f0=$(metric dripd_cache_fills_total)
      wrk_get ${who}_cold "$DURL" "$B/paths-d" "$COLD_S" "$TOKEN"
      log "cold run $i: nginx $(tail -1 "$R/nginx_cold") req/s (p99 $(tail -1 "$R/nginx_cold_p99") ms)," \
          "$who $(tail -1 "$R/${who}_cold") req/s (p99 $(tail -1 "$R/${who}_cold_p99") ms," \
          "$(( $(metric dripd_cache_fills_total) - f0 )) fills, CPU $(tail -1 "$R/${who}_cold_cpu") ms/GET)"
    done
    if ! skip floor; then
      quiet; drop_caches
      line=$("$B/fill_floor" run "$B/floor" "$NFLOOR" 1048576) || die "fill_floor: $line"
      field "$line" cpu_ms >> "$R/floor_cpu"
      log "cold run $i: the bare fill loop $(tail -1 "$R/floor_cpu") ms CPU per 1 MiB object"
    fi
    if [ -n "$ALT" ] && [ "$order" = "dripd alt" ]; then  # the build under test serves the rest
      stop_pid "$DRIPD" dripd; start_dripd "$DCONF"
    fi
  fi
  if ! skip warm; then
    xargs -a "$B/warm-n" -I{} cat "$NGX_P/data{}" > /dev/null
    xargs -a "$B/warm-d" -P 4 -I{} curl -sS -o /dev/null -H "$AUTH" "$DURL{}"
    quiet
    wrk_get nginx_warm "$NURL" "$B/warm-n" "$WARM_S"
    quiet
    h0=$(metric dripd_cache_misses_total)
    wrk_get dripd_warm "$DURL" "$B/warm-d" "$WARM_S" "$TOKEN"
    [ "$(metric dripd_cache_misses_total)" = "$h0" ] || log "WARNING: the warm dripd run missed the cache"
    log "warm run $i: nginx $(tail -1 "$R/nginx_warm") req/s (p99 $(tail -1 "$R/nginx_warm_p99") ms)," \
        "dripd $(tail -1 "$R/dripd_warm") req/s (p99 $(tail -1 "$R/dripd_warm_p99") ms)"
  fi
done
rm -rf "$B/floor"

if ! skip big; then
  curl -sS -T "$BIG" "$NURL/big.bin" -o /dev/null
  BIGID=$(put_done "$BIG" /dl/big.bin)
  # Both files in the same page-cache state (lib.sh, drop_pages); the cat
  # below reads both back alike.
  drop_pages "$NGX_P/data/big.bin" "$CACHE/$BIGID"
  for i in $(seq 1 "$RUNS"); do
    for who in nginx dripd; do
      cat "$NGX_P/data/big.bin" "$CACHE/$BIGID" > /dev/null  # both in the page cache
      quiet
      if [ $who = nginx ]; then
        read -r code bytes secs < <(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' "$NURL/big.bin")
      else
        read -r code bytes secs < <(curl -sS -H "$AUTH" -o /dev/null -w '%{http_code} %{size_download} %{time_total}\n' \
            "$DURL/v1/media/$BIGID/content")
      fi
      [ "$code" = 200 ] && [ "$bytes" = $GIB ] || die "$who 1 GiB GET: $code $bytes"
      echo "$(mbps "$bytes" "$secs")" >> "$R/${who}_big"
    done
    log "1 GiB GET run $i: nginx $(tail -1 "$R/nginx_big") MB/s, dripd $(tail -1 "$R/dripd_big") MB/s"
  done
fi

python3 "$HERE/report.py" "$R" "$ROOT/bench/results/download.json" "$(busy_median)" <<EOF
1 MiB GET cold, 32 conns (req/s)|dripd_cold|nginx_cold|0.8
$([ -z "$ALT" ] || echo "1 MiB GET cold, ALT build (req/s)|alt_cold|nginx_cold|0.8
cold, this build / ALT build (req/s)|dripd_cold|alt_cold|
CPU per cold GET, this build / ALT build (ms)|dripd_cold_cpu|alt_cold_cpu|")
cold p50 / p99, dripd (ms)|dripd_cold_p50|dripd_cold_p99|-
cold p50 / p99, nginx (ms)|nginx_cold_p50|nginx_cold_p99|-
CPU per cold GET, all processes of the server (ms)|dripd_cold_cpu|nginx_cold_cpu|
$(skip floor || echo "CPU of the bare fill loop per 1 MiB object / nginx's per cold GET (ms)|floor_cpu|nginx_cold_cpu|")
machine CPU busy during the cold runs (%), incl. wrk|dripd_cold_busy|nginx_cold_busy|-
1 MiB GET warm, 32 conns (req/s)|dripd_warm|nginx_warm|0.95
warm p50 / p99, dripd (ms)|dripd_warm_p50|dripd_warm_p99|-
warm p50 / p99, nginx (ms)|nginx_warm_p50|nginx_warm_p99|-
CPU per warm GET, all processes of the server (ms)|dripd_warm_cpu|nginx_warm_cpu|
machine CPU busy during the warm runs (%), incl. wrk|dripd_warm_busy|nginx_warm_busy|-
1 GiB GET from the cache (MB/s)|dripd_big|nginx_big|0.95
EOF

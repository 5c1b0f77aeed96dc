#!/usr/bin/env bash
# bench/big_get.sh: the 1 GiB GET from dripd's cache (issue 15) of one or
# more builds, each GET paired with an nginx GET of the same bytes just
# before it, so a pair shares the machine's moment: this VM's loopback
# rate for one connection swings ~1.5x from one GET to the next.
#
#   BUILDS="A=dir B=dir"  directories holding a dripd (default this tree's bin)
#   RUNS=6                rounds; each restarts every build on the same
#                         data_dir and makes 2 pairs (nginx, then dripd)
#
# One upload, stored once; both files synced, dropped from the page cache
# and read back alike with cat before the first round, so neither side
# keeps dirty or half-dropped pages (lib.sh, drop_pages).
# Each GET: curl to /dev/null, MB/s and the CPU seconds of the server's
# processes. Output: per build the medians [min-max] of its rate, its CPU
# and its rate over the nginx GET just before it; nginx's own line.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
RUNS=${RUNS:-6}
. "$HERE/lib.sh"
declare -A EXE
builds_parse
BIG=$ANCHOR/src-1g.bin
bench_init big_get
mkrand "$BIG" $GIB
CONF="cache: {max_size: 8GiB, ttl: 2h}
limits: {max_connections: 20000, max_upload_size: 4GiB, keepalive_timeout: 300s}"
first=$(echo $NAMES | cut -d' ' -f1)
DRIPD_EXE=${EXE[$first]} start_dripd "$CONF"
start_nginx
curl -sS -T "$BIG" "$NURL/big.bin" -o /dev/null
ID=$(put_done "$BIG" /big_get/big.bin)
stop_pid "$DRIPD" dripd; DRIPD=''
drop_pages "$NGX_P/data/big.bin" "$B/dripd/var/cache/$ID"
cat "$NGX_P/data/big.bin" "$B/dripd/var/cache/$ID" > /dev/null

# get URL HEADER PIDS: "MB/s cpu_s" of one GET
get() {
  local c0 code bytes secs
  c0=$(cpu_s $3)
  read -r code bytes secs < <(curl -sS -H "$2" -o /dev/null \
      -w '%{http_code} %{size_download} %{time_total}\n' "$1")
  [ "$code" = 200 ] && [ "$bytes" = $GIB ] || die "GET $1: $code $bytes"
  echo "$(mbps "$bytes" "$secs") $(awk -v a="$c0" -v b="$(cpu_s $3)" 'BEGIN{printf "%.3f", b - a}')"
}
for i in $(seq 1 "$RUNS"); do
  for b in $NAMES; do
    DRIPD_EXE=${EXE[$b]} start_dripd "$CONF"
    for k in 1 2; do
      read -r n nc < <(get "$NURL/big.bin" "X-Bench: nginx" "$(nwork)")
      read -r d dc < <(get "$DURL/v1/media/$ID/content" "$AUTH" "$(dpids)")
      echo "$b $d $dc $(awk -v d="$d" -v n="$n" 'BEGIN{printf "%.3f", d / n}')" >> "$R/runs"
      echo "nginx $n $nc" >> "$R/nginx"
      log "round $i $b: nginx $n MB/s, $b $d MB/s"
    done
    stop_pid "$DRIPD" dripd; DRIPD=''
  done
done
echo "build MB_per_s cpu_s over_nginx_before"
medians_by_build "$R/runs"
NAMES=nginx medians_by_build "$R/nginx"

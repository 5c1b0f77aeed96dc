#!/usr/bin/env bash
# bench/multipart.sh: a browser-style upload (multipart/form-data, curl -F)
# of 1 GiB against the same build's PUT of the same file (curl -T), each
# until its 202 (fdatasync + job commit included), alternating, on a fresh
# data_dir per build. A form upload parses its body for the boundary, so
# the PUT is its ceiling: the ratio says what the parsing costs.
#
#   RUNS=3
#   BUILDS="A=dir B=dir"  directories holding a dripd (default this tree's
#     bin): every round runs each build (the order swapped every round, so
#     that drift falls on both), rows per build.
# Output: medians [min-max] per build on stdout, detail on stderr.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/lib.sh"
BIG=$ANCHOR/src-1g.bin
bench_init multipart
mkrand "$BIG" $GIB
declare -A EXE
builds_parse
for i in $(seq 1 "$RUNS"); do
  order=$NAMES
  [ $((i % 2)) = 1 ] || order=$(echo $NAMES | tr ' ' '\n' | tac | tr '\n' ' ')
  for b in $order; do
    rm -rf "$B/dripd"; mkdir -p "$B/dripd"
    DRIPD_EXE=${EXE[$b]} start_dripd "limits: {max_upload_size: 4GiB}"
    for how in form put; do
      sync; quiet
      if [ $how = form ]; then
        read -r code bytes secs < <(curl -sS --max-time 600 -F "file=@$BIG" -H "$AUTH" -o /dev/null \
            -w '%{http_code} %{size_upload} %{time_total}\n' "$DURL/v1/files/form$i/")
      else
        read -r code bytes secs < <(curl -sS --max-time 600 -T "$BIG" -H "$AUTH" -o /dev/null \
            -w '%{http_code} %{size_upload} %{time_total}\n' "$DURL/v1/files/put$i/big.bin")
      fi
      [ "$code" = 202 ] || die "$b $how: HTTP $code"
      mbps "$bytes" "$secs" >> "$R/$b.$how"; echo >> "$R/$b.$how"
    done
    log "run $i $b: form $(tail -1 "$R/$b.form") MB/s, PUT $(tail -1 "$R/$b.put") MB/s"
    stop_pid "$DRIPD" dripd; DRIPD=
  done
done
for b in $NAMES; do
  paste -d' ' "$R/$b.form" "$R/$b.put" | awk '{print $1 / $2}' > "$R/$b.ratio"
  echo "$b form $(stats < "$R/$b.form") | put $(stats < "$R/$b.put") | form/put $(stats < "$R/$b.ratio")"
done

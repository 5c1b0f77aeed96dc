#!/usr/bin/env bash
# bench/pipeline.sh: throughput of dripd's pipelines against this machine's
# own limits, measured in the same run.
#
#   upload    1 GiB, already accepted (202: spool fsynced, job durable) while
#             the pipeline worker was held with SIGSTOP; clock from SIGCONT
#             to the media being available (uploaded_at): claim, encrypt
#             (SHA-256 + AES-GCM + fsync), store (local store, same
#             filesystem), notify. MB/s.
#   download  the same media, cache entry removed, download job queued while
#             held: from SIGCONT to the job done (fetch from the store,
#             verify + decrypt into the cache, fsync). MB/s.
#   Before dd and before each release: sync + SETTLE_IO_S (3) seconds, so
#   each write starts on a settled disk (this VM's disk absorbs bursts and
#   then stalls, which otherwise dominates the figures).
#   jobs4k    N (default 1000) uploads of 4 KiB queued while the pipeline
#             worker is stopped (SIGSTOP), then released (SIGCONT): jobs/s
#             until the last is done, so the figure is the pipeline's rate,
#             not the HTTP front end's.
#   anchors   openssl speed -evp aes-256-gcm and sha256 (16 KiB column, one
#             core, 3 s each) and dd 1 GiB conv=fsync into the data dir's
#             filesystem (as bench/anchors/compute.sh does).
# Ratios: upload and download MB/s over min(aes, sha256, dd).
#
#   RUNS=3 bench/pipeline.sh          (default 1 run; medians over runs)
#   N4K=1000  QUIET=1 (wait for an idle machine before each run)
# Output: "RESULT name value" lines on stdout, detail on stderr.
# Everything lives under $ANCHOR/pipeline (default /tmp/anchor/pipeline) and
# is removed at the end; the daemon is stopped by pid, also on failure.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-1}
N4K=${N4K:-1000}
W=$ANCHOR/pipeline
BIG=$ANCHOR/src-1g.bin
TOKEN=bench-pipeline-token-0123
AUTH="Authorization: Bearer $TOKEN"
DRIPD=${DRIPD_BIN:-$ROOT/bin/dripd}
[ -x "$DRIPD" ] || die "build first: make"
command -v sqlite3 >/dev/null || die "needs the sqlite3 CLI"

SUP=""
cleanup() {
  [ -n "$SUP" ] && stop_pid "$SUP" dripd
  rm -rf "$W"
}
trap cleanup EXIT; trap 'exit 143' INT TERM

mkdir -p "$W"
mkrand "$BIG" $GIB
head -c 4096 /dev/urandom > "$W/4k.bin"

start_dripd() {
  rm -rf "$W/d"; mkdir -p "$W/d"
  cat > "$W/d/dripd.yaml" <<EOF
{"listen": ["127.0.0.1:0"], "data_dir": "$W/d/var",
 "users": [{"name": "bench", "token": "$TOKEN", "admin": true}],
 "pipeline": {"queue_limit": 100000},
 "cache": {"max_size": "4GiB"},
 "limits": {"max_upload_size": "2GiB"},
 "supervisor": {"heartbeat_timeout": "600s"},
 "log": {"level": "info"}}
EOF
  "$DRIPD" -c "$W/d/dripd.yaml" > "$W/d/dripd.log" 2>&1 &
  SUP=$!
  local i
  for i in $(seq 1 200); do [ -s "$W/d/var/run/listen" ] && break; sleep 0.05; done
  ADDR=$(head -1 "$W/d/var/run/listen")
  URL=http://$ADDR
  for i in $(seq 1 200); do curl -sf -o /dev/null "$URL/readyz" && break; sleep 0.05; done
}
stop_dripd() { stop_pid "$SUP" dripd; SUP=""; }
sql() { sqlite3 -readonly "$W/d/var/catalog.db" "$1"; }
pipeline_pid() { pgrep -P "$SUP" -x dripd-pipeline; }
now_ms() { date +%s%3N; }

# wait_sql SQL: until the query prints 1 (up to 10 minutes)
wait_sql() {
  local i
  for i in $(seq 1 60000); do
    [ "$(sql "$1" 2>/dev/null || echo 0)" = 1 ] && return 0
    sleep 0.01
  done
  die "timed out waiting for: $1"
}

speed() {  # MB/s at 16 KiB blocks, one core (as compute.sh)
  openssl speed -evp "$1" -seconds 3 2>/dev/null |
    awk 'END { v = $NF; sub(/k$/, "", v); printf "%.1f\n", v * 1000 / 1e6 }'
}

for run in $(seq 1 "$RUNS"); do
  [ "${QUIET:-0}" = 1 ] && quiet
  # ---- anchors ----
  aes=$(speed aes-256-gcm); sha=$(speed sha256)
  sync; sleep "${SETTLE_IO_S:-3}"
  dd_out=$(dd if=/dev/zero of="$W/dd.bin" bs=1M count=1024 conv=fsync 2>&1 | tail -1)
  rm -f "$W/dd.bin"
  dd=$(echo "$dd_out" | awk '{for (i = 1; i <= NF; i++) if ($i == "copied,") printf "%.1f\n", $1/$(i+1)/1e6}')
  anchor=$(printf '%s\n%s\n%s\n' "$aes" "$sha" "$dd" | sort -g | head -1)
  log "run $run anchors: aes-256-gcm $aes MB/s, sha256 $sha MB/s, dd+fsync $dd MB/s -> min $anchor"
  echo "$aes" >> "$W/aes"; echo "$sha" >> "$W/sha"; echo "$dd" >> "$W/dd"; echo "$anchor" >> "$W/anchor"

  start_dripd
  # ---- upload 1 GiB ----
  # The PUT itself writes and fsyncs 1 GiB of spool; so that the pipeline is
  # not measured against the tail of that write (this VM's disk absorbs
  # bursts and then stalls), the pipeline worker is held (SIGSTOP) during
  # the PUT, the disk settles like before dd, and the clock starts at
  # SIGCONT: accepted (202, durable) -> available.
  pp=$(pipeline_pid)
  kill -STOP "$pp"
  out=$(curl -sS -H "$AUTH" -T "$BIG" "$URL/v1/files/bench/big-$run.bin")
  mid=$(echo "$out" | sed -n 's/.*"media":{"id":"\([0-9A-Z]*\)".*/\1/p')
  [ -n "$mid" ] || die "upload failed: $out"
  sync; sleep "${SETTLE_IO_S:-3}"
  t0=$(now_ms)
  kill -CONT "$pp"
  wait_sql "SELECT state = 'available' FROM media WHERE id = '$mid'"
  up_ms=$(( $(sql "SELECT uploaded_at FROM media WHERE id = '$mid'") - t0 ))
  up=$(awk -v b=$GIB -v ms="$up_ms" 'BEGIN { printf "%.1f", b / (ms / 1000) / 1e6 }')
  log "run $run upload: 1 GiB accepted -> available in $up_ms ms = $up MB/s"
  echo "$up" >> "$W/up"

  # ---- download 1 GiB (stored -> cached) ----
  rm -f "$W/d/var/cache/$mid"
  kill -STOP "$pp"
  curl -sS -o /dev/null -H "$AUTH" -X POST "$URL/v1/media/$mid/download"
  jid=$(sql "SELECT id FROM jobs WHERE media_id = '$mid' AND kind = 'download' ORDER BY created_at DESC LIMIT 1")
  [ -n "$jid" ] || die "no download job"
  sync; sleep "${SETTLE_IO_S:-3}"
  t0=$(now_ms)
  kill -CONT "$pp"
  wait_sql "SELECT state IN ('done', 'failed') FROM jobs WHERE id = '$jid'"
  [ "$(sql "SELECT state FROM jobs WHERE id = '$jid'")" = done ] || die "download job failed"
  dl_ms=$(( $(sql "SELECT updated_at FROM jobs WHERE id = '$jid'") - t0 ))
  dl=$(awk -v b=$GIB -v ms="$dl_ms" 'BEGIN { printf "%.1f", b / (ms / 1000) / 1e6 }')
  cmp -s "$BIG" "$W/d/var/cache/$mid" || die "cached plaintext differs from the upload"
  log "run $run download: 1 GiB stored -> cached in $dl_ms ms = $dl MB/s"
  echo "$dl" >> "$W/dl"

  # ---- 4 KiB jobs ----
  pp=$(pipeline_pid)
  kill -STOP "$pp"
  seq 1 "$N4K" | xargs -P 8 -I{} curl -sS -o /dev/null -H "$AUTH" -T "$W/4k.bin" "$URL/v1/files/small/{}.bin"
  queued=$(sql "SELECT count(*) FROM jobs WHERE kind = 'upload' AND state = 'queued'")
  [ "$queued" = "$N4K" ] || die "expected $N4K queued jobs, found $queued"
  t0=$(now_ms)
  kill -CONT "$pp"
  wait_sql "SELECT count(*) = $N4K FROM jobs WHERE kind = 'upload' AND state = 'done' AND media_id IN (SELECT id FROM media WHERE folder = '/small')"
  t1=$(sql "SELECT max(updated_at) FROM jobs WHERE kind = 'upload' AND media_id IN (SELECT id FROM media WHERE folder = '/small')")
  rate=$(awk -v n="$N4K" -v ms=$((t1 - t0)) 'BEGIN { printf "%.1f", n / (ms / 1000) }')
  log "run $run 4 KiB jobs: $N4K in $((t1 - t0)) ms = $rate jobs/s"
  echo "$rate" >> "$W/rate"
  stop_dripd
done

med() { stats < "$1" | sed 's/.*median=\([^ ]*\).*/\1/'; }
echo "RESULT openssl_aes256gcm_16k_MBps $(stats < "$W/aes")"
echo "RESULT openssl_sha256_16k_MBps $(stats < "$W/sha")"
echo "RESULT dd_1GiB_fsync_MBps $(stats < "$W/dd")"
echo "RESULT anchor_min_MBps $(stats < "$W/anchor")"
echo "RESULT upload_1GiB_accepted_to_available_MBps $(stats < "$W/up")"
echo "RESULT download_1GiB_stored_to_cached_MBps $(stats < "$W/dl")"
echo "RESULT jobs_4KiB_per_s $(stats < "$W/rate")"
# ratios of per-run values (each run's pipeline over that run's anchor)
paste "$W/up" "$W/anchor" | awk '{print $1 / $2}' > "$W/rup"
paste "$W/dl" "$W/anchor" | awk '{print $1 / $2}' > "$W/rdl"
echo "RESULT ratio_upload_over_anchor_min $(stats < "$W/rup")"
echo "RESULT ratio_download_over_anchor_min $(stats < "$W/rdl")"
log "upload $(med "$W/up") MB/s = $(med "$W/rup") x min(aes, sha256, dd) ($(med "$W/anchor") MB/s)"

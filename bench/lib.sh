# bench/lib.sh: what the benchmark scripts of bench/ share (run.sh, small.sh,
# download.sh): the servers (dripd, nginx WebDAV, @tus/server, a discarding
# tus sink) on fixed loopback ports, their cleanup, dripd's metrics and jobs,
# and the report table (report.py: ratios of medians with their spread). Source it after setting HERE and ROOT:
#   . "$HERE/lib.sh"; bench_init NAME; start_dripd 'cache: {max_size: 8GiB}'
# Everything lives under $B=$ANCHOR/bench-NAME (anchors/lib.sh: ANCHOR).
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-3}
SKIP=${SKIP:-}
DPORT=18090
DURL=http://127.0.0.1:$DPORT
NURL=http://127.0.0.1:18080
TURL=http://127.0.0.1:18081/files/
SURL=http://127.0.0.1:18082/files/
TOKEN=bench-token-0123456789
AUTH="Authorization: Bearer $TOKEN"
DRIPD='' NGX='' TUS='' SINK=''

skip() { case " $SKIP " in *" $1 "*) return 0 ;; esac; return 1; }
now() { date +%s.%N; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN{printf "%.1f", b/t/1e6}'; }
# field LINE KEY: the number after KEY= in a "WRK k=v ..." line
field() { echo "$1" | sed "s/\(^\|.* \)$2=\([0-9.]*\).*/\2/"; }
jget() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"; }
# metric NAME: the first sample of a dripd metric (NAME may carry labels)
metric() { curl -sS "$DURL/metrics" | awk -v k="$1" 'index($1, k) == 1 && !v {v = $2} END {print v}'; }
dpids() { echo "$DRIPD $(pgrep -P "$DRIPD" | tr '\n' ' ')"; }
nwork() { echo "$NGX $(pgrep -P "$NGX" | tr '\n' ' ')"; }
sum_hwm_mib() { local p s=0; for p in "$@"; do s=$((s + $(hwm_kib "$p"))); done; awk -v k=$s 'BEGIN{printf "%.1f", k/1024}'; }

# The waits below run in one long-lived bench/watch.py each (the system's
# python when there is one: a pyenv shim costs ~0.5 s of CPU per start).
# A poll loop of curl, awk and sleep here forked ~60 processes a second and
# took CPU from the dripd it was timing.
PY=python3; [ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# wait_job ID: until done or failed (600 s); prints the state or "timeout"
wait_job() { "$PY" "$HERE/watch.py" job "$DURL/v1/jobs/$1" "$TOKEN" 600 || true; }

# put_done FILE PATH: PUT FILE to dripd as PATH (/v1/files PATH), wait for
# its job to be done, print the media id
put_done() {
  local out
  out=$(curl -sS -T "$1" -H "$AUTH" "$DURL/v1/files$2")
  [ "$(wait_job "$(echo "$out" | jget 'd["job"]["id"]')")" = done ] || die "upload of $2: $out"
  echo "$out" | jget 'd["media"]["id"]'
}
# drop_pages FILE...: sync, then drop each file's pages from the page cache,
# so files written differently (nginx's kept dirty pages, dripd's spool
# inode had them written back and dropped behind the upload) are read back
# alike afterwards (session 14: 0.74x -> 0.88x of the 1 GiB GET was this)
drop_pages() {
  sync
  "$PY" -c 'import os, sys
for p in sys.argv[1:]:
    fd = os.open(p, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$@"
}

# wait_queue_empty [TIMEOUT_S]: until dripd's durable job queue is empty
# (1800 s); 1 on timeout
wait_queue_empty() { "$PY" "$HERE/watch.py" zero "$DURL/metrics" dripd_jobs_queue_depth "${1:-1800}"; }

# bench_init NAME: root, a build, free ports, a fresh $B with $R (results)
# and $NGX_P (nginx prefix); the exit trap stops what start_* started.
bench_init() {
  B=$ANCHOR/bench${1:+-$1}
  R=$B/results
  NGX_P=$B/nginx
  [ "$(id -u)" = 0 ] || die "run as root (drop_caches, nginx workers, clear_refs of other users' processes)"
  [ -x "$ROOT/bin/dripd" ] || die "build first: make"
  local p
  for p in 18080 18081 18082 $DPORT; do port_free $p || die "127.0.0.1:$p is in use"; done
  rm -rf "$B"; mkdir -p "$R" "$NGX_P"/{logs,data,tmp} "$B/tus/files" "$B/dripd"
  chown nobody:nogroup "$NGX_P/data"
  rm -f "$ANCHOR/busy.log"
  trap bench_cleanup EXIT; trap 'exit 143' INT TERM
}

bench_cleanup() {
  [ -z "$SINK" ] || stop_pid "$SINK" sink
  [ -z "$TUS" ] || stop_pid "$TUS" tus
  [ -z "$NGX" ] || stop_pid "$NGX" nginx
  [ -z "$DRIPD" ] || stop_pid "$DRIPD" dripd
  rm -rf "$B/dripd" "$NGX_P/data" "$B/tus/files"  # GiBs; the results stay
}

# start_dripd [YAML LINES]: dripd on $DPORT with a bench user and the
# extra top-level config lines given ($DRIPD_EXE, else $ROOT/bin/dripd;
# data_dir $DRIPD_DATA, else $B/dripd/var)
start_dripd() {
  cat > "$B/dripd.yaml" <<EOF
listen: ["127.0.0.1:$DPORT"]
data_dir: ${DRIPD_DATA:-$B/dripd/var}
users: [{name: bench, token: "$TOKEN", admin: true}]
log: {level: warn}
${1:-}
EOF
  "${DRIPD_EXE:-$ROOT/bin/dripd}" -c "$B/dripd.yaml" >> "$B/dripd.log" 2>&1 &
  DRIPD=$!
  wait_http "$DURL/healthz" || die "dripd did not start: $(tail -5 "$B/dripd.log")"
}

start_nginx() {
  nginx -p "$NGX_P/" -c "$HERE/anchors/nginx.conf" -e "$NGX_P/logs/error.log" &
  NGX=$!
  wait_http "$NURL/" || die "nginx did not start"
}

# start_tus: @tus/server + FileStore on 18081, the discarding sink on 18082
start_tus() {
  sh "$ROOT/scripts/node-deps.sh" >/dev/null
  ln -sfn ../../tests/node/node_modules "$HERE/node/node_modules" # relative: the link is committed
  node "$HERE/node/tus_server.mjs" "$B/tus/files" > "$B/tus/server.log" 2>&1 &
  TUS=$!
  python3 "$HERE/node/tus_sink.py" 18082 > "$B/tus/sink.log" 2>&1 &
  SINK=$!
  wait_http "$TURL" || die "tus server did not start"
  local i
  for i in $(seq 1 100); do grep -q "tus sink" "$B/tus/sink.log" && break; sleep 0.05; done
}

# busy_median: the median busy % quiet() logged before the runs
busy_median() {
  sort -n "$ANCHOR/busy.log" 2>/dev/null | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "NA"}'
}

# builds_parse: NAMES (" A B") and EXE[name] (its dripd) from
# BUILDS="A=dir B=dir" (directories holding a dripd), default this tree's
# bin as A. declare -A EXE first.
builds_parse() {
  local nb
  NAMES=''
  for nb in ${BUILDS:-A=$ROOT/bin}; do
    NAMES="$NAMES ${nb%%=*}"; EXE[${nb%%=*}]=${nb#*=}/dripd
    [ -x "${EXE[${nb%%=*}]}" ] || die "no dripd in ${nb#*=}"
  done
}
# role_pid NAME: the pid of $DRIPD's worker of that name (dripd-http, ...)
role_pid() { local p; for p in $(pgrep -P "$DRIPD"); do [ "$(cat /proc/$p/comm)" = "$1" ] && echo "$p"; done; return 0; }
# ticks PID: its utime + stime, in clock ticks (HZ a second)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# disk_stat DIR: the block device holding DIR (the whole disk, not the
# partition), its /sys/block/<dev>/stat: "writes completed, ms writing,
# flushes completed, ms flushing" (Documentation/block/stat.rst; flushes
# are fields 16-17, kernel 5.5+; "0 0" where the kernel has none), the
# whole device's (other users' I/O included).
disk_stat() {
  local src name
  src=$(df --output=source "$1" | tail -1); name=$(basename "$src")
  [ ! -e "/sys/class/block/$name/partition" ] || name=$(basename "$(readlink -f "/sys/class/block/$name/..")")
  awk '{print $5, $8, (NF >= 17 ? $16 : 0), (NF >= 17 ? $17 : 0)}' "/sys/block/$name/stat" 2>/dev/null || echo "0 0 0 0"
}
HZ=$(getconf CLK_TCK)
# medians_by_build FILE: for each build of NAMES, the median [min-max] of
# each column of FILE's rows "BUILD v1 v2 ..." ("NA" stays NA)
medians_by_build() {
  local b
  for b in $NAMES; do
    awk -v b="$b" '$1 == b' "$1" | python3 -c '
import sys, statistics as st
rows = [l.split() for l in sys.stdin]
cols = list(zip(*rows))
def f(v):
    if "NA" in v: return "NA"
    v = sorted(map(float, v)); return "%g [%g-%g]" % (st.median(v), v[0], v[-1])
print(rows[0][0], " | ".join(f(c) for c in cols[1:]))'
  done
}

# Copied from the shared anchors (anchors/lib.sh) so that bench/ runs on its own.
# Shared helpers for the anchor benchmarks. Source it: . "$(dirname "$0")/lib.sh"
ANCHOR=${ANCHOR:-/tmp/anchor}     # all large/temporary data lives here
GIB=1073741824

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# stats: numbers on stdin (one per line) -> "min=.. median=.. max=.. n=.."
stats() {
  sort -g | awk '{a[NR]=$1} END {
    if (NR == 0) { print "min=NA median=NA max=NA n=0"; exit }
    m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2
    printf "min=%.2f median=%.2f max=%.2f n=%d\n", a[1], m, a[NR], NR }'
}

# mkrand FILE BYTES: random file, reused if it already has the right size
mkrand() {
  if [ "$(stat -c %s "$1" 2>/dev/null || echo 0)" != "$2" ]; then
    log "creating $1 ($2 bytes of /dev/urandom)"
    head -c "$2" /dev/urandom > "$1"
  fi
}

# wait_http URL: up to 10 s for a server to answer (any HTTP status)
wait_http() {
  local i
  for i in $(seq 1 100); do
    curl -s -o /dev/null --max-time 1 -X OPTIONS "$1" && return 0
    sleep 0.1
  done
  return 1
}

# Peak RSS: writing 5 to /proc/PID/clear_refs resets VmHWM to the current RSS
# (Linux >= 4.0), so VmHWM read afterwards is the peak during the measured window.
hwm_reset() { local p; for p in "$@"; do echo 5 > "/proc/$p/clear_refs"; done; }
hwm_kib()   { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kib()   { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# alive PID: process exists and is not a zombie (an exited child not yet reaped)
alive() { local st; st=$(sed 's/.*) //; s/ .*//' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]; }

# stop_pid PID [NAME]: SIGTERM one process we started, wait up to 10 s, then SIGKILL
stop_pid() {
  local pid=$1 i
  alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then log "pid $pid ${2:-} did not exit, SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  wait "$pid" 2>/dev/null || true
}

# cpu_s PID...: user+system CPU seconds used so far by these processes (fields 14+15
# of /proc/PID/stat; the comm field is skipped first because it may contain spaces)
cpu_s() {
  local p
  for p in "$@"; do sed 's/.*) //' "/proc/$p/stat"; done |
    awk -v hz="$(getconf CLK_TCK)" '{s += $12 + $13} END {printf "%.2f", s/hz}'
}

# timed_sync: run sync, print how many seconds it took (time to flush dirty data)
timed_sync() {
  local t0; t0=$(date +%s.%N); sync
  awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'
}

# settle: flush dirty data, then wait SETTLE_S (default 65) seconds. Why: / here is ext4
# without a journal, where the inode allocator skips inodes deleted in the last 60 s
# (360 s while their inode-table block is still dirty), scanning past them one by one
# (ext4 recently_deleted()). Right after a bulk delete (e.g. the previous run's cleanup)
# small-file creation rates drop up to ~8x. Call before any small-file measurement.
settle() {
  sync
  log "settle: waiting ${SETTLE_S:-65}s so recently deleted inodes do not slow file creation"
  sleep "${SETTLE_S:-65}"
}

# busy_between "LINE1" "LINE2": % of all CPUs busy (not idle/iowait) between two
# readings of /proc/stat's first line (head -1 /proc/stat)
busy_between() {
  echo "$1 $2" | awk '{ for (i = 2; i <= 9; i++) { t1 += $i; t2 += $(i+11) }
    d = t2 - t1; if (d <= 0) { print 0; exit }
    printf "%.0f\n", 100 * (1 - (($16 + $17) - ($5 + $6)) / d) }'
}

# busy_pct [SECONDS]: % of all CPUs busy over a short window
busy_pct() {
  local a; a=$(head -1 /proc/stat); sleep "${1:-1}"
  busy_between "$a" "$(head -1 /proc/stat)"
}

# quiet: before a measured run, wait (at most QUIET_WAIT s, default 120) until other load
# on the machine is at most QUIET_PCT % (default 10) of both cores; never fails, but logs
# the busy % seen to $ANCHOR/busy.log so the scripts can report it with the figures.
quiet() {
  local b i
  for i in $(seq 1 "${QUIET_WAIT:-120}"); do
    b=$(busy_pct 1)
    [ "$b" -le "${QUIET_PCT:-10}" ] && break
    [ $((i % 10)) = 1 ] && log "machine busy (${b}% of CPUs), waiting for it to go quiet"
  done
  [ "$b" -le "${QUIET_PCT:-10}" ] || log "WARNING: measuring on a busy machine (${b}% of CPUs)"
  echo "$b" >> "$ANCHOR/busy.log"
}

# port_free PORT: nothing listens on 127.0.0.1:PORT (so we never measure someone else's server)
port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

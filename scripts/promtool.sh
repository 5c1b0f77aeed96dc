#!/bin/sh
# Make promtool available to the metrics test (issue 6: "check it with
# promtool check metrics"). Debian ships promtool only inside the
# `prometheus` package, whose install would also enable and start a
# Prometheus server. So unless promtool is already on PATH, this extracts
# just usr/bin/promtool from Debian's .deb into tests/tools/ (git-ignored).
# Prints the path on success; exits 1 (saying why) when it cannot.
set -eu
cd "$(dirname "$0")/.."
if command -v promtool >/dev/null 2>&1; then command -v promtool; exit 0; fi
out=tests/tools/promtool
if [ -x "$out" ]; then echo "$PWD/$out"; exit 0; fi
command -v apt-get >/dev/null 2>&1 || { echo "promtool: no apt-get here" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# apt-get download needs the package lists; refresh them once if it fails.
if ! (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
  [ "$(id -u)" = 0 ] && apt-get update -q >/dev/null 2>&1 || true
  (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1) ||
    { echo "promtool: cannot download Debian's prometheus package" >&2; exit 1; }
fi
dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | (cd "$tmp" && tar -x ./usr/bin/promtool)
mkdir -p tests/tools
mv "$tmp/usr/bin/promtool" "$out"
"$out" --version >/dev/null
echo "$PWD/$out"

#!/bin/sh
# Make promtool (default) or the Prometheus server binary available to the
# tests: `sh scripts/promtool.sh [promtool|prometheus]`. The metrics test
# checks /metrics with `promtool check metrics` (issue 6); the rules test
# runs `promtool check/test rules` and the Prometheus server itself on a
# loopback port (issue 20). Debian ships both only inside the `prometheus`
# package, whose install would also enable and start a Prometheus server.
# So unless the tool is already on PATH, this extracts just usr/bin/<tool>
# from Debian's .deb into tests/tools/ (git-ignored).
# Prints the path on success; exits 1 (saying why) when it cannot.
set -eu
cd "$(dirname "$0")/.."
tool=${1:-promtool}
case "$tool" in promtool | prometheus) ;; *) echo "promtool.sh: unknown tool $tool" >&2; exit 1 ;; esac
if command -v "$tool" >/dev/null 2>&1; then command -v "$tool"; exit 0; fi
out=tests/tools/$tool
if [ -x "$out" ]; then echo "$PWD/$out"; exit 0; fi
command -v apt-get >/dev/null 2>&1 || { echo "$tool: no apt-get here" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# apt-get download needs the package lists; refresh them once if it fails.
if ! (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
  [ "$(id -u)" = 0 ] && apt-get update -q >/dev/null 2>&1 || true
  (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1) ||
    { echo "$tool: cannot download Debian's prometheus package" >&2; exit 1; }
fi
dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | (cd "$tmp" && tar -x ./usr/bin/"$tool")
mkdir -p tests/tools
mv "$tmp/usr/bin/$tool" "$out"
"$out" --version >/dev/null
echo "$PWD/$out"

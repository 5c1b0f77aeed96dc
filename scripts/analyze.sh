#!/bin/sh
# Clang static analysis (scan-build, the clang-analyzer-* checkers) over a
# fresh build of every program: dripd, dripctl, dripd-decode and the
# library. Any finding fails (--status-bugs); the HTML report stays in
# build-scan/report/. Needs clang-tools (scripts/deps.sh).
#   sh scripts/analyze.sh        (or: make analyze)
set -eu
cd "$(dirname "$0")/.."
SCAN=${SCAN_BUILD:-scan-build}
command -v "$SCAN" >/dev/null 2>&1 || { echo "analyze: $SCAN not found (make deps)" >&2; exit 1; }
rm -rf build-scan
mkdir -p build-scan/bin
# objects and programs of the analysed build stay apart from the real ones
exec "$SCAN" -o build-scan/report --status-bugs --use-cc="${CC:-cc}" \
  make -j"${JOBS:-2}" BUILD=build-scan BIN_DRIPD=build-scan/bin/dripd \
  BIN_CTL=build-scan/bin/dripctl BIN_DECODE=build-scan/bin/dripd-decode all

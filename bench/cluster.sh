#!/bin/sh
# bench/cluster.sh: uploads through nginx round robin to 1, 2 and 3 dripd
# nodes on one PostgreSQL catalog and one s3rver bucket, and to a single
# SQLite node, alternating, on this machine (bench/cluster.py says what is
# measured). Figures and their reading: docs/CLUSTER.md, "Sizing".
#
#   ROUNDS=3 N=300 SIZE=65536 CLIENTS=16 CONFIGS=sqlite,pg1,pg2,pg3 sh bench/cluster.sh
#
# Output: progress on stderr, one "RESULT config ..." line per configuration
# on stdout (medians over ROUNDS, min..max in parentheses).
set -eu
cd "$(dirname "$0")/.."
[ -x bin/dripd ] || { echo "bench/cluster.sh: build first (make)" >&2; exit 1; }
sh scripts/node-deps.sh >/dev/null
DRIPD_BIN=${DRIPD_BIN:-$(pwd)/bin/dripd} exec /usr/bin/python3 bench/cluster.py

#!/bin/sh
# Install the pinned npm test tools (tests/node/package-lock.json) once, and
# again whenever the lock file changes. A stamp written after a complete
# `npm ci` marks success, so an interrupted install is redone.
set -eu
cd "$(dirname "$0")/../tests/node"
[ -f package.json ] || exit 0
stamp=node_modules/.dripd-installed
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch "$stamp"
fi

#!/bin/sh
# Install the pinned npm test tools (tests/node/package-lock.json) once.
set -eu
cd "$(dirname "$0")/../tests/node"
[ -f package.json ] || exit 0
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules ]; then
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules
fi

#!/bin/sh
# Fails when a C file differs from what clang-format (.clang-format) makes of it.
set -u
cd "$(dirname "$0")/.."
bad=0
for f in $(git ls-files 'src/*/*.c' 'src/*/*.h' 'include/dripd/*.h' 'tests/*.c' 'fuzz/*.c'); do
  if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
    echo "format: $f"; bad=$((bad + 1))
  fi
done
echo "format-check: $bad file(s) need clang-format"
[ "$bad" = 0 ]

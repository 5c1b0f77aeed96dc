#!/bin/sh
# Build every libFuzzer target fuzz/fuzz_*.c into build/fuzz/<name>.
#
# Each target links against all of src/*.c except the program entry point
# (src/main.c), compiled once with the same sanitizers, plus the libraries
# the Makefile's PKGS line names and -lhttp_parser. Needs clang.
#   CC=clang-17 sh scripts/build-fuzz.sh       # another clang
#   FUZZ_CFLAGS="-O2" sh scripts/build-fuzz.sh # override optimisation
set -eu
cd "$(dirname "$0")/.."

CC=${FUZZ_CC:-clang}
OUT=build/fuzz
OBJ=$OUT/obj
SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=c11 -D_GNU_SOURCE -Iinclude -g -O1 -fno-omit-frame-pointer -pthread ${FUZZ_CFLAGS:-}"

command -v "$CC" >/dev/null 2>&1 || { echo "build-fuzz: $CC not found" >&2; exit 1; }
PKGS=$(sed -n 's/^PKGS[[:space:]]*:=[[:space:]]*//p' Makefile)
[ -n "$PKGS" ] || { echo "build-fuzz: no PKGS line in Makefile" >&2; exit 1; }
PKG_CFLAGS=$(pkg-config --cflags $PKGS)
PKG_LIBS="$(pkg-config --libs $PKGS) -lhttp_parser -pthread -lm"

mkdir -p "$OBJ"
objs=""
for src in src/*.c; do
  [ "$src" = src/main.c ] && continue
  o=$OBJ/$(basename "$src" .c).o
  # Rebuild when the source or any header is newer than the object.
  if [ ! -f "$o" ] || [ "$src" -nt "$o" ] || [ -n "$(find include -newer "$o" -name '*.h' | head -1)" ]; then
    echo "  CC      $src"
    # fuzzer-no-link: instrument without pulling in libFuzzer's main().
    $CC $CFLAGS $PKG_CFLAGS -fsanitize=fuzzer-no-link,address,undefined \
        -fno-sanitize-recover=undefined -c "$src" -o "$o"
  fi
  objs="$objs $o"
done

n=0
for f in fuzz/fuzz_*.c; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .c)
  echo "  FUZZ    $OUT/$name"
  $CC $CFLAGS $PKG_CFLAGS $SAN "$f" $objs -o "$OUT/$name" $PKG_LIBS
  n=$((n + 1))
done
echo "build-fuzz: $n target(s) in $OUT/"

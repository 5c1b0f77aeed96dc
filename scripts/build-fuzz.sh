#!/bin/sh
# Build every libFuzzer target fuzz/fuzz_*.c into build/fuzz/<name>.
#
# Each target links against all of src/*/*.c except dripctl and the program
# entry point (src/supervisor/main.c), compiled once with the same sanitizers into
# build/fuzz/libdripd-fuzz.a, plus the libraries the Makefile's PKGS line
# names and -lhttp_parser. Objects are rebuilt when their source or any
# header changed. Needs clang.
#   FUZZ_CC=clang-17 sh scripts/build-fuzz.sh  # another clang
#   FUZZ_CFLAGS="-O2" sh scripts/build-fuzz.sh # override optimisation
#   JOBS=1 sh scripts/build-fuzz.sh            # one compiler at a time (default: one per core)
# The flag variables below are word-split on purpose.
# shellcheck disable=SC2086
set -eu
cd "$(dirname "$0")/.."

CC=${FUZZ_CC:-clang}
OUT=build/fuzz
OBJ=$OUT/obj
SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
VERSION=$(cat VERSION 2>/dev/null || echo 0.1.0)
CFLAGS="-std=c11 -D_GNU_SOURCE -Iinclude -Isrc -g -O1 -fno-omit-frame-pointer -pthread ${FUZZ_CFLAGS:-}"

command -v "$CC" >/dev/null 2>&1 || { echo "build-fuzz: $CC not found" >&2; exit 1; }
PKGS=$(sed -n 's/^PKGS[[:space:]]*:=[[:space:]]*//p' Makefile)
[ -n "$PKGS" ] || { echo "build-fuzz: no PKGS line in Makefile" >&2; exit 1; }
PKG_CFLAGS=$(pkg-config --cflags $PKGS)
PKG_LIBS="$(pkg-config --libs $PKGS) -lhttp_parser -pthread -lm"
# src/decode/decoder.c and its target also need the decoders' libraries
DECODE_PKGS=$(sed -n 's/^DECODE_PKGS[[:space:]]*:=[[:space:]]*//p' Makefile)
DECODE_CFLAGS="$(pkg-config --cflags $DECODE_PKGS gmodule-2.0 | sed 's/-I/-isystem /g') -DDRIPD_VIPS_LIBDIR=\"$(pkg-config --variable=libdir vips)\""
DECODE_LIBS="$(pkg-config --libs $DECODE_PKGS gmodule-2.0)"

# One object: the loop below runs `build-fuzz.sh --cc SRC OBJ` JOBS at a
# time (default: one per core).
if [ "${1:-}" = --cc ]; then
  src=$2; o=$3; extra=""
  case "$src" in src/decode/decoder.c|src/decode/sandbox.c) extra=$DECODE_CFLAGS ;; esac
  echo "  CC      $src"
  rm -f "$o"
  # fuzzer-no-link: instrument without pulling in libFuzzer's main().
  exec $CC $CFLAGS "-DDRIPD_VERSION=\"$VERSION\"" $PKG_CFLAGS $extra \
    -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -c "$src" -o "$o"
fi

mkdir -p "$OBJ"
objs=""
bad=""
todo=""
for src in src/*/*.c; do
  case "$src" in src/supervisor/main.c|src/dripctl/*|src/decode/decode_main.c) continue ;; esac
  o=$OBJ/$(echo "${src#src/}" | tr / _ | sed 's/\.c$//').o
  # Rebuild when the source or any header is newer than the object.
  if [ ! -f "$o" ] || [ -n "$(find "$src" include src -newer "$o" -name '*.h' | head -1)" ] || [ "$src" -nt "$o" ]; then
    todo="$todo $src $o"
  fi
  objs="$objs $o"
done
if [ -n "$todo" ]; then
  printf '%s %s\n' $todo | xargs -P "${JOBS:-$(nproc)}" -n 2 sh scripts/build-fuzz.sh --cc || true
fi
# a failed compile leaves no object (--cc removes it first)
set -- $objs; objs=""
for o in "$@"; do
  if [ -f "$o" ]; then objs="$objs $o"; else bad="$bad $o"; fi
done
# An archive, as the Makefile's libdripd.a: a target pulls in only the
# modules it uses, so unrelated unfinished modules cannot break its link.
LIB=$OUT/libdripd-fuzz.a
rm -f "$LIB"
ar rcs "$LIB" $objs

n=0
for f in fuzz/fuzz_*.c; do
  [ -e "$f" ] || continue
  name=$(basename "$f" .c)
  echo "  FUZZ    $OUT/$name"
  rm -f "$OUT/$name"   # never leave a stale binary for fuzz-smoke to run
  libs=$PKG_LIBS
  [ "$name" = fuzz_decoder ] && libs="$DECODE_LIBS $PKG_LIBS"
  if $CC $CFLAGS "-DDRIPD_VERSION=\"$VERSION\"" $PKG_CFLAGS $SAN "$f" "$LIB" \
      -o "$OUT/$name" $libs; then
    n=$((n + 1))
  else
    bad="$bad $f"
  fi
done
echo "build-fuzz: $n target(s) in $OUT/"
if [ -n "$bad" ]; then
  echo "build-fuzz: failed:$bad" >&2
  exit 1
fi

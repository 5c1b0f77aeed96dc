#!/bin/sh
# Keep src/ layered (docs/ARCHITECTURE.md, "Source map"). Run by every build.
#
# Each folder of src/ is a process or a layer. A file may include:
#   - a header of its own folder, by its bare name ("spool.h");
#   - a header of include/dripd/ ("dripd/catalog.h") whose module lives in
#     a folder it may use, per the table below.
# Anything else (a path into another folder, "../x.h") fails the build, so
# http never includes pipeline code and pipeline never includes http or api
# code. A header in include/dripd/ that only one folder uses belongs in
# that folder, and fails the check too (tests and fuzz targets do not
# count: they may include any folder's headers as "folder/x.h").
set -eu
cd "$(dirname "$0")/.."

# folder: the folders it may use (itself implied)
allowed() {
  case "$1" in
    core) echo "" ;;
    catalog | store) echo "core" ;;
    decode) echo "core" ;; # the dripd-decode helper and its client (decode.h)
    http) echo "core catalog" ;; # each loop and pool thread owns a catalog handle
    pipeline) echo "core catalog store decode" ;; # decode: spawning dripd-decode helpers
    api) echo "core catalog store http decode" ;; # decode: decode_probe picks an upload's first stage
    supervisor) echo "core catalog store http api pipeline" ;;
    dripctl) echo "core" ;;
    *) echo "?" ;;
  esac
}

# The folder whose .c implements include/dripd/<name>.h.
owner() {
  case "$1" in http) echo http; return ;; esac # http.h: http_server.c, http_conn.c
  for d in src/*/; do
    d=${d%/}
    [ -f "$d/$1.c" ] && { echo "${d#src/}"; return; }
  done
  echo "?"
}

bad=0
fail() { echo "check-layers: $*" >&2; bad=1; }

for d in src/*/; do
  d=${d%/}
  folder=${d#src/}
  ok=$(allowed "$folder")
  [ "$ok" = "?" ] && fail "src/$folder: a new folder needs its line in scripts/check-layers.sh"
  for f in "$d"/*.[ch]; do
    [ -e "$f" ] || continue
    grep -n '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f" | while IFS= read -r line; do
      n=${line%%:*}
      inc=$(echo "$line" | sed 's/.*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/')
      case "$inc" in
        dripd/*.h)
          h=$(basename "$inc" .h)
          [ -f "include/$inc" ] || { echo "$f:$n: $inc does not exist"; continue; }
          o=$(owner "$h")
          [ "$o" = "$folder" ] && continue
          case " $ok " in *" $o "*) ;; *) echo "$f:$n: src/$folder may not use $inc (its code is in src/$o)" ;; esac
          ;;
        */*) echo "$f:$n: include \"$inc\" reaches into another folder; move what is shared to include/dripd/" ;;
        *) [ -f "$d/$inc" ] || echo "$f:$n: \"$inc\" is not in src/$folder" ;;
      esac
    done
  done
done >/tmp/check-layers.$$ 2>&1 || true
if [ -s /tmp/check-layers.$$ ]; then
  sed 's/^/check-layers: /' /tmp/check-layers.$$ >&2
  bad=1
fi
rm -f /tmp/check-layers.$$

# A shared header must be shared.
for h in include/dripd/*.h; do
  name=$(basename "$h")
  users=$(grep -l "\"dripd/$name\"" src/*/*.[ch] 2>/dev/null | cut -d/ -f2 | sort -u | tr '\n' ' ')
  count=$(echo "$users" | wc -w)
  [ "$count" -ge 2 ] || fail "$h is used by src/ folders: ${users:-none}; move it beside its code"
done

exit $bad

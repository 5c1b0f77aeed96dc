#!/usr/bin/env bash
# bench/store_floor.sh: what a small object's durable store costs on this
# machine at the least, one file per object (dripd's local store for
# all but small uploads) against appending to one pack file (issue 15:
# what a pack store for small objects would save) and against rows of an
# SQLite table (what the local store's .small.db does), with nothing of
# dripd around any (bench/store_floor.c says exactly what each mode
# does), and a file per object made with O_TMPFILE in the store
# directory and linked in (no work file, no rename). The modes alternate, the order
# reversed every round, each run in a fresh
# directory; nothing is deleted before the end (a deletion slows the next
# runs' file creation on ext4: anchors/lib.sh, "settle").
#
#   RUNS=5 N=20000 SIZE=4200 BATCH=32
#   SIZE: bytes per object (a sealed 4 KiB upload is a little over 4 KiB)
#   BATCH: objects per sync (the pipeline's store stage syncs once per
#          batch of up to 64 jobs)
# Output: a line per run on stderr; per mode the median [min-max] of CPU
# and wall time per object on stdout, and each mode against files.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/anchors/lib.sh"
RUNS=${RUNS:-5}
N=${N:-20000}
SIZE=${SIZE:-4200}
BATCH=${BATCH:-32}
B=$ANCHOR/bench-store-floor
rm -rf "$B"
mkdir -p "$B"
trap 'rm -rf "$B"' EXIT
cc -O2 -o "$B/store_floor" "$HERE/store_floor.c" -lsqlite3 || die "cannot build bench/store_floor.c"
settle
for i in $(seq 1 "$RUNS"); do
  order="files tmpfile sqlite pack"
  [ $((i % 2)) = 1 ] || order="pack sqlite tmpfile files"
  for m in $order; do
    line=$("$B/store_floor" "$m" "$B/$m-$i" "$N" "$SIZE" "$BATCH")
    log "run $i: $line"
    echo "$line" >> "$B/runs"
  done
done
python3 - "$B/runs" <<'PY'
import re, statistics as st, sys
rows = {}
for l in open(sys.argv[1]):
    d = dict(re.findall(r"(\w+)=([\w.]+)", l))
    rows.setdefault(d["mode"], []).append((float(d["cpu_us"]), float(d["wall_us"])))
def f(v):
    v = sorted(v); return "%.1f [%.1f-%.1f]" % (st.median(v), v[0], v[-1])
print("mode   cpu_us/object       wall_us/object")
for m in ("files", "tmpfile", "sqlite", "pack"):
    print("%-7s %-19s %s" % (m, f(r[0] for r in rows[m]), f(r[1] for r in rows[m])))
for m in ("tmpfile", "sqlite", "pack"):
    for k, name in ((0, "cpu"), (1, "wall")):
        a = st.median(r[k] for r in rows[m]); b = st.median(r[k] for r in rows["files"])
        print("%s / files, %s: %.2f" % (m, name, a / b))
PY

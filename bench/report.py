#!/usr/bin/env python3
"""bench/report.py RESULTS_DIR OUT_JSON BUSY: the table of a bench script.

Rows on stdin, one a line: NAME|DRIPD_KEY|ANCHOR_KEY|TARGET (ANCHOR_KEY
and TARGET may be empty; TARGET "-": the two columns are not to be divided,
e.g. p50 and p99). Each key names a file of RESULTS_DIR with one
number a line (one per run). Prints each row's dripd and anchor medians
with their spread [min-max] and the ratio of the medians (when there is a
target, or the anchor is another dripd figure), writes OUT_JSON."""
import json
import os
import platform
import statistics
import sys

R, out, busy = sys.argv[1:4]


def vals(k):
    p = os.path.join(R, k)
    return [float(x) for x in open(p).read().split()] if k and os.path.exists(p) else []


def stat(k):
    v = vals(k)
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)} if v else None


def fmt(s):
    return "%.1f [%.1f-%.1f]" % (s["median"], s["min"], s["max"]) if s else "-"


res = {"machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                   "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)},
       "busy_pct_median": busy, "scenarios": []}
print("%-50s %22s %22s %7s %6s" % ("scenario", "dripd med [min-max]", "anchor med [min-max]", "ratio", "target"))
for line in sys.stdin:
    if not line.strip():
        continue
    name, d, a, target = (line.rstrip("\n").split("|") + ["", "", ""])[:4]
    divide = target != "-"
    target = float(target) if target not in ("", "-") else None
    sd, sa = stat(d), stat(a)
    if not sd:
        continue
    ratio = sd["median"] / sa["median"] if sa and sa["median"] and divide else None
    res["scenarios"].append({"name": name, "dripd": sd, "anchor": sa, "anchor_key": a or None,
                             "ratio_of_medians": ratio, "target_ratio": target})
    print("%-50s %22s %22s %7s %6s" % (name, fmt(sd), fmt(sa), "%.2fx" % ratio if ratio else "",
                                        "%.2fx" % target if target else ""))
print("machine busy (median %% of both CPUs before the runs; shared with other users): %s" % busy)
os.makedirs(os.path.dirname(out), exist_ok=True)
json.dump(res, open(out, "w"), indent=1)
print("written", out)

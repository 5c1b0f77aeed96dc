#!/usr/bin/env python3
"""bench/watch.py: what a benchmark watches while dripd runs, in one
long-lived process each, so that the watching costs next to no CPU.

  watch.py rss PID OUT    every 20 ms, the sum of VmRSS (KiB) of PID and all
                          its descendants; the peak so far is rewritten into
                          OUT whenever it grows; runs until SIGTERM.
  watch.py wait DB SQL [TIMEOUT_S]
                          every 20 ms, runs SQL (one value) on the SQLite file
                          DB read-only until it answers 1; exit 0, or 1 after
                          TIMEOUT_S (600).
  watch.py zero URL NAME [TIMEOUT_S]
                          every 20 ms, GETs URL (dripd's /metrics) over one
                          keep-alive connection until the first sample whose
                          name starts with NAME is 0; exit 0, or 1 after
                          TIMEOUT_S (1800).
  watch.py least URL NAME VALUE [TIMEOUT_S]
                          the same until that sample is VALUE or more.
  watch.py job URL TOKEN [TIMEOUT_S]
                          every 20 ms, GETs URL (/v1/jobs/ID) with the bearer
                          TOKEN until its state is done or failed; prints
                          the state (or "timeout" after TIMEOUT_S, 600).

Why: the shell versions forked ps, awk, sqlite3 and sleep tens of times a
second; measured on the 2-core VM, the RSS sampler alone took 0.8 of a core
and the poll loop another 0.3-0.5 while dripd ran, work the anchors (the CLI
runs) never had to share their cores with.
"""
import http.client
import json
import os
import signal
import sqlite3
import sys
import time
import urllib.parse


PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class Tree:
    """The descendants of a process. A child may belong to any thread of
    its parent (a helper forked by a zygote with CLONE_PARENT is the child
    of the thread that started the zygote): every thread's children are
    read every RESCAN samples, and in between only those of the threads
    that had children (the few that start processes)."""

    RESCAN = 10

    def __init__(self, root):
        self.root, self.n, self.parents = root, 0, set()

    def children(self, pid, full):
        out = []
        if full:
            try:
                tids = [(pid, t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                return out
        else:
            tids = [pt for pt in self.parents if pt[0] == pid]
        for pt in tids:
            try:
                with open(f"/proc/{pt[0]}/task/{pt[1]}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                kids = []
            if kids:
                self.parents.add(pt)
            out.extend(kids)
        return out

    def rss_kib(self):
        full = self.n % self.RESCAN == 0
        self.n += 1
        if full:
            self.parents = set()
        total, todo, seen = 0, [self.root], set()
        while todo:
            p = todo.pop()
            if p in seen:
                continue
            seen.add(p)
            try:
                with open(f"/proc/{p}/statm") as f:  # resident pages: VmRSS
                    total += int(f.read().split()[1]) * PAGE_KIB
            except (OSError, IndexError):
                pass  # gone, or a zombie
            todo.extend(self.children(p, full))
        return total


def cmd_rss(pid, out):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    peak, tree = 0, Tree(pid)
    while not stop:
        r = tree.rss_kib()
        if r > peak:
            peak = r
            with open(out + ".tmp", "w") as f:
                f.write(f"{peak}\n")
            os.replace(out + ".tmp", out)
        time.sleep(0.02)


def cmd_wait(db, sql, timeout):
    end = time.monotonic() + timeout
    con = None
    while time.monotonic() < end:
        try:
            if con is None:
                con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
            row = con.execute(sql).fetchone()
            if row is not None and row[0] == 1:
                return 0
        except sqlite3.Error:
            con = None  # not created yet, or busy: try again
        time.sleep(0.02)
    return 1


def http_get(conns, url, headers):
    """GET url over a kept connection (conns: [conn or None]); the body as
    text, or None on any error (the connection is then dropped)."""
    u = urllib.parse.urlsplit(url)
    try:
        if conns[0] is None:
            conns[0] = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        conns[0].request("GET", u.path + ("?" + u.query if u.query else ""),
                         headers=headers)
        r = conns[0].getresponse()
        body = r.read().decode("utf-8", "replace")
        return body if r.status == 200 else None
    except (OSError, http.client.HTTPException):
        if conns[0] is not None:
            conns[0].close()
        conns[0] = None
        return None


def cmd_until(url, name, ok, timeout):
    end, conns = time.monotonic() + timeout, [None]
    while time.monotonic() < end:
        body = http_get(conns, url, {})
        for line in (body or "").splitlines():
            f = line.split()
            if len(f) >= 2 and f[0].startswith(name):
                if ok(float(f[1])):
                    return 0
                break
        time.sleep(0.02)
    return 1


def cmd_job(url, token, timeout):
    end, conns = time.monotonic() + timeout, [None]
    auth = {"Authorization": "Bearer " + token}
    while time.monotonic() < end:
        body = http_get(conns, url, auth)
        try:
            st = json.loads(body)["state"] if body else None
        except (ValueError, KeyError, TypeError):
            st = None
        if st in ("done", "failed"):
            print(st)
            return 0
        time.sleep(0.02)
    print("timeout")
    return 1


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) == 3 and a[0] == "rss":
        cmd_rss(int(a[1]), a[2])
    elif len(a) in (3, 4) and a[0] == "wait":
        sys.exit(cmd_wait(a[1], a[2], float(a[3]) if len(a) == 4 else 600))
    elif len(a) in (3, 4) and a[0] == "zero":
        sys.exit(cmd_until(a[1], a[2], lambda v: v == 0,
                           float(a[3]) if len(a) == 4 else 1800))
    elif len(a) in (4, 5) and a[0] == "least":
        sys.exit(cmd_until(a[1], a[2], lambda v, m=float(a[3]): v >= m,
                           float(a[4]) if len(a) == 5 else 1800))
    elif len(a) in (3, 4) and a[0] == "job":
        sys.exit(cmd_job(a[1], a[2], float(a[3]) if len(a) == 4 else 600))
    else:
        sys.exit(__doc__)

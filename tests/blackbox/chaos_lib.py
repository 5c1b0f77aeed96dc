"""Chaos helpers: a steady upload load whose acknowledgements are recorded,
and the check that every acknowledged upload completes with the right bytes.

A scenario runs Load while it breaks something (kill -9 a worker, the whole
tree, the store, the disk), then calls verify(): every upload answered 202
must reach "available" and download byte for byte. The report counts
attempted / acknowledged / completed / lost; lost must be 0.
"""
import hashlib
import json
import os
import random
import sqlite3
import subprocess
import threading
import time

from conftest import wait_until


class Load:
    """`threads` clients PUT random small files until stopped (or `limit` uploads)."""

    def __init__(self, d, workdir, threads=4, size=(1, 256 << 10), prefix="/chaos", limit=None):
        self.d, self.workdir, self.threads = d, workdir, threads
        self.size, self.prefix, self.limit = size, prefix, limit
        self.lock = threading.Lock()
        self.attempted = 0
        self.acked = {}        # media id -> (sha256, size, path)
        self.rejected = {}     # status -> count (503/507 are allowed answers)
        self.errors = 0        # transport errors (connection reset while a worker died)
        self.stop_ev = threading.Event()
        self.ts = []
        os.makedirs(workdir, exist_ok=True)

    def _one(self, tid, n):
        size = random.randint(*self.size)
        data = os.urandom(size)
        path = os.path.join(self.workdir, "t%d-%d" % (tid, n))
        with open(path, "wb") as f:
            f.write(data)
        remote = "%s/t%d/%d-%d.bin" % (self.prefix, tid, n, random.randint(0, 1 << 30))
        st, h, body = self.d.curl("-T", path, "--max-time", "60", self.d.url("/v1/files" + remote))
        os.unlink(path)
        with self.lock:
            if st == 202:
                doc = json.loads(body)
                self.acked[doc["media"]["id"]] = (hashlib.sha256(data).hexdigest(), size, remote)
            elif st >= 200:
                self.rejected[st] = self.rejected.get(st, 0) + 1
                assert st in (503, 507), "unexpected status %s: %r" % (st, body[:300])
            else:  # no final answer: the connection died (e.g. after 100 Continue)
                self.errors += 1

    def _run(self, tid):
        n = 0
        while not self.stop_ev.is_set():
            with self.lock:  # reserve the attempt, so `limit` is exact
                if self.limit is not None and self.attempted >= self.limit:
                    return
                self.attempted += 1
            self._one(tid, n)
            n += 1

    def start(self):
        for t in range(self.threads):
            th = threading.Thread(target=self._run, args=(t,), daemon=True)
            th.start()
            self.ts.append(th)
        return self

    def wait_acked(self, n, timeout=60):
        wait_until(lambda: len(self.acked) >= n, timeout, "%d acknowledged uploads" % n)

    def stop(self):
        self.stop_ev.set()
        for th in self.ts:
            th.join(120)


def verify(d, load, timeout=180, user="alice"):
    """Every acknowledged upload becomes available and downloads byte for byte.
    Returns the report dict; asserts lost == 0."""
    lost, completed = [], 0
    deadline = time.monotonic() + max(timeout, len(load.acked) / 5.0)  # big backlogs drain slowly
    for mid, (sha, size, remote) in sorted(load.acked.items()):
        while True:
            st, doc, _ = d.json("GET", "/v1/media/" + mid, user=user)
            if st == 200 and doc.get("state") in ("available", "failed"):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        if st != 200 or doc.get("state") != "available":
            lost.append((mid, st, doc))
            continue
        s2, h, body = d.curl(d.url("/v1/media/%s/content" % mid), user=user)
        if s2 != 200 or hashlib.sha256(body).hexdigest() != sha or doc.get("sha256") != sha:
            lost.append((mid, "content", s2))
            continue
        completed += 1
    # No duplicates: one media row per acknowledged upload path.
    report = {"attempted": load.attempted, "acknowledged": len(load.acked), "completed": completed,
              "lost": len(lost), "rejected": load.rejected, "transport_errors": load.errors}
    print("CHAOS REPORT " + json.dumps(report))
    with open(os.path.join(d.dir, "chaos-report.json"), "w") as f:
        json.dump(report, f)
    assert not lost, "lost or corrupted acknowledged uploads: %r\nwhy:\n%s\nlog:\n%s" % (
        lost[:5], explain(d, [x[0] for x in lost]), d.log_tail(40))
    return report


def _proc_state(pid):
    """'<comm> <state> start=<ticks>' of a pid, or 'gone'."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            text = f.read()
    except OSError:
        return "gone"
    comm = text[text.find("(") + 1:text.rfind(")")]
    rest = text[text.rfind(")") + 2:].split()
    return "%s %s start=%s" % (comm, rest[0], rest[19])


def explain(d, media_ids):
    """Why each lost upload did not complete: its job rows (state, stage,
    claimer, attempts, error) and, for a claimed job, what runs under the
    claimer's pid now; the pipeline worker of the moment too."""
    lines = []
    try:
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.data_dir, "catalog.db"), uri=True,
                             timeout=10)
        for mid in media_ids[:10]:
            rows = db.execute("SELECT id, state, stage, claimed_by, attempts, not_before, error, "
                              "updated_at FROM jobs WHERE media_id = ?", (mid,)).fetchall()
            media = db.execute("SELECT state, sha256 IS NOT NULL FROM media WHERE id = ?",
                               (mid,)).fetchone()
            lines.append("media %s %r: %s" % (mid, media, rows or "NO JOB ROW"))
            for r in rows:
                if r[3] and r[3].rsplit(":", 1)[-1].isdigit():
                    lines.append("  claimer %s: pid now %s" % (r[3], _proc_state(int(r[3].rsplit(":", 1)[-1]))))
        db.close()
    except sqlite3.Error as e:
        lines.append("catalog: %s" % e)
    for pid in d.workers("pipeline"):
        lines.append("pipeline worker now: %d %s" % (pid, _proc_state(pid)))
    return "\n".join(lines)


def healthy(d):
    """The daemon ends healthy: /healthz answers and both workers are there."""
    st, _, _ = d.curl(d.url("/healthz"), user=None)
    assert st == 200
    assert d.workers("http") and d.workers("pipeline")


def mount_tmpfs(path, size="8m"):
    """A small filesystem for disk-full tests; None when mounting is impossible."""
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", path],
                       capture_output=True, text=True)
    return path if r.returncode == 0 else None


def umount(path):
    subprocess.run(["umount", "-l", path], capture_output=True)

"""Black-box tests of the upload and download pipelines (real daemon).

Uploads go through PUT /v1/files/..., content comes back through
GET /v1/media/{id}/content; the catalog (catalog.db, SQLite WAL) and the
node-local directories are inspected read-only to check what the API
cannot show (objects on disk, job and event rows).

Big files: the large round trip is 300 MiB (DRIPD_TEST_BIG_MB) and the
crash-in-each-stage uploads are 200 MiB (DRIPD_TEST_CRASH_MB).
"""
import hashlib
import hmac
import http.server
import json
import os
import re
import shutil
import signal
import subprocess
import sqlite3
import sys
import threading
import time

import pytest

import objstore
from conftest import DRIPD, Notify, make_file, pids_of, same_file, wait_until

SEG = 64 * 1024
INLINE_MAX = 16 * 1024  # ingest.h: a PUT body this small is committed with its job
BIG_MB = int(os.environ.get("DRIPD_TEST_BIG_MB", "300"))
CRASH_MB = int(os.environ.get("DRIPD_TEST_CRASH_MB", "200"))


# ---------------------------------------------------------------- helpers

def db(d):
    c = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.data_dir, "catalog.db"), uri=True,
                        timeout=10)
    c.row_factory = sqlite3.Row
    return c


def query(d, sql, *args):
    c = db(d)
    try:
        return [dict(r) for r in c.execute(sql, args).fetchall()]
    finally:
        c.close()


def upload(d, local, remote, user="alice"):
    st, doc = d.put_file(local, remote, user=user)
    assert st == 202, "PUT %s -> %s %r" % (remote, st, doc)
    return doc["media"]["id"], doc["job"]["id"]


def objects_of(d, media_id):
    """The keys of the media's original object(s) in the local store, files
    or rows of objects/.small.db (objstore.py)."""
    return sorted(k for k in objstore.keys(objstore.objects_dir(d)) if k.startswith(media_id + "_"))


def cache_file(d, media_id):
    return os.path.join(d.data_dir, "cache", media_id)


def get_content(d, media_id, out, user="alice"):
    st, h, body = d.curl(d.url("/v1/media/%s/content" % media_id), user=user)
    with open(out, "wb") as f:
        f.write(body)
    return st


def download_job(d, media_id):
    st, doc, _ = d.json("POST", "/v1/media/%s/download" % media_id, expect=202)
    return doc["job"]["id"] if "job" in doc else doc["id"]


def pipeline_pid(d):
    return d.worker("pipeline")


# ---------------------------------------------------------------- round trips

@pytest.mark.parametrize("size", [0, 1, SEG, SEG + 1, BIG_MB << 20],
                         ids=["0B", "1B", "64KiB", "64KiB+1", "big"])
def test_round_trip(dripd, size):
    src = make_file(os.path.join(dripd.dir, "src.bin"), size)
    mid, jid = upload(dripd, src, "/rt/file-%d.bin" % size)
    job = dripd.wait_job(jid, timeout=120 + size / 2e6)
    assert job["state"] == "done", job
    m = dripd.json("GET", "/v1/media/" + mid, expect=200)[1]
    assert m["state"] == "available" and m["size"] == size
    with open(src, "rb") as f:
        assert m["sha256"] == hashlib.sha256(f.read()).hexdigest()

    # exactly one object, sealed: starts with the magic, no plaintext inside
    objs = objects_of(dripd, mid)
    assert len(objs) == 1, objs
    blob = objstore.read(objstore.objects_dir(dripd), objs[0])
    nseg = max(1, -(-size // SEG))
    assert len(blob) > size + 16 * nseg
    assert blob[:6] == b"DRIPD1"
    if size >= 64:
        with open(src, "rb") as f:
            plain = f.read()
        for off in {0, size // 2, size - 64}:
            assert plain[off:off + 64] not in blob, "plaintext at %d found in the object" % off
    del blob

    # the finished upload warmed the cache: served from there; except a
    # body of at most 16 KiB, which came inline and was sealed from memory
    # (no file to put there): its first GET fills the cache
    if 0 < size <= INLINE_MAX:
        assert not os.path.exists(cache_file(dripd, mid))
    else:
        assert same_file(src, cache_file(dripd, mid))
    out = os.path.join(dripd.dir, "out.bin")
    assert get_content(dripd, mid, out) == 200
    assert same_file(src, out)

    # cold: the download stages decrypt the object into the cache again, as a
    # fill: derived data, so no durable job row (issue 15)
    os.unlink(cache_file(dripd, mid))
    os.unlink(out)
    fills = metric(dripd, "dripd_cache_fills_total")
    assert get_content(dripd, mid, out) == 200
    assert same_file(src, out)
    assert same_file(src, cache_file(dripd, mid))
    assert metric(dripd, "dripd_cache_fills_total") == fills + 1
    assert query(dripd, "SELECT id FROM jobs WHERE media_id = ? AND kind = 'download'", mid) == []
    # nothing left behind in the scratch and spool directories
    assert os.listdir(os.path.join(dripd.data_dir, "work")) == []
    assert [n for n in os.listdir(os.path.join(dripd.data_dir, "spool"))] == []


def test_download_job_warms_cache(dripd):
    src = make_file(os.path.join(dripd.dir, "w.bin"), 3 * SEG + 5)
    mid, jid = upload(dripd, src, "/warm/w.bin")
    assert dripd.wait_job(jid)["state"] == "done"
    os.unlink(cache_file(dripd, mid))
    before = metric(dripd, "dripd_store_downloaded_bytes_total")
    djid = download_job(dripd, mid)
    job = dripd.wait_job(djid)
    assert job["state"] == "done" and job["kind"] == "download", job
    assert same_file(src, cache_file(dripd, mid))
    # the local store's object is decrypted where it is: no scratch copy
    (obj,) = objects_of(dripd, mid)
    assert metric(dripd, "dripd_store_downloaded_bytes_total") - before == objstore.size(
        objstore.objects_dir(dripd), obj)
    assert "job %s: media %s decrypted into the cache (in place)" % (djid, mid) in dripd.log_text()
    assert os.listdir(os.path.join(dripd.data_dir, "work")) == []
    # a second download with a fresh entry passes it on ("original"): no store read
    before = metric(dripd, "dripd_store_downloaded_bytes_total")
    job = dripd.wait_job(download_job(dripd, mid))
    assert job["state"] == "done"
    assert metric(dripd, "dripd_store_downloaded_bytes_total") == before


def test_small_objects_are_rows_of_the_small_db(dripd):
    """Issue 15: the sealed object of a small upload (a body kept inline, at
    most INLINE_MAX bytes) is a row of objects/.small.db (WAL), keyed by the
    name its file would have had, not a file; a larger one stays a file.
    Both download byte for byte from the store, and a DELETE removes the row."""
    od = objstore.objects_dir(dripd)
    small = make_file(os.path.join(dripd.dir, "small.bin"), 4 << 10)
    large = make_file(os.path.join(dripd.dir, "large.bin"), 100 << 10)
    s_mid, s_jid = upload(dripd, small, "/small/s.bin")
    l_mid, l_jid = upload(dripd, large, "/small/l.bin")
    for mid, jid in ((s_mid, s_jid), (l_mid, l_jid)):
        assert dripd.wait_job(jid)["state"] == "done"
        assert dripd.json("GET", "/v1/media/" + mid, expect=200)[1]["state"] == "available"

    # the database: WAL mode, table objects(key, data)
    assert os.path.isfile(objstore.db_path(od))
    c = sqlite3.connect("file:%s?mode=ro" % objstore.db_path(od), uri=True, timeout=10)
    try:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cols = [(r[1], r[2].upper(), r[3], r[5]) for r in c.execute("PRAGMA table_info(objects)")]
    finally:
        c.close()
    assert cols == [("key", "TEXT", 1, 1), ("data", "BLOB", 1, 0)], cols

    # the small one: a row, sealed (no plaintext in it), and no file
    (s_key,) = objects_of(dripd, s_mid)
    assert objstore.in_db(od, s_key), (s_key, sorted(objstore.db_keys(od)))
    assert not os.path.exists(os.path.join(od, s_key)), s_key
    assert s_key not in objstore.file_keys(od)
    blob = objstore.read(od, s_key)
    assert blob[:6] == b"DRIPD1" and len(blob) > (4 << 10) + 16
    with open(small, "rb") as f:
        plain = f.read()
    assert plain[:64] not in blob and plain[-64:] not in blob
    # the large one: a file, and no row
    (l_key,) = objects_of(dripd, l_mid)
    assert os.path.isfile(os.path.join(od, l_key)) and not objstore.in_db(od, l_key), l_key

    # both download byte for byte, decrypted from the store (not the cache)
    fills = metric(dripd, "dripd_cache_fills_total") or 0
    for mid, src in ((s_mid, small), (l_mid, large)):
        if os.path.exists(cache_file(dripd, mid)):
            os.unlink(cache_file(dripd, mid))
        out = os.path.join(dripd.dir, "out-" + mid)
        assert get_content(dripd, mid, out) == 200
        assert same_file(src, out), mid
    assert metric(dripd, "dripd_cache_fills_total") == fills + 2

    # a DELETE removes the small media's row; the large file stays
    st, _, body = dripd.curl("-X", "DELETE", dripd.url("/v1/media/" + s_mid))
    assert st == 204, body
    assert not objstore.in_db(od, s_key) and not objstore.exists(od, s_key)
    assert objects_of(dripd, s_mid) == []
    assert objects_of(dripd, l_mid) == [l_key] and objstore.is_file(od, l_key)


def metric(d, name):
    st, h, body = d.curl(d.url("/metrics"), user=None)
    assert st == 200
    total = None
    for line in body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total = (total or 0) + float(line.rsplit(" ", 1)[1])
    return total


# ---------------------------------------------------------------- tampering

def _stored(dripd, size, name):
    src = make_file(os.path.join(dripd.dir, name), size)
    mid, jid = upload(dripd, src, "/t/" + name)
    assert dripd.wait_job(jid)["state"] == "done"
    if size > INLINE_MAX:  # a smaller one was not put into the cache
        os.unlink(cache_file(dripd, mid))
    (obj,) = objects_of(dripd, mid)
    return src, mid, obj


def _assert_never_wrong_bytes(dripd, mid, src):
    out = os.path.join(dripd.dir, "bad-out.bin")
    st = get_content(dripd, mid, out)
    if st == 200:  # must then be the right bytes (it cannot be, the object is bad)
        assert same_file(src, out), "GET content returned wrong bytes"
        pytest.fail("GET content of a corrupt object answered 200")
    assert not os.path.exists(cache_file(dripd, mid)), "corrupt plaintext reached the cache"


def test_flipped_byte_detected(dripd):
    src, mid, obj = _stored(dripd, 5 * SEG + 100, "flip.bin")
    od = objstore.objects_dir(dripd)
    hdr_len = int.from_bytes(objstore.read(od, obj)[8:12], "big")
    off = hdr_len + 3 * (SEG + 16) + 777  # inside segment 3
    objstore.flip(od, obj, off, 0x01)
    job = dripd.wait_job(download_job(dripd, mid))
    assert job["state"] == "failed", job
    assert "object corrupt: segment 3 tag mismatch" in job["error"], job
    _assert_never_wrong_bytes(dripd, mid, src)
    assert os.listdir(os.path.join(dripd.data_dir, "work")) == []


def test_flipped_header_byte_detected(dripd):
    # docs/FORMAT.md, version 2: offset 82 is in the clear nonce prefix (the
    # meta block's associated data), 100 inside the encrypted media id
    for i, off in enumerate((82, 100)):
        # 1000 bytes: a small object, a row of objects/.small.db (objstore.py)
        src, mid, obj = _stored(dripd, 1000, "hflip%d.bin" % i)
        od = objstore.objects_dir(dripd)
        assert int.from_bytes(objstore.read(od, obj)[6:8], "big") == 2
        objstore.flip(od, obj, off, 0x04)
        job = dripd.wait_job(download_job(dripd, mid))
        assert job["state"] == "failed" and "header tag mismatch" in job["error"], (off, job)
        _assert_never_wrong_bytes(dripd, mid, src)


def test_truncation_detected(dripd):
    src, mid, obj = _stored(dripd, 4 * SEG, "trunc.bin")
    od = objstore.objects_dir(dripd)
    hdr_len = int.from_bytes(objstore.read(od, obj)[8:12], "big")
    objstore.truncate(od, obj, hdr_len + 3 * (SEG + 16))  # drop the last segment exactly
    job = dripd.wait_job(download_job(dripd, mid))
    assert job["state"] == "failed" and "truncated" in job["error"], job
    _assert_never_wrong_bytes(dripd, mid, src)


def test_missing_object_fails_cleanly(dripd):
    src, mid, obj = _stored(dripd, 10, "gone.bin")  # a row of objects/.small.db
    assert objstore.delete(objstore.objects_dir(dripd), obj)
    job = dripd.wait_job(download_job(dripd, mid))
    assert job["state"] == "failed" and "missing from the store" in job["error"], job


def test_retention_prunes_finished_jobs_not_media(dripd_factory):
    d = dripd_factory(config={"pipeline": {"retention": "1ms"}})
    src = make_file(os.path.join(d.dir, "r.bin"), SEG + 5)
    mid, jid = upload(d, src, "/keep/r.bin")
    assert d.wait_job(jid)["state"] == "done"
    d.json("GET", "/v1/jobs/" + jid, expect=200)
    # the sweep runs when the pipeline worker starts (then hourly)
    at = d.log_size()
    old = d.worker("pipeline")
    os.kill(old, signal.SIGKILL)
    d.wait_log(r"retention: removed \d+ finished job", after=at)
    d.json("GET", "/v1/jobs/" + jid, expect=404)
    assert query(d, "SELECT id FROM jobs WHERE id = ?", jid) == []
    assert d.json("GET", "/v1/media/" + mid, expect=200)[1]["state"] == "available"
    out = os.path.join(d.dir, "r.out")
    assert get_content(d, mid, out) == 200 and same_file(src, out)


# ---------------------------------------------------------------- crash recovery

def _wait_stopped(pid):
    """kill(SIGSTOP) returns before the group stop completes: a thread inside
    a syscall (an fsync of the catalog, say) runs on until it returns.  Wait
    until every thread is in state T, so the catalog we read next is the one
    the worker dies with."""
    def all_stopped():
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                continue
            if state not in ("T", "t"):
                return False
        return True
    wait_until(all_stopped, 20, "pipeline worker %d stopped" % pid)


def _stop_when(d, pid, pattern, after, timeout=60):
    """SIGSTOP the pipeline worker as soon as the log matches (a tight tail:
    the notify step takes a few milliseconds)."""
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    buf = ""
    with open(d.log_path, "rb") as f:
        f.seek(after)
        while True:
            chunk = f.read()
            if chunk:
                buf += chunk.decode(errors="replace")
                if rx.search(buf):
                    os.kill(pid, signal.SIGSTOP)
                    _wait_stopped(pid)
                    return
            elif time.monotonic() > deadline:
                raise AssertionError("log never matched /%s/; tail:\n%s" % (pattern, d.log_tail()))
            else:
                time.sleep(0.0003)


@pytest.mark.parametrize("stage", ["encrypt", "store", "notify"])
def test_crash_in_each_stage(dripd_factory, stage):
    # store and notify hold the job 1.5 s (test hooks), so the stop lands
    # inside the step; encrypt is caught sealing the big file itself
    hold = {"store": {"test_store_delay": "1500ms"},
            "notify": {"test_notify_delay": "1500ms"}}.get(stage, {})
    d = dripd_factory(config={"pipeline": hold,
                              "supervisor": {"max_restarts": 20, "max_seconds": "60s"}})
    size = CRASH_MB << 20
    trigger = {"encrypt": r"job {job} \(upload\) claimed at stage encrypt",
               "store": r"job {job} \(upload\): encrypt done, next store",
               "notify": r"job {job} \(upload\): store done, next notify"}[stage]
    for attempt in range(8):
        src = make_file(os.path.join(d.dir, "c%d.bin" % attempt), size)
        after = d.log_size()
        pid = pipeline_pid(d)
        mid, jid = upload(d, src, "/crash/%s-%d.bin" % (stage, attempt))
        _stop_when(d, pid, trigger.format(job=jid), after)
        (row,) = query(d, "SELECT state, stage FROM jobs WHERE id = ?", jid)
        caught = row["state"] == "running" and row["stage"] == stage
        if caught:
            # A core-dumping signal is taken by one thread while the others
            # run on for a moment after SIGCONT: the holds above make sure
            # the step under test cannot finish in that moment.
            os.kill(pid, signal.SIGSEGV)
        os.kill(pid, signal.SIGCONT)
        if caught:
            print("caught in %s at try %d" % (stage, attempt + 1))
            break
        d.wait_job(jid)  # it got past the stage before we stopped it: try again
    else:
        pytest.fail("never caught an upload in stage %s" % stage)
    wait_until(lambda: pid not in d.workers("pipeline"), 20, "old pipeline worker gone")
    d.worker("pipeline")  # restarted by the supervisor
    job = d.wait_job(jid, timeout=120)
    assert job["state"] == "done", job
    out = os.path.join(d.dir, "out.bin")
    assert get_content(d, mid, out) == 200
    assert same_file(src, out)
    # exactly one job and one media row; one object; nothing left behind
    assert len(query(d, "SELECT id FROM jobs WHERE media_id = ? AND kind = 'upload'", mid)) == 1
    assert len(query(d, "SELECT id FROM media WHERE path = ?", "/crash/%s-%d.bin" % (stage, attempt))) == 1
    assert len(objects_of(d, mid)) == 1
    assert "released 1 job" in d.log_text()
    assert d.json("GET", "/v1/media/" + mid, expect=200)[1]["state"] == "available"


# A parent that adopts orphans (PR_SET_CHILD_SUBREAPER) and reaps nothing
# until its stdin closes: a dead dripd's workers stay zombies under it.
KEEPER = r"""
import ctypes, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)
p = subprocess.Popen(sys.argv[1:], stdout=sys.stderr)
print(p.pid, flush=True)
sys.stdin.read()
"""


def _state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def test_a_zombie_worker_does_not_keep_its_jobs(dripd_factory):
    """A node crash whose dead pipeline worker nobody has reaped yet (its
    pid exists, as a zombie, named dripd-pipeline): the next worker
    releases its jobs at once instead of taking it for alive."""
    # stage_commit_size 0: the small job commits (and logs) its encrypt step
    d = dripd_factory(start=False, config={"pipeline": {"test_store_delay": "60s",
                                                        "stage_commit_size": 0}})
    d.write_config()
    npath = os.path.join(d.dir, "notify.sock")
    d.notify = Notify(npath)
    d.logf = open(d.log_path, "ab")
    keeper = subprocess.Popen([sys.executable, "-c", KEEPER, DRIPD, "-c", d.config_path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=d.logf,
                              env=dict(os.environ, NOTIFY_SOCKET=npath), cwd=d.dir)
    sup = int(keeper.stdout.readline())
    try:
        d.proc = keeper
        d.wait_ready()
        pid = wait_until(lambda: (pids_of(sup, "dripd-pipeline") or [None])[0], 20, "pipeline worker")
        src = make_file(os.path.join(d.dir, "z.bin"), 100000)
        after = d.log_size()
        mid, jid = upload(d, src, "/zombie/z.bin")
        d.wait_log(r"job %s \(upload\): encrypt done, next store" % jid, after=after)
        (row,) = query(d, "SELECT state, claimed_by FROM jobs WHERE id = ?", jid)
        assert row["state"] == "running" and row["claimed_by"].endswith(":%d" % pid), row
        kids = pids_of(sup, "dripd-pipeline") + pids_of(sup, "dripd-http")
        for p in [sup] + kids:
            os.kill(p, signal.SIGKILL)
        wait_until(lambda: _state(pid) == "Z", 20, "the killed pipeline worker a zombie")
        d.notify.close()
        d.logf.close()
        d.config["pipeline"] = {}
        d.config["listen"] = [d.addr]
        after = d.log_size()
        d.start()
        job = d.wait_job(jid, timeout=30)
        assert job["state"] == "done", job
        assert _state(pid) == "Z"  # still unreaped: it was taken for dead, not waited out
        d.wait_log(r"released 1 job", after=after, timeout=1)
    finally:
        if _state(sup) != "Z":  # failed before the crash: stop the first dripd
            os.kill(sup, signal.SIGTERM)
            wait_until(lambda: _state(sup) == "Z", 30, "the first dripd stopped")
        keeper.stdin.close()  # the zombies go to init, which reaps them
        keeper.wait(10)


def test_leftovers_of_cut_puts_are_swept_at_start(dripd_factory):
    """A crash between a local put's link and its rename leaves a
    .tmp-<random>-<key> file in objects/ that nothing else removes: the
    pipeline worker sweeps them when it starts; objects stay."""
    d = dripd_factory()
    # more than INLINE_MAX: the object is a file (a small one would be a row
    # of objects/.small.db, put with no temporary file), so the leftovers
    # below are those of a put of a file, linked to it as a real one's are
    src = make_file(os.path.join(d.dir, "s.bin"), INLINE_MAX + 5000)
    mid, jid = upload(d, src, "/sweep/s.bin")
    assert d.wait_job(jid)["state"] == "done"
    (obj,) = objects_of(d, mid)
    od = objstore.objects_dir(d)
    assert objstore.is_file(od, obj) and not objstore.in_db(od, obj)
    d.stop()
    left = [os.path.join(od, ".tmp-%016x-%s" % (i, obj)) for i in range(2)]
    os.link(os.path.join(od, obj), left[0])  # a put cut after its link
    with open(left[1], "wb") as f:  # one cut in its copy
        f.write(b"partial")
    after = d.log_size()
    d.restart()
    d.wait_log(r"store: removed 2 temporary files of puts cut short by a crash", after=after)
    assert not any(os.path.exists(p) for p in left)
    assert objects_of(d, mid) == [obj]
    out = os.path.join(d.dir, "out.bin")
    assert get_content(d, mid, out) == 200 and same_file(src, out)


def _crash_holding_a_job(d, name):
    """Upload one file, crash the whole node (kill -9 of the supervisor and
    both workers) while its job is claimed at stage store (the config has
    stage_commit_size 0, so the small job logs its encrypt step); returns
    (mid, jid)."""
    src = make_file(os.path.join(d.dir, name), 100000)
    after = d.log_size()
    mid, jid = upload(d, src, "/reuse/" + name)
    d.wait_log(r"job %s \(upload\): encrypt done, next store" % jid, after=after)
    (row,) = query(d, "SELECT state FROM jobs WHERE id = ?", jid)
    assert row["state"] == "running", row
    d.kill_tree()
    return mid, jid


def _set_claimer(d, jid, claimer):
    c = sqlite3.connect(os.path.join(d.data_dir, "catalog.db"), timeout=10)
    with c:
        c.execute("UPDATE jobs SET claimed_by = ? WHERE id = ?", (claimer, jid))
    c.close()


def _restart_and_finish(d, mid, jid):
    d.config["pipeline"] = {}
    after = d.log_size()
    d.restart()
    job = d.wait_job(jid, timeout=30)
    assert job["state"] == "done", job
    d.wait_log(r"released 1 job", after=after, timeout=1)
    assert d.json("GET", "/v1/media/" + mid, expect=200)[1]["state"] == "available"


def test_a_reused_pid_does_not_keep_a_dead_workers_jobs(dripd_factory):
    """After a node crash the dead pipeline worker's pid belongs to another,
    live process named dripd-pipeline (pids are reused; on a shared host,
    or in a restarted container, it is often another dripd's worker). The
    restarted dripd still takes the claim for dead: a claim names the
    worker's start time, not only its pid. (The chaos suite lost uploads to
    this: they stayed queued until its deadline.)"""
    d = dripd_factory(config={"pipeline": {"test_store_delay": "60s", "stage_commit_size": 0}})
    mid, jid = _crash_holding_a_job(d, "r.bin")
    (row,) = query(d, "SELECT claimed_by FROM jobs WHERE id = ?", jid)
    decoy_bin = os.path.join(d.dir, "dripd-pipeline")  # comm is the file's name
    shutil.copy("/bin/sleep", decoy_bin)
    decoy = subprocess.Popen([decoy_bin, "600"])
    try:
        wait_until(lambda: open("/proc/%d/comm" % decoy.pid).read().strip() == "dripd-pipeline",
                   10, "the decoy named dripd-pipeline")
        # the dead worker's claim, its pid now the decoy's
        _set_claimer(d, jid, re.sub(r":\d+$", ":%d" % decoy.pid, row["claimed_by"]))
        _restart_and_finish(d, mid, jid)
        assert decoy.poll() is None  # it was alive all along
    finally:
        decoy.kill()
        decoy.wait()


def test_a_changed_node_id_does_not_keep_its_jobs(dripd_factory):
    """With SQLite there is one node: a claim under another node id (the
    hostname changed, as a re-created container's does) is this node's own
    from before, and is released."""
    d = dripd_factory(config={"node": {"id": "before"},
                              "pipeline": {"test_store_delay": "60s", "stage_commit_size": 0}})
    mid, jid = _crash_holding_a_job(d, "n.bin")
    (row,) = query(d, "SELECT claimed_by FROM jobs WHERE id = ?", jid)
    assert row["claimed_by"].startswith("before:"), row
    d.config["node"] = {"id": "after"}
    _restart_and_finish(d, mid, jid)


# ---------------------------------------------------------------- back-pressure

def test_backpressure_queue_full_then_drains(dripd_factory):
    d = dripd_factory(config={"pipeline": {
        # longer than the 1 s an upload waits at the limit for a place
        "queue_limit": 3, "test_store_delay": "2500ms",
        "upload": {"encrypt": {"concurrency": 1, "max_demand": 2, "min_demand": 1},
                   "store": {"concurrency": 1, "max_demand": 2, "min_demand": 1}}}})
    src = make_file(os.path.join(d.dir, "bp.bin"), 1000)
    accepted, rejected = [], None
    for i in range(12):
        st, h, body = d.curl("-T", src, d.url("/v1/files/bp/f%d.bin" % i))
        if st == 202:
            accepted.append(json.loads(body)["job"]["id"])
        elif st == 503:
            rejected = h
            break
        else:
            pytest.fail("unexpected %s %r" % (st, body[:300]))
    assert rejected is not None, "queue never filled"
    assert "retry-after" in rejected
    assert len(accepted) == 3
    # the starter claims only what the stages asked for: never all at once
    running = query(d, "SELECT count(*) AS n FROM jobs WHERE state = 'running'")[0]["n"]
    assert running <= 3  # queue_limit bounds it here; the demand bound is tested below
    for j in accepted:
        assert d.wait_job(j, timeout=60)["state"] == "done"
    st, h, body = d.curl("-T", src, d.url("/v1/files/bp/after.bin"))
    assert st == 202, body
    assert d.wait_job(json.loads(body)["job"]["id"])["state"] == "done"
    # the gauge is recounted at most every 200 ms, and within a second of a skip
    wait_until(lambda: metric(d, "dripd_jobs_queue_depth") == 0, 5, "queue depth gauge 0")


def test_slow_store_holds_back_claims(dripd_factory):
    """A slow store stage stalls encrypt, process and the starter: with one
    thread and max_demand 2 per stage, 2 (store) + 2 (encrypt: one finished
    and blocked handing on, one queued) + 2 (process, the same: a file that
    is not media starts at encrypt but still passes through it) jobs are
    claimed at once, at most 1 more (notify, briefly), however many wait.
    The peak is counted exactly, from the pipeline's own log: a job is
    claimed from its "claimed" line to its "done" line (the done line is
    written before its thread asks for more, so the order of the lines is
    the order of the events)."""
    d = dripd_factory(config={"pipeline": {
        "test_store_delay": "700ms",
        "upload": {"process": {"concurrency": 1, "max_demand": 2, "min_demand": 1},
                   "encrypt": {"concurrency": 1, "max_demand": 2, "min_demand": 1},
                   "store": {"concurrency": 1, "max_demand": 2, "min_demand": 1}}}})
    src = make_file(os.path.join(d.dir, "s.bin"), 100)
    jobs = [upload(d, src, "/slow/%d.bin" % i)[1] for i in range(12)]
    assert all(d.wait_job(j, timeout=60)["state"] == "done" for j in jobs)
    held, peak, claims = set(), 0, 0
    rx = re.compile(r"job (\S+) \(upload\) (claimed at stage|done:)")
    for line in d.log_text().splitlines():
        m = rx.search(line)
        if m is None:
            continue
        if m.group(2) == "done:":
            held.discard(m.group(1))
        else:
            held.add(m.group(1))
            claims += 1
            peak = max(peak, len(held))
    assert claims == 12 and not held, (claims, held)  # no retries, every job done
    assert 4 <= peak <= 7, peak


# ---------------------------------------------------------------- cache

def test_cache_eviction_and_ttl(dripd_factory):
    d = dripd_factory(config={"cache": {"max_size": "300KiB", "ttl": "3s"}})
    srcs, mids = [], []
    for i in range(3):
        s = make_file(os.path.join(d.dir, "e%d.bin" % i), 150 * 1024)
        mid, jid = upload(d, s, "/cache/e%d.bin" % i)
        assert d.wait_job(jid)["state"] == "done"
        srcs.append(s)
        mids.append(mid)

    cd = os.path.join(d.data_dir, "cache")

    def entries():  # cache/.free is the pool of evicted fills (cache.c), not entries
        return [n for n in os.listdir(cd) if not n.startswith(".")]

    def cache_bytes():  # the pool counts toward max_size
        fd = os.path.join(cd, ".free")
        pool = os.listdir(fd) if os.path.isdir(fd) else []
        return (sum(os.path.getsize(os.path.join(cd, n)) for n in entries()) +
                sum(os.path.getsize(os.path.join(fd, n)) for n in pool))
    wait_until(lambda: cache_bytes() <= 300 * 1024, 10, "cache under max_size")
    assert not os.path.exists(cache_file(d, mids[0])), "the least recently used entry stays"
    assert os.path.exists(cache_file(d, mids[2]))
    assert metric(d, "dripd_cache_evictions_total") >= 1
    # TTL: every entry expires, and content is still served (pipeline refills)
    wait_until(lambda: not entries(), 15, "entries expired")
    out = os.path.join(d.dir, "o.bin")
    assert get_content(d, mids[1], out) == 200
    assert same_file(srcs[1], out)


# ---------------------------------------------------------------- webhooks & events

class _Hooks(http.server.BaseHTTPRequestHandler):
    got = []
    fail_first = 0
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with _Hooks.lock:
            if _Hooks.fail_first > 0:
                _Hooks.fail_first -= 1
                self.send_response(500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            _Hooks.got.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture
def hook_server():
    _Hooks.got = []
    _Hooks.fail_first = 2
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hooks)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_webhook_signed_events_in_order(dripd_factory, hook_server):
    secret = "whsec-test-1"
    url = "http://127.0.0.1:%d/hook" % hook_server.server_address[1]
    # stage_commit_size 0: even a small job commits, and announces, every stage
    d = dripd_factory(config={"webhooks": [{"url": url, "secret": secret}],
                              "pipeline": {"stage_commit_size": 0}})
    src = make_file(os.path.join(d.dir, "h.bin"), 2000)
    mid, jid = upload(d, src, "/hooks/h.bin")
    assert d.wait_job(jid)["state"] == "done"

    def for_job():
        with _Hooks.lock:
            return [(h, json.loads(b), b) for h, b in _Hooks.got if json.loads(b)["job_id"] == jid]
    wait_until(lambda: any(e["type"] == "job.done" for _, e, _ in for_job()), 30, "job.done hook")
    got = for_job()
    types = [e["type"] for _, e, _ in got]
    assert types == ["job.created", "job.stage", "job.stage", "job.done"], types
    seqs = [e["seq"] for _, e, _ in got]
    assert seqs == sorted(seqs)
    for h, e, raw in got:
        want = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        assert h["X-Dripd-Signature"] == want
        assert h["X-Dripd-Event"] == e["type"]
        assert e["media_id"] == mid and e["user"] == "alice"
    assert got[-1][1]["data"]["state"] == "done"
    # the first two POSTs were answered 500 and retried
    assert metric(d, "dripd_webhook_failures_total") >= 2
    # the events table holds the same sequence, in order
    rows = query(d, "SELECT seq, type FROM events WHERE job_id = ? ORDER BY seq", jid)
    assert [r["type"] for r in rows] == types
    assert [r["seq"] for r in rows] == seqs
    # at least once across restarts: a restart resends nothing already acknowledged
    n = len(_Hooks.got)
    d.stop()
    d.restart()
    src2 = make_file(os.path.join(d.dir, "h2.bin"), 10)
    mid2, jid2 = upload(d, src2, "/hooks/h2.bin")
    assert d.wait_job(jid2)["state"] == "done"
    wait_until(lambda: any(json.loads(b)["job_id"] == jid2 and json.loads(b)["type"] == "job.done"
                           for _, b in list(_Hooks.got)), 30, "hook after restart")
    again = [json.loads(b)["seq"] for _, b in _Hooks.got[n:]]
    assert not set(again) & set(seqs), "events delivered before the restart were sent again"


def test_job_events_and_stage_metrics(dripd):
    """A job of pipeline.stage_commit_size (1 MiB) or more commits every
    stage after its first (process: nothing to record for a file that is
    not media), each with its event; a smaller one commits once, when done,
    and all its media fields with it."""
    for size, want in ((1 << 20, ["store", "notify"]), ((1 << 20) - 1, [])):
        src = make_file(os.path.join(dripd.dir, "m%d.bin" % size), size)
        mid, jid = upload(dripd, src, "/m/m%d.bin" % size)
        assert dripd.wait_job(jid)["state"] == "done"
        rows = query(dripd, "SELECT type, data FROM events WHERE job_id = ? ORDER BY seq", jid)
        stages = [json.loads(r["data"])["stage"] for r in rows if r["type"] == "job.stage"]
        assert stages == want, (size, stages)
        assert [r["type"] for r in rows] == ["job.created"] + ["job.stage"] * len(want) + ["job.done"]
        m = dripd.json("GET", "/v1/media/" + mid, expect=200)[1]
        with open(src, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        assert m["state"] == "available" and m["sha256"] == sha, m
    wait_until(lambda: metric(dripd, "dripd_jobs_queue_depth") == 0, 5, "queue depth gauge 0")


# ---------------------------------------------------------------- retries

def test_transient_store_errors_retry_then_fail(dripd_factory):
    """An unreachable store is transient (-EAGAIN): the job is retried with
    growing backoff, then failed after pipeline.retry.attempts with the
    store's error kept; the media is failed, nothing node-local is left."""
    d = dripd_factory(config={
        "storage": {"backend": "s3",
                    "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "media", "region": "us-east-1",
                           "access_key_id": "AKIDEXAMPLE", "secret_access_key": "secret-example",
                           "connect_timeout": "1s"}},
        "pipeline": {"retry": {"attempts": 3, "backoff": "200ms", "max_backoff": "1s"}}})
    src = make_file(os.path.join(d.dir, "r.bin"), 5000)
    after = d.log_size()
    mid, jid = upload(d, src, "/retry/r.bin")
    job = d.wait_job(jid, timeout=60)
    assert job["state"] == "failed", job
    assert job["stage"] == "store" and job["attempts"] == 3, job
    assert job["error"], job
    m = d.json("GET", "/v1/media/" + mid, expect=200)[1]
    assert m["state"] == "failed"
    log = d.log_text()[after:]
    delays = [int(x) for x in re.findall(r"job %s .*retrying in (\d+) ms" % jid, log)]
    assert len(delays) == 2, log[-3000:]
    assert 100 <= delays[0] <= 200 and 200 <= delays[1] <= 400, delays  # equal jitter, doubling
    assert re.search(r"job %s \(upload\) failed at store after 3 attempts" % jid, log)
    # the retries really waited: claimed three times, spread by the backoff
    claims = re.findall(r"(\d\d:\d\d:\d\d\.\d+)Z INFO pipeline\[\d+\] job %s \(upload\) claimed" % jid, log)
    assert len(claims) == 3, claims
    assert os.listdir(os.path.join(d.data_dir, "work")) == []
    assert [n for n in os.listdir(os.path.join(d.data_dir, "spool"))] == []
    ev = query(d, "SELECT type FROM events WHERE job_id = ? ORDER BY seq", jid)
    assert [e["type"] for e in ev][-1] == "job.failed"


# ---------------------------------------------------------------- issue 17: errors and secrets

def test_spool_size_mismatch_fails_once_without_server_paths(dripd_factory):
    """A spool file that does not hold the upload's bytes can never become
    the object: the job fails at once (it was retried five times as if the
    disk had hiccupped). The API's error names no server file; the log
    keeps the full text."""
    d = dripd_factory(config={"supervisor": {"heartbeat_timeout": "60s"}})
    # over the inline size (16 KiB): a body that has a spool file
    src = make_file(os.path.join(d.dir, "mm.bin"), 20000)
    pl = d.worker("pipeline")
    os.kill(pl, signal.SIGSTOP)
    try:
        mid, jid = upload(d, src, "/mm/mm.bin")
        parts = [os.path.join(d.data_dir, "spool", n) for n in os.listdir(os.path.join(d.data_dir, "spool"))]
        assert len(parts) == 1, parts
        with open(parts[0], "ab") as f:
            f.write(b"stray bytes")
    finally:
        os.kill(pl, signal.SIGCONT)
    job = d.wait_job(jid, timeout=60)
    assert job["state"] == "failed" and job["attempts"] == 1, job
    assert "20011 bytes, the upload had 20000" in job["error"], job
    assert d.data_dir not in job["error"] and "/spool/" not in job["error"], job
    assert "[server path]" in job["error"], job
    st, doc, _ = d.json("GET", "/v1/jobs?state=failed")
    assert st == 200 and all(d.data_dir not in (j["error"] or "") for j in doc["jobs"]), doc
    assert re.search(r"spool file %s has 20011 bytes" % re.escape(parts[0]), d.log_text())


def test_webhook_url_secrets_never_logged(dripd_factory, hook_server):
    """A webhook URL with user:pass@ and ?api_key= was logged in full."""
    port = hook_server.server_address[1]
    url = "http://hookuser:hookpass@127.0.0.1:%d/hook?api_key=SECRETKEY" % port
    d = dripd_factory(config={"webhooks": [{"url": url, "secret": "s"}]})
    src = make_file(os.path.join(d.dir, "w.bin"), 100)
    mid, jid = upload(d, src, "/w/w.bin")
    assert d.wait_job(jid)["state"] == "done"
    # the first two deliveries are refused (hook_server), so failures are logged too
    d.wait_log(r"webhook http://\*\*\*@127\.0\.0\.1:%d/hook\?\*\*\*: event .*retrying" % port, timeout=30)
    wait_until(lambda: any(json.loads(b)["job_id"] == jid for _, b in list(_Hooks.got)), 30,
               "a delivery")
    log = d.log_text()
    assert "hookpass" not in log and "SECRETKEY" not in log and "hookuser" not in log, \
        [l for l in log.splitlines() if "hook" in l][:5]
    # and an invalid URL in a config file is reported without its secrets
    bad = dict(d.config)
    bad["webhooks"] = [{"url": "ftp://u:topsecret@example.com/x?k=alsosecret", "secret": "s"}]
    d.write_config(bad)
    r = subprocess.run([DRIPD, "-c", d.config_path, "--check"], capture_output=True, text=True)
    assert r.returncode == 1 and "webhooks" in r.stderr + r.stdout, r
    assert "topsecret" not in r.stderr + r.stdout and "alsosecret" not in r.stderr + r.stdout, r

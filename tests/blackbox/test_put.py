"""PUT /v1/files/{path}: raw-body uploads into the caller's tree, against the
real daemon (curl and raw sockets). Checks the 202 answer, the durable job
row in the catalog, the spool bytes, and every refusal (401/400/409/413/
503/507) plus the clean-up of partial spool files."""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import time

import pytest

from conftest import make_file, same_file, wait_until
from httpraw import Conn, request

TOKEN = {"Authorization": "Bearer alice-secret-token"}


def spool_files(d):
    p = os.path.join(d.data_dir, "spool")
    return sorted(os.listdir(p)) if os.path.isdir(p) else []


def db_row(d, sql, args=()):
    db = sqlite3.connect(os.path.join(d.data_dir, "catalog.db"), timeout=10)
    try:
        db.row_factory = sqlite3.Row
        r = db.execute(sql, args).fetchone()
        return dict(r) if r else None
    finally:
        db.close()


def conn(d):
    return Conn(d.host, d.port, 20)


def check_stored(d, doc, local):
    """The upload's bytes are what we sent: in the spool file while the job
    waits, or through GET .../content once the pipeline has taken it."""
    job = db_row(d, "SELECT * FROM jobs WHERE id = ?", (doc["job"]["id"],))
    assert job is not None, "no job row"
    # the 202 tells the same creation time the catalog keeps
    media = d.json("GET", "/v1/media/" + doc["media"]["id"], expect=200)[1]
    assert media["created_at"] == doc["media"]["created_at"], (media, doc)
    assert job["kind"] == "upload" and job["media_id"] == doc["media"]["id"]
    spool = job.get("spool_path")
    if spool and os.path.exists(spool) and job["state"] == "queued":
        assert same_file(spool, local), "spool bytes differ from the upload"
        return
    done = d.wait_job(doc["job"]["id"])
    assert done["state"] == "done", done
    out = local + ".back"
    st, _, body = d.curl(d.url("/v1/media/%s/content" % doc["media"]["id"]))
    assert st == 200
    with open(out, "wb") as f:
        f.write(body)
    assert same_file(out, local)


def test_put_1mib_roundtrip(dripd, tmpdir_path):
    f = make_file(os.path.join(tmpdir_path, "one.bin"), 1 << 20)
    st, h, body = dripd.curl("-T", f, "-H", "Content-Type: image/png",
                             dripd.url("/v1/files/photos/one.bin"))
    assert st == 202, body
    doc = json.loads(body)
    assert set(doc) == {"media", "job"}
    m, j = doc["media"], doc["job"]
    assert m["path"] == "/photos/one.bin" and m["name"] == "one.bin"
    assert m["size"] == 1 << 20 and m["owner"] == "alice" and m["state"] == "queued"
    assert m["content_type"] == "image/png"
    assert j["kind"] == "upload" and j["state"] == "queued" and j["media_id"] == m["id"]
    assert h["location"] == "/v1/jobs/" + j["id"]
    media = db_row(dripd, "SELECT * FROM media WHERE id = ?", (m["id"],))
    assert media["path"] == "/photos/one.bin" and media["size"] == 1 << 20
    assert media["content_type"] == "image/png" and media["owner"] == "alice"
    check_stored(dripd, doc, f)


def test_put_40mib_streams_in_bounded_memory(dripd, tmpdir_path):
    """Larger than the input bound and several write-back windows: the bytes
    still arrive intact, and the http worker's memory does not grow with
    the upload."""
    f = make_file(os.path.join(tmpdir_path, "forty.bin"), 40 << 20)
    pid = dripd.worker("http")
    with open("/proc/%d/clear_refs" % pid, "w") as cr:
        cr.write("5")
    st, doc = dripd.put_file(f, "/big/forty.bin")
    assert st == 202, doc
    assert doc["media"]["size"] == 40 << 20
    with open("/proc/%d/status" % pid) as s:
        hwm_kib = int(re.search(r"VmHWM:\s+(\d+)", s.read()).group(1))
    if not re.search(r"address|thread|memory", os.path.basename(os.environ.get("DRIPD_BIN", ""))):
        # (sanitizer builds carry shadow memory; the bound is for release builds)
        assert hwm_kib < 24 << 10, "http worker peak RSS %d KiB during a 40 MiB upload" % hwm_kib
    check_stored(dripd, doc, f)


def test_put_empty_file(dripd):
    st, _, body = dripd.curl("-X", "PUT", "--data-binary", "", dripd.url("/v1/files/empty.txt"))
    assert st == 202, body
    assert json.loads(body)["media"]["size"] == 0


def test_small_put_body_rides_in_its_job_row(dripd_factory, tmpdir_path):
    """A body of at most 16 KiB (Content-Length) is committed in its job's
    row, not spooled: with the pipeline stopped, the 202 leaves no spool
    file and the bytes in job_bodies; a larger one, and a chunked one, get a
    spool file. The pipeline killed while it holds the small job (claimed
    with its bytes, held in notify by a test hook) does the job again from
    the catalog after its restart: the bytes come back intact, and the
    catalog's copy is gone once it is done."""
    import signal
    d = dripd_factory(config={"supervisor": {"heartbeat_timeout": "60s"},
                              "pipeline": {"test_notify_delay": "1500ms"}})
    small = make_file(os.path.join(tmpdir_path, "s.bin"), 16384)
    big = make_file(os.path.join(tmpdir_path, "b.bin"), 16385)
    pl = d.worker("pipeline")
    os.kill(pl, signal.SIGSTOP)
    docs = {}
    try:
        for name, f, extra in (("s", small, ()), ("b", big, ()),
                               ("c", small, ("-H", "Transfer-Encoding: chunked"))):
            st, _, body = d.curl("-T", f, *extra, d.url("/v1/files/in/%s.bin" % name))
            assert st == 202, body
            docs[name] = json.loads(body)
        row = db_row(d, "SELECT spool_path, (SELECT length(body) FROM job_bodies WHERE job_id = id)"
                        " AS n FROM jobs WHERE id = ?", (docs["s"]["job"]["id"],))
        assert row == {"spool_path": None, "n": 16384}, row
        for name in ("b", "c"):
            row = db_row(d, "SELECT spool_path, (SELECT count(*) FROM job_bodies WHERE job_id = id)"
                            " AS n FROM jobs WHERE id = ?", (docs[name]["job"]["id"],))
            assert row["n"] == 0 and row["spool_path"], row
        assert len(spool_files(d)) == 2, spool_files(d)
    finally:
        os.kill(pl, signal.SIGCONT)
    wait_until(lambda: db_row(d, "SELECT state FROM jobs WHERE id = ?",
                              (docs["s"]["job"]["id"],))["state"] == "running", 30,
               "the pipeline to claim the small job")
    os.kill(pl, signal.SIGKILL)
    wait_until(lambda: (d.workers("pipeline") or [pl])[0] != pl, 30, "a new pipeline worker")
    for name, f in (("s", small), ("b", big), ("c", small)):
        check_stored(d, docs[name], f)
    row = db_row(d, "SELECT state, attempts, (SELECT count(*) FROM job_bodies WHERE job_id = id)"
                    " AS n FROM jobs WHERE id = ?", (docs["s"]["job"]["id"],))
    assert row == {"state": "done", "attempts": 0, "n": 0}, row
    assert spool_files(d) == []
    work = os.path.join(d.data_dir, "work")
    assert os.listdir(work) == [], os.listdir(work)


def test_put_chunked_body(dripd, tmpdir_path):
    f = make_file(os.path.join(tmpdir_path, "chunked.bin"), 300000)
    st, _, body = dripd.curl("-T", f, "-H", "Transfer-Encoding: chunked",
                             dripd.url("/v1/files/c/chunked.bin"))
    assert st == 202, body
    doc = json.loads(body)
    assert doc["media"]["size"] == 300000
    check_stored(dripd, doc, f)


def test_put_needs_a_valid_token(dripd, tmpdir_path):
    f = make_file(os.path.join(tmpdir_path, "x.bin"), 1000)
    st, h, body = dripd.curl("-T", f, dripd.url("/v1/files/x.bin"), user=None)
    assert st == 401
    assert h["www-authenticate"].startswith("Bearer")
    assert json.loads(body)["status"] == 401
    st, h, body = dripd.curl("-T", f, "-H", "Authorization: Bearer not-the-token",
                             dripd.url("/v1/files/x.bin"), user=None)
    assert st == 401
    assert 'error="invalid_token"' in h["www-authenticate"]
    assert spool_files(dripd) == []
    assert db_row(dripd, "SELECT count(*) AS n FROM media")["n"] == 0


def test_put_409_when_path_taken(dripd, tmpdir_path):
    f = make_file(os.path.join(tmpdir_path, "dup.bin"), 5000)
    st, first = dripd.put_file(f, "/d/dup.bin")
    assert st == 202
    dripd.wait_job(first["job"]["id"])  # the pipeline is done with its spool file
    n_spool = len(spool_files(dripd))
    st, doc = dripd.put_file(f, "/d/dup.bin")
    assert st == 409 and doc["status"] == 409
    assert len(spool_files(dripd)) == n_spool  # nothing left behind
    # another user's tree is separate
    assert dripd.put_file(f, "/d/dup.bin", user="bob")[0] == 202


def test_put_409_before_or_after_the_body(dripd, tmpdir_path):
    """A small body without Expect: 100-continue is checked by the commit
    only (it came with the head), and gets the same 409 and detail; with
    Expect, or a body over 64 KiB, the 409 comes before any body byte."""
    f = make_file(os.path.join(tmpdir_path, "t.bin"), 10)
    st, first = dripd.put_file(f, "/t/a.bin")
    assert st == 202
    dripd.wait_job(first["job"]["id"])  # the pipeline is done with its spool file
    taken = "/t/a.bin already exists (send If-Match"
    c = conn(dripd)
    c.send(request("PUT", "/v1/files/t/a.bin", TOKEN, b"x" * 4096))
    r = c.read_response()
    assert r.status == 409 and taken in json.loads(r.body)["detail"], r
    c.send(request("PUT", "/v1/files/t/a.bin/in.bin", TOKEN, b"x" * 4096))  # below a file
    r = c.read_response()
    assert r.status == 409 and b"is inside a path that is a file" in r.body, r
    for size, expect in ((4096, True), ((64 << 10) + 1, False)):
        c = conn(dripd)
        head = dict(TOKEN, **{"Content-Length": str(size)})
        if expect:
            head["Expect"] = "100-continue"
        c.send(request("PUT", "/v1/files/t/a.bin", head))  # the head only
        r = c.read_response()
        assert r.status == 409 and taken in json.loads(r.body)["detail"], (size, r)
        assert b"100 Continue" not in r.raw_head
    assert spool_files(dripd) == []  # nothing left behind


@pytest.mark.parametrize("target", [
    "/v1/files/a/../b.txt",
    "/v1/files/..",
    "/v1/files//a.txt",
    "/v1/files/a//b.txt",
    "/v1/files/a/./b.txt",
    "/v1/files/a/",
    "/v1/files/",
    "/v1/files/a%00b.txt",
    "/v1/files/a%01b.txt",
    "/v1/files/a%7Fb.txt",
    "/v1/files/%FF%FE.txt",
    "/v1/files/%C0%AF.txt",
    "/v1/files/%ED%A0%80.txt",
    "/v1/files/a%2F..%2Fb.txt",
    "/v1/files/bad%zzescape",
    "/v1/files/" + "x" * 256,
])
def test_put_hostile_paths_400(dripd, target):
    c = conn(dripd)
    c.send(request("PUT", target, TOKEN, b"hello"))
    r = c.read_response()
    assert r.status == 400, (target, r)
    assert r.headers["content-type"] == "application/problem+json"
    assert spool_files(dripd) == []


def test_put_raw_control_char_in_target_400(dripd):
    c = conn(dripd)
    c.send(b"PUT /v1/files/a\x01b HTTP/1.1\r\nAuthorization: Bearer alice-secret-token\r\n"
           b"Content-Length: 1\r\n\r\nx")
    assert c.read_response().status == 400


def test_put_413_early_without_reading_body(dripd_factory):
    d = dripd_factory(config={"limits": {"max_upload_size": "1MiB"}})
    c = conn(d)
    c.send(request("PUT", "/v1/files/big.bin",
                   dict(TOKEN, **{"Content-Length": str(50 << 20), "Expect": "100-continue"})))
    r = c.read_response()
    assert r.status == 413, r  # first thing on the wire: no "100 Continue"
    assert json.loads(r.body)["status"] == 413
    assert c.wait_closed(5)
    assert b"100 Continue" not in r.raw_head
    assert spool_files(d) == []
    # curl sees the same, and does not send the body
    st, _, _ = d.curl("-H", "Content-Length: %d" % (50 << 20), "-H", "Expect: 100-continue",
                      "-X", "PUT", "--data-binary", "@/dev/null", d.url("/v1/files/big2.bin"))
    assert st == 413


def test_put_413_while_streaming_chunked(dripd_factory, tmpdir_path):
    d = dripd_factory(config={"limits": {"max_upload_size": "256KiB"}})
    f = make_file(os.path.join(tmpdir_path, "over.bin"), 1 << 20)
    st, _, body = d.curl("-T", f, "-H", "Transfer-Encoding: chunked", d.url("/v1/files/over.bin"))
    assert st == 413, body
    wait_until(lambda: spool_files(d) == [], 10, "the partial spool file to go")
    # exactly at the limit is fine
    g = make_file(os.path.join(tmpdir_path, "at.bin"), 256 << 10)
    st, _, body = d.curl("-T", g, "-H", "Transfer-Encoding: chunked", d.url("/v1/files/at.bin"))
    assert st == 202, body


def test_put_100_continue_accepted(dripd):
    c = conn(dripd)
    body = os.urandom(200000)
    c.send(request("PUT", "/v1/files/cont.bin",
                   dict(TOKEN, **{"Content-Length": str(len(body)), "Expect": "100-continue"})))
    first = c.read_response()
    assert first.status == 100
    c.send(body)
    r = c.read_response()
    assert r.status == 202, r
    assert json.loads(r.body)["media"]["size"] == len(body)


def test_client_disconnect_mid_body_removes_spool(dripd):
    c = conn(dripd)
    c.send(request("PUT", "/v1/files/cut.bin", dict(TOKEN, **{"Content-Length": str(4 << 20)})))
    c.send(os.urandom(300 << 10))
    wait_until(lambda: spool_files(dripd), 10, "the spool file")
    c.close()
    wait_until(lambda: spool_files(dripd) == [], 10, "the partial spool file to be removed")
    assert db_row(dripd, "SELECT count(*) AS n FROM media")["n"] == 0


def test_queue_full_503_with_retry_after(dripd_factory, tmpdir_path):
    # The pipeline must not drain the queue during the test: a long store
    # delay keeps the first job unfinished (it counts as queued work).
    d = dripd_factory(config={"pipeline": {"queue_limit": 1, "test_store_delay": "60s"}})
    f = make_file(os.path.join(tmpdir_path, "q.bin"), 10000)
    st, doc = d.put_file(f, "/q1.bin")
    assert st == 202, doc
    st, h, body = d.curl("-T", f, d.url("/v1/files/q2.bin"))
    assert st == 503, body
    assert h["retry-after"] == "5"
    assert json.loads(body)["status"] == 503
    # refused before the body: with Expect the client never gets 100
    c = conn(d)
    c.send(request("PUT", "/v1/files/q3.bin",
                   dict(TOKEN, **{"Content-Length": "100000", "Expect": "100-continue"})))
    r = c.read_response()
    assert r.status == 503 and r.headers["retry-after"] == "5"
    assert len(spool_files(d)) <= 1  # only the accepted upload's file (if still spooled)


def test_sustained_overload_waits_then_503_with_retry_after(dripd_factory, tmpdir_path):
    """Issue 15: at the queue limit an upload waits, its body unread, for
    the pipeline to drain a place (so the intake runs at the pipeline's
    pace), and one that waited too long gets 503 + Retry-After; the queue
    stays bounded whatever the load."""
    import concurrent.futures
    limit, clients, total = 3, 6, 36
    d = dripd_factory(config={"pipeline": {
        "queue_limit": limit, "test_store_delay": "100ms",
        "upload": {"encrypt": {"concurrency": 1, "max_demand": 1, "min_demand": 1},
                   "store": {"concurrency": 1, "max_demand": 1, "min_demand": 1}}}})
    f = make_file(os.path.join(tmpdir_path, "o.bin"), 2000)
    results, deepest = [], [0]

    def depth():
        return db_row(d, "SELECT count(*) AS n FROM jobs WHERE state IN ('queued', 'running')")["n"]

    def client(c):
        for i in range(total // clients):
            t0 = time.monotonic()
            st, h, body = d.curl("-T", f, d.url("/v1/files/o/%d-%d.bin" % (c, i)))
            results.append((st, h, body, time.monotonic() - t0))
            deepest[0] = max(deepest[0], depth())

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    ok = [r for r in results if r[0] == 202]
    busy = [r for r in results if r[0] == 503]
    assert len(ok) + len(busy) == total, [r[:1] + r[2:3] for r in results if r[0] not in (202, 503)]
    # the queue is bounded: at most the limit plus the uploads let in at once
    assert deepest[0] <= limit + clients, deepest
    # more than the limit got in: the ones that waited for a place
    assert len(ok) > limit, (len(ok), len(busy))
    st, _h, body = d.curl(d.url("/metrics"), user=None)
    waited = int(re.search(r"^dripd_uploads_waited_total (\d+)$", body.decode(), re.M).group(1))
    assert waited > 0
    for st, h, body, _t in busy:
        assert 1 <= int(h["retry-after"]) <= 60, h
        assert "waited" in json.loads(body)["detail"]
    for st, h, body, _t in ok:
        assert d.wait_job(json.loads(body)["job"]["id"], timeout=60)["state"] == "done"


def _can_mount_tmpfs(path):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", path],
                       capture_output=True)
    return r.returncode == 0


def test_put_disk_full_507(dripd_factory, tmpdir_path):
    d = dripd_factory(start=False)
    spool = os.path.join(d.data_dir, "spool")
    os.makedirs(spool, exist_ok=True)
    assert _can_mount_tmpfs(spool), \
        "cannot mount a 4 MiB tmpfs on the spool dir: the disk-full test needs root (as make deps)"
    try:
        os.chmod(spool, 0o700)
        d.start()
        f = make_file(os.path.join(tmpdir_path, "big.bin"), 8 << 20)
        st, _, body = d.curl("-T", f, d.url("/v1/files/full.bin"))
        assert st == 507, body
        assert json.loads(body)["status"] == 507
        wait_until(lambda: spool_files(d) == [], 10, "the partial spool file to go")
        # space is back: a small upload works
        g = make_file(os.path.join(tmpdir_path, "small.bin"), 1000)
        assert d.put_file(g, "/small.bin")[0] == 202
    finally:
        d.stop()
        subprocess.run(["umount", "-l", spool], capture_output=True)


def test_spool_orphans_swept_at_start(dripd_factory):
    """Issue 17 item 4: after kill -9 of the http worker mid-PUT, the
    .part of the cut upload stayed in the spool for ever (6.4 MB in the
    report), and so did spool files no session or job names. The http
    worker removes unreferenced, unused spool files when it starts; a tus
    session's file and a live upload's file stay."""
    import signal
    import socket
    from conftest import wait_until
    d = dripd_factory()
    spool = os.path.join(d.data_dir, "spool")
    # a live tus session: its file must survive
    st, h, _ = d.curl("-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Length: 10",
                      "-H", "Upload-Metadata: filename YS5iaW4=", d.url("/v1/uploads"))
    assert st == 201, st
    # (a creation makes no file: its first PATCH does)
    st, _, _ = d.curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                      "-H", "Content-Type: application/offset+octet-stream", "--data-binary",
                      "abcde", h["location"])
    assert st == 204, st
    tus_file = os.path.join(spool, h["location"].rsplit("/", 1)[1] + ".part")
    assert os.path.exists(tus_file)
    # an orphan nobody names (a lost session, a crashed build)
    orphan = os.path.join(spool, "01ARZ3NDEKTSV4RRFFQ69G5FAV.part")
    with open(orphan, "wb") as f:
        f.write(b"o" * 1000)
    # a PUT cut by kill -9 of the http worker
    s = socket.create_connection((d.host, d.port))
    s.sendall(b"PUT /v1/files/cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              b"Content-Length: %d\r\n\r\n" % (d.token().encode(), 20 << 20) + b"x" * (6 << 20))

    def cut_part():
        names = [n for n in os.listdir(spool) if n.endswith(".part")]
        big = [n for n in names if os.path.getsize(os.path.join(spool, n)) >= (6 << 20)]
        return big[0] if big else None
    part = wait_until(cut_part, 20, "the cut upload's bytes in the spool")
    old = d.worker("http")
    os.kill(old, signal.SIGKILL)
    s.close()
    # one look per try: the list may be empty between the kill and the restart
    wait_until(lambda: (d.workers("http") or [old])[0] != old, 30, "a new http worker")
    wait_until(lambda: d.curl(d.url("/healthz"), user=None)[0] == 200, 30, "the new worker serving")
    d.wait_log(r"spool: removed 2 unreferenced", timeout=30)
    left = sorted(os.listdir(spool))
    assert part not in left and os.path.basename(orphan) not in left, left
    assert os.path.basename(tus_file) in left, left
    # the session still works
    loc = h["location"]  # absolute: http://host/v1/uploads/ID
    st, h2, _ = d.curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 5",
                       "-H", "Content-Type: application/offset+octet-stream",
                       "--data-binary", "56789", loc)
    assert st == 204 and "upload-job" in h2, st

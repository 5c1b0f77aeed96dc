"""The tus 1.0.0 endpoint /v1/uploads against the real daemon: raw HTTP for
the protocol edges (interrupted PATCH, checksums, offsets), and
tus-js-client 4.3.1 for a real resumable upload."""
import base64
import email.utils
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time

import pytest

from conftest import ROOT, make_file, wait_until

NODE_DIR = os.path.join(ROOT, "tests", "node")
OCTET = "application/offset+octet-stream"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def meta(**kv):
    return ",".join("%s %s" % (k, b64(v)) for k, v in kv.items())


def req(d, method, path, headers=None, body=None, user="alice", tus=True):
    h = {}
    if tus:
        h["Tus-Resumable"] = "1.0.0"
    if user:
        h["Authorization"] = "Bearer " + d.token(user)
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None}
    c = http.client.HTTPConnection(d.host, d.port, timeout=60)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def create(d, length=None, defer=False, user="alice", expect=201, body=None, **md):
    md.setdefault("filename", "f.bin")
    h = {"Upload-Metadata": meta(**md)}
    if defer:
        h["Upload-Defer-Length"] = "1"
    else:
        h["Upload-Length"] = str(length)
    if body is not None:
        h["Content-Type"] = OCTET
    st, hd, b = req(d, "POST", "/v1/uploads", h, body=body, user=user)
    assert st == expect, (st, b)
    if st == 201:
        # absolute, tusd's way: the host the client addressed (trusted_proxies aside)
        m = re.fullmatch(r"http://%s(/v1/uploads/[0-9A-HJKMNP-TV-Z]{26})" % re.escape(d.addr),
                         hd["location"])
        assert m, hd
        return m.group(1), hd, b
    return hd.get("location"), hd, b


def patch(d, loc, offset, data, user="alice", headers=None):
    h = {"Content-Type": OCTET, "Upload-Offset": str(offset)}
    h.update(headers or {})
    return req(d, "PATCH", loc, h, body=data, user=user)


def head(d, loc, user="alice"):
    return req(d, "HEAD", loc, user=user)


def offset_of(d, loc):
    st, h, _ = head(d, loc)
    assert st == 200, st
    return int(h["upload-offset"])


def spool_of(d, loc):
    return os.path.join(d.data_dir, "spool", loc.rsplit("/", 1)[1] + ".part")



def catalog_row(d, sql, *args):
    """One row of the catalog as a dict (sqlite3 CLI, read-only), or None."""
    q = sql
    for a in args:
        q = q.replace("?", "'%s'" % str(a).replace("'", "''"), 1)
    r = subprocess.run(["sqlite3", "-json", "file:%s?mode=ro" % os.path.join(d.data_dir, "catalog.db"),
                        q], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout) if r.stdout.strip() else []
    return rows[0] if rows else None

def uploaded_bytes(d, media_id, job_id, user="alice"):
    """The bytes dripd holds for an accepted upload. With the media API and
    the pipeline: wait for the upload job, then download the content. On a
    build without them (no /v1/jobs route): the spool file named in the
    jobs table, or the cache entry the pipeline filled."""
    st, _, _ = d.curl(d.url("/v1/jobs/" + job_id), user=user)
    if st == 200:
        job = d.wait_job(job_id, user=user)
        assert job["state"] == "done", job
        st, _, body = d.curl(d.url("/v1/media/%s/content" % media_id), user=user)
        assert st == 200, "content of %s: %s %r" % (media_id, st, body[:200])
        return body
    db = os.path.join(d.data_dir, "catalog.db")
    r = subprocess.run(["sqlite3", db, "SELECT spool_path FROM jobs WHERE id='%s'" % job_id],
                       capture_output=True, text=True)
    for p in (r.stdout.strip(), os.path.join(d.data_dir, "cache", media_id)):
        if p and os.path.isfile(p):
            with open(p, "rb") as f:
                return f.read()
    raise AssertionError("no bytes found for media %s (job %s)" % (media_id, job_id))


def assert_problem(st, h, body, status):
    assert st == status, (st, body)
    if body:
        assert h["content-type"].startswith("application/problem+json"), h
        assert json.loads(body)["status"] == status


# ---- discovery and protocol guard ----

def test_options_without_auth(dripd):
    st, h, _ = req(dripd, "OPTIONS", "/v1/uploads/01JD2Z8Q7W5N3K4M6P8R0T2V4X", user=None, tus=False,
                   headers={"Origin": "http://" + dripd.addr,
                            "Access-Control-Request-Method": "PATCH"})
    assert st in (200, 204)
    assert h["tus-resumable"] == "1.0.0"
    assert h["tus-version"] == "1.0.0"
    assert set(h["tus-extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "termination", "checksum",
        "expiration", "concatenation"}
    assert int(h["tus-max-size"]) > 0
    assert set(h["tus-checksum-algorithm"].split(",")) == {"sha1", "sha256"}
    assert h["access-control-allow-origin"] == "http://" + dripd.addr
    assert "PATCH" in h["access-control-allow-methods"]
    assert "upload-offset" in h["access-control-allow-headers"].lower()
    exposed = h["access-control-expose-headers"].lower()
    for name in ("upload-offset", "location", "upload-length", "tus-resumable", "upload-job"):
        assert name in exposed
    # a foreign origin is not allowed (cors.origins: test_proxy.py)
    st, h, _ = req(dripd, "OPTIONS", "/v1/uploads", user=None, tus=False,
                   headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in h
    st, h, _ = req(dripd, "OPTIONS", "/v1/uploads", user=None, tus=False,
                   headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "PATCH"})
    assert st == 403 and "access-control-allow-origin" not in h


def test_tus_resumable_required(dripd):
    st, h, b = req(dripd, "POST", "/v1/uploads", {"Upload-Length": "3",
                                                  "Upload-Metadata": meta(filename="x")}, tus=False)
    assert_problem(st, h, b, 412)
    assert h["tus-version"] == "1.0.0"
    st, h, b = req(dripd, "POST", "/v1/uploads", {"Tus-Resumable": "0.2.2", "Upload-Length": "3",
                                                  "Upload-Metadata": meta(filename="x")}, tus=False)
    assert st == 412
    st, _, _ = req(dripd, "POST", "/v1/uploads", {"Upload-Length": "3"}, user=None)
    assert st == 401


# ---- the main path: create, interrupted PATCH, HEAD, resume, finish ----

def test_interrupted_patch_resumes_and_finishes(dripd, tmpdir_path):
    src = make_file(os.path.join(tmpdir_path, "big.bin"), 3 * 1024 * 1024 + 17)
    data = open(src, "rb").read()
    loc, h, _ = create(dripd, len(data), filename="big.bin", folder="/tus/a", filetype="video/mp4")
    exp = email.utils.parsedate_to_datetime(h["upload-expires"])
    assert exp.timestamp() > time.time()
    assert h["upload-expires"].endswith(" GMT")
    st, h, _ = head(dripd, loc)
    assert st == 200 and h["upload-offset"] == "0" and h["upload-length"] == str(len(data))
    assert h["cache-control"] == "no-store"
    assert h["upload-metadata"] == meta(filename="big.bin", folder="/tus/a", filetype="video/mp4")

    # a PATCH whose client dies halfway through the body
    half = 1024 * 1024 + 5
    s = socket.create_connection((dripd.host, dripd.port))
    s.sendall(("PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
               "Tus-Resumable: 1.0.0\r\nContent-Type: %s\r\nUpload-Offset: 0\r\n"
               "Content-Length: %d\r\n\r\n" % (loc, dripd.addr, dripd.token(), OCTET, len(data))
               ).encode() + data[:half])
    s.close()
    # what arrived before the cut is durable and reported
    wait_until(lambda: offset_of(dripd, loc) == half, 15, "HEAD to show the received offset")
    assert os.path.getsize(spool_of(dripd, loc)) >= half

    # a resume at a stale offset is refused
    st, h, b = patch(dripd, loc, 0, data[:10])
    assert_problem(st, h, b, 409)
    # resume in two more PATCHes
    mid = 2 * 1024 * 1024
    st, h, b = patch(dripd, loc, half, data[half:mid])
    assert st == 204, b
    assert h["upload-offset"] == str(mid)
    assert "upload-job" not in h and "upload-expires" in h
    st, h, b = patch(dripd, loc, mid, data[mid:])
    assert st == 204, b
    assert h["upload-offset"] == str(len(data))
    job, media = h["upload-job"], h["upload-media"]
    assert re.fullmatch(r"[0-9A-Z]{26}", job) and re.fullmatch(r"[0-9A-Z]{26}", media)
    doc = catalog_row(dripd, "SELECT kind, media_id, owner FROM jobs WHERE id = ?", job)
    assert doc == {"kind": "upload", "media_id": media, "owner": "alice"}
    doc = catalog_row(dripd, "SELECT path, size, content_type FROM media WHERE id = ?", media)
    assert doc == {"path": "/tus/a/big.bin", "size": len(data), "content_type": "video/mp4"}
    assert uploaded_bytes(dripd, media, job) == data
    # HEAD of a finished upload names its job; a retried last PATCH gets the same answer
    st, h, _ = head(dripd, loc)
    assert st == 200 and h["upload-offset"] == str(len(data)) and h["upload-job"] == job
    st, h, _ = patch(dripd, loc, len(data), b"")
    assert st == 204 and h["upload-job"] == job



def test_big_patches_keep_every_byte(dripd):
    """PATCHes long enough for spool_writeback to drop windows from the
    page cache (each 8 MiB window handed to writeback, the one 16 MiB
    behind waited for and dropped), the second starting at an unaligned
    offset of the file: what is stored is every byte sent, in order."""
    data = os.urandom(40 * 1024 * 1024 + 17)
    first = 25 * 1024 * 1024 + 5
    loc, _, _ = create(dripd, len(data), filename="windows.bin")
    st, h, b = patch(dripd, loc, 0, data[:first])
    assert st == 204 and h["upload-offset"] == str(first), b
    st, h, b = patch(dripd, loc, first, data[first:])
    assert st == 204 and h["upload-offset"] == str(len(data)), b
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == data

def test_checksum(dripd):
    data = os.urandom(100_000)
    loc, _, _ = create(dripd, len(data), filename="ck.bin")
    part = data[:60_000]
    good1 = "sha1 " + b64(hashlib.sha1(part).digest())
    bad = "sha256 " + b64(hashlib.sha256(b"something else").digest())
    st, h, b = patch(dripd, loc, 0, part, headers={"Upload-Checksum": bad})
    assert_problem(st, h, b, 460)
    assert offset_of(dripd, loc) == 0
    st, h, b = patch(dripd, loc, 0, part, headers={"Upload-Checksum": "md5 " + b64(b"x" * 16)})
    assert_problem(st, h, b, 400)
    st, h, b = patch(dripd, loc, 0, part, headers={"Upload-Checksum": "sha1 !!!"})
    assert_problem(st, h, b, 400)
    assert offset_of(dripd, loc) == 0
    st, h, b = patch(dripd, loc, 0, part, headers={"Upload-Checksum": good1})
    assert st == 204, b
    assert h["upload-offset"] == "60000"
    rest = data[60_000:]
    st, h, b = patch(dripd, loc, 60_000, rest,
                     headers={"Upload-Checksum": "sha256 " + b64(hashlib.sha256(rest).digest())})
    assert st == 204, b
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == data


def test_request_errors(dripd):
    loc, _, _ = create(dripd, 10, filename="e.bin")
    st, h, b = req(dripd, "PATCH", loc, {"Content-Type": "application/octet-stream",
                                         "Upload-Offset": "0"}, body=b"12345")
    assert_problem(st, h, b, 415)
    st, h, b = req(dripd, "PATCH", loc, {"Content-Type": OCTET}, body=b"12345")
    assert_problem(st, h, b, 400)
    st, h, b = patch(dripd, loc, 3, b"12345")
    assert_problem(st, h, b, 409)
    st, h, b = patch(dripd, loc, 0, b"x" * 11)
    assert_problem(st, h, b, 413)
    assert offset_of(dripd, loc) == 0
    # creation errors
    _, _, b = create(dripd, 5, expect=400, filename="")
    st, h, b = req(dripd, "POST", "/v1/uploads", {"Upload-Length": "5"})
    assert_problem(st, h, b, 400)
    _, _, b = create(dripd, 5, expect=400, filename="../x")
    _, _, b = create(dripd, 5, expect=400, filename="a/b")
    _, _, b = create(dripd, 5, expect=400, filename="ok", folder="no-slash/../x")
    st, h, b = req(dripd, "POST", "/v1/uploads", {"Upload-Length": "-1",
                                                  "Upload-Metadata": meta(filename="x")})
    assert_problem(st, h, b, 400)
    st, h, b = req(dripd, "POST", "/v1/uploads", {"Upload-Length": "5", "Upload-Defer-Length": "1",
                                                  "Upload-Metadata": meta(filename="x")})
    assert_problem(st, h, b, 400)
    st, h, b = req(dripd, "POST", "/v1/uploads", {"Upload-Length": "5",
                                                  "Upload-Metadata": "filename not-base64!"})
    assert_problem(st, h, b, 400)
    st, h, b = req(dripd, "HEAD", "/v1/uploads/not-an-id")
    assert st == 404
    st, h, b = req(dripd, "HEAD", "/v1/uploads/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert st == 404


def test_path_taken_and_size_limit(dripd_factory):
    d = dripd_factory(config={"limits": {"max_upload_size": "1MiB"}})
    st, h, _ = req(d, "OPTIONS", "/v1/uploads", user=None, tus=False)
    assert h["tus-max-size"] == str(1024 * 1024)
    _, _, b = create(d, 1024 * 1024 + 1, expect=413, filename="big")
    # deferred length: the limit holds while streaming and when the length comes
    loc, _, _ = create(d, defer=True, filename="d")
    st, h, b = patch(d, loc, 0, b"x" * 100, headers={"Upload-Length": str(1024 * 1024 + 1)})
    assert_problem(st, h, b, 413)
    # a path taken by a finished upload is refused at creation
    loc, _, _ = create(d, 3, filename="taken.txt")
    st, h, _ = patch(d, loc, 0, b"abc")
    assert st == 204 and "upload-job" in h
    create(d, 3, expect=409, filename="taken.txt")
    create(d, 3, expect=201, filename="taken.txt", user="bob")


def test_creations_and_finishes_share_the_group_commit(dripd):
    """Creations and finishes go through ingest's group commit, as PUT
    bodies do (issue 15): the log counts them in its commits. 12 uploads
    at once, each one POST and one PATCH: all durable, all served."""
    import threading
    d = dripd
    after = d.log_size()
    bodies = [os.urandom(4096) for _ in range(12)]
    res = [None] * len(bodies)

    def one(i):
        loc, _, _ = create(d, len(bodies[i]), filename="g%d.bin" % i, folder="/group")
        st, h, _ = patch(d, loc, 0, bodies[i])
        res[i] = (st, h)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, (st, h) in enumerate(res):
        assert st == 204 and int(h["upload-offset"]) == 4096, (st, h)
        assert uploaded_bytes(d, h["upload-media"], h["upload-job"]) == bodies[i]
    with open(d.log_path, "rb") as f:
        f.seek(after)
        log = f.read().decode(errors="replace")
    # 12 creations + 12 finishes; nothing else was uploaded meanwhile
    assert sum(int(n) for n in re.findall(r"ingest: committed (\d+) uploads", log)) == 24, log[-3000:]


def ingest_counters(d):
    st, _, body = d.curl(d.url("/metrics"), user=None)
    assert st == 200
    text = body.decode()
    return tuple(int(re.search(r"^%s (\d+)$" % n, text, re.M).group(1))
                 for n in ("dripd_ingest_rounds_total", "dripd_ingest_round_requests_total"))


@pytest.mark.parametrize("cwu", [False, True])
def test_concurrent_finals_share_one_commit_round(dripd_factory, cwu):
    """Issue 15: N tus finals in flight at once are made durable by ONE
    round of ingest's group commit (one sync of the spool, one catalog
    commit), the POST + PATCH form (tus-js-client's default; each PATCH
    goes on without waiting for its creation's lazy commit) and
    creation-with-upload alike; every 204 names its job and the bytes
    are served. The test hook makes the round wait until all N are in,
    so the count is exact on any machine."""
    import threading
    n = 12
    d = dripd_factory(env={"DRIPD_TEST_INGEST_GATHER": str(n)})
    rounds0, reqs0 = ingest_counters(d)
    bodies = [os.urandom(4096) for _ in range(n)]
    res = [None] * n

    def one(i):
        name = "r%d-%d.bin" % (cwu, i)
        if cwu:
            _, h, _ = create(d, 4096, body=bodies[i], filename=name, folder="/rounds")
            res[i] = (204, h)
        else:
            loc, _, _ = create(d, 4096, filename=name, folder="/rounds")
            st, h, _ = patch(d, loc, 0, bodies[i])
            res[i] = (st, h)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for i, r in enumerate(res):
        assert r is not None, i
        st, h = r
        assert st == 204 and int(h["upload-offset"]) == 4096 and "upload-job" in h, (st, h)
    rounds1, reqs1 = ingest_counters(d)
    assert (rounds1 - rounds0, reqs1 - reqs0) == (1, n)
    for i, (_, h) in enumerate(res):
        assert uploaded_bytes(d, h["upload-media"], h["upload-job"]) == bodies[i]


def test_finishing_patch_does_not_wait_for_its_creation(dripd):
    """Issue 15: a PATCH that completes an upload (offset 0, the whole
    length) whose creation's row is not committed yet goes on at once:
    it writes its spool file while the test holds the catalog's write
    lock (no commit can go through), and its finish commits after the
    creation, in ingest's order, once the lock is free. A PATCH of part
    of the upload still waits for the row."""
    import sqlite3
    import threading
    db = sqlite3.connect(os.path.join(dripd.data_dir, "catalog.db"), isolation_level=None,
                         timeout=30)
    results, threads = {}, []

    def run(name, loc, data):
        results[name] = patch(dripd, loc, 0, data)
    # over 16 KiB, so that its bytes go to the spool file, where they show
    data = os.urandom(20000)
    db.execute("BEGIN IMMEDIATE")
    try:
        whole, _, _ = create(dripd, len(data), filename="whole-early.bin")
        part, _, _ = create(dripd, 9, filename="part-early.bin")
        assert catalog_row(dripd, "SELECT id FROM tus WHERE id=?", whole.rsplit("/", 1)[1]) is None
        for args in (("whole", whole, data), ("part", part, b"abc")):
            t = threading.Thread(target=run, args=args)
            t.start()
            threads.append(t)
        # the finishing PATCH took its body while no row could commit
        wait_until(lambda: os.path.exists(spool_of(dripd, whole))
                   and os.path.getsize(spool_of(dripd, whole)) == len(data), timeout=30)
        assert "whole" not in results
    finally:
        db.execute("ROLLBACK")
        db.close()
    for t in threads:
        t.join(60)
    st, h, b = results["whole"]
    assert st == 204 and "upload-job" in h, (st, b)
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == data
    st, h, b = results["part"]
    assert st == 204 and h["upload-offset"] == "3" and "upload-job" not in h, (st, b)
    assert offset_of(dripd, part) == 3


def test_finish_of_a_path_taken_meanwhile_terminates(dripd):
    """Two sessions for one path (the check at creation passed for both):
    the second finish finds the path taken, answers 409, and the session is
    gone (a retry sees 404), its spool file too."""
    a, _, _ = create(dripd, 3, filename="twice.txt")
    b, _, _ = create(dripd, 3, filename="twice.txt")
    st, h, _ = patch(dripd, a, 0, b"abc")
    assert st == 204 and "upload-job" in h
    st, h, body = patch(dripd, b, 0, b"xyz")
    assert_problem(st, h, body, 409)
    assert b"already exists; the upload was terminated" in body
    assert head(dripd, b)[0] == 404
    assert not os.path.exists(spool_of(dripd, b))


def test_defer_length(dripd):
    data = os.urandom(70_000)
    loc, _, _ = create(dripd, defer=True, filename="deferred.bin")
    st, h, _ = head(dripd, loc)
    assert h["upload-defer-length"] == "1" and "upload-length" not in h
    st, h, b = patch(dripd, loc, 0, data[:50_000])
    assert st == 204 and h["upload-offset"] == "50000" and "upload-job" not in h
    st, h, b = patch(dripd, loc, 50_000, data[50_000:], headers={"Upload-Length": str(len(data))})
    assert st == 204, b
    assert "upload-job" in h
    st, h, _ = head(dripd, loc)
    assert h["upload-length"] == str(len(data))
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == data
    # the length may also come alone, in an empty PATCH, once all bytes are there
    loc, _, _ = create(dripd, defer=True, filename="deferred2.bin")
    st, h, _ = patch(dripd, loc, 0, data)
    assert st == 204 and "upload-job" not in h
    st, h, b = patch(dripd, loc, len(data), b"", headers={"Upload-Length": str(len(data))})
    assert st == 204 and "upload-job" in h, b
    # and cannot change once known
    loc, _, _ = create(dripd, 10, filename="fixed.bin")
    st, h, b = patch(dripd, loc, 0, b"12", headers={"Upload-Length": "11"})
    assert_problem(st, h, b, 400)


def test_creation_with_upload(dripd):
    data = os.urandom(40_000)
    loc, h, b = create(dripd, len(data), body=data, filename="whole.bin")
    assert h["upload-offset"] == str(len(data))
    assert "upload-job" in h
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == data
    # the first part only, then PATCH the rest
    loc, h, _ = create(dripd, len(data), body=data[:15_000], filename="part.bin")
    assert h["upload-offset"] == "15000" and "upload-job" not in h
    st, h, b = patch(dripd, loc, 15_000, data[15_000:])
    assert st == 204 and "upload-job" in h
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == data
    # an empty file finishes at creation
    loc, h, _ = create(dripd, 0, filename="empty.bin")
    assert h["upload-offset"] == "0" and "upload-job" in h


def test_small_upload_rides_in_its_job_row(dripd_factory):
    """Issue 15: a request that carries a whole upload of at most 16 KiB (a
    PATCH at offset 0 with all of it, or a creation with all of it) keeps
    the bytes out of the spool: its finish commits them in the job's row
    (job_bodies), with the pipeline stopped to look. One byte more is
    spooled. A PATCH of that kind cut short still saves what arrived (in
    the spool file, so HEAD reports it), and the upload finishes from
    there."""
    d = dripd_factory(config={"supervisor": {"heartbeat_timeout": "60s"}})
    data, big = os.urandom(16384), os.urandom(16385)
    pl = d.worker("pipeline")
    os.kill(pl, signal.SIGSTOP)
    try:
        loc, _, _ = create(d, len(data), filename="p.bin")
        st, h, b = patch(d, loc, 0, data)
        assert st == 204 and h["upload-offset"] == str(len(data)), b
        done = [(loc, h["upload-job"], h["upload-media"], data)]
        loc, h, _ = create(d, len(data), body=data, filename="c.bin")
        assert h["upload-offset"] == str(len(data))
        done.append((loc, h["upload-job"], h["upload-media"], data))
        for loc, job, _, _ in done:
            assert not os.path.exists(spool_of(d, loc))
            row = catalog_row(d, "SELECT spool_path, (SELECT length(body) FROM job_bodies"
                                 " WHERE job_id = id) AS n FROM jobs WHERE id = ?", job)
            assert row == {"spool_path": None, "n": 16384}, row
        loc, _, _ = create(d, len(big), filename="b.bin")
        st, h, b = patch(d, loc, 0, big)
        assert st == 204, b
        row = catalog_row(d, "SELECT spool_path, (SELECT count(*) FROM job_bodies WHERE job_id = id)"
                             " AS n FROM jobs WHERE id = ?", h["upload-job"])
        assert row == {"spool_path": spool_of(d, loc), "n": 0}, row
        done.append((loc, h["upload-job"], h["upload-media"], big))
    finally:
        os.kill(pl, signal.SIGCONT)
    for loc, job, media, want in done:
        assert uploaded_bytes(d, media, job) == want
        st, h, _ = head(d, loc)
        assert st == 200 and h["upload-offset"] == str(len(want)) and h["upload-job"] == job
    # an inline PATCH whose client dies after 1000 of its 4096 bytes
    whole = os.urandom(4096)
    loc, _, _ = create(d, len(whole), filename="cut.bin")
    s = socket.create_connection((d.host, d.port))
    s.sendall(("PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
               "Tus-Resumable: 1.0.0\r\nContent-Type: %s\r\nUpload-Offset: 0\r\n"
               "Content-Length: %d\r\n\r\n" % (loc, d.addr, d.token(), OCTET, len(whole))
               ).encode() + whole[:1000])
    s.close()
    wait_until(lambda: offset_of(d, loc) == 1000, 15, "HEAD to show the saved offset")
    assert os.path.getsize(spool_of(d, loc)) == 1000
    st, h, b = patch(d, loc, 1000, whole[1000:])
    assert st == 204 and "upload-job" in h, b
    assert uploaded_bytes(d, h["upload-media"], h["upload-job"]) == whole


def test_creation_makes_no_file_the_first_patch_does(dripd):
    """Issue 15: a creation without bytes makes no spool file (its row
    is committed without waiting for a sync: a 201 promises no
    durability); the first PATCH makes the file, and the upload works as
    any. A creation with bytes makes its file at once."""
    loc, h, _ = create(dripd, 1000, filename="lazy.bin")
    assert h["upload-offset"] == "0"
    assert not os.path.exists(spool_of(dripd, loc))
    st, h, _ = head(dripd, loc)
    assert st == 200 and h["upload-offset"] == "0" and h["upload-length"] == "1000"
    st, h, b = patch(dripd, loc, 0, b"a" * 400)
    assert st == 204 and h["upload-offset"] == "400", b
    assert os.path.getsize(spool_of(dripd, loc)) == 400
    st, h, b = patch(dripd, loc, 400, b"b" * 600)
    assert st == 204 and "upload-job" in h, b
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == b"a" * 400 + b"b" * 600
    loc, h, _ = create(dripd, 10, body=b"12345", filename="eager.bin")
    assert h["upload-offset"] == "5" and os.path.getsize(spool_of(dripd, loc)) == 5
    # terminated before any byte: nothing was ever made, nothing is left
    loc, _, _ = create(dripd, 10, filename="never.bin")
    st, _, _ = req(dripd, "DELETE", loc)
    assert st == 204
    assert head(dripd, loc)[0] == 404


def test_creation_answers_before_its_row_commits(dripd):
    """Issue 15: a creation without bytes answers 201 without waiting for
    the (lazy) commit of its row, so that commit overlaps the client's
    next round trip; a HEAD or PATCH of the upload that arrives before the
    row is committed waits for it instead of answering 404. The test
    holds the catalog's write lock, so no commit can go through until it
    lets go."""
    import sqlite3
    import threading
    db = sqlite3.connect(os.path.join(dripd.data_dir, "catalog.db"), isolation_level=None,
                         timeout=30)
    db.execute("BEGIN IMMEDIATE")
    results, sent, threads = {}, [], []
    try:
        # answered while the row cannot be committed (the old way waited
        # for the commit: this timed out)
        c = http.client.HTTPConnection(dripd.host, dripd.port, timeout=10)
        c.request("POST", "/v1/uploads", headers={
            "Tus-Resumable": "1.0.0", "Authorization": "Bearer " + dripd.token("alice"),
            "Upload-Length": "6", "Upload-Metadata": meta(filename="early.bin")})
        r = c.getresponse()
        r.read()
        c.close()
        assert r.status == 201
        loc = re.sub(r"^http://[^/]+", "", r.getheader("Location"))
        upload_id = loc.rsplit("/", 1)[1]
        assert catalog_row(dripd, "SELECT id FROM tus WHERE id=?", upload_id) is None

        def run(name, method, headers, body):
            h = {"Tus-Resumable": "1.0.0", "Authorization": "Bearer " + dripd.token("alice")}
            h.update(headers)
            conn = http.client.HTTPConnection(dripd.host, dripd.port, timeout=60)
            conn.request(method, loc, body=body, headers=h)
            ev = threading.Event()
            sent.append(ev)
            ev.set()
            resp = conn.getresponse()
            results[name] = (resp.status, {k.lower(): v for k, v in resp.getheaders()},
                             resp.read())
            conn.close()

        for args in (("head", "HEAD", {}, None),
                     ("patch", "PATCH", {"Content-Type": OCTET, "Upload-Offset": "0"},
                      b"abcdef")):
            t = threading.Thread(target=run, args=args)
            t.start()
            threads.append(t)
        wait_until(lambda: len(sent) == 2, timeout=10)
    finally:
        db.execute("ROLLBACK")
        db.close()
    for t in threads:
        t.join(60)
    assert results["head"][0] == 200, results["head"]
    st, h, b = results["patch"]
    assert st == 204 and "upload-job" in h, (st, b)
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == b"abcdef"


def test_termination(dripd):
    loc, _, _ = create(dripd, 1000, filename="gone.bin")
    st, _, _ = patch(dripd, loc, 0, b"x" * 500)
    assert st == 204
    assert os.path.exists(spool_of(dripd, loc))
    st, h, b = req(dripd, "DELETE", loc)
    assert st == 204, b
    assert not os.path.exists(spool_of(dripd, loc))
    st, _, _ = head(dripd, loc)
    assert st == 404
    st, _, _ = req(dripd, "DELETE", loc)
    assert st == 404
    st, _, _ = patch(dripd, loc, 500, b"y")
    assert st == 404


def test_other_users_upload_is_invisible(dripd):
    loc, _, _ = create(dripd, 100, filename="private.bin")
    st, _, _ = patch(dripd, loc, 0, b"a" * 10)
    assert st == 204
    for method, hdrs, body in (("HEAD", {}, None),
                               ("PATCH", {"Content-Type": OCTET, "Upload-Offset": "10"}, b"b" * 10),
                               ("DELETE", {}, None)):
        st, _, _ = req(dripd, method, loc, hdrs, body=body, user="bob")
        assert st == 404, method
    assert offset_of(dripd, loc) == 10
    assert os.path.exists(spool_of(dripd, loc))


def test_expiration(dripd_factory):
    d = dripd_factory(config={"tus": {"expiration": "1s"}})
    loc, h, _ = create(d, 100, filename="exp.bin")
    exp = email.utils.parsedate_to_datetime(h["upload-expires"]).timestamp()
    assert exp <= time.time() + 3
    st, _, _ = patch(d, loc, 0, b"x" * 10)
    assert st == 204
    sp = spool_of(d, loc)
    assert os.path.exists(sp)
    wait_until(lambda: head(d, loc)[0] == 404, 15, "the upload to expire")
    wait_until(lambda: not os.path.exists(sp), 15, "the expiry sweep to remove the spool file")
    # finished uploads never expire away from their job
    loc, h, _ = create(d, 3, body=b"abc", filename="kept.bin")
    assert catalog_row(d, "SELECT kind FROM jobs WHERE id = ?", h["upload-job"])


def node_ready():
    return (shutil.which("node") is not None and
            os.path.isdir(os.path.join(NODE_DIR, "node_modules", "tus-js-client")))


@pytest.mark.parametrize("interrupt", ["mid", "chunk"])
def test_tus_js_client_resumes_after_interruption(dripd, tmpdir_path, interrupt):
    # a missing tool is a failure, never a skip
    assert node_ready(), "tests/node/node_modules/tus-js-client missing: run make deps"
    size = 20 * 1024 * 1024
    src = make_file(os.path.join(tmpdir_path, "movie.bin"), size)
    r = subprocess.run(["node", os.path.join(NODE_DIR, "tus_upload.mjs"),
                        "--endpoint", dripd.url("/v1/uploads"), "--token", dripd.token(),
                        "--file", src, "--name", "movie-%s.bin" % interrupt, "--folder", "/js",
                        "--chunk-size", str(5 * 1024 * 1024), "--interrupt", interrupt,
                        "--store", os.path.join(tmpdir_path, "urls.json")],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr + dripd.log_tail()
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["size"] == size and out["interrupted_at"] > 0
    assert out["url"].endswith(out["url"].rsplit("/", 1)[1]) and "/v1/uploads/" in out["url"]
    st, h, _ = head(dripd, out["url"].split(dripd.addr, 1)[1])
    assert st == 200 and h["upload-job"] == out["job"]
    doc = catalog_row(dripd, "SELECT path, size FROM media WHERE id = ?", out["media"])
    assert doc == {"path": "/js/movie-%s.bin" % interrupt, "size": size}
    with open(src, "rb") as f:
        assert uploaded_bytes(dripd, out["media"], out["job"]) == f.read()
    # the resume started where the server said it was; for a cut mid-body
    # that is every byte that reached the server, not a chunk boundary
    assert out["resumed_from"] == out["interrupted_at"], out
    if interrupt == "mid":
        assert out["interrupted_at"] % (5 * 1024 * 1024) != 0
        assert "saved offset %d" % out["interrupted_at"] in dripd.log_text()


def test_one_writer_at_a_time(dripd):
    """While a PATCH is streaming, a second PATCH or a DELETE gets 423 (tus
    clients retry it); once the first is cut, its bytes are saved."""
    # over 16 KiB: the PATCH streams into the spool file (not inline)
    loc, _, _ = create(dripd, 20000, filename="locked.bin")
    s = socket.create_connection((dripd.host, dripd.port))
    s.sendall(("PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
               "Tus-Resumable: 1.0.0\r\nContent-Type: %s\r\nUpload-Offset: 0\r\n"
               "Content-Length: 20000\r\n\r\n" % (loc, dripd.addr, dripd.token(), OCTET)
               ).encode() + b"a" * 300)
    sp = spool_of(dripd, loc)
    wait_until(lambda: os.path.exists(sp) and os.path.getsize(sp) == 300, 10,
               "the first PATCH to be streaming")
    st, h, b = patch(dripd, loc, 0, b"b" * 10)
    assert st == 423, b
    assert h["tus-resumable"] == "1.0.0"
    st, _, _ = req(dripd, "DELETE", loc)
    assert st == 423
    st, h, _ = head(dripd, loc)     # HEAD is never blocked; it shows the durable offset
    assert st == 200 and h["upload-offset"] == "0"
    s.close()
    wait_until(lambda: offset_of(dripd, loc) == 300, 10, "the cut PATCH's bytes to be saved")
    st, h, b = patch(dripd, loc, 300, b"c" * 19700)
    assert st == 204 and "upload-job" in h, b
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == b"a" * 300 + b"c" * 19700


def test_head_finishes_an_upload_whose_last_request_was_cut(dripd):
    """A chunked PATCH that delivered every byte but died before its last
    chunk marker: the bytes are saved (offset == length) and the next HEAD
    turns the upload into a job instead of reporting a complete upload
    that has none."""
    data = os.urandom(5000)
    loc, _, _ = create(dripd, len(data), filename="healed.bin")
    s = socket.create_connection((dripd.host, dripd.port))
    s.sendall(("PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
               "Tus-Resumable: 1.0.0\r\nContent-Type: %s\r\nUpload-Offset: 0\r\n"
               "Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (loc, dripd.addr, dripd.token(), OCTET,
                                                             len(data))).encode() + data + b"\r\n")
    s.close()
    dripd.wait_log(r"upload %s interrupted; saved offset %d" % (loc.rsplit("/", 1)[1], len(data)))
    st, h, _ = head(dripd, loc)
    assert st == 200, st
    assert h["upload-offset"] == str(len(data)) and "upload-job" in h, h
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == data
    st, h2, _ = head(dripd, loc)
    assert h2["upload-job"] == h["upload-job"]


def test_http_worker_killed_mid_patch(dripd):
    """kill -9 of the http worker while a PATCH streams: the new worker
    reports the last durable offset (the cut request was never
    acknowledged), and a resume overwrites the unacknowledged bytes that
    reached the spool file."""
    data = os.urandom(3 * 1024 * 1024)
    loc, _, _ = create(dripd, len(data), filename="killed.bin")
    first = 1024 * 1024
    st, _, _ = patch(dripd, loc, 0, data[:first])
    assert st == 204
    s = socket.create_connection((dripd.host, dripd.port))
    s.sendall(("PATCH %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
               "Tus-Resumable: 1.0.0\r\nContent-Type: %s\r\nUpload-Offset: %d\r\n"
               "Content-Length: %d\r\n\r\n" % (loc, dripd.addr, dripd.token(), OCTET, first,
                                              len(data) - first)).encode()
              + b"\xee" * (1024 * 1024))   # not the real bytes: they must never count
    sp = spool_of(dripd, loc)
    wait_until(lambda: os.path.getsize(sp) >= 2 * 1024 * 1024, 15, "the PATCH bytes on disk")
    old = dripd.worker("http")
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: old not in (dripd.workers("http") or [old]), 30,
               "a new http worker")
    s.close()

    def offset_now():
        try:
            st, h, _ = head(dripd, loc)
        except OSError:
            return None
        return int(h["upload-offset"]) if st == 200 else None
    wait_until(lambda: offset_now() is not None, 30, "the new worker to answer")
    assert offset_now() == first
    st, h, b = patch(dripd, loc, first, data[first:])
    assert st == 204 and "upload-job" in h, b
    assert uploaded_bytes(dripd, h["upload-media"], h["upload-job"]) == data


# ---- issue 17: half-finished uploads never leave bytes behind ----

def test_rejected_chunk_then_empty_finish_is_not_poisoned(dripd):
    """Issue 17 item 3: a deferred-length PATCH refused with 460 left its 24
    bytes in the spool file at offset 0; an empty PATCH with
    Upload-Length: 0 then got 204 + Upload-Job, and the job failed five
    times ("spool file has 24 bytes, the upload had 0"). The refused bytes
    are dropped at once, and a finish truncates to the offset anyway."""
    loc, _, _ = create(dripd, defer=True, filename="poisoned.bin")
    bad = "sha256 " + b64(hashlib.sha256(b"not these bytes").digest())
    st, h, b = patch(dripd, loc, 0, b"x" * 24, headers={"Upload-Checksum": bad})
    assert_problem(st, h, b, 460)
    assert os.path.getsize(spool_of(dripd, loc)) == 0, "the refused chunk stayed in the spool"
    st, h, b = patch(dripd, loc, 0, b"", headers={"Upload-Length": "0"})
    assert st == 204 and "upload-job" in h, (st, b)
    job = dripd.wait_job(h["upload-job"])
    assert job["state"] == "done" and job["attempts"] <= 1, job
    st, _, body = dripd.curl(dripd.url("/v1/media/%s/content" % h["upload-media"]))
    assert st == 200 and body == b""


def test_chunked_patch_over_the_limit_leaves_nothing(dripd_factory):
    """Issue 17 item 4: a chunked PATCH refused with 413 part way left the
    bytes it had written (67 MB in the report) behind a session at offset 3."""
    d = dripd_factory(config={"limits": {"max_upload_size": "1MiB"}})
    loc, _, _ = create(d, defer=True, filename="big.bin")
    st, h, _ = patch(d, loc, 0, b"abc")
    assert st == 204 and h["upload-offset"] == "3"

    def chunks():
        for _ in range(40):
            yield os.urandom(64 << 10)
    h = {"Tus-Resumable": "1.0.0", "Authorization": "Bearer " + d.token(),
         "Content-Type": OCTET, "Upload-Offset": "3", "Transfer-Encoding": "chunked"}
    c = http.client.HTTPConnection(d.host, d.port, timeout=60)
    try:
        c.putrequest("PATCH", loc)
        for k, v in h.items():
            c.putheader(k, v)
        c.endheaders()
        try:
            for ch in chunks():
                c.send(b"%x\r\n%s\r\n" % (len(ch), ch))
            c.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered 413 and closed
        r = c.getresponse()
        assert r.status == 413, r.status
    finally:
        c.close()
    assert offset_of(d, loc) == 3
    assert os.path.getsize(spool_of(d, loc)) == 3, "bytes past the offset stayed in the spool"
    st, h, _ = patch(d, loc, 3, b"def", headers={"Upload-Length": "6"})
    assert st == 204 and "upload-job" in h
    assert uploaded_bytes(d, h["upload-media"], h["upload-job"]) == b"abcdef"

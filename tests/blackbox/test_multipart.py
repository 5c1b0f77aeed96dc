"""POST /v1/files/{folder} with multipart/form-data: real curl -F uploads,
errors, limits, conflicts and spool cleanup."""
import json
import os
import socket
import subprocess

from conftest import make_file, wait_until


def spool_files(d):
    p = os.path.join(d.data_dir, "spool")
    return sorted(os.listdir(p)) if os.path.isdir(p) else []



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


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_three_files_in_one_request(dripd, tmpdir_path):
    a = make_file(os.path.join(tmpdir_path, "a.bin"), 1)
    b = make_file(os.path.join(tmpdir_path, "b c.bin"), 300_000)
    c = make_file(os.path.join(tmpdir_path, "café.bin"), 2_000_000)
    st, h, body = dripd.curl("-F", "note=ignored", "-F", "file=@" + a, "-F", "file=@" + b,
                             "-F", "file=@" + c + ";type=image/x-test",
                             dripd.url("/v1/files/docs/2024"))
    assert st == 202, body
    assert h["content-type"].startswith("application/json")
    ups = json.loads(body)["uploads"]
    assert [u["media"]["path"] for u in ups] == ["/docs/2024/a.bin", "/docs/2024/b c.bin",
                                                 "/docs/2024/café.bin"]
    for u, src in zip(ups, (a, b, c)):
        assert u["media"]["size"] == os.path.getsize(src)
        assert u["job"]["state"] in ("queued", "running", "done")
        assert uploaded_bytes(dripd, u["media"]["id"], u["job"]["id"]) == read(src), src
    assert ups[2]["media"]["content_type"] == "image/x-test"
    # each accepted job is durable and visible
    for u in ups:
        doc = catalog_row(dripd, "SELECT kind, media_id FROM jobs WHERE id = ?", u["job"]["id"])
        assert doc == {"kind": "upload", "media_id": u["media"]["id"]}



def test_big_binary_file_keeps_every_byte(dripd, tmpdir_path):
    """40 MiB of binary data (a CR every ~256 bytes, so many delimiter
    prefixes that fail) through curl -F: past spool_writeback's windows
    (each 8 MiB handed to writeback, the one 16 MiB behind dropped), the
    bytes stored are the bytes sent."""
    f = make_file(os.path.join(tmpdir_path, "big.bin"), (40 << 20) + 17)
    st, _, body = dripd.curl("-F", "file=@" + f, dripd.url("/v1/files/big"))
    assert st == 202, body
    up = json.loads(body)["uploads"][0]
    assert up["media"]["size"] == (40 << 20) + 17
    assert uploaded_bytes(dripd, up["media"]["id"], up["job"]["id"]) == read(f)

def test_root_folder_and_trailing_slash(dripd, tmpdir_path):
    a = make_file(os.path.join(tmpdir_path, "root.txt"), 10)
    st, _, body = dripd.curl("-F", "file=@" + a, dripd.url("/v1/files"))
    assert st == 202, body
    assert json.loads(body)["uploads"][0]["media"]["path"] == "/root.txt"
    st, _, body = dripd.curl("-F", "file=@" + a, dripd.url("/v1/files/x/"))
    assert st == 202, body
    assert json.loads(body)["uploads"][0]["media"]["path"] == "/x/root.txt"


def _post(d, body, content_type, user="alice", path="/v1/files/e", extra=()):
    """POST exactly these body bytes with this Content-Type."""
    fn = os.path.join(d.dir, "body.bin")
    with open(fn, "wb") as f:
        f.write(body)
    return d.curl(*extra, "-H", "Content-Type: " + content_type, "--data-binary", "@" + fn,
                  d.url(path), user=user)


PART = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n"
        b"Content-Type: text/plain\r\n\r\nhello\r\n")


def assert_problem(st, h, body, status, words=""):
    assert st == status, (st, body)
    assert h["content-type"].startswith("application/problem+json"), h
    doc = json.loads(body)
    assert doc["status"] == status and doc["title"] and "detail" in doc
    assert words.lower() in doc["detail"].lower(), doc


def test_malformed_requests(dripd):
    good = PART % b"ok.txt" + b"--XyZ--\r\n"
    # no boundary parameter
    st, h, b = _post(dripd, good, "multipart/form-data", "alice", "/v1/files/e")
    assert_problem(st, h, b, 400, "boundary")
    # not multipart at all
    st, h, b = _post(dripd, good, "text/plain", "alice", "/v1/files/e")
    assert_problem(st, h, b, 415)
    # truncated: no final boundary
    st, h, b = _post(dripd, PART % b"t.txt", "multipart/form-data; boundary=XyZ", "alice",
                     "/v1/files/e")
    assert_problem(st, h, b, 400, "final boundary")
    # junk after a boundary
    st, h, b = _post(dripd, b"--XyZjunk\r\n" + good, "multipart/form-data; boundary=XyZ",
                     "alice", "/v1/files/e")
    assert_problem(st, h, b, 400)
    # bad file names
    for bad in (b"..", b"a/b.txt", b"", b"x\x01y"):
        body = (PART % bad) + b"--XyZ--\r\n"
        st, h, b = _post(dripd, body, "multipart/form-data; boundary=XyZ", "alice", "/v1/files/e")
        assert_problem(st, h, b, 400)
    # a part named file without a filename, and a body with no file part
    body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\nx\r\n--XyZ--\r\n"
    st, h, b = _post(dripd, body, "multipart/form-data; boundary=XyZ", "alice", "/v1/files/e")
    assert_problem(st, h, b, 400, "filename")
    body = b"--XyZ\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--XyZ--\r\n"
    st, h, b = _post(dripd, body, "multipart/form-data; boundary=XyZ", "alice", "/v1/files/e")
    assert_problem(st, h, b, 400, "file")
    # a bad folder in the URL
    st, h, b = _post(dripd, good, "multipart/form-data; boundary=XyZ", "alice", "/v1/files/a/../b",
                     extra=("--path-as-is",))
    assert st == 400, b
    # nothing of it was kept
    wait_until(lambda: spool_files(dripd) == [], 10, "spool cleaned after errors")
    assert catalog_row(dripd, "SELECT count(*) AS n FROM media")["n"] == 0


def test_rfc5987_and_quoted_names(dripd):
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"fallback.txt\"; "
            b"filename*=UTF-8''%E2%82%AC%20rates.txt\r\n\r\neuro\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=file; filename=\"say \\\"hi\\\".txt\"\r\n"
            b"\r\nquote\r\n--XyZ--")
    st, h, b = _post(dripd, body, "multipart/form-data; boundary=\"XyZ\"", "alice", "/v1/files/n")
    assert st == 202, b
    paths = [u["media"]["path"] for u in json.loads(b)["uploads"]]
    assert paths == ["/n/€ rates.txt", '/n/say "hi".txt']


def test_conflicts(dripd, tmpdir_path):
    a = make_file(os.path.join(tmpdir_path, "dup.bin"), 1000)
    st, _, body = dripd.curl("-F", "file=@" + a, dripd.url("/v1/files/c"))
    assert st == 202, body
    before = spool_files(dripd)
    st, h, body = dripd.curl("-F", "file=@" + a, dripd.url("/v1/files/c"))
    assert_problem(st, h, body, 409, "/c/dup.bin")
    # the same name twice in one request
    st, h, body = dripd.curl("-F", "file=@" + a, "-F", "file=@" + a, dripd.url("/v1/files/d"))
    assert_problem(st, h, body, 409, "twice")
    wait_until(lambda: set(spool_files(dripd)) <= set(before), 10, "no spool files left by 409s")
    # another user has their own tree: same path is fine for bob
    st, _, body = dripd.curl("-F", "file=@" + a, dripd.url("/v1/files/c"), user="bob")
    assert st == 202, body


def test_auth_and_limits(dripd_factory, tmpdir_path):
    d = dripd_factory(config={"limits": {"max_upload_size": "1MiB"}})
    small = make_file(os.path.join(tmpdir_path, "s.bin"), 1000)
    big = make_file(os.path.join(tmpdir_path, "big.bin"), 2 * 1024 * 1024)
    st, h, _ = d.curl("-F", "file=@" + small, d.url("/v1/files/x"), user=None)
    assert st == 401
    st, h, b = d.curl("-F", "file=@" + big, d.url("/v1/files/x"))
    assert_problem(st, h, b, 413)
    # chunked: no Content-Length up front, counted while streaming
    st, h, b = d.curl("-H", "Transfer-Encoding: chunked", "-F", "file=@" + big, d.url("/v1/files/x"))
    assert_problem(st, h, b, 413)
    wait_until(lambda: spool_files(d) == [], 10, "spool cleaned after 413")
    st, _, b = d.curl("-F", "file=@" + small, d.url("/v1/files/x"))
    assert st == 202, b


def test_client_disconnect_cleans_spool(dripd):
    head = ("POST /v1/files/cut HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 10000000\r\n\r\n"
            % (dripd.addr, dripd.token()))
    s = socket.create_connection((dripd.host, dripd.port))
    s.sendall(head.encode() + PART % b"cut.bin" + os.urandom(200_000))
    wait_until(lambda: len(spool_files(dripd)) == 1, 10, "the part's spool file")
    s.close()
    wait_until(lambda: spool_files(dripd) == [], 10, "spool file removed after disconnect")
    assert catalog_row(dripd, "SELECT count(*) AS n FROM media")["n"] == 0

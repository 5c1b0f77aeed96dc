"""GET/HEAD /v1/media/{id}/content black-box tests: full and ranged
bodies, conditional requests, headers, the cache-miss download path and
its failures, against the real daemon with curl and raw sockets."""
import concurrent.futures
import fcntl
import glob
import hashlib
import json
import os
import re
import socket
import time
import urllib.parse

import objstore
from conftest import make_file, wait_until
from httpraw import Conn

SIZE = 300 * 1024 + 17


def upload(d, remote, local, user="alice", headers=(), wait=True):
    args = []
    for h in headers:
        args += ["-H", h]
    st, h, b = d.curl(*args, "-T", local, d.url("/v1/files" + urllib.parse.quote(remote)), user=user)
    assert st == 202, (st, b[:300])
    doc = json.loads(b)
    if wait:
        assert d.wait_job(doc["job"]["id"], user=user)["state"] == "done"
    return doc["media"]


def content_url(d, mid):
    return d.url("/v1/media/%s/content" % mid)


def read(local):
    with open(local, "rb") as f:
        return f.read()


def raw_request(d, request):
    """Send raw bytes, read until the server closes; returns (head, body)."""
    s = socket.create_connection((d.host, d.port), timeout=30)
    s.sendall(request)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body


def test_full_get_range_and_headers(dripd):
    d = dripd
    local = make_file(os.path.join(d.dir, "big.bin"), SIZE)
    data = read(local)
    m = upload(d, "/c/big.bin", local)
    url = content_url(d, m["id"])

    st, h, body = d.curl(url)
    assert st == 200
    assert body == data
    assert int(h["content-length"]) == SIZE
    assert h["etag"] == '"%s"' % hashlib.sha256(data).hexdigest()
    assert h["accept-ranges"] == "bytes"
    assert h["x-content-type-options"] == "nosniff"
    assert h["cache-control"] == "private"
    assert h["content-disposition"].startswith("attachment;")

    # First bytes, the middle, a suffix, an open end.
    for rng, lo, hi in (("bytes=0-99", 0, 99), ("bytes=1000-1999", 1000, 1999),
                        ("bytes=-500", SIZE - 500, SIZE - 1), ("bytes=%d-" % (SIZE - 10), SIZE - 10, SIZE - 1),
                        ("bytes=5-%d" % (SIZE * 3), 5, SIZE - 1), ("bytes=0-0", 0, 0)):
        st, h, body = d.curl("-H", "Range: " + rng, url)
        assert st == 206, (rng, st)
        assert h["content-range"] == "bytes %d-%d/%d" % (lo, hi, SIZE), rng
        assert int(h["content-length"]) == hi - lo + 1
        assert body == data[lo:hi + 1], rng

    # Unsatisfiable -> 416 with the size.
    for rng in ("bytes=%d-" % SIZE, "bytes=%d-%d" % (SIZE + 5, SIZE + 10), "bytes=-0"):
        st, h, body = d.curl("-H", "Range: " + rng, url)
        assert st == 416, rng
        assert h["content-range"] == "bytes */%d" % SIZE

    # Several ranges: the whole body (documented); malformed: ignored.
    for rng in ("bytes=0-1,5-6", "bytes=5-1", "bytes=abc", "lines=1-2"):
        st, h, body = d.curl("-H", "Range: " + rng, url)
        assert st == 200 and body == data, rng

    # If-Range: only the current ETag keeps the range.
    etag = h["etag"]
    st, h2, body = d.curl("-H", "Range: bytes=0-9", "-H", "If-Range: " + etag, url)
    assert st == 206 and body == data[:10]
    st, h2, body = d.curl("-H", "Range: bytes=0-9", "-H", 'If-Range: "stale"', url)
    assert st == 200 and body == data
    st, h2, body = d.curl("-H", "Range: bytes=0-9", "-H", "If-Range: Wed, 21 Oct 2015 07:28:00 GMT", url)
    assert st == 200 and body == data


def test_conditional_get(dripd):
    d = dripd
    local = make_file(os.path.join(d.dir, "c.bin"), 1000)
    m = upload(d, "/c/cond.bin", local)
    url = content_url(d, m["id"])
    etag = '"%s"' % hashlib.sha256(read(local)).hexdigest()

    for inm in (etag, "W/" + etag, '"nope", ' + etag, "*", '"a" ,W/%s , "b"' % etag):
        st, h, body = d.curl("-H", "If-None-Match: " + inm, url)
        assert st == 304, inm
        assert body == b""
        assert h["etag"] == etag
    for inm in ('"nope"', 'W/"nope"', "garbage", etag[1:]):
        st, h, body = d.curl("-H", "If-None-Match: " + inm, url)
        assert st == 200 and len(body) == 1000, inm

    # A 304 needs no bytes: it never starts a download.
    cache = os.path.join(d.data_dir, "cache", m["id"])
    wait_until(lambda: os.path.exists(cache), what="cache entry after upload")
    os.unlink(cache)
    st, h, body = d.curl("-H", "If-None-Match: " + etag, url)
    assert st == 304
    assert not os.path.exists(cache)


def test_head(dripd):
    d = dripd
    local = make_file(os.path.join(d.dir, "h.bin"), 777)
    m = upload(d, "/c/h.bin", local)
    req = ("HEAD /v1/media/%s/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "Connection: close\r\n\r\n" % (m["id"], d.token())).encode()
    head, body = raw_request(d, req)
    assert head.startswith("HTTP/1.1 200"), head
    assert re.search(r"(?im)^content-length: 777\r?$", head), head
    assert re.search(r"(?im)^etag: \"[0-9a-f]{64}\"\r?$", head), head
    assert body == b""


def test_pipelined_file_responses_keep_their_bytes(dripd):
    """Responses queued behind one another on a keep-alive connection:
    a file body (its head goes out with MSG_MORE, the file by sendfile),
    a range of it, a 304 and a 404 (memory only), a second file while the
    first may still be in flight. Every head and body arrives whole and in
    order (3 MiB fill the socket: the later heads wait behind the file)."""
    d = dripd
    big = make_file(os.path.join(d.dir, "p1.bin"), 3 * 1024 * 1024 + 5)
    small = make_file(os.path.join(d.dir, "p2.bin"), 4096)
    m1, m2 = upload(d, "/c/p1.bin", big), upload(d, "/c/p2.bin", small)
    d1, d2 = read(big), read(small)
    etag2 = '"%s"' % hashlib.sha256(d2).hexdigest()
    tok = d.token()

    def get(mid, extra=""):
        return ("GET /v1/media/%s/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n"
                % (mid, tok, extra))
    c = Conn(d.host, d.port, timeout=30)
    c.send(get(m1["id"]) + get(m2["id"]) + get(m1["id"], "Range: bytes=100-199\r\n") +
           get(m2["id"], "If-None-Match: %s\r\n" % etag2) + get("0" * 26) + get(m2["id"]) +
           get(m1["id"]))
    want = [(200, d1), (200, d2), (206, d1[100:200]), (304, b""), (404, None), (200, d2), (200, d1)]
    for i, (st, body) in enumerate(want):
        r = c.read_response(timeout=30)
        assert r.status == st, (i, r)
        if body is not None:
            assert r.body == body, i
            if st != 304:
                assert int(r.headers["content-length"]) == len(body), i
    c.close()


def test_hostile_file_name_disposition(dripd):
    d = dripd
    name = 'evil"; filename=x.sh\\ \u00e9%20\u2603.txt'
    local = make_file(os.path.join(d.dir, "n.bin"), 10)
    m = upload(d, "/c/" + name, local)
    st, h, body = d.curl(content_url(d, m["id"]))
    assert st == 200
    cd = h["content-disposition"]
    mt = re.fullmatch(r"attachment; filename=\"([\x20-\x7e]*)\"; filename\*=UTF-8''([A-Za-z0-9!#$&+\-.^_`|~%]+)", cd)
    assert mt, cd
    fallback, star = mt.group(1), mt.group(2)
    assert '"' not in fallback and "\\" not in fallback and "%" not in fallback
    assert fallback.endswith(".txt") and fallback.startswith("evil_")
    assert urllib.parse.unquote(star, encoding="utf-8", errors="strict") == name


def test_content_type_catalog_or_sniffed(dripd):
    d = dripd
    png = os.path.join(d.dir, "p.bin")
    with open(png, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(200))
    m = upload(d, "/c/image.dat", png, headers=["Content-Type: application/octet-stream"])
    st, h, _ = d.curl(content_url(d, m["id"]))
    assert st == 200 and h["content-type"] == "image/png"

    txt = os.path.join(d.dir, "t.md")
    with open(txt, "w") as f:
        f.write("# title\n\nplain words\n")
    m = upload(d, "/c/readme", txt, headers=["Content-Type: application/octet-stream"])
    st, h, _ = d.curl(content_url(d, m["id"]))
    assert h["content-type"].startswith("text/plain")

    m2 = upload(d, "/c/notes.md", txt, headers=["Content-Type: text/markdown"])
    st, doc, _ = d.json("GET", "/v1/media/" + m2["id"])
    st, h, _ = d.curl(content_url(d, m2["id"]))
    assert h["content-type"] == (doc["content_type"] or "text/plain; charset=utf-8")


def uploaded_uncached(d, name, size):
    """Upload a file of size bytes as /c/<name>, wait until done, remove its
    cache entry (the next GET misses): (media, local path, cache path)."""
    local = make_file(os.path.join(d.dir, name), size)
    m = upload(d, "/c/" + name, local)
    cache = os.path.join(d.data_dir, "cache", m["id"])
    wait_until(lambda: os.path.exists(cache), what="cache entry after upload")
    os.unlink(cache)
    return m, local, cache


def test_cache_miss_runs_download(dripd):
    d = dripd
    m, local, cache = uploaded_uncached(d, "miss.bin", 200 * 1024 + 3)
    data = read(local)

    st, h, body = d.curl(content_url(d, m["id"]))
    assert st == 200
    assert body == data
    assert os.path.exists(cache)

    # A ranged request on a miss also waits, then serves the range.
    os.unlink(cache)
    st, h, body = d.curl("-H", "Range: bytes=100-199", content_url(d, m["id"]))
    assert st == 206 and body == data[100:200]

    # Concurrent misses all get the bytes.
    os.unlink(cache)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: d.curl(content_url(d, m["id"])), range(4)))
    for st, h, body in results:
        assert st == 200 and body == data


def metrics(d):
    st, _h, body = d.curl(d.url("/metrics"), user=None)
    assert st == 200
    return {k: float(v) for k, v in re.findall(r"^(dripd_[a-z_]+) ([0-9.e+-]+)$", body.decode(), re.M)}


def db_rows(d, sql):
    import sqlite3
    c = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.data_dir, "catalog.db"), uri=True, timeout=10)
    try:
        return c.execute(sql).fetchall()
    finally:
        c.close()


def test_cache_miss_is_a_fill_without_a_job(dripd):
    """A cache fill is derived data (issue 15): the download stages fill the
    entry, but no job row, no event and no catalog commit come of it, and the
    entry is marked as an unsynced fill (mode 0400, cache.h)."""
    d = dripd
    m, local, cache = uploaded_uncached(d, "fill.bin", 3 * 65536 + 11)
    data = read(local)
    jobs, events = db_rows(d, "SELECT count(*) FROM jobs")[0][0], db_rows(d, "SELECT count(*) FROM events")[0][0]
    before = metrics(d)
    st, h, body = d.curl(content_url(d, m["id"]))
    assert st == 200 and body == data
    after = metrics(d)
    assert after["dripd_cache_fills_total"] == before["dripd_cache_fills_total"] + 1
    assert after["dripd_cache_misses_total"] == before["dripd_cache_misses_total"] + 1
    assert after["dripd_cache_fill_failures_total"] == before["dripd_cache_fill_failures_total"]
    assert db_rows(d, "SELECT count(*) FROM jobs")[0][0] == jobs
    assert db_rows(d, "SELECT count(*) FROM events")[0][0] == events
    assert os.stat(cache).st_mode & 0o777 == 0o400
    # the entry is there: a hit, no second fill
    assert d.curl(content_url(d, m["id"]))[2] == data
    assert metrics(d)["dripd_cache_fills_total"] == after["dripd_cache_fills_total"]


def test_pipeline_killed_mid_fill_serves_nothing_bad(dripd):
    """kill -9 of the pipeline while it decrypts a fill: the waiting GET asks
    the restarted pipeline again and gets the right bytes; the half-written
    temporary file is never served."""
    d = dripd
    size = 48 * 1024 * 1024
    m, local, cache = uploaded_uncached(d, "killfill.bin", size)
    want = hashlib.sha256(read(local)).hexdigest()
    old = d.worker("pipeline")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        get = pool.submit(d.curl, content_url(d, m["id"]))
        tmp = wait_until(lambda: glob.glob(cache + ".tmp.*"), 60, "the fill's temporary file",
                         interval=0.002)
        os.kill(old, 9)
        st, _h, body = get.result(timeout=120)
    assert st == 200
    assert hashlib.sha256(body).hexdigest() == want
    assert d.worker("pipeline") != old
    assert hashlib.sha256(read(cache)).hexdigest() == want
    # what the killed fill left is not an entry, and the evictor removes it later
    assert all(".tmp." in os.path.basename(t) for t in tmp)


def test_not_available_yet_and_visibility(dripd_factory):
    d = dripd_factory(config={"pipeline": {"test_store_delay": "3s"}})
    local = make_file(os.path.join(d.dir, "slow.bin"), 100)
    m = upload(d, "/c/slow.bin", local, wait=False)
    st, h, body = d.curl(content_url(d, m["id"]))
    assert st == 409, (st, body)
    assert h["content-type"].startswith("application/problem+json")
    assert b"not available" in body
    st, doc, _ = d.json("GET", "/v1/media/" + m["id"])
    assert st == 200 and doc["state"] == "queued"  # visible while queued
    # Once stored, it serves.
    wait_until(lambda: d.json("GET", "/v1/media/" + m["id"])[1]["state"] == "available", 30,
               "media available")
    st, h, body = d.curl(content_url(d, m["id"]))
    assert st == 200 and body == read(local)
    # Others never see it.
    assert d.curl(content_url(d, m["id"]), user="bob")[0] == 404
    assert d.curl(content_url(d, "01ARZ3NDEKTSV4RRFFQ69G5FAV"))[0] == 404


def test_corrupt_object_is_502(dripd):
    d = dripd
    local = make_file(os.path.join(d.dir, "corrupt.bin"), 100 * 1024)
    m = upload(d, "/c/corrupt.bin", local)
    # the original's object, <id>_<version>.bin: random bytes can look like
    # media to the type check now and then and get a "<id>.meta" beside it
    # (a file or a row of objects/.small.db: objstore.py)
    od = objstore.objects_dir(d)
    objs = objstore.matching(od, m["id"] + "_*")
    assert len(objs) == 1, objs
    objstore.flip(od, objs[0], objstore.size(od, objs[0]) // 2)
    cache = os.path.join(d.data_dir, "cache", m["id"])
    if os.path.exists(cache):
        os.unlink(cache)
    st, h, body = d.curl(content_url(d, m["id"]))
    assert st == 502, (st, body[:300])
    assert h["content-type"].startswith("application/problem+json")
    assert b"download failed" in body
    assert not os.path.exists(cache)


def test_cache_entry_locked_while_served_and_atime_touched(dripd):
    d = dripd
    size = 10 * 1024 * 1024  # more than the kernel's socket buffers (tcp_wmem max 4 MiB)
    local = make_file(os.path.join(d.dir, "lock.bin"), size)
    m = upload(d, "/c/lock.bin", local)
    cache = os.path.join(d.data_dir, "cache", m["id"])
    wait_until(lambda: os.path.exists(cache), what="cache entry after upload")

    # The LRU clock: reading sets atime to now and leaves mtime alone.
    old = time.time() - 3600
    mtime = os.stat(cache).st_mtime
    os.utime(cache, (old, mtime))
    st, h, body = d.curl("-H", "Range: bytes=0-0", content_url(d, m["id"]))
    assert st == 206
    after = os.stat(cache)
    assert after.st_atime > time.time() - 60
    assert after.st_mtime == mtime

    # A reader that does not read: the response cannot complete, and the
    # entry stays locked (LOCK_SH) so the evictor's LOCK_EX|LOCK_NB fails.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((d.host, d.port))
    s.sendall(("GET /v1/media/%s/content HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
               % (m["id"], d.token())).encode())
    assert s.recv(12).startswith(b"HTTP/1.1 200")

    def locked():
        with open(cache, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False
    assert locked()
    s.close()
    # The client went away: the lock goes with the exchange.
    wait_until(lambda: not locked(), what="the cache lock released after the client left")


def test_stale_entry_is_a_miss(dripd_factory):
    d = dripd_factory(config={"cache": {"ttl": "1h"}})
    # over 16 KiB: not an inline body, so the upload itself warms the cache
    local = make_file(os.path.join(d.dir, "stale.bin"), 20000)
    m = upload(d, "/c/stale.bin", local)
    cache = os.path.join(d.data_dir, "cache", m["id"])
    wait_until(lambda: os.path.exists(cache), what="cache entry after upload")
    # Filled two hours ago (and garbage): must not be served.
    with open(cache, "r+b") as f:
        f.write(b"X" * 100)
    old = time.time() - 7200
    os.utime(cache, (old, old))
    st, h, body = d.curl(content_url(d, m["id"]))
    assert st == 200 and body == read(local)
    assert os.stat(cache).st_mtime > time.time() - 60


# ---------------------------------------------------------------- signed links

def link_sig(token, mid, user, expires):
    import hmac
    msg = "dripd-link-v1\n%s\n%s\n%d" % (mid, user, expires)
    return hmac.new(token.encode(), msg.encode(), hashlib.sha256).hexdigest()


def test_signed_link_serves_without_a_token(dripd):
    """POST /v1/media/{id}/link gives a URL the browser's own download can
    follow: GET/HEAD/Range without Authorization, as the issuing user."""
    d = dripd
    local = make_file(os.path.join(d.dir, "l.bin"), SIZE)
    data = read(local)
    m = upload(d, "/links/l.bin", local)
    st, doc, h = d.json("POST", "/v1/media/%s/link?expires_in=120" % m["id"], expect=200)
    assert h["cache-control"] == "no-store"
    url = doc["path"]
    assert url.startswith("/v1/media/%s/content?user=alice&expires=" % m["id"])
    assert doc["url"] == d.url(url)  # absolute, as the client sees the server
    assert d.token() not in url
    exp = int(re.search(r"expires=(\d+)", url).group(1))
    assert 100 <= exp - time.time() <= 125

    st, h, body = d.curl(d.url(url), user=None)
    assert st == 200 and body == data
    assert h["content-disposition"].startswith("attachment")
    st, h, body = d.curl("-I", d.url(url), user=None)
    assert st == 200 and int(h["content-length"]) == SIZE
    st, h, body = d.curl("-H", "Range: bytes=10-19", d.url(url), user=None)
    assert st == 206 and body == data[10:20]
    # the format is the documented one: a link we sign ourselves works too
    sig = link_sig(d.token(), m["id"], "alice", exp)
    assert url.endswith("&sig=" + sig)


def test_signed_link_rejections(dripd):
    d = dripd
    local = make_file(os.path.join(d.dir, "r.bin"), 1000)
    m = upload(d, "/links/r.bin", local)
    other = upload(d, "/links/other.bin", local)
    url = d.json("POST", "/v1/media/%s/link" % m["id"], expect=200)[1]["path"]
    exp = int(re.search(r"expires=(\d+)", url).group(1))
    assert 290 <= exp - time.time() <= 305  # default lifetime 300 s

    def get(u, *args):
        st, h, b = d.curl(*args, d.url(u), user=None)
        return st, (json.loads(b) if b.startswith(b"{") else None)

    # tampered: another media, another user, another expiry, a flipped bit
    st, p = get(url.replace(m["id"], other["id"]))
    assert st == 403 and "signature" in p["detail"]
    assert get(url.replace("user=alice", "user=bob"))[0] == 403
    assert get(url.replace("expires=%d" % exp, "expires=%d" % (exp + 1)))[0] == 403
    last = url[-1]
    assert get(url[:-1] + ("0" if last != "0" else "1"))[0] == 403
    assert get(url.replace("user=alice&", ""))[0] == 403
    # expired, though correctly signed
    past = int(time.time()) - 5
    st, p = get("/v1/media/%s/content?user=alice&expires=%d&sig=%s" %
                (m["id"], past, link_sig(d.token(), m["id"], "alice", past)))
    assert st == 403 and "expired" in p["detail"]
    # a link opens only the content route, only for reading
    assert get(url.replace("/content?", "?"))[0] == 401
    assert d.curl("-X", "DELETE", d.url(url), user=None)[0] in (401, 405)
    # a wrong bearer token is not rescued by a good link
    assert get(url, "-H", "Authorization: Bearer not-a-token-at-all")[0] == 401
    # bad lifetimes; someone else's unshared media
    assert d.json("POST", "/v1/media/%s/link?expires_in=0" % m["id"])[0] == 400
    assert d.json("POST", "/v1/media/%s/link?expires_in=86401" % m["id"])[0] == 400
    assert d.json("POST", "/v1/media/%s/link" % m["id"], user="bob")[0] == 404
    # shared with bob: bob's own link works, as bob
    d.json("POST", "/v1/media/%s/shares" % m["id"], {"user": "bob"}, expect=201)
    burl = d.json("POST", "/v1/media/%s/link" % m["id"], user="bob", expect=200)[1]["path"]
    assert "user=bob&" in burl and get(burl)[0] == 200

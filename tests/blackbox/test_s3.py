"""The S3 backend against a real S3 server (s3rver 3.7.1 on loopback, started
by each test), through the real daemon: uploads with PUT /v1/files, downloads
with GET /v1/media/{id}/content, the bucket inspected with awscli.

Most tests put s3util.SigV4Proxy between dripd and s3rver: s3rver does not
check Signature V4, the proxy does (independently of libcurl), so every
request dripd sends in these tests is checked for a correct signature.
"""
import math
import os
import re

import pytest

from conftest import make_file, same_file, wait_until
from s3util import S3rver, SigV4Proxy, aws, s3_config, s3rver  # noqa: F401


MiB = 1 << 20


@pytest.fixture
def proxy(s3rver):  # noqa: F811
    px = SigV4Proxy(s3rver.port)
    yield px
    px.close()


def upload(d, local, remote, user="alice"):
    st, doc = d.put_file(local, remote, user=user)
    assert st == 202, (st, doc)
    return doc["media"]["id"], doc["job"]["id"]


def download(d, media_id, dst, user="alice"):
    st, h, body = d.curl(d.url("/v1/media/%s/content" % media_id), user=user, timeout=300)
    assert st == 200, (st, body[:300])
    with open(dst, "wb") as f:
        f.write(body)
    return dst


def bucket_keys(srv_or_px, bucket="media"):
    """Keys in the bucket, listed with awscli (ListObjectsV2)."""
    r = aws(srv_or_px, "s3", "ls", "s3://%s/" % bucket)
    return [line.split()[-1] for line in r.stdout.decode().splitlines() if line.strip()]


def key_of(srv, media_id):
    keys = [k for k in bucket_keys(srv) if k.startswith(media_id + "_")]
    assert len(keys) == 1, (media_id, keys)
    return keys[0]


def head_status(srv, key):
    r = aws(srv, "s3api", "head-object", "--bucket", "media", "--key", key, check=False)
    if r.returncode == 0:
        return 200
    m = re.search(r"\((\d{3})\)", r.stderr.decode())
    return int(m.group(1)) if m else -1


def test_round_trip_0b_1mib_64mib_multipart_and_signatures(dripd_factory, s3rver, proxy, tmp_path):  # noqa: F811
    d = dripd_factory(config=s3_config(proxy.endpoint, part_size="16MiB", parallel_parts=4))
    files = {}
    for name, size in (("empty.bin", 0), ("one.bin", MiB), ("big.bin", 64 * MiB)):
        files[name] = make_file(str(tmp_path / name), size)
    ids = {}
    for name, path in files.items():
        mid, jid = upload(d, path, "/s3/" + name)
        ids[name] = (mid, jid)
    for name, (mid, jid) in ids.items():
        job = d.wait_job(jid, timeout=180)
        assert job["state"] == "done", job
        assert job["attempts"] == 0, job
    for name, (mid, _jid) in ids.items():
        os.unlink(os.path.join(d.data_dir, "cache", mid))  # fetch from S3, not the cache
        got = download(d, mid, str(tmp_path / ("got-" + name)))
        assert same_file(files[name], got), name

    # The 64 MiB media went up in multipart, in ceil(object size / 16 MiB)
    # parts (the sealed object is a little larger than the plaintext).
    big_key = key_of(s3rver, ids["big.bin"][0])
    obj_size = os.path.getsize(s3rver.object_path(big_key))
    assert obj_size > 64 * MiB
    want_parts = math.ceil(obj_size / (16 * MiB))
    parts = [p for (m, p) in proxy.requests if m == "PUT" and big_key in p and "partNumber=" in p]
    assert len(parts) == want_parts, (want_parts, parts)
    assert len({re.search(r"partNumber=(\d+)", p).group(1) for p in parts}) == want_parts
    assert s3rver.count(r"Stored part \d+ of ") == want_parts
    creates = [p for (m, p) in proxy.requests if m == "POST" and big_key in p and p.endswith("?uploads=")]
    completes = [p for (m, p) in proxy.requests if m == "POST" and big_key in p and "uploadId=" in p]
    assert len(creates) == 1 and len(completes) == 1, proxy.requests
    # The small ones were single PUTs.
    for name in ("empty.bin", "one.bin"):
        k = key_of(s3rver, ids[name][0])
        assert [p for (m, p) in proxy.requests if k in p and m == "PUT"] == ["/media/" + k], proxy.requests

    # The 64 MiB media came back as parallel ranged GETs of part_size: the
    # first (which tells the size), then the rest, each answered 206.
    gets = [(r, st) for (p, r, st) in proxy.gets if big_key in p]
    assert len(gets) == want_parts, gets
    assert gets[0] == ("bytes=0-%d" % (16 * MiB - 1), 206), gets
    want = ["bytes=%d-%d" % (i * 16 * MiB, min(obj_size, (i + 1) * 16 * MiB) - 1)
            for i in range(want_parts)]
    assert sorted(r for r, _ in gets) == sorted(want) and all(st == 206 for _, st in gets)
    # a small object is still one request
    for name in ("empty.bin", "one.bin"):
        k = key_of(s3rver, ids[name][0])
        assert len([p for (p, _r, _s) in proxy.gets if k in p]) == 1, proxy.gets

    # Every request dripd sent carried a valid Signature V4.
    assert proxy.checked >= 9
    assert proxy.failures == [], "\n\n".join(proxy.failures)


def test_bucket_holds_ciphertext_only(dripd_factory, s3rver, tmp_path):  # noqa: F811
    d = dripd_factory(config=s3_config(s3rver.endpoint))
    marker = b"DRIPD-PLAINTEXT-MARKER-4f1c2e "
    plain = tmp_path / "secret.txt"
    plain.write_bytes(marker * 40000)  # ~1.2 MiB of one recognisable sentence
    rnd = make_file(str(tmp_path / "rnd.bin"), 3 * MiB)
    with open(rnd, "rb") as f:
        f.seek(2 * MiB)
        sample = f.read(64)
    m1, j1 = upload(d, str(plain), "/docs/secret.txt")
    m2, j2 = upload(d, rnd, "/docs/rnd.bin")
    assert d.wait_job(j1)["state"] == "done"
    assert d.wait_job(j2)["state"] == "done"
    for mid, needle in ((m1, marker), (m2, sample)):
        key = key_of(s3rver, mid)
        r = aws(s3rver, "s3", "cp", "s3://media/" + key, "-")
        obj = r.stdout
        assert len(obj) > 0
        assert needle not in obj, "plaintext found in object %s" % key
        assert obj.startswith(b"DRIPD1"), obj[:16]
    # and dripd gives the plaintext back
    assert same_file(str(plain), download(d, m1, str(tmp_path / "back.txt")))


def test_delete_removes_the_object(dripd_factory, s3rver, tmp_path):  # noqa: F811
    d = dripd_factory(config=s3_config(s3rver.endpoint))
    src = make_file(str(tmp_path / "a.bin"), 200 * 1024)
    mid, jid = upload(d, src, "/del/a.bin")
    assert d.wait_job(jid)["state"] == "done"
    key = key_of(s3rver, mid)
    assert head_status(s3rver, key) == 200
    st, _doc, _h = d.json("DELETE", "/v1/media/" + mid)
    assert st == 204
    wait_until(lambda: head_status(s3rver, key) == 404, 30, "object %s to be deleted" % key)
    assert not [k for k in bucket_keys(s3rver) if k.startswith(mid)]
    st, _doc, _h = d.json("GET", "/v1/media/" + mid)
    assert st == 404


def test_s3rver_killed_mid_upload_retries_then_succeeds(dripd_factory, s3rver, tmp_path):  # noqa: F811
    # 5 MiB parts one at a time: 13 sequential requests, so the kill lands
    # inside the multipart upload, after its first part was stored.
    cfg = s3_config(s3rver.endpoint, part_size="5MiB", parallel_parts=1, connect_timeout="1s",
                    idle_timeout="2s")
    cfg["pipeline"] = {"retry": {"attempts": 60, "backoff": "200ms", "max_backoff": "1s"}}
    d = dripd_factory(config=cfg)
    src = make_file(str(tmp_path / "big.bin"), 64 * MiB)
    mid, jid = upload(d, src, "/outage/big.bin")
    wait_until(lambda: s3rver.count(r"Stored part 1 of ") >= 1, 60, "the first part stored")
    s3rver.kill()
    assert s3rver.count(r"Stored object") == 0, "the upload finished before the kill"

    def retried():
        st, job, _h = d.json("GET", "/v1/jobs/" + jid)
        return job if st == 200 and job["attempts"] >= 1 else None
    job = wait_until(retried, 60, "job %s to record a failed attempt" % jid)
    assert job["state"] in ("queued", "running"), job
    assert job["error"] and "s3:" in job["error"], job
    assert re.search(r"(?i)connect|refused|reset|timed out|empty reply|recv", job["error"]), job
    assert d.wait_log(r"s3: .*(UploadPart|CreateMultipartUpload|PutObject)")

    s3rver.restart()
    job = d.wait_job(jid, timeout=180)
    assert job["state"] == "done", job
    assert job["attempts"] >= 1
    assert same_file(src, download(d, mid, str(tmp_path / "back.bin")))
    assert len([k for k in bucket_keys(s3rver) if k.startswith(mid)]) == 1


def test_wrong_bucket_fails_the_job_with_nosuchbucket(dripd_factory, s3rver, tmp_path):  # noqa: F811
    cfg = s3_config(s3rver.endpoint, bucket="media-x")
    cfg["health"] = {"store_probe_interval": "1h"}  # one readiness probe, at start
    d = dripd_factory(config=cfg)
    src = make_file(str(tmp_path / "a.bin"), 1000)
    mid, jid = upload(d, src, "/x/a.bin")
    job = d.wait_job(jid, timeout=60)
    assert job["state"] == "failed", job
    assert "NoSuchBucket" in job["error"], job
    assert "media-x" in job["error"] and s3rver.endpoint in job["error"], job
    # Permanent: one attempt, never retried.
    assert job["attempts"] <= 1, job
    # One PUT (never retried) plus the store probe's one HEAD at start.
    assert s3rver.count(r'No bucket found for "media-x"') <= 2, s3rver.log_text()[-2000:]
    st, ready, _h = d.json("GET", "/readyz", user=None)
    assert st == 503 and ready["store"] == "unreachable", ready
    st, media, _h = d.json("GET", "/v1/media/" + mid)
    assert st == 200 and media["state"] == "failed", media
    assert bucket_keys(s3rver) == []


def test_slowdown_and_503_are_retried(dripd_factory, s3rver, proxy, tmp_path):  # noqa: F811
    d = dripd_factory(config=s3_config(proxy.endpoint))
    proxy.fail_next(1, 503, "SlowDown", match=r"^PUT /media/")
    proxy.fail_next(1, 500, "InternalError", match=r"^PUT /media/")
    src = make_file(str(tmp_path / "a.bin"), 100 * 1024)
    mid, jid = upload(d, src, "/slow/a.bin")
    job = d.wait_job(jid, timeout=60)
    assert job["state"] == "done", job
    assert job["attempts"] == 2, job
    assert same_file(src, download(d, mid, str(tmp_path / "back.bin")))
    assert proxy.failures == [], proxy.failures


def test_parallel_get_retries_one_failed_range(dripd_factory, s3rver, proxy, tmp_path):  # noqa: F811
    """A range that fails transiently is fetched again on its own: the
    download job neither fails nor restarts, and the bytes are right."""
    d = dripd_factory(config=s3_config(proxy.endpoint, part_size="5MiB", parallel_parts=3))
    src = make_file(str(tmp_path / "r.bin"), 12 * MiB)
    mid, jid = upload(d, src, "/r/r.bin")
    assert d.wait_job(jid, timeout=120)["state"] == "done"
    key = key_of(s3rver, mid)
    os.unlink(os.path.join(d.data_dir, "cache", mid))  # the next GET must fetch from S3
    second = "bytes=%d-" % (5 * MiB)
    proxy.fail_next(1, 503, "SlowDown", match=r"^GET /media/%s Range: %s" % (re.escape(key), second))
    assert same_file(src, download(d, mid, str(tmp_path / "back.bin")))
    gets = [(r, st) for (p, r, st) in proxy.gets if key in p]
    tries = [st for r, st in gets if r.startswith(second)]
    assert tries == [503, 206], gets
    assert len(gets) == 4, gets  # 3 ranges + the retried one
    # the GET's cache fill (no job row: issue 15) neither failed nor restarted
    st, _h, body = d.curl(d.url("/metrics"), user=None)
    text = body.decode()
    assert re.search(r"^dripd_cache_fills_total 1$", text, re.M), text
    assert re.search(r"^dripd_cache_fill_failures_total 0$", text, re.M)
    assert re.search(r"^dripd_job_retries_total 0$", text, re.M)
    assert proxy.failures == [], proxy.failures


def test_wrong_credentials_fail_with_the_config_key_named(dripd_factory, s3rver, tmp_path):  # noqa: F811
    d = dripd_factory(config=s3_config(s3rver.endpoint, access_key_id="AKIAWRONG"))
    src = make_file(str(tmp_path / "a.bin"), 1000)
    _mid, jid = upload(d, src, "/cred/a.bin")
    job = d.wait_job(jid, timeout=60)
    assert job["state"] == "failed", job
    assert "InvalidAccessKeyId" in job["error"] and "storage.s3.access_key_id" in job["error"], job


def test_store_metrics_count_bytes_and_requests(dripd_factory, s3rver, tmp_path):  # noqa: F811
    d = dripd_factory(config=s3_config(s3rver.endpoint))
    src = make_file(str(tmp_path / "a.bin"), 2 * MiB)
    mid, jid = upload(d, src, "/m/a.bin")
    assert d.wait_job(jid)["state"] == "done"
    st, _h, body = d.curl(d.url("/metrics"), user=None)
    assert st == 200
    text = body.decode()
    m = re.search(r"^dripd_store_uploaded_bytes_total (\d+)", text, re.M)
    assert m and int(m.group(1)) > 2 * MiB, text[-3000:]
    m = re.search(r'^dripd_store_request_duration_seconds_count\{op="put"\} (\d+)', text, re.M)
    assert m and int(m.group(1)) >= 1, text[-3000:]
    # the http worker's DELETE reaches the bucket, and is counted like the
    # pipeline's requests (one dispatch measures every backend, every process)
    assert store_ops(d, "delete") == 0
    key = key_of(s3rver, mid)
    st, _, _ = d.json("DELETE", "/v1/media/" + mid)
    assert st == 204
    # three DELETEs: the media's metadata object and its trash mark
    # (store_forget deletes both whether or not there is one: absent is
    # fine) and the original
    wait_until(lambda: store_ops(d, "delete") >= 3, 30, "the DELETEs to be counted")
    assert store_ops(d, "delete") == 3
    assert head_status(s3rver, key) == 404


def store_ops(d, op):
    """Store requests of that op so far (a histogram with none is not shown)."""
    st, _h, body = d.curl(d.url("/metrics"), user=None)
    assert st == 200
    m = re.search(r'^dripd_store_request_duration_seconds_count\{op="%s"\} (\d+)' % op,
                  body.decode(), re.M)
    return int(m.group(1)) if m else 0


def test_tls_verified_by_default(dripd_factory, tmp_path):
    """https endpoint with a self-signed certificate: refused with verify_tls
    (the default), usable with verify_tls: false."""
    srv = S3rver(str(tmp_path / "tls"), tls=True)
    os.makedirs(srv.dir, exist_ok=True)
    srv.start()
    try:
        assert srv.endpoint.startswith("https://")
        src = make_file(str(tmp_path / "a.bin"), 1000)
        d = dripd_factory(config=s3_config(srv.endpoint))
        _mid, jid = upload(d, src, "/tls/a.bin")
        job = d.wait_job(jid, timeout=60)
        assert job["state"] == "failed", job
        assert "TLS verification" in job["error"] and "verify_tls" in job["error"], job

        d2 = dripd_factory(config=s3_config(srv.endpoint, verify_tls=False))
        mid, jid = upload(d2, src, "/tls/a.bin")
        assert d2.wait_job(jid, timeout=60)["state"] == "done"
        assert same_file(src, download(d2, mid, str(tmp_path / "back.bin")))
    finally:
        srv.stop()

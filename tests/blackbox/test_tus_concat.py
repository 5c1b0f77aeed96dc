"""tus concatenation (issue 18, item 1): Upload-Concat: partial uploads are
not media and make no job; Upload-Concat: final;<URLs> joins them
(copy_file_range) into one upload job. Real clients: tus-js-client
parallelUploads (with a part cut mid-body and the upload resumed from its
URL store), and curl for the protocol's edges."""
import base64
import json
import os
import re
import subprocess

from conftest import ROOT, make_file, sha256_of as sha, wait_until

NODE_DIR = os.path.join(ROOT, "tests", "node")


def b64(s):
    return base64.b64encode(s.encode()).decode()


def tus(d, method, url, *args, user="alice"):
    how = ["-I"] if method == "HEAD" else ["-X", method]  # -X HEAD would wait for a body
    return d.curl(*how, "-H", "Tus-Resumable: 1.0.0", *args, url, user=user)


def partial(d, data, user="alice"):
    """A partial upload holding data (created, then one PATCH)."""
    st, h, body = tus(d, "POST", d.url("/v1/uploads"), "-H", "Upload-Concat: partial",
                      "-H", "Upload-Length: %d" % len(data), user=user)
    assert st == 201, body
    loc = h["location"]
    f = os.path.join(d.dir, "part-" + loc.rsplit("/", 1)[1])
    with open(f, "wb") as out:
        out.write(data)
    st, h, body = tus(d, "PATCH", loc, "-H", "Upload-Offset: 0", "-H",
                      "Content-Type: application/offset+octet-stream", "--data-binary", "@" + f,
                      user=user)
    assert st == 204 and "upload-job" not in h, (st, h, body)
    return loc


def final(d, urls, name, folder=None, user="alice"):
    meta = "filename " + b64(name) + (",folder " + b64(folder) if folder else "")
    return tus(d, "POST", d.url("/v1/uploads"), "-H", "Upload-Concat: final;" + " ".join(urls),
               "-H", "Upload-Metadata: " + meta, user=user)


def jobs(d):
    st, doc, _ = d.json("GET", "/v1/jobs?limit=1000")
    assert st == 200
    return doc["jobs"] if isinstance(doc, dict) else doc


def test_partials_join_into_one_upload(dripd_factory):
    d = dripd_factory()
    st, h, _ = d.curl("-X", "OPTIONS", d.url("/v1/uploads"), user=None)
    assert "concatenation" in h["tus-extension"].split(","), h
    parts = [os.urandom(n) for n in (100000, 1, 300000)]
    locs = [partial(d, p) for p in parts]
    # a partial is complete, says so, and is not media: no job, no file
    st, h, _ = tus(d, "HEAD", locs[0])
    assert st == 200 and h["upload-concat"] == "partial" and h["upload-offset"] == "100000"
    assert "upload-job" not in h
    assert jobs(d) == []
    st, _, listing = d.curl(d.url("/v1/media?folder=/"))
    assert b'"files":[]' in listing, listing
    # the final upload: absolute URLs and a bare path both name a partial
    urls = [locs[0], "/v1/uploads/" + locs[1].rsplit("/", 1)[1], locs[2]]
    st, h, body = final(d, urls, "joined.bin", folder="/cat")
    assert st == 201, body
    assert h["location"].startswith(d.url("/v1/uploads/")) and h["upload-offset"] == "400001"
    job, media = h["upload-job"], h["upload-media"]
    assert d.wait_job(job)["state"] == "done"
    st, _, got = d.curl(d.url("/v1/media/%s/content" % media))
    assert st == 200 and got == b"".join(parts)
    st, doc, _ = d.json("GET", "/v1/media/" + media)
    assert doc["path"] == "/cat/joined.bin" and doc["size"] == 400001
    assert len(jobs(d)) == 1  # the partials made none
    # the final upload says what it joined (tusd: the parts' absolute URLs,
    # in order) beside its own metadata, and is never patched (403)
    fin = h["location"]
    st, h, _ = tus(d, "HEAD", fin)
    assert st == 200 and h["upload-concat"] == "final;" + " ".join(locs), h
    assert h["upload-metadata"] == "filename %s,folder %s" % (b64("joined.bin"), b64("/cat"))
    assert h["upload-offset"] == h["upload-length"] == "400001" and h["upload-job"] == job
    st, h, body = tus(d, "PATCH", fin, "-H", "Upload-Offset: 400001", "-H",
                      "Content-Type: application/offset+octet-stream", "--data-binary", "x")
    assert st == 403 and h["content-type"] == "application/problem+json", (st, h, body)
    assert "final upload" in json.loads(body)["detail"]
    st, h, _ = tus(d, "HEAD", fin)
    assert h["upload-offset"] == "400001"
    # the partials are spent: gone, and not joinable twice
    for loc in locs:
        assert tus(d, "HEAD", loc)[0] == 404
    st, h, body = final(d, locs, "again.bin")
    assert st == 400 and "no such upload" in json.loads(body)["detail"]
    # their spool files are gone too
    spool = os.path.join(d.data_dir, "spool")
    wait_until(lambda: not any(f for f in os.listdir(spool) if not f.startswith(".")), 30,
               "an empty spool")


def test_final_refusals(dripd_factory):
    d = dripd_factory()
    done = partial(d, b"abc")
    st, h, body = tus(d, "POST", d.url("/v1/uploads"), "-H", "Upload-Concat: partial",
                      "-H", "Upload-Length: 10")
    half = h["location"]  # created, no bytes yet
    st, h, body = final(d, [done, half], "x.bin")
    assert st == 400 and "not complete" in json.loads(body)["detail"], body
    st, h, body = final(d, [done, done], "x.bin")
    assert st == 400 and "listed twice" in json.loads(body)["detail"]
    st, h, body = final(d, [done], "x.bin", user="bob")  # not bob's
    assert st == 400 and "no such upload" in json.loads(body)["detail"]
    st, h, body = final(d, ["http://evil.example/elsewhere/1234"], "x.bin")
    assert st == 400 and "not an upload URL" in json.loads(body)["detail"]
    st, h, body = tus(d, "POST", d.url("/v1/uploads"), "-H", "Upload-Concat: final;" + done,
                      "-H", "Upload-Length: 3", "-H", "Upload-Metadata: filename " + b64("x"))
    assert st == 400 and "no Upload-Length" in json.loads(body)["detail"]
    st, h, body = tus(d, "POST", d.url("/v1/uploads"), "-H", "Upload-Concat: whole")
    assert st == 400
    # a normal upload is not a partial
    st, h, body = tus(d, "POST", d.url("/v1/uploads"), "-H", "Upload-Length: 0",
                      "-H", "Upload-Metadata: filename " + b64("empty.bin"))
    assert st == 201
    st, h, body = final(d, [h["location"]], "x.bin")
    assert st == 400, body
    # after the refusals the good partial still joins
    st, h, body = final(d, [done], "ok.bin")
    assert st == 201 and h["upload-offset"] == "3", body
    # a name taken: 409, and the partial stays for another try
    p2 = partial(d, b"defg")
    st, h, body = final(d, [p2], "ok.bin")
    assert st == 409, body
    assert tus(d, "HEAD", p2)[0] == 200


def test_final_within_quota_counts_the_bytes_once(dripd_factory):
    """quotas.max_bytes: the parts' bytes count when they are announced;
    the final upload joining them does not count them a second time."""
    d = dripd_factory(config={"quotas": {"default": {"max_bytes": "100KiB"}}})
    locs = [partial(d, os.urandom(30 << 10)) for _ in range(2)]  # 60 KiB of 100
    st, h, body = final(d, locs, "q.bin")
    assert st == 201 and h["upload-offset"] == str(60 << 10), body
    assert d.wait_job(h["upload-job"])["state"] == "done"
    # 60 KiB stored: a part that would pass the quota is refused when announced
    st, h, body = tus(d, "POST", d.url("/v1/uploads"), "-H", "Upload-Concat: partial",
                      "-H", "Upload-Length: %d" % (50 << 10))
    assert st == 507 and "quotas.max_bytes" in json.loads(body)["detail"], body


def test_tus_js_client_parallel_uploads_cut_and_resumed(dripd_factory):
    """tus-js-client parallelUploads: 4 on a 200 MiB file; one partial's
    PATCH is cut mid-body and the whole upload aborted (the other parts'
    PATCHes are cut with it), then resumed from the URL store: the file
    arrives whole, as one upload job."""
    d = dripd_factory()
    local = make_file(os.path.join(d.dir, "big.bin"), 200 << 20)
    r = subprocess.run(["node", os.path.join(NODE_DIR, "tus_parallel.mjs"), "--endpoint",
                        d.url("/v1/uploads"), "--token", d.token(), "--file", local,
                        "--parallel", "4", "--cut", "1", "--store", local + ".urls.json"],
                       capture_output=True, text=True, timeout=600, cwd=NODE_DIR)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["cut_at"] and 0 < res["cut_at"] < (200 << 20)
    assert d.wait_job(res["job"], timeout=300)["state"] == "done"
    all_jobs = jobs(d)
    assert len(all_jobs) == 1, all_jobs
    st, _, body = d.curl(d.url("/v1/media/%s/content" % res["media"]), timeout=300)
    assert st == 200 and len(body) == 200 << 20 and sha(body) == sha(local)
    log = d.log_text()
    assert "tus: upload %s" % res["url"].rsplit("/", 1)[1] in log
    # the cut PATCHes kept what they got, and the resume went on from there
    saved = [int(x) for x in re.findall(r"tus: upload \S+ interrupted; saved offset (\d+)", log)]
    assert any(x > 0 for x in saved), saved
    heads = set(re.findall(r'"HEAD /v1/uploads/(\w+)" 200', log))
    assert len(heads) == 4, heads  # every partial asked for its offset


def test_dripctl_parallel_killed_and_resumed(dripd_factory):
    """dripctl upload --parallel 4: four partial uploads at once, then a
    final one. dripctl is killed mid-way; the rerun resumes each part where
    the server has it (the parts' URLs are in its state file) and the file
    arrives whole as one upload job; the parts are spent."""
    from conftest import DRIPCTL, same_file
    d = dripd_factory()
    src = make_file(os.path.join(d.dir, "par.bin"), 16 << 20)
    state = os.path.join(d.dir, "state", "dripctl", "uploads.json")
    env = dict(os.environ, DRIPD_URL=d.url(), DRIPD_TOKEN=d.token(), HOME=d.dir,
               XDG_STATE_HOME=os.path.join(d.dir, "state"))
    cmd = [DRIPCTL, "upload", src, "--to", "/p", "--parallel", "4", "--chunk-size", "512K"]
    p = subprocess.Popen(cmd + ["--limit-rate", "1M"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)

    def parts():
        try:
            with open(state) as f:
                v = [u for k, u in json.load(f).items() if k.endswith("|parallel 4")]
        except (OSError, ValueError):
            return []
        return v[0] if v else []

    def held():
        offs = []
        for u in parts():
            st, h, _ = tus(d, "HEAD", d.url(u))
            assert st == 200 and h["upload-concat"] == "partial", (st, h)
            offs.append(int(h["upload-offset"]))
        return offs

    try:
        wait_until(lambda: len(parts()) == 4 and all(o >= 512 << 10 for o in held()), 60,
                   "every part under way")
    finally:
        p.kill()
        p.wait()
    offs = held()
    assert len(offs) == 4 and sum(offs) < 16 << 20, offs
    urls = parts()
    assert jobs(d) == []
    r = subprocess.run(cmd + ["--json", "--wait"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = json.loads(r.stdout)[0]
    assert out["resumed_at"] >= sum(offs) and out["job"]["state"] == "done", out
    assert out["path"] == "/p/par.bin"
    got = os.path.join(d.dir, "got.bin")
    st, _, body = d.curl(d.url("/v1/media/%s/content" % out["media_id"]))
    with open(got, "wb") as f:
        f.write(body)
    assert st == 200 and same_file(src, got)
    assert len(jobs(d)) == 1
    for u in urls:  # joined: spent
        assert tus(d, "HEAD", d.url(u))[0] == 404
    assert parts() == []
    # the name is taken now: the final upload is refused (exit 5) and the
    # parts stay; --replace then sends no byte again, only the final upload
    r = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 5 and json.loads(r.stdout)[0]["status"] == 409, r.stdout
    assert len(parts()) == 4
    r = subprocess.run(cmd + ["--json", "--replace"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)[0]["resumed_at"] == 16 << 20
    assert len(jobs(d)) == 2 and parts() == []

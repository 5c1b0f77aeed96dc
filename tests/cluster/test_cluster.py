"""Three dripd nodes behind nginx round robin, one PostgreSQL catalog, one
S3 bucket (conftest.py). What a client of the balancer sees: one dripd.

Covered here (issue 16): uploads, downloads and signed links across
nodes, the web UI through the balancer (Chromium, a big file too), SSE
across nodes, one webhook delivery per event, job claims never duplicated
under contention, a PostgreSQL restart under load, dripctl (ls, download,
upload) through the balancer, a node lost with its disk under load
(nothing acknowledged lost), tus uploads whose requests land on any node
(tus-js-client through the balancer, concurrent PATCHes on two nodes),
and tus concatenation across nodes (issue 18: partial uploads on any
nodes, a final upload joining them on another, two finals racing,
tus-js-client parallelUploads and dripctl --parallel through the
balancer, the partials' node lost with its disk before the final).
"""
import http.server
import json
import re
import os
import shutil
import subprocess
import threading

from conftest import SSE, make_file, same_file, wait_until

DRIPCTL = os.environ.get("DRIPCTL_BIN", os.path.join(os.path.dirname(__file__), "..", "..",
                                                     "bin", "dripctl"))


def put_ok(c, local, remote):
    st, doc = c.put_file(local, remote)
    assert st == 202, (st, doc)
    return doc["media"]["id"], doc["job"]["id"]


def content(target, media_id, out, user="alice"):
    st, _, body = target.curl(target.url("/v1/media/%s/content" % media_id), user=user)
    assert st == 200, (st, body[:300])
    with open(out, "wb") as f:
        f.write(body)
    return out


def served_by(c):
    """{node addr: requests} from the balancer's log."""
    out = {}
    for _, _, _, addr in c.upstreams():
        out[addr] = out.get(addr, 0) + 1
    return out


def test_one_dripd_behind_the_balancer(cluster, tmp_path):
    c = cluster
    src = make_file(str(tmp_path / "a.bin"), 3 << 20)
    ids = [put_ok(c, src, "/c/%d.bin" % i) for i in range(6)]
    for _, j in ids:
        assert c.wait_job(j)["state"] == "done"
    # Every node downloads every file (each from the bucket into its own
    # cache), and so does the balancer.
    for mid, _ in ids:
        for n in c.nodes:
            assert same_file(src, content(n, mid, str(tmp_path / "o.bin")))
        assert same_file(src, content(c, mid, str(tmp_path / "o.bin")))
    st, doc, _ = c.json("GET", "/v1/media?folder=/c", expect=200)
    assert len(doc["files"]) == 6
    # A signed link made through the balancer works on every node, no token.
    link = c.json("POST", "/v1/media/%s/link?expires_in=120" % ids[0][0], expect=200)[1]["path"]
    with open(src, "rb") as f:
        data = f.read()
    for n in c.nodes:
        st, _, body = n.curl(n.url(link), user=None)
        assert st == 200 and body == data, (n.addr, st, body[:200])
    # The uploads were spread over the three nodes, and each was processed
    # by the node that took it.
    puts = [u for u in c.upstreams() if u[0] == "PUT"]
    assert len({u[3] for u in puts}) == 3, puts
    rows = c.pg.query(c.dsn, "SELECT node, count(*) FROM jobs WHERE kind = 'upload' GROUP BY node")
    assert sorted(r[0] for r in rows) == ["node-a", "node-b", "node-c"], rows
    # dripctl sees one dripd.
    env = dict(os.environ, DRIPD_URL=c.url(), DRIPD_TOKEN=c.token())
    r = subprocess.run([DRIPCTL, "--url", c.url(), "--token", c.token(), "ls", "/c"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0 and "5.bin" in r.stdout, r.stdout + r.stderr
    out = str(tmp_path / "ctl.bin")
    r = subprocess.run([DRIPCTL, "--url", c.url(), "--token", c.token(), "download", "/c/3.bin",
                        "-o", out], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and same_file(src, out), r.stderr
    r = subprocess.run([DRIPCTL, "--url", c.url(), "--token", c.token(), "upload", src, "--to",
                        "/ctl", "--wait"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert same_file(src, content(c, c.json("GET", "/v1/media?folder=/ctl", expect=200)[1]
                                  ["files"][0]["id"], str(tmp_path / "ctl2.bin")))
    # --parallel: four partial uploads at once through the balancer (so on
    # several nodes), then one final upload that joins them.
    before = len(c.upstreams())
    r = subprocess.run([DRIPCTL, "--url", c.url(), "--token", c.token(), "upload", src, "--to",
                        "/par", "--parallel", "4", "--wait"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "does not offer" not in r.stderr, r.stderr
    sent = [u for u in c.upstreams()[before:] if u[1].startswith("/v1/uploads")]
    creations = [u for u in sent if u[0] == "POST" and u[2] == "201"]
    assert len(creations) == 5, sent  # four partial uploads and the final one
    assert len({u[3] for u in sent if u[0] in ("POST", "PATCH")}) >= 2, sent
    assert same_file(src, content(c, c.json("GET", "/v1/media?folder=/par", expect=200)[1]
                                  ["files"][0]["id"], str(tmp_path / "par.bin")))


def test_sse_carries_every_nodes_events(cluster, tmp_path):
    c = cluster
    streams = [SSE(n) for n in c.nodes]
    src = make_file(str(tmp_path / "s.bin"), 10000)
    jobs = [put_ok(c, src, "/sse/%d.bin" % i)[1] for i in range(6)]
    for s in streams:  # every stream, whichever node it is on, sees every job end
        ended = set()
        while ended != set(jobs):
            ev = s.next(timeout=30)
            if ev["event"] in ("job.done", "job.failed") and ev["data"]["id"] in jobs:
                assert ev["event"] == "job.done", ev
                ended.add(ev["data"]["id"])
        s.close()


class _Hook(http.server.BaseHTTPRequestHandler):
    seqs = []
    lock = threading.Lock()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        with _Hook.lock:
            _Hook.seqs.append(body["seq"])
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


def test_claims_once_and_one_webhook_per_event(cluster_factory, tmp_path):
    _Hook.seqs = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/hook" % srv.server_address[1]
        c = cluster_factory(extra={"webhooks": [{"url": url, "secret": "s"}]})
        src = make_file(str(tmp_path / "w.bin"), 2000)
        jobs, lock = [], threading.Lock()

        def load(k):
            for i in range(20):
                _, j = put_ok(c, src, "/load/%d-%d.bin" % (k, i))
                with lock:
                    jobs.append(j)
        ts = [threading.Thread(target=load, args=(k,)) for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(300)
        assert len(jobs) == 120
        for j in jobs:
            assert c.wait_job(j, timeout=120)["state"] == "done"
        twice = c.pg.query(c.dsn, "SELECT job_id FROM events WHERE type = 'job.done' "
                                  "GROUP BY job_id HAVING count(*) <> 1")
        assert twice == [], twice
        claims = sum(n.log_text().count("claimed at stage") for n in c.nodes)
        stages = int(c.pg.query(c.dsn, "SELECT count(*) FROM jobs")[0][0])
        assert claims == stages, (claims, stages)  # one claim per job: none twice
        n_events = int(c.pg.query(c.dsn, "SELECT count(*) FROM events")[0][0])

        def delivered():
            with _Hook.lock:
                return len(_Hook.seqs) >= n_events
        wait_until(delivered, 60, "every event delivered")
        with _Hook.lock:
            seqs = list(_Hook.seqs)
        assert sorted(set(seqs)) == seqs, "an event was delivered twice or out of order"
        assert len(seqs) == n_events
    finally:
        srv.shutdown()
        srv.server_close()


def test_postgres_restart_under_load(cluster_factory, tmp_path):
    c = cluster_factory(own_pg=True)  # not the run's shared server: this one is stopped
    src = make_file(str(tmp_path / "l.bin"), 20000)
    acked, statuses, stop = [], [], threading.Event()

    def load():
        i = 0
        while not stop.is_set():
            st, doc = c.put_file(src, "/r/%d.bin" % i)
            statuses.append(st)
            if st == 202:
                acked.append(doc["media"]["id"])
            i += 1
    t = threading.Thread(target=load)
    t.start()
    try:
        wait_until(lambda: len(acked) >= 6, 30, "uploads before the restart")
        c.pg.stop()
        for n in c.nodes:
            wait_until(lambda: "catalog (postgres) unreachable" in
                       n.json("GET", "/readyz", user=None)[1]["problems"], 20, "readyz of a node")
        c.pg.start()
        for n in c.nodes:
            wait_until(lambda: n.json("GET", "/readyz", user=None)[1]["ready"], 30, "ready again")
        m = len(acked)
        wait_until(lambda: len(acked) >= m + 6, 30, "uploads after the restart")
    finally:
        stop.set()
        t.join(60)
    assert set(statuses) <= {202, 503}, set(statuses)
    for mid in acked:
        wait_until(lambda: c.json("GET", "/v1/media/" + mid)[1]["state"] == "available", 60,
                   "media %s available" % mid)


def sha256_of(path):
    import hashlib
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def test_node_lost_with_its_disk(cluster_factory, tmp_path):
    """Issue 16 item 3: kill -9 a node's whole process tree under load and
    delete its data_dir: every upload it acknowledged is finished by the
    others from its staged body, and the staged parts are collected."""
    # The victim's store step is slow, so acknowledged uploads are still
    # waiting there when it dies.
    slow = {"pipeline": {"test_store_delay": "2s", "retry": {"attempts": 5, "backoff": "100ms",
                                                            "max_backoff": "1s"},
                         "upload": {"store": {"concurrency": 1}}}}
    # What the victim staged and never recorded is swept 20 s after it was
    # made (an hour in production; DRIPD_TEST_STAGED_ORPHAN_MS).
    c = cluster_factory(node_extra={1: slow}, env={"DRIPD_TEST_STAGED_ORPHAN_MS": "20000"})
    victim = c.nodes[1]
    srcs = [make_file(str(tmp_path / ("k%d.bin" % i)), 30000 + 7 * i) for i in range(2)]
    shas = [sha256_of(s) for s in srcs]
    acked, lock, stop = {}, threading.Lock(), threading.Event()

    def load(k, target):
        i = 0
        while not stop.is_set():
            name = "/lost/%s-%d-%d.bin" % (k, i, len(acked))
            st, h, b = target.curl("-T", srcs[i % 2], target.url("/v1/files" + name))
            if st == 202:
                with lock:
                    acked[json.loads(b)["media"]["id"]] = shas[i % 2]
            elif target is victim and st == 0:
                return  # the victim is gone
            i += 1
    ts = [threading.Thread(target=load, args=("lb%d" % k, c)) for k in range(3)]
    ts += [threading.Thread(target=load, args=("v%d" % k, victim)) for k in range(2)]
    for t in ts:
        t.start()
    try:
        def victim_behind():
            rows = c.pg.query(c.dsn, "SELECT count(*) FROM jobs WHERE node = 'node-b' AND "
                                     "kind = 'upload' AND state IN ('queued', 'running')")
            return int(rows[0][0]) >= 12
        wait_until(victim_behind, 60, "the victim to hold acknowledged uploads not yet stored")
        # a tus upload half done on the victim, to be finished elsewhere
        tdata = os.urandom(100000)
        tloc = tus_create(victim, len(tdata), "half.bin")
        st, _, body = tus_patch(victim, tloc, 0, tdata[:60000])
        assert st == 204, body
        victim.kill_tree()
        shutil.rmtree(victim.data_dir)
        pending = int(c.pg.query(c.dsn, "SELECT count(*) FROM jobs WHERE node = 'node-b' AND "
                                        "kind = 'upload' AND state IN ('queued', 'running')")[0][0])
        assert pending >= 12
        n = len(acked)
        wait_until(lambda: len(acked) >= n + 20, 60, "uploads after the loss")
    finally:
        stop.set()
        for t in ts:
            t.join(120)
    # Every acknowledged upload becomes available, with its bytes.
    def all_available():
        rows = c.pg.query(c.dsn, "SELECT id, state, sha256 FROM media WHERE path LIKE '/lost/%'")
        got = {r[0]: (r[1], r[2]) for r in rows}
        missing = [m for m in acked if m not in got]
        assert not missing, "acknowledged uploads with no media row: %s" % missing[:5]
        failed = [m for m in acked if got[m][0] == "failed"]
        assert not failed, "failed: %s" % failed[:5]
        return all(got[m] == ("available", acked[m]) for m in acked)
    wait_until(all_available, 180, "every acknowledged upload available", interval=0.5)
    survivors = [c.nodes[0], c.nodes[2]]
    fetched = sum(n.log_text().count("came from staged body") for n in survivors)
    assert fetched >= pending, (fetched, pending)
    st, h, _ = tus(c.nodes[2], "HEAD", tloc)
    assert st == 200 and h["upload-offset"] == "60000", h
    st, h, body = tus_patch(c.nodes[0], tloc, 60000, tdata[60000:])
    assert st == 204 and "upload-job" in h, (st, body)
    assert finished_bytes(c, h, tmp_path) == tdata
    some = list(acked)[:3] + list(acked)[-3:]
    for mid in some:
        out = content(c, mid, str(tmp_path / "o.bin"))
        assert sha256_of(out) == acked[mid]
    # The staged parts go once their jobs are done: none left behind.
    wait_until(lambda: c.pg.query(c.dsn, "SELECT count(*) FROM staged_parts")[0][0] == "0", 60,
               "staged parts collected")

    # Requests the victim never answered may have staged parts no row
    # names: the collector's orphan sweep removes them once they are old.
    wait_until(lambda: not [k for k in c.s3.objects() if k.startswith("staging-")], 90,
               "staged objects deleted from the bucket", interval=0.5)


# ---- tus across nodes (issue 16 item 2) ----

OCTET = "application/offset+octet-stream"
NODE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "node")


def tus(target, method, path, headers=None, body=None):
    """One tus request to a node or the balancer: (status, headers, body)."""
    import http.client
    h = {"Tus-Resumable": "1.0.0", "Authorization": "Bearer " + target.token()}
    h.update(headers or {})
    conn = http.client.HTTPConnection(target.host, target.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def tus_create(target, length, name):
    import base64
    md = "filename " + base64.b64encode(name.encode()).decode()
    st, h, b = tus(target, "POST", "/v1/uploads",
                   {"Upload-Length": str(length), "Upload-Metadata": md})
    assert st == 201, (st, b)
    return h["location"]


def tus_patch(target, loc, off, data):
    return tus(target, "PATCH", loc, {"Content-Type": OCTET, "Upload-Offset": str(off)}, data)


def race(nodes, request):
    """request(node) on each node at once: {node addr: its answer}."""
    res = {}
    ts = [threading.Thread(target=lambda n=n: res.__setitem__(n.addr, request(n)))
          for n in nodes]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return res


def finished_bytes(c, h, tmp_path):
    """The content of a finished tus upload (its job done), through the balancer."""
    assert c.wait_job(h["upload-job"], timeout=120)["state"] == "done"
    with open(content(c, h["upload-media"], str(tmp_path / "t.out")), "rb") as f:
        return f.read()


def test_tus_any_node_takes_the_next_patch(cluster, tmp_path):
    """Created on A, PATCHed on B and C, HEAD anywhere, finished on A: the
    bytes are one upload. Two PATCHes at one offset on two nodes: one wins,
    the other gets 409 and records nothing."""
    c = cluster
    a, b, n3 = c.nodes
    data = os.urandom(3 * 70000 + 5)
    loc = tus_create(a, len(data), "x.bin")
    st, h, body = tus_patch(b, loc, 0, data[:70000])
    assert st == 204 and h["upload-offset"] == "70000", (st, body)
    for n in c.nodes:  # every node knows the offset
        st, h, _ = tus(n, "HEAD", loc)
        assert st == 200 and h["upload-offset"] == "70000", h
    # a race: the same offset on two nodes at once
    res = race((n3, a), lambda n: tus_patch(n, loc, 70000, data[70000:140000]))
    codes = sorted(r[0] for r in res.values())
    assert codes == [204, 409], res
    st, h, _ = tus(b, "HEAD", loc)
    assert h["upload-offset"] == "140000"
    st, h, body = tus_patch(n3, loc, 70000, data[70000:140000])  # stale: refused
    assert st == 409, body
    st, h, body = tus_patch(a, loc, 140000, data[140000:])
    assert st == 204 and "upload-job" in h, (st, body)
    # a retried last PATCH (another node) gets the same answer
    st, h2, _ = tus(b, "HEAD", loc)
    assert h2["upload-job"] == h["upload-job"]
    assert finished_bytes(c, h, tmp_path) == data
    parts = int(c.pg.query(c.dsn, "SELECT count(*) FROM staged_parts WHERE body = '%s'"
                           % loc.rsplit("/", 1)[1])[0][0])
    # 3 parts until the job is done and the collector takes them
    wait_until(lambda: c.pg.query(c.dsn, "SELECT count(*) FROM staged_parts")[0][0] == "0", 60,
               "parts collected (%d were recorded)" % parts)
    wait_until(lambda: not [k for k in c.s3.objects() if k.startswith("staging-")], 60,
               "staged objects gone (the race's loser deleted its own)")
    # a cluster offers concatenation too (test_tus_concat_across_nodes)
    st, h, _ = tus(a, "OPTIONS", "/v1/uploads")
    assert st == 204 and "concatenation" in h["tus-extension"], h


# ---- tus concatenation across nodes (issue 18) ----

def tus_partial(target, length, data=None):
    """A partial upload (with its bytes when data is given): its URL."""
    h = {"Upload-Length": str(length), "Upload-Concat": "partial"}
    if data is not None:
        h["Content-Type"] = OCTET
    st, h, b = tus(target, "POST", "/v1/uploads", h, data)
    assert st == 201, (st, b)
    return h["location"]


def tus_final(target, urls, name):
    import base64
    return tus(target, "POST", "/v1/uploads",
               {"Upload-Concat": "final;" + " ".join(urls),
                "Upload-Metadata": "filename " + base64.b64encode(name.encode()).decode()})


def upload_id(url):
    return url.rsplit("/", 1)[1]


def staged_gone(c):
    """No staged part left in the catalog or in the bucket."""
    wait_until(lambda: c.pg.query(c.dsn, "SELECT count(*) FROM staged_parts")[0][0] == "0", 60,
               "staged parts collected")
    wait_until(lambda: not [k for k in c.s3.objects() if k.startswith("staging-")], 60,
               "staged objects deleted from the bucket", interval=0.2)


def test_tus_concat_across_nodes(cluster, tmp_path):
    """Partial uploads created and PATCHed on any nodes (their bytes staged
    in the bucket), HEAD anywhere says partial, none is a job; the final
    upload on another node joins them by moving catalog rows, no byte
    copied; two finals racing for the same partials on two nodes: exactly
    one wins; refusals as on one node; the joined parts are collected from
    the bucket, by the names they were staged under, once the job is done."""
    c = cluster
    a, b, n3 = c.nodes
    d1, d2 = os.urandom(150000), os.urandom(70001)
    p1 = tus_partial(a, len(d1))
    st, h, body = tus_patch(b, p1, 0, d1[:80000])
    assert st == 204 and h["upload-offset"] == "80000", (st, body)
    st, _, body = tus_final(n3, [p1], "early.bin")  # not complete: refused
    assert st == 400 and b"not complete" in body, (st, body)
    st, h, body = tus_patch(n3, p1, 80000, d1[80000:])
    assert st == 204 and "upload-job" not in h, (st, h, body)
    p2 = tus_partial(b, len(d2), d2)  # creation-with-upload: complete at once
    for n in c.nodes:
        for p, d in ((p1, d1), (p2, d2)):
            st, h, _ = tus(n, "HEAD", p)
            assert st == 200 and h["upload-concat"] == "partial", h
            assert h["upload-offset"] == str(len(d)) and "upload-job" not in h, h
    assert c.pg.query(c.dsn, "SELECT count(*) FROM jobs")[0][0] == "0"  # partials are no jobs
    st, _, body = tus_final(a, [p1, p1], "twice.bin")
    assert st == 400 and b"listed twice" in body, (st, body)

    # Two finals race for the same partials on two nodes: one wins.
    res = race((a, n3), lambda n: tus_final(n, [p1, p2], "joined.bin"))
    codes = sorted(r[0] for r in res.values())
    assert codes == [201, 400], res
    win = [r for r in res.values() if r[0] == 201][0][1]
    lose = [r for r in res.values() if r[0] == 400][0][2]
    assert b"no such upload" in lose, lose
    fid = upload_id(win["location"])
    # the final's body is the partials' parts, in order, named as staged
    rows = c.pg.query(c.dsn, "SELECT src, off, len FROM staged_parts WHERE body = '%s' "
                             "ORDER BY off" % fid)
    assert [r[0] for r in rows] == [upload_id(p1)] * 2 + [upload_id(p2)], rows
    assert [int(r[1]) for r in rows] == [0, 80000, 150000], rows
    assert c.pg.query(c.dsn, "SELECT count(*) FROM tus WHERE path = ''")[0][0] == "0"
    st, h, _ = tus(b, "HEAD", win["location"])
    assert st == 200 and h["upload-concat"].startswith("final;"), h
    urls = h["upload-concat"][len("final;"):].split()
    assert [upload_id(u) for u in urls] == [upload_id(p1), upload_id(p2)], h
    assert h["upload-job"] == win["upload-job"], h
    st, _, body = tus_patch(n3, win["location"], len(d1) + len(d2), b"x")
    assert st == 403, (st, body)
    st, _, body = tus_final(b, [p2], "again.bin")  # joined already
    assert st == 400 and b"no such upload" in body, (st, body)
    assert finished_bytes(c, win, tmp_path) == d1 + d2
    assert c.pg.query(c.dsn, "SELECT count(*) FROM jobs")[0][0] == "1"
    staged_gone(c)


def test_unjoined_partials_expire_once(cluster_factory):
    """Partial uploads no final upload joined expire like any tus upload:
    once per cluster (the node holding the tus-expiry lease removes them),
    and their staged parts are then collected from the bucket."""
    c = cluster_factory(extra={"tus": {"expiration": "2s"}}, nodes=2)
    a, b = c.nodes
    p1 = tus_partial(a, 5000, os.urandom(5000))
    p2 = tus_partial(b, 7000)
    st, _, body = tus_patch(a, p2, 0, os.urandom(3000))
    assert st == 204, body
    assert len([k for k in c.s3.objects() if k.startswith("staging-")]) == 2
    wait_until(lambda: c.pg.query(c.dsn, "SELECT count(*) FROM tus")[0][0] == "0", 30,
               "the partial uploads expired")
    removed = {n.addr: len(re.findall(r"tus: upload (%s|%s) of alice expired" % (
        upload_id(p1), upload_id(p2)), n.log_text())) for n in c.nodes}
    assert sorted(removed.values()) == [0, 2], removed  # one node removed both
    for p in (p1, p2):
        st, _, _ = tus(b, "HEAD", p)
        assert st == 404
    staged_gone(c)


def test_tus_js_client_parallel_across_the_balancer(cluster, tmp_path):
    """tus-js-client parallelUploads: 4 through nginx round robin: the
    partial uploads' requests land on several nodes, one PATCH is cut
    mid-body and the upload resumed; the file, downloaded from a node that
    did not take the final upload, is byte-identical. Then partial uploads
    acknowledged by a node that is killed (kill -9) with its data_dir
    deleted are joined by a final upload on another node."""
    c = cluster
    size = 40 << 20
    src = make_file(str(tmp_path / "par.bin"), size)
    before = len(c.upstreams())
    r = subprocess.run(["node", os.path.join(NODE_DIR, "tus_parallel.mjs"),
                        "--endpoint", c.url("/v1/uploads"), "--token", c.token(), "--file", src,
                        "--name", "par.bin", "--parallel", "4", "--cut", "1",
                        "--store", str(tmp_path / "urls.json")],
                       capture_output=True, text=True, timeout=300, cwd=NODE_DIR)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["cut_at"] and 0 < out["cut_at"] < size, out
    sent = c.upstreams()[before:]
    assert len({u[3] for u in sent if u[0] == "PATCH"}) >= 2, sent
    finals = [u for u in sent if u[0] == "POST" and u[2] == "201"]
    assert len(finals) == 5, sent  # four partials, then the final one
    assert c.wait_job(out["job"], timeout=120)["state"] == "done"
    other = [n for n in c.nodes if n.addr != finals[-1][3]][0]
    got = content(other, out["media"], str(tmp_path / "par.out"))
    assert sha256_of(got) == sha256_of(src)
    assert c.pg.query(c.dsn, "SELECT count(*) FROM jobs WHERE kind = 'upload'")[0][0] == "1"

    # The partials' node dies with its disk after acknowledging them.
    victim, a = c.nodes[1], c.nodes[0]
    d1, d2 = os.urandom(90000), os.urandom(50000)
    p1 = tus_partial(victim, len(d1), d1)
    p2 = tus_partial(victim, len(d2))
    st, _, body = tus_patch(victim, p2, 0, d2)
    assert st == 204, body
    victim.kill_tree()
    shutil.rmtree(victim.data_dir)
    st, h, body = tus_final(a, [p1, p2], "after-loss.bin")
    assert st == 201 and "upload-job" in h, (st, body)
    assert finished_bytes(c, h, tmp_path) == d1 + d2
    staged_gone(c)


def test_tus_js_client_across_the_balancer(cluster, tmp_path):
    """tus-js-client through nginx round robin: 5 MiB chunks land on
    different nodes, the second one is cut mid-body, and the client resumes
    (on whichever node) where the cluster says it is."""
    c = cluster
    size = 20 * 1024 * 1024
    src = make_file(str(tmp_path / "movie.bin"), size)
    r = subprocess.run(["node", os.path.join(NODE_DIR, "tus_upload.mjs"),
                        "--endpoint", c.url("/v1/uploads"), "--token", c.token(), "--file", src,
                        "--name", "movie.bin", "--folder", "/js", "--chunk-size",
                        str(5 * 1024 * 1024), "--interrupt", "mid",
                        "--store", str(tmp_path / "urls.json")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["size"] == size and out["interrupted_at"] > 0
    patches = {u[3] for u in c.upstreams() if u[0] == "PATCH"}
    assert len(patches) >= 2, c.upstreams()  # no stickiness: several nodes took PATCHes
    assert c.wait_job(out["job"], timeout=120)["state"] == "done"
    assert same_file(src, content(c, out["media"], str(tmp_path / "movie.out")))
    # the cut request's bytes were saved by its node, or lost the race to
    # the client's resumed PATCH (both are fine; the upload is whole)
    logs = "".join(n.log_text() for n in c.nodes)
    assert re.search(r"interrupted; (saved offset|its \d+ bytes at \d+ were not needed)", logs)


def test_web_ui_through_the_balancer(cluster_factory, tmp_path):
    """The web UI's end-to-end run (tests/node/web_e2e.mjs: sign in,
    uploads with a name conflict and one over the limit, a file bob shares,
    rename, share, download and compare, delete) in Chromium against the
    balancer: its requests land on all three nodes, and it sees one dripd."""
    assert os.path.exists("/usr/bin/chromium"), "Debian chromium is missing: make deps"
    max_upload = 16 << 20
    c = cluster_factory(extra={"limits": {"max_upload_size": max_upload}})
    work, shots = tmp_path / "web", tmp_path / "shots"
    work.mkdir()
    shots.mkdir()
    r = subprocess.run(["node", os.path.join(NODE_DIR, "web_e2e.mjs"), c.url(), c.token("alice"),
                        c.token("bob"), str(work), str(shots), str(max_upload)],
                       capture_output=True, text=True, timeout=300, cwd=NODE_DIR)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "browser test failed: %s\n%s" % (
        res.get("error"), r.stderr[-3000:])
    for s in ["signed in, shows who", "conflict: rename or skip", "413 is final and plain",
              "shared file shows its owner and only download", "downloaded and compared",
              "deleted, and its upload row with it"]:
        assert s in res["steps"], res["steps"]
    assert len(served_by(c)) == 3, served_by(c)  # no stickiness: every node served it


def test_web_ui_big_file_through_the_balancer(cluster, tmp_path):
    """A 65 MiB file from the web UI (web_cluster_big.mjs), which it sends
    as parallel tus partial uploads (a cluster offers concatenation),
    joined by a final upload: it arrives whole."""
    c = cluster
    r = subprocess.run(["node", os.path.join(NODE_DIR, "web_cluster_big.mjs"), c.url(),
                        c.token("alice"), str(tmp_path)],
                       capture_output=True, text=True, timeout=300, cwd=NODE_DIR)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "big file: %s\n%s" % (res.get("error"),
                                                                       r.stderr[-3000:])

"""dripd on a PostgreSQL catalog (catalog.backend postgres), against a real
PostgreSQL 15 (pgutil.py: initdb + pg_ctl on a free loopback port):

  * one node: uploads (PUT, multipart, tus), downloads, SSE, jobs, deletes,
    /readyz and dripd_catalog_up;
  * two nodes on one catalog and one store: an upload on A is downloadable
    on B, B's SSE stream carries A's events, each job runs exactly once,
    and a webhook configured on both nodes gets each event once;
  * a PostgreSQL restart under upload load: /readyz reflects it, every
    acknowledged upload becomes available, the workers never restart;
  * --migrate-catalog postgres from a SQLite node, and --rebuild-catalog
    into PostgreSQL.

The three-node cluster behind a balancer is tests/cluster (make test-cluster).
"""
import http.server
import json
import os
import subprocess
import threading
import time

import pytest

from conftest import DRIPD, make_file, same_file, wait_until
from pgutil import PgServer, pg_config, pg_db, pg_server  # noqa: F401
from test_events import SSE


def put_ok(d, local, remote, user="alice"):
    st, doc = d.put_file(local, remote, user=user)
    assert st == 202, (st, doc)
    return doc["media"]["id"], doc["job"]["id"]


def get_content(d, media_id, out, user="alice"):
    st, _, body = d.curl(d.url("/v1/media/%s/content" % media_id), user=user)
    assert st == 200, (st, body[:300])
    with open(out, "wb") as f:
        f.write(body)
    return out


def metric(d, name):
    st, _, body = d.curl(d.url("/metrics"), user=None)
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError("no metric " + name)


def test_one_node_on_postgres(dripd_factory, pg_server, pg_db, tmp_path):  # noqa: F811
    d = dripd_factory(config=pg_config(pg_db, node={"id": "node-a"}))
    st, doc, _ = d.json("GET", "/readyz", user=None)
    assert st == 200 and doc["ready"], doc
    wait_until(lambda: metric(d, "dripd_catalog_up") == 1, 20, "dripd_catalog_up 1")

    src = make_file(str(tmp_path / "a.bin"), 300000)
    sse = SSE(d)
    mid, jid = put_ok(d, src, "/pg/a.bin")
    evs = sse.until_job_end(jid)
    assert [e["event"] for e in evs][-1] == "job.done"
    assert same_file(src, get_content(d, mid, str(tmp_path / "a.out")))
    # multipart, two files
    st, _, body = d.curl("-F", "file=@%s;filename=m1.bin" % src, "-F",
                         "file=@%s;filename=m2.bin" % src, d.url("/v1/files/pg/multi"))
    assert st == 202, body
    for up in json.loads(body)["uploads"]:
        assert d.wait_job(up["job"]["id"])["state"] == "done"
    # tus: create, two PATCHes
    data = open(src, "rb").read()
    st, h, _ = d.curl("-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H",
                      "Upload-Length: %d" % len(data), "-H",
                      "Upload-Metadata: filename dC5iaW4=,folder L3Bn", d.url("/v1/uploads"))
    assert st == 201, h
    loc = h["location"]
    upload = loc if loc.startswith("http") else d.url(loc)
    for off in (0, 100000):
        part = data[off:off + 100000] if off == 0 else data[off:]
        p = str(tmp_path / ("part%d" % off))
        open(p, "wb").write(part)
        st, h, body = d.curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H",
                             "Content-Type: application/offset+octet-stream", "-H",
                             "Upload-Offset: %d" % off, "--data-binary", "@" + p, upload)
        assert st == 204, (st, body)
    assert d.wait_job(h["upload-job"])["state"] == "done"
    # listing, jobs, delete
    st, doc, _ = d.json("GET", "/v1/media?folder=/pg", expect=200)
    assert sorted(f["name"] for f in doc["files"]) == ["a.bin", "t.bin"]
    assert [f["name"] for f in doc["folders"]] == ["multi"]
    st, doc, _ = d.json("GET", "/v1/jobs", expect=200)
    assert len(doc["jobs"]) >= 4
    d.json("DELETE", "/v1/media/" + mid, expect=204)
    d.json("GET", "/v1/media/" + mid, expect=404)
    sse.close()
    # the rows are in PostgreSQL, the jobs this node's
    rows = pg_server.query(pg_db, "SELECT DISTINCT node FROM jobs")
    assert rows == [["node-a"]], rows


def two_nodes(dripd_factory, dsn, tmp_path, extra=None):
    store = str(tmp_path / "objects")
    key = str(tmp_path / "master.key")
    nodes = []
    for name in ("node-a", "node-b"):
        cfg = pg_config(dsn, node={"id": name}, storage={"backend": "local", "local": {"path": store}},
                        encryption={"key_file": key})
        cfg.update(extra or {})
        nodes.append(dripd_factory(config=cfg, subdir=name))
    return nodes


def test_two_nodes_share_one_catalog(dripd_factory, pg_server, pg_db, tmp_path):  # noqa: F811
    a, b = two_nodes(dripd_factory, pg_db, tmp_path)
    sse_b = SSE(b)
    src = make_file(str(tmp_path / "x.bin"), 200000)
    mid, jid = put_ok(a, src, "/shared/x.bin")
    # B's stream hears of A's job (NOTIFY), and B serves A's upload.
    evs = sse_b.until_job_end(jid, timeout=30)
    assert evs[-1]["event"] == "job.done"
    assert same_file(src, get_content(b, mid, str(tmp_path / "x.out")))
    sse_b.close()

    # Many uploads on both nodes at once: every job runs exactly once.
    jobs, lock = [], threading.Lock()

    def load(node, tag):
        for i in range(15):
            m, j = put_ok(node, src, "/load/%s-%d.bin" % (tag, i))
            with lock:
                jobs.append(j)
    ts = [threading.Thread(target=load, args=(n, t)) for n, t in ((a, "a"), (b, "b"))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert len(jobs) == 30
    for j in jobs:
        assert a.wait_job(j)["state"] == "done"
    done = pg_server.query(pg_db, "SELECT job_id, count(*) FROM events WHERE type = 'job.done' "
                                  "GROUP BY job_id HAVING count(*) <> 1")
    assert done == [], done
    claims = sum(n.log_text().count("claimed at stage encrypt") for n in (a, b))
    assert claims == 31, claims  # 30 + x.bin: no job claimed twice
    # Both nodes beat; each node's jobs stayed on it.
    assert sorted(r[0] for r in pg_server.query(pg_db, "SELECT id FROM nodes")) == \
        ["node-a", "node-b"]


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


def test_one_webhook_delivery_per_event(dripd_factory, pg_server, pg_db, tmp_path):  # noqa: F811
    _Hook.seqs = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = "http://127.0.0.1:%d/hook" % srv.server_address[1]
        a, b = two_nodes(dripd_factory, pg_db, tmp_path,
                         extra={"webhooks": [{"url": url, "secret": "s"}]})
        src = make_file(str(tmp_path / "w.bin"), 1000)
        jobs = []
        for i in range(6):
            jobs.append(put_ok(a if i % 2 else b, src, "/w/%d.bin" % i)[1])
        for j in jobs:
            a.wait_job(j)
        n_events = int(pg_server.query(pg_db, "SELECT count(*) FROM events")[0][0])
        assert n_events >= 6 * 2  # created, done (a small job commits no job.stage)

        def all_delivered():
            with _Hook.lock:
                return len(set(_Hook.seqs)) >= n_events
        wait_until(all_delivered, 30, "every event delivered")
        with _Hook.lock:
            seqs = list(_Hook.seqs)
        assert len(seqs) == n_events, "delivered %d times for %d events" % (len(seqs), n_events)
        assert seqs == sorted(seqs)
        cursor = pg_server.query(pg_db, "SELECT holder, cursor FROM leases WHERE name LIKE "
                                        "'webhook:%'")
        assert len(cursor) == 1 and int(cursor[0][1]) == max(seqs), cursor
    finally:
        srv.shutdown()
        srv.server_close()


def test_postgres_restart_under_load(dripd_factory, tmp_path):
    pg = PgServer().start()
    try:
        dsn = pg.createdb("dripd")
        d = dripd_factory(config=pg_config(dsn, health={"store_probe_interval": "200ms"}))
        workers = (d.worker("http"), d.worker("pipeline"))
        src = make_file(str(tmp_path / "l.bin"), 20000)
        acked, statuses, stop = [], [], threading.Event()

        def load():
            i = 0
            while not stop.is_set():
                st, doc = d.put_file(src, "/r/%d.bin" % i)
                statuses.append(st)
                if st == 202:
                    acked.append(doc["media"]["id"])
                i += 1
        t = threading.Thread(target=load)
        t.start()
        wait_until(lambda: len(acked) >= 5, 30, "uploads before the restart")
        pg.stop()
        wait_until(lambda: "catalog (postgres) unreachable" in d.json("GET", "/readyz", user=None)
                   [1]["problems"], 20, "/readyz to report the outage")
        n = len(statuses)
        wait_until(lambda: len(statuses) >= n + 3, 30, "uploads refused during the outage")
        assert set(statuses[n:]) <= {503}, statuses[n:]
        pg.start()
        wait_until(lambda: d.json("GET", "/readyz", user=None)[1]["ready"], 30,
                   "/readyz ready again")
        m = len(acked)
        wait_until(lambda: len(acked) >= m + 5, 30, "uploads after the restart")
        stop.set()
        t.join(60)
        for mid in acked:
            wait_until(lambda: d.json("GET", "/v1/media/" + mid)[1]["state"] == "available", 60,
                       "media %s available" % mid)
        assert (d.worker("http"), d.worker("pipeline")) == workers  # nobody crashed
        assert metric(d, "dripd_catalog_up") == 1
    finally:
        pg.destroy()


def test_migrate_catalog_from_sqlite(dripd_factory, pg_server, pg_db, tmp_path):  # noqa: F811
    d = dripd_factory(config={"node": {"id": "solo"}})
    src = make_file(str(tmp_path / "s.bin"), 50000)
    ids = [put_ok(d, src, "/old/%d.bin" % i) for i in range(3)]
    for _, j in ids:
        assert d.wait_job(j)["state"] == "done"
    d.stop()
    cfg = dict(d.config)
    cfg["catalog"] = {"postgres": {"dsn": pg_db}}  # backend still sqlite: the DSN names the target
    d.write_config(cfg)
    r = subprocess.run([DRIPD, "-c", d.config_path, "--migrate-catalog", "postgres"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if "rows" in ln.split()}
    assert lines["media"][1] == "3" and lines["jobs"][1] == "3", r.stdout
    assert "verified" in r.stdout
    # Not twice: the target is no longer empty.
    r2 = subprocess.run([DRIPD, "-c", d.config_path, "--migrate-catalog", "postgres"],
                        capture_output=True, text=True, timeout=120)
    assert r2.returncode == 1 and "not empty" in r2.stderr, r2.stderr
    r3 = subprocess.run([DRIPD, "-c", d.config_path, "--migrate-catalog", "mysql"],
                        capture_output=True, text=True, timeout=60)
    assert r3.returncode == 1 and "only target is postgres" in r3.stderr, r3.stderr
    # The node starts on PostgreSQL with everything it had.
    cfg["catalog"]["backend"] = "postgres"
    d.config = cfg
    d.write_config(cfg)
    d.start()
    for mid, _ in ids:
        assert same_file(src, get_content(d, mid, str(tmp_path / "m.out")))
    st, doc, _ = d.json("GET", "/v1/media?folder=/old", expect=200)
    assert len(doc["files"]) == 3
    mid, jid = put_ok(d, src, "/old/new.bin")
    assert d.wait_job(jid)["state"] == "done"


def test_rebuild_catalog_into_postgres(dripd_factory, pg_server, pg_db, tmp_path):  # noqa: F811
    d = dripd_factory()
    src = make_file(str(tmp_path / "b.bin"), 70000)
    ids = [put_ok(d, src, "/keep/%d.bin" % i) for i in range(2)]
    for _, j in ids:
        assert d.wait_job(j)["state"] == "done"
    d.stop()
    cfg = dict(d.config)
    cfg.update(pg_config(pg_db))
    d.config = cfg
    d.write_config(cfg)
    r = subprocess.run([DRIPD, "-c", d.config_path, "--rebuild-catalog"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert int(pg_server.query(pg_db, "SELECT count(*) FROM media")[0][0]) == 2
    d.start()
    for mid, _ in ids:
        assert same_file(src, get_content(d, mid, str(tmp_path / "r.out")))


def test_check_and_bad_dsn(dripd_factory, tmp_path):
    d = dripd_factory(start=False, config=pg_config("host=127.0.0.1 port=1 dbname=x user=x"))
    d.write_config()
    r = subprocess.run([DRIPD, "-c", d.config_path, "--check"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    # The server is not there: the start fails, saying so (exit 1).
    r = subprocess.run([DRIPD, "-c", d.config_path], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "PostgreSQL unreachable" in r.stderr, r.stderr[-2000:]

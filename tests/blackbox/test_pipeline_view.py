"""The pipeline view for admins (issue 20): GET /v1/admin/pipeline and its
Server-Sent Events stream, on a real dripd."""
import concurrent.futures
import http.client
import json
import os
import time

from conftest import make_file
from s3util import s3_config


class Stream:
    """GET /v1/admin/pipeline/stream; yields the snapshots as they come."""

    def __init__(self, d, user="alice"):
        self.c = http.client.HTTPConnection(d.host, d.port, timeout=20)
        self.c.request("GET", "/v1/admin/pipeline/stream",
                       headers={"Authorization": "Bearer " + d.token(user)})
        self.r = self.c.getresponse()

    def snapshots(self, deadline_s):
        end = time.monotonic() + deadline_s
        event, data = None, []
        while time.monotonic() < end:
            line = self.r.fp.readline()
            if not line:
                return
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif line == "" and data:
                if event == "pipeline":
                    yield json.loads("\n".join(data))
                event, data = None, []
        raise AssertionError("no matching snapshot within %.0fs" % deadline_s)

    def close(self):
        self.c.close()


def stage(snap, pipeline, name):
    p = [p for p in snap["pipelines"] if p["name"] == pipeline][0]
    return [s for s in p["stages"] if s["name"] == name][0]


def test_admins_only(dripd):
    for path in ("/v1/admin/pipeline", "/v1/admin/pipeline/stream"):
        st, h, body = dripd.curl(dripd.url(path), user="bob")
        assert st == 403, (path, st)
        assert h["content-type"].startswith("application/problem+json")
        assert json.loads(body)["status"] == 403
        assert dripd.curl(dripd.url(path), user=None)[0] == 401
    st, doc, h = dripd.json("GET", "/v1/admin/pipeline", expect=200)
    assert h["cache-control"] == "no-store"
    assert [p["name"] for p in doc["pipelines"]] == ["upload", "download"]
    assert [s["name"] for s in doc["pipelines"][0]["stages"]] == ["starter", "process", "encrypt", "store", "notify"]
    assert [s["name"] for s in doc["pipelines"][1]["stages"]] == ["starter", "fetch", "decrypt", "notify"]
    assert doc["bottleneck"] is None and doc["errors"] == []
    assert doc["queue"]["limit"] == 10000


def test_stream_moves_and_marks_the_slow_stage(dripd_factory):
    """Uploads into a store stage slowed by the test hook: the stream shows
    intake, the store's queue growing, and the store as the bottleneck;
    the front end counts the open stream's connection."""
    # 1 s a store and the 8 uploads at once: one after the other at 500 ms,
    # on a loaded machine the store kept up and its queue never reached 3
    d = dripd_factory(config={"pipeline": {"test_store_delay": "1s",
                                           "upload": {"store": {"concurrency": 1}}}})
    s = Stream(d)
    try:
        assert s.r.status == 200 and s.r.getheader("Content-Type") == "text/event-stream"
        first = next(s.snapshots(10))
        assert first["front"]["open_connections"] >= 1
        f = make_file(os.path.join(d.dir, "a.bin"), 2000)
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            sts = list(ex.map(lambda i: d.put_file(f, "/v/%d.bin" % i)[0], range(8)))
        assert sts == [202] * 8, sts
        seen = {}
        for snap in s.snapshots(40):
            st = stage(snap, "upload", "store")
            seen["intake"] = seen.get("intake") or snap["front"]["intake_per_s"] > 0
            seen["queued"] = max(seen.get("queued", 0), st["queued"])
            if (seen["intake"] and seen["queued"] >= 3 and st["bottleneck"]
                    and snap["bottleneck"]["stage"] == "store" and st["jobs_per_s"] > 0):
                break
        assert st["busy"] > 0 and st["threads"] == 1, st
        assert stage(snap, "upload", "encrypt")["bottleneck"] is False
        # the numbers keep moving: the store works the queue off
        before = st["processed"]
        for snap in s.snapshots(30):
            if stage(snap, "upload", "store")["processed"] > before:
                break
        # and once it is drained nothing is behind
        for snap in s.snapshots(60):
            if snap["queue"]["depth"] == 0 and snap["bottleneck"] is None:
                break
        assert stage(snap, "upload", "store")["p50_ms"] >= 500
    finally:
        s.close()


def test_errors_name_the_failed_jobs(dripd_factory):
    d = dripd_factory(config=dict(
        s3_config("http://127.0.0.1:9", connect_timeout="1s"),  # a closed port
        pipeline={"retry": {"attempts": 2, "backoff": "100ms", "max_backoff": "200ms"}}))
    f = make_file(os.path.join(d.dir, "e.bin"), 1000)
    st, doc = d.put_file(f, "/e/e.bin")
    assert st == 202
    job = d.wait_job(doc["job"]["id"])
    assert job["state"] == "failed"
    snap = d.json("GET", "/v1/admin/pipeline", expect=200)[1]
    errs = [e for e in snap["errors"] if e["job_id"] == job["id"]]
    assert [e["final"] for e in errs] == [True, False], errs  # newest first: failed, then the retry
    assert errs[0]["stage"] == "store" and errs[0]["pipeline"] == "upload" and errs[0]["attempt"] == 2
    assert errs[0]["error"] == job["error"]
    assert snap["jobs"]["failed"] == 1 and snap["jobs"]["retries"] == 1
    assert stage(snap, "upload", "store")["failed"] == 2


def test_web_live_view_in_chromium(dripd_factory):
    """js/pipeline.js in Debian's Chromium (tests/node/web_pipeline.mjs):
    under a steady upload load into a store slowed by the test hook, the
    numbers move, the store's queue grows and its box is the one marked
    bottleneck; a non-admin gets no link, no view and 403; the view stacks
    at phone width. Screenshots: tests/artifacts/web/pipeline-*.png."""
    import shutil
    import subprocess
    from conftest import ARTIFACTS, ROOT
    node_dir = os.path.join(ROOT, "tests", "node")
    assert os.path.exists("/usr/bin/chromium"), "Debian chromium is missing: make deps"
    assert os.path.isdir(os.path.join(node_dir, "node_modules", "playwright-core")), \
        "playwright-core is missing: sh scripts/node-deps.sh"
    d = dripd_factory(config={"pipeline": {"test_store_delay": "600ms",
                                           "upload": {"store": {"concurrency": 1}}}})
    shots = os.path.join(ARTIFACTS, "web")
    os.makedirs(shots, exist_ok=True)
    for n in ("pipeline-desktop.png", "pipeline-phone.png", "pipeline-failure.png"):
        if os.path.exists(os.path.join(shots, n)):
            os.unlink(os.path.join(shots, n))
    r = subprocess.run(["node", os.path.join(node_dir, "web_pipeline.mjs"), d.url(), d.token("alice"),
                        d.token("bob"), shots], capture_output=True, text=True, timeout=180, cwd=node_dir)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "browser test failed: %s\n%s\n%s" % (
        res.get("error"), r.stderr[-3000:], d.log_tail())
    assert res["steps"] == ["non-admin: no link, no view, 403", "admin: the view, idle",
                            "under load: intake moves, the store queue grows, marked bottleneck",
                            "phone width: stacked, no overflow", "back to files"], res["steps"]
    for n in ("pipeline-desktop.png", "pipeline-phone.png"):
        assert os.path.getsize(os.path.join(shots, n)) > 10000, n

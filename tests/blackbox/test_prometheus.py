"""contrib/prometheus/dripd.rules.yml and contrib/grafana/dripd.json (issue 20).

  * promtool checks the rules and runs their unit tests
    (contrib/prometheus/dripd.rules.test.yml);
  * the dashboard is valid Grafana JSON and every query names only metrics
    a real dripd exports;
  * Debian's Prometheus server (extracted like promtool, scripts/promtool.sh)
    scrapes three real dripd nodes on loopback, loads the rules as shipped,
    answers every dashboard query with data, and fires each alert in a
    run that triggers it. The `for:` durations and range windows are
    compressed (minutes to seconds) in a copy of the rules so that it takes
    seconds; thresholds are the shipped ones.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request

from conftest import ROOT, make_file, wait_until
from s3util import s3_config

RULES = os.path.join(ROOT, "contrib", "prometheus", "dripd.rules.yml")
RULES_TEST = os.path.join(ROOT, "contrib", "prometheus", "dripd.rules.test.yml")
DASHBOARD = os.path.join(ROOT, "contrib", "grafana", "dripd.json")
ALERTS = ["DripdDown", "DripdQueueGrowing", "DripdQueueNearlyFull", "DripdStageSlow",
          "DripdWorkerRestarted", "DripdStoreUnreachable", "DripdCatalogUnreachable",
          "DripdDiskNearlyFull", "DripdJobsFailing", "DripdJobsRetrying", "DripdCatalogWriterBusy"]
# Fired by the unit tests only: one needs PostgreSQL, the other a writer
# held over 90% of the time, which only a machine-wide flood makes.
NOT_LIVE = {"DripdCatalogUnreachable", "DripdCatalogWriterBusy"}


def tool(name):
    r = subprocess.run(["sh", os.path.join(ROOT, "scripts", "promtool.sh"), name],
                       capture_output=True, text=True)
    assert r.returncode == 0, "%s unavailable (scripts/promtool.sh %s): %s" % (name, name, r.stderr)
    return r.stdout.strip()


def test_rules_check_and_unit_tests(tmpdir_path):
    promtool = tool("promtool")
    r = subprocess.run([promtool, "check", "rules", RULES], capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS: %d rules found" % len(ALERTS) in r.stdout, r.stdout + r.stderr
    r = subprocess.run([promtool, "test", "rules", RULES_TEST], capture_output=True, text=True,
                       cwd=os.path.dirname(RULES_TEST))
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    # the example scrape config loads, rules included
    r = subprocess.run([promtool, "check", "config", os.path.join(os.path.dirname(RULES), "prometheus.yml")],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS: %d rules found" % len(ALERTS) in r.stdout, r.stdout + r.stderr
    text = open(RULES).read()
    assert sorted(re.findall(r"- alert: (\w+)", text)) == sorted(ALERTS)
    tested = set(re.findall(r"alertname: (\w+)", open(RULES_TEST).read()))
    assert tested == set(ALERTS), "alerts without a unit test: %s" % (set(ALERTS) - tested)
    # every alert names its runbook section, and docs/OPERATIONS.md has it
    ops = open(os.path.join(ROOT, "docs", "OPERATIONS.md")).read().lower()
    for a in ALERTS:
        assert "docs/OPERATIONS.md#%s" % a.lower() in text, a
        assert re.search(r"^#+ .*%s" % a.lower(), ops, re.M), "docs/OPERATIONS.md has no section for " + a
    # the unit tests can fail: a threshold moved makes them fail
    shutil.copy(RULES_TEST, tmpdir_path)
    with open(os.path.join(tmpdir_path, "dripd.rules.yml"), "w") as f:
        f.write(text.replace("dripd_store_up == 0", "dripd_store_up == -1"))
    r = subprocess.run([promtool, "test", "rules", "dripd.rules.test.yml"], capture_output=True,
                       text=True, cwd=tmpdir_path)
    assert r.returncode != 0 and "DripdStoreUnreachable" in r.stdout + r.stderr, r.stdout + r.stderr


METRIC = re.compile(r"\b(dripd_[a-z0-9_]+|up)\b(?!\s*\()")


def dashboard_queries(dash):
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def exported_families(d):
    """Families (and histogram series names) a real dripd exports."""
    st, _, body = d.curl(d.url("/metrics"), user=None)
    assert st == 200
    names = set()
    for line in body.decode().splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            names.add(m.group(1))
            if m.group(2) == "histogram":
                names.update(m.group(1) + s for s in ("_bucket", "_sum", "_count"))
    return names


def test_dashboard_structure_and_metrics(dripd):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    for k in ("title", "uid", "schemaVersion", "panels", "templating", "time"):
        assert k in dash, k
    assert dash["__inputs"][0]["name"] == "DS_PROMETHEUS"
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    cells = set()
    for p in dash["panels"]:
        assert p["type"] in ("row", "timeseries", "stat"), p["type"]
        assert p["title"], p
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, (p["title"], g)
        for y in range(g["y"], g["y"] + g["h"]):
            for x in range(g["x"], g["x"] + g["w"]):
                assert (x, y) not in cells, "panels overlap at %s: %s" % ((x, y), p["title"])
                cells.add((x, y))
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
    exported = exported_families(dripd)
    covered = set()
    for title, expr in dashboard_queries(dash):
        names = set(METRIC.findall(expr))
        assert names - {"up"} or names == {"up"}, "%s: %s names no metric" % (title, expr)
        unknown = {n for n in names if n != "up" and n not in exported}
        assert not unknown, "%s: %s names metrics dripd does not export: %s" % (title, expr, unknown)
        assert expr.count("(") == expr.count(")"), expr
        if "$instance" not in expr:
            raise AssertionError("%s: %s ignores the $instance variable" % (title, expr))
        covered |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
    # the list: per-stage queues, rates, latencies, errors, cache hit
    # ratio, store requests, disk and queue headroom, restarts
    for fam in ("dripd_stage_queued", "dripd_stage_processed_total", "dripd_stage_duration_seconds",
                "dripd_stage_failed_total", "dripd_jobs_failed_total", "dripd_cache_hits_total",
                "dripd_store_request_duration_seconds", "dripd_disk_free_bytes",
                "dripd_jobs_queue_limit", "dripd_supervisor_restarts_total"):
        assert fam in covered, "the dashboard has no panel over " + fam


# ---------------------------------------------------------------- live Prometheus

def compress(text):
    """The shipped rules with minutes made seconds (for: and range windows)."""
    text = re.sub(r"for: \d+m", "for: 2s", text)
    text = re.sub(r"\[\d+m\]", "[20s]", text)
    text = text.replace("- name: dripd\n", "- name: dripd_fast\n")
    return re.sub(r"- alert: (\w+)", r"- alert: \1Fast", text)


class Prometheus:
    def __init__(self, tmp, targets, rule_files):
        self.dir = tmp
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            json.dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s",
                                  "scrape_timeout": "900ms"},
                       "rule_files": rule_files,
                       "scrape_configs": [{"job_name": "dripd", "static_configs": [{"targets": targets}]}]},
                      f)
        self.log = os.path.join(tmp, "prometheus.log")
        self.logf = open(self.log, "wb")
        self.proc = subprocess.Popen([tool("prometheus"), "--config.file=" + cfg,
                                      "--storage.tsdb.path=" + os.path.join(tmp, "tsdb"),
                                      "--web.listen-address=127.0.0.1:0"],
                                     stdout=self.logf, stderr=self.logf)

        def port():
            if self.proc.poll() is not None:
                raise AssertionError("prometheus exited: " + open(self.log).read()[-3000:])
            m = re.search(r'msg="Listening on" address=127\.0\.0\.1:(\d+)', open(self.log).read())
            return m and int(m.group(1))
        self.port = wait_until(port, 30, "prometheus listening")

        def ready():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=5) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(ready, 30, "prometheus ready", interval=0.1)

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (self.port, path, urllib.parse.urlencode(params))
        with urllib.request.urlopen(url, timeout=10) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr):
        return self.api("query", query=expr)["result"]

    def firing(self):
        return {a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def put_many(d, path_fmt, n, body):
    """n small PUTs; returns the statuses."""
    import http.client
    c = http.client.HTTPConnection(d.host, d.port, timeout=30)
    out = []
    for i in range(n):
        c.request("PUT", "/v1/files" + path_fmt % i, body=body,
                  headers={"Authorization": "Bearer " + d.token()})
        r = c.getresponse()
        r.read()
        out.append(r.status)
    c.close()
    return out


def test_prometheus_scrapes_dripd_dashboard_has_data_alerts_fire(dripd_factory, tmpdir_path):
    # A: the store stage slowed (6 s a job, one thread): the queue grows
    # towards a queue_limit of 150, the store's p99 is over its 5 s budget.
    a = dripd_factory(config={"pipeline": {"test_store_delay": "6s", "queue_limit": 150,
                                           "upload": {"store": {"concurrency": 1}}}})
    # B: its S3 store is a closed port: the probe fails, jobs retry then fail.
    b = dripd_factory(config=dict(
        s3_config("http://127.0.0.1:9", connect_timeout="1s"),  # a closed port
        health={"store_probe_interval": "200ms"},
        pipeline={"retry": {"attempts": 3, "backoff": "100ms", "max_backoff": "200ms"}}))
    # C: healthy, but health.min_free_disk is 2/3 of what is free: uploads
    # still work (free > min) and the disk alert (free < 2 x min) fires.
    free = os.statvfs(tmpdir_path).f_bavail * os.statvfs(tmpdir_path).f_frsize
    c = dripd_factory(config={"health": {"min_free_disk": str(int(free / 1.5))}})
    fast = os.path.join(tmpdir_path, "dripd.fast.rules.yml")
    with open(fast, "w") as f:
        f.write(compress(open(RULES).read()))
    prom = Prometheus(tmpdir_path, [a.addr, b.addr, c.addr], [RULES, fast])
    stop_load = threading.Event()
    try:
        # the counters' starting values are scraped before anything happens
        wait_until(lambda: len(prom.query("up == 1")) == 3, 30, "prometheus scraping the three nodes",
                   interval=0.2)
        # C: a full round trip (upload, cache miss, cache hit), a 404 and a
        # pipeline worker restart
        f = make_file(os.path.join(tmpdir_path, "c.bin"), 200000)
        st, doc = c.put_file(f, "/prom/c.bin")
        assert st == 202
        c.wait_job(doc["job"]["id"])
        c.curl("-X", "POST", c.url("/v1/media/%s/download" % doc["media"]["id"]))
        for _ in range(2):
            assert c.curl(c.url("/v1/media/%s/content" % doc["media"]["id"]))[0] == 200
        assert c.curl(c.url("/v1/media/nope"))[0] == 404
        os.kill(c.worker("pipeline"), signal.SIGKILL)
        # B: uploads that fail at the store
        assert put_many(b, "/fail/%d.bin", 5, b"x" * 1000) == [202] * 5
        # A: a burst past 100 queued jobs, then a steady trickle that
        # outruns the slowed store
        assert put_many(a, "/q/%d.bin", 105, b"y" * 100) == [202] * 105

        def trickle():
            i = 0
            while not stop_load.is_set():
                put_many(a, "/t%d-%%d.bin" % i, 1, b"z" * 100)
                i += 1
                stop_load.wait(0.5)
        load = threading.Thread(target=trickle, daemon=True)
        load.start()

        # the shipped rules load and evaluate cleanly
        def rules_ok():
            groups = prom.api("rules")["groups"]
            shipped = [r for g in groups if g["name"] == "dripd" for r in g["rules"]]
            if sorted(r["name"] for r in shipped) != sorted(ALERTS):
                return None
            return all(r["health"] == "ok" for r in shipped) and all(r["lastEvaluation"] > "2000" for r in shipped)
        wait_until(rules_ok, 30, "the shipped rules loaded and evaluated", interval=0.5)

        # every dashboard query returns data (with 30 s rate windows)
        with open(DASHBOARD) as fd:
            dash = json.load(fd)
        wait_until(lambda: prom.query('dripd_cache_hits_total{instance="%s"} > 0' % c.addr), 30,
                   "prometheus scraped C's cache hit", interval=0.5)
        wait_until(lambda: prom.query('increase(dripd_supervisor_restarts_total{instance="%s"}[1h]) > 0' % c.addr),
                   30, "prometheus saw C's restart", interval=0.5)
        # (a series born since the last scrape needs two samples for rate())
        empty = []

        def all_have_data():
            empty[:] = []
            for title, expr in dashboard_queries(dash):
                q = expr.replace("$__rate_interval", "30s").replace("$instance", ".*")
                if not prom.query(q):
                    empty.append("%s: %s" % (title, q))
            return not empty
        try:
            wait_until(all_have_data, 20, "data for every dashboard query", interval=0.5)
        except AssertionError:
            raise AssertionError("dashboard queries without data:\n  " + "\n  ".join(empty))

        # every alert that can fire here does (the compressed copy)
        want = {n + "Fast" for n in ALERTS if n not in NOT_LIVE | {"DripdDown"}}
        try:
            wait_until(lambda: want <= prom.firing(), 90, "alerts firing", interval=0.5)
        except AssertionError:
            raise AssertionError("not firing: %s" % sorted(want - prom.firing()))
        fired = {a_["labels"]["alertname"]: a_["labels"].get("instance") for a_ in prom.api("alerts")["alerts"]
                 if a_["state"] == "firing"}
        assert fired["DripdQueueGrowingFast"] == a.addr and fired["DripdStoreUnreachableFast"] == b.addr
        assert fired["DripdDiskNearlyFullFast"] == c.addr and fired["DripdWorkerRestartedFast"] == c.addr
        slow = [x["labels"] for x in prom.api("alerts")["alerts"]
                if x["labels"]["alertname"] == "DripdStageSlowFast"]
        assert {(s["instance"], s["pipeline"], s["stage"]) for s in slow} == {(a.addr, "upload", "store")}, slow
        # the shipped rules see the same conditions (pending: their for: is minutes)
        pend = {x["labels"]["alertname"] for x in prom.api("alerts")["alerts"]}
        assert {"DripdStoreUnreachable", "DripdDiskNearlyFull", "DripdJobsFailing",
                "DripdWorkerRestarted"} <= pend, pend
        # a node that goes away: DripdDown. A clean stop, not kill_tree():
        # when an earlier test made pytest a child subreaper
        # (test_powerloss), SIGKILLed workers would stay its zombies.
        assert b.stop() == 0
        wait_until(lambda: "DripdDownFast" in prom.firing(), 30, "DripdDown firing", interval=0.5)
        down = [x["labels"]["instance"] for x in prom.api("alerts")["alerts"]
                if x["labels"]["alertname"] == "DripdDownFast"]
        assert down == [b.addr], down
    finally:
        stop_load.set()
        prom.stop()

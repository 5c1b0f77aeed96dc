"""GET /metrics: strict Prometheus text format, and counters that move with traffic."""
import os
import re
import subprocess


from conftest import make_file

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? '
                    r'(-?[0-9.]+(?:e[-+]?[0-9]+)?|\+Inf|NaN)$')


def parse(text):
    """Returns {series: value}; asserts the exposition format line by line."""
    types, out = {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ", 3)
            assert typ in ("counter", "gauge", "histogram"), line
            assert name not in types, "family declared twice: " + name
            types[name] = typ
            continue
        m = SAMPLE.match(line)
        assert m, "bad line: %r" % line
        fam = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", fam) if fam not in types else fam
        assert base in types, "sample without TYPE: " + line
        if types[base] == "counter":
            assert fam.endswith("_total"), "counter without _total: " + fam
        key = line.rsplit(" ", 1)[0]
        assert key not in out, "duplicate series: " + key
        out[key] = float(m.group(4))
    return types, out


def scrape(d):
    st, h, body = d.curl(d.url("/metrics"), user=None)
    assert st == 200
    assert h["content-type"].startswith("text/plain")
    return parse(body.decode())


def test_format_and_required_families(dripd):
    types, s = scrape(dripd)
    for fam in ["dripd_http_requests_total", "dripd_http_request_duration_seconds",
                "dripd_http_received_bytes_total", "dripd_http_sent_bytes_total",
                "dripd_http_open_connections", "dripd_stage_queued", "dripd_stage_in_flight",
                "dripd_stage_processed_total", "dripd_stage_failed_total", "dripd_stage_duration_seconds",
                "dripd_jobs_queue_depth", "dripd_job_retries_total", "dripd_cache_hits_total",
                "dripd_cache_misses_total", "dripd_cache_bytes", "dripd_cache_evictions_total",
                "dripd_store_request_duration_seconds", "dripd_supervisor_restarts_total",
                "dripd_build_info"]:
        assert fam in types, fam


def promtool():
    """scripts/promtool.sh finds promtool or extracts it from Debian's package."""
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run(["sh", os.path.join(here, "..", "..", "scripts", "promtool.sh")],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def test_promtool_check_metrics_after_traffic(dripd, tmpdir_path):
    """promtool (Prometheus's own linter) accepts the exposition, with every
    family populated by real traffic: an upload through the pipeline, a
    download, an error and a cache hit."""
    tool = promtool()
    assert tool, "promtool unavailable: scripts/promtool.sh could not fetch Debian's prometheus package"
    f = make_file(os.path.join(tmpdir_path, "p.bin"), 300000)
    st, doc = dripd.put_file(f, "/prom/p.bin")
    assert st == 202
    dripd.wait_job(doc["job"]["id"])
    assert dripd.curl(dripd.url("/v1/media/%s/content" % doc["media"]["id"]))[0] == 200
    assert dripd.curl(dripd.url("/v1/media/nope"))[0] == 404
    st, _, body = dripd.curl(dripd.url("/metrics"), user=None)
    assert st == 200
    _, s = parse(body.decode())
    # the content route has its own label, though it is routed via /v1/media/
    assert s.get('dripd_http_requests_total{route="content",status="200"}', 0) >= 1
    assert s.get('dripd_http_requests_total{route="media",status="404"}', 0) >= 1
    r = subprocess.run([tool, "check", "metrics"], input=body, capture_output=True)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), \
        "promtool: rc %d\n%s%s" % (r.returncode, r.stdout.decode(), r.stderr.decode())
    # and promtool does reject a broken exposition, so the check above can fail
    bad = body.replace(b"dripd_build_info", b"dripd_build_info{", 1)
    assert subprocess.run([tool, "check", "metrics"], input=bad, capture_output=True).returncode != 0


def scrape_around_upload(d, tmpdir_path, name, size):
    """(before, after): the samples before a PUT of size bytes and after its job is done."""
    _, before = scrape(d)
    f = make_file(os.path.join(tmpdir_path, name), size)
    st, doc = d.put_file(f, "/%s/%s" % (name.split(".")[0], name))
    assert st == 202
    d.wait_job(doc["job"]["id"])
    _, after = scrape(d)
    return before, after


def test_counters_move(dripd, tmpdir_path):
    before, after = scrape_around_upload(dripd, tmpdir_path, "m.bin", 200000)
    key = 'dripd_http_requests_total{route="upload",status="202"}'
    assert after.get(key, 0) == before.get(key, 0) + 1
    assert after["dripd_http_received_bytes_total"] >= before["dripd_http_received_bytes_total"] + 200000
    done = 'dripd_stage_processed_total{pipeline="upload",stage="store"}'
    assert after[done] == before[done] + 1
    assert after['dripd_jobs_completed_total{pipeline="upload"}'] >= 1
    # Counters are node-wide totals from shared memory: a worker restart keeps them.
    import os as _os, signal
    old = dripd.worker("http")
    _os.kill(old, signal.SIGKILL)
    from conftest import wait_until
    wait_until(lambda: old not in (dripd.workers("http") or [old]), 20, "new http worker")
    def scraped():
        try:
            return scrape(dripd)[1]
        except AssertionError:
            return None
    again = wait_until(scraped, 20, "metrics after restart")
    assert again[key] >= after[key]
    assert again['dripd_supervisor_restarts_total{role="http"}'] >= 1


def test_catalog_writer_counts_each_kind_of_transaction(dripd, tmpdir_path):
    """An upload's intake, its claim and its steps each count on the catalog
    writer's statistics, which every process adds to (shared memory)."""
    before, after = scrape_around_upload(dripd, tmpdir_path, "w.bin", 4096)

    def moved(kind, phase=None):
        key = ('dripd_catalog_writer_seconds_total{kind="%s",phase="%s"}' % (kind, phase) if phase
               else 'dripd_catalog_writer_transactions_total{kind="%s"}' % kind)
        return after[key] - before[key]

    assert moved("intake") >= 1  # dripd-http's group commit of the upload
    assert moved("claims") >= 1  # dripd-pipeline's claim of its job
    assert moved("steps") >= 1   # and the steps that finished it
    for kind in ("intake", "claims", "steps"):
        assert moved(kind, "held") > 0, kind
        assert moved(kind, "wait") >= 0, kind
    # the intake's commit is durable: it fsyncs the WAL after the lock
    assert moved("intake", "sync") > 0


def test_status_line_has_queue_depth_and_rates(dripd, tmpdir_path):
    """sd_notify STATUS= shows the queue depth and upload/job rates (5 s windows)."""
    import re as _re
    from conftest import wait_until
    f = make_file(os.path.join(tmpdir_path, "s.bin"), 1000)
    for i in range(5):
        assert dripd.put_file(f, "/status/%d.bin" % i)[0] == 202

    def rated():
        with dripd.notify.cv:
            for m in dripd.notify.msgs:
                r = _re.search(r"STATUS=.*queue depth \d+, ([0-9.]+) uploads/s, ([0-9.]+) jobs/s", m)
                if r and float(r.group(1)) > 0 and float(r.group(2)) > 0:
                    return m
        return None
    msg = wait_until(rated, 30, "a STATUS= line with non-zero rates")
    assert "worker" in msg


def test_dead_workers_gauges_are_reset(dripd_factory, tmpdir_path):
    """Issue 17 item 7: a SIGKILLed worker never decrements its gauges. The
    open-connection gauge used to stay at the dead worker's count forever,
    and a job killed mid-stage left dripd_stage_in_flight at 1."""
    import signal
    import socket
    from conftest import wait_until
    d = dripd_factory(config={"pipeline": {"test_store_delay": "2s"}})
    conns = [socket.create_connection((d.host, d.port)) for _ in range(40)]
    gauge = 'dripd_http_open_connections'
    wait_until(lambda: scrape(d)[1][gauge] >= 40, 20, "40 open connections counted")
    f = make_file(os.path.join(tmpdir_path, "a.bin"), 1000)
    st, doc = d.put_file(f, "/g/a.bin")
    assert st == 202
    store = 'dripd_stage_in_flight{pipeline="upload",stage="store"}'
    wait_until(lambda: scrape(d)[1][store] == 1, 30, "the job in the store stage")
    for role in ("http", "pipeline"):
        old = d.worker(role)
        os.kill(old, signal.SIGKILL)
        def replaced(role=role, old=old):
            w = d.workers(role)  # read once: the list can change between two reads
            return bool(w) and w[0] != old
        wait_until(replaced, 30, "a new %s worker" % role)
    d.wait_job(doc["job"]["id"], timeout=60)
    for c in conns:
        c.close()
    # only the scrape's own connection (curl) is open now; nothing is in flight
    wait_until(lambda: scrape(d)[1][gauge] <= 1, 20, "the gauge back to the live connections")
    _, s = scrape(d)
    stuck = {k: v for k, v in s.items() if k.startswith("dripd_stage_in_flight") and v != 0}
    assert not stuck, stuck

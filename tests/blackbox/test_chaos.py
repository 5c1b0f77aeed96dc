"""Chaos suite: under a steady upload load, break things and assert that no
acknowledged upload is lost or corrupted and that the daemon ends healthy.

`make test` runs the short version; `make chaos` sets CHAOS_LONG=1 for more
rounds, more clients and bigger bursts. Every scenario prints a
"CHAOS REPORT {attempted, acknowledged, completed, lost}" line.
"""
import hashlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import threading
import time


from chaos_lib import Load, healthy, mount_tmpfs, umount, verify
from s3util import s3_config, s3rver  # noqa: F401
from conftest import DRIPCTL, make_file, same_file, wait_until
from flood import PipelineFlood

LONG = os.environ.get("CHAOS_LONG") == "1"
ROUNDS = 5 if LONG else 1
THREADS = 6 if LONG else 3


def count_jobs(d, where, *args):
    """count(*) of jobs matching `where` (a read-only look at the catalog); 0 if busy."""
    try:
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d.data_dir, "catalog.db"), uri=True, timeout=5)
        n = db.execute("SELECT count(*) FROM jobs WHERE " + where, args).fetchone()[0]
        db.close()
        return n
    except sqlite3.Error:
        return 0


def running_in_stage(d, stage):
    """Jobs currently claimed by the pipeline in that stage."""
    return count_jobs(d, "state = 'running' AND stage = ?", stage)


def replace_worker(d, role, sig=signal.SIGKILL):
    old = d.worker(role)
    os.kill(old, sig)

    def new_pid():
        pids = d.workers(role)
        return pids and pids[0] != old
    wait_until(new_pid, 30, "a new %s worker" % role)


def test_kill9_pipeline_in_each_stage(dripd_factory, tmpdir_path):
    # Many kills in a row on purpose: allow them, restart intensity is tested elsewhere.
    # Every job commits every stage (stage_commit_size 0), so that a kill
    # finds jobs committed at each stage and they resume there; a small job
    # by default commits once and starts over (test_powerloss, the rest).
    d = dripd_factory(config={"pipeline": {"test_store_delay": "150ms", "stage_commit_size": 0},
                              "supervisor": {"max_restarts": 100, "max_seconds": "10s"}})
    # A bounded load: the store is slowed on purpose, so an unbounded one
    # would queue more than verify() can wait for.
    load = Load(d, os.path.join(tmpdir_path, "load"), threads=THREADS, limit=400 if LONG else 150).start()
    try:
        for _ in range(ROUNDS):
            for stage in ("encrypt", "store", "notify"):
                wait_until(lambda: running_in_stage(d, stage) > 0, 60, "a job in stage " + stage,
                           interval=0.005)
                replace_worker(d, "pipeline")
    finally:
        load.stop()
    verify(d, load)
    healthy(d)


def test_kill9_http_mid_upload_tus_resumes(dripd, tmpdir_path):
    src = make_file(os.path.join(tmpdir_path, "tus.bin"), 12 << 20)
    env = dict(os.environ, DRIPD_URL=dripd.url(), DRIPD_TOKEN=dripd.token(), HOME=dripd.dir,
               XDG_STATE_HOME=os.path.join(dripd.dir, "state"))
    p = subprocess.Popen([DRIPCTL, "--json", "upload", src, "--to", "/chaos", "--wait",
                          "--chunk-size", str(1 << 20), "--limit-rate", str(3 << 20)],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Once some bytes are durable on the server, kill the http worker under the client.
    wait_until(lambda: os.path.exists(os.path.join(dripd.dir, "state", "dripctl", "uploads.json")),
               30, "the upload to start")
    spool = os.path.join(dripd.data_dir, "spool")
    wait_until(lambda: any(os.path.getsize(os.path.join(spool, f)) >= 2 << 20 for f in os.listdir(spool)),
               30, "2 MiB spooled")
    replace_worker(dripd, "http")
    out, err = p.communicate(timeout=180)
    assert p.returncode == 0, err
    import json
    res = json.loads(out)[0]
    assert res["job"]["state"] == "done"
    got = os.path.join(tmpdir_path, "got.bin")
    st, _, body = dripd.curl(dripd.url("/v1/media/%s/content" % res["media_id"]))
    assert st == 200
    with open(got, "wb") as f:
        f.write(body)
    assert same_file(src, got)
    healthy(dripd)


def test_kill9_whole_tree_then_restart(dripd_factory, tmpdir_path):
    d = dripd_factory(config={"pipeline": {"test_store_delay": "100ms"}})
    total = Load(d, os.path.join(tmpdir_path, "load"))
    for r in range(ROUNDS):
        load = Load(d, os.path.join(tmpdir_path, "load%d" % r), threads=THREADS).start()
        load.wait_acked(5)
        d.kill_tree()          # a node crash: supervisor and workers at once, mid-load
        # Clients stop while the node is down: a client retrying a dead loopback
        # port can be handed that very port and connect to itself (TCP
        # self-connect), which would keep the restart from binding it.
        load.stop()
        total.acked.update(load.acked)
        total.attempted += load.attempted
        total.errors += load.errors
        d.restart()
    verify(d, total)
    healthy(d)


def test_kill9_whole_tree_under_concurrent_small_puts(dripd_factory, tmpdir_path):
    """Group commit under load: 32 clients PUT small files at once, so the
    committer's batches hold many spool files (one syncfs for all of them,
    the sync of one batch overlapping the commit of the previous). A crash
    of the whole tree in the middle, then a restart: every upload that was
    answered 202 is available afterwards, byte for byte."""
    d = dripd_factory()
    load = Load(d, os.path.join(tmpdir_path, "load"), threads=32, size=(1, 16 << 10)).start()
    try:
        load.wait_acked(64)
        d.kill_tree()
        d.restart()
        load.wait_acked(len(load.acked) + 32)
    finally:
        load.stop()
    assert load.errors > 0, "the kill cut no upload in flight"
    verify(d, load)
    healthy(d)


def test_disk_full_gives_507_then_recovers(dripd_factory, tmpdir_path):
    mnt = mount_tmpfs(os.path.join(tmpdir_path, "small"), "24m")
    assert mnt is not None, "cannot mount a tmpfs here: the disk-full test needs root (as make deps)"
    try:
        d = dripd_factory(config={"data_dir": os.path.join(mnt, "var"),
                                  "cache": {"max_size": "1MiB"},
                                  "health": {"min_free_disk": "1MiB"}})
        load = Load(d, os.path.join(tmpdir_path, "load"), threads=2, size=(1 << 20, 3 << 20))
        load.start()
        wait_until(lambda: load.rejected.get(507, 0) > 0, 120, "a 507 Insufficient Storage")
        load.stop()
        subprocess.run(["mount", "-o", "remount,size=256m", mnt], check=True)
        more = Load(d, os.path.join(tmpdir_path, "load2"), threads=2, size=(1 << 20, 2 << 20), limit=4)
        more.start()
        for t in more.ts:  # runs to its limit
            t.join(120)
        assert len(more.acked) == 4, more.rejected
        load.acked.update(more.acked)
        load.attempted += more.attempted
        verify(d, load)
        healthy(d)
        d.stop()
    finally:
        umount(mnt)


def test_storage_outage_under_load(dripd_factory, s3rver, tmpdir_path):  # noqa: F811
    """The S3 store dies under a steady upload load and comes back: uploads
    are still accepted meanwhile (the spool is local), their store steps
    retry, and every acknowledged one completes once the store is back."""
    srv = s3rver
    cfg = s3_config(srv.endpoint)
    cfg["pipeline"] = {"retry": {"attempts": 100, "backoff": "100ms", "max_backoff": "1s"}}
    cfg["health"] = {"store_probe_interval": "200ms"}
    d = dripd_factory(config=cfg)
    load = Load(d, os.path.join(tmpdir_path, "load"), threads=THREADS,
                limit=300 if LONG else 100).start()
    try:
        load.wait_acked(10)
        srv.kill()
        wait_until(lambda: d.curl(d.url("/readyz"), user=None)[0] == 503, 30, "readyz 503")
        down_at = len(load.acked)
        load.wait_acked(down_at + 10)  # still accepting while the store is down
        # some of them wait for the store, retrying
        wait_until(lambda: count_jobs(d, "attempts > 0") > 0, 30, "store steps retrying")
        srv.restart()
        wait_until(lambda: d.curl(d.url("/readyz"), user=None)[0] == 200, 30, "readyz 200")
    finally:
        load.stop()
    verify(d, load)
    healthy(d)


def test_slowloris_does_not_starve_others(dripd_factory, tmpdir_path):
    n = 1000 if LONG else 300
    d = dripd_factory(config={"limits": {"header_timeout": "5s", "max_connections": n + 200}})
    socks = []
    for i in range(n):
        s = socket.create_connection((d.host, d.port))
        s.sendall(b"PUT /v1/files/slow/%d HTTP/1.1\r\nHost: x\r\n" % i)
        socks.append(s)
    stop = threading.Event()

    def drip():  # one header byte per socket per second, never finishing
        while not stop.is_set():
            for s in socks:
                try:
                    s.sendall(b"X")
                except OSError:
                    pass
            stop.wait(1)

    t = threading.Thread(target=drip, daemon=True)
    t.start()
    load = Load(d, os.path.join(tmpdir_path, "load"), threads=3, limit=30)
    t0 = time.monotonic()
    load.start()
    for th in load.ts:
        th.join(120)
    elapsed = time.monotonic() - t0
    stop.set()
    assert len(load.acked) == 30, (load.rejected, load.errors)
    assert elapsed < 60, "normal clients were starved: %.1fs" % elapsed
    # The slow connections are cut by header_timeout.
    def closed(s):
        s.settimeout(0.01)
        try:
            return s.recv(4096) is not None
        except socket.timeout:
            return False
        except OSError:
            return True
    wait_until(lambda: all(closed(s) for s in socks[:20]), 30, "slow connections closed")
    for s in socks:
        s.close()
    verify(d, load)
    healthy(d)


def test_burst_above_queue_limit(dripd_factory, tmpdir_path):
    # Each store takes 2 s, so the queue cannot drain while the burst
    # arrives: with 200 ms, on a loaded machine the curls started slower
    # than the queue drained, all got 202 and the test failed ("no 503").
    d = dripd_factory(config={"pipeline": {"queue_limit": 5, "test_store_delay": "2s"}})
    burst = 60 if LONG else 30
    results = []
    lock = threading.Lock()
    f = make_file(os.path.join(tmpdir_path, "b.bin"), 10000)

    def one(i):
        st, h, body = d.curl("-T", f, d.url("/v1/files/burst/%d.bin" % i))
        with lock:
            results.append((st, h, body))

    ts = [threading.Thread(target=one, args=(i,)) for i in range(burst)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    busy = [r for r in results if r[0] == 503]
    ok = [r for r in results if r[0] == 202]
    # Name every other answer (status 0: curl got no HTTP answer at all),
    # so that a failure says what the daemon said, not only a count.
    other = ["%s %r" % (st or "no HTTP answer", body[:300]) for st, _, body in results if st not in (202, 503)]
    assert not other and len(results) == burst, \
        "%d of %d uploads answered: %d x 202, %d x 503, others: %s" % (
            len(results), burst, len(ok), len(busy), "; ".join(other) or "none")
    # above queue_limit an upload waits (body unread) up to 1 s for a place,
    # then gets 503 (issue 15): the burst met the limit either way
    st, _h, mbody = d.curl(d.url("/metrics"), user=None)
    waited = int(re.search(r"^dripd_uploads_waited_total (\d+)$", mbody.decode(), re.M).group(1))
    assert busy or waited > 0, "the burst never met queue_limit (%d x 202, none waited)" % len(ok)
    assert all("retry-after" in h for _, h, _ in busy), \
        "503 without Retry-After: %r" % [h for _, h, _ in busy if "retry-after" not in h][:3]
    load = Load(d, tmpdir_path)
    digest = hashlib.sha256(open(f, "rb").read()).hexdigest()
    for _, _, body in ok:
        load.acked[json.loads(body)["media"]["id"]] = (digest, 10000, "")
    load.attempted = burst
    load.rejected = {"503": len(busy)}
    verify(d, load)
    healthy(d)


def test_pipelining_flood_under_upload_load(dripd_factory, tmpdir_path):
    """Issue 17: unauthenticated clients pipelining ~1,900 GET /healthz each
    on many connections (1,500 in the long run) while normal uploads go on.
    Every flood request is answered, the uploads keep being acknowledged
    during the flood, nothing acknowledged is lost, and the http worker is
    never killed for a withheld heartbeat."""
    conns = 1500 if LONG else 200
    # A loop that stops ticking for a few heartbeat periods gets the worker
    # killed: the long run at the default 1 s period (killed after 3 s of
    # silence, not 10), the short one, with fewer connections, at 100 ms.
    hb = ({"heartbeat_interval": "1s", "heartbeat_timeout": "3s"} if LONG
          else {"heartbeat_interval": "100ms", "heartbeat_timeout": "1500ms"})
    d = dripd_factory(config={"log": {"level": "info"}, "supervisor": hb})
    pid = d.worker("http")
    load = Load(d, os.path.join(tmpdir_path, "load"), threads=THREADS).start()
    flood = None
    try:
        load.wait_acked(3)
        flood = PipelineFlood(d.host, d.port, conns=conns, per_conn=1900).start()
        assert flood.started.wait(120), "the flood could not connect"
        acked_before = len(load.acked)
        assert flood.join(900), "the flood did not finish"
        acked_during = len(load.acked) - acked_before
    finally:
        if flood is not None:
            flood.abort()
        load.stop()
    print("FLOOD REPORT " + json.dumps({"conns": conns, "answered": flood.answered,
                                         "closed_early": flood.closed_early,
                                         "uploads_acked_during": acked_during}))
    assert not flood.errors, flood.errors
    assert flood.answered == conns * 1900 and flood.closed_early == 0, \
        (flood.answered, flood.closed_early)
    assert acked_during > 0, "no upload was acknowledged during the flood"
    log = d.log_text()
    assert "silent for" not in log and "heartbeat withheld" not in log, d.log_tail(20)
    assert d.workers("http") == [pid], "the http worker was replaced"
    verify(d, load)
    healthy(d)


def log_time(line):
    """The timestamp of a dripd log line, in seconds (same day)."""
    m = re.match(r"\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d\.\d+)Z", line)
    return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))


def test_pipelining_flood_keeps_heartbeat_and_sigterm(dripd_factory):
    """Issue 17 item 1 as the issue states it: 1,500 connections (150 in
    the short run) pipelining ~1,900 GET /healthz each, all on ONE loop
    thread. One callback used to serve up to 10,000 steps per connection
    with no yield: the loop spent seconds per turn, the heartbeat stopped
    and the supervisor killed the worker, and SIGTERM went unseen for 2 s.
    Now the heartbeat keeps its 100 ms period closely enough that a 1 s
    heartbeat_timeout never fires (measured on a loaded 2-core VM at 1,500
    connections: median gap 0.101 s, worst 0.27 s), another client is
    answered promptly meanwhile, and SIGTERM starts the drain within 1 s."""
    conns = 1500 if LONG else 150
    d = dripd_factory(config={
        "http": {"threads": 1},
        "log": {"level": "info"},
        "supervisor": {"heartbeat_interval": "100ms", "heartbeat_timeout": "1s"},
    })
    pid = d.worker("http")
    f = PipelineFlood(d.host, d.port, conns=conns, per_conn=1900).start()
    total = conns * 1900
    try:
        assert f.started.wait(300), "could not connect"
        wait_until(lambda: f.progress > 0 or f.finished.is_set(), 60, "the first flood answers")
        worst = 0.0
        for _ in range(5):  # a bystander's /healthz on a fresh connection
            t0 = time.monotonic()
            st, _, _ = d.curl("--max-time", "10", d.url("/healthz"), user=None)
            worst = max(worst, time.monotonic() - t0)
            assert st == 200
        wait_until(lambda: f.progress > total // 2 or f.finished.is_set(), 900, "half the flood")
        assert d.workers("http") == [pid] and "silent for" not in d.log_text(), \
            "the http worker was killed during the flood:\n" + d.log_tail(10)
        assert not f.finished.is_set(), "the flood ended before SIGTERM; make it longer"
        mark = d.log_size()
        d.signal(signal.SIGTERM)
        stop = d.wait_log(r"(?m)^.*stop requested.*$", timeout=30, after=mark).group(0)
        drain = d.wait_log(r"(?m)^.*http: SIGTERM: draining.*$", timeout=30, after=mark).group(0)
        assert d.proc.wait(120) == 0, d.log_tail()
    finally:
        f.abort()
    log = d.log_text()
    print("FLOOD REPORT " + json.dumps({"conns": conns, "answered_before_sigterm": f.progress,
                                         "sigterm_to_drain_s": round(log_time(drain) - log_time(stop), 3),
                                         "bystander_worst_s": round(worst, 3)}))
    assert "silent for" not in log and "heartbeat withheld" not in log, log[-3000:]
    assert log_time(drain) - log_time(stop) < 1.0, (stop, drain)
    assert worst < 2.0, "a bystander's /healthz took %.1fs during the flood" % worst

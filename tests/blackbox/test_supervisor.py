"""Supervisor and process tree, black-box against bin/dripd (or $DRIPD_BIN).

Covers the command line (--version, --help, --check), process names,
crash restart and restart intensity (exit 2), drain on SIGTERM (exit 0),
reload on SIGHUP (bad file kept out, good file -> new generation), hung
worker detection, the run/listen + READY=1 ordering, systemd socket
activation and the systemd watchdog. Every wait has a deadline and waits
for an event (a log line, an sd_notify message, a pid), never a fixed sleep.
"""
import json
import os
import re
import signal
import socket
import stat
import subprocess
import time

import pytest

from conftest import DRIPD, Notify, pids_of, wait_until
from httpraw import Conn


def run_dripd(*args, cwd=None, timeout=30):
    return subprocess.run([DRIPD] + list(args), capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def comm(pid):
    with open("/proc/%d/comm" % pid) as f:
        return f.read().strip()


def new_worker(d, role, old, timeout=20.0):
    """Wait for a worker of role whose pid is not in old; returns it."""
    old = set(old)
    return wait_until(lambda: next((p for p in d.workers(role) if p not in old), None),
                      timeout, "a new %s worker" % role)


def kill_quietly(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


class TimedList(list):
    """Stand-in for Notify.msgs that remembers when each message arrived."""

    def __init__(self, items):
        super().__init__(items)
        self.times = [None] * len(items)

    def append(self, x):
        self.times.append(time.monotonic())
        super().append(x)

    def stamped(self, prefix):
        return [t for m, t in zip(list(self), list(self.times)) if t is not None and m.startswith(prefix)]


# ---------------------------------------------------------------- command line

def test_version():
    r = run_dripd("--version")
    assert r.returncode == 0
    assert re.fullmatch(r"dripd \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout


def test_help_and_bad_usage():
    r = run_dripd("--help")
    assert r.returncode == 0
    for word in ("--check", "-c", "--version", "--rebuild-catalog"):
        assert word in r.stdout
    r = run_dripd("--no-such-option")
    assert r.returncode == 1
    assert "usage" in r.stderr


def test_check_ok(dripd_factory):
    d = dripd_factory(start=False)
    d.write_config()
    r = run_dripd("-c", d.config_path, "--check")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_check_reports_problems_with_file_prefix(dripd_factory):
    d = dripd_factory(start=False)
    cfg = dict(d.config)
    cfg["listen"] = 5
    cfg["no_such_key"] = True
    d.write_config(cfg)
    r = run_dripd("-c", d.config_path, "--check")
    assert r.returncode == 1
    out = (r.stdout + r.stderr).strip().splitlines()
    assert out, "no problems printed"
    assert "ok" not in r.stdout.split()
    for line in out:
        assert line.startswith(d.config_path + ":"), line
    assert any("no_such_key" in l for l in out)


def test_check_missing_file_and_run_with_bad_config(dripd_factory):
    d = dripd_factory(start=False)
    missing = os.path.join(d.dir, "nope.yaml")
    r = run_dripd("-c", missing, "--check")
    assert r.returncode == 1
    assert missing in r.stderr
    d.write_config(raw='{"listen": [')
    r = run_dripd("-c", d.config_path, timeout=30)
    assert r.returncode == 1
    assert d.config_path + ":" in r.stderr


def instance_workers(config_path):
    """Live dripd-http/dripd-pipeline processes whose argv names config_path."""
    found = []
    for p in os.listdir("/proc"):
        try:
            with open("/proc/%s/comm" % p) as f:
                comm = f.read().strip()
            with open("/proc/%s/cmdline" % p, "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            continue
        if comm in ("dripd-http", "dripd-pipeline") and config_path.encode() in argv:
            found.append((int(p), comm))
    return found


def test_startup_failures_exit_1(dripd_factory, tmpdir_path):
    # data_dir cannot be created (a file is in the way)
    blocker = os.path.join(tmpdir_path, "a-file")
    with open(blocker, "w") as f:
        f.write("x")
    d = dripd_factory(config={"data_dir": os.path.join(blocker, "var")}, start=False)
    d.write_config()
    r = run_dripd("-c", d.config_path)
    assert r.returncode == 1
    assert "data_dir: cannot create" in r.stderr, r.stderr

    # the listen address is taken
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        d = dripd_factory(config={"listen": ["127.0.0.1:%d" % busy.getsockname()[1]]}, start=False)
        d.write_config()
        r = run_dripd("-c", d.config_path)
        assert r.returncode == 1
        assert "Address already in use" in r.stderr, r.stderr
        assert "start-up failed; exit status 1" in r.stderr
        assert not os.path.exists(os.path.join(d.data_dir, "run", "listen"))
        # No worker of this instance anywhere (reparented to init or to a
        # subreaper pytest). Matched by its config path, which workers (forks)
        # keep in their argv: another test's leftover under pytest is not ours.
        assert not instance_workers(d.config_path)
    finally:
        busy.close()


def test_rebuild_catalog_never_creates_a_master_key(dripd_factory):
    d = dripd_factory(start=False)
    d.write_config()
    r = run_dripd("-c", d.config_path, "--rebuild-catalog", timeout=60)
    # no key yet: nothing can be decrypted, so it fails, and must not invent a key
    assert r.returncode == 1, r.stdout + r.stderr
    assert not os.path.exists(os.path.join(d.data_dir, "master.key"))


def test_no_config_generates_admin_token(tmpdir_path):
    """Without -c: embedded defaults plus user admin, token kept in ./var/admin.token."""
    served = []

    def check_admin_api():
        """The generated admin is a real user of the API (if 8080 was free)."""
        with open(os.path.join(tmpdir_path, "var", "admin.token")) as f:
            tok = f.read().strip()
        url = "http://127.0.0.1:8080/v1/media?folder=/"
        codes = []
        for t in (tok, "wrong-" + tok):
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                                "10", "-H", "Authorization: Bearer " + t, url],
                               capture_output=True, text=True)
            codes.append(r.stdout)
        return codes

    def start_once():
        logp = os.path.join(tmpdir_path, "log%d" % time.monotonic_ns())
        npath = os.path.join(tmpdir_path, "n.sock")
        if os.path.exists(npath):
            os.unlink(npath)
        n = Notify(npath)
        env = dict(os.environ, NOTIFY_SOCKET=npath)
        with open(logp, "wb") as lf:
            p = subprocess.Popen([DRIPD], stdout=lf, stderr=lf, cwd=tmpdir_path, env=env)
            try:
                # Ready (port 8080 free) or exit 1 (8080 taken): the token exists either way.
                wait_until(lambda: p.poll() is not None or "READY=1" in list(n.msgs), 30,
                           "READY=1 or exit")
                if p.poll() is None:
                    served.append(check_admin_api())
            finally:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                p.wait(30)
                n.close()
        with open(logp) as f:
            return f.read()

    log1 = start_once()
    tok_path = os.path.join(tmpdir_path, "var", "admin.token")
    assert "admin token in ./var/admin.token" in log1, log1
    st = os.stat(tok_path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    with open(tok_path) as f:
        token = f.read().strip()
    assert re.fullmatch(r"[0-9a-f]{48}", token)
    log2 = start_once()
    assert "admin token in ./var/admin.token" in log2
    with open(tok_path) as f:
        assert f.read().strip() == token, "token must be reused on later starts"
    for codes in served:
        if codes[0] == "000":
            continue  # no HTTP worker answering yet
        assert codes == ["200", "401"], codes


# ---------------------------------------------------------------- process tree

def test_process_names(dripd):
    assert comm(dripd.pid) == "dripd"
    assert len(pids_of(dripd.pid, "dripd-http")) == 1
    assert len(pids_of(dripd.pid, "dripd-pipeline")) == 1
    for role in ("http", "pipeline"):
        pid = dripd.workers(role)[0]
        with open("/proc/%d/status" % pid) as f:
            st = f.read()
        assert re.search(r"^PPid:\s+%d$" % dripd.pid, st, re.M)
        assert re.search(r"^SigBlk:\s+0+$", st, re.M), "worker must start with an empty signal mask"
    dripd.wait_log(r"worker http pid \d+ ready")
    dripd.wait_log(r"worker pipeline pid \d+ ready")


def test_second_instance_on_same_data_dir_refused(dripd, dripd_factory):
    other = dripd_factory(config={"data_dir": dripd.data_dir}, start=False)
    other.write_config()
    r = run_dripd("-c", other.config_path, timeout=30)
    assert r.returncode == 1
    assert "in use by another dripd (pid %d)" % dripd.pid in r.stderr, r.stderr
    assert alive(dripd.pid)
    # the running one still owns run/listen
    with open(os.path.join(dripd.data_dir, "run", "listen")) as f:
        assert f.read().strip() == dripd.addr


@pytest.mark.parametrize("role", ["http", "pipeline"])
def test_crashed_worker_is_restarted(dripd, role):
    old = dripd.worker(role)
    other = dripd.worker("pipeline" if role == "http" else "http")
    at = dripd.log_size()
    os.kill(old, signal.SIGSEGV)
    dripd.wait_log(r"worker %s pid %d killed by signal 11 \(Segmentation fault\)" % (role, old),
                   after=at)
    new = new_worker(dripd, role, [old])
    dripd.wait_log(r"worker %s restarted: pid %d \(generation 1, 1 %s restarts so far\)"
                   % (role, new, role), after=at)
    dripd.wait_log(r"worker %s pid %d ready" % (role, new), after=at)
    assert dripd.workers(role) == [new]
    assert dripd.workers("pipeline" if role == "http" else "http") == [other], \
        "a crash restarts only the crashed worker"
    assert dripd.proc.poll() is None
    # counted in the shared metrics, once an HTTP worker serves /metrics
    st, _, body = dripd.curl(dripd.url("/metrics"), user=None, timeout=5)
    if st == 200:
        line = 'dripd_supervisor_restarts_total{role="%s"} 1' % role
        assert line in body.decode(), body.decode()[:2000]


def test_crash_loop_gives_up_with_exit_2(dripd_factory):
    d = dripd_factory()  # max_restarts 5 within max_seconds 10s
    killed = set()
    t0 = time.monotonic()
    while d.proc.poll() is None:
        assert time.monotonic() - t0 < 10.0, "supervisor did not give up within max_seconds"
        for p in d.workers("pipeline"):
            if p not in killed:
                kill_quietly(p, signal.SIGKILL)
                killed.add(p)
        time.sleep(0.01)
    assert d.proc.returncode == 2, d.log_tail()
    assert time.monotonic() - t0 < 10.0
    assert len(killed) == 6, "5 restarts allowed, the 6th crash gives up: %r" % killed
    log = d.log_text()
    assert "restart intensity exceeded" in log
    d.notify.wait("STOPPING=1", timeout=1)
    assert not d.workers("http") and not d.workers("pipeline")
    assert not os.path.exists(os.path.join(d.data_dir, "run", "listen"))


def test_sigterm_drains_and_exits_0(dripd):
    kids = dripd.workers("http") + dripd.workers("pipeline")
    assert len(kids) == 2
    n = dripd.notify.count()
    rc = dripd.stop()
    assert rc == 0, dripd.log_tail()
    dripd.notify.wait("STOPPING=1", timeout=1, start=n)
    for p in kids:
        assert not alive(p)
    assert not os.path.exists(os.path.join(dripd.data_dir, "run", "listen"))
    log = dripd.log_text()
    assert "stop requested: draining 2 workers" in log
    assert "stopped; exit status 0" in log


def test_sighup_bad_config_keeps_old_workers_then_good_config_reloads(dripd):
    d = dripd
    http0, pipe0 = d.worker("http"), d.worker("pipeline")
    good = dict(d.config)

    # 1. a broken file: errors logged, same workers, READY=1 again
    d.write_config(raw='{"listen": ["127.0.0.1:0"], "data_dir": 7,\n "bogus": [')
    at, n = d.log_size(), d.notify.count()
    d.signal(signal.SIGHUP)
    i = d.notify.wait("RELOADING=1", start=n)
    assert d.notify.msgs[i + 1].startswith("MONOTONIC_USEC=") or \
        any(m.startswith("MONOTONIC_USEC=") for m in d.notify.msgs[i:i + 3])
    d.notify.wait("READY=1", start=i + 1)
    d.wait_log(re.escape(d.config_path) + r":\d+:\d+: ", after=at)
    d.wait_log(r"reload failed: .*still serving generation 1", after=at)
    assert d.workers("http") == [http0] and d.workers("pipeline") == [pipe0]
    assert "starting generation" not in d.log_text()[at:]

    # 2. a good file with one more listener: new generation, old one drains
    good["listen"] = [d.addr, "127.0.0.1:0"]
    d.write_config(good)
    at, n = d.log_size(), d.notify.count()
    d.signal(signal.SIGHUP)
    i = d.notify.wait("RELOADING=1", start=n)
    d.wait_ready(start=i + 1)
    d.wait_log(r"reload ok: generation 2 serving, generation 1 draining", after=at)
    http1 = new_worker(d, "http", [http0])
    pipe1 = new_worker(d, "pipeline", [pipe0])
    wait_until(lambda: not alive(http0) and not alive(pipe0), 20, "old generation gone")
    assert d.workers("http") == [http1] and d.workers("pipeline") == [pipe1]
    assert len(d.addrs) == 2
    assert d.addrs[0] == d.addr, "an unchanged listener keeps its socket and port"
    for a in d.addrs:
        h, p = a.rsplit(":", 1)
        socket.create_connection((h, int(p)), timeout=5).close()

    # 3. drop the extra listener again: its port is closed once the old workers are gone
    extra = d.addrs[1]
    good["listen"] = [d.addr]
    d.write_config(good)
    at, n = d.log_size(), d.notify.count()
    d.signal(signal.SIGHUP)
    i = d.notify.wait("RELOADING=1", start=n)
    d.wait_ready(start=i + 1)
    d.wait_log(r"no longer listening on %s" % re.escape(extra), after=at)
    wait_until(lambda: not alive(http1), 20, "generation 2 gone")
    assert d.addrs == [d.addr]
    h, p = extra.rsplit(":", 1)
    with pytest.raises(OSError):
        socket.create_connection((h, int(p)), timeout=5).close()
    assert d.stop() == 0


def test_sighup_keeps_an_upload_in_flight_on_the_old_generation(dripd, tmpdir_path):
    """A reload must not drop a connection: an upload whose headers the old
    http worker has already answered (100 Continue) finishes on that worker
    after the new generation is serving, and its bytes are stored."""
    d = dripd
    http0 = d.worker("http")
    body = os.urandom(3 << 20)
    half = len(body) // 2
    c = Conn(d.host, d.port, 30)
    c.send("PUT /v1/files/reload/in-flight.bin HTTP/1.1\r\nHost: x\r\n"
           "Authorization: Bearer %s\r\nContent-Length: %d\r\n"
           "Expect: 100-continue\r\n\r\n" % (d.token(), len(body)))
    assert c.read_response().status == 100  # the old worker owns this request now
    c.send(body[:half])

    at = d.log_size()
    d.write_config(dict(d.config))
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload ok: generation 2 serving, generation 1 draining", after=at)
    new_worker(d, "http", [http0])
    assert alive(http0), "the old http worker must drain, not drop the upload"

    c.send(body[half:])
    r = c.read_response(timeout=30)
    assert r.status == 202, r
    doc = json.loads(r.body)
    c.close()
    wait_until(lambda: not alive(http0), 20, "old http worker gone after its last request")

    job = d.wait_job(doc["job"]["id"])
    assert job["state"] == "done", job
    st, _, got = d.curl(d.url("/v1/media/%s/content" % doc["media"]["id"]))
    assert st == 200 and got == body


def test_kill9_supervisor_workers_follow_and_restart_on_same_port(dripd):
    """SIGKILL of the supervisor alone: PDEATHSIG stops the workers; the
    next start takes the same port and data_dir (lock released, SO_REUSEADDR)."""
    d = dripd
    kids = d.workers("http") + d.workers("pipeline")
    port = d.port
    os.kill(d.pid, signal.SIGKILL)
    d.proc.wait(10)
    wait_until(lambda: not any(alive(p) for p in kids), 20, "orphaned workers to exit")
    d.notify.close()
    d.logf.close()
    d.restart()
    assert d.port == port
    assert len(d.workers("http")) == 1 and len(d.workers("pipeline")) == 1
    assert d.stop() == 0


def test_hung_worker_is_killed_and_replaced(dripd):
    d = dripd  # heartbeat_interval 200ms, heartbeat_timeout 3s
    old = d.worker("pipeline")
    at = d.log_size()
    t0 = time.monotonic()
    os.kill(old, signal.SIGSTOP)
    try:
        m = d.wait_log(r"worker pipeline pid %d silent for (\d+\.\d)s, killing" % old, after=at)
        # never before the timeout; after it, as soon as the supervisor's
        # loop runs again (seconds late on a loaded machine, never 10)
        assert 3.0 <= float(m.group(1)) < 10.0
        # "silent" counts from the last heartbeat, which came before the
        # SIGSTOP (by up to the 200 ms interval, more when a loaded machine
        # delays it): the kill still comes well after the stop
        assert time.monotonic() - t0 >= 2.0
        d.wait_log(r"worker pipeline pid %d still running .* sending SIGKILL" % old, after=at)
        d.wait_log(r"worker pipeline pid %d killed by signal 9 \(Killed\)" % old, after=at)
        new = new_worker(d, "pipeline", [old])
        d.wait_log(r"worker pipeline pid %d ready" % new, after=at)
        assert not alive(old)
        assert d.proc.poll() is None
    finally:
        kill_quietly(old)


def test_ready_only_after_run_listen(dripd_factory):
    d = dripd_factory(start=False)
    listen = os.path.join(d.data_dir, "run", "listen")
    os.makedirs(os.path.dirname(listen))
    with open(listen, "w") as f:
        f.write("stale:1\n")  # left by an earlier crash
    d.start(wait_ready=False)
    i = d.notify.wait("READY=1", timeout=30)
    # the moment READY=1 is seen, run/listen already names the real socket
    with open(listen) as f:
        lines = f.read().splitlines()
    assert len(lines) == 1 and lines[0] != "stale:1"
    h, p = lines[0].rsplit(":", 1)
    assert h == "127.0.0.1" and int(p) > 0
    socket.create_connection((h, int(p)), timeout=5).close()
    assert d.notify.msgs[i].startswith("READY=1")
    assert any(m.startswith("STATUS=2 workers, queue depth") for m in d.notify.msgs[i:])
    d.wait_ready()


WRAPPER = r"""
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_FDNAMES"] = "http"
os.execv(sys.argv[2], sys.argv[2:])
"""


def test_systemd_socket_activation(dripd_factory):
    d = dripd_factory(start=False)  # its config says 127.0.0.1:0; systemd's socket wins
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    try:
        d.write_config()
        npath = os.path.join(d.dir, "notify.sock")
        d.notify = Notify(npath)
        env = dict(os.environ, NOTIFY_SOCKET=npath)
        d.logf = open(d.log_path, "ab")
        d.proc = subprocess.Popen(["/usr/bin/python3", "-c", WRAPPER, str(sock.fileno()), DRIPD,
                                   "-c", d.config_path],
                                  pass_fds=(sock.fileno(),), stdout=d.logf, stderr=d.logf,
                                  env=env, cwd=d.dir)
        d.wait_ready()
        assert d.addrs == ["127.0.0.1:%d" % port]
        d.wait_log(r"using 1 socket\(s\) passed by systemd")
        d.wait_log(r"listening on 127\.0\.0\.1:%d \(systemd:http\)" % port)
        sock.close()  # only dripd holds it now
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        # a reload keeps systemd's socket
        n = d.notify.count()
        d.signal(signal.SIGHUP)
        i = d.notify.wait("RELOADING=1", start=n)
        d.wait_ready(start=i + 1)
        assert d.addrs == ["127.0.0.1:%d" % port]
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        assert d.stop() == 0
    finally:
        sock.close()


def test_watchdog_pings_only_while_workers_are_healthy(dripd_factory):
    d = dripd_factory(env={"WATCHDOG_USEC": "400000"})  # WATCHDOG=1 every 200ms
    with d.notify.cv:
        d.notify.msgs = TimedList(d.notify.msgs)
    wait_until(lambda: len(d.notify.msgs.stamped("WATCHDOG=1")) >= 5, 10, "5 WATCHDOG=1")
    ts = d.notify.msgs.stamped("WATCHDOG=1")
    assert max(b - a for a, b in zip(ts, ts[1:])) < 1.2, "steady pings about every 200ms"

    old = d.worker("pipeline")
    at = d.log_size()
    t_stop = time.monotonic()
    os.kill(old, signal.SIGSTOP)
    try:
        d.wait_log(r"worker pipeline pid %d silent for" % old, after=at)
        new = new_worker(d, "pipeline", [old])
        d.wait_log(r"worker pipeline pid %d ready" % new, after=at)
        t_ready = time.monotonic()
        wait_until(lambda: any(t > t_ready for t in d.notify.msgs.stamped("WATCHDOG=1")), 10,
                   "WATCHDOG=1 to resume after the replacement is ready")
    finally:
        kill_quietly(old)
    ts = [t_stop] + [t for t in d.notify.msgs.stamped("WATCHDOG=1") if t > t_stop]
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    assert max(gaps) >= 1.5, "no pause in WATCHDOG=1 while a worker was hung: %r" % gaps
    d.wait_log(r"systemd watchdog: WATCHDOG=1 every 200ms")


def test_healthz_survives_http_worker_restart(dripd):
    st, _, _ = dripd.curl(dripd.url("/healthz"), user=None, timeout=5)
    assert st == 200
    # still answered after the http worker is replaced
    old = dripd.worker("http")
    os.kill(old, signal.SIGKILL)
    new_worker(dripd, "http", [old])
    wait_until(lambda: dripd.curl(dripd.url("/healthz"), user=None, timeout=5)[0] == 200, 20,
               "/healthz from the new http worker")

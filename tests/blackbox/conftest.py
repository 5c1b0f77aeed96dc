"""Black-box harness: start the real dripd on an ephemeral loopback port.

Synchronisation is by events, never by sleeping a fixed time:
  * readiness: dripd speaks the sd_notify protocol; the harness owns the
    NOTIFY_SOCKET and waits for READY=1 (and sees WATCHDOG=1, STOPPING=1...).
  * the bound address: the supervisor writes <data_dir>/run/listen (one
    "host:port" per line) before it sends READY=1.
  * log lines: wait_log() follows the daemon's stderr file until a regex
    matches or a deadline passes.

Usage in a test:

    def test_x(dripd):                  # default config, started
        r = dripd.curl("-X", "PUT", "--data-binary", "@f", dripd.url("/v1/files/a.txt"))

    def test_y(dripd_factory):          # custom config
        d = dripd_factory(config={"pipeline": {"queue_limit": 2}})
"""
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DRIPD = os.environ.get("DRIPD_BIN", os.path.join(ROOT, "bin", "dripd"))
DRIPCTL = os.environ.get("DRIPCTL_BIN", os.path.join(ROOT, "bin", "dripctl"))
ARTIFACTS = os.path.join(ROOT, "tests", "artifacts")

USERS = [
    {"name": "alice", "token": "alice-secret-token", "admin": True},
    {"name": "bob", "token": "bob-secret-token", "admin": False},
    {"name": "carol", "token": "carol-secret-token", "admin": False},
]


def deep_merge(base, extra):
    out = dict(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def pids_of(parent, name):
    """Direct children of parent whose comm is name (pgrep -P parent -x name)."""
    r = subprocess.run(["pgrep", "-P", str(parent), "-x", name], capture_output=True, text=True)
    return [int(x) for x in r.stdout.split()]


def wait_until(pred, timeout=20.0, what="condition", interval=0.02):
    """Poll pred() until truthy; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


class Notify:
    """Collects sd_notify datagrams sent to our NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []
        self.cv = threading.Condition()
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.cv:
                for line in data.decode(errors="replace").split("\n"):
                    if line:
                        self.msgs.append(line)
                self.cv.notify_all()

    def wait(self, prefix, timeout=20.0, start=0):
        """Wait for a message starting with prefix at index >= start; returns its index."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for i in range(start, len(self.msgs)):
                    if self.msgs[i].startswith(prefix):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no sd_notify %r within %.1fs; got %r" % (prefix, timeout, self.msgs[-20:]))
                self.cv.wait(left)

    def count(self):
        with self.cv:
            return len(self.msgs)

    def close(self):
        self.stop = True
        self.sock.close()


class Dripd:
    def __init__(self, tmp, config=None, start=True, raw_config=None, args=None, env=None):
        self.dir = tmp
        self.data_dir = os.path.join(tmp, "var")
        self.config_path = os.path.join(tmp, "dripd.yaml")
        self.log_path = os.path.join(tmp, "dripd.log")
        self.users = {u["name"]: u["token"] for u in USERS}
        base = {
            "listen": ["127.0.0.1:0"],
            "data_dir": self.data_dir,
            "users": USERS,
            "supervisor": {"max_restarts": 5, "max_seconds": "10s",
                           "heartbeat_interval": "200ms", "heartbeat_timeout": "3s",
                           "drain_timeout": "10s"},
            "pipeline": {"retry": {"attempts": 5, "backoff": "100ms", "max_backoff": "1s"}},
            "log": {"level": "debug"},
        }
        self.config = deep_merge(base, config)
        self.data_dir = self.config["data_dir"]
        self.raw_config = raw_config
        self.args = args or []
        self.env = env or {}
        self.proc = None
        self.notify = None
        self.addr = None
        if start:
            self.start()

    # ---- lifecycle ----
    def write_config(self, config=None, raw=None):
        if raw is not None:
            text = raw
        else:
            # JSON is valid YAML (flow style), so no YAML emitter is needed.
            text = json.dumps(config if config is not None else self.config, indent=2)
        with open(self.config_path, "w") as f:
            f.write(text)

    def start(self, wait_ready=True, timeout=30.0):
        self.write_config(raw=self.raw_config)
        npath = os.path.join(self.dir, "notify.sock")
        if os.path.exists(npath):
            os.unlink(npath)
        self.notify = Notify(npath)
        env = dict(os.environ)
        env.update({"NOTIFY_SOCKET": npath})
        env.update(self.env)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([DRIPD, "-c", self.config_path] + self.args,
                                     stdout=self.logf, stderr=self.logf, env=env, cwd=self.dir)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30.0, start=0):
        deadline = time.monotonic() + timeout
        while True:
            try:
                i = self.notify.wait("READY=1", timeout=0.5, start=start)
                break
            except AssertionError:
                if self.proc.poll() is not None:
                    raise AssertionError("dripd exited with %s before READY=1; log:\n%s"
                                         % (self.proc.returncode, self.log_tail()))
                if time.monotonic() > deadline:
                    raise AssertionError("dripd not READY within %.0fs; log:\n%s" % (timeout, self.log_tail()))
        with open(os.path.join(self.data_dir, "run", "listen")) as f:
            self.addrs = [l.strip() for l in f if l.strip()]
        self.addr = self.addrs[0]
        self.host, self.port = self.addr.rsplit(":", 1)
        self.port = int(self.port)
        return i

    @property
    def pid(self):
        return self.proc.pid

    def worker(self, role, timeout=20.0):
        """pid of the (single) worker of role 'http' or 'pipeline'."""
        name = "dripd-" + role
        return wait_until(lambda: (pids_of(self.pid, name) or [None])[0], timeout, "worker " + name)

    def workers(self, role):
        return pids_of(self.pid, "dripd-" + role)

    def signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self, timeout=30.0):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill_tree()
                raise AssertionError("dripd did not stop within %.0fs; log:\n%s" % (timeout, self.log_tail()))
        rc = self.proc.returncode
        self.notify.close()
        self.logf.close()
        return rc

    def kill_tree(self):
        """SIGKILL the supervisor and every worker (the crash of a whole node)."""
        kids = self.workers("http") + self.workers("pipeline")
        for p in [self.pid] + kids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(10)
        for p in kids:
            wait_until(lambda: not os.path.exists("/proc/%d" % p) or _zombie(p), 10, "worker %d gone" % p)
            _reap_if_ours(p)
        self.notify.close()
        self.logf.close()

    def restart(self):
        """Start again on the same data_dir and port (after stop or kill_tree)."""
        self.config["listen"] = [self.addr]
        self.start()
        return self

    # ---- logs ----
    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def wait_log(self, pattern, timeout=20.0, after=0):
        """Wait until the log (from byte offset `after`) matches regex; returns the match."""
        rx = re.compile(pattern)

        def find():
            with open(self.log_path, "rb") as f:
                f.seek(after)
                return rx.search(f.read().decode(errors="replace"))
        try:
            return wait_until(find, timeout, "log /%s/" % pattern)
        except AssertionError:
            raise AssertionError("log never matched /%s/ within %.0fs; tail:\n%s" % (pattern, timeout, self.log_tail()))

    def log_size(self):
        return os.path.getsize(self.log_path)

    # ---- clients ----
    def url(self, path=""):
        return "http://%s%s" % (self.addr, path)

    def token(self, user="alice"):
        return self.users[user]

    def curl(self, *args, user="alice", check=False, timeout=120):
        """Run curl with the user's bearer token. Returns (status, headers, body bytes).
        Extra args go before the URL; pass the URL as the last arg."""
        hdr = os.path.join(self.dir, "curl-headers-%d" % threading.get_ident())
        cmd = ["curl", "-sS", "-D", hdr, "-o", "-", "--max-time", str(timeout)]
        if user:
            cmd += ["-H", "Authorization: Bearer " + self.users[user]]
        cmd += list(args)
        r = subprocess.run(cmd, capture_output=True)
        if check and r.returncode != 0:
            raise AssertionError("curl failed: %s %s" % (r.returncode, r.stderr.decode()))
        status, headers = 0, {}
        if os.path.exists(hdr):
            with open(hdr, "rb") as f:
                for line in f.read().decode(errors="replace").splitlines():
                    m = re.match(r"HTTP/\S+ (\d+)", line)
                    if m:
                        status, headers = int(m.group(1)), {}
                    elif ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
            os.unlink(hdr)
        return status, headers, r.stdout

    def json(self, method, path, body=None, user="alice", expect=None):
        """JSON request; returns (status, parsed body or None, headers)."""
        args = ["-X", method]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        st, h, b = self.curl(*args, self.url(path), user=user)
        try:
            doc = json.loads(b) if b else None
        except ValueError:
            doc = None
        if expect is not None:
            assert st == expect, "%s %s -> %s %r" % (method, path, st, b[:500])
        return st, doc, h

    def put_file(self, local, remote, user="alice"):
        """curl -T upload; returns (status, json)."""
        st, h, b = self.curl("-T", local, self.url("/v1/files" + remote), user=user)
        return st, (json.loads(b) if b.startswith(b"{") else None)

    def wait_job(self, job_id, user="alice", timeout=60.0, states=("done", "failed")):
        def poll():
            st, doc, _ = self.json("GET", "/v1/jobs/" + job_id, user=user)
            if st == 200 and doc and doc.get("state") in states:
                return doc
            return None
        return wait_until(poll, timeout, "job %s to reach %s" % (job_id, states), interval=0.05)


def _reap_if_ours(pid):
    """A worker orphaned by its SIGKILLed supervisor is pytest's child once
    pytest is a subreaper (powerloss_lib._subreaper): reap it, or its zombie
    stays for the rest of the run and shows up in pids_of(os.getpid(), ...)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def make_file(path, size, seed=None):
    """A file of `size` pseudo-random bytes (fast: repeats a random 1 MiB block
    with a per-block counter so no two blocks are equal). Never media: a first
    byte 0xff or 0x47 is made 0x00, as about 1 random file in 2,300 starts like
    MPEG or AAC audio to decode_probe and would go through the process stage
    (a test counting claims "at stage encrypt" saw 0 of 31 once)."""
    block = os.urandom(min(size, 1 << 20)) if size else b""
    if block[:1] in (b"\xff", b"\x47"):
        block = b"\x00" + block[1:]
    with open(path, "wb") as f:
        left, i = size, 0
        while left > 0:
            chunk = block[: min(left, len(block))]
            if i:
                chunk = i.to_bytes(8, "little") + chunk[8:] if len(chunk) >= 8 else chunk
            f.write(chunk)
            left -= len(chunk)
            i += 1
    return path


def same_file(a, b):
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def sha256_of(path_or_bytes):
    """Hex SHA-256 of bytes, or of the file at a path (read 1 MiB at a time)."""
    if isinstance(path_or_bytes, bytes):
        return hashlib.sha256(path_or_bytes).hexdigest()
    h = hashlib.sha256()
    with open(path_or_bytes, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


# scripts/run-blackbox.sh runs the tests several at a time (pytest-xdist,
# --dist loadgroup). Each test has its own daemon, ports and directories,
# so they may; but no two tests of one group below run at the same time:
# "browser" each start Chromium (CPU-heavy), "timing" assert how fast
# something happens under load (floods, watchdog pings, Prometheus alert
# evaluation, a 1 s hook timeout, 429s while jobs queue). A test that turns
# out to be flaky beside others goes into a group here, never gets weaker.
XDIST_GROUPS = {
    "browser": {
        "test_web.py::test_browser_end_to_end",
        "test_folders.py::test_web_folders",
        "test_sharing.py::test_web_sharing",
        "test_versions.py::test_web_versions_and_trash",
        "test_pipeline_view.py::test_web_live_view_in_chromium",
        "test_processing.py::test_web_ui_thumbnails_and_preview",
        "test_proxy.py::test_browser_cross_origin_upload",
    },
    "timing": {
        "test_chaos.py::test_pipelining_flood_under_upload_load",
        "test_chaos.py::test_pipelining_flood_keeps_heartbeat_and_sigterm",
        "test_chaos.py::test_slowloris_does_not_starve_others",
        "test_chaos.py::test_burst_above_queue_limit",
        "test_prometheus.py::test_prometheus_scrapes_dripd_dashboard_has_data_alerts_fire",
        "test_supervisor.py::test_watchdog_pings_only_while_workers_are_healthy",
        "test_http.py::test_keepalive_idle_timeout_closes",
        "test_upload_hook.py::test_hook_down_or_slow_on_error_deny",
        "test_quota.py::test_queued_jobs_429_for_that_user_only",
    },
}


# And these run alone: while one runs, no other test does (see _alone).
# The Prometheus test waits for rate() alerts over short windows to fire:
# beside three other tests on 2 cores its windows passed before the alerts
# could (2 runs out of 2 at load 20).
ALONE = {
    "test_prometheus.py::test_prometheus_scrapes_dripd_dashboard_has_data_alerts_fire",
}


def _test_name(item):
    return item.nodeid.rsplit("/", 1)[-1].split("[", 1)[0]


@pytest.hookimpl(tryfirst=True)  # before xdist reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        for group, names in XDIST_GROUPS.items():
            if _test_name(item) in names:
                item.add_marker(pytest.mark.xdist_group(group))


def pytest_configure(config):
    """The controller makes one directory for this run's _alone lock files
    (a worker has workerinput; without xdist there are no locks). It is
    removed when the run ends, so /tmp does not collect two files a run."""
    if not hasattr(config, "workerinput"):
        config.dripd_lockdir = tempfile.mkdtemp(prefix="dripd-blackbox-")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """xdist: hand the lock directory to each worker."""
    node.workerinput["dripd_lockdir"] = node.config.dripd_lockdir


def pytest_unconfigure(config):
    d = getattr(config, "dripd_lockdir", None)
    if d:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(autouse=True)
def _alone(request):
    """Under xdist, every test holds a shared lock on a file of this run
    while it runs, an ALONE test an exclusive one. A second lock, the gate,
    gives the exclusive one precedence: while it waits for the running
    tests to end, no worker starts another."""
    wi = getattr(request.config, "workerinput", None)
    if wi is None:
        yield
        return
    import fcntl
    base = os.path.join(wi["dripd_lockdir"], "run")
    alone = _test_name(request.node) in ALONE
    with open(base + ".gate", "a+") as gate, open(base + ".lock", "a+") as lock:
        fcntl.flock(gate, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(lock, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            if alone:
                fcntl.flock(gate, fcntl.LOCK_UN)


SANITIZER_REPORT = re.compile(r"WARNING: ThreadSanitizer|ERROR: (Address|Leak)Sanitizer|"
                              r"\bruntime error: ")


@pytest.fixture
def tmpdir_path():
    d = tempfile.mkdtemp(prefix="dripd-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def dripd_factory(tmpdir_path):
    made = []

    def make(config=None, start=True, raw_config=None, args=None, env=None, subdir=None):
        d = os.path.join(tmpdir_path, subdir or ("d%d" % len(made)))
        os.makedirs(d, exist_ok=True)
        inst = Dripd(d, config=config, start=start, raw_config=raw_config, args=args, env=env)
        made.append(inst)
        return inst

    yield make
    for inst in made:
        if inst.proc is not None and inst.proc.poll() is None:
            try:
                inst.stop(timeout=15)
            except AssertionError:
                pass
    # a sanitizer build (DRIPD_BIN=bin/dripd-thread, ...) reports into the log
    for inst in made:
        if not os.path.exists(inst.log_path):
            continue
        text = inst.log_text()
        m = SANITIZER_REPORT.search(text)
        if m:
            start = text.rfind("\n", 0, m.start()) + 1  # the whole line: it names the source
            pytest.fail("sanitizer report in %s:\n%s" % (inst.log_path, text[start:start + 4000]))


@pytest.fixture
def dripd(dripd_factory):
    return dripd_factory()

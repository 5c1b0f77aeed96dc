"""PostgreSQL's data directory on lossyfs (tests/tools/lossyfs, the
power-loss suite's file system that forgets whatever was not made durable),
power cuts under upload load through the balancer: nothing a node
acknowledged (202) is lost (issue 16, "Tests").

A cut is: lossyfs frozen (the power is off: no file operation of
PostgreSQL's gets an answer any more), every process of the server killed
(SIGKILL, by the pids we started), lossyfs told to crash (it forgets every
write not yet fsynced and unmounts), mounted again, PostgreSQL started on
what survived (its crash recovery). The cuts come at three kinds of moment:
anywhere under load, just after a WAL flush took effect but before
PostgreSQL heard so (the commit is durable, nobody was told), and just
before a WAL flush (the commit is not durable, nobody was told). The nodes
ride through each cut as through a PostgreSQL restart (503 meanwhile,
ready again after). At the end every acknowledged upload is available with
its bytes' SHA-256.

lossyfs runs with --ext4 (a file's fsync also makes its name durable, as
ext4's journal does in practice); PostgreSQL's own fsyncs of pg_wal and of
the relation files do the rest. PG_POWERLOSS_CUTS (default 3: one of each
kind) sets the number of cuts; the make test-cluster run keeps it short.
"""
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from conftest import PgServer, make_file, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "blackbox"))
from lossyfs_lib import Lossyfs  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
CUTS = int(os.environ.get("PG_POWERLOSS_CUTS", "3"))


def as_postgres(cmd):
    return (["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []) + cmd


def proc_tree(pid):
    """pid and its descendants (every PostgreSQL process is the postmaster's)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir("/proc/%d/task" % p):
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


class PgOnLossyfs(PgServer):
    """PostgreSQL 15 whose data directory is on lossyfs; its socket and log
    stay on the real disk. The interface of PgServer (createdb, query,
    stop, start, destroy) plus cut()."""

    def __init__(self, parent):
        super().__init__(parent)
        self.fs = Lossyfs(os.path.join(self.dir, "fs"), ext4=True)
        os.chmod(self.fs.root, 0o755)
        self.run = os.path.join(self.dir, "run")  # socket, server log
        os.makedirs(self.run)
        if os.getuid() == 0:
            subprocess.run(["chown", "postgres", self.fs.backing, self.run], check=True)
        # initdb onto the backing directory: what the disk holds at the start
        r = subprocess.run(as_postgres([PG_BIN + "/initdb", "-D", self.fs.backing + "/data",
                                        "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                        "--locale=C.UTF-8"]),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, "initdb: %s" % r.stderr
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.dsn = "host=127.0.0.1 port=%d user=postgres" % self.port
        self.postmaster = None

    def _pg_ctl(self, *args):
        cmd = as_postgres([PG_BIN + "/pg_ctl", "-D", self.fs.mnt + "/data", "-w", "-t", "90"] +
                          list(args))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, "pg_ctl %s: %s %s\n%s" % (args[0], r.stdout, r.stderr,
                                                            self.log_tail())
        return r

    def log_tail(self, n=30):
        try:
            with open(os.path.join(self.run, "server.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def start(self):
        if not self.fs.mounted():
            self.fs.mount()
            os.chmod(self.fs.mnt, 0o755)
        self._pg_ctl("start", "-l", os.path.join(self.run, "server.log"), "-o",
                     "-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=300 "
                     "-c fsync=on -c synchronous_commit=on" % (self.port, self.run))
        with open(self.fs.mnt + "/data/postmaster.pid") as f:
            self.postmaster = int(f.readline())
        return self

    def cut(self, armed=None):
        """The power cut: freeze (or wait for an armed freeze), SIGKILL the
        server, forget what was not durable, mount again and start."""
        if armed is None:
            self.fs.freeze()
        else:
            line = armed.line(60)
            armed.close()
            assert line and line.startswith("frozen"), "lossyfs: %r" % line
        pids = proc_tree(self.postmaster)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.fs.crash()
        # Reaped by their parent (not us): a zombie postmaster's pid would
        # still look alive to the next one's postmaster.pid check.
        wait_until(lambda: not [p for p in pids if os.path.exists("/proc/%d" % p)], 60,
                   "the killed PostgreSQL processes gone")
        self.start()

    def destroy(self):
        if self.fs.proc is not None and self.fs.proc.poll() is None:
            try:
                self._pg_ctl("stop", "-m", "immediate")
            except AssertionError:
                for p in proc_tree(self.postmaster or 0)[1:] + [self.postmaster]:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except (ProcessLookupError, TypeError):
                        pass
            self.fs.cleanup()
        subprocess.run(["rm", "-rf", self.dir])


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_postgres_power_cuts_under_load(cluster_factory, tmp_path):
    pg = PgOnLossyfs(None)
    try:
        pg.start()
    except BaseException:
        pg.destroy()
        raise
    c = cluster_factory(nodes=2, pg=pg)  # the cluster destroys pg when it stops
    srcs = [make_file(str(tmp_path / ("p%d.bin" % i)), 20000 + 11 * i) for i in range(3)]
    shas = [sha256_of(s) for s in srcs]
    acked, statuses, lock, stop = {}, [], threading.Lock(), threading.Event()
    odd = []  # answers other than 202 and 503

    def load(k):
        i = 0
        while not stop.is_set():
            st, h, b = c.curl("-T", srcs[i % 3], c.url("/v1/files/pl/%d-%d.bin" % (k, i)))
            with lock:
                statuses.append(st)
                if st not in (202, 503):
                    odd.append((st, b[:300]))
                if st == 202:
                    acked[json.loads(b)["media"]["id"]] = shas[i % 3]
            i += 1
    ts = [threading.Thread(target=load, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    kinds = [None, ("after", 2), ("before", 3)]
    try:
        for n in range(CUTS):
            m = len(acked)
            wait_until(lambda: len(acked) >= m + 15, 90, "uploads acknowledged before cut %d" % n)
            kind = kinds[n % len(kinds)]
            armed = None
            if kind is not None:  # the k-th WAL flush from now
                armed = pg.fs.arm("fsync", kind[1], when=kind[0], match="pg_wal")
            pg.cut(armed)
            for node in c.nodes:
                wait_until(lambda: node.json("GET", "/readyz", user=None)[1]["ready"], 60,
                           "%s ready after cut %d" % (node.addr, n))
        m = len(acked)
        wait_until(lambda: len(acked) >= m + 15, 90, "uploads after the last cut")
    finally:
        stop.set()
        for t in ts:
            t.join(180)

    def all_available():
        rows = pg.query(c.dsn, "SELECT id, state, sha256 FROM media WHERE path LIKE '/pl/%'")
        got = {r[0]: (r[1], r[2]) for r in rows}
        missing = [m for m in acked if m not in got]
        assert not missing, "%d acknowledged uploads lost, e.g. %s" % (len(missing), missing[:5])
        return all(got[m] == ("available", acked[m]) for m in acked)
    wait_until(all_available, 120, "every acknowledged upload available", interval=0.5)
    assert len(acked) >= 15 * (CUTS + 1)
    assert not odd, odd[:5]
    assert statuses.count(503) > 0  # the cuts were felt

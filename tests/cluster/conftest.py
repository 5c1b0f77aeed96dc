"""Three dripd nodes behind a round-robin balancer, on one PostgreSQL
catalog and one S3 bucket, all real servers on loopback (make test-cluster):

    PostgreSQL 15 (tests/blackbox/pgutil.py)    s3rver (tests/blackbox/s3util.py)
                 \\                               /
       dripd node-a    dripd node-b    dripd node-c      (tests/blackbox/conftest.py's Dripd)
                 \\           |           /
                   nginx, round robin, no stickiness

    c = cluster                        # the fixture: started, ready
    c.url("/v1/files/x")               # through the balancer
    c.nodes[1].url(...)                # one node directly
    cluster_factory(extra={...}, node_extra={1: {...}})  # config for all, for node-b
    cluster_factory(own_pg=True)   # a PostgreSQL server of its own (default: one per run)
    cluster_factory(nodes=2, pg=server)  # two nodes, on a server of the test's
    c.curl(...), c.json(...)           # through the balancer, as alice
    c.upstreams()                      # which node served each request so far

Every wait is on a condition, never a fixed sleep; a missing server (nginx,
PostgreSQL, s3rver) is a failure, never a skip.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "blackbox"))

import importlib.util  # noqa: E402


def _load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(HERE, "..", "blackbox", file))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_bb = _load("blackbox_harness", "conftest.py")  # not "conftest": that name is this file's
USERS, Dripd, wait_until = _bb.USERS, _bb.Dripd, _bb.wait_until
make_file, same_file = _bb.make_file, _bb.same_file
from pgutil import PgServer, pg_config  # noqa: E402,F401
from s3util import S3rver, s3_config  # noqa: E402

_saved = sys.modules.get("conftest")
sys.modules["conftest"] = _bb  # test_events.py imports its helpers from "conftest"
try:
    SSE = _load("blackbox_events", "test_events.py").SSE
finally:
    if _saved is not None:
        sys.modules["conftest"] = _saved
    else:
        del sys.modules["conftest"]

NODES = ("node-a", "node-b", "node-c")
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

NGINX_CONF = """
worker_processes 1;
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    log_format up '$request_method $uri $status $upstream_addr';
    access_log {dir}/access.log up;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_buffering off;
    proxy_http_version 1.1;
    proxy_read_timeout 300s;
    proxy_send_timeout 300s;
    upstream dripd {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://dripd;
            proxy_set_header Host $http_host;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


class Balancer:
    """nginx as a plain round-robin reverse proxy in front of the nodes."""

    def __init__(self, tmp, upstreams):
        self.dir = os.path.join(tmp, "nginx")
        os.makedirs(self.dir, exist_ok=True)
        import socket
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        servers = "\n".join("        server %s max_fails=0;" % u for u in upstreams)
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(dir=self.dir, port=self.port, servers=servers))
        assert os.path.exists(NGINX), "nginx is not installed (make deps: nginx-light)"
        self.log = open(os.path.join(self.dir, "nginx.out"), "wb")
        self.proc = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.conf], stdout=self.log,
                                     stderr=self.log)

        def up():
            assert self.proc.poll() is None, open(os.path.join(self.dir, "error.log")).read()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(up, 20, "nginx listening")

    def url(self, path=""):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def upstreams(self):
        """[(method, uri, status, upstream addr)] of every request so far."""
        out = []
        path = os.path.join(self.dir, "access.log")
        if os.path.exists(path):
            for line in open(path):
                p = line.split()
                if len(p) >= 4:
                    out.append((p[0], p[1], p[2], p[3]))
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


class Cluster:
    def __init__(self, tmp, extra=None, nodes=len(NODES), pg_args="", node_extra=None, env=None,
                 pg=None, own_pg=True):
        self.tmp = tmp
        # pg: a started server to use instead of a new one; own_pg: stop() destroys it
        self.pg = pg or PgServer(pg_args=pg_args).start()
        self.own_pg = own_pg or pg is None
        self.dsn = self.pg.createdb()  # a database of its own
        self.s3 = S3rver(os.path.join(tmp, "s3")).start()
        key = os.path.join(tmp, "master.key")
        self.nodes = []
        for name in NODES[:nodes] if nodes <= len(NODES) else ["node-%d" % i for i in range(nodes)]:
            cfg = {"node": {"id": name}, "encryption": {"key_file": key},
                   "health": {"store_probe_interval": "500ms"}}
            cfg.update(pg_config(self.dsn))
            cfg.update(s3_config(self.s3.endpoint))
            if extra:
                cfg.update(extra)
            if node_extra and len(self.nodes) in node_extra:  # this node's own settings
                cfg.update(node_extra[len(self.nodes)])
            d = os.path.join(tmp, name)
            os.makedirs(d, exist_ok=True)
            self.nodes.append(Dripd(d, config=cfg, env=env))
        self.lb = Balancer(tmp, [n.addr for n in self.nodes])
        self.users = {u["name"]: u["token"] for u in USERS}
        self.dir = tmp

    # the balancer, as one dripd to a client
    def url(self, path=""):
        return self.lb.url(path)

    def curl(self, *args, user="alice", timeout=120):
        """Through the balancer: (status, headers, body) as Dripd.curl."""
        return self.nodes[0].curl(*args, user=user, timeout=timeout)

    def json(self, method, path, body=None, user="alice", expect=None):
        args = ["-X", method]
        if body is not None:
            args += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        st, h, b = self.curl(*args, self.url(path), user=user)
        doc = json.loads(b) if b.startswith(b"{") or b.startswith(b"[") else None
        if expect is not None:
            assert st == expect, "%s %s -> %s %r" % (method, path, st, b[:500])
        return st, doc, h

    def put_file(self, local, remote, user="alice"):
        st, h, b = self.curl("-T", local, self.url("/v1/files" + remote), user=user)
        return st, (json.loads(b) if b.startswith(b"{") else None)

    def wait_job(self, job_id, timeout=60.0):
        def poll():
            st, doc, _ = self.json("GET", "/v1/jobs/" + job_id)
            return doc if st == 200 and doc and doc.get("state") in ("done", "failed") else None
        return wait_until(poll, timeout, "job %s to finish" % job_id, interval=0.05)

    def upstreams(self):
        return self.lb.upstreams()

    # what SSE (tests/blackbox/test_events.py) needs of a server
    @property
    def host(self):
        return "127.0.0.1"

    @property
    def port(self):
        return self.lb.port

    def token(self, user="alice"):
        return self.users[user]

    def node_of(self, addr):
        for n in self.nodes:
            if n.addr == addr:
                return n
        return None

    def stop(self):
        self.lb.stop()
        for n in self.nodes:
            if n.proc is not None and n.proc.poll() is None:
                try:
                    n.stop(timeout=20)
                except AssertionError:
                    pass
        self.s3.stop()
        if self.own_pg:
            self.pg.destroy()


SANITIZER_REPORT = re.compile(r"WARNING: ThreadSanitizer|ERROR: (Address|Leak)Sanitizer|"
                              r"\bruntime error: ")


@pytest.fixture(scope="session")
def shared_pg():
    """One PostgreSQL server for the clusters of the whole run (initdb costs
    seconds), a database per cluster; a test that stops or breaks its server
    asks for its own (cluster_factory(own_pg=True), or pg=...)."""
    srv = PgServer().start()
    yield srv
    srv.destroy()


@pytest.fixture
def cluster_factory(shared_pg):
    made = []
    tmp = tempfile.mkdtemp(prefix="dripd-cluster-")

    def make(extra=None, node_extra=None, env=None, nodes=len(NODES), pg=None, own_pg=False):
        if pg is None and not own_pg:
            pg = shared_pg
        c = Cluster(os.path.join(tmp, "c%d" % len(made)), extra=extra, node_extra=node_extra,
                    env=env, nodes=nodes, pg=pg, own_pg=pg is not shared_pg)
        made.append(c)
        return c
    yield make
    for c in made:
        c.stop()
    for c in made:
        for n in c.nodes:
            if os.path.exists(n.log_path):
                text = n.log_text()
                m = SANITIZER_REPORT.search(text)
                if m:
                    pytest.fail("sanitizer report in %s:\n%s" % (n.log_path,
                                                                 text[m.start():m.start() + 4000]))
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def cluster(cluster_factory):
    return cluster_factory()

"""TLS without a proxy (issue 18, item 7): `tls: {cert, key}` serves HTTPS
on every listen address. A test CA and certificates are made at test time
with the openssl command; clients check the chain with curl --cacert,
Python's ssl module, tus-js-client (NODE_EXTRA_CA_CERTS) and dripctl
--cacert. Covers uploads (PUT, multipart, tus), downloads through the TLS
"pump" (a file response cannot go by sendfile) with a slow reader,
keep-alive, plain HTTP on the TLS port, config errors, the
max_connections refusal after a handshake, a unix socket, and a SIGHUP
that changes the certificate while a download is running."""
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import DRIPCTL, DRIPD, ROOT, make_file, sha256_of as sha, wait_until

NODE_DIR = os.path.join(ROOT, "tests", "node")


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return r


def make_ca(d, name):
    """A CA (name.ca.pem) and a server certificate for 127.0.0.1 and
    localhost signed by it (name.pem, name.key)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".ca.key", "-out", name + ".ca.pem", "-days", "2",
            "-subj", "/CN=dripd test CA " + name, cwd=d)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=localhost", cwd=d)
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", name + ".ca.pem", "-CAkey", name + ".ca.key",
            "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext", cwd=d)
    return {k: os.path.join(d, name + suffix) for k, suffix in
            (("ca", ".ca.pem"), ("cert", ".pem"), ("key", ".key"))}


@pytest.fixture
def pki(tmpdir_path):
    d = os.path.join(tmpdir_path, "pki")
    os.makedirs(d)
    return {"dir": d, "a": make_ca(d, "a"), "b": make_ca(d, "b")}


def tls_dripd(factory, pki, extra=None, live=None):
    """A daemon with tls; live: paths the config names (copied from pki['a'])."""
    cfg = {"tls": {"cert": pki["a"]["cert"], "key": pki["a"]["key"]}}
    if live:
        cfg["tls"] = live
    cfg.update(extra or {})
    return factory(config=cfg)


def https(d, path=""):
    return "https://%s%s" % (d.addr, path)


def curl_tls(d, ca, *args, user="alice"):
    return d.curl("--cacert", ca, *args, user=user)


def wait_job_tls(d, ca, job, timeout=120):
    def poll():
        st, _, b = curl_tls(d, ca, https(d, "/v1/jobs/" + job))
        doc = json.loads(b) if st == 200 else None
        return doc if doc and doc["state"] in ("done", "failed") else None
    return wait_until(poll, timeout, "job " + job, interval=0.05)


def handshakes(d, after=0):
    """Completed handshakes the debug log shows, by client port."""
    with open(d.log_path, "rb") as f:
        f.seek(after)
        text = f.read().decode(errors="replace")
    return re.findall(r"http: 127\.0\.0\.1:(\d+): TLSv1\.[23] ", text)


# ---- basics ----

def test_https_uploads_and_downloads(dripd_factory, pki):
    d = tls_dripd(dripd_factory, pki)
    ca = pki["a"]["ca"]
    st, h, body = curl_tls(d, ca, https(d, "/healthz"), user=None)
    assert st == 200 and json.loads(body)["status"] == "ok"
    # PUT, then the content back through the pump (several PUMP_CHUNKs)
    local = make_file(os.path.join(d.dir, "put.bin"), (5 << 20) + 777)
    st, h, body = curl_tls(d, ca, "-T", local, https(d, "/v1/files/tls/put.bin"))
    assert st == 202, body
    doc = json.loads(body)
    assert wait_job_tls(d, ca, doc["job"]["id"])["state"] == "done"
    mid = doc["media"]["id"]
    st, h, body = curl_tls(d, ca, https(d, "/v1/media/%s/content" % mid))
    assert st == 200 and sha(body) == sha(local)
    st, h, body = curl_tls(d, ca, "-r", "1000-1999", https(d, "/v1/media/%s/content" % mid))
    with open(local, "rb") as f:
        f.seek(1000)
        assert st == 206 and body == f.read(1000)
    st, h, body = curl_tls(d, ca, "-I", https(d, "/v1/media/%s/content" % mid))
    assert st == 200 and int(h["content-length"]) == (5 << 20) + 777
    # multipart
    st, h, body = curl_tls(d, ca, "-F", "file=@" + local, https(d, "/v1/files/tls/mp"))
    assert st == 202, body
    # absolute URLs say https
    st, h, body = curl_tls(d, ca, "-X", "POST", https(d, "/v1/media/%s/link" % mid))
    link = json.loads(body)
    assert link["url"] == https(d, link["path"]), link
    st, _, body = curl_tls(d, ca, link["url"], user=None)
    assert st == 200 and sha(body) == sha(local)
    # a client that does not trust the CA gets nowhere
    r = subprocess.run(["curl", "-sS", https(d, "/healthz")], capture_output=True, text=True)
    assert r.returncode == 60, (r.returncode, r.stderr)


def test_tus_js_client_over_https(dripd_factory, pki):
    d = tls_dripd(dripd_factory, pki)
    local = make_file(os.path.join(d.dir, "tus.bin"), 3 << 20)
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=pki["a"]["ca"])
    r = subprocess.run(["node", os.path.join(NODE_DIR, "tus_upload.mjs"), "--endpoint",
                        https(d, "/v1/uploads"), "--token", d.token(), "--file", local,
                        "--chunk-size", str(1 << 20), "--store", local + ".urls.json"],
                       capture_output=True, text=True, timeout=300, cwd=NODE_DIR, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["url"].startswith(https(d, "/v1/uploads/")), res
    assert 0 < res["interrupted_at"] < (3 << 20)  # a PATCH was cut mid-body and resumed
    ca = pki["a"]["ca"]
    assert wait_job_tls(d, ca, res["job"])["state"] == "done"
    st, _, body = curl_tls(d, ca, https(d, "/v1/media/%s/content" % res["media"]))
    assert st == 200 and sha(body) == sha(local)


def test_keep_alive_over_tls(dripd_factory, pki):
    """Many requests, bodies both ways, on one TLS connection (one handshake)."""
    d = tls_dripd(dripd_factory, pki)
    ctx = ssl.create_default_context(cafile=pki["a"]["ca"])
    before = d.log_size()
    c = http.client.HTTPSConnection(d.host, d.port, context=ctx, timeout=60)
    auth = {"Authorization": "Bearer " + d.token()}
    c.connect()
    port = c.sock.getsockname()[1]
    for i in range(20):
        c.request("PUT", "/v1/files/ka/f%d.txt" % i, body=b"x" * (i * 1000 + 1), headers=auth)
        r = c.getresponse()
        assert r.status == 202 and r.getheader("Connection") is None, r.status
        r.read()
        c.request("GET", "/v1/me", headers=auth)
        r = c.getresponse()
        assert r.status == 200 and json.loads(r.read())["user"] == "alice"
    assert c.sock.getsockname()[1] == port  # never reconnected
    c.close()
    wait_until(lambda: str(port) in handshakes(d, before), 10, "the handshake in the log")
    assert handshakes(d, before).count(str(port)) == 1
    # curl reuses one connection for several URLs too
    r = subprocess.run(["curl", "-sS", "--cacert", pki["a"]["ca"], "-o", "/dev/null", "-o",
                        "/dev/null", "-o", "/dev/null", "-w", "%{num_connects} ",
                        https(d, "/healthz"), https(d, "/healthz"), https(d, "/healthz")],
                       capture_output=True, text=True)
    assert r.stdout.split() == ["1", "0", "0"], r.stdout + r.stderr


def test_pipelined_requests_in_one_record(dripd_factory, pki):
    """Many requests in one TLS record: the connection reads 8 KiB of a head
    at a time, so most of the record's plaintext waits inside OpenSSL, where
    no socket event announces it; every request must still be answered."""
    d = tls_dripd(dripd_factory, pki)
    ctx = ssl.create_default_context(cafile=pki["a"]["ca"])
    raw = socket.create_connection((d.host, d.port), timeout=30)
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    one = ("GET /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
           "X-Pad: %s\r\n\r\n" % (d.token(), "p" * 40)).encode()
    n = 16000 // len(one)
    s.sendall(one * n)  # one write: one or two records
    buf = b""
    deadline = time.monotonic() + 30
    while buf.count(b"HTTP/1.1 200 OK") < n and time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    assert buf.count(b"HTTP/1.1 200 OK") == n, (n, buf.count(b"HTTP/1.1 200"), buf[-300:])


def test_plain_http_on_the_tls_port(dripd_factory, pki):
    d = tls_dripd(dripd_factory, pki)
    st, h, body = d.curl(d.url("/healthz"), user=None)
    assert st == 400 and h["content-type"] == "application/problem+json"
    assert "https://" in json.loads(body)["detail"]
    assert h["connection"] == "close"
    # garbage instead of a ClientHello: closed, and the daemon serves on
    s = socket.create_connection((d.host, d.port), timeout=10)
    s.sendall(b"\x16\x03\x01\x00\x05hello" + os.urandom(200))
    s.settimeout(10)
    try:
        while s.recv(4096):
            pass
    except ConnectionResetError:
        pass
    s.close()
    assert curl_tls(d, pki["a"]["ca"], https(d, "/healthz"), user=None)[0] == 200


def test_handshake_timeout_and_refusal(dripd_factory, pki):
    """A client that never sends a ClientHello is closed after
    limits.header_timeout; past limits.max_connections, the 503 comes after
    the handshake, in TLS."""
    d = tls_dripd(dripd_factory, pki, extra={"limits": {"header_timeout": "1s",
                                                         "max_connections": 1}})
    silent = socket.create_connection((d.host, d.port), timeout=10)
    t0 = time.monotonic()
    # the one allowed connection is the silent one: a second is refused
    st, h, body = curl_tls(d, pki["a"]["ca"], https(d, "/healthz"), user=None)
    assert st == 503 and "max_connections" in json.loads(body)["detail"]
    silent.settimeout(10)
    assert silent.recv(10) == b""  # closed by the server
    assert 0.5 < time.monotonic() - t0 < 8
    silent.close()
    wait_until(lambda: curl_tls(d, pki["a"]["ca"], https(d, "/healthz"), user=None)[0] == 200, 10,
               "the slot free again")


def test_unix_socket_with_tls(dripd_factory, pki, tmpdir_path):
    sock = os.path.join(tmpdir_path, "d.sock")
    d = tls_dripd(dripd_factory, pki, extra={"listen": ["127.0.0.1:0", "unix:" + sock]})
    st, h, body = d.curl("--unix-socket", sock, "--cacert", pki["a"]["ca"],
                         "https://localhost/v1/me")
    assert st == 200 and json.loads(body)["user"] == "alice"


def test_dripctl_over_https(dripd_factory, pki):
    d = tls_dripd(dripd_factory, pki)
    local = make_file(os.path.join(d.dir, "ctl.bin"), 100000)
    base = ["--url", https(d), "--token", d.token()]
    r = subprocess.run([DRIPCTL] + base + ["--cacert", pki["a"]["ca"], "upload", local, "--to", "/ctl",
                                           "--wait"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([DRIPCTL] + base + ["ls", "/ctl"], capture_output=True, text=True,
                       env=dict(os.environ, DRIPD_CACERT=pki["a"]["ca"]), timeout=60)
    assert r.returncode == 0 and "ctl.bin" in r.stdout, r.stderr
    r = subprocess.run([DRIPCTL] + base + ["ls", "/ctl"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "certificate" in r.stderr.lower(), (r.returncode, r.stderr)


# ---- config ----

def check(d):
    d.write_config()
    return subprocess.run([DRIPD, "-c", d.config_path, "--check"], capture_output=True, text=True)


def test_tls_config_errors(dripd_factory, pki):
    a, b = pki["a"], pki["b"]
    d = dripd_factory(start=False, config={"tls": {"cert": a["cert"]}})
    r = check(d)
    assert r.returncode == 1 and re.search(r"dripd\.yaml:\d+:\d+: tls\.key: required with tls\.cert",
                                           r.stderr), r.stderr
    d.config["tls"] = {"cert": a["cert"], "key": b["key"]}
    r = check(d)
    assert re.search(r"dripd\.yaml:\d+:\d+: tls\.key: \".*b\.key\" is not the private key of "
                     r"tls\.cert", r.stderr), r.stderr
    d.config["tls"] = {"cert": a["key"], "key": os.path.join(pki["dir"], "nope.key")}
    r = check(d)
    assert re.search(r"tls\.cert: \".*a\.key\" holds no PEM certificate", r.stderr), r.stderr
    assert re.search(r"tls\.key: cannot read \".*nope\.key\": No such file", r.stderr), r.stderr
    enc = os.path.join(pki["dir"], "enc.key")
    openssl("pkey", "-in", a["key"], "-aes256", "-passout", "pass:secret", "-out", enc, cwd=pki["dir"])
    d.config["tls"] = {"cert": a["cert"], "key": enc}
    r = check(d)
    assert re.search(r"tls\.key: .* holds no PEM private key \(an encrypted key is not supported\)",
                     r.stderr), r.stderr
    d.config["tls"] = {"cert": a["cert"], "key": a["key"]}
    r = check(d)
    assert r.returncode == 0, r.stderr


# ---- reload ----

def test_drain_answers_a_connection_that_has_not_asked_yet(dripd_factory, pki):
    """A connection whose handshake is done but whose first request is not
    in yet when the drain starts (a reload retires this generation) is not
    idle keep-alive: its request is answered, with Connection: close. It
    used to be closed unanswered, like a kept-alive connection."""
    d = tls_dripd(dripd_factory, pki)
    ctx = ssl.create_default_context(cafile=pki["a"]["ca"])
    before = d.log_size()
    s = ctx.wrap_socket(socket.create_connection((d.host, d.port), timeout=30),
                        server_hostname=d.host)
    port = s.getsockname()[1]
    wait_until(lambda: str(port) in handshakes(d, before), 10, "the handshake in the log")
    at = d.log_size()
    d.signal(signal.SIGTERM)
    d.wait_log(r"draining: no new connections", after=at)
    s.sendall(("GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n" % d.addr).encode())
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    head = got.split(b"\r\n\r\n", 1)[0].decode(errors="replace").lower()
    assert head.startswith("http/1.1 200"), got[:300]
    assert "connection: close" in head, head
    assert d.proc.wait(20) == 0


def test_sighup_swaps_the_certificate_without_dropping(dripd_factory, pki):
    """The files change and SIGHUP: new connections get the new certificate;
    a download running over the old one (paused by its reader, so the pump
    meets a full socket) finishes intact after the reload."""
    live = {"cert": os.path.join(pki["dir"], "live.pem"), "key": os.path.join(pki["dir"], "live.key")}
    for k in ("cert", "key"):
        with open(pki["a"][k], "rb") as src, open(live[k], "wb") as dst:
            dst.write(src.read())
    d = tls_dripd(dripd_factory, pki, live=live)
    ca_a, ca_b = pki["a"]["ca"], pki["b"]["ca"]
    size = 24 << 20
    local = make_file(os.path.join(d.dir, "big.bin"), size)
    st, _, body = curl_tls(d, ca_a, "-T", local, https(d, "/v1/files/r/big.bin"))
    assert st == 202
    doc = json.loads(body)
    assert wait_job_tls(d, ca_a, doc["job"]["id"])["state"] == "done"
    # a download paused half-way (the socket fills up: the pump waits on it)
    ctx = ssl.create_default_context(cafile=ca_a)
    c = http.client.HTTPSConnection(d.host, d.port, context=ctx, timeout=60)
    c.request("GET", "/v1/media/%s/content" % doc["media"]["id"],
              headers={"Authorization": "Bearer " + d.token()})
    r = c.getresponse()
    assert r.status == 200
    got = hashlib.sha256()
    head = r.read(3 << 20)
    got.update(head)
    for k in ("cert", "key"):  # a new certificate, written in place
        with open(pki["b"][k], "rb") as src, open(live[k] + ".new", "wb") as dst:
            dst.write(src.read())
        os.rename(live[k] + ".new", live[k])
    at = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload ok: generation 2 serving, generation 1 draining", after=at, timeout=60)
    # "reload ok" is logged when the old generation is sent SIGTERM: until
    # it has disabled its copy of the shared listener it may still accept a
    # connection and serve it on the old certificate. Such a connection is
    # answered (curl exit 60 with the new CA, 0 with the old one); any other
    # outcome (no answer, a reset) is a dropped connection and fails.
    def hello(ca):
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                            "30", "--cacert", ca, https(d, "/healthz")], capture_output=True,
                           text=True)
        assert (r.returncode, r.stdout) in ((0, "200"), (60, "000")), (r.returncode, r.stdout,
                                                                       r.stderr)
        return r.returncode
    wait_until(lambda: hello(ca_b) == 0, 30, "the new certificate served")
    # the old CA no longer vouches for the server
    wait_until(lambda: hello(ca_a) == 60, 30, "the old certificate retired")
    # the old connection, on the old certificate, is still there and finishes
    n = len(head)
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        got.update(b)
        n += len(b)
    c.close()
    assert n == size and got.hexdigest() == sha(local)
    # a certificate that stops matching its key is refused by the reload: old one stays
    with open(live["key"], "wb") as dst, open(pki["a"]["key"], "rb") as src:
        dst.write(src.read())
    at = d.log_size()
    d.signal(signal.SIGHUP)
    d.wait_log(r"reload failed", after=at, timeout=30)
    assert re.search(r"tls\.key: .* is not the private key of tls\.cert", d.log_text()[at:])
    assert curl_tls(d, ca_b, https(d, "/healthz"), user=None)[0] == 200

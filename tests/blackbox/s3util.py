"""A real S3 server for black-box tests: the pinned s3rver (tests/node,
installed by `sh scripts/node-deps.sh`; this module installs nothing).

    srv = S3rver(tmpdir, bucket="media").start()   # 127.0.0.1:<free port>
    srv.endpoint                                     # "http://127.0.0.1:PORT"
    srv.kill(); srv.restart()                        # same port, same directory
    srv.stop()

Every wait is on a condition (the "listening" line, an HTTP answer), never
a fixed sleep. s3rver logs one line per request to its stdout, which goes to
<dir>/s3rver.log (srv.log_text(), srv.count(regex)).

s3rver 3.7.1 does not check Signature V4 signatures (it only knows the
access key id S3RVER), so SigV4Proxy puts a checking proxy in front of it:
it recomputes every request's signature independently of libcurl (AWS's
canonical request rules: encoded path, sorted query, signed headers,
x-amz-content-sha256) and records any mismatch; it can also answer the next
N requests itself with an S3 error (SlowDown, 503...) to test retries.

Fixtures: `s3rver` (started, bucket "media"), `s3_config(srv, **over)` builds
the dripd config dict for storage.backend s3.
"""
import hashlib
import hmac
import http.client
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
S3RVER_JS = os.path.join(ROOT, "tests", "node", "node_modules", "s3rver", "bin", "s3rver.js")
ACCESS_KEY = "S3RVER"  # the only key id s3rver knows
SECRET_KEY = "S3RVER"
REGION = "us-east-1"


def have_s3rver():
    return os.path.exists(S3RVER_JS) and shutil.which("node") is not None


def _wait(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(0.02)


class S3rver:
    def __init__(self, tmp, bucket="media", port=0, tls=False):
        self.dir = tmp
        self.tls = tls
        self.data = os.path.join(tmp, "s3rver-data")
        self.log_path = os.path.join(tmp, "s3rver.log")
        self.bucket = bucket
        self.port = port
        self.proc = None
        self.logf = None
        os.makedirs(self.data, exist_ok=True)

    @property
    def endpoint(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

    def _make_cert(self):
        """A self-signed certificate for 127.0.0.1 (openssl CLI)."""
        key = os.path.join(self.dir, "tls.key")
        cert = os.path.join(self.dir, "tls.crt")
        if not os.path.exists(cert):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                            key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)
        return key, cert

    def start(self, timeout=30.0):
        if not have_s3rver():  # a missing server is a failure, never a skip
            pytest.fail("s3rver is not installed: run make deps (sh scripts/node-deps.sh)")
        start_at = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self.logf = open(self.log_path, "ab")
        cmd = ["node", S3RVER_JS, "-d", self.data, "-a", "127.0.0.1", "-p", str(self.port),
               "--no-vhost-buckets", "--configure-bucket", self.bucket]
        if self.tls:
            key, cert = self._make_cert()
            cmd += ["--key", key, "--cert", cert]
        # s3rver encrypts ListObjectsV2 continuation tokens with DES, which
        # OpenSSL 3 (Node >= 17) only offers through its legacy provider.
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)

        def listening():
            if self.proc.poll() is not None:
                raise AssertionError("s3rver exited with %s:\n%s"
                                     % (self.proc.returncode, self.log_text()[-2000:]))
            with open(self.log_path, "rb") as f:
                f.seek(start_at)
                m = re.search(rb"S3rver listening on [\d.]+:(\d+)", f.read())
            return int(m.group(1)) if m else None
        self.port = _wait(listening, timeout, "s3rver to listen")
        _wait(self._answers, timeout, "s3rver to answer on %s" % self.endpoint)
        return self

    def _answers(self):
        try:
            if self.tls:
                c = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=2,
                                                context=ssl._create_unverified_context())
            else:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/%s?list-type=2&max-keys=1" % self.bucket)
            st = c.getresponse().status
            c.close()
            return st == 200
        except OSError:
            return False

    def kill(self):
        """SIGKILL (a crash: connections reset, nothing flushed)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._close_log()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close_log()

    def restart(self, timeout=30.0):
        """Start again on the same port and data directory (after kill/stop)."""
        assert self.port, "restart needs a port: start first"
        return self.start(timeout)

    def _close_log(self):
        if self.logf:
            self.logf.close()
            self.logf = None

    # ---- what it saw ----
    def log_text(self):
        if not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def count(self, pattern):
        return len(re.findall(pattern, self.log_text()))

    def objects(self):
        """Keys stored in the bucket, from s3rver's directory (no client involved)."""
        d = os.path.join(self.data, self.bucket)
        out = []
        for root, _dirs, files in os.walk(d):
            for f in files:
                if f.endswith("._S3rver_object"):
                    rel = os.path.relpath(os.path.join(root, f), d)
                    out.append(rel[: -len("._S3rver_object")])
        return sorted(out)

    def object_path(self, key):
        return os.path.join(self.data, self.bucket, key + "._S3rver_object")


def aws(srv_or_endpoint, *args, check=True, timeout=300):
    """Run awscli against the endpoint with s3rver's credentials."""
    endpoint = getattr(srv_or_endpoint, "endpoint", srv_or_endpoint)
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_DEFAULT_REGION=REGION, AWS_EC2_METADATA_DISABLED="true")
    env.pop("AWS_PROFILE", None)
    r = subprocess.run(["aws", "--endpoint-url", endpoint] + list(args), capture_output=True,
                       env=env, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError("aws %s failed (%d): %s" % (" ".join(args), r.returncode,
                                                          r.stderr.decode(errors="replace")))
    return r


def s3_config(endpoint, bucket="media", **s3_over):
    s3 = {"endpoint": endpoint, "bucket": bucket, "region": REGION,
          "access_key_id": ACCESS_KEY, "secret_access_key": SECRET_KEY, "path_style": True,
          "connect_timeout": "2s", "idle_timeout": "5s", "timeout": "60s"}
    s3.update(s3_over)
    return {"storage": {"backend": "s3", "s3": s3}}


# ---- Signature V4 checking proxy ----

def _aws_quote(s, safe=""):
    return urllib.parse.quote(s, safe="-_.~" + safe)


def canonical_query(raw):
    if not raw:
        return ""
    pairs = []
    for part in raw.split("&"):
        k, _, v = part.partition("=")
        pairs.append((_aws_quote(urllib.parse.unquote(k)), _aws_quote(urllib.parse.unquote(v))))
    pairs.sort()
    return "&".join("%s=%s" % kv for kv in pairs)


def _hmac(key, msg):
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def sigv4_check(method, raw_path, headers, body_sha256, secret=SECRET_KEY):
    """None if the request's Signature V4 is right, else why not.
    headers: dict of lower-case name -> value as received."""
    auth = headers.get("authorization", "")
    m = re.match(r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,"
                 r"\s*SignedHeaders=([^,]+),\s*Signature=([0-9a-f]{64})$", auth)
    if not m:
        return "malformed Authorization: %r" % auth
    _ak, date, region, service, signed, sig = m.groups()
    signed_list = signed.split(";")
    if signed_list != sorted(signed_list):
        return "SignedHeaders not sorted: %s" % signed
    for need in ("host", "x-amz-date", "x-amz-content-sha256"):
        if need not in signed_list:
            return "%s not signed" % need
    for h in headers:
        if h.startswith("x-amz-") and h not in signed_list:
            return "%s sent but not signed" % h
    payload = headers.get("x-amz-content-sha256", "")
    if payload != "UNSIGNED-PAYLOAD":
        if payload != body_sha256:
            return "x-amz-content-sha256 %s but the body hashes to %s" % (payload, body_sha256)
    path, _, query = raw_path.partition("?")
    canon_uri = _aws_quote(urllib.parse.unquote(path), safe="/")
    canon_headers = ""
    for h in signed_list:
        if h not in headers:
            return "signed header %s not sent" % h
        canon_headers += "%s:%s\n" % (h, re.sub(r"\s+", " ", headers[h].strip()))
    creq = "\n".join([method, canon_uri, canonical_query(query), canon_headers, signed, payload])
    amzdate = headers["x-amz-date"]
    scope = "%s/%s/%s/aws4_request" % (date, region, service)
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = _hmac(("AWS4" + secret).encode(), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    k = _hmac(k, "aws4_request")
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if want != sig:
        return "signature mismatch; canonical request was:\n" + creq
    return None


class SigV4Proxy:
    """HTTP proxy on 127.0.0.1:<free port> in front of an S3 endpoint that
    checks each request's signature (see sigv4_check) and forwards it."""

    def __init__(self, upstream_port, secret=SECRET_KEY):
        self.upstream_port = upstream_port
        self.secret = secret
        self.checked = 0
        self.failures = []
        self.requests = []  # (method, path) in arrival order
        self.gets = []      # (path, Range header or None, status) of each GET answered
        self.inject = []    # [regex, status, code] answered instead of forwarding
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                why = sigv4_check(self.command, self.path, hdrs,
                                  hashlib.sha256(body).hexdigest(), proxy.secret)
                with proxy.lock:
                    proxy.checked += 1
                    proxy.requests.append((self.command, self.path))
                    if why:
                        proxy.failures.append("%s %s: %s" % (self.command, self.path, why))
                    fake = None
                    # matched against "METHOD /path?query [Range: bytes=a-b]"
                    line = "%s %s" % (self.command, self.path)
                    if self.headers.get("Range"):
                        line += " Range: " + self.headers["Range"]
                    for i, (rx, st, code) in enumerate(proxy.inject):
                        if re.search(rx, line):
                            fake = proxy.inject.pop(i)
                            break
                if fake:
                    _rx, st, code = fake
                    if self.command == "GET":
                        with proxy.lock:
                            proxy.gets.append((self.path, self.headers.get("Range"), st))
                    xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
                           "<Message>injected by the test proxy</Message></Error>" % code).encode()
                    self.send_response(st)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(xml)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(xml)
                    return
                c = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                fwd = {k: v for k, v in self.headers.items() if k.lower() not in ("expect",)}
                try:
                    c.request(self.command, self.path, body=body, headers=fwd)
                    r = c.getresponse()
                    data = r.read()
                except OSError:
                    self.close_connection = True
                    return
                finally:
                    c.close()
                if self.command == "GET":
                    with proxy.lock:
                        proxy.gets.append((self.path, self.headers.get("Range"), r.status))
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length",
                                         "keep-alive"):
                        self.send_header(k, v)
                if self.command == "HEAD":
                    self.send_header("Content-Length", r.getheader("Content-Length") or "0")
                else:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def fail_next(self, n, status=503, code="SlowDown", match=""):
        """Answer the next n requests whose "METHOD /path?query" (plus
        " Range: bytes=a-b" when the request has one) matches the regex
        `match` with this S3 error instead of forwarding them."""
        with self.lock:
            self.inject.extend([(match, status, code)] * n)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def s3rver():
    d = tempfile.mkdtemp(prefix="dripd-s3rver-")
    srv = S3rver(d).start()
    yield srv
    srv.stop()
    shutil.rmtree(d, ignore_errors=True)


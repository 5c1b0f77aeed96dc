"""Behind a reverse proxy, and in a browser from another origin (issue 18,
item 6): trusted_proxies decides whose X-Forwarded-For/-Proto/-Host and
Forwarded headers are believed (logs, the tus Location, signed links);
cors.origins opens every route to the listed browser origins, preflight
included. Real clients: nginx as the proxy with tus-js-client through it,
curl, and Chromium (playwright-core) on a page served from another port."""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import ROOT, make_file, same_file, wait_until

NODE_DIR = os.path.join(ROOT, "tests", "node")


def req(d, method, path, headers=None, body=None, user="alice"):
    h = {}
    if user:
        h["Authorization"] = "Bearer " + d.token(user)
    h.update(headers or {})
    c = http.client.HTTPConnection(d.host, d.port, timeout=60)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def tus_create(d, headers=None, name="f.bin", length=5):
    import base64
    h = {"Tus-Resumable": "1.0.0", "Upload-Length": str(length),
         "Upload-Metadata": "filename " + base64.b64encode(name.encode()).decode()}
    h.update(headers or {})
    st, hd, b = req(d, "POST", "/v1/uploads", h)
    assert st == 201, (st, b)
    return hd["location"]


# ---- trusted_proxies: what is believed, from whom ----

def test_forwarded_headers_ignored_without_trust(dripd):
    """No trusted_proxies (the default): X-Forwarded-* and Forwarded change
    nothing; the tus Location names the Host the client used."""
    d = dripd
    spoof = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "evil.example", "Forwarded": "for=198.51.100.1;host=evil.example"}
    loc = tus_create(d, spoof)
    assert re.fullmatch(r"http://%s/v1/uploads/[0-9A-Z]{26}" % re.escape(d.addr), loc), loc
    assert "203.0.113.7" not in d.log_text()
    assert "198.51.100.1" not in d.log_text()


def test_trusted_peer_x_forwarded(dripd_factory):
    d = dripd_factory(config={"trusted_proxies": ["127.0.0.1/32"]})
    before = d.log_size()
    loc = tus_create(d, {"X-Forwarded-For": "198.51.100.9, 203.0.113.7",
                         "X-Forwarded-Proto": "https", "X-Forwarded-Host": "files.example:8443"})
    assert re.fullmatch(r"https://files\.example:8443/v1/uploads/[0-9A-Z]{26}", loc), loc
    # the access log names the client (the rightmost untrusted hop) and the proxy
    d.wait_log(r"http: 203\.0\.113\.7 via 127\.0\.0\.1:\d+ \"POST /v1/uploads\" 201", after=before)
    # the signed link is absolute, as the client sees the server
    local = make_file(os.path.join(d.dir, "l.bin"), 1000)
    st, doc = d.put_file(local, "/p/l.bin")
    assert st == 202
    st, h, b = req(d, "POST", "/v1/media/%s/link" % doc["media"]["id"],
                   {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "files.example"})
    link = json.loads(b)
    assert st == 200 and link["url"] == "https://files.example" + link["path"], link
    assert link["path"].startswith("/v1/media/%s/content?" % doc["media"]["id"])
    # without the headers: the connection's own view
    st, h, b = req(d, "POST", "/v1/media/%s/link" % doc["media"]["id"])
    link = json.loads(b)
    assert link["url"] == "http://%s%s" % (d.addr, link["path"])


def test_trusted_peer_rfc7239_forwarded(dripd_factory):
    d = dripd_factory(config={"trusted_proxies": ["127.0.0.0/8", "::1"]})
    before = d.log_size()
    loc = tus_create(d, {"Forwarded": 'for="[2001:db8::7]:4711";proto=https;host="app.example", '
                                      'for=127.0.0.2;proto=http;host=inner.local',
                         # Forwarded wins over the X- trio
                         "X-Forwarded-Host": "other.example", "X-Forwarded-For": "192.0.2.99"})
    assert re.fullmatch(r"https://app\.example/v1/uploads/[0-9A-Z]{26}", loc), loc
    d.wait_log(r"http: 2001:db8::7 via 127\.0\.0\.1:\d+ \"POST /v1/uploads\"", after=before)
    # malformed Forwarded: not believed at all; the X-Forwarded-* headers are
    loc = tus_create(d, {"Forwarded": 'for="unterminated;host=evil.example',
                         "X-Forwarded-Proto": "https", "X-Forwarded-Host": "ok.example"})
    assert loc.startswith("https://ok.example/v1/uploads/"), loc
    # a bad host value is ignored (no header injection into Location)
    loc = tus_create(d, {"X-Forwarded-Host": "evil.example/path?x", "X-Forwarded-Proto": "ftp"})
    assert loc.startswith("http://%s/v1/uploads/" % d.addr), loc


def test_untrusted_peer_outside_the_list(dripd_factory):
    d = dripd_factory(config={"trusted_proxies": ["10.0.0.0/8", "unix:"]})
    loc = tus_create(d, {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"})
    assert loc.startswith("http://%s/" % d.addr), loc


def test_bad_trusted_proxies_config(dripd_factory):
    d = dripd_factory(config={"trusted_proxies": ["127.0.0.1/33", "10.1.0.0/8"]}, start=False)
    d.write_config()
    r = subprocess.run([os.environ.get("DRIPD_BIN", os.path.join(ROOT, "bin", "dripd")),
                        "-c", d.config_path, "--check"], capture_output=True, text=True)
    assert r.returncode == 1
    assert re.search(r"dripd\.yaml:\d+:\d+: trusted_proxies\[0\]: expected a prefix length of "
                     r"0-32 for IPv4", r.stderr), r.stderr
    assert re.search(r"dripd\.yaml:\d+:\d+: trusted_proxies\[1\]: expected a block whose address "
                     r"has no bits set past the prefix", r.stderr), r.stderr


# ---- a real proxy: nginx in front, tus-js-client through it ----

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Nginx:
    """nginx as a reverse proxy on an ephemeral port, setting the usual
    X-Forwarded-* headers, Host left at nginx's default (the upstream's
    address), and proxy_redirect off: like HAProxy or a cloud load
    balancer, it does not rewrite the Location headers of answers."""

    def __init__(self, tmp, upstream):
        self.dir = os.path.join(tmp, "nginx")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.access = os.path.join(self.dir, "logs", "access.log")
        for attempt in range(5):
            self.port = free_port()
            conf = os.path.join(self.dir, "nginx.conf")
            with open(conf, "w") as f:
                f.write("""daemon off;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/logs/error.log warn;
events { worker_connections 256; }
http {
    log_format tus '$request_method $uri $status';
    access_log %(access)s tus;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
        client_max_body_size 0;
        proxy_request_buffering off;
        proxy_buffering off;
        location / {
            proxy_pass http://%(up)s;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_redirect off;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }
    }
}
""" % {"d": self.dir, "access": self.access, "port": self.port, "up": upstream})
            self.proc = subprocess.Popen(["nginx", "-p", self.dir + "/", "-c", conf,
                                          "-e", os.path.join(self.dir, "logs", "error.log")],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_until(lambda: self._up() or self.proc.poll() is not None, 15, "nginx to listen")
            except AssertionError:
                self.stop()
                raise
            if self.proc.poll() is None:
                return
            err = self.proc.stderr.read().decode()
            if "Address already in use" not in err:
                raise AssertionError("nginx failed: " + err)
        raise AssertionError("nginx found no free port")

    def _up(self):
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def url(self, path=""):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def requests(self):
        with open(self.access) as f:
            return [l.split() for l in f if l.strip()]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def nginx_factory(tmpdir_path):
    made = []

    def make(upstream):
        n = Nginx(os.path.join(tmpdir_path, "ng%d" % len(made)), upstream)
        made.append(n)
        return n
    yield make
    for n in made:
        n.stop()


def tus_node(endpoint, token, path, name):
    r = subprocess.run(["node", os.path.join(NODE_DIR, "tus_upload.mjs"), "--endpoint", endpoint,
                        "--token", token, "--file", path, "--name", name,
                        "--chunk-size", str(1 << 20), "--interrupt", "chunk",
                        "--store", path + ".urls.json"],
                       capture_output=True, text=True, timeout=300, cwd=NODE_DIR)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("trusted", [True, False])
def test_tus_js_client_through_nginx(dripd_factory, nginx_factory, trusted):
    """Trusted, the Location points back at the proxy, so every PATCH goes
    through it; untrusted, it names the upstream nginx called (nginx's
    default Host), and the client bypasses the proxy: what trusted_proxies
    is for."""
    d = dripd_factory(config={"trusted_proxies": ["127.0.0.1"] if trusted else []})
    ng = nginx_factory(d.addr)
    assert d.curl(ng.url("/healthz"), user=None)[0] == 200
    local = make_file(os.path.join(d.dir, "via.bin"), 3 << 20)
    res = tus_node(ng.url("/v1/uploads"), d.token(), local, "via-nginx.bin")
    patches = [r for r in ng.requests() if r[0] == "PATCH"]
    if trusted:
        assert res["url"].startswith(ng.url("/v1/uploads/")), res
        assert len(patches) >= 3, ng.requests()
        assert all(r[2] == "204" for r in patches[-2:]), patches
    else:
        assert res["url"].startswith("http://%s/v1/uploads/" % d.addr), res
        assert patches == [], ng.requests()
    job = d.wait_job(res["job"])
    assert job["state"] == "done", job
    out = os.path.join(d.dir, "back.bin")
    st, _, body = d.curl(d.url("/v1/media/%s/content" % res["media"]))
    with open(out, "wb") as f:
        f.write(body)
    assert st == 200 and same_file(local, out)
    # nginx never rewrites JSON: a signed link names the proxy only when trusted
    st, _, b = d.curl("-X", "POST", ng.url("/v1/media/%s/link" % res["media"]))
    link = json.loads(b)
    assert link["url"] == (ng.url() if trusted else d.url()) + link["path"], link
    st, _, body = d.curl(link["url"], user=None)
    assert st == 200 and len(body) == 3 << 20
    # the client address behind the proxy reaches the log (XFF appended by nginx)
    before = d.log_size()
    st, _, _ = d.curl("-H", "X-Forwarded-For: 203.0.113.50", ng.url("/v1/me"))
    assert st == 200
    if trusted:
        d.wait_log(r"http: 203\.0\.113\.50 via 127\.0\.0\.1:\d+ \"GET /v1/me\" 200", after=before)
    else:
        d.wait_log(r"http: 127\.0\.0\.1:\d+ \"GET /v1/me\" 200", after=before)
        assert "203.0.113.50" not in d.log_text()[before:]


# ---- CORS ----

ORIGIN = "https://app.example"


def test_cors_every_route(dripd_factory):
    d = dripd_factory(config={"cors": {"origins": [ORIGIN, "http://127.0.0.1:1"]}})
    o = {"Origin": ORIGIN}
    for method, path, user, status in [("GET", "/v1/me", "alice", 200),
                                       ("GET", "/v1/me", None, 401),
                                       ("GET", "/v1/nothing-here", "alice", 404),
                                       ("DELETE", "/v1/me", "alice", 405),
                                       ("GET", "/healthz", None, 200),
                                       ("PUT", "/v1/files/c/a.txt", "alice", 202)]:
        st, h, _ = req(d, method, path, o, body=b"x" if method == "PUT" else None, user=user)
        assert st == status, (method, path, st)
        assert h.get("access-control-allow-origin") == ORIGIN, (method, path, h)
        assert "Origin" in h.get("vary", ""), h
        exposed = [x.strip().lower() for x in h["access-control-expose-headers"].split(",")]
        for name in ("location", "upload-offset", "upload-length", "upload-concat", "upload-job",
                     "tus-resumable", "tus-version", "tus-extension", "etag", "content-disposition"):
            assert name in exposed, name
        assert "access-control-allow-credentials" not in h
    # origins compare without regard to case; a listed origin's other port is another origin
    st, h, _ = req(d, "GET", "/v1/me", {"Origin": "HTTPS://APP.EXAMPLE"})
    assert h.get("access-control-allow-origin") == "HTTPS://APP.EXAMPLE"
    for other in ("https://app.example:8443", "http://app.example", "https://evil.example", "null"):
        st, h, _ = req(d, "GET", "/v1/me", {"Origin": other})
        assert st == 200 and "access-control-allow-origin" not in h, (other, h)
        assert "Origin" in h.get("vary", "")


def test_cors_preflight(dripd_factory):
    d = dripd_factory(config={"cors": {"origins": [ORIGIN]}})
    pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "PATCH",
           "Access-Control-Request-Headers": "authorization,tus-resumable,upload-offset,content-type"}
    # no token needed; tus discovery still answers on its own path
    st, h, _ = req(d, "OPTIONS", "/v1/uploads/01JD2Z8Q7W5N3K4M6P8R0T2V4X", pre, user=None)
    assert st == 204, st
    assert h["access-control-allow-origin"] == ORIGIN
    methods = [m.strip() for m in h["access-control-allow-methods"].split(",")]
    assert {"PATCH", "HEAD", "DELETE", "OPTIONS"} <= set(methods) and len(methods) == len(set(methods))
    allowed = h["access-control-allow-headers"].lower()
    for name in ("authorization", "tus-resumable", "upload-offset", "upload-length",
                 "upload-metadata", "upload-concat", "upload-checksum", "content-type", "if-match"):
        assert name in allowed, name
    assert int(h["access-control-max-age"]) > 0
    assert h["tus-resumable"] == "1.0.0"
    # any route: the methods registered on the path
    st, h, _ = req(d, "OPTIONS", "/v1/files/a/b.txt", dict(pre, **{"Access-Control-Request-Method": "PUT"}),
                   user=None)
    assert st == 204 and "PUT" in h["access-control-allow-methods"], (st, h)
    st, h, _ = req(d, "OPTIONS", "/v1/media/01JD2Z8Q7W5N3K4M6P8R0T2V4X", pre, user=None)
    assert st == 204 and "DELETE" in h["access-control-allow-methods"], (st, h)
    # a path only the web UI serves: its methods; another origin: 403 problem+json
    st, h, _ = req(d, "OPTIONS", "/nowhere", pre, user=None)
    assert st == 204 and h["access-control-allow-methods"] == "GET, HEAD, OPTIONS", h
    st, h, b = req(d, "OPTIONS", "/v1/uploads", dict(pre, Origin="https://evil.example"), user=None)
    assert st == 403 and h["content-type"] == "application/problem+json"
    assert "cors.origins" in json.loads(b)["detail"]
    assert "access-control-allow-origin" not in h


def test_cors_star_and_same_origin(dripd_factory):
    d = dripd_factory(config={"cors": {"origins": ["*"]}})
    st, h, _ = req(d, "GET", "/v1/me", {"Origin": "https://anything.example"})
    assert h["access-control-allow-origin"] == "https://anything.example"
    d2 = dripd_factory()  # no cors.origins: only the page's own origin
    st, h, _ = req(d2, "GET", "/v1/me", {"Origin": "http://" + d2.addr})
    assert h["access-control-allow-origin"] == "http://" + d2.addr
    st, h, _ = req(d2, "GET", "/v1/me", {"Origin": "https://anything.example"})
    assert "access-control-allow-origin" not in h


def test_browser_cross_origin_upload(dripd_factory):
    """Chromium on a page from another port: tus-js-client and fetch() upload
    cross-origin (preflights, exposed headers); the same page from an origin
    not listed is refused by the browser."""
    assert os.path.exists("/usr/bin/chromium"), "Debian chromium is missing: make deps"
    assert os.path.isdir(os.path.join(NODE_DIR, "node_modules", "playwright-core")), \
        "playwright-core is missing: sh scripts/node-deps.sh"
    # the page's port is only known once the script serves it: allow every
    # 127.0.0.1 port the script may get by listing the origin the script reports
    d = dripd_factory(start=False)
    # pick the page port first so the daemon can list its origin
    port = free_port()
    d.config["cors"] = {"origins": ["http://127.0.0.1:%d" % port]}
    d.start()
    size = (3 << 20) + 12345
    env = dict(os.environ, CORS_PAGE_PORT=str(port))
    r = subprocess.run(["node", os.path.join(NODE_DIR, "cors_upload.mjs"), d.url(), d.token(), str(size)],
                       capture_output=True, text=True, timeout=300, cwd=NODE_DIR, env=env)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "browser test failed: %s\n%s\n%s" % (
        res.get("error"), r.stderr[-3000:], d.log_tail())
    a = res["allowed"]
    assert a["origin"] == "http://127.0.0.1:%d" % port
    assert a["tus"]["url"].startswith(d.url("/v1/uploads/")), a["tus"]
    assert a["tus"]["chunks"] == 4 and int(a["tus"]["offset"]) == size
    assert a["put"]["status"] == 202 and a["put"]["location"].startswith("/v1/jobs/")
    assert a["conflict"]["status"] == 409 and a["conflict"]["type"] == "application/problem+json"
    assert a["unauth"] == {"status": 401, "www": 'Bearer realm="dripd"'}
    job = d.wait_job(a["tus"]["job"])
    assert job["state"] == "done", job
    st, _, body = d.curl(d.url("/v1/media/%s/content" % a["tus"]["media"]))
    import hashlib
    assert st == 200 and hashlib.sha256(body).hexdigest() == a["sha256"]
    assert a["list"] == {"status": 200, "names": ["browser.bin", "put.txt"]}
    ref = res["refused"]
    assert ref["origin"] == "http://localhost:%d" % port
    assert "error" in ref and "Failed to fetch" in ref["error"], ref
    assert "simple_error" in ref, ref  # a simple GET reached the server; its answer was withheld

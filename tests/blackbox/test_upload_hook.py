"""The blocking pre-upload hook (issue 18, item 5): hooks.pre_upload.url is
asked before an upload's body is read (PUT, multipart, tus creation) and
allows or refuses it; the client sees the hook's reason. A hook that is
down or too slow: hooks.pre_upload.on_error decides (deny: 503, allow).
The hook is a real HTTP server in the test (http.server); clients are
curl and tus-js-client."""
import base64
import http.server
import json
import os
import re
import subprocess
import threading
import time

import pytest

from conftest import DRIPD, ROOT, make_file, wait_until

NODE_DIR = os.path.join(ROOT, "tests", "node")


class Hook:
    """A pre-upload hook: refuses paths containing "secret", records every
    request; `stall` makes it wait (until released) before answering;
    `answer` overrides the answer (status, body bytes)."""

    def __init__(self):
        self.calls = []
        self.stall = threading.Event()  # set: hold answers
        self.release = threading.Event()
        self.answer = None
        hook = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                doc = json.loads(self.rfile.read(n))
                doc["_content_type"] = self.headers.get("Content-Type")
                hook.calls.append(doc)
                if hook.stall.is_set():
                    hook.release.wait(30)
                if hook.answer is not None:
                    status, body = hook.answer
                elif "secret" in (doc["path"] or "") or doc["size"] == 666:
                    status, body = 200, json.dumps({"allow": False,
                                                    "reason": "no secrets here, " + doc["user"]})
                else:
                    status, body = 200, json.dumps({"allow": True})
                body = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.url = "http://127.0.0.1:%d/check" % self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


def hooked(factory, url, **kw):
    return factory(config={"hooks": {"pre_upload": dict({"url": url}, **kw)}})


def problem(body):
    return json.loads(body)["detail"]


def tus_post(d, name, length, folder=None, ctype=None):
    meta = "filename " + base64.b64encode(name.encode()).decode()
    if folder:
        meta += ",folder " + base64.b64encode(folder.encode()).decode()
    if ctype:
        meta += ",filetype " + base64.b64encode(ctype.encode()).decode()
    return d.curl("-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Length: %d" % length,
                  "-H", "Upload-Metadata: " + meta, d.url("/v1/uploads"))


def test_hook_allows_and_refuses_each_protocol(dripd_factory, hook):
    d = hooked(dripd_factory, hook.url)
    small = make_file(os.path.join(d.dir, "small.bin"), 1234)
    # PUT allowed: the hook saw who, where, how big, what type
    st, h, body = d.curl("-T", small, "-H", "Content-Type: image/jpeg",
                         d.url("/v1/files/pics/cat.jpg"))
    assert st == 202, body
    assert hook.calls[-1] == {"user": "alice", "path": "/pics/cat.jpg", "size": 1234,
                              "content_type": "image/jpeg", "protocol": "put",
                              "client": "127.0.0.1", "_content_type": "application/json"}
    assert d.wait_job(json.loads(body)["job"]["id"])["state"] == "done"
    # PUT refused, before the body: 403 with the hook's reason, nothing stored
    big = make_file(os.path.join(d.dir, "big.bin"), 64 << 20)
    st, h, body = d.curl("-T", big, d.url("/v1/files/pics/secret.bin"), user="bob")
    assert st == 403 and h["content-type"] == "application/problem+json", body
    assert problem(body) == "refused by the pre-upload hook: no secrets here, bob"
    assert hook.calls[-1]["user"] == "bob" and hook.calls[-1]["size"] == 64 << 20
    st, _, listing = d.curl(d.url("/v1/media?folder=/pics"), user="bob")
    assert st == 200 and b"secret" not in listing, listing
    # chunked PUT: size unknown
    st, h, body = d.curl("-T", small, "-H", "Transfer-Encoding: chunked",
                         d.url("/v1/files/pics/chunked.bin"))
    assert st == 202 and hook.calls[-1]["size"] is None, body
    # multipart: asked once, for the folder and the whole body
    st, h, body = d.curl("-F", "file=@%s;filename=secret.txt" % small, d.url("/v1/files/mp/"))
    assert st == 202, body
    c = hook.calls[-1]
    assert (c["protocol"], c["path"], c["content_type"]) == ("multipart", "/mp", "multipart/form-data")
    assert c["size"] > 1234
    st, h, body = d.curl("-F", "file=@" + small, d.url("/v1/files/secret-folder"))
    assert st == 403 and "no secrets here" in problem(body)
    # tus creation: asked with the metadata's path, length and type
    st, h, body = tus_post(d, "a.mov", 5000, folder="/vids", ctype="video/quicktime")
    assert st == 201, body
    assert hook.calls[-1] == {"user": "alice", "path": "/vids/a.mov", "size": 5000,
                              "content_type": "video/quicktime", "protocol": "tus",
                              "client": "127.0.0.1", "_content_type": "application/json"}
    n = len(hook.calls)
    loc = h["location"]
    st, h, _ = d.curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                      "-H", "Content-Type: application/offset+octet-stream",
                      "--data-binary", "x" * 100, loc)
    assert st == 204 and len(hook.calls) == n  # PATCH is not asked again
    st, h, body = tus_post(d, "secret.mov", 5000)
    assert st == 403 and h.get("tus-resumable") == "1.0.0"
    assert problem(body) == "refused by the pre-upload hook: no secrets here, alice"


def test_hook_sees_partial_and_final_uploads(dripd_factory, hook):
    """tus concatenation: each partial upload is offered (no path, its own
    size, "concat": "partial"), and the final one with its parts' ids; a
    refused part is never created."""
    d = hooked(dripd_factory, hook.url)
    tus = ("-H", "Tus-Resumable: 1.0.0")
    locs = []
    for data in (b"abc", b"defgh"):
        st, h, body = d.curl("-X", "POST", *tus, "-H", "Upload-Concat: partial",
                             "-H", "Upload-Length: %d" % len(data), d.url("/v1/uploads"))
        assert st == 201, body
        assert hook.calls[-1] == {"user": "alice", "path": None, "size": len(data),
                                  "content_type": None, "protocol": "tus", "concat": "partial",
                                  "client": "127.0.0.1", "_content_type": "application/json"}
        st, _, body = d.curl("-X", "PATCH", *tus, "-H", "Upload-Offset: 0", "-H",
                             "Content-Type: application/offset+octet-stream",
                             "--data-binary", data.decode(), h["location"])
        assert st == 204, body
        locs.append(h["location"])
    n = len(hook.calls)
    st, h, body = d.curl("-X", "POST", *tus, "-H", "Upload-Concat: partial",
                         "-H", "Upload-Length: 666", d.url("/v1/uploads"))
    assert st == 403 and "location" not in h and "no secrets here" in problem(body), body
    assert len(hook.calls) == n + 1
    ids = [u.rsplit("/", 1)[1] for u in locs]
    meta = "filename " + base64.b64encode(b"joined.txt").decode()
    st, h, body = d.curl("-X", "POST", *tus, "-H", "Upload-Concat: final;" + " ".join(locs),
                         "-H", "Upload-Metadata: " + meta, d.url("/v1/uploads"))
    assert st == 201, body
    assert hook.calls[-1] == {"user": "alice", "path": "/joined.txt", "size": 8,
                              "content_type": None, "protocol": "tus", "concat": "final",
                              "partial_uploads": ids, "client": "127.0.0.1",
                              "_content_type": "application/json"}
    # a final upload the hook refuses: 403, and its parts stay for another try
    p = []
    for data in (b"xy", b"z"):
        st, h, _ = d.curl("-X", "POST", *tus, "-H", "Upload-Concat: partial",
                          "-H", "Upload-Length: %d" % len(data), "-H",
                          "Content-Type: application/offset+octet-stream",
                          "--data-binary", data.decode(), d.url("/v1/uploads"))
        assert st == 201
        p.append(h["location"])
    meta = "filename " + base64.b64encode(b"secret.txt").decode()
    st, h, body = d.curl("-X", "POST", *tus, "-H", "Upload-Concat: final;" + " ".join(p),
                         "-H", "Upload-Metadata: " + meta, d.url("/v1/uploads"))
    assert st == 403 and "no secrets here" in problem(body), body
    st, h, _ = d.curl("-I", *tus, p[0])
    assert st == 200 and h["upload-concat"] == "partial"


def test_tus_js_client_sees_the_reason(dripd_factory, hook):
    d = hooked(dripd_factory, hook.url)
    local = make_file(os.path.join(d.dir, "secret.bin"), 100000)
    r = subprocess.run(["node", os.path.join(NODE_DIR, "tus_upload.mjs"), "--endpoint",
                        d.url("/v1/uploads"), "--token", d.token(), "--file", local,
                        "--store", local + ".urls.json"],
                       capture_output=True, text=True, timeout=120, cwd=NODE_DIR)
    assert r.returncode != 0
    assert "response code: 403" in r.stderr and "no secrets here, alice" in r.stderr, r.stderr[-2000:]


def test_hook_down_or_slow_on_error_deny(dripd_factory, hook):
    """Default on_error (deny): a hook that times out or answers nonsense
    refuses the upload with 503 + Retry-After, in about the timeout.
    (1 s, not less: the hook's answers below must beat it on a loaded
    machine, or they too end as a timeout and "answered 500" is never logged.)"""
    d = hooked(dripd_factory, hook.url, timeout="1s")
    hook.stall.set()
    t0 = time.monotonic()
    st, h, body = d.curl("--data-binary", "abc", "-X", "PUT", d.url("/v1/files/slow.txt"))
    took = time.monotonic() - t0
    assert st == 503 and h["retry-after"] == "5", body
    assert "pre-upload hook did not answer" in problem(body) and "imeout" in problem(body)
    assert 0.9 < took < 10, took
    hook.stall.clear()
    hook.release.set()
    for ans in [(500, '{"allow": true}'), (200, "yes"), (200, '{"allow": "yes"}')]:
        hook.answer = ans
        st, h, body = d.curl("--data-binary", "abc", "-X", "PUT", d.url("/v1/files/x.txt"))
        assert st == 503, (ans, body)
    assert "answered 500" in d.log_text()
    hook.answer = None
    st, _, body = d.curl("--data-binary", "abc", "-X", "PUT", d.url("/v1/files/x.txt"))
    assert st == 202, body


def test_hook_down_on_error_allow(dripd_factory, hook):
    hook.close()  # nobody listens on its port any more
    d = hooked(dripd_factory, hook.url, on_error="allow", timeout="2s")
    st, _, body = d.curl("--data-binary", "abc", "-X", "PUT", d.url("/v1/files/y.txt"))
    assert st == 202, body
    assert re.search(r"pre-upload hook failed \(.*\); upload allowed", d.log_text())


def test_client_gone_while_the_hook_thinks(dripd_factory, hook):
    """The client hangs up while the hook is asked, its body unsent: nothing
    is stored, the daemon serves on, and the next upload goes through."""
    d = hooked(dripd_factory, hook.url, timeout="20s")
    big = make_file(os.path.join(d.dir, "big.bin"), 64 << 20)
    hook.stall.set()
    p = subprocess.Popen(["curl", "-sS", "-T", big, "-H",
                          "Authorization: Bearer " + d.token(), d.url("/v1/files/gone.txt")],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: any(c["path"] == "/gone.txt" for c in hook.calls), 20, "the hook asked")
    p.kill()
    p.wait()
    hook.stall.clear()
    hook.release.set()
    st, _, body = d.curl("--data-binary", "abc", "-X", "PUT", d.url("/v1/files/next.txt"))
    assert st == 202, body
    st, _, listing = d.curl(d.url("/v1/media?folder=/"))
    assert st == 200 and b"next.txt" in listing and b"gone.txt" not in listing, listing


def test_hook_config_errors(dripd_factory):
    d = dripd_factory(start=False, config={"hooks": {"pre_upload": {
        "url": "ftp://x", "timeout": "0s", "on_error": "maybe"}}})
    d.write_config()
    r = subprocess.run([DRIPD, "-c", d.config_path, "--check"], capture_output=True, text=True)
    assert r.returncode == 1
    assert re.search(r"dripd\.yaml:\d+:\d+: hooks\.pre_upload\.url: .*http:// or https:// URL",
                     r.stderr), r.stderr
    assert re.search(r"dripd\.yaml:\d+:\d+: hooks\.pre_upload\.on_error: .*allow or deny", r.stderr)
    assert re.search(r"dripd\.yaml:\d+:\d+: hooks\.pre_upload\.timeout", r.stderr)

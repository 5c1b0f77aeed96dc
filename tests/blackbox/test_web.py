"""The web UI: static files with the right headers, and an end-to-end run in
Debian's headless Chromium (playwright-core) against the real daemon."""
import json
import os
import re
import shutil
import subprocess

from conftest import ARTIFACTS, ROOT

NODE_DIR = os.path.join(ROOT, "tests", "node")


def test_index_headers(dripd):
    st, h, body = dripd.curl(dripd.url("/"), user=None)
    assert st == 200
    assert h["content-type"].startswith("text/html")
    csp = h["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert h["x-content-type-options"] == "nosniff"
    assert b"/app.js" in body
    etag = h["etag"]
    st2, _, body2 = dripd.curl("-H", "If-None-Match: " + etag, dripd.url("/"), user=None)
    assert st2 == 304 and body2 == b""


def test_assets_and_unknown(dripd):
    st, h, body = dripd.curl(dripd.url("/app.js"), user=None)
    assert st == 200 and h["content-type"].startswith("text/javascript")
    scripts = [os.path.join("web", "public", "app.js")] + [
        os.path.join("web", "public", "js", f) for f in os.listdir(os.path.join(ROOT, "web", "public", "js"))]
    for rel in scripts:
        st, h, body = dripd.curl(dripd.url("/" + rel.split("public/", 1)[1]), user=None)
        assert st == 200 and h["content-type"].startswith("text/javascript"), rel
        # user strings go through textContent only; nothing loads from elsewhere
        assert "innerHTML" not in body.decode() and not re.search(r"https?://", body.decode()), rel
    st, h, _ = dripd.curl(dripd.url("/vendor/tus.min.js"), user=None)
    assert st == 200 and "max-age" in h["cache-control"]
    st, h, body = dripd.curl(dripd.url("/nope.html"), user=None)
    assert st == 404 and h["content-type"] == "application/problem+json"


def test_me_says_who_is_signed_in(dripd):
    st, doc, h = dripd.json("GET", "/v1/me", user="alice")
    assert st == 200 and doc == {"user": "alice", "admin": True} and h["cache-control"] == "no-store"
    st, doc, _ = dripd.json("GET", "/v1/me", user="bob")
    assert st == 200 and doc == {"user": "bob", "admin": False}
    st, _, _ = dripd.json("GET", "/v1/me", user=None)
    assert st == 401


MAX_UPLOAD = 16 << 20


def test_browser_end_to_end(dripd_factory, tmpdir_path):
    """Sign in, the dropzone, uploads with speed and time left, a name that
    exists (rename or skip), a file over the limit, a file shared by bob,
    errors in dialogs and notices, download, delete, clear; screenshots at
    desktop and phone widths, light and dark, into tests/artifacts/web/."""
    assert os.path.exists("/usr/bin/chromium"), "Debian chromium is missing: make deps"
    assert os.path.isdir(os.path.join(NODE_DIR, "node_modules", "playwright-core")), \
        "playwright-core is missing: sh scripts/node-deps.sh"
    dripd = dripd_factory(config={"limits": {"max_upload_size": MAX_UPLOAD}})
    shots = os.path.join(ARTIFACTS, "web")
    shutil.rmtree(shots, ignore_errors=True)
    os.makedirs(shots)
    work = os.path.join(tmpdir_path, "web")
    os.makedirs(work)
    r = subprocess.run(["node", os.path.join(NODE_DIR, "web_e2e.mjs"), dripd.url(), dripd.token("alice"),
                        dripd.token("bob"), work, shots, str(MAX_UPLOAD)],
                       capture_output=True, text=True, timeout=300, cwd=NODE_DIR)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "browser test failed: %s\n%s\n%s" % (
        res.get("error"), r.stderr[-3000:], dripd.log_tail())
    for s in ["signed in, shows who", "dropzone opens the picker", "speed and time left",
              "conflict: rename or skip", "413 is final and plain", "shared file shows its owner and only download",
              "xss name is text", "layouts", "rename error keeps the dialog", "share error in the dialog",
              "downloaded and compared", "deleted, and its upload row with it", "errors stay until dismissed",
              "clear finished"]:
        assert s in res["steps"]
    for name in ["04-desktop-light", "05-desktop-dark", "06-phone-light", "07-phone-dark"]:
        assert os.path.exists(os.path.join(shots, name + ".png")), name

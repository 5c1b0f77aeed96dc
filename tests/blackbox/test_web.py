"""The web UI: static files with the right headers, and an end-to-end run in
Debian's headless Chromium (playwright-core) against the real daemon."""
import json
import os
import shutil
import subprocess
import sys

import pytest

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
    assert "innerHTML" not in body.decode()  # user strings go through textContent only
    st, h, _ = dripd.curl(dripd.url("/vendor/tus.min.js"), user=None)
    assert st == 200 and "max-age" in h["cache-control"]
    st, h, body = dripd.curl(dripd.url("/nope.html"), user=None)
    assert st == 404 and h["content-type"] == "application/problem+json"


def test_browser_end_to_end(dripd, tmpdir_path):
    if not os.path.exists("/usr/bin/chromium"):
        sys.stderr.write("\n*** SKIPPING the browser test: /usr/bin/chromium is not installed "
                         "(apt-get install chromium) ***\n")
        pytest.skip("LOUD SKIP: Debian chromium is not installed, the browser e2e test did not run")
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "playwright-core")):
        pytest.skip("LOUD SKIP: playwright-core missing (sh scripts/node-deps.sh)")
    shots = os.path.join(ARTIFACTS, "web")
    shutil.rmtree(shots, ignore_errors=True)
    os.makedirs(shots)
    work = os.path.join(tmpdir_path, "web")
    os.makedirs(work)
    r = subprocess.run(["node", os.path.join(NODE_DIR, "web_e2e.mjs"), dripd.url(), dripd.token("alice"),
                        work, shots], capture_output=True, text=True, timeout=240, cwd=NODE_DIR)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "browser test failed: %s\n%s\n%s" % (
        res.get("error"), r.stderr[-3000:], dripd.log_tail())
    for s in ["signed in", "both available over SSE", "xss name is text", "renamed",
              "downloaded and compared", "deleted"]:
        assert s in res["steps"]
    assert os.path.exists(os.path.join(shots, "02-uploaded.png"))

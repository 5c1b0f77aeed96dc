"""Sharing that can be taken back (issue 18 item 2), against the real
daemon: the shares of a file and unsharing, folder shares (a rule: files
put there later are covered, files moved out are not), and public links
(unguessable, optional expiry and download limit, counted atomically,
listed, revocable, served like /content without a token). Clients: curl,
dripctl and Chromium. The API tests run on a SQLite and on a PostgreSQL
catalog (pgutil.py)."""
import concurrent.futures
import json
import os
import subprocess
import time

import pytest

from conftest import ARTIFACTS, DRIPCTL, ROOT, make_file, wait_until
from pgutil import pg_config, pg_db, pg_server  # noqa: F401


@pytest.fixture(params=["sqlite", "postgres"])
def dripd(request, dripd_factory):
    """The daemon on each catalog backend."""
    if request.param == "sqlite":
        return dripd_factory()
    return dripd_factory(config=pg_config(request.getfixturevalue("pg_db")))


def put(dripd, remote, data=b"x", user="alice"):
    """PUT data at remote and wait until it is available; its media id."""
    path = os.path.join(dripd.dir, "up.bin")
    with open(path, "wb") as f:
        f.write(data)
    st, doc = dripd.put_file(path, remote, user=user)
    assert st == 202, (st, doc)
    dripd.wait_job(doc["job"]["id"], user=user)
    return doc["media"]["id"]


def sees(dripd, user, mid):
    st, _, _ = dripd.json("GET", "/v1/media/" + mid, user=user)
    return st == 200


def names(dripd, user, folder):
    st, doc, _ = dripd.json("GET", "/v1/media?folder=" + folder, user=user, expect=200)
    return sorted(f["name"] for f in doc["files"]), sorted(d["name"] for d in doc["folders"])


def test_list_and_unshare_a_file(dripd):
    mid = put(dripd, "/doc/a.txt", b"hello")
    st, doc, _ = dripd.json("GET", "/v1/media/%s/shares" % mid, expect=200)
    assert doc == {"media_id": mid, "shares": []}
    dripd.json("POST", "/v1/media/%s/shares" % mid, {"user": "bob"}, expect=201)
    dripd.json("POST", "/v1/media/%s/shares" % mid, {"user": "carol"}, expect=201)
    st, doc, _ = dripd.json("POST", "/v1/media/%s/shares" % mid, {"user": "bob"}, expect=200)
    assert doc["created"] is False
    st, doc, _ = dripd.json("GET", "/v1/media/%s/shares" % mid, expect=200)
    assert [(s["user"], s["via"], s["folder"]) for s in doc["shares"]] == \
        [("bob", "file", None), ("carol", "file", None)]
    assert all(s["created_at"].endswith("Z") for s in doc["shares"])
    # only the owner lists or unshares: a share does not give that away
    assert sees(dripd, "bob", mid)
    dripd.json("GET", "/v1/media/%s/shares" % mid, user="bob", expect=404)
    dripd.json("DELETE", "/v1/media/%s/shares/carol" % mid, user="bob", expect=404)
    st, _, _ = dripd.json("DELETE", "/v1/media/%s/shares/bob" % mid, expect=204)
    assert not sees(dripd, "bob", mid) and sees(dripd, "carol", mid)
    st, doc, _ = dripd.json("DELETE", "/v1/media/%s/shares/bob" % mid, expect=404)
    assert "not shared" in doc["detail"]
    dripd.json("DELETE", "/v1/media/%s/shares/alice" % mid, expect=404)  # the owner is no share
    assert sees(dripd, "alice", mid)
    st, _, h = dripd.json("PUT", "/v1/media/%s/shares" % mid, expect=405)
    assert "GET" in h["allow"] and "POST" in h["allow"]
    dripd.json("DELETE", "/v1/media/01ARZ3NDEKTSV4RRFFQ69G5FAV/shares/bob", expect=404)


def test_folder_share_is_a_rule(dripd):
    a = put(dripd, "/photos/a.jpg", b"a")
    other = put(dripd, "/photosx/c.jpg", b"c")  # "/photos" must not match "/photosx"
    dash = put(dripd, "/photos-old/d.jpg", b"d")
    mine = put(dripd, "/photos/b.jpg", b"bob's own", user="bob")
    dripd.json("POST", "/v1/folders/shares", {"path": "/nope", "user": "bob"}, expect=404)
    st, doc, _ = dripd.json("POST", "/v1/folders/shares", {"path": "/photos", "user": "mallory"}, expect=400)
    assert "unknown user" in doc["detail"]
    dripd.json("POST", "/v1/folders/shares", {"path": "/photos", "user": "alice"}, expect=400)
    dripd.json("POST", "/v1/folders/shares", {"path": "/a/../b", "user": "bob"}, expect=400)
    st, doc, _ = dripd.json("POST", "/v1/folders/shares", {"path": "/photos/", "user": "bob"}, expect=201)
    assert doc == {"path": "/photos", "user": "bob", "created": True}
    st, doc, _ = dripd.json("POST", "/v1/folders/shares", {"path": "/photos", "user": "bob"}, expect=200)
    assert doc["created"] is False
    assert sees(dripd, "bob", a) and not sees(dripd, "bob", other) and not sees(dripd, "bob", dash)
    assert not sees(dripd, "carol", a) and not sees(dripd, "alice", mine)
    # bob's listing: his own file and alice's, under the owners' paths
    assert names(dripd, "bob", "/photos") == (["a.jpg", "b.jpg"], [])
    assert names(dripd, "bob", "/")[1] == ["photos"]

    # a file put there later, deep or not, is shared too
    later = put(dripd, "/photos/2026/may/later.jpg", b"later")
    assert sees(dripd, "bob", later)
    assert names(dripd, "bob", "/photos")[1] == ["2026"]
    st, body_h, body = dripd.curl(dripd.url("/v1/media/%s/content" % later), user="bob")
    assert st == 200 and body == b"later"
    # the shares of a file name the folder that covers it
    st, doc, _ = dripd.json("GET", "/v1/media/%s/shares" % later, expect=200)
    assert doc["shares"] == [{"user": "bob", "via": "folder", "folder": "/photos",
                              "created_at": doc["shares"][0]["created_at"]}]
    # moved out: not shared any more; moved back: shared again
    dripd.json("PATCH", "/v1/media/" + a, {"path": "/elsewhere/a.jpg"}, expect=200)
    assert not sees(dripd, "bob", a)
    dripd.json("PATCH", "/v1/media/" + a, {"path": "/photos/a.jpg"}, expect=200)
    assert sees(dripd, "bob", a)
    # bob cannot re-share alice's folder (it is not his), nor unshare it
    dripd.json("DELETE", "/v1/folders/shares?path=/photos&user=bob", user="bob", expect=404)

    st, doc, _ = dripd.json("GET", "/v1/folders/shares", expect=200)
    assert [(s["path"], s["user"]) for s in doc["shares"]] == [("/photos", "bob")]
    st, doc, _ = dripd.json("GET", "/v1/folders/shares?path=/photosx", expect=200)
    assert doc["shares"] == []
    st, doc, _ = dripd.json("GET", "/v1/folders/shares", user="bob", expect=200)
    assert doc["shares"] == []

    # a file shared on its own stays shared when the folder share goes
    dripd.json("POST", "/v1/media/%s/shares" % later, {"user": "bob"}, expect=201)
    dripd.json("DELETE", "/v1/folders/shares?path=/photos&user=carol", expect=404)
    dripd.json("DELETE", "/v1/folders/shares?path=/photos", expect=400)
    dripd.json("DELETE", "/v1/folders/shares?path=/photos&user=bob", expect=204)
    assert not sees(dripd, "bob", a) and sees(dripd, "bob", later)
    dripd.json("DELETE", "/v1/folders/shares?path=/photos&user=bob", expect=404)

    # the root is a folder too: everything, now and later
    dripd.json("POST", "/v1/folders/shares", {"path": "/", "user": "carol"}, expect=201)
    assert all(sees(dripd, "carol", m) for m in (a, other, dash, later))
    assert sees(dripd, "carol", put(dripd, "/top.txt", b"t"))
    assert not sees(dripd, "carol", mine)


def link_url(dripd, link):
    assert link["url"] == dripd.url(link["link_path"])  # absolute, as the client sees us
    return link["url"]


def test_public_link_download_limit_and_revoke(dripd, tmpdir_path):
    src = make_file(os.path.join(tmpdir_path, "big.bin"), 300_000)
    with open(src, "rb") as f:
        data = f.read()
    mid = put(dripd, "/share/big.bin", data)
    st, link, h = dripd.json("POST", "/v1/media/%s/public-links" % mid, {"max_downloads": 2}, expect=201)
    assert h["cache-control"] == "no-store"
    assert link["link_path"].startswith("/p/") and len(link["link_path"]) == 3 + 26 + 43
    assert link["max_downloads"] == 2 and link["downloads"] == 0 and link["expires_at"] is None
    assert link["state"] == "active" and link["path"] == "/share/big.bin" and link["media_id"] == mid
    url = link_url(dripd, link)
    # no token needed; HEAD and a 304 do not count
    st, hh, body = dripd.curl("-I", url, user=None)
    assert st == 200 and int(hh["content-length"]) == len(data)
    etag = hh["etag"]
    st, _, _ = dripd.curl("-H", "If-None-Match: " + etag, url, user=None)
    assert st == 304
    st, hh, body = dripd.curl(url, user=None)
    assert st == 200 and body == data
    assert hh["content-disposition"].startswith("attachment") and "big.bin" in hh["content-disposition"]
    assert hh["referrer-policy"] == "no-referrer" and hh["etag"] == etag
    # a resumed download (a range after byte 0) does not count; one from 0 does
    st, hh, body = dripd.curl("-r", "1000-", url, user=None)
    assert st == 206 and body == data[1000:]
    st, doc, _ = dripd.json("GET", "/v1/public-links?media_id=" + mid, expect=200)
    assert doc["links"][0]["downloads"] == 1
    st, hh, body = dripd.curl("-r", "0-99", url, user=None)
    assert st == 206 and body == data[:100]
    st, doc, _ = dripd.json("GET", "/v1/public-links", expect=200)
    assert [(l["id"], l["downloads"], l["state"]) for l in doc["links"]] == [(link["id"], 2, "used up")]
    st, hh, body = dripd.curl(url, user=None)
    assert st == 410 and b"used" in body and hh["content-type"] == "application/problem+json"
    st, _, _ = dripd.curl("-r", "1000-", url, user=None)
    assert st == 410

    # revoked one by one: the other link keeps working
    st, l2, _ = dripd.json("POST", "/v1/media/%s/public-links" % mid, {}, expect=201)
    st, l3, _ = dripd.json("POST", "/v1/media/%s/public-links" % mid, None, expect=201)
    assert l2["link_path"] != l3["link_path"] and l2["max_downloads"] is None
    dripd.json("DELETE", "/v1/public-links/" + l2["id"], user="bob", expect=404)
    dripd.json("DELETE", "/v1/public-links/" + l2["id"], expect=204)
    dripd.json("DELETE", "/v1/public-links/" + l2["id"], expect=404)
    assert dripd.curl(link_url(dripd, l2), user=None)[0] == 404
    st, _, body = dripd.curl(link_url(dripd, l3), user=None)
    assert st == 200 and body == data
    st, doc, _ = dripd.json("GET", "/v1/public-links", expect=200)
    assert [l["id"] for l in doc["links"]] == [l3["id"], link["id"]]  # newest first

    # forged or mangled tokens look like nothing at all
    good = l3["link_path"]
    for bad in [good[:-1] + ("A" if good[-1] != "A" else "B"), good[:-1], good + "x",
                "/p/" + link["id"] + good[3 + 26:], "/p/", "/p/x"]:
        st, _, _ = dripd.curl(dripd.url(bad), user=None)
        assert st == 404, bad

    # only the owner makes links; bob sees alice's file through a share but cannot
    dripd.json("POST", "/v1/media/%s/shares" % mid, {"user": "bob"}, expect=201)
    dripd.json("POST", "/v1/media/%s/public-links" % mid, {}, user="bob", expect=404)
    st, doc, _ = dripd.json("GET", "/v1/public-links", user="bob", expect=200)
    assert doc["links"] == []
    for body in [{"max_downloads": 0}, {"max_downloads": "3"}, {"expires_in": -1},
                 {"expires_in": "soon"}, [1]]:
        dripd.json("POST", "/v1/media/%s/public-links" % mid, body, expect=400)
    dripd.json("GET", "/v1/public-links?media_id=nope", expect=400)

    # the media goes, its links go with it
    dripd.json("DELETE", "/v1/media/" + mid, expect=204)
    assert dripd.curl(link_url(dripd, l3), user=None)[0] == 404
    st, doc, _ = dripd.json("GET", "/v1/public-links", expect=200)
    assert doc["links"] == []


def test_public_link_expires(dripd):
    mid = put(dripd, "/e.txt", b"soon gone")
    t0 = time.monotonic()
    st, link, _ = dripd.json("POST", "/v1/media/%s/public-links" % mid, {"expires_in": "3s"}, expect=201)
    assert link["expires_at"] is not None
    st, _, body = dripd.curl(link_url(dripd, link), user=None)
    # (a machine so busy that 3 s went by already may see it expired: never before)
    assert (st == 200 and body == b"soon gone") or (st == 410 and time.monotonic() - t0 >= 3), st
    counted = 1 if st == 200 else 0
    # HEAD is never counted, so polling with it leaves the count alone
    wait_until(lambda: dripd.curl("-I", link_url(dripd, link), user=None)[0] == 410, 30,
               "the link to expire")
    assert time.monotonic() - t0 >= 2.9
    assert dripd.curl(link_url(dripd, link), user=None)[0] == 410
    st, doc, _ = dripd.json("GET", "/v1/public-links", expect=200)
    assert doc["links"][0]["state"] == "expired" and doc["links"][0]["downloads"] == counted


def test_public_link_limit_holds_under_concurrency(dripd):
    mid = put(dripd, "/c.txt", b"c" * 5000)
    st, link, _ = dripd.json("POST", "/v1/media/%s/public-links" % mid, {"max_downloads": 3}, expect=201)
    url = link_url(dripd, link)
    with concurrent.futures.ThreadPoolExecutor(12) as ex:
        codes = list(ex.map(lambda _: dripd.curl(url, user=None)[0], range(12)))
    assert sorted(codes) == [200] * 3 + [410] * 9, codes
    st, doc, _ = dripd.json("GET", "/v1/public-links", expect=200)
    assert doc["links"][0]["downloads"] == 3


def ctl(dripd, *args, user="alice"):
    env = dict(os.environ, DRIPD_URL=dripd.url(), DRIPD_TOKEN=dripd.token(user), HOME=dripd.dir)
    r = subprocess.run([DRIPCTL] + list(args), capture_output=True, text=True, env=env, timeout=60)
    return r.returncode, r.stdout, r.stderr


def test_dripctl_shares_and_links(dripd, tmpdir_path):
    a = put(dripd, "/album/one.txt", b"one")
    code, out, err = ctl(dripd, "share", "/album", "bob")
    assert code == 0 and "share /album/ with bob: ok" in out, err
    code, out, err = ctl(dripd, "share", "/album/one.txt", "carol")
    assert code == 0, err
    code, out, err = ctl(dripd, "shares", "/album/one.txt")
    assert code == 0 and out.split("\n")[:2] == ["bob                  through folder /album",
                                                 "carol                this file"], out
    code, out, err = ctl(dripd, "shares")
    assert code == 0 and out.split() == ["/album", "bob"]
    code, out, err = ctl(dripd, "--json", "shares", "/album/")
    assert code == 0 and json.loads(out)["shares"][0]["user"] == "bob"
    assert sees(dripd, "bob", put(dripd, "/album/two.txt", b"two"))
    code, out, err = ctl(dripd, "unshare", "/album", "bob")
    assert code == 0 and not sees(dripd, "bob", a)
    code, out, err = ctl(dripd, "unshare", "/album", "bob")
    assert code == 4, (code, out, err)
    code, out, err = ctl(dripd, "unshare", a, "carol")
    assert code == 0 and not sees(dripd, "carol", a)
    code, out, err = ctl(dripd, "share", "/album", "mallory")
    assert code == 1 and "unknown user" in err

    code, out, err = ctl(dripd, "link", "/album/one.txt", "--expires", "7d", "--max-downloads", "1")
    assert code == 0, err
    url = out.strip()
    assert url.startswith(dripd.url("/p/")), out
    code, out, err = ctl(dripd, "--json", "links")
    links = json.loads(out)["links"]
    assert len(links) == 1 and links[0]["max_downloads"] == 1 and links[0]["expires_at"]
    r = subprocess.run(["curl", "-sS", "-o", os.path.join(tmpdir_path, "got"), "-w", "%{http_code}", url],
                       capture_output=True, text=True)
    assert r.stdout == "200" and open(os.path.join(tmpdir_path, "got"), "rb").read() == b"one"
    code, out, err = ctl(dripd, "links", "/album/one.txt")
    assert code == 0 and "used up" in out and "1/1" in out and url in out, out
    code, out, err = ctl(dripd, "revoke", links[0]["id"])
    assert code == 0 and "revoke" in out
    code, out, err = ctl(dripd, "revoke", links[0]["id"])
    assert code == 4
    code, out, err = ctl(dripd, "link", "/album/one.txt", "--expires", "soon")
    assert code == 2 and "--expires" in err
    code, out, err = ctl(dripd, "link", "/album/one.txt", "--max-downloads", "0")
    assert code == 2


def test_web_sharing(dripd_factory):
    """The web UI in Chromium (tests/node/web_sharing.mjs): share and
    remove, errors in the dialog, a public link with expiry and limit
    (copied, used up, revoked), a folder share covering a later file."""
    dripd = dripd_factory()
    node_dir = os.path.join(ROOT, "tests", "node")
    assert os.path.exists("/usr/bin/chromium"), "Debian chromium is missing: make deps"
    assert os.path.isdir(os.path.join(node_dir, "node_modules", "playwright-core")), \
        "playwright-core is missing: sh scripts/node-deps.sh"
    shots = os.path.join(ARTIFACTS, "web")
    os.makedirs(shots, exist_ok=True)
    r = subprocess.run(["node", os.path.join(node_dir, "web_sharing.mjs"), dripd.url(), dripd.token("alice"),
                        dripd.token("bob"), dripd.token("carol"), shots],
                       capture_output=True, text=True, timeout=300, cwd=node_dir)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "browser test failed: %s\n%s\n%s" % (
        res.get("error"), r.stderr[-3000:], dripd.log_tail())
    assert res["steps"] == ["share a file, errors in the dialog", "public link made and copied",
                            "download limit shows", "unshare and revoke",
                            "folder share covers later files, and is taken back",
                            "all links listed and revoked"]

"""Folders as first-class (issue 18 item 3), against the real daemon, on a
SQLite and on a PostgreSQL catalog: make an empty folder, move or rename
a folder with everything in it in one transaction (ids, shares, public
links and cached bytes follow), delete a folder with everything in it
(objects, variants and cache entries too). Clients: curl, dripctl and
Chromium."""
import concurrent.futures
import json
import os
import subprocess
import urllib.parse

import pytest

import objstore
from conftest import ARTIFACTS, DRIPCTL, ROOT, wait_until
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
    st, doc = dripd.put_file(path, urllib.parse.quote(remote), user=user)
    assert st == 202, (st, doc)
    dripd.wait_job(doc["job"]["id"], user=user)
    return doc["media"]["id"]


def listing(dripd, folder, user="alice"):
    st, doc, _ = dripd.json("GET", "/v1/media?folder=" + urllib.parse.quote(folder), user=user,
                            expect=200)
    return ({d["name"]: (d["files"], d["size"]) for d in doc["folders"]},
            sorted(f["name"] for f in doc["files"]))


def objects(dripd):
    """The object keys in the local store: files and rows of
    objects/.small.db (objstore.py)."""
    # staging-*: a PostgreSQL catalog's staged upload bodies (docs/CLUSTER.md),
    # not media objects; their collector deletes them on its own clock
    return {k for k in objstore.keys(objstore.objects_dir(dripd)) if not k.startswith("staging-")}


def test_make_an_empty_folder(dripd):
    st, doc, _ = dripd.json("POST", "/v1/folders", {"path": "/empty/deep/"}, expect=201)
    assert doc == {"path": "/empty/deep", "created": True}
    st, doc, _ = dripd.json("POST", "/v1/folders", {"path": "/empty/deep"}, expect=200)
    assert doc["created"] is False
    # listed with nothing in it, and its parent through it
    assert listing(dripd, "/") == ({"empty": (0, 0)}, [])
    assert listing(dripd, "/empty") == ({"deep": (0, 0)}, [])
    # a file and a folder never share a path: not in either direction
    st, _, body = dripd.curl("-T", "/dev/null", dripd.url("/v1/files/empty/deep"))
    assert st == 409 and b"is a folder" in body
    put(dripd, "/notes.txt", b"n")
    st, doc, _ = dripd.json("POST", "/v1/folders", {"path": "/notes.txt"}, expect=409)
    assert "already exists" in doc["detail"]
    st, doc, _ = dripd.json("POST", "/v1/folders", {"path": "/notes.txt/x"}, expect=409)
    assert "inside a path that is a file" in doc["detail"]
    # a folder its files make is one too: making it again is no error
    put(dripd, "/photos/a.jpg", b"a")
    st, doc, _ = dripd.json("POST", "/v1/folders", {"path": "/photos"}, expect=200)
    assert doc["created"] is False
    # it stays when emptied, being made now
    mid = listing_id(dripd, "/photos", "a.jpg")
    dripd.json("DELETE", "/v1/media/" + mid, expect=204)
    assert listing(dripd, "/")[0]["photos"] == (0, 0)
    # a folder only files made goes with its last file, as before
    other = put(dripd, "/gone/x.bin", b"x")
    dripd.json("DELETE", "/v1/media/" + other, expect=204)
    assert "gone" not in listing(dripd, "/")[0]
    for bad in [{"path": "/"}, {"path": "a/b"}, {"path": "/a/../b"}, {"path": ""}, {}, [1]]:
        dripd.json("POST", "/v1/folders", bad, expect=400)
    # another user's tree is their own
    assert listing(dripd, "/", user="bob") == ({}, [])
    dripd.json("POST", "/v1/folders", {"path": "/empty/deep"}, user="bob", expect=201)
    st, _, h = dripd.json("PUT", "/v1/folders", expect=405)
    assert set(h["allow"].replace(" ", "").split(",")) == {"POST", "PATCH", "DELETE"}


def listing_id(dripd, folder, name, user="alice"):
    st, doc, _ = dripd.json("GET", "/v1/media?folder=" + folder, user=user, expect=200)
    return next(f["id"] for f in doc["files"] if f["name"] == name)


def test_move_a_folder_with_everything_in_it(dripd):
    a = put(dripd, "/trip/a.jpg", b"aaa")
    b = put(dripd, "/trip/day 2/b.jpg", b"bb")
    put(dripd, "/tripx/keep.jpg", b"k")  # "/trip" never means "/tripx"
    dripd.json("POST", "/v1/folders", {"path": "/trip/empty"}, expect=201)
    dripd.json("POST", "/v1/folders/shares", {"path": "/trip/day 2", "user": "bob"}, expect=201)
    st, link, _ = dripd.json("POST", "/v1/media/%s/public-links" % b, {}, expect=201)
    st, _, body = dripd.curl(dripd.url("/v1/media/%s/content" % a))
    assert st == 200 and body == b"aaa"  # cached now

    st, doc, _ = dripd.json("PATCH", "/v1/folders", {"from": "/trip", "to": "/2026/Trip é"}, expect=200)
    assert doc == {"from": "/trip", "to": "/2026/Trip é", "files": 2}
    assert listing(dripd, "/") == ({"2026": (2, 5), "tripx": (1, 1)}, [])
    assert listing(dripd, "/2026/Trip é") == ({"day 2": (1, 2), "empty": (0, 0)}, ["a.jpg"])
    st, m, _ = dripd.json("GET", "/v1/media/" + b, expect=200)
    assert m["path"] == "/2026/Trip é/day 2/b.jpg" and m["folder"] == "/2026/Trip é/day 2"
    # the folder share went with it, and so did the public link
    assert dripd.json("GET", "/v1/media/" + b, user="bob")[0] == 200
    st, doc, _ = dripd.json("GET", "/v1/folders/shares", expect=200)
    assert [(s["path"], s["user"]) for s in doc["shares"]] == [("/2026/Trip é/day 2", "bob")]
    st, _, body = dripd.curl(link["url"], user=None)
    assert st == 200 and body == b"bb"
    st, _, body = dripd.curl(dripd.url("/v1/media/%s/content" % a))
    assert st == 200 and body == b"aaa"
    # a file put there later is still shared through the moved share
    assert dripd.json("GET", "/v1/media/" + put(dripd, "/2026/Trip é/day 2/c.jpg"), user="bob")[0] == 200

    # "to" ending in / moves into that folder under its name
    st, doc, _ = dripd.json("PATCH", "/v1/folders", {"from": "/2026/Trip é/empty", "to": "/tripx/"},
                            expect=200)
    assert doc["to"] == "/tripx/empty" and doc["files"] == 0
    assert listing(dripd, "/tripx") == ({"empty": (0, 0)}, ["keep.jpg"])

    # refusals: absent, a file, taken, into itself, the root, bad bodies, bob
    dripd.json("PATCH", "/v1/folders", {"from": "/nope", "to": "/x"}, expect=404)
    dripd.json("PATCH", "/v1/folders", {"from": "/tripx/keep.jpg", "to": "/x"}, expect=404)
    st, doc, _ = dripd.json("PATCH", "/v1/folders", {"from": "/2026", "to": "/tripx"}, expect=409)
    assert "is a folder" in doc["detail"]
    st, doc, _ = dripd.json("PATCH", "/v1/folders", {"from": "/2026", "to": "/tripx/keep.jpg"}, expect=409)
    assert "already exists" in doc["detail"]
    dripd.json("PATCH", "/v1/folders", {"from": "/2026", "to": "/tripx/keep.jpg/in"}, expect=409)
    st, doc, _ = dripd.json("PATCH", "/v1/folders", {"from": "/2026", "to": "/2026/deeper"}, expect=400)
    assert "into itself" in doc["detail"]
    dripd.json("PATCH", "/v1/folders", {"from": "/", "to": "/x"}, expect=400)
    st, doc, _ = dripd.json("PATCH", "/v1/folders", {"from": "/2026", "to": "/"}, expect=200)
    assert doc["to"] == "/2026" and doc["files"] == 0  # into the root: where it is already
    dripd.json("PATCH", "/v1/folders", {"from": "/2026"}, expect=400)
    dripd.json("PATCH", "/v1/folders", {"from": "/2026", "to": "/y" + "/z" * 600}, expect=400)
    dripd.json("PATCH", "/v1/folders", {"from": "/2026", "to": "/bobs"}, user="bob", expect=404)
    st, doc, _ = dripd.json("PATCH", "/v1/folders", {"from": "/2026", "to": "/2026"}, expect=200)
    assert doc["files"] == 0
    assert listing(dripd, "/2026") == ({"Trip é": (3, 6)}, [])


def test_move_is_one_transaction(dripd):
    """While a folder of 200 files moves, a reader sees all of it at the
    old place or all of it at the new one, never a part of each."""
    n = 200
    body = os.path.join(dripd.dir, "one")
    with open(body, "wb") as f:
        f.write(b"1")
    for i in range(n):
        st, _ = dripd.put_file(body, "/big/%03d" % i)
        assert st == 202
    wait_until(lambda: listing(dripd, "/")[0].get("big") == (n, n), 60, "200 files")
    seen = []

    def reader():
        for _ in range(60):
            folders, _ = listing(dripd, "/")
            seen.append((folders.get("big", (0,))[0], folders.get("moved", (0,))[0]))

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        r = ex.submit(reader)
        dripd.json("PATCH", "/v1/folders", {"from": "/big", "to": "/moved"}, expect=200)
        r.result()
    assert all(s in ((n, 0), (0, n)) for s in seen), sorted(set(seen))
    assert listing(dripd, "/")[0] == {"moved": (n, n)}


def test_delete_a_folder_with_everything_in_it(dripd):
    before = objects(dripd)
    a = put(dripd, "/old/a.bin", b"a" * 1000)
    b = put(dripd, "/old/sub/b.bin", b"b" * 2000)
    keep = put(dripd, "/oldies/c.bin", b"c")
    dripd.json("POST", "/v1/folders", {"path": "/old/empty/deeper"}, expect=201)
    dripd.json("POST", "/v1/media/%s/shares" % a, {"user": "bob"}, expect=201)
    dripd.json("POST", "/v1/folders/shares", {"path": "/old/sub", "user": "carol"}, expect=201)
    st, link, _ = dripd.json("POST", "/v1/media/%s/public-links" % b, {}, expect=201)
    st, _, _ = dripd.curl(dripd.url("/v1/media/%s/content" % a))
    assert st == 200 and os.path.exists(os.path.join(dripd.data_dir, "cache", a))
    assert len(objects(dripd) - before) == 3
    dripd.json("DELETE", "/v1/folders?path=/old", user="bob", expect=404)
    st, doc, _ = dripd.json("DELETE", "/v1/folders?path=/old/", expect=200)
    assert doc == {"path": "/old", "files": 2, "trash": False}
    # rows, objects, cache entries, shares, links and made folders are gone
    for mid in (a, b):
        assert dripd.json("GET", "/v1/media/" + mid)[0] == 404
    assert dripd.json("GET", "/v1/media/" + a, user="bob")[0] == 404
    assert not os.path.exists(os.path.join(dripd.data_dir, "cache", a))
    assert len(objects(dripd) - before) == 1
    assert dripd.curl(link["url"], user=None)[0] == 404
    st, doc, _ = dripd.json("GET", "/v1/folders/shares", expect=200)
    assert doc["shares"] == []
    st, doc, _ = dripd.json("GET", "/v1/public-links", expect=200)
    assert doc["links"] == []
    assert listing(dripd, "/") == ({"oldies": (1, 1)}, [])
    assert dripd.json("GET", "/v1/media/" + keep)[0] == 200
    dripd.json("DELETE", "/v1/folders?path=/old", expect=404)
    # an empty made folder goes too
    dripd.json("POST", "/v1/folders", {"path": "/e"}, expect=201)
    st, doc, _ = dripd.json("DELETE", "/v1/folders?path=/e", expect=200)
    assert doc["files"] == 0 and listing(dripd, "/")[0] == {"oldies": (1, 1)}
    for q in ["", "?path=", "?path=/", "?path=a", "?path=/oldies/c.bin"]:
        st, _, _ = dripd.json("DELETE", "/v1/folders" + q)
        assert st in (400, 404) and (st == 404) == (q == "?path=/oldies/c.bin"), (q, st)


def ctl(dripd, *args, user="alice"):
    env = dict(os.environ, DRIPD_URL=dripd.url(), DRIPD_TOKEN=dripd.token(user), HOME=dripd.dir)
    r = subprocess.run([DRIPCTL] + list(args), capture_output=True, text=True, env=env, timeout=60)
    return r.returncode, r.stdout, r.stderr


def test_dripctl_folders(dripd):
    code, out, err = ctl(dripd, "mkdir", "/music/jazz")
    assert code == 0 and out.strip() == "mkdir /music/jazz: ok", (out, err)
    code, out, err = ctl(dripd, "mkdir", "/music/jazz")
    assert code == 0 and "it was there" in out
    code, out, err = ctl(dripd, "ls", "/music")
    assert code == 0 and "jazz/" in out, out
    put(dripd, "/music/jazz/a.mp3", b"a")
    code, out, err = ctl(dripd, "mv", "/music/jazz", "/albums/")  # into, keeping the name
    assert code == 0 and "/music/jazz/ -> /albums/jazz/ (1 files)" in out, (out, err)
    code, out, err = ctl(dripd, "mv", "/albums", "/records")       # rename
    assert code == 0, err
    code, out, err = ctl(dripd, "--json", "ls", "/records/jazz")
    assert [f["name"] for f in json.loads(out)["files"]] == ["a.mp3"]
    code, out, err = ctl(dripd, "rm", "/records")
    assert code == 2 and "rm -r" in err
    code, out, err = ctl(dripd, "rm", "-r", "/records")
    assert code == 0 and "(1 files)" in out, (out, err)
    code, out, err = ctl(dripd, "rm", "-r", "/records")
    assert code == 2 and "not one of your folders" in err
    code, out, err = ctl(dripd, "mkdir", "relative")
    assert code == 2


def test_web_folders(dripd_factory):
    """The web UI in Chromium (tests/node/web_folders.mjs): New folder,
    rename and move a folder, delete one after confirming."""
    dripd = dripd_factory()
    node_dir = os.path.join(ROOT, "tests", "node")
    assert os.path.exists("/usr/bin/chromium"), "Debian chromium is missing: make deps"
    assert os.path.isdir(os.path.join(node_dir, "node_modules", "playwright-core")), \
        "playwright-core is missing: sh scripts/node-deps.sh"
    shots = os.path.join(ARTIFACTS, "web")
    os.makedirs(shots, exist_ok=True)
    r = subprocess.run(["node", os.path.join(node_dir, "web_folders.mjs"), dripd.url(), dripd.token("alice"),
                        shots], capture_output=True, text=True, timeout=300, cwd=node_dir)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "browser test failed: %s\n%s\n%s" % (
        res.get("error"), r.stderr[-3000:], dripd.log_tail())
    assert res["steps"] == ["new folder, and its errors", "rename a folder", "move a folder",
                            "delete a folder after confirming"]

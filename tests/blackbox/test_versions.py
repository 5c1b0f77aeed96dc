"""Overwrite, versions and the trash (issue 18 item 4; docs/API.md,
"Overwrite, versions and the trash"), against the real daemon on each
catalog backend: PUT with If-Match replaces a file (412 when its ETag moved
on), ?conflict=rename keeps both under a free name, versions.keep keeps
earlier versions to list and restore, trash.ttl keeps deleted files to
restore, and the retire sweep deletes what is no longer kept, objects
included."""
import base64
import json
import os
import subprocess
import urllib.parse

import pytest

import objstore
from conftest import ARTIFACTS, ROOT, wait_until
from pgutil import pg_config, pg_db, pg_server  # noqa: F401


def backend_config(request, extra):
    if request.param == "sqlite":
        return dict(extra)
    cfg = pg_config(request.getfixturevalue("pg_db"))
    cfg.update(extra)
    return cfg


@pytest.fixture(params=["sqlite", "postgres"])
def dripd(request, dripd_factory):
    """Defaults: no versions kept, no trash."""
    return dripd_factory(config=backend_config(request, {}))


@pytest.fixture(params=["sqlite", "postgres"])
def kept(request, dripd_factory):
    """Two earlier versions kept, deleted files in the trash for an hour."""
    return dripd_factory(config=backend_config(request, {"versions": {"keep": 2},
                                                         "trash": {"ttl": "1h"}}))


def put(d, remote, data, *curl_args, user="alice", expect=202, wait=True, query=""):
    path = os.path.join(d.dir, "up.bin")
    with open(path, "wb") as f:
        f.write(data)
    st, _, body = d.curl("-T", path, *curl_args,
                         d.url("/v1/files" + urllib.parse.quote(remote) + query), user=user)
    assert st == expect, (st, body[:500])
    doc = json.loads(body)
    if st == 202 and wait:
        assert d.wait_job(doc["job"]["id"], user=user)["state"] == "done"
    return doc


def content(d, mid, user="alice"):
    st, h, body = d.curl(d.url("/v1/media/%s/content" % mid), user=user)
    assert st == 200, (st, body[:300])
    return body, h["etag"]


def files(d, folder="/", user="alice"):
    doc = d.json("GET", "/v1/media?folder=" + urllib.parse.quote(folder), user=user,
                 expect=200)[1]
    return {f["name"]: f for f in doc["files"]}


def objects(d):
    """The media objects in the local store (not the trash marks): files and
    rows of objects/.small.db (objstore.py)."""
    # staging-*: a PostgreSQL catalog's staged upload bodies (docs/CLUSTER.md),
    # not media objects; their collector deletes them on its own clock
    return {k for k in objstore.keys(objstore.objects_dir(d))
            if not k.endswith(".trash") and not k.startswith("staging-")}


def marks(d):
    """The ids with a trash mark ("<id>.trash") in the local store."""
    return {k[:-len(".trash")] for k in objstore.keys(objstore.objects_dir(d)) if k.endswith(".trash")}


def test_if_match_replaces_and_412_when_stale(dripd):
    d = dripd
    v1 = put(d, "/a/cat.jpg", b"one")["media"]
    body, etag = content(d, v1["id"])
    assert body == b"one"
    d.json("POST", "/v1/media/%s/shares" % v1["id"], {"user": "bob"}, expect=201)
    n_objects = len(objects(d))
    # a taken path without If-Match stays a 409, which says what to send
    st, _, b = d.curl("-T", "/dev/null", d.url("/v1/files/a/cat.jpg"))
    assert st == 409 and b"If-Match" in b, b
    # another ETag, a weak one, a file that is not there: 412 before the body
    for hdr, path in (('"0123"', "/a/cat.jpg"), ("W/" + etag, "/a/cat.jpg"),
                      (etag, "/a/dog.jpg"), ("*", "/a/dog.jpg")):
        doc = put(d, path, b"x", "-H", "If-Match: " + hdr, expect=412)
        assert doc["status"] == 412
    put(d, "/a/cat.jpg", b"x", "-H", "If-Match: nonsense", expect=400)
    # the right ETag replaces it: a new media, version 2 of the same file
    doc = put(d, "/a/cat.jpg", b"two", "-H", "If-Match: " + etag)
    v2 = doc["media"]
    assert v2["path"] == "/a/cat.jpg" and v2["version"] == 2 and v2["replaces"] == v1["id"]
    assert list(files(d, "/a")) == ["cat.jpg"]
    assert files(d, "/a")["cat.jpg"]["id"] == v2["id"]
    assert content(d, v2["id"])[0] == b"two"
    # versions.keep 0: the old version is gone, its object deleted by the sweep
    d.json("GET", "/v1/media/" + v1["id"], expect=404)
    wait_until(lambda: len(objects(d)) == n_objects, 20, "the replaced object to go")
    # the share followed the file
    assert d.json("GET", "/v1/media/" + v2["id"], user="bob", expect=200)[1]["path"] == "/a/cat.jpg"
    # the ETag moved on: the old one is stale now; "*" replaces whatever is there
    put(d, "/a/cat.jpg", b"three", "-H", "If-Match: " + etag, expect=412)
    new_etag = content(d, v2["id"])[1]
    v3 = put(d, "/a/cat.jpg", b"three", "-H", "If-Match: %s, %s" % (etag, new_etag))["media"]
    assert v3["version"] == 3
    v4 = put(d, "/a/cat.jpg", b"four", "-H", "If-Match: *")["media"]
    assert v4["version"] == 4 and content(d, v4["id"])[0] == b"four"
    # of two writers with the same ETag, one wins and the other gets 412,
    # whether or not the first one's upload is stored yet
    e4 = content(d, v4["id"])[1]
    first = put(d, "/a/cat.jpg", b"five", "-H", "If-Match: " + e4, wait=False)
    put(d, "/a/cat.jpg", b"six", "-H", "If-Match: " + e4, expect=412)
    d.wait_job(first["job"]["id"])
    assert content(d, files(d, "/a")["cat.jpg"]["id"])[0] == b"five"


def test_conflict_rename_keeps_both(dripd):
    d = dripd
    put(d, "/b/cat.jpg", b"one")
    got = [put(d, "/b/cat.jpg", b"n%d" % i, query="?conflict=rename")["media"]["path"]
           for i in range(2)]
    assert got == ["/b/cat (1).jpg", "/b/cat (2).jpg"]
    assert put(d, "/b/.hidden", b"h")["media"]["path"] == "/b/.hidden"
    assert put(d, "/b/.hidden", b"h", query="?conflict=rename")["media"]["path"] == \
        "/b/.hidden (1)"
    # a free path keeps its name
    assert put(d, "/b/dog.jpg", b"d", query="?conflict=rename")["media"]["path"] == "/b/dog.jpg"
    assert sorted(files(d, "/b")) == [".hidden", ".hidden (1)", "cat (1).jpg", "cat (2).jpg",
                                      "cat.jpg", "dog.jpg"]
    put(d, "/b/cat.jpg", b"x", query="?conflict=overwrite", expect=400)
    put(d, "/b/cat.jpg", b"x", "-H", "If-Match: *", query="?conflict=rename", expect=400)


def test_multipart_conflict_rename(dripd):
    d = dripd
    put(d, "/m/cat.jpg", b"one")
    a = os.path.join(d.dir, "cat.jpg")
    with open(a, "wb") as f:
        f.write(b"again")
    st, _, b = d.curl("-F", "file=@%s" % a, d.url("/v1/files/m"))
    assert st == 409, b
    st, _, b = d.curl("-F", "file=@%s" % a, "-F", "file=@%s" % a, d.url("/v1/files/m?conflict=rename"))
    assert st == 202, b
    ups = json.loads(b)["uploads"]
    assert [u["media"]["path"] for u in ups] == ["/m/cat (1).jpg", "/m/cat (2).jpg"]
    st, _, b = d.curl("-H", "If-Match: *", "-F", "file=@%s" % a, d.url("/v1/files/m"))
    assert st == 400, b


def versions(d, mid, user="alice"):
    doc = d.json("GET", "/v1/media/%s/versions" % mid, user=user, expect=200)[1]
    return [(v["version"], v.get("retired", "")) for v in doc["versions"]], doc


def test_versions_kept_listed_restored(kept):
    d = kept
    v1 = put(d, "/v/doc.txt", b"one")["media"]
    etag = content(d, v1["id"])[1]
    d.json("POST", "/v1/media/%s/shares" % v1["id"], {"user": "bob"}, expect=201)
    v2 = put(d, "/v/doc.txt", b"two", "-H", "If-Match: " + etag)["media"]
    v3 = put(d, "/v/doc.txt", b"three", "-H", "If-Match: *")["media"]
    assert versions(d, v3["id"])[0] == [(3, ""), (2, "version"), (1, "version")]
    # any version's id names the file; the listing shows only the current one
    assert versions(d, v1["id"])[0] == versions(d, v3["id"])[0]
    assert list(files(d, "/v")) == ["doc.txt"] and files(d, "/v")["doc.txt"]["id"] == v3["id"]
    # an earlier version is its owner's to read, nobody else's
    assert content(d, v1["id"])[0] == b"one"
    d.json("GET", "/v1/media/" + v1["id"], user="bob", expect=404)
    d.json("GET", "/v1/media/%s/versions" % v3["id"], user="bob", expect=404)
    assert content(d, v3["id"], user="bob")[0] == b"three"
    # keep 2: a fourth version pushes the first out, objects included
    n_before = len(objects(d))
    v4 = put(d, "/v/doc.txt", b"four", "-H", "If-Match: *")["media"]
    assert versions(d, v4["id"])[0] == [(4, ""), (3, "version"), (2, "version")]
    wait_until(lambda: len(objects(d)) == n_before, 20, "version 1's object to go")
    d.json("GET", "/v1/media/" + v1["id"], expect=404)
    # restore version 2: it is the file again, at its path, shared as the file was
    st, m, _ = d.json("POST", "/v1/media/%s/versions/2/restore" % v4["id"], expect=200)
    assert m["id"] == v2["id"] and m["path"] == "/v/doc.txt" and "retired" not in m
    assert files(d, "/v")["doc.txt"]["id"] == v2["id"]
    assert content(d, v2["id"], user="bob")[0] == b"two"
    assert versions(d, v2["id"])[0] == [(2, ""), (4, "version"), (3, "version")]
    # the restored version's ETag is the file's: If-Match goes on from it
    v5 = put(d, "/v/doc.txt", b"five", "-H", "If-Match: " + content(d, v2["id"])[1])["media"]
    assert v5["version"] == 5
    d.json("POST", "/v1/media/%s/versions/9/restore" % v5["id"], expect=404)
    d.json("POST", "/v1/media/%s/versions/0/restore" % v5["id"], expect=404)
    d.json("POST", "/v1/media/%s/versions/3/restore" % v5["id"], user="bob", expect=404)
    d.json("GET", "/v1/media/%s/versions/3/restore" % v5["id"], expect=405)


@pytest.fixture(params=["sqlite", "postgres"])
def keep3(request, dripd_factory):
    return dripd_factory(config=backend_config(request, {"versions": {"keep": 3}}))


def test_lowering_versions_keep_trims_at_reload_and_start(keep3):
    """versions.keep lowered takes effect at once, not at each file's next
    replace: on a reload (SIGHUP) and at startup the extra earlier versions
    go, objects included."""
    import signal
    d = keep3
    ids = [put(d, "/k/a.txt", b"v%d" % i, *(() if i == 1 else ("-H", "If-Match: *")))["media"]["id"]
           for i in range(1, 5)]
    other = [put(d, "/k/b.txt", b"b%d" % i, *(() if i == 1 else ("-H", "If-Match: *")))["media"]["id"]
             for i in range(1, 3)]
    assert versions(d, ids[3])[0] == [(4, ""), (3, "version"), (2, "version"), (1, "version")]
    n = len(objects(d))
    d.config["versions"]["keep"] = 1
    d.write_config()
    k = d.notify.count()
    d.signal(signal.SIGHUP)
    d.wait_ready(start=d.notify.wait("RELOADING=1", start=k) + 1)
    wait_until(lambda: versions(d, ids[3])[0] == [(4, ""), (3, "version")], 30,
               "versions beyond keep 1 to go")
    wait_until(lambda: len(objects(d)) == n - 2, 30, "their objects to go")
    assert versions(d, other[1])[0] == [(2, ""), (1, "version")]  # within keep: stays
    assert d.stop() == 0
    d.config["versions"]["keep"] = 0
    d.write_config()
    d.restart()
    wait_until(lambda: versions(d, ids[3])[0] == [(4, "")] and
               versions(d, other[1])[0] == [(2, "")], 30, "every earlier version to go")
    wait_until(lambda: len(objects(d)) == n - 4, 30, "their objects to go")
    assert content(d, ids[3])[0] == b"v4"


def test_trash_delete_restore(kept):
    d = kept
    m = put(d, "/t/a.txt", b"aaa")["media"]
    d.json("POST", "/v1/media/%s/shares" % m["id"], {"user": "bob"}, expect=201)
    link = d.json("POST", "/v1/media/%s/public-links" % m["id"], {}, expect=201)[1]
    d.json("DELETE", "/v1/media/" + m["id"], expect=204)
    assert files(d, "/t") == {} and marks(d) == {m["id"]}
    d.json("GET", "/v1/media/" + m["id"], user="bob", expect=404)
    st, _, _ = d.curl(link["url"], user=None)
    assert st == 404
    st, doc, _ = d.json("GET", "/v1/trash", expect=200)
    assert [f["id"] for f in doc["files"]] == [m["id"]] and doc["ttl_seconds"] == 3600
    t = doc["files"][0]
    assert t["retired"] == "trash" and t["path"] == "/t/a.txt" and t["expires_at"] > t["retired_at"]
    assert d.json("GET", "/v1/trash", user="bob", expect=200)[1]["files"] == []
    # restore: back at its path, shared and linked as before
    d.json("POST", "/v1/trash/%s/restore" % m["id"], user="bob", expect=404)
    st, back, _ = d.json("POST", "/v1/trash/%s/restore" % m["id"], expect=200)
    assert back["path"] == "/t/a.txt" and "retired" not in back
    assert content(d, m["id"], user="bob")[0] == b"aaa"
    assert d.curl(link["url"], user=None)[0] == 200
    assert d.json("GET", "/v1/trash", expect=200)[1]["files"] == [] and marks(d) == set()
    d.json("POST", "/v1/trash/%s/restore" % m["id"], expect=404)
    # its path taken meanwhile: 409, the file stays in the trash
    d.json("DELETE", "/v1/media/" + m["id"], expect=204)
    put(d, "/t/a.txt", b"new")
    d.json("POST", "/v1/trash/%s/restore" % m["id"], expect=409)
    # deleting what is in the trash deletes it for good, objects included
    n_before = len(objects(d))
    d.json("DELETE", "/v1/media/" + m["id"], expect=204)
    assert d.json("GET", "/v1/trash", expect=200)[1]["files"] == []
    assert len(objects(d)) == n_before - 1 and marks(d) == set()  # its mark went too


def test_folder_delete_goes_to_the_trash(kept):
    """With trash.ttl, deleting a folder moves its files to the trash (one
    transaction; no object leaves the store) as deleting a file does, and
    restoring them brings the folder back, versions, shares and links
    with them."""
    d = kept
    v1 = put(d, "/f/a.txt", b"one")["media"]
    a = put(d, "/f/a.txt", b"two", "-H", "If-Match: *")["media"]
    b = put(d, "/f/sub/b.txt", b"bee")["media"]
    keep = put(d, "/fx/c.txt", b"c")["media"]
    d.json("POST", "/v1/media/%s/shares" % a["id"], {"user": "bob"}, expect=201)
    link = d.json("POST", "/v1/media/%s/public-links" % b["id"], {}, expect=201)[1]
    d.json("POST", "/v1/folders", {"path": "/f/empty"}, expect=201)
    n = len(objects(d))
    st, doc, _ = d.json("DELETE", "/v1/folders?path=/f", expect=200)
    assert doc == {"path": "/f", "files": 2, "trash": True}, doc
    assert "f" not in [x["name"] for x in d.json("GET", "/v1/media?folder=/", expect=200)[1]["folders"]]
    assert files(d, "/fx")["c.txt"]["id"] == keep["id"]
    d.json("GET", "/v1/media/" + a["id"], user="bob", expect=404)
    assert d.curl(link["url"], user=None)[0] == 404
    assert len(objects(d)) == n  # nothing left the store
    assert marks(d) == {a["id"], b["id"]}  # what a rebuilt catalog puts back in the trash
    st, doc, _ = d.json("GET", "/v1/trash", expect=200)
    assert sorted((f["id"], f["path"]) for f in doc["files"]) == sorted(
        [(a["id"], "/f/a.txt"), (b["id"], "/f/sub/b.txt")]), doc
    d.json("DELETE", "/v1/folders?path=/f", expect=404)  # nothing live there now
    for m in (a, b):
        d.json("POST", "/v1/trash/%s/restore" % m["id"], expect=200)
    assert sorted(files(d, "/f")) == ["a.txt"] and sorted(files(d, "/f/sub")) == ["b.txt"]
    assert content(d, a["id"], user="bob")[0] == b"two"
    assert d.curl(link["url"], user=None)[0] == 200
    assert [v for v, _ in versions(d, a["id"])[0]] == [2, 1]
    assert content(d, v1["id"])[0] == b"one"
    assert d.json("GET", "/v1/trash", expect=200)[1]["files"] == []


def test_trash_expires(dripd_factory):
    d = dripd_factory(config={"trash": {"ttl": "1s"}, "versions": {"keep": 1}})
    m = put(d, "/e/a.txt", b"aaa")["media"]
    put(d, "/e/a.txt", b"bbb", "-H", "If-Match: *")
    assert len(versions(d, m["id"])[0]) == 2
    n = len(objects(d))
    d.json("DELETE", "/v1/media/" + files(d, "/e")["a.txt"]["id"], expect=204)
    # after trash.ttl the sweep deletes the file and its earlier version
    wait_until(lambda: d.json("GET", "/v1/trash")[1]["files"] == [], 30, "the trash to expire")
    wait_until(lambda: len(objects(d)) == n - 2, 30, "both objects to go")
    d.json("GET", "/v1/media/" + m["id"], expect=404)


def ctl(d, *args, user="alice"):
    env = dict(os.environ, DRIPD_URL=d.url(), DRIPD_TOKEN=d.token(user), HOME=d.dir)
    r = subprocess.run([os.environ["DRIPCTL_BIN"]] + list(args), capture_output=True, text=True,
                       env=env, timeout=60)
    return r.returncode, r.stdout, r.stderr


def test_dripctl_versions_and_trash(kept):
    d = kept
    v1 = put(d, "/c/n.txt", b"one")["media"]
    v2 = put(d, "/c/n.txt", b"two", "-H", "If-Match: *")["media"]
    code, out, err = ctl(d, "versions", "/c/n.txt")
    assert code == 0, err
    rows = out.splitlines()[1:]
    assert rows[0].split()[:2] == ["2", v2["id"]] and "(current)" in rows[0]
    assert rows[1].split()[:2] == ["1", v1["id"]] and "(current)" not in rows[1]
    code, out, err = ctl(d, "restore", "/c/n.txt", "1")
    assert code == 0 and v1["id"] in out, (out, err)
    assert files(d, "/c")["n.txt"]["id"] == v1["id"]
    assert ctl(d, "restore", "/c/n.txt", "7")[0] != 0
    assert ctl(d, "restore", "/c/n.txt", "x")[0] != 0
    assert ctl(d, "rm", "/c/n.txt")[0] == 0
    code, out, err = ctl(d, "trash")
    assert code == 0 and v1["id"] in out and "/c/n.txt" in out, (out, err)
    code, out, err = ctl(d, "untrash", v1["id"])
    assert code == 0 and "/c/n.txt" in out, (out, err)
    assert files(d, "/c")["n.txt"]["id"] == v1["id"]
    assert ctl(d, "untrash", v1["id"])[0] != 0


def test_web_versions_and_trash(dripd_factory):
    """The web UI in Chromium (tests/node/web_versions.mjs): a file's
    versions, restoring one; a delete into the trash and back; an upload
    onto a taken name replaced (a new version) or kept beside it; a 65 MiB
    file sent as 4 tus partial uploads and a final one."""
    d = dripd_factory(config={"versions": {"keep": 3}, "trash": {"ttl": "1d"}})
    node_dir = os.path.join(ROOT, "tests", "node")
    assert os.path.exists("/usr/bin/chromium"), "Debian chromium is missing: make deps"
    assert os.path.isdir(os.path.join(node_dir, "node_modules", "playwright-core")), \
        "playwright-core is missing: sh scripts/node-deps.sh"
    shots = os.path.join(ARTIFACTS, "web")
    os.makedirs(shots, exist_ok=True)
    r = subprocess.run(["node", os.path.join(node_dir, "web_versions.mjs"), d.url(), d.token("alice"),
                        shots], capture_output=True, text=True, timeout=300, cwd=node_dir)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "browser test failed: %s\n%s\n%s" % (
        res.get("error"), r.stderr[-3000:], d.log_tail())
    assert res["steps"] == ["list versions and restore one", "delete into the trash and restore",
                            "upload onto a taken name: replace or keep both",
                            "a big file goes up as parallel parts",
                            "delete a folder into the trash and restore its files"]


def abs_url(d, location):
    return location if location.startswith("http") else d.url(location)


def tus_upload(d, folder, name, data, *create_args, query="", create_expect=201):
    """A tus creation (with create_args: headers) and one PATCH; the
    creation's status, then the PATCH's status and headers."""
    meta = "filename %s,folder %s" % (base64.b64encode(name.encode()).decode(),
                                      base64.b64encode(folder.encode()).decode())
    st, h, b = d.curl("-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H",
                      "Upload-Length: %d" % len(data), "-H", "Upload-Metadata: " + meta,
                      *create_args, d.url("/v1/uploads" + query))
    assert st == create_expect, (st, b[:300])
    if st != 201:
        return st, None
    path = os.path.join(d.dir, "chunk.bin")
    with open(path, "wb") as f:
        f.write(data)
    st, h, b = d.curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                      "-H", "Content-Type: application/offset+octet-stream",
                      "--data-binary", "@" + path, abs_url(d, h["location"]))
    return st, h


def test_tus_if_match_and_rename(dripd):
    d = dripd
    v1 = put(d, "/u/a.txt", b"one")["media"]
    etag = content(d, v1["id"])[1]
    tus_upload(d, "/u", "a.txt", b"x", create_expect=409)
    tus_upload(d, "/u", "a.txt", b"x", "-H", 'If-Match: "00"', create_expect=412)
    st, h = tus_upload(d, "/u", "a.txt", b"two", "-H", "If-Match: " + etag)
    assert st == 204, (st, h)
    mid = h["upload-media"]
    d.wait_job(h["upload-job"])
    assert files(d, "/u")["a.txt"]["id"] == mid and content(d, mid)[0] == b"two"
    assert d.json("GET", "/v1/media/" + mid, expect=200)[1]["version"] == 2
    # the ETag moved on between creation and the last PATCH: 412, terminated
    e2 = content(d, mid)[1]
    meta = "filename %s,folder %s" % (base64.b64encode(b"a.txt").decode(),
                                      base64.b64encode(b"/u").decode())
    st, h, _ = d.curl("-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Length: 5",
                      "-H", "Upload-Metadata: " + meta, "-H", "If-Match: " + e2,
                      d.url("/v1/uploads"))
    assert st == 201
    loc = abs_url(d, h["location"])
    put(d, "/u/a.txt", b"three", "-H", "If-Match: *")
    st, _, b = d.curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                      "-H", "Content-Type: application/offset+octet-stream",
                      "--data-binary", "stale", loc)
    assert st == 412, (st, b)
    assert d.curl("-I", "-H", "Tus-Resumable: 1.0.0", loc)[0] == 404
    # ?conflict=rename on the creation
    st, h = tus_upload(d, "/u", "a.txt", b"four", query="?conflict=rename")
    assert st == 204
    d.wait_job(h["upload-job"])
    assert d.json("GET", "/v1/media/" + h["upload-media"], expect=200)[1]["path"] == "/u/a (1).txt"


def test_dripctl_upload_replace_if_match_rename(dripd_factory):
    """dripctl upload on a taken name: a conflict (exit 5) by default;
    --replace and --if-match ETAG make a new version (the old one kept),
    a stale --if-match is exit 5 and changes nothing; --conflict=rename
    keeps both and says the name it got."""
    d = dripd_factory(config={"versions": {"keep": 2}})
    src = os.path.join(d.dir, "n.txt")

    def up(data, *opts):
        with open(src, "wb") as f:
            f.write(data)
        return ctl(d, "--json", "upload", src, "--to", "/c", "--wait", *opts)

    code, out, err = up(b"one")
    assert code == 0, err
    v1 = json.loads(out)[0]["media_id"]
    etag1 = content(d, v1)[1]
    code, out, err = up(b"two")
    res = json.loads(out)[0]
    assert code == 5 and res["status"] == 409 and "If-Match" in res["error"], (code, out)
    code, out, err = up(b"two", "--replace")
    assert code == 0, err
    v2 = json.loads(out)[0]["media_id"]
    assert json.loads(out)[0]["path"] == "/c/n.txt"
    assert files(d, "/c")["n.txt"]["id"] == v2 and content(d, v2)[0] == b"two"
    assert [v["id"] for v in versions(d, v2)[1]["versions"]] == [v2, v1]
    # --if-match with the ETag that moved on: exit 5, nothing changes
    code, out, err = up(b"three", "--if-match", etag1)
    res = json.loads(out)[0]
    assert code == 5 and res["status"] == 412 and "has changed" in res["error"], (code, out)
    assert files(d, "/c")["n.txt"]["id"] == v2
    # the current ETag, bare or quoted as the server gives it
    etag2 = content(d, v2)[1]
    code, out, err = up(b"three", "--if-match", etag2.strip('"'))
    assert code == 0, err
    v3 = json.loads(out)[0]["media_id"]
    assert files(d, "/c")["n.txt"]["id"] == v3 and content(d, v3)[0] == b"three"
    code, out, err = up(b"four", "--conflict=rename")
    assert code == 0, err
    res = json.loads(out)[0]
    assert res["path"] == "/c/n (1).txt", res
    got = files(d, "/c")
    assert got["n.txt"]["id"] == v3 and got["n (1).txt"]["id"] == res["media_id"]
    # without --json it says where the file went
    code, out, err = ctl(d, "upload", src, "--to", "/c", "--conflict=rename")
    assert code == 0 and "-> /c/n (2).txt" in out, (out, err)
    # usage: the three exclude each other; --conflict takes only rename
    assert ctl(d, "upload", src, "--replace", "--conflict=rename")[0] == 2
    assert ctl(d, "upload", src, "--conflict=skip")[0] == 2

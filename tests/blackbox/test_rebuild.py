"""dripd --rebuild-catalog: after catalog.db is lost, the media rows come back
from the sealed objects' headers, for the local store and for S3 (s3rver).

Each test: upload media for two users in folders, remember what the API
shows, stop the daemon, delete catalog.db* (and the plaintext cache, so
downloads must come from the store), run `dripd -c FILE --rebuild-catalog`,
start again, and compare.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess


import objstore
from conftest import DRIPD, ROOT, make_file, same_file, wait_until
from s3util import aws, s3_config, s3rver  # noqa: F401

MiB = 1 << 20

FILES = [  # (user, remote path, size)
    ("alice", "/photos/cat.jpg", 150 * 1024),
    ("alice", "/photos/2026/dog.png", 0),
    ("alice", "/docs/report.pdf", 3 * MiB),
    ("alice", "/top.txt", 10),
    ("bob", "/music/song.mp3", 1 * MiB + 7),
]


def snapshot(d, ids):
    """What the API shows: every listing on the way to every file, and each media."""
    out = {}
    folders = {"/"}
    for user, path, _size in FILES:
        parts = path.split("/")[1:-1]
        for i in range(len(parts) + 1):
            folders.add("/" + "/".join(parts[:i]) if i else "/")
    for user in ("alice", "bob"):
        for folder in sorted(folders):
            st, doc, _h = d.json("GET", "/v1/media?folder=" + folder, user=user)
            assert st == 200, (st, doc)
            out[(user, folder)] = doc
    for mid in ids:
        for user in ("alice", "bob"):
            st, doc, _h = d.json("GET", "/v1/media/" + mid, user=user)
            out[(user, mid)] = (st, doc)
    return out


def populate(d, tmp_path):
    srcs, ids = {}, []
    jobs = []
    for i, (user, path, size) in enumerate(FILES):
        local = make_file(str(tmp_path / ("src%d" % i)), size)
        st, doc = d.put_file(local, path, user=user)
        assert st == 202, (st, doc)
        mid = doc["media"]["id"]
        srcs[mid] = (user, local)
        ids.append(mid)
        jobs.append((doc["job"]["id"], user))
    for jid, user in jobs:
        job = d.wait_job(jid, user=user, timeout=120)
        assert job["state"] == "done", job
    return srcs, ids


def lose_catalog(d):
    assert d.stop() == 0
    gone = [f for f in os.listdir(d.data_dir) if f.startswith("catalog.db")]
    assert "catalog.db" in gone
    for f in gone:
        os.unlink(os.path.join(d.data_dir, f))
    shutil.rmtree(os.path.join(d.data_dir, "cache"), ignore_errors=True)


def rebuild(d):
    r = subprocess.run([DRIPD, "-c", d.config_path, "--rebuild-catalog"], cwd=d.dir,
                       capture_output=True, timeout=300)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 0, "rebuild exited %d:\n%s" % (r.returncode, err)
    m = re.search(r"rebuild: (\d+) objects, (\d+) media restored \(and \d+ variants, \d+ metadata\), "
                  r"(\d+) skipped(?: \((.*)\))?", err)
    assert m, err
    return int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4) or "", err


def without_uploaded_at(doc):
    """The listing minus uploaded_at, which a rebuild cannot know (the objects
    do not record when they reached the store; rebuild sets it to created_at)."""
    if isinstance(doc, dict):
        return {k: without_uploaded_at(v) for k, v in doc.items() if k != "uploaded_at"}
    if isinstance(doc, (list, tuple)):
        return [without_uploaded_at(v) for v in doc]
    return doc


def media_docs(doc):
    if isinstance(doc, dict):
        if "uploaded_at" in doc:
            yield doc
        for v in doc.values():
            yield from media_docs(v)
    elif isinstance(doc, (list, tuple)):
        for v in doc:
            yield from media_docs(v)


def check_rebuild(d, tmp_path, extra_objects=0):
    srcs, ids = populate(d, tmp_path)
    before = snapshot(d, ids)
    # A share: shares are not in the objects, so it must not come back (the
    # snapshot above is from before it, so it is what a rebuild gives).
    shared = ids[0]
    st, _doc, _h = d.json("POST", "/v1/media/%s/shares" % shared, body={"user": "bob"})
    assert st in (200, 201, 204), st
    st, _doc, _h = d.json("GET", "/v1/media/" + shared, user="bob")
    assert st == 200

    lose_catalog(d)
    n, restored, skipped, reasons, _err = rebuild(d)
    assert (n, restored, skipped) == (len(FILES) + extra_objects, len(FILES), extra_objects), (
        n, restored, skipped, reasons)

    d.restart()
    after = snapshot(d, ids)
    for k in before:
        assert without_uploaded_at(after[k]) == without_uploaded_at(before[k]), (
            "%r differs:\nbefore %r\nafter  %r" % (k, before[k], after[k]))
        for m in media_docs(after[k]):
            assert m["uploaded_at"] == m["created_at"], m
    assert sum(1 for k in after for _m in media_docs(after[k])) >= len(FILES)
    st, _doc, _h = d.json("GET", "/v1/media/" + shared, user="bob")
    assert st == 404, "shares are not restored by a rebuild"
    for mid, (user, local) in srcs.items():
        st, _h, body = d.curl(d.url("/v1/media/%s/content" % mid), user=user, timeout=120)
        assert st == 200, (mid, st, body[:200])
        got = str(tmp_path / ("got-" + mid))
        with open(got, "wb") as f:
            f.write(body)
        assert same_file(local, got), mid

    # Running it again restores nothing and changes nothing.
    assert d.stop() == 0
    n2, restored2, skipped2, reasons2, _ = rebuild(d)
    assert (n2, restored2, skipped2) == (n, 0, n), (n2, restored2, skipped2)
    assert "%d already in the catalog" % len(FILES) in reasons2
    d.restart()
    assert without_uploaded_at(snapshot(d, ids)[("alice", "/")]) == without_uploaded_at(
        before[("alice", "/")])
    return reasons


def test_rebuild_local_store(dripd_factory, tmp_path):
    d = dripd_factory()
    check_rebuild(d, tmp_path)


def test_rebuild_keeps_versions_and_the_trash(dripd_factory, tmp_path):
    """A file replaced twice (versions.keep 2) has three objects at one
    path: the rebuild makes the newest the file and the others its earlier
    versions (listed, restorable), not three files fighting for the path.
    Files in the trash (trash.ttl; deleted one by one or with their folder)
    come back in the trash, thanks to their trash marks; a file restored
    from the trash comes back live; a trashed file whose path a new upload
    took is in the trash beside it."""
    d = dripd_factory(config={"versions": {"keep": 2}, "trash": {"ttl": "1h"}})

    def put(path, data, *args):
        local = tmp_path / "up.bin"
        local.write_bytes(data)
        st, _h, body = d.curl("-T", str(local), *args, d.url("/v1/files" + path))
        assert st == 202, body
        doc = json.loads(body)
        assert d.wait_job(doc["job"]["id"])["state"] == "done"
        return doc["media"]["id"]

    ids = [put("/v/a.txt", b"one"), put("/v/a.txt", b"two!", "-H", "If-Match: *"),
           put("/v/a.txt", b"three", "-H", "If-Match: *")]
    b = put("/v/b.txt", b"b")
    t = put("/v/t.txt", b"t")
    r = put("/v/r.txt", b"r")
    x_old = put("/v/x.txt", b"x old")
    f1, f2 = put("/f/1.txt", b"1"), put("/f/sub/2.txt", b"2")
    for mid in (t, r, x_old):
        d.json("DELETE", "/v1/media/" + mid, expect=204)
    d.json("POST", "/v1/trash/%s/restore" % r, expect=200)
    x_new = put("/v/x.txt", b"x new")
    st, doc, _ = d.json("DELETE", "/v1/folders?path=/f", expect=200)
    assert doc["trash"] is True
    marks = {k for k in objstore.keys(objstore.objects_dir(d)) if k.endswith(".trash")}
    assert marks == {m + ".trash" for m in (t, x_old, f1, f2)}, marks
    st, before, _ = d.json("GET", "/v1/media/%s/versions" % ids[2])
    assert [v["id"] for v in before["versions"]] == [ids[2], ids[1], ids[0]]

    lose_catalog(d)
    n, restored, skipped, reasons, _err = rebuild(d)
    assert (restored, skipped) == (10, 0), (n, restored, skipped, reasons)
    d.restart()
    st, doc, _ = d.json("GET", "/v1/media?folder=/v")
    assert sorted((f["name"], f["id"]) for f in doc["files"]) == sorted(
        [("a.txt", ids[2]), ("b.txt", b), ("r.txt", r), ("x.txt", x_new)]), doc
    st, after, _ = d.json("GET", "/v1/media/%s/versions" % ids[2])
    assert [(v["id"], v["version"], v.get("retired", "")) for v in after["versions"]] == [
        (ids[2], 3, ""), (ids[1], 2, "version"), (ids[0], 1, "version")], after
    st, _h, body = d.curl(d.url("/v1/media/%s/content" % ids[0]))
    assert st == 200 and body == b"one"
    st, m, _ = d.json("POST", "/v1/media/%s/versions/1/restore" % ids[2])
    assert st == 200 and m["id"] == ids[0] and m["path"] == "/v/a.txt", m
    st, trash, _ = d.json("GET", "/v1/trash")
    assert sorted(f["id"] for f in trash["files"]) == sorted([t, x_old, f1, f2]), trash
    root = d.json("GET", "/v1/media?folder=/", expect=200)[1]
    assert [x["name"] for x in root["folders"]] == ["v"], root  # /f's files are in the trash
    # restoring them brings the folder back, and drops their marks
    for mid in (f1, f2):
        d.json("POST", "/v1/trash/%s/restore" % mid, expect=200)
    st, _h, body = d.curl(d.url("/v1/media/%s/content" % f2))
    assert st == 200 and body == b"2"
    assert d.json("GET", "/v1/media?folder=/f/sub", expect=200)[1]["files"][0]["id"] == f2
    marks = {k for k in objstore.keys(objstore.objects_dir(d)) if k.endswith(".trash")}
    assert marks == {m + ".trash" for m in (t, x_old)}, marks


def test_rebuild_s3_store(dripd_factory, s3rver, tmp_path):  # noqa: F811
    d = dripd_factory(config=s3_config(s3rver.endpoint))
    # Something that is not a dripd object shares the bucket: it is skipped, named.
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"not sealed\n")
    aws(s3rver, "s3", "cp", str(junk), "s3://media/other-app/junk.txt")
    reasons = check_rebuild(d, tmp_path, extra_objects=1)
    assert "1 not dripd objects" in reasons, reasons


def test_rebuild_with_another_master_key_restores_nothing(dripd_factory, tmp_path):
    d = dripd_factory()
    populate(d, tmp_path)
    lose_catalog(d)
    key = os.path.join(d.data_dir, "master.key")
    with open(key, "w") as f:
        f.write("ab" * 32 + "\n")
    n, restored, skipped, reasons, err = rebuild(d)
    assert (n, restored, skipped) == (len(FILES), 0, len(FILES)), err
    assert "header not verifiable" in reasons, err


def test_rebuild_without_the_master_key_refuses(dripd_factory, tmp_path):
    d = dripd_factory()
    populate(d, tmp_path)
    lose_catalog(d)
    os.unlink(os.path.join(d.data_dir, "master.key"))
    r = subprocess.run([DRIPD, "-c", d.config_path, "--rebuild-catalog"], cwd=d.dir,
                       capture_output=True, timeout=60)
    assert r.returncode != 0
    assert b"master.key" in r.stderr, r.stderr
    assert not os.path.exists(os.path.join(d.data_dir, "master.key")), "rebuild must not invent a key"


def scrub(d):
    d.json("POST", "/v1/admin/scrub", expect=202)

    def done():
        st, doc, _ = d.json("GET", "/v1/admin/scrub")
        return doc if doc and doc.get("state") == "done" else None
    return wait_until(done, 120, "scrub to finish")


# tests/fixtures/seal/README.md: objects written by the version-1 sealer
V1_KEY = "".join("%02x" % b for b in range(0xa0, 0xc0))
V1 = [  # (fixture, media id, path, content type, plaintext)
    ("v1-3000.sealed", "01JD2Z8Q7W5N3K4M6P8R0T2V4X", "/photos/cat.jpg", "image/jpeg",
     bytes((7 * i + 3) % 256 for i in range(3000))),
    ("v1-empty.sealed", "01JD2Z8Q7W5N3K4M6P8R0T2V4Y", "/empty.txt", None, b""),
]


def test_version_1_objects_rebuild_download_and_scrub(dripd_factory, tmp_path):
    """Issue 17 item 10: objects sealed in format version 1 (before the
    header was encrypted) stay readable. --rebuild-catalog restores them,
    they download byte for byte, scrub verifies them and finds one that was
    damaged; a new upload beside them is version 2 and shows nothing in
    clear."""
    d = dripd_factory()
    assert d.stop() == 0
    for f in os.listdir(d.data_dir):
        if f.startswith("catalog.db"):
            os.unlink(os.path.join(d.data_dir, f))
    with open(os.path.join(d.data_dir, "master.key"), "w") as f:
        f.write(V1_KEY + "\n")
    objdir = objstore.objects_dir(d)
    keys = {}
    for name, mid, path, _ct, _plain in V1:
        keys[mid] = "%s_20241130T205320Z%s" % (mid, os.path.splitext(path)[1])
        shutil.copyfile(os.path.join(ROOT, "tests", "fixtures", "seal", name),
                        os.path.join(objdir, keys[mid]))
    n, restored, skipped, reasons, err = rebuild(d)
    assert (n, restored, skipped) == (2, 2, 0), (reasons, err)
    d.restart()
    for name, mid, path, ct, plain in V1:
        st, doc, _h = d.json("GET", "/v1/media/" + mid)
        assert st == 200, doc
        assert (doc["path"], doc["size"], doc["owner"], doc["state"]) == (
            path, len(plain), "alice", "available"), doc
        assert doc["sha256"] == hashlib.sha256(plain).hexdigest(), doc
        assert doc.get("content_type") == ct or (ct is None and not doc.get("content_type")), doc
        st, _h, body = d.curl(d.url("/v1/media/%s/content" % mid))
        assert st == 200 and body == plain, (mid, st, len(body))
    # a new upload is sealed in version 2: nothing about it in clear
    local = make_file(str(tmp_path / "new.bin"), 5000)
    st, doc = d.put_file(local, "/secret-folder/new-upload.bin")
    assert st == 202, doc
    new_id = doc["media"]["id"]
    assert d.wait_job(doc["job"]["id"])["state"] == "done"
    # 5000 bytes: a row of objects/.small.db, not a file (objstore.py)
    new_obj = objstore.matching(objdir, new_id + "*")
    assert len(new_obj) == 1, sorted(objstore.keys(objdir))
    raw = objstore.read(objdir, new_obj[0])
    assert raw[:8] == b"DRIPD1\x00\x02", raw[:8]
    for secret in (b"alice", b"secret-folder", b"new-upload", new_id.encode()):
        assert secret not in raw, secret
    # scrub reads both versions, then finds the damaged version-1 object
    doc = scrub(d)
    assert doc["checked"] == 3 and doc["corrupt"] == [] and doc["missing"] == [], doc
    objstore.flip(objdir, keys[V1[0][1]], 1500, 0x10)
    doc = scrub(d)
    assert [c["id"] for c in doc["corrupt"]] == [V1[0][1]], doc
    assert doc["checked"] == 3, doc

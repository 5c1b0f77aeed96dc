"""dripd --rebuild-catalog: after catalog.db is lost, the media rows come back
from the sealed objects' headers, for the local store and for S3 (s3rver).

Each test: upload media for two users in folders, remember what the API
shows, stop the daemon, delete catalog.db* (and the plaintext cache, so
downloads must come from the store), run `dripd -c FILE --rebuild-catalog`,
start again, and compare.
"""
import os
import re
import shutil
import subprocess


from conftest import DRIPD, make_file, same_file
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
    m = re.search(r"rebuild: (\d+) objects, (\d+) media restored \(and \d+ variants\), "
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

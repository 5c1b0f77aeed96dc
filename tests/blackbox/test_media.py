"""Media API black-box tests: listing, get, move/rename, delete, shares,
jobs and download warm-up, against the real daemon with curl."""
import hashlib
import os
import re
import urllib.parse

import objstore
from conftest import make_file, wait_until

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def upload(d, remote, size=100, user="alice", wait=True):
    """PUT a random file to remote; returns (media json, local path)."""
    local = os.path.join(d.dir, "up-%s" % hashlib.sha1(remote.encode()).hexdigest()[:12])
    make_file(local, size)
    st, doc = d.put_file(local, urllib.parse.quote(remote), user=user)
    assert st == 202, (st, doc)
    if wait:
        job = d.wait_job(doc["job"]["id"], user=user)
        assert job["state"] == "done", job
    return doc["media"], local


def get_media(d, mid, user="alice"):
    return d.json("GET", "/v1/media/" + mid, user=user)


def objects_for(d, mid):
    """The media's object keys (original, variants, metadata, trash mark):
    files and rows of objects/.small.db (objstore.py)."""
    return objstore.matching(objstore.objects_dir(d), mid + "*")


def test_listing_aggregates_folders(dripd):
    d = dripd
    upload(d, "/a/x.txt", 10)
    upload(d, "/a/b/y.txt", 20)
    upload(d, "/a/b/c/deep.txt", 7)
    upload(d, "/ab/z.txt", 30)
    upload(d, "/abc/w.txt", 5)
    upload(d, "/top.txt", 3)

    st, doc, _ = d.json("GET", "/v1/media?folder=/", expect=200)
    folders = {f["name"]: f for f in doc["folders"]}
    assert set(folders) == {"a", "ab", "abc"}
    assert (folders["a"]["files"], folders["a"]["size"]) == (3, 37)
    assert (folders["ab"]["files"], folders["ab"]["size"]) == (1, 30)
    assert (folders["abc"]["files"], folders["abc"]["size"]) == (1, 5)
    assert [f["name"] for f in doc["files"]] == ["top.txt"]

    # No folder parameter means the root.
    st, doc2, _ = d.json("GET", "/v1/media", expect=200)
    assert sorted(f["name"] for f in doc2["folders"]) == ["a", "ab", "abc"]

    st, doc, _ = d.json("GET", "/v1/media?folder=/a", expect=200)
    assert [f["name"] for f in doc["files"]] == ["x.txt"]
    assert [(f["name"], f["files"], f["size"]) for f in doc["folders"]] == [("b", 2, 27)]
    assert doc["files"][0]["path"] == "/a/x.txt"
    assert doc["files"][0]["folder"] == "/a"

    # "/ab" is not a prefix of "/abc": no leaking between sibling folders.
    st, doc, _ = d.json("GET", "/v1/media?folder=/ab", expect=200)
    assert [f["name"] for f in doc["files"]] == ["z.txt"]
    assert doc["folders"] == []

    st, doc, _ = d.json("GET", "/v1/media?folder=/nothing/here", expect=200)
    assert doc["files"] == [] and doc["folders"] == []

    # Another user sees none of it.
    st, doc, _ = d.json("GET", "/v1/media?folder=/", user="bob", expect=200)
    assert doc["files"] == [] and doc["folders"] == []
    st, doc, _ = d.json("GET", "/v1/media?folder=/a", user="bob", expect=200)
    assert doc["files"] == []


def test_listing_bad_folder_and_auth(dripd):
    d = dripd
    for bad in ("/a/../b", "a//b", "/a/./b", "/a/%00b"):
        st, doc, h = d.json("GET", "/v1/media?folder=" + urllib.parse.quote(bad, safe="/%"))
        assert st == 400, (bad, st, doc)
        assert h["content-type"].startswith("application/problem+json")
    st, _, b = d.curl(d.url("/v1/media"), user=None)
    assert st == 401


def test_get_media(dripd):
    d = dripd
    m, local = upload(d, "/photos/cat.bin", 1234)
    st, doc, _ = get_media(d, m["id"])
    assert st == 200
    for k in ("id", "path", "name", "size", "sha256", "content_type", "state", "owner", "created_at",
              "folder", "uploaded_at", "shared"):
        assert k in doc, k
    assert doc["id"] == m["id"]
    assert doc["path"] == "/photos/cat.bin"
    assert doc["name"] == "cat.bin"
    assert doc["folder"] == "/photos"
    assert doc["size"] == 1234
    assert doc["state"] == "available"
    assert doc["owner"] == "alice"
    assert doc["shared"] is False
    assert RFC3339.match(doc["created_at"]), doc["created_at"]
    assert RFC3339.match(doc["uploaded_at"]), doc["uploaded_at"]
    with open(local, "rb") as f:
        assert doc["sha256"] == hashlib.sha256(f.read()).hexdigest()

    # Not yours, absent, malformed: all 404 problem+json.
    st, doc, h = get_media(d, m["id"], user="bob")
    assert st == 404 and h["content-type"].startswith("application/problem+json")
    assert doc["status"] == 404 and "title" in doc and "detail" in doc
    assert get_media(d, "01ARZ3NDEKTSV4RRFFQ69G5FAV")[0] == 404
    assert get_media(d, "not-an-id")[0] == 404
    assert d.json("GET", "/v1/media/%s/nope" % m["id"])[0] == 404


def test_move_rename(dripd):
    d = dripd
    m, _ = upload(d, "/inbox/report.txt", 50)
    other, _ = upload(d, "/archive/taken.txt", 60)

    st, doc, _ = d.json("PATCH", "/v1/media/" + m["id"], {"path": "/archive/2024/report-final.txt"})
    assert st == 200, doc
    assert doc["path"] == "/archive/2024/report-final.txt"
    assert doc["name"] == "report-final.txt"
    assert doc["folder"] == "/archive/2024"
    st, doc, _ = get_media(d, m["id"])
    assert doc["path"] == "/archive/2024/report-final.txt"
    st, doc, _ = d.json("GET", "/v1/media?folder=/inbox", expect=200)
    assert doc["files"] == []
    st, doc, _ = d.json("GET", "/v1/media?folder=/archive", expect=200)
    assert [(f["name"], f["files"]) for f in doc["folders"]] == [("2024", 1)]

    # Rename in place.
    st, doc, _ = d.json("PATCH", "/v1/media/" + m["id"], {"path": "/archive/2024/r.txt"})
    assert st == 200 and doc["name"] == "r.txt"

    # Taken -> 409, nothing changes.
    st, doc, h = d.json("PATCH", "/v1/media/" + m["id"], {"path": "/archive/taken.txt"})
    assert st == 409, doc
    assert h["content-type"].startswith("application/problem+json")
    assert get_media(d, m["id"])[1]["path"] == "/archive/2024/r.txt"
    assert get_media(d, other["id"])[1]["path"] == "/archive/taken.txt"

    # Another user: 404, even for a path that would be free.
    st, doc, _ = d.json("PATCH", "/v1/media/" + m["id"], {"path": "/bob.txt"}, user="bob")
    assert st == 404

    # Bad bodies and paths: 400.
    for body in ({"path": "/a/../b.txt"}, {"path": "relative.txt"}, {"path": "/a/../dir/"},
                 {"path": "//"}, {"path": ""}, {"path": 5}, {}, ["/x.txt"]):
        st, doc, _ = d.json("PATCH", "/v1/media/" + m["id"], body)
        assert st == 400, (body, st, doc)
    st, _, _ = d.curl("-X", "PATCH", "-H", "Content-Type: application/json", "--data-binary",
                      "{not json", d.url("/v1/media/" + m["id"]))
    assert st == 400
    assert get_media(d, m["id"])[1]["path"] == "/archive/2024/r.txt"


def test_move_into_a_folder_keeps_the_name(dripd):
    """{"path": "/folder/"} moves the file in under its own name, as mv does."""
    d = dripd
    m, _ = upload(d, "/inbox/cat.jpg", 30)
    upload(d, "/pets/dog.jpg", 31)
    st, doc, _ = d.json("PATCH", "/v1/media/" + m["id"], {"path": "/pets/"})
    assert st == 200 and doc["path"] == "/pets/cat.jpg", doc
    st, doc, _ = d.json("PATCH", "/v1/media/" + m["id"], {"path": "/new/place/"})  # a new folder too
    assert st == 200 and doc["path"] == "/new/place/cat.jpg", doc
    st, doc, _ = d.json("PATCH", "/v1/media/" + m["id"], {"path": "/"})
    assert st == 200 and doc["path"] == "/cat.jpg" and doc["folder"] == "/", doc
    other, _ = upload(d, "/pets/cat.jpg", 32)
    st, doc, _ = d.json("PATCH", "/v1/media/" + m["id"], {"path": "/pets/"})
    assert st == 409 and "/pets/cat.jpg already exists" in doc["detail"], doc
    assert get_media(d, m["id"])[1]["path"] == "/cat.jpg"


def test_a_file_and_a_folder_never_share_a_path(dripd):
    """Per owner: no file where there is a folder, none below a file; each
    way in (PUT, multipart, tus, PATCH) says which, with 409."""
    d = dripd
    upload(d, "/photos/cat.jpg", 10)
    notes, _ = upload(d, "/notes.txt", 11)
    local = os.path.join(d.dir, "x.bin")
    make_file(local, 5)
    folder_msg = "is a folder (a file and a folder cannot share a path)"
    under_msg = "is inside a path that is a file (a file and a folder cannot share a path)"
    st, _, body = d.curl("-T", local, d.url("/v1/files/photos"))
    assert st == 409 and ("/photos " + folder_msg).encode() in body, body
    st, _, body = d.curl("-T", local, d.url("/v1/files/notes.txt/inside.bin"))
    assert st == 409 and ("/notes.txt/inside.bin " + under_msg).encode() in body, body
    st, _, body = d.curl("-F", "file=@%s;filename=photos" % local, d.url("/v1/files/"))
    assert st == 409 and folder_msg.encode() in body, body
    st, h, body = d.curl("-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Length: 5", "-H",
                         "Upload-Metadata: filename cGhvdG9z,folder Lw==", d.url("/v1/uploads"))  # /photos
    assert st == 409 and folder_msg.encode() in body, body
    st, doc, _ = d.json("PATCH", "/v1/media/" + notes["id"], {"path": "/photos"})
    assert st == 409 and doc["detail"] == "/photos " + folder_msg, doc
    m, _ = upload(d, "/inbox/a.txt", 12)
    st, doc, _ = d.json("PATCH", "/v1/media/" + m["id"], {"path": "/notes.txt/a.txt"})
    assert st == 409 and doc["detail"] == "/notes.txt/a.txt " + under_msg, doc
    # another user's tree is theirs: bob may have a file /photos
    st, _ = d.put_file(local, "/photos", user="bob")
    assert st == 202


def test_delete_removes_row_cache_and_object(dripd):
    d = dripd
    m, _ = upload(d, "/del/me.bin", 4096)
    assert objects_for(d, m["id"]), "the stored object should exist before the delete"

    # Bob cannot delete it, even once shared with him.
    assert d.json("POST", "/v1/media/%s/shares" % m["id"], {"user": "bob"})[0] == 201
    st, _, _ = d.json("DELETE", "/v1/media/" + m["id"], user="bob")
    assert st == 404
    assert get_media(d, m["id"])[0] == 200

    # Warm the cache so there is an entry to remove.
    st, _, body = d.curl(d.url("/v1/media/%s/content" % m["id"]))
    assert st == 200 and len(body) == 4096
    cache = os.path.join(d.data_dir, "cache", m["id"])
    assert os.path.exists(cache)

    st, h, body = d.curl("-X", "DELETE", d.url("/v1/media/" + m["id"]))
    assert st == 204 and body == b""
    assert get_media(d, m["id"])[0] == 404
    assert get_media(d, m["id"], user="bob")[0] == 404
    st, _, _ = d.curl(d.url("/v1/media/%s/content" % m["id"]))
    assert st == 404
    assert not os.path.exists(cache)
    assert objects_for(d, m["id"]) == []
    st, doc, _ = d.json("GET", "/v1/media?folder=/del", expect=200)
    assert doc["files"] == []

    # Twice: 404.
    assert d.json("DELETE", "/v1/media/" + m["id"])[0] == 404
    # The path is free again.
    upload(d, "/del/me.bin", 10)


def test_share(dripd):
    d = dripd
    m, local = upload(d, "/shared/doc.bin", 2000)
    url = "/v1/media/%s/shares" % m["id"]

    st, doc, _ = d.json("POST", url, {"user": "bob"})
    assert st == 201, doc
    assert doc["user"] == "bob" and doc["media_id"] == m["id"]
    st, doc, _ = d.json("POST", url, {"user": "bob"})
    assert st == 200, doc

    st, doc, _ = get_media(d, m["id"], user="bob")
    assert st == 200 and doc["owner"] == "alice" and doc["shared"] is True
    st, _, body = d.curl(d.url("/v1/media/%s/content" % m["id"]), user="bob")
    assert st == 200
    with open(local, "rb") as f:
        assert body == f.read()

    # Carol was not invited.
    assert get_media(d, m["id"], user="carol")[0] == 404
    assert d.curl(d.url("/v1/media/%s/content" % m["id"]), user="carol")[0] == 404

    # Only the owner shares, moves, deletes.
    assert d.json("POST", url, {"user": "carol"}, user="bob")[0] == 404
    assert d.json("PATCH", "/v1/media/" + m["id"], {"path": "/mine.bin"}, user="bob")[0] == 404
    assert d.json("DELETE", "/v1/media/" + m["id"], user="bob")[0] == 404
    assert get_media(d, m["id"], user="carol")[0] == 404

    # Unknown user -> 400; bad bodies -> 400; absent media -> 404.
    st, doc, _ = d.json("POST", url, {"user": "mallory"})
    assert st == 400 and "mallory" in doc["detail"]
    for body in ({}, {"user": ""}, {"user": 3}, "bob"):
        assert d.json("POST", url, body)[0] == 400, body
    assert d.json("POST", "/v1/media/01ARZ3NDEKTSV4RRFFQ69G5FAV/shares", {"user": "bob"})[0] == 404

    # Wrong method on a known sub-resource: 405 with Allow (GET lists the
    # shares: test_sharing.py).
    st, h, _ = d.curl("-X", "PATCH", d.url(url))
    assert st == 405 and "POST" in h.get("allow", "") and "GET" in h.get("allow", "")


def test_jobs_route(dripd):
    d = dripd
    local = make_file(os.path.join(d.dir, "j.bin"), 300)
    st, doc = d.put_file(local, "/jobs/j.bin")
    assert st == 202
    jid = doc["job"]["id"]
    st, job, _ = d.json("GET", "/v1/jobs/" + jid, expect=200)
    for k in ("id", "kind", "state", "stage", "media_id", "attempts", "error"):
        assert k in job, k
    assert job["id"] == jid and job["kind"] == "upload"
    assert job["media_id"] == doc["media"]["id"]
    assert job["state"] in ("queued", "running", "done")
    done = d.wait_job(jid)
    assert done["state"] == "done" and done["error"] is None and done["attempts"] == 0

    assert d.json("GET", "/v1/jobs/" + jid, user="bob")[0] == 404
    assert d.json("GET", "/v1/jobs/01ARZ3NDEKTSV4RRFFQ69G5FAV")[0] == 404
    assert d.json("GET", "/v1/jobs/garbage")[0] == 404


def test_download_warms_cache(dripd):
    d = dripd
    m, local = upload(d, "/warm/w.bin", 5000)
    cache = os.path.join(d.data_dir, "cache", m["id"])
    if os.path.exists(cache):
        os.unlink(cache)

    st, doc, h = d.json("POST", "/v1/media/%s/download" % m["id"])
    assert st == 202, doc
    job = doc["job"]
    assert job["kind"] == "download" and job["media_id"] == m["id"]
    assert h["location"] == "/v1/jobs/" + job["id"]
    done = d.wait_job(job["id"])
    assert done["state"] == "done", done
    assert os.path.exists(cache)
    with open(cache, "rb") as a, open(local, "rb") as b:
        assert a.read() == b.read()

    # Someone else's media: 404; their job: 404.
    assert d.json("POST", "/v1/media/%s/download" % m["id"], user="bob")[0] == 404
    assert d.json("GET", "/v1/jobs/" + job["id"], user="bob")[0] == 404

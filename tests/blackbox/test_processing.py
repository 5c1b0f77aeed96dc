"""The process stage (issue 14, docs/PROCESSING.md) against the real daemon:
real photos, video, PDF made at test time with Debian's tools (ffmpeg,
exiftool, vips), uploaded with curl, their metadata and variants read back
through the API and checked with vipsheader and exiftool; hostile files and
injected decoder failures never cost the original."""
import glob
import hashlib
import json
import os
import re
import subprocess
import time
import urllib.parse

import pytest

import objstore
from conftest import DRIPCTL, DRIPD, ROOT, make_file, pids_of, wait_until


def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, shell=True, capture_output=True, text=True)
    assert r.returncode == 0, "%s: %s" % (cmd, r.stderr)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    """Real inputs, made once per module: a missing tool fails the tests."""
    d = str(tmp_path_factory.mktemp("media"))
    run("ffmpeg -v error -y -f lavfi -i 'testsrc2=size=4000x3000:rate=1' -frames:v 1 -q:v 2 "
        "phone.jpg", d)
    run("exiftool -q -overwrite_original -Orientation#=6 -GPSLatitude=48.8584 "
        "-GPSLatitudeRef=N -GPSLongitude=2.2945 -GPSLongitudeRef=E "
        "-DateTimeOriginal='2024:05:01 12:34:56' -Model='Pixel 7' phone.jpg", d)
    run("ffmpeg -v error -y -f lavfi -i 'color=c=blue@0.5:size=640x480,format=rgba' "
        "-frames:v 1 alpha.png", d)
    run("ffmpeg -v error -y -f lavfi -i 'testsrc2=size=800x600' -frames:v 1 pic.webp", d)
    run("ffmpeg -v error -y -f lavfi -i 'testsrc2=size=320x240:rate=5' -t 2 anim.gif", d)
    run("ffmpeg -v error -y -f lavfi -i 'testsrc2=size=640x360:rate=25' -t 3 -c:v libx264 "
        "-pix_fmt yuv420p clip.mp4", d)
    run("vips copy pic.webp 'photo.heic[compression=hevc]'", d)
    with open(os.path.join(d, "doc.pdf"), "wb") as f:
        f.write(two_page_pdf())
    run("head -c 300000 phone.jpg > truncated.jpg && echo 'just text' > lying.jpg && "
        ": > empty.jpg && cp alpha.png notajpeg.jpg", d)
    with open(os.path.join(d, "bomb.png"), "wb") as f:
        f.write(png_bomb(50000, 50000))
    return d


def two_page_pdf():
    """A two-page US Letter PDF, each page a filled rectangle (no fonts)."""
    body = b"0 0 1 rg 100 100 412 592 re f"
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(body), body),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>"]
    out, offs = b"%PDF-1.4\n", []
    for i, o in enumerate(objs):
        offs.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (i + 1, o)
    xref = len(out)
    out += b"xref\n0 6\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % o for o in offs)
    out += b"trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % xref
    return out


def png_bomb(w, h):
    """A PNG whose header claims w x h RGBA pixels (a few dozen bytes)."""
    import struct
    import zlib

    def chunk(t, data):
        return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) +
            chunk(b"IEND", b""))


def upload(d, local, remote, user="alice", wait=True, stage="process"):
    """PUT; the job's first stage is process for media, encrypt for the rest."""
    st, h, b = d.curl("-T", local, d.url("/v1/files" + urllib.parse.quote(remote)), user=user)
    assert st == 202, (st, b[:300])
    doc = json.loads(b)
    assert doc["job"]["stage"] == stage
    if wait:
        job = d.wait_job(doc["job"]["id"], user=user)
        assert job["state"] == "done", job
    return doc["media"]["id"], doc["job"]["id"]


def media(d, mid, user="alice"):
    st, doc, _ = d.json("GET", "/v1/media/" + mid, user=user, expect=200)
    return doc


def variants(doc):
    return {v["name"]: v for v in doc["variants"]}


def fetch(d, mid, name, dest, *extra, user="alice"):
    st, h, body = d.curl(*extra, d.url("/v1/media/%s/variants/%s" % (mid, name)), user=user)
    if dest and st == 200:
        with open(dest, "wb") as f:
            f.write(body)
    return st, h, body


def vips_dims(path):
    w = subprocess.run(["vipsheader", "-f", "width", path], capture_output=True, text=True)
    h = subprocess.run(["vipsheader", "-f", "height", path], capture_output=True, text=True)
    assert w.returncode == 0, w.stderr
    return int(w.stdout), int(h.stdout)


def meta_tags(path):
    """EXIF, GPS, XMP and IPTC tags exiftool finds in a file."""
    r = subprocess.run(["exiftool", "-q", "-q", "-EXIF:all", "-GPS:all", "-XMP:all", "-IPTC:all",
                        "-s", path], capture_output=True, text=True)
    return [line for line in r.stdout.splitlines() if line.strip()]


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def original_intact(d, mid, local, user="alice"):
    st, _, body = d.curl(d.url("/v1/media/%s/content" % mid), user=user)
    assert st == 200
    assert hashlib.sha256(body).hexdigest() == sha256(local)


def test_phone_photo(dripd, media_dir, tmp_path):
    local = os.path.join(media_dir, "phone.jpg")
    mid, _ = upload(dripd, local, "/photos/phone.jpg")
    doc = media(dripd, mid)
    m = doc["metadata"]
    assert m["detected_type"] == "image/jpeg"
    assert (m["width"], m["height"]) == (3000, 4000)  # as displayed: orientation 6
    assert m["taken_at"] == "2024-05-01T12:34:56"
    assert m["camera"] == "Pixel 7"
    assert "duration_ms" not in m and "pages" not in m
    v = variants(doc)
    assert v["thumb"]["state"] == "available", v
    assert (v["thumb"]["width"], v["thumb"]["height"]) == (192, 256)
    assert v["thumb"]["content_type"] == "image/webp"
    assert (v["preview"]["width"], v["preview"]["height"]) == (960, 1280)
    assert v["preview"]["content_type"] == "image/jpeg"
    for name, want in (("thumb", (192, 256)), ("preview", (960, 1280))):
        out = str(tmp_path / name)
        st, h, body = fetch(dripd, mid, name, out)
        assert st == 200
        assert len(body) == v[name]["size"]
        assert h["content-type"] == v[name]["content_type"]
        assert h["content-disposition"].startswith("inline;")
        assert vips_dims(out) == want  # upright: portrait like the displayed photo
        assert meta_tags(out) == [], meta_tags(out)  # no EXIF, no GPS
    assert any("GPS" in t for t in meta_tags(local))  # the original keeps them
    original_intact(dripd, mid, local)


def test_tus_photo_and_video(dripd, media_dir, tmp_path):
    """The same through tus (tus-js-client, interrupted and resumed, the
    type sent as application/octet-stream): the phone photo gets its
    upright thumbnail without GPS and its metadata, the video its poster."""
    node_dir = os.path.join(ROOT, "tests", "node")
    assert os.path.isdir(os.path.join(node_dir, "node_modules", "tus-js-client")), \
        "tus-js-client is missing: sh scripts/node-deps.sh"
    got = {}
    for name in ("phone.jpg", "clip.mp4"):
        local = os.path.join(media_dir, name)
        r = subprocess.run(["node", os.path.join(node_dir, "tus_upload.mjs"),
                            "--endpoint", dripd.url("/v1/uploads"), "--token", dripd.token(),
                            "--file", local, "--folder", "/tus", "--interrupt", "chunk",
                            "--chunk-size", str(os.path.getsize(local) // 2 + 1),
                            "--store", str(tmp_path / (name + ".urls.json"))],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert dripd.wait_job(out["job"])["state"] == "done"
        got[name] = media(dripd, out["media"])
        original_intact(dripd, out["media"], local)
    photo, clip = got["phone.jpg"], got["clip.mp4"]
    assert photo["metadata"]["camera"] == "Pixel 7"
    assert (photo["metadata"]["width"], photo["metadata"]["height"]) == (3000, 4000)
    thumb = str(tmp_path / "thumb.webp")
    assert fetch(dripd, photo["id"], "thumb", thumb)[0] == 200
    assert vips_dims(thumb) == (192, 256) and meta_tags(thumb) == []
    assert clip["metadata"]["detected_type"] == "video/mp4" and clip["metadata"]["duration_ms"] > 0
    poster = str(tmp_path / "poster.webp")
    assert fetch(dripd, clip["id"], "thumb", poster)[0] == 200
    assert vips_dims(poster) == (256, 144)


def same_pixels(a, b, tmp_path):
    """The same decoded pixels (vips rawsave: the loaders do not rotate)."""
    ra, rb = str(tmp_path / "a.raw"), str(tmp_path / "b.raw")
    for src, dst in ((a, ra), (b, rb)):
        r = subprocess.run(["vips", "rawsave", src, dst], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    return sha256(ra) == sha256(rb)


def content(d, mid, dest, user="alice"):
    st, h, body = d.curl(d.url("/v1/media/%s/content" % mid), user=user)
    assert st == 200
    with open(dest, "wb") as f:
        f.write(body)
    return h


def test_strip_metadata_from_stored_originals(dripd_factory, media_dir, tmp_path):
    """processing.strip_metadata: the stored original loses EXIF, GPS and
    XMP (read back with exiftool) and keeps its pixels and its orientation;
    size, sha256 and ETag are those of the stored bytes. A truncated JPEG
    is stripped too, its image bytes kept. A format it cannot strip (HEIC)
    is stored as uploaded and says so; other files are not touched."""
    d = dripd_factory(config={"processing": {"strip_metadata": True}})
    local = os.path.join(media_dir, "phone.jpg")
    mid, _ = upload(d, local, "/private/phone.jpg")
    doc = media(d, mid)
    got = str(tmp_path / "got.jpg")
    h = content(d, mid, got)
    tags = meta_tags(got)
    assert not any(re.search(r"GPS|Model|DateTimeOriginal", t) for t in tags), tags
    assert tags == ["Orientation                     : Rotate 90 CW"], tags
    assert any("GPS" in t for t in meta_tags(local))  # the upload had them
    assert same_pixels(local, got, tmp_path)
    assert doc["metadata"]["stripped"] is True
    assert doc["metadata"]["camera"] == "Pixel 7"  # the record keeps what was found
    assert doc["size"] == os.path.getsize(got) < os.path.getsize(local)
    assert doc["sha256"] == sha256(got)
    assert h["etag"] == '"%s"' % sha256(got)
    assert variants(doc)["thumb"]["state"] == "available"
    # a Range of the stored bytes
    st, _, part = d.curl("-r", "0-99", d.url("/v1/media/%s/content" % mid))
    assert st == 206 and part == open(got, "rb").read()[:100]

    # a truncated photo: its metadata goes, its image bytes up to the cut stay
    cut = os.path.join(media_dir, "truncated.jpg")
    mid, _ = upload(d, cut, "/private/truncated.jpg")
    doc = media(d, mid)
    assert doc["metadata"]["stripped"] is True, doc
    assert {v["state"] for v in doc["variants"]} == {"failed"}, doc
    got = str(tmp_path / "got-cut.jpg")
    content(d, mid, got)
    assert any("GPS" in t for t in meta_tags(cut))
    assert not any(re.search(r"GPS|Model", t) for t in meta_tags(got)), meta_tags(got)
    with open(cut, "rb") as a, open(got, "rb") as b:
        orig, stored = a.read(), b.read()
    assert len(stored) < len(orig) and orig[-250000:] == stored[-250000:]

    heic = os.path.join(media_dir, "photo.heic")
    mid, _ = upload(d, heic, "/private/photo.heic")
    assert media(d, mid)["metadata"]["stripped"] is False
    original_intact(d, mid, heic)
    clip = os.path.join(media_dir, "clip.mp4")
    mid, _ = upload(d, clip, "/private/clip.mp4")
    assert "stripped" not in media(d, mid)["metadata"]
    original_intact(d, mid, clip)


def test_strip_survives_a_crash_after_process(dripd_factory, media_dir, tmp_path):
    """The pipeline worker is killed (SIGKILL) after process committed the
    stripped original's size: the next worker seals, stores and serves the
    stripped bytes, not the upload's."""
    # stage_commit_size 0: the small photo's job commits (and logs) each
    # stage, so process's commit of the size is there before the kill
    d = dripd_factory(config={"processing": {"strip_metadata": True},
                              "pipeline": {"test_notify_delay": "2s", "stage_commit_size": 0},
                              "supervisor": {"max_restarts": 20}})
    local = os.path.join(media_dir, "phone.jpg")
    after = d.log_size()
    mid, jid = upload(d, local, "/crash/phone.jpg", wait=False)
    d.wait_log(r"job %s \(upload\): store done, next notify" % jid, after=after, timeout=60)
    old = d.worker("pipeline")
    os.kill(old, 9)
    wait_until(lambda: (d.workers("pipeline") or [old])[0] != old, 30, "a new pipeline worker")
    job = d.wait_job(jid, timeout=60)
    assert job["state"] == "done", job
    got = str(tmp_path / "got.jpg")
    content(d, mid, got)
    doc = media(d, mid)
    assert doc["sha256"] == sha256(got) and doc["size"] == os.path.getsize(got)
    assert not any("GPS" in t for t in meta_tags(got))
    assert not glob.glob(os.path.join(d.data_dir, "work", jid + ".*"))  # nothing left behind


def test_variant_range_etag_and_links(dripd, media_dir):
    local = os.path.join(media_dir, "pic.webp")
    mid, _ = upload(dripd, local, "/pic.webp")
    st, h, full = fetch(dripd, mid, "preview", None)
    assert st == 200
    etag = h["etag"]
    assert re.match(r'^"[0-9a-f]{64}"$', etag)
    assert etag == '"%s"' % hashlib.sha256(full).hexdigest()
    st, h, part = fetch(dripd, mid, "preview", None, "-H", "Range: bytes=10-109")
    assert st == 206 and part == full[10:110]
    assert h["content-range"] == "bytes 10-109/%d" % len(full)
    st, h, body = fetch(dripd, mid, "preview", None, "-H", "If-None-Match: " + etag)
    assert st == 304 and body == b""
    # a signed link for the media reads its variants too, without a token
    st, doc, _ = dripd.json("POST", "/v1/media/%s/link" % mid, {})
    assert st in (200, 201), doc
    url = doc["url"].replace("/content?", "/variants/thumb?")
    st, _, body = dripd.curl(url if url.startswith("http") else dripd.url(url), user=None)
    assert st == 200 and body[:4] == b"RIFF"
    # unknown variant: 404; never cached under another name
    st, _, _ = fetch(dripd, mid, "huge", None)
    assert st == 404
    st, _, _ = fetch(dripd, mid, "../content", None, "--path-as-is")
    assert st == 404
    st, _, _ = fetch(dripd, mid, "Thumb", None)
    assert st == 404


def test_cache_miss_goes_through_the_download_pipeline(dripd, media_dir):
    local = os.path.join(media_dir, "alpha.png")
    mid, _ = upload(dripd, local, "/alpha.png")
    for f in glob.glob(os.path.join(dripd.data_dir, "cache", mid + "~*")):
        os.unlink(f)
    fills = metric(dripd, "dripd_cache_fills_total")
    st, h, body = fetch(dripd, mid, "thumb", None)
    assert st == 200 and body[:4] == b"RIFF"
    assert os.path.exists(os.path.join(dripd.data_dir, "cache", mid + "~thumb"))
    # a fill is derived data: the download stages ran it without a job row
    assert metric(dripd, "dripd_cache_fills_total") == fills + 1
    st, jobs, _ = dripd.json("GET", "/v1/jobs", expect=200)
    assert not any(j["kind"] == "download" for j in jobs["jobs"])


@pytest.mark.parametrize("name,meta,dims", [
    ("alpha.png", {"detected_type": "image/png", "width": 640, "height": 480}, (256, 192)),
    ("pic.webp", {"detected_type": "image/webp", "width": 800, "height": 600}, (256, 192)),
    ("anim.gif", {"detected_type": "image/gif", "width": 320, "height": 240, "frames": 10},
     (256, 192)),
    ("photo.heic", {"detected_type": "image/heic", "width": 800, "height": 600}, (256, 192)),
    ("doc.pdf", {"detected_type": "application/pdf", "pages": 2}, (198, 256)),
    ("notajpeg.jpg", {"detected_type": "image/png", "width": 640}, (256, 192)),
])
def test_formats(dripd, media_dir, tmp_path, name, meta, dims):
    local = os.path.join(media_dir, name)
    mid, _ = upload(dripd, local, "/f/" + name)
    doc = media(dripd, mid)
    for k, want in meta.items():
        assert doc["metadata"].get(k) == want, doc["metadata"]
    v = variants(doc)["thumb"]
    assert v["state"] == "available", v
    out = str(tmp_path / "t.webp")
    assert fetch(dripd, mid, "thumb", out)[0] == 200
    assert vips_dims(out) == dims
    original_intact(dripd, mid, local)


def test_video_poster(dripd, media_dir, tmp_path):
    local = os.path.join(media_dir, "clip.mp4")
    mid, _ = upload(dripd, local, "/v/clip.mp4")
    doc = media(dripd, mid)
    m = doc["metadata"]
    assert m["detected_type"] == "video/mp4"
    assert 2900 <= m["duration_ms"] <= 3100
    assert (m["width"], m["height"]) == (640, 360)
    v = variants(doc)
    assert v["preview"]["state"] == "available" and v["preview"]["width"] == 640
    out = str(tmp_path / "poster.webp")
    assert fetch(dripd, mid, "thumb", out)[0] == 200
    assert vips_dims(out) == (256, 144)
    original_intact(dripd, mid, local)


def mean_abs_diff(a, b, tmp_path):
    """Mean absolute pixel difference of two same-sized RGB images (vips)."""
    d, m = str(tmp_path / "d.v"), str(tmp_path / "m.v")
    for cmd in (["vips", "subtract", a, b, d], ["vips", "abs", d, m]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    r = subprocess.run(["vips", "avg", m], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return float(r.stdout)


@pytest.mark.parametrize("rotate", [90, 270])
def test_rotated_video_poster(dripd, media_dir, tmp_path, rotate):
    """A phone video held upright: landscape frames with a rotation in the
    container (display matrix). The metadata gives the displayed size and
    the poster is upright: it matches the first frame as ffmpeg shows it
    (auto-rotated), not the frame turned the other way."""
    local = str(tmp_path / "rot.mp4")
    run("ffmpeg -v error -y -i clip.mp4 -c copy -metadata:s:v:0 rotate=%d %s" % (rotate, local),
        media_dir)
    # what a player shows: ffmpeg applies the display matrix when decoding
    shown = str(tmp_path / "shown.png")
    run("ffmpeg -v error -y -i %s -frames:v 1 %s && vips thumbnail %s %s 256"
        % (local, str(tmp_path / "frame.png"), str(tmp_path / "frame.png"), shown), media_dir)
    assert vips_dims(shown) == (144, 256)
    wrong = str(tmp_path / "wrong.png")
    run("vips rot %s %s d180" % (shown, wrong), media_dir)

    mid, _ = upload(dripd, local, "/v/rot%d.mp4" % rotate)
    doc = media(dripd, mid)
    m = doc["metadata"]
    assert (m["width"], m["height"]) == (360, 640), m  # as displayed
    v = variants(doc)
    assert v["thumb"]["state"] == "available", v
    assert (v["thumb"]["width"], v["thumb"]["height"]) == (144, 256)
    assert (v["preview"]["width"], v["preview"]["height"]) == (360, 640)
    poster = str(tmp_path / "poster.webp")
    assert fetch(dripd, mid, "thumb", poster)[0] == 200
    assert vips_dims(poster) == (144, 256)
    right, off = mean_abs_diff(poster, shown, tmp_path), mean_abs_diff(poster, wrong, tmp_path)
    assert right < 12 and off > 4 * right, (right, off)  # upright, not upside down
    original_intact(dripd, mid, local)


@pytest.mark.parametrize("name,reason", [
    ("truncated.jpg", r"truncated|Premature"),
    ("bomb.png", r"max_pixels"),
])
def test_hostile_files(dripd, media_dir, name, reason):
    local = os.path.join(media_dir, name)
    pl = dripd.worker("pipeline")
    mid, _ = upload(dripd, local, "/h/" + name)
    doc = media(dripd, mid)
    assert doc["state"] == "available"
    for v in doc["variants"]:
        assert v["state"] == "failed", v
        assert re.search(reason, v["error"]), v
    st, _, body = fetch(dripd, mid, "thumb", None)
    assert st == 404 and re.search(reason, body.decode()), body
    original_intact(dripd, mid, local)
    assert dripd.workers("pipeline") == [pl]  # the same worker: it never went down


@pytest.mark.parametrize("name", ["lying.jpg", "empty.jpg"])
def test_not_media(dripd, media_dir, name):
    """No helper for what is not media: no variants, no metadata keys."""
    local = os.path.join(media_dir, name)
    mid, _ = upload(dripd, local, "/n/" + name, stage="encrypt")
    doc = media(dripd, mid)
    assert doc["variants"] == [] and doc["metadata"] == {}
    assert fetch(dripd, mid, "thumb", None)[0] == 404
    original_intact(dripd, mid, local)


def test_random_file_runs_no_decoder(dripd_factory, tmp_path):
    d = dripd_factory(config={"pipeline": {"test_store_delay": "2s"}})
    local = str(tmp_path / "random.bin")
    make_file(local, 4 << 20, seed=7)
    before = metric(d, "dripd_decode_runs_total")
    mid, job = upload(d, local, "/random.bin", stage="encrypt", wait=False)
    doc = media(d, mid)  # still queued (the store step waits 2 s): nothing pending
    assert doc["state"] == "queued" and doc["variants"] == [] and doc["metadata"] == {}, doc
    assert fetch(d, mid, "thumb", None)[0] == 404
    assert d.wait_job(job)["state"] == "done"
    assert metric(d, "dripd_decode_runs_total") == before
    assert media(d, mid)["variants"] == []


def metric(d, name):
    st, _, body = d.curl(d.url("/metrics"), user=None)
    m = re.search(r"^%s (\d+)" % name, body.decode(), re.M)
    return int(m.group(1)) if m else 0


@pytest.mark.parametrize("hook,reason", [
    ("segv", r"SIGSEGV"),
    ("socket", r"SIGSYS"),
])
def test_decoder_failure_keeps_the_original(dripd_factory, media_dir, hook, reason):
    d = dripd_factory(config={"processing": {"test_decoder": hook}})
    local = os.path.join(media_dir, "phone.jpg")
    pl = d.worker("pipeline")
    mid, _ = upload(d, local, "/crash.jpg")
    doc = media(d, mid)
    assert doc["state"] == "available"
    assert {v["state"] for v in doc["variants"]} == {"failed"}
    assert all(re.search(reason, v["error"]) for v in doc["variants"]), doc["variants"]
    original_intact(d, mid, local)
    assert metric(d, "dripd_decode_failures_total") >= 1
    assert d.workers("pipeline") == [pl]  # the same worker: it never went down
    assert d.wait_log(r"decoder killed", timeout=5)


def test_hang_is_killed_helper_is_a_child_and_variants_pend(dripd_factory, media_dir):
    d = dripd_factory(config={"processing": {"test_decoder": "hang",
                                             "limits": {"timeout": "3s"}}})
    local = os.path.join(media_dir, "pic.webp")
    mid, job = upload(d, local, "/hang.webp", wait=False)
    pl = d.worker("pipeline")
    helpers = wait_until(lambda: pids_of(pl, "dripd-decode"), 10, "a dripd-decode child")
    assert helpers  # named dripd-decode, a child of dripd-pipeline
    st, body, _ = d.json("GET", "/v1/media/%s" % mid)
    assert {v["state"] for v in body["variants"]} == {"pending"}
    st, _, b = fetch(d, mid, "thumb", None)
    assert st == 409, b
    job = d.wait_job(job, timeout=30)
    assert job["state"] == "done"
    doc = media(d, mid)
    assert all("processing.limits.timeout" in v["error"] for v in doc["variants"]), doc
    wait_until(lambda: not pids_of(pl, "dripd-decode"), 10, "the helper to be gone")
    original_intact(d, mid, local)


def test_delete_removes_variant_objects(dripd, media_dir):
    local = os.path.join(media_dir, "alpha.png")
    mid, _ = upload(dripd, local, "/del.png")
    # (objects as files or rows of objects/.small.db: objstore.py)
    objs = objstore.objects_dir(dripd)
    assert len(objstore.matching(objs, mid + "~*")) == 2
    dripd.json("DELETE", "/v1/media/" + mid, expect=204)
    assert objstore.matching(objs, mid + "*") == []
    assert glob.glob(os.path.join(dripd.data_dir, "cache", mid + "*")) == []


def test_processing_disabled(dripd_factory, media_dir):
    d = dripd_factory(config={"processing": {"enabled": False}})
    local = os.path.join(media_dir, "pic.webp")
    mid, _ = upload(d, local, "/off.webp", stage="encrypt")
    doc = media(d, mid)
    assert doc["variants"] == [] and doc["metadata"] == {}
    assert fetch(d, mid, "thumb", None)[0] == 404


def test_memory_stays_bounded(dripd, media_dir):
    """Peak RSS of the dripd processes themselves after a bomb and a 12 MP
    photo: decoding happens in the helpers, never in them."""
    for name in ("bomb.png", "phone.jpg"):
        upload(dripd, os.path.join(media_dir, name), "/mem/" + name)
    total = 0
    for pid in [dripd.pid] + dripd.workers("http") + dripd.workers("pipeline"):
        with open("/proc/%d/status" % pid) as f:
            hwm = re.search(r"VmHWM:\s+(\d+) kB", f.read())
        total += int(hwm.group(1))
    assert total < 128 * 1024, total


def ctl(d, *args, user="alice"):
    env = dict(os.environ)
    env.update({"DRIPD_URL": d.url(), "DRIPD_TOKEN": d.token(user), "HOME": d.dir})
    env.pop("XDG_CONFIG_HOME", None)
    return subprocess.run([DRIPCTL] + list(args), capture_output=True, text=True, env=env,
                          timeout=300, cwd=d.dir)


def test_dripctl_variant_and_ls(dripd, media_dir):
    mid, _ = upload(dripd, os.path.join(media_dir, "phone.jpg"), "/cam/phone.jpg")
    upload(dripd, os.path.join(media_dir, "clip.mp4"), "/cam/clip.mp4")
    r = ctl(dripd, "download", "/cam/phone.jpg", "--variant", "thumb")
    assert r.returncode == 0, r.stderr
    out = os.path.join(dripd.dir, "phone.thumb.webp")
    assert vips_dims(out) == (192, 256)
    r = ctl(dripd, "download", mid, "--variant", "nope")
    assert r.returncode == 4, (r.returncode, r.stderr)
    r = ctl(dripd, "ls", "/cam")
    assert r.returncode == 0, r.stderr
    assert re.search(r"phone\.jpg\s+\(3000x4000\)", r.stdout), r.stdout
    assert re.search(r"clip\.mp4\s+\(640x360 0:03\)", r.stdout), r.stdout


def test_reprocess_after_enabling(dripd_factory, media_dir):
    d = dripd_factory(config={"processing": {"enabled": False}})
    a, _ = upload(d, os.path.join(media_dir, "phone.jpg"), "/r/a.jpg", stage="encrypt")
    b, _ = upload(d, os.path.join(media_dir, "alpha.png"), "/other/b.png", stage="encrypt")
    assert media(d, a)["variants"] == []
    assert d.stop() == 0
    d.config["processing"] = {"enabled": True,
                              "variants": [{"name": "small", "max": 64, "format": "png"}]}
    d.write_config()
    d.restart()
    r = ctl(d, "reprocess", "/r")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 files, 1 processed, 0 failed" in r.stdout, r.stdout
    doc = media(d, a)
    assert [v["name"] for v in doc["variants"]] == ["small"]
    assert doc["variants"][0]["width"] == 48 and doc["metadata"]["camera"] == "Pixel 7"
    assert media(d, b)["variants"] == []  # not under /r
    assert ctl(d, "reprocess", "--all").returncode == 0
    assert variants(media(d, b))["small"]["state"] == "available"
    assert ctl(d, "reprocess", "/r", user="bob").returncode == 3  # admin only


def rebuild_from_store(d, drop_cache=False):
    """Stop d, lose its catalog (and its cache), run --rebuild-catalog, start
    it again: the rebuild's stderr."""
    assert d.stop() == 0
    for f in glob.glob(os.path.join(d.data_dir, "catalog.db*")):
        os.unlink(f)
    for f in glob.glob(os.path.join(d.data_dir, "cache", "*")) if drop_cache else []:
        os.unlink(f)
    r = subprocess.run([DRIPD, "-c", d.config_path, "--rebuild-catalog"], cwd=d.dir,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    d.restart()
    return r.stderr


def test_scrub_and_rebuild_cover_variants(dripd, media_dir):
    mid, _ = upload(dripd, os.path.join(media_dir, "pic.webp"), "/s/pic.webp")
    od = objstore.objects_dir(dripd)
    objs = objstore.matching(od, mid + "~thumb*")
    assert len(objs) == 1
    before = variants(media(dripd, mid))
    # rebuild: the variant rows come back from the objects alone
    out = rebuild_from_store(dripd, drop_cache=True)
    assert "1 media restored (and 2 variants, 1 metadata)" in out, out
    after = variants(media(dripd, mid))
    for name in ("thumb", "preview"):
        for k in ("content_type", "width", "height", "size", "state"):
            assert after[name][k] == before[name][k], (name, k, after[name], before[name])
    assert fetch(dripd, mid, "thumb", None)[0] == 200
    # scrub: a damaged variant object is found
    objstore.flip(od, objs[0], -20)
    dripd.json("POST", "/v1/admin/scrub", expect=202)

    def done():
        st, doc, _ = dripd.json("GET", "/v1/admin/scrub")
        return doc if doc and doc.get("state") == "done" else None
    doc = wait_until(done, 60, "scrub to finish")
    assert doc["checked"] == 3, doc
    assert [(c["id"], c["path"]) for c in doc["corrupt"]] == [(mid, "thumb variant")], doc


def test_rebuild_restores_metadata(dripd, media_dir):
    """--rebuild-catalog gives back what the process stage recorded: a photo's
    EXIF-derived metadata, a video's duration, a truncated JPEG's failed
    variants with their reasons; GET /v1/media/{id} answers as before (but
    uploaded_at, which no object records) as soon as the rebuild returns."""
    files = [("phone.jpg", "/rb/phone.jpg"), ("clip.mp4", "/rb/clip.mp4"),
             ("truncated.jpg", "/rb/truncated.jpg"), ("lying.jpg", "/rb/lying.jpg")]
    ids = []
    for name, remote in files:
        stage = "encrypt" if name == "lying.jpg" else "process"
        ids.append(upload(dripd, os.path.join(media_dir, name), remote, stage=stage)[0])
    before = {mid: media(dripd, mid) for mid in ids}
    photo, clip, broken, _text = (before[mid] for mid in ids)
    assert photo["metadata"]["camera"] == "Pixel 7" and photo["metadata"]["height"] == 4000
    assert clip["metadata"]["duration_ms"] > 0
    assert {v["state"] for v in broken["variants"]} == {"failed"}
    objs = objstore.objects_dir(dripd)
    metas = objstore.matching(objs, "*.meta")
    assert metas == sorted(m + ".meta" for m in ids[:3])
    out = rebuild_from_store(dripd)
    assert "4 media restored (and 4 variants, 3 metadata)" in out, out
    for mid in ids:
        after = media(dripd, mid)
        assert after.pop("uploaded_at") == after["created_at"]
        want = dict(before[mid])
        want.pop("uploaded_at")
        assert after == want, (mid, after, want)
    # a damaged metadata object is skipped with a reason; the rest comes back
    objstore.flip(objs, metas[0], -20)
    out = rebuild_from_store(dripd)
    assert "(and 4 variants, 2 metadata)" in out and "1 metadata objects not readable" in out, out


def test_web_ui_thumbnails_and_preview(dripd, media_dir):
    """The web UI in Debian's Chromium: a phone photo and a video uploaded
    through its file picker, their thumbnails in the listing (the photo's
    upright, the video's poster), the grid view, and the preview on click
    without the original (screenshots in tests/artifacts/web/media-*.png)."""
    node_dir = os.path.join(ROOT, "tests", "node")
    assert os.path.exists("/usr/bin/chromium"), "Debian chromium is missing: make deps"
    assert os.path.isdir(os.path.join(node_dir, "node_modules", "playwright-core")), \
        "playwright-core is missing: sh scripts/node-deps.sh"
    upload(dripd, os.path.join(media_dir, "lying.jpg"), "/ui/notes.txt", stage="encrypt")
    shots = os.path.join(ROOT, "tests", "artifacts", "web")
    os.makedirs(shots, exist_ok=True)
    r = subprocess.run(["node", os.path.join(node_dir, "web_media.mjs"), dripd.url(),
                        dripd.token("alice"), "/ui", shots, os.path.join(media_dir, "phone.jpg"),
                        os.path.join(media_dir, "clip.mp4")],
                       capture_output=True, text=True, timeout=180, cwd=node_dir)
    out = r.stdout.strip().splitlines()
    res = json.loads(out[-1]) if out else {}
    assert r.returncode == 0 and res.get("ok"), "browser test failed: %s\n%s" % (
        res.get("error"), r.stderr[-3000:])
    assert res["steps"] == ["photo and video uploaded", "thumbnail in the listing", "grid view",
                            "preview on click"]


def test_process_stage_in_jobs_and_events(dripd_factory, media_dir):
    """SSE shows a photo's job go process -> encrypt -> store -> notify
    (every stage committed: stage_commit_size 0; by default a photo under
    1 MiB commits once, when done)."""
    from test_events import SSE
    dripd = dripd_factory(config={"pipeline": {"stage_commit_size": 0}})
    sse = SSE(dripd)
    try:
        sse.wait_comment("connected")
        mid, job = upload(dripd, os.path.join(media_dir, "pic.webp"), "/ev/pic.webp")
        evs = sse.until_job_end(job)
        seen = [(e["event"], e["data"]["stage"]) for e in evs]
        assert seen[0] == ("job.created", "process"), seen
        assert ("job.stage", "encrypt") in seen and seen[-1][0] == "job.done", seen
    finally:
        sse.close()

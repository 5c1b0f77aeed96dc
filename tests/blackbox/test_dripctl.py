"""dripctl against the real daemon: resumable upload after a forced kill,
download, ls, mv, rm, share, --json, exit codes, usage and scrub."""
import json
import os
import signal
import subprocess

import pytest

from conftest import DRIPCTL, make_file, same_file, wait_until

pytestmark = pytest.mark.skipif(not os.path.exists(DRIPCTL), reason="bin/dripctl not built")


def ctl(d, *args, user="alice", env=None, check=False):
    e = dict(os.environ)
    e.update({"DRIPD_URL": d.url(), "DRIPD_TOKEN": d.token(user) if user else "",
              "XDG_STATE_HOME": os.path.join(d.dir, "state"), "HOME": d.dir})
    e.update(env or {})
    r = subprocess.run([DRIPCTL] + list(args), capture_output=True, text=True, env=e, timeout=300)
    if check:
        assert r.returncode == 0, "dripctl %s -> %d\n%s\n%s" % (args, r.returncode, r.stdout, r.stderr)
    return r


def test_upload_interrupted_then_resumed(dripd, tmpdir_path):
    src = make_file(os.path.join(tmpdir_path, "big.bin"), 24 << 20)
    env = {"DRIPD_URL": dripd.url(), "DRIPD_TOKEN": dripd.token(), "HOME": dripd.dir,
           "XDG_STATE_HOME": os.path.join(dripd.dir, "state")}
    p = subprocess.Popen([DRIPCTL, "upload", src, "--to", "/resume", "--chunk-size", str(1 << 20),
                          "--limit-rate", str(4 << 20)],
                         env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = os.path.join(dripd.dir, "state", "dripctl", "uploads.json")

    def server_offset():
        try:
            with open(state) as f:
                loc = list(json.load(f).values())[0]
        except (OSError, ValueError, IndexError):
            return 0
        st, h, _ = dripd.curl("-I", "-H", "Tus-Resumable: 1.0.0", dripd.url(loc))
        return int(h.get("upload-offset", 0)) if st == 200 else 0

    # Kill dripctl once the server holds at least 3 MiB durably.
    wait_until(lambda: server_offset() >= 3 << 20, 60, "3 MiB on the server")
    p.send_signal(signal.SIGKILL)
    p.wait()
    held = server_offset()
    assert 0 < held < 24 << 20
    r = ctl(dripd, "--json", "upload", src, "--to", "/resume", "--wait", check=True)
    out = json.loads(r.stdout)[0]
    assert out["resumed_at"] >= held > 0
    assert out["job"]["state"] == "done"
    got = os.path.join(tmpdir_path, "got.bin")
    ctl(dripd, "download", out["media_id"], "-o", got, check=True)
    assert same_file(src, got)
    assert not json.load(open(state))  # finished uploads leave no state behind


def test_commands_and_json(dripd, tmpdir_path):
    a = make_file(os.path.join(tmpdir_path, "a.txt"), 1000)
    ctl(dripd, "upload", a, "--to", "/docs", "--wait", check=True)
    r = ctl(dripd, "--json", "ls", "/docs", check=True)
    files = json.loads(r.stdout)["files"]
    assert [f["name"] for f in files] == ["a.txt"]
    root = json.loads(ctl(dripd, "--json", "ls", "/", check=True).stdout)
    assert {"name": "docs", "files": 1, "size": 1000}.items() <= root["folders"][0].items()
    # by path
    got = os.path.join(tmpdir_path, "b.txt")
    ctl(dripd, "download", "/docs/a.txt", "-o", got, check=True)
    assert same_file(a, got)
    ctl(dripd, "mv", "/docs/a.txt", "/docs/renamed.txt", check=True)
    r = ctl(dripd, "--json", "download", "/docs/a.txt", "-o", got)
    assert r.returncode == 4 and json.loads(r.stdout)["ok"] is False
    # share with bob: bob can download, carol cannot
    ctl(dripd, "share", "/docs/renamed.txt", "bob", check=True)
    mid = files[0]["id"]
    assert ctl(dripd, "download", mid, "-o", got, user="bob").returncode == 0
    assert ctl(dripd, "download", mid, "-o", got, user="carol").returncode == 4
    assert ctl(dripd, "rm", mid, user="bob").returncode == 4  # only the owner deletes
    ctl(dripd, "rm", "/docs/renamed.txt", check=True)
    assert json.loads(ctl(dripd, "--json", "ls", "/docs", check=True).stdout)["files"] == []
    # auth and usage errors are scriptable
    r = ctl(dripd, "ls", env={"DRIPD_TOKEN": "wrong-token-xyz"})
    assert r.returncode == 3
    assert ctl(dripd, "frobnicate").returncode == 2


def test_jobs_lists_own_newest_first_and_filters(dripd, tmpdir_path):
    ids = []
    for i in range(3):
        f = make_file(os.path.join(tmpdir_path, "j%d" % i), 500 + i)
        out = json.loads(ctl(dripd, "--json", "upload", f, "--to", "/j", "--wait", check=True).stdout)
        ids.append(out[0]["job"]["id"])
    bob = make_file(os.path.join(tmpdir_path, "bob"), 10)
    ctl(dripd, "upload", bob, "--to", "/j", "--wait", user="bob", check=True)
    jobs = json.loads(ctl(dripd, "--json", "jobs", check=True).stdout)["jobs"]
    assert [j["id"] for j in jobs] == ids[::-1], "alice's own jobs, newest first"
    assert all(j["state"] == "done" and j["kind"] == "upload" for j in jobs)
    assert len(json.loads(ctl(dripd, "--json", "jobs", "--limit", "2", check=True).stdout)["jobs"]) == 2
    assert json.loads(ctl(dripd, "--json", "jobs", "--state", "failed", check=True).stdout)["jobs"] == []
    one = json.loads(ctl(dripd, "--json", "jobs", ids[0], check=True).stdout)
    assert one["id"] == ids[0] and one["state"] == "done"
    table = ctl(dripd, "jobs", check=True).stdout.splitlines()
    assert table[0].split()[:4] == ["id", "kind", "state", "stage"] and len(table) == 4
    assert ids[2] in table[1]
    # bad filters are the server's 400: a non-zero exit and the problem's detail
    r = ctl(dripd, "jobs", "--state", "sleeping")
    assert r.returncode != 0 and "bad state" in r.stderr
    st, _, body = dripd.curl(dripd.url("/v1/jobs?limit=0"))
    assert st == 400 and b"bad limit" in body


def test_usage_matches_uploads(dripd, tmpdir_path):
    sizes = {"alice": [1000, 2000], "bob": [5000]}
    for user, ss in sizes.items():
        for i, s in enumerate(ss):
            f = make_file(os.path.join(tmpdir_path, "%s%d" % (user, i)), s)
            ctl(dripd, "upload", f, "--to", "/u", "--wait", user=user, check=True)
    doc = json.loads(ctl(dripd, "--json", "usage", check=True).stdout)
    by = {u["user"]: u for u in doc["users"]}
    assert by["bob"]["bytes"] == 5000 and by["bob"]["files"] == 1
    assert by["alice"]["bytes"] == 3000 and by["alice"]["files"] == 2
    assert doc["users"][0]["user"] == "bob"  # ranked by bytes
    assert ctl(dripd, "usage", user="bob").returncode == 3  # admin only


def test_scrub_clean_then_corrupt(dripd, tmpdir_path):
    ids = []
    for i in range(3):
        f = make_file(os.path.join(tmpdir_path, "s%d" % i), 100000 + i)
        out = json.loads(ctl(dripd, "--json", "upload", f, "--to", "/s", "--wait", check=True).stdout)
        ids.append(out[0]["media_id"])
    r = ctl(dripd, "--json", "scrub", check=True)
    doc = json.loads(r.stdout)
    assert doc["state"] == "done" and doc["checked"] == 3 and doc["corrupt"] == [] and doc["missing"] == []
    # Corrupt one stored object: flip a byte in its middle.
    objdir = os.path.join(dripd.data_dir, "objects")
    victim = sorted(p for p in os.listdir(objdir) if p.startswith(ids[1]))[0]
    path = os.path.join(objdir, victim)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    r = ctl(dripd, "--json", "scrub")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert [c["id"] for c in doc["corrupt"]] == [ids[1]]
    assert doc["checked"] == 3

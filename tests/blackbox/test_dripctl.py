"""dripctl against the real daemon: resumable upload after a forced kill,
download, ls, mv, rm, share, --json, exit codes, usage and scrub; options
anywhere, per-command help, several files with a failure among them,
progress rate and ETA, Ctrl-C mid-upload, a daemon restart mid-upload and
mid-watch, download to stdout and its safe names, the config file's
warnings, and the exit codes the docs list."""
import json
import os
import pty
import re
import select
import signal
import subprocess
import threading
import time

import objstore
from conftest import DRIPCTL, ROOT, make_file, same_file, wait_until


def test_dripctl_is_built():
    assert os.access(DRIPCTL, os.X_OK), "bin/dripctl is missing: make all"


def ctl_env(d, user="alice", env=None):
    e = dict(os.environ)
    e.update({"DRIPD_URL": d.url(), "DRIPD_TOKEN": d.token(user) if user else "",
              "XDG_STATE_HOME": os.path.join(d.dir, "state"), "HOME": d.dir})
    e.pop("XDG_CONFIG_HOME", None)
    for k, v in (env or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def ctl(d, *args, user="alice", env=None, check=False, cwd=None, text=True):
    r = subprocess.run([DRIPCTL] + list(args), capture_output=True, text=text, env=ctl_env(d, user, env),
                       timeout=300, cwd=cwd)
    if check:
        assert r.returncode == 0, "dripctl %s -> %d\n%s\n%s" % (args, r.returncode, r.stdout, r.stderr)
    return r


class Lines:
    """Collects a stream's output in a thread, with the time each piece came."""

    def __init__(self, stream):
        self.chunks = []
        self.lock = threading.Lock()
        self.t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.t.start()

    def _run(self, stream):
        while True:
            try:
                if isinstance(stream, int):
                    b = os.read(stream, 65536)
                else:
                    b = stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536)
            except OSError:
                return
            if not b:
                return
            with self.lock:
                self.chunks.append((time.monotonic(), b.decode(errors="replace") if isinstance(b, bytes) else b))

    def text(self):
        with self.lock:
            return "".join(c for _, c in self.chunks)

    def timed(self):
        with self.lock:
            return list(self.chunks)


def server_offset(d):
    """The server's offset of the one upload dripctl's state file names (0 if none)."""
    state = os.path.join(d.dir, "state", "dripctl", "uploads.json")
    try:
        with open(state) as f:
            loc = list(json.load(f).values())[0]
    except (OSError, ValueError, IndexError):
        return 0
    st, h, _ = d.curl("-I", "-H", "Tus-Resumable: 1.0.0", d.url(loc))
    return int(h.get("upload-offset", 0)) if st == 200 else 0


def test_upload_interrupted_then_resumed(dripd, tmpdir_path):
    src = make_file(os.path.join(tmpdir_path, "big.bin"), 24 << 20)
    env = {"DRIPD_URL": dripd.url(), "DRIPD_TOKEN": dripd.token(), "HOME": dripd.dir,
           "XDG_STATE_HOME": os.path.join(dripd.dir, "state")}
    p = subprocess.Popen([DRIPCTL, "upload", src, "--to", "/resume", "--chunk-size", str(1 << 20),
                          "--limit-rate", str(4 << 20)],
                         env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = os.path.join(dripd.dir, "state", "dripctl", "uploads.json")

    # Kill dripctl once the server holds at least 3 MiB durably.
    wait_until(lambda: server_offset(dripd) >= 3 << 20, 60, "3 MiB on the server")
    p.send_signal(signal.SIGKILL)
    p.wait()
    held = server_offset(dripd)
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
    # bad filters are usage errors (2), said before any request
    r = ctl(dripd, "jobs", "--state", "sleeping")
    assert r.returncode == 2 and "--state wants queued, running, done or failed" in r.stderr
    assert ctl(dripd, "jobs", "--limit", "0").returncode == 2
    assert ctl(dripd, "jobs", "--limit", "ten").returncode == 2
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
    # Corrupt one stored object: flip a byte in its middle (wherever it is:
    # a file or a row of objects/.small.db, objstore.py).
    objdir = objstore.objects_dir(dripd)
    victim = objstore.matching(objdir, ids[1] + "*")[0]
    objstore.flip(objdir, victim, objstore.size(objdir, victim) // 2)
    r = ctl(dripd, "--json", "scrub")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert [c["id"] for c in doc["corrupt"]] == [ids[1]]
    assert doc["checked"] == 3


def run_on_tty(d, args, user="alice"):
    """dripctl with its stderr on a pseudo-terminal (progress bars), stdout a pipe."""
    m, sl = pty.openpty()
    p = subprocess.Popen([DRIPCTL] + args, env=ctl_env(d, user), stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=sl)
    os.close(sl)
    return p, Lines(m)


def test_options_anywhere_and_help(dripd, tmpdir_path):
    f = make_file(os.path.join(tmpdir_path, "o.txt"), 100)
    r = ctl(dripd, "upload", f, "--to", "/o", "--wait", "--json", check=True)
    assert json.loads(r.stdout)[0]["ok"] is True
    assert [x["name"] for x in json.loads(ctl(dripd, "ls", "/o", "--json", check=True).stdout)["files"]] == ["o.txt"]
    assert json.loads(ctl(dripd, "ls", "--json", check=True).stdout)["folder"] == "/"
    assert len(json.loads(ctl(dripd, "jobs", "--json", check=True).stdout)["jobs"]) == 1
    assert len(json.loads(ctl(dripd, "jobs", "--limit", "1", "-j", check=True).stdout)["jobs"]) == 1
    # a global option after the command's arguments wins over the environment
    r = ctl(dripd, "ls", "/o", "--url", dripd.url(), env={"DRIPD_URL": "http://127.0.0.1:1"}, check=True)
    assert "o.txt" in r.stdout
    assert "o.txt" in ctl(dripd, "ls", "--", "/o", check=True).stdout
    for cmd in ["upload", "download", "ls", "mv", "rm", "share", "jobs", "watch", "usage", "scrub"]:
        a, b = ctl(dripd, cmd, "--help"), ctl(dripd, "help", cmd)
        assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
        assert a.stdout == b.stdout and a.stdout.startswith("usage: dripctl " + cmd)
    top = ctl(dripd, "--help", check=True).stdout
    assert all(" %s " % c in top for c in ["upload", "watch", "scrub"])
    r = ctl(dripd, "upload", f, "--frob")
    assert r.returncode == 2 and "unknown option --frob" in r.stderr and "dripctl upload --help" in r.stderr
    r = ctl(dripd, "download")
    assert r.returncode == 2 and "missing arguments" in r.stderr
    assert ctl(dripd, "upload", f, "--to", "relative").returncode == 2
    assert ctl(dripd, "help", "frobnicate").returncode == 2
    assert ctl(dripd).returncode == 2


def test_upload_several_goes_on_after_a_failure(dripd, tmpdir_path):
    a, b, c = (make_file(os.path.join(tmpdir_path, n), 1000 + i) for i, n in enumerate(["a.txt", "b.txt", "c.txt"]))
    st, doc = dripd.put_file(a, "/m/a.txt")
    assert st == 202
    dripd.wait_job(doc["job"]["id"])
    r = ctl(dripd, "upload", a, b, c, "--to", "/m")
    assert r.returncode == 5, r.stderr  # the first failure's code: 409 conflict
    assert "a.txt: HTTP 409" in r.stderr
    assert "upload: 2 of 3 files uploaded; failed: a.txt" in r.stderr
    names = [x["name"] for x in json.loads(ctl(dripd, "--json", "ls", "/m", check=True).stdout)["files"]]
    assert names == ["a.txt", "b.txt", "c.txt"]
    r = ctl(dripd, "--json", "upload", b, c, "--to", "/m")
    assert r.returncode == 5
    res = json.loads(r.stdout)
    assert [(x["ok"], x["status"]) for x in res] == [(False, 409), (False, 409)]
    # a directory says so, and counts as a usage error
    os.mkdir(os.path.join(tmpdir_path, "photos"))
    r = ctl(dripd, "upload", os.path.join(tmpdir_path, "photos"), c, "--to", "/d")
    assert r.returncode == 2
    assert "photos: is a directory; upload takes files" in r.stderr
    assert "upload: 1 of 2 files uploaded; failed: photos" in r.stderr


ETA = r"ETA (\d+) s"
RATE = r"([\d.]+) (B|KiB|MiB)/s"
UNIT = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20}


def test_progress_rate_and_eta_follow_the_transfer(dripd, tmpdir_path):
    size, limit = 6 << 20, 2 << 20
    src = make_file(os.path.join(tmpdir_path, "p.bin"), size)
    # On a terminal: a bar redrawn in place.
    t0 = time.monotonic()
    p, out = run_on_tty(dripd, ["upload", src, "--to", "/p1", "--chunk-size", "1M", "--limit-rate", "2M"])
    assert p.wait(timeout=120) == 0
    t1 = time.monotonic()
    out.t.join(5)
    draws = []
    for t, chunk in out.timed():
        for m in re.finditer(r"\]\s+(\d+)%\s+" + RATE + r"\s+" + ETA, chunk):
            draws.append((t, int(m.group(1)), float(m.group(2)) * UNIT[m.group(3)], int(m.group(4))))
    mid = [d for d in draws if 20 <= d[1] <= 85]
    assert len(mid) >= 3, out.text()[-2000:]
    actual = size / (t1 - t0)
    for t, pct, rate, eta in mid:
        left = t1 - t
        assert rate <= 1.6 * limit, (pct, rate)
        assert rate >= 0.3 * actual, (pct, rate, actual)
        assert left / 3 - 1 <= eta <= 3 * left + 2, "ETA %d s with %.1f s to go at %d%%" % (eta, left, pct)
    m = re.search(r"p\.bin: 6\.0 MiB in ([\d.]+) s \(" + RATE + r"\)", out.text())
    assert m, out.text()[-500:]
    secs, rate = float(m.group(1)), float(m.group(2)) * UNIT[m.group(3)]
    assert secs <= t1 - t0 + 0.1 and secs >= (t1 - t0) / 2
    assert 0.6 * size / secs <= rate <= 1.4 * size / secs
    # Not a terminal: a plain line every 2 s, and the same closing line.
    r = ctl(dripd, "upload", src, "--to", "/p2", "--chunk-size", "1M", "--limit-rate", "2M", check=True)
    lines = [l for l in r.stderr.splitlines() if " of 6.0 MiB " in l]
    assert lines and "\r" not in r.stderr
    for l in lines:
        m = re.search(r"at " + RATE + ", ETA", l)
        assert m and float(m.group(1)) * UNIT[m.group(2)] <= 1.6 * limit, l
    assert re.search(r"p\.bin: 6\.0 MiB in [\d.]+ s \(", r.stderr)


def test_ctrl_c_mid_upload_ends_the_line_and_says_how_to_resume(dripd, tmpdir_path):
    src = make_file(os.path.join(tmpdir_path, "big.bin"), 24 << 20)
    p, out = run_on_tty(dripd, ["upload", src, "--to", "/cc", "--chunk-size", "1M", "--limit-rate", "4M"])
    wait_until(lambda: server_offset(dripd) >= 2 << 20, 60, "2 MiB on the server")
    wait_until(lambda: "ETA" in out.text(), 10, "the bar on screen")
    p.send_signal(signal.SIGINT)
    assert p.wait(timeout=30) == 130
    out.t.join(5)
    text = out.text()
    m = re.search(r"dripctl: \S*big\.bin: interrupted at [\d.]+ \w+ of 24\.0 MiB; "
                  r"rerun the same command to resume\r?\n", text)
    assert m, text[-600:]
    assert text[:m.start()].endswith("\n"), "the bar was left half-drawn: %r" % text[max(0, m.start() - 100):m.end()]
    assert "upload:" not in text[m.end():]  # one file: no summary
    r = ctl(dripd, "--json", "upload", src, "--to", "/cc", "--wait", check=True)
    res = json.loads(r.stdout)[0]
    assert res["resumed_at"] >= 2 << 20 and res["job"]["state"] == "done"


def test_upload_rides_out_a_daemon_restart(dripd, tmpdir_path):
    """A lost connection is retried: the PATCH fails, then the HEAD that
    asks for the offset fails too while the daemon is down (the path that
    once freed a buffer twice), and the upload finishes once it is back."""
    src = make_file(os.path.join(tmpdir_path, "r.bin"), 16 << 20)
    p = subprocess.Popen([DRIPCTL, "--json", "upload", src, "--to", "/rs", "--wait", "--chunk-size", "1M",
                          "--limit-rate", "2M"], env=ctl_env(dripd), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    err = Lines(p.stderr)
    wait_until(lambda: server_offset(dripd) >= 2 << 20, 60, "2 MiB on the server")
    dripd.stop()
    wait_until(lambda: err.text().count("retrying in") >= 2, 30, "a failed PATCH and a failed HEAD")
    dripd.restart()
    out = p.stdout.read()
    assert p.wait(timeout=120) == 0, err.text()
    res = json.loads(out)[0]
    assert res["ok"] and res["job"]["state"] == "done"
    got = os.path.join(tmpdir_path, "got.bin")
    ctl(dripd, "download", res["media_id"], "-o", got, check=True)
    assert same_file(src, got)


def test_watch_reconnects_after_a_restart_with_last_event_id(dripd, tmpdir_path):
    p = subprocess.Popen([DRIPCTL, "--json", "watch"], env=ctl_env(dripd), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    out, err = Lines(p.stdout), Lines(p.stderr)
    try:
        dripd.wait_log(r"events: stream of alice opened")

        def events():
            return [json.loads(l) for l in out.text().splitlines() if l.startswith("{")]

        def upload(name):
            f = make_file(os.path.join(tmpdir_path, name), 100)
            st, doc = dripd.put_file(f, "/w/" + name)
            assert st == 202
            dripd.wait_job(doc["job"]["id"])
            return doc["job"]["id"]

        a = upload("a.txt")
        wait_until(lambda: any(e["event"] == "job.done" and e["data"]["id"] == a for e in events()), 20, "a's job.done")
        last_a = events()[-1]["id"]
        # Freeze the client, restart the server, make events it cannot see live.
        p.send_signal(signal.SIGSTOP)
        dripd.stop()
        dripd.restart()
        mark = dripd.log_size()
        b = upload("b.txt")
        p.send_signal(signal.SIGCONT)
        wait_until(lambda: any(e["event"] == "job.done" and e["data"]["id"] == b for e in events()), 30,
                   "b's job.done after the reconnect")
        dripd.wait_log(r"events: stream of alice opened after seq %s\b" % last_a, after=mark)
        evs = events()
        assert [e["event"] for e in evs if e["data"]["id"] == b][0] == "job.created"
        ids = [int(e["id"]) for e in evs]
        assert ids == sorted(set(ids)), "every event once, in order"
        assert "reconnecting" in err.text()
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGCONT)
        p.send_signal(signal.SIGINT)
    assert p.wait(timeout=10) == 130


def test_mv_into_a_folder_keeps_the_name(dripd, tmpdir_path):
    x = make_file(os.path.join(tmpdir_path, "x.txt"), 10)
    y = make_file(os.path.join(tmpdir_path, "y.txt"), 11)
    ctl(dripd, "upload", x, "--to", "/a", "--wait", check=True)
    ctl(dripd, "upload", y, "--to", "/b", "--wait", check=True)

    def names(folder):
        return sorted(f["name"] for f in json.loads(ctl(dripd, "--json", "ls", folder, check=True).stdout)["files"])

    r = ctl(dripd, "mv", "/a/x.txt", "/b", check=True)  # an existing folder
    assert r.stdout.strip() == "/a/x.txt -> /b/x.txt"
    assert names("/b") == ["x.txt", "y.txt"] and names("/a") == []
    ctl(dripd, "mv", "/b/x.txt", "/c/", check=True)  # a trailing slash: a folder, new or not
    assert names("/c") == ["x.txt"]
    mid = json.loads(ctl(dripd, "--json", "ls", "/c", check=True).stdout)["files"][0]["id"]
    ctl(dripd, "mv", mid, "/", check=True)  # by id, into the root
    assert "x.txt" in names("/")
    ctl(dripd, "mv", "/x.txt", "/c/renamed.txt", check=True)  # anything else: the new full path
    assert names("/c") == ["renamed.txt"]
    assert ctl(dripd, "mv", "/c/renamed.txt", "b").returncode == 2
    assert ctl(dripd, "mv", "/c/renamed.txt", "/b/y.txt").returncode == 5  # taken


def test_download_to_stdout_and_safe_names(dripd, tmpdir_path):
    src = make_file(os.path.join(tmpdir_path, "report.bin"), 300000)
    ctl(dripd, "upload", src, "--to", "/dl", "--wait", check=True)
    work = os.path.join(tmpdir_path, "work")
    os.mkdir(work)
    r = ctl(dripd, "download", "/dl/report.bin", "-o", "-", cwd=work, text=False)
    assert r.returncode == 0 and r.stdout == open(src, "rb").read()
    assert os.listdir(work) == []
    assert ctl(dripd, "--json", "download", "/dl/report.bin", "-o", "-", cwd=work).returncode == 2
    # without -o: the server's name in the current directory, never over a file
    ctl(dripd, "download", "/dl/report.bin", cwd=work, check=True)
    mine = os.path.join(work, "report.bin")
    assert same_file(src, mine)
    with open(mine, "w") as f:
        f.write("mine")
    r = ctl(dripd, "download", "/dl/report.bin", cwd=work)
    assert r.returncode == 1 and "report.bin exists; use --force" in r.stderr
    assert open(mine).read() == "mine" and sorted(os.listdir(work)) == ["report.bin"]
    ctl(dripd, "download", "/dl/report.bin", "--force", cwd=work, check=True)
    assert same_file(src, mine)
    os.mkdir(os.path.join(work, "sub"))
    ctl(dripd, "download", "/dl/report.bin", "-o", "sub", cwd=work, check=True)
    assert same_file(src, os.path.join(work, "sub", "report.bin"))
    # a name starting with a dot is never written unless named with -o
    dot = make_file(os.path.join(tmpdir_path, "dot"), 20)
    st, doc = dripd.put_file(dot, "/dl/.bashrc")
    assert st == 202
    dripd.wait_job(doc["job"]["id"])
    r = ctl(dripd, "download", "/dl/.bashrc", cwd=work)
    assert r.returncode == 1 and "starts with a dot" in r.stderr
    assert not os.path.exists(os.path.join(work, ".bashrc"))
    ctl(dripd, "download", "/dl/.bashrc", "-o", "bashrc.txt", cwd=work, check=True)
    assert same_file(dot, os.path.join(work, "bashrc.txt"))
    # an error never reaches stdout
    r = ctl(dripd, "download", "/dl/nothing", "-o", "-", cwd=work)
    assert r.returncode == 4 and r.stdout == ""


def test_human_sizes(dripd, tmpdir_path):
    big = make_file(os.path.join(tmpdir_path, "big.bin"), 3 << 19)  # 1.5 MiB
    small = make_file(os.path.join(tmpdir_path, "small.bin"), 1000)
    ctl(dripd, "upload", big, small, "--to", "/h", "--wait", check=True)
    lines = ctl(dripd, "ls", "/h", check=True).stdout.splitlines()
    assert re.search(r"\s1\.5 MiB\s+available\s+big\.bin$", lines[0]), lines
    assert re.search(r"\s1000 B\s+available\s+small\.bin$", lines[1]), lines
    root = ctl(dripd, "ls", check=True).stdout
    assert re.search(r"^h/\s+1\.5 MiB\s+folder\s+2 files$", root, re.M), root
    assert re.search(r"alice\s+2\s+1\.5 MiB", ctl(dripd, "usage", check=True).stdout)


def test_config_file_warns_about_what_it_ignores(dripd, tmpdir_path):
    cfg = os.path.join(dripd.dir, ".config")
    os.makedirs(cfg, exist_ok=True)
    with open(os.path.join(cfg, "dripctl.yaml"), "w") as f:
        f.write("url: %s\ntokn: oops\ntoken: %s\n" % (dripd.url(), dripd.token()))
    r = ctl(dripd, "ls", env={"DRIPD_URL": None, "DRIPD_TOKEN": None})
    assert r.returncode == 0, r.stderr  # url and token came from the file
    assert re.search(r'dripctl\.yaml:2:1: unknown key "tokn" \(known: url, token, token_file\)', r.stderr), r.stderr
    with open(os.path.join(cfg, "dripctl.yaml"), "w") as f:
        f.write("url: [unclosed\n")
    r = ctl(dripd, "ls")
    assert r.returncode == 0 and re.search(r"dripctl\.yaml:\d+:\d+: .*ignored", r.stderr), r.stderr


def test_readme_and_man_page_list_the_same_exit_codes():
    header = open(os.path.join(ROOT, "src", "dripctl", "client.h")).read()
    codes = {int(v) for v in re.findall(r"EXIT_[A-Z]+ = (\d+)", header)}
    readme = open(os.path.join(ROOT, "README.md")).read()
    para = re.search(r"exits? with (.*?)\.\n\n", readme, re.S)
    assert para, "README: the dripctl exit code sentence"
    in_readme = {int(c) for c in re.findall(r"(\d+) \(", para.group(1))}
    man = open(os.path.join(ROOT, "docs", "man", "dripctl.1")).read()
    section = man.split(".SH EXIT STATUS", 1)[1].split(".SH", 1)[0]
    in_man = {int(c) for c in re.findall(r"^\.B (\d+)$", section, re.M)}
    assert codes == in_readme == in_man, (codes, in_readme, in_man)

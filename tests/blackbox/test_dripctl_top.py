"""`dripctl top` (issue 20): the pipeline view in a terminal. Run in a
pseudo terminal with script(1) it redraws in place on the alternate screen;
piped it prints plain text; --json gives the API's document; non-admins get
exit 3."""
import json
import os
import re
import subprocess

from conftest import DRIPCTL, make_file


def top(d, *args, user="alice", timeout=60):
    env = dict(os.environ, DRIPD_URL=d.url(), DRIPD_TOKEN=d.token(user))
    return subprocess.run([DRIPCTL, "top"] + list(args), capture_output=True, env=env, timeout=timeout)


def test_plain_json_and_non_admin(dripd):
    r = top(dripd, "-n", "2")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "\033" not in out  # not a terminal: no escape codes
    blocks = out.split("\n\n" + "dripd pipeline")
    assert len(blocks) == 2, out  # two snapshots, one block each
    assert re.search(r"^upload +queued +flight +thr +jobs/s", out, re.M), out
    assert re.search(r"^  store +0 +0 +4 +0\.00 ", out, re.M), out
    assert re.search(r"^download ", out, re.M) and "bottleneck: none" in out
    r = top(dripd, "--json", "-n", "1")
    assert r.returncode == 0
    lines = r.stdout.decode().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert [p["name"] for p in doc["pipelines"]] == ["upload", "download"]
    r = top(dripd, "-n", "1", user="bob")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert b"admin" in r.stderr
    assert top(dripd, "-n", "zero").returncode == 2


def test_redraws_in_place_in_a_terminal_and_marks_the_bottleneck(dripd_factory):
    d = dripd_factory(config={"pipeline": {"test_store_delay": "2s",
                                           "upload": {"store": {"concurrency": 1}}}})
    f = make_file(os.path.join(d.dir, "t.bin"), 1000)
    for i in range(8):
        assert d.put_file(f, "/top/%d.bin" % i)[0] == 202
    env = dict(os.environ, DRIPD_URL=d.url(), DRIPD_TOKEN=d.token(), TERM="xterm", COLUMNS="120",
               LINES="40")
    # script(1) gives dripctl a pseudo terminal; its output is what a terminal would get
    r = subprocess.run(["script", "-qfec", "%s top -n 4" % DRIPCTL, "/dev/null"], capture_output=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stdout[-2000:]
    out = r.stdout.decode(errors="replace")
    assert out.count("\033[?1049h") == 1 and out.rstrip().endswith("\033[?25h\033[?1049l"), repr(out[-200:])
    frames = out.split("\033[H")[1:]
    assert len(frames) == 4, len(frames)  # every snapshot redraws from the top left
    assert all("\033[J" in fr for fr in frames)
    last = frames[-1]
    store = [l for l in last.split("\n") if re.search(r"> store\s", l)]
    assert store and "<- bottleneck" in store[0], last
    assert re.search(r"bottleneck: \S*upload/store", last), last
    assert "\u2581" in last or "\u2588" in last  # the queue's history in blocks

"""lossyfs's own tests: it forgets what it must, keeps what was made durable
(POSIX-strict and --ext4), freezes where it is armed, and its LD_PRELOAD
shim turns a real syncfs(2) into a lossyfs sync.

Each test writes through the mount, crashes lossyfs, mounts the backing
directory again and looks at what survived.
"""
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import wait_until
from lossyfs_lib import Lossyfs, fsync_path, proc_where, write_file


@pytest.fixture
def lfs_factory():
    made = []
    roots = []

    def make(ext4=False):
        root = tempfile.mkdtemp(prefix="lossyfs-test-")
        roots.append(root)
        fs = Lossyfs(root, ext4=ext4).mount()
        made.append(fs)
        return fs

    yield make
    for fs in made:
        fs.cleanup()
    for r in roots:
        shutil.rmtree(r, ignore_errors=True)


@pytest.fixture(params=[False, True], ids=["strict", "ext4"])
def lfs(request, lfs_factory):
    return lfs_factory(ext4=request.param)


def crash_and_remount(fs):
    fs.crash()
    return fs.mount()


def p(fs, *parts):
    return os.path.join(fs.mnt, *parts)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_unsynced_write_is_forgotten_synced_write_kept(lfs):
    write_file(p(lfs, "a"), b"first", sync=True)
    fsync_path(lfs.mnt)
    write_file(p(lfs, "a"), b"second, never synced")
    write_file(p(lfs, "b"), b"synced data", sync=True)
    fsync_path(lfs.mnt)
    write_file(p(lfs, "b"), b" + appended, not synced", mode="ab")
    assert read(p(lfs, "a")) == b"second, never synced"   # the page cache has it
    crash_and_remount(lfs)
    assert read(p(lfs, "a")) == b"first"
    assert read(p(lfs, "b")) == b"synced data"


def test_new_file_needs_its_directory_synced(lfs):
    # data fsynced, directory not: POSIX does not promise the name
    write_file(p(lfs, "new"), b"data", sync=True)
    crash_and_remount(lfs)
    if lfs.ext4:
        assert read(p(lfs, "new")) == b"data"   # ext4 commits the create with the fsync
    else:
        assert not os.path.exists(p(lfs, "new"))


def test_synced_directory_without_synced_data_keeps_an_empty_file(lfs):
    write_file(p(lfs, "f"), b"x" * 100000)
    fsync_path(lfs.mnt)
    crash_and_remount(lfs)
    assert read(p(lfs, "f")) == b""


def test_rename_unlink_link_need_the_directory_synced(lfs):
    for name in ("r", "u", "l"):
        write_file(p(lfs, name), name.encode() * 10, sync=True)
    fsync_path(lfs.mnt)
    os.rename(p(lfs, "r"), p(lfs, "r2"))
    os.unlink(p(lfs, "u"))
    os.link(p(lfs, "l"), p(lfs, "l2"))
    crash_and_remount(lfs)
    assert sorted(os.listdir(lfs.mnt)) == ["l", "r", "u"]
    os.rename(p(lfs, "r"), p(lfs, "r2"))
    os.unlink(p(lfs, "u"))
    os.link(p(lfs, "l"), p(lfs, "l2"))
    fsync_path(lfs.mnt)
    crash_and_remount(lfs)
    assert sorted(os.listdir(lfs.mnt)) == ["l", "l2", "r2"]
    assert read(p(lfs, "r2")) == b"r" * 10
    assert read(p(lfs, "l2")) == b"l" * 10
    assert os.stat(p(lfs, "l")).st_ino == os.stat(p(lfs, "l2")).st_ino
    assert os.stat(p(lfs, "l")).st_nlink == 2


def test_rename_over_a_durable_file_keeps_the_old_one_until_synced(lfs):
    write_file(p(lfs, "k"), b"old", sync=True)
    fsync_path(lfs.mnt)
    write_file(p(lfs, "k.tmp"), b"new", sync=True)
    os.rename(p(lfs, "k.tmp"), p(lfs, "k"))
    crash_and_remount(lfs)
    assert read(p(lfs, "k")) == b"old"
    write_file(p(lfs, "k.tmp"), b"new", sync=True)
    os.rename(p(lfs, "k.tmp"), p(lfs, "k"))
    fsync_path(lfs.mnt)
    crash_and_remount(lfs)
    assert read(p(lfs, "k")) == b"new"
    assert os.listdir(lfs.mnt) == ["k"]


def test_new_directory_needs_its_parent_synced(lfs_factory):
    lfs = lfs_factory(ext4=False)  # ext4: see the test below
    os.makedirs(p(lfs, "d", "e"))
    write_file(p(lfs, "d", "e", "f"), b"deep", sync=True)
    fsync_path(p(lfs, "d", "e"))
    fsync_path(p(lfs, "d"))
    crash_and_remount(lfs)
    assert not os.path.exists(p(lfs, "d"))  # the root was never synced
    os.makedirs(p(lfs, "d", "e"))
    write_file(p(lfs, "d", "e", "f"), b"deep", sync=True)
    for d in (p(lfs, "d", "e"), p(lfs, "d"), lfs.mnt):
        fsync_path(d)
    crash_and_remount(lfs)
    assert read(p(lfs, "d", "e", "f")) == b"deep"


def test_ext4_fsync_of_a_file_persists_its_new_directories(lfs_factory):
    fs = lfs_factory(ext4=True)
    os.makedirs(p(fs, "x", "y"))
    write_file(p(fs, "x", "y", "z"), b"zz", sync=True)
    crash_and_remount(fs)
    assert read(p(fs, "x", "y", "z")) == b"zz"


def test_truncate_and_removed_directory_come_back(lfs):
    write_file(p(lfs, "t"), b"0123456789" * 1000, sync=True)
    os.mkdir(p(lfs, "gone"))
    fsync_path(lfs.mnt)
    os.truncate(p(lfs, "t"), 5)
    os.rmdir(p(lfs, "gone"))
    crash_and_remount(lfs)
    assert read(p(lfs, "t")) == b"0123456789" * 1000
    assert os.path.isdir(p(lfs, "gone"))


def test_sync_command_makes_everything_durable(lfs):
    os.makedirs(p(lfs, "a", "b"))
    write_file(p(lfs, "a", "b", "c"), b"c" * 70000)
    write_file(p(lfs, "top"), b"top")
    os.rename(p(lfs, "top"), p(lfs, "a", "top"))
    st = lfs.stats()
    assert st["dirty_files"] >= 2 and st["dirty_bytes"] >= 70000, st
    lfs.sync()
    assert lfs.stats()["dirty_files"] == 0
    crash_and_remount(lfs)
    assert read(p(lfs, "a", "b", "c")) == b"c" * 70000
    assert read(p(lfs, "a", "top")) == b"top"
    assert sorted(os.listdir(lfs.mnt)) == ["a"]


def test_clean_unmount_is_a_sync(lfs):
    write_file(p(lfs, "kept"), b"kept")
    lfs.unmount()
    lfs.mount()
    assert read(p(lfs, "kept")) == b"kept"


def test_orphans_are_invisible_and_gone_after_a_crash(lfs):
    write_file(p(lfs, "o"), b"o", sync=True)  # lives in the orphan area
    assert os.listdir(lfs.mnt) == ["o"]
    lfs.crash()
    assert os.listdir(lfs.backing) == (["o"] if lfs.ext4 else [])
    lfs.mount()


SYNCFS_CHILD = r"""
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDONLY)
rc = libc.syncfs(fd)
sys.exit(0 if rc == 0 else 1)
"""


def test_preload_shim_turns_syncfs_into_a_lossyfs_sync(lfs):
    os.makedirs(p(lfs, "s"))
    write_file(p(lfs, "s", "one"), b"1" * 5000)
    write_file(p(lfs, "s", "two"), b"2" * 5000)
    env = dict(os.environ)
    # without the shim a syncfs does not reach lossyfs
    r = subprocess.run([sys.executable, "-c", SYNCFS_CHILD, p(lfs, "s", "one")], env=env)
    assert r.returncode == 0
    assert lfs.stats()["dirty_files"] >= 2
    env.update(lfs.env())
    r = subprocess.run([sys.executable, "-c", SYNCFS_CHILD, p(lfs, "s", "one")], env=env)
    assert r.returncode == 0
    assert lfs.stats()["dirty_files"] == 0
    # a syncfs of another file system is not a lossyfs sync
    write_file(p(lfs, "s", "three"), b"3")
    r = subprocess.run([sys.executable, "-c", SYNCFS_CHILD, lfs.root], env=env)
    assert r.returncode == 0
    assert lfs.stats()["dirty_files"] == 1
    crash_and_remount(lfs)
    assert read(p(lfs, "s", "one")) == b"1" * 5000
    assert read(p(lfs, "s", "two")) == b"2" * 5000
    assert not os.path.exists(p(lfs, "s", "three"))


FSYNC_CHILD = r"""
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
os.write(fd, b"armed")
os.fsync(fd)
print("fsynced", flush=True)
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_armed_freeze_stops_the_file_system_at_that_operation(lfs_factory, when):
    fs = lfs_factory()
    write_file(p(fs, "f"), b"", sync=True)
    fsync_path(fs.mnt)
    rep = fs.arm("fsync", 1, when=when, match="/f")
    child = subprocess.Popen([sys.executable, "-c", FSYNC_CHILD, p(fs, "f")], stdout=subprocess.PIPE)
    try:
        ans = rep.line(30)
        assert ans == "frozen fsync /f", ans
        assert child.poll() is None  # held inside its fsync
        child.kill()
        fs.crash()
        child.wait(30)
        assert child.stdout.read() == b""   # it never learnt of the fsync
    finally:
        rep.close()
    fs.mount()
    assert read(p(fs, "f")) == (b"armed" if when == "after" else b"")


STUCK_CHILD = r"""
import errno, mmap, os, sys
what, path = sys.argv[1], sys.argv[2]
try:
    if what == "fsync":
        fd = os.open(path, os.O_WRONLY)
        os.write(fd, b"x")
        print("writing", flush=True)
        os.fsync(fd)
    elif what == "mmap":
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(fd, 1 << 20)
        m = mmap.mmap(fd, 1 << 20)
        m[:] = b"d" * (1 << 20)  # dirty shared pages: written back at close
        print("mapped", flush=True)
        sys.stdin.read()
    else:
        print("reading", flush=True)
        sys.stdin.read()
        with open(path, "rb") as f:
            f.read()
    print("no error")
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))
"""


def test_crash_lets_go_of_every_process_inside(lfs_factory):
    """A crash aborts the kernel's FUSE connection before it answers: every
    process held by the freeze gets out at once (SIGKILLed ones exit, a
    live one gets an error), and lossyfs exits at once, whatever was in
    flight (a frozen fsync, dirty shared mappings written back at close)."""
    fs = lfs_factory()
    write_file(p(fs, "f"), b"", sync=True)
    write_file(p(fs, "g"), b"g", sync=True)
    fsync_path(fs.mnt)
    rep = fs.arm("fsync", 1, when="after", match="/f")

    def child(what, name):
        c = subprocess.Popen([sys.executable, "-c", STUCK_CHILD, what, p(fs, name)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        c.stdout.readline()
        return c
    try:
        mapper = child("mmap", "h")
        reader = child("read", "g")
        syncer = child("fsync", "f")
        assert rep.line(30) == "frozen fsync /f"
    finally:
        rep.close()
    mapper.kill()  # its exit writes the dirty pages back: held by the freeze
    syncer.kill()  # held inside a frozen fsync
    reader.stdin.write(b"go\n")
    reader.stdin.close()  # reads from the frozen file system

    def inside(c):
        return any("fuse" in l for l in proc_where(c.pid))
    for c in (mapper, syncer, reader):
        wait_until(lambda: inside(c), 10, "pid %d waiting on lossyfs" % c.pid)
    t = time.monotonic()
    fs.crash()
    assert fs.last_exit_s < 5 and time.monotonic() - t < 10, \
        "lossyfs took %.1fs to exit after its crash" % fs.last_exit_s
    for c in (mapper, syncer):
        c.wait(5)
    reader.wait(5)
    out = reader.stdout.read().decode().strip()
    assert out in ("ECONNABORTED", "ENOTCONN"), out
    assert not fs.mounted()


def test_random_writes_match_a_model(lfs):
    """Seeded random writes, truncations and fsyncs against a model of
    what is durable (the seed is printed for a replay)."""
    seed = int(os.environ.get("LOSSYFS_SEED", random.randrange(1 << 30)))
    print("lossyfs model seed", seed)
    rnd = random.Random(seed)
    # name -> [current bytes, durable bytes of the inode, is the name durable]
    files = {}
    for rounds in range(3):
        for step in range(150):
            name = "m%d" % rnd.randrange(6)
            path = p(lfs, name)
            if name not in files:
                write_file(path, b"")
                files[name] = [b"", b"", False]
            f = files[name]
            act = rnd.random()
            if act < 0.6:
                off = rnd.randrange(0, len(f[0]) + 200000)
                data = rnd.randbytes(rnd.choice([1, 100, 4096, 65536, 70000, 300000]))
                with open(path, "r+b") as fh:
                    fh.seek(off)
                    fh.write(data)
                cur = f[0] + b"\0" * max(0, off - len(f[0]))
                f[0] = cur[:off] + data + cur[off + len(data):]
            elif act < 0.75:
                size = rnd.randrange(0, len(f[0]) + 100000)
                os.truncate(path, size)
                f[0] = f[0][:size] + b"\0" * max(0, size - len(f[0]))
            elif act < 0.95:
                fsync_path(path)
                f[1] = f[0]
                f[2] = f[2] or lfs.ext4
            else:
                fsync_path(lfs.mnt)
                for v in files.values():
                    v[2] = True
        crash_and_remount(lfs)
        for k, v in files.items():
            if v[2]:
                got = read(p(lfs, k))
                assert hashlib.sha256(got).digest() == hashlib.sha256(v[1]).digest(), \
                    "seed %d round %d: %s has %d bytes, durable were %d" % (seed, rounds, k, len(got), len(v[1]))
            else:
                assert not os.path.exists(p(lfs, k)), "seed %d round %d: %s should be gone" % (seed, rounds, k)
        files = {k: [v[1], v[1], True] for k, v in files.items() if v[2]}
        assert sorted(os.listdir(lfs.mnt)) == sorted(files)


def test_sqlite_wal_commits_survive_and_open_transactions_do_not(lfs):
    import sqlite3
    db = sqlite3.connect(p(lfs, "t.db"))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t(x)")
    db.commit()
    fsync_path(lfs.mnt)  # SQLite never syncs the directory of a new database
    for i in range(50):
        db.execute("INSERT INTO t VALUES (?)", (i,))
        db.commit()
    db.execute("INSERT INTO t VALUES (-1)")  # never committed
    crash_and_remount(lfs)
    db2 = sqlite3.connect(p(lfs, "t.db"))
    assert db2.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db2.execute("SELECT count(*), min(x) FROM t").fetchone() == (50, 0)
    db2.close()


def test_allow_other_lets_another_user_in(lfs):
    os.chmod(lfs.root, 0o755)
    os.chmod(lfs.mnt, 0o755)
    os.mkdir(p(lfs, "pub"))
    os.chmod(p(lfs, "pub"), 0o777)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                        "echo hi > %s && cat %s" % (p(lfs, "pub", "n"), p(lfs, "pub", "n"))],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == "hi\n", r.stderr
    assert os.stat(p(lfs, "pub", "n")).st_uid == 65534
    # default_permissions: the kernel checks modes for them
    os.mkdir(p(lfs, "priv"), 0o700)
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "ls", p(lfs, "priv")],
                       capture_output=True)
    assert r.returncode != 0

"""lossyfs from Python: mount, sync, freeze, arm, crash (tests/tools/lossyfs).

    fs = Lossyfs(tmpdir)          # tmpdir/backing shown at tmpdir/mnt
    fs.mount()
    ... write under fs.mnt ...
    fs.crash()                    # forget what was not durable, unmount
    fs.mount()                    # what survived the power cut

Every answer comes back on a reply FIFO of our own that we hold open for
reading and writing (so it never reports a hang-up); waits have deadlines.
"""
import os
import select
import subprocess
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOSSYFS = os.environ.get("LOSSYFS_BIN", os.path.join(ROOT, "build", "tools", "lossyfs"))
PRELOAD = os.environ.get("LOSSYFS_PRELOAD", os.path.join(ROOT, "build", "tools", "liblossyfs-preload.so"))


class Reply:
    """A reply FIFO: lines lossyfs writes to it, read with a deadline."""
    _n = 0
    _lock = threading.Lock()

    def __init__(self, dir_):
        with Reply._lock:
            Reply._n += 1
            n = Reply._n
        self.path = os.path.join(dir_, "reply.%d.%d" % (os.getpid(), n))
        if os.path.exists(self.path):
            os.unlink(self.path)
        os.mkfifo(self.path, 0o600)
        self.fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        self.buf = b""

    def line(self, timeout):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                self.buf += os.read(self.fd, 4096)
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            os.unlink(self.path)


class Lossyfs:
    def __init__(self, root, ext4=False, backing=None, mnt=None):
        self.root = root
        self.backing = backing or os.path.join(root, "backing")
        self.mnt = mnt or os.path.join(root, "mnt")
        self.ctl = os.path.join(root, "lossyfs.ctl")
        self.log_path = os.path.join(root, "lossyfs.log")
        self.ext4 = ext4
        self.proc = None
        for d in (self.backing, self.mnt):
            os.makedirs(d, exist_ok=True)

    def env(self):
        """What a process needs so that its syncfs(2) of the mount reaches lossyfs."""
        return {"LD_PRELOAD": PRELOAD, "LOSSYFS_CONTROL": self.ctl, "LOSSYFS_MOUNT": self.mnt}

    def mounted(self):
        mnt = os.path.realpath(self.mnt)
        with open("/proc/self/mountinfo") as f:
            return any(l.split()[4] == mnt for l in f)

    def mount(self, timeout=20):
        assert not self.mounted(), "%s is still mounted" % self.mnt
        self.logf = open(self.log_path, "ab")
        args = [LOSSYFS] + (["--ext4"] if self.ext4 else []) + ["--control", self.ctl, self.backing, self.mnt]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.logf)
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline().decode() if r else ""
        if "mounted on" not in line:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("lossyfs did not mount: %r; log:\n%s" % (line, self.log_tail()))
        deadline = time.monotonic() + timeout
        while not self.mounted():
            assert time.monotonic() < deadline, "lossyfs mount never showed up"
            time.sleep(0.01)
        return self

    def threads(self):
        """Where each thread of lossyfs is (state, wait channel, kernel stack)."""
        return "\n".join(proc_where(self.proc.pid))

    def log_tail(self, n=30):
        try:
            with open(self.log_path, "rb") as f:
                return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def send(self, line):
        fd = os.open(self.ctl, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: lossyfs is gone
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def command(self, cmd, args="", timeout=30):
        rep = Reply(self.root)
        try:
            self.send(" ".join(x for x in (cmd, args, rep.path) if x) if cmd != "arm"
                      else "arm %s reply=%s" % (args, rep.path))
            ans = rep.line(timeout)
        finally:
            rep.close()
        if ans is None:
            raise AssertionError("lossyfs: no answer to %r within %ss; threads:\n%s\nblocked processes:\n%s\n"
                                 "log:\n%s" % (cmd, timeout, self.threads(), blocked_processes(), self.log_tail()))
        return ans

    def sync(self):
        ans = self.command("sync")
        assert ans.startswith("ok"), ans

    def stats(self):
        ans = self.command("stats")
        assert ans.startswith("ok"), ans
        return {k: int(v) for k, v in (x.split("=") for x in ans.split()[1:])}

    def freeze(self):
        ans = self.command("freeze")
        assert ans.startswith("frozen"), ans

    def arm(self, op, n, when="before", match=""):
        """Freeze at the n-th op; returns a Reply whose next line is 'frozen OP PATH'."""
        rep = Reply(self.root)
        self.send("arm op=%s n=%d when=%s%s reply=%s" % (op, n, when, " match=" + match if match else "", rep.path))
        ans = rep.line(30)
        if ans != "ok armed":
            rep.close()
            raise AssertionError("lossyfs: arm: %r" % ans)
        return rep

    def crash(self, timeout=30):
        """Forget whatever is not durable; lossyfs unmounts and exits."""
        ans = self.command("crash", timeout=timeout)
        assert ans.startswith("ok"), ans
        self.wait_exit()

    def wait_exit(self, timeout=90, slow=5):
        """Wait for lossyfs to exit; an exit slower than `slow` seconds
        prints where its threads and every blocked process are."""
        t0 = time.monotonic()
        try:
            self.proc.wait(slow)
        except subprocess.TimeoutExpired:
            print("lossyfs: still running %.0fs after it was told to go; threads:\n%s\n"
                  "blocked processes:\n%s" % (slow, self.threads(), blocked_processes()))
            try:
                self.proc.wait(timeout - slow)
            except subprocess.TimeoutExpired:
                raise AssertionError("lossyfs did not exit within %ss; threads:\n%s\nlog:\n%s"
                                     % (timeout, self.threads(), self.log_tail()))
        self.last_exit_s = time.monotonic() - t0
        self.proc.stdout.close()
        self.logf.close()
        deadline = time.monotonic() + timeout
        while self.mounted():
            assert time.monotonic() < deadline, "lossyfs still mounted after exit"
            time.sleep(0.01)

    def unmount(self, timeout=30):
        """A clean unmount: lossyfs makes everything durable and exits."""
        subprocess.run(["fusermount3", "-u", self.mnt], check=True)
        self.wait_exit(timeout)

    def cleanup(self):
        """Best effort at the end of a test (lossyfs is ours: kill by pid)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.crash(timeout=10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
                subprocess.run(["umount", "-l", self.mnt], capture_output=True)


def proc_where(pid):
    """One line per thread of pid: tid, state, wait channel, kernel stack."""
    out = []
    try:
        tids = sorted(os.listdir("/proc/%d/task" % pid))
    except OSError as e:
        return [str(e)]
    for t in tids:
        base = "/proc/%d/task/%s/" % (pid, t)
        try:
            with open(base + "stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(base + "wchan") as f:
                wchan = f.read()
            try:
                with open(base + "stack") as f:
                    stack = " < ".join(l.split()[-1] for l in f.read().splitlines())
            except OSError as e:
                stack = "(stack: %s)" % e.strerror
            out.append("%s %s %s %s" % (t, state, wchan, stack))
        except OSError as e:
            out.append("%s %s" % (t, e))
    return out


def blocked_processes():
    """Every process in uninterruptible sleep (D) with where it waits."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
            # comm, not cmdline: reading another process's memory could
            # wait on its mmap lock, held by a thread blocked on the mount
            with open("/proc/%s/comm" % d) as f:
                cmd = f.read().strip()
        except OSError:
            continue
        if st.rsplit(")", 1)[1].split()[0] == "D" or any(
                l.split()[1] == "D" for l in proc_where(int(d)) if len(l.split()) > 1):
            out.append("pid %s %s\n  %s" % (d, cmd, "\n  ".join(proc_where(int(d)))))
    return "\n".join(out) or "(none)"


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path, data, sync=False, mode="wb"):
    with open(path, mode) as f:
        f.write(data)
        f.flush()
        if sync:
            os.fsync(f.fileno())

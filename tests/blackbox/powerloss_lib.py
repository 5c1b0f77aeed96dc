"""Power cuts: dripd with its whole data_dir on lossyfs (issue 19).

One run is a sequence of cuts on one data_dir. Each cut:
  1. arms lossyfs to freeze at a seeded operation (the n-th fsync of a
     spool file, write of a sealed work file, link into objects/, fsync of
     the catalog's WAL, rename into cache/, unlink of an object...), or at
     a seeded moment;
  2. runs clients (PUT, multipart, tus with HEADs, deletes, moves,
     downloads that fill the cache) and records every acknowledgement;
  3. once frozen, lets answers that need no disk reach the clients, then
     SIGKILLs every dripd process and crashes lossyfs (everything not
     durable is forgotten);
  4. mounts the backing directory again, starts dripd and checks:
     every acknowledged upload completes and downloads byte-identical;
     every tus offset a HEAD (or PATCH) reported is still there (and the
     upload is resumed from it; a creation, offset 0, may be gone: a tus
     201 promises no durability, docs/UPLOADS.md); no acknowledged delete or move comes
     back; PRAGMA integrity_check passes; no job is stuck or failed; the
     store holds no object the catalog does not know.
Everything random comes from one seed (printed; POWERLOSS_SEED replays
the plan). Problems name the cut, the upload and the file.
"""
import concurrent.futures
import hashlib
import http.client
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import threading
import time

import objstore
from conftest import DRIPD, USERS, Notify, deep_merge, wait_until
from lossyfs_lib import Lossyfs

TOKEN = USERS[0]["token"]  # alice, admin
VERBOSE = os.environ.get("POWERLOSS_VERBOSE") == "1"  # a line per cut

# Where a cut can fall: (name, lossyfs op, path substring, max n)
TARGETS = [
    ("intake: spool fsync", "fsync", "/spool/", 4),
    ("intake: spool dir fsync", "fsyncdir", "/spool", 3),
    ("intake: spool write", "write", "/spool/", 40),
    ("encrypt: sealed write", "write", "/work/", 30),
    ("encrypt: sealed rename", "rename", "/work/", 3),
    ("store: link", "link", "/objects/", 3),
    ("store: fsync", "fsync", "/work/", 3),
    ("store: rename", "rename", "/objects/", 3),
    ("store: dir fsync", "fsyncdir", "/objects", 3),
    # small objects are rows of objects/.small.db, an SQLite WAL (issue 15;
    # objstore.py): its commits are the store's puts and deletes of them
    ("store: small db WAL write", "write", "/objects/.small.db-wal", 12),
    ("store: small db commit", "fsync", "/objects/.small.db-wal", 6),
    ("store: small db checkpoint", "fsync", "/objects/.small.db", 2),
    ("catalog: WAL write", "write", "/catalog.db-wal", 12),
    ("catalog: commit", "fsync", "/catalog.db-wal", 6),
    ("catalog: checkpoint", "fsync", "/catalog.db", 2),
    ("notify: spool to cache", "rename", "/cache/", 3),
    ("cache fill: write", "write", "/cache/", 20),
    ("cache fill: fsync", "fsync", "/cache/", 2),
    ("cache dir fsync", "fsyncdir", "/cache", 2),
    ("delete: object unlink", "unlink", "/objects/", 2),
    ("delete: cache unlink", "unlink", "/cache/", 2),
    ("any unlink", "unlink", "", 4),
    ("any create", "create", "", 6),
    ("any operation", "any", "", 400),
    ("a moment", None, None, None),
]

SAMPLE = 4  # uploads verified earlier that are downloaded again after each cut
DOWNLOADERS = 3  # verification downloads at once

SIZES = [(0, 4096, 45), (4097, 65536, 25), (65537, 1 << 20, 20), (2 << 20, 6 << 20, 10)]


def blob(key, size):
    """The bytes of upload `key` (regenerated, never stored)."""
    return random.Random(key).randbytes(size)


def pick_size(rnd, big=True):
    sizes = SIZES if big else SIZES[:3]
    r = rnd.uniform(0, sum(w for _, _, w in sizes))
    for lo, hi, w in sizes:
        if r < w:
            return rnd.randint(lo, hi)
        r -= w
    return 0


class Http:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def __call__(self, method, path, body=None, headers=None, timeout=60):
        """(status, headers, body); status None when the connection died."""
        h = {"Authorization": "Bearer " + TOKEN}
        h.update(headers or {})
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        except (OSError, http.client.HTTPException):
            return None, {}, b""
        finally:
            c.close()


class Upload:
    def __init__(self, kind, key, size, path, cut):
        self.kind, self.key, self.size, self.path = kind, key, size, path
        self.sha = hashlib.sha256(blob(key, size)).hexdigest()
        self.media = self.job = None
        self.acked_cut = cut
        self.deleted = False   # an acknowledged delete
        self.moved_to = None   # an acknowledged move
        self.maybe_deleted = False  # a delete was sent, its answer lost in a cut
        self.maybe_moved_to = None  # the same for a move
        self.lost = False      # reported lost (once)
        self.busy = False      # a client is deleting or moving it
        self.verified = False  # downloaded byte-identical at least once
        self.touched_cut = -1  # the last cut whose load downloaded, moved or deleted it
        # tus only: the upload's URL and the largest offset the server reported
        self.tus = None
        self.offset = 0
        self.offset_how = ""

    def __str__(self):
        return "%s upload %s (%d B%s%s)" % (
            self.kind, self.path, self.size, ", media " + self.media if self.media else "",
            ", acked in cut %d" % self.acked_cut if self.media else "")


class Cluster:
    """lossyfs + dripd on it, and the ledger of what was acknowledged."""

    def __init__(self, root, seed, env=None, config=None, ext4=False, log=print):
        self.root, self.seed, self.log = root, seed, log
        self.fs = Lossyfs(root, ext4=ext4)
        self.extra_env = env or {}
        self.config = deep_merge({
            "listen": ["127.0.0.1:0"],
            "data_dir": self.fs.mnt,
            "users": USERS,
            "supervisor": {"max_restarts": 5, "max_seconds": "10s",
                           "heartbeat_interval": "200ms", "heartbeat_timeout": "3s",
                           "drain_timeout": "10s"},
            "pipeline": {"retry": {"attempts": 5, "backoff": "50ms", "max_backoff": "500ms"}},
            "cache": {"max_size": "2MiB"},  # most downloads fill the cache again
            "log": {"level": "info"},
        }, config)
        self.data_dir = self.config["data_dir"]
        self.config_path = os.path.join(root, "dripd.yaml")
        self.log_path = os.path.join(root, "dripd.log")
        self.proc = None
        self.uploads = []      # acknowledged (or tus in progress), in order
        self.tus_open = []     # tus uploads created, not finished
        self.lock = threading.Lock()
        self.problems = []
        self.boots = 0         # power cuts so far: each is a reboot (start_dripd)
        self.counts = dict(cuts=0, acked=0, put=0, multipart=0, tus=0, deletes=0, moves=0,
                           tus_offsets=0, tus_resumed=0, tus_creations_gone=0, downloads=0,
                           lost=0, unreached=0, garbage=0)
        self.garbage = {}  # temporary files seen in objects/ after a cut -> that cut
        self.orphans = set()  # objects with no media (a delete cut before its store delete)
        self.timing = dict(load=0.0, quiet=0.0, crash=0.0, restart=0.0, verify=0.0, settle=0.0,
                           download=0.0)
        self.slowest = {"lossyfs exit": 0.0, "dripd exit": 0.0}  # after a cut, seconds
        self.cut_desc = "start"
        self.cut_no = 0
        self.plan = None  # a fixed list of (name, op, match, n, when) instead of TARGETS
        self.actions = list(self.ACTIONS)

    # ---- processes ----
    def start_dripd(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f)
        npath = os.path.join(self.root, "notify.sock")
        if os.path.exists(npath):
            os.unlink(npath)
        self.notify = Notify(npath)
        env = dict(os.environ)
        env.update(self.fs.env())
        env.update(self.extra_env)
        env["NOTIFY_SOCKET"] = npath
        # A power cut is a reboot: a new boot id, so dripd drops the cache
        # fills a cut may have left holding other bytes (cache.c, "Recycling")
        # as it does after a real one. A restart without a cut keeps the id.
        env["DRIPD_TEST_BOOT_ID"] = "powerloss-boot-%d" % self.boots
        self.logf = open(self.log_path, "ab")
        self.logf.write(b"==== cut %d: start (%s)\n" % (self.cut_no, self.cut_desc.encode()))
        self.logf.flush()
        self.proc = subprocess.Popen([DRIPD, "-c", self.config_path], stdout=self.logf,
                                     stderr=self.logf, env=env, cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                self.notify.wait("READY=1", timeout=0.5)
                break
            except AssertionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("dripd did not start after cut %d (%s); log:\n%s"
                                         % (self.cut_no, self.cut_desc, self.log_tail()))
        with open(os.path.join(self.data_dir, "run", "listen")) as f:
            self.http = Http(f.readline().strip())

    def kill_dripd(self):
        """SIGKILL every dripd process (the group we started)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def reap_dripd(self):
        self.proc.wait(30)
        # the workers are in the same group; gone once the group is empty
        wait_until(lambda: not _group_alive(self.proc.pid), 30, "dripd's processes to exit",
                   interval=0.01)
        self.notify.close()
        self.logf.close()

    def log_grep(self, pattern):
        """dripd's log lines matching pattern since its last start."""
        import re
        with open(self.log_path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        start = max([i for i, l in enumerate(lines) if l.startswith("==== cut")] or [0])
        return [l for l in lines[start:] if re.search(pattern, l)]

    def log_tail(self, n=40):
        with open(self.log_path, "rb") as f:
            return "\n".join(f.read().decode(errors="replace").splitlines()[-n:])

    def begin(self):
        self.fs.mount()
        self.start_dripd()

    def end(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill_dripd()
                self.proc.wait(10)
            self.notify.close()
            self.logf.close()
        if self.fs.proc is not None and self.fs.proc.poll() is None:
            self.fs.unmount()

    def abort(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill_dripd()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self.fs.cleanup()

    # ---- the ledger ----
    def problem(self, what, up=None):
        msg = "cut %d (%s): %s%s" % (self.cut_no, self.cut_desc, (str(up) + ": ") if up else "", what)
        with self.lock:
            self.problems.append(msg)
        self.log("POWERLOSS PROBLEM " + msg)

    def acked(self, up):
        with self.lock:
            self.uploads.append(up)
            self.counts["acked"] += 1
            self.counts[up.kind] += 1

    # ---- client actions (each records only what was acknowledged) ----
    def do_put(self, rnd, tag):
        size = pick_size(rnd)
        up = Upload("put", "%d/%s" % (self.seed, tag), size, "/pc/%s.bin" % tag, self.cut_no)
        st, _, body = self.http("PUT", "/v1/files" + up.path, body=blob(up.key, size))
        if st == 202:
            doc = json.loads(body)
            up.media, up.job = doc["media"]["id"], doc["job"]["id"]
            self.acked(up)
        elif st is not None and st not in (503, 507):
            self.problem("PUT answered %s: %r" % (st, body[:200]), up)

    def do_multipart(self, rnd, tag):
        ups = [Upload("multipart", "%d/%s/%d" % (self.seed, tag, i), pick_size(rnd, big=False),
                      "/pc/%s/f%d.bin" % (tag, i), self.cut_no) for i in range(rnd.randint(1, 3))]
        bnd = "pcbound%x" % rnd.getrandbits(48)
        parts = []
        for i, up in enumerate(ups):
            parts.append(b"--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f%d.bin\"\r\n"
                         b"Content-Type: application/octet-stream\r\n\r\n" % (bnd.encode(), i))
            parts.append(blob(up.key, up.size))
            parts.append(b"\r\n")
        parts.append(b"--%s--\r\n" % bnd.encode())
        st, _, body = self.http("POST", "/v1/files/pc/" + tag, body=b"".join(parts),
                                headers={"Content-Type": "multipart/form-data; boundary=" + bnd})
        if st == 202:
            for up, item in zip(ups, json.loads(body)["uploads"]):
                up.media, up.job = item["media"]["id"], item["job"]["id"]
                self.acked(up)
        elif st is not None and st not in (503, 507):
            self.problem("multipart POST answered %s: %r" % (st, body[:200]), ups[0])

    def tus_report(self, up, offset, how):
        with self.lock:
            if offset > up.offset or not up.offset_how:
                up.offset, up.offset_how = offset, "%s in cut %d" % (how, self.cut_no)

    def tus_patch(self, up, rnd, chunks):
        """PATCH from up.offset in `chunks` pieces (HEAD before some);
        True when the upload finished (acknowledged)."""
        data = blob(up.key, up.size)
        off = up.offset
        for i in range(chunks):
            if rnd.random() < 0.5:
                st, h, _ = self.http("HEAD", up.tus, headers={"Tus-Resumable": "1.0.0"})
                if st != 200:
                    return False
                off = int(h["upload-offset"])
                self.tus_report(up, off, "HEAD")
            end = up.size if i == chunks - 1 else off + (up.size - off) // (chunks - i)
            st, h, body = self.http("PATCH", up.tus, body=data[off:end],
                                    headers={"Tus-Resumable": "1.0.0", "Upload-Offset": str(off),
                                             "Content-Type": "application/offset+octet-stream"})
            if st != 204:
                if st not in (None, 409, 423, 503, 507):
                    self.problem("tus PATCH at %d answered %s: %r" % (off, st, body[:200]), up)
                return False
            off = int(h["upload-offset"])
            if off == up.size:
                up.media, up.job = h.get("upload-media"), h.get("upload-job")
                with self.lock:
                    if up in self.tus_open:
                        self.tus_open.remove(up)
                self.acked(up)
                return True
            self.tus_report(up, off, "PATCH")
        return False

    def do_tus(self, rnd, tag):
        size = pick_size(rnd)
        up = Upload("tus", "%d/%s" % (self.seed, tag), size, "/pc/%s.tus" % tag, self.cut_no)
        meta = "filename %s,folder %s" % (_b64(tag + ".tus"), _b64("/pc"))
        st, h, body = self.http("POST", "/v1/uploads", headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": str(size), "Upload-Metadata": meta})
        if st != 201:
            if st is not None and st not in (503, 507):
                self.problem("tus POST answered %s: %r" % (st, body[:200]), up)
            return
        up.tus = h["location"]
        if up.tus.startswith("http"):
            up.tus = "/" + up.tus.split("/", 3)[3]
        self.tus_report(up, 0, "creation")
        with self.lock:
            self.tus_open.append(up)
        if int(h.get("upload-offset", "0")) == size and h.get("upload-job"):
            up.media, up.job = h.get("upload-media"), h.get("upload-job")  # empty: done at creation
            with self.lock:
                self.tus_open.remove(up)
            self.acked(up)
            return
        # some uploads stop half way, to be resumed after the next cut
        self.tus_patch(up, rnd, rnd.randint(1, 4) if rnd.random() < 0.8 else 1)

    def live(self, pred=lambda u: True):
        with self.lock:
            return [u for u in self.uploads if u.media and not u.deleted and not u.lost
                    and not u.maybe_deleted and pred(u)]

    def claim(self, rnd):
        """An upload of an earlier cut for a delete or a move (one at a time)."""
        with self.lock:
            cands = [u for u in self.uploads if u.media and not u.deleted and not u.lost
                     and not u.maybe_deleted and not u.busy and u.acked_cut < self.cut_no]
            if not cands:
                return None
            up = rnd.choice(cands)
            up.busy = True
            up.touched_cut = self.cut_no
            return up

    def do_delete(self, rnd, tag):
        up = self.claim(rnd)
        if up is None:
            return
        up.maybe_deleted = True
        st, _, body = self.http("DELETE", "/v1/media/" + up.media)
        if st is not None:
            up.maybe_deleted = False
        with self.lock:
            up.busy = False
            if st == 204:
                up.deleted = True
                self.counts["deletes"] += 1

    def do_move(self, rnd, tag):
        up = self.claim(rnd)
        if up is None:
            return
        new = "/pc/moved/%s.bin" % tag
        up.maybe_moved_to = new
        st, _, body = self.http("PATCH", "/v1/media/" + up.media, body=json.dumps({"path": new}),
                                headers={"Content-Type": "application/json"})
        if st is not None:
            up.maybe_moved_to = None
        with self.lock:
            up.busy = False
            if st == 200:
                up.moved_to = new
                self.counts["moves"] += 1

    def do_download(self, rnd, tag):
        cands = self.live(lambda u: u.acked_cut < self.cut_no)
        if cands:
            up = rnd.choice(cands)
            up.touched_cut = self.cut_no  # a cache fill the cut may have cut short
            self.download(up, during_load=True)

    def download_all(self, ups):
        """Download each (a few at a time); a wrong or missing answer is a loss."""
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(DOWNLOADERS) as pool:
            for up, ok in zip(ups, pool.map(self.download, ups)):
                if not ok:
                    self.counts["lost"] += 1
                    up.lost = True
        self.timing["download"] += time.monotonic() - t0

    def download(self, up, during_load=False):
        st, _, body = self.http("GET", "/v1/media/%s/content" % up.media, timeout=60)
        if st == 200:
            if hashlib.sha256(body).hexdigest() != up.sha:
                self.problem("LOST: downloaded %d bytes that differ from the upload (%s)"
                             % (len(body), self.describe_wrong(up, body)), up)
                return False
            up.verified = True
            with self.lock:
                self.counts["downloads"] += 1
            return True
        if not during_load:
            self.problem("LOST: content answered %s: %r" % (st, body[:200]), up)
        return False

    def describe_wrong(self, up, body):
        """What wrong bytes are: where they start to differ, and whose they
        are (another upload's, zeros), with the cache entry's state now."""
        want = blob(up.key, up.size)
        off = next((i for i, (a, b) in enumerate(zip(body, want)) if a != b), min(len(body), len(want)))
        what = ["first difference at byte %d" % off]
        rest = body[off:]
        if rest and not rest.strip(b"\0"):
            what.append("zeros from there")
        elif rest:
            probe = rest[:64]
            with self.lock:
                others = [u for u in self.uploads if u is not up and u.size > off]
            for u in others:
                if blob(u.key, u.size)[off:off + len(probe)] == probe:
                    what.append("from there the bytes of %s%s" % (
                        u, " (all of them)" if blob(u.key, u.size) == body else ""))
                    break
            else:
                what.append("from there bytes of no upload at that offset")
        try:  # the entry on disk now: right or wrong bytes?
            with open(os.path.join(self.data_dir, "cache", up.media), "rb") as f:
                now = f.read()
            what.append("the cache file now holds %d bytes, %s" % (
                len(now), "the right ones" if now == want else
                "the ones served" if now == body else "other ones"))
        except OSError:
            pass
        st2, _, again = self.http("GET", "/v1/media/%s/content" % up.media, timeout=60)
        what.append("downloaded again: %s" % (
            st2 if st2 != 200 else "right" if again == want else "the same wrong bytes"
            if again == body else "other wrong bytes"))
        try:
            st = os.stat(os.path.join(self.data_dir, "cache", up.media))
            what.append("cache entry now: inode %d, mode %o, %d links, %d B" % (
                st.st_ino, st.st_mode & 0o7777, st.st_nlink, st.st_size))
        except OSError as e:
            what.append("cache entry now: %s" % e.strerror)
        lines = self.log_grep(up.media)
        if lines:
            what.append("dripd's log on it: " + " | ".join(lines[-6:]))
        return "; ".join(what)

    ACTIONS = [("put", 35), ("multipart", 15), ("tus", 22), ("delete", 9), ("move", 9), ("download", 10)]

    def client(self, rnd, tid, stop):
        n = 0
        while not stop.is_set():
            r = rnd.uniform(0, sum(w for _, w in self.actions))
            for name, w in self.actions:
                if r < w:
                    break
                r -= w
            tag = "c%d-t%d-%d" % (self.cut_no, tid, n)
            getattr(self, "do_" + name)(rnd, tag)
            with self.lock:
                self.last_answer = time.monotonic()
            n += 1

    # ---- one cut ----
    def choose(self, rnd):
        """The cut's plan: (description, lossyfs arm args or None, delay)."""
        if self.plan:
            name, op, match, n, when = self.plan[(self.cut_no - 1) % len(self.plan)]
        else:
            name, op, match, nmax = rnd.choice(self.TARGETS)
            n = rnd.randint(1, nmax) if op else None
            when = rnd.choice(["before", "after"])
        if op is None:
            delay = rnd.uniform(0.02, 1.5)
            return "%s: after %.2fs" % (name, delay), None, delay
        return "%s: %s #%d %s, match %r" % (name, op, n, when, match), (op, n, when, match), None

    def cut(self, rnd, threads=3, max_load_s=3.0):
        self.cut_no += 1
        self.counts["cuts"] += 1
        self.cut_desc, arm, delay = self.choose(rnd)
        stop = threading.Event()
        rep = self.fs.arm(arm[0], arm[1], when=arm[2], match=arm[3]) if arm else None
        self.last_answer = t0 = time.monotonic()
        ts = [threading.Thread(target=self.client, args=(random.Random(rnd.getrandbits(64)), t, stop),
                               daemon=True) for t in range(threads)]
        for t in ts:
            t.start()
        try:
            if rep is not None:
                ans = rep.line(max_load_s)
                if ans is None:
                    self.counts["unreached"] += 1
                    self.cut_desc += " (not reached in %.0fs: cut at that moment)" % max_load_s
                    self.fs.freeze()
                else:
                    self.cut_desc += ": " + ans
            else:
                time.sleep(delay)  # the seeded moment itself, not a wait for anything
                self.fs.freeze()
        finally:
            if rep is not None:
                rep.close()
        stop.set()
        t1 = time.monotonic()
        # answers that need no disk (sent before the freeze, or needing
        # only memory) still reach the clients: give them until quiet
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and time.monotonic() - self.last_answer < 0.15:
            time.sleep(0.02)
        self.timing["load"] += t1 - t0
        self.timing["quiet"] += time.monotonic() - t1
        self.power_cut_and_restart(ts)
        t4 = time.monotonic()
        self.verify(rnd)
        self.timing["verify"] += time.monotonic() - t4
        if VERBOSE:
            self.log("cut %d: %s [load %.2fs, lossyfs exit %.2fs, verify %.2fs]" % (
                self.cut_no, self.cut_desc, t1 - t0, self.fs.last_exit_s, time.monotonic() - t4))

    def cut_now(self, rnd, what="at rest"):
        """A cut with no load running (after the caller's own requests)."""
        self.cut_no += 1
        self.counts["cuts"] += 1
        self.cut_desc = what
        self.fs.freeze()
        self.power_cut_and_restart([])
        self.verify(rnd)

    def power_cut_and_restart(self, clients):
        """The file system is frozen: kill dripd, crash lossyfs, start again."""
        t2 = time.monotonic()
        self.kill_dripd()
        self.fs.crash()
        self.boots += 1
        self.slowest["lossyfs exit"] = max(self.slowest["lossyfs exit"], self.fs.last_exit_s)
        t = time.monotonic()
        self.reap_dripd()
        self.slowest["dripd exit"] = max(self.slowest["dripd exit"], time.monotonic() - t)
        for t in clients:
            t.join(60)
            assert not t.is_alive(), "a client thread hangs after cut %d" % self.cut_no
        t3 = time.monotonic()
        self.fs.mount()
        self.start_dripd()
        self.timing["crash"] += t3 - t2
        self.timing["restart"] += time.monotonic() - t3

    TARGETS = TARGETS

    # ---- after a cut ----
    def catalog(self):
        db = sqlite3.connect("file:%s/catalog.db?mode=ro" % self.data_dir, uri=True, timeout=30)
        try:
            ok = db.execute("PRAGMA integrity_check").fetchall()
            media = {r[0]: r[1:] for r in db.execute(
                "SELECT id, path, size, sha256, state, storage_key FROM media")}
            jobs = db.execute("SELECT id, kind, media_id, state, stage, error FROM jobs "
                              "WHERE state IN ('queued', 'running', 'failed')").fetchall()
        finally:
            db.close()
        return ok, media, jobs

    def busy_jobs(self):
        """How many jobs are queued or running (a cheap poll)."""
        db = sqlite3.connect("file:%s/catalog.db?mode=ro" % self.data_dir, uri=True, timeout=30)
        try:
            return db.execute("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"
                              ).fetchone()[0]
        finally:
            db.close()

    def verify(self, rnd):
        # tus uploads in progress: the offsets we were told are still there
        for up in list(self.tus_open):
            st, h, _ = self.http("HEAD", up.tus, headers={"Tus-Resumable": "1.0.0"})
            self.counts["tus_offsets"] += 1
            if st == 404 and up.offset == 0:
                # a creation that no durable commit followed (a 201
                # promises no durability): the client creates it again
                self.counts["tus_creations_gone"] += 1
                self.tus_open.remove(up)
                continue
            if st != 200:
                self.problem("tus HEAD answered %s after the cut; offset %d was reported (%s)"
                             % (st, up.offset, up.offset_how), up)
                self.counts["lost"] += 1
                self.tus_open.remove(up)
                continue
            got = int(h["upload-offset"])
            if got < up.offset:
                self.problem("tus offset went back from %d (%s) to %d" % (up.offset, up.offset_how, got), up)
                self.counts["lost"] += 1
            up.offset, up.offset_how = got, "HEAD after cut %d" % self.cut_no
            if got == up.size and h.get("upload-job"):
                # finished by a request whose answer was lost in the cut
                self.tus_open.remove(up)
                continue
            self.counts["tus_resumed"] += 1
            if not self.tus_patch(up, rnd, 1) and up in self.tus_open:
                self.problem("tus resume from %d failed" % got, up)
                self.tus_open.remove(up)
        # every job finishes (none stuck, none failed)
        t0 = time.monotonic()
        try:
            wait_until(lambda: self.busy_jobs() == 0, 60, "jobs to finish", interval=0.05)
        except AssertionError:
            _, _, jobs = self.catalog()
            for j in jobs:
                if j[3] in ("queued", "running"):
                    self.problem("job %s (%s, media %s) stuck: %s at %s, error %r" % j)
        self.timing["settle"] += time.monotonic() - t0
        ok, media, jobs = self.catalog()
        if ok != [("ok",)]:
            self.problem("PRAGMA integrity_check: %r" % ok)
        failed = {j[2]: j for j in jobs if j[3] == "failed"}
        # every acknowledged upload is there, right, and downloads
        rest = [u for u in self.uploads if u.verified and u.touched_cut != self.cut_no]
        sample = set(rnd.sample(rest, min(SAMPLE, len(rest))))
        fetch = []
        for up in list(self.uploads):
            if up.lost:
                continue
            m = media.get(up.media)
            if up.maybe_deleted:  # its delete was cut: either outcome is right
                up.maybe_deleted = False
                up.deleted = m is None
            if up.deleted:
                if m is not None:
                    self.problem("deleted (acknowledged) but back in the catalog", up)
                    up.lost = True
                continue
            if m is None:
                self.problem("LOST: the catalog has no media %s" % up.media, up)
                self.counts["lost"] += 1
                up.lost = True
                continue
            path, size, sha, state, key = m
            if up.maybe_moved_to is not None and path == up.maybe_moved_to:
                up.moved_to = path  # its move was cut after the commit
            up.maybe_moved_to = None
            want = up.moved_to or up.path
            if path != want:
                self.problem("path is %s, expected %s (a move %s)" % (
                    path, want, "came back" if up.moved_to else "appeared"), up)
                up.lost = True
                continue
            if state != "available" or size != up.size or sha != up.sha:
                why = failed.get(up.media)
                self.problem("LOST: state %s, size %d, sha256 %s%s" % (
                    state, size, sha[:16], ", job failed: %s" % why[5] if why else ""), up)
                self.counts["lost"] += 1
                up.lost = True
                continue
            # downloaded: new ones, the ones this cut's load touched (a
            # cache fill, move or delete cut short), and a few of the rest
            # (a bounded sample: a cut costs the same at the end of a run)
            if not up.verified or up.touched_cut == self.cut_no or up in sample:
                if rnd.random() < 0.5:
                    self.evict(up)  # from the store, not the cache
                fetch.append(up)
        self.download_all(fetch)
        # the store holds nothing the catalog does not know, and no
        # temporary file once jobs settled: the pipeline worker sweeps what
        # puts cut short left when it starts (retried every 5 s while puts
        # run), and a finished put leaves none
        odir = self.objects_dir()
        def leftovers():
            return sorted(n for n in os.listdir(odir) if n.startswith(".tmp-"))
        for name in leftovers():
            self.garbage.setdefault(name, self.cut_no)
        try:
            wait_until(lambda: not leftovers(), 15, "objects/ without temporary files", interval=0.1)
        except AssertionError:
            self.problem("objects/ still holds temporary files of puts: %s; dripd's sweeps since "
                         "it started:\n%s" % (", ".join(leftovers()[:10]), "\n".join(
                             self.log_grep(r"store: remov|==== cut %d" % self.cut_no))))
        keys = {m[4] for m in media.values() if m[4]}
        # every object: files and rows of objects/.small.db (objstore.py);
        # temporary files and the database's own start with '.', never keys
        for name in sorted(objstore.keys(odir)):
            if name not in keys and re.split(r"[_~.]", name)[0] not in media:
                # (keys: "<media>_<created><ext>", variants "<media>~<name>.<ext>",
                # metadata "<media>.meta" and trash marks "<media>.trash": as scrub)
                self.orphans.add(name)  # scrub must report it (final_check)

    def objects_dir(self):
        return objstore.objects_dir(self)

    def evict(self, up):
        """Drop the node's cache entry (as the evictor may): the next
        download comes from the store."""
        try:
            os.unlink(os.path.join(self.data_dir, "cache", up.media))
        except FileNotFoundError:
            pass

    def final_check(self):
        """Every live acknowledged upload downloads byte-identical from the
        store, and a scrub finds every object sound."""
        ups = self.live()
        for up in ups:
            self.evict(up)
        self.download_all(ups)
        st, _, body = self.http("POST", "/v1/admin/scrub")
        if st != 202:
            self.problem("scrub request answered %s: %r" % (st, body[:200]))
            return

        def done():
            st, _, body = self.http("GET", "/v1/admin/scrub")
            doc = json.loads(body) if st == 200 else {}
            return doc if doc.get("state") in ("done", "failed") else None
        doc = wait_until(done, 120, "scrub to finish", interval=0.1)
        if doc["state"] != "done" or doc["corrupt"] or doc["missing"]:
            self.problem("scrub: %s" % json.dumps(doc)[:2000])
        reported = {o["key"] for o in doc.get("orphans", [])}
        odir = self.objects_dir()
        for name in sorted(self.orphans):
            if objstore.exists(odir, name) and name not in reported:
                self.problem("objects/%s belongs to no media and scrub did not report it" % name)


def _b64(s):
    import base64
    return base64.b64encode(s.encode()).decode()


def _subreaper():
    """Adopt our orphans: dripd's workers outlive their SIGKILLed supervisor
    for a moment; reap_dripd waits until they are gone and reaps them (the
    pipeline's recovery takes a zombie for dead, so this is only tidiness)."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def _group_alive(pgid):
    """Any process of the group left (zombies are reaped here)?"""
    r = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    pids = [int(x) for x in r.stdout.split()]
    for p in pids:
        try:
            os.waitpid(p, os.WNOHANG)
        except ChildProcessError:
            pass
    return bool(pids)


def run(root, seed, cuts, env=None, config=None, plan=None, actions=None, ext4=False, log=print,
        threads=3, final=True):
    """Make `cuts` power cuts; returns the Cluster (counts, problems).
    plan: a list of (name, op, match, n, when) to use in turn instead of
    seeded TARGETS; actions: client actions and weights instead of ACTIONS."""
    _subreaper()
    c = Cluster(root, seed, env=env, config=config, ext4=ext4, log=log)
    c.plan = plan
    if actions is not None:
        c.actions = actions
    rnd = random.Random(seed)
    try:
        c.begin()
        for _ in range(cuts):
            c.cut(random.Random(rnd.getrandbits(64)), threads=threads)
        if final:
            c.final_check()
        c.end()
    except BaseException:
        print("POWERLOSS aborted in cut %d (%s); dripd log tail:\n%s" % (c.cut_no, c.cut_desc, c.log_tail()))
        c.abort()
        raise
    return c


def summary(c):
    k = c.counts
    t = c.timing
    return ("powerloss: time in load %.0fs, quiet %.0fs, crash %.0fs, restart %.0fs, verify %.0fs "
            "(jobs settling %.0fs, downloads %.0fs); "
            "slowest exit after a cut: lossyfs %.2fs, dripd %.2fs\n"
            % (t["load"], t["quiet"], t["crash"], t["restart"], t["verify"], t["settle"], t["download"],
               c.slowest["lossyfs exit"], c.slowest["dripd exit"]) +
            "powerloss: seed %d: %d cuts (%d armed ops not reached), %d uploads acknowledged "
            "(%d PUT, %d multipart, %d tus), %d deletes, %d moves, %d tus offsets checked "
            "(%d resumed, %d creations gone), %d downloads verified, %d temporary files seen in objects/ after jobs settled (and swept), "
            "%d orphan objects (a delete cut short; scrub reports them); "
            "lost %d, problems %d" % (
                c.seed, k["cuts"], k["unreached"], k["acked"], k["put"], k["multipart"], k["tus"],
                k["deletes"], k["moves"], k["tus_offsets"], k["tus_resumed"], k["tus_creations_gone"],
                k["downloads"],
                len(c.garbage), len(c.orphans), k["lost"], len(c.problems)))

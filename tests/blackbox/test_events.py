"""GET /v1/events (Server-Sent Events) black-box tests: order, per-user
isolation, Last-Event-ID / ?after= resume, disconnect clean-up. The client
is a raw socket reader thread that decodes chunked framing and SSE."""
import json
import os
import queue
import socket
import threading
import time

from conftest import make_file, wait_until


class SSE:
    """A minimal SSE client on a raw socket, parsing in a reader thread."""

    def __init__(self, d, user="alice", last_event_id=None, query=""):
        self.events = queue.Queue()
        self.comments = queue.Queue()
        self.sock = socket.create_connection((d.host, d.port), timeout=60)
        req = "GET /v1/events%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n" % query
        req += "Authorization: Bearer %s\r\n" % d.token(user)
        if last_event_id is not None:
            req += "Last-Event-ID: %s\r\n" % last_event_id
        self.sock.sendall((req + "\r\n").encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n").decode("latin-1")
        self.status = int(head.split(" ", 2)[1])
        self.headers = {}
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.closed = threading.Event()
        if self.status == 200:
            self.t = threading.Thread(target=self._run, daemon=True)
            self.t.start()

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buf += data

    def _until(self, sep):
        while sep not in self.buf:
            self._fill()
        out, self.buf = self.buf.split(sep, 1)
        return out

    def _body(self):
        chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        while True:
            if not chunked:
                if not self.buf:
                    self._fill()
                out, self.buf = self.buf, b""
                yield out
                continue
            size = int(self._until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                return
            while len(self.buf) < size + 2:
                self._fill()
            out, self.buf = self.buf[:size], self.buf[size + 2:]
            yield out

    def _run(self):
        text = b""
        try:
            for piece in self._body():
                text += piece
                while b"\n\n" in text:
                    block, text = text.split(b"\n\n", 1)
                    ev = {"data": []}
                    for line in block.decode().split("\n"):
                        if line.startswith(":"):
                            self.comments.put(line[1:].strip())
                            continue
                        k, _, v = line.partition(":")
                        v = v[1:] if v.startswith(" ") else v
                        if k == "data":
                            ev["data"].append(v)
                        else:
                            ev[k] = v
                    if "event" in ev or ev["data"]:
                        ev["data"] = json.loads("\n".join(ev["data"])) if ev["data"] else None
                        self.events.put(ev)
        except (EOFError, OSError, ValueError):
            pass
        self.closed.set()

    def wait_comment(self, text, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            c = self.comments.get(timeout=max(0.01, deadline - time.monotonic()))
            if c == text:
                return

    def next(self, timeout=30):
        return self.events.get(timeout=timeout)

    def until_job_end(self, job_id, timeout=60):
        """Events of job_id up to and including job.done/job.failed."""
        out = []
        deadline = time.monotonic() + timeout
        while True:
            ev = self.next(max(0.01, deadline - time.monotonic()))
            if ev["data"] and ev["data"].get("id") == job_id:
                out.append(ev)
                if ev["event"] in ("job.done", "job.failed"):
                    return out

    def drain(self):
        out = []
        while True:
            try:
                out.append(self.events.get_nowait())
            except queue.Empty:
                return out

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def put(d, remote, size=1000, user="alice"):
    local = make_file(os.path.join(d.dir, "e-%d" % (abs(hash(remote)) % 10 ** 8)), size)
    st, doc = d.put_file(local, remote, user=user)
    assert st == 202, (st, doc)
    return doc


# A job of at least pipeline.stage_commit_size (1 MiB) commits, and so
# announces, every stage after its first; a smaller one commits once.
BIG = 1 << 20


def check_job_sequence(evs, job_id, stages=0):
    kinds = [e["event"] for e in evs]
    assert kinds == ["job.created"] + ["job.stage"] * stages + ["job.done"], kinds
    ids = [int(e["id"]) for e in evs]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    for e in evs:
        assert e["data"]["id"] == job_id
    assert evs[-1]["data"]["state"] == "done"


def test_events_in_order_and_per_user(dripd):
    d = dripd
    alice = SSE(d, "alice")
    carol = SSE(d, "carol")
    try:
        assert alice.status == 200
        assert alice.headers["content-type"].startswith("text/event-stream")
        assert alice.headers.get("cache-control") == "no-cache"
        alice.wait_comment("connected")
        carol.wait_comment("connected")

        doc = put(d, "/ev/a.bin", BIG)
        evs = alice.until_job_end(doc["job"]["id"])
        check_job_sequence(evs, doc["job"]["id"], stages=2)  # store, notify
        assert [e["data"]["stage"] for e in evs[1:3]] == ["store", "notify"]
        assert evs[0]["data"]["kind"] == "upload"
        assert evs[0]["data"]["media_id"] == doc["media"]["id"]

        # Carol's own job arrives on her stream; alice's never did (events are
        # in order, so it would have come first).
        cdoc = put(d, "/ev/c.bin", user="carol")
        cevs = carol.until_job_end(cdoc["job"]["id"])
        check_job_sequence(cevs, cdoc["job"]["id"])
        seen = [e for e in cevs + carol.drain() if e["data"]["id"] == doc["job"]["id"]]
        assert seen == []
        # ...and alice never sees carol's.
        doc2 = put(d, "/ev/a2.bin")
        evs2 = alice.until_job_end(doc2["job"]["id"])
        assert all(e["data"]["id"] != cdoc["job"]["id"] for e in evs + evs2 + alice.drain())
        assert int(evs2[0]["id"]) > int(evs[-1]["id"])
    finally:
        alice.close()
        carol.close()


def test_resume_with_last_event_id_and_after(dripd):
    d = dripd
    s = SSE(d, "alice")
    try:
        s.wait_comment("connected")
        doc = put(d, "/ev/r.bin")
        evs = s.until_job_end(doc["job"]["id"])
    finally:
        s.close()
    first = evs[0]["id"]

    # Reconnect as a browser would: everything after the first event, again.
    r = SSE(d, "alice", last_event_id=first)
    try:
        again = r.until_job_end(doc["job"]["id"], timeout=10)
        assert [e["id"] for e in again] == [e["id"] for e in evs[1:]]
        assert [e["event"] for e in again] == [e["event"] for e in evs[1:]]
    finally:
        r.close()

    q = SSE(d, "alice", query="?after=0")
    try:
        replay = q.until_job_end(doc["job"]["id"], timeout=10)
        assert [e["id"] for e in replay] == [e["id"] for e in evs]
    finally:
        q.close()

    # A new stream without a cursor starts after the events so far.
    n = SSE(d, "alice")
    try:
        n.wait_comment("connected")
        doc2 = put(d, "/ev/r2.bin")
        fresh = n.until_job_end(doc2["job"]["id"])
        assert fresh[0]["event"] == "job.created"
        assert all(e["data"]["id"] != doc["job"]["id"] for e in fresh)
    finally:
        n.close()

    for bad in ("abc", "-1", "1.5", "99999999999999999999"):
        b = SSE(d, "alice", last_event_id=bad)
        assert b.status == 400, bad
        b.close()
    b = SSE(d, "alice", query="?after=x")
    assert b.status == 400
    b.close()


def test_download_events_and_auth(dripd):
    d = dripd
    doc = put(d, "/ev/dl.bin", BIG)
    assert d.wait_job(doc["job"]["id"])["state"] == "done"
    # not in the cache: the download fetches and decrypts (a fresh entry
    # would make it a job with nothing to do, committed once)
    cache = os.path.join(d.data_dir, "cache", doc["media"]["id"])
    wait_until(lambda: os.path.exists(cache), what="cache entry after upload")
    os.unlink(cache)
    s = SSE(d, "alice")
    try:
        s.wait_comment("connected")
        st, body, h = d.json("POST", "/v1/media/%s/download" % doc["media"]["id"])
        assert st == 202
        evs = s.until_job_end(body["job"]["id"])
        check_job_sequence(evs, body["job"]["id"], stages=2)  # decrypt, notify
        assert evs[0]["data"]["kind"] == "download"
    finally:
        s.close()
    sock = socket.create_connection((d.host, d.port), timeout=10)
    sock.sendall(b"GET /v1/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 401")
    sock.close()


def test_many_streams_open_and_close(dripd):
    """Streams that vanish are cleaned up; the daemon keeps serving (ASan
    builds catch leaks and use-after-free at stop)."""
    d = dripd
    streams = [SSE(d, "bob") for _ in range(20)]
    for s in streams:
        s.wait_comment("connected")
    for s in streams[:15]:
        s.close()
    doc = put(d, "/ev/after-close.bin", user="bob")
    for s in streams[15:]:
        check_job_sequence(s.until_job_end(doc["job"]["id"]), doc["job"]["id"])
        s.close()
    assert d.json("GET", "/v1/jobs/" + doc["job"]["id"], user="bob")[0] == 200
    assert d.stop() == 0


def test_heartbeat_comment(dripd):
    s = SSE(dripd, "alice")
    try:
        s.wait_comment("connected")
        s.wait_comment("ping", timeout=25)  # every 15 s
    finally:
        s.close()


def test_streams_end_when_the_server_drains(dripd):
    d = dripd
    s = SSE(d, "alice")
    s.wait_comment("connected")
    t0 = time.monotonic()
    assert d.stop() == 0
    # drain_timeout is 10 s in the harness: a stream must not hold it.
    assert time.monotonic() - t0 < 8
    assert s.closed.wait(5)
    s.close()

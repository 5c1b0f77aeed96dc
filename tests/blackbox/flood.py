"""A hostile client for load-shaped tests: many connections, each sending a
long run of pipelined requests in one go and reading every response.

    f = PipelineFlood(host, port, conns=1500, per_conn=1900)
    f.start()            # a background thread drives every socket
    ...                  # meanwhile the test does its normal traffic
    f.join(timeout)      # True when every connection finished or closed
    f.answered, f.closed_early, f.errors

Responses are counted by their status line; the bodies are not parsed,
which is fine for /healthz (a small JSON body without "HTTP/1.1 ").
"""
import errno
import selectors
import socket
import threading
import time

STATUS = b"HTTP/1.1 200 OK\r\n"


class _C:
    __slots__ = ("sock", "out", "sent", "answered", "tail", "done")

    def __init__(self, sock, out):
        self.sock = sock
        self.out = out
        self.sent = 0
        self.answered = 0
        self.tail = b""
        self.done = False


class PipelineFlood:
    def __init__(self, host, port, conns, per_conn, path="/healthz", connect_timeout=10.0):
        self.host, self.port = host, port
        self.n_conns, self.per_conn = conns, per_conn
        self.payload = (b"GET %s HTTP/1.1\r\nHost: flood\r\n\r\n" % path.encode()) * per_conn
        self.connect_timeout = connect_timeout
        self.answered = 0
        self.progress = 0  # responses so far (read while running; one writer)
        self.closed_early = 0
        self.errors = []
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.finished = threading.Event()
        self.started = threading.Event()

    def start(self):
        self.t.start()
        return self

    def join(self, timeout):
        return self.finished.wait(timeout)

    def abort(self):
        self.stop = True
        self.t.join(30)

    def _run(self):
        sel = selectors.DefaultSelector()
        cs = []
        try:
            for _ in range(self.n_conns):
                s = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
                s.setblocking(False)
                c = _C(s, self.payload)
                cs.append(c)
                sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            self.started.set()
            live = len(cs)
            while live > 0 and not self.stop:
                for key, ev in sel.select(1.0):
                    c = key.data
                    if c.done:
                        continue
                    if ev & selectors.EVENT_WRITE and c.sent < len(c.out):
                        try:
                            c.sent += c.sock.send(memoryview(c.out)[c.sent:c.sent + (256 << 10)])
                        except BlockingIOError:
                            pass
                        except OSError as e:
                            self._finish(sel, c, early=True, err=e)
                            live -= 1
                            continue
                        if c.sent >= len(c.out):
                            sel.modify(c.sock, selectors.EVENT_READ, c)
                    if ev & selectors.EVENT_READ:
                        try:
                            d = c.sock.recv(1 << 18)
                        except BlockingIOError:
                            continue
                        except OSError as e:
                            self._finish(sel, c, early=True,
                                         err=None if e.errno == errno.ECONNRESET else e)
                            live -= 1
                            continue
                        if not d:
                            self._finish(sel, c, early=c.answered < self.per_conn)
                            live -= 1
                            continue
                        buf = c.tail + d
                        k = buf.count(STATUS)
                        c.answered += k
                        self.progress += k
                        c.tail = buf[-(len(STATUS) - 1):]
                        if c.answered >= self.per_conn:
                            self._finish(sel, c, early=False)
                            live -= 1
        except Exception as e:  # noqa: BLE001 - reported to the test
            self.errors.append(repr(e))
        finally:
            self.started.set()
            for c in cs:
                if not c.done:
                    self._finish(sel, c, early=True)
            self.answered = sum(c.answered for c in cs)
            sel.close()
            self.finished.set()

    def _finish(self, sel, c, early, err=None):
        c.done = True
        if early:
            self.closed_early += 1
        if err is not None and len(self.errors) < 10:
            self.errors.append(repr(err))
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()


def run_flood(host, port, conns, per_conn, timeout=300.0):
    f = PipelineFlood(host, port, conns, per_conn).start()
    t0 = time.monotonic()
    ok = f.join(timeout)
    return f, ok, time.monotonic() - t0

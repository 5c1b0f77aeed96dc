"""Raw-socket HTTP/1.1 helpers for black-box tests of protocol edge cases
(what curl will not send: garbage, pipelining, half-sent bodies...)."""
import socket
import time


class Resp:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value (last wins)
        self.body = body
        self.raw_head = raw_head

    def __repr__(self):
        return "<Resp %d %s %r>" % (self.status, self.reason, self.body[:200])


class Conn:
    """One TCP connection with a receive buffer; reads whole responses."""

    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data from the server in time; have %r" % self.buf[:300])
        self.sock.settimeout(left)
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from the server in time; have %r" % self.buf[:300])
        except ConnectionResetError:
            d = b""
        if not d:
            self.eof = True
        self.buf += d
        return d

    def read_response(self, timeout=10.0, head_only=False):
        """Next complete response (100 Continue included, as its own response)."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            if not self._fill(deadline):
                raise EOFError("connection closed before a response head; have %r" % self.buf)
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        proto, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert proto.startswith("HTTP/1."), "bad status line %r" % lines[0]
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        status = int(status)
        body = b""
        if head_only or status < 200 or status in (204, 304):
            self.buf = rest
        elif "content-length" in headers:
            n = int(headers["content-length"])
            while len(rest) < n:
                self.buf = rest
                if not self._fill(deadline):
                    raise EOFError("closed in a body")
                rest = self.buf
            body, self.buf = rest[:n], rest[n:]
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            self.buf = rest
            body = self._read_chunked(deadline)
        else:  # close-delimited
            self.buf = rest
            while not self.eof:
                self._fill(deadline)
            body, self.buf = self.buf, b""
        return Resp(status, reason, headers, body, head)

    def _read_chunked(self, deadline):
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill(deadline)
            line, self.buf = self.buf.split(b"\r\n", 1)
            n = int(line.split(b";")[0], 16)
            while len(self.buf) < n + 2:
                self._fill(deadline)
            out += self.buf[:n]
            self.buf = self.buf[n + 2:]
            if n == 0:
                return out

    def peek(self, timeout=0.3):
        """Bytes available within timeout (without blocking longer)."""
        try:
            self._fill(time.monotonic() + timeout)
        except TimeoutError:
            pass
        return self.buf

    def wait_closed(self, timeout=10.0):
        """True once the server closed (EOF or reset); bytes read meanwhile stay in buf."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._fill(deadline)
            except TimeoutError:
                return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def request(method, path, headers=None, body=b"", http="1.1"):
    h = {"Host": "dripd"}
    h.update(headers or {})
    if body and "Content-Length" not in h and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body))
    text = "%s %s HTTP/%s\r\n" % (method, path, http)
    text += "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    return text.encode("latin-1") + (body if isinstance(body, bytes) else body.encode())

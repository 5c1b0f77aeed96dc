#!/usr/bin/env python3
"""Open N idle keep-alive connections (each has made one request), then time
M requests on a separate connection while they are held, then report.
Usage: idle_conns.py HOST PORT N M PIDS...   Prints: RESULT-like key=value line.
PIDS: processes whose RSS (VmRSS) is summed while the connections are open."""
import resource
import socket
import sys
import time

host, port, n, m = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pids = [int(p) for p in sys.argv[5:]]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000), hard))
REQ = ("GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n" % host).encode()


def read_response(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        c = s.recv(65536)
        if not c:
            raise IOError("closed")
        buf += c
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(rest) < length:
        rest += s.recv(65536)
    return head.split(b" ", 2)[1]


conns = []
t0 = time.monotonic()
for i in range(n):
    s = socket.create_connection((host, port), timeout=30)
    s.sendall(REQ)
    if read_response(s) != b"200":
        raise SystemExit("idle connection %d: not 200" % i)
    conns.append(s)
opened = time.monotonic() - t0


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


rss = sum(rss_kib(p) for p in pids) / 1024.0
lat = []
probe = socket.create_connection((host, port), timeout=30)
for i in range(m):
    t = time.monotonic()
    probe.sendall(REQ)
    read_response(probe)
    lat.append((time.monotonic() - t) * 1000)
lat.sort()
p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
alive = 0
for s in conns:  # are they still open (not closed by the server)?
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            pass
        else:
            alive += 1
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print("idle_conns=%d still_open=%d open_s=%.1f rss_mib=%.1f p50_ms=%.2f p99_ms=%.2f" %
      (n, alive, opened, rss, lat[len(lat) // 2], p99))

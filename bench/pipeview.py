#!/usr/bin/env python3
"""What the pipeline view costs the pipeline (issue 20): the pipeline's
4 KiB job rate (JOBS uploads are accepted while the pipeline worker is
stopped with SIGSTOP; then SIGCONT, and the time until the durable queue is
empty) with nobody watching (A) and with VIEWERS GET
/v1/admin/pipeline/stream readers open (B), alternating A B A B ... in the
same run on one dripd. Prints each
round and the ratio of medians B/A with the spread of each side.

    python3 bench/pipeview.py [ROUNDS=5] [JOBS=400] [VIEWERS=10]

Uses the black-box harness (tests/blackbox/conftest.py) and bin/dripd
(DRIPD_BIN to override)."""
import http.client
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "blackbox"))
from conftest import Dripd, wait_until  # noqa: E402

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5
JOBS = int(sys.argv[2]) if len(sys.argv) > 2 else 400
VIEWERS = int(sys.argv[3]) if len(sys.argv) > 3 else 10


def viewer(d, stop, got):
    s = socket.create_connection((d.host, d.port))
    s.sendall(("GET /v1/admin/pipeline/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
               % d.token()).encode())
    s.settimeout(0.5)
    while not stop.is_set():
        try:
            b = s.recv(65536)
        except socket.timeout:
            continue
        if not b:
            break
        got[0] += b.count(b"event: pipeline")
    s.close()


def depth(d):
    st, doc, _ = d.json("GET", "/readyz", user=None)
    return doc["queue_depth"]


def fill(d, n, tag):
    c = http.client.HTTPConnection(d.host, d.port, timeout=30)
    body = os.urandom(4096)
    for i in range(n):
        c.request("PUT", "/v1/files/bench/%s-%d.bin" % (tag, i), body=body,
                  headers={"Authorization": "Bearer " + d.token()})
        r = c.getresponse()
        r.read()
        assert r.status == 202, r.status
    c.close()


def drain(d, pl, n):
    t0 = time.monotonic()
    os.kill(pl, signal.SIGCONT)
    wait_until(lambda: depth(d) == 0, 300, "queue empty", interval=0.01)
    return n / (time.monotonic() - t0)


def main():
    d = Dripd(tempfile.mkdtemp(prefix="bench-pipeview-"),
              config={"log": {"level": "warn"}, "supervisor": {"heartbeat_timeout": "600s"}})
    res = {"A": [], "B": []}
    try:
        for r in range(ROUNDS):
            for side in ("A", "B"):
                pl = d.worker("pipeline")
                os.kill(pl, signal.SIGSTOP)
                fill(d, JOBS, "%s%d" % (side, r))
                stop, got, ts = threading.Event(), [0], []
                if side == "B":
                    ts = [threading.Thread(target=viewer, args=(d, stop, got)) for _ in range(VIEWERS)]
                    for t in ts:
                        t.start()
                    wait_until(lambda: got[0] >= VIEWERS, 10, "every viewer's first snapshot")
                v = drain(d, pl, JOBS)
                stop.set()
                for t in ts:
                    t.join()
                res[side].append(v)
                print("round %d %s: %.0f jobs/s%s" % (r + 1, side, v,
                                                      " (%d snapshots read)" % got[0] if side == "B" else ""))
    finally:
        d.stop()
    ma, mb = statistics.median(res["A"]), statistics.median(res["B"])
    print("A (nobody watching): median %.0f jobs/s, min %.0f, max %.0f" % (ma, min(res["A"]), max(res["A"])))
    print("B (%d viewers):      median %.0f jobs/s, min %.0f, max %.0f" % (VIEWERS, mb, min(res["B"]), max(res["B"])))
    print("B/A = %.3f; spread of A: %.0f%%..%.0f%% of its median" % (
        mb / ma, 100 * min(res["A"]) / ma, 100 * max(res["A"]) / ma))


main()

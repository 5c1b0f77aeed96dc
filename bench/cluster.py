"""bench/cluster.py (run by bench/cluster.sh): uploads through an nginx
round-robin balancer to 1, 2 and 3 dripd nodes on one PostgreSQL catalog
and one s3rver bucket, and the same load on a single SQLite node (same
bucket, same balancer), in alternating rounds on this machine.

Per configuration and round: N uploads of SIZE bytes by CLIENTS keep-alive
clients; the clock runs from the first request until every upload is
available (its job done). Reported: jobs/s and MB/s end to end, the
accept rate (202s/s), the CPU seconds of each node's process tree and of
PostgreSQL and nginx, and for PostgreSQL the transactions and statements
per upload (pg_stat_database, pg_stat_statements). Medians over ROUNDS with
min..max. Everything runs on this one machine: the nodes compete for its
cores, which the figures show.

    ROUNDS=3 N=300 SIZE=65536 CLIENTS=16 sh bench/cluster.sh
"""
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "blackbox"))
import importlib.util  # noqa: E402

_spec = importlib.util.spec_from_file_location(
    "cluster_harness", os.path.join(ROOT, "tests", "cluster", "conftest.py"))
cl = importlib.util.module_from_spec(_spec)  # tests/cluster/conftest.py: Cluster, Balancer...
_spec.loader.exec_module(cl)

ROUNDS = int(os.environ.get("ROUNDS", "3"))
N = int(os.environ.get("N", "300"))
SIZE = int(os.environ.get("SIZE", str(64 << 10)))
CLIENTS = int(os.environ.get("CLIENTS", "16"))
CONFIGS = os.environ.get("CONFIGS", "sqlite,pg1,pg2,pg3").split(",")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def tree_cpu(pid):
    """CPU seconds (user + system) of pid and its descendants, children reaped included."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            f = open("/proc/%d/stat" % p).read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in f[11:15]) / tick  # utime stime cutime cstime
        try:
            kids = open("/proc/%d/task/%d/children" % (p, p)).read().split()
        except OSError:
            kids = []
        todo += [int(k) for k in kids]
    return total


def pg_cpu(setup):
    """CPU seconds of this setup's PostgreSQL server (its postmaster's tree;
    other servers on the shared machine are not counted)."""
    with open(os.path.join(setup.pg.dir, "data", "postmaster.pid")) as f:
        return tree_cpu(int(f.readline()))


class SqliteSetup:
    """One SQLite node on the same s3rver, behind the same balancer."""

    def __init__(self, tmp):
        self.s3 = cl.S3rver(os.path.join(tmp, "s3")).start()
        cfg = {"node": {"id": "solo"}, "encryption": {"key_file": os.path.join(tmp, "master.key")}}
        cfg.update(cl.s3_config(self.s3.endpoint))
        d = os.path.join(tmp, "solo")
        os.makedirs(d, exist_ok=True)
        self.nodes = [cl.Dripd(d, config=cfg)]
        self.lb = cl.Balancer(tmp, [self.nodes[0].addr])
        self.pg = None

    def stop(self):
        self.lb.stop()
        self.nodes[0].stop(timeout=30)
        self.s3.stop()


def make_setup(name, tmp):
    if name == "sqlite":
        return SqliteSetup(tmp)
    n = int(name[2:])
    return cl.Cluster(tmp, nodes=n, pg_args="-c shared_preload_libraries=pg_stat_statements")


def pg_counts(c):
    """(commits, statement calls) so far in the dripd database."""
    commits = int(c.pg.query(c.dsn, "SELECT xact_commit FROM pg_stat_database "
                                    "WHERE datname = current_database()")[0][0])
    calls = int(c.pg.query(c.dsn, "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s "
                                  "JOIN pg_database d ON d.oid = s.dbid "
                                  "WHERE d.datname = current_database()")[0][0])
    return commits, calls


def run_load(setup, tag):
    token = "alice-secret-token"
    body = os.urandom(SIZE)
    port = setup.lb.port
    statuses, lock = [], threading.Lock()
    counter = iter(range(N))
    clock = threading.Lock()

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with clock:
                i = next(counter, None)
            if i is None:
                break
            for attempt in range(50):
                conn.request("PUT", "/v1/files/bench/%s/%d.bin" % (tag, i), body=body,
                             headers={"Authorization": "Bearer " + token})
                r = conn.getresponse()
                r.read()
                if r.status != 503:
                    break
                time.sleep(float(r.getheader("Retry-After", "1")) / 10)  # back off on a full queue
            with lock:
                statuses.append(r.status)
        conn.close()

    node_cpu0 = [tree_cpu(n.pid) for n in setup.nodes]
    pg_cpu0 = pg_cpu(setup) if setup.pg else 0.0
    lb_cpu0 = tree_cpu(setup.lb.proc.pid)
    counts0 = pg_counts(setup) if setup.pg else None
    t0 = time.monotonic()
    ts = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t_accept = time.monotonic() - t0
    assert statuses.count(202) == N, "not every upload accepted: %s" % set(statuses)

    def all_available():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/v1/media?folder=/bench/%s" % tag,
                     headers={"Authorization": "Bearer " + token})
        doc = json.loads(conn.getresponse().read())
        conn.close()
        return sum(1 for f in doc["files"] if f["state"] == "available") == N
    deadline = time.monotonic() + 600
    while not all_available():
        assert time.monotonic() < deadline, "jobs not done within 600 s"
        time.sleep(0.05)
    t_all = time.monotonic() - t0
    out = {
        "jobs_s": N / t_all, "mb_s": N * SIZE / t_all / 1e6, "accept_s": N / t_accept,
        "node_cpu": [tree_cpu(n.pid) - c for n, c in zip(setup.nodes, node_cpu0)],
        "lb_cpu": tree_cpu(setup.lb.proc.pid) - lb_cpu0,
    }
    if setup.pg:
        out["pg_cpu"] = pg_cpu(setup) - pg_cpu0
        c1 = pg_counts(setup)
        out["tx_per_upload"] = (c1[0] - counts0[0]) / N
        out["stmts_per_upload"] = (c1[1] - counts0[1]) / N
    return out


def fmt(vals, f="%.1f"):
    return (f + " (" + f + ".." + f + ")") % (statistics.median(vals), min(vals), max(vals))


def main():
    tmp = tempfile.mkdtemp(prefix="dripd-bench-cluster-")
    setups = {}
    results = {c: [] for c in CONFIGS}
    try:
        for name in CONFIGS:
            log("starting %s" % name)
            setups[name] = make_setup(name, os.path.join(tmp, name))
            if setups[name].pg:
                setups[name].pg.query(setups[name].dsn, "CREATE EXTENSION IF NOT EXISTS "
                                                        "pg_stat_statements")
        for rnd in range(ROUNDS):  # alternate: every configuration once per round
            for name in CONFIGS:
                r = run_load(setups[name], "r%d" % rnd)
                results[name].append(r)
                log("round %d %s: %.1f jobs/s, %.1f MB/s, accept %.1f/s, node cpu %s" % (
                    rnd + 1, name, r["jobs_s"], r["mb_s"], r["accept_s"],
                    " ".join("%.1f" % x for x in r["node_cpu"])))
    finally:
        for s in setups.values():
            s.stop()
    print("cluster bench: N=%d SIZE=%d CLIENTS=%d ROUNDS=%d, one %d-core machine (shared)" %
          (N, SIZE, CLIENTS, ROUNDS, os.cpu_count()))
    base = statistics.median(r["jobs_s"] for r in results.get("sqlite", [])) \
        if "sqlite" in results else None
    for name in CONFIGS:
        rs = results[name]
        jobs = [r["jobs_s"] for r in rs]
        per_node = " ".join("%.1f" % statistics.median(r["node_cpu"][k] for r in rs)
                            for k in range(len(rs[0]["node_cpu"])))
        line = "RESULT %-6s jobs/s %s  MB/s %s  accept/s %s  cpu s per node [%s]  cpu s/job: nodes %.4f" % (
            name, fmt(jobs), fmt([r["mb_s"] for r in rs]), fmt([r["accept_s"] for r in rs]),
            per_node, statistics.median(sum(r["node_cpu"]) / N for r in rs))
        if rs[0].get("pg_cpu") is not None:
            line += " postgres %.4f, tx/upload %.2f, statements/upload %.1f" % (
                statistics.median(r["pg_cpu"] / N for r in rs),
                statistics.median(r["tx_per_upload"] for r in rs),
                statistics.median(r["stmts_per_upload"] for r in rs))
        if base:
            # each round's ratio (the configurations ran back to back in it)
            ratios = [r["jobs_s"] / b["jobs_s"] for r, b in zip(rs, results["sqlite"])]
            line += "  ratio to sqlite %.2f (rounds %.2f..%.2f)" % (
                statistics.median(jobs) / base, min(ratios), max(ratios))
        print(line)
    subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    main()

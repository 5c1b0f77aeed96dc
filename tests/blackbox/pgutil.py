"""A real PostgreSQL 15 server for black-box tests (scripts/pgtest.sh:
initdb into a temporary directory, pg_ctl on a free loopback port, as the
`postgres` user when run as root). A missing server is a failure, never a
skip: `make deps` installs postgresql-15.

    pg = PgServer(tmpdir).start()     # the DSN without dbname: pg.dsn
    dsn = pg.createdb("dripd")        # a fresh database, its DSN
    pg.query(dsn, "SELECT 1")         # rows as lists of strings (psql)
    pg.stop(); pg.start()             # the same port and data: a restart
    pg.destroy()

Fixtures: `pg_server` (one per test session), `pg_db` (a fresh database on
it per test), `pg_config(dsn, **over)` the dripd config dict for it.
"""
import itertools
import os
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PGTEST = os.path.join(ROOT, "scripts", "pgtest.sh")
PG_BIN = "/usr/lib/postgresql/15/bin"


class PgServer:
    def __init__(self, parent=None, pg_args=""):
        self.dir = tempfile.mkdtemp(prefix="dripd-pg-", dir=parent or "/tmp")
        self.pg_args = pg_args  # extra server options ("-c name=value ...")
        os.chmod(self.dir, 0o755)
        self.dsn = None
        self.port = None
        self._names = itertools.count()

    def start(self):
        if self.dsn is None:
            r = subprocess.run(["sh", PGTEST, "start", self.dir], capture_output=True, text=True,
                               timeout=120, env=dict(os.environ, PGTEST_OPTIONS=self.pg_args))
            assert r.returncode == 0, "PostgreSQL did not start: %s" % r.stderr
            self.dsn = r.stdout.strip()
            self.port = int(self.dsn.split("port=")[1].split()[0])
        else:  # a restart on the same port and data directory
            self._pg_ctl("start", "-l", os.path.join(self.dir, "server.log"), "-o",
                         "-c listen_addresses=127.0.0.1 -p %d -k %s -c max_connections=300 %s"
                         % (self.port, self.dir, self.pg_args))
        return self

    def _pg_ctl(self, *args):
        cmd = [os.path.join(PG_BIN, "pg_ctl"), "-D", os.path.join(self.dir, "data"), "-w",
               "-t", "60"] + list(args)
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, "pg_ctl %s: %s %s" % (args[0], r.stdout, r.stderr)

    def stop(self, mode="fast"):
        self._pg_ctl("stop", "-m", mode)

    def destroy(self):
        subprocess.run(["sh", PGTEST, "stop", self.dir], capture_output=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)

    def query(self, dsn, sql):
        r = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1",
                            "-d", dsn, "-c", sql], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, "psql: %s: %s" % (sql, r.stderr)
        return [line.split("|") for line in r.stdout.splitlines() if line]

    def createdb(self, name=None):
        name = name or "t%d_%d" % (os.getpid(), next(self._names))
        self.query(self.dsn + " dbname=postgres", "CREATE DATABASE %s" % name)
        return "%s dbname=%s" % (self.dsn, name)


def pg_config(dsn, **over):
    cfg = {"catalog": {"backend": "postgres", "postgres": {"dsn": dsn, "pool": 4}}}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="session")
def pg_server():
    srv = PgServer().start()
    yield srv
    srv.destroy()


@pytest.fixture
def pg_db(pg_server):
    return pg_server.createdb()

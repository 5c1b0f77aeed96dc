"""Power cuts (issue 19): dripd with its whole data_dir on lossyfs, killed
with SIGKILL at seeded file-system operations while clients upload, and
the file system crashed under it: what was acknowledged must survive.
See powerloss_lib.py. `make test` runs a short version; `make
test-powerloss` (POWERLOSS_LONG=1) makes hundreds of cuts.

    POWERLOSS_SEED=N     replay a run's plan (printed by every run)
    POWERLOSS_CUTS=N     how many cuts (in all shards together)
    POWERLOSS_SHARDS=N   split them over N runs side by side (long: 4)
    POWERLOSS_VERBOSE=1  a line per cut (what it froze at, timings)
    POWERLOSS_KEEP=1     keep each run's directory (lossyfs backing, dripd's
                         log and data_dir) under /tmp/powerloss-*

The suite can fail: with one of dripd's syncs skipped
(DRIPD_TEST_SKIP_SYNC, docs/PIPELINE.md) it must report lost uploads.
Each bug it found has its regression test below, with the plan and seed
that showed it.
"""
import os
import random
import shutil
import tempfile

import pytest

import powerloss_lib as pl
from conftest import wait_until

LONG = os.environ.get("POWERLOSS_LONG") == "1"


@pytest.fixture
def root():
    d = tempfile.mkdtemp(prefix="powerloss-")
    yield d
    if not os.environ.get("POWERLOSS_KEEP"):
        shutil.rmtree(d, ignore_errors=True)


def seed_from_env():
    return int(os.environ.get("POWERLOSS_SEED") or random.randrange(1 << 31))


def report(c, n=60):
    """The run's counts and its first n problems."""
    return "%s\n%s" % (pl.summary(c), "\n".join(c.problems[:n]))


# The long run's cuts are split over SHARDS runs side by side (each its own
# lossyfs, dripd and seed; scripts/run-blackbox.sh --powerloss runs them in
# parallel): a cut spends most of its time waiting on the file system and
# the daemon's restart, so 4 x 50 cuts take about a third of the time of
# 1 x 200 on 2 cores, and still make 200 cuts.
SHARDS = int(os.environ.get("POWERLOSS_SHARDS") or (4 if LONG else 1))


@pytest.mark.parametrize("shard", range(SHARDS))
def test_acknowledged_uploads_survive_power_cuts(root, shard):
    seed = seed_from_env() + shard
    # 200 in all: about 1.3 s a cut in CI (1.9 s on the shared 2-core VM
    # at load 13), ~300 s one after the other
    total = int(os.environ.get("POWERLOSS_CUTS") or (200 if LONG else 25))
    cuts = -(-total // SHARDS)
    print("powerloss: seed %d, %d cuts, shard %d of %d (replay: POWERLOSS_SEED=%d POWERLOSS_CUTS=%d "
          "POWERLOSS_SHARDS=1)" % (seed, cuts, shard + 1, SHARDS, seed, cuts))
    c = pl.run(root, seed, cuts)
    print(pl.summary(c))
    assert not c.problems, report(c)
    assert c.counts["acked"] >= cuts and c.counts["lost"] == 0, report(c)


AFTER_ACK = ("encrypt: sealed write", "write", "/work/", 1, "before")  # the job's first step
UPLOADS = [("put", 5), ("multipart", 2)]

# hook -> (plan, client actions, client threads, what the suite must report)
SKIPS = {
    # no fdatasync/syncfs of spool files: their bytes are gone
    "spool": ([AFTER_ACK], UPLOADS, 3, "LOST"),
    # no fsync of the spool directory: single-file batches lose the name
    "spool_dir": ([AFTER_ACK], UPLOADS, 1, "LOST"),
    # tus PATCH: no fdatasync before the offset is recorded
    "tus": ([("tus commit", "fsync", "/catalog.db-wal", 4, "after")], [("tus", 1)], 2, "tus"),
    # the object's data is never made durable (the download evicts the cache)
    "store": ([("after done", "rename", "/cache/", 1, "after")], UPLOADS, 2, "LOST"),
    # the object's name is never made durable: one PUT at a time, so no
    # batch of several files makes it durable with a syncfs (which lossyfs
    # takes as "sync everything"; with two clients, 8 cuts sometimes lost
    # nothing)
    "store_dir": ([("after done", "rename", "/cache/", 1, "after")], [("put", 1)], 1, "LOST"),
    # synchronous=OFF: commits are not durable
    "catalog": ([AFTER_ACK], UPLOADS, 3, "LOST"),
}


@pytest.mark.parametrize("hook", sorted(SKIPS))
def test_a_skipped_sync_loses_acknowledged_uploads(root, hook):
    """The suite can fail: dripd without one of its syncs loses
    acknowledged data, and the suite says which upload and where."""
    plan, actions, threads, what = SKIPS[hook]
    seed = seed_from_env()
    cuts = 8
    print("powerloss: DRIPD_TEST_SKIP_SYNC=%s, seed %d, %d cuts" % (hook, seed, cuts))
    c = pl.run(root, seed, cuts, env={"DRIPD_TEST_SKIP_SYNC": hook}, plan=plan, actions=actions,
               threads=threads, final=False, log=lambda msg: None)  # the problems are expected
    print(report(c, 3))
    assert [p for p in c.problems if what in p], "skipping the %s sync went unnoticed:\n%s" % (hook, report(c))


# ---- regressions: each bug the suite found, with the plan that showed it ----

def test_regression_tus_creation_syncs_the_spool_directory(root):
    """Seed 1 (cut 7, 'any operation #303 before'): a tus upload created
    and reported at offset 0 answered 404 'the upload's data is gone'
    after the cut: the catalog row was durable, the new spool file's name
    was not (its directory was never fsynced). Today a creation makes no
    spool file and its row is not durable by itself: the upload may be
    gone (404, allowed at offset 0), or its row may come back without a
    file, and its first PATCH makes the file (and syncs its name)."""
    c = pl.run(root, 1, 6, plan=[("after creation", "write", "/spool/", 2, "before")],
               actions=[("tus", 1)], threads=2, final=False)
    assert not c.problems, report(c)
    assert c.counts["tus_offsets"] > 0, report(c)


def test_regression_a_new_data_dir_is_durable(root):
    """A single upload into a fresh node whose store directory dripd
    creates (storage.local.path beside data_dir), then a cut: the object
    was fsynced into its directory, but that directory was never made a
    durable name of its parent (dr_mkdirs did not sync the parent), so the
    cut took every object with it while the catalog said 'available'.
    (Inside data_dir, SQLite's first WAL sync of data_dir saved it by luck.)"""
    pl._subreaper()
    mnt = os.path.join(root, "mnt")
    c = pl.Cluster(root, 7, config={"data_dir": mnt + "/var",
                                    "storage": {"local": {"path": mnt + "/store/objects"}}})
    try:
        c.begin()
        rnd = random.Random(7)
        c.do_put(rnd, "first")  # alone: its own fdatasync, no syncfs
        assert c.counts["acked"] == 1, c.problems
        wait_until(lambda: c.catalog()[1][c.uploads[0].media][3] == "available", 30, "the upload stored")
        c.cut_now(rnd, "after the first upload was stored")
        c.final_check()
        c.end()
    except BaseException:
        c.abort()
        raise
    assert not c.problems, report(c)


def test_regression_scrub_reports_what_a_cut_delete_leaves(root):
    """Seed 1 (cut 3, 'unlink #1 before, match /objects/'): a DELETE cut
    between its catalog commit and its store delete left an object that
    belonged to no media, and scrub (which docs/API.md says reports such
    orphans) did not list it: it only verified objects the catalog knows."""
    c = pl.run(root, 1, 4, plan=[("delete: object unlink", "unlink", "/objects/", 1, "before")],
               actions=[("put", 3), ("delete", 4)], threads=2)
    assert not c.problems, report(c)
    assert c.orphans, report(c)


def test_regression_a_resumed_store_step_leaves_no_temporary_file(root):
    """Seed 1 of this plan (cut after a put's fsync of objects/; 4 seeds
    out of 4 showed it): a job resumed at its store step put the same
    sealed file again; its temporary name and the key were two links of
    one inode, rename(2) between them did nothing, and
    .tmp-<random>-<key> stayed in objects/ for good. (The suite also
    showed that nothing swept what puts cut short by a cut left there.)"""
    c = pl.run(root, 1, 8, plan=[("store: dir fsync", "fsyncdir", "/objects", 1, "after")],
               actions=[("put", 5), ("multipart", 3)], threads=2, final=False)
    assert not c.problems, report(c)

/* db_sqlite.c - the SQLite backend of the catalog's database layer.
 *
 * What: one SQLite connection (opened SQLITE_OPEN_NOMUTEX) per struct db,
 * set up for the catalog's durability rules, and the mapping of SQLite's
 * result codes to -errno. db.h describes the interface, db.c the shared
 * half (statement cache, transactions, logging).
 *
 * Threads: a connection is used by one thread at a time; any number of
 * connections, in any number of processes, share the file. WAL lets
 * readers run alongside the one writer; the writers queue on a mutex
 * (g_w->mu, a leaf lock held from BEGIN to the end of the transaction):
 * one per process, or, after db_sqlite_share_writer, one robust mutex in
 * shared memory that the supervisor and every worker it forks share, so
 * dripd-http and dripd-pipeline wait for each other on a futex, not by
 * polling SQLite's lock. Other processes (a second dripd, sqlite3(1))
 * wait for SQLite's lock through the busy handler; either way after
 * CATALOG_BUSY_MS, -EBUSY. So a thread inside a write transaction never
 * begins another one.
 *
 * Guarantees:
 *  - journal_mode=WAL (persistent in the file): a commit that returned
 *    has fsynced its WAL frames (and so every frame before them); except
 *    a DB_BEGIN_LAZY transaction, which the next durable commit of any
 *    connection makes durable with its own.
 *  - A transaction's fsync comes after the write lock is let go (issue
 *    15): sq_begin switches the connection to synchronous=NORMAL until
 *    the transaction ends, so SQLite's COMMIT writes the frames and
 *    publishes them without syncing (the same crash safety: NORMAL still
 *    syncs the WAL before a checkpoint and the database after it, and a
 *    new WAL's header before its frames), and sq_commit then syncs the
 *    connection's WAL file itself, the write lock already released,
 *    before it returns. Single statements outside a transaction
 *    (autocommit) run with synchronous=FULL, SQLite's own fsync. So the
 *    next writer writes its frames while this one's fsync runs, instead
 *    of waiting for it: with both processes' commits queued on the one
 *    writer, the fsync was ~40% of the time the lock was held under a
 *    4 KiB PUT intake (on a disk where an fsync under that load took
 *    ~1 ms). Readers may see a commit ~1 fsync before it is durable, as
 *    they already saw lazy ones; whoever acts on what it read with
 *    something that cannot be undone (a store delete) does so after a
 *    durable commit of its own, whose fsync covers every frame before it.
 *    A failed sync returns -EIO although the transaction committed: its
 *    caller answers an error, and nobody was promised it.
 *  - SQLite's autocheckpoint, timed (wal_hook): the commit that finds the
 *    WAL CKPT_FRAMES long checkpoints it inside its COMMIT, writer mutex
 *    held, so the WAL is copied whole and starts over.
 *  - foreign_keys=ON on every connection.
 *  - Statements are prepared with SQLITE_PREPARE_PERSISTENT (they live
 *    as long as the connection) from text whose `$n` placeholders are
 *    rewritten to SQLite's `?n` once, at prepare time.
 *
 *  - Every connection goes through the "dripd-walbuf" VFS
 *    (sqlite_walbuf.h): a transaction's WAL frames reach the file in one
 *    pwrite, at the latest with its commit frame, instead of two per page.
 *
 * Not used: mmap_size (memory-mapped reads), measured 1.3-1.5x the CPU
 * per 4 KiB upload in both processes (bench/intake.sh, issue 15). Every
 * connection (one per thread, in two processes) finds the WAL changed by
 * another one at the start of nearly every transaction, and SQLite then
 * unmaps the whole file besides dropping its page cache (pager.c,
 * pagerBeginReadTransaction): a munmap (a TLB shootdown of both cores),
 * an mmap and a page fault per page read again, where pread costs one
 * system call per page; and the hot pages are mostly in the WAL, which
 * is read with pread either way.
 *
 * secure_delete is FAST (Debian builds SQLite with it ON): see configure.
 *
 * Errors: BUSY/LOCKED -> -EBUSY, FULL -> -ENOSPC, NOMEM -> -ENOMEM,
 * CONSTRAINT UNIQUE/PRIMARY KEY -> -EEXIST, CONSTRAINT CHECK -> -EINVAL,
 * CANTOPEN at open -> the OS errno, anything else -> -EIO.
 */
#include "db.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "db_backend.h"
#include "sqlite_walbuf.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define CATALOG_BUSY_MS 5000
/* The polling busy handler (DB_BEGIN_POLL): SQLite's default one
 * (busy_timeout) sleeps 1, 2, 5, 10, 15, 20, 25... ms between tries, so an
 * intake that finds the write lock held for 0.3 ms by a pipeline stage's
 * commit sleeps 1 ms, and one that loses a few races sleeps tens of ms
 * while every upload of the batch waits. Polling every POLL_US gets the
 * lock within a fraction of a WAL commit of its release, for the same
 * CATALOG_BUSY_MS in all. */
#define POLL_US 100
/* The WAL's length, in frames (pages), from which a commit checkpoints it
 * (wal_hook). SQLite's default is 1,000: under a 4 KiB PUT intake its
 * checkpoints were ~20% of the time the writer was held (issue 15), and
 * many of the pages each one copies are the same hot pages (index roots
 * and right edges, the queue's) that the next 1,000 frames change again.
 * At 4,000 the writer was held 0.74 of the time instead of 0.80 and the
 * sustained rate rose 1.02-1.05x (bench/small.sh, RUNS=3, twice, six of
 * six pairs ahead); 8,000 was no better and its p99 worse. The WAL file
 * then stays near 16 MiB. */
#define CKPT_FRAMES 4000

enum { TX_BEGIN, TX_COMMIT, TX_ROLLBACK, TX_NORMAL, TX_FULL, TX_READ, TX_N };
static const char *const tx_sql[TX_N] = {
    "BEGIN IMMEDIATE",         "COMMIT", "ROLLBACK", "PRAGMA synchronous=NORMAL",
    "PRAGMA synchronous=FULL", "BEGIN"};

struct sq_db {
    struct db base;
    sqlite3 *conn;
    sqlite3_stmt *tx[TX_N]; /* prepared on first use */
    bool polling;           /* DB_BEGIN_POLL's handler is on until the transaction ends */
    bool lazy;              /* DB_BEGIN_LAZY: no WAL sync after this transaction's commit */
    bool relaxed;           /* synchronous=NORMAL until the transaction ends */
    bool nosync;            /* DRIPD_TEST_SKIP_SYNC=catalog: synchronous=OFF, no WAL sync */
    bool writer;            /* holds g_w->mu until the transaction ends */
    unsigned kind;          /* the transaction's dr_writer_kind (DB_BEGIN_KIND) */
    uint64_t held_since;    /* when it took g_w->mu, dr_mono_ns */
    uint64_t busy_since;    /* the polling busy handler's start, ns */
};

struct sq_stmt {
    struct db_stmt base;
    sqlite3_stmt *st;
};

static sqlite3 *conn_of(struct db *db)
{
    return ((struct sq_db *)db)->conn;
}

static sqlite3_stmt *st_of(struct db_stmt *s)
{
    return ((struct sq_stmt *)s)->st;
}

static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            return -EEXIST;
        if (rc == SQLITE_CONSTRAINT_CHECK)
            return -EINVAL;
        return -EIO;
    default:
        return -EIO;
    }
}

/* A failed SQLite call: its -errno, with the message in db->err. */
static int fail(struct db *db, int rc, const char *msg)
{
    int e = map_rc(rc);
    if (msg == NULL)
        msg = sqlite3_errmsg(conn_of(db));
    if (e == -EBUSY)
        db_set_err(db, "database locked for more than %d ms (%s)", CATALOG_BUSY_MS, msg);
    else
        db_set_err(db, "%s (sqlite %d)", msg, rc);
    return e;
}

/* ---- statements --------------------------------------------------------- */

/* The SQL with each `$n` placeholder written as SQLite's `?n` (the same
 * numbered parameter). Quoted text is left alone. Caller frees. */
static char *sqlite_text(const char *sql)
{
    char *out = xstrdup(sql);
    char quote = 0;
    for (char *p = out; *p != '\0'; p++) {
        if (quote != 0) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
            *p = '?';
        }
    }
    return out;
}

static int sq_prepare(struct db *db, const char *sql, struct db_stmt **out)
{
    char *text = sqlite_text(sql);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(conn_of(db), text, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    free(text);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return fail(db, rc, NULL);
    }
    struct sq_stmt *s = xcalloc(1, sizeof *s);
    s->base.db = db;
    s->st = st;
    *out = &s->base;
    return 0;
}

static void sq_finalize(struct db_stmt *s)
{
    sqlite3_finalize(st_of(s));
    free(s);
}

static void sq_bind_i64(struct db_stmt *s, int i, int64_t v)
{
    sqlite3_bind_int64(st_of(s), i, v);
}

static void sq_bind_text(struct db_stmt *s, int i, const char *v)
{
    if (v != NULL)
        sqlite3_bind_text(st_of(s), i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st_of(s), i);
}

static void sq_bind_blob(struct db_stmt *s, int i, const void *p, size_t n)
{
    if (p != NULL)
        sqlite3_bind_blob64(st_of(s), i, p, n, SQLITE_STATIC);
    else
        sqlite3_bind_null(st_of(s), i);
}

static void sq_bind_null(struct db_stmt *s, int i)
{
    sqlite3_bind_null(st_of(s), i);
}

static int sq_step(struct db_stmt *s)
{
    int rc = sqlite3_step(st_of(s));
    if (rc == SQLITE_ROW)
        return DB_ROW;
    if (rc == SQLITE_DONE)
        return DB_DONE;
    return fail(s->db, rc, NULL);
}

static int64_t sq_col_i64(struct db_stmt *s, int i)
{
    return sqlite3_column_int64(st_of(s), i);
}

static bool sq_col_null(struct db_stmt *s, int i)
{
    return sqlite3_column_type(st_of(s), i) == SQLITE_NULL;
}

static const char *sq_col_text(struct db_stmt *s, int i)
{
    return (const char *)sqlite3_column_text(st_of(s), i);
}

static const void *sq_col_blob(struct db_stmt *s, int i, size_t *len)
{
    const void *p = sqlite3_column_blob(st_of(s), i);
    int n = sqlite3_column_bytes(st_of(s), i);
    *len = p != NULL && n > 0 ? (size_t)n : 0;
    return *len > 0 ? p : NULL;
}

/* Reset ends the statement's implicit read transaction; the binds may
 * point at the caller's strings, so they go too. */
static void sq_reset(struct db_stmt *s)
{
    sqlite3_reset(st_of(s));
    sqlite3_clear_bindings(st_of(s));
}

static int sq_changes(struct db_stmt *s)
{
    return sqlite3_changes(conn_of(s->db));
}

static int sq_script(struct db *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(conn_of(db), sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return 0;
    rc = fail(db, rc, msg != NULL ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

static int poll_handler(void *arg, int count)
{
    uint64_t *start = arg;
    uint64_t now = dr_mono_ns();
    if (count == 0)
        *start = now;
    else if (now - *start >= (uint64_t)CATALOG_BUSY_MS * 1000000u)
        return 0;
    struct timespec ts = {0, POLL_US * 1000L};
    nanosleep(&ts, NULL);
    return 1;
}

/* SQLite has one writer at a time; its writers queue on g_w->mu (held
 * from BEGIN to the end of the transaction), so they wait for each other
 * without the busy handler's sleeps (1, 2, 5, 10... up to 25 ms between
 * tries: a pipeline claim and a commit that met cost ~20% of the
 * pipeline's time) or its polls (DB_BEGIN_POLL: a wake-up every 100 us,
 * which made the upload starter and notify threads wake ~0.5-0.7 times
 * per 4 KiB upload while dripd-http's intake held the lock, issue 15).
 * Only writers outside dripd's process tree meet SQLite's lock. After
 * CATALOG_BUSY_MS, -EBUSY, as SQLite would say.
 *
 * g_w is this process's own writer (mutex and statistics) until
 * db_sqlite_share_writer points it at a process-shared one. That one is robust: a worker killed
 * inside a transaction (its SQLite lock goes with its file descriptors,
 * and the next connection rolls the WAL's uncommitted frames back) leaves
 * the mutex to the next locker with EOWNERDEAD, which marks it consistent
 * and goes on.
 *
 * Next to the mutex, the writer's statistics (catalog_writer_stats, GET
 * /metrics): per kind of transaction, the time spent waiting for the
 * mutex, holding it (BEGIN to COMMIT or ROLLBACK), in the WAL fsync
 * after it, and in checkpoints (wal_hook; inside the held time). With the one mutex every process
 * shares, the held time of all kinds together is the fraction of time the catalog could take no
 * other write: near 1 s per second, the writer is the bound (issue 15:
 * it was, under a 4 KiB PUT intake). */
struct writer {
    pthread_mutex_t mu;
    /* catalog_writer_stats, by kind (DB_BEGIN_KIND); relaxed atomics */
    struct dr_writer_stats stats[DR_WRITER_KINDS];
};
static struct writer g_local = {.mu = PTHREAD_MUTEX_INITIALIZER};
static struct writer *g_w = &g_local;

int db_sqlite_share_writer(void)
{
    if (g_w != &g_local)
        return 0;
    struct writer *w =
        mmap(NULL, sizeof *w, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED)
        return -errno;
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    int e = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (e == 0)
        e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (e == 0)
        e = pthread_mutex_init(&w->mu, &a);
    pthread_mutexattr_destroy(&a);
    if (e != 0) {
        munmap(w, sizeof *w);
        return -e;
    }
    g_w = w; /* the mapping is zeroed: the statistics start from there */
    return 0;
}

/* The statistics: a few relaxed atomic adds per transaction, and two
 * clock reads (vDSO) besides the lock's. */
static void stat_add(uint64_t *counter, uint64_t v)
{
    __atomic_fetch_add(counter, v, __ATOMIC_RELAXED);
}

void db_sqlite_writer_stats(struct dr_writer_stats out[DR_WRITER_KINDS])
{
    for (int k = 0; k < DR_WRITER_KINDS; k++) {
        const struct dr_writer_stats *s = &g_w->stats[k];
        out[k].transactions = __atomic_load_n(&s->transactions, __ATOMIC_RELAXED);
        out[k].wait_ns = __atomic_load_n(&s->wait_ns, __ATOMIC_RELAXED);
        out[k].held_ns = __atomic_load_n(&s->held_ns, __ATOMIC_RELAXED);
        out[k].sync_ns = __atomic_load_n(&s->sync_ns, __ATOMIC_RELAXED);
        out[k].ckpt_ns = __atomic_load_n(&s->ckpt_ns, __ATOMIC_RELAXED);
    }
}

/* Lock g_w->mu for at most CATALOG_BUSY_MS: 0 or an errno. */
static int writer_lock(void)
{
    /* A free mutex (and one whose owner died while nobody waited) is
     * taken without a clock read; ThreadSanitizer also models a trylock's
     * EOWNERDEAD, where it misses a timedlock's. */
    int e = pthread_mutex_trylock(&g_w->mu);
    if (e == EBUSY) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts); /* pthread_mutex_timedlock's clock */
        ts.tv_sec += CATALOG_BUSY_MS / 1000;
        e = pthread_mutex_timedlock(&g_w->mu, &ts);
    }
    if (e == EOWNERDEAD) {
        log_warn("catalog: a process died inside a write transaction; going on");
        e = pthread_mutex_consistent(&g_w->mu);
    }
    return e;
}

static int run_tx(struct sq_db *d, int which);

/* The transaction ended (or never began): undo what sq_begin set. */
static void tx_done(struct sq_db *d)
{
    if (d->polling) {
        sqlite3_busy_timeout(d->conn, CATALOG_BUSY_MS);
        d->polling = false;
    }
    d->lazy = false;
    if (d->writer) {
        d->writer = false;
        struct dr_writer_stats *st = &g_w->stats[d->kind];
        stat_add(&st->held_ns, dr_mono_ns() - d->held_since);
        stat_add(&st->transactions, 1);
        pthread_mutex_unlock(&g_w->mu);
    }
    if (d->relaxed) {
        (void)run_tx(d, TX_FULL); /* for autocommit statements; needs no lock */
        d->relaxed = false;
    }
}

/* Run one of the transaction statements (prepared once, kept). */
static int run_tx(struct sq_db *d, int which)
{
    if (d->tx[which] == NULL) {
        int rc = sqlite3_prepare_v3(d->conn, tx_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
                                    &d->tx[which], NULL);
        if (rc != SQLITE_OK) {
            d->tx[which] = NULL;
            return fail(&d->base, rc, NULL);
        }
    }
    int rc = sqlite3_step(d->tx[which]);
    sqlite3_reset(d->tx[which]);
    return rc == SQLITE_DONE ? 0 : fail(&d->base, rc, NULL);
}

static int sq_begin(struct db *db, unsigned flags)
{
    struct sq_db *d = (struct sq_db *)db;
    if (flags & DB_BEGIN_READ) {
        d->lazy = true; /* nothing to sync at its end (tx_done clears it) */
        int rc = run_tx(d, TX_READ);
        if (rc < 0)
            tx_done(d);
        return rc;
    }
    unsigned kind = flags >> 8;
    d->kind = kind < DR_WRITER_KINDS ? kind : DR_WRITER_OTHER;
    uint64_t t0 = dr_mono_ns();
    int e = writer_lock();
    d->held_since = dr_mono_ns();
    stat_add(&g_w->stats[d->kind].wait_ns, d->held_since - t0);
    if (e != 0) {
        db_set_err(db, "another thread of dripd kept the write lock for %d ms", CATALOG_BUSY_MS);
        return e == ETIMEDOUT ? -EBUSY : -e;
    }
    d->writer = true;
    if (flags & DB_BEGIN_POLL) {
        sqlite3_busy_handler(d->conn, poll_handler, &d->busy_since);
        d->polling = true;
    }
    /* lazy: no WAL fsync after this commit; the next durable commit's
     * fsync covers its frames (they come first in the WAL). Deferred:
     * none either; the caller's db_sync makes it durable. */
    d->lazy = (flags & (DB_BEGIN_LAZY | DB_BEGIN_DEFER_SYNC)) != 0;
    if (!d->nosync) { /* the power-cut suite's OFF stays OFF */
        int r = run_tx(d, TX_NORMAL);
        if (r < 0) {
            tx_done(d);
            return r;
        }
        d->relaxed = true;
    }
    int rc = run_tx(d, TX_BEGIN);
    if (rc < 0)
        tx_done(d);
    return rc;
}

/* Make every WAL frame written so far durable: an fsync of this
 * connection's WAL file (through the VFS, sqlite_walbuf.h). Called after
 * a commit, without the write lock; the WAL file is this connection's own
 * handle, which no other thread uses meanwhile. */
static int sync_wal(struct sq_db *d)
{
    if (d->nosync)
        return 0;
    sqlite3_file *f = NULL;
    int rc = sqlite3_file_control(d->conn, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
    if (rc == SQLITE_OK && (f == NULL || f->pMethods == NULL))
        rc = SQLITE_MISUSE; /* not in WAL mode: configure() refused that */
    if (rc == SQLITE_OK) {
        uint64_t t0 = dr_mono_ns();
        rc = f->pMethods->xSync(f, SQLITE_SYNC_NORMAL);
        stat_add(&g_w->stats[d->kind].sync_ns, dr_mono_ns() - t0);
    }
    if (rc == SQLITE_OK)
        return 0;
    db_set_err(&d->base, "the transaction committed, but syncing the WAL after it failed (%s)",
               sqlite3_errstr(rc));
    log_error("catalog: %s", d->base.err);
    return -EIO;
}

static int sq_commit(struct db *db)
{
    struct sq_db *d = (struct sq_db *)db;
    int rc = run_tx(d, TX_COMMIT);
    if (rc < 0)
        return rc; /* db_commit rolls back */
    bool durable = !d->lazy;
    tx_done(d); /* the write lock goes before the fsync */
    return durable ? sync_wal(d) : 0;
}

/* db_sync: the same fsync of the WAL as a durable commit's, through this
 * connection's handle of the WAL file. A connection that has not read
 * since it opened has none yet: a read of the schema opens it. */
static int sq_sync(struct db *db, unsigned kind)
{
    struct sq_db *d = (struct sq_db *)db;
    d->kind = kind < DR_WRITER_KINDS ? kind : DR_WRITER_OTHER;
    sqlite3_file *f = NULL;
    int rc = sqlite3_file_control(d->conn, "main", SQLITE_FCNTL_JOURNAL_POINTER, &f);
    if (rc == SQLITE_OK && (f == NULL || f->pMethods == NULL))
        rc = sqlite3_exec(d->conn, "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return fail(db, rc, NULL);
    return sync_wal(d);
}

static void sq_rollback(struct db *db)
{
    struct sq_db *d = (struct sq_db *)db;
    if (!sqlite3_get_autocommit(d->conn) && run_tx(d, TX_ROLLBACK) < 0)
        log_error("catalog: rollback: %s", db->err);
    tx_done(d);
}

static void sq_close(struct db *db)
{
    struct sq_db *d = (struct sq_db *)db;
    for (int i = 0; i < TX_N; i++)
        sqlite3_finalize(d->tx[i]);
    sqlite3_close_v2(d->conn);
    free(d);
}

static const struct db_ops sqlite_ops = {
    .dialect = DB_SQLITE,
    .close = sq_close,
    .prepare = sq_prepare,
    .finalize = sq_finalize,
    .bind_i64 = sq_bind_i64,
    .bind_text = sq_bind_text,
    .bind_blob = sq_bind_blob,
    .bind_null = sq_bind_null,
    .step = sq_step,
    .col_i64 = sq_col_i64,
    .col_null = sq_col_null,
    .col_text = sq_col_text,
    .col_blob = sq_col_blob,
    .reset = sq_reset,
    .changes = sq_changes,
    .script = sq_script,
    .begin = sq_begin,
    .commit = sq_commit,
    .rollback = sq_rollback,
    .sync = sq_sync,
};

/* ---- opening ------------------------------------------------------------ */

/* Called by SQLite after each commit of this connection, SQLite's write
 * lock released, with the WAL's length in frames: SQLite's own
 * autocheckpoint (a passive checkpoint from CKPT_FRAMES on), timed for
 * catalog_writer_stats. A transaction's runs inside its COMMIT, so with
 * dripd's writer mutex still held: no other writer of dripd's can append
 * meanwhile, so the checkpoint copies the whole WAL and the next writer
 * starts it over from the beginning. (Run after the mutex instead, issue
 * 15, it left the writer held 0.62 of the time under a 4 KiB PUT intake
 * instead of 0.80, but the rates did not move, and the WAL stopped
 * starting over: with writers appending during every checkpoint it was
 * never wholly copied, so each commit past the mark checkpointed again,
 * two more fsyncs each.) */
static int wal_hook(void *arg, sqlite3 *conn, const char *name, int frames)
{
    struct sq_db *d = arg;
    if (frames < CKPT_FRAMES)
        return SQLITE_OK;
    uint64_t t0 = dr_mono_ns();
    int rc = sqlite3_wal_checkpoint_v2(conn, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    stat_add(&g_w->stats[d->writer ? d->kind : DR_WRITER_OTHER].ckpt_ns, dr_mono_ns() - t0);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        log_debug("catalog: checkpoint: %s", sqlite3_errmsg(conn));
    return SQLITE_OK; /* as SQLite's: a failed checkpoint is tried again next time */
}

/* Per-connection settings. journal_mode=WAL is persistent in the file;
 * setting it again is a no-op once it is WAL. */
static int configure(struct sq_db *d)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(d->conn, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        rc = fail(&d->base, rc, NULL);
        sqlite3_finalize(st);
        log_error("catalog: journal_mode=WAL: %s", d->base.err);
        return rc;
    }
    const unsigned char *mode = sqlite3_column_text(st, 0);
    bool wal = mode != NULL && strcmp((const char *)mode, "wal") == 0;
    if (!wal)
        log_error("catalog: cannot switch to WAL mode (journal_mode is %s)",
                  mode != NULL ? (const char *)mode : "?");
    sqlite3_finalize(st);
    if (!wal)
        return -EIO;
    /* DRIPD_TEST_SKIP_SYNC=catalog (util.h): the power-cut suite's proof
     * that it can see a lost commit. */
    d->nosync = dr_test_skip_sync("catalog");
    sqlite3_wal_hook(d->conn, wal_hook, d); /* SQLite's autocheckpoint, timed */
    /* secure_delete=FAST, not Debian's default ON (SQLITE_SECURE_DELETE):
     * deleted content is still zeroed in the b-tree pages a delete writes
     * anyway, but a page freed whole (the overflow page of a small
     * upload's inline body, deleted with its last step) is not zeroed and
     * written once more to the WAL, and again to the file by the next
     * checkpoint. That was a fifth of a 4 KiB upload's last step (issue
     * 15). The freed page keeps its old bytes until the next body reuses
     * it; docs/CATALOG.md says why that is no weaker than the rest of
     * data_dir. */
    rc = sq_script(&d->base, d->nosync ? "PRAGMA synchronous=OFF;" : "PRAGMA synchronous=FULL;");
    if (rc == 0)
        rc = sq_script(&d->base, "PRAGMA foreign_keys=ON; PRAGMA secure_delete=FAST;");
    if (rc < 0)
        log_error("catalog: pragmas: %s", d->base.err);
    return rc;
}

/* Savepoints (each tus item of an intake batch is undone alone, catalog
 * _tus.c; each job step of a pipeline commit, catalog_jobs.c) keep a
 * statement journal. SQLite holds it in memory up to the spill size and
 * then spills it to a temporary file made (and unlinked) for that
 * transaction: with the default 64 KiB, an inode allocation per intake
 * batch, and on ext4 without a journal each one scans past the recently
 * deleted inodes (perf, 4 KiB tus uploads: ~13% of dripd-http's CPU, in
 * the commit thread). A positive spill size is also the size of each of
 * the journal's memory chunks: 16 MiB made every savepoint mmap and
 * munmap 16 MiB in dripd-pipeline (whose mmap threshold is fixed at
 * 128 KiB, pipeline_worker.c): ~30% of its CPU in page faults, munmap
 * and TLB shootdowns during a 4 KiB PUT intake (issue 15). So -1: the
 * journal stays in memory, in 1 KiB chunks from the heap, and never
 * spills. It holds the first image of each page changed inside a
 * savepoint or a statement that may abort, and is emptied when the last
 * savepoint is released: the catalog's savepoints are one job step or
 * one tus item (a few pages each); the largest statement journal is a
 * schema migration's UPDATE over a table (catalog_schema.c), once, in
 * the supervisor. Process-wide, before SQLite initialises: the first
 * open does it (the supervisor's, whose settings the forked workers
 * inherit). */
#define STMTJRNL_SPILL (-1)
static pthread_once_t g_config_once = PTHREAD_ONCE_INIT;
static const char *g_vfs; /* the WAL write buffer's VFS (sqlite_walbuf.h), NULL: the default */

static void sq_config(void)
{
    int rc = sqlite3_config(SQLITE_CONFIG_STMTJRNL_SPILL, STMTJRNL_SPILL);
    if (rc != SQLITE_OK) /* SQLite was initialised already (not by us) */
        log_debug("catalog: statement journal spill: %s", sqlite3_errstr(rc));
    /* No memory statistics (nothing reads sqlite3_memory_used()): with
     * them, every sqlite3_malloc and free takes one process-wide mutex,
     * which the ~20 threads of dripd-pipeline, each on its own connection,
     * then queue on. Measured with bench/drain.sh: 3% less CPU per 4 KiB
     * job (issue 15). */
    rc = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    if (rc != SQLITE_OK)
        log_debug("catalog: memory statistics: %s", sqlite3_errstr(rc));
    g_vfs = sqlite_walbuf_register() == 0 ? SQLITE_WALBUF_VFS : NULL;
    if (g_vfs == NULL)
        log_warn("catalog: no WAL write buffer (sqlite_walbuf.h): SQLite's default VFS");
}

int db_sqlite_open(const char *path, struct db **out)
{
    *out = NULL;
    pthread_once(&g_config_once, sq_config);
    struct sq_db *d = xcalloc(1, sizeof *d);
    db_init(&d->base, &sqlite_ops);
    int rc = sqlite3_open_v2(
        path, &d->conn, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, g_vfs);
    if (rc != SQLITE_OK) {
        int sys = d->conn != NULL ? sqlite3_system_errno(d->conn) : 0;
        log_error("catalog: open %s: %s", path,
                  d->conn != NULL ? sqlite3_errmsg(d->conn) : sqlite3_errstr(rc));
        rc = (rc & 0xff) == SQLITE_CANTOPEN && sys > 0 ? -sys : map_rc(rc);
        sq_close(&d->base);
        return rc;
    }
    sqlite3_extended_result_codes(d->conn, 1);
    sqlite3_busy_timeout(d->conn, CATALOG_BUSY_MS);
    rc = configure(d);
    if (rc < 0) {
        sq_close(&d->base);
        return rc;
    }
    *out = &d->base;
    return 0;
}

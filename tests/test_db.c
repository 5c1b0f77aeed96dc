/* test_db.c - Check suite for the catalog's database layer (catalog/db.h):
 * the statement cache, numbered placeholders, typed binds and columns,
 * transactions and savepoints, and the error mapping, on both backends;
 * and for PostgreSQL its pool, connection loss and LISTEN/NOTIFY.
 *
 * SQLite's WAL writes go through sqlite_walbuf.h: a transaction's frames
 * in one write, readable by another connection once it committed, across
 * cache spills, rollbacks and WAL restarts.
 *
 * Each test gets a fresh database (a SQLite file in a temporary directory,
 * or a PostgreSQL database on the server of tests/pgtest.h) with a small
 * table t. (The catalog's own semantics are test_catalog.c's.)
 */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog/db.h"
#include "catalog/db_backend.h"
#include "catalog/sqlite_walbuf.h"
#include "dripd/util.h"
#include "pgtest.h"

static char tmpdir[256];
static struct db *db;
static bool use_pg;
static char pgdsn[320];

static const struct db_sql q_insert = {"INSERT INTO t(k, n, s, b) VALUES ($1, $2, $3, $4)", NULL};
static const struct db_sql q_insert_quiet = {
    "INSERT INTO t(k, n, s, b) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING", NULL};
static const struct db_sql q_get = {"SELECT k, n, s, b FROM t WHERE k = $1", NULL};
static const struct db_sql q_count = {"SELECT count(*) FROM t", NULL};

static int open_one(struct db **out)
{
    if (use_pg)
        return db_pg_open(pgdsn, 4, out);
    char *path = xasprintf("%s/t.db", tmpdir);
    int rc = db_sqlite_open(path, out);
    free(path);
    return rc;
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_db.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    if (use_pg)
        ck_assert_int_eq(pgtest_createdb(pgdsn, sizeof pgdsn), 0);
    ck_assert_int_eq(open_one(&db), 0);
    ck_assert_int_eq(db_script(db,
                               use_pg ? "CREATE TABLE t (k TEXT PRIMARY KEY, n BIGINT NOT NULL, "
                                        "s TEXT, b BYTEA, CHECK (n <> 42));"
                                      : "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL, "
                                        "s TEXT, b BLOB, CHECK (n <> 42));",
                               "create"),
                     0);
}

static void setup_sqlite(void)
{
    use_pg = false;
    setup();
}

static void setup_pg(void)
{
    use_pg = true;
    setup();
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void teardown(void)
{
    db_close(db);
    db = NULL;
    if (use_pg)
        pgtest_dropdb(pgdsn);
    nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

static int insert_on(struct db *d, const char *k, int64_t n, const char *s, const void *b,
                     size_t blen)
{
    struct db_stmt *st;
    ck_assert_int_eq(db_prepare(d, &q_insert, &st), 0);
    db_bind_text(st, 1, k);
    db_bind_i64(st, 2, n);
    db_bind_text(st, 3, s);
    db_bind_blob(st, 4, b, blen);
    return db_exec(st, "insert");
}

static int insert(const char *k, int64_t n, const char *s, const void *b, size_t blen)
{
    return insert_on(db, k, n, s, b, blen);
}

/* The one integer row of q on d. */
static int64_t one_i64(struct db *d, const struct db_sql *q, const char *what)
{
    struct db_stmt *st;
    ck_assert_int_eq(db_prepare(d, q, &st), 0);
    ck_assert_int_eq(db_step(st, what), DB_ROW);
    int64_t n = db_col_i64(st, 0);
    ck_assert_int_eq(db_step(st, what), DB_DONE);
    db_reset(st);
    return n;
}

static int64_t count(void)
{
    return one_i64(db, &q_count, "count");
}

START_TEST(test_cache_returns_one_statement_per_sql)
{
    ck_assert_int_eq(db_dialect(db), use_pg ? DB_POSTGRES : DB_SQLITE);
    struct db_stmt *a, *b, *c;
    ck_assert_int_eq(db_prepare(db, &q_get, &a), 0);
    ck_assert_int_eq(db_prepare(db, &q_get, &b), 0);
    ck_assert_ptr_eq(a, b);
    ck_assert_int_eq(db_prepare(db, &q_count, &c), 0);
    ck_assert_ptr_ne(a, c);
    /* Many statements: the cache grows and keeps every one. */
    enum { N = 200 };
    static struct db_sql many[N];
    static char text[N][64];
    struct db_stmt *first[N];
    for (int i = 0; i < N; i++) {
        snprintf(text[i], sizeof text[i], "SELECT %d + $1", i);
        many[i].sql = text[i];
        ck_assert_int_eq(db_prepare(db, &many[i], &first[i]), 0);
    }
    for (int i = 0; i < N; i++) {
        struct db_stmt *again;
        ck_assert_int_eq(db_prepare(db, &many[i], &again), 0);
        ck_assert_ptr_eq(again, first[i]);
        db_bind_i64(again, 1, 1000);
        ck_assert_int_eq(db_step(again, "many"), DB_ROW);
        ck_assert_int_eq(db_col_i64(again, 0), 1000 + i);
        db_reset(again);
    }
    ck_assert_int_eq(db_prepare(db, &q_get, &b), 0);
    ck_assert_ptr_eq(a, b);
}
END_TEST

START_TEST(test_placeholders_repeat_and_any_order)
{
    static const struct db_sql q = {"SELECT $2 || '-' || $1 || '-' || $2 || '-$1'", NULL};
    struct db_stmt *s;
    ck_assert_int_eq(db_prepare(db, &q, &s), 0);
    db_bind_text(s, 1, "a");
    db_bind_text(s, 2, "b");
    ck_assert_int_eq(db_step(s, "placeholders"), DB_ROW);
    ck_assert_str_eq(db_col_text(s, 0), "b-a-b-$1"); /* quoted text is left alone */
    db_reset(s);
}
END_TEST

START_TEST(test_typed_binds_and_columns)
{
    const uint8_t blob[] = {0, 1, 0, 255, 7};
    ck_assert_int_eq(insert("max", INT64_MAX, "text é", blob, sizeof blob), 1);
    ck_assert_int_eq(insert("min", INT64_MIN, NULL, NULL, 0), 1);
    ck_assert_int_eq(insert("empty", 0, "", blob, 0), 1); /* a 0-byte blob binds NULL */
    struct db_stmt *s;
    ck_assert_int_eq(db_prepare(db, &q_get, &s), 0);
    db_bind_text(s, 1, "max");
    ck_assert_int_eq(db_step(s, "get"), DB_ROW);
    ck_assert_str_eq(db_col_text(s, 0), "max");
    ck_assert(db_col_i64(s, 1) == INT64_MAX);
    ck_assert_str_eq(db_col_text(s, 2), "text é");
    size_t len = 0;
    const void *p = db_col_blob(s, 3, &len);
    ck_assert_int_eq((int)len, (int)sizeof blob);
    ck_assert_mem_eq(p, blob, sizeof blob);
    char *dup = db_col_strdup(s, 2);
    ck_assert_str_eq(dup, "text é");
    free(dup);
    char small[5];
    db_col_copy(s, 2, small, sizeof small); /* truncated, terminated */
    ck_assert_str_eq(small, "text");
    ck_assert_int_eq(db_step(s, "get"), DB_DONE);
    db_reset(s);

    db_bind_text(s, 1, "min");
    ck_assert_int_eq(db_step(s, "get"), DB_ROW);
    ck_assert(db_col_i64(s, 1) == INT64_MIN);
    ck_assert_ptr_null(db_col_text(s, 2));
    ck_assert_ptr_null(db_col_strdup(s, 2));
    db_col_copy(s, 2, small, sizeof small);
    ck_assert_str_eq(small, "");
    ck_assert_ptr_null(db_col_blob(s, 3, &len));
    ck_assert_int_eq((int)len, 0);
    db_reset(s);

    /* db_reset dropped the binds: $1 is NULL, which matches nothing. */
    ck_assert_int_eq(db_step(s, "get"), DB_DONE);
    db_reset(s);
    db_bind_text(s, 1, "empty");
    ck_assert_int_eq(db_step(s, "get"), DB_ROW);
    ck_assert_ptr_null(db_col_blob(s, 3, &len));
    db_reset(s);

    static const struct db_sql q_null = {"SELECT CAST($1 AS TEXT) IS NULL, $2 IS NULL", NULL};
    ck_assert_int_eq(db_prepare(db, &q_null, &s), 0);
    db_bind_null(s, 1);
    db_bind_i64(s, 2, 0);
    ck_assert_int_eq(db_step(s, "null"), DB_ROW);
    ck_assert_int_eq(db_col_i64(s, 0), 1);
    ck_assert_int_eq(db_col_i64(s, 1), 0);
    db_reset(s);
}
END_TEST

START_TEST(test_error_mapping)
{
    ck_assert_int_eq(insert("a", 1, NULL, NULL, 0), 1);
    /* A uniqueness conflict: -EEXIST; ON CONFLICT DO NOTHING: 0 rows. */
    ck_assert_int_eq(insert("a", 2, NULL, NULL, 0), -EEXIST);
    struct db_stmt *s;
    ck_assert_int_eq(db_prepare(db, &q_insert_quiet, &s), 0);
    db_bind_text(s, 1, "a");
    db_bind_i64(s, 2, 3);
    db_bind_text(s, 3, NULL);
    db_bind_blob(s, 4, NULL, 0);
    ck_assert_int_eq(db_exec(s, "insert quiet"), 0);
    /* A CHECK constraint: -EINVAL. NOT NULL: -EIO. */
    ck_assert_int_eq(insert("b", 42, NULL, NULL, 0), -EINVAL);
    static const struct db_sql q_notnull = {"INSERT INTO t(k, n) VALUES ('c', $1)", NULL};
    ck_assert_int_eq(db_prepare(db, &q_notnull, &s), 0);
    db_bind_null(s, 1);
    ck_assert_int_eq(db_exec(s, "not null"), -EIO);
    /* Bad SQL fails with -EIO: SQLite at prepare (and it is not cached),
     * PostgreSQL (which prepares on a connection at first use) at step. */
    static const struct db_sql q_bad = {"SELEC nonsense", NULL};
    if (use_pg) {
        ck_assert_int_eq(db_prepare(db, &q_bad, &s), 0);
        ck_assert_int_eq(db_step(s, "bad"), -EIO);
        db_reset(s);
        ck_assert_int_eq(db_step(s, "bad"), -EIO);
        db_reset(s);
    } else {
        ck_assert_int_eq(db_prepare(db, &q_bad, &s), -EIO);
        ck_assert_ptr_null(s);
        ck_assert_int_eq(db_prepare(db, &q_bad, &s), -EIO);
    }
    ck_assert_int_eq(db_script(db, "CREATE TABLE t (x);", "script"), -EIO);
    ck_assert_int_eq(count(), 1);
}
END_TEST

START_TEST(test_transactions_and_savepoints)
{
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(insert("a", 1, NULL, NULL, 0), 1);
    db_rollback(db);
    ck_assert_int_eq(count(), 0);
    db_rollback(db); /* outside a transaction: nothing */

    ck_assert_int_eq(db_begin(db, DB_BEGIN_POLL), 0);
    ck_assert_int_eq(insert("a", 1, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_savepoint(db), 0);
    ck_assert_int_eq(insert("b", 2, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_savepoint_rollback(db), 0);
    ck_assert_int_eq(db_savepoint_release(db), 0);
    ck_assert_int_eq(db_savepoint(db), 0);
    ck_assert_int_eq(insert("c", 3, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_savepoint_release(db), 0);
    /* A failed statement inside a savepoint is undone alone. */
    ck_assert_int_eq(db_savepoint(db), 0);
    ck_assert_int_eq(insert("a", 9, NULL, NULL, 0), -EEXIST);
    ck_assert_int_eq(db_savepoint_rollback(db), 0);
    ck_assert_int_eq(db_savepoint_release(db), 0);
    ck_assert_int_eq(db_end(db, 0), 0);
    ck_assert_int_eq(count(), 2); /* a and c */

    /* Without a savepoint, SQLite undoes the failed statement only;
     * PostgreSQL aborts the whole transaction, so its COMMIT fails. (So
     * the catalog never lets a statement fail inside a transaction it
     * means to commit: ON CONFLICT DO NOTHING, or a savepoint.) */
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(insert("e", 5, NULL, NULL, 0), 1);
    ck_assert_int_eq(insert("a", 9, NULL, NULL, 0), -EEXIST);
    ck_assert_int_eq(db_end(db, 0), use_pg ? -EIO : 0);
    ck_assert_int_eq(count(), use_pg ? 2 : 3);
    static const struct db_sql q_del_e = {"DELETE FROM t WHERE k = 'e'", NULL};
    struct db_stmt *s;
    ck_assert_int_eq(db_prepare(db, &q_del_e, &s), 0);
    ck_assert_int_ge(db_exec(s, "delete e"), 0);

    /* db_end with an error rolls back and hands the error on. */
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(insert("d", 4, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_end(db, -ENOENT), -ENOENT);
    ck_assert_int_eq(count(), 2);
}
END_TEST

START_TEST(test_busy_is_ebusy)
{
    /* A second connection holds a lock past the 5 s timeout (SQLite: the
     * write lock, here the writer mutex of this process; PostgreSQL:
     * lock_timeout on an advisory lock). */
    static const struct db_sql q_lock = {"SELECT 1", "SELECT pg_advisory_xact_lock(7)"};
    struct db *other;
    ck_assert_int_eq(open_one(&other), 0);
    ck_assert_int_eq(db_begin(other, 0), 0);
    struct db_stmt *s;
    ck_assert_int_eq(db_prepare(other, &q_lock, &s), 0);
    ck_assert_int_eq(db_step(s, "lock"), DB_ROW);
    db_reset(s);
    int64_t t0 = dr_mono_ms();
    if (use_pg) {
        ck_assert_int_eq(db_begin(db, DB_BEGIN_POLL), 0);
        ck_assert_int_eq(db_prepare(db, &q_lock, &s), 0);
        ck_assert_int_eq(db_step(s, "lock"), -EBUSY);
        db_reset(s);
        db_rollback(db);
    } else {
        ck_assert_int_eq(db_begin(db, DB_BEGIN_POLL), -EBUSY);
    }
    ck_assert_int_ge(dr_mono_ms() - t0, 4500);
    ck_assert_int_eq(count(), 0); /* readers still read */
    db_rollback(other);
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(db_end(db, 0), 0);
    db_close(other);
    db_close(NULL);
}
END_TEST

/* A lazy transaction commits its rows like any other (db.h: only its
 * flush to disk is left to the next durable commit), and the connection's
 * next transaction is durable again. */
START_TEST(test_lazy_commits)
{
    ck_assert_int_eq(db_begin(db, DB_BEGIN_LAZY), 0);
    ck_assert_int_eq(insert("lazy", 1, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_end(db, 0), 0);
    ck_assert_int_eq(db_begin(db, DB_BEGIN_LAZY), 0);
    ck_assert_int_eq(insert("gone", 2, NULL, NULL, 0), 1);
    db_rollback(db);
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(insert("durable", 3, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_end(db, 0), 0);
    ck_assert_int_eq(count(), 2);
    if (!use_pg) { /* the connection is FULL again (2), not NORMAL (1) */
        static const struct db_sql q_sync = {"PRAGMA synchronous", NULL};
        struct db_stmt *st;
        ck_assert_int_eq(db_prepare(db, &q_sync, &st), 0);
        ck_assert_int_eq(db_step(st, "synchronous"), DB_ROW);
        ck_assert_int_eq(db_col_i64(st, 0), 2);
        db_reset(st);
    }
}
END_TEST

static int64_t count_on(struct db *d)
{
    return one_i64(d, &q_count, "count");
}

static void integrity_ok(struct db *d)
{
    static const struct db_sql q_check = {"PRAGMA integrity_check", NULL};
    struct db_stmt *st;
    ck_assert_int_eq(db_prepare(d, &q_check, &st), 0);
    ck_assert_int_eq(db_step(st, "integrity"), DB_ROW);
    ck_assert_str_eq(db_col_text(st, 0), "ok");
    db_reset(st);
}

/* Insert rows [from, to) with 1 KiB blobs in one transaction of flags. */
static void insert_rows(int from, int to, unsigned flags, bool commit)
{
    char blob[1024], k[32];
    memset(blob, 'w', sizeof blob);
    ck_assert_int_eq(db_begin(db, flags), 0);
    for (int i = from; i < to; i++) {
        snprintf(k, sizeof k, "row-%06d", i);
        ck_assert_int_eq(insert(k, 100000 + i, k, blob, sizeof blob), 1); /* n <> 42 */
    }
    if (commit)
        ck_assert_int_eq(db_end(db, 0), 0);
    else
        db_rollback(db);
}

/* insert_rows of a durable transaction of ~60 pages (~120 writes asked
 * of the WAL buffer), which reach the file in a tenth of that or fewer. */
static void insert_rows_buffered(int from, int to)
{
    uint64_t asked0, made0, asked1, made1;
    sqlite_walbuf_counts(&asked0, &made0);
    insert_rows(from, to, 0, true);
    sqlite_walbuf_counts(&asked1, &made1);
    ck_assert_uint_ge(asked1 - asked0, 100);
    ck_assert_uint_le(made1 - made0, (asked1 - asked0) / 10);
}

/* A transaction of many pages reaches the WAL in a few writes (two per
 * page without the buffer), and what commits is there for another
 * connection at once: after FULL and lazy commits, a transaction that
 * spills pages to the WAL and reads them back, a rollback after a spill,
 * and a WAL that a checkpoint truncated starts over at its header. */
START_TEST(test_wal_frames_written_per_transaction)
{
    struct db *other;
    ck_assert_int_eq(open_one(&other), 0);
    insert_rows_buffered(0, 200);
    ck_assert_int_eq(count_on(other), 200);
    insert_rows(200, 260, DB_BEGIN_LAZY, true);
    ck_assert_int_eq(count_on(other), 260);
    /* a page cache of 8 pages: the transaction spills, then reads back */
    ck_assert_int_eq(db_script(db, "PRAGMA cache_size=8", "cache"), 0);
    insert_rows(1000, 1600, 0, false);
    ck_assert_int_eq(count_on(other), 260);
    ck_assert_int_eq(db_begin(db, 0), 0);
    char blob[1024], k[32];
    memset(blob, 's', sizeof blob);
    for (int i = 2000; i < 2600; i++) {
        snprintf(k, sizeof k, "spill-%06d", i);
        ck_assert_int_eq(insert(k, 100000 + i, k, blob, sizeof blob), 1); /* n <> 42 */
    }
    ck_assert_int_eq(count(), 860); /* its own spilled pages, read back */
    ck_assert_int_eq(db_end(db, 0), 0);
    ck_assert_int_eq(count_on(other), 860);
    integrity_ok(other);
    /* the WAL emptied: the next commit writes a new header at offset 0 */
    ck_assert_int_eq(db_script(other, "PRAGMA wal_checkpoint(TRUNCATE)", "checkpoint"), 0);
    insert_rows(3000, 3100, DB_BEGIN_LAZY, true);
    insert_rows(3100, 3200, 0, true);
    ck_assert_int_eq(count_on(other), 1060);
    integrity_ok(other);
    integrity_ok(db);
    db_close(other);
}
END_TEST

/* Another connection restarted the WAL (a checkpoint, then its own
 * commit from the WAL's start): this connection's next transaction writes
 * below where its last one ended, and its frames are still buffered, not
 * taken for frames rewritten in place (two writes per page). */
START_TEST(test_wal_frames_buffered_after_another_restarts_the_wal)
{
    struct db *other;
    ck_assert_int_eq(open_one(&other), 0);
    insert_rows(0, 400, 0, true);
    ck_assert_int_eq(db_script(other, "PRAGMA wal_checkpoint(RESTART)", "checkpoint"), 0);
    ck_assert_int_eq(db_begin(other, 0), 0);
    ck_assert_int_eq(db_script(other, "DELETE FROM t WHERE k = 'row-000000'", "delete"), 0);
    ck_assert_int_eq(db_end(other, 0), 0);
    insert_rows_buffered(400, 600);
    ck_assert_int_eq(count_on(other), 599);
    integrity_ok(other);
    db_close(other);
}
END_TEST

static off_t wal_size(void)
{
    char *path = xasprintf("%s/t.db-wal", tmpdir);
    struct stat sb;
    off_t size = stat(path, &sb) == 0 ? sb.st_size : -1;
    free(path);
    return size;
}

static uint64_t ckpt_ns(enum dr_writer_kind kind)
{
    struct dr_writer_stats st[DR_WRITER_KINDS];
    db_sqlite_writer_stats(st);
    return st[kind].ckpt_ns;
}

/* dripd's wal_hook replaces SQLite's autocheckpoint with the same, timed
 * (catalog_writer_stats), at CKPT_FRAMES (4,000 pages): transactions and
 * autocommit statements keep the WAL near that; without checkpoints
 * these writes would make it ~65 MiB, and then ~35 more. */
START_TEST(test_commits_checkpoint_the_wal_timed)
{
    const off_t bound = 4400 * (4096 + 24); /* CKPT_FRAMES and one transaction's worth */
    uint64_t other0 = ckpt_ns(DR_WRITER_OTHER), steps0 = ckpt_ns(DR_WRITER_STEPS);
    for (int i = 0; i < 400; i++) /* 40,000 rows of 1 KiB: ~10,000 pages */
        insert_rows(i * 100, (i + 1) * 100, DB_BEGIN_LAZY, true);
    ck_assert_int_le(wal_size(), bound);
    uint64_t other1 = ckpt_ns(DR_WRITER_OTHER);
    ck_assert_uint_gt(other1, other0); /* counted for its kind */
    ck_assert_uint_eq(ckpt_ns(DR_WRITER_STEPS), steps0);
    /* autocommit: 2,000 rows of 12 KiB, ~8,000 pages */
    char *blob = xcalloc(1, 12 * 1024), k[32];
    for (int i = 0; i < 2000; i++) {
        snprintf(k, sizeof k, "auto-%06d", i);
        ck_assert_int_eq(insert(k, 100000 + i, k, blob, 12 * 1024), 1);
    }
    free(blob);
    ck_assert_int_le(wal_size(), bound);
    ck_assert_uint_gt(ckpt_ns(DR_WRITER_OTHER), other1);
    ck_assert_int_eq(count(), 42000);
    integrity_ok(db);
}
END_TEST

static uint64_t sync_ns(enum dr_writer_kind kind)
{
    struct dr_writer_stats st[DR_WRITER_KINDS];
    db_sqlite_writer_stats(st);
    return st[kind].sync_ns;
}

/* DB_BEGIN_DEFER_SYNC (the intake's group commit, issue 15): the commit
 * is there for every connection at once but does not sync the WAL; a
 * db_sync on another connection, one that never read before (its WAL not
 * open yet), does, timed for the kind it names. A durable commit syncs
 * at once, a lazy one never. */
START_TEST(test_deferred_commit_synced_elsewhere)
{
    struct db *other = NULL;
    ck_assert_int_eq(open_one(&other), 0);
    uint64_t s0 = sync_ns(DR_WRITER_INTAKE);
    ck_assert_int_eq(db_begin(db, DB_BEGIN_DEFER_SYNC | DB_BEGIN_KIND(DR_WRITER_INTAKE)), 0);
    ck_assert_int_eq(insert("deferred", 1, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_end(db, 0), 0);
    ck_assert_uint_eq(sync_ns(DR_WRITER_INTAKE), s0); /* no fsync yet */
    ck_assert_int_eq(db_sync(other, DR_WRITER_INTAKE), 0);
    uint64_t s1 = sync_ns(DR_WRITER_INTAKE);
    ck_assert_uint_gt(s1, s0);
    ck_assert_int_eq(count_on(other), 1);
    ck_assert_int_eq(db_begin(db, DB_BEGIN_LAZY | DB_BEGIN_KIND(DR_WRITER_INTAKE)), 0);
    ck_assert_int_eq(insert("lazy", 2, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_end(db, 0), 0);
    ck_assert_uint_eq(sync_ns(DR_WRITER_INTAKE), s1);
    ck_assert_int_eq(db_begin(db, DB_BEGIN_KIND(DR_WRITER_INTAKE)), 0);
    ck_assert_int_eq(insert("durable", 3, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_end(db, 0), 0);
    ck_assert_uint_gt(sync_ns(DR_WRITER_INTAKE), s1);
    db_close(other);
}
END_TEST

/* DB_BEGIN_READ (the claim's reads of bodies and media, issue 15): a read
 * transaction holds no writer up, on SQLite not even dripd's writer mutex
 * (a write transaction of another connection of this thread begins and
 * commits at once, where it would wait 5 s for a lock and fail), reads
 * one snapshot (that commit shows only once the reader has ended), and
 * its end syncs nothing (SQLite). */
START_TEST(test_read_transaction)
{
    struct db *other = NULL;
    ck_assert_int_eq(open_one(&other), 0);
    ck_assert_int_eq(insert("before", 1, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_begin(db, DB_BEGIN_READ), 0);
    ck_assert_int_eq(count(), 1);
    int64_t t0 = dr_mono_ms();
    ck_assert_int_eq(db_begin(other, DB_BEGIN_POLL), 0);
    ck_assert_int_eq(insert_on(other, "during", 2, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_end(other, 0), 0);
    ck_assert_int_lt(dr_mono_ms() - t0, 2000);
    ck_assert_int_eq(count(), 1); /* still the reader's snapshot */
    uint64_t s0 = 0, s1 = 0;
    for (int k = 0; k < DR_WRITER_KINDS && !use_pg; k++)
        s0 += sync_ns((enum dr_writer_kind)k);
    ck_assert_int_eq(db_end(db, 0), 0);
    for (int k = 0; k < DR_WRITER_KINDS && !use_pg; k++)
        s1 += sync_ns((enum dr_writer_kind)k);
    ck_assert_uint_eq(s1, s0);
    ck_assert_int_eq(count(), 2);
    db_close(other);
}
END_TEST

/* Once the forked holder says (on fd) it began its transaction: a begin
 * here waits out the 5 s and gets -EBUSY. */
static void busy_behind(int fd)
{
    char c = 0;
    ck_assert_int_eq(read(fd, &c, 1), 1);
    ck_assert_int_eq(c, 'y');
    int64_t t0 = dr_mono_ms();
    ck_assert_int_eq(db_begin(db, DB_BEGIN_POLL), -EBUSY);
    ck_assert_int_ge(dr_mono_ms() - t0, 4500);
}

/* SQLite: another process holds the write lock past the 5 s timeout:
 * SQLite's busy handler, then -EBUSY. */
START_TEST(test_busy_across_processes)
{
    int ready[2], done[2];
    ck_assert_int_eq(pipe(ready), 0);
    ck_assert_int_eq(pipe(done), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct db *other;
        char c = open_one(&other) == 0 && db_begin(other, 0) == 0 ? 'y' : 'n';
        (void)!write(ready[1], &c, 1);
        (void)!read(done[0], &c, 1);
        _exit(0); /* the lock goes with the process */
    }
    busy_behind(ready[0]);
    ck_assert_int_eq(count(), 0); /* readers still read */
    ck_assert_int_eq(write(done[1], "x", 1), 1);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(db_end(db, 0), 0);
}
END_TEST

/* SQLite, after db_sqlite_share_writer (the supervisor's call before it
 * forks): a writer of another process holds the shared writer mutex, so
 * this one waits on it (not on SQLite's file lock: the message says
 * whose) and gets -EBUSY after 5 s; then that process is killed inside
 * its transaction: the robust mutex passes on (EOWNERDEAD, made
 * consistent), its row is rolled back, and writers go on as before. */
START_TEST(test_shared_writer_survives_a_killed_holder)
{
    ck_assert_int_eq(db_sqlite_share_writer(), 0);
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct db *other;
        char c = 'n';
        if (open_one(&other) == 0 && db_begin(other, 0) == 0) {
            db = other; /* insert()'s connection, in this process */
            c = insert("doomed", 1, NULL, NULL, 0) == 1 ? 'y' : 'n';
        }
        (void)!write(ready[1], &c, 1);
        for (;;)
            pause(); /* killed inside the transaction */
    }
    busy_behind(ready[0]);
    ck_assert_msg(strstr(db->err, "another thread of dripd") != NULL, "waited on: %s", db->err);
    ck_assert_int_eq(kill(pid, SIGKILL), 0);
    ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
    static const char *const keys[] = {"a0", "a1", "a2"};
    for (int i = 0; i < 3; i++) { /* the first finds the owner dead */
        ck_assert_int_eq(db_begin(db, 0), 0);
        ck_assert_int_eq(insert(keys[i], i, NULL, NULL, 0), 1);
        ck_assert_int_eq(db_end(db, 0), 0);
    }
    ck_assert_int_eq(count(), 3);
}
END_TEST

struct holder {
    struct db *db;
    int hold_ms;
    int began; /* atomic */
};

/* A writer of this process that keeps the write lock for hold_ms. */
static void *hold_write_lock(void *arg)
{
    struct holder *h = arg;
    ck_assert_int_eq(db_begin(h->db, 0), 0);
    __atomic_store_n(&h->began, 1, __ATOMIC_RELEASE);
    usleep((useconds_t)h->hold_ms * 1000);
    ck_assert_int_eq(db_end(h->db, 0), 0);
    return NULL;
}

/* SQLite: writers of one process queue on the writer mutex: the second
 * waits for the first (well within the 5 s), then begins; a lazy
 * transaction's rows are committed like any others (only its fsync is
 * left to a later commit). */
START_TEST(test_writers_of_a_process_queue)
{
    struct holder h = {.hold_ms = 200};
    ck_assert_int_eq(open_one(&h.db), 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, hold_write_lock, &h), 0);
    while (!__atomic_load_n(&h.began, __ATOMIC_ACQUIRE))
        usleep(1000);
    int64_t t0 = dr_mono_ns();
    ck_assert_int_eq(db_begin(db, DB_BEGIN_LAZY), 0);
    int64_t waited_ms = (dr_mono_ns() - t0) / 1000000;
    ck_assert_int_eq(insert("lazy", 1, NULL, NULL, 0), 1);
    ck_assert_int_eq(db_end(db, 0), 0);
    pthread_join(th, NULL);
    ck_assert_int_ge(waited_ms, 150);
    ck_assert_int_eq(count(), 1);
    db_close(h.db);
}
END_TEST

START_TEST(test_open_missing_directory)
{
    struct db *d = (struct db *)1;
    ck_assert_int_eq(db_sqlite_open("/nonexistent/dir/for/dripd/t.db", &d), -ENOENT);
    ck_assert_ptr_null(d);
}
END_TEST

/* ---- PostgreSQL only ---------------------------------------------------- */

static const struct db_sql q_pid = {NULL, "SELECT pg_backend_pid()"};

static int64_t backend_pid(struct db *d)
{
    return one_i64(d, &q_pid, "pid");
}

/* Kill the server process behind pid, as a server restart would. */
static void terminate(int64_t pid)
{
    char sql[64];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%lld)", (long long)pid);
    PGconn *c = PQconnectdb(pgdsn);
    ck_assert_int_eq(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, sql);
    ck_assert_int_eq(PQresultStatus(r), PGRES_TUPLES_OK);
    PQclear(r);
    /* pg_terminate_backend only signals: wait until the process is gone. */
    for (int i = 0; i < 500; i++) {
        snprintf(sql, sizeof sql, "SELECT count(*) FROM pg_stat_activity WHERE pid = %lld",
                 (long long)pid);
        r = PQexec(c, sql);
        int left = atoi(PQgetvalue(r, 0, 0));
        PQclear(r);
        if (left == 0)
            break;
        usleep(10000);
    }
    PQfinish(c);
}

START_TEST(test_pg_connection_loss)
{
    /* An idle pooled connection whose server process died is replaced
     * before use: the statement just works. */
    ck_assert_int_eq(insert("a", 1, NULL, NULL, 0), 1);
    int64_t pid = backend_pid(db);
    terminate(pid);
    ck_assert_int_eq(count(), 1);
    ck_assert_int_ne(backend_pid(db), pid);

    /* Inside a transaction the loss is the transaction's: its statements
     * and its COMMIT fail (-EBUSY), nothing is committed, and after the
     * rollback the handle works again. */
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(insert("b", 2, NULL, NULL, 0), 1);
    terminate(backend_pid(db));
    ck_assert_int_eq(insert("c", 3, NULL, NULL, 0), -EBUSY);
    ck_assert_int_eq(insert("d", 4, NULL, NULL, 0), -EBUSY);
    ck_assert_int_eq(db_commit(db), -EBUSY);
    db_rollback(db);
    ck_assert_int_eq(count(), 1);
    ck_assert_int_eq(insert("b", 2, NULL, NULL, 0), 1);
    ck_assert_int_eq(count(), 2);
}
END_TEST

START_TEST(test_pg_pool_is_bounded)
{
    /* pool = 1: a second handle waits for the one connection, then gives
     * up with -EBUSY after 5 s; once it is free, it gets it. */
    struct db *a, *b;
    ck_assert_int_eq(db_pg_open(pgdsn, 1, &a), 0);
    ck_assert_int_eq(db_pg_open(pgdsn, 1, &b), 0);
    ck_assert_int_eq(db_begin(a, 0), 0);
    int64_t t0 = dr_mono_ms();
    ck_assert_int_eq(db_begin(b, 0), -EBUSY);
    ck_assert_int_ge(dr_mono_ms() - t0, 4500);
    ck_assert_int_eq(db_end(a, 0), 0);
    ck_assert_int_eq(db_begin(b, 0), 0);
    ck_assert_int_eq(db_end(b, 0), 0);
    ck_assert(db_pg_reachable(a));
    db_close(a);
    db_close(b);
    /* A server that is not there: open works, statements fail at once
     * (after the first connect) with -EBUSY, and reachable says so. */
    struct db *z;
    ck_assert_int_eq(db_pg_open("host=127.0.0.1 port=1 user=postgres dbname=x", 2, &z), 0);
    ck_assert_int_eq(db_begin(z, 0), -EBUSY);
    ck_assert(!db_pg_reachable(z));
    t0 = dr_mono_ms();
    ck_assert_int_eq(db_begin(z, 0), -EBUSY);
    ck_assert_int_lt(dr_mono_ms() - t0, 1000);
    db_close(z);
}
END_TEST

struct heard {
    int jobs, events;
    char payload[32];
};

static void on_note(const char *channel, const char *payload, void *arg)
{
    struct heard *h = arg;
    if (strcmp(channel, "t_jobs") == 0) {
        h->jobs++;
        snprintf(h->payload, sizeof h->payload, "%s", payload);
    } else if (strcmp(channel, "t_events") == 0) {
        h->events++;
    }
}

/* Wait (up to 10 s) until the listener has something, then drain it. */
static int drain_wait(struct db_listener *l, struct heard *h, int timeout_ms)
{
    struct pollfd p = {.fd = db_listen_fd(l), .events = POLLIN};
    int64_t end = dr_mono_ms() + timeout_ms;
    int got = 0;
    while (got == 0 && dr_mono_ms() < end) {
        if (poll(&p, 1, (int)(end - dr_mono_ms())) <= 0)
            continue;
        got = db_listen_drain(l, on_note, h);
        ck_assert_int_ge(got, 0);
    }
    return got;
}

START_TEST(test_pg_notify_on_commit_only)
{
    const char *chans[] = {"t_jobs", "t_events"};
    struct db_listener *l;
    char err[256];
    ck_assert_int_eq(db_listen_open(pgdsn, chans, 2, &l, err, sizeof err), 0);
    struct heard h = {0};
    /* Rolled back: nothing. */
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(db_notify(db, "t_jobs", "upload"), 0);
    db_rollback(db);
    /* Committed: once, even if sent twice; both channels. */
    ck_assert_int_eq(db_begin(db, 0), 0);
    ck_assert_int_eq(db_notify(db, "t_jobs", "upload"), 0);
    ck_assert_int_eq(db_notify(db, "t_jobs", "upload"), 0);
    ck_assert_int_eq(db_notify(db, "t_events", ""), 0);
    ck_assert_int_eq(h.jobs, 0);
    ck_assert_int_eq(db_end(db, 0), 0);
    while (h.jobs + h.events < 2)
        ck_assert_int_gt(drain_wait(l, &h, 10000), 0);
    ck_assert_int_eq(h.jobs, 1);
    ck_assert_int_eq(h.events, 1);
    ck_assert_str_eq(h.payload, "upload");
    /* Nothing more arrives. */
    ck_assert_int_eq(drain_wait(l, &h, 300), 0);
    /* The listener's connection dies: drain says so. */
    static const struct db_sql q_kill = {
        NULL, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
              "WHERE query LIKE 'LISTEN%' AND datname = current_database()"};
    struct db_stmt *s;
    ck_assert_int_eq(db_prepare(db, &q_kill, &s), 0);
    ck_assert_int_eq(db_step(s, "kill"), DB_ROW);
    db_reset(s);
    struct pollfd p = {.fd = db_listen_fd(l), .events = POLLIN};
    int rc = 0;
    for (int64_t end = dr_mono_ms() + 10000; rc >= 0 && dr_mono_ms() < end;)
        if (poll(&p, 1, 100) > 0)
            rc = db_listen_drain(l, on_note, &h);
    ck_assert_int_eq(rc, -EBUSY);
    db_listen_close(l);
    db_listen_close(NULL);
    /* Unreachable: an error, with a reason. */
    ck_assert_int_eq(
        db_listen_open("host=127.0.0.1 port=1 user=postgres", chans, 2, &l, err, sizeof err),
        -EBUSY);
    ck_assert(strstr(err, "unreachable") != NULL);
}
END_TEST

static void add_common(TCase *tc)
{
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_cache_returns_one_statement_per_sql);
    tcase_add_test(tc, test_placeholders_repeat_and_any_order);
    tcase_add_test(tc, test_typed_binds_and_columns);
    tcase_add_test(tc, test_error_mapping);
    tcase_add_test(tc, test_transactions_and_savepoints);
    tcase_add_test(tc, test_busy_is_ebusy);
    tcase_add_test(tc, test_lazy_commits);
    tcase_add_test(tc, test_read_transaction);
}

static Suite *db_suite(void)
{
    Suite *s = suite_create("db");
    TCase *lite = tcase_create("sqlite");
    tcase_add_checked_fixture(lite, setup_sqlite, teardown);
    add_common(lite);
    tcase_add_test(lite, test_open_missing_directory);
    tcase_add_test(lite, test_busy_across_processes);
    tcase_add_test(lite, test_writers_of_a_process_queue);
    tcase_add_test(lite, test_shared_writer_survives_a_killed_holder);
    tcase_add_test(lite, test_wal_frames_written_per_transaction);
    tcase_add_test(lite, test_wal_frames_buffered_after_another_restarts_the_wal);
    tcase_add_test(lite, test_commits_checkpoint_the_wal_timed);
    tcase_add_test(lite, test_deferred_commit_synced_elsewhere);
    suite_add_tcase(s, lite);
    TCase *pg = tcase_create("postgres");
    tcase_add_checked_fixture(pg, setup_pg, teardown);
    add_common(pg);
    tcase_add_test(pg, test_pg_connection_loss);
    tcase_add_test(pg, test_pg_pool_is_bounded);
    tcase_add_test(pg, test_pg_notify_on_commit_only);
    suite_add_tcase(s, pg);
    return s;
}

int main(void)
{
    pgtest_server();
    SRunner *sr = srunner_create(db_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

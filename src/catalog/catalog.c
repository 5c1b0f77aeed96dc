/* catalog.c - the catalog handle: open, close, migrate, info, housekeeping.
 *
 * What: include/dripd/catalog.h is the catalog's contract (media, shares,
 * users, jobs, events and tus sessions; docs/CATALOG.md has the schema,
 * the states and the queue semantics). The implementation is split by
 * table over src/catalog/catalog_*.c (see catalog_internal.h), and all
 * SQL goes through the database layer db.h, today on SQLite
 * (db_sqlite.c: <data_dir>/catalog.db, WAL, every commit fsynced). This file
 * owns the handle's lifecycle and the calls that span tables.
 *
 * Threads and processes: a struct catalog is one database connection with
 * its own cache of prepared statements; it is used by one thread at a
 * time. Any number of handles, in any number of processes, share one
 * catalog: SQLite's WAL lets readers run alongside the one writer, and
 * writers queue on its lock for up to 5 s, after which the call returns
 * -EBUSY. The catalog has no global state and takes no locks of its own.
 *
 * Guarantees (every module keeps them):
 *  - A write function that returned 0 has committed durably (SQLite: the
 *    WAL fsynced after the commit, db_sqlite.c).
 *  - Every multi-statement write is one transaction begun with db_begin
 *    (SQLite BEGIN IMMEDIATE: the write lock before the first read, so a
 *    read-then-write transaction never fails on a stale snapshot).
 *    Single-statement writes run in autocommit mode.
 *  - A job state change a user can observe and its event commit together.
 *  - Statements are reset right after use, so no connection keeps a read
 *    snapshot open (which would pin the WAL and block checkpoints).
 *
 * Never: no HTTP, no files other than the database, no encryption; no
 * callback runs while a transaction or a statement is open.
 *
 * Errors: 0 / -errno as catalog.h says; the database layer logs each
 * failure once, where it happens.
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "catalog_schema.h"
#include "db.h"
#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/util.h"

/* The connection's settings as the database reports them (catalog_info).
 * PostgreSQL: its log is a WAL too, synchronous_commit maps to SQLite's
 * levels (off 0, local 1, on and the remote ones 2), foreign keys are
 * always on, lock_timeout plays busy_timeout's part, and a DELETE leaves
 * its rows' bytes to VACUUM (secure_delete 0). */
static const struct db_sql q_info = {
    "SELECT (SELECT journal_mode FROM pragma_journal_mode), "
    "(SELECT synchronous FROM pragma_synchronous), "
    "(SELECT foreign_keys FROM pragma_foreign_keys), "
    "(SELECT timeout FROM pragma_busy_timeout), "
    "(SELECT secure_delete FROM pragma_secure_delete)",
    "SELECT 'wal', CASE current_setting('synchronous_commit') WHEN 'off' THEN 0 "
    "WHEN 'local' THEN 1 ELSE 2 END, 1, "
    "(extract(epoch FROM current_setting('lock_timeout')::interval) * 1000)::bigint, 0"};
static const struct db_sql q_ping = {"SELECT 1", NULL};

/* Housekeeping (catalog_prune), one transaction. */
static const struct db_sql q_prune_events = {"DELETE FROM events WHERE created_at < $1", NULL};
static const struct db_sql q_prune_jobs = {
    "DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < $1", NULL};
static const struct db_sql q_prune_tus = {
    "DELETE FROM tus WHERE job_id IS NOT NULL AND expires_at < $1", NULL};

/* The database of cfg: a connection to <data_dir>/catalog.db, or a handle
 * on the PostgreSQL pool of catalog.postgres.dsn. */
static int open_db(const struct dr_config *cfg, struct db **out)
{
    if (cfg->catalog.backend == DR_CATALOG_POSTGRES)
        return db_pg_open(cfg->catalog.postgres.dsn, cfg->catalog.postgres.pool, out);
    char *path = xasprintf("%s/catalog.db", cfg->data_dir);
    int rc = db_sqlite_open(path, out);
    free(path);
    return rc;
}

int catalog_share_writer(const struct dr_config *cfg)
{
    return cfg->catalog.backend == DR_CATALOG_SQLITE ? db_sqlite_share_writer() : 0;
}

const char *const dr_writer_kind_names[DR_WRITER_KINDS] = {"other", "intake", "steps", "claims"};

void catalog_writer_stats(struct dr_writer_stats out[DR_WRITER_KINDS])
{
    db_sqlite_writer_stats(out);
}

int catalog_open(const struct dr_config *cfg, struct catalog **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (cfg == NULL || (cfg->catalog.backend == DR_CATALOG_SQLITE && cfg->data_dir == NULL) ||
        (cfg->catalog.backend == DR_CATALOG_POSTGRES && cfg->catalog.postgres.dsn == NULL))
        return -EINVAL;
    struct catalog *cat = xcalloc(1, sizeof *cat);
    cat->node = xstrdup(cfg->node.id != NULL ? cfg->node.id : "");
    int rc = open_db(cfg, &cat->db);
    if (rc < 0)
        goto fail;
    /* A process that opens a fresh or older SQLite catalog migrates it
     * too. A PostgreSQL handle connects lazily (the server may be down
     * while a worker restarts); catalog_migrate, which the supervisor runs
     * before it starts the workers, checks and migrates its schema. */
    if (cfg->catalog.backend == DR_CATALOG_SQLITE) {
        int version = 0;
        rc = catalog_schema_version(cat->db, &version);
        if (rc == 0 && version != CATALOG_SCHEMA_VERSION)
            rc = catalog_schema_migrate(cat->db);
        if (rc < 0)
            goto fail;
    }
    *out = cat;
    return 0;
fail:
    catalog_close(cat);
    return rc;
}

void catalog_close(struct catalog *cat)
{
    if (cat == NULL)
        return;
    db_close(cat->db);
    free(cat->node);
    free(cat);
}

int catalog_migrate(const struct dr_config *cfg)
{
    if (cfg == NULL)
        return -EINVAL;
    if (cfg->catalog.backend == DR_CATALOG_SQLITE && cfg->data_dir != NULL) {
        int rc = dr_mkdirs(cfg->data_dir, 0750);
        if (rc < 0) {
            log_error("catalog: cannot create %s: %s", cfg->data_dir, strerror(-rc));
            return rc;
        }
    }
    struct catalog *cat;
    int rc = catalog_open(cfg, &cat); /* SQLite migrates here */
    if (rc == 0 && cfg->catalog.backend == DR_CATALOG_POSTGRES)
        rc = catalog_schema_migrate(cat->db);
    catalog_close(cat);
    return rc;
}

int catalog_ping(struct catalog *cat)
{
    if (cat == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_ping, &s);
    if (rc < 0)
        return rc;
    rc = db_step(s, "ping");
    db_reset(s);
    return rc < 0 ? rc : 0;
}

int catalog_info(struct catalog *cat, struct dr_catalog_info *out)
{
    if (cat == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_info, &s);
    if (rc < 0)
        return rc;
    rc = db_step(s, "info");
    if (rc == DB_ROW) {
        db_col_copy(s, 0, out->journal_mode, sizeof out->journal_mode);
        out->synchronous = (int)db_col_i64(s, 1);
        out->foreign_keys = db_col_i64(s, 2) != 0;
        out->busy_timeout_ms = (int)db_col_i64(s, 3);
        out->secure_delete = (int)db_col_i64(s, 4);
    }
    db_reset(s);
    if (rc < 0)
        return rc;
    return catalog_schema_version(cat->db, &out->schema_version);
}

int catalog_prune(struct catalog *cat, int64_t before_ms, uint64_t *removed)
{
    if (removed != NULL)
        *removed = 0;
    if (cat == NULL)
        return -EINVAL;
    static const struct db_sql *const steps[] = {&q_prune_events, &q_prune_jobs, &q_prune_tus};
    uint64_t total = 0;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < DR_ARRAY_LEN(steps) && rc == 0; i++) {
        struct db_stmt *s;
        rc = db_prepare(cat->db, steps[i], &s);
        if (rc < 0)
            break;
        db_bind_i64(s, 1, before_ms);
        rc = db_exec(s, "prune");
        if (rc >= 0) {
            total += (uint64_t)rc;
            rc = 0;
        }
    }
    rc = db_end(cat->db, rc);
    if (rc == 0 && removed != NULL)
        *removed = total;
    return rc;
}

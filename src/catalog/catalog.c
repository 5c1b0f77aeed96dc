/* catalog.c - the catalog handle: open, close, migrate, info, housekeeping.
 *
 * What: include/dripd/catalog.h is the catalog's contract (media, shares,
 * users, jobs, events and tus sessions; docs/CATALOG.md has the schema,
 * the states and the queue semantics). The implementation is split by
 * table over src/catalog/catalog_*.c (see catalog_internal.h), and all
 * SQL goes through the database layer db.h, today on SQLite
 * (db_sqlite.c: <data_dir>/catalog.db, WAL, synchronous=FULL). This file
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
 *  - A write function that returned 0 has committed durably (SQLite:
 *    synchronous=FULL fsyncs the WAL at commit).
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
#include "dripd/log.h"
#include "dripd/util.h"

/* SQLite's settings as the connection reports them (catalog_info). */
static const struct db_sql q_info = {"SELECT (SELECT journal_mode FROM pragma_journal_mode), "
                                     "(SELECT synchronous FROM pragma_synchronous), "
                                     "(SELECT foreign_keys FROM pragma_foreign_keys), "
                                     "(SELECT timeout FROM pragma_busy_timeout)",
                                     NULL};

/* Housekeeping (catalog_prune), one transaction. */
static const struct db_sql q_prune_events = {"DELETE FROM events WHERE created_at < $1", NULL};
static const struct db_sql q_prune_jobs = {
    "DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < $1", NULL};
static const struct db_sql q_prune_tus = {
    "DELETE FROM tus WHERE job_id IS NOT NULL AND expires_at < $1", NULL};

int catalog_open(const char *data_dir, struct catalog **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (data_dir == NULL)
        return -EINVAL;
    char *path = xasprintf("%s/catalog.db", data_dir);
    struct catalog *cat = xcalloc(1, sizeof *cat);
    int rc = db_sqlite_open(path, &cat->db);
    free(path);
    if (rc < 0)
        goto fail;
    /* A process that opens a fresh or older catalog migrates it too. */
    int version = 0;
    rc = catalog_schema_version(cat->db, &version);
    if (rc == 0 && version != CATALOG_SCHEMA_VERSION)
        rc = catalog_schema_migrate(cat->db);
    if (rc < 0)
        goto fail;
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
    free(cat);
}

int catalog_migrate(const char *data_dir)
{
    if (data_dir == NULL)
        return -EINVAL;
    int rc = dr_mkdirs(data_dir, 0750);
    if (rc < 0) {
        log_error("catalog: cannot create %s: %s", data_dir, strerror(-rc));
        return rc;
    }
    struct catalog *cat;
    rc = catalog_open(data_dir, &cat); /* migrates */
    catalog_close(cat);
    return rc;
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

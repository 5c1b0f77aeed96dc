/* db.c - the backend-independent half of the catalog's database layer.
 *
 * What: the per-connection cache of prepared statements, the savepoint
 * statements, error logging, and dispatch to the backend's struct db_ops
 * (db_backend.h), which also owns BEGIN/COMMIT/ROLLBACK (they differ by
 * dialect, and a backend that loses its connection must know the
 * transaction went with it).
 * The SQL semantics are documented in db.h and docs/CATALOG.md.
 *
 * Threads: none of its own and no locks; a connection and its statements
 * are used by one thread at a time (the catalog handle's rule).
 *
 * The cache: an open-addressing table keyed by the address of the
 * caller's `static const struct db_sql`, so a lookup is a hash of one
 * pointer and one or two probes; it doubles at half full and only grows
 * (a connection uses a fixed set of a few dozen statements).
 *
 * Never: no SQL of the tables, no retries (the caller decides what -EBUSY
 * means), no callbacks.
 */
#include "db.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_backend.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define CACHE_MIN 64

static const struct db_sql q_savepoint = {"SAVEPOINT step", NULL};
static const struct db_sql q_release = {"RELEASE step", NULL};
static const struct db_sql q_rollback_to = {"ROLLBACK TO step", NULL};

void db_init(struct db *db, const struct db_ops *ops)
{
    memset(db, 0, sizeof *db);
    db->ops = ops;
}

void db_set_err(struct db *db, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->err, sizeof db->err, fmt, ap);
    va_end(ap);
}

/* Log a backend failure once, with what the caller was doing. -EEXIST and
 * -EINVAL are answers the caller turns into a result, not incidents. */
static int db_fail(struct db *db, int rc, const char *what)
{
    if (rc == -EEXIST || rc == -EINVAL)
        return rc;
    if (rc == -EBUSY)
        log_warn("catalog: %s: %s", what, db->err);
    else
        log_error("catalog: %s: %s", what, db->err);
    return rc;
}

enum db_dialect db_dialect(const struct db *db)
{
    return db->ops->dialect;
}

void db_close(struct db *db)
{
    if (db == NULL)
        return;
    for (size_t i = 0; i < db->cap; i++)
        if (db->slots[i].stmt != NULL)
            db->ops->finalize(db->slots[i].stmt);
    free(db->slots);
    db->slots = NULL;
    db->cap = db->used = 0;
    db->ops->close(db);
}

/* ---- the statement cache ------------------------------------------------ */

static size_t slot_of(const struct db_sql *key, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)key * UINT64_C(0x9E3779B97F4A7C15);
    return (size_t)(h >> 32) & (cap - 1);
}

static void cache_put(struct db_slot *slots, size_t cap, const struct db_sql *key,
                      struct db_stmt *stmt)
{
    size_t i = slot_of(key, cap);
    while (slots[i].key != NULL)
        i = (i + 1) & (cap - 1);
    slots[i].key = key;
    slots[i].stmt = stmt;
}

static void cache_grow(struct db *db)
{
    size_t cap = db->cap ? 2 * db->cap : CACHE_MIN;
    struct db_slot *slots = xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < db->cap; i++)
        if (db->slots[i].key != NULL)
            cache_put(slots, cap, db->slots[i].key, db->slots[i].stmt);
    free(db->slots);
    db->slots = slots;
    db->cap = cap;
}

int db_prepare(struct db *db, const struct db_sql *q, struct db_stmt **out)
{
    *out = NULL;
    if (db->cap > 0) {
        for (size_t i = slot_of(q, db->cap); db->slots[i].key != NULL; i = (i + 1) & (db->cap - 1))
            if (db->slots[i].key == q) {
                *out = db->slots[i].stmt;
                return 0;
            }
    }
    const char *sql = db->ops->dialect == DB_POSTGRES && q->pg != NULL ? q->pg : q->sql;
    if (sql == NULL) {
        log_error("catalog: a statement has no text for this database");
        return -ENOSYS;
    }
    struct db_stmt *s = NULL;
    int rc = db->ops->prepare(db, sql, &s);
    if (rc < 0)
        return db_fail(db, rc, "prepare");
    if (2 * (db->used + 1) > db->cap)
        cache_grow(db);
    cache_put(db->slots, db->cap, q, s);
    db->used++;
    *out = s;
    return 0;
}

/* ---- binds, steps, columns ---------------------------------------------- */

void db_bind_i64(struct db_stmt *s, int i, int64_t v)
{
    s->db->ops->bind_i64(s, i, v);
}

void db_bind_text(struct db_stmt *s, int i, const char *v)
{
    s->db->ops->bind_text(s, i, v);
}

void db_bind_blob(struct db_stmt *s, int i, const void *p, size_t n)
{
    s->db->ops->bind_blob(s, i, n > 0 ? p : NULL, p != NULL ? n : 0);
}

void db_bind_null(struct db_stmt *s, int i)
{
    s->db->ops->bind_null(s, i);
}

int db_step(struct db_stmt *s, const char *what)
{
    int rc = s->db->ops->step(s);
    return rc < 0 ? db_fail(s->db, rc, what) : rc;
}

int64_t db_col_i64(struct db_stmt *s, int i)
{
    return s->db->ops->col_i64(s, i);
}

bool db_col_null(struct db_stmt *s, int i)
{
    return s->db->ops->col_null(s, i);
}

const char *db_col_text(struct db_stmt *s, int i)
{
    return s->db->ops->col_text(s, i);
}

const void *db_col_blob(struct db_stmt *s, int i, size_t *len)
{
    return s->db->ops->col_blob(s, i, len);
}

char *db_col_strdup(struct db_stmt *s, int i)
{
    return xstrdup(db_col_text(s, i));
}

void db_col_copy(struct db_stmt *s, int i, char *dst, size_t len)
{
    const char *t = db_col_text(s, i);
    snprintf(dst, len, "%s", t != NULL ? t : "");
}

void db_reset(struct db_stmt *s)
{
    if (s != NULL)
        s->db->ops->reset(s);
}

int db_exec(struct db_stmt *s, const char *what)
{
    int rc;
    do
        rc = db_step(s, what);
    while (rc == DB_ROW);
    int n = rc == DB_DONE ? s->db->ops->changes(s) : rc;
    db_reset(s);
    return n;
}

int db_script(struct db *db, const char *sql, const char *what)
{
    int rc = db->ops->script(db, sql);
    return rc < 0 ? db_fail(db, rc, what) : 0;
}

/* ---- transactions ------------------------------------------------------- */

static int run(struct db *db, const struct db_sql *q, const char *what)
{
    struct db_stmt *s;
    int rc = db_prepare(db, q, &s);
    if (rc < 0)
        return rc;
    rc = db_exec(s, what);
    return rc < 0 ? rc : 0;
}

int db_begin(struct db *db, unsigned flags)
{
    int rc = db->ops->begin(db, flags);
    return rc < 0 ? db_fail(db, rc, "begin") : 0;
}

void db_rollback(struct db *db)
{
    db->ops->rollback(db);
}

int db_commit(struct db *db)
{
    int rc = db->ops->commit(db);
    if (rc < 0) {
        rc = db_fail(db, rc, "commit");
        db->ops->rollback(db);
    }
    return rc;
}

int db_sync(struct db *db, unsigned kind)
{
    if (db->ops->sync == NULL)
        return 0;
    int rc = db->ops->sync(db, kind);
    return rc < 0 ? db_fail(db, rc, "sync") : 0;
}

int db_end(struct db *db, int rc)
{
    if (rc == 0)
        return db_commit(db);
    db_rollback(db);
    return rc;
}

int db_savepoint(struct db *db)
{
    return run(db, &q_savepoint, "savepoint");
}

int db_savepoint_release(struct db *db)
{
    return run(db, &q_release, "release savepoint");
}

int db_savepoint_rollback(struct db *db)
{
    return run(db, &q_rollback_to, "rollback to savepoint");
}

/* ---- notifications ------------------------------------------------------ */

int db_notify(struct db *db, const char *channel, const char *payload)
{
    if (db->ops->dialect != DB_POSTGRES)
        return 0; /* SQLite: the supervisor relays wake-ups */
    static const struct db_sql q_notify = {NULL, "SELECT pg_notify($1, $2)"};
    struct db_stmt *s;
    int rc = db_prepare(db, &q_notify, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, channel);
    db_bind_text(s, 2, payload != NULL ? payload : "");
    rc = db_exec(s, "notify");
    return rc < 0 ? rc : 0;
}

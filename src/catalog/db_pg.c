/* db_pg.c - the PostgreSQL backend of the catalog's database layer.
 *
 * What: db.h on libpq, for a catalog that several dripd nodes share
 * (docs/CATALOG.md, "PostgreSQL"; docs/CLUSTER.md). A `struct db` here is
 * not a connection but a lease on one: each process keeps a pool of at
 * most catalog.postgres.pool connections per DSN, and a handle holds one
 * only while a statement runs or, for a transaction, from BEGIN to COMMIT
 * or ROLLBACK. So a process with dozens of catalog handles (one per
 * thread) opens at most `pool` connections, and a server restart costs
 * each idle connection nothing but a reconnect.
 *
 * Statements: prepared on each pooled connection the first time they run
 * there (PQprepare, named "d<n>"), with the parameter types taken from the
 * binds of that first run (text, int8, bytea), so `$2 IS NULL OR owner =
 * $2` needs no casts. Results come back as text (bytea as \x hex, decoded
 * by db_col_blob). A parameter left unbound is NULL, as in SQLite.
 *
 * Threads: a handle is used by one thread at a time; the pools are shared
 * by every thread of the process under pools.mu (a leaf lock, never held
 * during network I/O). Connections never cross fork(): the pool of a DSN
 * is closed when its last handle closes (the supervisor closes its handle
 * before it forks).
 *
 * Connection loss: a connection that broke (server restart, failover,
 * network) is dropped from the pool. A statement that found it broken
 * returns -EBUSY (transient); a transaction that lost its connection stays
 * "lost" until the caller rolls back, and its COMMIT fails (never a silent
 * commit of nothing on a fresh connection). A connection that breaks
 * during the COMMIT itself leaves the outcome unknown: -ENOTCONN. New connections are made with
 * exponential backoff (100 ms doubling to 5 s) while the server is
 * unreachable; meanwhile calls fail at once with -EBUSY, which /readyz
 * reports. Idle pooled connections are checked before use (a server that
 * went away left EOF on them), so a restart does not fail the first call
 * of every connection.
 *
 * Errors (SQLSTATE): 23505 -> -EEXIST, 23514 -> -EINVAL, 40001/40P01
 * (serialisation, deadlock), 55P03 (lock_timeout), 57014, 53300, class 08
 * and 57P (connection, shutdown) -> -EBUSY, 53100 -> -ENOSPC, else -EIO.
 * Each connection sets lock_timeout = 5 s, the SQLite busy timeout's
 * equivalent.
 */
#include "db.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_backend.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define WAIT_MS 5000       /* longest wait for a pooled connection */
#define BACKOFF_MIN_MS 100 /* reconnect backoff while the server is unreachable */
#define BACKOFF_MAX_MS 5000
#define TEXTOID 25
#define INT8OID 20
#define BYTEAOID 17

/* ---- the process-wide pools ---------------------------------------------- */

struct pg_prep {
    const char *key; /* the caller's SQL text pointer */
    char *sql;       /* a copy, compared too (a pointer may be reused) */
};

struct pg_conn {
    PGconn *c;
    struct pg_conn *next; /* idle list */
    struct pg_prep *prep; /* statement "d<i>" is prep[i] */
    size_t nprep, cap;
};

struct pg_pool {
    struct pg_pool *next;
    char *dsn;
    int max, total, refs;
    struct pg_conn *idle;
    int64_t retry_at; /* mono ms: no new connection before (backoff) */
    int backoff_ms;
    bool down; /* the last connection attempt failed */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a connection went back to a pool, or a slot freed */
    pthread_once_t once;
    struct pg_pool *pools;
} P = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_ONCE_INIT, NULL};

static void pools_init(void)
{
    dr_cond_init_mono(&P.cv);
}

static int map_state(const char *st)
{
    if (st == NULL)
        return -EBUSY; /* no SQLSTATE: the connection failed */
    if (strcmp(st, "23505") == 0)
        return -EEXIST;
    if (strcmp(st, "23514") == 0)
        return -EINVAL;
    if (strncmp(st, "40", 2) == 0 || strcmp(st, "55P03") == 0 || strcmp(st, "57014") == 0 ||
        strcmp(st, "53300") == 0 || strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0)
        return -EBUSY;
    if (strcmp(st, "53100") == 0)
        return -ENOSPC;
    return -EIO;
}

/* One line of a libpq message (they end in "\n", may span lines). */
static void set_msg(struct db *db, const char *prefix, const char *msg)
{
    db_set_err(db, "%s%s", prefix, msg != NULL && msg[0] != '\0' ? msg : "(no message)");
    size_t n = strlen(db->err);
    for (size_t i = 0; i < n; i++)
        if (db->err[i] == '\n')
            db->err[i] = i + 1 == n ? '\0' : ' ';
}

static void conn_free(struct pg_conn *pc)
{
    for (size_t i = 0; i < pc->nprep; i++)
        free(pc->prep[i].sql);
    free(pc->prep);
    PQfinish(pc->c);
    free(pc);
}

/* A connection that is no good any more leaves its pool. */
static void conn_discard(struct pg_pool *pool, struct pg_conn *pc)
{
    conn_free(pc);
    pthread_mutex_lock(&P.mu);
    pool->total--;
    pthread_cond_broadcast(&P.cv);
    pthread_mutex_unlock(&P.mu);
}

/* An idle connection is still usable: open, and silent. The server sends
 * nothing on its own to an idle connection of ours (the pool never
 * LISTENs), except a FATAL before it closes it (shutdown, restart,
 * pg_terminate_backend): anything readable means it is gone. */
static bool conn_alive(struct pg_conn *pc)
{
    if (PQstatus(pc->c) != CONNECTION_OK)
        return false;
    struct pollfd p = {.fd = PQsocket(pc->c), .events = POLLIN};
    return p.fd >= 0 && poll(&p, 1, 0) == 0;
}

/* Server notices: WARNING and above go to the log, the rest (NOTICE
 * "relation already exists, skipping" of every migration) nowhere. */
static void on_notice(void *arg, const PGresult *r)
{
    (void)arg;
    const char *sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (sev != NULL && (strcmp(sev, "WARNING") == 0 || strcmp(sev, "ERROR") == 0 ||
                        strcmp(sev, "FATAL") == 0 || strcmp(sev, "PANIC") == 0)) {
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        log_warn("catalog: PostgreSQL %s: %s", sev, msg != NULL ? msg : "?");
    }
}

/* libpq's connection parameters: the defaults first, so that the DSN
 * (expanded in place of dbname) overrides them. */
static PGconn *connect_dsn(const char *dsn)
{
    const char *const keys[] = {
        "connect_timeout",  "keepalives",       "keepalives_idle", "keepalives_interval",
        "keepalives_count", "application_name", "dbname",          NULL};
    const char *const vals[] = {"5", "1", "10", "5", "3", "dripd", dsn, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c != NULL)
        PQsetNoticeReceiver(c, on_notice, NULL);
    return c;
}

static int conn_open(struct db *db, struct pg_pool *pool, struct pg_conn **out)
{
    *out = NULL;
    PGconn *c = connect_dsn(pool->dsn);
    if (c == NULL) {
        db_set_err(db, "PostgreSQL: out of memory");
        return -ENOMEM;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        set_msg(db, "PostgreSQL unreachable: ", PQerrorMessage(c));
        PQfinish(c);
        return -EBUSY;
    }
    PGresult *r = PQexec(c, "SET lock_timeout = '5s'");
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        set_msg(db, "PostgreSQL: SET lock_timeout: ", PQresultErrorMessage(r));
    PQclear(r);
    if (!ok) {
        PQfinish(c);
        return -EIO;
    }
    *out = xcalloc(1, sizeof **out);
    (*out)->c = c;
    return 0;
}

static struct pg_pool *pool_ref(const char *dsn, int max)
{
    pthread_once(&P.once, pools_init);
    pthread_mutex_lock(&P.mu);
    struct pg_pool *p = P.pools;
    while (p != NULL && strcmp(p->dsn, dsn) != 0)
        p = p->next;
    if (p == NULL) {
        p = xcalloc(1, sizeof *p);
        p->dsn = xstrdup(dsn);
        p->backoff_ms = BACKOFF_MIN_MS;
        p->next = P.pools;
        P.pools = p;
    }
    p->max = max > 0 ? max : 1; /* the latest opener's setting */
    p->refs++;
    pthread_mutex_unlock(&P.mu);
    return p;
}

static void pool_unref(struct pg_pool *p)
{
    pthread_mutex_lock(&P.mu);
    if (--p->refs > 0) {
        pthread_mutex_unlock(&P.mu);
        return;
    }
    /* The last handle closed: the pool goes (no lease is out). */
    for (struct pg_pool **pp = &P.pools; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    struct pg_conn *idle = p->idle;
    pthread_mutex_unlock(&P.mu);
    while (idle != NULL) {
        struct pg_conn *next = idle->next;
        conn_free(idle);
        idle = next;
    }
    free(p->dsn);
    free(p);
}

/* ---- handles and leases ------------------------------------------------- */

enum { TX_NONE, TX_OPEN, TX_LOST };

struct pg_db {
    struct db base;
    struct pg_pool *pool;
    struct pg_conn *conn; /* leased: during a statement, or BEGIN..COMMIT */
    int tx;
};

struct pg_stmt {
    struct db_stmt base;
    const char *sql;
    int nparams;
    const char **vals;
    int *lens, *fmts;
    unsigned *types;
    char (*num)[24]; /* int64 binds as text */
    PGresult *res;
    int row, nrows; /* row: the current row, -1 before the first step */
    bool ran;
    unsigned char *blob; /* the last decoded bytea (PQfreemem) */
};

static struct pg_db *pgdb(struct db *db)
{
    return (struct pg_db *)db;
}

static struct pg_stmt *pgst(struct db_stmt *s)
{
    return (struct pg_stmt *)s;
}

/* Lease a connection for d, waiting up to WAIT_MS for a free one. */
static int lease(struct pg_db *d)
{
    if (d->conn != NULL)
        return 0;
    struct pg_pool *pool = d->pool;
    int64_t deadline = dr_mono_ms() + WAIT_MS;
    pthread_mutex_lock(&P.mu);
    for (;;) {
        if (pool->idle != NULL) {
            struct pg_conn *pc = pool->idle;
            pool->idle = pc->next;
            pthread_mutex_unlock(&P.mu);
            if (conn_alive(pc)) {
                pc->next = NULL;
                d->conn = pc;
                return 0;
            }
            conn_discard(pool, pc);
            pthread_mutex_lock(&P.mu);
            continue;
        }
        if (pool->total < pool->max) {
            int64_t now = dr_mono_ms();
            if (pool->down && now < pool->retry_at) {
                pthread_mutex_unlock(&P.mu);
                db_set_err(&d->base, "PostgreSQL unreachable (next try in %lld ms)",
                           (long long)(pool->retry_at - now));
                return -EBUSY;
            }
            pool->total++;
            pthread_mutex_unlock(&P.mu);
            struct pg_conn *pc;
            int rc = conn_open(&d->base, pool, &pc);
            pthread_mutex_lock(&P.mu);
            if (rc < 0) {
                pool->total--;
                if (!pool->down)
                    log_error("catalog: %s", d->base.err);
                pool->down = true;
                pool->retry_at = dr_mono_ms() + pool->backoff_ms;
                pool->backoff_ms = DR_MIN(pool->backoff_ms * 2, BACKOFF_MAX_MS);
                pthread_cond_broadcast(&P.cv);
                pthread_mutex_unlock(&P.mu);
                return rc;
            }
            if (pool->down)
                log_info("catalog: PostgreSQL reachable again");
            pool->down = false;
            pool->backoff_ms = BACKOFF_MIN_MS;
            pthread_mutex_unlock(&P.mu);
            d->conn = pc;
            return 0;
        }
        if (dr_mono_ms() >= deadline) {
            int max = pool->max;
            pthread_mutex_unlock(&P.mu);
            db_set_err(&d->base, "all %d PostgreSQL connections of this process busy for %d ms",
                       max, WAIT_MS);
            return -EBUSY;
        }
        struct timespec ts;
        dr_mono_timespec(&ts, deadline);
        pthread_cond_timedwait(&P.cv, &P.mu, &ts);
    }
}

/* Give d's connection back (outside a transaction), or drop it if it broke
 * (then an open transaction is lost). */
static void settle(struct pg_db *d)
{
    struct pg_conn *pc = d->conn;
    if (pc == NULL)
        return;
    if (PQstatus(pc->c) != CONNECTION_OK) {
        d->conn = NULL;
        if (d->tx == TX_OPEN)
            d->tx = TX_LOST;
        conn_discard(d->pool, pc);
        return;
    }
    if (d->tx != TX_NONE)
        return;
    d->conn = NULL;
    if (PQtransactionStatus(pc->c) != PQTRANS_IDLE) {
        conn_discard(d->pool, pc);
        return;
    }
    pthread_mutex_lock(&P.mu);
    pc->next = d->pool->idle;
    d->pool->idle = pc;
    pthread_cond_signal(&P.cv);
    pthread_mutex_unlock(&P.mu);
}

/* A failed result (r may be NULL): its -errno, the message in db->err. */
static int fail_res(struct pg_db *d, PGresult *r)
{
    const char *st = r != NULL ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = r != NULL ? PQresultErrorMessage(r) : NULL;
    if (msg == NULL || msg[0] == '\0')
        msg = d->conn != NULL ? PQerrorMessage(d->conn->c) : "connection lost";
    set_msg(&d->base, st != NULL ? "" : "PostgreSQL connection: ", msg);
    if (st != NULL) {
        size_t n = strlen(d->base.err);
        snprintf(d->base.err + n, sizeof d->base.err - n, " (SQLSTATE %s)", st);
    }
    return map_state(st);
}

static int lost(struct pg_db *d)
{
    db_set_err(&d->base, "the transaction's PostgreSQL connection was lost");
    return -EBUSY;
}

/* ---- statements --------------------------------------------------------- */

/* The highest $n in sql (outside quotes): how many parameters it takes. */
static int count_params(const char *sql)
{
    int max = 0;
    char quote = 0;
    for (const char *p = sql; *p != '\0'; p++) {
        if (quote != 0) {
            if (*p == quote)
                quote = 0;
        } else if (*p == '\'' || *p == '"') {
            quote = *p;
        } else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
            int n = (int)strtol(p + 1, NULL, 10);
            max = DR_MAX(max, n);
        }
    }
    return max;
}

static int pg_prepare(struct db *db, const char *sql, struct db_stmt **out)
{
    struct pg_stmt *s = xcalloc(1, sizeof *s);
    s->base.db = db;
    s->sql = sql;
    s->nparams = count_params(sql);
    size_t n = (size_t)DR_MAX(s->nparams, 1);
    s->vals = xcalloc(n, sizeof *s->vals);
    s->lens = xcalloc(n, sizeof *s->lens);
    s->fmts = xcalloc(n, sizeof *s->fmts);
    s->types = xcalloc(n, sizeof *s->types);
    s->num = xcalloc(n, sizeof *s->num);
    s->row = -1;
    *out = &s->base;
    return 0;
}

static void pg_reset(struct db_stmt *st)
{
    struct pg_stmt *s = pgst(st);
    PQclear(s->res);
    s->res = NULL;
    if (s->blob != NULL)
        PQfreemem(s->blob);
    s->blob = NULL;
    s->row = -1;
    s->nrows = 0;
    s->ran = false;
    for (int i = 0; i < s->nparams; i++) {
        s->vals[i] = NULL;
        s->lens[i] = s->fmts[i] = 0;
        s->types[i] = 0;
    }
}

static void pg_finalize(struct db_stmt *st)
{
    struct pg_stmt *s = pgst(st);
    pg_reset(st);
    free(s->vals);
    free(s->lens);
    free(s->fmts);
    free(s->types);
    free(s->num);
    free(s);
}

static bool slot_ok(struct pg_stmt *s, int i)
{
    return i >= 1 && i <= s->nparams;
}

static void pg_bind_i64(struct db_stmt *st, int i, int64_t v)
{
    struct pg_stmt *s = pgst(st);
    if (!slot_ok(s, i))
        return;
    snprintf(s->num[i - 1], sizeof s->num[i - 1], "%lld", (long long)v);
    s->vals[i - 1] = s->num[i - 1];
    s->fmts[i - 1] = 0;
    s->types[i - 1] = INT8OID;
}

static void pg_bind_text(struct db_stmt *st, int i, const char *v)
{
    struct pg_stmt *s = pgst(st);
    if (!slot_ok(s, i))
        return;
    s->vals[i - 1] = v;
    s->fmts[i - 1] = 0;
    s->types[i - 1] = TEXTOID;
}

static void pg_bind_blob(struct db_stmt *st, int i, const void *p, size_t n)
{
    struct pg_stmt *s = pgst(st);
    if (!slot_ok(s, i) || n > INT32_MAX)
        return;
    s->vals[i - 1] = p;
    s->lens[i - 1] = (int)n;
    s->fmts[i - 1] = 1; /* binary: the bytes as they are */
    s->types[i - 1] = BYTEAOID;
}

static void pg_bind_null(struct db_stmt *st, int i)
{
    struct pg_stmt *s = pgst(st);
    if (!slot_ok(s, i))
        return;
    s->vals[i - 1] = NULL;
    s->types[i - 1] = 0;
}

/* The name of s's statement on connection pc, preparing it there first. */
static int ensure_prepared(struct pg_db *d, struct pg_stmt *s, char name[24])
{
    struct pg_conn *pc = d->conn;
    for (size_t i = 0; i < pc->nprep; i++)
        if (pc->prep[i].key == s->sql && strcmp(pc->prep[i].sql, s->sql) == 0) {
            snprintf(name, 24, "d%zu", i);
            return 0;
        }
    size_t i = pc->nprep;
    snprintf(name, 24, "d%zu", i);
    PGresult *r = PQprepare(pc->c, name, s->sql, s->nparams, (const Oid *)s->types);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK ? 0 : fail_res(d, r);
    PQclear(r);
    if (rc < 0)
        return rc;
    if (pc->nprep == pc->cap) {
        pc->cap = pc->cap ? 2 * pc->cap : 32;
        pc->prep = xrealloc(pc->prep, pc->cap * sizeof *pc->prep);
    }
    pc->prep[pc->nprep++] = (struct pg_prep){s->sql, xstrdup(s->sql)};
    return 0;
}

static int run(struct pg_stmt *s)
{
    struct pg_db *d = pgdb(s->base.db);
    if (d->tx == TX_LOST)
        return lost(d);
    int rc = lease(d);
    if (rc < 0)
        return rc;
    char name[24];
    rc = ensure_prepared(d, s, name);
    if (rc == 0) {
        PGresult *r = PQexecPrepared(d->conn->c, name, s->nparams, s->vals, s->lens, s->fmts, 0);
        ExecStatusType es = PQresultStatus(r);
        if (es == PGRES_TUPLES_OK || es == PGRES_COMMAND_OK) {
            s->res = r;
            s->nrows = PQntuples(r);
        } else {
            rc = fail_res(d, r);
            PQclear(r);
        }
    }
    settle(d);
    if (rc < 0 && d->tx == TX_LOST)
        rc = -EBUSY;
    return rc;
}

static int pg_step(struct db_stmt *st)
{
    struct pg_stmt *s = pgst(st);
    if (!s->ran) {
        s->ran = true;
        int rc = run(s);
        if (rc < 0)
            return rc;
    }
    if (s->res == NULL || s->row + 1 >= s->nrows) {
        s->row = s->nrows;
        return DB_DONE;
    }
    s->row++;
    return DB_ROW;
}

static bool have(struct pg_stmt *s, int i)
{
    return s->res != NULL && s->row >= 0 && s->row < s->nrows && i >= 0 && i < PQnfields(s->res) &&
           !PQgetisnull(s->res, s->row, i);
}

static int64_t pg_col_i64(struct db_stmt *st, int i)
{
    struct pg_stmt *s = pgst(st);
    if (!have(s, i))
        return 0;
    const char *v = PQgetvalue(s->res, s->row, i);
    if (v[0] == 't')
        return 1; /* a boolean */
    if (v[0] == 'f')
        return 0;
    return strtoll(v, NULL, 10);
}

static bool pg_col_null(struct db_stmt *st, int i)
{
    return !have(pgst(st), i);
}

static const char *pg_col_text(struct db_stmt *st, int i)
{
    struct pg_stmt *s = pgst(st);
    return have(s, i) ? PQgetvalue(s->res, s->row, i) : NULL;
}

static const void *pg_col_blob(struct db_stmt *st, int i, size_t *len)
{
    struct pg_stmt *s = pgst(st);
    *len = 0;
    if (!have(s, i))
        return NULL;
    const char *v = PQgetvalue(s->res, s->row, i);
    if (PQftype(s->res, i) != BYTEAOID) {
        *len = (size_t)PQgetlength(s->res, s->row, i);
        return *len > 0 ? v : NULL;
    }
    if (s->blob != NULL)
        PQfreemem(s->blob);
    s->blob = PQunescapeBytea((const unsigned char *)v, len);
    if (s->blob == NULL || *len == 0) {
        *len = 0;
        return NULL;
    }
    return s->blob;
}

static int pg_changes(struct db_stmt *st)
{
    struct pg_stmt *s = pgst(st);
    return s->res != NULL ? atoi(PQcmdTuples(s->res)) : 0;
}

/* A command without parameters on d's (leased) connection; want_tag, if
 * not NULL, is the command tag it must end with. */
static int command(struct pg_db *d, const char *sql, const char *want_tag)
{
    PGresult *r = PQexec(d->conn->c, sql);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK
                 ? 0
                 : fail_res(d, r);
    if (rc == 0 && want_tag != NULL && strcmp(PQcmdStatus(r), want_tag) != 0) {
        db_set_err(&d->base, "%s ended as %s", sql, PQcmdStatus(r));
        rc = -EIO;
    }
    PQclear(r);
    return rc;
}

static int pg_script(struct db *db, const char *sql)
{
    struct pg_db *d = pgdb(db);
    if (d->tx == TX_LOST)
        return lost(d);
    int rc = lease(d);
    if (rc < 0)
        return rc;
    rc = command(d, sql, NULL);
    settle(d);
    return rc < 0 && d->tx == TX_LOST ? -EBUSY : rc;
}

/* ---- transactions ------------------------------------------------------- */

static int pg_begin(struct db *db, unsigned flags)
{
    /* PostgreSQL queues on row locks itself: no busy handler to tune
     * (DB_BEGIN_POLL) */
    struct pg_db *d = pgdb(db);
    if (d->tx != TX_NONE) {
        db_set_err(db, "BEGIN inside a transaction");
        return -EIO;
    }
    /* Nothing has run yet, so a connection found broken is retried once. */
    for (int attempt = 0;; attempt++) {
        int rc = lease(d);
        if (rc < 0)
            return rc;
        d->tx = TX_OPEN;
        rc = command(d,
                     (flags & DB_BEGIN_READ) ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
                                             : "BEGIN",
                     NULL);
        /* lazy: the commit does not wait for its WAL flush (db.h) */
        if (rc == 0 && (flags & DB_BEGIN_LAZY))
            rc = command(d, "SET LOCAL synchronous_commit TO OFF", NULL);
        if (rc == 0)
            return 0;
        d->tx = TX_NONE;
        bool broken = PQstatus(d->conn->c) != CONNECTION_OK;
        settle(d);
        if (!broken || attempt > 0)
            return rc;
    }
}

static int pg_commit(struct db *db)
{
    struct pg_db *d = pgdb(db);
    if (d->tx == TX_LOST) {
        d->tx = TX_NONE;
        return lost(d);
    }
    if (d->tx != TX_OPEN || d->conn == NULL) {
        db_set_err(db, "COMMIT outside a transaction");
        return -EIO;
    }
    int rc = command(d, "COMMIT", "COMMIT"); /* an aborted transaction answers ROLLBACK */
    bool broken = PQstatus(d->conn->c) != CONNECTION_OK;
    if (rc < 0 && broken) {
        db_set_err(db, "the connection broke during COMMIT: the outcome is unknown");
        rc = -ENOTCONN; /* db.h: the caller may look whether it committed */
    }
    d->tx = TX_NONE;
    settle(d);
    return rc;
}

static void pg_rollback(struct db *db)
{
    struct pg_db *d = pgdb(db);
    if (d->tx == TX_OPEN && d->conn != NULL && command(d, "ROLLBACK", NULL) < 0)
        log_warn("catalog: rollback: %s", db->err);
    d->tx = TX_NONE;
    settle(d);
}

static void pg_close(struct db *db)
{
    struct pg_db *d = pgdb(db);
    if (d->conn != NULL) {
        d->tx = TX_NONE;
        if (PQtransactionStatus(d->conn->c) != PQTRANS_IDLE)
            (void)command(d, "ROLLBACK", NULL);
        settle(d);
    }
    pool_unref(d->pool);
    free(d);
}

static const struct db_ops pg_ops = {
    .dialect = DB_POSTGRES,
    .close = pg_close,
    .prepare = pg_prepare,
    .finalize = pg_finalize,
    .bind_i64 = pg_bind_i64,
    .bind_text = pg_bind_text,
    .bind_blob = pg_bind_blob,
    .bind_null = pg_bind_null,
    .step = pg_step,
    .col_i64 = pg_col_i64,
    .col_null = pg_col_null,
    .col_text = pg_col_text,
    .col_blob = pg_col_blob,
    .reset = pg_reset,
    .changes = pg_changes,
    .script = pg_script,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
};

int db_pg_open(const char *dsn, int pool, struct db **out)
{
    *out = NULL;
    if (dsn == NULL)
        return -EINVAL;
    /* No connection yet: the first statement leases one. So a handle
     * opens while the server is down (a worker restarted during an outage
     * starts, and answers -EBUSY until the server is back). */
    struct pg_db *d = xcalloc(1, sizeof *d);
    db_init(&d->base, &pg_ops);
    d->pool = pool_ref(dsn, pool);
    *out = &d->base;
    return 0;
}

bool db_pg_reachable(struct db *db)
{
    if (db == NULL || db->ops != &pg_ops)
        return true;
    struct pg_db *d = pgdb(db);
    pthread_mutex_lock(&P.mu);
    bool up = !d->pool->down;
    pthread_mutex_unlock(&P.mu);
    return up;
}

/* ---- LISTEN ------------------------------------------------------------- */

struct db_listener {
    PGconn *c;
};

int db_listen_open(const char *dsn, const char *const *channels, size_t n, struct db_listener **out,
                   char *err, size_t errlen)
{
    *out = NULL;
    PGconn *c = connect_dsn(dsn);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        dr_set_err(err, errlen, "PostgreSQL unreachable: %s",
                   c != NULL ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return -EBUSY;
    }
    for (size_t i = 0; i < n; i++) {
        char *sql = xasprintf("LISTEN %s", channels[i]); /* our own constant names */
        PGresult *r = PQexec(c, sql);
        free(sql);
        bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            dr_set_err(err, errlen, "LISTEN %s: %s", channels[i], PQresultErrorMessage(r));
        PQclear(r);
        if (!ok) {
            PQfinish(c);
            return -EBUSY;
        }
    }
    struct db_listener *l = xcalloc(1, sizeof *l);
    l->c = c;
    *out = l;
    return 0;
}

int db_listen_fd(const struct db_listener *l)
{
    return PQsocket(l->c);
}

int db_listen_drain(struct db_listener *l,
                    void (*fn)(const char *channel, const char *payload, void *arg), void *arg)
{
    if (PQconsumeInput(l->c) == 0 || PQstatus(l->c) != CONNECTION_OK)
        return -EBUSY;
    PGnotify *n;
    int count = 0;
    while ((n = PQnotifies(l->c)) != NULL) {
        fn(n->relname, n->extra, arg);
        PQfreemem(n);
        count++;
    }
    return count;
}

int db_listen_ping(struct db_listener *l)
{
    PGresult *r = PQexec(l->c, "SELECT 1");
    int rc = PQresultStatus(r) == PGRES_TUPLES_OK ? 0 : -EBUSY;
    PQclear(r);
    return rc;
}

void db_listen_close(struct db_listener *l)
{
    if (l == NULL)
        return;
    PQfinish(l->c);
    free(l);
}

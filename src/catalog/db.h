/* db.h - the catalog's database layer: what the per-table modules
 * (catalog_*.c) use to talk SQL, whatever the engine underneath.
 *
 * A `struct db` is one connection with its own cache of prepared
 * statements. Like the `struct catalog` that owns it, it is used by one
 * thread at a time and never crosses fork().
 *
 * SQL text. Statements are `static const struct db_sql` objects, written
 * once in SQL that SQLite 3.40 and PostgreSQL 15 both accept: numbered
 * placeholders `$1`, `$2`... (a placeholder may repeat and appear in any
 * order), ON CONFLICT DO NOTHING instead of INSERT OR IGNORE/REPLACE,
 * RETURNING, COALESCE, CASE; no IFNULL, GLOB or scalar MAX(a, b); the
 * column names "user" and "offset" quoted, as both are keywords. Where a
 * statement must differ (DDL, the job claim, JSON building, anything that
 * names SQLite's rowid), the struct carries an explicit PostgreSQL text
 * next to the SQLite one: the dialect branch is visible where the
 * statement is written, never hidden in this layer.
 *
 * Statements are prepared on first use on a connection and kept (keyed by
 * the address of their struct db_sql) until db_close, so a statement is
 * parsed once per connection whatever the call rate.
 *
 * Binds are typed (int64, text, blob, null), so a backend that needs
 * parameter types (PostgreSQL) takes them from the binds. Text and blob
 * binds are borrowed: the caller's buffer must outlive the statement's
 * execution, up to db_reset (or db_exec, which resets). Columns are read
 * by 0-based index; text and blob pointers stay valid until the next
 * db_step or db_reset of that statement.
 *
 * Errors: every call returns 0 (or a count, or DB_ROW/DB_DONE) or -errno,
 * mapped in one place per backend: -EBUSY transient (a lock held past the
 * timeout, a serialisation failure: retry), -EEXIST a uniqueness
 * constraint, -EINVAL a CHECK constraint, -ENOSPC disk full, -EIO anything
 * else. The backend's message is logged once, here, with the caller's
 * `what` (-EEXIST and -EINVAL are answers, not logged).
 */
#ifndef DRIPD_CATALOG_DB_H
#define DRIPD_CATALOG_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/catalog.h"

struct db;
struct db_stmt;

enum db_dialect { DB_SQLITE, DB_POSTGRES };

/* One statement. `sql` is the text for every dialect unless `pg` is set,
 * which is then PostgreSQL's own (a dialect branch). */
struct db_sql {
    const char *sql;
    const char *pg;
};

enum { DB_DONE = 0, DB_ROW = 1 }; /* what db_step returns besides -errno */

/* ---- connections ---- */
/* Open (creating if needed) the SQLite database file at path: WAL,
 * synchronous=FULL, foreign_keys=ON, a 5 s busy timeout. On failure
 * *out is NULL and the error is logged; a missing directory gives the OS
 * errno (-ENOENT). */
int db_sqlite_open(const char *path, struct db **out);
/* From now on the SQLite writers of this process and of every process
 * it forks queue on one mutex in shared memory (db_sqlite.c, Threads).
 * Call once, before the first fork, with no transaction open. 0 or
 * -errno. */
int db_sqlite_share_writer(void);
/* The writer's statistics (catalog_writer_stats): this process's, or
 * after db_sqlite_share_writer those of every process sharing it. */
void db_sqlite_writer_stats(struct dr_writer_stats out[DR_WRITER_KINDS]);
/* A handle on the PostgreSQL database dsn (libpq connection string or
 * URI) through this process's pool of at most pool connections for that
 * DSN (db_pg.c). Connects lazily: the server may be down at open. */
int db_pg_open(const char *dsn, int pool, struct db **out);
/* false while the PostgreSQL server of db's pool cannot be reached (the
 * last attempt to connect failed); true for any other handle. */
bool db_pg_reachable(struct db *db);
void db_close(struct db *db); /* NULL ok; finalises every cached statement */
enum db_dialect db_dialect(const struct db *db);

/* ---- statements ---- */
/* The statement for q on this connection, prepared on first use. The
 * statement belongs to db; the caller only binds, steps and resets it. */
int db_prepare(struct db *db, const struct db_sql *q, struct db_stmt **out);
void db_bind_i64(struct db_stmt *s, int i, int64_t v);                /* i is 1-based, as $i */
void db_bind_text(struct db_stmt *s, int i, const char *v);           /* NULL binds a NULL text */
void db_bind_blob(struct db_stmt *s, int i, const void *p, size_t n); /* NULL or 0: NULL */
void db_bind_null(struct db_stmt *s, int i);
/* Next row: DB_ROW, DB_DONE or -errno (logged with what). */
int db_step(struct db_stmt *s, const char *what);
int64_t db_col_i64(struct db_stmt *s, int i); /* NULL reads as 0 */
bool db_col_null(struct db_stmt *s, int i);
const char *db_col_text(struct db_stmt *s, int i);              /* NULL for NULL */
const void *db_col_blob(struct db_stmt *s, int i, size_t *len); /* NULL, 0 for NULL/empty */
char *db_col_strdup(struct db_stmt *s, int i); /* heap copy (caller frees) or NULL */
void db_col_copy(struct db_stmt *s, int i, char *dst, size_t len); /* "" for NULL */
/* Done with s: end its rows and drop its binds. Every statement is reset
 * before the next call into the catalog returns, so no connection keeps
 * a read snapshot open. NULL ok. */
void db_reset(struct db_stmt *s);
/* Run s to completion and reset it: the rows it changed, or -errno. */
int db_exec(struct db_stmt *s, const char *what);

/* ---- transactions ---- */
enum {
    /* Waiting for the write lock, poll often instead of backing off
     * (SQLite's busy handler sleeps up to 25 ms between tries): for
     * latency-sensitive writers like the upload intake. Same timeout. */
    DB_BEGIN_POLL = 1u << 0,
    /* The commit need not be durable when it returns, only in order: the
     * next durable commit of any connection makes it durable too, and a
     * power cut before that loses it (never a later commit without it).
     * For writes nobody was promised anything about, whose loss only
     * means the work is done again (the pipeline's claims). SQLite: no
     * WAL fsync after the commit (db_sqlite.c); PostgreSQL: SET LOCAL
     * synchronous_commit = off. */
    DB_BEGIN_LAZY = 1u << 1,
    /* The commit is made durable later, by db_sync on any connection of
     * the same database, before anybody is told of it (the intake's
     * group commit, whose next transaction then runs while the last
     * one's fsync does, issue 15). SQLite: no WAL fsync after the commit,
     * as DB_BEGIN_LAZY; PostgreSQL: ignored, the commit is durable when
     * it returns. */
    DB_BEGIN_DEFER_SYNC = 1u << 2,
    /* A read transaction: it only reads, from one snapshot taken at its
     * first read. SQLite: BEGIN (deferred), without the write lock or
     * dripd's writer mutex, so it neither waits for writers nor holds
     * them up (the other flags are ignored, and a write inside it is a
     * bug); PostgreSQL: BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY
     * (one snapshot, as SQLite's). db_end finishes it. */
    DB_BEGIN_READ = 1u << 3,
};
/* Whose transaction it is, for the writer's statistics (catalog.h,
 * catalog_writer_stats), or'ed into db_begin's flags; none: OTHER. */
#define DB_BEGIN_KIND(kind) ((unsigned)(kind) << 8)
/* Begin a write transaction: SQLite BEGIN IMMEDIATE (the write lock is
 * taken before the first read, so a read-then-write transaction never
 * fails on a stale snapshot); PostgreSQL BEGIN (READ COMMITTED).
 * SQLite has one writer at a time, so the writers of one process queue
 * on a mutex first (held until the transaction ends): they then wait
 * for each other without the busy handler's sleeps, which are only left
 * to writers of other processes; after the same 5 s, -EBUSY. Hence: a
 * thread inside a write transaction never begins another one, on any
 * connection. */
int db_begin(struct db *db, unsigned flags);
/* Commit, durably unless DB_BEGIN_LAZY: SQLite fsyncs the WAL after the
 * write lock is let go, before returning (db_sqlite.c); should that fsync
 * fail, the transaction has committed all the same and -EIO is returned.
 * On any other failure the transaction is rolled back and -errno returned.
 * -ENOTCONN (PostgreSQL): the connection broke during the COMMIT, so
 * whether it committed is unknown; the caller may look (its rows are
 * there or not) once a connection can be had again. */
int db_commit(struct db *db);
void db_rollback(struct db *db); /* no-op outside a transaction */
/* Make every commit so far of every connection to this database durable,
 * outside a transaction (DB_BEGIN_DEFER_SYNC): SQLite fsyncs the WAL file
 * through this connection (opening it first if this connection has not
 * read yet); PostgreSQL has nothing to do. kind: whose wait it is, for the
 * writer's statistics (DR_WRITER_*, catalog.h). 0, or -EIO. */
int db_sync(struct db *db, unsigned kind);
/* Finish a write transaction: commit when rc is 0, else roll back; the
 * result (rc, or the commit's error). */
int db_end(struct db *db, int rc);
/* One level of savepoint inside a transaction: undo a part alone. */
int db_savepoint(struct db *db);
int db_savepoint_release(struct db *db);
int db_savepoint_rollback(struct db *db);

/* Run a script of statements without parameters (DDL), in the current
 * transaction if any. 0 / -errno. */
int db_script(struct db *db, const char *sql, const char *what);

/* ---- notifications (PostgreSQL LISTEN/NOTIFY) ---- */
/* Inside the caller's transaction: tell every listener on channel, when
 * (and only if) the transaction commits. Identical notifications of one
 * transaction arrive once. A no-op on SQLite, whose wake-ups go through
 * the supervisor. */
int db_notify(struct db *db, const char *channel, const char *payload);
/* A dedicated connection (not from the pool) that LISTENs on channels.
 * The caller polls db_listen_fd for readability and then calls
 * db_listen_drain, which calls fn for each notification that arrived and
 * returns how many, or -EBUSY once the connection is lost (close it and
 * open again later: notifications sent meanwhile are gone, so re-read the
 * tables). err gets one line on failure. */
struct db_listener;
int db_listen_open(const char *dsn, const char *const *channels, size_t n, struct db_listener **out,
                   char *err, size_t errlen);
int db_listen_fd(const struct db_listener *l);
int db_listen_drain(struct db_listener *l,
                    void (*fn)(const char *channel, const char *payload, void *arg), void *arg);
/* One round trip on the listening connection: 0, or -EBUSY if it is gone. */
int db_listen_ping(struct db_listener *l);
void db_listen_close(struct db_listener *l); /* NULL ok */

#endif

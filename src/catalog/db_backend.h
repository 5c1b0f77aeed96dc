/* db_backend.h - what a database backend of db.h implements.
 *
 * db.c holds what every backend shares (the statement cache, the
 * transaction statements, error logging) and dispatches the rest through
 * a backend's `struct db_ops`. A backend (db_sqlite.c; a PostgreSQL one
 * the same way) embeds `struct db` first in its connection struct and
 * `struct db_stmt` first in its statement struct, and its constructor
 * calls db_init. Only db.c and the backends include this header.
 *
 * Errors: a backend op that fails returns -errno, already mapped (see
 * db.h), and leaves a one-line message in db->err for db.c to log.
 */
#ifndef DRIPD_CATALOG_DB_BACKEND_H
#define DRIPD_CATALOG_DB_BACKEND_H

#include "db.h"

struct db_ops {
    enum db_dialect dialect;
    /* Free the connection (cached statements are finalised before). */
    void (*close)(struct db *db);
    /* Prepare sql (this dialect's text, `$n` placeholders). */
    int (*prepare)(struct db *db, const char *sql, struct db_stmt **out);
    void (*finalize)(struct db_stmt *s);
    void (*bind_i64)(struct db_stmt *s, int i, int64_t v);
    /* A NULL v (p) binds a NULL of that type: a backend that types its
     * parameters (PostgreSQL) still learns that $i is text (bytea). */
    void (*bind_text)(struct db_stmt *s, int i, const char *v);
    void (*bind_blob)(struct db_stmt *s, int i, const void *p, size_t n); /* p NULL iff n 0 */
    void (*bind_null)(struct db_stmt *s, int i); /* a NULL of no particular type */
    int (*step)(struct db_stmt *s);              /* DB_ROW, DB_DONE, -errno */
    int64_t (*col_i64)(struct db_stmt *s, int i);
    bool (*col_null)(struct db_stmt *s, int i);
    const char *(*col_text)(struct db_stmt *s, int i);
    const void *(*col_blob)(struct db_stmt *s, int i, size_t *len);
    void (*reset)(struct db_stmt *s);
    int (*changes)(struct db_stmt *s); /* rows changed by s, after DB_DONE */
    int (*script)(struct db *db, const char *sql);
    /* Transactions (db.h's db_begin, db_commit, db_rollback). rollback is
     * a no-op outside a transaction and never fails: a backend that cannot
     * roll back (a lost connection) forgets the transaction. */
    int (*begin)(struct db *db, unsigned flags);
    int (*commit)(struct db *db);
    void (*rollback)(struct db *db);
    /* db_sync; NULL: every commit is durable when it returns. */
    int (*sync)(struct db *db, unsigned kind);
};

struct db_slot {
    const struct db_sql *key;
    struct db_stmt *stmt;
};

struct db {
    const struct db_ops *ops;
    struct db_slot *slots; /* open addressing, keyed by &db_sql; cap is a power of 2 */
    size_t cap, used;
    char err[256];
};

struct db_stmt {
    struct db *db;
};

void db_init(struct db *db, const struct db_ops *ops);
void db_set_err(struct db *db, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

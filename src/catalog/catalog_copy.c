/* catalog_copy.c - copy a whole catalog into another backend, verifiably.
 *
 * What: `dripd -c FILE --migrate-catalog postgres` (supervisor/migrate.c):
 * every row of the SQLite catalog in <data_dir>/catalog.db goes into the
 * PostgreSQL database of catalog.postgres.dsn, so a single node grows into
 * a cluster without re-uploading anything. Tables in foreign-key order:
 * users, media, variants, shares, jobs (in queue order, so PostgreSQL's jobs.pos
 * keeps SQLite's rowid order; each job belongs to the migrating node,
 * whose disk has the spool files), events (seqs kept, and the sequence set
 * to SQLite's high-water mark, so no seq is ever reused), tus, folder
 * shares, public links, made folders.
 *
 * Guarantees: the target is written in ONE transaction: all or nothing.
 * It must hold no media, shares, jobs, events, tus, folder share, link or
 * folder rows (-EEXIST); its
 * users (the config's, synced by an earlier start) are replaced by the
 * source's. After the commit both sides are read again and compared table
 * by table: the row count and a SHA-256 over every column of every row in
 * key order (typed: NULL, integer, text and blob are told apart). Any
 * difference is an error (-EIO) naming the table.
 *
 * Threads: the caller's, with handles of its own; run while no dripd
 * uses the source (the operator stops the node first).
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog_internal.h"
#include "db.h"
#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/util.h"

struct table {
    const char *name;
    const char *cols;  /* the columns both backends have, in this order */
    const char *types; /* per column: i int64, t text, b blob */
    const char *order_sqlite, *order_pg;
};

static const struct table tables[CATALOG_COPY_TABLES] = {
    {"users", "name, admin, created_at", "tii", "name", "name"},
    {"media",
     "id, owner, path, folder, name, size, sha256, content_type, state, storage_key, "
     "wrapped_key, created_at, uploaded_at, metadata, file_id, version, retired, retired_at",
     "tttttittttbiittiti", "id", "id"},
    {"variants",
     "media_id, name, state, content_type, width, height, size, sha256, wrapped_key, "
     "storage_key, error, created_at",
     "ttttiiitbtti", "media_id, name", "media_id, name"},
    {"shares", "media_id, \"user\", created_at", "tti", "media_id, \"user\"", "media_id, \"user\""},
    {"jobs",
     "id, kind, media_id, owner, state, stage, attempts, error, spool_path, work_path, "
     "claimed_by, not_before, created_at, updated_at, variant, staged",
     "ttttttittttiiitt", "rowid", "pos"},
    {"job_bodies", "job_id, body", "tb", "job_id", "job_id"},
    {"events", "seq, \"user\", type, job_id, media_id, data, created_at", "ittttti", "seq", "seq"},
    {"tus",
     "id, owner, length, \"offset\", path, metadata, content_type, spool_path, expires_at, "
     "created_at, job_id, media_id, finished_at, if_match, rename_taken",
     "ttiittttiittiti", "id", "id"},
    {"folder_shares", "owner, path, \"user\", lo, hi, created_at", "ttttti",
     "owner, path, \"user\"", "owner, path, \"user\""},
    {"links", "id, owner, media_id, created_at, expires_at, max_downloads, downloads", "tttiiii",
     "id", "id"},
    {"folders", "owner, path, created_at", "tti", "owner, path", "owner, path"},
};

/* Statements built from the table specs; their structs must outlive the
 * handles that cache them (closed before these are freed). */
struct sqlset {
    struct db_sql select[CATALOG_COPY_TABLES][2]; /* [table][0 source, 1 target] */
    struct db_sql insert[CATALOG_COPY_TABLES];
    char *text[4 * CATALOG_COPY_TABLES];
    size_t n;
};

static const char *keep(struct sqlset *q, char *s)
{
    q->text[q->n++] = s;
    return s;
}

static void sqlset_build(struct sqlset *q, enum db_dialect target)
{
    memset(q, 0, sizeof *q);
    for (int t = 0; t < CATALOG_COPY_TABLES; t++) {
        const struct table *tb = &tables[t];
        q->select[t][0].sql = keep(
            q, xasprintf("SELECT %s FROM %s ORDER BY %s", tb->cols, tb->name, tb->order_sqlite));
        q->select[t][0].pg =
            keep(q, xasprintf("SELECT %s FROM %s ORDER BY %s", tb->cols, tb->name, tb->order_pg));
        q->select[t][1] = q->select[t][0];
        /* $1..$n, plus the job's node on PostgreSQL */
        size_t n = strlen(tb->types);
        bool node = target == DB_POSTGRES && strcmp(tb->name, "jobs") == 0;
        char *vals = xstrdup("");
        for (size_t i = 1; i <= n + (node ? 1 : 0); i++) {
            char *v = xasprintf("%s%s$%zu", vals, i > 1 ? ", " : "", i);
            free(vals);
            vals = v;
        }
        char *sql = xasprintf("INSERT INTO %s(%s%s) VALUES (%s)", tb->name, tb->cols,
                              node ? ", node" : "", vals);
        free(vals);
        q->insert[t].sql = keep(q, sql);
    }
}

static void sqlset_free(struct sqlset *q)
{
    for (size_t i = 0; i < q->n; i++)
        free(q->text[i]);
}

/* Bind column c of the source row to parameter c + 1 of the insert. */
static void copy_col(struct db_stmt *from, struct db_stmt *to, int c, char type)
{
    if (db_col_null(from, c)) {
        if (type == 'i')
            db_bind_null(to, c + 1);
        else if (type == 'b')
            db_bind_blob(to, c + 1, NULL, 0);
        else
            db_bind_text(to, c + 1, NULL);
        return;
    }
    if (type == 'i') {
        db_bind_i64(to, c + 1, db_col_i64(from, c));
    } else if (type == 'b') {
        size_t len;
        const void *p = db_col_blob(from, c, &len);
        db_bind_blob(to, c + 1, p, len);
    } else {
        db_bind_text(to, c + 1, db_col_text(from, c));
    }
}

static int copy_table(struct catalog *src, struct catalog *dst, struct sqlset *q, int t,
                      uint64_t *rows, char *err, size_t errlen)
{
    const struct table *tb = &tables[t];
    int ncol = (int)strlen(tb->types);
    bool node = db_dialect(dst->db) == DB_POSTGRES && strcmp(tb->name, "jobs") == 0;
    struct db_stmt *r = NULL, *w = NULL;
    int rc = db_prepare(src->db, &q->select[t][0], &r);
    if (rc == 0)
        rc = db_prepare(dst->db, &q->insert[t], &w);
    if (rc != 0 || r == NULL || w == NULL) {
        rc = rc < 0 ? rc : -EIO;
        snprintf(err, errlen, "%s: preparing the copy failed: %s", tb->name, strerror(-rc));
        return rc;
    }
    uint64_t n = 0;
    while ((rc = db_step(r, "copy: read")) == DB_ROW) {
        for (int c = 0; c < ncol; c++)
            copy_col(r, w, c, tb->types[c]);
        if (node)
            db_bind_text(w, ncol + 1, dst->node);
        int wr = db_exec(w, "copy: write");
        if (wr != 1) {
            snprintf(err, errlen, "%s: row %llu could not be written: %s", tb->name,
                     (unsigned long long)n + 1, wr < 0 ? strerror(-wr) : "no row");
            rc = wr < 0 ? wr : -EIO;
            break;
        }
        n++;
    }
    db_reset(r);
    if (rc < 0 && err[0] == '\0')
        snprintf(err, errlen, "%s: reading the source failed: %s", tb->name, strerror(-rc));
    *rows = n;
    return rc < 0 ? rc : 0;
}

/* Row count and SHA-256 of table t as c sees it. */
static int digest(struct catalog *c, struct sqlset *q, int t, int side, uint64_t *rows,
                  char hex[65])
{
    const struct table *tb = &tables[t];
    int ncol = (int)strlen(tb->types);
    struct db_stmt *r;
    int rc = db_prepare(c->db, &q->select[t][side], &r);
    if (rc < 0)
        return rc;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    uint64_t n = 0;
    while ((rc = db_step(r, "copy: verify")) == DB_ROW) {
        for (int i = 0; i < ncol; i++) {
            char tag = db_col_null(r, i) ? 'N' : tb->types[i];
            EVP_DigestUpdate(md, &tag, 1);
            if (tag == 'N')
                continue;
            const void *p;
            size_t len;
            char num[24];
            if (tag == 'i') {
                len = (size_t)snprintf(num, sizeof num, "%lld", (long long)db_col_i64(r, i));
                p = num;
            } else if (tag == 'b') {
                p = db_col_blob(r, i, &len);
            } else {
                p = db_col_text(r, i);
                len = strlen(p);
            }
            uint64_t l = len;
            EVP_DigestUpdate(md, &l, sizeof l);
            if (len > 0)
                EVP_DigestUpdate(md, p, len);
        }
        n++;
    }
    db_reset(r);
    uint8_t out[32];
    unsigned olen = sizeof out;
    EVP_DigestFinal_ex(md, out, &olen);
    EVP_MD_CTX_free(md);
    dr_hex(out, sizeof out, hex);
    *rows = n;
    return rc < 0 ? rc : 0;
}

static const struct db_sql q_target_rows = {
    "SELECT (SELECT count(*) FROM media) + (SELECT count(*) FROM shares) + "
    "(SELECT count(*) FROM variants) + "
    "(SELECT count(*) FROM jobs) + (SELECT count(*) FROM events) + (SELECT count(*) FROM tus) + "
    "(SELECT count(*) FROM folder_shares) + (SELECT count(*) FROM links) + "
    "(SELECT count(*) FROM folders)",
    NULL};
static const struct db_sql q_clear_users = {"DELETE FROM users", NULL};
static const struct db_sql q_setval = {NULL,
                                       "SELECT setval('events_seq_seq', greatest($1, 1), $1 > 0)"};

static int prepare_target(struct catalog *dst, char *err, size_t errlen)
{
    struct db_stmt *s;
    int rc = db_prepare(dst->db, &q_target_rows, &s);
    if (rc < 0)
        return rc;
    rc = db_step(s, "copy: target rows");
    int64_t n = rc == DB_ROW ? db_col_i64(s, 0) : 0;
    db_reset(s);
    if (rc < 0)
        return rc;
    if (n > 0) {
        snprintf(err, errlen,
                 "the target catalog is not empty (%lld media, variant, share, job, event, tus, "
                 "folder share, link or folder rows); "
                 "migrate into an empty database",
                 (long long)n);
        return -EEXIST;
    }
    if ((rc = db_prepare(dst->db, &q_clear_users, &s)) < 0)
        return rc;
    rc = db_exec(s, "copy: clear users");
    return rc < 0 ? rc : 0;
}

static int set_high_water(struct catalog *src, struct catalog *dst)
{
    if (db_dialect(dst->db) != DB_POSTGRES)
        return 0; /* SQLite's AUTOINCREMENT follows the inserted seqs */
    int64_t hw = 0;
    int rc = catalog_events_last_seq(src, &hw);
    if (rc < 0)
        return rc;
    struct db_stmt *s;
    if ((rc = db_prepare(dst->db, &q_setval, &s)) < 0)
        return rc;
    db_bind_i64(s, 1, hw);
    rc = db_step(s, "copy: events sequence");
    db_reset(s);
    return rc < 0 ? rc : 0;
}

int catalog_copy(const struct dr_config *from, const struct dr_config *to,
                 struct dr_catalog_copy out[CATALOG_COPY_TABLES], char *err, size_t errlen)
{
    dr_set_err(err, errlen, "%s", "");
    memset(out, 0, CATALOG_COPY_TABLES * sizeof *out);
    struct catalog *src = NULL, *dst = NULL;
    struct sqlset q;
    int rc = catalog_open(from, &src);
    if (rc < 0) {
        snprintf(err, errlen, "opening the source catalog: %s", strerror(-rc));
        return rc;
    }
    rc = catalog_migrate(to);
    if (rc == 0)
        rc = catalog_open(to, &dst);
    if (rc != 0 || dst == NULL) {
        rc = rc < 0 ? rc : -EIO;
        snprintf(err, errlen, "opening the target catalog: %s", strerror(-rc));
        catalog_close(src);
        return rc;
    }
    sqlset_build(&q, db_dialect(dst->db));
    rc = db_begin(dst->db, 0);
    if (rc == 0)
        rc = prepare_target(dst, err, errlen);
    for (int t = 0; t < CATALOG_COPY_TABLES && rc == 0; t++) {
        rc = copy_table(src, dst, &q, t, &out[t].rows, err, errlen);
        if (rc == 0)
            log_info("migrate: %s: %llu rows copied", tables[t].name,
                     (unsigned long long)out[t].rows);
    }
    if (rc == 0)
        rc = set_high_water(src, dst);
    rc = db_end(dst->db, rc);
    if (rc < 0 && err[0] == '\0')
        snprintf(err, errlen, "writing the target catalog: %s", strerror(-rc));
    /* Verify what was committed against the source. */
    for (int t = 0; t < CATALOG_COPY_TABLES && rc == 0; t++) {
        uint64_t ns = 0, nd = 0;
        char hs[65], hd[65];
        out[t].table = tables[t].name;
        rc = digest(src, &q, t, 0, &ns, hs);
        if (rc == 0)
            rc = digest(dst, &q, t, 1, &nd, hd);
        if (rc < 0) {
            snprintf(err, errlen, "verifying %s: %s", tables[t].name, strerror(-rc));
            break;
        }
        memcpy(out[t].sha256, hd, sizeof out[t].sha256);
        out[t].rows = nd;
        if (ns != nd || strcmp(hs, hd) != 0) {
            snprintf(err, errlen,
                     "verifying %s: the source has %llu rows (sha256 %.16s...), the target "
                     "%llu (sha256 %.16s...)",
                     tables[t].name, (unsigned long long)ns, hs, (unsigned long long)nd, hd);
            rc = -EIO;
        }
    }
    catalog_close(src);
    catalog_close(dst);
    sqlset_free(&q);
    return rc;
}

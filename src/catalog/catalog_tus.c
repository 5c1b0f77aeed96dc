/* catalog_tus.c - tus upload sessions.
 *
 * What: the `tus` table (docs/CATALOG.md, "tus sessions"): one row per
 * upload session, shared by the nodes (the bytes are in a node-local spool
 * file), from creation through offsets to the last PATCH, whose finish
 * turns the session into an upload job exactly once. Also which spool
 * files are still needed (catalog_spool_refs: sessions and pending jobs),
 * for the http worker's orphan sweep at start.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees:
 *  - set_offset and set_length change unfinished sessions only, and the
 *    table's CHECK refuses an offset past a known length (-EINVAL).
 *  - catalog_tus_finish is one transaction: the intake of the upload
 *    (media, job, event, as catalog_intake_uploads) and the session marked
 *    finished with their ids. Finishing a finished session returns the
 *    same ids and creates nothing; a taken path writes nothing and leaves
 *    the session open.
 *  - Cluster (staged parts, catalog_staged.c): a part is recorded only
 *    together with the offset move it makes, and only from the offset it
 *    starts at (compare and set under the row lock), so concurrent
 *    requests on several nodes can never record overlapping or missing
 *    bytes: the loser gets -ECANCELED and nothing of it is written.
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "catalog_jobs.h"
#include "catalog_staged.h"
#include "db.h"
#include "dripd/util.h"

#define TUS_EXPIRED_MAX 1000 /* cap of one catalog_tus_expired call */
#define TUS_COLS                                                                                   \
    "id, owner, length, \"offset\", path, metadata, content_type, spool_path, expires_at, "        \
    "created_at, job_id, media_id, if_match, rename_taken"

/* A duplicate id is "0 rows" (-EEXIST). */
static const struct db_sql q_insert = {
    "INSERT INTO tus(id, owner, length, \"offset\", path, metadata, content_type, spool_path, "
    "expires_at, created_at, if_match, rename_taken) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
    "ON CONFLICT DO NOTHING",
    NULL};
static const struct db_sql q_get = {
    "SELECT " TUS_COLS " FROM tus WHERE id = $1 AND ($2 IS NULL OR owner = $2)", NULL};
static const struct db_sql q_set_offset = {
    "UPDATE tus SET \"offset\" = $2 WHERE id = $1 AND job_id IS NULL", NULL};
static const struct db_sql q_set_length = {
    "UPDATE tus SET length = $2 WHERE id = $1 AND job_id IS NULL", NULL};
/* $6 >= 0 (a staged last part): only if the offset is still $6. */
static const struct db_sql q_finish = {
    "UPDATE tus SET job_id = $2, media_id = $3, \"offset\" = $4, length = $4, finished_at = $5 "
    "WHERE id = $1 AND job_id IS NULL AND ($6 < 0 OR \"offset\" = $6)",
    NULL};
/* A staged PATCH: the offset moves from $2 to $3 (and the length to $4
 * if >= 0) only if it is still $2. */
static const struct db_sql q_add_part = {
    "UPDATE tus SET \"offset\" = $3, length = CASE WHEN $4 >= 0 THEN $4 ELSE length END "
    "WHERE id = $1 AND job_id IS NULL AND \"offset\" = $2",
    NULL};
/* Tus concatenation: a complete partial upload is taken (deleted) by the
 * final upload that joins it, once: a concurrent join waits for the row
 * lock, then finds nothing to delete. */
static const struct db_sql q_take = {
    "DELETE FROM tus WHERE id = $1 AND owner = $2 AND path = '' AND job_id IS NULL "
    "AND length = $3 AND \"offset\" = length AND expires_at > $4",
    NULL};
static const struct db_sql q_delete = {
    "DELETE FROM tus WHERE id = $1 AND ($2 IS NULL OR owner = $2)", NULL};
static const struct db_sql q_expired = {"SELECT " TUS_COLS
                                        " FROM tus WHERE job_id IS NULL AND expires_at < $1 "
                                        "ORDER BY expires_at, id LIMIT $2",
                                        NULL};
/* spool files something still needs: a pending job's body, a tus
 * session's bytes (finished or not) */
static const struct db_sql q_spool_refs = {
    "SELECT spool_path FROM jobs WHERE state IN ('queued', 'running') AND spool_path IS NOT NULL "
    "UNION SELECT spool_path FROM tus",
    NULL};

static void read_tus(struct db_stmt *s, struct dr_tus *t)
{
    memset(t, 0, sizeof *t);
    db_col_copy(s, 0, t->id, sizeof t->id);
    t->owner = db_col_strdup(s, 1);
    t->length = db_col_i64(s, 2);
    t->offset = (uint64_t)db_col_i64(s, 3);
    t->path = db_col_strdup(s, 4);
    t->metadata = db_col_strdup(s, 5);
    t->content_type = db_col_strdup(s, 6);
    t->spool_path = db_col_strdup(s, 7);
    t->expires_at = db_col_i64(s, 8);
    t->created_at = db_col_i64(s, 9);
    db_col_copy(s, 10, t->job_id, sizeof t->job_id);
    db_col_copy(s, 11, t->media_id, sizeof t->media_id);
    t->if_match = db_col_strdup(s, 12);
    t->rename = db_col_i64(s, 13) != 0;
}

void dr_tus_clear(struct dr_tus *t)
{
    if (t == NULL)
        return;
    free(t->owner);
    free(t->path);
    free(t->metadata);
    free(t->content_type);
    free(t->spool_path);
    free(t->if_match);
    memset(t, 0, sizeof *t);
}

int catalog_tus_create(struct catalog *cat, const struct dr_tus *t)
{
    if (cat == NULL || t == NULL || !dr_id_valid(t->id) || t->owner == NULL || t->path == NULL ||
        t->spool_path == NULL || t->offset > INT64_MAX)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_insert, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, t->id);
    db_bind_text(s, 2, t->owner);
    db_bind_i64(s, 3, t->length < 0 ? -1 : t->length);
    db_bind_i64(s, 4, (int64_t)t->offset);
    db_bind_text(s, 5, t->path);
    db_bind_text(s, 6, t->metadata);
    db_bind_text(s, 7, t->content_type);
    db_bind_text(s, 8, t->spool_path);
    db_bind_i64(s, 9, t->expires_at);
    db_bind_i64(s, 10, t->created_at != 0 ? t->created_at : dr_now_ms());
    db_bind_text(s, 11, t->if_match);
    db_bind_i64(s, 12, t->rename ? 1 : 0);
    rc = db_exec(s, "tus create");
    if (rc < 0)
        return rc;
    return rc == 1 ? 0 : -EEXIST;
}

/* The session id as owner (NULL: anyone) may see it: 0, -ENOENT. */
static int get_row(struct db *db, const char *id, const char *owner, struct dr_tus *out,
                   const char *what)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_get, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    rc = db_step(s, what);
    if (rc == DB_ROW) {
        read_tus(s, out);
        rc = 0;
    } else if (rc == DB_DONE) {
        rc = -ENOENT;
    }
    db_reset(s);
    return rc;
}

int catalog_tus_get(struct catalog *cat, const char *id, const char *owner, struct dr_tus *out)
{
    if (cat == NULL || id == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    return get_row(cat->db, id, owner, out, "tus get");
}

static int tus_update(struct catalog *cat, const struct db_sql *q, const char *tus_id, int64_t v,
                      const char *what)
{
    struct db_stmt *s;
    int rc = db_prepare(cat->db, q, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, tus_id);
    db_bind_i64(s, 2, v);
    rc = db_exec(s, what);
    if (rc < 0)
        return rc;
    return rc == 0 ? -ENOENT : 0;
}

int catalog_tus_set_offset(struct catalog *cat, const char *id, uint64_t offset)
{
    if (cat == NULL || id == NULL || offset > INT64_MAX)
        return -EINVAL;
    return tus_update(cat, &q_set_offset, id, (int64_t)offset, "tus set offset");
}

int catalog_tus_set_length(struct catalog *cat, const char *id, int64_t length)
{
    if (cat == NULL || id == NULL || length < 0)
        return -EINVAL;
    return tus_update(cat, &q_set_length, id, length, "tus set length");
}

/* Inside finish's transaction: the intake of the session row's upload and
 * the row marked finished. -EEXIST (path taken) writes nothing. */
static int finish_open(struct catalog *cat, const char *id, const struct dr_tus *row,
                       struct dr_intake *intake)
{
    struct db *db = cat->db;
    /* Inputs the caller left NULL come from the session row. */
    struct dr_intake it = *intake;
    if (it.owner == NULL)
        it.owner = row->owner;
    if (it.path == NULL)
        it.path = row->path;
    if (it.content_type == NULL)
        it.content_type = row->content_type;
    if (it.spool_path == NULL && it.body == NULL) /* an inline body has no file */
        it.spool_path = row->spool_path;
    if (it.if_match == NULL && !it.rename) { /* the creation's If-Match / ?conflict=rename */
        it.if_match = row->if_match;
        it.rename = row->rename;
    }
    if (!catalog_intake_valid(&it))
        return -EINVAL;
    int rc = 0;
    if (it.staged_part != NULL) {
        /* the offset is still where the last part starts, and stays so
         * (the row is locked until commit), before its part is recorded */
        struct db_stmt *s;
        rc = db_prepare(db, &q_add_part, &s);
        if (rc < 0)
            return rc;
        db_bind_text(s, 1, id);
        db_bind_i64(s, 2, (int64_t)it.staged_off);
        db_bind_i64(s, 3, (int64_t)it.staged_off);
        db_bind_i64(s, 4, -1);
        rc = db_exec(s, "tus finish: offset");
        if (rc <= 0)
            return rc < 0 ? rc : -ECANCELED;
    }
    rc = catalog_intake_one(cat, &it, dr_now_ms());
    intake->renamed = it.renamed; /* intake_one replaced (and freed) the caller's */
    if (rc < 0)
        return rc;
    intake->result = it.result;
    intake->created_at = it.created_at;
    intake->version = it.version;
    memcpy(intake->replaced, it.replaced, sizeof intake->replaced);
    if (it.result < 0)
        return it.result; /* -EEXIST, -ESTALE: nothing written, the session stays open */
    struct db_stmt *s;
    rc = db_prepare(db, &q_finish, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, it.job_id);
    db_bind_text(s, 3, it.media_id);
    db_bind_i64(s, 4, (int64_t)it.size);
    db_bind_i64(s, 5, dr_now_ms());
    db_bind_i64(s, 6, it.staged_part != NULL ? (int64_t)it.staged_off : -1);
    rc = db_exec(s, "tus finish");
    if (rc >= 0)
        rc = rc == 1 ? 0 : it.staged_part != NULL ? -ECANCELED : -ENOENT;
    if (rc == 0) {
        memcpy(intake->media_id, it.media_id, sizeof intake->media_id);
        memcpy(intake->job_id, it.job_id, sizeof intake->job_id);
    }
    return rc;
}

int catalog_tus_finish(struct catalog *cat, const char *id, struct dr_intake *intake)
{
    if (cat == NULL || id == NULL || intake == NULL || intake->size > INT64_MAX)
        return -EINVAL;
    intake->media_id[0] = intake->job_id[0] = '\0';
    struct dr_tus row = {0};
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        goto out;
    rc = get_row(cat->db, id, intake->owner, &row, "tus finish");
    if (rc == 0 && row.job_id[0] != '\0' && intake->staged_part != NULL) {
        rc = -ECANCELED; /* finished by another request: this part is not needed */
    } else if (rc == 0 && row.job_id[0] != '\0') {
        /* Finished already (a retried last PATCH): the same ids, no new job. */
        memcpy(intake->media_id, row.media_id, sizeof intake->media_id);
        memcpy(intake->job_id, row.job_id, sizeof intake->job_id);
        intake->result = 0;
    } else if (rc == 0) {
        rc = finish_open(cat, id, &row, intake);
    }
    rc = db_end(cat->db, rc); /* the idempotent path commits an empty transaction */
out:
    if (rc < 0) {
        intake->result = rc;
        intake->media_id[0] = intake->job_id[0] = '\0';
    }
    dr_tus_clear(&row);
    return rc;
}

int catalog_tus_intake(struct catalog *cat, struct dr_intake *it, bool savepoint, bool *redo)
{
    int res = 0, rc = savepoint ? db_savepoint(cat->db) : 0;
    if (rc < 0)
        return rc;
    if (it->tus_new != NULL) {
        rc = catalog_tus_create(cat, it->tus_new);
        if (rc == -EEXIST)
            res = -EEXIST, rc = 0;
    }
    if (rc == 0 && res == 0 && it->tus_id != NULL) {
        struct dr_tus row = {0};
        rc = get_row(cat->db, it->tus_id, it->owner, &row, "tus finish");
        if (rc == 0 && row.job_id[0] != '\0' && it->staged_part != NULL) {
            rc = -ECANCELED; /* finished by another request: this part is not needed */
        } else if (rc == 0 && row.job_id[0] != '\0') {
            /* finished already (a retried last PATCH): the same ids */
            memcpy(it->media_id, row.media_id, sizeof it->media_id);
            memcpy(it->job_id, row.job_id, sizeof it->job_id);
        } else if (rc == 0) {
            rc = finish_open(cat, it->tus_id, &row, it);
        }
        if (rc == -ENOENT || rc == -EEXIST || rc == -ESTALE || rc == -ECANCELED)
            res = rc, rc = 0;
        dr_tus_clear(&row);
    }
    if (rc < 0)
        return rc; /* the caller's transaction ends with it */
    it->result = res;
    if (res < 0)
        it->media_id[0] = it->job_id[0] = '\0';
    if (!savepoint) {
        *redo = *redo || res < 0;
        return 0;
    }
    return res < 0 ? db_savepoint_rollback(cat->db) : db_savepoint_release(cat->db);
}

int catalog_tus_add_part(struct catalog *cat, const char *id, const char *part, uint64_t off,
                         uint64_t len, int64_t new_length)
{
    if (cat == NULL || id == NULL || part == NULL || off > INT64_MAX || len > INT64_MAX - off)
        return -EINVAL;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    struct db_stmt *s;
    rc = db_prepare(cat->db, &q_add_part, &s);
    if (rc == 0) {
        db_bind_text(s, 1, id);
        db_bind_i64(s, 2, (int64_t)off);
        db_bind_i64(s, 3, (int64_t)(off + len));
        db_bind_i64(s, 4, new_length);
        rc = db_exec(s, "tus add part");
        if (rc == 0) {
            /* moved by another request, finished, or gone */
            struct dr_tus row = {0};
            rc = get_row(cat->db, id, NULL, &row, "tus add part");
            if (rc == 0)
                rc = -ECANCELED;
            dr_tus_clear(&row);
        } else if (rc > 0) {
            rc = catalog_staged_add(cat->db, id, part, off, len, dr_now_ms());
        }
    }
    return db_end(cat->db, rc);
}

/* Inside the join's transaction: take the partial upload id of owner, its
 * staged parts becoming final's at *base, which moves past them. */
static int take_partial(struct catalog *cat, const char *id, const char *owner, const char *final,
                        uint64_t *base, int64_t now)
{
    struct dr_tus row = {0};
    int rc = get_row(cat->db, id, owner, &row, "tus join");
    if (rc == 0 && (row.job_id[0] != '\0' || row.expires_at <= now))
        rc = -ENOENT;
    else if (rc == 0 && (row.path == NULL || row.path[0] != '\0' || row.length < 0 ||
                         row.offset != (uint64_t)row.length))
        rc = -EINVAL; /* not a partial upload, or not complete */
    else if (rc == 0 && (uint64_t)row.length > INT64_MAX - *base)
        rc = -EFBIG;
    int64_t len = row.length;
    dr_tus_clear(&row);
    if (rc < 0)
        return rc;
    struct db_stmt *s;
    rc = db_prepare(cat->db, &q_take, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    db_bind_i64(s, 3, len);
    db_bind_i64(s, 4, now);
    rc = db_exec(s, "tus join: take");
    if (rc <= 0)
        return rc < 0 ? rc : -ENOENT; /* taken meanwhile (another final upload, the expiry) */
    rc = catalog_staged_move(cat->db, id, final, *base, (uint64_t)len);
    if (rc == 0)
        *base += (uint64_t)len;
    return rc;
}

int catalog_tus_join(struct catalog *cat, const struct dr_tus *final, const char *const *parts,
                     size_t n, struct dr_intake *intake, size_t *bad)
{
    if (bad != NULL)
        *bad = n;
    if (cat == NULL || final == NULL || parts == NULL || n == 0 || intake == NULL ||
        final->owner == NULL || final->length < 0)
        return -EINVAL;
    intake->media_id[0] = intake->job_id[0] = '\0';
    int64_t now = dr_now_ms();
    uint64_t base = 0;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = take_partial(cat, parts[i], final->owner, final->id, &base, now);
        if (rc < 0 && bad != NULL)
            *bad = i;
    }
    if (rc == 0 && base != (uint64_t) final->length)
        rc = -EIO; /* the partial uploads are not the lengths the caller read */
    if (rc == 0) {
        struct dr_tus row = *final;
        row.offset = 0;
        rc = catalog_tus_create(cat, &row);
    }
    if (rc == 0) {
        intake->size = base;
        rc = finish_open(cat, final->id, final, intake);
    }
    rc = db_end(cat->db, rc);
    if (rc < 0) {
        if (rc != -EEXIST && rc != -ESTALE)
            intake->result = rc;
        intake->media_id[0] = intake->job_id[0] = '\0';
    }
    return rc;
}

int catalog_tus_delete(struct catalog *cat, const char *id, const char *owner)
{
    if (cat == NULL || id == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_delete, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    rc = db_exec(s, "tus delete");
    if (rc < 0)
        return rc;
    return rc == 0 ? -ENOENT : 0;
}

int catalog_tus_expired(struct catalog *cat, int64_t now_ms, struct dr_tus **out, size_t *n_out)
{
    if (out != NULL)
        *out = NULL;
    if (n_out != NULL)
        *n_out = 0;
    if (cat == NULL || out == NULL || n_out == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_expired, &s);
    if (rc < 0)
        return rc;
    db_bind_i64(s, 1, now_ms);
    db_bind_i64(s, 2, TUS_EXPIRED_MAX);
    struct dr_tus *v = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "tus expired")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            v = xrealloc(v, cap * sizeof *v);
        }
        read_tus(s, &v[n++]);
    }
    db_reset(s);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            dr_tus_clear(&v[i]);
        free(v);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

int catalog_spool_refs(struct catalog *cat, char ***out, size_t *n_out)
{
    if (out != NULL)
        *out = NULL;
    if (n_out != NULL)
        *n_out = 0;
    if (cat == NULL || out == NULL || n_out == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_spool_refs, &s);
    if (rc < 0)
        return rc;
    char **v = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "spool refs")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n] = db_col_strdup(s, 0);
        if (v[n] != NULL)
            n++;
    }
    db_reset(s);
    if (rc < 0) {
        dr_strv_free(v, n);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

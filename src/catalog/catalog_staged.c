/* catalog_staged.c - upload bodies staged in the bucket (cluster).
 *
 * What: the PostgreSQL table staged_parts (docs/CATALOG.md, "Staged
 * bodies"): with several nodes an upload is acknowledged only once its
 * bytes are sealed in the bucket, so that any node can finish it
 * (docs/CLUSTER.md). A body is a list of parts (body, off, len, part); the
 * part's object is staging-<body>-<part> (staging.h). A PUT records its
 * one part with its intake; a tus PATCH records its part together with
 * the session's new offset (catalog_tus_add_part), so the parts of a
 * body tile [0, size) in order of off. An upload job names its body in
 * jobs.staged.
 *
 * Garbage: a part is needed while a queued or running job reads its body
 * or an unfinished tus session owns it. Afterwards (the job is done or
 * failed, the session expired or was terminated) catalog_staged_garbage
 * lists it for the collector (the pipeline's, once per cluster), which
 * deletes the object and then the row. So nothing here deletes objects,
 * and a crash between the two leaves a row whose object is gone, which
 * the next pass deletes again (a delete of an absent object succeeds).
 *
 * Adoption: the jobs of a node silent for the node lease (it died,
 * perhaps with its disk) that read a staged body become the adopting
 * node's, so a node lost with its disk loses nothing acknowledged.
 *
 * Concatenation: a final tus upload takes its partial uploads' parts over
 * in its join's transaction (catalog_tus_join): their rows move to its
 * body at their place in it, and src keeps the body their objects are
 * named after, so no byte is copied or moved in the store.
 *
 * SQLite (one node) stages nothing: no table, every call a no-op.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "catalog_schema.h"
#include "catalog_staged.h"
#include "db.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define GARBAGE_MAX 1000 /* cap of one catalog_staged_garbage call */
#define NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

static const struct db_sql q_add = {
    NULL, "INSERT INTO staged_parts(body, off, len, part, created_at) VALUES ($1, $2, $3, $4, $5)"};
static const struct db_sql q_parts = {
    NULL, "SELECT body, part, off, len, coalesce(src, body) FROM staged_parts WHERE body = $1 "
          "ORDER BY off"};
static const struct db_sql q_garbage = {
    NULL, "SELECT p.body, p.part, p.off, p.len, coalesce(p.src, p.body) FROM staged_parts p "
          "WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.staged = p.body "
          "                  AND j.state IN ('queued', 'running')) "
          "AND NOT EXISTS (SELECT 1 FROM tus t WHERE t.id = p.body AND t.job_id IS NULL) "
          "ORDER BY p.created_at LIMIT $1"};
/* by the object's name: a part a final tus upload took over is still
 * known by the body it was staged for */
static const struct db_sql q_known = {
    NULL, "SELECT count(*) FROM staged_parts WHERE part = $2 AND coalesce(src, body) = $1"};
/* Tus concatenation: the parts of body $1 become the parts of body $2,
 * each $3 further on; their objects keep their names (src). */
static const struct db_sql q_len = {
    NULL, "SELECT coalesce(sum(len), 0), count(*) FROM staged_parts WHERE body = $1"};
static const struct db_sql q_move = {
    NULL, "UPDATE staged_parts SET body = $2, off = off + $3, src = coalesce(src, body) "
          "WHERE body = $1"};
static const struct db_sql q_forget = {NULL,
                                       "DELETE FROM staged_parts WHERE body = $1 AND off = $2"};
/* Queued upload jobs with a staged body, of nodes silent for $2 ms, one
 * batch, rows locked so that two adopters never take the same job (the
 * second one's re-check of node sees the first one's, alive). */
static const struct db_sql q_adopt = {
    NULL, "WITH picked AS (SELECT j.id FROM jobs j JOIN nodes n ON n.id = j.node "
          "WHERE j.state = 'queued' AND j.kind = 'upload' AND j.staged IS NOT NULL "
          "AND j.node <> $1 AND n.seen_at < " NOW_MS " - $2 "
          "ORDER BY j.created_at, j.pos LIMIT $3 FOR UPDATE OF j SKIP LOCKED) "
          "UPDATE jobs j SET node = $1 FROM picked WHERE j.id = picked.id"};

static bool cluster(const struct catalog *cat)
{
    return db_dialect(cat->db) == DB_POSTGRES;
}

int catalog_staged_add(struct db *db, const char *body, const char *part, uint64_t off,
                       uint64_t len, int64_t now)
{
    if (db_dialect(db) != DB_POSTGRES)
        return 0;
    if (body == NULL || part == NULL || off > INT64_MAX || len > INT64_MAX)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(db, &q_add, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, body);
    db_bind_i64(s, 2, (int64_t)off);
    db_bind_i64(s, 3, (int64_t)len);
    db_bind_text(s, 4, part);
    db_bind_i64(s, 5, now);
    rc = db_exec(s, "staged part add");
    return rc < 0 ? rc : 0;
}

int catalog_staged_move(struct db *db, const char *from, const char *to, uint64_t base,
                        uint64_t len)
{
    if (db_dialect(db) != DB_POSTGRES)
        return 0;
    if (from == NULL || to == NULL || base > INT64_MAX || len > INT64_MAX - base)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(db, &q_len, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, from);
    rc = db_step(s, "staged body length");
    int64_t have = -1, parts = 0;
    if (rc == DB_ROW) {
        have = db_col_i64(s, 0);
        parts = db_col_i64(s, 1);
    }
    db_reset(s);
    if (rc < 0)
        return rc;
    if (have != (int64_t)len) {
        log_error("catalog: staged body %s holds %lld bytes in %lld part(s), its upload %llu", from,
                  (long long)have, (long long)parts, (unsigned long long)len);
        return -EIO;
    }
    if (parts == 0)
        return 0;
    rc = db_prepare(db, &q_move, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, from);
    db_bind_text(s, 2, to);
    db_bind_i64(s, 3, (int64_t)base);
    rc = db_exec(s, "staged parts move");
    return rc < 0 ? rc : 0;
}

static int read_parts(struct catalog *cat, const struct db_sql *q, const char *body, int64_t max,
                      struct dr_staged_part **out, size_t *n_out, const char *what)
{
    *out = NULL;
    *n_out = 0;
    if (!cluster(cat))
        return 0;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, q, &s);
    if (rc < 0)
        return rc;
    if (body != NULL)
        db_bind_text(s, 1, body);
    else
        db_bind_i64(s, 1, max);
    struct dr_staged_part *v = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, what)) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            v = xrealloc(v, cap * sizeof *v);
        }
        db_col_copy(s, 0, v[n].body, sizeof v[n].body);
        db_col_copy(s, 1, v[n].part, sizeof v[n].part);
        v[n].off = (uint64_t)db_col_i64(s, 2);
        v[n].len = (uint64_t)db_col_i64(s, 3);
        db_col_copy(s, 4, v[n].src, sizeof v[n].src);
        n++;
    }
    db_reset(s);
    if (rc < 0) {
        free(v);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

int catalog_staged_parts(struct catalog *cat, const char *body, struct dr_staged_part **out,
                         size_t *n_out)
{
    if (out == NULL || n_out == NULL)
        return -EINVAL;
    *out = NULL;
    *n_out = 0;
    if (cat == NULL || body == NULL)
        return -EINVAL;
    return read_parts(cat, &q_parts, body, 0, out, n_out, "staged parts");
}

int catalog_staged_garbage(struct catalog *cat, int max, struct dr_staged_part **out, size_t *n_out)
{
    if (out == NULL || n_out == NULL)
        return -EINVAL;
    *out = NULL;
    *n_out = 0;
    if (cat == NULL || max <= 0)
        return -EINVAL;
    return read_parts(cat, &q_garbage, NULL, DR_MIN(max, GARBAGE_MAX), out, n_out,
                      "staged garbage");
}

int catalog_staged_forget(struct catalog *cat, const char *body, uint64_t off)
{
    if (cat == NULL || body == NULL || off > INT64_MAX)
        return -EINVAL;
    if (!cluster(cat))
        return 0;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_forget, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, body);
    db_bind_i64(s, 2, (int64_t)off);
    rc = db_exec(s, "staged part forget");
    return rc < 0 ? rc : 0;
}

int catalog_staged_known(struct catalog *cat, const char *body, const char *part)
{
    if (cat == NULL || body == NULL || part == NULL)
        return -EINVAL;
    if (!cluster(cat))
        return 0;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_known, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, body);
    db_bind_text(s, 2, part);
    rc = db_step(s, "staged part known");
    int64_t n = rc == DB_ROW ? db_col_i64(s, 0) : 0;
    db_reset(s);
    return rc < 0 ? rc : n > 0;
}

int catalog_staged_adopt(struct catalog *cat, int64_t lease_ms, int max, int *adopted)
{
    if (adopted != NULL)
        *adopted = 0;
    if (cat == NULL || lease_ms <= 0 || max <= 0)
        return -EINVAL;
    if (!cluster(cat))
        return 0;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    struct db_stmt *s;
    rc = db_prepare(cat->db, &q_adopt, &s);
    int n = 0;
    if (rc == 0) {
        db_bind_text(s, 1, cat->node);
        db_bind_i64(s, 2, lease_ms);
        db_bind_i64(s, 3, max);
        rc = db_exec(s, "adopt staged jobs");
        if (rc >= 0) {
            n = rc;
            rc = 0;
        }
    }
    /* this node's starters (and only they may claim them) hear of it */
    if (rc == 0 && n > 0)
        rc = db_notify(cat->db, CATALOG_CHANNEL_JOBS, "upload");
    rc = db_end(cat->db, rc);
    if (rc == 0 && n > 0)
        log_info("catalog: adopted %d upload job(s) of nodes silent for %lld ms (staged bodies)", n,
                 (long long)lease_ms);
    if (rc == 0 && adopted != NULL)
        *adopted = n;
    return rc;
}

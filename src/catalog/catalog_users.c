/* catalog_users.c - the users table and per-user usage.
 *
 * What: the users of the config, upserted (never deleted: a user who
 * leaves the config keeps their media, and other modules' tests use the
 * catalog without syncing users), and the usage ranking (docs/CATALOG.md,
 * "Usage").
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees: catalog_sync_users is one transaction; catalog_usage and
 * catalog_user_load are one statement each (one snapshot).
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "catalog_users.h"
#include "db.h"
#include "dripd/config.h"
#include "dripd/util.h"

static const struct db_sql q_upsert = {
    "INSERT INTO users(name, admin, created_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (name) DO UPDATE SET admin = excluded.admin",
    NULL};
static const struct db_sql q_exists = {"SELECT 1 FROM users WHERE name = $1", NULL};
/* One user's quota load: media bytes (media_owner), open tus uploads'
 * bytes, and pending jobs (jobs_claim: only pending rows are read). */
static const struct db_sql q_user_load = {
    "SELECT (SELECT COALESCE(SUM(size), 0) FROM media WHERE owner = $1 AND state <> 'failed') + "
    "(SELECT COALESCE(SUM(CASE WHEN length >= 0 THEN length ELSE \"offset\" END), 0) FROM tus "
    "WHERE owner = $1 AND job_id IS NULL), "
    "(SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running') AND owner = $1)",
    NULL};
/* Every known user (even without media) and every owner, ranked by the
 * bytes and then the number of their own live media. */
static const struct db_sql q_usage = {
    "WITH u(name) AS (SELECT name FROM users UNION SELECT owner FROM media) "
    "SELECT u.name, count(m.id), coalesce(sum(m.size), 0) AS bytes FROM u "
    "LEFT JOIN media m ON m.owner = u.name AND m.state <> 'failed' "
    "GROUP BY u.name ORDER BY bytes DESC, count(m.id) DESC, u.name",
    NULL};

int catalog_sync_users(struct catalog *cat, const struct dr_config *cfg)
{
    if (cat == NULL || cfg == NULL)
        return -EINVAL;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    int64_t now = dr_now_ms();
    for (size_t i = 0; i < cfg->n_users && rc == 0; i++) {
        if (cfg->users[i].name == NULL)
            continue;
        struct db_stmt *s;
        rc = db_prepare(cat->db, &q_upsert, &s);
        if (rc < 0)
            break;
        db_bind_text(s, 1, cfg->users[i].name);
        db_bind_i64(s, 2, cfg->users[i].admin ? 1 : 0);
        db_bind_i64(s, 3, now);
        rc = db_exec(s, "sync users");
        rc = rc < 0 ? rc : 0;
    }
    return db_end(cat->db, rc);
}

int catalog_user_exists(struct db *db, const char *name)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_exists, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, name);
    rc = db_step(s, "share: user");
    db_reset(s);
    if (rc < 0)
        return rc;
    return rc == DB_ROW ? 0 : -ENOENT;
}

void catalog_usage_free(struct dr_usage *u, size_t n)
{
    for (size_t i = 0; u != NULL && i < n; i++)
        free(u[i].user);
    free(u);
}

int catalog_usage(struct catalog *cat, struct dr_usage **out, size_t *n_out)
{
    if (out != NULL)
        *out = NULL;
    if (n_out != NULL)
        *n_out = 0;
    if (cat == NULL || out == NULL || n_out == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_usage, &s);
    if (rc < 0)
        return rc;
    struct dr_usage *u = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "usage")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            u = xrealloc(u, cap * sizeof *u);
        }
        u[n].user = db_col_strdup(s, 0);
        u[n].files = (uint64_t)db_col_i64(s, 1);
        u[n].bytes = (uint64_t)db_col_i64(s, 2);
        n++;
    }
    db_reset(s);
    if (rc < 0) {
        catalog_usage_free(u, n);
        return rc;
    }
    *out = u;
    *n_out = n;
    return 0;
}

int catalog_user_load(struct catalog *cat, const char *user, struct dr_user_load *out)
{
    memset(out, 0, sizeof *out);
    if (cat == NULL || user == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_user_load, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, user);
    rc = db_step(s, "user load");
    if (rc == DB_ROW) {
        int64_t b = db_col_i64(s, 0), j = db_col_i64(s, 1);
        out->bytes = b > 0 ? (uint64_t)b : 0;
        out->pending_jobs = j > 0 ? (uint64_t)j : 0;
        rc = 0;
    } else if (rc == DB_DONE) {
        rc = -EIO;
    }
    db_reset(s);
    return rc;
}

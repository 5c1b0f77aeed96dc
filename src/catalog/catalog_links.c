/* catalog_links.c - public links (catalog_links.h): stored, revocable,
 * optionally expiring and download-limited links to one media.
 *
 * What: the `links` table (docs/CATALOG.md, "Public links"): create,
 * read, list, revoke, and the counted use of a link.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees:
 *  - A link is created only on a media its owner owns, in the same write
 *    transaction that checks it.
 *  - catalog_link_count is one UPDATE that checks expiry and limit and
 *    increments together, so concurrent uses (any thread, process or
 *    node) never count past max_downloads; in PostgreSQL the row lock of
 *    the UPDATE serialises them the same way.
 *  - No secret is stored (the URL token is derived in src/api/link.c).
 */
#include "dripd/catalog_links.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "db.h"
#include "dripd/util.h"

#define LINK_COLS                                                                                  \
    "l.id, l.owner, l.media_id, m.path, m.state, l.created_at, l.expires_at, l.max_downloads, "    \
    "l.downloads"

static const struct db_sql q_owned = {"SELECT 1 FROM media WHERE id = $1 AND owner = $2", NULL};
static const struct db_sql q_insert = {
    "INSERT INTO links(id, owner, media_id, created_at, expires_at, max_downloads, downloads) "
    "VALUES ($1, $2, $3, $4, $5, $6, 0)",
    NULL};
static const struct db_sql q_get = {
    "SELECT " LINK_COLS " FROM links l JOIN media m ON m.id = l.media_id WHERE l.id = $1 "
    "AND m.retired IS NULL",
    NULL};
static const struct db_sql q_list = {
    "SELECT " LINK_COLS " FROM links l JOIN media m ON m.id = l.media_id WHERE l.owner = $1 "
    "AND ($2 IS NULL OR l.media_id = $2) ORDER BY l.created_at DESC, l.id DESC",
    NULL};
static const struct db_sql q_delete = {"DELETE FROM links WHERE id = $1 AND owner = $2", NULL};
static const struct db_sql q_count = {"UPDATE links SET downloads = downloads + 1 WHERE id = $1 "
                                      "AND (max_downloads = 0 OR downloads < max_downloads) "
                                      "AND (expires_at = 0 OR expires_at > $2) RETURNING downloads",
                                      NULL};
static const struct db_sql q_why = {
    "SELECT CASE WHEN expires_at <> 0 AND expires_at <= $2 THEN 1 ELSE 0 END FROM links "
    "WHERE id = $1",
    NULL};

static void read_link(struct db_stmt *s, struct dr_link *l)
{
    memset(l, 0, sizeof *l);
    db_col_copy(s, 0, l->id, sizeof l->id);
    l->owner = db_col_strdup(s, 1);
    db_col_copy(s, 2, l->media_id, sizeof l->media_id);
    l->path = db_col_strdup(s, 3);
    l->state = db_col_strdup(s, 4);
    l->created_at = db_col_i64(s, 5);
    l->expires_at = db_col_i64(s, 6);
    l->max_downloads = db_col_i64(s, 7);
    l->downloads = db_col_i64(s, 8);
}

void dr_link_clear(struct dr_link *l)
{
    if (l == NULL)
        return;
    free(l->owner);
    free(l->path);
    free(l->state);
    memset(l, 0, sizeof *l);
}

void catalog_links_free(struct dr_link *l, size_t n)
{
    for (size_t i = 0; l != NULL && i < n; i++)
        dr_link_clear(&l[i]);
    free(l);
}

/* Run a bound statement expected to give at most one link row. */
static int one_link(struct db_stmt *s, struct dr_link *out, const char *what)
{
    int rc = db_step(s, what);
    if (rc == DB_ROW) {
        read_link(s, out);
        rc = 0;
    } else if (rc == DB_DONE) {
        rc = -ENOENT;
    }
    db_reset(s);
    return rc;
}

int catalog_link_get(struct catalog *cat, const char *id, struct dr_link *out)
{
    if (cat == NULL || id == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_get, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    return one_link(s, out, "link get");
}

int catalog_link_create(struct catalog *cat, const char *media_id, const char *owner,
                        int64_t expires_at, int64_t max_downloads, struct dr_link *out)
{
    if (cat == NULL || media_id == NULL || owner == NULL || out == NULL || expires_at < 0 ||
        max_downloads < 0)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    char id[DR_ID_LEN + 1];
    dr_id_new(id);
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    struct db_stmt *s;
    rc = db_prepare(cat->db, &q_owned, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, media_id);
    db_bind_text(s, 2, owner);
    rc = db_step(s, "link: media owner");
    db_reset(s);
    if (rc < 0)
        goto out;
    if (rc != DB_ROW) {
        rc = -ENOENT;
        goto out;
    }
    rc = db_prepare(cat->db, &q_insert, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    db_bind_text(s, 3, media_id);
    db_bind_i64(s, 4, dr_now_ms());
    db_bind_i64(s, 5, expires_at);
    db_bind_i64(s, 6, max_downloads);
    rc = db_exec(s, "link create");
    if (rc < 0)
        goto out;
    rc = db_prepare(cat->db, &q_get, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, id);
    rc = one_link(s, out, "link read back");
out:
    rc = db_end(cat->db, rc);
    if (rc < 0)
        dr_link_clear(out);
    return rc;
}

int catalog_links_list(struct catalog *cat, const char *owner, const char *media_id,
                       struct dr_link **out, size_t *n_out)
{
    if (cat == NULL || owner == NULL || out == NULL || n_out == NULL)
        return -EINVAL;
    *out = NULL;
    *n_out = 0;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_list, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, owner);
    db_bind_text(s, 2, media_id);
    struct dr_link *v = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "links list")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            v = xrealloc(v, cap * sizeof *v);
        }
        read_link(s, &v[n++]);
    }
    db_reset(s);
    if (rc < 0) {
        catalog_links_free(v, n);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

int catalog_link_delete(struct catalog *cat, const char *id, const char *owner)
{
    if (cat == NULL || id == NULL || owner == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_delete, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    rc = db_exec(s, "link revoke");
    if (rc < 0)
        return rc;
    return rc == 0 ? -ENOENT : 0;
}

int catalog_link_count(struct catalog *cat, const char *id, int64_t now_ms, int64_t *downloads)
{
    if (cat == NULL || id == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_count, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_i64(s, 2, now_ms);
    int64_t n = 0;
    bool counted = false;
    while ((rc = db_step(s, "link count")) == DB_ROW) {
        n = db_col_i64(s, 0);
        counted = true;
    }
    db_reset(s);
    if (rc < 0)
        return rc;
    if (counted) {
        if (downloads != NULL)
            *downloads = n;
        return 0;
    }
    /* Why not: gone, expired or used up (a read after the fact; the
     * UPDATE above is what decided). */
    rc = db_prepare(cat->db, &q_why, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_i64(s, 2, now_ms);
    rc = db_step(s, "link state");
    bool expired = rc == DB_ROW && db_col_i64(s, 0) != 0;
    db_reset(s);
    if (rc < 0)
        return rc;
    if (rc == DB_DONE)
        return -ENOENT;
    return expired ? -ETIME : -EDQUOT;
}

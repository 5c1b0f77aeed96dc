/* catalog_shares.c - sharing that can be taken back (catalog_shares.h):
 * the shares of one media, unsharing, and folder shares.
 *
 * What: reads and writes of the `shares` rows other than the one that
 * shares (catalog_media_share, in catalog_media.c, which also owns the
 * visibility rule that reads both tables), and the `folder_shares` table
 * (docs/CATALOG.md, "Sharing").
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees:
 *  - The owner's own link in `shares` is never listed and never removed
 *    here: it goes with the media.
 *  - A folder share is checked against the owner's tree in the same write
 *    transaction that inserts it (a folder exists while the owner has a
 *    file below it).
 *  - A folder share row carries its descendant range (lo, hi), computed
 *    here exactly as the listing computes it, so visibility is a range
 *    test and the root "/" needs no special case.
 */
#include "dripd/catalog_shares.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "catalog_media.h"
#include "catalog_users.h"
#include "db.h"
#include "dripd/util.h"

static const struct db_sql q_owned = {
    "SELECT owner FROM media WHERE id = $1 AND ($2 IS NULL OR owner = $2)", NULL};
/* The media's own shares (folder NULL) and the folder shares that cover
 * it, by user, then the time shared. */
static const struct db_sql q_list = {
    "SELECT s.\"user\", NULL, s.created_at FROM shares s WHERE s.media_id = $1 "
    "AND s.\"user\" <> $2 "
    "UNION ALL "
    "SELECT fs.\"user\", fs.path, fs.created_at FROM folder_shares fs JOIN media m "
    "ON fs.owner = m.owner WHERE m.id = $1 "
    "AND (m.folder = fs.path OR (m.folder > fs.lo AND m.folder < fs.hi)) "
    "ORDER BY 1, 3",
    NULL};
static const struct db_sql q_unshare = {
    "DELETE FROM shares WHERE media_id = $1 AND \"user\" = $2 AND \"user\" <> $3", NULL};
static const struct db_sql q_folder_insert = {
    "INSERT INTO folder_shares(owner, path, \"user\", lo, hi, created_at) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (owner, path, \"user\") DO NOTHING",
    NULL};
static const struct db_sql q_folder_delete = {
    "DELETE FROM folder_shares WHERE owner = $1 AND path = $2 AND \"user\" = $3", NULL};
static const struct db_sql q_folder_list = {
    "SELECT path, \"user\", created_at FROM folder_shares WHERE owner = $1 "
    "AND ($2 IS NULL OR path = $2) ORDER BY path, \"user\"",
    NULL};

/* The descendant range of folder path: ("/a/", "/a0"); for the root
 * ("/", "0"). Heap copies. */
static void folder_range(const char *path, char **lo, char **hi)
{
    *lo = strcmp(path, "/") == 0 ? xstrdup("/") : xasprintf("%s/", path);
    *hi = xstrdup(*lo);
    (*hi)[strlen(*hi) - 1] = '0';
}

/* The owner of media id if owner (NULL: anyone) owns it: heap copy in
 * *row_owner; -ENOENT otherwise. */
static int owner_of(struct db *db, const char *id, const char *owner, char **row_owner)
{
    *row_owner = NULL;
    struct db_stmt *s;
    int rc = db_prepare(db, &q_owned, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    rc = db_step(s, "shares: media owner");
    if (rc == DB_ROW)
        *row_owner = db_col_strdup(s, 0);
    db_reset(s);
    if (rc < 0)
        return rc;
    return *row_owner != NULL ? 0 : -ENOENT;
}

void catalog_shares_free(struct dr_share *s, size_t n)
{
    for (size_t i = 0; s != NULL && i < n; i++) {
        free(s[i].user);
        free(s[i].folder);
    }
    free(s);
}

int catalog_shares_list(struct catalog *cat, const char *id, const char *owner,
                        struct dr_share **out, size_t *n_out)
{
    if (cat == NULL || id == NULL || out == NULL || n_out == NULL)
        return -EINVAL;
    *out = NULL;
    *n_out = 0;
    char *row_owner = NULL;
    int rc = owner_of(cat->db, id, owner, &row_owner);
    if (rc < 0)
        return rc;
    struct dr_share *v = NULL;
    size_t n = 0, cap = 0;
    struct db_stmt *s;
    rc = db_prepare(cat->db, &q_list, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, row_owner);
    while ((rc = db_step(s, "shares list")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n].user = db_col_strdup(s, 0);
        v[n].folder = db_col_strdup(s, 1);
        v[n].created_at = db_col_i64(s, 2);
        n++;
    }
    db_reset(s);
    if (rc < 0)
        goto out;
    rc = 0;
    *out = v;
    *n_out = n;
    v = NULL;
out:
    catalog_shares_free(v, n);
    free(row_owner);
    return rc;
}

int catalog_media_unshare(struct catalog *cat, const char *id, const char *owner, const char *user)
{
    if (cat == NULL || id == NULL || user == NULL)
        return -EINVAL;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    char *row_owner = NULL;
    rc = owner_of(cat->db, id, owner, &row_owner);
    if (rc == 0) {
        struct db_stmt *s;
        rc = db_prepare(cat->db, &q_unshare, &s);
        if (rc == 0) {
            db_bind_text(s, 1, id);
            db_bind_text(s, 2, user);
            db_bind_text(s, 3, row_owner);
            rc = db_exec(s, "unshare");
            if (rc >= 0)
                rc = rc == 0 ? -ESRCH : 0;
        }
    }
    free(row_owner);
    return db_end(cat->db, rc);
}

/* ---- folder shares ------------------------------------------------------ */

int catalog_folder_share(struct catalog *cat, const char *owner, const char *path, const char *user,
                         bool *created)
{
    if (created != NULL)
        *created = false;
    if (cat == NULL || owner == NULL || path == NULL || path[0] != '/' || user == NULL)
        return -EINVAL;
    if (strcmp(owner, user) == 0)
        return -EINVAL;
    char *lo, *hi;
    folder_range(path, &lo, &hi);
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        goto out;
    /* The root always exists; any other folder while something is below it. */
    if (strcmp(path, "/") != 0) {
        rc = catalog_path_clash(cat->db, owner, path, "");
        if (rc >= 0)
            rc = rc == DR_PATH_FOLDER ? 0 : -ENOENT;
    }
    if (rc == 0 && catalog_user_exists(cat->db, user) == -ENOENT)
        rc = -ESRCH;
    if (rc == 0) {
        struct db_stmt *s;
        rc = db_prepare(cat->db, &q_folder_insert, &s);
        if (rc == 0) {
            db_bind_text(s, 1, owner);
            db_bind_text(s, 2, path);
            db_bind_text(s, 3, user);
            db_bind_text(s, 4, lo);
            db_bind_text(s, 5, hi);
            db_bind_i64(s, 6, dr_now_ms());
            rc = db_exec(s, "folder share");
            if (rc >= 0) {
                if (created != NULL)
                    *created = rc == 1;
                rc = 0;
            }
        }
    }
    rc = db_end(cat->db, rc);
out:
    free(lo);
    free(hi);
    return rc;
}

int catalog_folder_unshare(struct catalog *cat, const char *owner, const char *path,
                           const char *user)
{
    if (cat == NULL || owner == NULL || path == NULL || user == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_folder_delete, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, owner);
    db_bind_text(s, 2, path);
    db_bind_text(s, 3, user);
    rc = db_exec(s, "folder unshare");
    if (rc < 0)
        return rc;
    return rc == 0 ? -ENOENT : 0;
}

void catalog_folder_shares_free(struct dr_folder_share *s, size_t n)
{
    for (size_t i = 0; s != NULL && i < n; i++) {
        free(s[i].path);
        free(s[i].user);
    }
    free(s);
}

int catalog_folder_shares_list(struct catalog *cat, const char *owner, const char *path,
                               struct dr_folder_share **out, size_t *n_out)
{
    if (cat == NULL || owner == NULL || out == NULL || n_out == NULL)
        return -EINVAL;
    *out = NULL;
    *n_out = 0;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_folder_list, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, owner);
    db_bind_text(s, 2, path);
    struct dr_folder_share *v = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "folder shares list")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n].path = db_col_strdup(s, 0);
        v[n].user = db_col_strdup(s, 1);
        v[n].created_at = db_col_i64(s, 2);
        n++;
    }
    db_reset(s);
    if (rc < 0) {
        catalog_folder_shares_free(v, n);
        return rc;
    }
    *out = v;
    *n_out = n;
    return 0;
}

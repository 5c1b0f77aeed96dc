/* catalog_folders.c - folders as first-class (catalog_folders.h): make an
 * empty folder, move or rename a folder with everything in it, delete a
 * folder with everything in it.
 *
 * What: the `folders` table (folders made on their own) and the folder
 * operations over `media`, `folders` and `folder_shares` (docs/CATALOG.md,
 * "Folders"). Everything below folder F is one byte-order range, as in the
 * listing: the media whose folder is F or in (F + "/", F + "0"), the made
 * folders and folder shares whose path is F or in that range.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees:
 *  - Each operation is ONE write transaction: a move is seen whole or not
 *    at all, by every reader, and a crash leaves the old tree or the new.
 *  - The checks run inside it, through catalog_path_clash, whose first
 *    statement takes the owner's path lock on PostgreSQL (SQLite's write
 *    lock serialises them anyway), so no concurrent upload or move can
 *    slip a file into the place being taken.
 *  - A move rewrites paths with one UPDATE per table. The target's range
 *    holds nothing (it is checked free, and it is neither inside the
 *    source nor, being free, above it), so no rewritten path can meet
 *    another and no unique index can object, whatever order the rows are
 *    visited in.
 *  - Ids never change: shares, public links, variants, jobs and cache
 *    entries are keyed by id and follow without being touched.
 */
#include "dripd/catalog_folders.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "catalog_media.h"
#include "db.h"
#include "dripd/path.h"
#include "dripd/util.h"

/* $1 owner, $2 F, $3 F + "/", $4 F + "0" (below F, for media: by folder) */
#define MEDIA_BELOW "owner = $1 AND (folder = $2 OR (folder > $3 AND folder < $4))"
/* ... and for rows whose path is the folder itself (made folders, shares) */
#define PATH_AT_OR_BELOW "owner = $1 AND (path = $2 OR (path > $3 AND path < $4))"

static const struct db_sql q_insert = {
    "INSERT INTO folders(owner, path, created_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (owner, path) DO NOTHING",
    NULL};
/* The longest path a move would produce, in bytes ($5: to's length minus
 * from's); a path is at most DR_PATH_MAX bytes. */
static const struct db_sql q_longest = {"SELECT coalesce(max(length(CAST(path AS BLOB))), 0) FROM ("
                                        "SELECT path FROM media WHERE " MEDIA_BELOW " UNION ALL "
                                        "SELECT path FROM folders WHERE " PATH_AT_OR_BELOW ") AS p",
                                        "SELECT coalesce(max(octet_length(path)), 0) FROM ("
                                        "SELECT path FROM media WHERE " MEDIA_BELOW " UNION ALL "
                                        "SELECT path FROM folders WHERE " PATH_AT_OR_BELOW
                                        ") AS p"};
/* $5 the new F. substr and length count characters on both engines, so
 * the cut is at F's end whatever its UTF-8. */
static const struct db_sql q_move_media = {
    "UPDATE media SET path = $5 || substr(path, length($2) + 1), "
    "folder = $5 || substr(folder, length($2) + 1) WHERE " MEDIA_BELOW,
    NULL};
static const struct db_sql q_move_folders = {
    "UPDATE folders SET path = $5 || substr(path, length($2) + 1) WHERE " PATH_AT_OR_BELOW, NULL};
static const struct db_sql q_move_shares = {
    "UPDATE folder_shares SET path = $5 || substr(path, length($2) + 1), "
    "lo = $5 || substr(path, length($2) + 1) || '/', "
    "hi = $5 || substr(path, length($2) + 1) || '0' WHERE " PATH_AT_OR_BELOW,
    NULL};
static const struct db_sql q_below_media = {
    "SELECT id, storage_key FROM media WHERE " MEDIA_BELOW " ORDER BY id", NULL};
static const struct db_sql q_below_variants = {
    "SELECT v.media_id, v.name, v.storage_key FROM variants v WHERE v.media_id IN "
    "(SELECT id FROM media WHERE " MEDIA_BELOW ") ORDER BY v.media_id, v.name",
    NULL};
static const struct db_sql q_delete_shares = {
    "DELETE FROM shares WHERE media_id IN (SELECT id FROM media WHERE " MEDIA_BELOW ")", NULL};
static const struct db_sql q_delete_links = {
    "DELETE FROM links WHERE media_id IN (SELECT id FROM media WHERE " MEDIA_BELOW ")", NULL};
static const struct db_sql q_delete_variants = {
    "DELETE FROM variants WHERE media_id IN (SELECT id FROM media WHERE " MEDIA_BELOW ")", NULL};
static const struct db_sql q_delete_media = {"DELETE FROM media WHERE " MEDIA_BELOW, NULL};
static const struct db_sql q_delete_folders = {"DELETE FROM folders WHERE " PATH_AT_OR_BELOW, NULL};
static const struct db_sql q_delete_fshares = {"DELETE FROM folder_shares WHERE " PATH_AT_OR_BELOW,
                                               NULL};
/* $5 now: the live files below go to the trash, as one file's delete does
 * (catalog_media_trash: shares, links, variants and earlier versions stay) */
static const struct db_sql q_live_below = {
    "SELECT id FROM media WHERE retired IS NULL AND " MEDIA_BELOW " ORDER BY id", NULL};
static const struct db_sql q_trash_media = {
    "UPDATE media SET retired = 'trash', retired_at = $5 WHERE retired IS NULL AND " MEDIA_BELOW,
    NULL};

/* F's descendant range (F + "/", F + "0"); F is not the root. */
static void range_of(const char *f, char **lo, char **hi)
{
    *lo = xasprintf("%s/", f);
    *hi = xasprintf("%s0", f);
}

/* Bind $1..$4 (owner, F and its range) of a statement over F. */
static void bind_range(struct db_stmt *s, const char *owner, const char *f, const char *lo,
                       const char *hi)
{
    db_bind_text(s, 1, owner);
    db_bind_text(s, 2, f);
    db_bind_text(s, 3, lo);
    db_bind_text(s, 4, hi);
}

/* Run a statement over F's range ($5 extra, may be NULL): rows changed,
 * or -errno. */
static int exec_range(struct db *db, const struct db_sql *q, const char *owner, const char *f,
                      const char *lo, const char *hi, const char *extra, const char *what)
{
    struct db_stmt *s;
    int rc = db_prepare(db, q, &s);
    if (rc < 0)
        return rc;
    bind_range(s, owner, f, lo, hi);
    if (extra != NULL)
        db_bind_text(s, 5, extra);
    return db_exec(s, what);
}

int catalog_folder_create(struct catalog *cat, const char *owner, const char *path, bool *created,
                          int *clash)
{
    if (created != NULL)
        *created = false;
    if (clash != NULL)
        *clash = 0;
    if (cat == NULL || owner == NULL || path == NULL || path[0] != '/')
        return -EINVAL;
    if (strcmp(path, "/") == 0)
        return -EINVAL;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    int c = catalog_path_clash(cat->db, owner, path, "");
    if (c < 0) {
        rc = c;
    } else if (c == DR_PATH_FILE || c == DR_PATH_UNDER_FILE) {
        if (clash != NULL)
            *clash = c;
        rc = -EEXIST;
    } else {
        struct db_stmt *s;
        rc = db_prepare(cat->db, &q_insert, &s);
        if (rc == 0) {
            db_bind_text(s, 1, owner);
            db_bind_text(s, 2, path);
            db_bind_i64(s, 3, dr_now_ms());
            rc = db_exec(s, "folder create");
            if (rc >= 0) {
                if (created != NULL)
                    *created = c == 0; /* no folder was there, made or implied */
                rc = 0;
            }
        }
    }
    return db_end(cat->db, rc);
}

/* Is `inner` F itself or below it? */
static bool at_or_below(const char *inner, const char *f)
{
    size_t n = strlen(f);
    return strncmp(inner, f, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

int catalog_folder_move(struct catalog *cat, const char *owner, const char *from, const char *to,
                        uint64_t *moved, int *clash)
{
    if (moved != NULL)
        *moved = 0;
    if (clash != NULL)
        *clash = 0;
    if (cat == NULL || owner == NULL || from == NULL || to == NULL || from[0] != '/' ||
        to[0] != '/')
        return -EINVAL;
    if (strcmp(from, "/") == 0 || strcmp(to, "/") == 0)
        return -EINVAL;
    bool same = strcmp(from, to) == 0;
    if (!same && at_or_below(to, from))
        return -EINVAL;
    char *lo, *hi;
    range_of(from, &lo, &hi);
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        goto out;
    /* (A folder that holds only failed uploads is no DR_PATH_FOLDER, but
     * it is listed, so it moves too: "nothing moved" is what says absent.) */
    int c = catalog_path_clash(cat->db, owner, from, "");
    if (c < 0) {
        rc = c;
        goto end;
    }
    if (c == DR_PATH_FILE || c == DR_PATH_UNDER_FILE || (same && c != DR_PATH_FOLDER)) {
        rc = -ENOENT;
        goto end;
    }
    if (same)
        goto end;
    c = catalog_path_clash(cat->db, owner, to, "");
    if (c != 0) {
        if (c > 0 && clash != NULL)
            *clash = c;
        rc = c < 0 ? c : -EEXIST;
        goto end;
    }
    /* No path may grow past DR_PATH_MAX bytes. */
    struct db_stmt *s;
    if ((rc = db_prepare(cat->db, &q_longest, &s)) < 0)
        goto end;
    bind_range(s, owner, from, lo, hi);
    rc = db_step(s, "folder move: longest path");
    int64_t longest = rc == DB_ROW ? db_col_i64(s, 0) : 0;
    db_reset(s);
    if (rc < 0)
        goto end;
    if (longest - (int64_t)strlen(from) + (int64_t)strlen(to) > DR_PATH_MAX) {
        rc = -ENAMETOOLONG;
        goto end;
    }
    int files = exec_range(cat->db, &q_move_media, owner, from, lo, hi, to, "folder move: media");
    int made = files < 0 ? files
                         : exec_range(cat->db, &q_move_folders, owner, from, lo, hi, to,
                                      "folder move: folders");
    rc = made < 0
             ? made
             : exec_range(cat->db, &q_move_shares, owner, from, lo, hi, to, "folder move: shares");
    if (rc >= 0)
        rc = files + made == 0 ? -ENOENT : 0;
    if (rc == 0 && moved != NULL)
        *moved = (uint64_t)files;
end:
    rc = db_end(cat->db, rc);
    if (rc < 0 && moved != NULL)
        *moved = 0;
out:
    free(lo);
    free(hi);
    return rc;
}

void catalog_gone_free(struct dr_gone *g, size_t n)
{
    for (size_t i = 0; g != NULL && i < n; i++) {
        free(g[i].storage_key);
        for (size_t k = 0; k < g[i].n_variants; k++) {
            free(g[i].variant_names[k]);
            free(g[i].variant_keys[k]);
        }
        free(g[i].variant_names);
        free(g[i].variant_keys);
    }
    free(g);
}

/* The media below F and their variants' objects, into *out (both ordered
 * by media id, so one merge pass joins them). */
static int read_gone(struct db *db, const char *owner, const char *f, const char *lo,
                     const char *hi, struct dr_gone **out, size_t *n_out)
{
    struct dr_gone *g = NULL;
    size_t n = 0, cap = 0;
    struct db_stmt *s;
    int rc = db_prepare(db, &q_below_media, &s);
    if (rc < 0)
        return rc;
    bind_range(s, owner, f, lo, hi);
    while ((rc = db_step(s, "folder delete: media")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            g = xrealloc(g, cap * sizeof *g);
        }
        memset(&g[n], 0, sizeof g[n]);
        db_col_copy(s, 0, g[n].id, sizeof g[n].id);
        g[n].storage_key = db_col_strdup(s, 1);
        n++;
    }
    db_reset(s);
    if (rc < 0 || (rc = db_prepare(db, &q_below_variants, &s)) < 0)
        goto out;
    bind_range(s, owner, f, lo, hi);
    size_t at = 0;
    while ((rc = db_step(s, "folder delete: variants")) == DB_ROW) {
        const char *mid = db_col_text(s, 0);
        while (at < n && mid != NULL && strcmp(g[at].id, mid) < 0)
            at++;
        if (at == n || mid == NULL || strcmp(g[at].id, mid) != 0)
            continue; /* (cannot be: same range, same transaction) */
        struct dr_gone *m = &g[at];
        m->variant_names = xrealloc(m->variant_names, (m->n_variants + 1) * sizeof(char *));
        m->variant_keys = xrealloc(m->variant_keys, (m->n_variants + 1) * sizeof(char *));
        m->variant_names[m->n_variants] = db_col_strdup(s, 1);
        m->variant_keys[m->n_variants] = db_col_strdup(s, 2);
        m->n_variants++;
    }
    db_reset(s);
out:
    if (rc < 0) {
        catalog_gone_free(g, n);
        return rc;
    }
    *out = g;
    *n_out = n;
    return 0;
}

/* The start of a folder's delete or trash: owner's folder path (not "/"),
 * its range into *lo / *hi (caller frees both), a transaction begun and
 * the folder checked to be one (not a file, nor under one). 0 inside the
 * transaction; else -errno with nothing open (-ENOENT not a folder,
 * -EINVAL for "/"). */
static int folder_begin(struct catalog *cat, const char *owner, const char *path, char **lo,
                        char **hi)
{
    *lo = *hi = NULL;
    if (cat == NULL || owner == NULL || path == NULL || path[0] != '/' || strcmp(path, "/") == 0)
        return -EINVAL;
    range_of(path, lo, hi);
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    int c = catalog_path_clash(cat->db, owner, path, "");
    if (c < 0 || c == DR_PATH_FILE || c == DR_PATH_UNDER_FILE) {
        rc = c < 0 ? c : -ENOENT;
        (void)db_end(cat->db, rc); /* rolls back */
        return rc;
    }
    return 0;
}

int catalog_folder_delete(struct catalog *cat, const char *owner, const char *path,
                          struct dr_gone **out, size_t *n_out)
{
    if (out != NULL)
        *out = NULL;
    if (n_out != NULL)
        *n_out = 0;
    if (out == NULL || n_out == NULL)
        return -EINVAL;
    char *lo, *hi;
    struct dr_gone *g = NULL;
    size_t n = 0;
    int rc = folder_begin(cat, owner, path, &lo, &hi);
    if (rc < 0)
        goto out;
    rc = read_gone(cat->db, owner, path, lo, hi, &g, &n);
    int made = 0;
    /* Shares, links and variants first, explicitly (the foreign keys
     * would cascade too), then the rows themselves. */
    static const struct {
        const struct db_sql *q;
        const char *what;
    } steps[] = {
        {&q_delete_shares, "folder delete: shares"},
        {&q_delete_links, "folder delete: public links"},
        {&q_delete_variants, "folder delete: variants"},
        {&q_delete_media, "folder delete: media"},
        {&q_delete_folders, "folder delete: folders"},
        {&q_delete_fshares, "folder delete: folder shares"},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(steps) && rc >= 0; i++) {
        rc = exec_range(cat->db, steps[i].q, owner, path, lo, hi, NULL, steps[i].what);
        if (steps[i].q == &q_delete_folders && rc > 0)
            made = rc;
    }
    /* (as in the move: a folder of failed uploads only is listed, so it
     * is deleted too; nothing at all there is absent) */
    if (rc >= 0)
        rc = n == 0 && made == 0 ? -ENOENT : 0;
    rc = db_end(cat->db, rc);
    if (rc == 0) {
        *out = g;
        *n_out = n;
    } else {
        catalog_gone_free(g, n);
    }
out:
    free(lo);
    free(hi);
    return rc;
}

int catalog_folder_trash(struct catalog *cat, const char *owner, const char *path, int64_t now_ms,
                         char (**ids)[DR_ID_LEN + 1], size_t *n_out)
{
    if (ids != NULL)
        *ids = NULL;
    if (n_out != NULL)
        *n_out = 0;
    if (ids == NULL || n_out == NULL)
        return -EINVAL;
    char *lo, *hi;
    struct db_stmt *s;
    char(*got)[DR_ID_LEN + 1] = NULL;
    size_t n = 0, cap = 0;
    int trashed = 0, made = 0;
    int rc = folder_begin(cat, owner, path, &lo, &hi);
    if (rc < 0)
        goto out;
    /* the ids first (for their trash marks in the store), then the rows */
    if ((rc = db_prepare(cat->db, &q_live_below, &s)) < 0)
        goto end;
    bind_range(s, owner, path, lo, hi);
    while ((rc = db_step(s, "folder to trash: ids")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            got = xrealloc(got, cap * sizeof *got);
        }
        db_col_copy(s, 0, got[n++], DR_ID_LEN + 1);
    }
    db_reset(s);
    if (rc < 0 || (rc = db_prepare(cat->db, &q_trash_media, &s)) < 0)
        goto end;
    bind_range(s, owner, path, lo, hi);
    db_bind_i64(s, 5, now_ms);
    rc = trashed = db_exec(s, "folder to trash: media");
    if (rc >= 0)
        rc = made = exec_range(cat->db, &q_delete_folders, owner, path, lo, hi, NULL,
                               "folder to trash: folders");
    if (rc >= 0)
        rc = exec_range(cat->db, &q_delete_fshares, owner, path, lo, hi, NULL,
                        "folder to trash: folder shares");
    if (rc >= 0)
        rc = trashed == 0 && made == 0 ? -ENOENT : 0;
end:
    rc = db_end(cat->db, rc);
    if (rc == 0) {
        *ids = got;
        *n_out = n;
        got = NULL;
    }
out:
    free(got);
    free(lo);
    free(hi);
    return rc;
}

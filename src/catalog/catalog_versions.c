/* catalog_versions.c - overwrite, earlier versions and the trash
 * (catalog_versions.h; docs/CATALOG.md, "Versions and the trash").
 *
 * What: the media rows' file_id / version / retired columns. An upload
 * that replaces a file (If-Match) is inserted "pending": it names the
 * file it replaces (file_id, next version) but holds no path while its
 * bytes are on their way; when its upload job makes it available
 * (catalog_versions_promote, in the same transaction as that step) it
 * takes the file's path and the row that held it becomes an earlier
 * version ("version"), or "purge" when versions.keep is 0, and versions
 * beyond keep become "purge". An upload that fails leaves the file as it
 * was. A rename (?conflict=rename) only picks a free name. A delete with
 * trash.ttl moves the row into the trash; the sweep (pipeline, once per
 * cluster) purges what expired.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees:
 *  - At most one row of a file holds its path; the unique index on
 *    (owner, path) covers only rows that are not retired, and every
 *    change here retires the old holder before the new one takes the
 *    path, in one transaction, under the owner's path lock on PostgreSQL
 *    (catalog_media_lock_owners), as inserts and moves do.
 *  - If-Match is decided in the intake's transaction: the ETag is the
 *    current row's sha256, and a file with a replacement still on its way
 *    matches no ETag (its ETag is about to move on), so of two writers
 *    with the same ETag one gets 412.
 *  - Nothing acknowledged is lost: a pending upload whose file was
 *    deleted meanwhile, and whose path is taken by then, goes to the trash
 *    rather than away.
 */
#include "dripd/catalog_versions.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "catalog_media.h"
#include "catalog_versions.h"
#include "db.h"
#include "dripd/path.h"
#include "dripd/util.h"

#define RENAME_MAX 9999 /* "name (9999).ext" is the last name tried */

static const struct db_sql q_live_at = {
    "SELECT id, sha256, file_id FROM media WHERE owner = $1 AND path = $2 AND state <> 'failed' "
    "AND retired IS NULL",
    NULL};
static const struct db_sql q_pending_of = {
    "SELECT 1 FROM media WHERE file_id = $1 AND retired = 'pending' AND state = 'queued'", NULL};
static const struct db_sql q_next_version = {
    "SELECT COALESCE(MAX(version), 0) + 1 FROM media WHERE file_id = $1", NULL};
static const struct db_sql q_retire = {
    "UPDATE media SET retired = $2, retired_at = $3 WHERE id = $1", NULL};
static const struct db_sql q_hold = {"UPDATE media SET retired = NULL, retired_at = 0, path = $2, "
                                     "folder = $3, name = $4 WHERE id = $1",
                                     NULL};
static const struct db_sql q_shares_copy = {
    "INSERT INTO shares(media_id, \"user\", created_at) SELECT $2, \"user\", created_at "
    "FROM shares WHERE media_id = $1 ON CONFLICT DO NOTHING",
    NULL};
static const struct db_sql q_shares_drop = {"DELETE FROM shares WHERE media_id = $1", NULL};
static const struct db_sql q_links_move = {"UPDATE links SET media_id = $2 WHERE media_id = $1",
                                           NULL};
static const struct db_sql q_trim = {
    "UPDATE media SET retired = 'purge' WHERE file_id = $1 AND retired = 'version' AND id NOT IN "
    "(SELECT id FROM media WHERE file_id = $1 AND retired = 'version' ORDER BY version DESC "
    "LIMIT $2)",
    NULL};
/* every file's earlier versions beyond the newest $1 (versions.keep
 * lowered since they were kept) */
static const struct db_sql q_trim_all = {
    "UPDATE media SET retired = 'purge' WHERE retired = 'version' AND "
    "(SELECT count(*) FROM media n WHERE n.file_id = media.file_id AND n.retired = 'version' "
    "AND n.version > media.version) >= $1",
    NULL};
static const struct db_sql q_purge_of = {
    "UPDATE media SET retired = 'purge', retired_at = $2 WHERE retired = 'version' "
    "AND id <> $1 AND file_id = (SELECT file_id FROM media WHERE id = $1 AND "
    "(retired IS NULL OR retired = 'trash'))",
    NULL};
static const struct db_sql q_row = {
    "SELECT " MEDIA_COLS " FROM media m WHERE m.id = $1 AND ($2 IS NULL OR m.owner = $2)", NULL};
static const struct db_sql q_current = {"SELECT " MEDIA_COLS
                                        " FROM media m WHERE m.file_id = $1 AND m.retired IS NULL "
                                        "AND m.state <> 'failed' AND m.id <> $2",
                                        NULL};
static const struct db_sql q_list = {
    "SELECT " MEDIA_COLS " FROM media m WHERE m.owner = $2 AND m.file_id = (SELECT file_id FROM "
    "media WHERE id = $1 AND owner = $2 AND (retired IS NULL OR retired <> 'purge')) "
    "AND (m.retired IS NULL OR m.retired <> 'purge') "
    "ORDER BY m.retired IS NOT NULL, m.version DESC",
    NULL};
static const struct db_sql q_version = {
    "SELECT " MEDIA_COLS " FROM media m WHERE m.owner = $2 AND m.version = $3 AND m.retired = "
    "'version' AND m.state = 'available' AND m.file_id = (SELECT file_id FROM media WHERE id = $1 "
    "AND owner = $2)",
    NULL};
static const struct db_sql q_trash_list = {
    "SELECT " MEDIA_COLS " FROM media m WHERE m.owner = $1 AND m.retired = 'trash' "
    "ORDER BY m.retired_at DESC, m.id",
    NULL};
static const struct db_sql q_trash = {
    "UPDATE media SET retired = 'trash', retired_at = $3 WHERE id = $1 AND owner = $2 "
    "AND retired IS NULL",
    NULL};
static const struct db_sql q_expire_trash = {
    "UPDATE media SET retired = 'purge' WHERE retired = 'trash' AND retired_at <= $1", NULL};
/* earlier versions and pending uploads of files that no longer exist, and
 * pending uploads that failed */
static const struct db_sql q_expire_orphans = {
    "UPDATE media SET retired = 'purge' WHERE (retired = 'pending' AND state = 'failed') OR "
    "(retired = 'version' AND NOT EXISTS (SELECT 1 FROM media c WHERE c.file_id = media.file_id "
    "AND (c.retired IS NULL OR c.retired IN ('trash', 'pending'))))",
    NULL};
static const struct db_sql q_purgeable = {
    "SELECT id FROM media WHERE retired = 'purge' AND state <> 'queued' ORDER BY retired_at, id "
    "LIMIT $1",
    NULL};

/* ---- small steps -------------------------------------------------------- */

static int exec_2(struct db *db, const struct db_sql *q, const char *a, const char *b,
                  const char *what)
{
    struct db_stmt *s;
    int rc = db_prepare(db, q, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, a);
    db_bind_text(s, 2, b);
    rc = db_exec(s, what);
    return rc < 0 ? rc : 0;
}

static int retire(struct db *db, const char *id, const char *why, int64_t now)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_retire, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, why);
    db_bind_i64(s, 3, now);
    rc = db_exec(s, "retire media");
    return rc < 0 ? rc : 0;
}

/* Row id now holds path (and is no longer retired). */
static int hold(struct db *db, const char *id, const char *path)
{
    char *folder, *name;
    path_split(path, &folder, &name);
    struct db_stmt *s;
    int rc = db_prepare(db, &q_hold, &s);
    if (rc == 0) {
        db_bind_text(s, 1, id);
        db_bind_text(s, 2, path);
        db_bind_text(s, 3, folder);
        db_bind_text(s, 4, name);
        rc = db_exec(s, "media holds its path");
        rc = rc < 0 ? rc : rc == 0 ? -ENOENT : 0;
    }
    free(folder);
    free(name);
    return rc;
}

/* One media row from a bound statement into *out (may be NULL): 0,
 * -ENOENT, -errno. */
static int one_row(struct db_stmt *s, struct dr_media *out, const char *what)
{
    int rc = db_step(s, what);
    if (rc == DB_ROW && out != NULL)
        catalog_media_read(s, out);
    db_reset(s);
    if (rc < 0)
        return rc;
    return rc == DB_ROW ? 0 : -ENOENT;
}

static int row_get(struct db *db, const char *id, const char *owner, struct dr_media *out)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_row, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    return one_row(s, out, "media row");
}

/* The row of file_id holding its path (other than except), into *out. */
static int current_of(struct db *db, const char *file_id, const char *except, struct dr_media *out)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_current, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, file_id);
    db_bind_text(s, 2, except);
    return one_row(s, out, "current version");
}

static int lock_owner(struct db *db, const char *owner)
{
    return catalog_media_lock_owners(db, &owner, 1);
}

static int read_rows(struct db_stmt *s, struct dr_media **out, size_t *n, const char *what)
{
    struct dr_media *v = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = db_step(s, what)) == DB_ROW) {
        if (cnt == cap) {
            cap = cap ? 2 * cap : 8;
            v = xrealloc(v, cap * sizeof *v);
        }
        catalog_media_read(s, &v[cnt++]);
    }
    db_reset(s);
    if (rc < 0) {
        catalog_media_list_free(v, cnt, NULL, 0);
        return rc;
    }
    *out = v;
    *n = cnt;
    return 0;
}

bool catalog_etag_listed(const char *list, const char *sha)
{
    if (strcmp(list, "*") == 0)
        return true;
    size_t n = strlen(sha);
    if (n == 0)
        return false; /* not sealed yet: no ETag to match */
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && memcmp(p, sha, n) == 0)
            return true;
        if (!e)
            break;
        p = e + 1;
    }
    return false;
}

/* "/a/cat.jpg", 2 -> "/a/cat (2).jpg"; a leading dot is part of the name
 * (".bashrc (2)"). */
static char *numbered(const char *path, int n)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash + 1, '.');
    if (dot == NULL || dot == slash + 1)
        return xasprintf("%s (%d)", path, n);
    return xasprintf("%.*s (%d)%s", (int)(dot - path), path, n, dot);
}

/* ---- intake (catalog_versions.h, internal) ------------------------------ */

static int place_replace(struct db *db, struct dr_intake *it, struct dr_media *m)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_live_at, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, it->owner);
    db_bind_text(s, 2, it->path);
    rc = db_step(s, "file at path");
    bool found = rc == DB_ROW, match = false;
    if (found) {
        db_col_copy(s, 0, it->replaced, sizeof it->replaced);
        const char *sha = db_col_text(s, 1);
        match = catalog_etag_listed(it->if_match, sha ? sha : "");
        db_col_copy(s, 2, m->file_id, sizeof m->file_id);
    }
    db_reset(s);
    if (rc < 0)
        return rc;
    if (!found || !match) {
        it->result = -ESTALE;
        return 0;
    }
    if ((rc = db_prepare(db, &q_pending_of, &s)) < 0)
        return rc;
    db_bind_text(s, 1, m->file_id);
    rc = db_step(s, "pending replacement");
    db_reset(s);
    if (rc < 0)
        return rc;
    if (rc == DB_ROW) { /* its ETag is about to move on */
        it->result = -ESTALE;
        return 0;
    }
    if ((rc = db_prepare(db, &q_next_version, &s)) < 0)
        return rc;
    db_bind_text(s, 1, m->file_id);
    rc = db_step(s, "next version");
    m->version = rc == DB_ROW ? db_col_i64(s, 0) : 1;
    db_reset(s);
    if (rc < 0)
        return rc;
    snprintf(m->retired, sizeof m->retired, "pending");
    it->version = m->version;
    return 0;
}

static int place_rename(struct db *db, struct dr_intake *it, struct dr_media *m)
{
    int rc = catalog_path_clash(db, it->owner, it->path, "");
    for (int n = 1; rc > 0 && n <= RENAME_MAX; n++) {
        char *p = numbered(it->path, n);
        if (strlen(p) > DR_PATH_MAX) {
            free(p);
            break;
        }
        rc = catalog_path_clash(db, it->owner, p, "");
        if (rc == 0) {
            it->renamed = p;
            m->path = p;
        } else {
            free(p);
        }
    }
    if (rc > 0)
        it->result = -EEXIST;
    return rc < 0 ? rc : 0;
}

int catalog_versions_place(struct db *db, struct dr_intake *it, struct dr_media *m)
{
    it->result = 0;
    it->replaced[0] = '\0';
    it->version = 1;
    if (it->if_match != NULL)
        return place_replace(db, it, m);
    if (it->rename)
        return place_rename(db, it, m);
    return 0;
}

int catalog_versions_follow(struct db *db, const char *old_id, const char *new_id,
                            const char *file_id, int keep)
{
    int rc = exec_2(db, &q_shares_copy, old_id, new_id, "shares follow the file");
    if (rc == 0)
        rc = exec_2(db, &q_shares_drop, old_id, NULL, "shares leave the version");
    if (rc == 0)
        rc = exec_2(db, &q_links_move, old_id, new_id, "public links follow the file");
    if (rc < 0)
        return rc;
    struct db_stmt *s;
    if ((rc = db_prepare(db, &q_trim, &s)) < 0)
        return rc;
    db_bind_text(s, 1, file_id);
    db_bind_i64(s, 2, keep > 0 ? keep : 0);
    rc = db_exec(s, "trim versions");
    return rc < 0 ? rc : 0;
}

int catalog_versions_purge_of(struct db *db, const char *id, int64_t now)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_purge_of, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_i64(s, 2, now);
    rc = db_exec(s, "purge earlier versions");
    return rc < 0 ? rc : 0;
}

int catalog_versions_promote(struct db *db, const char *id, int keep, int64_t now)
{
    struct dr_media m = {0}, cur = {0};
    int rc = row_get(db, id, NULL, &m);
    if (rc < 0 || strcmp(m.retired, "pending") != 0) {
        dr_media_clear(&m);
        return rc == -ENOENT ? 0 : rc; /* a missing row is the step's to report */
    }
    rc = lock_owner(db, m.owner);
    if (rc == 0)
        rc = current_of(db, m.file_id, m.id, &cur);
    if (rc == 0) { /* the usual case: it replaces the file's current version */
        rc = retire(db, cur.id, keep > 0 ? "version" : "purge", now);
        if (rc == 0)
            rc = hold(db, m.id, cur.path);
        if (rc == 0)
            rc = catalog_versions_follow(db, cur.id, m.id, m.file_id, keep);
    } else if (rc == -ENOENT) { /* the file was deleted meanwhile */
        rc = catalog_path_clash(db, m.owner, m.path, m.id);
        if (rc == 0)
            rc = hold(db, m.id, m.path);
        else if (rc > 0)
            rc = retire(db, m.id, "trash", now);
    }
    dr_media_clear(&m);
    dr_media_clear(&cur);
    return rc;
}

/* ---- versions ----------------------------------------------------------- */

int catalog_versions_list(struct catalog *cat, const char *id, const char *owner,
                          struct dr_media **out, size_t *n)
{
    if (cat == NULL || id == NULL || owner == NULL || out == NULL || n == NULL)
        return -EINVAL;
    *out = NULL;
    *n = 0;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_list, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    rc = read_rows(s, out, n, "list versions");
    if (rc == 0 && *n == 0)
        rc = -ENOENT;
    return rc;
}

int catalog_version_restore(struct catalog *cat, const char *id, const char *owner, int64_t n,
                            int keep, struct dr_media *out)
{
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (cat == NULL || id == NULL || owner == NULL)
        return -EINVAL;
    struct db *db = cat->db;
    struct dr_media v = {0}, cur = {0};
    int rc = db_begin(db, 0);
    if (rc < 0)
        return rc;
    rc = lock_owner(db, owner);
    struct db_stmt *s;
    if (rc == 0 && (rc = db_prepare(db, &q_version, &s)) == 0) {
        db_bind_text(s, 1, id);
        db_bind_text(s, 2, owner);
        db_bind_i64(s, 3, n);
        rc = one_row(s, &v, "version");
    }
    if (rc == 0) {
        rc = current_of(db, v.file_id, v.id, &cur);
        if (rc == -ENOENT)
            rc = -ESRCH;
    }
    int64_t now = dr_now_ms();
    if (rc == 0)
        rc = retire(db, cur.id, "version", now);
    if (rc == 0)
        rc = hold(db, v.id, cur.path);
    if (rc == 0)
        rc = catalog_versions_follow(db, cur.id, v.id, v.file_id, keep);
    if (rc == 0 && out != NULL)
        rc = row_get(db, v.id, owner, out);
    rc = db_end(db, rc);
    if (rc < 0 && out != NULL)
        dr_media_clear(out);
    dr_media_clear(&v);
    dr_media_clear(&cur);
    return rc;
}

/* ---- trash -------------------------------------------------------------- */

int catalog_media_trash(struct catalog *cat, const char *id, const char *owner)
{
    if (cat == NULL || id == NULL || owner == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_trash, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    db_bind_i64(s, 3, dr_now_ms());
    rc = db_exec(s, "media to trash");
    return rc < 0 ? rc : rc == 0 ? -ENOENT : 0;
}

int catalog_trash_list(struct catalog *cat, const char *owner, struct dr_media **out, size_t *n)
{
    if (cat == NULL || owner == NULL || out == NULL || n == NULL)
        return -EINVAL;
    *out = NULL;
    *n = 0;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_trash_list, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, owner);
    return read_rows(s, out, n, "list trash");
}

int catalog_trash_restore(struct catalog *cat, const char *id, const char *owner, int *clash,
                          struct dr_media *out)
{
    if (clash != NULL)
        *clash = 0;
    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (cat == NULL || id == NULL || owner == NULL)
        return -EINVAL;
    struct db *db = cat->db;
    struct dr_media m = {0};
    int rc = db_begin(db, 0);
    if (rc < 0)
        return rc;
    rc = lock_owner(db, owner);
    if (rc == 0)
        rc = row_get(db, id, owner, &m);
    if (rc == 0 && strcmp(m.retired, "trash") != 0)
        rc = -ENOENT;
    if (rc == 0) {
        rc = catalog_path_clash(db, owner, m.path, m.id);
        if (rc > 0) {
            if (clash != NULL)
                *clash = rc;
            rc = -EEXIST;
        }
    }
    if (rc == 0)
        rc = hold(db, m.id, m.path);
    if (rc == 0 && out != NULL)
        rc = row_get(db, m.id, owner, out);
    rc = db_end(db, rc);
    if (rc < 0 && out != NULL)
        dr_media_clear(out);
    dr_media_clear(&m);
    return rc;
}

/* ---- the sweep ---------------------------------------------------------- */

int catalog_retired_expire(struct catalog *cat, int64_t trash_before_ms, uint64_t *marked)
{
    if (marked != NULL)
        *marked = 0;
    if (cat == NULL)
        return -EINVAL;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    struct db_stmt *s;
    int64_t total = 0;
    if ((rc = db_prepare(cat->db, &q_expire_trash, &s)) == 0) {
        db_bind_i64(s, 1, trash_before_ms);
        rc = db_exec(s, "expire trash");
        total += rc > 0 ? rc : 0;
    }
    if (rc >= 0 && (rc = db_prepare(cat->db, &q_expire_orphans, &s)) == 0) {
        rc = db_exec(s, "expire orphaned versions");
        total += rc > 0 ? rc : 0;
    }
    rc = db_end(cat->db, rc < 0 ? rc : 0);
    if (rc == 0 && marked != NULL)
        *marked = (uint64_t)total;
    return rc;
}

int catalog_retired_purgeable(struct catalog *cat, size_t max, char (*ids)[DR_ID_LEN + 1],
                              size_t *n)
{
    if (n != NULL)
        *n = 0;
    if (cat == NULL || ids == NULL || n == NULL || max == 0)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_purgeable, &s);
    if (rc < 0)
        return rc;
    db_bind_i64(s, 1, (int64_t)max);
    while (*n < max && (rc = db_step(s, "purgeable media")) == DB_ROW)
        db_col_copy(s, 0, ids[(*n)++], DR_ID_LEN + 1);
    db_reset(s);
    return rc < 0 ? rc : 0;
}

int catalog_versions_trim_all(struct catalog *cat, int keep, uint64_t *marked)
{
    if (marked != NULL)
        *marked = 0;
    if (cat == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_trim_all, &s);
    if (rc < 0)
        return rc;
    db_bind_i64(s, 1, keep > 0 ? keep : 0);
    rc = db_exec(s, "trim every file's versions");
    if (rc < 0)
        return rc;
    if (marked != NULL)
        *marked = (uint64_t)rc;
    return 0;
}

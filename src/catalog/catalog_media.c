/* catalog_media.c - media rows, shares, visibility and folder listings.
 *
 * What: the `media` and `shares` tables (docs/CATALOG.md: "Visibility",
 * "Folder listing"): lookups by id and by path, listing with per-subfolder
 * sums, move, delete, share, the paged walk for scrub and usage, the
 * complete-row insert of --rebuild-catalog, and, for the other catalog
 * modules (catalog_media.h), the row writes of intake and job steps.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees:
 *  - A path is unique among live media: the partial unique index on
 *    (owner, path) ignores failed rows, and so do catalog_path_exists and
 *    catalog_media_by_path. Inserts use ON CONFLICT DO NOTHING, so a taken
 *    path is "0 rows" (-EEXIST) and never aborts the caller's transaction.
 *  - A file and a folder never share a path, per owner: a new or moved
 *    file may not sit where the owner has files below (a folder), nor
 *    below a path that is one of the owner's files. insert and move check
 *    it in their write transaction and answer -EEXIST; catalog_path_exists
 *    says which clash it is. SQLite's write lock serialises the checkers;
 *    PostgreSQL's READ COMMITTED would not, so the first check statement
 *    takes the owner's advisory lock (CATALOG_LOCK_PATHS, hashtext(owner))
 *    until the transaction ends, and the later checks, each a statement
 *    with a fresh snapshot, see whatever the previous holder committed. (The
 *    first statement's own snapshot may predate the lock: it asks for the
 *    same path, which the unique index guards anyway.) An intake of several
 *    owners takes their locks first, in name order, so intakes never
 *    deadlock.
 *  - A viewer sees media it owns, that were shared with it, or that lie
 *    below a folder of their owner's shared with it (catalog_shares.h);
 *    NULL is internal and sees everything; anything else is -ENOENT.
 *  - The folder listing is prefix-safe: "/ab" never matches "/abc".
 *  - catalog_media_foreach calls fn between pages, with no statement or
 *    transaction open, so fn may use the same handle.
 *
 * Never: touches jobs or events (a delete leaves the media's jobs: they
 * are history).
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "catalog_media.h"
#include "catalog_schema.h"
#include "catalog_users.h"
#include "catalog_versions.h"
#include "db.h"
#include "dripd/util.h"

#define FOREACH_PAGE 256 /* rows read per statement by media_foreach */

/* v is the viewer's placeholder: NULL sees everything, else own media,
 * media shared with v, and media below a folder of their owner's that is
 * shared with v (catalog_shares.h: a folder share is a rule, so files
 * added there later are covered; lo/hi are the folder's descendant range,
 * as in q_list_folders). A row that no longer holds its path (an earlier
 * version, one in the trash: catalog_versions.h) is its owner's alone, and
 * one being purged is nobody's. */
#define VISIBLE_TO(v)                                                                              \
    "(" v " IS NULL OR (m.owner = " v " AND (m.retired IS NULL OR m.retired <> 'purge')) OR "      \
    "(m.retired IS NULL AND (EXISTS (SELECT 1 FROM shares s WHERE "                                \
    "s.media_id = m.id AND s.\"user\" = " v ") OR EXISTS (SELECT 1 FROM folder_shares fs "         \
    "WHERE fs.\"user\" = " v " AND fs.owner = m.owner AND (m.folder = fs.path OR "                 \
    "(m.folder > fs.lo AND m.folder < fs.hi))))))"

static const struct db_sql q_insert = {
    "INSERT INTO media(id, owner, path, folder, name, size, sha256, content_type, state, "
    "storage_key, wrapped_key, created_at, uploaded_at, metadata, file_id, version, retired, "
    "retired_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, "
    "$17, $18) "
    "ON CONFLICT DO NOTHING",
    NULL};
static const struct db_sql q_share_insert = {
    "INSERT INTO shares(media_id, \"user\", created_at) VALUES ($1, $2, $3) "
    "ON CONFLICT (media_id, \"user\") DO NOTHING",
    NULL};
/* PostgreSQL first takes the owner's path lock (see catalog_path_clash). */
static const struct db_sql q_path_exists = {
    "SELECT EXISTS (SELECT 1 FROM media WHERE owner = $1 AND path = $2 AND state <> 'failed' "
    "AND retired IS NULL AND id <> $3)",
    "SELECT EXISTS (SELECT 1 FROM media WHERE owner = $1 AND path = $2 AND state <> 'failed' "
    "AND retired IS NULL AND id <> $3) FROM (SELECT pg_advisory_xact_lock(" CATALOG_LOCK_PATHS
    ", hashtext($1))) AS l"};
static const struct db_sql q_lock_owner = {NULL, "SELECT pg_advisory_xact_lock(" CATALOG_LOCK_PATHS
                                                 ", hashtext($1))"};
/* A folder at F: a live file of the owner in F or below it, i.e. whose
 * path starts with F + "/": it is in (F + "/", F + "0"), '0' being the
 * byte after '/' (as in q_list_folders). A range on the unique
 * (owner, path) index: asked of every upload, it must not scan the
 * owner's files (written with the folder column, it did, through
 * media_owner: 100,000 files made each upload ~100x dearer). */
static const struct db_sql q_folder_at = {
    "SELECT 1 FROM media WHERE owner = $1 AND path > $2 AND path < $3 AND state <> 'failed' "
    "AND retired IS NULL AND id <> $4 LIMIT 1",
    NULL};
/* A folder made with catalog_folder_create at F, or below it (so F is a
 * folder too): the primary key (owner, path), point and range. */
static const struct db_sql q_dir_at = {
    "SELECT 1 FROM folders WHERE owner = $1 AND (path = $2 OR (path > $3 AND path < $4)) LIMIT 1",
    NULL};
static const struct db_sql q_owner_of = {
    "SELECT owner FROM media WHERE id = $1 AND ($2 IS NULL OR owner = $2)", NULL};
static const struct db_sql q_get = {
    "SELECT " MEDIA_COLS " FROM media m WHERE m.id = $1 AND " VISIBLE_TO("$2"), NULL};
/* The live row wins over failed ones, then the newest; retired rows
 * (catalog_versions.h) hold no path. */
static const struct db_sql q_by_path = {
    "SELECT " MEDIA_COLS " FROM media m WHERE m.owner = $1 AND m.path = $2 AND m.retired IS NULL "
    "ORDER BY m.state = 'failed', m.created_at DESC, m.id DESC LIMIT 1",
    NULL};
static const struct db_sql q_list_files = {
    "SELECT " MEDIA_COLS " FROM media m WHERE m.folder = $1 AND m.retired IS NULL AND " VISIBLE_TO(
        "$2") " ORDER BY m.name, m.owner, m.id",
    NULL};
/* Descendants of folder F are the folders in ($1, $2): $1 = P = F + "/"
 * ("/" for the root) and $2 = P with its final '/' turned into '0', the
 * next byte. So "/ab/..." is in, and "/abc" and "/ab-x" are not; P itself
 * (the root "/", for F = "/") is not a descendant. The immediate child is
 * the text after P up to the next '/'. length() and substr() both count
 * characters, so they agree on UTF-8 names. SQLite finds the '/' with
 * instr(), PostgreSQL with strpos(). */
/* Folders made empty (catalog_folders.h) are listed too, with no files:
 * their rows' paths go through the same range and child test. The owner
 * sees theirs, and so does whoever a covering folder was shared with. */
#define LIST_FOLDERS(instr)                                                                        \
    "SELECT CASE WHEN " instr "(r, '/') > 0 THEN substr(r, 1, " instr "(r, '/') - 1) ELSE r END "  \
    "AS sub, sum(n), coalesce(sum(size), 0) FROM ("                                                \
    "  SELECT substr(m.folder, length($1) + 1) AS r, 1 AS n, m.size AS size FROM media m"          \
    "  WHERE m.folder > $1 AND m.folder < $2 AND m.retired IS NULL AND " VISIBLE_TO(               \
        "$3") " UNION ALL "                                                                        \
              "  SELECT substr(f.path, length($1) + 1), 0, 0 FROM folders f"                       \
              "  WHERE f.path > $1 AND f.path < $2 AND ($3 IS NULL OR f.owner = $3 OR EXISTS "     \
              "(SELECT 1 "                                                                         \
              "  FROM folder_shares fs WHERE fs.\"user\" = $3 AND fs.owner = f.owner AND (f.path " \
              "= fs.path "                                                                         \
              "  OR (f.path > fs.lo AND f.path < fs.hi))))) AS d GROUP BY sub ORDER BY sub"
static const struct db_sql q_list_folders = {LIST_FOLDERS("instr"), LIST_FOLDERS("strpos")};
static const struct db_sql q_move = {"UPDATE media SET path = $3, folder = $4, name = $5 "
                                     "WHERE id = $1 AND ($2 IS NULL OR owner = $2)",
                                     NULL};
static const struct db_sql q_shares_delete = {"DELETE FROM shares WHERE media_id = $1", NULL};
static const struct db_sql q_links_delete = {"DELETE FROM links WHERE media_id = $1", NULL};
static const struct db_sql q_delete = {
    "DELETE FROM media WHERE id = $1 AND ($2 IS NULL OR owner = $2) RETURNING storage_key", NULL};
static const struct db_sql q_owned = {
    "SELECT 1 FROM media WHERE id = $1 AND ($2 IS NULL OR owner = $2)", NULL};
static const struct db_sql q_page = {
    "SELECT " MEDIA_COLS " FROM media m WHERE m.id > $1 ORDER BY m.id LIMIT $2", NULL};
static const struct db_sql q_visible_owner = {
    "SELECT m.owner FROM media m WHERE m.id = $1 AND " VISIBLE_TO("$2"), NULL};
/* A job step's media fields in one statement (catalog_media_apply_step):
 * a NULL parameter leaves its field(s) alone: $2 the SHA-256 (with $3,
 * the wrapped key), $4 the size, $5 the storage key, $6 uploaded_at (and
 * the state "available"). PostgreSQL's also returns whether the row is a
 * version waiting to replace the file's current one
 * (catalog_versions_promote). SQLite's does not: it runs a RETURNING
 * clause into an ephemeral table (a temporary B-tree with a page cache of
 * its own, allocated and freed per statement), ~3.4 us of the ~28 us a
 * small upload's last step cost (issue 15, bench/catalog_loop.sh); q_pending reads
 * that flag there instead, before the UPDATE and in its transaction. */
#define SET_STEP(p2, p3, p4, p5, p6)                                                               \
    "UPDATE media SET sha256 = COALESCE(" p2 ", sha256), "                                         \
    "wrapped_key = CASE WHEN " p2 " IS NULL THEN wrapped_key ELSE " p3 " END, "                    \
    "size = COALESCE(" p4 ", size), storage_key = COALESCE(" p5 ", storage_key), "                 \
    "state = CASE WHEN " p6 " IS NULL THEN state ELSE 'available' END, "                           \
    "uploaded_at = COALESCE(" p6 ", uploaded_at) WHERE id = $1"
static const struct db_sql q_set_step = {
    SET_STEP("$2", "$3", "$4", "$5", "$6"),
    /* PostgreSQL types each parameter from its first use: cast them */
    SET_STEP("$2::text", "$3::bytea", "$4::bigint", "$5::text",
             "$6::bigint") " RETURNING CASE WHEN retired = 'pending' THEN 1 ELSE 0 END"};
static const struct db_sql q_pending = {
    "SELECT CASE WHEN retired = 'pending' THEN 1 ELSE 0 END FROM media WHERE id = $1", NULL};
static const struct db_sql q_set_failed = {
    "UPDATE media SET state = 'failed' WHERE id = $1 AND state = 'queued'", NULL};

/* "/a/b/c.txt" -> "/a/b", "c.txt"; "/c.txt" -> "/", "c.txt". -EINVAL for
 * a path that is not absolute or has an empty name. */
static int split_path(const char *path, char **folder, char **name)
{
    *folder = *name = NULL;
    if (path == NULL || path[0] != '/')
        return -EINVAL;
    const char *slash = strrchr(path, '/');
    if (slash[1] == '\0')
        return -EINVAL;
    *folder = slash == path ? xstrdup("/") : xstrndup(path, (size_t)(slash - path));
    *name = xstrdup(slash + 1);
    return 0;
}

void catalog_media_read(struct db_stmt *s, struct dr_media *m)
{
    memset(m, 0, sizeof *m);
    db_col_copy(s, 0, m->id, sizeof m->id);
    m->owner = db_col_strdup(s, 1);
    m->path = db_col_strdup(s, 2);
    m->name = db_col_strdup(s, 3);
    m->folder = db_col_strdup(s, 4);
    m->size = (uint64_t)db_col_i64(s, 5);
    db_col_copy(s, 6, m->sha256, sizeof m->sha256);
    m->content_type = db_col_strdup(s, 7);
    m->state = db_col_strdup(s, 8);
    m->storage_key = db_col_strdup(s, 9);
    size_t blen = 0;
    const void *blob = db_col_blob(s, 10, &blen);
    if (blob != NULL) {
        m->wrapped_key = xmalloc(blen);
        memcpy(m->wrapped_key, blob, blen);
        m->wrapped_key_len = blen;
    }
    m->created_at = db_col_i64(s, 11);
    m->uploaded_at = db_col_i64(s, 12);
    m->metadata = db_col_strdup(s, 13);
    db_col_copy(s, 14, m->file_id, sizeof m->file_id);
    m->version = db_col_i64(s, 15);
    db_col_copy(s, 16, m->retired, sizeof m->retired);
    m->retired_at = db_col_i64(s, 17);
}

void dr_media_clear(struct dr_media *m)
{
    if (m == NULL)
        return;
    free(m->owner);
    free(m->path);
    free(m->name);
    free(m->folder);
    free(m->content_type);
    free(m->state);
    free(m->storage_key);
    free(m->wrapped_key);
    free(m->metadata);
    memset(m, 0, sizeof *m);
}

/* ---- a file and a folder never share a path ----------------------------- */

/* 1 if owner has a live file at path (other than media `except`, "" for
 * none), 0 if not, -errno. */
static int file_at(struct db *db, const char *owner, const char *path, const char *except)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_path_exists, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, owner);
    db_bind_text(s, 2, path);
    db_bind_text(s, 3, except);
    rc = db_step(s, "path exists");
    int64_t found = rc == DB_ROW ? db_col_i64(s, 0) : 0;
    db_reset(s);
    return rc < 0 ? rc : found != 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int catalog_media_lock_owners(struct db *db, const char *const *owners, size_t n)
{
    if (db_dialect(db) != DB_POSTGRES || n == 0)
        return 0; /* SQLite: the write lock serialises every writer */
    const char **v = xmalloc(n * sizeof *v);
    memcpy(v, owners, n * sizeof *v);
    qsort(v, n, sizeof *v, cmp_str);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0 && strcmp(v[i], v[i - 1]) == 0)
            continue;
        struct db_stmt *s;
        rc = db_prepare(db, &q_lock_owner, &s);
        if (rc < 0)
            break;
        db_bind_text(s, 1, v[i]);
        rc = db_step(s, "owner path lock");
        db_reset(s);
        rc = rc < 0 ? rc : 0;
    }
    free(v);
    return rc;
}

int catalog_path_clash(struct db *db, const char *owner, const char *path, const char *except)
{
    int rc = file_at(db, owner, path, except);
    if (rc != 0)
        return rc < 0 ? rc : DR_PATH_FILE;
    /* Every folder above path ("/a", "/a/b" for "/a/b/c") must not be a file. */
    char *up = xstrdup(path);
    for (char *slash = strchr(up + 1, '/'); slash != NULL && rc == 0;
         slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        rc = file_at(db, owner, up, except);
        *slash = '/';
    }
    free(up);
    if (rc != 0)
        return rc < 0 ? rc : DR_PATH_UNDER_FILE;
    char *lo = xasprintf("%s/", path), *hi = xasprintf("%s0", path);
    struct db_stmt *s;
    rc = db_prepare(db, &q_folder_at, &s);
    if (rc == 0) {
        db_bind_text(s, 1, owner);
        db_bind_text(s, 2, lo);
        db_bind_text(s, 3, hi);
        db_bind_text(s, 4, except);
        rc = db_step(s, "folder at");
        db_reset(s);
        if (rc >= 0)
            rc = rc == DB_ROW ? DR_PATH_FOLDER : 0;
    }
    if (rc == 0 && (rc = db_prepare(db, &q_dir_at, &s)) == 0) {
        db_bind_text(s, 1, owner);
        db_bind_text(s, 2, path);
        db_bind_text(s, 3, lo);
        db_bind_text(s, 4, hi);
        rc = db_step(s, "made folder at");
        db_reset(s);
        if (rc >= 0)
            rc = rc == DB_ROW ? DR_PATH_FOLDER : 0;
    }
    free(lo);
    free(hi);
    return rc;
}

/* ---- rows for the other modules ---------------------------------------- */

int catalog_media_add(struct db *db, const struct dr_media *m)
{
    char *folder, *name;
    int rc = split_path(m->path, &folder, &name);
    if (rc < 0)
        return rc;
    /* a pending replacement holds no path yet (catalog_versions.h) */
    rc = m->retired[0] ? 0 : catalog_path_clash(db, m->owner, m->path, m->id);
    if (rc != 0) {
        rc = rc < 0 ? rc : -EEXIST;
        goto out;
    }
    struct db_stmt *s;
    rc = db_prepare(db, &q_insert, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, m->id);
    db_bind_text(s, 2, m->owner);
    db_bind_text(s, 3, m->path);
    db_bind_text(s, 4, folder);
    db_bind_text(s, 5, name);
    db_bind_i64(s, 6, (int64_t)m->size);
    db_bind_text(s, 7, m->sha256);
    db_bind_text(s, 8, m->content_type);
    db_bind_text(s, 9, m->state);
    db_bind_text(s, 10, m->storage_key);
    db_bind_blob(s, 11, m->wrapped_key, m->wrapped_key != NULL ? m->wrapped_key_len : 0);
    db_bind_i64(s, 12, m->created_at);
    db_bind_i64(s, 13, m->uploaded_at);
    db_bind_text(s, 14, m->metadata);
    db_bind_text(s, 15, m->file_id[0] ? m->file_id : m->id); /* a new file: its own first version */
    db_bind_i64(s, 16, m->version > 0 ? m->version : 1);
    db_bind_text(s, 17, m->retired[0] ? m->retired : NULL);
    db_bind_i64(s, 18, m->retired_at);
    rc = db_exec(s, "insert media");
    if (rc >= 0)
        rc = rc == 1 ? 0 : -EEXIST;
out:
    free(folder);
    free(name);
    return rc;
}

int catalog_share_add(struct db *db, const char *media_id, const char *user, int64_t now)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_share_insert, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, media_id);
    db_bind_text(s, 2, user);
    db_bind_i64(s, 3, now);
    rc = db_exec(s, "insert share");
    return rc < 0 ? rc : 0;
}

int catalog_media_owner_for(struct db *db, const char *id, const char *viewer, char **owner)
{
    *owner = NULL;
    struct db_stmt *s;
    int rc = db_prepare(db, &q_visible_owner, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, viewer);
    rc = db_step(s, "media owner");
    if (rc == DB_ROW)
        *owner = db_col_strdup(s, 0);
    db_reset(s);
    if (rc < 0)
        return rc;
    return rc == DB_ROW ? 0 : -ENOENT;
}

/* An UPDATE of one media row by id, bound: 0, -ENOENT if no such row. */
int catalog_media_apply_step(struct db *db, const struct dr_job_step *st, int64_t now)
{
    if (st->sha256_hex == NULL && !st->set_size && st->storage_key == NULL && !st->available)
        return 0;
    if (st->sha256_hex != NULL && st->wrapped_key_len > INT32_MAX)
        return -EINVAL;
    if (st->set_size && st->size > (uint64_t)INT64_MAX)
        return -EINVAL;
    bool sqlite = db_dialect(db) == DB_SQLITE, pending = false;
    struct db_stmt *s;
    int rc;
    if (sqlite && st->available) { /* the flag PostgreSQL's UPDATE returns */
        if ((rc = db_prepare(db, &q_pending, &s)) < 0)
            return rc;
        db_bind_text(s, 1, st->media_id);
        rc = db_step(s, "step: media pending");
        pending = rc == DB_ROW && db_col_i64(s, 0) != 0;
        db_reset(s);
        if (rc < 0)
            return rc;
        if (rc == DB_DONE)
            return -ENOENT;
    }
    if ((rc = db_prepare(db, &q_set_step, &s)) < 0)
        return rc;
    db_bind_text(s, 1, st->media_id);
    db_bind_text(s, 2, st->sha256_hex);
    if (st->sha256_hex != NULL)
        db_bind_blob(s, 3, st->wrapped_key, st->wrapped_key != NULL ? st->wrapped_key_len : 0);
    else
        db_bind_blob(s, 3, NULL, 0);
    if (st->set_size)
        db_bind_i64(s, 4, (int64_t)st->size);
    else
        db_bind_null(s, 4);
    db_bind_text(s, 5, st->storage_key);
    if (st->available)
        db_bind_i64(s, 6, now);
    else
        db_bind_null(s, 6);
    if (sqlite) {
        rc = db_exec(s, "step: media fields"); /* the number of rows changed */
        if (rc == 0)
            return -ENOENT;
    } else {
        rc = db_step(s, "step: media fields");
        if (rc == DB_ROW) {
            pending = db_col_i64(s, 0) != 0;
            rc = db_step(s, "step: media fields"); /* the id is unique: DB_DONE */
        } else if (rc == DB_DONE) {
            rc = -ENOENT;
        }
        db_reset(s);
    }
    if (rc < 0)
        return rc;
    if (st->available && pending)
        return catalog_versions_promote(db, st->media_id, st->keep_versions, now);
    return 0;
}

int catalog_media_fail_queued(struct db *db, const char *id)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_set_failed, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    rc = db_exec(s, "media set failed");
    return rc < 0 ? rc : 0;
}

/* ---- lookups ------------------------------------------------------------ */

int catalog_path_exists(struct catalog *cat, const char *owner, const char *path)
{
    if (cat == NULL || owner == NULL || path == NULL || path[0] != '/')
        return -EINVAL;
    return catalog_path_clash(cat->db, owner, path, "");
}

const char *catalog_path_clash_text(int clash)
{
    switch (clash) {
    case DR_PATH_FILE:
        return "already exists";
    case DR_PATH_FOLDER:
        return "is a folder (a file and a folder cannot share a path)";
    case DR_PATH_UNDER_FILE:
        return "is inside a path that is a file (a file and a folder cannot share a path)";
    default:
        return "is free";
    }
}

/* Run a bound statement expected to give at most one media row. */
static int one_media(struct db_stmt *s, struct dr_media *out, const char *what)
{
    int rc = db_step(s, what);
    if (rc == DB_ROW) {
        catalog_media_read(s, out);
        rc = 0;
    } else if (rc == DB_DONE) {
        rc = -ENOENT;
    }
    db_reset(s);
    return rc;
}

int catalog_media_read_id(struct db *db, const char *id, struct dr_media *m)
{
    memset(m, 0, sizeof *m);
    struct db_stmt *s;
    int rc = db_prepare(db, &q_get, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, NULL);
    return one_media(s, m, "media get");
}

int catalog_media_get(struct catalog *cat, const char *id, const char *viewer, struct dr_media *out)
{
    if (cat == NULL || id == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_get, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, viewer);
    return one_media(s, out, "media get");
}

int catalog_media_by_path(struct catalog *cat, const char *owner, const char *path,
                          struct dr_media *out)
{
    if (cat == NULL || owner == NULL || path == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_by_path, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, owner);
    db_bind_text(s, 2, path);
    return one_media(s, out, "media by path");
}

/* ---- listing ------------------------------------------------------------ */

void catalog_media_list_free(struct dr_media *files, size_t n_files,
                             struct dr_folder_entry *folders, size_t n_folders)
{
    for (size_t i = 0; files != NULL && i < n_files; i++)
        dr_media_clear(&files[i]);
    free(files);
    for (size_t i = 0; folders != NULL && i < n_folders; i++)
        free(folders[i].name);
    free(folders);
}

int catalog_media_list(struct catalog *cat, const char *viewer, const char *folder,
                       struct dr_media **files, size_t *n_files, struct dr_folder_entry **folders,
                       size_t *n_folders)
{
    if (cat == NULL || files == NULL || n_files == NULL || folders == NULL || n_folders == NULL)
        return -EINVAL;
    *files = NULL;
    *folders = NULL;
    *n_files = *n_folders = 0;

    /* F without a trailing '/', "/" for the root; P = F + "/"; U = P with
     * the final '/' replaced by '0' (see q_list_folders). */
    char *f = xstrdup(folder == NULL || folder[0] == '\0' ? "/" : folder);
    size_t flen = strlen(f);
    while (flen > 1 && f[flen - 1] == '/')
        f[--flen] = '\0';
    char *lo = strcmp(f, "/") == 0 ? xstrdup("/") : xasprintf("%s/", f);
    char *hi = xstrdup(lo);
    hi[strlen(hi) - 1] = '0';

    struct dr_media *fv = NULL;
    struct dr_folder_entry *dv = NULL;
    size_t nf = 0, capf = 0, nd = 0, capd = 0;
    struct db_stmt *s = NULL;
    int rc = db_prepare(cat->db, &q_list_files, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, f);
    db_bind_text(s, 2, viewer);
    while ((rc = db_step(s, "list files")) == DB_ROW) {
        if (nf == capf) {
            capf = capf ? 2 * capf : 16;
            fv = xrealloc(fv, capf * sizeof *fv);
        }
        catalog_media_read(s, &fv[nf++]);
    }
    db_reset(s);
    if (rc < 0)
        goto out;

    rc = db_prepare(cat->db, &q_list_folders, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, lo);
    db_bind_text(s, 2, hi);
    db_bind_text(s, 3, viewer);
    while ((rc = db_step(s, "list folders")) == DB_ROW) {
        if (nd == capd) {
            capd = capd ? 2 * capd : 16;
            dv = xrealloc(dv, capd * sizeof *dv);
        }
        dv[nd].name = db_col_strdup(s, 0);
        if (dv[nd].name == NULL)
            dv[nd].name = xstrdup("");
        dv[nd].files = (uint64_t)db_col_i64(s, 1);
        dv[nd].size = (uint64_t)db_col_i64(s, 2);
        nd++;
    }
    db_reset(s);
    if (rc < 0)
        goto out;
    rc = 0;
    *files = fv;
    *n_files = nf;
    *folders = dv;
    *n_folders = nd;
    fv = NULL;
    dv = NULL;
out:
    if (rc < 0)
        catalog_media_list_free(fv, nf, dv, nd);
    free(f);
    free(lo);
    free(hi);
    return rc;
}

/* ---- changes by the owner ----------------------------------------------- */

int catalog_media_move(struct catalog *cat, const char *id, const char *owner, const char *new_path)
{
    if (cat == NULL || id == NULL)
        return -EINVAL;
    char *folder, *name, *row_owner = NULL;
    int rc = split_path(new_path, &folder, &name);
    if (rc < 0)
        return rc;
    rc = db_begin(cat->db, 0);
    if (rc < 0)
        goto out;
    struct db_stmt *s;
    rc = db_prepare(cat->db, &q_owner_of, &s);
    if (rc < 0)
        goto end;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    rc = db_step(s, "media owner");
    if (rc == DB_ROW)
        row_owner = db_col_strdup(s, 0);
    db_reset(s);
    if (rc < 0)
        goto end;
    if (row_owner == NULL) {
        rc = -ENOENT;
        goto end;
    }
    rc = catalog_path_clash(cat->db, row_owner, new_path, id);
    if (rc != 0) {
        rc = rc < 0 ? rc : -EEXIST;
        goto end;
    }
    rc = db_prepare(cat->db, &q_move, &s);
    if (rc < 0)
        goto end;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    db_bind_text(s, 3, new_path);
    db_bind_text(s, 4, folder);
    db_bind_text(s, 5, name);
    rc = db_exec(s, "media move");
    if (rc >= 0)
        rc = rc == 0 ? -ENOENT : 0;
end:
    rc = db_end(cat->db, rc);
out:
    free(row_owner);
    free(folder);
    free(name);
    return rc;
}

/* 0 if media id exists and owner (NULL: anyone) owns it, -ENOENT if not. */
static int check_owned(struct db *db, const char *id, const char *owner, const char *what)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_owned, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    rc = db_step(s, what);
    db_reset(s);
    if (rc < 0)
        return rc;
    return rc == DB_ROW ? 0 : -ENOENT;
}

int catalog_media_delete(struct catalog *cat, const char *id, const char *owner,
                         char **storage_key_out)
{
    if (storage_key_out != NULL)
        *storage_key_out = NULL;
    if (cat == NULL || id == NULL)
        return -EINVAL;
    char *key = NULL;
    bool found = false;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    rc = check_owned(cat->db, id, owner, "media delete");
    if (rc == 0) /* a file deleted for good takes its earlier versions along */
        rc = catalog_versions_purge_of(cat->db, id, dr_now_ms());
    if (rc < 0)
        goto out;
    /* The shares and public links go first, explicitly (ON DELETE
     * CASCADE would also do it). */
    struct db_stmt *s;
    rc = db_prepare(cat->db, &q_shares_delete, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, id);
    rc = db_exec(s, "delete shares");
    if (rc < 0)
        goto out;
    rc = db_prepare(cat->db, &q_links_delete, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, id);
    rc = db_exec(s, "delete public links");
    if (rc < 0)
        goto out;
    rc = db_prepare(cat->db, &q_delete, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, id);
    db_bind_text(s, 2, owner);
    while ((rc = db_step(s, "media delete")) == DB_ROW) {
        found = true;
        free(key);
        key = db_col_strdup(s, 0);
    }
    db_reset(s);
    if (rc < 0)
        goto out;
    rc = found ? 0 : -ENOENT;
out:
    rc = db_end(cat->db, rc);
    if (rc == 0 && storage_key_out != NULL)
        *storage_key_out = key;
    else
        free(key);
    return rc;
}

int catalog_media_share(struct catalog *cat, const char *id, const char *owner, const char *user)
{
    if (cat == NULL || id == NULL || user == NULL)
        return -EINVAL;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    rc = check_owned(cat->db, id, owner, "share: media");
    if (rc == 0)
        rc = catalog_user_exists(cat->db, user);
    if (rc == 0)
        rc = catalog_share_add(cat->db, id, user, dr_now_ms());
    return db_end(cat->db, rc);
}

/* ---- every row: scrub, usage, rebuild ------------------------------------ */

int catalog_media_foreach(struct catalog *cat, int (*fn)(const struct dr_media *m, void *arg),
                          void *arg)
{
    if (cat == NULL || fn == NULL)
        return -EINVAL;
    /* Page by id with the statement reset between pages, so fn runs with
     * no statement or transaction open (it may use this handle) and
     * memory stays bounded by one page. */
    struct dr_media *page = xcalloc(FOREACH_PAGE, sizeof *page);
    char *last = xstrdup("");
    int rc = 0;
    for (;;) {
        struct db_stmt *s;
        rc = db_prepare(cat->db, &q_page, &s);
        if (rc < 0)
            break;
        db_bind_text(s, 1, last);
        db_bind_i64(s, 2, FOREACH_PAGE);
        size_t n = 0;
        while (n < FOREACH_PAGE && (rc = db_step(s, "media foreach")) == DB_ROW)
            catalog_media_read(s, &page[n++]);
        db_reset(s);
        if (rc < 0) {
            for (size_t i = 0; i < n; i++)
                dr_media_clear(&page[i]);
            break;
        }
        rc = 0;
        bool stop = false;
        for (size_t i = 0; i < n; i++) {
            if (!stop && fn(&page[i], arg) != 0)
                stop = true;
            if (i == n - 1) {
                free(last);
                last = xstrdup(page[i].id);
            }
            dr_media_clear(&page[i]);
        }
        if (stop || n < FOREACH_PAGE)
            break;
    }
    free(last);
    free(page);
    return rc;
}

int catalog_media_insert(struct catalog *cat, const struct dr_media *m)
{
    if (cat == NULL || m == NULL || !dr_id_valid(m->id) || m->owner == NULL || m->size > INT64_MAX)
        return -EINVAL;
    char *folder, *name;
    int rc = split_path(m->path, &folder, &name); /* bad paths fail before any write */
    free(folder);
    free(name);
    if (rc < 0)
        return rc;
    struct dr_media row = *m;
    if (row.state == NULL)
        row.state = (char *)"available";
    int64_t now = dr_now_ms();
    if (row.created_at == 0)
        row.created_at = now;
    rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    rc = catalog_media_add(cat->db, &row);
    if (rc == 0)
        rc = catalog_share_add(cat->db, row.id, row.owner, now);
    return db_end(cat->db, rc);
}

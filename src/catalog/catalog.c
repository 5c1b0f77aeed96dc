/* catalog.c - the shared catalog and durable job queue on SQLite.
 *
 * What: media, shares, users, jobs, events and tus sessions in
 * <data_dir>/catalog.db. The schema, the states and the queue semantics
 * are documented in docs/CATALOG.md; catalog.h is the contract.
 *
 * Threads and processes: a struct catalog is one SQLite connection
 * (opened SQLITE_OPEN_NOMUTEX) with its own cache of prepared statements;
 * it is used by one thread at a time. Any number of connections, in any
 * number of processes, share the file: WAL lets readers run alongside the
 * one writer; writers queue on SQLite's lock through the busy handler
 * (5 s), after which the call returns -EBUSY. This file has no global
 * state and takes no locks of its own.
 *
 * Guarantees:
 *  - synchronous=FULL in WAL mode: a write function that returned 0 has
 *    committed and fsynced its WAL frames, so it survives a crash.
 *  - Every multi-statement write runs in one BEGIN IMMEDIATE transaction.
 *    IMMEDIATE takes the write lock before the first read, so a
 *    read-then-write transaction never hits SQLITE_BUSY_SNAPSHOT (the
 *    WAL "cannot upgrade a stale snapshot" error that the busy handler
 *    cannot wait out). Single-statement writes run in autocommit mode,
 *    where SQLite also takes the write lock before reading.
 *  - A job state change a user can observe and its event commit together.
 *  - catalog_jobs_claim is one UPDATE ... WHERE id IN (SELECT ... LIMIT n)
 *    RETURNING inside BEGIN IMMEDIATE: claimers are serialised by the
 *    write lock and a job leaves "queued" in the same statement that picks
 *    it, so no job is handed out twice.
 *  - Statements are reset right after use, so no connection keeps a read
 *    snapshot open (which would pin the WAL and block checkpoints).
 *
 * Never: no HTTP, no files other than the database, no encryption; no
 * callback runs while a transaction or a statement is open (the
 * recovery's alive() and media_foreach's fn run between statements).
 *
 * Errors: SQLite failures are logged once, where they happen (log_error;
 * log_warn for a lock timeout), and mapped to -errno: BUSY/LOCKED ->
 * -EBUSY, FULL -> -ENOSPC, UNIQUE/PRIMARY KEY -> -EEXIST, CHECK -> -EINVAL,
 * anything else -> -EIO.
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define CATALOG_SCHEMA_VERSION 2
#define CATALOG_BUSY_MS 5000
#define FOREACH_PAGE 256     /* rows read per statement by media_foreach */
#define EVENTS_MAX 10000     /* cap of one catalog_events_since call */
#define TUS_EXPIRED_MAX 1000 /* cap of one catalog_tus_expired call */
#define CLAIM_MAX 1000       /* cap of one catalog_jobs_claim call */

/* ---- schema ---------------------------------------------------------- */

/* Migration i brings the schema from user_version i to i + 1. Each runs
 * inside the BEGIN IMMEDIATE transaction that also bumps user_version, so
 * a crash leaves either the old or the new schema. IF NOT EXISTS keeps
 * them harmless if they ever meet a half-made database. */
static const char *const migrations[CATALOG_SCHEMA_VERSION] = {
    /* v1 */
    "CREATE TABLE IF NOT EXISTS users ("
    "  name        TEXT PRIMARY KEY,"
    "  admin       INTEGER NOT NULL DEFAULT 0,"
    "  created_at  INTEGER NOT NULL"
    ");"
    "CREATE TABLE IF NOT EXISTS media ("
    "  id           TEXT PRIMARY KEY,"
    "  owner        TEXT NOT NULL,"
    "  path         TEXT NOT NULL CHECK (substr(path, 1, 1) = '/'),"
    "  folder       TEXT NOT NULL,"
    "  name         TEXT NOT NULL CHECK (name <> '' AND instr(name, '/') = 0),"
    "  size         INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),"
    "  sha256       TEXT NOT NULL DEFAULT '',"
    "  content_type TEXT,"
    "  state        TEXT NOT NULL DEFAULT 'queued'"
    "               CHECK (state IN ('queued', 'available', 'failed')),"
    "  storage_key  TEXT,"
    "  wrapped_key  BLOB,"
    "  created_at   INTEGER NOT NULL,"
    "  uploaded_at  INTEGER NOT NULL DEFAULT 0"
    ");"
    /* UNIQUE(owner, path) among live media: a failed upload keeps its row
     * (so its owner can see and delete it) but does not hold the path. */
    "CREATE UNIQUE INDEX IF NOT EXISTS media_owner_path ON media(owner, path)"
    "  WHERE state <> 'failed';"
    "CREATE INDEX IF NOT EXISTS media_folder ON media(folder);"
    "CREATE INDEX IF NOT EXISTS media_owner ON media(owner);"
    /* The owner is linked too (as ElixirDrip's media_owners): "who may see
     * this media" is one lookup. */
    "CREATE TABLE IF NOT EXISTS shares ("
    "  media_id   TEXT NOT NULL REFERENCES media(id) ON DELETE CASCADE,"
    "  user       TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY (media_id, user)"
    ") WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS shares_user ON shares(user);"
    "CREATE TABLE IF NOT EXISTS jobs ("
    "  id          TEXT PRIMARY KEY,"
    "  kind        TEXT NOT NULL CHECK (kind IN ('upload', 'download')),"
    "  media_id    TEXT NOT NULL,"
    "  owner       TEXT NOT NULL,"
    "  state       TEXT NOT NULL"
    "              CHECK (state IN ('queued', 'running', 'done', 'failed')),"
    "  stage       TEXT NOT NULL,"
    "  attempts    INTEGER NOT NULL DEFAULT 0,"
    "  error       TEXT,"
    "  spool_path  TEXT,"
    "  work_path   TEXT,"
    "  claimed_by  TEXT,"
    "  not_before  INTEGER NOT NULL DEFAULT 0,"
    "  created_at  INTEGER NOT NULL,"
    "  updated_at  INTEGER NOT NULL"
    ");"
    /* Claiming walks (state='queued', kind) in created_at order (rowid,
     * implicit at the end of every index, breaks ties), skips the few jobs
     * still in backoff (not_before > now) and stops after LIMIT rows: no
     * sort, whatever the queue depth. Putting not_before in the index
     * before created_at would force a sort of every ready job; after it,
     * it would break the rowid tie order. Also serves the state lookups
     * (queue depth, running claimers). */
    "CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(state, kind, created_at);"
    "CREATE INDEX IF NOT EXISTS jobs_media ON jobs(media_id);"
    "CREATE TABLE IF NOT EXISTS events ("
    "  seq        INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  user       TEXT NOT NULL,"
    "  type       TEXT NOT NULL,"
    "  job_id     TEXT NOT NULL,"
    "  media_id   TEXT NOT NULL,"
    "  data       TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL"
    ");"
    "CREATE INDEX IF NOT EXISTS events_user ON events(user, seq);"
    "CREATE TABLE IF NOT EXISTS tus ("
    "  id           TEXT PRIMARY KEY,"
    "  owner        TEXT NOT NULL,"
    "  length       INTEGER NOT NULL DEFAULT -1,"
    "  \"offset\"     INTEGER NOT NULL DEFAULT 0,"
    "  path         TEXT NOT NULL,"
    "  metadata     TEXT,"
    "  content_type TEXT,"
    "  spool_path   TEXT NOT NULL,"
    "  expires_at   INTEGER NOT NULL,"
    "  created_at   INTEGER NOT NULL,"
    "  job_id       TEXT,"
    "  media_id     TEXT,"
    "  finished_at  INTEGER,"
    "  CHECK (\"offset\" >= 0 AND (length < 0 OR \"offset\" <= length))"
    ");"
    "CREATE INDEX IF NOT EXISTS tus_open ON tus(expires_at) WHERE job_id IS NULL;",
    /* v2: GET /v1/jobs lists a user's newest jobs without a scan. */
    "CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, created_at);",
};

/* ---- statements -------------------------------------------------------- */

#define MEDIA_COLS                                                                                 \
    "m.id, m.owner, m.path, m.name, m.folder, m.size, m.sha256, m.content_type, m.state, "         \
    "m.storage_key, m.wrapped_key, m.created_at, m.uploaded_at"
#define JOB_COLS                                                                                   \
    "id, kind, media_id, owner, state, stage, attempts, error, spool_path, work_path, "            \
    "not_before, created_at, updated_at"
#define TUS_COLS                                                                                   \
    "id, owner, length, \"offset\", path, metadata, content_type, spool_path, expires_at, "        \
    "created_at, job_id, media_id"
#define EVENT_COLS "seq, user, type, job_id, media_id, data, created_at"
/* ?V is the viewer: NULL sees everything, else own or shared media. */
#define VISIBLE_TO(v)                                                                              \
    "(" v " IS NULL OR m.owner = " v " OR EXISTS (SELECT 1 FROM shares s WHERE "                   \
    "s.media_id = m.id AND s.user = " v "))"

enum st {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_USER_UPSERT,
    ST_USER_EXISTS,
    ST_MEDIA_INSERT,
    ST_SHARE_INSERT,
    ST_JOB_INSERT,
    ST_EVENT_INSERT,
    ST_PATH_EXISTS,
    ST_QUEUE_DEPTH,
    ST_MEDIA_GET,
    ST_MEDIA_BY_PATH,
    ST_LIST_FILES,
    ST_LIST_FOLDERS,
    ST_MEDIA_MOVE,
    ST_SHARES_DELETE,
    ST_MEDIA_DELETE,
    ST_MEDIA_OWNED,
    ST_MEDIA_PAGE,
    ST_MEDIA_SET_SEALED,
    ST_MEDIA_SET_STORED,
    ST_MEDIA_SET_AVAILABLE,
    ST_MEDIA_SET_FAILED,
    ST_MEDIA_VISIBLE_OWNER,
    ST_JOB_GET,
    ST_JOB_LIST,
    ST_JOB_CLAIM,
    ST_JOB_ADVANCE,
    ST_JOB_RETRY,
    ST_JOB_FAIL,
    ST_JOB_DONE,
    ST_JOB_CLAIMERS,
    ST_JOB_RELEASE,
    ST_EVENTS_SINCE_ALL,
    ST_EVENTS_SINCE_USER,
    ST_EVENTS_LAST,
    ST_TUS_INSERT,
    ST_TUS_GET,
    ST_TUS_SET_OFFSET,
    ST_TUS_SET_LENGTH,
    ST_TUS_FINISH_SET,
    ST_TUS_DELETE,
    ST_TUS_EXPIRED,
    ST_USAGE,
    ST_PRUNE_EVENTS,
    ST_PRUNE_JOBS,
    ST_PRUNE_TUS,
    ST_SAVEPOINT,
    ST_SAVEPOINT_RELEASE,
    ST_SAVEPOINT_ROLLBACK,
    ST_COUNT
};

static const char *const st_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_USER_UPSERT] = "INSERT INTO users(name, admin, created_at) VALUES (?1, ?2, ?3) "
                       "ON CONFLICT(name) DO UPDATE SET admin = excluded.admin",
    [ST_USER_EXISTS] = "SELECT 1 FROM users WHERE name = ?1",
    [ST_MEDIA_INSERT] = "INSERT INTO media(id, owner, path, folder, name, size, sha256, "
                        "content_type, state, storage_key, wrapped_key, created_at, uploaded_at) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_SHARE_INSERT] = "INSERT INTO shares(media_id, user, created_at) VALUES (?1, ?2, ?3) "
                        "ON CONFLICT(media_id, user) DO NOTHING",
    [ST_JOB_INSERT] = "INSERT INTO jobs(id, kind, media_id, owner, state, stage, attempts, "
                      "spool_path, not_before, created_at, updated_at) "
                      "VALUES (?1, ?2, ?3, ?4, 'queued', ?5, 0, ?6, 0, ?7, ?7)",
    /* The event carries the job as GET /v1/jobs/{id} shows it, plus the
     * media's path and name, built by SQLite from the rows just written. */
    [ST_EVENT_INSERT] =
        "INSERT INTO events(user, type, job_id, media_id, data, created_at) "
        "SELECT j.owner, ?2, j.id, j.media_id, json_object('id', j.id, 'kind', j.kind, "
        "'state', j.state, 'stage', j.stage, 'media_id', j.media_id, 'attempts', j.attempts, "
        "'error', j.error, 'path', m.path, 'name', m.name), ?3 "
        "FROM jobs j LEFT JOIN media m ON m.id = j.media_id WHERE j.id = ?1",
    [ST_PATH_EXISTS] = "SELECT 1 FROM media WHERE owner = ?1 AND path = ?2 AND state <> 'failed'",
    [ST_QUEUE_DEPTH] = "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')",
    [ST_MEDIA_GET] = "SELECT " MEDIA_COLS " FROM media m WHERE m.id = ?1 AND " VISIBLE_TO("?2"),
    [ST_MEDIA_BY_PATH] = "SELECT " MEDIA_COLS " FROM media m WHERE m.owner = ?1 AND m.path = ?2 "
                         "ORDER BY m.state = 'failed', m.created_at DESC, m.id DESC LIMIT 1",
    [ST_LIST_FILES] = "SELECT " MEDIA_COLS " FROM media m WHERE m.folder = ?1 AND " VISIBLE_TO(
        "?2") " ORDER BY m.name, m.owner, m.id",
    /* Descendants of folder F are the folders in (P, U): P = F + "/" ("/"
     * for the root) and U = P with its final '/' turned into '0', the next
     * byte. So "/ab/..." is in, and "/abc" and "/ab-x" are not; P itself
     * (the root "/", for F = "/") is not a descendant. The
     * immediate child is the text after P up to the next '/'. length() and
     * substr() both count characters, so they agree on UTF-8 names. */
    [ST_LIST_FOLDERS] =
        "SELECT CASE WHEN instr(r, '/') > 0 THEN substr(r, 1, instr(r, '/') - 1) ELSE r END "
        "AS sub, count(*), coalesce(sum(size), 0) FROM ("
        "  SELECT substr(m.folder, length(?1) + 1) AS r, m.size AS size FROM media m"
        "  WHERE m.folder > ?1 AND m.folder < ?2 AND " VISIBLE_TO("?3") ") "
                                                                        "GROUP BY sub ORDER BY sub",
    [ST_MEDIA_MOVE] = "UPDATE media SET path = ?3, folder = ?4, name = ?5 "
                      "WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)",
    [ST_SHARES_DELETE] = "DELETE FROM shares WHERE media_id = ?1",
    [ST_MEDIA_DELETE] = "DELETE FROM media WHERE id = ?1 AND (?2 IS NULL OR owner = ?2) "
                        "RETURNING storage_key",
    [ST_MEDIA_OWNED] = "SELECT 1 FROM media WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)",
    [ST_MEDIA_PAGE] = "SELECT " MEDIA_COLS " FROM media m WHERE m.id > ?1 ORDER BY m.id LIMIT ?2",
    [ST_MEDIA_SET_SEALED] = "UPDATE media SET sha256 = ?2, wrapped_key = ?3 WHERE id = ?1",
    [ST_MEDIA_SET_STORED] = "UPDATE media SET storage_key = ?2 WHERE id = ?1",
    [ST_MEDIA_SET_AVAILABLE] =
        "UPDATE media SET state = 'available', uploaded_at = ?2 WHERE id = ?1",
    [ST_MEDIA_SET_FAILED] = "UPDATE media SET state = 'failed' WHERE id = ?1 AND state = 'queued'",
    [ST_MEDIA_VISIBLE_OWNER] = "SELECT m.owner FROM media m WHERE m.id = ?1 AND " VISIBLE_TO("?2"),
    [ST_JOB_GET] = "SELECT " JOB_COLS " FROM jobs WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)",
    [ST_JOB_LIST] = "SELECT " JOB_COLS " FROM jobs WHERE owner = ?1 AND (?2 IS NULL OR state = ?2) "
                    "ORDER BY created_at DESC, rowid DESC LIMIT ?3",
    [ST_JOB_CLAIM] = "UPDATE jobs SET state = 'running', claimed_by = ?1, updated_at = ?2 "
                     "WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND kind = ?3 "
                     "AND not_before <= ?2 ORDER BY created_at, rowid LIMIT ?4) "
                     "RETURNING " JOB_COLS ", rowid",
    [ST_JOB_ADVANCE] = "UPDATE jobs SET stage = ?2, work_path = ?3, updated_at = ?4 "
                       "WHERE id = ?1 AND state = 'running'",
    [ST_JOB_RETRY] = "UPDATE jobs SET state = 'queued', attempts = attempts + 1, error = ?2, "
                     "not_before = ?3, claimed_by = NULL, updated_at = ?4 "
                     "WHERE id = ?1 AND state = 'running'",
    [ST_JOB_FAIL] = "UPDATE jobs SET state = 'failed', attempts = attempts + 1, error = ?2, "
                    "updated_at = ?3 WHERE id = ?1 AND state IN ('queued', 'running') "
                    "RETURNING kind, media_id",
    [ST_JOB_DONE] = "UPDATE jobs SET state = 'done', updated_at = ?2 "
                    "WHERE id = ?1 AND state = 'running'",
    [ST_JOB_CLAIMERS] = "SELECT DISTINCT claimed_by FROM jobs WHERE state = 'running'",
    [ST_JOB_RELEASE] = "UPDATE jobs SET state = 'queued', claimed_by = NULL, updated_at = ?2 "
                       "WHERE state = 'running' AND claimed_by IS ?1",
    [ST_EVENTS_SINCE_ALL] = "SELECT " EVENT_COLS " FROM events WHERE seq > ?1 ORDER BY seq "
                            "LIMIT ?2",
    [ST_EVENTS_SINCE_USER] = "SELECT " EVENT_COLS " FROM events WHERE user = ?3 AND seq > ?1 "
                             "ORDER BY seq LIMIT ?2",
    /* sqlite_sequence keeps the high-water mark even after pruning. */
    [ST_EVENTS_LAST] =
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
    [ST_TUS_INSERT] = "INSERT INTO tus(id, owner, length, \"offset\", path, metadata, "
                      "content_type, spool_path, expires_at, created_at) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ST_TUS_GET] = "SELECT " TUS_COLS " FROM tus WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)",
    [ST_TUS_SET_OFFSET] = "UPDATE tus SET \"offset\" = ?2 WHERE id = ?1 AND job_id IS NULL",
    [ST_TUS_SET_LENGTH] = "UPDATE tus SET length = ?2 WHERE id = ?1 AND job_id IS NULL",
    [ST_TUS_FINISH_SET] = "UPDATE tus SET job_id = ?2, media_id = ?3, \"offset\" = ?4, "
                          "length = ?4, finished_at = ?5 WHERE id = ?1 AND job_id IS NULL",
    [ST_TUS_DELETE] = "DELETE FROM tus WHERE id = ?1 AND (?2 IS NULL OR owner = ?2)",
    [ST_TUS_EXPIRED] = "SELECT " TUS_COLS " FROM tus WHERE job_id IS NULL AND expires_at < ?1 "
                       "ORDER BY expires_at, id LIMIT ?2",
    /* Every known user (even without media) and every owner, ranked by
     * the bytes and then the number of their own live media. */
    [ST_USAGE] = "WITH u(name) AS (SELECT name FROM users UNION SELECT owner FROM media) "
                 "SELECT u.name, count(m.id), coalesce(sum(m.size), 0) AS bytes FROM u "
                 "LEFT JOIN media m ON m.owner = u.name AND m.state <> 'failed' "
                 "GROUP BY u.name ORDER BY bytes DESC, count(m.id) DESC, u.name",
    [ST_PRUNE_EVENTS] = "DELETE FROM events WHERE created_at < ?1",
    [ST_PRUNE_JOBS] = "DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < ?1",
    [ST_PRUNE_TUS] = "DELETE FROM tus WHERE job_id IS NOT NULL AND expires_at < ?1",
    [ST_SAVEPOINT] = "SAVEPOINT step",
    [ST_SAVEPOINT_RELEASE] = "RELEASE step",
    [ST_SAVEPOINT_ROLLBACK] = "ROLLBACK TO step",
};

struct catalog {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT];
};

/* ---- error handling and statement helpers ------------------------------ */

static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_CONSTRAINT:
        if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
            return -EEXIST;
        if (rc == SQLITE_CONSTRAINT_CHECK)
            return -EINVAL;
        return -EIO;
    default:
        return -EIO;
    }
}

/* Map a failed SQLite call to -errno and log it (once, here). Constraint
 * results the caller turns into an answer (-EEXIST, -EINVAL) are not
 * logged. */
static int fail(struct catalog *cat, int rc, const char *what)
{
    int e = map_rc(rc);
    if (e == -EEXIST || e == -EINVAL)
        return e;
    if (e == -EBUSY)
        log_warn("catalog: %s: database locked for more than %d ms (%s)", what, CATALOG_BUSY_MS,
                 sqlite3_errmsg(cat->db));
    else
        log_error("catalog: %s: %s (sqlite %d)", what, sqlite3_errmsg(cat->db), rc);
    return e;
}

/* The cached statement id, prepared on first use. 0 / -errno. */
static int prep(struct catalog *cat, enum st id, sqlite3_stmt **out)
{
    if (cat->st[id] == NULL) {
        int rc = sqlite3_prepare_v3(cat->db, st_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &cat->st[id], NULL);
        if (rc != SQLITE_OK) {
            cat->st[id] = NULL;
            *out = NULL;
            return fail(cat, rc, "prepare");
        }
    }
    *out = cat->st[id];
    return 0;
}

/* Done with a statement: reset it (ends its implicit read transaction) and
 * drop the bindings (they may point at the caller's strings). */
static void release(sqlite3_stmt *s)
{
    if (s != NULL) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

/* One sqlite3_step: SQLITE_ROW or SQLITE_DONE, or -errno (logged unless an
 * expected constraint result). */
static int step(struct catalog *cat, sqlite3_stmt *s, const char *what)
{
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return rc;
    return fail(cat, rc, what);
}

/* Step a write statement to completion; returns the rows changed or -errno. */
static int exec_changes(struct catalog *cat, sqlite3_stmt *s, const char *what)
{
    int rc;
    do
        rc = step(cat, s, what);
    while (rc == SQLITE_ROW);
    int n = rc == SQLITE_DONE ? sqlite3_changes(cat->db) : rc;
    release(s);
    return n;
}

static void bind_text(sqlite3_stmt *s, int i, const char *v)
{
    if (v != NULL)
        sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, i);
}

static void bind_i64(sqlite3_stmt *s, int i, int64_t v)
{
    sqlite3_bind_int64(s, i, v);
}

static char *col_strdup(sqlite3_stmt *s, int i)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    return t != NULL ? xstrdup((const char *)t) : NULL;
}

static void col_copy(sqlite3_stmt *s, int i, char *dst, size_t len)
{
    const unsigned char *t = sqlite3_column_text(s, i);
    snprintf(dst, len, "%s", t != NULL ? (const char *)t : "");
}

static int run_simple(struct catalog *cat, enum st id, const char *what)
{
    sqlite3_stmt *s;
    int rc = prep(cat, id, &s);
    if (rc < 0)
        return rc;
    rc = exec_changes(cat, s, what);
    return rc < 0 ? rc : 0;
}

static int tx_begin(struct catalog *cat)
{
    return run_simple(cat, ST_BEGIN, "begin");
}

static void tx_rollback(struct catalog *cat)
{
    if (!sqlite3_get_autocommit(cat->db))
        (void)run_simple(cat, ST_ROLLBACK, "rollback");
}

/* Commit; on failure the transaction is rolled back and -errno returned. */
static int tx_commit(struct catalog *cat)
{
    int rc = run_simple(cat, ST_COMMIT, "commit");
    if (rc < 0)
        tx_rollback(cat);
    return rc;
}

/* Finish a write transaction: commit when rc is 0, else roll back. */
static int tx_end(struct catalog *cat, int rc)
{
    if (rc == 0)
        return tx_commit(cat);
    tx_rollback(cat);
    return rc;
}

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

/* ---- row readers ------------------------------------------------------- */

static void read_media(sqlite3_stmt *s, struct dr_media *m)
{
    memset(m, 0, sizeof *m);
    col_copy(s, 0, m->id, sizeof m->id);
    m->owner = col_strdup(s, 1);
    m->path = col_strdup(s, 2);
    m->name = col_strdup(s, 3);
    m->folder = col_strdup(s, 4);
    m->size = (uint64_t)sqlite3_column_int64(s, 5);
    col_copy(s, 6, m->sha256, sizeof m->sha256);
    m->content_type = col_strdup(s, 7);
    m->state = col_strdup(s, 8);
    m->storage_key = col_strdup(s, 9);
    const void *blob = sqlite3_column_blob(s, 10);
    int blen = sqlite3_column_bytes(s, 10);
    if (blob != NULL && blen > 0) {
        m->wrapped_key = xmalloc((size_t)blen);
        memcpy(m->wrapped_key, blob, (size_t)blen);
        m->wrapped_key_len = (size_t)blen;
    }
    m->created_at = sqlite3_column_int64(s, 11);
    m->uploaded_at = sqlite3_column_int64(s, 12);
}

static void read_job(sqlite3_stmt *s, struct dr_job *j)
{
    memset(j, 0, sizeof *j);
    col_copy(s, 0, j->id, sizeof j->id);
    col_copy(s, 1, j->kind, sizeof j->kind);
    col_copy(s, 2, j->media_id, sizeof j->media_id);
    j->owner = col_strdup(s, 3);
    col_copy(s, 4, j->state, sizeof j->state);
    col_copy(s, 5, j->stage, sizeof j->stage);
    j->attempts = sqlite3_column_int(s, 6);
    j->error = col_strdup(s, 7);
    j->spool_path = col_strdup(s, 8);
    j->work_path = col_strdup(s, 9);
    j->not_before = sqlite3_column_int64(s, 10);
    j->created_at = sqlite3_column_int64(s, 11);
    j->updated_at = sqlite3_column_int64(s, 12);
}

static void read_tus(sqlite3_stmt *s, struct dr_tus *t)
{
    memset(t, 0, sizeof *t);
    col_copy(s, 0, t->id, sizeof t->id);
    t->owner = col_strdup(s, 1);
    t->length = sqlite3_column_int64(s, 2);
    t->offset = (uint64_t)sqlite3_column_int64(s, 3);
    t->path = col_strdup(s, 4);
    t->metadata = col_strdup(s, 5);
    t->content_type = col_strdup(s, 6);
    t->spool_path = col_strdup(s, 7);
    t->expires_at = sqlite3_column_int64(s, 8);
    t->created_at = sqlite3_column_int64(s, 9);
    col_copy(s, 10, t->job_id, sizeof t->job_id);
    col_copy(s, 11, t->media_id, sizeof t->media_id);
}

static void read_event(sqlite3_stmt *s, struct dr_event *e)
{
    memset(e, 0, sizeof *e);
    e->seq = sqlite3_column_int64(s, 0);
    e->user = col_strdup(s, 1);
    col_copy(s, 2, e->type, sizeof e->type);
    col_copy(s, 3, e->job_id, sizeof e->job_id);
    col_copy(s, 4, e->media_id, sizeof e->media_id);
    e->data = col_strdup(s, 5);
    e->created_at = sqlite3_column_int64(s, 6);
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
    memset(m, 0, sizeof *m);
}

void dr_job_clear(struct dr_job *j)
{
    if (j == NULL)
        return;
    free(j->owner);
    free(j->error);
    free(j->spool_path);
    free(j->work_path);
    memset(j, 0, sizeof *j);
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
    memset(t, 0, sizeof *t);
}

/* ---- lifecycle --------------------------------------------------------- */

static int pragma_int(struct catalog *cat, const char *sql, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(cat->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        rc = fail(cat, rc, sql);
        sqlite3_finalize(s);
        return rc;
    }
    rc = step(cat, s, sql);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(s, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

static int pragma_text(struct catalog *cat, const char *sql, char *out, size_t len)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(cat->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) {
        rc = fail(cat, rc, sql);
        sqlite3_finalize(s);
        return rc;
    }
    rc = step(cat, s, sql);
    if (rc == SQLITE_ROW) {
        col_copy(s, 0, out, len);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        snprintf(out, len, "%s", "");
        rc = 0;
    }
    sqlite3_finalize(s);
    return rc;
}

/* Per-connection settings. journal_mode=WAL is persistent in the file;
 * setting it again is a no-op once it is WAL. */
static int configure(struct catalog *cat)
{
    char mode[16];
    int rc = pragma_text(cat, "PRAGMA journal_mode=WAL", mode, sizeof mode);
    if (rc < 0)
        return rc;
    if (strcmp(mode, "wal") != 0) {
        log_error("catalog: cannot switch to WAL mode (journal_mode is %s)", mode);
        return -EIO;
    }
    char *msg = NULL;
    rc = sqlite3_exec(cat->db,
                      dr_test_skip_sync("catalog")
                          ? "PRAGMA synchronous=OFF; PRAGMA foreign_keys=ON;"
                          : "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
                      NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error("catalog: pragmas: %s", msg != NULL ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return map_rc(rc);
    }
    return 0;
}

/* Bring the schema to CATALOG_SCHEMA_VERSION. The version is read again
 * under the write lock, so concurrent migrators apply each step once. */
static int migrate_db(struct catalog *cat)
{
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    int version = 0;
    rc = pragma_int(cat, "PRAGMA user_version", &version);
    if (rc < 0)
        goto out;
    if (version > CATALOG_SCHEMA_VERSION) {
        log_error("catalog: schema version %d is newer than this dripd understands (%d)", version,
                  CATALOG_SCHEMA_VERSION);
        rc = -EIO;
        goto out;
    }
    for (int v = version; v < CATALOG_SCHEMA_VERSION; v++) {
        char *msg = NULL;
        int src = sqlite3_exec(cat->db, migrations[v], NULL, NULL, &msg);
        if (src != SQLITE_OK) {
            log_error("catalog: migration to schema %d: %s", v + 1,
                      msg != NULL ? msg : sqlite3_errstr(src));
            sqlite3_free(msg);
            rc = map_rc(src);
            goto out;
        }
    }
    if (version < CATALOG_SCHEMA_VERSION) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", CATALOG_SCHEMA_VERSION);
        int src = sqlite3_exec(cat->db, sql, NULL, NULL, NULL);
        if (src != SQLITE_OK) {
            rc = fail(cat, src, "set user_version");
            goto out;
        }
        log_info("catalog: schema migrated from version %d to %d", version, CATALOG_SCHEMA_VERSION);
    }
out:
    return tx_end(cat, rc);
}

int catalog_open(const char *data_dir, struct catalog **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (data_dir == NULL)
        return -EINVAL;
    char *path = xasprintf("%s/catalog.db", data_dir);
    struct catalog *cat = xcalloc(1, sizeof *cat);
    int rc = sqlite3_open_v2(
        path, &cat->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        int sys = cat->db != NULL ? sqlite3_system_errno(cat->db) : 0;
        log_error("catalog: open %s: %s", path,
                  cat->db != NULL ? sqlite3_errmsg(cat->db) : sqlite3_errstr(rc));
        rc = (rc & 0xff) == SQLITE_CANTOPEN && sys > 0 ? -sys : map_rc(rc);
        goto fail;
    }
    sqlite3_extended_result_codes(cat->db, 1);
    sqlite3_busy_timeout(cat->db, CATALOG_BUSY_MS);
    rc = configure(cat);
    if (rc < 0)
        goto fail;
    int version = 0;
    rc = pragma_int(cat, "PRAGMA user_version", &version);
    if (rc < 0)
        goto fail;
    if (version != CATALOG_SCHEMA_VERSION) {
        rc = migrate_db(cat);
        if (rc < 0)
            goto fail;
    }
    free(path);
    *out = cat;
    return 0;
fail:
    free(path);
    catalog_close(cat);
    return rc;
}

void catalog_close(struct catalog *cat)
{
    if (cat == NULL)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(cat->st[i]);
    sqlite3_close_v2(cat->db);
    free(cat);
}

int catalog_migrate(const char *data_dir)
{
    if (data_dir == NULL)
        return -EINVAL;
    int rc = dr_mkdirs(data_dir, 0750);
    if (rc < 0) {
        log_error("catalog: cannot create %s: %s", data_dir, strerror(-rc));
        return rc;
    }
    struct catalog *cat;
    rc = catalog_open(data_dir, &cat); /* migrates */
    catalog_close(cat);
    return rc;
}

int catalog_info(struct catalog *cat, struct dr_catalog_info *out)
{
    if (cat == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    int fk = 0, rc;
    rc = pragma_text(cat, "PRAGMA journal_mode", out->journal_mode, sizeof out->journal_mode);
    if (rc == 0)
        rc = pragma_int(cat, "PRAGMA synchronous", &out->synchronous);
    if (rc == 0)
        rc = pragma_int(cat, "PRAGMA foreign_keys", &fk);
    if (rc == 0)
        rc = pragma_int(cat, "PRAGMA busy_timeout", &out->busy_timeout_ms);
    if (rc == 0)
        rc = pragma_int(cat, "PRAGMA user_version", &out->schema_version);
    out->foreign_keys = fk != 0;
    return rc;
}

int catalog_sync_users(struct catalog *cat, const struct dr_config *cfg)
{
    if (cat == NULL || cfg == NULL)
        return -EINVAL;
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    int64_t now = dr_now_ms();
    for (size_t i = 0; i < cfg->n_users && rc == 0; i++) {
        if (cfg->users[i].name == NULL)
            continue;
        sqlite3_stmt *s;
        rc = prep(cat, ST_USER_UPSERT, &s);
        if (rc < 0)
            break;
        bind_text(s, 1, cfg->users[i].name);
        bind_i64(s, 2, cfg->users[i].admin ? 1 : 0);
        bind_i64(s, 3, now);
        rc = exec_changes(cat, s, "sync users");
        rc = rc < 0 ? rc : 0;
    }
    return tx_end(cat, rc);
}

/* ---- shared pieces of write transactions -------------------------------- */

/* Append the event of type for job_id (its data built from the job row as
 * it is now). Inside the caller's transaction. */
static int add_event(struct catalog *cat, const char *job_id, const char *type, int64_t now)
{
    sqlite3_stmt *s;
    int rc = prep(cat, ST_EVENT_INSERT, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, job_id);
    bind_text(s, 2, type);
    bind_i64(s, 3, now);
    rc = exec_changes(cat, s, "insert event");
    if (rc < 0)
        return rc;
    return rc == 1 ? 0 : -ENOENT;
}

static int add_share(struct catalog *cat, const char *media_id, const char *user, int64_t now)
{
    sqlite3_stmt *s;
    int rc = prep(cat, ST_SHARE_INSERT, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, media_id);
    bind_text(s, 2, user);
    bind_i64(s, 3, now);
    rc = exec_changes(cat, s, "insert share");
    return rc < 0 ? rc : 0;
}

static int add_job(struct catalog *cat, const char *job_id, const char *kind, const char *media_id,
                   const char *owner, const char *stage, const char *spool_path, int64_t now)
{
    sqlite3_stmt *s;
    int rc = prep(cat, ST_JOB_INSERT, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, job_id);
    bind_text(s, 2, kind);
    bind_text(s, 3, media_id);
    bind_text(s, 4, owner);
    bind_text(s, 5, stage);
    bind_text(s, 6, spool_path);
    bind_i64(s, 7, now);
    rc = exec_changes(cat, s, "insert job");
    return rc < 0 ? rc : 0;
}

static int insert_media(struct catalog *cat, const struct dr_media *m, const char *folder,
                        const char *name)
{
    sqlite3_stmt *s;
    int rc = prep(cat, ST_MEDIA_INSERT, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, m->id);
    bind_text(s, 2, m->owner);
    bind_text(s, 3, m->path);
    bind_text(s, 4, folder);
    bind_text(s, 5, name);
    bind_i64(s, 6, (int64_t)m->size);
    bind_text(s, 7, m->sha256);
    bind_text(s, 8, m->content_type);
    bind_text(s, 9, m->state);
    bind_text(s, 10, m->storage_key);
    if (m->wrapped_key != NULL && m->wrapped_key_len > 0)
        sqlite3_bind_blob(s, 11, m->wrapped_key, (int)m->wrapped_key_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 11);
    bind_i64(s, 12, m->created_at);
    bind_i64(s, 13, m->uploaded_at);
    rc = exec_changes(cat, s, "insert media");
    return rc < 0 ? rc : 0;
}

/* One intake item inside the caller's transaction: media row, owner link,
 * upload job, job.created event. A taken path is not an error here: the
 * item gets result -EEXIST (SQLite undid only the failed INSERT) and the
 * transaction goes on. Returns 0 or a fatal -errno. */
static int intake_one(struct catalog *cat, struct dr_intake *it, int64_t now)
{
    it->created_at = now;
    char *folder = NULL, *name = NULL;
    int rc = split_path(it->path, &folder, &name);
    if (rc < 0)
        goto out;
    struct dr_media m = {0};
    dr_id_new(m.id);
    m.owner = (char *)it->owner;
    m.path = (char *)it->path;
    m.size = it->size;
    m.content_type = (char *)it->content_type;
    m.state = (char *)"queued";
    m.created_at = now;
    rc = insert_media(cat, &m, folder, name);
    if (rc == -EEXIST) {
        it->result = -EEXIST;
        it->media_id[0] = it->job_id[0] = '\0';
        rc = 0;
        goto out;
    }
    if (rc < 0)
        goto out;
    char job_id[DR_ID_LEN + 1];
    dr_id_new(job_id);
    rc = add_share(cat, m.id, it->owner, now);
    if (rc == 0)
        rc = add_job(cat, job_id, "upload", m.id, it->owner, "encrypt", it->spool_path, now);
    if (rc == 0)
        rc = add_event(cat, job_id, "job.created", now);
    if (rc == 0) {
        it->result = 0;
        memcpy(it->media_id, m.id, sizeof it->media_id);
        memcpy(it->job_id, job_id, sizeof it->job_id);
    }
out:
    free(folder);
    free(name);
    return rc;
}

static bool intake_valid(const struct dr_intake *it)
{
    return it->owner != NULL && it->path != NULL && it->path[0] == '/' &&
           it->path[strlen(it->path) - 1] != '/' && it->size <= INT64_MAX;
}

/* ---- upload intake ------------------------------------------------------ */

/* Busy handler of an intake: SQLite's default one (busy_timeout) sleeps
 * 1, 2, 5, 10, 15, 20, 25... ms between tries, so an intake that finds the
 * write lock held for 0.3 ms by a pipeline stage's commit sleeps 1 ms, and
 * one that loses a few races sleeps tens of ms while every upload of the
 * batch waits. Polling every INTAKE_POLL_US gets the lock within a fraction
 * of a WAL commit of its release, for the same CATALOG_BUSY_MS in all. */
#define INTAKE_POLL_US 100
static int intake_busy(void *arg, int count)
{
    uint64_t *start = arg;
    uint64_t now = dr_mono_ns();
    if (count == 0)
        *start = now;
    else if (now - *start >= (uint64_t)CATALOG_BUSY_MS * 1000000u)
        return 0;
    struct timespec ts = {0, INTAKE_POLL_US * 1000L};
    nanosleep(&ts, NULL);
    return 1;
}

int catalog_intake_uploads(struct catalog *cat, struct dr_intake *items, size_t n)
{
    if (cat == NULL || (items == NULL && n > 0))
        return -EINVAL;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!intake_valid(&items[i]))
            return -EINVAL;
    uint64_t busy_since = 0;
    sqlite3_busy_handler(cat->db, intake_busy, &busy_since);
    int rc = tx_begin(cat);
    if (rc < 0)
        goto out;
    int64_t now = dr_now_ms();
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = intake_one(cat, &items[i], now);
    rc = tx_end(cat, rc);
out:
    sqlite3_busy_timeout(cat->db, CATALOG_BUSY_MS);
    if (rc < 0)
        for (size_t i = 0; i < n; i++) {
            items[i].result = rc;
            items[i].media_id[0] = items[i].job_id[0] = '\0';
        }
    return rc;
}

int catalog_path_exists(struct catalog *cat, const char *owner, const char *path)
{
    if (cat == NULL || owner == NULL || path == NULL)
        return -EINVAL;
    sqlite3_stmt *s;
    int rc = prep(cat, ST_PATH_EXISTS, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, owner);
    bind_text(s, 2, path);
    rc = step(cat, s, "path exists");
    release(s);
    if (rc < 0)
        return rc;
    return rc == SQLITE_ROW ? 1 : 0;
}

int catalog_queue_depth(struct catalog *cat, uint64_t *out)
{
    if (cat == NULL || out == NULL)
        return -EINVAL;
    sqlite3_stmt *s;
    int rc = prep(cat, ST_QUEUE_DEPTH, &s);
    if (rc < 0)
        return rc;
    rc = step(cat, s, "queue depth");
    if (rc == SQLITE_ROW) {
        *out = (uint64_t)sqlite3_column_int64(s, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        *out = 0;
        rc = 0;
    }
    release(s);
    return rc;
}

/* ---- media -------------------------------------------------------------- */

/* Run a statement expected to give at most one media row. */
static int one_media(struct catalog *cat, sqlite3_stmt *s, struct dr_media *out, const char *what)
{
    int rc = step(cat, s, what);
    if (rc == SQLITE_ROW) {
        read_media(s, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    }
    release(s);
    return rc;
}

int catalog_media_get(struct catalog *cat, const char *id, const char *viewer, struct dr_media *out)
{
    if (cat == NULL || id == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s;
    int rc = prep(cat, ST_MEDIA_GET, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, id);
    bind_text(s, 2, viewer);
    return one_media(cat, s, out, "media get");
}

int catalog_media_by_path(struct catalog *cat, const char *owner, const char *path,
                          struct dr_media *out)
{
    if (cat == NULL || owner == NULL || path == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s;
    int rc = prep(cat, ST_MEDIA_BY_PATH, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, owner);
    bind_text(s, 2, path);
    return one_media(cat, s, out, "media by path");
}

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
     * the final '/' replaced by '0' (see ST_LIST_FOLDERS). */
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
    sqlite3_stmt *s = NULL;
    int rc = prep(cat, ST_LIST_FILES, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, f);
    bind_text(s, 2, viewer);
    while ((rc = step(cat, s, "list files")) == SQLITE_ROW) {
        if (nf == capf) {
            capf = capf ? 2 * capf : 16;
            fv = xrealloc(fv, capf * sizeof *fv);
        }
        read_media(s, &fv[nf++]);
    }
    release(s);
    if (rc < 0)
        goto out;

    rc = prep(cat, ST_LIST_FOLDERS, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, lo);
    bind_text(s, 2, hi);
    bind_text(s, 3, viewer);
    while ((rc = step(cat, s, "list folders")) == SQLITE_ROW) {
        if (nd == capd) {
            capd = capd ? 2 * capd : 16;
            dv = xrealloc(dv, capd * sizeof *dv);
        }
        dv[nd].name = col_strdup(s, 0);
        if (dv[nd].name == NULL)
            dv[nd].name = xstrdup("");
        dv[nd].files = (uint64_t)sqlite3_column_int64(s, 1);
        dv[nd].size = (uint64_t)sqlite3_column_int64(s, 2);
        nd++;
    }
    release(s);
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

int catalog_media_move(struct catalog *cat, const char *id, const char *owner, const char *new_path)
{
    if (cat == NULL || id == NULL)
        return -EINVAL;
    char *folder, *name;
    int rc = split_path(new_path, &folder, &name);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s;
    rc = prep(cat, ST_MEDIA_MOVE, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, id);
    bind_text(s, 2, owner);
    bind_text(s, 3, new_path);
    bind_text(s, 4, folder);
    bind_text(s, 5, name);
    rc = exec_changes(cat, s, "media move");
    if (rc >= 0)
        rc = rc == 0 ? -ENOENT : 0;
out:
    free(folder);
    free(name);
    return rc;
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
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s;
    rc = prep(cat, ST_MEDIA_OWNED, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, id);
    bind_text(s, 2, owner);
    rc = step(cat, s, "media delete");
    release(s);
    if (rc < 0)
        goto out;
    if (rc == SQLITE_DONE) {
        rc = -ENOENT;
        goto out;
    }
    /* The shares go first, explicitly (ON DELETE CASCADE would also do it). */
    rc = prep(cat, ST_SHARES_DELETE, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, id);
    rc = exec_changes(cat, s, "delete shares");
    if (rc < 0)
        goto out;
    rc = prep(cat, ST_MEDIA_DELETE, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, id);
    bind_text(s, 2, owner);
    while ((rc = step(cat, s, "media delete")) == SQLITE_ROW) {
        found = true;
        free(key);
        key = col_strdup(s, 0);
    }
    release(s);
    if (rc < 0)
        goto out;
    rc = found ? 0 : -ENOENT;
out:
    rc = tx_end(cat, rc);
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
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s;
    rc = prep(cat, ST_MEDIA_OWNED, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, id);
    bind_text(s, 2, owner);
    rc = step(cat, s, "share: media");
    release(s);
    if (rc < 0)
        goto out;
    if (rc == SQLITE_DONE) {
        rc = -ENOENT;
        goto out;
    }
    rc = prep(cat, ST_USER_EXISTS, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, user);
    rc = step(cat, s, "share: user");
    release(s);
    if (rc < 0)
        goto out;
    if (rc == SQLITE_DONE) {
        rc = -ENOENT;
        goto out;
    }
    rc = add_share(cat, id, user, dr_now_ms());
out:
    return tx_end(cat, rc);
}

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
        sqlite3_stmt *s;
        rc = prep(cat, ST_MEDIA_PAGE, &s);
        if (rc < 0)
            break;
        bind_text(s, 1, last);
        bind_i64(s, 2, FOREACH_PAGE);
        size_t n = 0;
        while (n < FOREACH_PAGE && (rc = step(cat, s, "media foreach")) == SQLITE_ROW)
            read_media(s, &page[n++]);
        release(s);
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
    int rc = split_path(m->path, &folder, &name);
    if (rc < 0)
        return rc;
    struct dr_media row = *m;
    if (row.state == NULL)
        row.state = (char *)"available";
    int64_t now = dr_now_ms();
    if (row.created_at == 0)
        row.created_at = now;
    rc = tx_begin(cat);
    if (rc < 0)
        goto out;
    rc = insert_media(cat, &row, folder, name);
    if (rc == 0)
        rc = add_share(cat, row.id, row.owner, now);
    rc = tx_end(cat, rc);
out:
    free(folder);
    free(name);
    return rc;
}

/* An UPDATE of one media row by id: 0, -ENOENT if no such row, -errno. */
static int update_media(struct catalog *cat, sqlite3_stmt *s, const char *what)
{
    int rc = exec_changes(cat, s, what);
    if (rc < 0)
        return rc;
    return rc == 0 ? -ENOENT : 0;
}

int catalog_media_set_sealed(struct catalog *cat, const char *media_id, const char *sha256_hex,
                             const uint8_t *wrapped_key, size_t wrapped_key_len)
{
    if (cat == NULL || media_id == NULL || sha256_hex == NULL || wrapped_key_len > INT32_MAX)
        return -EINVAL;
    sqlite3_stmt *s;
    int rc = prep(cat, ST_MEDIA_SET_SEALED, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, media_id);
    bind_text(s, 2, sha256_hex);
    if (wrapped_key != NULL && wrapped_key_len > 0)
        sqlite3_bind_blob(s, 3, wrapped_key, (int)wrapped_key_len, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 3);
    return update_media(cat, s, "media set sealed");
}

int catalog_media_set_stored(struct catalog *cat, const char *media_id, const char *storage_key)
{
    if (cat == NULL || media_id == NULL)
        return -EINVAL;
    sqlite3_stmt *s;
    int rc = prep(cat, ST_MEDIA_SET_STORED, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, media_id);
    bind_text(s, 2, storage_key);
    return update_media(cat, s, "media set stored");
}

int catalog_media_set_available(struct catalog *cat, const char *media_id)
{
    if (cat == NULL || media_id == NULL)
        return -EINVAL;
    sqlite3_stmt *s;
    int rc = prep(cat, ST_MEDIA_SET_AVAILABLE, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, media_id);
    bind_i64(s, 2, dr_now_ms());
    return update_media(cat, s, "media set available");
}

/* ---- jobs --------------------------------------------------------------- */

int catalog_job_get(struct catalog *cat, const char *id, const char *viewer, struct dr_job *out)
{
    if (cat == NULL || id == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s;
    int rc = prep(cat, ST_JOB_GET, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, id);
    bind_text(s, 2, viewer);
    rc = step(cat, s, "job get");
    if (rc == SQLITE_ROW) {
        read_job(s, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    }
    release(s);
    return rc;
}

int catalog_jobs_list(struct catalog *cat, const char *owner, const char *state, int max,
                      struct dr_job **out, size_t *n_out)
{
    if (out != NULL)
        *out = NULL;
    if (n_out != NULL)
        *n_out = 0;
    if (cat == NULL || owner == NULL || out == NULL || n_out == NULL || max <= 0)
        return -EINVAL;
    sqlite3_stmt *s;
    int rc = prep(cat, ST_JOB_LIST, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, owner);
    bind_text(s, 2, state);
    sqlite3_bind_int(s, 3, max);
    struct dr_job *j = NULL;
    size_t n = 0, cap = 0;
    while ((rc = step(cat, s, "job list")) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            j = xrealloc(j, cap * sizeof *j);
        }
        read_job(s, &j[n++]);
    }
    release(s);
    if (rc < 0) {
        catalog_jobs_list_free(j, n);
        return rc;
    }
    *out = j;
    *n_out = n;
    return 0;
}

void catalog_jobs_list_free(struct dr_job *jobs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dr_job_clear(&jobs[i]);
    free(jobs);
}

int catalog_enqueue_download(struct catalog *cat, const char *media_id, const char *viewer,
                             char job_id_out[DR_ID_LEN + 1])
{
    if (cat == NULL || media_id == NULL || job_id_out == NULL)
        return -EINVAL;
    job_id_out[0] = '\0';
    char *owner = NULL;
    char job_id[DR_ID_LEN + 1];
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    sqlite3_stmt *s;
    rc = prep(cat, ST_MEDIA_VISIBLE_OWNER, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, media_id);
    bind_text(s, 2, viewer);
    rc = step(cat, s, "enqueue download");
    if (rc == SQLITE_ROW)
        owner = col_strdup(s, 0);
    release(s);
    if (rc < 0)
        goto out;
    if (rc == SQLITE_DONE) {
        rc = -ENOENT;
        goto out;
    }
    /* The job belongs to whoever asked (a shared media's downloader gets
     * the events); an internal request (NULL viewer) to the media owner. */
    dr_id_new(job_id);
    rc = add_job(cat, job_id, "download", media_id, viewer != NULL ? viewer : owner, "fetch", NULL,
                 dr_now_ms());
    if (rc == 0)
        rc = add_event(cat, job_id, "job.created", dr_now_ms());
out:
    rc = tx_end(cat, rc);
    if (rc == 0)
        memcpy(job_id_out, job_id, DR_ID_LEN + 1);
    free(owner);
    return rc;
}

/* A claimed job and its rowid, for handing them out in queue order. */
struct claimed {
    int64_t created_at, rowid;
    struct dr_job job;
};

/* Queue order: created_at, then insertion order. ULIDs are random within
 * one millisecond, so the id cannot break ties; the rowid (which grows
 * with every insert) can. */
static int claimed_cmp(const void *a, const void *b)
{
    const struct claimed *x = a, *y = b;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return x->rowid < y->rowid ? -1 : x->rowid > y->rowid;
}

int catalog_jobs_claim(struct catalog *cat, const char *kind, int max, const char *claimer,
                       struct dr_job *out, int *n_out)
{
    if (n_out != NULL)
        *n_out = 0;
    if (cat == NULL || kind == NULL || claimer == NULL || n_out == NULL || (out == NULL && max > 0))
        return -EINVAL;
    if (max <= 0)
        return 0;
    if (max > CLAIM_MAX)
        max = CLAIM_MAX;
    struct claimed *got = xcalloc((size_t)max, sizeof *got);
    int n = 0;
    int rc = tx_begin(cat);
    if (rc < 0)
        goto done;
    sqlite3_stmt *s;
    rc = prep(cat, ST_JOB_CLAIM, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, claimer);
    bind_i64(s, 2, dr_now_ms());
    bind_text(s, 3, kind);
    bind_i64(s, 4, max);
    while ((rc = step(cat, s, "jobs claim")) == SQLITE_ROW) {
        if (n < max) {
            read_job(s, &got[n].job);
            got[n].created_at = got[n].job.created_at;
            got[n].rowid = sqlite3_column_int64(s, 13);
            n++;
        }
    }
    release(s);
    rc = rc < 0 ? rc : 0;
out:
    rc = tx_end(cat, rc);
done:
    if (rc < 0) {
        for (int i = 0; i < n; i++)
            dr_job_clear(&got[i].job);
    } else {
        /* RETURNING gives no order guarantee; hand them out oldest first. */
        qsort(got, (size_t)n, sizeof *got, claimed_cmp);
        for (int i = 0; i < n; i++)
            out[i] = got[i].job;
        *n_out = n;
    }
    free(got);
    return rc;
}

/* Inside a transaction: run an UPDATE of one job (0 rows: -ENOENT) and
 * append its event. */
static int job_change(struct catalog *cat, sqlite3_stmt *s, const char *job_id, const char *type,
                      int64_t now, const char *what)
{
    int rc = exec_changes(cat, s, what);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return -ENOENT;
    return type != NULL ? add_event(cat, job_id, type, now) : 0;
}

int catalog_job_advance(struct catalog *cat, const char *job_id, const char *next_stage,
                        const char *work_path)
{
    if (cat == NULL || job_id == NULL || next_stage == NULL)
        return -EINVAL;
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    int64_t now = dr_now_ms();
    sqlite3_stmt *s;
    rc = prep(cat, ST_JOB_ADVANCE, &s);
    if (rc == 0) {
        bind_text(s, 1, job_id);
        bind_text(s, 2, next_stage);
        bind_text(s, 3, work_path);
        bind_i64(s, 4, now);
        rc = job_change(cat, s, job_id, "job.stage", now, "job advance");
    }
    return tx_end(cat, rc);
}

int catalog_job_retry(struct catalog *cat, const char *job_id, const char *error, int64_t delay_ms)
{
    if (cat == NULL || job_id == NULL)
        return -EINVAL;
    int64_t now = dr_now_ms();
    sqlite3_stmt *s;
    int rc = prep(cat, ST_JOB_RETRY, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, job_id);
    bind_text(s, 2, error);
    bind_i64(s, 3, now + (delay_ms > 0 ? delay_ms : 0));
    bind_i64(s, 4, now);
    rc = exec_changes(cat, s, "job retry");
    if (rc < 0)
        return rc;
    return rc == 0 ? -ENOENT : 0;
}

int catalog_job_fail(struct catalog *cat, const char *job_id, const char *error)
{
    if (cat == NULL || job_id == NULL)
        return -EINVAL;
    char kind[16] = "", media_id[DR_ID_LEN + 1] = "";
    bool found = false;
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    int64_t now = dr_now_ms();
    sqlite3_stmt *s;
    rc = prep(cat, ST_JOB_FAIL, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, job_id);
    bind_text(s, 2, error);
    bind_i64(s, 3, now);
    while ((rc = step(cat, s, "job fail")) == SQLITE_ROW) {
        found = true;
        col_copy(s, 0, kind, sizeof kind);
        col_copy(s, 1, media_id, sizeof media_id);
    }
    release(s);
    if (rc < 0)
        goto out;
    if (!found) {
        rc = -ENOENT;
        goto out;
    }
    if (strcmp(kind, "upload") == 0) {
        /* Only a media still waiting for its upload fails; the row may also
         * be gone (deleted meanwhile), which is fine. */
        rc = prep(cat, ST_MEDIA_SET_FAILED, &s);
        if (rc < 0)
            goto out;
        bind_text(s, 1, media_id);
        rc = exec_changes(cat, s, "media set failed");
        if (rc < 0)
            goto out;
    }
    rc = add_event(cat, job_id, "job.failed", now);
out:
    return tx_end(cat, rc);
}

int catalog_job_done(struct catalog *cat, const char *job_id)
{
    if (cat == NULL || job_id == NULL)
        return -EINVAL;
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    int64_t now = dr_now_ms();
    sqlite3_stmt *s;
    rc = prep(cat, ST_JOB_DONE, &s);
    if (rc == 0) {
        bind_text(s, 1, job_id);
        bind_i64(s, 2, now);
        rc = job_change(cat, s, job_id, "job.done", now, "job done");
    }
    return tx_end(cat, rc);
}

/* Inside a transaction: the media part of a step. 0, -ENOENT (no such
 * media row), -errno. */
static int step_media(struct catalog *cat, const struct dr_job_step *st, int64_t now)
{
    sqlite3_stmt *s;
    int rc;
    if (st->sha256_hex != NULL) {
        if (st->wrapped_key_len > INT32_MAX)
            return -EINVAL;
        if ((rc = prep(cat, ST_MEDIA_SET_SEALED, &s)) < 0)
            return rc;
        bind_text(s, 1, st->media_id);
        bind_text(s, 2, st->sha256_hex);
        if (st->wrapped_key != NULL && st->wrapped_key_len > 0)
            sqlite3_bind_blob(s, 3, st->wrapped_key, (int)st->wrapped_key_len, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 3);
        if ((rc = update_media(cat, s, "step: media set sealed")) < 0)
            return rc;
    }
    if (st->storage_key != NULL) {
        if ((rc = prep(cat, ST_MEDIA_SET_STORED, &s)) < 0)
            return rc;
        bind_text(s, 1, st->media_id);
        bind_text(s, 2, st->storage_key);
        if ((rc = update_media(cat, s, "step: media set stored")) < 0)
            return rc;
    }
    if (st->available) {
        if ((rc = prep(cat, ST_MEDIA_SET_AVAILABLE, &s)) < 0)
            return rc;
        bind_text(s, 1, st->media_id);
        bind_i64(s, 2, now);
        if ((rc = update_media(cat, s, "step: media set available")) < 0)
            return rc;
    }
    return 0;
}

/* Inside a transaction: the job part of a step (advance or done, with its
 * event). 0, -ENOENT (the job is not running), -errno. */
static int step_job(struct catalog *cat, const struct dr_job_step *st, int64_t now)
{
    sqlite3_stmt *s;
    int rc;
    if (st->next_stage != NULL) {
        if ((rc = prep(cat, ST_JOB_ADVANCE, &s)) < 0)
            return rc;
        bind_text(s, 1, st->job_id);
        bind_text(s, 2, st->next_stage);
        bind_text(s, 3, st->work_path);
        bind_i64(s, 4, now);
        return job_change(cat, s, st->job_id, "job.stage", now, "step: job advance");
    }
    if ((rc = prep(cat, ST_JOB_DONE, &s)) < 0)
        return rc;
    bind_text(s, 1, st->job_id);
    bind_i64(s, 2, now);
    return job_change(cat, s, st->job_id, "job.done", now, "step: job done");
}

int catalog_jobs_step(struct catalog *cat, struct dr_job_step *steps, size_t n, int64_t *last_seq)
{
    if (cat == NULL || (steps == NULL && n > 0))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        struct dr_job_step *st = &steps[i];
        bool media = st->sha256_hex != NULL || st->storage_key != NULL || st->available;
        if (st->job_id == NULL || (media && st->media_id == NULL)) {
            for (size_t k = 0; k < n; k++)
                steps[k].result = -EINVAL;
            return -EINVAL;
        }
        st->result = 0;
        st->media_gone = false;
    }
    if (n == 0)
        return 0;
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    int64_t now = dr_now_ms(), seq = 0;
    /* Each step runs inside a savepoint, so a step that cannot apply is
     * undone alone and the others still commit. */
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct dr_job_step *st = &steps[i];
        if ((rc = run_simple(cat, ST_SAVEPOINT, "step: savepoint")) < 0)
            break;
        int r = step_job(cat, st, now);
        if (r == 0) {
            r = step_media(cat, st, now);
            if (r == -ENOENT) {
                st->media_gone = true;
                if (st->media_optional)
                    r = 0;
            }
        }
        if (r == -ENOENT) {
            st->result = -ENOENT;
            rc = run_simple(cat, ST_SAVEPOINT_ROLLBACK, "step: rollback to savepoint");
        } else {
            rc = r;
        }
        if (rc == 0)
            rc = run_simple(cat, ST_SAVEPOINT_RELEASE, "step: release savepoint");
        if (rc == 0 && st->result == 0)
            seq = sqlite3_last_insert_rowid(cat->db); /* its event, inserted last */
    }
    rc = tx_end(cat, rc);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            steps[i].result = rc;
    } else if (last_seq != NULL) {
        /* The events of this transaction were the newest when it
         * committed (writers are serialised). 0 when none was written. */
        *last_seq = seq;
    }
    return rc;
}

int catalog_jobs_recover(struct catalog *cat, bool (*alive)(const char *claimer, void *arg),
                         void *arg, int *released)
{
    if (released != NULL)
        *released = 0;
    if (cat == NULL || alive == NULL)
        return -EINVAL;
    /* 1. The claimers of running jobs (a plain read). */
    char **claimers = NULL;
    size_t n = 0, cap = 0;
    bool orphan = false; /* running with no claimer: never alive */
    sqlite3_stmt *s;
    int rc = prep(cat, ST_JOB_CLAIMERS, &s);
    if (rc < 0)
        return rc;
    while ((rc = step(cat, s, "recover: claimers")) == SQLITE_ROW) {
        const unsigned char *c = sqlite3_column_text(s, 0);
        if (c == NULL) {
            orphan = true;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            claimers = xrealloc(claimers, cap * sizeof *claimers);
        }
        claimers[n++] = xstrdup((const char *)c);
    }
    release(s);
    if (rc < 0)
        goto out;
    /* 2. Ask alive() with no transaction open. A dead claimer claims
     *    nothing new, so its set of jobs cannot grow meanwhile. */
    size_t dead = 0;
    for (size_t i = 0; i < n; i++) {
        if (alive(claimers[i], arg)) {
            free(claimers[i]);
            continue;
        }
        claimers[dead++] = claimers[i];
    }
    n = dead;
    if (n == 0 && !orphan) {
        rc = 0;
        goto out;
    }
    /* 3. Release their jobs in one transaction, keeping stage and attempts. */
    rc = tx_begin(cat);
    if (rc < 0)
        goto out;
    int64_t now = dr_now_ms();
    int total = 0;
    for (size_t i = 0; i <= n && rc == 0; i++) {
        if (i == n && !orphan)
            break;
        rc = prep(cat, ST_JOB_RELEASE, &s);
        if (rc < 0)
            break;
        bind_text(s, 1, i < n ? claimers[i] : NULL);
        bind_i64(s, 2, now);
        rc = exec_changes(cat, s, "recover: release");
        if (rc >= 0) {
            if (rc > 0)
                log_info("catalog: released %d job(s) of %s", rc,
                         i < n ? claimers[i] : "no claimer");
            total += rc;
            rc = 0;
        }
    }
    rc = tx_end(cat, rc);
    if (rc == 0 && released != NULL)
        *released = total;
out:
    for (size_t i = 0; i < n; i++)
        free(claimers[i]);
    free(claimers);
    return rc;
}

/* ---- events ------------------------------------------------------------- */

void catalog_events_free(struct dr_event *ev, size_t n)
{
    for (size_t i = 0; ev != NULL && i < n; i++) {
        free(ev[i].user);
        free(ev[i].data);
    }
    free(ev);
}

int catalog_events_since(struct catalog *cat, const char *user, int64_t after_seq, int max,
                         struct dr_event **out, size_t *n_out)
{
    if (out != NULL)
        *out = NULL;
    if (n_out != NULL)
        *n_out = 0;
    if (cat == NULL || out == NULL || n_out == NULL)
        return -EINVAL;
    if (max <= 0)
        return 0;
    if (max > EVENTS_MAX)
        max = EVENTS_MAX;
    sqlite3_stmt *s;
    int rc = prep(cat, user != NULL ? ST_EVENTS_SINCE_USER : ST_EVENTS_SINCE_ALL, &s);
    if (rc < 0)
        return rc;
    bind_i64(s, 1, after_seq);
    bind_i64(s, 2, max);
    if (user != NULL)
        bind_text(s, 3, user);
    struct dr_event *ev = NULL;
    size_t n = 0, cap = 0;
    while ((rc = step(cat, s, "events since")) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ev = xrealloc(ev, cap * sizeof *ev);
        }
        read_event(s, &ev[n++]);
    }
    release(s);
    if (rc < 0) {
        catalog_events_free(ev, n);
        return rc;
    }
    *out = ev;
    *n_out = n;
    return 0;
}

int catalog_events_last_seq(struct catalog *cat, int64_t *out)
{
    if (cat == NULL || out == NULL)
        return -EINVAL;
    *out = 0;
    sqlite3_stmt *s;
    int rc = prep(cat, ST_EVENTS_LAST, &s);
    if (rc < 0)
        return rc;
    rc = step(cat, s, "events last seq");
    if (rc == SQLITE_ROW)
        *out = sqlite3_column_int64(s, 0);
    release(s);
    return rc < 0 ? rc : 0;
}

/* ---- tus ---------------------------------------------------------------- */

int catalog_tus_create(struct catalog *cat, const struct dr_tus *t)
{
    if (cat == NULL || t == NULL || !dr_id_valid(t->id) || t->owner == NULL || t->path == NULL ||
        t->spool_path == NULL || t->offset > INT64_MAX)
        return -EINVAL;
    sqlite3_stmt *s;
    int rc = prep(cat, ST_TUS_INSERT, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, t->id);
    bind_text(s, 2, t->owner);
    bind_i64(s, 3, t->length < 0 ? -1 : t->length);
    bind_i64(s, 4, (int64_t)t->offset);
    bind_text(s, 5, t->path);
    bind_text(s, 6, t->metadata);
    bind_text(s, 7, t->content_type);
    bind_text(s, 8, t->spool_path);
    bind_i64(s, 9, t->expires_at);
    bind_i64(s, 10, t->created_at != 0 ? t->created_at : dr_now_ms());
    rc = exec_changes(cat, s, "tus create");
    return rc < 0 ? rc : 0;
}

int catalog_tus_get(struct catalog *cat, const char *id, const char *owner, struct dr_tus *out)
{
    if (cat == NULL || id == NULL || out == NULL)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    sqlite3_stmt *s;
    int rc = prep(cat, ST_TUS_GET, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, id);
    bind_text(s, 2, owner);
    rc = step(cat, s, "tus get");
    if (rc == SQLITE_ROW) {
        read_tus(s, out);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = -ENOENT;
    }
    release(s);
    return rc;
}

static int tus_update(struct catalog *cat, enum st id, const char *tus_id, int64_t v,
                      const char *what)
{
    sqlite3_stmt *s;
    int rc = prep(cat, id, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, tus_id);
    bind_i64(s, 2, v);
    rc = exec_changes(cat, s, what);
    if (rc < 0)
        return rc;
    return rc == 0 ? -ENOENT : 0;
}

int catalog_tus_set_offset(struct catalog *cat, const char *id, uint64_t offset)
{
    if (cat == NULL || id == NULL || offset > INT64_MAX)
        return -EINVAL;
    return tus_update(cat, ST_TUS_SET_OFFSET, id, (int64_t)offset, "tus set offset");
}

int catalog_tus_set_length(struct catalog *cat, const char *id, int64_t length)
{
    if (cat == NULL || id == NULL || length < 0)
        return -EINVAL;
    return tus_update(cat, ST_TUS_SET_LENGTH, id, length, "tus set length");
}

int catalog_tus_finish(struct catalog *cat, const char *id, struct dr_intake *intake)
{
    if (cat == NULL || id == NULL || intake == NULL || intake->size > INT64_MAX)
        return -EINVAL;
    intake->media_id[0] = intake->job_id[0] = '\0';
    struct dr_tus row = {0};
    int rc = tx_begin(cat);
    if (rc < 0)
        goto out;
    sqlite3_stmt *s;
    rc = prep(cat, ST_TUS_GET, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, id);
    bind_text(s, 2, intake->owner);
    rc = step(cat, s, "tus finish");
    if (rc == SQLITE_ROW)
        read_tus(s, &row);
    release(s);
    if (rc < 0)
        goto out;
    if (rc == SQLITE_DONE) {
        rc = -ENOENT;
        goto out;
    }
    if (row.job_id[0] != '\0') {
        /* Finished already (a retried last PATCH): the same ids, no new job. */
        memcpy(intake->media_id, row.media_id, sizeof intake->media_id);
        memcpy(intake->job_id, row.job_id, sizeof intake->job_id);
        intake->result = 0;
        rc = 0;
        goto out;
    }
    /* Inputs the caller left NULL come from the session row. */
    struct dr_intake it = *intake;
    if (it.owner == NULL)
        it.owner = row.owner;
    if (it.path == NULL)
        it.path = row.path;
    if (it.content_type == NULL)
        it.content_type = row.content_type;
    if (it.spool_path == NULL)
        it.spool_path = row.spool_path;
    if (!intake_valid(&it)) {
        rc = -EINVAL;
        goto out;
    }
    rc = intake_one(cat, &it, dr_now_ms());
    if (rc < 0)
        goto out;
    intake->result = it.result;
    intake->created_at = it.created_at;
    if (it.result < 0) {
        rc = it.result; /* -EEXIST: nothing written, the session stays open */
        goto out;
    }
    rc = prep(cat, ST_TUS_FINISH_SET, &s);
    if (rc < 0)
        goto out;
    bind_text(s, 1, id);
    bind_text(s, 2, it.job_id);
    bind_text(s, 3, it.media_id);
    bind_i64(s, 4, (int64_t)it.size);
    bind_i64(s, 5, dr_now_ms());
    rc = exec_changes(cat, s, "tus finish");
    if (rc >= 0)
        rc = rc == 1 ? 0 : -ENOENT;
    if (rc == 0) {
        memcpy(intake->media_id, it.media_id, sizeof intake->media_id);
        memcpy(intake->job_id, it.job_id, sizeof intake->job_id);
    }
out:
    rc = tx_end(cat, rc); /* the idempotent path commits an empty transaction */
    if (rc < 0) {
        intake->result = rc;
        intake->media_id[0] = intake->job_id[0] = '\0';
    }
    dr_tus_clear(&row);
    return rc;
}

int catalog_tus_delete(struct catalog *cat, const char *id, const char *owner)
{
    if (cat == NULL || id == NULL)
        return -EINVAL;
    sqlite3_stmt *s;
    int rc = prep(cat, ST_TUS_DELETE, &s);
    if (rc < 0)
        return rc;
    bind_text(s, 1, id);
    bind_text(s, 2, owner);
    rc = exec_changes(cat, s, "tus delete");
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
    sqlite3_stmt *s;
    int rc = prep(cat, ST_TUS_EXPIRED, &s);
    if (rc < 0)
        return rc;
    bind_i64(s, 1, now_ms);
    bind_i64(s, 2, TUS_EXPIRED_MAX);
    struct dr_tus *v = NULL;
    size_t n = 0, cap = 0;
    while ((rc = step(cat, s, "tus expired")) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            v = xrealloc(v, cap * sizeof *v);
        }
        read_tus(s, &v[n++]);
    }
    release(s);
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

/* ---- usage and housekeeping -------------------------------------------- */

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
    sqlite3_stmt *s;
    int rc = prep(cat, ST_USAGE, &s);
    if (rc < 0)
        return rc;
    struct dr_usage *u = NULL;
    size_t n = 0, cap = 0;
    while ((rc = step(cat, s, "usage")) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            u = xrealloc(u, cap * sizeof *u);
        }
        u[n].user = col_strdup(s, 0);
        u[n].files = (uint64_t)sqlite3_column_int64(s, 1);
        u[n].bytes = (uint64_t)sqlite3_column_int64(s, 2);
        n++;
    }
    release(s);
    if (rc < 0) {
        catalog_usage_free(u, n);
        return rc;
    }
    *out = u;
    *n_out = n;
    return 0;
}

int catalog_prune(struct catalog *cat, int64_t before_ms, uint64_t *removed)
{
    if (removed != NULL)
        *removed = 0;
    if (cat == NULL)
        return -EINVAL;
    static const enum st steps[] = {ST_PRUNE_EVENTS, ST_PRUNE_JOBS, ST_PRUNE_TUS};
    uint64_t total = 0;
    int rc = tx_begin(cat);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < DR_ARRAY_LEN(steps) && rc == 0; i++) {
        sqlite3_stmt *s;
        rc = prep(cat, steps[i], &s);
        if (rc < 0)
            break;
        bind_i64(s, 1, before_ms);
        rc = exec_changes(cat, s, "prune");
        if (rc >= 0) {
            total += (uint64_t)rc;
            rc = 0;
        }
    }
    rc = tx_end(cat, rc);
    if (rc == 0 && removed != NULL)
        *removed = total;
    return rc;
}

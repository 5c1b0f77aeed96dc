/* catalog_schema.c - the catalog's tables, and the migrations that make them.
 *
 * What: the DDL of each schema version, one text per dialect (DDL is where
 * SQLite and PostgreSQL differ most: types, WITHOUT ROWID, sequences), the
 * schema version the database records, and the migration that brings an
 * older database up to CATALOG_SCHEMA_VERSION. docs/CATALOG.md shows the
 * tables and explains the indexes.
 *
 * Threads: called with one connection by one thread (the supervisor's
 * catalog_migrate, or any catalog_open that finds an old schema).
 *
 * Guarantees: migration i brings the schema from version i to i + 1. Each
 * runs inside the write transaction that also records the new version,
 * and the version is read again under the write lock, so concurrent
 * migrators (the supervisor and a worker already running, or two dripd
 * processes) apply each step exactly once, and a crash leaves either the
 * old or the new schema. IF NOT EXISTS keeps a step harmless if it ever
 * meets a half-made database. A database newer than this binary is
 * refused (-EIO, logged), never written.
 *
 * SQLite records the version in PRAGMA user_version and serialises
 * migrators with BEGIN IMMEDIATE. PostgreSQL records it in the one-row
 * table catalog_schema, and migrators take pg_advisory_xact_lock(
 * CATALOG_LOCK_MIGRATE) first (DDL is transactional there too).
 *
 * PostgreSQL's tables are SQLite's with its types: BIGINT for integers
 * (milliseconds, sizes), BYTEA for the wrapped key, BIGSERIAL for
 * events.seq and for jobs.pos, the queue position SQLite's rowid gives,
 * and COLLATE "C" on every text column that is compared or sorted, so that
 * ordering and the folder listing's range scan are byte order, as in
 * SQLite, whatever the database's locale. A schema step must have both
 * texts; the PostgreSQL catalog tests run every migration.
 *
 * What only a cluster needs exists only in PostgreSQL: jobs.node (the
 * node whose disk a job needs: its spool file, its cache), and the tables
 * nodes (heartbeats), leases (once-per-cluster work) and staged_parts
 * (upload bodies staged in the bucket). jobs.staged is in both, always
 * NULL in SQLite, so that the job statements are one text.
 */
#include "catalog_schema.h"

#include <errno.h>
#include <stdio.h>

#include "dripd/log.h"

/* One schema step, per dialect. */
struct migration {
    const char *sqlite;
    const char *pg;
};

#define T "TEXT COLLATE \"C\""

static const struct migration migrations[CATALOG_SCHEMA_VERSION] = {
    /* v1 */
    {.sqlite = "CREATE TABLE IF NOT EXISTS users ("
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
     .pg = "CREATE TABLE IF NOT EXISTS users ("
           "  name        " T " PRIMARY KEY,"
           "  admin       BIGINT NOT NULL DEFAULT 0,"
           "  created_at  BIGINT NOT NULL"
           ");"
           "CREATE TABLE IF NOT EXISTS media ("
           "  id           " T " PRIMARY KEY,"
           "  owner        " T " NOT NULL,"
           "  path         " T " NOT NULL CHECK (substr(path, 1, 1) = '/'),"
           "  folder       " T " NOT NULL,"
           "  name         " T " NOT NULL CHECK (name <> '' AND strpos(name, '/') = 0),"
           "  size         BIGINT NOT NULL DEFAULT 0 CHECK (size >= 0),"
           "  sha256       " T " NOT NULL DEFAULT '',"
           "  content_type " T ","
           "  state        " T " NOT NULL DEFAULT 'queued'"
           "               CHECK (state IN ('queued', 'available', 'failed')),"
           "  storage_key  " T ","
           "  wrapped_key  BYTEA,"
           "  created_at   BIGINT NOT NULL,"
           "  uploaded_at  BIGINT NOT NULL DEFAULT 0"
           ");"
           "CREATE UNIQUE INDEX IF NOT EXISTS media_owner_path ON media(owner, path)"
           "  WHERE state <> 'failed';"
           "CREATE INDEX IF NOT EXISTS media_folder ON media(folder);"
           "CREATE INDEX IF NOT EXISTS media_owner ON media(owner);"
           "CREATE TABLE IF NOT EXISTS shares ("
           "  media_id   " T " NOT NULL REFERENCES media(id) ON DELETE CASCADE,"
           "  \"user\"     " T " NOT NULL,"
           "  created_at BIGINT NOT NULL,"
           "  PRIMARY KEY (media_id, \"user\")"
           ");"
           "CREATE INDEX IF NOT EXISTS shares_user ON shares(\"user\");"
           "CREATE TABLE IF NOT EXISTS jobs ("
           "  id          " T " PRIMARY KEY,"
           "  pos         BIGSERIAL NOT NULL,"
           "  kind        " T " NOT NULL CHECK (kind IN ('upload', 'download')),"
           "  media_id    " T " NOT NULL,"
           "  owner       " T " NOT NULL,"
           "  state       " T " NOT NULL"
           "              CHECK (state IN ('queued', 'running', 'done', 'failed')),"
           "  stage       " T " NOT NULL,"
           "  attempts    BIGINT NOT NULL DEFAULT 0,"
           "  error       TEXT,"
           "  spool_path  TEXT,"
           "  work_path   TEXT,"
           "  claimed_by  " T ","
           "  not_before  BIGINT NOT NULL DEFAULT 0,"
           "  created_at  BIGINT NOT NULL,"
           "  updated_at  BIGINT NOT NULL,"
           "  node        " T " NOT NULL DEFAULT ''" /* the node whose disk it needs */
           ");"
           /* The claim walks a node's queued jobs of a kind in queue
            * order: a partial index keeps that walk short whatever the
            * history. */
           "CREATE INDEX IF NOT EXISTS jobs_claim ON jobs(node, kind, created_at, pos)"
           "  WHERE state = 'queued';"
           "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);"
           "CREATE INDEX IF NOT EXISTS jobs_media ON jobs(media_id);"
           "CREATE TABLE IF NOT EXISTS events ("
           "  seq        BIGSERIAL PRIMARY KEY,"
           "  \"user\"     " T " NOT NULL,"
           "  type       " T " NOT NULL,"
           "  job_id     " T " NOT NULL,"
           "  media_id   " T " NOT NULL,"
           "  data       TEXT NOT NULL,"
           "  created_at BIGINT NOT NULL"
           ");"
           "CREATE INDEX IF NOT EXISTS events_user ON events(\"user\", seq);"
           "CREATE TABLE IF NOT EXISTS tus ("
           "  id           " T " PRIMARY KEY,"
           "  owner        " T " NOT NULL,"
           "  length       BIGINT NOT NULL DEFAULT -1,"
           "  \"offset\"     BIGINT NOT NULL DEFAULT 0,"
           "  path         " T " NOT NULL,"
           "  metadata     TEXT,"
           "  content_type " T ","
           "  spool_path   TEXT NOT NULL,"
           "  expires_at   BIGINT NOT NULL,"
           "  created_at   BIGINT NOT NULL,"
           "  job_id       " T ","
           "  media_id     " T ","
           "  finished_at  BIGINT,"
           "  CHECK (\"offset\" >= 0 AND (length < 0 OR \"offset\" <= length))"
           ");"
           "CREATE INDEX IF NOT EXISTS tus_open ON tus(expires_at) WHERE job_id IS NULL;"
           /* Cluster only: the nodes' heartbeats, and the leases of work
            * done once per cluster (catalog_nodes.c). */
           "CREATE TABLE IF NOT EXISTS nodes ("
           "  id      " T " PRIMARY KEY,"
           "  seen_at BIGINT NOT NULL"
           ");"
           "CREATE TABLE IF NOT EXISTS leases ("
           "  name       " T " PRIMARY KEY,"
           "  holder     " T " NOT NULL,"
           "  expires_at BIGINT NOT NULL,"
           "  cursor     BIGINT NOT NULL DEFAULT 0"
           ");"},
    /* v2: GET /v1/jobs lists a user's newest jobs without a scan. */
    {.sqlite = "CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, created_at);",
     .pg = "CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, created_at);"},
    /* v3: processing (docs/PROCESSING.md): the media's metadata (a JSON
     * object), its variants (one sealed object each), and the variant a
     * download job fetches (NULL: the original). */
    {.sqlite = "ALTER TABLE media ADD COLUMN metadata TEXT;"
               "ALTER TABLE jobs ADD COLUMN variant TEXT;"
               "CREATE TABLE IF NOT EXISTS variants ("
               "  media_id     TEXT NOT NULL REFERENCES media(id) ON DELETE CASCADE,"
               "  name         TEXT NOT NULL,"
               "  state        TEXT NOT NULL CHECK (state IN ('available', 'failed')),"
               "  content_type TEXT,"
               "  width        INTEGER NOT NULL DEFAULT 0,"
               "  height       INTEGER NOT NULL DEFAULT 0,"
               "  size         INTEGER NOT NULL DEFAULT 0,"
               "  sha256       TEXT NOT NULL DEFAULT '',"
               "  wrapped_key  BLOB,"
               "  storage_key  TEXT,"
               "  error        TEXT,"
               "  created_at   INTEGER NOT NULL,"
               "  PRIMARY KEY (media_id, name)"
               ") WITHOUT ROWID;",
     .pg = "ALTER TABLE media ADD COLUMN IF NOT EXISTS metadata TEXT;"
           "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS variant " T ";"
           "CREATE TABLE IF NOT EXISTS variants ("
           "  media_id     " T " NOT NULL REFERENCES media(id) ON DELETE CASCADE,"
           "  name         " T " NOT NULL,"
           "  state        " T " NOT NULL CHECK (state IN ('available', 'failed')),"
           "  content_type " T ","
           "  width        BIGINT NOT NULL DEFAULT 0,"
           "  height       BIGINT NOT NULL DEFAULT 0,"
           "  size         BIGINT NOT NULL DEFAULT 0,"
           "  sha256       " T " NOT NULL DEFAULT '',"
           "  wrapped_key  BYTEA,"
           "  storage_key  " T ","
           "  error        TEXT,"
           "  created_at   BIGINT NOT NULL,"
           "  PRIMARY KEY (media_id, name)"
           ");"},
    /* v4: sharing that can be taken back (docs/CATALOG.md, "Sharing"):
     * folder shares (a live rule: every file of the owner under path, now
     * and later; lo and hi are the descendant range of path, as in the
     * listing, so the root needs no special case) and public links. */
    {.sqlite = "CREATE TABLE IF NOT EXISTS folder_shares ("
               "  owner      TEXT NOT NULL,"
               "  path       TEXT NOT NULL,"
               "  \"user\"     TEXT NOT NULL,"
               "  lo         TEXT NOT NULL,"
               "  hi         TEXT NOT NULL,"
               "  created_at INTEGER NOT NULL,"
               "  PRIMARY KEY (owner, path, \"user\")"
               ") WITHOUT ROWID;"
               "CREATE INDEX IF NOT EXISTS folder_shares_user ON folder_shares(\"user\", owner);"
               "CREATE TABLE IF NOT EXISTS links ("
               "  id            TEXT PRIMARY KEY,"
               "  owner         TEXT NOT NULL,"
               "  media_id      TEXT NOT NULL REFERENCES media(id) ON DELETE CASCADE,"
               "  created_at    INTEGER NOT NULL,"
               "  expires_at    INTEGER NOT NULL DEFAULT 0,"
               "  max_downloads INTEGER NOT NULL DEFAULT 0,"
               "  downloads     INTEGER NOT NULL DEFAULT 0"
               ");"
               "CREATE INDEX IF NOT EXISTS links_owner ON links(owner, created_at);"
               "CREATE INDEX IF NOT EXISTS links_media ON links(media_id);",
     .pg = "CREATE TABLE IF NOT EXISTS folder_shares ("
           "  owner      " T " NOT NULL,"
           "  path       " T " NOT NULL,"
           "  \"user\"     " T " NOT NULL,"
           "  lo         " T " NOT NULL,"
           "  hi         " T " NOT NULL,"
           "  created_at BIGINT NOT NULL,"
           "  PRIMARY KEY (owner, path, \"user\")"
           ");"
           "CREATE INDEX IF NOT EXISTS folder_shares_user ON folder_shares(\"user\", owner);"
           "CREATE TABLE IF NOT EXISTS links ("
           "  id            " T " PRIMARY KEY,"
           "  owner         " T " NOT NULL,"
           "  media_id      " T " NOT NULL REFERENCES media(id) ON DELETE CASCADE,"
           "  created_at    BIGINT NOT NULL,"
           "  expires_at    BIGINT NOT NULL DEFAULT 0,"
           "  max_downloads BIGINT NOT NULL DEFAULT 0,"
           "  downloads     BIGINT NOT NULL DEFAULT 0"
           ");"
           "CREATE INDEX IF NOT EXISTS links_owner ON links(owner, created_at);"
           "CREATE INDEX IF NOT EXISTS links_media ON links(media_id);"},
    /* v5: folders made on their own (docs/CATALOG.md, "Folders"): a folder
     * exists while a file is below it, or while its row (or one below it)
     * is here, so an empty folder can be made and kept. */
    {.sqlite = "CREATE TABLE IF NOT EXISTS folders ("
               "  owner      TEXT NOT NULL,"
               "  path       TEXT NOT NULL,"
               "  created_at INTEGER NOT NULL,"
               "  PRIMARY KEY (owner, path)"
               ") WITHOUT ROWID;",
     .pg = "CREATE TABLE IF NOT EXISTS folders ("
           "  owner      " T " NOT NULL,"
           "  path       " T " NOT NULL,"
           "  created_at BIGINT NOT NULL,"
           "  PRIMARY KEY (owner, path)"
           ");"},
    /* v6: versions and the trash (docs/CATALOG.md, "Versions and the
     * trash"). Each upload stays its own media row; file_id groups the
     * versions of one file (its first version's id), version numbers
     * them, and retired says why a row does not hold its path: a
     * replacement still uploading, an earlier version, deleted into the
     * trash, or being purged (its objects are being deleted). Only rows
     * that are not retired hold a path, so the unique index moves to
     * them. A tus session keeps its upload's If-Match or
     * ?conflict=rename for the intake at its end. */
    {.sqlite = "ALTER TABLE media ADD COLUMN file_id TEXT;"
               "ALTER TABLE media ADD COLUMN version INTEGER NOT NULL DEFAULT 1;"
               "ALTER TABLE media ADD COLUMN retired TEXT"
               "  CHECK (retired IN ('pending', 'version', 'trash', 'purge'));"
               "ALTER TABLE media ADD COLUMN retired_at INTEGER NOT NULL DEFAULT 0;"
               "UPDATE media SET file_id = id WHERE file_id IS NULL;"
               "DROP INDEX IF EXISTS media_owner_path;"
               "CREATE UNIQUE INDEX IF NOT EXISTS media_owner_path ON media(owner, path)"
               "  WHERE state <> 'failed' AND retired IS NULL;"
               "CREATE INDEX IF NOT EXISTS media_file ON media(file_id);"
               "CREATE INDEX IF NOT EXISTS media_retired ON media(retired, retired_at)"
               "  WHERE retired IS NOT NULL;"
               "ALTER TABLE tus ADD COLUMN if_match TEXT;"
               "ALTER TABLE tus ADD COLUMN rename_taken INTEGER NOT NULL DEFAULT 0;",
     .pg = "ALTER TABLE media ADD COLUMN IF NOT EXISTS file_id " T ";"
           "ALTER TABLE media ADD COLUMN IF NOT EXISTS version BIGINT NOT NULL DEFAULT 1;"
           "ALTER TABLE media ADD COLUMN IF NOT EXISTS retired " T
           "  CHECK (retired IN ('pending', 'version', 'trash', 'purge'));"
           "ALTER TABLE media ADD COLUMN IF NOT EXISTS retired_at BIGINT NOT NULL DEFAULT 0;"
           "UPDATE media SET file_id = id WHERE file_id IS NULL;"
           "DROP INDEX IF EXISTS media_owner_path;"
           "CREATE UNIQUE INDEX IF NOT EXISTS media_owner_path ON media(owner, path)"
           "  WHERE state <> 'failed' AND retired IS NULL;"
           "CREATE INDEX IF NOT EXISTS media_file ON media(file_id);"
           "CREATE INDEX IF NOT EXISTS media_retired ON media(retired, retired_at)"
           "  WHERE retired IS NOT NULL;"
           "ALTER TABLE tus ADD COLUMN IF NOT EXISTS if_match " T ";"
           "ALTER TABLE tus ADD COLUMN IF NOT EXISTS rename_taken BIGINT NOT NULL DEFAULT 0;"},
    /* v7: cluster uploads staged in the bucket before their ack
     * (docs/CLUSTER.md, "Staged bodies"): jobs.staged names the body an
     * upload job reads (NULL: its node's spool file), in both dialects so
     * that job rows read alike; the parts of each body (sealed objects
     * staging-<body>-<part>, in order of off) only in PostgreSQL, as only
     * a cluster stages. */
    {.sqlite = "ALTER TABLE jobs ADD COLUMN staged TEXT;",
     .pg = "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS staged " T ";"
           "CREATE INDEX IF NOT EXISTS jobs_staged ON jobs(staged) WHERE staged IS NOT NULL;"
           "CREATE TABLE IF NOT EXISTS staged_parts ("
           "  body       " T " NOT NULL,"
           "  off        BIGINT NOT NULL CHECK (off >= 0),"
           "  len        BIGINT NOT NULL CHECK (len >= 0),"
           "  part       " T " NOT NULL,"
           "  created_at BIGINT NOT NULL,"
           "  PRIMARY KEY (body, off)"
           ");"},
    /* v8: tus concatenation in a cluster (docs/CLUSTER.md, "Staged
     * bodies"): a final upload takes its partial uploads' parts over by
     * re-pointing their rows to its own body, without moving a byte; src
     * keeps the body each part's object is named after (NULL: body).
     * Only PostgreSQL stages: nothing for SQLite to change. */
    {.sqlite = "SELECT 1;",
     .pg = "ALTER TABLE staged_parts ADD COLUMN IF NOT EXISTS src " T ";"
           "CREATE INDEX IF NOT EXISTS staged_parts_part ON staged_parts(part);"},
    /* v9: small upload bodies inline (issue 15; docs/CATALOG.md, "Inline
     * bodies"): a body of at most INGEST_INLINE_MAX bytes is committed with
     * its job instead of a spool file, in a table of its own (an UPDATE
     * rewrites a whole row, overflow pages included: in the jobs row the
     * bytes would be copied by every claim and step), and deleted when the
     * job is done or failed. PostgreSQL has it so that a copied SQLite
     * catalog keeps the bodies of its queued jobs; only a SQLite catalog
     * writes it. */
    {.sqlite = "CREATE TABLE IF NOT EXISTS job_bodies ("
               "  job_id TEXT PRIMARY KEY,"
               "  body   BLOB NOT NULL"
               ");",
     .pg = "CREATE TABLE IF NOT EXISTS job_bodies ("
           "  job_id " T " PRIMARY KEY,"
           "  body   BYTEA NOT NULL"
           ");"},
};

/* SQLite: PRAGMA user_version. PostgreSQL: catalog_schema, which may not
 * exist yet (0), so its presence is asked first. */
static const struct db_sql q_version = {"SELECT user_version FROM pragma_user_version",
                                        "SELECT to_regclass('catalog_schema') IS NOT NULL"};
static const struct db_sql q_pg_version = {NULL, "SELECT coalesce(max(version), 0) "
                                                 "FROM catalog_schema"};
static const struct db_sql q_pg_lock = {NULL,
                                        "SELECT pg_advisory_xact_lock(" CATALOG_LOCK_MIGRATE ")"};
static const struct db_sql q_pg_set = {NULL, "UPDATE catalog_schema SET version = $1"};

static int read_int(struct db *db, const struct db_sql *q, int64_t *out, const char *what)
{
    *out = 0;
    struct db_stmt *s;
    int rc = db_prepare(db, q, &s);
    if (rc < 0)
        return rc;
    rc = db_step(s, what);
    if (rc == DB_ROW)
        *out = db_col_i64(s, 0);
    db_reset(s);
    return rc < 0 ? rc : 0;
}

int catalog_schema_version(struct db *db, int *out)
{
    *out = 0;
    int64_t v = 0;
    int rc = read_int(db, &q_version, &v, "schema version");
    if (rc == 0 && db_dialect(db) == DB_POSTGRES)
        rc = v != 0 ? read_int(db, &q_pg_version, &v, "schema version") : 0;
    *out = (int)v;
    return rc;
}

static int set_version(struct db *db, int version)
{
    if (db_dialect(db) == DB_POSTGRES) {
        struct db_stmt *s;
        int rc = db_prepare(db, &q_pg_set, &s);
        if (rc < 0)
            return rc;
        db_bind_i64(s, 1, version);
        rc = db_exec(s, "set schema version");
        return rc < 0 ? rc : 0;
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", version);
    return db_script(db, sql, "set user_version");
}

/* PostgreSQL: migrators queue on an advisory lock, and the version table
 * exists (with its one row) before the version is read under it. */
static int pg_prepare_migration(struct db *db)
{
    int64_t ignored;
    int rc = read_int(db, &q_pg_lock, &ignored, "migration lock");
    if (rc == 0)
        rc = db_script(db,
                       "CREATE TABLE IF NOT EXISTS catalog_schema (version INTEGER NOT NULL);"
                       "INSERT INTO catalog_schema SELECT 0 "
                       "WHERE NOT EXISTS (SELECT 1 FROM catalog_schema);",
                       "schema version table");
    return rc;
}

int catalog_schema_migrate(struct db *db)
{
    int rc = db_begin(db, 0);
    if (rc < 0)
        return rc;
    if (db_dialect(db) == DB_POSTGRES && (rc = pg_prepare_migration(db)) < 0)
        goto out;
    int version = 0;
    rc = catalog_schema_version(db, &version);
    if (rc < 0)
        goto out;
    if (version > CATALOG_SCHEMA_VERSION) {
        log_error("catalog: schema version %d is newer than this dripd understands (%d)", version,
                  CATALOG_SCHEMA_VERSION);
        rc = -EIO;
        goto out;
    }
    for (int v = version; v < CATALOG_SCHEMA_VERSION && rc == 0; v++) {
        const struct migration *m = &migrations[v];
        const char *sql = db_dialect(db) == DB_SQLITE ? m->sqlite : m->pg;
        char what[48];
        snprintf(what, sizeof what, "migration to schema %d", v + 1);
        rc = sql != NULL ? db_script(db, sql, what) : -ENOSYS;
    }
    if (rc == 0 && version < CATALOG_SCHEMA_VERSION) {
        rc = set_version(db, CATALOG_SCHEMA_VERSION);
        if (rc == 0)
            log_info("catalog: schema migrated from version %d to %d", version,
                     CATALOG_SCHEMA_VERSION);
    }
out:
    return db_end(db, rc);
}

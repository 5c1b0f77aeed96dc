/* test_catalog.c - Check suite for the catalog (catalog.h), run twice:
 * against SQLite and against PostgreSQL (a real server, tests/pgtest.h).
 *
 * Each test gets a fresh temporary data_dir (checked fixture) and, for
 * PostgreSQL, a fresh database; a migrated catalog; and the users alice,
 * bob and carol. Concurrency is tested with threads (one handle each; also
 * run under SANITIZE=thread) and with forked processes. The few checks
 * that look at the database from outside (schema version, lock timeout,
 * cascades) go through each engine's own client library.
 */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dripd/catalog.h"
#include "dripd/catalog_versions.h"
#include "dripd/catalog_folders.h"
#include "dripd/catalog_links.h"
#include "dripd/catalog_shares.h"
#include "dripd/catalog_variants.h"
#include "dripd/config.h"
#include "dripd/id.h"
#include "dripd/util.h"
#include "pgtest.h"

static char tmpdir[256];
static struct catalog *cat;
static struct dr_config tcfg; /* data_dir = tmpdir; the backend of this test */
static bool use_pg;
static char pgdsn[320];

/* The schema version this catalog migrates to (catalog_schema.h). */
#define SCHEMA_NOW 9
#define SCHEMA_NOW_TEXT "9"

static void sync_users(struct catalog *c)
{
    struct dr_user users[] = {
        {.name = (char *)"alice", .token = (char *)"a", .admin = true},
        {.name = (char *)"bob", .token = (char *)"b", .admin = false},
        {.name = (char *)"carol", .token = (char *)"c", .admin = false},
    };
    struct dr_config cfg = {0};
    cfg.users = users;
    cfg.n_users = DR_ARRAY_LEN(users);
    ck_assert_int_eq(catalog_sync_users(c, &cfg), 0);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_catalog.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    memset(&tcfg, 0, sizeof tcfg);
    tcfg.data_dir = tmpdir;
    if (use_pg) {
        ck_assert_int_eq(pgtest_createdb(pgdsn, sizeof pgdsn), 0);
        tcfg.catalog.backend = DR_CATALOG_POSTGRES;
        tcfg.catalog.postgres.dsn = pgdsn;
        tcfg.catalog.postgres.pool = 8;
    }
    ck_assert_int_eq(catalog_migrate(&tcfg), 0);
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    sync_users(cat);
}

static void setup_sqlite(void)
{
    use_pg = false;
    setup();
}

static void setup_pg(void)
{
    use_pg = true;
    setup();
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void teardown(void)
{
    catalog_close(cat);
    cat = NULL;
    if (use_pg)
        pgtest_dropdb(pgdsn);
    nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* ---- the database seen from outside the catalog ------------------------ */

/* A second client of the test's database (sqlite3 or libpq). */
struct raw {
    sqlite3 *lite;
    PGconn *pg;
};

static struct raw raw_open(void)
{
    struct raw r = {0};
    if (use_pg) {
        r.pg = PQconnectdb(pgdsn);
        ck_assert_int_eq(PQstatus(r.pg), CONNECTION_OK);
    } else {
        char *path = xasprintf("%s/catalog.db", tmpdir);
        ck_assert_int_eq(sqlite3_open(path, &r.lite), SQLITE_OK);
        free(path);
    }
    return r;
}

static void raw_close(struct raw *r)
{
    sqlite3_close(r->lite);
    PQfinish(r->pg);
}

/* Run sql (no rows expected). */
static void raw_exec(struct raw *r, const char *sql)
{
    if (r->pg != NULL) {
        PGresult *res = PQexec(r->pg, sql);
        ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK ||
                          PQresultStatus(res) == PGRES_TUPLES_OK,
                      "%s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
    } else {
        ck_assert_int_eq(sqlite3_exec(r->lite, sql, NULL, NULL, NULL), SQLITE_OK);
    }
}

/* The integer sql returns, with arg as its parameter $1 (may be NULL). */
static long long raw_int(struct raw *r, const char *sql, const char *arg)
{
    long long v;
    if (r->pg != NULL) {
        const char *vals[1] = {arg};
        PGresult *res = PQexecParams(r->pg, sql, arg != NULL ? 1 : 0, NULL, vals, NULL, NULL, 0);
        ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
                      PQresultErrorMessage(res));
        v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        return v;
    }
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(r->lite, sql, -1, &st, NULL), SQLITE_OK);
    if (arg != NULL)
        sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* One upload through intake; returns its result. */
static int intake1(struct catalog *c, const char *owner, const char *path, uint64_t size,
                   char *media_id, char *job_id)
{
    struct dr_intake it = {.owner = owner,
                           .path = path,
                           .size = size,
                           .content_type = "text/plain",
                           .spool_path = "/spool/x"};
    ck_assert_int_eq(catalog_intake_uploads(c, &it, 1), 0);
    if (media_id != NULL)
        memcpy(media_id, it.media_id, DR_ID_LEN + 1);
    if (job_id != NULL)
        memcpy(job_id, it.job_id, DR_ID_LEN + 1);
    return it.result;
}

/* Claim exactly one job of kind; fails the test otherwise. */
static void claim_one(const char *kind, const char *claimer, struct dr_job *j)
{
    int n = -1;
    ck_assert_int_eq(catalog_jobs_claim(cat, kind, 1, claimer, j, &n), 0);
    ck_assert_int_eq(n, 1);
}

/* One step through catalog_jobs_step, which must commit; the step's result. */
static int step1(struct dr_job_step st)
{
    ck_assert_int_eq(catalog_jobs_step(cat, &st, 1, NULL), 0);
    return st.result;
}

static json_t *event_json(const struct dr_event *e)
{
    json_error_t err;
    json_t *j = json_loads(e->data, 0, &err);
    ck_assert_msg(j != NULL, "event data is not JSON: %s", e->data);
    return j;
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    ck_assert_msg(json_is_string(v), "%s is not a string", k);
    return json_string_value(v);
}

/* ---- lifecycle, pragmas ------------------------------------------------- */

START_TEST(test_pragmas_and_migrate)
{
    struct dr_catalog_info info;
    ck_assert_int_eq(catalog_info(cat, &info), 0);
    ck_assert_str_eq(info.journal_mode, "wal");
    ck_assert_int_eq(info.synchronous, 2); /* FULL (PostgreSQL: synchronous_commit on) */
    ck_assert(info.foreign_keys);
    ck_assert_int_eq(info.busy_timeout_ms, 5000); /* PostgreSQL: lock_timeout */
    ck_assert_int_eq(info.schema_version, SCHEMA_NOW);
    ck_assert_int_eq(info.secure_delete, use_pg ? 0 : 2); /* FAST, whatever SQLite's build says */
    ck_assert_int_eq(catalog_ping(cat), 0);

    /* Idempotent, also while a handle is open; data survives. */
    char mid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/a.txt", 3, mid, NULL), 0);
    ck_assert_int_eq(catalog_migrate(&tcfg), 0);
    ck_assert_int_eq(catalog_migrate(&tcfg), 0);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, mid, NULL, &m), 0);
    dr_media_clear(&m);

    /* The database itself says its version (and WAL) to any other client,
     * and a version-1 database (no jobs_owner index, no processing columns
     * and table, no folder shares, public links or folders) is brought to the
     * current one. */
    struct raw r = raw_open();
    if (use_pg) {
        ck_assert_int_eq(raw_int(&r, "SELECT version FROM catalog_schema", NULL), SCHEMA_NOW);
        ck_assert_int_eq(raw_int(&r, "SELECT count(*) FROM catalog_schema", NULL), 1);
        raw_exec(&r,
                 "DROP INDEX jobs_owner; DROP TABLE variants; DROP TABLE folder_shares; "
                 "DROP TABLE links; DROP TABLE folders; "
                 "ALTER TABLE media DROP COLUMN metadata; "
                 "ALTER TABLE jobs DROP COLUMN variant; DROP INDEX media_file; DROP INDEX "
                 "media_retired; "
                 "DROP INDEX media_owner_path; ALTER TABLE media DROP COLUMN file_id; "
                 "ALTER TABLE media DROP COLUMN version; ALTER TABLE media DROP COLUMN retired; "
                 "ALTER TABLE media DROP COLUMN retired_at; ALTER TABLE tus DROP COLUMN if_match; "
                 "ALTER TABLE tus DROP COLUMN rename_taken; ALTER TABLE jobs DROP COLUMN staged; "
                 "DROP TABLE job_bodies; "
                 "DROP TABLE staged_parts; UPDATE catalog_schema SET version = 1");
        ck_assert_int_eq(catalog_migrate(&tcfg), 0);
        ck_assert_int_eq(
            raw_int(&r, "SELECT count(*) FROM pg_indexes WHERE indexname = 'jobs_owner'", NULL), 1);
        ck_assert_int_eq(raw_int(&r, "SELECT version FROM catalog_schema", NULL), SCHEMA_NOW);
        /* Newer than this binary: refused, untouched. */
        raw_exec(&r, "UPDATE catalog_schema SET version = 99");
        ck_assert_int_eq(catalog_migrate(&tcfg), -EIO);
        ck_assert_int_eq(raw_int(&r, "SELECT version FROM catalog_schema", NULL), 99);
        raw_exec(&r, "UPDATE catalog_schema SET version = " SCHEMA_NOW_TEXT);
    } else {
        ck_assert_int_eq(raw_int(&r, "SELECT journal_mode = 'wal' FROM pragma_journal_mode", NULL),
                         1);
        ck_assert_int_eq(raw_int(&r, "SELECT user_version FROM pragma_user_version", NULL),
                         SCHEMA_NOW);
        raw_exec(&r,
                 "DROP INDEX jobs_owner; DROP TABLE variants; DROP TABLE folder_shares; "
                 "DROP TABLE links; DROP TABLE folders; "
                 "ALTER TABLE media DROP COLUMN metadata; "
                 "ALTER TABLE jobs DROP COLUMN variant; DROP INDEX media_file; DROP INDEX "
                 "media_retired; "
                 "DROP INDEX media_owner_path; ALTER TABLE media DROP COLUMN file_id; "
                 "ALTER TABLE media DROP COLUMN version; ALTER TABLE media DROP COLUMN retired; "
                 "ALTER TABLE media DROP COLUMN retired_at; ALTER TABLE tus DROP COLUMN if_match; "
                 "ALTER TABLE tus DROP COLUMN rename_taken; ALTER TABLE jobs DROP COLUMN staged; "
                 "DROP TABLE job_bodies; PRAGMA user_version=1");
        ck_assert_int_eq(catalog_migrate(&tcfg), 0);
        ck_assert_int_eq(
            raw_int(&r, "SELECT count(*) FROM sqlite_master WHERE name = 'jobs_owner'", NULL), 1);
        ck_assert_int_eq(raw_int(&r, "SELECT user_version FROM pragma_user_version", NULL),
                         SCHEMA_NOW);
    }
    /* The processing columns and table are there again. */
    raw_exec(&r,
             "SELECT metadata FROM media; SELECT variant FROM jobs; SELECT name FROM variants; "
             "SELECT lo FROM folder_shares; SELECT downloads FROM links; SELECT path FROM folders; "
             "SELECT staged FROM jobs; SELECT body FROM job_bodies");
    if (use_pg)
        raw_exec(&r, "SELECT part FROM staged_parts");
    raw_close(&r);
    catalog_close(NULL);

    if (!use_pg) {
        /* A fresh directory: open alone creates the schema too. */
        char *sub = xasprintf("%s/fresh", tmpdir);
        ck_assert_int_eq(dr_mkdirs(sub, 0700), 0);
        struct dr_config c2cfg = {.data_dir = sub};
        struct catalog *c2;
        ck_assert_int_eq(catalog_open(&c2cfg, &c2), 0);
        uint64_t depth = 99;
        ck_assert_int_eq(catalog_queue_depth(c2, &depth), 0);
        ck_assert_int_eq((int)depth, 0);
        catalog_close(c2);
        free(sub);
        /* A directory that does not exist cannot be opened. */
        struct dr_config bad = {.data_dir = (char *)"/nonexistent/dir/for/dripd"};
        struct catalog *c3 = (struct catalog *)1;
        ck_assert_int_lt(catalog_open(&bad, &c3), 0);
        ck_assert_ptr_null(c3);
    } else {
        /* A server that is not there: migrate fails (transient), a handle
         * opens (workers start during an outage) and its calls fail
         * with -EBUSY. */
        struct dr_config bad = tcfg;
        bad.catalog.postgres.dsn = (char *)"host=127.0.0.1 port=1 user=postgres dbname=x";
        ck_assert_int_eq(catalog_migrate(&bad), -EBUSY);
        struct catalog *c3 = NULL;
        ck_assert_int_eq(catalog_open(&bad, &c3), 0);
        uint64_t depth;
        ck_assert_int_eq(catalog_queue_depth(c3, &depth), -EBUSY);
        ck_assert_int_eq(catalog_ping(c3), -EBUSY);
        catalog_close(c3);
    }
    struct catalog *c4 = (struct catalog *)1;
    ck_assert_int_eq(catalog_open(NULL, &c4), -EINVAL);
    ck_assert_ptr_null(c4);
}
END_TEST

START_TEST(test_busy_maps_to_ebusy_and_readers_proceed)
{
    char mid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/a.txt", 3, mid, NULL), 0);
    /* Another connection holds the write lock (PostgreSQL: the event
     * writers' lock, which an intake needs for its job.created event). */
    struct raw r = raw_open();
    raw_exec(&r, use_pg ? "BEGIN; SELECT pg_advisory_xact_lock(1685219696, 1)" : "BEGIN IMMEDIATE");
    /* Readers are not blocked by the writer. */
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, mid, "alice", &m), 0);
    dr_media_clear(&m);
    /* A writer gives up after the 5 s timeout with -EBUSY. */
    int64_t t0 = dr_mono_ms();
    struct dr_intake it = {.owner = "alice", .path = "/b.txt", .size = 1, .spool_path = "/s"};
    ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), -EBUSY);
    ck_assert_int_eq(it.result, -EBUSY);
    int64_t waited = dr_mono_ms() - t0;
    ck_assert_msg(waited >= 4500, "gave up after %lld ms", (long long)waited);
    if (!use_pg) /* SQLite's one lock covers every write */
        ck_assert_int_eq(catalog_job_retry(cat, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "x", 0), -EBUSY);
    raw_exec(&r, "ROLLBACK");
    raw_close(&r);
    /* Once the lock is free, writes work again. */
    ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
    ck_assert_int_eq(it.result, 0);
}
END_TEST

/* ---- intake ------------------------------------------------------------- */

START_TEST(test_intake_batch_with_taken_path)
{
    char a_mid[DR_ID_LEN + 1], a_jid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/photos/a.jpg", 10, a_mid, a_jid), 0);
    ck_assert(dr_id_valid(a_mid));
    ck_assert(dr_id_valid(a_jid));

    struct dr_intake items[4] = {
        {.owner = "alice", .path = "/photos/b.jpg", .size = 20, .spool_path = "/s/b"},
        {.owner = "alice", .path = "/photos/a.jpg", .size = 30, .spool_path = "/s/a2"},
        {.owner = "alice", .path = "/photos/b.jpg", .size = 40, .spool_path = "/s/b2"},
        {.owner = "bob", .path = "/photos/a.jpg", .size = 50, .spool_path = "/s/ba"},
    };
    ck_assert_int_eq(catalog_intake_uploads(cat, items, 4), 0);
    ck_assert_int_eq(items[0].result, 0);
    ck_assert_int_eq(items[1].result, -EEXIST); /* taken before */
    ck_assert_int_eq(items[2].result, -EEXIST); /* taken by items[0] in the same batch */
    ck_assert_int_eq(items[3].result, 0);       /* another user's tree */
    ck_assert_str_eq(items[1].media_id, "");
    ck_assert_str_eq(items[1].job_id, "");
    ck_assert(dr_id_valid(items[0].media_id) && dr_id_valid(items[0].job_id));

    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, items[0].media_id, "alice", &m), 0);
    ck_assert_str_eq(m.owner, "alice");
    ck_assert_str_eq(m.path, "/photos/b.jpg");
    ck_assert_str_eq(m.folder, "/photos");
    ck_assert_str_eq(m.name, "b.jpg");
    ck_assert_str_eq(m.state, "queued");
    ck_assert_int_eq((int)m.size, 20);
    ck_assert_str_eq(m.sha256, "");
    ck_assert_ptr_null(m.storage_key);
    ck_assert_ptr_null(m.wrapped_key);
    ck_assert_ptr_null(m.content_type);
    ck_assert_int_gt(m.created_at, 0);
    ck_assert_int_eq(m.uploaded_at, 0);
    dr_media_clear(&m);

    struct dr_job j;
    ck_assert_int_eq(catalog_job_get(cat, items[0].job_id, "alice", &j), 0);
    ck_assert_str_eq(j.kind, "upload");
    ck_assert_str_eq(j.state, "queued");
    ck_assert_str_eq(j.stage, "process");
    ck_assert_str_eq(j.media_id, items[0].media_id);
    ck_assert_str_eq(j.owner, "alice");
    ck_assert_str_eq(j.spool_path, "/s/b");
    ck_assert_ptr_null(j.work_path);
    ck_assert_ptr_null(j.error);
    ck_assert_int_eq(j.attempts, 0);
    dr_job_clear(&j);

    uint64_t depth = 0;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 3);

    /* One job.created per accepted item, to its owner, nothing for the rest. */
    struct dr_event *ev;
    size_t n;
    ck_assert_int_eq(catalog_events_since(cat, NULL, 0, 100, &ev, &n), 0);
    ck_assert_int_eq((int)n, 3);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(ev[i].type, "job.created");
    ck_assert_str_eq(ev[0].job_id, a_jid);
    ck_assert_str_eq(ev[1].job_id, items[0].job_id);
    ck_assert_str_eq(ev[2].job_id, items[3].job_id);
    ck_assert_str_eq(ev[2].user, "bob");
    json_t *o = event_json(&ev[1]);
    ck_assert_str_eq(jstr(o, "id"), items[0].job_id);
    ck_assert_str_eq(jstr(o, "kind"), "upload");
    ck_assert_str_eq(jstr(o, "state"), "queued");
    ck_assert_str_eq(jstr(o, "stage"), "process");
    ck_assert_str_eq(jstr(o, "media_id"), items[0].media_id);
    ck_assert_str_eq(jstr(o, "path"), "/photos/b.jpg");
    ck_assert_str_eq(jstr(o, "name"), "b.jpg");
    ck_assert(json_is_integer(json_object_get(o, "attempts")));
    ck_assert_int_eq(json_integer_value(json_object_get(o, "attempts")), 0);
    ck_assert(json_is_null(json_object_get(o, "error")));
    json_decref(o);
    catalog_events_free(ev, n);

    /* Empty batch, malformed paths. */
    ck_assert_int_eq(catalog_intake_uploads(cat, NULL, 0), 0);
    struct dr_intake bad = {.owner = "alice", .path = "/dir/", .spool_path = "/s"};
    ck_assert_int_eq(catalog_intake_uploads(cat, &bad, 1), -EINVAL);
    bad.path = "relative.txt";
    ck_assert_int_eq(catalog_intake_uploads(cat, &bad, 1), -EINVAL);
}
END_TEST

START_TEST(test_path_exists_and_by_path)
{
    char mid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/x/y.txt", 5, mid, NULL), 0);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/x/y.txt"), 1);
    ck_assert_int_eq(catalog_path_exists(cat, "bob", "/x/y.txt"), 0);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/x/y.tx"), 0);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_by_path(cat, "alice", "/x/y.txt", &m), 0);
    ck_assert_str_eq(m.id, mid);
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_media_by_path(cat, "bob", "/x/y.txt", &m), -ENOENT);
    dr_media_clear(&m);
}
END_TEST

/* ---- jobs --------------------------------------------------------------- */

/* The claim with the media rows: each job comes with its own media's
 * row, read in the claim's transaction, in queue order; a job whose media
 * is gone comes with NULL. */
START_TEST(test_claim_with_media)
{
    char mid[3][DR_ID_LEN + 1], jid[3][DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/m/a.bin", 11, mid[0], jid[0]), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/m/b.bin", 22, mid[1], jid[1]), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/m/c.bin", 33, mid[2], jid[2]), 0);
    ck_assert_int_eq(catalog_media_delete(cat, mid[1], "alice", NULL), 0);
    struct dr_job j[4];
    struct dr_media *m[4];
    int n = -1;
    ck_assert_int_eq(catalog_jobs_claim_media(cat, "upload", 4, "node:1", j, NULL, &n), -EINVAL);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(catalog_jobs_claim_media(cat, "upload", 4, "node:1", j, m, &n), 0);
    ck_assert_int_eq(n, 3);
    static const char *const path[3] = {"/m/a.bin", NULL, "/m/c.bin"};
    for (int i = 0; i < 3; i++) {
        ck_assert_str_eq(j[i].id, jid[i]);
        ck_assert_str_eq(j[i].media_id, mid[i]);
        if (path[i] == NULL) {
            ck_assert_ptr_null(m[i]);
        } else {
            ck_assert_ptr_nonnull(m[i]);
            ck_assert_str_eq(m[i]->id, mid[i]);
            ck_assert_str_eq(m[i]->path, path[i]);
            ck_assert_int_eq(m[i]->size, (uint64_t)(11 * (i + 1)));
            ck_assert_str_eq(m[i]->owner, "alice");
            dr_media_clear(m[i]);
            free(m[i]);
        }
        dr_job_clear(&j[i]);
    }
    ck_assert_int_eq(catalog_jobs_claim_media(cat, "upload", 4, "node:1", j, m, &n), 0);
    ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(test_job_lifecycle_events_in_order)
{
    char mid[DR_ID_LEN + 1], jid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/docs/r.pdf", 7, mid, jid), 0);

    struct dr_job j;
    claim_one("upload", "node:1", &j);
    ck_assert_str_eq(j.id, jid);
    ck_assert_str_eq(j.state, "running");
    ck_assert_str_eq(j.stage, "process");
    dr_job_clear(&j);
    /* Nothing else to claim. */
    int n = -1;
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 5, "node:1", &j, &n), 0);
    ck_assert_int_eq(n, 0);

    uint8_t wk[40];
    memset(wk, 0xab, sizeof wk);
    ck_assert_int_eq(step1((struct dr_job_step){.job_id = jid,
                                                .next_stage = "store",
                                                .work_path = "/work/sealed",
                                                .media_id = mid,
                                                .sha256_hex = "ff00",
                                                .wrapped_key = wk,
                                                .wrapped_key_len = sizeof wk}),
                     0);
    ck_assert_int_eq(catalog_job_get(cat, jid, "alice", &j), 0);
    ck_assert_str_eq(j.stage, "store");
    ck_assert_str_eq(j.state, "running");
    ck_assert_str_eq(j.work_path, "/work/sealed");
    dr_job_clear(&j);

    /* A transient error: back to queued, same stage, attempts 1. */
    ck_assert_int_eq(catalog_job_retry(cat, jid, "store: 503 Slow Down", 0), 0);
    ck_assert_int_eq(catalog_job_get(cat, jid, NULL, &j), 0);
    ck_assert_str_eq(j.state, "queued");
    ck_assert_str_eq(j.stage, "store");
    ck_assert_int_eq(j.attempts, 1);
    ck_assert_str_eq(j.error, "store: 503 Slow Down");
    dr_job_clear(&j);
    /* Advance/done/retry on a job that is not running: -ENOENT. */
    ck_assert_int_eq(catalog_job_advance(cat, jid, "notify", NULL), -ENOENT);
    ck_assert_int_eq(step1((struct dr_job_step){.job_id = jid}), -ENOENT); /* done */
    ck_assert_int_eq(catalog_job_retry(cat, jid, "x", 0), -ENOENT);

    claim_one("upload", "node:2", &j);
    ck_assert_str_eq(j.stage, "store"); /* resumes where it was */
    ck_assert_int_eq(j.attempts, 1);
    ck_assert_str_eq(j.work_path, "/work/sealed");
    dr_job_clear(&j);
    ck_assert_int_eq(
        step1((struct dr_job_step){
            .job_id = jid, .next_stage = "notify", .media_id = mid, .storage_key = "KEY_1.pdf"}),
        0);
    ck_assert_int_eq(step1((struct dr_job_step){.job_id = jid, .media_id = mid, .available = true}),
                     0);

    ck_assert_int_eq(catalog_job_get(cat, jid, "alice", &j), 0);
    ck_assert_str_eq(j.state, "done");
    ck_assert_str_eq(j.stage, "notify"); /* keeps its last stage */
    ck_assert_ptr_null(j.work_path);
    dr_job_clear(&j);
    ck_assert_int_eq(step1((struct dr_job_step){.job_id = jid}), -ENOENT);
    ck_assert_int_eq(catalog_job_fail(cat, jid, NULL, "late"), -ENOENT);

    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, mid, "alice", &m), 0);
    ck_assert_str_eq(m.state, "available");
    ck_assert_str_eq(m.sha256, "ff00");
    ck_assert_str_eq(m.storage_key, "KEY_1.pdf");
    ck_assert_int_eq((int)m.wrapped_key_len, 40);
    ck_assert_mem_eq(m.wrapped_key, wk, sizeof wk);
    ck_assert_int_gt(m.uploaded_at, 0);
    dr_media_clear(&m);

    uint64_t depth = 9;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 0);

    struct dr_event *ev;
    size_t ne;
    ck_assert_int_eq(catalog_events_since(cat, "alice", 0, 100, &ev, &ne), 0);
    ck_assert_int_eq((int)ne, 4);
    const char *types[] = {"job.created", "job.stage", "job.stage", "job.done"};
    const char *stages[] = {"process", "store", "notify", "notify"};
    const char *states[] = {"queued", "running", "running", "done"};
    for (size_t i = 0; i < ne; i++) {
        ck_assert_str_eq(ev[i].type, types[i]);
        ck_assert_str_eq(ev[i].job_id, jid);
        ck_assert_str_eq(ev[i].media_id, mid);
        ck_assert_str_eq(ev[i].user, "alice");
        if (i > 0)
            ck_assert_int_gt(ev[i].seq, ev[i - 1].seq);
        json_t *o = event_json(&ev[i]);
        ck_assert_str_eq(jstr(o, "stage"), stages[i]);
        ck_assert_str_eq(jstr(o, "state"), states[i]);
        ck_assert_str_eq(jstr(o, "path"), "/docs/r.pdf");
        if (i == 3) {
            ck_assert_int_eq(json_integer_value(json_object_get(o, "attempts")), 1);
            ck_assert_str_eq(jstr(o, "error"), "store: 503 Slow Down");
        }
        json_decref(o);
    }
    int64_t last = 0;
    ck_assert_int_eq(catalog_events_last_seq(cat, &last), 0);
    ck_assert_int_eq(last, ev[ne - 1].seq);
    catalog_events_free(ev, ne);
}
END_TEST

/* catalog_jobs_step: a stage's media fields and the job's advance in one
 * transaction, several jobs at once; a step that cannot apply is undone
 * alone. */
START_TEST(test_jobs_step_batch)
{
    char mid[4][DR_ID_LEN + 1], jid[4][DR_ID_LEN + 1];
    for (int i = 0; i < 4; i++) {
        char path[32];
        snprintf(path, sizeof path, "/s/%d.bin", i);
        ck_assert_int_eq(intake1(cat, "alice", path, 10, mid[i], jid[i]), 0);
    }
    struct dr_job j[4];
    int n = 0;
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 3, "node:1", j, &n), 0);
    ck_assert_int_eq(n, 3); /* jobs 0..2 run; job 3 stays queued */
    for (int i = 0; i < n; i++)
        dr_job_clear(&j[i]);
    int64_t before = 0;
    ck_assert_int_eq(catalog_events_last_seq(cat, &before), 0);
    /* media 2 is deleted meanwhile */
    char *key = NULL;
    ck_assert_int_eq(catalog_media_delete(cat, mid[2], "alice", &key), 0);
    free(key);

    uint8_t wk[40];
    memset(wk, 0x5a, sizeof wk);
    struct dr_job_step st[4] = {
        {.job_id = jid[0],
         .next_stage = "store",
         .work_path = "/w/0",
         .media_id = mid[0],
         .sha256_hex = "aa00",
         .wrapped_key = wk,
         .wrapped_key_len = sizeof wk},
        {.job_id = jid[1],
         .next_stage = "store",
         .work_path = "/w/1",
         .media_id = mid[1],
         .sha256_hex = "bb11",
         .wrapped_key = wk,
         .wrapped_key_len = sizeof wk,
         .set_size = true, /* a stripped original: the stored bytes' size */
         .size = 7},
        {.job_id = jid[2],
         .next_stage = "store",
         .work_path = "/w/2",
         .media_id = mid[2],
         .sha256_hex = "cc22",
         .wrapped_key = wk,
         .wrapped_key_len = sizeof wk},
        {.job_id = jid[3],
         .next_stage = "store",
         .work_path = "/w/3",
         .media_id = mid[3],
         .sha256_hex = "dd33",
         .wrapped_key = wk,
         .wrapped_key_len = sizeof wk},
    };
    int64_t seq = -1;
    ck_assert_int_eq(catalog_jobs_step(cat, st, 4, &seq), 0);
    ck_assert_int_eq(st[0].result, 0);
    ck_assert_int_eq(st[1].result, 0);
    ck_assert_int_eq(st[2].result, -ENOENT); /* media gone: not applied */
    ck_assert(st[2].media_gone);
    ck_assert_int_eq(st[3].result, -ENOENT); /* not running */
    ck_assert(!st[3].media_gone);
    ck_assert_int_gt(seq, before);
    /* seq is the newest event; the high-water mark may be above it
     * (PostgreSQL's sequence does not give back the seq of the undone
     * step), with nothing in between. */
    int64_t last = 0;
    ck_assert_int_eq(catalog_events_last_seq(cat, &last), 0);
    ck_assert_int_ge(last, seq);
    struct dr_event *after;
    size_t n_after = 9;
    ck_assert_int_eq(catalog_events_since(cat, NULL, seq, 10, &after, &n_after), 0);
    ck_assert_int_eq((int)n_after, 0);
    catalog_events_free(after, n_after);

    struct dr_job g;
    ck_assert_int_eq(catalog_job_get(cat, jid[1], NULL, &g), 0);
    ck_assert_str_eq(g.stage, "store");
    ck_assert_str_eq(g.work_path, "/w/1");
    dr_job_clear(&g);
    ck_assert_int_eq(catalog_job_get(cat, jid[2], NULL, &g), 0);
    ck_assert_str_eq(g.stage, "process"); /* rolled back with its savepoint */
    ck_assert_ptr_null(g.work_path);
    dr_job_clear(&g);
    ck_assert_int_eq(catalog_job_get(cat, jid[3], NULL, &g), 0);
    ck_assert_str_eq(g.state, "queued");
    ck_assert_str_eq(g.stage, "process");
    dr_job_clear(&g);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, mid[1], NULL, &m), 0);
    ck_assert_str_eq(m.sha256, "bb11");
    ck_assert_uint_eq(m.size, 7);
    ck_assert_mem_eq(m.wrapped_key, wk, sizeof wk);
    ck_assert_str_eq(m.state, "queued");
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_media_get(cat, mid[3], NULL, &m), 0);
    ck_assert_str_eq(m.sha256, ""); /* job 3's step was undone */
    ck_assert_uint_eq(m.size, 10);
    dr_media_clear(&m);

    /* store, then notify (available + done) for job 0; media_optional lets
     * job 1 finish although its media goes away now */
    ck_assert_int_eq(catalog_media_delete(cat, mid[1], "alice", &key), 0);
    free(key);
    struct dr_job_step st2[2] = {
        {.job_id = jid[0], .next_stage = "notify", .media_id = mid[0], .storage_key = "K0"},
        {.job_id = jid[1], .media_id = mid[1], .available = true, .media_optional = true},
    };
    ck_assert_int_eq(catalog_jobs_step(cat, st2, 2, NULL), 0);
    ck_assert_int_eq(st2[0].result, 0);
    ck_assert_int_eq(st2[1].result, 0);
    ck_assert(st2[1].media_gone);
    ck_assert_int_eq(catalog_job_get(cat, jid[1], NULL, &g), 0);
    ck_assert_str_eq(g.state, "done");
    dr_job_clear(&g);
    struct dr_job_step st3 = {.job_id = jid[0], .media_id = mid[0], .available = true};
    ck_assert_int_eq(catalog_jobs_step(cat, &st3, 1, &seq), 0);
    ck_assert_int_eq(st3.result, 0);
    ck_assert_int_eq(catalog_media_get(cat, mid[0], NULL, &m), 0);
    ck_assert_str_eq(m.state, "available");
    ck_assert_str_eq(m.storage_key, "K0");
    ck_assert_str_eq(m.sha256, "aa00");
    ck_assert_int_gt(m.uploaded_at, 0);
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_job_get(cat, jid[0], NULL, &g), 0);
    ck_assert_str_eq(g.state, "done");
    ck_assert_str_eq(g.stage, "notify");
    dr_job_clear(&g);
    /* done twice: not applied, no event */
    ck_assert_int_eq(catalog_jobs_step(cat, &st3, 1, &seq), 0);
    ck_assert_int_eq(st3.result, -ENOENT);
    ck_assert_int_eq(seq, 0);

    /* the events: job 0 has job.stage store, job.stage notify, job.done */
    struct dr_event *ev;
    size_t ne;
    ck_assert_int_eq(catalog_events_since(cat, NULL, before, 100, &ev, &ne), 0);
    int n0 = 0;
    const char *types[] = {"job.stage", "job.stage", "job.done"};
    for (size_t i = 0; i < ne; i++) {
        if (strcmp(ev[i].job_id, jid[0]) != 0)
            continue;
        ck_assert_int_lt(n0, 3);
        ck_assert_str_eq(ev[i].type, types[n0]);
        n0++;
    }
    ck_assert_int_eq(n0, 3);
    ck_assert_int_eq((int)ne, 3 + 2); /* job 1: store, done */
    catalog_events_free(ev, ne);
    ck_assert_int_eq(catalog_jobs_step(cat, NULL, 0, NULL), 0);
    struct dr_job_step bad = {.job_id = jid[0], .available = true}; /* no media id */
    ck_assert_int_eq(catalog_jobs_step(cat, &bad, 1, NULL), -EINVAL);
}
END_TEST

START_TEST(test_job_fail_marks_upload_media_failed)
{
    char mid[DR_ID_LEN + 1], jid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/f.bin", 1, mid, jid), 0);
    struct dr_job j;
    claim_one("upload", "node:1", &j);
    dr_job_clear(&j);
    /* it failed past its committed stage (a job that commits once, when done) */
    ck_assert_int_eq(catalog_job_fail(cat, jid, "store", "encrypt: spool file vanished"), 0);
    ck_assert_int_eq(catalog_job_get(cat, jid, "alice", &j), 0);
    ck_assert_str_eq(j.state, "failed");
    ck_assert_str_eq(j.stage, "store");
    ck_assert_str_eq(j.error, "encrypt: spool file vanished");
    ck_assert_int_eq(j.attempts, 1);
    dr_job_clear(&j);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, mid, "alice", &m), 0);
    ck_assert_str_eq(m.state, "failed");
    dr_media_clear(&m);

    struct dr_event *ev;
    size_t n;
    ck_assert_int_eq(catalog_events_since(cat, "alice", 0, 10, &ev, &n), 0);
    ck_assert_int_eq((int)n, 2);
    ck_assert_str_eq(ev[1].type, "job.failed");
    json_t *o = event_json(&ev[1]);
    ck_assert_str_eq(jstr(o, "state"), "failed");
    ck_assert_str_eq(jstr(o, "error"), "encrypt: spool file vanished");
    json_decref(o);
    catalog_events_free(ev, n);

    /* A failed upload does not hold its path; the failed row stays visible. */
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/f.bin"), 0);
    char mid2[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/f.bin", 2, mid2, NULL), 0);
    ck_assert_int_eq(catalog_media_by_path(cat, "alice", "/f.bin", &m), 0);
    ck_assert_str_eq(m.id, mid2); /* the live one wins */
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_media_get(cat, mid, "alice", &m), 0);
    dr_media_clear(&m);

    /* A queued job can be failed too; a download failing leaves media alone. */
    char did[DR_ID_LEN + 1];
    ck_assert_int_eq(catalog_enqueue_download(cat, mid2, "alice", did), 0);
    ck_assert_int_eq(catalog_job_fail(cat, did, NULL, "cancelled"), 0);
    ck_assert_int_eq(catalog_media_get(cat, mid2, NULL, &m), 0);
    ck_assert_str_eq(m.state, "queued");
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_job_fail(cat, "01ARZ3NDEKTSV4RRFFQ69G5FAV", NULL, "x"), -ENOENT);
}
END_TEST

/* A small upload's bytes in its job row (docs/CATALOG.md, "Inline
 * bodies"): committed with the intake, handed out by the claim, gone once
 * the job is done or failed. */
START_TEST(test_inline_body_lifecycle)
{
    static const char hello[] = "hello, inline";
    const size_t len = sizeof hello - 1;
    struct dr_intake bad[2] = {
        {.owner = "alice", .path = "/i/bad.bin", .size = len + 1, .body = hello, .body_len = len},
        {.owner = "alice",
         .path = "/i/bad.bin",
         .size = len,
         .body = hello,
         .body_len = len,
         .spool_path = "/spool/x"},
    };
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(catalog_intake_uploads(cat, &bad[i], 1), -EINVAL);
    char jid[2][DR_ID_LEN + 1];
    for (int i = 0; i < 2; i++) {
        struct dr_intake it = {.owner = "alice",
                               .path = i == 0 ? "/i/a.bin" : "/i/b.bin",
                               .size = len,
                               .body = hello,
                               .body_len = len};
        ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
        ck_assert_int_eq(it.result, 0);
        memcpy(jid[i], it.job_id, sizeof jid[i]);
    }
    struct raw r = raw_open();
    ck_assert_int_eq(raw_int(&r, "SELECT length(body) FROM job_bodies WHERE job_id = $1", jid[0]),
                     (long long)len);
    struct dr_job j[2];
    int n = -1;
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 2, "node:1", j, &n), 0);
    ck_assert_int_eq(n, 2);
    for (int i = 0; i < 2; i++) {
        ck_assert_str_eq(j[i].id, jid[i]);
        ck_assert_ptr_null(j[i].spool_path);
        ck_assert_uint_eq(j[i].body_len, len);
        ck_assert_mem_eq(j[i].body, hello, len);
        dr_job_clear(&j[i]);
    }
    /* GET /v1/jobs reads no body */
    ck_assert_int_eq(catalog_job_get(cat, jid[0], "alice", &j[0]), 0);
    ck_assert_ptr_null(j[0].body);
    dr_job_clear(&j[0]);
    ck_assert_int_eq(step1((struct dr_job_step){.job_id = jid[0]}), 0); /* done */
    ck_assert_int_eq(catalog_job_fail(cat, jid[1], NULL, "x"), 0);
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(raw_int(&r, "SELECT count(*) FROM job_bodies WHERE job_id = $1", jid[i]),
                         0);
    raw_close(&r);
}
END_TEST

START_TEST(test_jobs_list_own_newest_first)
{
    char j[3][DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/l0", 1, NULL, j[0]), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/l1", 1, NULL, j[1]), 0);
    ck_assert_int_eq(intake1(cat, "bob", "/l2", 1, NULL, j[2]), 0);
    struct dr_job claimed;
    claim_one("upload", "node:1", &claimed); /* alice's oldest: running */
    ck_assert_str_eq(claimed.id, j[0]);
    dr_job_clear(&claimed);

    struct dr_job *l;
    size_t n;
    ck_assert_int_eq(catalog_jobs_list(cat, "alice", NULL, 10, &l, &n), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_str_eq(l[0].id, j[1]);
    ck_assert_str_eq(l[1].id, j[0]);
    ck_assert_str_eq(l[1].state, "running");
    catalog_jobs_list_free(l, n);

    ck_assert_int_eq(catalog_jobs_list(cat, "alice", "queued", 10, &l, &n), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_str_eq(l[0].id, j[1]);
    catalog_jobs_list_free(l, n);

    ck_assert_int_eq(catalog_jobs_list(cat, "alice", NULL, 1, &l, &n), 0);
    ck_assert_uint_eq(n, 1);
    catalog_jobs_list_free(l, n);

    ck_assert_int_eq(catalog_jobs_list(cat, "carol", NULL, 10, &l, &n), 0);
    ck_assert_uint_eq(n, 0);
    catalog_jobs_list_free(l, n);
    ck_assert_int_eq(catalog_jobs_list(cat, NULL, NULL, 10, &l, &n), -EINVAL);
    ck_assert_int_eq(catalog_jobs_list(cat, "alice", NULL, 0, &l, &n), -EINVAL);
}
END_TEST

START_TEST(test_retry_backoff_and_claim_order)
{
    char j1[DR_ID_LEN + 1], j2[DR_ID_LEN + 1], j3[DR_ID_LEN + 1], mid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/1", 1, mid, j1), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/2", 1, NULL, j2), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/3", 1, NULL, j3), 0);
    char d1[DR_ID_LEN + 1];
    ck_assert_int_eq(catalog_enqueue_download(cat, mid, "alice", d1), 0);

    /* Oldest first, only the asked kind, at most max. */
    struct dr_job jobs[4];
    int n = 0;
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 2, "node:1", jobs, &n), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(jobs[0].id, j1);
    ck_assert_str_eq(jobs[1].id, j2);
    ck_assert_str_eq(jobs[0].kind, "upload");
    dr_job_clear(&jobs[0]);
    dr_job_clear(&jobs[1]);
    ck_assert_int_eq(catalog_jobs_claim(cat, "download", 4, "node:1", jobs, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(jobs[0].id, d1);
    ck_assert_str_eq(jobs[0].stage, "fetch");
    dr_job_clear(&jobs[0]);

    /* j1 backs off for a minute: not claimable, still counted as queued. */
    ck_assert_int_eq(catalog_job_retry(cat, j1, "timeout", 60000), 0);
    struct dr_job j;
    ck_assert_int_eq(catalog_job_get(cat, j1, NULL, &j), 0);
    ck_assert_int_ge(j.not_before, dr_now_ms() + 50000);
    ck_assert_str_eq(j.state, "queued");
    dr_job_clear(&j);
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 4, "node:1", jobs, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(jobs[0].id, j3);
    dr_job_clear(&jobs[0]);
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 4, "node:1", jobs, &n), 0);
    ck_assert_int_eq(n, 0);
    uint64_t depth = 0;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 4); /* j1 queued, j2 j3 d1 running */

    /* j2 retries with no delay: claimable at once, ahead of newer work. */
    ck_assert_int_eq(catalog_job_retry(cat, j2, "e", 0), 0);
    char j4[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/4", 1, NULL, j4), 0);
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 1, "node:1", jobs, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(jobs[0].id, j2);
    ck_assert_int_eq(jobs[0].attempts, 1);
    dr_job_clear(&jobs[0]);
    /* max <= 0 claims nothing. */
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 0, "node:1", NULL, &n), 0);
    ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(test_claim_is_fifo_within_one_millisecond)
{
    /* One batch: the jobs share created_at (mostly one ms), and ULIDs are
     * random within a millisecond, so only insertion order can be FIFO. */
    enum { N = 50 };
    struct dr_intake items[N];
    char paths[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "/q/%d", i);
        items[i] =
            (struct dr_intake){.owner = "alice", .path = paths[i], .size = 1, .spool_path = "/s"};
    }
    ck_assert_int_eq(catalog_intake_uploads(cat, items, N), 0);
    int next = 0;
    for (;;) {
        struct dr_job jobs[7];
        int n = 0;
        ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 7, "n:1", jobs, &n), 0);
        for (int i = 0; i < n; i++) {
            ck_assert_msg(next < N, "too many jobs");
            ck_assert_str_eq(jobs[i].id, items[next].job_id);
            next++;
            dr_job_clear(&jobs[i]);
        }
        if (n == 0)
            break;
    }
    ck_assert_int_eq(next, N);
}
END_TEST

static bool alive_only_node1(const char *claimer, void *arg)
{
    int *calls = arg;
    (*calls)++;
    return strcmp(claimer, "node:1") == 0;
}

START_TEST(test_recover_releases_dead_claimers)
{
    char j1[DR_ID_LEN + 1], j2[DR_ID_LEN + 1], j3[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/1", 1, NULL, j1), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/2", 1, NULL, j2), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/3", 1, NULL, j3), 0);
    struct dr_job j;
    claim_one("upload", "node:1", &j);
    dr_job_clear(&j);
    claim_one("upload", "node:2", &j);
    dr_job_clear(&j);
    claim_one("upload", "node:2", &j);
    dr_job_clear(&j);
    ck_assert_int_eq(catalog_job_advance(cat, j3, "store", "/w/3"), 0);

    int calls = 0, released = -1;
    ck_assert_int_eq(catalog_jobs_recover(cat, alive_only_node1, &calls, &released), 0);
    ck_assert_int_eq(released, 2);
    ck_assert_int_eq(calls, 2); /* once per distinct claimer */
    ck_assert_int_eq(catalog_job_get(cat, j1, NULL, &j), 0);
    ck_assert_str_eq(j.state, "running");
    dr_job_clear(&j);
    ck_assert_int_eq(catalog_job_get(cat, j3, NULL, &j), 0);
    ck_assert_str_eq(j.state, "queued");
    ck_assert_str_eq(j.stage, "store"); /* keeps its stage */
    ck_assert_int_eq(j.attempts, 0);
    dr_job_clear(&j);
    /* The released claimer's late calls are refused. */
    ck_assert_int_eq(step1((struct dr_job_step){.job_id = j2}), -ENOENT);

    /* Released jobs are claimable again, oldest first. */
    struct dr_job jobs[3];
    int n = 0;
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 3, "node:3", jobs, &n), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(jobs[0].id, j2);
    ck_assert_str_eq(jobs[1].id, j3);
    dr_job_clear(&jobs[0]);
    dr_job_clear(&jobs[1]);

    calls = 0;
    ck_assert_int_eq(catalog_jobs_recover(cat, alive_only_node1, &calls, &released), 0);
    ck_assert_int_eq(released, 2);
    ck_assert_int_eq(catalog_jobs_recover(cat, alive_only_node1, &calls, &released), 0);
    ck_assert_int_eq(released, 0);
}
END_TEST

/* ---- concurrent claims -------------------------------------------------- */

#define CONC_JOBS 240
#define CONC_THREADS 4

struct claimer {
    pthread_t thr;
    int index;
    char ids[CONC_JOBS][DR_ID_LEN + 1];
    int n;
    int err;
};

static void *claim_thread(void *arg)
{
    struct claimer *c = arg;
    struct catalog *h;
    c->err = catalog_open(&tcfg, &h);
    if (c->err < 0)
        return NULL;
    char name[32];
    snprintf(name, sizeof name, "node:%d", c->index);
    for (;;) {
        struct dr_job jobs[3];
        int n = 0;
        int rc = catalog_jobs_claim(h, "upload", 3, name, jobs, &n);
        if (rc < 0) {
            c->err = rc;
            break;
        }
        for (int i = 0; i < n; i++) {
            if (c->n < CONC_JOBS)
                memcpy(c->ids[c->n++], jobs[i].id, DR_ID_LEN + 1);
            dr_job_clear(&jobs[i]);
        }
        if (n == 0)
            break;
    }
    catalog_close(h);
    return NULL;
}

static void make_jobs(char ids[][DR_ID_LEN + 1], int n)
{
    struct dr_intake *items = xcalloc((size_t)n, sizeof *items);
    char **paths = xcalloc((size_t)n, sizeof *paths);
    for (int i = 0; i < n; i++) {
        paths[i] = xasprintf("/c/%d", i);
        items[i] =
            (struct dr_intake){.owner = "alice", .path = paths[i], .size = 1, .spool_path = "/s"};
    }
    ck_assert_int_eq(catalog_intake_uploads(cat, items, (size_t)n), 0);
    for (int i = 0; i < n; i++) {
        ck_assert_int_eq(items[i].result, 0);
        memcpy(ids[i], items[i].job_id, DR_ID_LEN + 1);
        free(paths[i]);
    }
    free(paths);
    free(items);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The claimed ids, all together, are exactly the created ids. */
static void check_union(char created[][DR_ID_LEN + 1], char (*got)[DR_ID_LEN + 1], int n_got)
{
    ck_assert_int_eq(n_got, CONC_JOBS);
    qsort(got, (size_t)n_got, DR_ID_LEN + 1, cmp_id);
    qsort(created, CONC_JOBS, DR_ID_LEN + 1, cmp_id);
    for (int i = 0; i < n_got; i++) {
        if (i > 0)
            ck_assert_msg(strcmp(got[i - 1], got[i]) != 0, "job %s claimed twice", got[i]);
        ck_assert_str_eq(got[i], created[i]);
    }
}

START_TEST(test_concurrent_claim_threads)
{
    static char created[CONC_JOBS][DR_ID_LEN + 1];
    make_jobs(created, CONC_JOBS);
    struct claimer *c = xcalloc(CONC_THREADS, sizeof *c);
    for (int i = 0; i < CONC_THREADS; i++) {
        c[i].index = i;
        ck_assert_int_eq(pthread_create(&c[i].thr, NULL, claim_thread, &c[i]), 0);
    }
    char(*all)[DR_ID_LEN + 1] = xcalloc(CONC_JOBS * CONC_THREADS, DR_ID_LEN + 1);
    int n = 0;
    for (int i = 0; i < CONC_THREADS; i++) {
        pthread_join(c[i].thr, NULL);
        ck_assert_int_eq(c[i].err, 0);
        for (int k = 0; k < c[i].n; k++)
            memcpy(all[n++], c[i].ids[k], DR_ID_LEN + 1);
    }
    check_union(created, all, n);
    free(all);
    free(c);
}
END_TEST

START_TEST(test_concurrent_claim_processes)
{
    static char created[CONC_JOBS][DR_ID_LEN + 1];
    make_jobs(created, CONC_JOBS);
    enum { PROCS = 3 };
    pid_t pids[PROCS];
    /* A handle never crosses fork(): close ours, reopen after. */
    catalog_close(cat);
    cat = NULL;
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        ck_assert_int_ge(pids[p], 0);
        if (pids[p] == 0) {
            /* Child: its own handle; ids go to claims.<p>. */
            struct claimer *c = xcalloc(1, sizeof *c);
            c->index = 100 + p;
            claim_thread(c);
            char *out = xasprintf("%s/claims.%d", tmpdir, p);
            FILE *f = fopen(out, "w");
            int ok = f != NULL && c->err == 0;
            for (int i = 0; ok && i < c->n; i++)
                fprintf(f, "%s\n", c->ids[i]);
            if (f != NULL && fclose(f) != 0)
                ok = 0;
            free(out);
            free(c);
            _exit(ok ? 0 : 1);
        }
    }
    char(*all)[DR_ID_LEN + 1] = xcalloc(CONC_JOBS * PROCS, DR_ID_LEN + 1);
    int n = 0;
    for (int p = 0; p < PROCS; p++) {
        int st;
        ck_assert_int_eq(waitpid(pids[p], &st, 0), pids[p]);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        char *in = xasprintf("%s/claims.%d", tmpdir, p);
        FILE *f = fopen(in, "r");
        ck_assert_ptr_nonnull(f);
        char line[64];
        while (fgets(line, sizeof line, f) != NULL && n < CONC_JOBS * PROCS) {
            line[strcspn(line, "\n")] = '\0';
            ck_assert_int_eq((int)strlen(line), DR_ID_LEN);
            memcpy(all[n++], line, DR_ID_LEN + 1);
        }
        fclose(f);
        free(in);
    }
    check_union(created, all, n);
    free(all);
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    uint64_t depth = 0;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, CONC_JOBS); /* all running */
}
END_TEST

/* ---- visibility, sharing ------------------------------------------------ */

START_TEST(test_visibility_owner_shared_stranger)
{
    char mid[DR_ID_LEN + 1], jid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/p/cat.jpg", 9, mid, jid), 0);
    struct dr_media m;
    struct dr_job j;
    char did[DR_ID_LEN + 1];

    /* Stranger: nothing. */
    ck_assert_int_eq(catalog_media_get(cat, mid, "bob", &m), -ENOENT);
    ck_assert_int_eq(catalog_job_get(cat, jid, "bob", &j), -ENOENT);
    ck_assert_int_eq(catalog_enqueue_download(cat, mid, "bob", did), -ENOENT);
    ck_assert_str_eq(did, "");
    /* Owner and internal see it. */
    ck_assert_int_eq(catalog_media_get(cat, mid, "alice", &m), 0);
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_media_get(cat, mid, NULL, &m), 0);
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_job_get(cat, jid, "alice", &j), 0);
    dr_job_clear(&j);

    /* Sharing rules: only the owner; only known users; idempotent. */
    ck_assert_int_eq(catalog_media_share(cat, mid, "bob", "bob"), -ENOENT);
    ck_assert_int_eq(catalog_media_share(cat, mid, "alice", "mallory"), -ENOENT);
    ck_assert_int_eq(catalog_media_share(cat, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "alice", "bob"),
                     -ENOENT);
    ck_assert_int_eq(catalog_media_share(cat, mid, "alice", "bob"), 0);
    ck_assert_int_eq(catalog_media_share(cat, mid, "alice", "bob"), 0);
    ck_assert_int_eq(catalog_media_share(cat, mid, "alice", "alice"), 0);

    /* Bob now sees the media (owner still alice), not alice's upload job. */
    ck_assert_int_eq(catalog_media_get(cat, mid, "bob", &m), 0);
    ck_assert_str_eq(m.owner, "alice");
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_job_get(cat, jid, "bob", &j), -ENOENT);
    ck_assert_int_eq(catalog_media_get(cat, mid, "carol", &m), -ENOENT);

    /* Bob's download job is his: he sees it and gets its events. */
    ck_assert_int_eq(catalog_enqueue_download(cat, mid, "bob", did), 0);
    ck_assert(dr_id_valid(did));
    ck_assert_int_eq(catalog_job_get(cat, did, "bob", &j), 0);
    ck_assert_str_eq(j.kind, "download");
    ck_assert_str_eq(j.owner, "bob");
    ck_assert_str_eq(j.state, "queued");
    ck_assert_str_eq(j.stage, "fetch");
    ck_assert_ptr_null(j.spool_path);
    dr_job_clear(&j);
    ck_assert_int_eq(catalog_job_get(cat, did, "alice", &j), -ENOENT);
    ck_assert_int_eq(catalog_job_get(cat, did, "carol", &j), -ENOENT);
    struct dr_event *ev;
    size_t n;
    ck_assert_int_eq(catalog_events_since(cat, "bob", 0, 10, &ev, &n), 0);
    ck_assert_int_eq((int)n, 1);
    ck_assert_str_eq(ev[0].job_id, did);
    ck_assert_str_eq(ev[0].type, "job.created");
    json_t *o = event_json(&ev[0]);
    ck_assert_str_eq(jstr(o, "kind"), "download");
    ck_assert_str_eq(jstr(o, "path"), "/p/cat.jpg"); /* the owner's path */
    json_decref(o);
    catalog_events_free(ev, n);

    /* Shared media cannot be moved, deleted or re-shared by bob. */
    ck_assert_int_eq(catalog_media_move(cat, mid, "bob", "/mine.jpg"), -ENOENT);
    char *key = (char *)"x";
    ck_assert_int_eq(catalog_media_delete(cat, mid, "bob", &key), -ENOENT);
    ck_assert_ptr_null(key);
    ck_assert_int_eq(catalog_media_share(cat, mid, "bob", "carol"), -ENOENT);

    /* An internal download request belongs to the media owner. */
    ck_assert_int_eq(catalog_enqueue_download(cat, mid, NULL, did), 0);
    ck_assert_int_eq(catalog_job_get(cat, did, "alice", &j), 0);
    dr_job_clear(&j);
}
END_TEST

/* ---- folder listing ------------------------------------------------------ */

static const struct dr_folder_entry *find_folder(const struct dr_folder_entry *v, size_t n,
                                                 const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].name, name) == 0)
            return &v[i];
    return NULL;
}

START_TEST(test_list_aggregates_and_is_prefix_safe)
{
    const struct {
        const char *owner, *path;
        uint64_t size;
    } rows[] = {
        {"alice", "/a.txt", 1},
        {"alice", "/photos/x.jpg", 10},
        {"alice", "/photos/2024/y", 100},
        {"alice", "/photos/2024/z/w", 1000},
        {"alice", "/ab/f", 1},
        {"alice", "/ab/c/h", 4},
        {"alice", "/abc/g", 2},
        {"alice", "/ab-x/q", 8},
        {"alice", "/ab0/r", 16},
        {"bob", "/ab/bobs", 32},
        {"carol", "/ab/shared", 64},
        {"carol", "/ab/private", 128},
    };
    char ids[DR_ARRAY_LEN(rows)][DR_ID_LEN + 1];
    for (size_t i = 0; i < DR_ARRAY_LEN(rows); i++)
        ck_assert_int_eq(intake1(cat, rows[i].owner, rows[i].path, rows[i].size, ids[i], NULL), 0);
    ck_assert_int_eq(catalog_media_share(cat, ids[10], "carol", "alice"), 0);

    struct dr_media *files;
    struct dr_folder_entry *dirs;
    size_t nf, nd;
    const struct dr_folder_entry *e;

    /* "/ab": its own file and carol's shared one (where carol keeps it),
     * one subfolder c; nothing from /abc, /ab-x, /ab0 or bob. */
    ck_assert_int_eq(catalog_media_list(cat, "alice", "/ab", &files, &nf, &dirs, &nd), 0);
    ck_assert_int_eq((int)nf, 2);
    ck_assert_str_eq(files[0].name, "f");
    ck_assert_str_eq(files[0].owner, "alice");
    ck_assert_str_eq(files[1].name, "shared");
    ck_assert_str_eq(files[1].owner, "carol");
    ck_assert_int_eq((int)nd, 1);
    ck_assert_str_eq(dirs[0].name, "c");
    ck_assert_int_eq((int)dirs[0].files, 1);
    ck_assert_int_eq((int)dirs[0].size, 4);
    catalog_media_list_free(files, nf, dirs, nd);

    /* Root: a.txt; subfolders summed over everything below them. */
    ck_assert_int_eq(catalog_media_list(cat, "alice", "/", &files, &nf, &dirs, &nd), 0);
    ck_assert_int_eq((int)nf, 1);
    ck_assert_str_eq(files[0].path, "/a.txt");
    ck_assert_int_eq((int)nd, 5);
    ck_assert_str_eq(dirs[0].name, "ab"); /* sorted by name */
    e = find_folder(dirs, nd, "ab");
    ck_assert_int_eq((int)e->files, 3); /* f, c/h, carol's shared */
    ck_assert_int_eq((int)e->size, 1 + 4 + 64);
    e = find_folder(dirs, nd, "abc");
    ck_assert_int_eq((int)e->files, 1);
    ck_assert_int_eq((int)e->size, 2);
    e = find_folder(dirs, nd, "ab-x");
    ck_assert_int_eq((int)e->size, 8);
    e = find_folder(dirs, nd, "ab0");
    ck_assert_int_eq((int)e->size, 16);
    e = find_folder(dirs, nd, "photos");
    ck_assert_int_eq((int)e->files, 3);
    ck_assert_int_eq((int)e->size, 1110);
    catalog_media_list_free(files, nf, dirs, nd);

    /* A trailing slash and "" are accepted as the same folders. */
    ck_assert_int_eq(catalog_media_list(cat, "alice", "/photos/", &files, &nf, &dirs, &nd), 0);
    ck_assert_int_eq((int)nf, 1);
    ck_assert_str_eq(files[0].name, "x.jpg");
    ck_assert_int_eq((int)nd, 1);
    ck_assert_str_eq(dirs[0].name, "2024");
    ck_assert_int_eq((int)dirs[0].files, 2);
    ck_assert_int_eq((int)dirs[0].size, 1100);
    catalog_media_list_free(files, nf, dirs, nd);
    ck_assert_int_eq(catalog_media_list(cat, "alice", "", &files, &nf, &dirs, &nd), 0);
    ck_assert_int_eq((int)nd, 5);
    catalog_media_list_free(files, nf, dirs, nd);

    /* "/abc" sees only itself; an unknown folder is empty, not an error. */
    ck_assert_int_eq(catalog_media_list(cat, "alice", "/abc", &files, &nf, &dirs, &nd), 0);
    ck_assert_int_eq((int)nf, 1);
    ck_assert_str_eq(files[0].name, "g");
    ck_assert_int_eq((int)nd, 0);
    catalog_media_list_free(files, nf, dirs, nd);
    ck_assert_int_eq(catalog_media_list(cat, "alice", "/nope", &files, &nf, &dirs, &nd), 0);
    ck_assert_int_eq((int)(nf + nd), 0);
    catalog_media_list_free(files, nf, dirs, nd);

    /* Bob sees only his own. */
    ck_assert_int_eq(catalog_media_list(cat, "bob", "/", &files, &nf, &dirs, &nd), 0);
    ck_assert_int_eq((int)nf, 0);
    ck_assert_int_eq((int)nd, 1);
    ck_assert_str_eq(dirs[0].name, "ab");
    ck_assert_int_eq((int)dirs[0].files, 1);
    ck_assert_int_eq((int)dirs[0].size, 32);
    catalog_media_list_free(files, nf, dirs, nd);

    /* UTF-8 folder names split correctly. */
    ck_assert_int_eq(intake1(cat, "bob", "/ünï/çødé/ß.txt", 5, NULL, NULL), 0);
    ck_assert_int_eq(catalog_media_list(cat, "bob", "/ünï", &files, &nf, &dirs, &nd), 0);
    ck_assert_int_eq((int)nd, 1);
    ck_assert_str_eq(dirs[0].name, "çødé");
    ck_assert_int_eq((int)dirs[0].size, 5);
    catalog_media_list_free(files, nf, dirs, nd);
}
END_TEST

/* ---- a file and a folder never share a path ---------------------------- */

START_TEST(test_file_and_folder_never_share_a_path)
{
    char a[DR_ID_LEN + 1], b[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/photos/2024/cat.jpg", 1, a, NULL), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/notes.txt", 1, b, NULL), 0);
    /* what catalog_path_exists says */
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/photos/2024/cat.jpg"), DR_PATH_FILE);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/photos"), DR_PATH_FOLDER);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/photos/2024"), DR_PATH_FOLDER);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/notes.txt/x"), DR_PATH_UNDER_FILE);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/photos/2024/cat.jpg/y/z"),
                     DR_PATH_UNDER_FILE);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/photo"), 0); /* prefix-safe */
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/photos-old"), 0);
    ck_assert_int_eq(catalog_path_exists(cat, "bob", "/photos"), 0); /* per owner */
    /* an insert may not make either clash: -EEXIST, nothing written */
    struct dr_intake it = {.owner = "alice", .path = "/photos", .size = 1, .spool_path = "/s/1"};
    ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
    ck_assert_int_eq(it.result, -EEXIST);
    struct dr_intake it2 = {
        .owner = "alice", .path = "/notes.txt/inside", .size = 1, .spool_path = "/s/2"};
    ck_assert_int_eq(catalog_intake_uploads(cat, &it2, 1), 0);
    ck_assert_int_eq(it2.result, -EEXIST);
    ck_assert_int_eq(intake1(cat, "bob", "/photos", 1, NULL, NULL), 0);
    /* nor may a move; a move within its own folder tree is fine */
    ck_assert_int_eq(catalog_media_move(cat, b, "alice", "/photos"), -EEXIST);
    ck_assert_int_eq(catalog_media_move(cat, a, "alice", "/notes.txt/cat.jpg"), -EEXIST);
    ck_assert_int_eq(catalog_media_move(cat, a, "alice", "/photos/2024"), 0); /* its only file */
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/photos/2024"), DR_PATH_FILE);
    ck_assert_str_eq(catalog_path_clash_text(DR_PATH_FOLDER),
                     "is a folder (a file and a folder cannot share a path)");
}
END_TEST

/* CPU seconds of this thread for `calls` path checks of owner under
 * folder (the least of 5 rounds: the machine is shared). */
static double path_check_cpu(const char *owner, const char *folder, int calls)
{
    double best = 1e9;
    for (int round = 0; round < 5; round++) {
        struct timespec a, b;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        for (int i = 0; i < calls; i++) {
            char p[64];
            snprintf(p, sizeof p, "%s/new-%d.bin", folder, i);
            ck_assert_int_eq(catalog_path_exists(cat, owner, p), 0);
        }
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
        best = s < best ? s : best;
    }
    return best;
}

/* Every upload asks whether its path is a folder. With the owner's files
 * counted by tens of thousands that must stay an index range, not a walk
 * over all of them (issue 15: it was a walk, through media_owner). */
START_TEST(test_path_checks_do_not_scan_the_owners_files)
{
    enum { FILES = 20000, BATCH = 2000 };
    struct dr_intake *its = xcalloc(BATCH, sizeof *its);
    char(*paths)[48] = xcalloc(BATCH, sizeof *paths);
    for (int at = 0; at < FILES; at += BATCH) {
        for (int i = 0; i < BATCH; i++) {
            snprintf(paths[i], sizeof paths[i], "/many/f-%d.bin", at + i);
            its[i] = (struct dr_intake){
                .owner = "alice", .path = paths[i], .size = 1, .spool_path = "/s/x"};
        }
        ck_assert_int_eq(catalog_intake_uploads(cat, its, BATCH), 0);
    }
    free(its);
    free(paths);
    ck_assert_int_eq(intake1(cat, "bob", "/many/one.bin", 1, NULL, NULL), 0);
    double many = path_check_cpu("alice", "/many", 200);
    double one = path_check_cpu("bob", "/many", 200);
    /* an index range costs about the same for both (a scan: ~100x more) */
    ck_assert_msg(many < 10 * one + 0.002, "20,000 files: %.3f ms per check, 1 file: %.3f ms",
                  many * 1e3 / 200, one * 1e3 / 200);
}
END_TEST

/* ---- move, delete ------------------------------------------------------- */

START_TEST(test_move_and_rename)
{
    char a[DR_ID_LEN + 1], b[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/in/a.txt", 1, a, NULL), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/in/b.txt", 1, b, NULL), 0);

    ck_assert_int_eq(catalog_media_move(cat, a, "alice", "/out/deep/a2.txt"), 0);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, a, "alice", &m), 0);
    ck_assert_str_eq(m.path, "/out/deep/a2.txt");
    ck_assert_str_eq(m.folder, "/out/deep");
    ck_assert_str_eq(m.name, "a2.txt");
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_path_exists(cat, "alice", "/in/a.txt"), 0);

    /* Onto a taken path: -EEXIST and nothing changes. */
    ck_assert_int_eq(catalog_media_move(cat, a, "alice", "/in/b.txt"), -EEXIST);
    ck_assert_int_eq(catalog_media_get(cat, a, NULL, &m), 0);
    ck_assert_str_eq(m.path, "/out/deep/a2.txt");
    dr_media_clear(&m);
    /* Not the owner, or no such media: -ENOENT. */
    ck_assert_int_eq(catalog_media_move(cat, a, "bob", "/x.txt"), -ENOENT);
    ck_assert_int_eq(catalog_media_move(cat, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "alice", "/x"), -ENOENT);
    /* Rename in place, to the top level, and to itself. */
    ck_assert_int_eq(catalog_media_move(cat, b, "alice", "/in/c.txt"), 0);
    ck_assert_int_eq(catalog_media_move(cat, b, "alice", "/c.txt"), 0);
    ck_assert_int_eq(catalog_media_move(cat, b, "alice", "/c.txt"), 0);
    ck_assert_int_eq(catalog_media_get(cat, b, NULL, &m), 0);
    ck_assert_str_eq(m.folder, "/");
    ck_assert_str_eq(m.name, "c.txt");
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_media_move(cat, b, "alice", "/dir/"), -EINVAL);
    /* The old path is free again. */
    ck_assert_int_eq(intake1(cat, "alice", "/in/b.txt", 1, NULL, NULL), 0);
}
END_TEST

START_TEST(test_delete)
{
    char mid[DR_ID_LEN + 1], jid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/d.txt", 1, mid, jid), 0);
    ck_assert_int_eq(catalog_media_share(cat, mid, "alice", "bob"), 0);
    char *key = NULL;
    ck_assert_int_eq(catalog_media_delete(cat, mid, "bob", &key), -ENOENT);
    /* Not stored yet: no key. */
    char mid2[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/e.txt", 1, mid2, NULL), 0);
    ck_assert_int_eq(catalog_media_delete(cat, mid2, "alice", &key), 0);
    ck_assert_ptr_null(key);

    struct dr_job j;
    claim_one("upload", "n:1", &j);
    ck_assert_str_eq(j.id, jid);
    dr_job_clear(&j);
    ck_assert_int_eq(
        step1((struct dr_job_step){
            .job_id = jid, .next_stage = "notify", .media_id = mid, .storage_key = "OBJ_KEY.txt"}),
        0);
    ck_assert_int_eq(catalog_media_delete(cat, mid, "alice", &key), 0);
    ck_assert_str_eq(key, "OBJ_KEY.txt");
    free(key);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, mid, NULL, &m), -ENOENT);
    ck_assert_int_eq(catalog_media_get(cat, mid, "bob", &m), -ENOENT);
    ck_assert_int_eq(catalog_media_delete(cat, mid, "alice", NULL), -ENOENT);
    struct dr_job_step gone = {
        .job_id = jid, .next_stage = "notify", .media_id = mid, .storage_key = "k"};
    ck_assert_int_eq(catalog_jobs_step(cat, &gone, 1, NULL), 0);
    ck_assert_int_eq(gone.result, -ENOENT);
    ck_assert(gone.media_gone);
    /* The shares went with it (the file itself confirms). */
    struct raw r = raw_open();
    ck_assert_int_eq(raw_int(&r, "SELECT count(*) FROM shares WHERE media_id = $1", mid), 0);
    raw_close(&r);
    /* The job stays (history); the path is free. */
    ck_assert_int_eq(catalog_job_get(cat, jid, "alice", &j), 0);
    dr_job_clear(&j);
    ck_assert_int_eq(intake1(cat, "alice", "/d.txt", 1, NULL, NULL), 0);
    /* Failing the orphaned upload job (still running) works (media gone). */
    ck_assert_int_eq(catalog_job_fail(cat, jid, NULL, "media deleted"), 0);
}
END_TEST

/* ---- versions and the trash (catalog_versions.h) ------------------------ */

/* Claim media's upload job and take it to done: sealed (sha), stored
 * (key), available, with keep as versions.keep. */
static void upload_done(const char *jid, const char *mid, const char *sha, const char *key,
                        int keep)
{
    struct dr_job j;
    claim_one("upload", "n:1", &j);
    ck_assert_str_eq(j.id, jid);
    dr_job_clear(&j);
    ck_assert_int_eq(step1((struct dr_job_step){.job_id = jid,
                                                .media_id = mid,
                                                .sha256_hex = sha,
                                                .storage_key = key,
                                                .available = true,
                                                .keep_versions = keep}),
                     0);
}

/* An If-Match intake of path; its result, ids out. */
static int replace1(const char *path, const char *if_match, char *mid, char *jid)
{
    struct dr_intake it = {
        .owner = "alice", .path = path, .size = 3, .spool_path = "/spool/y", .if_match = if_match};
    ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
    memcpy(mid, it.media_id, DR_ID_LEN + 1);
    memcpy(jid, it.job_id, DR_ID_LEN + 1);
    free(it.renamed);
    return it.result;
}

static const char *held_by(const char *path)
{
    static char id[DR_ID_LEN + 1];
    struct dr_media m;
    if (catalog_media_by_path(cat, "alice", path, &m) != 0)
        return "";
    snprintf(id, sizeof id, "%s", m.id);
    dr_media_clear(&m);
    return id;
}

START_TEST(test_versions_and_trash)
{
    char m1[DR_ID_LEN + 1], j1[DR_ID_LEN + 1], m2[DR_ID_LEN + 1], j2[DR_ID_LEN + 1];
    char m3[DR_ID_LEN + 1], j3[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/v.txt", 3, m1, j1), 0);
    ck_assert_int_eq(catalog_media_share(cat, m1, "alice", "bob"), 0);
    /* Not sealed yet: no ETag matches; "*" does; no file: -ESTALE. */
    ck_assert_int_eq(replace1("/v.txt", "aa01", m2, j2), -ESTALE);
    ck_assert_int_eq(replace1("/w.txt", "*", m2, j2), -ESTALE);
    upload_done(j1, m1, "aa01", "K1", 1);
    ck_assert_int_eq(replace1("/v.txt", "bb,cc", m2, j2), -ESTALE);
    ck_assert_int_eq(replace1("/v.txt", "bb,aa01", m2, j2), 0);
    /* A replacement on its way: the ETag is about to move on. */
    ck_assert_int_eq(replace1("/v.txt", "aa01", m3, j3), -ESTALE);
    /* Pending: the old one still holds the path, bob sees only it. */
    ck_assert_str_eq(held_by("/v.txt"), m1);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, m2, "bob", &m), -ENOENT);
    ck_assert_int_eq(catalog_media_get(cat, m2, "alice", &m), 0);
    ck_assert_str_eq(m.retired, "pending");
    ck_assert_str_eq(m.file_id, m1);
    ck_assert_int_eq(m.version, 2);
    dr_media_clear(&m);
    upload_done(j2, m2, "bb02", "K2", 1);
    /* Stored: it holds the path, the old one is version 1, shares followed. */
    ck_assert_str_eq(held_by("/v.txt"), m2);
    ck_assert_int_eq(catalog_media_get(cat, m2, "bob", &m), 0);
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_media_get(cat, m1, "bob", &m), -ENOENT);
    struct dr_media *v = NULL;
    size_t n = 0;
    ck_assert_int_eq(catalog_versions_list(cat, m1, "alice", &v, &n), 0);
    ck_assert_int_eq(n, 2);
    ck_assert_str_eq(v[0].id, m2);
    ck_assert_str_eq(v[0].retired, "");
    ck_assert_str_eq(v[1].id, m1);
    ck_assert_str_eq(v[1].retired, "version");
    catalog_media_list_free(v, n, NULL, 0);
    ck_assert_int_eq(catalog_versions_list(cat, m1, "bob", &v, &n), -ENOENT);
    /* Version 3 with keep 1: version 1 is to be purged. */
    ck_assert_int_eq(replace1("/v.txt", "*", m3, j3), 0);
    upload_done(j3, m3, "cc03", "K3", 1);
    ck_assert_int_eq(catalog_media_get(cat, m1, "alice", &m), -ENOENT);
    char ids[4][DR_ID_LEN + 1];
    ck_assert_int_eq(catalog_retired_purgeable(cat, 4, ids, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(ids[0], m1);
    ck_assert_int_eq(catalog_media_delete(cat, m1, NULL, NULL), 0);
    /* Restore version 2. */
    ck_assert_int_eq(catalog_version_restore(cat, m3, "alice", 1, 1, NULL), -ENOENT);
    ck_assert_int_eq(catalog_version_restore(cat, m3, "alice", 2, 1, &m), 0);
    ck_assert_str_eq(m.id, m2);
    ck_assert_str_eq(m.path, "/v.txt");
    dr_media_clear(&m);
    ck_assert_str_eq(held_by("/v.txt"), m2);
    /* The trash: out of the listing and the path, bob sees nothing. */
    ck_assert_int_eq(catalog_media_trash(cat, m2, "bob"), -ENOENT);
    ck_assert_int_eq(catalog_media_trash(cat, m2, "alice"), 0);
    ck_assert_str_eq(held_by("/v.txt"), "");
    ck_assert_int_eq(catalog_version_restore(cat, m3, "alice", 3, 1, NULL), -ESRCH);
    ck_assert_int_eq(catalog_trash_list(cat, "alice", &v, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(v[0].id, m2);
    catalog_media_list_free(v, n, NULL, 0);
    ck_assert_int_eq(intake1(cat, "alice", "/v.txt", 1, ids[0], ids[1]), 0);
    int clash = 0;
    ck_assert_int_eq(catalog_trash_restore(cat, m2, "alice", &clash, NULL), -EEXIST);
    ck_assert_int_eq(clash, DR_PATH_FILE);
    ck_assert_int_eq(catalog_media_delete(cat, ids[0], "alice", NULL), 0);
    ck_assert_int_eq(catalog_trash_restore(cat, m2, "alice", NULL, &m), 0);
    ck_assert_str_eq(m.retired, "");
    dr_media_clear(&m);
    ck_assert_int_eq(catalog_media_get(cat, m2, "bob", &m), 0);
    dr_media_clear(&m);
    /* Expiry: the trash older than the cut, then its earlier version. */
    ck_assert_int_eq(catalog_media_trash(cat, m2, "alice"), 0);
    uint64_t marked = 0;
    ck_assert_int_eq(catalog_retired_expire(cat, dr_now_ms() - 60000, &marked), 0);
    ck_assert_int_eq(marked, 0);
    ck_assert_int_eq(catalog_retired_expire(cat, dr_now_ms(), &marked), 0);
    ck_assert_int_eq(marked, 2); /* the trashed file and its version 3 */
    ck_assert_int_eq(catalog_retired_purgeable(cat, 4, ids, &n), 0);
    ck_assert_int_eq(n, 2);
}
END_TEST

START_TEST(test_conflict_rename)
{
    ck_assert_int_eq(intake1(cat, "alice", "/r/cat.jpg", 1, NULL, NULL), 0);
    struct dr_intake it[3] = {
        {.owner = "alice", .path = "/r/cat.jpg", .spool_path = "/s/1", .rename = true},
        {.owner = "alice", .path = "/r/cat.jpg", .spool_path = "/s/2", .rename = true},
        {.owner = "alice", .path = "/r/dog", .spool_path = "/s/3", .rename = true},
    };
    ck_assert_int_eq(catalog_intake_uploads(cat, it, 3), 0);
    ck_assert_int_eq(it[0].result, 0);
    ck_assert_str_eq(it[0].renamed, "/r/cat (1).jpg");
    ck_assert_str_eq(it[1].renamed, "/r/cat (2).jpg");
    ck_assert_ptr_null(it[2].renamed);
    for (int i = 0; i < 3; i++)
        free(it[i].renamed);
}
END_TEST

/* ---- foreach, insert ---------------------------------------------------- */

static int count_cb(const struct dr_media *m, void *arg)
{
    int *n = arg;
    ck_assert(dr_id_valid(m->id));
    (*n)++;
    return 0;
}

static int stop_at_3(const struct dr_media *m, void *arg)
{
    (void)m;
    int *n = arg;
    return ++(*n) == 3;
}

START_TEST(test_foreach_and_insert)
{
    /* More than one page (256) of rows. */
    enum { N = 300 };
    struct dr_intake *items = xcalloc(N, sizeof *items);
    char **paths = xcalloc(N, sizeof *paths);
    for (int i = 0; i < N; i++) {
        paths[i] = xasprintf("/f/%03d", i);
        items[i] =
            (struct dr_intake){.owner = "bob", .path = paths[i], .size = 2, .spool_path = "/s"};
    }
    ck_assert_int_eq(catalog_intake_uploads(cat, items, N), 0);
    for (int i = 0; i < N; i++)
        free(paths[i]);
    free(paths);
    free(items);

    int n = 0;
    ck_assert_int_eq(catalog_media_foreach(cat, count_cb, &n), 0);
    ck_assert_int_eq(n, N);
    n = 0;
    ck_assert_int_eq(catalog_media_foreach(cat, stop_at_3, &n), 0);
    ck_assert_int_eq(n, 3);

    /* A rebuilt row: complete, available, visible to its owner. */
    uint8_t wk[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct dr_media m = {0};
    dr_id_new(m.id);
    m.owner = (char *)"carol";
    m.path = (char *)"/r/e.bin";
    m.size = 77;
    snprintf(m.sha256, sizeof m.sha256, "%064d", 0);
    m.storage_key = (char *)"K_e.bin";
    m.wrapped_key = wk;
    m.wrapped_key_len = sizeof wk;
    m.created_at = 1234;
    m.uploaded_at = 5678;
    ck_assert_int_eq(catalog_media_insert(cat, &m), 0);
    ck_assert_int_eq(catalog_media_insert(cat, &m), -EEXIST);
    struct dr_media got;
    ck_assert_int_eq(catalog_media_get(cat, m.id, "carol", &got), 0);
    ck_assert_str_eq(got.state, "available");
    ck_assert_str_eq(got.folder, "/r");
    ck_assert_str_eq(got.name, "e.bin");
    ck_assert_str_eq(got.storage_key, "K_e.bin");
    ck_assert_int_eq(got.created_at, 1234);
    ck_assert_int_eq(got.uploaded_at, 5678);
    ck_assert_int_eq((int)got.wrapped_key_len, 8);
    ck_assert_mem_eq(got.wrapped_key, wk, 8);
    dr_media_clear(&got);
    /* Same path, other id: the path is taken. */
    dr_id_new(m.id);
    ck_assert_int_eq(catalog_media_insert(cat, &m), -EEXIST);
    snprintf(m.id, sizeof m.id, "not-an-id");
    ck_assert_int_eq(catalog_media_insert(cat, &m), -EINVAL);
    n = 0;
    ck_assert_int_eq(catalog_media_foreach(cat, count_cb, &n), 0);
    ck_assert_int_eq(n, N + 1);
}
END_TEST

/* ---- events ------------------------------------------------------------- */

START_TEST(test_events_filter_and_paging)
{
    int64_t last = -1;
    ck_assert_int_eq(catalog_events_last_seq(cat, &last), 0);
    ck_assert_int_eq(last, 0);
    for (int i = 0; i < 5; i++) {
        char p[16];
        snprintf(p, sizeof p, "/%d", i);
        ck_assert_int_eq(intake1(cat, i % 2 ? "bob" : "alice", p, 1, NULL, NULL), 0);
    }
    struct dr_event *ev;
    size_t n;
    ck_assert_int_eq(catalog_events_since(cat, NULL, 0, 2, &ev, &n), 0);
    ck_assert_int_eq((int)n, 2);
    int64_t after = ev[1].seq;
    catalog_events_free(ev, n);
    ck_assert_int_eq(catalog_events_since(cat, NULL, after, 100, &ev, &n), 0);
    ck_assert_int_eq((int)n, 3);
    ck_assert_int_gt(ev[0].seq, after);
    catalog_events_free(ev, n);
    ck_assert_int_eq(catalog_events_since(cat, "bob", 0, 100, &ev, &n), 0);
    ck_assert_int_eq((int)n, 2);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_eq(ev[i].user, "bob");
    catalog_events_free(ev, n);
    ck_assert_int_eq(catalog_events_since(cat, "nobody", 0, 100, &ev, &n), 0);
    ck_assert_int_eq((int)n, 0);
    catalog_events_free(ev, n);
    ck_assert_int_eq(catalog_events_since(cat, NULL, 0, 0, &ev, &n), 0);
    ck_assert_int_eq((int)n, 0);
    ck_assert_int_eq(catalog_events_last_seq(cat, &last), 0);
    ck_assert_int_eq(last, 5);

    /* Pruning keeps the high-water mark: seqs are never reused. */
    uint64_t removed = 0;
    ck_assert_int_eq(catalog_prune(cat, dr_now_ms() + 1000, &removed), 0);
    ck_assert_int_eq((int)removed, 5); /* the events; the jobs are still queued */
    ck_assert_int_eq(catalog_events_last_seq(cat, &last), 0);
    ck_assert_int_eq(last, 5);
    ck_assert_int_eq(intake1(cat, "alice", "/new", 1, NULL, NULL), 0);
    ck_assert_int_eq(catalog_events_since(cat, NULL, 0, 10, &ev, &n), 0);
    ck_assert_int_eq((int)n, 1);
    ck_assert_int_eq(ev[0].seq, 6);
    catalog_events_free(ev, n);
    uint64_t depth = 0;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 6);
}
END_TEST

START_TEST(test_prune_finished_only)
{
    char jid[DR_ID_LEN + 1], j2[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/a", 1, NULL, jid), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/b", 1, NULL, j2), 0);
    struct dr_job j;
    claim_one("upload", "n:1", &j);
    dr_job_clear(&j);
    ck_assert_int_eq(step1((struct dr_job_step){.job_id = jid}), 0); /* done */
    uint64_t removed = 0;
    ck_assert_int_eq(catalog_prune(cat, 0, &removed), 0); /* nothing that old */
    ck_assert_int_eq((int)removed, 0);
    ck_assert_int_eq(catalog_prune(cat, dr_now_ms() + 1000, NULL), 0);
    ck_assert_int_eq(catalog_job_get(cat, jid, NULL, &j), -ENOENT);
    ck_assert_int_eq(catalog_job_get(cat, j2, NULL, &j), 0); /* queued: kept */
    dr_job_clear(&j);
}
END_TEST

/* ---- tus ---------------------------------------------------------------- */

static void tus_new(struct dr_tus *t, const char *owner, const char *path, int64_t length,
                    int64_t expires_at)
{
    memset(t, 0, sizeof *t);
    dr_id_new(t->id);
    t->owner = (char *)owner;
    t->length = length;
    t->path = (char *)path;
    t->metadata = (char *)"filename dC50eHQ=";
    t->content_type = (char *)"text/plain";
    t->spool_path = (char *)"/spool/t.part";
    t->expires_at = expires_at;
}

START_TEST(test_tus_lifecycle)
{
    int64_t now = dr_now_ms();
    struct dr_tus t;
    tus_new(&t, "alice", "/up/t.txt", -1, now + 3600000);
    ck_assert_int_eq(catalog_tus_create(cat, &t), 0);
    ck_assert_int_eq(catalog_tus_create(cat, &t), -EEXIST);

    struct dr_tus got;
    ck_assert_int_eq(catalog_tus_get(cat, t.id, "bob", &got), -ENOENT);
    ck_assert_int_eq(catalog_tus_get(cat, t.id, "alice", &got), 0);
    ck_assert_int_eq(got.length, -1);
    ck_assert_int_eq((int)got.offset, 0);
    ck_assert_str_eq(got.path, "/up/t.txt");
    ck_assert_str_eq(got.metadata, "filename dC50eHQ=");
    ck_assert_str_eq(got.content_type, "text/plain");
    ck_assert_str_eq(got.spool_path, "/spool/t.part");
    ck_assert_int_eq(got.expires_at, now + 3600000);
    ck_assert_int_gt(got.created_at, 0);
    ck_assert_str_eq(got.job_id, "");
    ck_assert_str_eq(got.media_id, "");
    dr_tus_clear(&got);

    /* Deferred length: offsets grow freely until the length is known. */
    ck_assert_int_eq(catalog_tus_set_offset(cat, t.id, 4), 0);
    ck_assert_int_eq(catalog_tus_set_length(cat, t.id, 10), 0);
    ck_assert_int_eq(catalog_tus_set_offset(cat, t.id, 11), -EINVAL); /* past the length */
    ck_assert_int_eq(catalog_tus_set_length(cat, t.id, 3), -EINVAL);  /* below the offset */
    ck_assert_int_eq(catalog_tus_set_offset(cat, t.id, 10), 0);
    ck_assert_int_eq(catalog_tus_set_offset(cat, "01ARZ3NDEKTSV4RRFFQ69G5FAV", 1), -ENOENT);
    ck_assert_int_eq(catalog_tus_get(cat, t.id, NULL, &got), 0);
    ck_assert_int_eq(got.length, 10);
    ck_assert_int_eq((int)got.offset, 10);
    dr_tus_clear(&got);

    /* Finish: media + job + event and the row marked, in one go. The
     * caller may leave path/content type/spool to the session row. */
    struct dr_intake it = {.owner = "alice", .size = 10};
    ck_assert_int_eq(catalog_tus_finish(cat, t.id, &it), 0);
    ck_assert_int_eq(it.result, 0);
    ck_assert(dr_id_valid(it.media_id) && dr_id_valid(it.job_id));
    ck_assert_int_eq(catalog_tus_get(cat, t.id, "alice", &got), 0);
    ck_assert_str_eq(got.job_id, it.job_id);
    ck_assert_str_eq(got.media_id, it.media_id);
    ck_assert_int_eq((int)got.offset, 10);
    dr_tus_clear(&got);
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, it.media_id, "alice", &m), 0);
    ck_assert_str_eq(m.path, "/up/t.txt");
    ck_assert_str_eq(m.content_type, "text/plain");
    ck_assert_int_eq((int)m.size, 10);
    dr_media_clear(&m);
    struct dr_job j;
    ck_assert_int_eq(catalog_job_get(cat, it.job_id, "alice", &j), 0);
    ck_assert_str_eq(j.spool_path, "/spool/t.part");
    ck_assert_str_eq(j.stage, "process");
    dr_job_clear(&j);
    struct dr_event *ev;
    size_t n;
    ck_assert_int_eq(catalog_events_since(cat, "alice", 0, 10, &ev, &n), 0);
    ck_assert_int_eq((int)n, 1);
    ck_assert_str_eq(ev[0].type, "job.created");
    ck_assert_str_eq(ev[0].job_id, it.job_id);
    catalog_events_free(ev, n);

    /* Finishing again (a retried last PATCH) gives the same ids, no new job. */
    struct dr_intake again = {.owner = "alice", .size = 10};
    ck_assert_int_eq(catalog_tus_finish(cat, t.id, &again), 0);
    ck_assert_str_eq(again.job_id, it.job_id);
    ck_assert_str_eq(again.media_id, it.media_id);
    uint64_t depth = 0;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 1);
    /* A finished session no longer moves; others cannot finish it. */
    ck_assert_int_eq(catalog_tus_set_offset(cat, t.id, 5), -ENOENT);
    struct dr_intake other = {.owner = "bob", .size = 10};
    ck_assert_int_eq(catalog_tus_finish(cat, t.id, &other), -ENOENT);

    /* Termination: owner only. */
    ck_assert_int_eq(catalog_tus_delete(cat, t.id, "bob"), -ENOENT);
    ck_assert_int_eq(catalog_tus_delete(cat, t.id, "alice"), 0);
    ck_assert_int_eq(catalog_tus_delete(cat, t.id, "alice"), -ENOENT);
    ck_assert_int_eq(catalog_tus_get(cat, t.id, NULL, &got), -ENOENT);
    /* The upload it made is unaffected. */
    ck_assert_int_eq(catalog_media_get(cat, it.media_id, "alice", &m), 0);
    dr_media_clear(&m);
}
END_TEST

START_TEST(test_tus_finish_path_taken)
{
    ck_assert_int_eq(intake1(cat, "alice", "/taken.txt", 1, NULL, NULL), 0);
    struct dr_tus t;
    tus_new(&t, "alice", "/taken.txt", 3, dr_now_ms() + 1000);
    ck_assert_int_eq(catalog_tus_create(cat, &t), 0);
    ck_assert_int_eq(catalog_tus_set_offset(cat, t.id, 3), 0);
    struct dr_intake it = {
        .owner = "alice", .path = "/taken.txt", .size = 3, .spool_path = "/spool/t.part"};
    ck_assert_int_eq(catalog_tus_finish(cat, t.id, &it), -EEXIST);
    ck_assert_int_eq(it.result, -EEXIST);
    ck_assert_str_eq(it.job_id, "");
    struct dr_tus got;
    ck_assert_int_eq(catalog_tus_get(cat, t.id, NULL, &got), 0);
    ck_assert_str_eq(got.job_id, ""); /* still open */
    dr_tus_clear(&got);
    uint64_t depth = 0;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 1);
    /* Another path (e.g. after the client renamed): it finishes. */
    it.path = "/taken (1).txt";
    ck_assert_int_eq(catalog_tus_finish(cat, t.id, &it), 0);
    ck_assert_int_eq(it.result, 0);
    ck_assert_int_eq(catalog_tus_finish(cat, "01ARZ3NDEKTSV4RRFFQ69G5FAV", &it), -ENOENT);
}
END_TEST

START_TEST(test_tus_in_a_group_intake)
{
    /* one transaction: a PUT, a tus creation, a finish, a finish whose path
     * is taken, a finish of no session, a creation that also finishes */
    ck_assert_int_eq(intake1(cat, "alice", "/taken.txt", 1, NULL, NULL), 0);
    struct dr_tus open1, taken, both, made;
    tus_new(&open1, "alice", "/open.txt", 3, dr_now_ms() + 60000);
    tus_new(&taken, "alice", "/taken.txt", 3, dr_now_ms() + 60000);
    tus_new(&both, "alice", "/both.txt", 3, dr_now_ms() + 60000);
    tus_new(&made, "alice", "/made.txt", 3, dr_now_ms() + 60000);
    ck_assert_int_eq(catalog_tus_create(cat, &open1), 0);
    ck_assert_int_eq(catalog_tus_create(cat, &taken), 0);
    struct dr_intake it[6] = {
        {.owner = "alice", .path = "/put.txt", .size = 3, .spool_path = "/spool/p.part"},
        {.owner = "alice", .size = 0, .spool_path = "/spool/t.part", .tus_new = &made},
        {.owner = "alice", .size = 3, .tus_id = open1.id, .stage = "encrypt"},
        {.owner = "alice", .size = 3, .tus_id = taken.id},
        {.owner = "alice", .size = 3, .tus_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV"},
        {.owner = "alice", .size = 3, .tus_new = &both, .tus_id = both.id},
    };
    ck_assert_int_eq(catalog_intake_uploads(cat, it, 6), 0);
    int want[6] = {0, 0, 0, -EEXIST, -ENOENT, 0};
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(it[i].result, want[i]);
    ck_assert_str_eq(it[1].job_id, ""); /* a creation makes no job */
    struct dr_tus got;
    ck_assert_int_eq(catalog_tus_get(cat, made.id, "alice", &got), 0);
    ck_assert_str_eq(got.job_id, "");
    dr_tus_clear(&got);
    ck_assert_int_eq(catalog_tus_get(cat, open1.id, "alice", &got), 0);
    ck_assert_str_eq(got.job_id, it[2].job_id);
    ck_assert_int_eq((int)got.offset, 3);
    dr_tus_clear(&got);
    struct dr_job j;
    ck_assert_int_eq(catalog_job_get(cat, it[2].job_id, NULL, &j), 0);
    ck_assert_str_eq(j.stage, "encrypt");
    ck_assert_str_eq(j.spool_path, "/spool/t.part"); /* the row's */
    dr_job_clear(&j);
    ck_assert_int_eq(catalog_tus_get(cat, taken.id, "alice", &got), 0);
    ck_assert_str_eq(got.job_id, ""); /* still open, nothing of it written */
    dr_tus_clear(&got);
    ck_assert_int_eq(catalog_tus_get(cat, both.id, "alice", &got), 0);
    ck_assert_str_eq(got.job_id, it[5].job_id);
    dr_tus_clear(&got);
    uint64_t depth = 0;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 4); /* /taken.txt, the PUT, two finishes */
    /* a finish sent again gives the same ids and makes nothing */
    struct dr_intake again = {.owner = "alice", .size = 3, .tus_id = open1.id};
    ck_assert_int_eq(catalog_intake_uploads(cat, &again, 1), 0);
    ck_assert_int_eq(again.result, 0);
    ck_assert_str_eq(again.job_id, it[2].job_id);
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 4);
}
END_TEST

START_TEST(test_tus_intake_creations)
{
    /* creations alone, lazily: the rows are there for every connection at
     * once (a HEAD or PATCH on another thread finds them), no job, and the
     * connection is back to durable commits afterwards */
    struct dr_tus a, b, dup;
    tus_new(&a, "alice", "/lazy/a.txt", 3, dr_now_ms() + 60000);
    tus_new(&b, "bob", "/lazy/b.txt", -1, dr_now_ms() + 60000);
    tus_new(&dup, "alice", "/lazy/dup.txt", 3, dr_now_ms() + 60000);
    ck_assert_int_eq(catalog_tus_create(cat, &dup), 0);
    struct dr_intake it[3] = {
        {.owner = "alice", .spool_path = a.spool_path, .tus_new = &a},
        {.owner = "alice", .spool_path = dup.spool_path, .tus_new = &dup}, /* its id is taken */
        {.owner = "bob", .spool_path = b.spool_path, .tus_new = &b},
    };
    ck_assert_int_eq(catalog_intake_creations(cat, it, 3), 0);
    int want[3] = {0, -EEXIST, 0};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(it[i].result, want[i]);
        ck_assert_str_eq(it[i].job_id, ""); /* a creation makes no job */
    }
    struct catalog *c2;
    ck_assert_int_eq(catalog_open(&tcfg, &c2), 0);
    struct dr_tus got;
    ck_assert_int_eq(catalog_tus_get(c2, a.id, "alice", &got), 0);
    ck_assert_str_eq(got.path, "/lazy/a.txt");
    ck_assert_int_eq(got.length, 3);
    ck_assert_int_eq((int)got.offset, 0);
    ck_assert_str_eq(got.job_id, "");
    dr_tus_clear(&got);
    ck_assert_int_eq(catalog_tus_get(c2, b.id, "bob", &got), 0);
    ck_assert_int_eq(got.length, -1);
    dr_tus_clear(&got);
    catalog_close(c2);
    uint64_t depth = 1;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 0);
    struct dr_catalog_info info;
    ck_assert_int_eq(catalog_info(cat, &info), 0);
    ck_assert_int_eq(info.synchronous, 2); /* FULL again (PostgreSQL: on) */

    /* only creations: a finish, or an item without a row, is refused and
     * nothing of the batch is written */
    struct dr_tus c;
    tus_new(&c, "alice", "/lazy/c.txt", 3, dr_now_ms() + 60000);
    struct dr_intake bad[2] = {
        {.owner = "alice", .spool_path = c.spool_path, .tus_new = &c},
        {.owner = "alice", .size = 3, .tus_new = &a, .tus_id = a.id},
    };
    ck_assert_int_eq(catalog_intake_creations(cat, bad, 2), -EINVAL);
    bad[1] = (struct dr_intake){
        .owner = "alice", .path = "/put.txt", .size = 3, .spool_path = "/spool/p.part"};
    ck_assert_int_eq(catalog_intake_creations(cat, bad, 2), -EINVAL);
    ck_assert_int_eq(catalog_tus_get(cat, c.id, NULL, &got), -ENOENT);
    ck_assert_int_eq(catalog_intake_creations(cat, NULL, 0), 0);

    /* a lazy creation is finished like any other (the first PATCH) */
    struct dr_intake fin = {.owner = "alice", .size = 3, .tus_id = a.id};
    ck_assert_int_eq(catalog_intake_uploads(cat, &fin, 1), 0);
    ck_assert_int_eq(fin.result, 0);
    ck_assert(dr_id_valid(fin.job_id));
}
END_TEST

START_TEST(test_tus_expiry)
{
    int64_t now = dr_now_ms();
    struct dr_tus a, b, c;
    tus_new(&a, "alice", "/a", 5, now - 10);  /* expired */
    tus_new(&b, "bob", "/b", 5, now + 60000); /* live */
    tus_new(&c, "alice", "/c", 5, now - 5);   /* expired but finished */
    ck_assert_int_eq(catalog_tus_create(cat, &a), 0);
    ck_assert_int_eq(catalog_tus_create(cat, &b), 0);
    ck_assert_int_eq(catalog_tus_create(cat, &c), 0);
    struct dr_intake it = {.owner = "alice", .size = 5};
    ck_assert_int_eq(catalog_tus_finish(cat, c.id, &it), 0);

    struct dr_tus *v;
    size_t n;
    ck_assert_int_eq(catalog_tus_expired(cat, now, &v, &n), 0);
    ck_assert_int_eq((int)n, 1);
    ck_assert_str_eq(v[0].id, a.id);
    ck_assert_str_eq(v[0].spool_path, "/spool/t.part");
    for (size_t i = 0; i < n; i++)
        dr_tus_clear(&v[i]);
    free(v);
    ck_assert_int_eq(catalog_tus_expired(cat, now + 120000, &v, &n), 0);
    ck_assert_int_eq((int)n, 2);
    ck_assert_str_eq(v[0].id, a.id);
    ck_assert_str_eq(v[1].id, b.id);
    for (size_t i = 0; i < n; i++)
        dr_tus_clear(&v[i]);
    free(v);
    /* The sweeper deletes what it cleaned up. */
    ck_assert_int_eq(catalog_tus_delete(cat, a.id, NULL), 0);
    ck_assert_int_eq(catalog_tus_expired(cat, now, &v, &n), 0);
    ck_assert_int_eq((int)n, 0);
    free(v);
    /* Prune drops the finished, expired row. */
    uint64_t removed = 0;
    ck_assert_int_eq(catalog_prune(cat, now, &removed), 0);
    struct dr_tus got;
    ck_assert_int_eq(catalog_tus_get(cat, c.id, NULL, &got), -ENOENT);
    ck_assert_int_eq(catalog_tus_get(cat, b.id, NULL, &got), 0);
    dr_tus_clear(&got);
}
END_TEST

/* ---- usage, users ------------------------------------------------------- */

START_TEST(test_usage_ranking)
{
    char mid[DR_ID_LEN + 1], jid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/a1", 100, NULL, NULL), 0);
    ck_assert_int_eq(intake1(cat, "bob", "/b1", 60, NULL, NULL), 0);
    ck_assert_int_eq(intake1(cat, "bob", "/b2", 40, NULL, NULL), 0);
    ck_assert_int_eq(intake1(cat, "bob", "/b3", 0, NULL, NULL), 0);
    ck_assert_int_eq(intake1(cat, "carol", "/c1", 500, mid, jid), 0);
    ck_assert_int_eq(intake1(cat, "dave", "/d1", 1, NULL, NULL), 0); /* not a config user */
    /* Shared media counts for its owner only; failed uploads not at all. */
    char amid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/a2", 0, amid, NULL), 0);
    ck_assert_int_eq(catalog_media_share(cat, amid, "alice", "bob"), 0);
    int n = 0;
    struct dr_job all[8];
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 8, "n:1", all, &n), 0);
    for (int i = 0; i < n; i++)
        dr_job_clear(&all[i]);
    ck_assert_int_eq(catalog_job_fail(cat, jid, NULL, "boom"), 0);

    struct dr_usage *u;
    size_t nu;
    ck_assert_int_eq(catalog_usage(cat, &u, &nu), 0);
    ck_assert_int_eq((int)nu, 4);
    /* bob and alice tie on bytes (100): bob has more files. */
    ck_assert_str_eq(u[0].user, "bob");
    ck_assert_int_eq((int)u[0].bytes, 100);
    ck_assert_int_eq((int)u[0].files, 3);
    ck_assert_str_eq(u[1].user, "alice");
    ck_assert_int_eq((int)u[1].bytes, 100);
    ck_assert_int_eq((int)u[1].files, 2);
    ck_assert_str_eq(u[2].user, "dave");
    ck_assert_int_eq((int)u[2].bytes, 1);
    ck_assert_str_eq(u[3].user, "carol"); /* only a failed upload */
    ck_assert_int_eq((int)u[3].bytes, 0);
    ck_assert_int_eq((int)u[3].files, 0);
    catalog_usage_free(u, nu);
}
END_TEST

/* A user's quota load (quota.c, max_bytes and max_queued_jobs): live
 * media bytes, and every job of theirs not finished yet, whether still
 * queued or already claimed by the pipeline (running). */
START_TEST(test_user_load_counts_queued_and_running_jobs)
{
    char m1[DR_ID_LEN + 1], j1[DR_ID_LEN + 1], j2[DR_ID_LEN + 1], j3[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/l1", 100, m1, j1), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/l2", 20, NULL, j2), 0);
    ck_assert_int_eq(intake1(cat, "alice", "/l3", 3, NULL, j3), 0);
    ck_assert_int_eq(intake1(cat, "bob", "/b", 7, NULL, NULL), 0);
    struct dr_user_load l;
    ck_assert_int_eq(catalog_user_load(cat, "alice", &l), 0);
    ck_assert_uint_eq(l.bytes, 123);
    ck_assert_uint_eq(l.pending_jobs, 3);
    /* claimed by the pipeline: still pending for the quota */
    struct dr_job j[3];
    int n = -1;
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 3, "node:1", j, &n), 0);
    ck_assert_int_eq(n, 3);
    for (int i = 0; i < n; i++)
        dr_job_clear(&j[i]);
    ck_assert_int_eq(catalog_user_load(cat, "alice", &l), 0);
    ck_assert_uint_eq(l.pending_jobs, 3);
    /* done and failed ones are not; a failed upload's bytes are not stored */
    ck_assert_int_eq(step1((struct dr_job_step){.job_id = j1, .media_id = m1, .available = true}),
                     0);
    ck_assert_int_eq(catalog_job_fail(cat, j2, NULL, "boom"), 0);
    ck_assert_int_eq(catalog_user_load(cat, "alice", &l), 0);
    ck_assert_uint_eq(l.pending_jobs, 1);
    ck_assert_uint_eq(l.bytes, 103);
    ck_assert_int_eq(catalog_user_load(cat, "carol", &l), 0);
    ck_assert_uint_eq(l.bytes, 0);
    ck_assert_uint_eq(l.pending_jobs, 0);
}
END_TEST

START_TEST(test_sync_users)
{
    /* New users appear (share targets must exist); old ones may stay. */
    char mid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/s", 1, mid, NULL), 0);
    ck_assert_int_eq(catalog_media_share(cat, mid, "alice", "erin"), -ENOENT);
    struct dr_user users[] = {{.name = (char *)"erin", .token = (char *)"e", .admin = true}};
    struct dr_config cfg = {0};
    cfg.users = users;
    cfg.n_users = 1;
    ck_assert_int_eq(catalog_sync_users(cat, &cfg), 0);
    ck_assert_int_eq(catalog_sync_users(cat, &cfg), 0);
    ck_assert_int_eq(catalog_media_share(cat, mid, "alice", "erin"), 0);
    ck_assert_int_eq(catalog_media_share(cat, mid, "alice", "bob"), 0);
    struct dr_usage *u;
    size_t nu;
    ck_assert_int_eq(catalog_usage(cat, &u, &nu), 0);
    ck_assert_int_eq((int)nu, 4); /* alice bob carol erin */
    catalog_usage_free(u, nu);
    ck_assert_int_eq(catalog_sync_users(cat, NULL), -EINVAL);
}
END_TEST

/* ---- cluster: node affinity, heartbeats, leases ------------------------- */

/* A second handle on the same catalog, as node "other". */
static struct catalog *open_as(struct dr_config *c, const char *node)
{
    *c = tcfg;
    c->node.id = (char *)node;
    struct catalog *h;
    ck_assert_int_eq(catalog_open(c, &h), 0);
    return h;
}

START_TEST(test_cluster_nodes_and_leases)
{
    struct dr_config ocfg;
    struct catalog *other = open_as(&ocfg, "other");

    /* Jobs belong to the node that made them (PostgreSQL): another node
     * does not claim them. SQLite is one node: anyone claims anything. */
    char jid[DR_ID_LEN + 1], mid[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(cat, "alice", "/n.txt", 1, mid, jid), 0);
    struct dr_job j;
    int n = -1;
    ck_assert_int_eq(catalog_jobs_claim(other, "upload", 5, "other:1", &j, &n), 0);
    ck_assert_int_eq(n, use_pg ? 0 : 1);
    if (n == 0)
        claim_one("upload", ":1", &j); /* its own node does */
    ck_assert_str_eq(j.id, jid);
    dr_job_clear(&j);

    /* Leases: one holder at a time, renewed by it, cursor kept. */
    int64_t cur = -1;
    ck_assert_int_eq(catalog_lease(cat, "work", 60000, &cur), 1);
    ck_assert_int_eq(cur, 0);
    ck_assert_int_eq(catalog_lease_save(cat, "work", 42), 0);
    ck_assert_int_eq(catalog_lease(cat, "work", 60000, &cur), 1); /* renewal */
    ck_assert_int_eq(cur, use_pg ? 42 : 0);
    ck_assert_int_eq(catalog_lease(other, "work", 60000, &cur), use_pg ? 0 : 1);
    ck_assert_int_eq(catalog_lease_save(other, "work", 7), use_pg ? -ENOENT : 0);
    /* Dropped: the other node takes it at once, with the cursor. */
    ck_assert_int_eq(catalog_lease_drop(cat, "work"), 0);
    ck_assert_int_eq(catalog_lease_drop(cat, "work"), 0);
    ck_assert_int_eq(catalog_lease(other, "work", 300, &cur), 1);
    /* (a dropped lease's row goes, and its cursor with it) */
    ck_assert_int_eq(catalog_lease_save(other, "work", 43), 0);
    /* Not renewed (its holder died): after the ttl, this node takes it,
     * where the other stopped. */
    int64_t deadline = dr_mono_ms() + 10000;
    int got;
    while ((got = catalog_lease(cat, "work", 60000, &cur)) == 0 && dr_mono_ms() < deadline)
        ;
    ck_assert_int_eq(got, 1);
    ck_assert_int_eq(cur, use_pg ? 43 : 0);
    ck_assert_int_eq(catalog_lease(NULL, "work", 1, NULL), -EINVAL);
    ck_assert_int_eq(catalog_lease(cat, "work", 0, NULL), -EINVAL);

    /* Heartbeats: a node is alive while it beats. */
    ck_assert_int_eq(catalog_node_alive(cat, "other", 60000), use_pg ? 0 : 1); /* never beat */
    ck_assert_int_eq(catalog_node_beat(other), 0);
    ck_assert_int_eq(catalog_node_alive(cat, "other", 60000), 1);
    /* A node that stopped beating: its download jobs fail. */
    char djob[DR_ID_LEN + 1];
    ck_assert_int_eq(
        catalog_media_insert(cat, &(struct dr_media){.id = "01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                                     .owner = (char *)"alice",
                                                     .path = (char *)"/d.bin",
                                                     .size = 1}),
        0);
    ck_assert_int_eq(catalog_enqueue_download(other, "01ARZ3NDEKTSV4RRFFQ69G5FAV", "alice", djob),
                     0);
    int failed = -1;
    ck_assert_int_eq(catalog_nodes_reap(cat, 60000, &failed), 0);
    ck_assert_int_eq(failed, 0); /* still alive */
    deadline = dr_mono_ms() + 10000;
    while (catalog_node_alive(cat, "other", 100) == 1 && dr_mono_ms() < deadline)
        ;
    ck_assert_int_eq(catalog_nodes_reap(cat, 100, &failed), 0);
    ck_assert_int_eq(failed, use_pg ? 1 : 0);
    ck_assert_int_eq(catalog_job_get(cat, djob, NULL, &j), 0);
    ck_assert_str_eq(j.state, use_pg ? "failed" : "queued");
    if (use_pg)
        ck_assert_ptr_nonnull(strstr(j.error, "node other is gone"));
    dr_job_clear(&j);
    catalog_close(other);
}
END_TEST

/* Tus concatenation in a cluster (catalog_tus_join): a final upload takes
 * complete partial uploads in one transaction, their staged parts become
 * its body's at their place in it (rows move; the objects keep their
 * names: src), and it is finished with one job reading that body. A
 * partial is taken once; a refusal of any kind writes nothing. SQLite
 * stages nothing, but the join is the same. */
START_TEST(test_tus_join)
{
    int64_t exp = dr_now_ms() + 60000;
    struct dr_tus pa, pb, open_p, whole, fin;
    tus_new(&pa, "alice", "", 5, exp);
    tus_new(&pb, "alice", "", 3, exp);
    tus_new(&open_p, "alice", "", 4, exp);
    tus_new(&whole, "alice", "/j/whole.bin", 2, exp);
    struct dr_tus *made[] = {&pa, &pb, &open_p, &whole};
    for (size_t i = 0; i < DR_ARRAY_LEN(made); i++)
        ck_assert_int_eq(catalog_tus_create(cat, made[i]), 0);
    char x1[DR_ID_LEN + 1], x2[DR_ID_LEN + 1], x3[DR_ID_LEN + 1];
    dr_id_new(x1);
    dr_id_new(x2);
    dr_id_new(x3);
    ck_assert_int_eq(catalog_tus_add_part(cat, pa.id, x1, 0, 2, -1), 0);
    ck_assert_int_eq(catalog_tus_add_part(cat, pa.id, x2, 2, 3, -1), 0);
    ck_assert_int_eq(catalog_tus_add_part(cat, pb.id, x3, 0, 3, -1), 0);
    ck_assert_int_eq(catalog_tus_add_part(cat, open_p.id, x3, 0, 1, -1), 0); /* 1 of 4 */

    tus_new(&fin, "alice", "/j/final.bin", 8, exp);
    fin.spool_path = (char *)"";
    struct dr_intake it = {.owner = "alice", .staged = fin.id};
    size_t bad = 99;
    /* refused, nothing written: an unfinished partial, not a partial, not
     * this user's, listed lengths that do not add up */
    const char *unfinished[] = {pa.id, open_p.id};
    ck_assert_int_eq(catalog_tus_join(cat, &fin, unfinished, 2, &it, &bad), -EINVAL);
    ck_assert_int_eq((int)bad, 1);
    const char *not_partial[] = {whole.id};
    ck_assert_int_eq(catalog_tus_join(cat, &fin, not_partial, 1, &it, &bad), -EINVAL);
    ck_assert_int_eq((int)bad, 0);
    struct dr_tus bobs = fin;
    bobs.owner = (char *)"bob";
    const char *both[] = {pa.id, pb.id};
    ck_assert_int_eq(catalog_tus_join(cat, &bobs, both, 2, &it, &bad), -ENOENT);
    ck_assert_int_eq((int)bad, 0);
    struct dr_tus shorter = fin;
    shorter.length = 7;
    ck_assert_int_eq(catalog_tus_join(cat, &shorter, both, 2, &it, &bad), -EIO);
    struct dr_tus got;
    ck_assert_int_eq(catalog_tus_get(cat, pa.id, NULL, &got), 0);
    dr_tus_clear(&got);
    ck_assert_int_eq(catalog_tus_get(cat, fin.id, NULL, &got), -ENOENT);
    /* a taken path: nothing written either, the partials stay */
    struct dr_tus taken = fin;
    taken.path = (char *)"/j/t.bin";
    ck_assert_int_eq(intake1(cat, "alice", "/j/t.bin", 1, NULL, NULL), 0);
    ck_assert_int_eq(catalog_tus_join(cat, &taken, both, 2, &it, &bad), -EEXIST);
    ck_assert_int_eq(catalog_tus_get(cat, pb.id, NULL, &got), 0);
    dr_tus_clear(&got);

    /* joined: one job on the final's body, the partials gone */
    ck_assert_int_eq(catalog_tus_join(cat, &fin, both, 2, &it, &bad), 0);
    ck_assert_int_eq(it.result, 0);
    ck_assert_int_eq(catalog_tus_get(cat, fin.id, "alice", &got), 0);
    ck_assert_str_eq(got.job_id, it.job_id);
    ck_assert_int_eq((int)got.offset, 8);
    ck_assert_int_eq((int)got.length, 8);
    dr_tus_clear(&got);
    ck_assert_int_eq(catalog_tus_get(cat, pa.id, NULL, &got), -ENOENT);
    ck_assert_int_eq(catalog_tus_get(cat, pb.id, NULL, &got), -ENOENT);
    struct dr_job j;
    ck_assert_int_eq(catalog_job_get(cat, it.job_id, NULL, &j), 0);
    ck_assert_str_eq(j.staged, fin.id);
    dr_job_clear(&j);
    struct dr_staged_part *p = NULL;
    size_t n = 99;
    ck_assert_int_eq(catalog_staged_parts(cat, fin.id, &p, &n), 0);
    ck_assert_int_eq((int)n, use_pg ? 3 : 0);
    static const int offs[] = {0, 2, 5}, lens[] = {2, 3, 3};
    const char *srcs[] = {pa.id, pa.id, pb.id}, *parts[] = {x1, x2, x3};
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(p[i].body, fin.id);
        ck_assert_str_eq(p[i].src, srcs[i]);
        ck_assert_str_eq(p[i].part, parts[i]);
        ck_assert_int_eq((int)p[i].off, offs[i]);
        ck_assert_int_eq((int)p[i].len, lens[i]);
    }
    free(p);
    /* the objects are known by the names they were staged under */
    ck_assert_int_eq(catalog_staged_known(cat, pa.id, x2), use_pg ? 1 : 0);
    ck_assert_int_eq(catalog_staged_known(cat, fin.id, x2), 0);
    /* a partial is taken once: a second final finds it gone */
    struct dr_tus again;
    tus_new(&again, "alice", "/j/again.bin", 3, exp);
    again.spool_path = (char *)"";
    struct dr_intake it2 = {.owner = "alice", .staged = again.id};
    const char *just_b[] = {pb.id};
    ck_assert_int_eq(catalog_tus_join(cat, &again, just_b, 1, &it2, &bad), -ENOENT);
    ck_assert_int_eq((int)bad, 0);
    /* needed while the job is pending; garbage with their src after */
    ck_assert_int_eq(catalog_staged_garbage(cat, 10, &p, &n), 0);
    for (size_t i = 0; i < n; i++)
        ck_assert_str_ne(p[i].body, fin.id);
    free(p);
    ck_assert_int_eq(catalog_job_fail(cat, it.job_id, NULL, "test"), 0);
    ck_assert_int_eq(catalog_staged_garbage(cat, 10, &p, &n), 0);
    size_t mine = 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].body, fin.id) == 0 && strcmp(p[i].src, p[i].body) != 0)
            mine++;
    ck_assert_int_eq((int)mine, use_pg ? 3 : 0);
    free(p);
}
END_TEST

/* Cluster uploads staged in the bucket (catalog_staged.c): a PUT's one
 * part comes with its intake; a tus session's parts come with its offset,
 * compare and set; parts nothing needs are garbage; a silent node's jobs
 * with a staged body are adopted. SQLite stages nothing: the same calls
 * answer with nothing, and the offsets still move. */
START_TEST(test_staged_bodies)
{
    char body[DR_ID_LEN + 1];
    dr_id_new(body);
    struct dr_intake it = {.owner = "alice",
                           .path = "/st/a.bin",
                           .size = 9,
                           .spool_path = "/spool/a",
                           .staged = body,
                           .staged_part = body};
    ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
    ck_assert_int_eq(it.result, 0);
    struct dr_job j;
    ck_assert_int_eq(catalog_job_get(cat, it.job_id, NULL, &j), 0);
    ck_assert_str_eq(j.staged, body);
    dr_job_clear(&j);
    struct dr_staged_part *p = NULL;
    size_t n = 99;
    ck_assert_int_eq(catalog_staged_parts(cat, body, &p, &n), 0);
    ck_assert_int_eq((int)n, use_pg ? 1 : 0);
    if (use_pg) {
        ck_assert_str_eq(p[0].part, body);
        ck_assert_int_eq((int)p[0].off, 0);
        ck_assert_int_eq((int)p[0].len, 9);
    }
    free(p);
    /* a part past the size is refused */
    struct dr_intake bad = it;
    bad.path = "/st/bad.bin";
    bad.staged_off = 10;
    ck_assert_int_eq(catalog_intake_uploads(cat, &bad, 1), -EINVAL);

    /* Needed while its job is pending: no garbage. */
    ck_assert_int_eq(catalog_staged_garbage(cat, 10, &p, &n), 0);
    ck_assert_int_eq((int)n, 0);
    free(p);

    /* tus: parts tile the upload; a request that lost the race to the
     * offset records nothing. */
    struct dr_tus t;
    tus_new(&t, "alice", "/st/t.bin", 10, dr_now_ms() + 60000);
    ck_assert_int_eq(catalog_tus_create(cat, &t), 0);
    char p1[DR_ID_LEN + 1], p2[DR_ID_LEN + 1], p3[DR_ID_LEN + 1];
    dr_id_new(p1);
    dr_id_new(p2);
    dr_id_new(p3);
    ck_assert_int_eq(catalog_tus_add_part(cat, t.id, p1, 0, 4, -1), 0);
    ck_assert_int_eq(catalog_tus_add_part(cat, t.id, p2, 0, 4, -1), -ECANCELED);
    ck_assert_int_eq(catalog_tus_add_part(cat, t.id, p2, 4, 7, -1), -EINVAL); /* past 10 */
    ck_assert_int_eq(catalog_tus_add_part(cat, t.id, p2, 4, 3, -1), 0);
    ck_assert_int_eq(catalog_tus_add_part(cat, "01ARZ3NDEKTSV4RRFFQ69G5FAV", p3, 0, 1, -1),
                     -ENOENT);
    struct dr_tus got;
    ck_assert_int_eq(catalog_tus_get(cat, t.id, NULL, &got), 0);
    ck_assert_int_eq((int)got.offset, 7);
    dr_tus_clear(&got);
    /* the last part finishes only from offset 7 */
    struct dr_intake fin = {
        .owner = "alice", .size = 10, .staged = t.id, .staged_part = p3, .staged_off = 4};
    ck_assert_int_eq(catalog_tus_finish(cat, t.id, &fin), -ECANCELED);
    ck_assert_int_eq(catalog_tus_get(cat, t.id, NULL, &got), 0);
    ck_assert_str_eq(got.job_id, "");
    dr_tus_clear(&got);
    fin.staged_off = 7;
    ck_assert_int_eq(catalog_tus_finish(cat, t.id, &fin), 0);
    ck_assert_int_eq(fin.result, 0);
    /* finished: a late request's part is not needed */
    struct dr_intake late = fin;
    ck_assert_int_eq(catalog_tus_finish(cat, t.id, &late), -ECANCELED);
    ck_assert_int_eq(catalog_job_get(cat, fin.job_id, NULL, &j), 0);
    ck_assert_str_eq(j.staged, t.id);
    dr_job_clear(&j);
    ck_assert_int_eq(catalog_staged_parts(cat, t.id, &p, &n), 0);
    ck_assert_int_eq((int)n, use_pg ? 3 : 0);
    for (size_t i = 0; i < n; i++) {
        static const int offs[] = {0, 4, 7}, lens[] = {4, 3, 3};
        ck_assert_int_eq((int)p[i].off, offs[i]);
        ck_assert_int_eq((int)p[i].len, lens[i]);
        ck_assert_str_eq(p[i].body, t.id);
    }
    ck_assert(n == 0 || strcmp(p[2].part, p3) == 0);
    free(p);

    /* An expired (deleted) session's parts and a finished job's are garbage. */
    struct dr_tus gone;
    tus_new(&gone, "bob", "/st/g.bin", 5, dr_now_ms() + 60000);
    ck_assert_int_eq(catalog_tus_create(cat, &gone), 0);
    ck_assert_int_eq(catalog_tus_add_part(cat, gone.id, p1, 0, 2, -1), 0);
    ck_assert_int_eq(catalog_staged_garbage(cat, 10, &p, &n), 0);
    ck_assert_int_eq((int)n, 0);
    free(p);
    ck_assert_int_eq(catalog_tus_delete(cat, gone.id, NULL), 0);
    ck_assert_int_eq(catalog_job_fail(cat, it.job_id, NULL, "test"), 0);
    ck_assert_int_eq(catalog_staged_garbage(cat, 10, &p, &n), 0);
    ck_assert_int_eq((int)n, use_pg ? 2 : 0);
    for (size_t i = 0; i < n; i++) {
        ck_assert(strcmp(p[i].body, body) == 0 || strcmp(p[i].body, gone.id) == 0);
        ck_assert_int_eq(catalog_staged_forget(cat, p[i].body, p[i].off), 0);
    }
    free(p);
    ck_assert_int_eq(catalog_staged_garbage(cat, 10, &p, &n), 0);
    ck_assert_int_eq((int)n, 0);
    free(p);
    ck_assert_int_eq(catalog_staged_forget(cat, body, 0), 0); /* absent: fine */

    /* Adoption: another node's staged job, once that node is silent. */
    struct dr_config ocfg;
    struct catalog *other = open_as(&ocfg, "other");
    ck_assert_int_eq(catalog_node_beat(other), 0);
    char b2[DR_ID_LEN + 1];
    dr_id_new(b2);
    struct dr_intake o = {.owner = "alice",
                          .path = "/st/o.bin",
                          .size = 1,
                          .spool_path = "/other/spool/o",
                          .staged = b2,
                          .staged_part = b2};
    ck_assert_int_eq(catalog_intake_uploads(other, &o, 1), 0);
    ck_assert_int_eq(intake1(other, "alice", "/st/unstaged.bin", 1, NULL, NULL), 0);
    int adopted = -1;
    ck_assert_int_eq(catalog_staged_adopt(cat, 60000, 10, &adopted), 0);
    ck_assert_int_eq(adopted, 0); /* alive */
    int64_t deadline = dr_mono_ms() + 10000;
    while (catalog_node_alive(cat, "other", 100) == 1 && dr_mono_ms() < deadline)
        ;
    ck_assert_int_eq(catalog_staged_adopt(cat, 100, 10, &adopted), 0);
    ck_assert_int_eq(adopted, use_pg ? 1 : 0);
    ck_assert_int_eq(catalog_staged_adopt(cat, 100, 10, &adopted), 0);
    ck_assert_int_eq(adopted, 0);
    /* now this node claims it (and the unstaged job stays the other's) */
    struct dr_job cl[4];
    int nc = -1;
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", 4, "me:1", cl, &nc), 0);
    bool mine = false;
    for (int i = 0; i < nc; i++) {
        if (strcmp(cl[i].media_id, o.media_id) == 0)
            mine = true;
        else if (use_pg)
            ck_assert_str_eq(cl[i].media_id, fin.media_id); /* this node's own */
        dr_job_clear(&cl[i]);
    }
    ck_assert(mine);
    ck_assert_int_eq(nc, use_pg ? 2 : 3);
    catalog_close(other);
}
END_TEST

/* --migrate-catalog: a SQLite catalog with some history copied into the
 * (empty) PostgreSQL one, verified, and usable there. */
START_TEST(test_copy_sqlite_into_postgres)
{
    struct dr_config lite = {.data_dir = tmpdir};
    lite.node.id = (char *)"n1";
    struct catalog *l;
    ck_assert_int_eq(catalog_migrate(&lite), 0);
    ck_assert_int_eq(catalog_open(&lite, &l), 0);
    sync_users(l);
    char mid[3][DR_ID_LEN + 1], jid[3][DR_ID_LEN + 1];
    for (int i = 0; i < 3; i++) {
        char path[32];
        snprintf(path, sizeof path, "/m/%d.bin", i);
        if (i == 1) { /* an inline body: it moves with its job */
            struct dr_intake it = {
                .owner = "alice", .path = path, .size = 11, .body = "hello world", .body_len = 11};
            ck_assert_int_eq(catalog_intake_uploads(l, &it, 1), 0);
            ck_assert_int_eq(it.result, 0);
            memcpy(mid[i], it.media_id, sizeof mid[i]);
            memcpy(jid[i], it.job_id, sizeof jid[i]);
            continue;
        }
        ck_assert_int_eq(intake1(l, "alice", path, 10 + (uint64_t)i, mid[i], jid[i]), 0);
    }
    struct dr_job js[3];
    int n = 0;
    ck_assert_int_eq(catalog_jobs_claim(l, "upload", 3, "n1:1", js, &n), 0);
    ck_assert_int_eq(n, 3);
    for (int i = 0; i < n; i++)
        dr_job_clear(&js[i]);
    uint8_t wk[40];
    for (size_t i = 0; i < sizeof wk; i++)
        wk[i] = (uint8_t)(i * 7); /* zero bytes included */
    struct dr_job_step st = {.job_id = jid[0],
                             .media_id = mid[0],
                             .sha256_hex = "ab",
                             .wrapped_key = wk,
                             .wrapped_key_len = sizeof wk,
                             .storage_key = "K0",
                             .available = true};
    ck_assert_int_eq(catalog_jobs_step(l, &st, 1, NULL), 0);
    ck_assert_int_eq(catalog_media_share(l, mid[0], "alice", "bob"), 0);
    struct dr_variant v = {.state = "available",
                           .content_type = (char *)"image/webp",
                           .width = 256,
                           .height = 171,
                           .size = 4000,
                           .sha256 = "cd",
                           .wrapped_key = wk,
                           .wrapped_key_len = sizeof wk,
                           .storage_key = (char *)"K0~thumb.webp",
                           .created_at = 1};
    memcpy(v.media_id, mid[0], sizeof v.media_id);
    snprintf(v.name, sizeof v.name, "thumb");
    ck_assert_int_eq(catalog_media_set_processed(l, mid[0], "{\"width\":256}", &v, 1, NULL, NULL),
                     0);
    ck_assert_int_eq(catalog_job_retry(l, jid[1], "transient \"quoted\" é", 0), 0);
    struct dr_tus t = {.owner = (char *)"carol",
                       .length = -1,
                       .path = (char *)"/t.bin",
                       .spool_path = (char *)"/s/t",
                       .expires_at = dr_now_ms() + 60000};
    dr_id_new(t.id);
    ck_assert_int_eq(catalog_tus_create(l, &t), 0);
    ck_assert_int_eq(catalog_folder_share(l, "alice", "/m", "carol", NULL), 0);
    ck_assert_int_eq(catalog_folder_create(l, "alice", "/m/empty", NULL, NULL), 0);
    struct dr_link lk;
    ck_assert_int_eq(catalog_link_create(l, mid[0], "alice", 0, 5, &lk), 0);
    ck_assert_int_eq(catalog_link_count(l, lk.id, dr_now_ms(), NULL), 0);
    /* The events' high-water mark moves with them. */
    int64_t hw = 0;
    ck_assert_int_eq(catalog_events_last_seq(l, &hw), 0);
    catalog_close(l);

    struct dr_catalog_copy out[CATALOG_COPY_TABLES];
    char err[256];
    struct dr_config n1 = tcfg; /* the migrating node */
    n1.node.id = (char *)"n1";
    ck_assert_int_eq(catalog_copy(&lite, &n1, out, err, sizeof err), 0);
    const char *names[] = {"users",  "media", "variants",      "shares", "jobs",   "job_bodies",
                           "events", "tus",   "folder_shares", "links",  "folders"};
    uint64_t rows[] = {3, 3, 1, 4, 3, 1, 4, 1, 1, 1, 1}; /* shares: 3 owner links + bob */
    for (int i = 0; i < CATALOG_COPY_TABLES; i++) {
        ck_assert_str_eq(out[i].table, names[i]);
        ck_assert_msg(out[i].rows == rows[i], "%s: %llu rows", names[i],
                      (unsigned long long)out[i].rows);
        ck_assert_int_eq((int)strlen(out[i].sha256), 64);
    }
    /* Usable on PostgreSQL: the same rows, the same seqs onwards. */
    struct dr_media m;
    ck_assert_int_eq(catalog_media_get(cat, mid[0], "bob", &m), 0);
    ck_assert_str_eq(m.state, "available");
    ck_assert_int_eq((int)m.wrapped_key_len, (int)sizeof wk);
    ck_assert_mem_eq(m.wrapped_key, wk, sizeof wk);
    ck_assert_str_eq(m.metadata, "{\"width\":256}");
    dr_media_clear(&m);
    struct dr_link lg;
    ck_assert_int_eq(catalog_link_get(cat, lk.id, &lg), 0);
    ck_assert_int_eq(lg.downloads, 1);
    ck_assert_int_eq(lg.max_downloads, 5);
    dr_link_clear(&lg);
    dr_link_clear(&lk);
    struct dr_folder_share *fs;
    size_t nfs;
    ck_assert_int_eq(catalog_folder_shares_list(cat, "alice", NULL, &fs, &nfs), 0);
    ck_assert_int_eq((int)nfs, 1);
    ck_assert_str_eq(fs[0].path, "/m");
    catalog_folder_shares_free(fs, nfs);
    struct dr_variant vg;
    ck_assert_int_eq(catalog_variant_get(cat, mid[0], "thumb", "bob", &vg), 0);
    ck_assert_str_eq(vg.storage_key, "K0~thumb.webp");
    ck_assert_int_eq((int)vg.height, 171);
    dr_variant_clear(&vg);
    int64_t last = 0;
    ck_assert_int_eq(catalog_events_last_seq(cat, &last), 0);
    ck_assert_int_eq(last, hw);
    struct dr_job j;
    ck_assert_int_eq(catalog_job_get(cat, jid[1], NULL, &j), 0);
    ck_assert_str_eq(j.error, "transient \"quoted\" é");
    dr_job_clear(&j);
    /* The retried job is queued again, and belongs to the migrating node. */
    struct catalog *h;
    ck_assert_int_eq(catalog_open(&n1, &h), 0);
    ck_assert_int_eq(catalog_jobs_claim(h, "upload", 5, "n1:2", js, &n), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(js[0].id, jid[1]);
    ck_assert_uint_eq(js[0].body_len, 11);
    ck_assert_mem_eq(js[0].body, "hello world", 11);
    dr_job_clear(&js[0]);
    char nj[DR_ID_LEN + 1];
    ck_assert_int_eq(intake1(h, "alice", "/m/new.bin", 1, NULL, nj), 0);
    struct dr_event *ev;
    size_t ne;
    ck_assert_int_eq(catalog_events_since(cat, NULL, hw, 10, &ev, &ne), 0);
    ck_assert_int_eq((int)ne, 1);
    ck_assert_int_eq(ev[0].seq, hw + 1);
    catalog_events_free(ev, ne);
    catalog_close(h);
    /* Not into a catalog that has rows. */
    ck_assert_int_eq(catalog_copy(&lite, &tcfg, out, err, sizeof err), -EEXIST);
    ck_assert_ptr_nonnull(strstr(err, "not empty"));
}
END_TEST

/* A file and a folder never share a path, even when two writers race:
 * one uploads /r<i>, the other /r<i>/f, at the same moment, 100 times;
 * never do both win. (SQLite's write lock serialises them; PostgreSQL
 * needs the owner's path lock.) */
#define RACES 100
struct racer {
    pthread_barrier_t *bar;
    bool folder; /* uploads /r<i>/f, else /r<i> */
    int won[RACES];
    int err;
};

static void *race_main(void *arg)
{
    struct racer *r = arg;
    struct catalog *h;
    if ((r->err = catalog_open(&tcfg, &h)) != 0)
        return NULL;
    for (int i = 0; i < RACES; i++) {
        char path[64];
        snprintf(path, sizeof path, r->folder ? "/r%d/f" : "/r%d", i);
        struct dr_intake it = {.owner = "alice", .path = path, .size = 1, .spool_path = "/s"};
        pthread_barrier_wait(r->bar);
        int rc = catalog_intake_uploads(h, &it, 1);
        if (rc != 0)
            r->err = rc;
        r->won[i] = rc == 0 && it.result == 0;
    }
    catalog_close(h);
    return NULL;
}

START_TEST(test_path_clash_under_concurrency)
{
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, 2);
    struct racer a = {.bar = &bar, .folder = false}, b = {.bar = &bar, .folder = true};
    pthread_t ta, tb;
    ck_assert_int_eq(pthread_create(&ta, NULL, race_main, &a), 0);
    ck_assert_int_eq(pthread_create(&tb, NULL, race_main, &b), 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&bar);
    ck_assert_int_eq(a.err, 0);
    ck_assert_int_eq(b.err, 0);
    for (int i = 0; i < RACES; i++) {
        ck_assert_msg(!(a.won[i] && b.won[i]), "/r%d is a file and a folder", i);
        ck_assert_msg(a.won[i] || b.won[i], "/r%d: neither won", i);
    }
}
END_TEST

/* The same tests for each backend: name (and name-concurrency) cases. */
static void add_cases(Suite *s, const char *core, const char *conc, void (*fixture)(void), bool pg)
{
    const TTest *core_tests[] = {
        test_pragmas_and_migrate,
        test_intake_batch_with_taken_path,
        test_path_exists_and_by_path,
        test_job_lifecycle_events_in_order,
        test_claim_with_media,
        test_jobs_step_batch,
        test_job_fail_marks_upload_media_failed,
        test_inline_body_lifecycle,
        test_jobs_list_own_newest_first,
        test_retry_backoff_and_claim_order,
        test_claim_is_fifo_within_one_millisecond,
        test_recover_releases_dead_claimers,
        test_visibility_owner_shared_stranger,
        test_list_aggregates_and_is_prefix_safe,
        test_file_and_folder_never_share_a_path,
        test_move_and_rename,
        test_delete,
        test_versions_and_trash,
        test_conflict_rename,
        test_foreach_and_insert,
        test_events_filter_and_paging,
        test_prune_finished_only,
        test_tus_lifecycle,
        test_tus_finish_path_taken,
        test_tus_in_a_group_intake,
        test_tus_intake_creations,
        test_tus_expiry,
        test_usage_ranking,
        test_user_load_counts_queued_and_running_jobs,
        test_sync_users,
        test_cluster_nodes_and_leases,
        test_staged_bodies,
        test_tus_join,
    };
    const TTest *conc_tests[] = {
        test_path_clash_under_concurrency,
        test_concurrent_claim_threads,
        test_concurrent_claim_processes,
        test_busy_maps_to_ebusy_and_readers_proceed,
    };
    TCase *tc = tcase_create(core);
    tcase_add_checked_fixture(tc, fixture, teardown);
    tcase_set_timeout(tc, 60);
    for (size_t i = 0; i < DR_ARRAY_LEN(core_tests); i++)
        tcase_add_test(tc, core_tests[i]);
    if (pg)
        tcase_add_test(tc, test_copy_sqlite_into_postgres);
    suite_add_tcase(s, tc);
    if (!pg) {
        /* It measures the client's CPU (SQLite's query work is in-process)
         * after writing 20,000 rows: its own case and timeout, since the
         * core case's 60 s (240 s sanitized) ran out under ASan on a
         * machine loaded 8x (CI, 2026-12-04). */
        TCase *pc = tcase_create("sqlite-path-cpu");
        tcase_add_checked_fixture(pc, fixture, teardown);
        tcase_set_timeout(pc, 180);
        tcase_add_test(pc, test_path_checks_do_not_scan_the_owners_files);
        suite_add_tcase(s, pc);
    }
    TCase *cc = tcase_create(conc);
    tcase_add_checked_fixture(cc, fixture, teardown);
    tcase_set_timeout(cc, 120);
    for (size_t i = 0; i < DR_ARRAY_LEN(conc_tests); i++)
        tcase_add_test(cc, conc_tests[i]);
    suite_add_tcase(s, cc);
}

static Suite *catalog_suite(void)
{
    Suite *s = suite_create("catalog");
    add_cases(s, "sqlite", "sqlite-concurrency", setup_sqlite, false);
    add_cases(s, "postgres", "postgres-concurrency", setup_pg, true);
    return s;
}

int main(void)
{
    pgtest_server(); /* before the forks: one server for every test */
    SRunner *sr = srunner_create(catalog_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* catalog_jobs.c - upload intake and the durable job queue.
 *
 * What: the `jobs` table (docs/CATALOG.md, "States", "The queue"): the
 * intake that turns accepted uploads into media rows, jobs and events;
 * download jobs; claims; the stage changes of running jobs (advance,
 * retry, fail, and the group-committed catalog_jobs_step); recovery of
 * the jobs of dead claimers; and the reads of GET /v1/jobs.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees:
 *  - Intake writes all its items in ONE transaction (one fsync for the
 *    batch); an item whose path is taken is skipped alone. A COMMIT whose
 *    outcome is unknown (PostgreSQL: the connection broke during it) is
 *    looked up, for up to OUTCOME_WAIT_MS while the server comes back:
 *    committed is committed, absent is -EBUSY, and only a server that
 *    stays away leaves -ENOTCONN (nothing can be said).
 *  - A job state change a user can observe commits with its event
 *    (catalog_event_add in the same transaction).
 *  - No job is handed to two claimers. SQLite: the claim is one UPDATE
 *    ... WHERE id IN (SELECT ... LIMIT n) RETURNING inside BEGIN
 *    IMMEDIATE, so claimers are serialised by the write lock and a job
 *    leaves "queued" in the statement that picks it. PostgreSQL: the
 *    picking SELECT locks its rows FOR UPDATE SKIP LOCKED, so concurrent
 *    claimers take different rows and the UPDATE re-checks each.
 *  - A claim is not durable when it returns (DB_BEGIN_LAZY): the next
 *    durable commit makes it so. A power cut before that loses it, and
 *    its jobs are simply queued again; the steps that follow commit
 *    durably (and so the claim with them) before anything rests on them.
 *  - catalog_jobs_claim_media also reads each claimed job's media row,
 *    and every claim the inline bodies of its uploads, so the pipeline
 *    needs no read transaction of its own for them (issue 15). SQLite
 *    reads them in a read transaction right after the claim commits,
 *    outside the one write lock, which the claim then holds about half
 *    as long; PostgreSQL in the claim's transaction (no second round
 *    trip). Either way a row read is a committed one. Should those reads
 *    fail after the claim committed, its jobs are put back (retried: see
 *    claim_reads_apart) and the claim fails.
 *  - Claimed jobs come back oldest first: created_at, then insertion
 *    order (SQLite's rowid, PostgreSQL's pos), sorted in C because
 *    RETURNING has no defined order.
 *  - advance/retry/done act only on a running job, fail on a queued or
 *    running one; otherwise -ENOENT, so a claimer whose jobs were released
 *    by recovery drops its late calls.
 *  - Recovery asks alive() with no statement or transaction open.
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog_events.h"
#include "catalog_internal.h"
#include "catalog_jobs.h"
#include "catalog_media.h"
#include "catalog_versions.h"
#include "catalog_schema.h"
#include "catalog_staged.h"
#include "dripd/catalog_variants.h"
#include "db.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define CLAIM_MAX 1000 /* cap of one catalog_jobs_claim call */

#define JOB_COLS                                                                                   \
    "id, kind, media_id, owner, state, stage, attempts, error, spool_path, work_path, "            \
    "not_before, created_at, updated_at, variant, staged"
#define JOB_COLS_J                                                                                 \
    "j.id, j.kind, j.media_id, j.owner, j.state, j.stage, j.attempts, j.error, j.spool_path, "     \
    "j.work_path, j.not_before, j.created_at, j.updated_at, j.variant, j.staged"

/* PostgreSQL also records the node the job belongs to ($10: the one whose
 * disk holds its spool file, or whose cache a download fills) and
 * NOTIFYs the job's kind on CATALOG_CHANNEL_JOBS, in the same statement:
 * every node's starters hear of it when it commits. */
static const struct db_sql q_insert = {
    "INSERT INTO jobs(id, kind, media_id, owner, state, stage, attempts, spool_path, "
    "not_before, created_at, updated_at, variant, staged) "
    "VALUES ($1, $2, $3, $4, 'queued', $5, 0, $6, 0, $7, $7, $8, $9)",
    "INSERT INTO jobs(id, kind, media_id, owner, state, stage, attempts, spool_path, "
    "not_before, created_at, updated_at, variant, staged, node) "
    "SELECT $1, $2, $3, $4, 'queued', $5, 0, $6, 0, $7, $7, $8, $9, $10 "
    "FROM (SELECT pg_notify('" CATALOG_CHANNEL_JOBS "', $2)) AS n"};
/* Inline bodies (docs/CATALOG.md): one row per job that has one, from
 * its intake until it is done or failed. */
static const struct db_sql q_body_add = {"INSERT INTO job_bodies(job_id, body) VALUES ($1, $2)",
                                         NULL};
static const struct db_sql q_body_get = {"SELECT body FROM job_bodies WHERE job_id = $1", NULL};
static const struct db_sql q_body_del = {"DELETE FROM job_bodies WHERE job_id = $1", NULL};
/* Whether an intake whose COMMIT outcome is unknown committed: one of its
 * new rows is there. */
static const struct db_sql q_job_there = {"SELECT 1 FROM jobs WHERE id = $1", NULL};
static const struct db_sql q_tus_there = {"SELECT 1 FROM tus WHERE id = $1", NULL};
#define OUTCOME_WAIT_MS 30000

static const struct db_sql q_depth = {
    "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')", NULL};
static const struct db_sql q_get = {
    "SELECT " JOB_COLS " FROM jobs WHERE id = $1 AND ($2 IS NULL OR owner = $2)", NULL};
/* Newest first, insertion order breaking ties within a millisecond. */
static const struct db_sql q_list = {
    "SELECT " JOB_COLS " FROM jobs WHERE owner = $1 AND ($2 IS NULL OR state = $2) "
    "ORDER BY created_at DESC, rowid DESC LIMIT $3",
    "SELECT " JOB_COLS " FROM jobs WHERE owner = $1 AND ($2 IS NULL OR state = $2) "
    "ORDER BY created_at DESC, pos DESC LIMIT $3"};
/* The claim. Column 15 is the queue position (see the design comment).
 * PostgreSQL claims only the claimer's node's jobs ($5). */
static const struct db_sql q_claim = {
    "UPDATE jobs SET state = 'running', claimed_by = $1, updated_at = $2 "
    "WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND kind = $3 "
    "AND not_before <= $2 ORDER BY created_at, rowid LIMIT $4) "
    "RETURNING " JOB_COLS ", rowid",
    "WITH picked AS (SELECT id FROM jobs WHERE state = 'queued' AND node = $5 AND kind = $3 "
    "AND not_before <= $2 ORDER BY created_at, pos LIMIT $4 FOR UPDATE SKIP LOCKED) "
    "UPDATE jobs j SET state = 'running', claimed_by = $1, updated_at = $2 "
    "FROM picked WHERE j.id = picked.id AND j.state = 'queued' "
    "RETURNING " JOB_COLS_J ", j.pos"};
static const struct db_sql q_advance = {"UPDATE jobs SET stage = $2, work_path = $3, "
                                        "updated_at = $4 WHERE id = $1 AND state = 'running'",
                                        NULL};
static const struct db_sql q_retry = {
    "UPDATE jobs SET state = 'queued', attempts = attempts + 1, error = $2, not_before = $3, "
    "claimed_by = NULL, updated_at = $4 WHERE id = $1 AND state = 'running'",
    NULL};
static const struct db_sql q_fail = {
    "UPDATE jobs SET state = 'failed', attempts = attempts + 1, error = $2, updated_at = $3, "
    "stage = COALESCE($4, stage) "
    "WHERE id = $1 AND state IN ('queued', 'running') RETURNING kind, media_id",
    NULL};
static const struct db_sql q_done = {
    "UPDATE jobs SET state = 'done', updated_at = $2 WHERE id = $1 AND state = 'running'", NULL};
static const struct db_sql q_claimers = {
    "SELECT DISTINCT claimed_by FROM jobs WHERE state = 'running'", NULL};
static const struct db_sql q_release = {
    "UPDATE jobs SET state = 'queued', claimed_by = NULL, updated_at = $2 "
    "WHERE state = 'running' AND claimed_by IS NOT DISTINCT FROM $1",
    NULL};

static void read_job(struct db_stmt *s, struct dr_job *j)
{
    memset(j, 0, sizeof *j);
    db_col_copy(s, 0, j->id, sizeof j->id);
    db_col_copy(s, 1, j->kind, sizeof j->kind);
    db_col_copy(s, 2, j->media_id, sizeof j->media_id);
    j->owner = db_col_strdup(s, 3);
    db_col_copy(s, 4, j->state, sizeof j->state);
    db_col_copy(s, 5, j->stage, sizeof j->stage);
    j->attempts = (int)db_col_i64(s, 6);
    j->error = db_col_strdup(s, 7);
    j->spool_path = db_col_strdup(s, 8);
    j->work_path = db_col_strdup(s, 9);
    j->not_before = db_col_i64(s, 10);
    j->created_at = db_col_i64(s, 11);
    j->updated_at = db_col_i64(s, 12);
    db_col_copy(s, 13, j->variant, sizeof j->variant);
    j->staged = db_col_strdup(s, 14);
}

void dr_job_clear(struct dr_job *j)
{
    if (j == NULL)
        return;
    free(j->owner);
    free(j->error);
    free(j->spool_path);
    free(j->work_path);
    free(j->staged);
    free(j->body);
    memset(j, 0, sizeof *j);
}

static int add_job(struct catalog *cat, const char *job_id, const char *kind, const char *media_id,
                   const char *owner, const char *stage, const char *spool_path,
                   const char *variant, const char *staged, const void *body, size_t body_len,
                   int64_t now)
{
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_insert, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, job_id);
    db_bind_text(s, 2, kind);
    db_bind_text(s, 3, media_id);
    db_bind_text(s, 4, owner);
    db_bind_text(s, 5, stage);
    db_bind_text(s, 6, spool_path);
    db_bind_i64(s, 7, now);
    db_bind_text(s, 8, variant);
    db_bind_text(s, 9, staged);
    if (db_dialect(cat->db) == DB_POSTGRES)
        db_bind_text(s, 10, cat->node);
    rc = db_exec(s, "insert job");
    if (rc < 0 || body == NULL)
        return rc < 0 ? rc : 0;
    rc = db_prepare(cat->db, &q_body_add, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, job_id);
    db_bind_blob(s, 2, body, body_len);
    rc = db_exec(s, "insert job body");
    return rc < 0 ? rc : 0;
}

/* Inside a transaction: the job's inline body goes (done, failed). */
static int body_delete(struct db *db, const char *job_id)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_body_del, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, job_id);
    rc = db_exec(s, "delete job body");
    return rc < 0 ? rc : 0;
}

/* ---- upload intake ------------------------------------------------------ */

bool catalog_intake_valid(const struct dr_intake *it)
{
    return it->owner != NULL && it->path != NULL && it->path[0] == '/' &&
           it->path[strlen(it->path) - 1] != '/' && it->size <= INT64_MAX &&
           (it->staged_part == NULL || (it->staged != NULL && it->staged_off <= it->size)) &&
           (it->body == NULL ||
            (it->body_len > 0 && it->body_len == it->size && it->spool_path == NULL));
}

int catalog_intake_one(struct catalog *cat, struct dr_intake *it, int64_t now)
{
    struct db *db = cat->db;
    it->created_at = now;
    struct dr_media m = {0};
    dr_id_new(m.id);
    m.owner = (char *)it->owner;
    m.path = (char *)it->path;
    m.size = it->size;
    m.content_type = (char *)it->content_type;
    m.state = (char *)"queued";
    m.created_at = now;
    /* an upload that skips the process stage has nothing to be found out
     * about: its (empty) metadata is known now, so no variant is pending */
    const char *stage = it->stage ? it->stage : "process";
    if (strcmp(stage, "process") != 0)
        m.metadata = (char *)"{}";
    /* If-Match and ?conflict=rename (catalog_versions.h) */
    free(it->renamed);
    it->renamed = NULL;
    int rc = catalog_versions_place(db, it, &m);
    if (rc == 0 && it->result == 0)
        rc = catalog_media_add(db, &m);
    if (rc == -EEXIST)
        it->result = -EEXIST;
    if (rc == -EEXIST || (rc == 0 && it->result != 0)) {
        it->media_id[0] = it->job_id[0] = '\0';
        return 0;
    }
    if (rc < 0)
        return rc;
    char job_id[DR_ID_LEN + 1];
    dr_id_new(job_id);
    rc = catalog_share_add(db, m.id, it->owner, now);
    if (rc == 0)
        rc = add_job(cat, job_id, "upload", m.id, it->owner, stage, it->spool_path, NULL,
                     it->staged, it->body, it->body_len, now);
    if (rc == 0 && it->staged != NULL && it->staged_part != NULL)
        rc = catalog_staged_add(db, it->staged, it->staged_part, it->staged_off,
                                it->size - it->staged_off, now);
    if (rc == 0)
        rc = catalog_event_add(db, job_id, "job.created", now);
    if (rc == 0) {
        it->result = 0;
        memcpy(it->media_id, m.id, sizeof it->media_id);
        memcpy(it->job_id, job_id, sizeof it->job_id);
    }
    return rc;
}

/* The intake of items committed or not, its COMMIT having lost its
 * connection: 0 (it did), -EBUSY (it did not), -ENOTCONN (no server to ask
 * within OUTCOME_WAIT_MS). A plain item's new job, else a tus creation's
 * session row, tells; a tus finish cannot (a finish sent again gives the
 * job it made before), so a batch of finishes only stays unknown. */
static int intake_outcome(struct catalog *cat, const struct dr_intake *items, size_t n)
{
    const struct db_sql *q = NULL;
    const char *id = NULL;
    for (size_t i = 0; i < n && id == NULL; i++) {
        if (items[i].result != 0 || items[i].tus_id != NULL)
            continue;
        if (items[i].tus_new != NULL)
            q = &q_tus_there, id = items[i].tus_new->id;
        else if (items[i].job_id[0] != '\0')
            q = &q_job_there, id = items[i].job_id;
    }
    bool finishes = false;
    for (size_t i = 0; i < n; i++)
        finishes = finishes || (items[i].result == 0 && items[i].tus_id != NULL);
    if (id == NULL)
        return finishes ? -ENOTCONN : -EBUSY; /* nothing else was written */
    int64_t deadline = dr_now_ms() + OUTCOME_WAIT_MS;
    for (unsigned ms = 100;; ms = ms < 1000 ? ms * 2 : 1000) {
        struct db_stmt *s;
        int rc = db_prepare(cat->db, q, &s);
        if (rc == 0) {
            db_bind_text(s, 1, id);
            rc = db_step(s, "intake outcome");
            db_reset(s);
            if (rc == DB_ROW || rc == DB_DONE) {
                log_warn("catalog: an intake of %zu uploads lost its connection during COMMIT; "
                         "it %s",
                         n, rc == DB_ROW ? "committed" : "did not commit");
                return rc == DB_ROW ? 0 : -EBUSY;
            }
        }
        if (dr_now_ms() >= deadline)
            return -ENOTCONN;
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* Inside the intake's transaction, on PostgreSQL: the owners' path locks
 * first, in name order (catalog_media.h). On failure the transaction is
 * rolled back. */
static int lock_owners(struct catalog *cat, const struct dr_intake *items, size_t n)
{
    const char **owners = xmalloc(n * sizeof *owners);
    for (size_t i = 0; i < n; i++)
        owners[i] = items[i].owner;
    int rc = catalog_media_lock_owners(cat->db, owners, n);
    free(owners);
    return rc < 0 ? db_end(cat->db, rc) : 0;
}

/* Inside the intake's transaction: every item (catalog_tus_intake says
 * what savepoint and redo mean). */
static int intake_items(struct catalog *cat, struct dr_intake *items, size_t n, int64_t now,
                        bool savepoint, bool *redo)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0 && (savepoint || !*redo); i++)
        rc = items[i].tus_new != NULL || items[i].tus_id != NULL
                 ? catalog_tus_intake(cat, &items[i], savepoint, redo)
                 : catalog_intake_one(cat, &items[i], now);
    return rc;
}

/* catalog_intake_uploads and catalog_intake_creations: flags for db_begin
 * (every upload of the batch waits for this commit: poll for the lock). */
static int intake(struct catalog *cat, struct dr_intake *items, size_t n, unsigned flags)
{
    if (cat == NULL || (items == NULL && n > 0))
        return -EINVAL;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (items[i].tus_new == NULL && items[i].tus_id == NULL && !catalog_intake_valid(&items[i]))
            return -EINVAL; /* a tus finish takes its inputs from the row, then checks */
    int rc = db_begin(cat->db, DB_BEGIN_POLL | DB_BEGIN_KIND(DR_WRITER_INTAKE) | flags);
    if (rc == 0 && db_dialect(cat->db) == DB_POSTGRES && (rc = lock_owners(cat, items, n)) < 0)
        goto out;
    if (rc == 0) {
        int64_t now = dr_now_ms();
        bool redo = false;
        rc = intake_items(cat, items, n, now, false, &redo);
        if (rc == 0 && redo) { /* a tus item failed: again, one savepoint each */
            db_rollback(cat->db);
            rc = db_begin(cat->db, DB_BEGIN_POLL | DB_BEGIN_KIND(DR_WRITER_INTAKE) | flags);
            if (rc == 0 && db_dialect(cat->db) == DB_POSTGRES)
                rc = lock_owners(cat, items, n);
            if (rc < 0)
                goto out;
            rc = intake_items(cat, items, n, now, true, &redo);
        }
        rc = db_end(cat->db, rc);
        if (rc == -ENOTCONN)
            rc = intake_outcome(cat, items, n);
    }
out:
    if (rc < 0)
        for (size_t i = 0; i < n; i++) {
            items[i].result = rc;
            items[i].media_id[0] = items[i].job_id[0] = '\0';
        }
    return rc;
}

int catalog_intake_uploads(struct catalog *cat, struct dr_intake *items, size_t n)
{
    return intake(cat, items, n, 0);
}

int catalog_intake_uploads_deferred(struct catalog *cat, struct dr_intake *items, size_t n)
{
    return intake(cat, items, n, DB_BEGIN_DEFER_SYNC);
}

int catalog_make_durable(struct catalog *cat, enum dr_writer_kind kind)
{
    return cat == NULL ? -EINVAL : db_sync(cat->db, (unsigned)kind);
}

int catalog_intake_creations(struct catalog *cat, struct dr_intake *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items == NULL || items[i].tus_new == NULL || items[i].tus_id != NULL)
            return -EINVAL; /* only what nobody was promised durability for */
    return intake(cat, items, n, DB_BEGIN_LAZY);
}

int catalog_queue_depth(struct catalog *cat, uint64_t *out)
{
    if (cat == NULL || out == NULL)
        return -EINVAL;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_depth, &s);
    if (rc < 0)
        return rc;
    rc = db_step(s, "queue depth");
    *out = rc == DB_ROW ? (uint64_t)db_col_i64(s, 0) : 0;
    db_reset(s);
    return rc < 0 ? rc : 0;
}

/* ---- reads -------------------------------------------------------------- */

int catalog_job_get(struct catalog *cat, const char *id, const char *viewer, struct dr_job *out)
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
    rc = db_step(s, "job get");
    if (rc == DB_ROW) {
        read_job(s, out);
        rc = 0;
    } else if (rc == DB_DONE) {
        rc = -ENOENT;
    }
    db_reset(s);
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
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_list, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, owner);
    db_bind_text(s, 2, state);
    db_bind_i64(s, 3, max);
    struct dr_job *j = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "job list")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            j = xrealloc(j, cap * sizeof *j);
        }
        read_job(s, &j[n++]);
    }
    db_reset(s);
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

/* ---- enqueue and claim -------------------------------------------------- */

int catalog_enqueue_download(struct catalog *cat, const char *media_id, const char *viewer,
                             char job_id_out[DR_ID_LEN + 1])
{
    return catalog_enqueue_variant_download(cat, media_id, NULL, viewer, job_id_out);
}

int catalog_enqueue_variant_download(struct catalog *cat, const char *media_id, const char *name,
                                     const char *viewer, char job_id_out[DR_ID_LEN + 1])
{
    if (cat == NULL || media_id == NULL || job_id_out == NULL)
        return -EINVAL;
    job_id_out[0] = '\0';
    char *owner = NULL;
    char job_id[DR_ID_LEN + 1];
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    rc = catalog_media_owner_for(cat->db, media_id, viewer, &owner);
    if (rc < 0)
        goto out;
    /* The job belongs to whoever asked (a shared media's downloader gets
     * the events); an internal request (NULL viewer) to the media owner. */
    dr_id_new(job_id);
    int64_t now = dr_now_ms();
    rc = add_job(cat, job_id, "download", media_id, viewer != NULL ? viewer : owner, "fetch", NULL,
                 name, NULL, NULL, 0, now);
    if (rc == 0)
        rc = catalog_event_add(cat->db, job_id, "job.created", now);
out:
    rc = db_end(cat->db, rc);
    if (rc == 0)
        memcpy(job_id_out, job_id, DR_ID_LEN + 1);
    free(owner);
    return rc;
}

/* A claimed job and its queue position, for handing them out in order. */
struct claimed {
    int64_t created_at, pos;
    struct dr_job job;
    struct dr_media *media; /* catalog_jobs_claim_media: its row, or NULL */
};

/* Queue order: created_at, then insertion order. ULIDs are random within
 * one millisecond, so the id cannot break ties; the position (which grows
 * with every insert) can. */
static int claimed_cmp(const void *a, const void *b)
{
    const struct claimed *x = a, *y = b;
    if (x->created_at != y->created_at)
        return x->created_at < y->created_at ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The media rows of the claimed jobs (claim_reads). */
static int claim_media(struct db *db, struct claimed *got, int n)
{
    for (int i = 0; i < n; i++) {
        struct dr_media *m = xcalloc(1, sizeof *m);
        int rc = catalog_media_read_id(db, got[i].job.media_id, m);
        if (rc == -ENOENT) {
            free(m);
            continue;
        }
        if (rc < 0) {
            free(m);
            return rc;
        }
        got[i].media = m;
    }
    return 0;
}

/* The inline bodies of the claimed uploads that have one (no spool file,
 * no staged body) (claim_reads). */
static int claim_bodies(struct db *db, struct claimed *got, int n)
{
    for (int i = 0; i < n; i++) {
        struct dr_job *j = &got[i].job;
        if (strcmp(j->kind, "upload") != 0 || j->spool_path != NULL || j->staged != NULL)
            continue;
        struct db_stmt *s;
        int rc = db_prepare(db, &q_body_get, &s);
        if (rc < 0)
            return rc;
        db_bind_text(s, 1, j->id);
        rc = db_step(s, "claim body");
        size_t len = 0;
        const void *body = rc == DB_ROW ? db_col_blob(s, 0, &len) : NULL;
        if (body != NULL && len > 0) {
            j->body = xmalloc(len);
            memcpy(j->body, body, len);
            j->body_len = len;
        }
        db_reset(s);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* The reads of a claim (see the top): inside a transaction, the claim's
 * or a read transaction after it. */
static int claim_reads(struct db *db, struct claimed *got, int n, bool media)
{
    int rc = claim_bodies(db, got, n);
    return rc == 0 && media ? claim_media(db, got, n) : rc;
}

/* SQLite: claim_reads after the claim committed, in a read transaction.
 * On failure the jobs are put back, as a failed stage puts its job back
 * (catalog_job_retry: queued again at once, one attempt more). */
static int claim_reads_apart(struct catalog *cat, struct claimed *got, int n, bool media)
{
    int rc = db_begin(cat->db, DB_BEGIN_READ);
    if (rc == 0)
        rc = db_end(cat->db, claim_reads(cat->db, got, n, media));
    if (rc == 0)
        return 0;
    log_warn("catalog: %d claimed jobs put back: reading their bodies and media failed: %s", n,
             strerror(-rc));
    for (int i = 0; i < n; i++)
        (void)catalog_job_retry(cat, got[i].job.id, "claim: reading its body or media failed", 0);
    return rc;
}

static void claimed_free_media(struct claimed *c)
{
    if (c->media != NULL) {
        dr_media_clear(c->media);
        free(c->media);
        c->media = NULL;
    }
}

static int claim(struct catalog *cat, const char *kind, int max, const char *claimer,
                 struct dr_job *out, struct dr_media **media, int *n_out)
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
    /* lazy: a claim lost in a power cut leaves its jobs queued, as the
     * recovery of a dead claimer would, and nobody was told of it. Poll:
     * the intake lets the pipeline's writes go first (ingest.c), so the
     * lock is held by one intake commit at most, ~1 ms; the busy
     * handler's sleeps (1, 2, 5... ms) would overshoot it. */
    bool apart = db_dialect(cat->db) == DB_SQLITE; /* the reads after the commit */
    int rc = db_begin(cat->db, DB_BEGIN_LAZY | DB_BEGIN_POLL | DB_BEGIN_KIND(DR_WRITER_CLAIMS));
    if (rc < 0)
        goto done;
    struct db_stmt *s;
    rc = db_prepare(cat->db, &q_claim, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, claimer);
    db_bind_i64(s, 2, dr_now_ms());
    db_bind_text(s, 3, kind);
    db_bind_i64(s, 4, max);
    if (db_dialect(cat->db) == DB_POSTGRES)
        db_bind_text(s, 5, cat->node);
    while ((rc = db_step(s, "jobs claim")) == DB_ROW) {
        if (n < max) {
            read_job(s, &got[n].job);
            got[n].created_at = got[n].job.created_at;
            got[n].pos = db_col_i64(s, 15);
            n++;
        }
    }
    db_reset(s);
    rc = rc < 0 ? rc : 0;
    if (rc == 0 && !apart)
        rc = claim_reads(cat->db, got, n, media != NULL);
out:
    rc = db_end(cat->db, rc);
    if (rc == 0 && apart && n > 0)
        rc = claim_reads_apart(cat, got, n, media != NULL);
done:
    if (rc < 0) {
        for (int i = 0; i < n; i++) {
            dr_job_clear(&got[i].job);
            claimed_free_media(&got[i]);
        }
    } else {
        /* RETURNING gives no order guarantee; hand them out oldest first. */
        qsort(got, (size_t)n, sizeof *got, claimed_cmp);
        for (int i = 0; i < n; i++) {
            out[i] = got[i].job;
            if (media != NULL)
                media[i] = got[i].media;
        }
        *n_out = n;
    }
    free(got);
    return rc;
}

int catalog_jobs_claim(struct catalog *cat, const char *kind, int max, const char *claimer,
                       struct dr_job *out, int *n_out)
{
    return claim(cat, kind, max, claimer, out, NULL, n_out);
}

int catalog_jobs_claim_media(struct catalog *cat, const char *kind, int max, const char *claimer,
                             struct dr_job *out, struct dr_media **media, int *n_out)
{
    if (media == NULL && max > 0) {
        if (n_out != NULL)
            *n_out = 0;
        return -EINVAL;
    }
    return claim(cat, kind, max, claimer, out, media, n_out);
}

/* ---- changes of running jobs -------------------------------------------- */

/* Inside a transaction: run a bound UPDATE of one job (0 rows: -ENOENT)
 * and append its event. */
static int job_change(struct db *db, struct db_stmt *s, const char *job_id, const char *type,
                      int64_t now, const char *what)
{
    int rc = db_exec(s, what);
    if (rc < 0)
        return rc;
    if (rc == 0)
        return -ENOENT;
    return catalog_event_add(db, job_id, type, now);
}

/* Bind and run the advance of a running job to next_stage, with its
 * "job.stage" event, inside a transaction. */
static int advance(struct db *db, const char *job_id, const char *next_stage, const char *work_path,
                   int64_t now)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_advance, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, job_id);
    db_bind_text(s, 2, next_stage);
    db_bind_text(s, 3, work_path);
    db_bind_i64(s, 4, now);
    return job_change(db, s, job_id, "job.stage", now, "job advance");
}

int catalog_job_advance(struct catalog *cat, const char *job_id, const char *next_stage,
                        const char *work_path)
{
    if (cat == NULL || job_id == NULL || next_stage == NULL)
        return -EINVAL;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    rc = advance(cat->db, job_id, next_stage, work_path, dr_now_ms());
    return db_end(cat->db, rc);
}

int catalog_job_retry(struct catalog *cat, const char *job_id, const char *error, int64_t delay_ms)
{
    if (cat == NULL || job_id == NULL)
        return -EINVAL;
    int64_t now = dr_now_ms();
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_retry, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, job_id);
    db_bind_text(s, 2, error);
    db_bind_i64(s, 3, now + (delay_ms > 0 ? delay_ms : 0));
    db_bind_i64(s, 4, now);
    rc = db_exec(s, "job retry");
    if (rc < 0)
        return rc;
    return rc == 0 ? -ENOENT : 0;
}

int catalog_job_fail(struct catalog *cat, const char *job_id, const char *stage, const char *error)
{
    if (cat == NULL || job_id == NULL)
        return -EINVAL;
    char kind[16] = "", media_id[DR_ID_LEN + 1] = "";
    bool found = false;
    int rc = db_begin(cat->db, 0);
    if (rc < 0)
        return rc;
    int64_t now = dr_now_ms();
    struct db_stmt *s;
    rc = db_prepare(cat->db, &q_fail, &s);
    if (rc < 0)
        goto out;
    db_bind_text(s, 1, job_id);
    db_bind_text(s, 2, error);
    db_bind_i64(s, 3, now);
    db_bind_text(s, 4, stage);
    while ((rc = db_step(s, "job fail")) == DB_ROW) {
        found = true;
        db_col_copy(s, 0, kind, sizeof kind);
        db_col_copy(s, 1, media_id, sizeof media_id);
    }
    db_reset(s);
    if (rc < 0)
        goto out;
    if (!found) {
        rc = -ENOENT;
        goto out;
    }
    /* Only a media still waiting for its upload fails; the row may also be
     * gone (deleted meanwhile), which is fine. */
    rc = strcmp(kind, "upload") == 0 ? catalog_media_fail_queued(cat->db, media_id) : 0;
    if (rc == 0 && strcmp(kind, "upload") == 0)
        rc = body_delete(cat->db, job_id);
    if (rc == 0)
        rc = catalog_event_add(cat->db, job_id, "job.failed", now);
out:
    return db_end(cat->db, rc);
}

/* Inside a transaction: the job part of a step (advance, or done with its
 * "job.done" event). 0, -ENOENT (the job is not running), -errno. */
static int step_job(struct db *db, const struct dr_job_step *st, int64_t now)
{
    if (st->next_stage != NULL)
        return advance(db, st->job_id, st->next_stage, st->work_path, now);
    struct db_stmt *s;
    int rc = db_prepare(db, &q_done, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, st->job_id);
    db_bind_i64(s, 2, now);
    rc = job_change(db, s, st->job_id, "job.done", now, "job done");
    return rc == 0 ? body_delete(db, st->job_id) : rc;
}

/* Inside a transaction: apply every step. With savepoints (each step in
 * one of its own), a step that cannot apply (-ENOENT: its job is not
 * running, or its media is gone and not optional) is undone alone and the
 * others go on. Without (the common case, where every step applies: a
 * savepoint copies each page the step changes into the statement journal
 * first, ~1 in 4 of a small upload's last commit's CPU, issue 15), such a
 * step sets *redo and ends the pass at once: the caller rolls the whole
 * transaction back and runs the pass again with savepoints. 0 or -errno
 * (a failure of the transaction as a whole). */
static int steps_apply(struct db *db, struct dr_job_step *steps, size_t n, int64_t now,
                       bool savepoints, bool *applied, bool *redo)
{
    int rc = 0;
    *applied = false;
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct dr_job_step *st = &steps[i];
        st->result = 0;
        st->media_gone = false;
        if (savepoints && (rc = db_savepoint(db)) < 0)
            break;
        int r = step_job(db, st, now);
        if (r == 0) {
            r = catalog_media_apply_step(db, st, now);
            if (r == -ENOENT) {
                st->media_gone = true;
                if (st->media_optional)
                    r = 0;
            }
        }
        if (r == -ENOENT && !savepoints) {
            *redo = true;
            return 0;
        }
        if (r == -ENOENT) {
            st->result = -ENOENT;
            rc = db_savepoint_rollback(db);
        } else {
            rc = r;
        }
        if (rc == 0 && savepoints)
            rc = db_savepoint_release(db);
        *applied = *applied || (rc == 0 && st->result == 0);
    }
    return rc;
}

/* catalog_jobs_step and catalog_jobs_step_deferred: extra, more flags
 * for db_begin. */
static int jobs_step(struct catalog *cat, struct dr_job_step *steps, size_t n, int64_t *last_seq,
                     unsigned extra)
{
    if (cat == NULL || (steps == NULL && n > 0))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        struct dr_job_step *st = &steps[i];
        bool media =
            st->sha256_hex != NULL || st->storage_key != NULL || st->available || st->set_size;
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
    struct db *db = cat->db;
    /* poll as the claim's */
    unsigned flags = DB_BEGIN_POLL | DB_BEGIN_KIND(DR_WRITER_STEPS) | extra;
    int rc = db_begin(db, flags);
    if (rc < 0)
        return rc;
    int64_t now = dr_now_ms(), seq = 0;
    bool applied = false, redo = false;
    rc = steps_apply(db, steps, n, now, false, &applied, &redo);
    if (rc == 0 && redo) {
        /* a step cannot apply: undo them all, then one savepoint each */
        db_rollback(db);
        if ((rc = db_begin(db, flags)) < 0) {
            for (size_t i = 0; i < n; i++)
                steps[i].result = rc;
            return rc;
        }
        rc = steps_apply(db, steps, n, now, true, &applied, &redo);
    }
    /* The newest event is this transaction's last (writers are serialised). */
    if (rc == 0 && applied && last_seq != NULL)
        rc = catalog_event_newest(db, &seq);
    rc = db_end(db, rc);
    if (rc < 0) {
        for (size_t i = 0; i < n; i++)
            steps[i].result = rc;
    } else if (last_seq != NULL) {
        *last_seq = seq; /* 0 when no event was written */
    }
    return rc;
}

int catalog_jobs_step(struct catalog *cat, struct dr_job_step *steps, size_t n, int64_t *last_seq)
{
    return jobs_step(cat, steps, n, last_seq, 0);
}

int catalog_jobs_step_deferred(struct catalog *cat, struct dr_job_step *steps, size_t n,
                               int64_t *last_seq)
{
    return jobs_step(cat, steps, n, last_seq, DB_BEGIN_DEFER_SYNC);
}

/* ---- recovery ----------------------------------------------------------- */

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
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_claimers, &s);
    if (rc < 0)
        return rc;
    while ((rc = db_step(s, "recover: claimers")) == DB_ROW) {
        const char *c = db_col_text(s, 0);
        if (c == NULL) {
            orphan = true;
            continue;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 8;
            claimers = xrealloc(claimers, cap * sizeof *claimers);
        }
        claimers[n++] = xstrdup(c);
    }
    db_reset(s);
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
    rc = db_begin(cat->db, 0);
    if (rc < 0)
        goto out;
    int64_t now = dr_now_ms();
    int total = 0;
    for (size_t i = 0; i <= n && rc == 0; i++) {
        if (i == n && !orphan)
            break;
        rc = db_prepare(cat->db, &q_release, &s);
        if (rc < 0)
            break;
        db_bind_text(s, 1, i < n ? claimers[i] : NULL);
        db_bind_i64(s, 2, now);
        rc = db_exec(s, "recover: release");
        if (rc >= 0) {
            if (rc > 0)
                log_info("catalog: released %d job(s) of %s", rc,
                         i < n ? claimers[i] : "no claimer");
            total += rc;
            rc = 0;
        }
    }
    /* Released jobs are claimable again: wake every node's starters. */
    if (rc == 0 && total > 0)
        rc = db_notify(cat->db, CATALOG_CHANNEL_JOBS, "");
    rc = db_end(cat->db, rc);
    if (rc == 0 && released != NULL)
        *released = total;
out:
    for (size_t i = 0; i < n; i++)
        free(claimers[i]);
    free(claimers);
    return rc;
}

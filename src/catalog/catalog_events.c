/* catalog_events.c - the event log: what SSE streams and webhooks read.
 *
 * What: the `events` table (docs/CATALOG.md, "Events"). The job modules
 * append an event in the same transaction as the job change it reports
 * (catalog_event_add); readers page through them by seq.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 *
 * Guarantees:
 *  - seq is strictly increasing and never reused, even after pruning
 *    (SQLite: AUTOINCREMENT, whose high-water mark sqlite_sequence keeps).
 *  - Writers are serialised, so seq order is commit order: a reader that
 *    has seen seq N never later finds a committed event below N it missed.
 *    SQLite serialises all writers. PostgreSQL would not (a BIGSERIAL is
 *    taken at INSERT, not at commit), so the insert takes the advisory
 *    lock CATALOG_LOCK_EVENTS, held until its transaction ends, in the
 *    same statement (no extra round trip), and also NOTIFYs
 *    CATALOG_CHANNEL_EVENTS: every node's listeners learn of new events
 *    when (and only if) the transaction commits.
 *  - The data is the job as GET /v1/jobs/{id} shows it plus its media's
 *    path and name, built by the database from the rows the transaction
 *    has just written (SQLite json_object, PostgreSQL json_build_object).
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_events.h"
#include "catalog_internal.h"
#include "catalog_schema.h"
#include "db.h"
#include "dripd/util.h"

#define EVENTS_MAX 10000 /* cap of one catalog_events_since call */
#define EVENT_COLS "seq, \"user\", type, job_id, media_id, data, created_at"

static const struct db_sql q_insert = {
    "INSERT INTO events(\"user\", type, job_id, media_id, data, created_at) "
    "SELECT j.owner, $2, j.id, j.media_id, json_object('id', j.id, 'kind', j.kind, "
    "'state', j.state, 'stage', j.stage, 'media_id', j.media_id, 'attempts', j.attempts, "
    "'error', j.error, 'path', m.path, 'name', m.name), $3 "
    "FROM jobs j LEFT JOIN media m ON m.id = j.media_id WHERE j.id = $1",
    "INSERT INTO events(\"user\", type, job_id, media_id, data, created_at) "
    "SELECT j.owner, $2, j.id, j.media_id, json_build_object('id', j.id, 'kind', j.kind, "
    "'state', j.state, 'stage', j.stage, 'media_id', j.media_id, 'attempts', j.attempts, "
    "'error', j.error, 'path', m.path, 'name', m.name)::text, $3 "
    "FROM jobs j LEFT JOIN media m ON m.id = j.media_id CROSS JOIN (SELECT "
    "pg_advisory_xact_lock(" CATALOG_LOCK_EVENTS "), pg_notify('" CATALOG_CHANNEL_EVENTS
    "', '')) AS l WHERE j.id = $1"};
/* Inside a writer's transaction, the newest seq is its own last event:
 * event writers are serialised. (Cheaper than RETURNING on every insert,
 * which costs SQLite an ephemeral table per row.) */
static const struct db_sql q_newest = {"SELECT coalesce(max(seq), 0) FROM events", NULL};
static const struct db_sql q_since_all = {
    "SELECT " EVENT_COLS " FROM events WHERE seq > $1 ORDER BY seq LIMIT $2", NULL};
static const struct db_sql q_since_user = {
    "SELECT " EVENT_COLS " FROM events WHERE \"user\" = $3 AND seq > $1 ORDER BY seq LIMIT $2",
    NULL};
/* The high-water mark survives pruning: SQLite keeps it in
 * sqlite_sequence, PostgreSQL in the column's sequence, read under the
 * event writers' lock so that every seq below it has committed. */
static const struct db_sql q_last = {
    "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0)",
    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM events_seq_seq, "
    "(SELECT pg_advisory_xact_lock(" CATALOG_LOCK_EVENTS ")) AS l"};

int catalog_event_add(struct db *db, const char *job_id, const char *type, int64_t now)
{
    struct db_stmt *s;
    int rc = db_prepare(db, &q_insert, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, job_id);
    db_bind_text(s, 2, type);
    db_bind_i64(s, 3, now);
    rc = db_exec(s, "insert event");
    if (rc < 0)
        return rc;
    return rc == 1 ? 0 : -ENOENT;
}

int catalog_event_newest(struct db *db, int64_t *seq)
{
    *seq = 0;
    struct db_stmt *s;
    int rc = db_prepare(db, &q_newest, &s);
    if (rc < 0)
        return rc;
    rc = db_step(s, "newest event");
    if (rc == DB_ROW)
        *seq = db_col_i64(s, 0);
    db_reset(s);
    return rc < 0 ? rc : 0;
}

static void read_event(struct db_stmt *s, struct dr_event *e)
{
    memset(e, 0, sizeof *e);
    e->seq = db_col_i64(s, 0);
    e->user = db_col_strdup(s, 1);
    db_col_copy(s, 2, e->type, sizeof e->type);
    db_col_copy(s, 3, e->job_id, sizeof e->job_id);
    db_col_copy(s, 4, e->media_id, sizeof e->media_id);
    e->data = db_col_strdup(s, 5);
    e->created_at = db_col_i64(s, 6);
}

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
    struct db_stmt *s;
    int rc = db_prepare(cat->db, user != NULL ? &q_since_user : &q_since_all, &s);
    if (rc < 0)
        return rc;
    db_bind_i64(s, 1, after_seq);
    db_bind_i64(s, 2, max);
    if (user != NULL)
        db_bind_text(s, 3, user);
    struct dr_event *ev = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "events since")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ev = xrealloc(ev, cap * sizeof *ev);
        }
        read_event(s, &ev[n++]);
    }
    db_reset(s);
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
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_last, &s);
    if (rc < 0)
        return rc;
    rc = db_step(s, "events last seq");
    if (rc == DB_ROW)
        *out = db_col_i64(s, 0);
    db_reset(s);
    return rc < 0 ? rc : 0;
}

/* catalog_nodes.c - a cluster's nodes and its once-per-cluster work.
 *
 * What: with catalog.backend postgres, the `nodes` table holds each node's
 * heartbeat (refreshed by its pipeline worker) and the `leases` table the
 * named leases of work that must run on one node at a time (retention
 * pruning, tus expiry, webhook delivery; docs/CLUSTER.md). A lease is held
 * until its expiry and renewed by its holder; a node that dies simply
 * stops renewing, and after the ttl any other node takes it over, with the
 * cursor (a position the work saved, e.g. the last delivered event) where
 * the dead node left it. With SQLite (one node) there is no cluster: every
 * lease is this node's, every node is alive, and nothing is written.
 *
 * Clocks: heartbeats and lease expiries are the database server's clock
 * (clock_timestamp()), so the nodes' clocks may disagree.
 *
 * Threads: a handle is used by one thread at a time (catalog.h); no state
 * of its own.
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog_internal.h"
#include "db.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define REAP_MAX 1000 /* download jobs failed per catalog_nodes_reap call */
/* The database server's clock, in ms since the epoch. */
#define NOW_MS "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"

static const struct db_sql q_beat = {NULL,
                                     "INSERT INTO nodes(id, seen_at) VALUES ($1, " NOW_MS ") "
                                     "ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at"};
static const struct db_sql q_alive = {
    NULL, "SELECT count(*) FROM nodes WHERE id = $1 AND seen_at >= " NOW_MS " - $2"};
static const struct db_sql q_dead_downloads = {
    NULL, "SELECT j.id, j.node FROM jobs j JOIN nodes n ON n.id = j.node "
          "WHERE j.kind = 'download' AND j.state IN ('queued', 'running') "
          "AND n.seen_at < " NOW_MS " - $1 ORDER BY j.created_at LIMIT $2"};
/* Taken when free, expired, or already ours; the row comes back only then. */
static const struct db_sql q_lease = {
    NULL, "INSERT INTO leases(name, holder, expires_at) VALUES ($1, $2, " NOW_MS " + $3) "
          "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
          "expires_at = excluded.expires_at "
          "WHERE leases.holder = excluded.holder OR leases.expires_at < " NOW_MS " "
          "RETURNING cursor"};
static const struct db_sql q_lease_save = {
    NULL, "UPDATE leases SET cursor = $3 WHERE name = $1 AND holder = $2"};
static const struct db_sql q_lease_drop = {NULL,
                                           "DELETE FROM leases WHERE name = $1 AND holder = $2"};

static bool cluster(const struct catalog *cat)
{
    return db_dialect(cat->db) == DB_POSTGRES;
}

int catalog_node_beat(struct catalog *cat)
{
    if (cat == NULL)
        return -EINVAL;
    if (!cluster(cat))
        return 0;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_beat, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, cat->node);
    rc = db_exec(s, "node heartbeat");
    return rc < 0 ? rc : 0;
}

int catalog_node_alive(struct catalog *cat, const char *node, int64_t lease_ms)
{
    if (cat == NULL || node == NULL)
        return -EINVAL;
    if (!cluster(cat))
        return 1;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_alive, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, node);
    db_bind_i64(s, 2, lease_ms);
    rc = db_step(s, "node alive");
    int64_t n = rc == DB_ROW ? db_col_i64(s, 0) : 0;
    db_reset(s);
    return rc < 0 ? rc : n > 0;
}

int catalog_nodes_reap(struct catalog *cat, int64_t lease_ms, int *failed)
{
    if (failed != NULL)
        *failed = 0;
    if (cat == NULL)
        return -EINVAL;
    if (!cluster(cat))
        return 0;
    /* 1. Which (a read); 2. fail each with its event (catalog_job_fail). */
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_dead_downloads, &s);
    if (rc < 0)
        return rc;
    db_bind_i64(s, 1, lease_ms);
    db_bind_i64(s, 2, REAP_MAX);
    char(*ids)[DR_ID_LEN + 1] = NULL;
    char **nodes = NULL;
    size_t n = 0, cap = 0;
    while ((rc = db_step(s, "dead nodes' downloads")) == DB_ROW) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            ids = xrealloc(ids, cap * sizeof *ids);
            nodes = xrealloc(nodes, cap * sizeof *nodes);
        }
        db_col_copy(s, 0, ids[n], sizeof ids[n]);
        nodes[n] = db_col_strdup(s, 1);
        n++;
    }
    db_reset(s);
    int done = 0;
    for (size_t i = 0; i < n && rc >= 0; i++) {
        char *why = xasprintf("node %s is gone (its cache was the download's target)", nodes[i]);
        int r = catalog_job_fail(cat, ids[i], NULL, why);
        free(why);
        if (r == 0)
            done++;
        else if (r != -ENOENT) /* finished meanwhile: fine */
            rc = r;
    }
    for (size_t i = 0; i < n; i++)
        free(nodes[i]);
    free(nodes);
    free(ids);
    if (done > 0)
        log_info("catalog: failed %d download job(s) of nodes gone for %lld ms", done,
                 (long long)lease_ms);
    if (failed != NULL)
        *failed = done;
    return rc < 0 ? rc : 0;
}

int catalog_lease(struct catalog *cat, const char *name, int64_t ttl_ms, int64_t *cursor)
{
    if (cursor != NULL)
        *cursor = 0;
    if (cat == NULL || name == NULL || ttl_ms <= 0)
        return -EINVAL;
    if (!cluster(cat))
        return 1;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, &q_lease, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, name);
    db_bind_text(s, 2, cat->node);
    db_bind_i64(s, 3, ttl_ms);
    bool held = false;
    while ((rc = db_step(s, "lease")) == DB_ROW) {
        held = true;
        if (cursor != NULL)
            *cursor = db_col_i64(s, 0);
    }
    db_reset(s);
    return rc < 0 ? rc : held;
}

static int lease_change(struct catalog *cat, const struct db_sql *q, const char *name,
                        const int64_t *cursor, const char *what)
{
    if (cat == NULL || name == NULL)
        return -EINVAL;
    if (!cluster(cat))
        return 0;
    struct db_stmt *s;
    int rc = db_prepare(cat->db, q, &s);
    if (rc < 0)
        return rc;
    db_bind_text(s, 1, name);
    db_bind_text(s, 2, cat->node);
    if (cursor != NULL)
        db_bind_i64(s, 3, *cursor);
    rc = db_exec(s, what);
    if (rc < 0)
        return rc;
    return rc == 0 ? -ENOENT : 0;
}

int catalog_lease_save(struct catalog *cat, const char *name, int64_t cursor)
{
    return lease_change(cat, &q_lease_save, name, &cursor, "lease save");
}

int catalog_lease_drop(struct catalog *cat, const char *name)
{
    int rc = lease_change(cat, &q_lease_drop, name, NULL, "lease drop");
    return rc == -ENOENT ? 0 : rc;
}

/* metrics.h - counters shared by every dripd process.
 *
 * The supervisor maps one struct dr_metrics (MAP_SHARED|MAP_ANONYMOUS)
 * before it forks; every worker, including restarted ones, inherits the
 * same pages, so counters are node-wide totals that survive worker
 * restarts, and whichever process serves /metrics renders the totals.
 * All fields are updated with relaxed __atomic builtins (lock-free on
 * 64-bit, so safe across processes). Fixed-size arrays only: nothing
 * here ever allocates.
 *
 * Gauges that count what a worker process holds (open connections, jobs
 * in a stage) live in that process's own block, procs[slot] (the
 * supervisor's worker slot, dr_worker_ctx.slot): a process only ever
 * changes its own block, the supervisor zeroes a block when its process
 * is gone (a SIGKILLed worker never decrements), and /metrics renders the
 * sum over the blocks.
 */
#ifndef DRIPD_METRICS_H
#define DRIPD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#define DR_HIST_BUCKETS 14 /* 1ms .. 60s, plus +Inf (bounds in metrics.c) */

struct dr_hist {
    uint64_t buckets[DR_HIST_BUCKETS]; /* non-cumulative; last is +Inf */
    uint64_t count;
    uint64_t sum_us;
};

enum dr_route_class {
    DR_RC_UPLOAD,
    DR_RC_TUS,
    DR_RC_MEDIA,
    DR_RC_CONTENT,
    DR_RC_JOBS,
    DR_RC_EVENTS,
    DR_RC_HEALTH,
    DR_RC_METRICS,
    DR_RC_WEB,
    DR_RC_OTHER,
    DR_RC_COUNT
};
#define DR_STATUS_SLOTS 24 /* see metrics_status_slot() */

enum dr_pipeline_id { DR_PL_UPLOAD, DR_PL_DOWNLOAD, DR_PL_SCRUB, DR_PL_COUNT };
#define DR_STAGE_SLOTS 5
/* Stage slots per pipeline (their names are metrics.c's): upload starter,
 * process, encrypt, store, notify; download starter, fetch, decrypt, notify;
 * scrub starter, verify. The pipeline worker indexes stages[][] by these. */

struct dr_stage_metrics {
    uint64_t processed; /* counter */
    uint64_t failed;    /* counter */
    uint64_t busy_us;   /* counter: handler time */
    struct dr_hist duration;
};

enum dr_store_op { DR_SOP_PUT, DR_SOP_GET, DR_SOP_DELETE, DR_SOP_EXISTS, DR_SOP_COUNT };

struct dr_stage_gauges {
    int64_t queued;    /* jobs waiting in the stage's inbox */
    int64_t in_flight; /* jobs being handled */
};

/* One worker process's gauges (see the top of this file). */
struct dr_proc_gauges {
    int64_t http_connections_open;
    struct dr_stage_gauges stages[DR_PL_COUNT][DR_STAGE_SLOTS];
};
#define DR_PROC_SLOTS 64 /* >= the supervisor's worker slots (two generations) */

struct dr_metrics {
    uint64_t start_time_ms;
    /* http */
    uint64_t http_requests[DR_RC_COUNT][DR_STATUS_SLOTS];
    struct dr_hist http_duration[DR_RC_COUNT];
    uint64_t http_bytes_received;
    uint64_t http_bytes_sent;
    uint64_t http_connections_refused;
    /* pipeline */
    struct dr_stage_metrics stages[DR_PL_COUNT][DR_STAGE_SLOTS];
    int64_t jobs_queue_depth; /* gauge, refreshed by the pipeline */
    uint64_t jobs_retries;
    uint64_t jobs_completed[DR_PL_COUNT];
    uint64_t jobs_failed[DR_PL_COUNT];
    uint64_t uploads_rejected_full; /* 503 queue full */
    /* cache */
    uint64_t cache_hits, cache_misses, cache_evictions;
    int64_t cache_bytes; /* gauge */
    /* store */
    struct dr_hist store_duration[DR_SOP_COUNT];
    uint64_t store_errors[DR_SOP_COUNT];
    uint64_t store_bytes_up, store_bytes_down;
    int64_t store_up;       /* gauge: 1 reachable, 0 not, -1 not probed yet (store_probe.c) */
    int64_t store_errno;    /* gauge: errno of the last failed probe */
    int64_t store_probe_ms; /* gauge: wall time of the last probe */
    /* catalog (PostgreSQL; SQLite stays -1) */
    int64_t catalog_up; /* gauge: 1 reachable, 0 not, -1 not probed (catalog_watch) */
    /* supervisor */
    uint64_t restarts[2]; /* by enum dr_role */
    uint64_t reloads;
    /* webhooks */
    uint64_t webhook_deliveries, webhook_failures;
    /* scrub */
    uint64_t scrub_objects, scrub_bytes, scrub_corrupt, scrub_missing;
    /* per worker process */
    struct dr_proc_gauges procs[DR_PROC_SLOTS];
    /* processing: dripd-decode helpers run, and those that crashed, were
     * killed or did not answer */
    uint64_t decode_runs, decode_failures;
    uint64_t reprocess_media; /* media a reprocess run handled */
};

/* Map a zeroed struct shared with future children. NULL on failure. */
struct dr_metrics *metrics_create_shared(void);
void metrics_destroy_shared(struct dr_metrics *m); /* NULL ok */

static inline void metrics_add(uint64_t *c, uint64_t n)
{
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}
static inline void metrics_gauge_add(int64_t *g, int64_t n)
{
    __atomic_fetch_add(g, n, __ATOMIC_RELAXED);
}
static inline void metrics_gauge_set(int64_t *g, int64_t v)
{
    __atomic_store_n(g, v, __ATOMIC_RELAXED);
}
void metrics_observe(struct dr_hist *h, uint64_t usec);
/* The gauge block of worker slot `slot`; a private block when m is NULL
 * or slot is out of range (tests, tools). Never NULL. */
struct dr_proc_gauges *metrics_proc(struct dr_metrics *m, unsigned slot);
/* Zero a block whose process is gone (the supervisor, after reaping it,
 * and before a new process gets the slot). */
void metrics_proc_reset(struct dr_metrics *m, unsigned slot);
/* Status code -> slot in http_requests[][] (and back, for rendering). */
int metrics_status_slot(int status);
int metrics_slot_status(int slot);
enum dr_route_class metrics_route_class(const char *name); /* DR_RC_OTHER if unknown */

/* Prometheus text exposition of everything above. Caller frees *out. */
int metrics_render(const struct dr_metrics *m, char **out, size_t *len);

#endif

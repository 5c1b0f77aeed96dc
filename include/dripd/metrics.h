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

#include <stdbool.h>
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
    /* The catalog writer's priority (metrics_writer_enter): this
     * process's priority commits waiting for or holding SQLite's write
     * lock, and those it finished. */
    int64_t writers_pending;
    uint64_t writes_done;
    /* SSE streams (GET /v1/events) open in this process: the pipeline
     * relays its commits' event seqs (DR_MSG_EVENT) only while some are
     * (metrics_event_streams). */
    int64_t event_streams;
};
#define DR_PROC_SLOTS 64 /* >= the supervisor's worker slots (two generations) */

/* The pipeline view's history (issue 20, src/api/pipeview.c): every
 * DR_HISTORY_STEP_MS the supervisor copies the counters below into a ring
 * of DR_HISTORY_POINTS points (10 minutes), from its existing status tick:
 * no thread, no extra wake-up. One writer (the supervisor); readers copy a
 * point under its seqlock (seq odd while written) and drop a torn one.
 * Every field is a uint64_t, so a point is copied word by word with
 * relaxed atomics. */
#define DR_HISTORY_POINTS 120
#define DR_HISTORY_STEP_MS 5000
struct dr_history_stage {
    uint64_t queued, in_flight; /* gauges summed over the processes, >= 0 */
    uint64_t processed, failed, busy_us;
    uint64_t buckets[DR_HIST_BUCKETS]; /* the duration histogram, non-cumulative */
};
struct dr_history_point {
    uint64_t seq;
    uint64_t t_ms; /* wall clock, ms since the epoch */
    struct dr_history_stage stages[DR_PL_COUNT][DR_STAGE_SLOTS];
    uint64_t uploads_accepted; /* PUT/multipart 202s and tus uploads created (201) */
    uint64_t http_requests, http_bytes_received, open_connections;
    uint64_t jobs_queue_depth, retries, jobs_completed, jobs_failed, restarts;
};
struct dr_history {
    uint64_t head; /* points written so far; the newest is pts[(head - 1) % N] */
    struct dr_history_point pts[DR_HISTORY_POINTS];
};

/* The last DR_ERROR_NOTES failed job attempts (retried or final), written
 * by the pipeline threads that failed them, newest at head - 1. A slot is
 * taken with an atomic increment of head and written under its seqlock. */
#define DR_ERROR_NOTES 16
#define DR_ERROR_TEXT 240
struct dr_error_note {
    uint64_t seq;
    uint64_t t_ms;
    uint64_t pipeline, stage, attempt, final; /* final: 1 failed for good, 0 retried */
    uint64_t text[DR_ERROR_TEXT / 8];         /* "job id\0error\0", NUL-padded */
};
struct dr_error_ring {
    uint64_t head;
    struct dr_error_note notes[DR_ERROR_NOTES];
};

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
    uint64_t uploads_waited;        /* uploads that waited for a place at the queue limit */
    uint64_t ingest_rounds;         /* ingest's durable commit rounds (one sync, one commit) */
    uint64_t ingest_round_requests; /* upload requests those rounds made durable */
    /* cache */
    uint64_t cache_hits, cache_misses, cache_evictions;
    uint64_t cache_fills, cache_fill_failures; /* misses filled (no job row), fills that failed */
    int64_t cache_bytes;                       /* gauge */
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
    /* the pipeline view (see above) */
    struct dr_history history;
    struct dr_error_ring errors;
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
/* The catalog writer's priority (issue 15). SQLite has one writer; the
 * intake's group commits run back to back and poll for the lock, so the
 * pipeline's commits, each finishing many jobs, waited behind them. A
 * priority commit (the pipeline's step commits and claims) counts itself
 * in its process's block from before its BEGIN to its end; the intake's
 * committer (ingest.c) lets the commits pending when it looks finish
 * before it begins its own (bounded: it waits at most a few ms). A block
 * is zeroed with its dead process, so a crash mid-commit cannot hold the
 * intake back. Relaxed atomics: a stale read costs one wait or one turn. */
static inline void metrics_writer_enter(struct dr_proc_gauges *g)
{
    __atomic_fetch_add(&g->writers_pending, 1, __ATOMIC_RELAXED);
}
static inline void metrics_writer_leave(struct dr_proc_gauges *g)
{
    __atomic_fetch_add(&g->writes_done, 1, __ATOMIC_RELAXED); /* before pending drops */
    __atomic_fetch_sub(&g->writers_pending, 1, __ATOMIC_RELAXED);
}
/* The sums over every process block: priority commits pending, and done. */
void metrics_writers(const struct dr_metrics *m, int64_t *pending, uint64_t *done);
/* An SSE stream opens (+1) or ends (-1) in the process of block g. A
 * full barrier: the stream's first read of the event log comes after it,
 * so a commit either sees the stream (metrics_event_streams) or is seen
 * by that read. */
static inline void metrics_event_streams_add(struct dr_proc_gauges *g, int64_t n)
{
    __atomic_fetch_add(&g->event_streams, n, __ATOMIC_SEQ_CST);
}
/* The SSE streams open over every process block, read after a full
 * barrier (the pairing of metrics_event_streams_add). m NULL: 1, so a
 * caller without shared metrics (tests) always sends. */
int64_t metrics_event_streams(const struct dr_metrics *m);
/* Status code -> slot in http_requests[][] (and back, for rendering). */
int metrics_status_slot(int status);
int metrics_slot_status(int slot);
enum dr_route_class metrics_route_class(const char *name); /* DR_RC_OTHER if unknown */

/* The pipeline view's helpers (see struct dr_history). */
const char *metrics_pipeline_name(int pl);     /* "upload", "download", "scrub" */
const char *metrics_stage_name(int pl, int s); /* NULL for an unused slot */
/* The counters now, as a history point (seq 0). */
void metrics_history_now(const struct dr_metrics *m, uint64_t wall_ms, struct dr_history_point *p);
/* The supervisor: append the counters now to the ring. */
void metrics_history_record(struct dr_metrics *m, uint64_t wall_ms);
/* Copy up to max points, oldest first, skipping any being written. */
size_t metrics_history_read(const struct dr_metrics *m, struct dr_history_point *out, size_t max);
/* A pipeline thread: note a failed attempt of job_id at (pl, stage). */
void metrics_note_error(struct dr_metrics *m, int pl, int stage, const char *job_id, int attempt,
                        bool final, const char *error);
/* The noted errors, newest first (up to max); a note's text is read with
 * metrics_error_job / metrics_error_text. */
size_t metrics_errors_read(const struct dr_metrics *m, struct dr_error_note *out, size_t max);
const char *metrics_error_job(const struct dr_error_note *n);
const char *metrics_error_text(const struct dr_error_note *n);
/* Interpolated quantile q (0..1) of a non-cumulative bucket array, as
 * Prometheus's histogram_quantile; -1 when it holds no observation. */
double metrics_quantile(const uint64_t buckets[DR_HIST_BUCKETS], double q);

/* Prometheus text exposition of everything above. Caller frees *out. */
int metrics_render(const struct dr_metrics *m, char **out, size_t *len);

#endif

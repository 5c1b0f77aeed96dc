/* worker.h - the contract between the supervisor and its worker processes.
 *
 * The supervisor forks each worker with a dr_worker_ctx. The worker:
 *   - sets its process name (prctl PR_SET_NAME "dripd-http"/"dripd-pipeline")
 *     and log role, then runs its *_worker_main() and returns an exit status;
 *   - sends DR_MSG_READY once it serves, then DR_MSG_HEARTBEAT every
 *     cfg->supervisor.heartbeat_interval from the thread that does its real
 *     work loop (so a hung loop stops the heartbeat);
 *   - on SIGTERM drains (stops taking new work, finishes what it has, up to
 *     cfg->supervisor.drain_timeout) and returns 0;
 *   - returns DR_EXIT_FATAL_CONFIG when it can never run with this config
 *     (the supervisor does not restart it);
 *   - exits when chan_fd reads EOF (the supervisor died).
 *
 * chan_fd is one end of a SOCK_SEQPACKET socketpair; each message is one
 * struct dr_msg. The supervisor relays "notify" messages between roles:
 * DR_MSG_JOB_ENQUEUED from an http worker goes to every pipeline worker,
 * DR_MSG_EVENT from a pipeline worker goes to every http worker (sent only
 * while an http worker has an SSE stream open: metrics.h event_streams). These are
 * wake-ups only: the durable state is in the catalog, so a lost message
 * costs latency, never data (receivers also re-check on a slow timer).
 * For several nodes this relay becomes PostgreSQL LISTEN/NOTIFY.
 */
#ifndef DRIPD_WORKER_H
#define DRIPD_WORKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dr_config;
struct dr_metrics;

#define DR_EXIT_FATAL_CONFIG 78 /* sysexits EX_CONFIG: do not restart */

enum dr_role { DR_ROLE_HTTP = 0, DR_ROLE_PIPELINE = 1, DR_ROLE_COUNT };

enum dr_msg_type {
    DR_MSG_READY = 1,        /* worker -> supervisor: serving */
    DR_MSG_HEARTBEAT = 2,    /* worker -> supervisor: alive; arg = pid */
    DR_MSG_JOB_ENQUEUED = 3, /* http -> pipeline (relayed): arg = queued-job hint */
    DR_MSG_EVENT = 4,        /* pipeline -> http (relayed): arg = newest event seq */
    DR_MSG_STATUS = 5,       /* worker -> supervisor: arg = queue depth (for STATUS=) */
    DR_MSG_FILL = 6,         /* http -> pipeline (relayed): fill the cache entry in data */
    DR_MSG_FILLED = 7,       /* pipeline -> http (relayed): flags DR_FILL_*, data entry\0error */
};
/* DR_MSG_JOB_ENQUEUED flags: only upload jobs were queued (the intake's
 * group commit), so the pipeline wakes its upload starter alone; without
 * it every starter looks (each look at an empty queue is a write
 * transaction, issue 15). */
#define DR_ENQ_UPLOADS 1u

/* DR_MSG_FILLED's flags. */
enum { DR_FILL_OK = 0, DR_FILL_FAILED = 1, DR_FILL_BUSY = 2 };

#define DR_MSG_DATA_LEN 240

struct dr_msg {
    uint32_t type;
    uint32_t flags;
    uint64_t arg;
    char data[DR_MSG_DATA_LEN]; /* DR_MSG_FILL, DR_MSG_FILLED; zeros otherwise */
};

struct dr_worker_ctx {
    const struct dr_config *cfg;
    enum dr_role role;
    int chan_fd;           /* SEQPACKET to the supervisor, non-blocking */
    const int *listen_fds; /* inherited listening sockets (http role) */
    size_t n_listen;
    struct dr_metrics *metrics; /* MAP_SHARED, created by the supervisor */
    unsigned generation;        /* bumps on every reload */
    unsigned slot;              /* the supervisor's worker slot: metrics_proc(metrics, slot) */
};

/* Send one message; never blocks. Returns 0, or -EAGAIN when the channel is
 * full (the message is dropped: heartbeats and wake-ups are idempotent). */
int worker_send(const struct dr_worker_ctx *ctx, enum dr_msg_type type, uint64_t arg);
/* The same with flags (DR_MSG_JOB_ENQUEUED: DR_ENQ_*). */
int worker_send_flags(const struct dr_worker_ctx *ctx, enum dr_msg_type type, uint32_t flags,
                      uint64_t arg);
/* The same with flags and data (len bytes, at most DR_MSG_DATA_LEN; the
 * rest is zeroed). */
int worker_send_data(const struct dr_worker_ctx *ctx, enum dr_msg_type type, uint32_t flags,
                     const void *data, size_t len);
/* Read one message if one is waiting: 1 got one, 0 none, -EPIPE supervisor gone. */
int worker_recv(const struct dr_worker_ctx *ctx, struct dr_msg *msg);

/* The signals of a worker process; both workers call it first thing.
 *   SIGTERM, SIGINT  set a flag and nothing else (SA_RESTART); the worker
 *                    reads it with worker_term_requested() in its own loop
 *                    and drains;
 *   SIGPIPE          ignored: a write to a closed socket or pipe fails with
 *                    EPIPE where it happens;
 *   SIGHUP           ignored. Reload is the supervisor's business: on HUP it
 *                    starts a new generation of workers and sends the old
 *                    ones SIGTERM. A HUP that reaches a worker anyway (a
 *                    closing terminal signals the whole process group, so
 *                    does `kill -HUP -<pgid>`) must neither kill it mid-job
 *                    (the default action) nor make it act alone.
 * Everything else keeps its default. Threads started afterwards block every
 * signal (dr_thread_start), so signals reach the main thread only. */
void worker_install_signals(void);
/* True once SIGTERM or SIGINT arrived. */
bool worker_term_requested(void);

/* Worker entry points; each returns the process exit status. */
int http_worker_main(struct dr_worker_ctx *ctx);
int pipeline_worker_main(struct dr_worker_ctx *ctx);

#endif

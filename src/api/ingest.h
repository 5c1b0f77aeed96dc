/* ingest.h - turning finished upload bodies into durable jobs.
 *
 * Used by every upload route (PUT, multipart, tus). ingest_submit() hands
 * a batch of finished spool files to the committer, which group-commits
 * in three threads (ingest.c): one makes every spool file of every waiting
 * request durable (one syncfs for several files, see spool_sync_batch),
 * the next runs ONE catalog_intake_uploads_deferred() transaction for all
 * of them, and the last makes that commit durable (the WAL's fsync, while
 * the next round's transaction runs), then completes each request on its
 * own loop thread and wakes the pipeline (DR_MSG_JOB_ENQUEUED). Only then
 * may the route answer 202: the bytes and the job are durable.
 *
 * Small bodies (issue 15): a route may keep a body of at most
 * INGEST_INLINE_MAX bytes in memory instead of a spool file (ingest_inline_
 * take) and submit it as the item's body (dr_intake.body): it is committed
 * with its job (table job_bodies), so the commit's one WAL fsync makes the
 * bytes and the job durable together, with no spool file, no file sync
 * and no wait for the sync thread. SQLite catalogs only (a cluster stages
 * its bodies).
 *
 * Back-pressure: the committer's queue is bounded; and before a route
 * reads any body, ingest_admit() lets it in at once while the durable queue
 * is below pipeline.queue_limit, else makes it wait (body unread) until the
 * pipeline drained a place, or answers 503 + Retry-After after a bounded
 * wait (ingest.c, "Admission").
 */
#ifndef DRIPD_INGEST_H
#define DRIPD_INGEST_H

#include <stdbool.h>
#include <stddef.h>

#include "dripd/catalog.h"
#include "dripd/http.h"

struct dr_worker_ctx;

/* Start the committer threads now (else the first ingest_submit starts them
 * with that exchange's config and worker ctx). 0 / -errno. */
int ingest_start(const struct dr_config *cfg, struct dr_worker_ctx *ctx);
/* Commit everything queued, complete it (posts to the loop threads), and
 * stop the committer. Call after the HTTP server has drained. */
void ingest_stop(void);

/* Called on ex's loop thread. rc == 0: the transaction committed and is
 * durable, look at each items[i].result (0 accepted, -EEXIST path taken)
 * and ids. rc < 0: nothing was committed (-ENOSPC, -EIO...), or -EIO,
 * what committed could not be made durable. Also called when the client
 * is gone (http_ex_closed(ex)): the jobs are durable anyway. */
typedef void (*ingest_done_fn)(struct http_exchange *ex, struct dr_intake *items, size_t n, int rc,
                               void *arg);

/* items and fds (open spool fds, one per item) stay owned by the caller and
 * must stay valid until done runs; ingest never closes the fds.
 * Returns 0 (done will run exactly once) or -EAGAIN when the committer
 * queue is full (done will not run; answer 503). */
int ingest_submit(struct http_exchange *ex, struct dr_intake *items, const int *fds, size_t n,
                  ingest_done_fn done, void *arg);
/* The same for tus creations (each item tus_new only, no fds): nothing to
 * sync, and the commit need not be durable when done runs (it is visible
 * to every connection; catalog_intake_creations). ex is not held: the
 * caller may answer (and ex end) before the commit; done then runs with
 * ex NULL on ex's loop thread, and items stay the caller's until then.
 * It commits no later than (in front of) any ingest_submit that follows
 * it. -EINVAL in cluster mode, -EAGAIN when the queue is full. */
int ingest_submit_lazy(struct http_exchange *ex, struct dr_intake *items, size_t n,
                       ingest_done_fn done, void *arg);
/* True when the durable job queue is at pipeline.queue_limit. */
bool ingest_queue_full(struct http_exchange *ex);

/* The commit thread, before each round (see ingest.c): when the durable
 * job queue (m->jobs_queue_depth) holds min_backlog jobs or more, wait
 * until the pipeline's priority commits pending now (metrics_writers) are
 * done, or their processes gone, or max_ms passed. Returns the
 * microseconds it waited (0: the queue was shorter, nothing was pending,
 * or m is NULL). */
struct dr_metrics;
int64_t ingest_yield(const struct dr_metrics *m, int64_t min_backlog, int64_t max_ms);
/* The backlog from which on the commit thread yields, for a queue_limit:
 * what one commit round can hold (INGEST_QUEUE_MAX jobs), at most half of
 * the limit. */
int64_t ingest_yield_backlog(uint64_t queue_limit);
/* Admission of an upload whose head was checked, before any body byte is
 * read (loop thread): go(ex, arg) now when the queue is below the limit
 * and nobody waits before it, else later, in arrival order, once there is
 * room; or 503 + Retry-After (the server draining, or no room within
 * ADMIT_WAIT_MS), and then refused(arg) when not NULL (it frees arg, or
 * marks the request answered). The exchange is held while it waits; for a
 * client gone meanwhile only refused runs. */
typedef void (*ingest_admit_fn)(struct http_exchange *ex, void *arg);
void ingest_admit(struct http_exchange *ex, ingest_admit_fn go, void *arg,
                  void (*refused)(void *arg));
/* Respond 503 problem+json with Retry-After for a full queue or draining. */
void ingest_respond_busy(struct http_exchange *ex);
/* {"media":{...},"job":{...}} JSON text for one accepted item (caller frees);
 * used for 202 bodies. */
/* Inline bodies: at most INGEST_INLINE_MAX bytes each, INGEST_INLINE_BUDGET
 * bytes held by all the requests of the process at once (received or
 * waiting for their commit), so the memory is bounded whatever the number
 * of connections. ingest_inline_take reserves len bytes when the body may
 * be inline (a SQLite catalog, 1 <= len <= INGEST_INLINE_MAX, room in the
 * budget) and says so; else the route spools it. Each reservation is given
 * back once, with ingest_inline_release. */
#define INGEST_INLINE_MAX (16u << 10)
#define INGEST_INLINE_BUDGET (8u << 20)
bool ingest_inline_take(const struct dr_config *cfg, uint64_t len);
void ingest_inline_release(uint64_t len);

/* The first stage of an upload job for its spool file: "process" when
 * processing is on and the file's first bytes may be media (decode_probe;
 * also when it cannot be read), else "encrypt" (a file that is not media
 * skips the stage outright). The file is read through fd when fd >= 0 is
 * readable (spool_create's are), else opened by its path. */
const char *ingest_first_stage(const struct dr_config *cfg, int fd, const char *spool_path);
/* The same for bytes in memory (an inline body). */
const char *ingest_first_stage_mem(const struct dr_config *cfg, const void *data, size_t len);
char *ingest_item_json(const struct dr_intake *item, const char *state);

#endif

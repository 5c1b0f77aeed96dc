/* ingest.c - finished upload bodies become durable jobs, by group commit
 * (see ingest.h).
 *
 * Threads:
 *   - loop threads call ingest_submit(): the request goes on a bounded
 *     FIFO (INGEST_QUEUE_MAX requests; full -> -EAGAIN -> 503) and the
 *     exchange is held (http_ex_hold) until its completion has run;
 *   - ONE committer thread ("dripd-ingest") takes everything that is
 *     waiting (at most BATCH_MAX requests), makes every spool file durable
 *     at once (spool_sync_batch: one syncfs of the spool filesystem when
 *     there are several, instead of one fdatasync + cache flush per file),
 *     fsyncs the spool directory once (also the flush that ends the
 *     syncfs), then runs ONE
 *     catalog_intake_uploads() transaction for all items of all requests,
 *     posts each completion to its exchange's loop thread
 *     (http_thread_post: a locked list + event_active per loop), and wakes
 *     the pipeline (DR_MSG_JOB_ENQUEUED) and bumps jobs_queue_depth.
 *   So N concurrent uploads cost one SQLite commit (one WAL fsync) instead
 *   of N, and while one batch commits the next one gathers.
 *
 * Guarantees: done() runs exactly once per accepted submit, on the
 * exchange's loop thread, after the batch's transaction committed (rc 0)
 * or failed (rc < 0, nothing of that request committed). A request whose
 * spool file cannot be synced is left out of the transaction and gets
 * that error; the rest of the batch commits.
 *
 * Lock order: the queue mutex is a leaf; nothing else is locked here.
 * The committer starts on the first submit (or ingest_start) and stops in
 * ingest_stop(), which commits what is queued first.
 */
#include "dripd/ingest.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/spool.h"
#include "dripd/util.h"
#include "dripd/worker.h"

#define INGEST_QUEUE_MAX 512
#define BATCH_MAX 128
#define BUSY_RETRIES 3

struct ingest_req {
    struct ingest_req *next;
    struct http_exchange *ex;
    struct http_thread *t;
    struct dr_intake *items;
    const int *fds;
    size_t n;
    ingest_done_fn done;
    void *arg;
    int rc;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ingest_req *head, *tail;
    unsigned n;
    bool started, stop;
    pthread_t th;
    const struct dr_config *cfg;
    struct dr_worker_ctx *ctx;
    struct dr_metrics *metrics;
    struct catalog *cat;
} G = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void complete(struct http_thread *t, void *arg)
{
    (void)t;
    struct ingest_req *r = arg;
    r->done(r->ex, r->items, r->n, r->rc, r->arg);
    http_ex_release(r->ex);
    free(r);
}

static int open_catalog(void)
{
    if (G.cat != NULL)
        return 0;
    int rc = catalog_open(G.cfg->data_dir, &G.cat);
    if (rc < 0) {
        log_error("ingest: cannot open the catalog: %s", strerror(-rc));
        G.cat = NULL;
    }
    return rc;
}

/* Commit one batch (a list of requests). */
static void commit_batch(struct ingest_req *batch)
{
    size_t total = 0, nfds = 0;
    const char *dir_of = NULL;
    for (struct ingest_req *r = batch; r != NULL; r = r->next)
        nfds += r->n;
    int *fds = xcalloc(nfds ? nfds : 1, sizeof *fds);
    int *rcs = xcalloc(nfds ? nfds : 1, sizeof *rcs);
    size_t k = 0;
    for (struct ingest_req *r = batch; r != NULL; r = r->next)
        for (size_t i = 0; i < r->n; i++)
            fds[k++] = r->fds[i];
    spool_sync_batch(fds, rcs, nfds);
    k = 0;
    for (struct ingest_req *r = batch; r != NULL; r = r->next) {
        r->rc = 0;
        for (size_t i = 0; i < r->n; i++, k++) {
            if (rcs[k] < 0 && r->rc == 0) {
                log_error("ingest: syncing %s: %s", r->items[i].spool_path, strerror(-rcs[k]));
                r->rc = rcs[k];
            }
        }
        if (r->rc == 0) {
            total += r->n;
            if (r->n > 0 && dir_of == NULL)
                dir_of = r->items[0].spool_path;
        }
    }
    free(fds);
    free(rcs);
    /* the spool files' directory entries must be durable too */
    if (dir_of != NULL) {
        int rc = dr_fsync_parent(dir_of);
        if (rc < 0) {
            log_error("ingest: fsync of the spool directory: %s", strerror(-rc));
            for (struct ingest_req *r = batch; r != NULL; r = r->next)
                if (r->rc == 0)
                    r->rc = rc;
            total = 0;
        }
    }
    int rc = 0;
    if (total > 0) {
        struct dr_intake *all = xcalloc(total, sizeof *all);
        k = 0;
        for (struct ingest_req *r = batch; r != NULL; r = r->next)
            if (r->rc == 0)
                for (size_t i = 0; i < r->n; i++)
                    all[k++] = r->items[i];
        rc = open_catalog();
        for (int attempt = 0; rc == 0 || rc == -EBUSY; attempt++) {
            rc = catalog_intake_uploads(G.cat, all, total);
            if (rc != -EBUSY || attempt >= BUSY_RETRIES)
                break;
            log_warn("ingest: catalog busy, retrying the batch of %zu", total);
        }
        k = 0;
        uint64_t accepted = 0;
        for (struct ingest_req *r = batch; r != NULL; r = r->next) {
            if (r->rc != 0)
                continue;
            for (size_t i = 0; i < r->n; i++, k++) {
                memcpy(r->items[i].media_id, all[k].media_id, sizeof all[k].media_id);
                memcpy(r->items[i].job_id, all[k].job_id, sizeof all[k].job_id);
                r->items[i].result = rc < 0 ? rc : all[k].result;
                if (rc == 0 && all[k].result == 0)
                    accepted++;
            }
            r->rc = rc;
        }
        free(all);
        if (rc < 0)
            log_error("ingest: intake of %zu uploads failed: %s", total, strerror(-rc));
        else
            log_debug("ingest: committed %zu uploads (%" PRIu64 " accepted)", total, accepted);
        if (accepted > 0 && G.metrics != NULL)
            metrics_gauge_add(&G.metrics->jobs_queue_depth, (int64_t)accepted);
        /* completions first, then wake the pipeline */
        for (struct ingest_req *r = batch, *next; r != NULL; r = next) {
            next = r->next;
            http_thread_post(r->t, complete, r);
        }
        if (accepted > 0 && G.ctx != NULL)
            worker_send(G.ctx, DR_MSG_JOB_ENQUEUED, accepted);
        return;
    }
    for (struct ingest_req *r = batch, *next; r != NULL; r = next) {
        next = r->next;
        http_thread_post(r->t, complete, r);
    }
}

static void *committer_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&G.mu);
        while (G.head == NULL && !G.stop)
            pthread_cond_wait(&G.cv, &G.mu);
        if (G.head == NULL) {
            pthread_mutex_unlock(&G.mu);
            break;
        }
        /* take up to BATCH_MAX requests */
        struct ingest_req *batch = G.head, *last = G.head;
        unsigned k = 1;
        while (last->next != NULL && k < BATCH_MAX) {
            last = last->next;
            k++;
        }
        G.head = last->next;
        if (G.head == NULL)
            G.tail = NULL;
        last->next = NULL;
        G.n -= k;
        pthread_mutex_unlock(&G.mu);
        commit_batch(batch);
    }
    catalog_close(G.cat);
    G.cat = NULL;
    return NULL;
}

/* Start the committer (idempotent). Caller holds G.mu. */
static int start_locked(const struct dr_config *cfg, struct dr_worker_ctx *ctx,
                        struct dr_metrics *metrics)
{
    if (G.started)
        return 0;
    G.cfg = cfg;
    G.ctx = ctx;
    G.metrics = metrics;
    G.stop = false;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&G.th, NULL, committer_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error("ingest: cannot start the committer thread: %s", strerror(rc));
        return -rc;
    }
    pthread_setname_np(G.th, "dripd-ingest");
    G.started = true;
    return 0;
}

int ingest_start(const struct dr_config *cfg, struct dr_worker_ctx *ctx)
{
    pthread_mutex_lock(&G.mu);
    int rc = start_locked(cfg, ctx, ctx ? ctx->metrics : NULL);
    pthread_mutex_unlock(&G.mu);
    return rc;
}

void ingest_stop(void)
{
    pthread_mutex_lock(&G.mu);
    if (!G.started) {
        pthread_mutex_unlock(&G.mu);
        return;
    }
    G.stop = true;
    pthread_cond_broadcast(&G.cv);
    pthread_mutex_unlock(&G.mu);
    pthread_join(G.th, NULL);
    pthread_mutex_lock(&G.mu);
    G.started = false;
    pthread_mutex_unlock(&G.mu);
}

int ingest_submit(struct http_exchange *ex, struct dr_intake *items, const int *fds, size_t n,
                  ingest_done_fn done, void *arg)
{
    pthread_mutex_lock(&G.mu);
    int rc = start_locked(http_cfg(ex), http_worker_ctx(ex), http_ex_metrics(ex));
    if (rc == 0 && (G.n >= INGEST_QUEUE_MAX || G.stop))
        rc = -EAGAIN;
    if (rc < 0) {
        pthread_mutex_unlock(&G.mu);
        return -EAGAIN;
    }
    struct ingest_req *r = xcalloc(1, sizeof *r);
    r->ex = ex;
    r->t = http_ex_thread(ex);
    r->items = items;
    r->fds = fds;
    r->n = n;
    r->done = done;
    r->arg = arg;
    if (G.tail)
        G.tail->next = r;
    else
        G.head = r;
    G.tail = r;
    G.n++;
    http_ex_hold(ex);
    pthread_cond_signal(&G.cv);
    pthread_mutex_unlock(&G.mu);
    return 0;
}

bool ingest_queue_full(struct http_exchange *ex)
{
    const struct dr_config *cfg = http_cfg(ex);
    int64_t depth = __atomic_load_n(&http_ex_metrics(ex)->jobs_queue_depth, __ATOMIC_RELAXED);
    return depth >= 0 && (uint64_t)depth >= cfg->pipeline.queue_limit;
}

void ingest_respond_busy(struct http_exchange *ex)
{
    metrics_add(&http_ex_metrics(ex)->uploads_rejected_full, 1);
    http_add_header(ex, "Retry-After", "5");
    if (http_server_draining(http_thread_server(http_ex_thread(ex))))
        http_respond_problem(ex, 503,
                             "the server is shutting down; retry on another node or later");
    else
        http_respond_problem(
            ex, 503, "the job queue is full (pipeline.queue_limit %" PRIu64 "); retry later",
            http_cfg(ex)->pipeline.queue_limit);
}

char *ingest_item_json(const struct dr_intake *item, const char *state)
{
    char *folder = NULL, *name = NULL;
    const char *slash = strrchr(item->path, '/');
    if (slash == NULL || slash == item->path)
        folder = xstrdup("/");
    else
        folder = xstrndup(item->path, (size_t)(slash - item->path));
    name = xstrdup(slash ? slash + 1 : item->path);
    char ts[32];
    dr_fmt_time(dr_now_ms(), ts, sizeof ts);
    json_t *media =
        json_pack("{s:s, s:s, s:s, s:s, s:I, s:n, s:s?, s:s, s:s, s:s}", "id", item->media_id,
                  "path", item->path, "name", name, "folder", folder, "size",
                  (json_int_t)item->size, "sha256", "content_type", item->content_type, "state",
                  state ? state : "queued", "owner", item->owner, "created_at", ts);
    json_t *job = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:n}", "id", item->job_id, "kind",
                            "upload", "state", "queued", "stage", "encrypt", "media_id",
                            item->media_id, "attempts", 0, "error");
    json_t *o = json_pack("{s:o, s:o}", "media", media, "job", job);
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    free(folder);
    free(name);
    return s ? s : xstrdup("{}");
}

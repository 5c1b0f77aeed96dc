/* ingest.c - finished upload bodies become durable jobs, by group commit
 * (see ingest.h).
 *
 * Threads:
 *   - loop threads call ingest_submit(): the request goes on the "waiting"
 *     FIFO (at most INGEST_QUEUE_MAX requests in flight in all; more ->
 *     -EAGAIN -> 503) and the exchange is held (http_ex_hold) until its
 *     completion has run;
 *   - the sync thread ("dripd-ingest") takes everything waiting (at most
 *     BATCH_MAX requests), makes every spool file durable at once
 *     (spool_sync_batch: one syncfs of the spool filesystem when there are
 *     several, instead of one fdatasync + cache flush per file), fsyncs
 *     the spool directory once (also the cache flush that ends the
 *     syncfs), and moves the requests to the "synced" FIFO;
 *   - cluster mode (stager.h: a PostgreSQL catalog) adds a stage between
 *     the two: STAGE_THREADS threads ("dripd-stage") take the synced
 *     requests one at a time and seal each item's spool file into the
 *     shared store as its body's one part (stager_put; tus items are
 *     never staged here: tus.c stages each request's part itself and does
 *     not use the group commit in cluster mode), in parallel, so
 *     the 202 never rests on this node's disk alone; a request whose part
 *     cannot be staged gets that error (503 for a transient one). Only
 *     then does a request reach the commit thread;
 *   - the commit thread ("dripd-commit") takes everything synced, runs ONE
 *     catalog_intake_uploads_deferred() transaction for all items of all
 *     requests, bumps jobs_queue_depth and hands the round to the durable
 *     thread; it does not wait for the round's WAL fsync, so its next
 *     round's transaction runs while that fsync does (issue 15: the fsync
 *     was ~1.5 of the ~4 ms a round spent committing);
 *   - the durable thread ("dripd-durable") takes every round committed
 *     so far, makes them durable with one fsync of the WAL
 *     (catalog_make_durable, on its own catalog handle), then posts each
 *     completion to its exchange's loop thread (http_thread_post: a
 *     locked list + event_active per loop) and wakes the pipeline's upload
 *     starter (DR_MSG_JOB_ENQUEUED, DR_ENQ_UPLOADS). Rounds complete in
 *     the order they committed.
 *   - lazy requests (ingest_submit_lazy: tus creations, which promise no
 *     durability) skip the sync thread: the commit thread commits them
 *     first, in a transaction of their own without a WAL fsync
 *     (catalog_intake_creations), so a creation waits for no sync of
 *     anybody's; the next durable commit makes them durable too. They
 *     hold no exchange: tus answers the 201 at once, and done(NULL, ...)
 *     runs on the submitting loop thread after the commit. A durable
 *     round takes the lazy requests queued until then together with its
 *     batch (under G.mu) and commits them first: a lazy request submitted
 *     before a durable one is committed before it (tus lets the PATCH
 *     that finishes an upload go on before its creation committed).
 *   Each durable round counts in dripd_ingest_rounds_total, its requests
 *   in dripd_ingest_round_requests_total (the batch size, for tests and
 *   benchmarks). Test hook DRIPD_TEST_INGEST_GATHER=N: a sync round
 *   waits for N requests (at most GATHER_MAX_MS).
 *   Before each durable round (the lazy ones go at once) the commit
 *   thread yields the catalog's writer to the pipeline (ingest_yield,
 *   issue 15) when the pipeline is behind: when the durable job queue
 *   holds YIELD_BACKLOG jobs or more (what one round can hold; at most
 *   half of pipeline.queue_limit: ingest_yield_backlog). Then the
 *   pipeline's commits that are pending when it looks (metrics.h,
 *   metrics_writer_enter: a step commit finishing a batch of jobs, a
 *   claim) go first, for at most YIELD_MAX_MS, and only then does it take
 *   the synced requests, those synced meanwhile included. SQLite has one
 *   writer, and these commits, back to back, each polling for the lock,
 *   kept the pipeline's commits (SQLite's busy handler sleeps 1, 2, 5...
 *   ms) waiting, so the stages finished ~1 job in 3 of their drain rate
 *   while the intake ran. Meanwhile the next batch grows: the intake
 *   spends less per upload in commits exactly when the stages are busy.
 *   The threshold: some commit of the pipeline's is pending nearly
 *   always, so a yield before every round made every upload wait, also
 *   while the pipeline kept up; now a pipeline that keeps up costs the
 *   intake nothing, and one that falls behind gets the writer until its
 *   queue is back under the threshold (under sustained load the backlog
 *   stays near it).
 *   Inline requests (every item's bytes in memory, dr_intake.body: small
 *   PUTs and tus uploads, ingest.h) skip the sync thread: there is no
 *   file to sync, the bytes are committed with their jobs (job_bodies),
 *   and the round's WAL fsync makes them durable with the jobs. submit() probes each body for its
 * first stage and appends the request to the "synced" FIFO itself. (Order: such a request may be
 * committed before a spooled one submitted earlier; concurrent requests have no order, and each
 * request's items keep theirs.) So N concurrent uploads cost one syncfs and one SQLite commit (one
 * WAL fsync) instead of N of each, and the two stages overlap: while one batch commits, the next
 * one is being synced and the one after that gathers. A stage that is slower than the other gets
 * bigger batches.
 *
 * Guarantees: done() runs exactly once per accepted submit, on the
 * exchange's loop thread, after the transaction that holds its items
 * committed and its commit was made durable (rc 0), or failed (rc < 0:
 * nothing of that request committed; or -EIO, the fsync after the commit
 * failed, and what committed stands without anybody told of it).
 * Nothing is committed before its spool files and their directory entry
 * are durable (the synced FIFO only holds requests whose sync finished).
 * A request whose spool file cannot be synced is left out of the
 * transaction and gets that error; the rest of the batch commits.
 * Requests keep their submission order through both stages (not through
 * the parallel staging: concurrent requests have no order anyway, and
 * each request's items keep theirs). In cluster mode nothing is committed
 * before its parts are in the store, and a part the commit did not record
 * (a taken path, a failed transaction) is deleted again.
 *
 * Admission (ingest_admit, loop threads only; issue 15): an upload whose
 * head arrives while the durable queue is at pipeline.queue_limit is not
 * refused at once. It waits, its body unread (the client's bytes stay in
 * the kernel: "stop reading"), on its loop thread's FIFO of waiters, and
 * a 10 ms timer lets waiters in, oldest first, as the queue drains below
 * the limit; one still waiting after ADMIT_WAIT_MS gets 503 + Retry-After
 * (the seconds the pipeline needs, at its recent job rate, to drain what
 * is over the limit). So under sustained overload the intake runs at the
 * pipeline's pace with a bounded wait, instead of accepting at full speed
 * and then refusing everybody. Waiters are bounded by the connections
 * (one exchange each) and by ADMIT_MAX per loop thread. The FIFO and its
 * timer are thread-local; the job-rate estimate is a pair of atomics.
 *
 * Lock order: the one mutex G.mu is a leaf (the FIFOs, the in-flight
 * count, start/stop); nothing else is locked here, and no I/O runs under
 * it. The threads start on the first submit (or ingest_start) and stop in
 * ingest_stop(), which syncs, stages and commits what is queued first.
 */
#include "ingest.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/decode.h"
#include "dripd/decode_proto.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/path.h"
#include "spool.h"
#include "stager.h"
#include "dripd/util.h"
#include "dripd/worker.h"

#define INGEST_QUEUE_MAX 512 /* requests submitted and not yet completed */
#define BATCH_MAX 128        /* requests per sync round */
#define BUSY_RETRIES 3
#define STAGE_THREADS 4 /* cluster mode: parts put into the store at once */
#define YIELD_MAX_MS 20 /* longest wait of a commit round for the pipeline's commits */
#define YIELD_POLL_US 100
#define YIELD_BACKLOG INGEST_QUEUE_MAX /* queued jobs from which on the intake yields */
#define GATHER_MAX_MS 20000            /* test hook DRIPD_TEST_INGEST_GATHER: longest gather */

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
    char (*bodies)[DR_ID_LEN + 1]; /* cluster mode: each item's staged body (= its part) */
};

struct fifo {
    struct ingest_req *head, *tail;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv_sync, cv_commit;
    struct fifo waiting;     /* submitted, not yet synced */
    struct fifo tostage;     /* cluster mode: synced, not yet staged */
    struct fifo synced;      /* spool files durable (and staged) or failed, not yet committed */
    struct fifo lazy;        /* ingest_submit_lazy: tus creations, not yet committed */
    struct fifo committed;   /* committed, not yet durable (the durable thread's) */
    uint64_t committed_jobs; /* jobs those hold, for the pipeline's wake-up */
    unsigned n;              /* requests submitted and not yet completed */
    bool started, starting, stop, sync_done, stage_done, commit_done;
    bool staging;     /* cluster mode (stager_on) */
    unsigned stagers; /* stage threads still running */
    unsigned gather;  /* test hook: requests a sync round waits for (gather_locked) */
    pthread_cond_t cv_stage, cv_durable;
    pthread_t sync_th, commit_th, durable_th, stage_th[STAGE_THREADS];
    const struct dr_config *cfg;
    struct dr_worker_ctx *ctx;
    struct dr_metrics *metrics;
    struct catalog *cat;  /* the commit thread's */
    struct catalog *dcat; /* the durable thread's */
} G = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .cv_sync = PTHREAD_COND_INITIALIZER,
       .cv_commit = PTHREAD_COND_INITIALIZER,
       .cv_stage = PTHREAD_COND_INITIALIZER,
       .cv_durable = PTHREAD_COND_INITIALIZER};

/* Append a NULL-terminated list. Caller holds G.mu. */
static void fifo_append(struct fifo *f, struct ingest_req *list)
{
    if (list == NULL)
        return;
    if (f->tail)
        f->tail->next = list;
    else
        f->head = list;
    struct ingest_req *last = list;
    while (last->next != NULL)
        last = last->next;
    f->tail = last;
}

/* Detach the first max requests (all if fewer) as a NULL-terminated list.
 * Caller holds G.mu. */
static struct ingest_req *fifo_take(struct fifo *f, unsigned max)
{
    struct ingest_req *list = f->head, *last = f->head;
    if (list == NULL)
        return NULL;
    for (unsigned k = 1; last->next != NULL && k < max; k++)
        last = last->next;
    f->head = last->next;
    if (f->head == NULL)
        f->tail = NULL;
    last->next = NULL;
    return list;
}

static void complete(struct http_thread *t, void *arg)
{
    (void)t;
    struct ingest_req *r = arg;
    r->done(r->ex, r->items, r->n, r->rc, r->arg);
    if (r->ex != NULL) /* a lazy request holds no exchange */
        http_ex_release(r->ex);
    free(r->bodies);
    free(r);
}

/* The calling thread's catalog handle (G.cat or G.dcat), opened once. */
static int open_catalog(struct catalog **cat)
{
    if (*cat != NULL)
        return 0;
    int rc = catalog_open(G.cfg, cat);
    if (rc < 0) {
        log_error("ingest: cannot open the catalog: %s", strerror(-rc));
        *cat = NULL;
    }
    return rc;
}

/* Make the spool files of a list of requests durable; a request whose
 * file (or the directory) could not be synced gets r->rc < 0. */
static void sync_batch(struct ingest_req *batch)
{
    size_t nfds = 0;
    const char *dir_of = NULL;
    for (struct ingest_req *r = batch; r != NULL; r = r->next)
        nfds += r->n;
    int *fds = xcalloc(nfds ? nfds : 1, sizeof *fds);
    int *rcs = xcalloc(nfds ? nfds : 1, sizeof *rcs);
    size_t k = 0;
    for (struct ingest_req *r = batch; r != NULL; r = r->next)
        for (size_t i = 0; i < r->n; i++)
            if (r->fds[i] >= 0) /* -1: synced already, or a test skips it */
                fds[k++] = r->fds[i];
    spool_sync_batch(fds, rcs, k);
    k = 0;
    for (struct ingest_req *r = batch; r != NULL; r = r->next) {
        r->rc = 0;
        for (size_t i = 0; i < r->n; i++) {
            int src = r->fds[i] >= 0 ? rcs[k++] : 0;
            if (r->items[i].body != NULL) { /* inline: probed here unless submit() did */
                if (r->items[i].stage == NULL)
                    r->items[i].stage =
                        ingest_first_stage_mem(G.cfg, r->items[i].body, r->items[i].body_len);
            } else if (r->items[i].tus_new == NULL || r->items[i].tus_id != NULL) /* makes a job */
                r->items[i].stage = ingest_first_stage(G.cfg, r->fds[i], r->items[i].spool_path);
            if (src < 0 && r->rc == 0) {
                log_error("ingest: syncing %s: %s", r->items[i].spool_path, strerror(-src));
                r->rc = src;
            }
        }
        for (size_t i = 0; r->rc == 0 && i < r->n && dir_of == NULL; i++)
            dir_of = r->items[i].spool_path; /* NULL for an inline item */
    }
    free(fds);
    free(rcs);
    /* the spool files' directory entries must be durable too */
    if (dir_of != NULL && !dr_test_skip_sync("spool_dir")) {
        int rc = dr_fsync_parent(dir_of);
        if (rc < 0) {
            log_error("ingest: fsync of the spool directory: %s", strerror(-rc));
            for (struct ingest_req *r = batch; r != NULL; r = r->next)
                if (r->rc == 0)
                    r->rc = rc;
        }
    }
}

/* Release the in-flight count of a list and post each completion. */
static void complete_all(struct ingest_req *batch)
{
    unsigned k = 0;
    for (struct ingest_req *r = batch; r != NULL; r = r->next)
        k++;
    pthread_mutex_lock(&G.mu);
    G.n -= k;
    pthread_mutex_unlock(&G.mu);
    for (struct ingest_req *r = batch, *next; r != NULL; r = next) {
        next = r->next;
        http_thread_post(r->t, complete, r);
    }
}

/* Queue a committed round for the durable thread; jobs: the jobs it made. */
static void hand_durable(struct ingest_req *batch, uint64_t jobs)
{
    pthread_mutex_lock(&G.mu);
    fifo_append(&G.committed, batch);
    G.committed_jobs += jobs;
    pthread_cond_signal(&G.cv_durable);
    pthread_mutex_unlock(&G.mu);
}

/* Make the committed rounds of the list durable with one fsync of the
 * WAL (should it fail, what they committed stands, but each request that
 * committed gets the error: nobody was told yet), then complete them and
 * wake the pipeline for their jobs. */
static void make_durable(struct ingest_req *list, uint64_t jobs)
{
    bool committed = false;
    for (struct ingest_req *r = list; r != NULL; r = r->next)
        committed = committed || r->rc == 0;
    int rc = 0;
    if (committed) {
        rc = open_catalog(&G.dcat);
        if (rc == 0)
            rc = catalog_make_durable(G.dcat, DR_WRITER_INTAKE);
        if (rc < 0) {
            log_error("ingest: making the intake durable: %s", strerror(-rc));
            rc = -EIO;
        }
    }
    for (struct ingest_req *r = list; rc < 0 && r != NULL; r = r->next) {
        if (r->rc != 0)
            continue;
        r->rc = rc;
        for (size_t i = 0; i < r->n; i++)
            if (r->items[i].result == 0)
                r->items[i].result = rc;
    }
    /* completions first, then wake the pipeline */
    complete_all(list);
    if (rc == 0 && jobs > 0 && G.ctx != NULL)
        worker_send_flags(G.ctx, DR_MSG_JOB_ENQUEUED, DR_ENQ_UPLOADS, jobs);
}

static void *durable_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&G.mu);
        while (G.committed.head == NULL && !G.commit_done)
            pthread_cond_wait(&G.cv_durable, &G.mu);
        struct ingest_req *list = fifo_take(&G.committed, INGEST_QUEUE_MAX);
        uint64_t jobs = G.committed_jobs;
        G.committed_jobs = 0;
        pthread_mutex_unlock(&G.mu);
        if (list == NULL)
            break;
        make_durable(list, jobs);
    }
    catalog_close(G.dcat);
    G.dcat = NULL;
    return NULL;
}

/* ONE transaction for every synced request of the list, then hand them
 * all to the durable thread (those that failed to sync with their error),
 * which completes them once the commit is durable. lazy: a list of
 * ingest_submit_lazy requests, committed by catalog_intake_creations and
 * completed at once. */
static void commit_batch(struct ingest_req *batch, bool lazy)
{
    size_t total = 0, k;
    for (struct ingest_req *r = batch; r != NULL; r = r->next)
        if (r->rc == 0)
            total += r->n;
    int rc = 0;
    uint64_t accepted = 0;
    if (total > 0) {
        struct dr_intake *all = xcalloc(total, sizeof *all);
        k = 0;
        for (struct ingest_req *r = batch; r != NULL; r = r->next)
            if (r->rc == 0)
                for (size_t i = 0; i < r->n; i++)
                    all[k++] = r->items[i];
        rc = open_catalog(&G.cat);
        for (int attempt = 0; rc == 0 || rc == -EBUSY; attempt++) {
            rc = lazy ? catalog_intake_creations(G.cat, all, total)
                      : catalog_intake_uploads_deferred(G.cat, all, total);
            if (rc != -EBUSY || attempt >= BUSY_RETRIES)
                break;
            log_warn("ingest: catalog busy, retrying the batch of %zu", total);
        }
        k = 0;
        for (struct ingest_req *r = batch; r != NULL; r = r->next) {
            if (r->rc != 0)
                continue;
            for (size_t i = 0; i < r->n; i++, k++) {
                memcpy(r->items[i].media_id, all[k].media_id, sizeof all[k].media_id);
                memcpy(r->items[i].job_id, all[k].job_id, sizeof all[k].job_id);
                r->items[i].created_at = all[k].created_at;
                r->items[i].renamed = all[k].renamed; /* the item owns it (it was NULL) */
                r->items[i].version = all[k].version;
                memcpy(r->items[i].replaced, all[k].replaced, sizeof all[k].replaced);
                r->items[i].result = rc < 0 ? rc : all[k].result;
                if (rc == 0 && all[k].result == 0 && all[k].job_id[0] != '\0')
                    accepted++; /* a tus creation makes no job */
            }
            r->rc = rc;
        }
        free(all);
        /* parts the transaction did not record will never be read (one
         * whose commit outcome stayed unknown may be: the staged-gc
         * collector's orphan sweep deletes it if no row names it) */
        for (struct ingest_req *r = batch; G.staging && r != NULL; r = r->next)
            for (size_t i = 0; i < r->n; i++)
                if (r->items[i].staged != NULL && r->items[i].result != 0 &&
                    r->items[i].result != -ENOTCONN)
                    stager_delete(G.cfg, r->items[i].staged, r->items[i].staged_part);
        if (rc < 0)
            log_error("ingest: intake of %zu uploads failed: %s", total, strerror(-rc));
        else
            log_debug("ingest: committed %zu uploads (%" PRIu64 " accepted)", total, accepted);
        if (accepted > 0 && G.metrics != NULL)
            metrics_gauge_add(&G.metrics->jobs_queue_depth, (int64_t)accepted);
        if (!lazy && G.metrics != NULL) {
            uint64_t reqs = 0;
            for (struct ingest_req *r = batch; r != NULL; r = r->next)
                reqs += r->rc == 0;
            metrics_add(&G.metrics->ingest_rounds, 1);
            metrics_add(&G.metrics->ingest_round_requests, reqs);
        }
    }
    if (lazy)
        complete_all(batch); /* a lazy commit makes no job */
    else
        hand_durable(batch, accepted); /* also a round that failed: in order */
}

/* Test hook DRIPD_TEST_INGEST_GATHER=N (blackbox tests of the batching):
 * a round starts once N requests wait, or GATHER_MAX_MS after the first
 * one came. Caller holds G.mu. */
static void gather_locked(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += GATHER_MAX_MS / 1000;
    for (;;) {
        unsigned n = 0;
        for (struct ingest_req *r = G.waiting.head; r != NULL; r = r->next)
            n++;
        if (n >= G.gather || G.stop ||
            pthread_cond_timedwait(&G.cv_sync, &G.mu, &until) == ETIMEDOUT)
            return;
    }
}

static void *sync_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&G.mu);
        while (G.waiting.head == NULL && !G.stop)
            pthread_cond_wait(&G.cv_sync, &G.mu);
        if (G.gather > 1)
            gather_locked();
        struct ingest_req *batch = fifo_take(&G.waiting, BATCH_MAX);
        if (batch == NULL) {
            G.sync_done = true;
            pthread_cond_signal(&G.cv_commit);
            pthread_cond_broadcast(&G.cv_stage);
            pthread_mutex_unlock(&G.mu);
            break;
        }
        pthread_mutex_unlock(&G.mu);
        sync_batch(batch);
        pthread_mutex_lock(&G.mu);
        if (G.staging) {
            fifo_append(&G.tostage, batch);
            pthread_cond_broadcast(&G.cv_stage);
        } else {
            fifo_append(&G.synced, batch);
            pthread_cond_signal(&G.cv_commit);
        }
        pthread_mutex_unlock(&G.mu);
    }
    return NULL;
}

/* Cluster mode: each item's spool file becomes its body's one part in
 * the store (the body's id is the part's), before anything commits. */
static void stage_req(struct ingest_req *r)
{
    if (r->rc != 0 || r->n == 0)
        return;
    r->bodies = xcalloc(r->n, sizeof *r->bodies);
    for (size_t i = 0; i < r->n && r->rc == 0; i++) {
        struct dr_intake *it = &r->items[i];
        if (it->tus_new != NULL || it->tus_id != NULL)
            continue; /* tus stages its own parts (tus.c, work_commit_staged) */
        dr_id_new(r->bodies[i]);
        struct stager_part p = {.body = r->bodies[i],
                                .part = r->bodies[i],
                                .owner = it->owner,
                                .path = it->path,
                                .content_type = it->content_type};
        char err[256] = "";
        int rc = stager_put(G.cfg, &p, it->spool_path, err, sizeof err);
        if (rc < 0) {
            log_error("ingest: staging %s of %s in the store: %s", it->path, it->owner, err);
            /* a store that does not answer is an outage: 503, retry */
            r->rc = rc == -EAGAIN || rc == -ETIMEDOUT ? -EAGAIN : rc;
            for (size_t k = 0; k < i; k++) {
                if (r->items[k].staged == NULL)
                    continue; /* a tus item */
                stager_delete(G.cfg, r->bodies[k], r->bodies[k]);
                r->items[k].staged = r->items[k].staged_part = NULL;
            }
            break;
        }
        it->staged = it->staged_part = r->bodies[i];
        it->staged_off = 0;
    }
}

static void *stage_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&G.mu);
        while (G.tostage.head == NULL && !G.sync_done)
            pthread_cond_wait(&G.cv_stage, &G.mu);
        struct ingest_req *r = fifo_take(&G.tostage, 1);
        if (r == NULL) {
            if (--G.stagers == 0) {
                G.stage_done = true;
                pthread_cond_signal(&G.cv_commit);
            }
            pthread_mutex_unlock(&G.mu);
            break;
        }
        pthread_mutex_unlock(&G.mu);
        stage_req(r);
        pthread_mutex_lock(&G.mu);
        fifo_append(&G.synced, r);
        pthread_cond_signal(&G.cv_commit);
        pthread_mutex_unlock(&G.mu);
    }
    return NULL;
}

int64_t ingest_yield_backlog(uint64_t queue_limit)
{
    return (int64_t)DR_MIN((uint64_t)YIELD_BACKLOG, queue_limit / 2);
}

int64_t ingest_yield(const struct dr_metrics *m, int64_t min_backlog, int64_t max_ms)
{
    int64_t pending;
    uint64_t done0, done;
    if (m == NULL || __atomic_load_n(&m->jobs_queue_depth, __ATOMIC_RELAXED) < min_backlog)
        return 0;
    metrics_writers(m, &pending, &done0);
    if (pending <= 0)
        return 0;
    int64_t t0 = (int64_t)dr_mono_ns(), now = t0;
    while (now - t0 < max_ms * 1000000) {
        struct timespec ts = {0, YIELD_POLL_US * 1000L};
        nanosleep(&ts, NULL);
        now = (int64_t)dr_mono_ns();
        int64_t p;
        metrics_writers(m, &p, &done);
        /* the ones pending at the start are done (or their process is) */
        if (p <= 0 || done >= done0 + (uint64_t)pending)
            break;
    }
    return (now - t0) / 1000;
}

static void *commit_main(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&G.mu);
        while (G.synced.head == NULL && G.lazy.head == NULL &&
               !(G.staging ? G.stage_done : G.sync_done))
            pthread_cond_wait(&G.cv_commit, &G.mu);
        struct ingest_req *lazy = fifo_take(&G.lazy, INGEST_QUEUE_MAX);
        bool durable = G.synced.head != NULL;
        pthread_mutex_unlock(&G.mu);
        if (!durable && lazy == NULL)
            break;
        /* the lazy ones first: their commit has no fsync to wait for */
        if (lazy != NULL)
            commit_batch(lazy, true);
        if (!durable)
            continue;
        /* the pipeline's pending commits go first; what is synced
         * meanwhile joins this round's batch */
        (void)ingest_yield(G.metrics, ingest_yield_backlog(G.cfg->pipeline.queue_limit),
                           YIELD_MAX_MS);
        /* and the creations queued until now, in front of it: a tus
         * finish in this batch may be of one of them (tus.c lets a PATCH
         * that completes an upload go on before its creation committed) */
        pthread_mutex_lock(&G.mu);
        struct ingest_req *batch = fifo_take(&G.synced, INGEST_QUEUE_MAX);
        lazy = fifo_take(&G.lazy, INGEST_QUEUE_MAX);
        pthread_mutex_unlock(&G.mu);
        if (lazy != NULL)
            commit_batch(lazy, true);
        commit_batch(batch, false);
    }
    catalog_close(G.cat);
    G.cat = NULL;
    pthread_mutex_lock(&G.mu);
    G.commit_done = true; /* the durable thread finishes what is queued, then exits */
    pthread_cond_signal(&G.cv_durable);
    pthread_mutex_unlock(&G.mu);
    return NULL;
}

static int spawn(pthread_t *th, void *(*fn)(void *), const char *name)
{
    int rc = dr_thread_start(th, fn, NULL);
    if (rc != 0) {
        log_error("ingest: cannot start the %s thread: %s", name, strerror(-rc));
        return rc;
    }
    pthread_setname_np(*th, name);
    return 0;
}

/* Start both threads (idempotent). Caller holds G.mu. */
static int start_locked(const struct dr_config *cfg, struct dr_worker_ctx *ctx,
                        struct dr_metrics *metrics)
{
    if (G.started)
        return 0;
    if (G.starting)
        return -EAGAIN; /* another caller is undoing a failed start */
    G.cfg = cfg;
    G.ctx = ctx;
    G.metrics = metrics;
    G.stop = G.sync_done = G.stage_done = G.commit_done = false;
    G.staging = stager_on(cfg);
    G.stagers = 0;
    const char *gather = getenv("DRIPD_TEST_INGEST_GATHER");
    G.gather = gather != NULL ? (unsigned)strtoul(gather, NULL, 10) : 0;
    int rc = spawn(&G.durable_th, durable_main, "dripd-durable");
    if (rc < 0)
        return rc;
    rc = spawn(&G.commit_th, commit_main, "dripd-commit");
    if (rc < 0) {
        G.commit_done = true;
        pthread_cond_signal(&G.cv_durable);
        pthread_mutex_unlock(&G.mu);
        pthread_join(G.durable_th, NULL);
        pthread_mutex_lock(&G.mu);
        return rc;
    }
    for (unsigned i = 0; G.staging && i < STAGE_THREADS && rc == 0; i++) {
        rc = spawn(&G.stage_th[i], stage_main, "dripd-stage");
        if (rc == 0)
            G.stagers++;
    }
    if (rc == 0)
        rc = spawn(&G.sync_th, sync_main, "dripd-ingest");
    if (rc < 0) {
        /* nothing was queued yet: the other threads exit at once */
        G.sync_done = true;
        G.stage_done = G.stagers == 0;
        G.starting = true;
        pthread_cond_signal(&G.cv_commit);
        pthread_cond_broadcast(&G.cv_stage);
        unsigned stagers = G.stagers;
        pthread_mutex_unlock(&G.mu);
        for (unsigned i = 0; i < stagers; i++)
            pthread_join(G.stage_th[i], NULL);
        pthread_join(G.commit_th, NULL);
        pthread_join(G.durable_th, NULL); /* commit_main set commit_done */
        pthread_mutex_lock(&G.mu);
        G.starting = false;
        return rc;
    }
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
    pthread_cond_signal(&G.cv_sync);
    pthread_mutex_unlock(&G.mu);
    pthread_join(G.sync_th, NULL); /* syncs what is waiting, then sync_done */
    for (unsigned i = 0; G.staging && i < STAGE_THREADS; i++)
        pthread_join(G.stage_th[i], NULL); /* stage what was synced, then stage_done */
    pthread_join(G.commit_th, NULL);       /* commits what was synced, then commit_done */
    pthread_join(G.durable_th, NULL);      /* makes it durable and completes it */
    pthread_mutex_lock(&G.mu);
    G.started = false;
    pthread_mutex_unlock(&G.mu);
}

/* Is every item of a request inline (nothing to sync)? */
static bool all_inline(const struct dr_intake *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (items[i].body == NULL)
            return false;
    return n > 0;
}

static int submit(struct http_exchange *ex, struct dr_intake *items, const int *fds, size_t n,
                  ingest_done_fn done, void *arg, bool lazy)
{
    bool inline_only = !lazy && all_inline(items, n);
    if (inline_only) /* on the loop thread: a memory probe, before the lock */
        for (size_t i = 0; i < n; i++)
            items[i].stage = ingest_first_stage_mem(http_cfg(ex), items[i].body, items[i].body_len);
    pthread_mutex_lock(&G.mu);
    int rc = start_locked(http_cfg(ex), http_worker_ctx(ex), http_ex_metrics(ex));
    /* (the test hook DRIPD_TEST_INGEST_GATHER gathers in the sync thread:
     * there inline requests go too) */
    inline_only = inline_only && G.gather <= 1;
    if (rc == 0 && (lazy || inline_only) && G.staging)
        rc = -EINVAL; /* cluster mode: tus does not use the group commit; bodies are staged */
    if (rc == 0 && (G.n >= INGEST_QUEUE_MAX || G.stop))
        rc = -EAGAIN;
    if (rc < 0) {
        pthread_mutex_unlock(&G.mu);
        return rc == -EINVAL ? rc : -EAGAIN;
    }
    struct ingest_req *r = xcalloc(1, sizeof *r);
    r->ex = lazy ? NULL : ex; /* the creation's answer need not wait */
    r->t = http_ex_thread(ex);
    r->items = items;
    r->fds = fds;
    r->n = n;
    r->done = done;
    r->arg = arg;
    if (lazy) {
        fifo_append(&G.lazy, r);
        pthread_cond_signal(&G.cv_commit);
    } else if (inline_only) {
        fifo_append(&G.synced, r); /* nothing to sync (see the top) */
        pthread_cond_signal(&G.cv_commit);
    } else {
        fifo_append(&G.waiting, r);
        pthread_cond_signal(&G.cv_sync);
    }
    G.n++;
    if (!lazy)
        http_ex_hold(ex);
    pthread_mutex_unlock(&G.mu);
    return 0;
}

int ingest_submit(struct http_exchange *ex, struct dr_intake *items, const int *fds, size_t n,
                  ingest_done_fn done, void *arg)
{
    return submit(ex, items, fds, n, done, arg, false);
}

int ingest_submit_lazy(struct http_exchange *ex, struct dr_intake *items, size_t n,
                       ingest_done_fn done, void *arg)
{
    return submit(ex, items, NULL, n, done, arg, true);
}

bool ingest_queue_full(struct http_exchange *ex)
{
    const struct dr_config *cfg = http_cfg(ex);
    int64_t depth = __atomic_load_n(&http_ex_metrics(ex)->jobs_queue_depth, __ATOMIC_RELAXED);
    return depth >= 0 && (uint64_t)depth >= cfg->pipeline.queue_limit;
}

/* ---- admission at the queue limit (see the top) ---- */

#define ADMIT_WAIT_MS 1000 /* longest wait for a free place before 503 */
#define ADMIT_TICK_MS 10
#define ADMIT_MAX 4096 /* waiters per loop thread */

struct admit {
    struct http_exchange *ex;
    ingest_admit_fn go;
    void *arg;
    void (*refused)(void *arg);
    int64_t deadline; /* mono ms */
    struct admit *next;
};

static _Thread_local struct {
    struct admit *head, *tail;
    int n;
    struct http_timer *timer;
} tl_admit;

/* The upload pipeline's recent job rate (jobs/s), for Retry-After: sampled
 * from jobs_completed at most once a second by any loop thread. */
static int64_t rate_at, rate_done; /* mono ms, jobs_completed then (atomics) */
static double rate_jobs_s;         /* atomic via its bits */

static double job_rate(struct dr_metrics *m)
{
    int64_t now = dr_mono_ms(), at = __atomic_load_n(&rate_at, __ATOMIC_RELAXED);
    int64_t done = (int64_t)__atomic_load_n(&m->jobs_completed[DR_PL_UPLOAD], __ATOMIC_RELAXED);
    double r;
    __atomic_load(&rate_jobs_s, &r, __ATOMIC_RELAXED);
    if (now - at >= 1000 && __atomic_compare_exchange_n(&rate_at, &at, now, false, __ATOMIC_RELAXED,
                                                        __ATOMIC_RELAXED)) {
        int64_t before = __atomic_exchange_n(&rate_done, done, __ATOMIC_RELAXED);
        if (at != 0 && now - at < 10000) {
            r = (double)(done - before) * 1000.0 / (double)(now - at);
            __atomic_store(&rate_jobs_s, &r, __ATOMIC_RELAXED);
        }
    }
    return r;
}

/* 503 + Retry-After: the seconds the pipeline needs to drain what is over
 * the limit at its recent rate (1..60; 5 when it is not known). */
static void respond_full(struct http_exchange *ex)
{
    struct dr_metrics *m = http_ex_metrics(ex);
    const struct dr_config *cfg = http_cfg(ex);
    int64_t depth = __atomic_load_n(&m->jobs_queue_depth, __ATOMIC_RELAXED);
    double rate = job_rate(m);
    int64_t over = depth - (int64_t)cfg->pipeline.queue_limit + 1;
    int64_t secs = rate > 0.5 ? (int64_t)((double)DR_MAX(over, 1) / rate) + 1 : 5;
    metrics_add(&m->uploads_rejected_full, 1);
    http_add_headerf(ex, "Retry-After", "%lld", (long long)DR_MIN(DR_MAX(secs, 1), 60));
    http_respond_problem(ex, 503,
                         "the job queue is full (pipeline.queue_limit %" PRIu64
                         "); waited %d ms for a place; retry later",
                         cfg->pipeline.queue_limit, ADMIT_WAIT_MS);
}

static void admit_tick(void *arg)
{
    (void)arg;
    int64_t now = dr_mono_ms();
    struct admit *w;
    if (tl_admit.head != NULL)
        (void)job_rate(http_ex_metrics(tl_admit.head->ex)); /* keeps the estimate fresh */
    while ((w = tl_admit.head) != NULL) {
        struct http_exchange *ex = w->ex;
        bool gone = http_ex_closed(ex);
        bool room = !gone && !ingest_queue_full(ex);
        if (!gone && !room && now < w->deadline)
            break; /* the ones behind it came later */
        tl_admit.head = w->next;
        if (tl_admit.head == NULL)
            tl_admit.tail = NULL;
        tl_admit.n--;
        if (room) {
            w->go(ex, w->arg);
        } else {
            if (!gone)
                respond_full(ex);
            if (w->refused)
                w->refused(w->arg);
        }
        http_ex_release(ex);
        free(w);
    }
    if (tl_admit.head == NULL) {
        http_timer_stop(tl_admit.timer);
        tl_admit.timer = NULL;
    }
}

void ingest_admit(struct http_exchange *ex, ingest_admit_fn go, void *arg,
                  void (*refused)(void *arg))
{
    if (http_server_draining(http_thread_server(http_ex_thread(ex)))) {
        ingest_respond_busy(ex);
        if (refused)
            refused(arg);
        return;
    }
    if (tl_admit.head == NULL && !ingest_queue_full(ex)) {
        go(ex, arg);
        return;
    }
    if (tl_admit.n >= ADMIT_MAX) {
        respond_full(ex);
        if (refused)
            refused(arg);
        return;
    }
    if (tl_admit.timer == NULL) {
        tl_admit.timer =
            http_timer_start(http_ex_thread(ex), ADMIT_TICK_MS, true, admit_tick, NULL);
        if (tl_admit.timer == NULL) {
            respond_full(ex);
            if (refused)
                refused(arg);
            return;
        }
    }
    struct admit *w = xcalloc(1, sizeof *w);
    *w = (struct admit){.ex = ex,
                        .go = go,
                        .arg = arg,
                        .refused = refused,
                        .deadline = dr_mono_ms() + ADMIT_WAIT_MS};
    http_ex_hold(ex);
    if (tl_admit.tail)
        tl_admit.tail->next = w;
    else
        tl_admit.head = w;
    tl_admit.tail = w;
    tl_admit.n++;
    metrics_add(&http_ex_metrics(ex)->uploads_waited, 1);
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

/* ---- inline bodies (ingest.h) ---- */

static uint64_t inline_held; /* bytes reserved by ingest_inline_take (atomic) */

bool ingest_inline_take(const struct dr_config *cfg, uint64_t len)
{
    if (len == 0 || len > INGEST_INLINE_MAX || cfg->catalog.backend != DR_CATALOG_SQLITE)
        return false;
    uint64_t held = __atomic_add_fetch(&inline_held, len, __ATOMIC_RELAXED);
    if (held <= INGEST_INLINE_BUDGET)
        return true;
    __atomic_sub_fetch(&inline_held, len, __ATOMIC_RELAXED);
    return false;
}

void ingest_inline_release(uint64_t len)
{
    __atomic_sub_fetch(&inline_held, len, __ATOMIC_RELAXED);
}

const char *ingest_first_stage_mem(const struct dr_config *cfg, const void *data, size_t len)
{
    if (!cfg->processing.enabled)
        return "encrypt";
    return decode_probe(data, DR_MIN(len, (size_t)DECODE_PROBE_LEN)) == DECODE_KIND_OTHER
               ? "encrypt"
               : "process";
}

const char *ingest_first_stage(const struct dr_config *cfg, int fd, const char *spool_path)
{
    if (!cfg->processing.enabled)
        return "encrypt";
    uint8_t head[DECODE_PROBE_LEN];
    /* the writer's own descriptor saves an open (a full path walk) and a
     * close per upload; one opened write-only (EBADF) is not readable */
    ssize_t n = fd >= 0 ? dr_pread_full(fd, head, sizeof head, 0) : -EBADF;
    if (n == -EBADF && spool_path != NULL && (fd = open(spool_path, O_RDONLY | O_CLOEXEC)) >= 0) {
        n = dr_pread_full(fd, head, sizeof head, 0);
        close(fd);
    }
    /* when in doubt, process: the stage checks again and costs no commit */
    return n >= 0 && decode_probe(head, (size_t)n) == DECODE_KIND_OTHER ? "encrypt" : "process";
}

/* A growing string for ingest_item_json. */
struct jbuf {
    char *p;
    size_t len, cap;
};

static void jb_put(struct jbuf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = DR_MAX(b->cap * 2, b->len + n + 1);
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void jb_lit(struct jbuf *b, const char *s)
{
    jb_put(b, s, strlen(s));
}

/* s as a JSON string, escaped as jansson's dump escapes it (no
 * JSON_ENSURE_ASCII: bytes >= 0x80 pass as they are; the catalog's
 * strings are UTF-8), or null for NULL. */
static void jb_str(struct jbuf *b, const char *s)
{
    if (s == NULL) {
        jb_lit(b, "null");
        return;
    }
    jb_put(b, "\"", 1);
    const char *run = s;
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        jb_put(b, run, (size_t)(s - run));
        run = s + 1;
        static const char named[] = "\"\\\b\f\n\r\t", letter[] = "\"\\bfnrt";
        const char *k = strchr(named, c); /* c is not NUL here */
        char esc[8];
        if (k != NULL)
            snprintf(esc, sizeof esc, "\\%c", letter[k - named]);
        else
            snprintf(esc, sizeof esc, "\\u%04X", c);
        jb_lit(b, esc);
    }
    jb_put(b, run, (size_t)(s - run));
    jb_put(b, "\"", 1);
}

static void jb_key_str(struct jbuf *b, const char *key, const char *s)
{
    jb_lit(b, key);
    jb_str(b, s);
}

static void jb_key_int(struct jbuf *b, const char *key, int64_t v)
{
    char num[32];
    snprintf(num, sizeof num, "%" PRId64, v);
    jb_lit(b, key);
    jb_lit(b, num);
}

/* Written directly, not with json_pack + json_dumps: those were ~10% of
 * dripd-http's CPU in a 4 KiB PUT intake (perf, issue 15). The bytes are
 * those json_dumps(JSON_COMPACT) gave (test_ingest.c compares them). */
char *ingest_item_json(const struct dr_intake *item, const char *state)
{
    char *folder, *name;
    const char *path = item->renamed ? item->renamed : item->path; /* ?conflict=rename */
    path_split(path, &folder, &name);
    char ts[32];
    dr_fmt_time(item->created_at > 0 ? item->created_at : dr_now_ms(), ts, sizeof ts);
    struct jbuf b = {.cap = 512};
    b.p = xmalloc(b.cap);
    jb_key_str(&b, "{\"media\":{\"id\":", item->media_id);
    jb_key_str(&b, ",\"path\":", path);
    jb_key_str(&b, ",\"name\":", name);
    jb_key_str(&b, ",\"folder\":", folder);
    jb_key_int(&b, ",\"size\":", (int64_t)item->size);
    jb_lit(&b, ",\"sha256\":null");
    jb_key_str(&b, ",\"content_type\":", item->content_type);
    jb_key_str(&b, ",\"state\":", state ? state : "queued");
    jb_key_str(&b, ",\"owner\":", item->owner);
    jb_key_str(&b, ",\"created_at\":", ts);
    jb_key_int(&b, ",\"version\":", item->version > 0 ? item->version : 1);
    if (item->replaced[0]) /* If-Match: it replaces this one once stored */
        jb_key_str(&b, ",\"replaces\":", item->replaced);
    jb_key_str(&b, "},\"job\":{\"id\":", item->job_id);
    jb_lit(&b, ",\"kind\":\"upload\",\"state\":\"queued\"");
    jb_key_str(&b, ",\"stage\":", item->stage ? item->stage : "process");
    jb_key_str(&b, ",\"media_id\":", item->media_id);
    jb_lit(&b, ",\"attempts\":0,\"error\":null}}");
    free(folder);
    free(name);
    return b.p;
}

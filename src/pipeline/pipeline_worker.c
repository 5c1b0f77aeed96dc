/* pipeline_worker.c - the dripd-pipeline worker process: durable,
 * demand-driven upload and download pipelines over the catalog's job queue.
 *
 * DESIGN
 *
 * Threads (all named, all with signals blocked except the main thread):
 *   main         the supervisor channel: READY once started, HEARTBEAT every
 *                heartbeat_interval, DR_MSG_JOB_ENQUEUED wakes the starters
 *                (the upload starter alone for DR_ENQ_UPLOADS) and webhooks; SIGTERM (or the
 * channel's EOF) starts a drain, which runs on a "drain" thread while main keeps heartbeating.
 *   up-start,    one starter per pipeline: waits for demand from its first
 *   dl-start     stage (stage.h), then claims at most that many jobs
 *                (catalog_jobs_claim, as claimer "<node.id>:<boot>.<start>:
 *                <pid>", claimer.h; uploads with their media rows,
 *                catalog_jobs_claim_media) and pushes them in. With demand but
 *                no work (an empty claim, or with SQLite one that returned
 *                fewer jobs than asked: the queue is empty, and a claim is a
 *                write transaction) it sleeps until woken by a JOB_ENQUEUED message
 *                (PostgreSQL: a NOTIFY from any node, through the
 *                catalog-watch thread), by a retry backoff falling due, or
 *                by a fallback re-check every 1 s (10 s with PostgreSQL;
 *                wake-ups can be lost by design).
 *                The upload starter also, at start and every 5 s, refreshes
 *                this node's heartbeat and releases jobs claimed by dead
 *                pipeline processes of this node (catalog_jobs_recover:
 *                claimer_alive_here: pid, start time, state) or by nodes
 *                silent for 30 s (PostgreSQL; their downloads fail; with
 *                SQLite another node id is this node's past), and prunes
 *                hourly under the cluster's "prune" lease, and every 2 s
 *                runs the retire sweep (retire.h) under the "retire" lease. Until it once
 *                could, it also removes from the store what puts cut
 *                short by a crash left (store_sweep).
 *   enc-N, store-N, unot-N   upload stages: encrypt -> store -> notify
 *   fetch-N, dec-N, dnot-N   download stages: fetch -> decrypt -> notify
 *   cache-evict  the cache evictor (cache.h); hook-N the webhooks (webhook.h)
 *   catalog-watch  PostgreSQL only: LISTENs for other nodes' jobs and
 *                events and pings the server (catalog.h, catalog_watch.c);
 *                publishes dripd_catalog_up
 *
 * Durability. A job's stage in the catalog names the step still to do.
 * After a step succeeds, its thread commits the next stage (a "job.stage"
 * event; the last step: the job done, "job.done") together with the media
 * fields the step produced, BEFORE it hands the job on. That commit is
 * group-committed (pipeline_commit.h): the thread waits until a
 * catalog_jobs_step transaction that holds its step, and possibly other
 * threads' steps, committed, so one fsync covers the steps of many jobs.
 * So after a crash a job resumes at its last committed stage (steps are
 * idempotent, see pipeline_upload.c and
 * pipeline_download.c). A resumed job still enters its pipeline at the
 * first stage and passes through the stages it has already done. Failures:
 * transient errors (pl_is_transient) go back to the queue with
 * exponential backoff and jitter (catalog_job_retry: attempts++, the error
 * kept, not_before); after pipeline.retry.attempts attempts, or on a
 * permanent error, catalog_job_fail keeps the error and the job's
 * node-local files are removed. After every commit the newest event seq is
 * sent to the supervisor (DR_MSG_EVENT: http wakes its SSE streams), if
 * some http worker has a stream open (metrics_event_streams), and after
 * each claim and each commit that finished
 * jobs the queue depth (catalog_queue_depth, counted at most every
 * DEPTH_EVERY_MS) goes to metrics and DR_MSG_STATUS.
 *
 * Cache fills (issue 15). A GET that misses the cache does not make a
 * durable job: the http worker sends DR_MSG_FILL (worker.h) naming the
 * entry, the main thread queues it in memory on the download runner (at
 * most FILL_MAX fills queued or running; a request for an entry already
 * there is dropped; past FILL_MAX the answer is "busy", a 503 upstream),
 * and the download starter hands queued fills to fetch before it claims
 * durable jobs, within the same demand. A fill runs the same steps
 * (fetch, decrypt: the header, the length and every tag verified before
 * the entry is renamed in, the plaintext not hashed again: seal.h
 * unseal_fd_tags; notify) but commits nothing and fsyncs nothing
 * (cache.h): its end, or its failure for good, goes back as DR_MSG_FILLED.
 * Transient errors are retried in memory with the jobs' backoff. A crash
 * loses the fills in flight (a .tmp file at most, never served); their
 * waiters ask again. POST /v1/media/{id}/download still makes a durable
 * job.
 *
 * Drain: stop claiming, let every stage thread finish the step it is in
 * (that step's commit included), join. Jobs that were queued inside the
 * pipeline stay claimed by this pid and are released by the next worker's
 * recovery once this process is gone.
 *
 * Lock order: a starter's wake mutex (runner.mu) and the stage mutexes
 * inside stage.c are never held together; pc.stop_mu is a leaf. Each
 * thread has its own catalog connection and store handle; with SQLite
 * the upload claims and the group commits also share the committer's
 * (pl_committer_share_conn: its page cache stays warm between them).
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <dirent.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "claimer.h"
#include "dripd/cache.h"
#include "dripd/config.h"
#include "dripd/decode.h"
#include "dripd/id.h"
#include "dripd/log.h"
#include "pipeline.h"
#include "pipeline_download.h"
#include "pipeline_process.h"
#include "pipeline_upload.h"
#include "pipeline_commit.h"
#include "dripd/store.h"
#include "dripd/util.h"
#include "reprocess.h"
#include "pipeline_staged.h"
#include "retire.h"
#include "scrub.h"
#include "dripd/store_probe.h"
#include "webhook.h"
#include "dripd/worker.h"

#define N_STAGES 4 /* most stages of a pipeline (upload: process, encrypt, store, notify) */
#define CLAIM_BATCH 64
#define FALLBACK_MS 1000     /* the safety re-check of a starter with nothing to do */
#define FALLBACK_PG_MS 10000 /* the same when PostgreSQL NOTIFY wakes it (catalog_watch) */
#define RECOVER_EVERY_MS 5000
/* A node whose heartbeat (every RECOVER_EVERY_MS) is this old is gone:
 * its running jobs are released, its download jobs fail (catalog.h). */
#define NODE_LEASE_MS 30000
#define ADOPT_BATCH 64 /* a dead node's staged uploads taken over per recovery */
#define PRUNE_EVERY_MS (3600 * 1000)
#define RETIRE_EVERY_MS 2000 /* the retire sweep (retire.h): trash expiry, replaced versions */
#define MAX_ORPHANS 256
#define COMMIT_BATCH 64                         /* job steps per group commit */
#define FILL_MAX 256                            /* cache fills queued or running (see the top) */
#define FILL_ENTRY_LEN (DR_ID_LEN + 1 + 32 + 1) /* "<media id>[~<variant>]" and its NUL */
/* A stage thread's batch (stage.h): at most STAGE_BATCH jobs of at most
 * BATCH_COST bytes in all, and steps are started for BATCH_NS at most
 * (the rest goes back to the stage's inbox), so that a batch never keeps
 * jobs waiting behind a long step for long. */
#define STAGE_BATCH 64

#define BATCH_COST (4u << 20)
#define BATCH_NS (20 * 1000000ull)

struct runner;

/* A cache fill asked for by a GET (see the top), queued or running. */
struct fill {
    char entry[FILL_ENTRY_LEN];
    int attempts;       /* failed attempts so far */
    int64_t not_before; /* mono ms: retry backoff */
    bool queued;        /* false while the stages run it */
};

struct pl_stage {
    struct runner *r;
    int order;
    const char *name;
    const char *next; /* NULL: last stage */
    pl_step_fn fn;
};

struct runner {
    struct pl_ctx *pc;
    enum dr_pipeline_id pl;
    const char *kind;
    int n_stages;
    const char *names[N_STAGES];
    struct pl_stage stages[N_STAGES];
    struct stage_pipeline *sp;
    pthread_t starter;
    bool starter_started;
    struct webhooks **hooks; /* to wake after commits */
    /* wake-ups, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen;
    int64_t next_retry; /* mono ms of the earliest known retry, 0 none */
    bool stop;
    char *orphans[MAX_ORPHANS]; /* jobs whose release to the queue failed */
    int n_orphans;
    bool swept;                  /* the store's leftovers of interrupted puts are gone */
    struct fill fills[FILL_MAX]; /* download: cache fills, under mu */
    int n_fills;
};

/* ---- reporting ---- */

static void report_event(struct runner *r, struct catalog *cat)
{
    int64_t seq = 0;
    if (r->pc->wctx && metrics_event_streams(r->pc->metrics) > 0 &&
        catalog_events_last_seq(cat, &seq) == 0)
        worker_send(r->pc->wctx, DR_MSG_EVENT, (uint64_t)seq);
    webhook_wake(*r->hooks);
}

/* The queue depth (the /metrics gauge and the sd_notify STATUS) is a
 * count over the queued and running jobs: ~7 ms with 80,000 queued. Taken
 * after every claim and every commit that finished jobs, it cost the deep
 * queues of the 4 KiB benchmark half their job rate. So it is counted at
 * most every DEPTH_EVERY_MS; a skipped count marks the gauge stale, and
 * the upload starter (awake at least every 500 ms) counts it then. */
#define DEPTH_EVERY_MS 200

static void report_depth(struct pl_ctx *pc, struct catalog *cat)
{
    int64_t now = dr_mono_ms();
    if (now - __atomic_load_n(&pc->depth_at, __ATOMIC_RELAXED) < DEPTH_EVERY_MS) {
        __atomic_store_n(&pc->depth_stale, 1, __ATOMIC_RELAXED);
        return;
    }
    __atomic_store_n(&pc->depth_at, now, __ATOMIC_RELAXED);
    __atomic_store_n(&pc->depth_stale, 0, __ATOMIC_RELAXED);
    uint64_t depth = 0;
    if (catalog_queue_depth(cat, &depth) != 0)
        return;
    metrics_gauge_set(&pc->metrics->jobs_queue_depth, (int64_t)depth);
    if (pc->wctx)
        worker_send(pc->wctx, DR_MSG_STATUS, depth);
}

static void runner_wake(struct runner *r)
{
    pthread_mutex_lock(&r->mu);
    r->gen++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void runner_note_retry(struct runner *r, uint64_t delay_ms)
{
    int64_t at = dr_mono_ms() + (int64_t)delay_ms;
    pthread_mutex_lock(&r->mu);
    if (r->next_retry == 0 || at < r->next_retry) {
        r->next_retry = at;
        pthread_cond_broadcast(&r->cv); /* the starter recomputes its deadline */
    }
    pthread_mutex_unlock(&r->mu);
}

static void runner_add_orphan(struct runner *r, const char *job_id)
{
    pthread_mutex_lock(&r->mu);
    if (r->n_orphans < MAX_ORPHANS)
        r->orphans[r->n_orphans++] = xstrdup(job_id);
    else
        log_error("job %s stays claimed until this worker restarts", job_id);
    pthread_mutex_unlock(&r->mu);
}

/* ---- cache fills (see the top) ---- */

/* Tell the http workers how a fill ended (DR_FILL_*). */
static void fill_answer(struct pl_ctx *pc, const char *entry, uint32_t how, const char *err)
{
    if (pc->wctx == NULL)
        return;
    char data[DR_MSG_DATA_LEN] = "";
    size_t n = strlen(entry) + 1;
    memcpy(data, entry, n);
    snprintf(data + n, sizeof data - n, "%s", err ? err : "");
    worker_send_data(pc->wctx, DR_MSG_FILLED, how, data, sizeof data);
}

/* "<media id>" or "<media id>~<variant>" into a job's media_id/variant;
 * false when it is neither. */
static bool fill_parse(const char *entry, struct dr_job *job)
{
    size_t n = strlen(entry);
    if (n < DR_ID_LEN || (n > DR_ID_LEN && entry[DR_ID_LEN] != '~'))
        return false;
    memcpy(job->media_id, entry, DR_ID_LEN);
    job->media_id[DR_ID_LEN] = '\0';
    if (!dr_id_valid(job->media_id))
        return false;
    job->variant[0] = '\0';
    if (n == DR_ID_LEN)
        return true;
    const char *v = entry + DR_ID_LEN + 1;
    size_t vl = strlen(v);
    if (vl == 0 || vl >= sizeof job->variant ||
        strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_-") != vl)
        return false;
    memcpy(job->variant, v, vl + 1);
    return true;
}

/* DR_MSG_FILL on the main thread: queue the fill unless it is there. */
static void fill_request(struct runner *r, const char *data)
{
    char entry[FILL_ENTRY_LEN];
    struct dr_job probe;
    size_t n = strnlen(data, DR_MSG_DATA_LEN);
    if (n >= sizeof entry)
        return;
    memcpy(entry, data, n);
    entry[n] = '\0';
    if (!fill_parse(entry, &probe)) {
        log_warn("cache fill: bad entry name '%s'", entry);
        return;
    }
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_fills; i++)
        if (strcmp(r->fills[i].entry, entry) == 0) {
            pthread_mutex_unlock(&r->mu);
            return; /* being filled: its end answers every waiter */
        }
    if (r->n_fills >= FILL_MAX) {
        pthread_mutex_unlock(&r->mu);
        fill_answer(r->pc, entry, DR_FILL_BUSY, "too many cache fills at once");
        return;
    }
    struct fill *f = &r->fills[r->n_fills++];
    memset(f, 0, sizeof *f);
    memcpy(f->entry, entry, n + 1);
    f->queued = true;
    r->gen++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* The fill of entry leaves the list, or (delay_ms >= 0) goes back to the
 * queue after delay_ms. */
static void fill_end(struct runner *r, const char *entry, int64_t delay_ms)
{
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_fills; i++) {
        struct fill *f = &r->fills[i];
        if (strcmp(f->entry, entry) != 0)
            continue;
        if (delay_ms >= 0) {
            f->queued = true;
            f->attempts++;
            f->not_before = dr_mono_ms() + delay_ms;
        } else {
            *f = r->fills[--r->n_fills];
        }
        break;
    }
    pthread_mutex_unlock(&r->mu);
    if (delay_ms >= 0)
        runner_note_retry(r, (uint64_t)delay_ms);
}

/* On the download starter: up to max queued fills that are due, as jobs
 * into items. Returns how many. */
static int fill_take(struct runner *r, int max, struct stage_item **items)
{
    int n = 0;
    int64_t now = dr_mono_ms();
    pthread_mutex_lock(&r->mu);
    for (int i = 0; i < r->n_fills && n < max; i++) {
        struct fill *f = &r->fills[i];
        if (!f->queued || f->not_before > now)
            continue;
        f->queued = false;
        struct pl_job *j = xcalloc(1, sizeof *j);
        j->obj_fd = -1;
        j->fill = true;
        j->pl = r->pl;
        dr_id_new(j->job.id); /* names its scratch file and its log lines */
        snprintf(j->job.kind, sizeof j->job.kind, "download");
        snprintf(j->job.state, sizeof j->job.state, "running");
        snprintf(j->job.stage, sizeof j->job.stage, "%s", r->names[0]);
        fill_parse(f->entry, &j->job);
        j->job.attempts = f->attempts;
        items[n++] = &j->link;
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* "<media id>[~<variant>]" of a fill's job. */
static void fill_entry(const struct pl_job *j, char out[FILL_ENTRY_LEN])
{
    if (j->job.variant[0])
        snprintf(out, FILL_ENTRY_LEN, "%s~%s", j->job.media_id, j->job.variant);
    else
        snprintf(out, FILL_ENTRY_LEN, "%s", j->job.media_id);
}

/* ---- the stage wrapper: run a step, commit, retry or fail ---- */

static void free_job(struct pl_job *j)
{
    if (j->obj_fd >= 0)
        close(j->obj_fd);
    free(j->obj_mem);
    if (j->media != NULL) {
        dr_media_clear(j->media);
        free(j->media);
    }
    dr_job_clear(&j->job);
    free(j);
}

static int stage_index(const struct runner *r, const char *stage)
{
    for (int i = 0; i < r->n_stages; i++)
        if (strcmp(r->names[i], stage) == 0)
            return i;
    return -1;
}

/* Retry a catalog write a few times (the catalog already waits 5 s on a lock). */
#define CATALOG_TRIES 3

static void job_failure(struct pl_stage *s, struct pl_tls *t, struct pl_job *j, int rc,
                        const char *err)
{
    struct runner *r = s->r;
    struct pl_ctx *pc = r->pc;
    const struct dr_config *cfg = pc->cfg;
    metrics_add(&pc->metrics->stages[r->pl][s->order + 1].failed, 1); /* slot 0: starter */
    int attempt = j->job.attempts + 1;
    int crc = -EIO;
    if (pl_is_transient(rc) && attempt < cfg->pipeline.retry.attempts) {
        uint32_t rnd;
        dr_random(&rnd, sizeof rnd);
        uint64_t delay = stage_backoff_ms(attempt, cfg->pipeline.retry.backoff,
                                          cfg->pipeline.retry.max_backoff, rnd);
        log_warn("job %s (%s) at %s: %s; attempt %d of %d, retrying in %llu ms", j->job.id, r->kind,
                 s->name, err, attempt, cfg->pipeline.retry.attempts, (unsigned long long)delay);
        for (int i = 0; i < CATALOG_TRIES && crc != 0 && crc != -ENOENT; i++)
            crc = catalog_job_retry(t->cat, j->job.id, err, (int64_t)delay);
        metrics_add(&pc->metrics->jobs_retries, 1);
        metrics_note_error(pc->metrics, r->pl, s->order + 1, j->job.id, attempt, false, err);
        runner_note_retry(r, delay);
    } else {
        log_error("job %s (%s) failed at %s after %d attempt%s: %s", j->job.id, r->kind, s->name,
                  attempt, attempt == 1 ? "" : "s", err);
        if (r->pl == DR_PL_UPLOAD)
            pl_upload_cleanup(t, j);
        else
            pl_download_cleanup(t, j);
        for (int i = 0; i < CATALOG_TRIES && crc != 0 && crc != -ENOENT; i++)
            crc = catalog_job_fail(t->cat, j->job.id, s->name, err);
        metrics_add(&pc->metrics->jobs_failed[r->pl], 1);
        metrics_note_error(pc->metrics, r->pl, s->order + 1, j->job.id, attempt, true, err);
    }
    if (crc != 0 && crc != -ENOENT) {
        log_error("job %s: catalog: cannot record the failure: %s", j->job.id, strerror(-crc));
        runner_add_orphan(r, j->job.id);
    }
    report_depth(pc, t->cat);
    report_event(r, t->cat);
}

/* A fill's step failed: back to its queue with backoff when transient and
 * attempts are left, else the waiters hear the error. */
static void fill_failure(struct pl_stage *s, struct pl_tls *t, struct pl_job *j, int rc,
                         const char *err)
{
    struct runner *r = s->r;
    struct pl_ctx *pc = r->pc;
    const struct dr_config *cfg = pc->cfg;
    char entry[FILL_ENTRY_LEN];
    fill_entry(j, entry);
    metrics_add(&pc->metrics->stages[r->pl][s->order + 1].failed, 1);
    pl_download_cleanup(t, j);
    int attempt = j->job.attempts + 1;
    if (pl_is_transient(rc) && attempt < cfg->pipeline.retry.attempts) {
        uint32_t rnd;
        dr_random(&rnd, sizeof rnd);
        uint64_t delay = stage_backoff_ms(attempt, cfg->pipeline.retry.backoff,
                                          cfg->pipeline.retry.max_backoff, rnd);
        log_warn("cache fill %s at %s: %s; attempt %d of %d, retrying in %llu ms", entry, s->name,
                 err, attempt, cfg->pipeline.retry.attempts, (unsigned long long)delay);
        metrics_add(&pc->metrics->jobs_retries, 1);
        fill_end(r, entry, (int64_t)delay);
        return;
    }
    log_error("cache fill %s failed at %s after %d attempt%s: %s", entry, s->name, attempt,
              attempt == 1 ? "" : "s", err);
    metrics_add(&pc->metrics->cache_fill_failures, 1);
    fill_end(r, entry, -1);
    fill_answer(pc, entry, DR_FILL_FAILED, err);
}

/* One job of a stage thread's batch, between its step and its commit. */
struct pl_run {
    struct pl_job *j;
    int rc;   /* the step's result (then the sync's or the commit's) */
    char *wp; /* the step's work path for the next stage (heap) */
    int step; /* its index in the batch's commit, -1 none */
    char err[512];
};

/* After a fill's step: on to the next stage, or its end. Nothing is
 * committed: a fill has no row. */
static enum stage_verdict settle_fill(struct pl_stage *s, struct pl_tls *t, struct pl_run *x)
{
    struct runner *r = s->r;
    struct pl_job *j = x->j;
    char entry[FILL_ENTRY_LEN];
    fill_entry(j, entry);
    if (x->rc == 0 && s->next != NULL) {
        free(j->job.work_path);
        j->job.work_path = x->wp;
        x->wp = NULL;
        snprintf(j->job.stage, sizeof j->job.stage, "%s", s->next);
        return STAGE_FORWARD;
    }
    if (x->rc == 0) {
        metrics_add(&r->pc->metrics->cache_fills, 1);
        log_debug("cache fill %s done (job %s)", entry, j->job.id);
        fill_end(r, entry, -1);
        fill_answer(r->pc, entry, DR_FILL_OK, NULL);
    } else if (x->rc == -ECANCELED && pl_stopping(r->pc)) {
        pl_download_cleanup(t, j); /* drained mid-step: its waiter asks the next worker */
        fill_end(r, entry, -1);
    } else {
        fill_failure(s, t, j, x->rc, x->err);
    }
    free_job(j);
    return STAGE_DONE;
}

/* After the batch's commit: forward the job, or finish it, or fail it. */
static enum stage_verdict settle(struct pl_stage *s, struct pl_tls *t, struct pl_run *x,
                                 const struct dr_job_step *step, int crc)
{
    struct runner *r = s->r;
    struct pl_ctx *pc = r->pc;
    struct pl_job *j = x->j;
    int rc = x->rc;
    if (j->fill)
        return settle_fill(s, t, x);
    if (rc == 0 && step == NULL) {
        /* No commit: nothing durable happened (process, for a file that
         * is not media), or the job is small and its next stage and media
         * fields wait for its last step's commit; after a crash it
         * resumes from its last committed stage. */
        if (!j->upd.no_commit) {
            free(j->job.work_path);
            j->job.work_path = x->wp;
            x->wp = NULL;
        }
        snprintf(j->job.stage, sizeof j->job.stage, "%s", s->next);
        return STAGE_FORWARD;
    }
    if (rc == 0) {
        if (crc == 0 && step->result == 0) {
            if (step->media_gone && r->pl == DR_PL_UPLOAD) {
                /* deleted before its last step: nothing of it may stay */
                cache_remove(pc->cfg->data_dir, j->job.media_id);
                if (j->upd.stored && pl_tls_store(t, x->err, sizeof x->err) == 0 &&
                    store_delete(t->store, j->upd.storage_key, x->err, sizeof x->err) != 0)
                    log_warn("job %s: cannot remove the object of a deleted media: %s", j->job.id,
                             x->err);
            }
            memset(&j->upd, 0, sizeof j->upd); /* committed */
            if (s->next == NULL && r->pl == DR_PL_UPLOAD)
                pl_upload_forget(pc, j); /* done: the cache has its own link */
            if (s->next == NULL) {
                metrics_add(&pc->metrics->jobs_completed[r->pl], 1);
                log_info("job %s (%s) done: media %s", j->job.id, r->kind, j->job.media_id);
                free_job(j);
                return STAGE_DONE;
            }
            free(j->job.work_path);
            j->job.work_path = x->wp; /* each step names the scratch file the next one needs */
            x->wp = NULL;
            snprintf(j->job.stage, sizeof j->job.stage, "%s", s->next);
            log_debug("job %s (%s): %s done, next %s", j->job.id, r->kind, s->name, s->next);
            return STAGE_FORWARD;
        }
        if (crc == 0 && !step->media_gone) {
            log_warn("job %s is no longer ours (released or deleted); dropping it", j->job.id);
            free_job(j);
            return STAGE_DONE;
        }
        if (crc == 0) {
            /* the media row was deleted while this step ran */
            const struct pl_media_update *u = &j->upd;
            if (u->stored && pl_tls_store(t, x->err, sizeof x->err) == 0 &&
                store_delete(t->store, u->storage_key, x->err, sizeof x->err) != 0)
                log_warn("job %s: cannot remove the object of a deleted media: %s", j->job.id,
                         x->err);
            rc = -ENOENT;
            snprintf(x->err, sizeof x->err, "media %s no longer exists", j->job.media_id);
        } else {
            rc = crc;
            snprintf(x->err, sizeof x->err, "catalog: cannot commit stage %s: %s", s->name,
                     strerror(-crc));
        }
    }
    if (rc == -ECANCELED && pl_stopping(pc)) {
        /* drained mid-step: it stays claimed and resumes in the next worker */
        free_job(j);
        return STAGE_DONE;
    }
    if (rc == -ESTALE && r->pl == DR_PL_UPLOAD) {
        /* sealed scratch lost: back to encrypt (if the plaintext is gone too,
         * encrypt fails the job) */
        log_warn("job %s: %s; sealing again", j->job.id, x->err);
        catalog_job_advance(t->cat, j->job.id, "encrypt", NULL);
        rc = -EAGAIN;
    }
    job_failure(s, t, j, rc, x->err);
    free_job(j);
    return STAGE_DONE;
}

/* The step of every job of a batch, then what they share: one store sync
 * for the puts that await it, one group commit for all their next stages
 * (pipeline_commit.h); then each job goes on, finishes or fails. */
static void pl_handle_batch(void *arg, void *tls, struct stage_item **items, int n,
                            enum stage_verdict *verdicts)
{
    struct pl_stage *s = arg;
    struct pl_tls *t = tls;
    struct runner *r = s->r;
    struct pl_ctx *pc = r->pc;
    struct pl_run *runs = xcalloc((size_t)n, sizeof *runs);
    struct dr_job_step *steps = xcalloc((size_t)n, sizeof *steps);
    bool unsynced = false;
    int n_steps = 0;
    uint64_t t0 = dr_mono_ns();

    if (t->cat == NULL) {
        /* Opened on a thread's first job, so idle threads (most download
         * threads, most of the time) hold no connection and its memory. */
        int orc = catalog_open(pc->cfg, &t->cat);
        if (orc != 0) {
            log_error("stage %s: cannot open the catalog: %s; %d job(s) go back to the queue",
                      s->name, strerror(-orc), n);
            for (int i = 0; i < n; i++) {
                struct pl_job *j = (struct pl_job *)items[i];
                if (j->fill)
                    fill_failure(s, t, j, -EAGAIN, "cannot open the catalog");
                else
                    runner_add_orphan(r, j->job.id); /* released later */
                free_job(j);
                verdicts[i] = STAGE_DONE;
            }
            goto out;
        }
    }
    for (int i = 0; i < n; i++) {
        struct pl_run *x = &runs[i];
        struct pl_job *j = x->j = (struct pl_job *)items[i];
        x->step = -1;
        verdicts[i] = STAGE_DONE;
        int cur = stage_index(r, j->job.stage);
        if (cur > s->order) {
            verdicts[i] = STAGE_FORWARD; /* resumed past this stage */
            x->j = NULL;
            continue;
        }
        if (cur < s->order && !j->fill) {
            snprintf(x->err, sizeof x->err, "job is at unknown stage '%s'", j->job.stage);
            job_failure(s, t, j, -EINVAL, x->err);
            free_job(j);
            x->j = NULL;
            continue;
        }
        if (i > 0 && dr_mono_ns() - t0 > BATCH_NS) {
            /* out of time: the rest goes back for an idle sibling */
            for (int k = i; k < n; k++) {
                verdicts[k] = STAGE_AGAIN;
                runs[k].j = NULL;
                runs[k].step = -1;
            }
            break;
        }
        /* the media fields of uncommitted steps ride along (j->upd) */
        j->upd.no_commit = j->upd.put_unsynced = false;
        x->rc = s->fn(t, j, &x->wp, x->err, sizeof x->err);
        unsynced = unsynced || (x->rc == 0 && j->upd.put_unsynced);
    }
    if (unsynced) {
        /* the objects the steps put become durable together */
        char err[512] = "";
        int src = store_sync(t->store, err, sizeof err);
        for (int i = 0; i < n && src != 0; i++)
            if (runs[i].j != NULL && runs[i].rc == 0 && runs[i].j->upd.put_unsynced) {
                runs[i].rc = src;
                snprintf(runs[i].err, sizeof runs[i].err, "%s", err);
            }
    }
    for (int i = 0; i < n; i++) {
        struct pl_run *x = &runs[i];
        if (x->j == NULL || x->rc != 0 || x->j->fill ||
            (s->next != NULL &&
             (x->j->upd.no_commit || x->j->link.cost < pc->cfg->pipeline.stage_commit_size)))
            continue; /* handed on without a commit (settle) */
        const struct pl_media_update *u = &x->j->upd;
        x->step = n_steps;
        steps[n_steps++] = (struct dr_job_step){
            .job_id = x->j->job.id,
            .next_stage = s->next,
            .work_path = s->next ? x->wp : NULL,
            .media_id = x->j->job.media_id,
            .sha256_hex = u->sealed ? u->sha256_hex : NULL,
            .wrapped_key = u->sealed ? u->wrapped_key : NULL,
            .wrapped_key_len = u->sealed ? sizeof u->wrapped_key : 0,
            .storage_key = u->stored ? u->storage_key : NULL,
            .set_size = u->resized,
            .size = u->size,
            .available = u->available,
            .media_optional = u->media_optional,
            .keep_versions = pc->cfg->versions.keep,
        };
    }
    int crc = n_steps > 0 ? pl_commit_steps(pc->committer, t->cat, steps, n_steps) : 0;
    for (int i = 1; i < CATALOG_TRIES && crc != 0; i++)
        crc = pl_commit_steps(pc->committer, t->cat, steps, n_steps);
    for (int i = 0; i < n; i++) {
        struct pl_run *x = &runs[i];
        if (x->j != NULL)
            verdicts[i] = settle(s, t, x, x->step >= 0 ? &steps[x->step] : NULL, crc);
        free(x->wp);
    }
out:
    free(runs);
    free(steps);
}

static int pl_thread_init(void *arg, int index, void **tls)
{
    struct pl_stage *s = arg;
    (void)index;
    struct pl_tls *t = xcalloc(1, sizeof *t);
    t->pc = s->r->pc; /* the catalog is opened on the first job (pl_handle_batch) */
    *tls = t;
    return 0;
}

static void pl_thread_fini(void *arg, void *tls)
{
    (void)arg;
    struct pl_tls *t = tls;
    if (t == NULL)
        return;
    store_close(t->store);
    catalog_close(t->cat);
    free(t);
}

static void pl_discard(void *arg, struct stage_item *it)
{
    struct pl_stage *s = arg;
    struct pl_job *j = (struct pl_job *)it;
    if (j->fill) { /* its waiter asks the next worker */
        char entry[FILL_ENTRY_LEN];
        fill_entry(j, entry);
        fill_end(s->r, entry, -1);
    }
    free_job(j); /* a job stays claimed; recovery releases it */
}

static const struct stage_ops pl_ops = {
    .thread_init = pl_thread_init,
    .thread_fini = pl_thread_fini,
    .handle_batch = pl_handle_batch,
    .discard = pl_discard,
};

/* ---- recovery ---- */

struct alive_arg {
    struct pl_ctx *pc;
    struct catalog *cat;
};

/* Is the claimer alive? This node's: the process it names (claimer.h)
 * still runs. Another node's: that node's heartbeat is fresh. With SQLite
 * there is no other node: a claim under another node id is this node's
 * own, from before its node.id changed (a new hostname, as a container
 * gets on every re-creation), so it is dead. */
static bool claimer_alive(const char *claimer, void *arg)
{
    struct alive_arg *a = arg;
    struct pl_ctx *pc = a->pc;
    if (claimer_same_node(pc->claimer, claimer))
        return claimer_alive_here(pc->claimer, claimer);
    if (pc->cfg->catalog.backend != DR_CATALOG_POSTGRES)
        return false;
    size_t nl = strcspn(claimer, ":");
    char *node = xstrndup(claimer, nl);
    int alive = catalog_node_alive(a->cat, node, NODE_LEASE_MS);
    free(node);
    return alive != 0; /* an error: assume alive */
}

/* Every RECOVER_EVERY_MS on the upload starter: this node's heartbeat,
 * then the jobs of dead claimers (this node's dead processes, other
 * nodes gone silent) back to the queue, and dead nodes' downloads failed. */
static void recover(struct runner *r, struct catalog *cat)
{
    int rc = catalog_node_beat(cat);
    if (rc != 0)
        log_warn("heartbeat: catalog: %s", strerror(-rc));
    int released = 0;
    struct alive_arg a = {r->pc, cat};
    rc = catalog_jobs_recover(cat, claimer_alive, &a, &released);
    if (rc != 0) {
        log_warn("recovery: catalog: %s", strerror(-rc));
        return;
    }
    if (released > 0)
        log_info("recovery: released %d job%s claimed by pipeline workers that are gone", released,
                 released == 1 ? "" : "s");
    rc = catalog_nodes_reap(cat, NODE_LEASE_MS, NULL);
    if (rc != 0)
        log_warn("recovery: dead nodes: catalog: %s", strerror(-rc));
    /* cluster: a dead node's uploads are in the store; this node finishes them */
    rc = catalog_staged_adopt(cat, NODE_LEASE_MS, ADOPT_BATCH, NULL);
    if (rc != 0)
        log_warn("recovery: dead nodes' uploads: catalog: %s", strerror(-rc));
}

/* What puts cut short by a crash left in the store (store_sweep) goes
 * once per worker, as soon as no put of any process runs; true when done
 * (or it cannot be done: a store that does not open is retried by the
 * stages, and reported there). */
static bool sweep_store(struct pl_ctx *pc)
{
    struct dr_store *st = NULL;
    char err[256] = "";
    size_t removed = 0;
    int rc = store_open(pc->cfg, &st, err, sizeof err);
    if (rc == 0)
        rc = store_sweep(st, &removed, err, sizeof err);
    store_close(st);
    if (rc == -EAGAIN)
        return false; /* puts are running: next time */
    if (rc < 0)
        log_warn("store: removing what interrupted puts left: %s", err);
    else if (removed > 0)
        log_info("store: removed %zu temporary file%s of puts cut short by a crash", removed,
                 removed == 1 ? "" : "s");
    return true;
}

/* Finished jobs, their events and finished tus rows older than
 * pipeline.retention go (at start, then hourly); media never do. Once per
 * cluster: the node that holds the "prune" lease does it (renewed hourly,
 * taken over by another node two hours after its holder died). */
static void prune(struct pl_ctx *pc, struct catalog *cat)
{
    uint64_t keep = pc->cfg->pipeline.retention, removed = 0;
    if (keep == 0 || keep > (uint64_t)INT64_MAX / 2)
        return;
    int rc = catalog_lease(cat, "prune", 2 * PRUNE_EVERY_MS, NULL);
    if (rc <= 0) {
        if (rc < 0)
            log_warn("retention: lease: catalog: %s", strerror(-rc));
        return;
    }
    rc = catalog_prune(cat, dr_now_ms() - (int64_t)keep, &removed);
    if (rc != 0)
        log_warn("retention: catalog: %s", strerror(-rc));
    else if (removed > 0)
        log_info("retention: removed %" PRIu64 " finished job, event and upload-session rows "
                 "older than %" PRIu64 " s",
                 removed, keep / 1000);
}

static void release_orphans(struct runner *r, struct catalog *cat)
{
    char *ids[MAX_ORPHANS];
    pthread_mutex_lock(&r->mu);
    int n = r->n_orphans;
    memcpy(ids, r->orphans, (size_t)n * sizeof *ids);
    r->n_orphans = 0;
    pthread_mutex_unlock(&r->mu);
    for (int i = 0; i < n; i++) {
        int rc = catalog_job_retry(cat, ids[i], "released after a catalog error", 0);
        if (rc != 0 && rc != -ENOENT)
            runner_add_orphan(r, ids[i]);
        free(ids[i]);
    }
}

/* ---- starters ---- */

/* Sleep until woken (gen moves), a retry falls due, the fallback passes or
 * stop. */
static void wait_for_work(struct runner *r, uint64_t seen_gen)
{
    pthread_mutex_lock(&r->mu);
    while (r->gen == seen_gen && !r->stop) {
        int64_t now = dr_mono_ms();
        int64_t until = now + (r->pc->cfg->catalog.backend == DR_CATALOG_POSTGRES ? FALLBACK_PG_MS
                                                                                  : FALLBACK_MS);
        if (r->next_retry && r->next_retry < until)
            until = r->next_retry;
        if (until <= now) {
            r->next_retry = 0;
            break;
        }
        struct timespec ts;
        dr_mono_timespec(&ts, until);
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) {
            if (r->next_retry && r->next_retry <= dr_mono_ms())
                r->next_retry = 0;
            break;
        }
    }
    pthread_mutex_unlock(&r->mu);
}

/* The bytes a job's steps will handle, as far as the starter knows them
 * (its inline body or spool file; a download's object is sized by
 * fetch), for the stages' batches. */
static uint64_t job_cost(const struct dr_job *j)
{
    struct stat st;
    if (j->body != NULL)
        return j->body_len;
    return j->spool_path != NULL && stat(j->spool_path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

/* A starter's claim (pl_committer_run's fn). */
struct claim_args {
    struct runner *r;
    int want, n;
    struct dr_job jobs[CLAIM_BATCH];
    struct dr_media *media[CLAIM_BATCH];
};

static int claim_on(struct catalog *cat, void *arg)
{
    struct claim_args *a = arg;
    struct runner *r = a->r;
    a->n = 0;
    return r->pl == DR_PL_UPLOAD
               ? catalog_jobs_claim_media(cat, r->kind, a->want, r->pc->claimer, a->jobs, a->media,
                                          &a->n)
               : catalog_jobs_claim(cat, r->kind, a->want, r->pc->claimer, a->jobs, &a->n);
}

static void *starter_main(void *arg)
{
    struct runner *r = arg;
    struct pl_ctx *pc = r->pc;
    struct catalog *cat = NULL;
    pthread_setname_np(pthread_self(), r->pl == DR_PL_UPLOAD ? "up-start" : "dl-start");
    while (!pl_stopping(pc)) {
        int rc = catalog_open(pc->cfg, &cat);
        if (rc == 0)
            break;
        log_error("%s starter: cannot open the catalog: %s", r->kind, strerror(-rc));
        pl_sleep(pc, 1000);
    }
    int64_t last_recover = 0, last_prune = INT64_MIN / 2, last_retire = 0;
    bool first = true;
    while (cat && !pl_stopping(pc)) {
        if (r->pl == DR_PL_UPLOAD && dr_mono_ms() - last_recover >= RECOVER_EVERY_MS) {
            recover(r, cat);
            if (!r->swept)
                r->swept = sweep_store(pc);
            last_recover = dr_mono_ms();
        }
        if (r->pl == DR_PL_UPLOAD && dr_mono_ms() - last_retire >= RETIRE_EVERY_MS) {
            /* more than a batch to purge: again at the next turn */
            last_retire = retire_sweep(pc->cfg, cat) ? 0 : dr_mono_ms();
        }
        if (r->pl == DR_PL_UPLOAD && dr_mono_ms() - last_prune >= PRUNE_EVERY_MS) {
            prune(pc, cat);
            last_prune = dr_mono_ms();
        }
        if (first ||
            (r->pl == DR_PL_UPLOAD && __atomic_load_n(&pc->depth_stale, __ATOMIC_RELAXED))) {
            report_depth(pc, cat);
            first = false;
        }
        release_orphans(r, cat);
        int d = stage_wait_demand(r->sp, 500);
        if (d < 0)
            break;
        if (d == 0 || pl_stopping(pc))
            continue;
        pthread_mutex_lock(&r->mu);
        uint64_t gen = r->gen;
        pthread_mutex_unlock(&r->mu);
        if (r->pl == DR_PL_DOWNLOAD) {
            /* cache fills first: a GET waits for each */
            struct stage_item *fills[CLAIM_BATCH];
            int nf = fill_take(r, DR_MIN(d, CLAIM_BATCH), fills);
            int taken = nf > 0 ? stage_push(r->sp, fills, nf) : 0;
            for (int i = taken; i < nf; i++) /* stopping */
                pl_discard(&r->stages[0], fills[i]);
            d -= nf;
            if (nf > 0 && d <= 0)
                continue;
        }
        struct claim_args ca = {.r = r, .want = DR_MIN(d, CLAIM_BATCH)};
        metrics_writer_enter(pc->gauges); /* the intake lets it go first (metrics.h) */
        /* uploads: the media rows come with the claim (see below), on the
         * connection the jobs' steps commit on (pipeline_commit.h) */
        int rc = r->pl == DR_PL_UPLOAD ? pl_committer_run(pc->committer, cat, claim_on, &ca)
                                       : claim_on(cat, &ca);
        metrics_writer_leave(pc->gauges);
        struct dr_job *jobs = ca.jobs;
        struct dr_media **media = ca.media;
        int n = ca.n;
        if (rc != 0) {
            log_warn("%s starter: claim: %s", r->kind, strerror(-rc));
            wait_for_work(r, gen);
            continue;
        }
        if (n == 0) {
            wait_for_work(r, gen);
            continue;
        }
        struct stage_item *items[CLAIM_BATCH];
        for (int i = 0; i < n; i++) {
            struct pl_job *j = xcalloc(1, sizeof *j);
            j->obj_fd = -1;
            j->job = jobs[i];
            j->pl = r->pl;
            /* The row read with the claim is the one the
             * job's first step would read (pl_load_media), unless that
             * step is process, which changes it (metadata, size): then
             * encrypt reads it after process committed, as before. */
            if (r->pl == DR_PL_UPLOAD && media[i] != NULL && strcmp(j->job.stage, "process") == 0) {
                dr_media_clear(media[i]);
                free(media[i]);
                media[i] = NULL;
            }
            if (r->pl == DR_PL_UPLOAD)
                j->media = media[i];
            j->link.cost = job_cost(&j->job);
            items[i] = &j->link;
            log_info("job %s (%s) claimed at stage %s (attempt %d): media %s", j->job.id, r->kind,
                     j->job.stage, j->job.attempts + 1, j->job.media_id);
        }
        int taken = stage_push(r->sp, items, n);
        for (int i = taken; i < n; i++) /* stopping: leave them claimed for recovery */
            free_job((struct pl_job *)items[i]);
        report_depth(pc, cat);
        /* A short claim emptied the queue (of the jobs due): another
         * would find nothing, and costs a write transaction all the same.
         * Sleep as after an empty claim; a job enqueued since `gen` was
         * read wakes us at once. Not with PostgreSQL, whose claim skips
         * the rows other transactions hold (SKIP LOCKED): short is not
         * empty there. */
        if (n < ca.want && pc->cfg->catalog.backend != DR_CATALOG_POSTGRES)
            wait_for_work(r, gen);
    }
    catalog_close(cat);
    return NULL;
}

/* ---- runners ---- */

static void runner_init(struct runner *r, struct pl_ctx *pc, enum dr_pipeline_id pl,
                        struct webhooks **hooks)
{
    memset(r, 0, sizeof *r);
    r->pc = pc;
    r->pl = pl;
    r->hooks = hooks;
    pthread_mutex_init(&r->mu, NULL);
    dr_cond_init_mono(&r->cv);
    const struct dr_config *cfg = pc->cfg;
    struct stage_spec specs[N_STAGES];
    /* notify is short (a link into the cache, then its batch's commit):
     * two threads keep it off the critical path of small jobs */
    static const struct dr_stage_cfg notify_cfg = {DR_NOTIFY_STAGE_THREADS, 64, 16};
    const struct dr_stage_cfg *sc[N_STAGES];
    const char *shorts[N_STAGES];
    pl_step_fn fns[N_STAGES];
    if (pl == DR_PL_UPLOAD) {
        r->kind = "upload";
        r->n_stages = 4;
        r->names[0] = "process", r->names[1] = "encrypt", r->names[2] = "store";
        r->names[3] = "notify";
        shorts[0] = "proc", shorts[1] = "enc", shorts[2] = "store", shorts[3] = "unot";
        sc[0] = &cfg->pipeline.upload.process, sc[1] = &cfg->pipeline.upload.encrypt;
        sc[2] = &cfg->pipeline.upload.store, sc[3] = &notify_cfg;
        fns[0] = pl_process_step, fns[1] = pl_upload_encrypt, fns[2] = pl_upload_store;
        fns[3] = pl_upload_notify;
    } else {
        r->kind = "download";
        r->n_stages = 3;
        r->names[0] = "fetch", r->names[1] = "decrypt", r->names[2] = "notify";
        shorts[0] = "fetch", shorts[1] = "dec", shorts[2] = "dnot";
        sc[0] = &cfg->pipeline.download.fetch, sc[1] = &cfg->pipeline.download.decrypt;
        sc[2] = &notify_cfg;
        fns[0] = pl_download_fetch, fns[1] = pl_download_decrypt, fns[2] = pl_download_notify;
    }
    for (int i = 0; i < r->n_stages; i++) {
        r->stages[i] = (struct pl_stage){.r = r,
                                         .order = i,
                                         .name = r->names[i],
                                         .next = i + 1 < r->n_stages ? r->names[i + 1] : NULL,
                                         .fn = fns[i]};
        specs[i] = (struct stage_spec){
            .name = r->names[i],
            .short_name = shorts[i],
            .concurrency = sc[i]->concurrency > 0 ? sc[i]->concurrency : 1,
            .max_demand = sc[i]->max_demand > 0 ? sc[i]->max_demand : 10,
            .min_demand = sc[i]->min_demand >= 0 ? sc[i]->min_demand : 1,
            .max_batch = STAGE_BATCH,
            .batch_cost = BATCH_COST,
            .ops = &pl_ops,
            .arg = &r->stages[i],
            .metrics = &pc->metrics->stages[pl][i + 1], /* slot 0 is the starter (metrics.h) */
            .gauges = &pc->gauges->stages[pl][i + 1],
        };
    }
    r->sp = stage_pipeline_create(specs, r->n_stages);
}

static int runner_start(struct runner *r)
{
    int rc = stage_pipeline_start(r->sp);
    if (rc != 0)
        return rc;
    int e = dr_thread_start(&r->starter, starter_main, r);
    if (e != 0)
        return e;
    r->starter_started = true;
    return 0;
}

static void runner_signal_stop(struct runner *r)
{
    pthread_mutex_lock(&r->mu);
    r->stop = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    stage_pipeline_signal_stop(r->sp);
}

static void runner_join(struct runner *r)
{
    if (r->starter_started)
        pthread_join(r->starter, NULL);
    r->starter_started = false;
    stage_pipeline_destroy(r->sp);
    r->sp = NULL;
    for (int i = 0; i < r->n_orphans; i++)
        free(r->orphans[i]);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

/* ---- the process ---- */

struct worker {
    struct pl_ctx pc;
    struct runner up, down;
    struct webhooks *hooks;
    struct scrub *scrub;         /* admin scrub runs (scrub.c) */
    struct reprocess *reproc;    /* admin reprocess runs (reprocess.c) */
    struct store_probe *probe;   /* store reachability for /readyz */
    struct catalog_watch *watch; /* PostgreSQL: other nodes' jobs and events */
    struct pl_staged_gc *gc;     /* PostgreSQL: staged parts nothing needs (pipeline_staged.h) */
    int drained_pipe[2];
    pthread_t drain_thread;
    bool draining;
};

/* The catalog watch thread (PostgreSQL): jobs enqueued or released on any
 * node wake the starters, events written anywhere wake the webhooks. */
static void on_watch_wake(unsigned what, void *arg)
{
    struct worker *w = arg;
    if (what & CATALOG_WAKE_JOBS) {
        runner_wake(&w->up);
        runner_wake(&w->down);
    }
    if (what & CATALOG_WAKE_EVENTS)
        webhook_wake(w->hooks);
}

static void on_watch_state(bool up, void *arg)
{
    struct worker *w = arg;
    __atomic_store_n(&w->pc.metrics->catalog_up, up ? 1 : 0, __ATOMIC_RELAXED);
}

/* After each group commit (pipeline_commit.h), on the leading stage
 * thread: wake SSE streams, content waiters and webhooks, and refresh the
 * queue depth when jobs finished. */
static void on_commit(void *arg, struct catalog *cat, int64_t last_seq, int done)
{
    struct worker *w = arg;
    if (last_seq > 0 && w->pc.wctx && metrics_event_streams(w->pc.metrics) > 0)
        worker_send(w->pc.wctx, DR_MSG_EVENT, (uint64_t)last_seq);
    webhook_wake(w->hooks);
    if (done > 0)
        report_depth(&w->pc, cat);
}

static void *drain_main(void *arg)
{
    struct worker *w = arg;
    pthread_setname_np(pthread_self(), "drain");
    int64_t t0 = dr_mono_ms();
    catalog_watch_stop(w->watch); /* it wakes the runners and webhooks: first */
    w->watch = NULL;
    runner_join(&w->up); /* each finishes the steps in flight */
    runner_join(&w->down);
    webhook_stop(w->hooks);
    w->hooks = NULL;
    cache_evictor_stop(w->pc.evictor);
    w->pc.evictor = NULL;
    uint64_t txs = 0, steps = 0;
    pl_committer_stats(w->pc.committer, &txs, &steps);
    log_info("drained in %lld ms (job steps committed: %llu in %llu transactions)",
             (long long)(dr_mono_ms() - t0), (unsigned long long)steps, (unsigned long long)txs);
    char c = 1;
    if (write(w->drained_pipe[1], &c, 1) < 0)
        log_warn("drain: cannot signal the main thread");
    return NULL;
}

static int begin_drain(struct worker *w)
{
    pl_ctx_stop(&w->pc);
    runner_signal_stop(&w->up);
    runner_signal_stop(&w->down);
    int e = dr_thread_start(&w->drain_thread, drain_main, w);
    if (e != 0)
        return e;
    w->draining = true;
    return 0;
}

/* Remove old .tmp and .body leftovers (a .body file is trusted only by
 * the process that wrote it: pipeline_staged.h); note whether a stripped original
 * (<job>.plain) is there, else encrypt need not look for one (pc->plains). */
static void clean_work_dir(struct pl_ctx *pc)
{
    DIR *d = opendir(pc->work_dir);
    if (d == NULL) {
        pc->plains = 1; /* unknown */
        return;
    }
    struct dirent *e;
    int64_t now = dr_now_ms();
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n >= 6 && strcmp(e->d_name + n - 6, ".plain") == 0)
            pc->plains = 1;
        if ((n < 4 || strcmp(e->d_name + n - 4, ".tmp") != 0) &&
            (n < 5 || strcmp(e->d_name + n - 5, ".body") != 0))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, 0) == 0 &&
            now - ((int64_t)st.st_mtim.tv_sec * 1000) > 3600 * 1000)
            unlinkat(dirfd(d), e->d_name, 0); /* left by a crash long ago */
    }
    closedir(d);
}

/* Malloc settings for a process of ~20 threads that allocate little except
 * the seal buffers (~1 MiB per big seal/unseal). glibc's defaults cost
 * this process 5-10 MiB of RSS and let it grow from one big job to the
 * next: every thread that mallocs gets its own arena (up to 8 per core),
 * each keeping its own free memory; and the mmap threshold adapts
 * upwards when a big mmapped block is freed, after which the next seal's
 * buffers come from an arena and stay there when freed. So: two arenas
 * (one per core of the machines dripd is sized for; the stage threads
 * spend their time in syscalls and crypto, not in malloc), and fixed
 * thresholds (setting them turns the adaptation off): blocks of 128 KiB
 * and more are mmapped and given back on free, and an arena gives back
 * free memory above TRIM_THRESHOLD at its top. That is 2 MiB, not less:
 * SQLite's temporary b-trees (the claim's IN (SELECT ...) and RETURNING,
 * one each per claim) take their page cache from the heap and free it
 * when the statement ends; with 256 KiB each claim gave a few hundred
 * KiB back (brk), faulted it in again at the next one, and every brk
 * that shrinks the heap flushes the TLB of both cores (an IPI to the
 * other one): ~6% of this process's CPU with 4 KiB uploads (issue 15).
 * At most TRIM_THRESHOLD per arena stays resident after a burst.
 * Must run before the first thread. */
#define TRIM_THRESHOLD (2 << 20)
static void tune_malloc(void)
{
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD);
}

int pipeline_worker_main(struct dr_worker_ctx *ctx)
{
    const struct dr_config *cfg = ctx->cfg;
    static struct dr_metrics private_metrics;
    struct worker *w = xcalloc(1, sizeof *w);
    struct pl_ctx *pc = &w->pc;
    char err[DR_ERRLEN] = "";
    int rc, exit_code = 0;

    tune_malloc();
    prctl(PR_SET_NAME, "dripd-pipeline", 0, 0, 0);
    log_set_role("pipeline");
    worker_install_signals();
    sigset_t term, none;
    sigemptyset(&none);
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGINT);
    sigprocmask(SIG_BLOCK, &term, NULL); /* delivered only inside ppoll */

    pc->cfg = cfg;
    pc->work_fd = pc->spool_fd = -1;
    pc->wctx = ctx;
    pc->metrics = ctx->metrics ? ctx->metrics : &private_metrics;
    pc->gauges = metrics_proc(ctx->metrics, ctx->slot);
    store_set_metrics(pc->metrics); /* before any thread opens a store */
    pthread_mutex_init(&pc->stop_mu, NULL);
    dr_cond_init_mono(&pc->stop_cv);
    if (pipe2(w->drained_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        log_error("pipe: %s", strerror(errno));
        free(w);
        return 1;
    }
    rc = keys_load_master(cfg->encryption.key_file, true, pc->master, err, sizeof err);
    if (rc != 0) {
        log_error("%s", err);
        exit_code = rc == -EINVAL ? DR_EXIT_FATAL_CONFIG : 1;
        goto out;
    }
    rc = claimer_self(cfg->node.id, pc->claimer, sizeof pc->claimer);
    if (rc != 0)
        log_warn("cannot read this process's start time (%s): claiming as %s", strerror(-rc),
                 pc->claimer);
    pc->work_dir = xasprintf("%s/work", cfg->data_dir);
    pc->spool_dir = xasprintf("%s/spool", cfg->data_dir);
    char *cache_dir = xasprintf("%s/cache", cfg->data_dir);
    if ((rc = dr_mkdirs(pc->work_dir, 0700)) != 0 || (rc = dr_mkdirs(cache_dir, 0700)) != 0) {
        log_error("cannot create %s or %s: %s", pc->work_dir, cache_dir, strerror(-rc));
        free(cache_dir);
        exit_code = 1;
        goto out;
    }
    free(cache_dir);
    /* The steps name their files relative to these (pl_at). work/ is the
     * pipeline's own; spool/ is the http worker's, made by the supervisor
     * before the workers start (without it, full paths as before). */
    pc->work_fd = open(pc->work_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    pc->spool_fd = open(pc->spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pc->spool_fd < 0)
        log_warn("cannot open %s: %s", pc->spool_dir, strerror(errno));
    clean_work_dir(pc);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    pc->committer = pl_committer_create(COMMIT_BATCH, on_commit, w);
    pl_committer_set_gauges(pc->committer, pc->gauges);
    if (cfg->catalog.backend == DR_CATALOG_SQLITE) /* one writer at a time anyway */
        pl_committer_share_conn(pc->committer, cfg);
    pc->evictor = cache_evictor_start(cfg, pc->metrics);
    w->hooks = webhook_start(cfg, pc->metrics);
    runner_init(&w->up, pc, DR_PL_UPLOAD, &w->hooks);
    runner_init(&w->down, pc, DR_PL_DOWNLOAD, &w->hooks);
    if ((rc = runner_start(&w->up)) != 0 || (rc = runner_start(&w->down)) != 0) {
        log_error("cannot start the pipelines: %s", strerror(-rc));
        exit_code = 1;
        begin_drain(w);
    } else {
        log_info("pipelines running as %s: upload process x%d (%s), encrypt x%d, store x%d; "
                 "download fetch x%d, decrypt x%d",
                 pc->claimer, cfg->pipeline.upload.process.concurrency,
                 !cfg->processing.enabled ? "off"
                 : decode_helper_path()   ? decode_helper_path()
                                          : "dripd-decode MISSING",
                 cfg->pipeline.upload.encrypt.concurrency, cfg->pipeline.upload.store.concurrency,
                 cfg->pipeline.download.fetch.concurrency,
                 cfg->pipeline.download.decrypt.concurrency);
        worker_send(ctx, DR_MSG_READY, 0);
    }
    w->scrub = scrub_create(cfg, pc->metrics, pc->master, 2);
    w->gc = pl_staged_gc_start(pc);
    w->reproc = reprocess_create(pc);
    w->probe = store_probe_start(cfg, pc->metrics, cfg->health.store_probe_interval);
    static const struct catalog_watch_ops watch_ops = {.wake = on_watch_wake,
                                                       .state = on_watch_state};
    rc = catalog_watch_start(cfg, cfg->health.store_probe_interval, &watch_ops, w, &w->watch);
    if (rc < 0)
        log_warn("catalog: no watch thread (%s): other nodes' work is found by polling",
                 strerror(-rc));

    uint64_t iv = cfg->supervisor.heartbeat_interval ? cfg->supervisor.heartbeat_interval : 1000;
    int64_t next_hb = dr_mono_ms();
    bool chan_open = true;
    for (;;) {
        int64_t now = dr_mono_ms();
        if (now >= next_hb) {
            worker_send(ctx, DR_MSG_HEARTBEAT, (uint64_t)getpid());
            next_hb = now + (int64_t)iv;
            if (!w->draining) {
                scrub_poll(w->scrub); /* fallback for a lost wake-up */
                reprocess_poll(w->reproc);
            }
        }
        struct pollfd pfd[2] = {{.fd = chan_open ? ctx->chan_fd : -1, .events = POLLIN},
                                {.fd = w->drained_pipe[0], .events = POLLIN}};
        int64_t wait = next_hb - dr_mono_ms();
        struct timespec ts = {.tv_sec = (time_t)(wait > 0 ? wait / 1000 : 0),
                              .tv_nsec = (long)(wait > 0 ? wait % 1000 : 0) * 1000000L};
        int n = ppoll(pfd, 2, &ts, &none);
        if (worker_term_requested() && !w->draining) {
            log_info("SIGTERM: draining (no new jobs; steps in flight finish)");
            begin_drain(w);
        }
        if (n > 0 && (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            struct dr_msg m;
            int r;
            bool wake = false, wake_down = false;
            while ((r = worker_recv(ctx, &m)) == 1) {
                if (m.type == DR_MSG_JOB_ENQUEUED) {
                    wake = true;
                    wake_down = wake_down || !(m.flags & DR_ENQ_UPLOADS);
                } else if (m.type == DR_MSG_FILL && !w->draining) {
                    fill_request(&w->down, m.data);
                }
            }
            if (wake && !w->draining) {
                runner_wake(&w->up);
                if (wake_down) /* not for uploads alone (worker.h) */
                    runner_wake(&w->down);
                webhook_wake(w->hooks);
                scrub_poll(w->scrub);
                reprocess_poll(w->reproc);
            }
            if (r < 0) {
                chan_open = false; /* the supervisor is gone: stop listening */
                if (!w->draining) {
                    log_info("supervisor gone: draining");
                    begin_drain(w);
                }
            }
        }
        if (n > 0 && (pfd[1].revents & POLLIN))
            break;
    }
    pthread_join(w->drain_thread, NULL);
    pl_staged_gc_stop(w->gc); /* pl_ctx_stop ran: it ends its batch */
    catalog_watch_stop(w->watch);
    scrub_destroy(w->scrub);
    reprocess_destroy(w->reproc);
    store_probe_stop(w->probe);
    pl_committer_destroy(pc->committer);
out:
    close(w->drained_pipe[0]);
    close(w->drained_pipe[1]);
    memset(pc->master, 0, sizeof pc->master);
    if (pc->work_fd >= 0)
        close(pc->work_fd);
    if (pc->spool_fd >= 0)
        close(pc->spool_fd);
    free(pc->work_dir);
    free(pc->spool_dir);
    pthread_mutex_destroy(&pc->stop_mu);
    pthread_cond_destroy(&pc->stop_cv);
    free(w);
    return exit_code;
}

/* pipeline.h - what the stage threads of the dripd-pipeline worker
 * share: the process context, the job as it travels, the per-thread
 * handles, the signature of a step, and the small helpers every step uses
 * (pipeline.c). pipeline_worker.c runs the stages; the steps live in
 * pipeline_upload.c and pipeline_download.c, which include only this
 * header (and never the worker's), so the dependencies run one way:
 * worker -> steps -> pipeline.
 *
 * Upload:   starter -> encrypt -> store -> notify
 * Download: starter -> fetch -> decrypt -> notify
 *
 * A step does one step of one job and returns 0 when it is done (the
 * worker then commits the job's next stage, with the media fields the step
 * left in j->upd, in one catalog_jobs_step transaction shared with other
 * threads' steps (pipeline_commit.h) before handing the job on), or
 * -errno with a line in err: -EAGAIN and other transient errors are
 * retried with backoff (pl_is_transient), anything else fails the job.
 * Every step is idempotent: after a crash a job re-runs the step it had
 * not committed.
 *
 * Stop protocol: pl_ctx_stop() sets pc->stopping under stop_mu and wakes
 * every pl_sleep(); pl_stopping() reads it without the lock. stop_mu is a
 * leaf lock.
 *
 * Not a library interface: only src/pipeline includes it (and its tests).
 */
#ifndef DRIPD_PIPELINE_H
#define DRIPD_PIPELINE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "claimer.h"
#include "dripd/catalog.h"
#include "dripd/keys.h"
#include "dripd/metrics.h"
#include "stage.h"

struct dr_config;
struct dr_worker_ctx;
struct dr_store;
struct cache_evictor;
struct pl_committer;

/* Shared by every thread of the pipeline process; read-only after start
 * except where noted. */
struct pl_ctx {
    const struct dr_config *cfg;
    struct dr_worker_ctx *wctx;    /* may be NULL (tests) */
    struct dr_metrics *metrics;    /* never NULL (a private struct in tests) */
    struct dr_proc_gauges *gauges; /* this process's block (metrics_proc); never NULL */
    uint8_t master[DR_KEY_LEN];
    char claimer[CLAIMER_MAX];      /* "<node.id>:<boot>.<start>:<pid>" (claimer.h) */
    char *work_dir;                 /* <data_dir>/work */
    char *spool_dir;                /* <data_dir>/spool (the http worker's uploads) */
    int work_fd;                    /* work_dir, open for the *at calls (pl_at); -1 none */
    int spool_fd;                   /* spool_dir, the same; -1 none */
    int plains;                     /* a work/<job>.plain may exist (atomic; never cleared): one
                                       was there at start, or process may have made one */
    struct cache_evictor *evictor;  /* may be NULL */
    struct pl_committer *committer; /* group commit of job steps (pipeline_commit.h) */
    int stopping;                   /* drain began; set by pl_ctx_stop() */
    int64_t depth_at;               /* when the queue depth was last counted (atomic) */
    int depth_stale;                /* a count was skipped since (atomic) */
    pthread_mutex_t stop_mu;        /* guards stopping for pl_sleep (leaf) */
    pthread_cond_t stop_cv;         /* CLOCK_MONOTONIC */
};

/* Media fields a step filled in: committed by the worker together with
 * the job's next stage (struct dr_job_step, catalog_jobs_step), so a stage
 * is one commit. */
struct pl_media_update {
    bool sealed; /* sha256_hex + wrapped_key */
    char sha256_hex[65];
    uint8_t wrapped_key[DR_WRAPPED_KEY_LEN];
    bool stored; /* storage_key */
    char storage_key[300];
    bool resized; /* size: the plaintext changed (process: a stripped original) */
    uint64_t size;
    bool available;      /* the media becomes "available" */
    bool media_optional; /* a deleted media does not stop the step */
    bool no_commit;      /* nothing to record: hand on without a commit (no job.stage event) */
    bool put_unsynced;   /* stored with store_put_nosync: the batch's store_sync makes it durable */
};

/* A job travelling through a pipeline (intrusive stage item first). */
struct pl_job {
    struct stage_item link;
    struct dr_job job; /* as claimed; stage/work_path kept current */
    enum dr_pipeline_id pl;
    bool fill;                  /* download: a cache fill for a GET, no catalog row (see worker) */
    bool original;              /* download: served from a fresh cache entry */
    bool refetched;             /* download: scratch fetched again after a bad read */
    bool sealed_here;           /* upload: encrypt ran in this process (see pl_upload_store) */
    bool no_plain;              /* upload: there is no stripped original (work/<job>.plain):
                                   process ran here and made none, or encrypt found none;
                                   none appears later, so encrypt, notify and forget do
                                   not look */
    int obj_fd;                 /* download: the local object, opened by fetch for decrypt;
                                   upload: the sealed scratch file, made by encrypt in this
                                   process and handed to store (which takes it); -1 none */
    void *obj_mem;              /* upload: the sealed object in memory (encrypt of an inline
                                   body, store_takes_mem), handed to store, which takes it;
                                   NULL none */
    uint64_t obj_size;          /* upload: obj_fd's or obj_mem's bytes */
    bool sealed_moved;          /* upload: the store moved the sealed file in (nothing to remove) */
    bool scratch_body;          /* upload: job.spool_path is a copy of its bytes this process
                                   wrote (an inline or fetched staged body: pipeline_staged.h),
                                   never synced: notify moves it into the cache as such */
    bool body_moved;            /* upload: notify moved that copy into the cache */
    struct dr_media *media;     /* the media row as the upload claim (unless the job is at
                                   process) or the job's first step here read it (pl_load_media) */
    struct pl_media_update upd; /* cleared before each step */
};

/* Per stage thread: its own catalog connection and (lazily) store handle. */
struct pl_tls {
    struct pl_ctx *pc;
    struct catalog *cat;    /* opened on the thread's first job; NULL until then */
    struct dr_store *store; /* opened on first use; NULL until then */
};

/* A step: 0 done (*work_path_out: heap path to record with the next stage,
 * or NULL for none), or -errno + err. */
typedef int (*pl_step_fn)(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                          size_t errlen);

/* The job's media row: read with the upload claim (catalog_jobs_claim_media, see
 * pipeline_worker.c) or else with the thread's catalog connection by the
 * first step that asks, then kept with the job (j->media, freed with it)
 * for the steps after it, which so read nothing (the row's fields they
 * use do not change meanwhile; a delete shows at the job's next commit).
 * 0 and *m, -ENOENT ("media X no longer exists") or another -errno, with
 * a line in err. */
int pl_load_media(struct pl_tls *t, struct pl_job *j, const struct dr_media **m, char *err,
                  size_t errlen);
/* The media row id, read now into m (dr_media_clear() it); errors as
 * pl_load_media. */
int pl_read_media(struct pl_tls *t, const char *id, struct dr_media *m, char *err, size_t errlen);
/* Open the thread's store handle if not open yet. 0 / -errno + err. */
int pl_tls_store(struct pl_tls *t, char *err, size_t errlen);
/* "<work_dir>/<job id>.sealed" (caller frees). */
char *pl_work_path(const struct pl_ctx *pc, const char *job_id);
/* "<work_dir>/<job id>.plain" (caller frees): the plaintext that replaces
 * the spool file's when it exists (process made it: the original without
 * its metadata); encrypt seals it, notify makes it the cache entry. */
char *pl_plain_path(const struct pl_ctx *pc, const char *job_id);
/* Where path is for the *at calls: a file directly in work_dir or
 * spool_dir is *name (its last component) in pc->work_fd or pc->spool_fd,
 * which saves the kernel the walk of every directory above it; any other
 * path is itself in AT_FDCWD. */
int pl_at(const struct pl_ctx *pc, const char *path, const char **name);
/* open(2) and unlink(2) through pl_at. A spool file that is not found so
 * is looked for again by its full path (spool/ was made anew since the
 * worker opened it). -1 and errno as the calls. */
int pl_open(const struct pl_ctx *pc, const char *path, int flags);
int pl_unlink(const struct pl_ctx *pc, const char *path);
/* Is this -errno worth a retry (EAGAIN, EIO, ENOSPC, EBUSY, ETIMEDOUT...)? */
bool pl_is_transient(int rc);
/* Sleep up to ms, waking early when the pipeline stops. false if it did. */
bool pl_sleep(struct pl_ctx *pc, uint64_t ms);
/* Begin the stop: every pl_sleep() returns false from now on. Any thread. */
void pl_ctx_stop(struct pl_ctx *pc);

/* Admin runs (scrub.c, reprocess.c) meet the http worker in
 * <data_dir>/run/: <what>.request asks for a run, <what>.json is its
 * status. pl_run_requested: is there a request (one stat)?
 * pl_run_take: its JSON (NULL if it does not parse), the file removed.
 * pl_run_status: replace <what>.json atomically with doc plus "state",
 * "started_at" and, once not running, "finished_at" (doc is taken). */
bool pl_run_requested(const char *data_dir, const char *what);
struct json_t *pl_run_take(const char *data_dir, const char *what);
void pl_run_status(const char *data_dir, const char *what, struct json_t *doc, const char *state,
                   int64_t started_ms);
/* True once pl_ctx_stop() was called. Any thread, no lock. */
bool pl_stopping(struct pl_ctx *pc);

#endif

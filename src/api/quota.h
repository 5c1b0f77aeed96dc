/* quota.h - per-user limits on uploads and event streams (config quotas:,
 * docs/CONFIG.md) and the free-disk floor for uploads.
 *
 * An upload route calls quota_admit() from on_head once its own checks
 * passed; the route continues in then() (which creates the spool file and
 * accepts the body) or quota_admit() has answered: 507 problem+json below
 * health.min_free_disk or over the user's max_bytes, 429 + Retry-After
 * with the user's files in flight (max_inflight_uploads) or queued jobs
 * (max_queued_jobs) at their limit, 503 + Retry-After when the worker
 * holds as many upload files as its descriptor limit allows (all users
 * together: the limit less limits.max_connections and a reserve, at least
 * a quarter of it). What the upload took is recorded in a
 * struct quota_hold that the route gives back with quota_release() from
 * on_done/on_abort. Event streams take a quota_stream_take() slot.
 *
 * Scope: counts of files in flight (per user and in all) and streams are
 * this http worker's;
 * bytes stored and queued jobs come from the catalog (catalog_user_load),
 * read at most once a second per user and kept current in between with
 * what this worker admitted and committed, so a burst may pass a limit by
 * what is in flight on other nodes within that second.
 * Threads: loop threads; the shared state is atomics and one mutex per
 * user (a leaf).
 */
#ifndef DRIPD_QUOTA_H
#define DRIPD_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_exchange;

struct quota_hold {
    int user;           /* index into cfg->users; -1: nothing held */
    unsigned files;     /* files in flight taken */
    uint64_t reserved;  /* bytes reserved against max_bytes */
    uint64_t allowance; /* bytes this upload may still write under max_bytes; UINT64_MAX: any */
    bool stream;        /* an event stream slot */
};

#define QUOTA_HOLD_INIT                                                                            \
    {                                                                                              \
        .user = -1, .allowance = UINT64_MAX                                                        \
    }

/* Admit an upload by ex's user announcing `declared` bytes (0: unknown)
 * and `files` files in flight now (PUT, tus PATCH: 1; multipart: 0, each
 * part takes its own with quota_take_file); makes_job: it will queue a job
 * (max_queued_jobs applies; a tus PATCH that does not finish its upload
 * does not). Either calls then(ex, arg) at once, or answers (507/429
 * problem+json) and returns without calling it. */
void quota_admit(struct http_exchange *ex, uint64_t declared, unsigned files, bool makes_job,
                 struct quota_hold *h, void (*then)(struct http_exchange *ex, void *arg),
                 void *arg);
/* One more file in flight (a multipart part): 0, or -EDQUOT (the user's
 * limit: 429) or -EMFILE (the worker's: 503) with the detail in detail[]
 * (the caller answers, with Retry-After). */
int quota_take_file(struct http_exchange *ex, struct quota_hold *h, char *detail, size_t len);
/* Give back what h holds. committed_bytes / committed_jobs: what became
 * media and jobs (counted until the next catalog read). h may be unused. */
void quota_release(struct quota_hold *h, uint64_t committed_bytes, unsigned committed_jobs);
/* Files this process is receiving now, all users (the pipeline view). */
int64_t quota_files_in_flight(void);
/* An event stream for ex's user: 0, or answers 429 and returns -EDQUOT. */
int quota_stream_take(struct http_exchange *ex, struct quota_hold *h);

#endif

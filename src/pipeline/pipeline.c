/* pipeline.c - the helpers every pipeline step uses (pipeline.h): the
 * scratch path of a job, which errors are worth a retry, the job's media
 * row, the stage thread's lazily opened store handle, and the
 * interruptible sleep of the stop protocol.
 *
 * Threads: any stage thread. pl_tls_store() touches only the calling
 * thread's struct pl_tls; pl_sleep()/pl_ctx_stop() meet under pc->stop_mu
 * (a leaf lock) and pc->stop_cv (CLOCK_MONOTONIC, dr_cond_init_mono).
 */
#include "pipeline.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "dripd/store.h"
#include "dripd/util.h"

char *pl_work_path(const struct pl_ctx *pc, const char *job_id)
{
    return xasprintf("%s/%s.sealed", pc->work_dir, job_id);
}

bool pl_is_transient(int rc)
{
    switch (-rc) {
    case EAGAIN:
    case EIO:
    case ENOSPC:
    case EDQUOT:
    case EBUSY:
    case ETIMEDOUT:
    case ECONNREFUSED:
    case ECONNRESET:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EINTR:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
        return true;
    default:
        return false;
    }
}

int pl_load_media(struct pl_tls *t, const struct pl_job *j, struct dr_media *m, char *err,
                  size_t errlen)
{
    int rc = catalog_media_get(t->cat, j->job.media_id, NULL, m);
    if (rc == -ENOENT)
        snprintf(err, errlen, "media %s no longer exists", j->job.media_id);
    else if (rc != 0)
        snprintf(err, errlen, "catalog: cannot read media %s: %s", j->job.media_id, strerror(-rc));
    return rc;
}

int pl_tls_store(struct pl_tls *t, char *err, size_t errlen)
{
    if (t->store)
        return 0;
    return store_open(t->pc->cfg, &t->store, err, errlen); /* -EAGAIN: retried */
}

bool pl_sleep(struct pl_ctx *pc, uint64_t ms)
{
    struct timespec ts;
    dr_mono_timespec(&ts, dr_mono_ms() + (int64_t)ms);
    pthread_mutex_lock(&pc->stop_mu);
    while (!pc->stopping)
        if (pthread_cond_timedwait(&pc->stop_cv, &pc->stop_mu, &ts) == ETIMEDOUT)
            break;
    bool ok = !pc->stopping;
    pthread_mutex_unlock(&pc->stop_mu);
    return ok;
}

void pl_ctx_stop(struct pl_ctx *pc)
{
    pthread_mutex_lock(&pc->stop_mu);
    __atomic_store_n(&pc->stopping, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&pc->stop_cv);
    pthread_mutex_unlock(&pc->stop_mu);
}

bool pl_stopping(struct pl_ctx *pc)
{
    return __atomic_load_n(&pc->stopping, __ATOMIC_RELAXED) != 0;
}

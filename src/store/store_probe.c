/* store_probe.c - periodic reachability check of the storage backend (see
 * store_probe.h). One thread; it owns its store handles (a fresh one per
 * probe, so a vanished local directory or a changed S3 endpoint is seen)
 * and writes only relaxed atomics in the shared metrics. A probe blocks at
 * most for the backend's connect/idle timeouts; nothing waits on it. */
#include "dripd/store_probe.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/store.h"
#include "dripd/util.h"

struct store_probe {
    const struct dr_config *cfg;
    struct dr_metrics *m;
    uint64_t interval_ms;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC */
    bool stop;
};

static int probe_once(struct store_probe *p, char *err, size_t errlen)
{
    struct dr_store *st = NULL;
    int rc = store_open(p->cfg, &st, err, errlen);
    if (rc == 0)
        rc = store_check(st, err, errlen);
    store_close(st);
    return rc;
}

static void *probe_main(void *arg)
{
    struct store_probe *p = arg;
    pthread_setname_np(pthread_self(), "store-probe");
    int64_t last = -2;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        pthread_mutex_unlock(&p->mu);
        char err[DR_ERRLEN] = "";
        int rc = probe_once(p, err, sizeof err);
        int64_t up = rc == 0 ? 1 : 0;
        metrics_gauge_set(&p->m->store_errno, rc == 0 ? 0 : -rc);
        metrics_gauge_set(&p->m->store_probe_ms, dr_now_ms());
        metrics_gauge_set(&p->m->store_up, up);
        if (up != last) { /* log changes only */
            if (up)
                log_info("store: reachable");
            else
                log_warn("store: unreachable: %s", err[0] ? err : strerror(-rc));
            last = up;
        }
        struct timespec ts;
        dr_mono_timespec(&ts, dr_mono_ms() + (int64_t)p->interval_ms);
        pthread_mutex_lock(&p->mu);
        while (!p->stop && pthread_cond_timedwait(&p->cv, &p->mu, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

struct store_probe *store_probe_start(const struct dr_config *cfg, struct dr_metrics *m,
                                      uint64_t interval_ms)
{
    struct store_probe *p = xcalloc(1, sizeof *p);
    p->cfg = cfg;
    p->m = m;
    p->interval_ms = interval_ms ? interval_ms : 5000;
    pthread_mutex_init(&p->mu, NULL);
    dr_cond_init_mono(&p->cv);
    int rc = dr_thread_start(&p->tid, probe_main, p);
    if (rc != 0) {
        log_error("store probe: cannot start a thread: %s", strerror(-rc));
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        free(p);
        return NULL;
    }
    return p;
}

void store_probe_stop(struct store_probe *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

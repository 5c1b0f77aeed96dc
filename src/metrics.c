/* metrics.c - shared-memory counters (see metrics.h) and their Prometheus
 * rendering. Writers: every thread of every dripd process, with relaxed
 * atomics. Reader: whoever renders /metrics (a snapshot, not atomic as a
 * whole, which Prometheus tolerates). */
#include "dripd/metrics.h"

#include <string.h>
#include <sys/mman.h>

#include "dripd/util.h"

const double dr_hist_bounds[DR_HIST_BUCKETS - 1] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                    0.25,  0.5,    1,     2.5,  5,     60};

static const int status_codes[DR_STATUS_SLOTS] = {200, 201, 202, 204, 206, 304, 400, 401,
                                                  403, 404, 405, 409, 412, 413, 415, 416,
                                                  460, 500, 503, 507, 408, 411, 431, 0};

struct dr_metrics *metrics_create_shared(void)
{
    void *p = mmap(NULL, sizeof(struct dr_metrics), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, sizeof(struct dr_metrics));
    ((struct dr_metrics *)p)->start_time_ms = (uint64_t)dr_now_ms();
    return p;
}

void metrics_destroy_shared(struct dr_metrics *m)
{
    if (m != NULL)
        munmap(m, sizeof *m);
}

void metrics_observe(struct dr_hist *h, uint64_t usec)
{
    double s = (double)usec / 1e6;
    int i = 0;
    while (i < DR_HIST_BUCKETS - 1 && s > dr_hist_bounds[i])
        i++;
    metrics_add(&h->buckets[i], 1);
    metrics_add(&h->count, 1);
    metrics_add(&h->sum_us, usec);
}

int metrics_status_slot(int status)
{
    for (int i = 0; i < DR_STATUS_SLOTS - 1; i++)
        if (status_codes[i] == status)
            return i;
    return DR_STATUS_SLOTS - 1; /* "other" */
}

int metrics_slot_status(int slot)
{
    return status_codes[slot];
}

enum dr_route_class metrics_route_class(const char *name)
{
    static const char *names[DR_RC_COUNT] = {"upload", "tus",    "media",   "content", "jobs",
                                             "events", "health", "metrics", "web",     "other"};
    for (int i = 0; name && i < DR_RC_COUNT; i++)
        if (strcmp(names[i], name) == 0)
            return (enum dr_route_class)i;
    return DR_RC_OTHER;
}

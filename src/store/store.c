/* store.c - the store dispatch: picks the backend named by
 * storage.backend, and runs every operation through it.
 *
 * The backends live in store_local.c (a directory) and store_s3.c (an S3
 * bucket); both implement struct dr_store_ops from store.h. Every
 * operation goes through the functions here, which is where the store
 * metrics are taken, once, the same way for every backend (store.h says
 * what counts).
 *
 * Threads: handles are per thread (store.h). The only state here is the
 * metrics pointer, set once per process before any store thread starts and
 * only read afterwards; the counters are relaxed atomics in the shared
 * page (metrics.h).
 */
#include "dripd/store.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

#include "dripd/config.h"
#include "dripd/metrics.h"
#include "dripd/util.h"

static struct dr_metrics *g_metrics;

void store_set_metrics(struct dr_metrics *m)
{
    g_metrics = m;
}

int store_open(const struct dr_config *cfg, struct dr_store **out, char *err, size_t errlen)
{
    *out = NULL;
    switch (cfg->storage.backend) {
    case DR_STORE_LOCAL:
        return store_local_open(cfg, out, err, errlen);
    case DR_STORE_S3:
        return store_s3_open(cfg, out, err, errlen);
    }
    snprintf(err, errlen, "storage.backend: unknown backend %d", (int)cfg->storage.backend);
    return -EINVAL;
}

void store_close(struct dr_store *st)
{
    if (st != NULL && st->ops != NULL && st->ops->close != NULL)
        st->ops->close(st);
}

/* One operation ended: its duration since t0, and an error unless it
 * succeeded or found nothing. */
static void observe(enum dr_store_op op, uint64_t t0_ns, long rc)
{
    if (g_metrics == NULL)
        return;
    metrics_observe(&g_metrics->store_duration[op], (dr_mono_ns() - t0_ns) / 1000);
    if (rc < 0 && rc != -ENOENT)
        metrics_add(&g_metrics->store_errors[op], 1);
}

int store_put(struct dr_store *st, const char *key, const char *src_path, char *err, size_t errlen)
{
    uint64_t t0 = dr_mono_ns();
    int rc = st->ops->put(st, key, src_path, err, errlen);
    observe(DR_SOP_PUT, t0, rc);
    struct stat sb;
    if (rc == 0 && g_metrics != NULL && stat(src_path, &sb) == 0)
        metrics_add(&g_metrics->store_bytes_up, (uint64_t)sb.st_size);
    return rc;
}

int store_get(struct dr_store *st, const char *key, const char *dst_path, char *err, size_t errlen)
{
    uint64_t t0 = dr_mono_ns();
    int rc = st->ops->get(st, key, dst_path, err, errlen);
    observe(DR_SOP_GET, t0, rc);
    struct stat sb;
    if (rc == 0 && g_metrics != NULL && stat(dst_path, &sb) == 0)
        metrics_add(&g_metrics->store_bytes_down, (uint64_t)sb.st_size);
    return rc;
}

long store_get_range(struct dr_store *st, const char *key, uint64_t offset, void *buf, size_t len,
                     char *err, size_t errlen)
{
    uint64_t t0 = dr_mono_ns();
    long n = st->ops->get_range(st, key, offset, buf, len, err, errlen);
    observe(DR_SOP_GET, t0, n);
    if (n > 0 && g_metrics != NULL)
        metrics_add(&g_metrics->store_bytes_down, (uint64_t)n);
    return n;
}

int store_delete(struct dr_store *st, const char *key, char *err, size_t errlen)
{
    uint64_t t0 = dr_mono_ns();
    int rc = st->ops->del(st, key, err, errlen);
    observe(DR_SOP_DELETE, t0, rc);
    return rc;
}

int store_exists(struct dr_store *st, const char *key, uint64_t *size, char *err, size_t errlen)
{
    uint64_t t0 = dr_mono_ns();
    int rc = st->ops->exists(st, key, size, err, errlen);
    observe(DR_SOP_EXISTS, t0, rc);
    return rc;
}

int store_list(struct dr_store *st, int (*fn)(const char *key, uint64_t size, void *arg), void *arg,
               char *err, size_t errlen)
{
    return st->ops->list(st, fn, arg, err, errlen);
}

int store_check(struct dr_store *st, char *err, size_t errlen)
{
    return st->ops->check ? st->ops->check(st, err, errlen) : 0;
}

int store_sweep(struct dr_store *st, size_t *removed, char *err, size_t errlen)
{
    *removed = 0;
    return st->ops->sweep ? st->ops->sweep(st, removed, err, errlen) : 0;
}

int store_open_read(struct dr_store *st, const char *key, int *fd, char *err, size_t errlen)
{
    *fd = -1;
    if (st->ops->open_read == NULL)
        return -EOPNOTSUPP;
    uint64_t t0 = dr_mono_ns();
    int rc = st->ops->open_read(st, key, fd, err, errlen);
    if (rc == -EOPNOTSUPP)
        return rc;
    observe(DR_SOP_GET, t0, rc);
    struct stat sb;
    if (rc == 0 && g_metrics != NULL && fstat(*fd, &sb) == 0)
        metrics_add(&g_metrics->store_bytes_down, (uint64_t)sb.st_size);
    return rc;
}

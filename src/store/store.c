/* store.c - the store dispatch: picks the backend named by
 * storage.backend, and runs every operation through it.
 *
 * The backends live in store_local.c (a directory) and store_s3.c (an S3
 * bucket); both implement struct dr_store_ops from store.h. Every
 * operation goes through the functions here, which is where the store
 * metrics are taken, once, the same way for every backend (store.h says
 * what counts).
 *
 * store_forget() is the one place that removes a deleted media's objects
 * (original, variants, metadata object) and cache entries (the media routes, folder deletes, and
 * the trash and version housekeeping all call it).
 *
 * Threads: handles are per thread (store.h). The only state here is the
 * metrics pointer, set once per process before any store thread starts and
 * only read afterwards; the counters are relaxed atomics in the shared
 * page (metrics.h).
 */
#include "dripd/store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/cache.h"
#include "dripd/config.h"
#include "dripd/id.h"
#include "dripd/log.h"
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

typedef int (*put_fn)(struct dr_store *st, const char *key, const char *src_path, char *err,
                      size_t errlen);

static int measured_put(put_fn put, struct dr_store *st, const char *key, const char *src_path,
                        char *err, size_t errlen)
{
    struct stat sb; /* before: a put may move src */
    bool sized = g_metrics != NULL && stat(src_path, &sb) == 0;
    uint64_t t0 = dr_mono_ns();
    int rc = put(st, key, src_path, err, errlen);
    observe(DR_SOP_PUT, t0, rc);
    if (rc == 0 && sized)
        metrics_add(&g_metrics->store_bytes_up, (uint64_t)sb.st_size);
    return rc;
}

int store_put(struct dr_store *st, const char *key, const char *src_path, char *err, size_t errlen)
{
    return measured_put(st->ops->put, st, key, src_path, err, errlen);
}

int store_put_nosync(struct dr_store *st, const char *key, const char *src_path, char *err,
                     size_t errlen)
{
    return measured_put(st->ops->put_nosync ? st->ops->put_nosync : st->ops->put, st, key, src_path,
                        err, errlen);
}

int store_put_nosync_fd(struct dr_store *st, const char *key, int src_dirfd, const char *src_name,
                        const char *src_path, int fd, uint64_t size, bool *moved, char *err,
                        size_t errlen)
{
    *moved = false;
    if (st->ops->put_nosync_fd == NULL) {
        close(fd);
        return store_put_nosync(st, key, src_path, err, errlen);
    }
    uint64_t t0 = dr_mono_ns();
    int rc = st->ops->put_nosync_fd(st, key, src_dirfd, src_name, src_path, fd, moved, err, errlen);
    observe(DR_SOP_PUT, t0, rc);
    if (rc == 0 && g_metrics != NULL)
        metrics_add(&g_metrics->store_bytes_up, size);
    return rc;
}

bool store_takes_mem(const struct dr_config *cfg)
{
    return cfg->storage.backend == DR_STORE_LOCAL;
}

int store_put_nosync_mem(struct dr_store *st, const char *key, void *mem, size_t len, char *err,
                         size_t errlen)
{
    if (st->ops->put_nosync_mem == NULL || len > STORE_MEM_MAX) {
        free(mem);
        snprintf(err, errlen, "%s store: cannot put %zu bytes from memory", st->ops->name, len);
        return -EOPNOTSUPP;
    }
    uint64_t t0 = dr_mono_ns();
    int rc = st->ops->put_nosync_mem(st, key, mem, len, err, errlen);
    observe(DR_SOP_PUT, t0, rc);
    if (rc == 0 && g_metrics != NULL)
        metrics_add(&g_metrics->store_bytes_up, len);
    return rc;
}

int store_sync(struct dr_store *st, char *err, size_t errlen)
{
    return st->ops->sync != NULL ? st->ops->sync(st, err, errlen) : 0;
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

/* Store delete attempts for a transient error before leaving an orphan. */
#define FORGET_TRIES 3

/* 0, or -errno after FORGET_TRIES tries of a transient error; absent is
 * done. */
static int delete_retrying(struct dr_store *st, const char *key, char *err, size_t errlen)
{
    int rc = -EAGAIN;
    for (int i = 0; i < FORGET_TRIES && rc == -EAGAIN; i++) {
        if (i > 0)
            usleep(100000u << i); /* 200 ms, 400 ms */
        rc = store_delete(st, key, err, errlen);
    }
    return rc == -ENOENT ? 0 : rc;
}

void store_meta_key(const char *media_id, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s" STORE_META_SUFFIX, media_id);
}

/* Is key "<media id><suffix>"? Then the id into id. */
static bool is_suffixed_key(const char *key, const char *suffix, char *id, size_t idlen)
{
    size_t n = strlen(key), sl = strlen(suffix);
    if (n != DR_ID_LEN + sl || strcmp(key + DR_ID_LEN, suffix) != 0 || idlen <= DR_ID_LEN)
        return false;
    memcpy(id, key, DR_ID_LEN);
    id[DR_ID_LEN] = '\0';
    return dr_id_valid(id);
}

bool store_is_meta_key(const char *key, char *id, size_t idlen)
{
    return is_suffixed_key(key, STORE_META_SUFFIX, id, idlen);
}

void store_trash_key(const char *media_id, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s" STORE_TRASH_SUFFIX, media_id);
}

bool store_is_trash_key(const char *key, char *id, size_t idlen)
{
    return is_suffixed_key(key, STORE_TRASH_SUFFIX, id, idlen);
}

int store_mark_trash(struct dr_store *st, const char *tmp_dir, const char (*ids)[DR_ID_LEN + 1],
                     size_t n, bool in_trash, int64_t at)
{
    int left = 0;
    char *tmp = NULL;
    if (in_trash && n > 0) {
        tmp = xasprintf("%s/.trash-mark-XXXXXX", tmp_dir);
        int fd = mkstemp(tmp);
        char doc[64];
        int len = snprintf(doc, sizeof doc, "{\"v\":1,\"retired_at\":%lld}\n", (long long)at);
        int rc = fd < 0 ? -errno : dr_write_all(fd, doc, (size_t)len);
        if (fd >= 0)
            close(fd);
        if (rc < 0) {
            log_warn("trash: cannot write a trash mark (%s): %s; a rebuilt catalog would show "
                     "%zu trashed files as live",
                     tmp, strerror(-rc), n);
            if (fd >= 0)
                unlink(tmp);
            free(tmp);
            return (int)n;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char key[64], err[DR_ERRLEN] = "";
        store_trash_key(ids[i], key, sizeof key);
        int rc = in_trash ? store_put(st, key, tmp, err, sizeof err)
                          : delete_retrying(st, key, err, sizeof err);
        if (rc < 0) {
            log_warn("media %s: store %s of %s failed (%s): %s", ids[i],
                     in_trash ? "put" : "delete", key, strerror(-rc), err);
            left++;
        }
    }
    if (tmp != NULL) {
        unlink(tmp);
        free(tmp);
    }
    return left;
}

int store_forget(struct dr_store *st, const char *data_dir, const char *id, const char *key,
                 char *const *names, char *const *keys, size_t n)
{
    int left = 0;
    int rc = cache_remove(data_dir, id);
    if (rc < 0 && rc != -ENOENT)
        log_warn("media %s: cannot remove its cache entry: %s", id, strerror(-rc));
    for (size_t i = 0; i < n; i++) {
        char err[DR_ERRLEN] = "";
        if (names != NULL && names[i] != NULL) {
            char *cid = xasprintf("%s~%s", id, names[i]);
            cache_remove(data_dir, cid);
            free(cid);
        }
        if (keys[i] != NULL && (rc = delete_retrying(st, keys[i], err, sizeof err)) < 0) {
            log_warn("media %s: store delete of variant %s failed (%s): %s; the object is an "
                     "orphan for scrub",
                     id, keys[i], strerror(-rc), err);
            left++;
        }
    }
    for (int k = 0; k < 2; k++) { /* its metadata object, its trash mark: absent is fine */
        char meta[64], merr[DR_ERRLEN] = "";
        if (k == 0)
            store_meta_key(id, meta, sizeof meta);
        else
            store_trash_key(id, meta, sizeof meta);
        if ((rc = delete_retrying(st, meta, merr, sizeof merr)) < 0) {
            log_warn("media %s: store delete of %s failed (%s): %s; the object is an orphan for "
                     "scrub",
                     id, meta, strerror(-rc), merr);
            left++;
        }
    }
    if (key != NULL) {
        char err[DR_ERRLEN] = "";
        if ((rc = delete_retrying(st, key, err, sizeof err)) < 0) {
            log_warn("media %s: store delete of %s failed (%s): %s; the object is an orphan "
                     "for scrub",
                     id, key, strerror(-rc), err);
            left++;
        }
    }
    return left;
}

/* reprocess.c - the variants and metadata of stored media, made again
 * (see reprocess.h): a rate-limited batch over the catalog, like scrub.
 *
 * Threads: the pipeline worker's main thread calls reprocess_poll() (one
 * stat); a run is one "reprocess" thread (nice +10) with its own catalog
 * and store handles (a struct pl_tls of its own), so it never holds a
 * stage thread. One media at a time: the helper it runs is one more
 * dripd-decode beside the process stage's. Lock order: only r->mu; no I/O
 * under it.
 *
 * Per media: a fresh cache entry is read in place (LOCK_SH held while the
 * helper reads it, so the evictor leaves it); otherwise the object is
 * fetched into work/reprocess.sealed and unsealed into
 * work/reprocess.plain (every tag and the SHA-256 checked against the
 * catalog's), then removed. The list of media is taken at the start (ids
 * only, a bounded copy of what the catalog returns); a media deleted
 * meanwhile is skipped.
 */
#include "reprocess.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "dripd/cache.h"
#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/seal.h"
#include "dripd/store.h"
#include "dripd/util.h"
#include "pipeline.h"
#include "pipeline_process.h"

#define MAX_ERRORS 100 /* errors listed in the status; the count goes on */

struct reprocess {
    struct pl_ctx *pc;
    pthread_mutex_t mu;
    pthread_t thread;
    bool running;  /* a run's thread exists (joined by the next poll/destroy) */
    bool finished; /* it wrote its last status */
    bool stop;
    /* the run, under mu */
    char *path; /* NULL: all media */
    uint64_t checked, total, processed, skipped, n_errors;
    json_t *errors;
    int64_t started_ms;
};

static void write_status(struct reprocess *r, const char *state, const char *error)
{
    pthread_mutex_lock(&r->mu);
    json_t *doc = json_pack("{s:s?,s:I,s:I,s:I,s:I,s:I,s:O}", "path", r->path, "checked",
                            (json_int_t)r->checked, "total", (json_int_t)r->total, "processed",
                            (json_int_t)r->processed, "skipped", (json_int_t)r->skipped, "failed",
                            (json_int_t)r->n_errors, "errors", r->errors);
    pthread_mutex_unlock(&r->mu);
    if (error)
        json_object_set_new(doc, "error", json_string(error));
    pl_run_status(r->pc->cfg->data_dir, "reprocess", doc, state, r->started_ms);
}

/* Does media path p fall under the request (the path itself, or below
 * it as a folder)? */
static bool wanted(const char *want, const char *p)
{
    if (want == NULL || strcmp(want, "/") == 0)
        return true;
    size_t n = strlen(want);
    return strncmp(p, want, n) == 0 && (p[n] == '\0' || p[n] == '/');
}

struct ids {
    const char *want;
    char (*v)[DR_ID_LEN + 1];
    size_t n, cap;
};

static int collect(const struct dr_media *m, void *arg)
{
    struct ids *c = arg;
    if (m->state == NULL || strcmp(m->state, "available") != 0 || m->storage_key == NULL ||
        !wanted(c->want, m->path))
        return 0;
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 64;
        c->v = xrealloc(c->v, c->cap * sizeof *c->v);
    }
    snprintf(c->v[c->n++], DR_ID_LEN + 1, "%s", m->id);
    return 0;
}

static void rate_wait(struct reprocess *r, uint64_t *used, uint64_t nbytes)
{
    uint64_t rate = r->pc->cfg->processing.rate_limit;
    *used += nbytes;
    if (rate == 0)
        return;
    int64_t wait = r->started_ms + (int64_t)(*used * 1000 / rate) - dr_now_ms();
    while (wait > 0 && !__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
        int64_t step = wait > 200 ? 200 : wait;
        struct timespec ts = {.tv_sec = step / 1000, .tv_nsec = (step % 1000) * 1000000};
        nanosleep(&ts, NULL);
        wait -= step;
    }
}

static void note_error(struct reprocess *r, const struct dr_media *m, const char *err)
{
    log_warn("reprocess: media %s (%s): %s", m->id, m->path, err);
    pthread_mutex_lock(&r->mu);
    if (r->n_errors++ < MAX_ERRORS)
        json_array_append_new(
            r->errors, json_pack("{s:s,s:s,s:s}", "id", m->id, "path", m->path, "error", err));
    pthread_mutex_unlock(&r->mu);
}

/* The plaintext of m, open for reading: the cache entry (its LOCK_SH
 * held until fd is closed), or the object verified into plain. 0 /
 * -errno + err. */
static int open_plain(struct pl_tls *t, const struct dr_media *m, const char *sealed,
                      const char *plain, int *fd, char *err, size_t errlen)
{
    const struct dr_config *cfg = t->pc->cfg;
    uint64_t size = 0;
    if (cache_open_fresh(cfg->data_dir, m->id, cfg->cache.ttl, NULL, fd, &size) == 0) {
        if (size == m->size)
            return 0;
        close(*fd);
    }
    int rc = pl_tls_store(t, err, errlen);
    if (rc == 0)
        rc = store_get(t->store, m->storage_key, sealed, err, errlen);
    if (rc == 0)
        rc = unseal_file(sealed, plain, t->pc->master, m->sha256[0] ? m->sha256 : NULL, NULL, err,
                         errlen);
    unlink(sealed);
    if (rc != 0)
        return rc;
    *fd = open(plain, O_RDONLY | O_CLOEXEC);
    if (*fd < 0) {
        rc = -errno;
        dr_set_err(err, errlen, "open %s: %s", plain, strerror(errno));
    }
    return rc;
}

static void *run_main(void *arg)
{
    struct reprocess *r = arg;
    struct pl_ctx *pc = r->pc;
    pthread_setname_np(pthread_self(), "reprocess");
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10); /* never starve uploads */
    struct pl_tls t = {.pc = pc};
    struct ids c = {.want = r->path};
    char err[DR_ERRLEN] = "";
    int rc = catalog_open(pc->cfg, &t.cat);
    if (rc == 0)
        rc = catalog_media_foreach(t.cat, collect, &c);
    if (rc < 0) {
        write_status(r, "failed", "cannot list the catalog");
        goto out;
    }
    pthread_mutex_lock(&r->mu);
    r->total = c.n;
    pthread_mutex_unlock(&r->mu);
    log_info("reprocess: %zu media under %s, at most %llu bytes/s", c.n, r->path ? r->path : "/",
             (unsigned long long)pc->cfg->processing.rate_limit);
    write_status(r, "running", NULL);
    char *sealed = xasprintf("%s/reprocess.sealed", pc->work_dir);
    char *plain = xasprintf("%s/reprocess.plain", pc->work_dir);
    uint64_t used = 0;
    int64_t last = dr_mono_ms();
    size_t i;
    for (i = 0; i < c.n && !__atomic_load_n(&r->stop, __ATOMIC_RELAXED); i++) {
        struct dr_media m;
        memset(&m, 0, sizeof m);
        bool processed = false;
        if (catalog_media_get(t.cat, c.v[i], NULL, &m) != 0 || m.state == NULL ||
            strcmp(m.state, "available") != 0) {
            dr_media_clear(&m); /* gone meanwhile */
        } else {
            int fd = -1;
            rc = open_plain(&t, &m, sealed, plain, &fd, err, sizeof err);
            if (rc == 0) {
                rate_wait(r, &used, m.size);
                bool decoded = false;
                rc =
                    pl_process_file(&t, &m, fd, "reprocess", NULL, NULL, &decoded, err, sizeof err);
                close(fd);
                processed = rc == 0 && decoded;
            }
            unlink(plain);
            if (rc != 0)
                note_error(r, &m, err);
            metrics_add(&pc->metrics->reprocess_media, 1);
            dr_media_clear(&m);
        }
        pthread_mutex_lock(&r->mu);
        r->checked++;
        if (processed)
            r->processed++;
        else
            r->skipped++;
        pthread_mutex_unlock(&r->mu);
        if (dr_mono_ms() - last >= 500) {
            write_status(r, "running", NULL);
            last = dr_mono_ms();
        }
    }
    bool stopped = i < c.n;
    write_status(r, stopped ? "failed" : "done", stopped ? "interrupted by shutdown" : NULL);
    log_info("reprocess: %s, %llu of %zu media, %llu processed, %llu failed",
             stopped ? "interrupted" : "done", (unsigned long long)r->checked, c.n,
             (unsigned long long)r->processed, (unsigned long long)r->n_errors);
    free(sealed);
    free(plain);
out:
    free(c.v);
    catalog_close(t.cat);
    store_close(t.store);
    pthread_mutex_lock(&r->mu);
    r->finished = true;
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

struct reprocess *reprocess_create(struct pl_ctx *pc)
{
    struct reprocess *r = xcalloc(1, sizeof *r);
    r->pc = pc;
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void reap(struct reprocess *r)
{
    if (!r->running)
        return;
    pthread_join(r->thread, NULL);
    r->running = false;
    json_decref(r->errors);
    r->errors = NULL;
    free(r->path);
    r->path = NULL;
}

void reprocess_poll(struct reprocess *r)
{
    const char *dir = r->pc->cfg->data_dir;
    if (!pl_run_requested(dir, "reprocess"))
        return;
    pthread_mutex_lock(&r->mu);
    bool busy = r->running && !r->finished;
    pthread_mutex_unlock(&r->mu);
    if (busy)
        return; /* the request stays; it is taken when this run ends */
    reap(r);
    json_t *doc = pl_run_take(dir, "reprocess");
    const char *p = json_string_value(json_object_get(doc, "path"));
    r->path = p ? xstrdup(p) : NULL;
    json_decref(doc);
    r->checked = r->total = r->processed = r->skipped = r->n_errors = 0;
    r->finished = false;
    r->errors = json_array();
    r->started_ms = dr_now_ms();
    if (dr_thread_start(&r->thread, run_main, r) == 0)
        r->running = true;
}

void reprocess_destroy(struct reprocess *r)
{
    if (r == NULL)
        return;
    __atomic_store_n(&r->stop, true, __ATOMIC_RELAXED);
    reap(r);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

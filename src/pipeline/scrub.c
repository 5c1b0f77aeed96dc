/* scrub.c - verifying every stored object, the Flow analog (see scrub.h):
 * originals and their variants (thumbnails, previews: sealed objects of
 * their own, docs/PROCESSING.md).
 *
 * Threads: the pipeline worker's thread that calls scrub_poll(); one
 * coordinator thread per run; `threads` verifier threads. The coordinator
 * lists the media (its own catalog handle), feeds a bounded queue (depth
 * 2 x threads: verifiers pull by demand) and writes progress. Each verifier
 * has its own store handle. Lock order: only s->mu; I/O never under it.
 *
 * Verification: the object is fetched into work/scrub-<tid>.sealed (the
 * store interface is get-to-file, so S3 objects stream to disk, never to
 * memory), then unseal_fd(..., -1) checks every segment tag, the order,
 * the length and the SHA-256 against the catalog's. -ENOENT from the store
 * means missing; -EBADMSG corrupt; other errors are recorded as corrupt
 * with their message (a scrub reports, it does not retry).
 *
 * Orphans: after the verification the coordinator lists the store and
 * reports every object whose media id (the key up to its '_') has no
 * media row: what a delete leaves when the process or the power dies
 * between its catalog commit and its store delete (the row is the
 * truth, so the object is garbage). Reported, never deleted: an operator
 * decides.
 */
#include "scrub.h"

#include "pipeline.h"

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

#include "dripd/catalog.h"
#include "dripd/catalog_variants.h"
#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/seal.h"
#include "dripd/staging.h"
#include "dripd/store.h"
#include "dripd/util.h"

struct item {
    char id[DR_ID_LEN + 1];
    char *path;
    char *key;
    char sha[65];
    uint64_t size;
};

struct scrub {
    const struct dr_config *cfg;
    struct dr_metrics *m;
    uint8_t master[DR_KEY_LEN];
    int threads;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* queue changes */
    pthread_t coord;
    bool running;  /* a run's coordinator exists (joined by the next poll/destroy) */
    bool finished; /* that coordinator has written its last status (under mu) */
    bool stop;
    /* the run's queue and results, under mu */
    struct item *q;
    size_t qcap, qhead, qlen;
    bool feeding_done;
    uint64_t checked, total, bytes;
    json_t *corrupt, *missing, *orphans;
    int64_t started_ms;
    /* rate limit: bytes allowed since start */
    uint64_t budget_used;
};

static void item_free(struct item *it)
{
    free(it->path);
    free(it->key);
}

static void write_status(struct scrub *s, const char *state, const char *error)
{
    pthread_mutex_lock(&s->mu);
    json_t *doc = json_pack("{s:I,s:I,s:I,s:O,s:O,s:O}", "checked", (json_int_t)s->checked, "total",
                            (json_int_t)s->total, "bytes", (json_int_t)s->bytes, "corrupt",
                            s->corrupt, "missing", s->missing, "orphans", s->orphans);
    pthread_mutex_unlock(&s->mu);
    if (error)
        json_object_set_new(doc, "error", json_string(error));
    pl_run_status(s->cfg->data_dir, "scrub", doc, state, s->started_ms);
}

/* Sleep so that total bytes read stay under rate_limit bytes/s since start. */
static void rate_wait(struct scrub *s, uint64_t nbytes)
{
    uint64_t rate = s->cfg->scrub.rate_limit;
    if (rate == 0)
        return;
    pthread_mutex_lock(&s->mu);
    s->budget_used += nbytes;
    uint64_t used = s->budget_used;
    pthread_mutex_unlock(&s->mu);
    int64_t due_ms = s->started_ms + (int64_t)(used * 1000 / rate);
    int64_t wait = due_ms - dr_now_ms();
    if (wait > 0) {
        struct timespec ts = {.tv_sec = wait / 1000, .tv_nsec = (wait % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
}

static void record(struct scrub *s, const struct item *it, int rc, const char *err)
{
    pthread_mutex_lock(&s->mu);
    s->checked++;
    if (rc == -ENOENT) {
        json_array_append_new(s->missing, json_pack("{s:s,s:s}", "id", it->id, "path", it->path));
        metrics_add(&s->m->scrub_missing, 1);
    } else if (rc < 0) {
        json_array_append_new(
            s->corrupt, json_pack("{s:s,s:s,s:s}", "id", it->id, "path", it->path, "error", err));
        metrics_add(&s->m->scrub_corrupt, 1);
    }
    pthread_mutex_unlock(&s->mu);
    metrics_add(&s->m->scrub_objects, 1);
    if (rc < 0)
        log_warn("scrub: media %s (%s): %s", it->id, it->path,
                 rc == -ENOENT ? "object missing" : err);
}

struct verifier_arg {
    struct scrub *s;
    int n;
};

static void *verifier(void *arg)
{
    struct verifier_arg *va = arg;
    struct scrub *s = va->s;
    char name[16];
    snprintf(name, sizeof name, "scrub-%d", va->n);
    pthread_setname_np(pthread_self(), name);
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10); /* never starve uploads */
    char err[DR_ERRLEN];
    struct dr_store *st = NULL;
    int orc = store_open(s->cfg, &st, err, sizeof err);
    char *scratch = xasprintf("%s/work/scrub-%d-%d.sealed", s->cfg->data_dir, (int)getpid(), va->n);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->qlen == 0 && !s->feeding_done && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop || (s->qlen == 0 && s->feeding_done)) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        struct item it = s->q[s->qhead];
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
        pthread_cond_broadcast(&s->cv); /* room for the feeder */
        pthread_mutex_unlock(&s->mu);

        int rc = orc;
        err[0] = '\0';
        if (rc == 0)
            rc = store_get(st, it.key, scratch, err, sizeof err);
        if (rc == 0) {
            int fd = open(scratch, O_RDONLY | O_CLOEXEC);
            struct stat sb;
            if (fd < 0)
                rc = -errno;
            else {
                if (fstat(fd, &sb) == 0) {
                    rate_wait(s, (uint64_t)sb.st_size);
                    pthread_mutex_lock(&s->mu);
                    s->bytes += (uint64_t)sb.st_size;
                    pthread_mutex_unlock(&s->mu);
                    metrics_add(&s->m->scrub_bytes, (uint64_t)sb.st_size);
                }
                rc = unseal_fd(fd, -1, s->master, it.sha[0] ? it.sha : NULL, NULL, err, sizeof err);
                close(fd);
            }
        }
        unlink(scratch);
        if (rc < 0 && err[0] == '\0')
            snprintf(err, sizeof err, "%s", strerror(-rc));
        record(s, &it, rc, err);
        item_free(&it);
    }
    free(scratch);
    store_close(st);
    free(va);
    return NULL;
}

struct collect {
    struct item *v;
    size_t n, cap;
};

/* One object to verify (path is taken). */
static void push_item(struct collect *c, const char *id, char *path, const char *key,
                      const char *sha, uint64_t size)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->v = xrealloc(c->v, c->cap * sizeof *c->v);
    }
    struct item *it = &c->v[c->n++];
    memset(it, 0, sizeof *it);
    snprintf(it->id, sizeof it->id, "%s", id);
    it->path = path;
    it->key = xstrdup(key);
    snprintf(it->sha, sizeof it->sha, "%s", sha);
    it->size = size;
}

static int collect_one(const struct dr_media *m, void *arg)
{
    if (m->state != NULL && strcmp(m->state, "available") == 0 && m->storage_key != NULL)
        push_item(arg, m->id, xstrdup(m->path), m->storage_key, m->sha256, m->size);
    return 0;
}

struct orphan_scan {
    struct scrub *s;
    struct catalog *cat;
};

static int orphan_one(const char *key, uint64_t size, void *arg)
{
    (void)size;
    struct orphan_scan *o = arg;
    if (staging_key_is(key))
        return 0; /* a staged upload body: the staged-gc collector's (cluster) */
    char id[DR_ID_LEN + 1];
    /* "<id>_<time><ext>" an original, "<id>~<name>.<ext>" a variant */
    snprintf(id, sizeof id, "%.*s", (int)strcspn(key, "_.~"), key);
    struct dr_media m;
    memset(&m, 0, sizeof m);
    int rc = catalog_media_get(o->cat, id, NULL, &m);
    if (rc == 0) {
        dr_media_clear(&m);
        return 0;
    }
    if (rc == -ENOENT) {
        log_warn("scrub: object %s has no media in the catalog (orphan)", key);
        pthread_mutex_lock(&o->s->mu);
        json_array_append_new(o->s->orphans, json_pack("{s:s}", "key", key));
        pthread_mutex_unlock(&o->s->mu);
    }
    return 0;
}

/* Objects whose media is gone from the catalog (see the design comment). */
static void find_orphans(struct scrub *s)
{
    struct orphan_scan o = {.s = s};
    struct dr_store *st = NULL;
    char err[DR_ERRLEN] = "";
    int rc = catalog_open(s->cfg, &o.cat);
    if (rc == 0 && (rc = store_open(s->cfg, &st, err, sizeof err)) == 0)
        rc = st->ops->list(st, orphan_one, &o, err, sizeof err);
    if (rc < 0)
        log_warn("scrub: cannot look for orphan objects: %s", err[0] ? err : strerror(-rc));
    store_close(st);
    catalog_close(o.cat);
}

/* Variants are sealed objects too (their path: "<variant name> variant"). */
static int collect_variant(const struct dr_variant *v, void *arg)
{
    if (v->storage_key != NULL)
        push_item(arg, v->media_id, xasprintf("%s variant", v->name), v->storage_key, v->sha256,
                  v->size);
    return 0;
}

static void *coordinator(void *arg)
{
    struct scrub *s = arg;
    pthread_setname_np(pthread_self(), "scrub");
    struct catalog *cat = NULL;
    struct collect c = {0};
    int rc = catalog_open(s->cfg, &cat);
    if (rc == 0)
        rc = catalog_media_foreach(cat, collect_one, &c);
    if (rc == 0)
        rc = catalog_variants_foreach(cat, collect_variant, &c);
    catalog_close(cat);
    if (rc < 0) {
        write_status(s, "failed", "cannot list the catalog");
        pthread_mutex_lock(&s->mu);
        s->finished = true;
        pthread_mutex_unlock(&s->mu);
        goto out;
    }
    pthread_mutex_lock(&s->mu);
    s->total = c.n;
    pthread_mutex_unlock(&s->mu);
    log_info("scrub: verifying %zu objects with %d threads, at most %llu bytes/s", c.n, s->threads,
             (unsigned long long)s->cfg->scrub.rate_limit);
    write_status(s, "running", NULL);

    pthread_t *tids = xcalloc((size_t)s->threads, sizeof *tids);
    int started = 0;
    for (int i = 0; i < s->threads; i++) {
        struct verifier_arg *va = xmalloc(sizeof *va);
        va->s = s;
        va->n = i;
        int e = dr_thread_start(&tids[started], verifier, va);
        if (e != 0) {
            log_error("scrub: cannot start verifier %d: %s", i + 1, strerror(-e));
            free(va);
            continue;
        }
        started++;
    }
    if (started == 0) { /* nobody would take from the queue */
        free(tids);
        write_status(s, "failed", "cannot start a verifier thread");
        pthread_mutex_lock(&s->mu);
        s->finished = true;
        pthread_mutex_unlock(&s->mu);
        for (size_t i = 0; i < c.n; i++)
            item_free(&c.v[i]);
        goto out;
    }
    int64_t last = dr_mono_ms();
    size_t next = 0;
    pthread_mutex_lock(&s->mu);
    while (!s->stop && (next < c.n || s->qlen > 0 || s->checked < s->total)) {
        /* Feed while there is room (bounded queue = demand from the verifiers). */
        while (next < c.n && s->qlen < s->qcap) {
            s->q[(s->qhead + s->qlen) % s->qcap] = c.v[next++];
            s->qlen++;
            pthread_cond_broadcast(&s->cv);
        }
        if (next == c.n)
            s->feeding_done = true;
        pthread_cond_broadcast(&s->cv);
        struct timespec ts;
        dr_mono_timespec(&ts, dr_mono_ms() + 200);
        pthread_cond_timedwait(&s->cv, &s->mu, &ts);
        if (dr_mono_ms() - last >= 500) {
            pthread_mutex_unlock(&s->mu);
            write_status(s, "running", NULL);
            last = dr_mono_ms();
            pthread_mutex_lock(&s->mu);
        }
    }
    s->feeding_done = true;
    bool stopped = s->stop;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
    for (size_t i = next; i < c.n; i++)
        item_free(&c.v[i]);
    pthread_mutex_lock(&s->mu);
    while (s->qlen > 0) { /* left over after a stop */
        item_free(&s->q[s->qhead]);
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
    }
    pthread_mutex_unlock(&s->mu);
    if (!stopped)
        find_orphans(s);
    write_status(s, stopped ? "failed" : "done", stopped ? "interrupted by shutdown" : NULL);
    pthread_mutex_lock(&s->mu);
    s->finished = true;
    pthread_mutex_unlock(&s->mu);
    log_info("scrub: %s, %llu checked, %zu corrupt, %zu missing, %zu orphans",
             stopped ? "interrupted" : "done", (unsigned long long)s->checked,
             json_array_size(s->corrupt), json_array_size(s->missing), json_array_size(s->orphans));
out:
    free(c.v);
    return NULL;
}

struct scrub *scrub_create(const struct dr_config *cfg, struct dr_metrics *m,
                           const uint8_t master[DR_KEY_LEN], int threads)
{
    struct scrub *s = xcalloc(1, sizeof *s);
    s->cfg = cfg;
    s->m = m;
    memcpy(s->master, master, DR_KEY_LEN);
    s->threads = threads > 0 ? threads : 1;
    s->qcap = (size_t)s->threads * 2;
    s->q = xcalloc(s->qcap, sizeof *s->q);
    pthread_mutex_init(&s->mu, NULL);
    dr_cond_init_mono(&s->cv);
    return s;
}

/* Join a finished run's coordinator. */
static void reap(struct scrub *s)
{
    if (!s->running)
        return;
    pthread_join(s->coord, NULL);
    s->running = false;
    json_decref(s->corrupt);
    json_decref(s->missing);
    json_decref(s->orphans);
    s->corrupt = s->missing = s->orphans = NULL;
}

void scrub_poll(struct scrub *s)
{
    if (!pl_run_requested(s->cfg->data_dir, "scrub"))
        return;
    pthread_mutex_lock(&s->mu);
    bool busy = s->running && !s->finished;
    pthread_mutex_unlock(&s->mu);
    if (busy)
        return; /* the request stays; it is taken when this run ends */
    reap(s);
    json_decref(pl_run_take(s->cfg->data_dir, "scrub"));
    s->checked = s->total = s->bytes = s->budget_used = 0;
    s->qhead = s->qlen = 0;
    s->feeding_done = false;
    s->finished = false;
    s->corrupt = json_array();
    s->missing = json_array();
    s->orphans = json_array();
    s->started_ms = dr_now_ms();
    if (dr_thread_start(&s->coord, coordinator, s) == 0)
        s->running = true;
}

void scrub_destroy(struct scrub *s)
{
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    reap(s);
    free(s->q);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

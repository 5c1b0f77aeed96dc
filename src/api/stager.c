/* stager.c - the http worker's side of staged upload bodies (stager.h).
 *
 * What: in cluster mode (catalog.backend postgres) ingest (PUT, multipart)
 * and tus seal every upload body, or tus PATCH, into the shared store
 * before they answer (staging.h), so an acknowledged upload never rests on
 * this node's disk alone. This module holds the master key for that (the
 * http worker needs it only in cluster mode) and a store handle per
 * thread. Scratch files are <data_dir>/work/stage-<part>.sealed, removed
 * after each put.
 *
 * A tus PATCH cut short saves what it received off the loop thread: the
 * saver thread ("dripd-save") stages and records it (stager_save_later).
 *
 * Threads: the key is written by stager_start before any thread stages
 * and cleared by stager_stop after they stopped; in between it is only
 * read. Store handles are thread-local (pthread key, closed by its
 * destructor when the thread exits). The saver's queue is guarded by
 * g_save.mu (a leaf; no I/O under it); stager_stop saves what is queued,
 * then joins it.
 */
#include "stager.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/keys.h"
#include "spool.h"
#include "dripd/log.h"
#include "dripd/staging.h"
#include "dripd/store.h"
#include "dripd/util.h"

static uint8_t g_master[DR_KEY_LEN];
static bool g_loaded;
static pthread_key_t g_store_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

struct save {
    struct save *next;
    char tus_id[DR_ID_LEN + 1], part[DR_ID_LEN + 1];
    char *owner, *path, *content_type, *file;
    uint64_t off, len;
    int64_t new_length;
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct save *head, *tail;
    unsigned n;
    bool running, stop;
    pthread_t th;
    const struct dr_config *cfg;
} g_save = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *save_main(void *arg);

static void close_store(void *p)
{
    store_close(p);
}

static void make_key(void)
{
    (void)pthread_key_create(&g_store_key, close_store);
}

bool stager_on(const struct dr_config *cfg)
{
    return cfg->catalog.backend == DR_CATALOG_POSTGRES;
}

int stager_start(const struct dr_config *cfg)
{
    if (!stager_on(cfg))
        return 0;
    pthread_once(&g_once, make_key);
    char err[256];
    int rc = keys_load_master(cfg->encryption.key_file, false, g_master, err, sizeof err);
    if (rc < 0) {
        log_error("http: cluster mode stages uploads sealed, but the master key cannot be read: %s",
                  err);
        return rc;
    }
    g_loaded = true;
    g_save.cfg = cfg;
    g_save.stop = false;
    if (dr_thread_start(&g_save.th, save_main, NULL) == 0) {
        pthread_setname_np(g_save.th, "dripd-save");
        g_save.running = true;
    } else {
        log_warn("http: no saver thread: tus requests cut short in cluster mode keep nothing");
    }
    return 0;
}

void stager_stop(void)
{
    pthread_mutex_lock(&g_save.mu);
    g_save.stop = true;
    pthread_cond_signal(&g_save.cv);
    bool running = g_save.running;
    g_save.running = false;
    pthread_mutex_unlock(&g_save.mu);
    if (running)
        pthread_join(g_save.th, NULL);
    explicit_bzero(g_master, sizeof g_master);
    g_loaded = false;
}

/* This thread's store handle, opened on first use. */
static struct dr_store *thread_store(const struct dr_config *cfg, char *err, size_t errlen)
{
    pthread_once(&g_once, make_key);
    struct dr_store *st = pthread_getspecific(g_store_key);
    if (st == NULL && store_open(cfg, &st, err, errlen) == 0)
        (void)pthread_setspecific(g_store_key, st);
    return st;
}

int stager_put(const struct dr_config *cfg, const struct stager_part *p, const char *src_path,
               char *err, size_t errlen)
{
    if (!g_loaded) {
        snprintf(err, errlen, "staging: no master key");
        return -EIO;
    }
    struct dr_store *st = thread_store(cfg, err, errlen);
    if (st == NULL)
        return -EAGAIN;
    char *scratch = xasprintf("%s/work/stage-%s.sealed", cfg->data_dir, p->part);
    struct staging_part sp = {
        .body = p->body,
        .part = p->part,
        .owner = p->owner,
        .path = p->path,
        .content_type = p->content_type,
        .segment_size = (uint32_t)cfg->pipeline.segment_size,
    };
    uint64_t t0 = dr_mono_ns();
    int rc = staging_put(st, g_master, &sp, src_path, scratch, err, errlen);
    if (rc == 0)
        log_debug("staging: part %s of %s in the store (%.1f ms)", p->part, p->body,
                  (double)(dr_mono_ns() - t0) / 1e6);
    free(scratch);
    return rc;
}

void stager_delete(const struct dr_config *cfg, const char *body, const char *part)
{
    char err[256] = "";
    struct dr_store *st = thread_store(cfg, err, sizeof err);
    int rc = st != NULL ? staging_delete(st, body, part, err, sizeof err) : -EAGAIN;
    if (rc < 0)
        log_warn("staging: could not delete the unused part %s of %s: %s", part, body, err);
}

/* ---- saves of tus requests cut short ---- */

static void save_free(struct save *s)
{
    spool_remove(s->file);
    free(s->owner);
    free(s->path);
    free(s->content_type);
    free(s->file);
    free(s);
}

static void save_one(struct catalog **cat, struct save *s)
{
    const struct dr_config *cfg = g_save.cfg;
    struct stager_part p = {.body = s->tus_id,
                            .part = s->part,
                            .owner = s->owner,
                            .path = s->path,
                            .content_type = s->content_type};
    char err[256] = "";
    int rc = stager_put(cfg, &p, s->file, err, sizeof err);
    if (rc == 0 && *cat == NULL)
        rc = catalog_open(cfg, cat);
    if (rc == 0) {
        rc = catalog_tus_add_part(*cat, s->tus_id, s->part, s->off, s->len, s->new_length);
        snprintf(err, sizeof err, "%s", strerror(-rc));
        if (rc < 0)
            stager_delete(cfg, s->tus_id, s->part);
    }
    if (rc == 0)
        log_info("tus: upload %s interrupted; saved offset %llu", s->tus_id,
                 (unsigned long long)(s->off + s->len));
    else if (rc == -ECANCELED)
        log_info("tus: upload %s interrupted; its %llu bytes at %llu were not needed (the offset "
                 "moved meanwhile)",
                 s->tus_id, (unsigned long long)s->len, (unsigned long long)s->off);
    else
        log_warn("tus: upload %s interrupted; could not save offset %llu: %s", s->tus_id,
                 (unsigned long long)(s->off + s->len), err);
}

static void *save_main(void *arg)
{
    (void)arg;
    struct catalog *cat = NULL;
    for (;;) {
        pthread_mutex_lock(&g_save.mu);
        while (g_save.head == NULL && !g_save.stop)
            pthread_cond_wait(&g_save.cv, &g_save.mu);
        struct save *s = g_save.head;
        if (s != NULL) {
            g_save.head = s->next;
            if (g_save.head == NULL)
                g_save.tail = NULL;
        }
        pthread_mutex_unlock(&g_save.mu);
        if (s == NULL)
            break; /* stopping, and nothing left */
        save_one(&cat, s);
        pthread_mutex_lock(&g_save.mu);
        g_save.n--;
        pthread_mutex_unlock(&g_save.mu);
        save_free(s);
    }
    catalog_close(cat);
    return NULL;
}

void stager_save_later(const struct dr_config *cfg, const char *tus_id, const char *part,
                       const char *owner, const char *path, const char *content_type,
                       const char *file, uint64_t off, uint64_t len, int64_t new_length)
{
    (void)cfg;
    struct save *s = xcalloc(1, sizeof *s);
    snprintf(s->tus_id, sizeof s->tus_id, "%s", tus_id);
    snprintf(s->part, sizeof s->part, "%s", part);
    s->owner = xstrdup(owner);
    s->path = xstrdup(path);
    s->content_type = content_type ? xstrdup(content_type) : NULL;
    s->file = xstrdup(file);
    s->off = off;
    s->len = len;
    s->new_length = new_length;
    pthread_mutex_lock(&g_save.mu);
    bool take = g_save.running && !g_save.stop && g_save.n < STAGER_SAVES_MAX;
    if (take) {
        if (g_save.tail)
            g_save.tail->next = s;
        else
            g_save.head = s;
        g_save.tail = s;
        g_save.n++;
        pthread_cond_signal(&g_save.cv);
    }
    pthread_mutex_unlock(&g_save.mu);
    if (!take) {
        log_warn("tus: upload %s interrupted; %llu bytes dropped (no room to save them)", tus_id,
                 (unsigned long long)len);
        save_free(s);
    }
}

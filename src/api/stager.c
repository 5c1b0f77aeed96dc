/* stager.c - the http worker's side of staged upload bodies (stager.h).
 *
 * What: in cluster mode (catalog.backend postgres) ingest (PUT, multipart)
 * seals every upload body into the shared store before it answers
 * (staging.h), so an acknowledged upload never rests on this node's disk
 * alone. This module holds the master key for that (the
 * http worker needs it only in cluster mode) and a store handle per
 * thread. Scratch files are <data_dir>/work/stage-<part>.sealed, removed
 * after each put.
 *
 * Threads: the key is written by stager_start before any thread stages
 * and cleared by stager_stop after they stopped; in between it is only
 * read. Store handles are thread-local (pthread key, closed by its
 * destructor when the thread exits).
 */
#include "stager.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/config.h"
#include "dripd/keys.h"
#include "dripd/log.h"
#include "dripd/staging.h"
#include "dripd/store.h"
#include "dripd/util.h"

static uint8_t g_master[DR_KEY_LEN];
static bool g_loaded;
static pthread_key_t g_store_key;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

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
    return 0;
}

void stager_stop(void)
{
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

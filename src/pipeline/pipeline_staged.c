/* pipeline_staged.c - an upload's bytes on this node, from its staged
 * body if need be (pipeline_staged.h).
 *
 * What: a small upload's inline body (docs/CATALOG.md, "Inline bodies")
 * comes with its claim and stays in memory (encrypt seals it there); a
 * step that needs a file (process: the decoder reads one) has it written
 * to <work_dir>/<job>.body, scratch like a fetched body below.
 *
 * In cluster mode (catalog.backend postgres) every upload was
 * sealed into the shared store before its ack (staging.h), as parts the
 * catalog lists (catalog_staged_parts) and the job names (jobs.staged).
 * The first step that reads the bytes (process, else encrypt) calls
 * pl_staged_body: the spool file on this node's disk is used when it is
 * there with the body's size (it was fsynced before the part was put);
 * else every part is fetched, verified (staging_fetch: every tag, the
 * SHA-256, the length and id the catalog recorded) and appended to
 * <work_dir>/<job>.body.tmp, renamed to <job>.body when whole. That file
 * is scratch (not fsynced): a job resumed in another process fetches
 * again, since only the path this process set in memory is trusted.
 * Notify renames it into the cache like a spool file; a failed job's
 * cleanup removes it.
 *
 * The collector ("staged-gc" thread, cluster mode only): every
 * GC_EVERY_MS, on the node holding the "staged-gc" lease (once per
 * cluster, taken over GC_LEASE_MS after its holder died), parts nothing
 * needs any more go: the object first, then the row, so a crash between
 * leaves a row whose object is gone, deleted again next time (deleting
 * an absent object succeeds). A full batch is followed by the next at once.
 * Hourly the same node lists the store for staged objects no row names
 * (their node died between the put and the commit that would have
 * recorded them, or failed to delete them) and deletes those older than
 * ORPHAN_AGE_MS, far longer than any put-to-commit takes.
 *
 * Threads: pl_staged_body runs on the calling stage thread, with its own
 * catalog and store handles (struct pl_tls); the collector has a thread
 * and handles of its own.
 */
#include "pipeline_staged.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/staging.h"
#include "dripd/store.h"
#include "dripd/util.h"

#define GC_EVERY_MS 5000
#define GC_LEASE_MS 60000
#define GC_BATCH 256
/* Objects no row names (a node died between its put and its commit):
 * deleted once older than this, by a listing of the store this often.
 * DRIPD_TEST_STAGED_ORPHAN_MS (tests) sets both. */
#define ORPHAN_AGE_MS (3600 * 1000)
#define ORPHAN_SWEEP_MS (3600 * 1000)

/* Fetch the parts into path (0 / -errno + err). */
static int fetch_parts(struct pl_tls *t, const struct pl_job *j, const struct dr_staged_part *p,
                       size_t n, const char *path, char *err, size_t errlen)
{
    char *tmp = xasprintf("%s.tmp", path);
    char *scratch = xasprintf("%s/%s.part", t->pc->work_dir, j->job.id);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "create %s: %s", tmp, strerror(errno));
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = staging_fetch(t->store, t->pc->master, p[i].src, p[i].part, p[i].len, fd, scratch, err,
                           errlen);
    if (fd >= 0 && close(fd) != 0 && rc == 0) {
        rc = -errno;
        snprintf(err, errlen, "write %s: %s", tmp, strerror(errno));
    }
    if (rc == 0 && rename(tmp, path) != 0) {
        rc = -errno;
        snprintf(err, errlen, "rename %s: %s", tmp, strerror(errno));
    }
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    free(scratch);
    return rc;
}

/* An inline body (job_bodies, claimed with the job) into <work_dir>/<job
 * id>.body. Scratch, like a fetched body: not fsynced (the catalog row is
 * the durable copy until the job is done), trusted only by the process
 * that wrote it (the path is set in memory only). The memory goes once
 * the file has it. */
static int inline_body(struct pl_tls *t, struct pl_job *j, char *err, size_t errlen)
{
    char *path = xasprintf("%s/%s.body", t->pc->work_dir, j->job.id);
    int rc = 0;
    const char *name;
    int dfd = pl_at(t->pc, path, &name);
    int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "create %s: %s", path, strerror(-rc));
    } else {
        rc = dr_write_all(fd, j->job.body, j->job.body_len);
        if (close(fd) != 0 && rc == 0)
            rc = -errno;
        if (rc < 0)
            snprintf(err, errlen, "write %s: %s", path, strerror(-rc));
    }
    if (rc < 0) {
        (void)pl_unlink(t->pc, path);
        free(path);
        return rc;
    }
    free(j->job.spool_path);
    j->job.spool_path = path;
    j->scratch_body = true;
    free(j->job.body);
    j->job.body = NULL;
    j->job.body_len = 0;
    return 0;
}

int pl_staged_body(struct pl_tls *t, struct pl_job *j, bool need_file, char *err, size_t errlen)
{
    if (j->job.body != NULL)
        return need_file ? inline_body(t, j, err, errlen) : 0;
    if (j->job.staged == NULL)
        return 0;
    char *fetched = xasprintf("%s/%s.body", t->pc->work_dir, j->job.id);
    if (j->job.spool_path != NULL && strcmp(j->job.spool_path, fetched) == 0) {
        free(fetched); /* this process fetched it already */
        return 0;
    }
    struct dr_staged_part *p = NULL;
    size_t n = 0;
    int rc = catalog_staged_parts(t->cat, j->job.staged, &p, &n);
    if (rc < 0) {
        snprintf(err, errlen, "catalog: the parts of staged body %s: %s", j->job.staged,
                 strerror(-rc));
        goto out;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i].off != total) {
            rc = -EBADMSG;
            snprintf(err, errlen, "staged body %s: part %s starts at %" PRIu64 ", not %" PRIu64,
                     j->job.staged, p[i].part, p[i].off, total);
            goto out;
        }
        total += p[i].len;
    }
    struct stat st;
    if (j->job.spool_path != NULL && stat(j->job.spool_path, &st) == 0 &&
        (uint64_t)st.st_size == total)
        goto out; /* the node that took the upload: its spool file */
    /* (no parts: an empty upload, or parts gone by mistake, which encrypt
     * then reports: the size is not the media's) */
    rc = pl_tls_store(t, err, errlen);
    if (rc == 0) {
        uint64_t t0 = dr_mono_ns();
        rc = fetch_parts(t, j, p, n, fetched, err, errlen);
        if (rc == 0) {
            log_info("job %s: its bytes came from staged body %s (%zu part%s, %" PRIu64
                     " bytes, %.1f ms)",
                     j->job.id, j->job.staged, n, n == 1 ? "" : "s", total,
                     (double)(dr_mono_ns() - t0) / 1e6);
            free(j->job.spool_path);
            j->job.spool_path = fetched;
            j->scratch_body = true;
            fetched = NULL;
        }
    }
out:
    free(p);
    free(fetched);
    return rc;
}

/* ---- the collector ---- */

struct pl_staged_gc {
    struct pl_ctx *pc;
    pthread_t th;
    int64_t orphan_age; /* ms */
};

struct orphan_scan {
    struct catalog *cat;
    int64_t before; /* parts made before this (ms since the epoch) */
    char (*keys)[STAGING_KEY_LEN];
    size_t n, cap;
};

static int orphan_one(const char *key, uint64_t size, void *arg)
{
    (void)size;
    struct orphan_scan *o = arg;
    char body[DR_ID_LEN + 1], part[DR_ID_LEN + 1];
    int64_t made = staging_key_parse(key, body, part);
    if (made < 0 || made >= o->before)
        return 0;
    if (catalog_staged_known(o->cat, body, part) != 0)
        return 0; /* recorded (or cannot tell) */
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->keys = xrealloc(o->keys, o->cap * sizeof *o->keys);
    }
    snprintf(o->keys[o->n++], STAGING_KEY_LEN, "%s", key);
    return 0;
}

/* Staged objects no row names, older than orphan_age, go. */
static void sweep_orphans(struct pl_staged_gc *g, struct catalog *cat, struct dr_store *st)
{
    struct orphan_scan o = {.cat = cat, .before = dr_now_ms() - g->orphan_age};
    char err[256] = "";
    int rc = store_list(st, orphan_one, &o, err, sizeof err);
    if (rc < 0)
        log_warn("staging: listing the store for orphaned parts: %s", err);
    size_t done = 0;
    for (size_t i = 0; i < o.n && !pl_stopping(g->pc); i++) {
        if (store_delete(st, o.keys[i], err, sizeof err) == 0)
            done++;
        else
            log_warn("staging: deleting orphaned part %s: %s", o.keys[i], err);
    }
    if (done > 0)
        log_info("staging: deleted %zu staged object(s) no upload recorded", done);
    free(o.keys);
}

/* One batch: how many parts went, or -errno. */
static int gc_batch(struct pl_ctx *pc, struct catalog *cat, struct dr_store *st)
{
    int held = catalog_lease(cat, "staged-gc", GC_LEASE_MS, NULL);
    if (held <= 0)
        return held;
    struct dr_staged_part *p = NULL;
    size_t n = 0;
    int rc = catalog_staged_garbage(cat, GC_BATCH, &p, &n);
    int done = 0;
    for (size_t i = 0; i < n && rc == 0 && !pl_stopping(pc); i++) {
        char err[256] = "";
        rc = staging_delete(st, p[i].src, p[i].part, err, sizeof err);
        if (rc < 0) {
            log_warn("staging: deleting part %s of %s: %s", p[i].part, p[i].src, err);
            break;
        }
        rc = catalog_staged_forget(cat, p[i].body, p[i].off);
        if (rc == 0)
            done++;
    }
    free(p);
    if (done > 0)
        log_debug("staging: removed %d part(s) nothing needs", done);
    return rc < 0 ? rc : done;
}

static void *gc_main(void *arg)
{
    struct pl_staged_gc *g = arg;
    struct pl_ctx *pc = g->pc;
    pthread_setname_np(pthread_self(), "staged-gc");
    struct catalog *cat = NULL;
    struct dr_store *st = NULL;
    int64_t sweep_every = DR_MIN(g->orphan_age, ORPHAN_SWEEP_MS);
    int64_t next_sweep = dr_mono_ms() + DR_MIN(sweep_every, 60000);
    while (!pl_stopping(pc)) {
        char err[256] = "";
        int rc = cat == NULL ? catalog_open(pc->cfg, &cat) : 0;
        if (rc == 0 && st == NULL)
            rc = store_open(pc->cfg, &st, err, sizeof err);
        if (rc == 0)
            rc = gc_batch(pc, cat, st);
        if (rc >= 0 && dr_mono_ms() >= next_sweep &&
            catalog_lease(cat, "staged-gc", GC_LEASE_MS, NULL) == 1) {
            sweep_orphans(g, cat, st);
            next_sweep = dr_mono_ms() + sweep_every;
        }
        if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
            log_warn("staging: collecting parts: %s", err[0] ? err : strerror(-rc));
        if (rc < GC_BATCH)
            pl_sleep(pc, (uint64_t)DR_MIN(GC_EVERY_MS, sweep_every));
    }
    if (cat != NULL)
        (void)catalog_lease_drop(cat, "staged-gc");
    store_close(st);
    catalog_close(cat);
    return NULL;
}

struct pl_staged_gc *pl_staged_gc_start(struct pl_ctx *pc)
{
    if (pc->cfg->catalog.backend != DR_CATALOG_POSTGRES)
        return NULL;
    struct pl_staged_gc *g = xcalloc(1, sizeof *g);
    g->pc = pc;
    const char *age = getenv("DRIPD_TEST_STAGED_ORPHAN_MS");
    g->orphan_age = age != NULL && atoll(age) > 0 ? atoll(age) : ORPHAN_AGE_MS;
    int rc = dr_thread_start(&g->th, gc_main, g);
    if (rc != 0) {
        log_warn("staging: no collector thread (%s): staged parts stay in the store",
                 strerror(-rc));
        free(g);
        return NULL;
    }
    return g;
}

void pl_staged_gc_stop(struct pl_staged_gc *g)
{
    if (g == NULL)
        return;
    pthread_join(g->th, NULL);
    free(g);
}

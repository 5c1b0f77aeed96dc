/* pipeline_upload.c - the steps of the upload pipeline:
 *
 *   encrypt  spool file (or work/<job>.plain, the original without its
 *            metadata, when process made one; or the inline body, in
 *            memory, unless process wrote it out) -> work/<job>.sealed
 *            (seal.h), a fresh data key per
 *            run wrapped by the master key; the SHA-256 and the wrapped key
 *            go into the object header and, committed by the caller with
 *            the next stage, into the media row (catalog_jobs_step).
 *            Next: "store" with the sealed path, and the sealed file's fd
 *            in the job (j->obj_fd, seal_fd_at); or, an inline body when
 *            the store keeps small objects apart (store_takes_mem: the
 *            local store's .small.db), the sealed object in memory
 *            (j->obj_mem, seal_mem_buf) and no file at all.
 *            The sealed file is scratch: not fsynced (see store).
 *            work/<job>.plain is looked for only when one may exist
 *            (pc->plains, j->no_plain: see pipeline.h).
 *   store    store_put_nosync(key "<media id>_<UTC created>Z<ext>", sealed
 *            file; store_put_nosync_fd with encrypt's fd when the job was
 *            sealed in this process: the local store moves the file in by
 *            its name in work/ and syncs that fd, no lookup or open of its
 *            own; store_put_nosync_mem with encrypt's j->obj_mem, which
 *            the store takes); the worker's store_sync for the whole batch makes the
 *            objects durable (local: one syncfs + one directory fsync, or
 *            the fsync of the object, which for a hard link is the scratch
 *            file itself, when it is alone), then the key is committed
 *            with the next stage (catalog_jobs_step). Next: "notify". A
 *            sealed file the job
 *            did not seal in this process (resumed after a crash) may have
 *            been lost with the page cache, so it is verified against the
 *            catalog first and sealed again if it does not match.
 *   notify   the plaintext (work/<job>.plain, the original without its
 *            metadata when process made one, else the spool file) is
 *            linked into the cache as cache/<media id>, or, a scratch
 *            copy of an inline or staged body, moved in and marked
 *            unsynced (cache_adopt_scratch): a finished upload warms the
 *            cache (the spool file's size is the media's, not
 *            stat'ed), except an inline body sealed from memory, which
 *            has no file (its first GET fills the cache, issue 15: a file
 *            made and moved per small upload cost the pipeline more than
 *            the spool file saved); the sealed work file is removed if the store left it
 *            (the store says when it moved it); then media "available" and
 *            job done in one commit (by
 *            the caller), and only then are the spool file and the plain
 *            file removed (pl_upload_forget): a job whose last commit a
 *            crash loses starts over from them.
 *
 * Idempotence (a crash may re-run any step): encrypt writes a new sealed
 * file (unlinking any old one: a new inode) and overwrites the media's key
 * and hash with the new ones (committed before the store step can put the
 * new object, or, for a small job, with its last step); the store key is
 * a function of the media (id, created_at, name), so a re-run puts the same
 * key again (atomic replace); notify only links/removes files that are
 * still there. The work file is gone before the job is marked done, the
 * spool file right after (a crash in between leaves a spool file nothing
 * names, which the http worker's spool sweep removes).
 *
 * Files are named relative to the work/ and spool/ directory fds (pl_at,
 * pl_open, pl_unlink: one path component per call, not the walk of
 * data_dir's every directory).
 *
 * Threads: each function runs on a stage thread with its own catalog and
 * store handles (struct pl_tls); nothing here is shared.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dripd/cache.h"
#include "dripd/config.h"
#include "dripd/log.h"
#include "pipeline_upload.h"
#include "pipeline_staged.h"
#include "dripd/seal.h"
#include "dripd/store.h"
#include "dripd/util.h"

/* "<media id>_<UTC yyyymmddThhmmssZ><ext>": ext is the name's extension
 * when it is short and alphanumeric (".jpg"), else empty. out >= 64. */
static void storage_key(const char *media_id, int64_t created_at_ms, const char *name, char *out,
                        size_t outlen)
{
    char ext[18] = "";
    const char *dot = name ? strrchr(name, '.') : NULL;
    if (dot && dot != name && dot[1] != '\0' && strlen(dot) <= 16) {
        bool ok = true;
        for (const char *p = dot + 1; *p; p++) {
            char c = *p;
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
                ok = false;
        }
        if (ok)
            snprintf(ext, sizeof ext, "%s", dot);
    }
    time_t secs = (time_t)(created_at_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &tm);
    snprintf(out, outlen, "%s_%s%s", media_id, ts, ext);
}

int pl_upload_encrypt(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                      size_t errlen)
{
    struct pl_ctx *pc = t->pc;
    const struct dr_media *mp;
    char *sealed = NULL;
    uint8_t dk[DR_KEY_LEN], wk[DR_WRAPPED_KEY_LEN];
    int rc = pl_staged_body(t, j, false, err, errlen); /* (cluster) from the store */
    if (rc != 0)
        return rc;

    if (j->job.spool_path == NULL && j->job.body == NULL) {
        snprintf(err, errlen, "upload job %s has no spool file", j->job.id);
        return -ENOENT;
    }
    rc = pl_load_media(t, j, &mp, err, errlen);
    if (rc != 0)
        return rc;
    const struct dr_media m = *mp;
    /* the original without its metadata, if process made it; its size is
     * the media's once process committed, or rides along in j->upd. Not
     * looked for when none can be there: process ran here and made none,
     * or the worker has seen none (pc->plains). */
    char *plain = pl_plain_path(pc, j->job.id);
    /* an inline body is sealed where it lies (kept until the job is done:
     * a sealed file lost before the store sends the job back here) */
    const char *src = j->job.body != NULL ? "(inline body)" : j->job.spool_path;
    int in = -1;
    if (!j->no_plain && __atomic_load_n(&pc->plains, __ATOMIC_ACQUIRE) != 0) {
        in = pl_open(pc, plain, O_RDONLY);
        if (in >= 0)
            src = plain;
        else if (errno != ENOENT) {
            rc = -errno;
            snprintf(err, errlen, "open %s: %s", plain, strerror(errno));
            goto out;
        }
    }
    /* only process makes one, and it ran before (or not at all) */
    j->no_plain = src != plain;
    if (in < 0 && j->job.body == NULL)
        in = pl_open(pc, src, O_RDONLY);
    if (in < 0 && j->job.body == NULL) {
        rc = -errno;
        if (rc == -ENOENT)
            snprintf(err, errlen, "spool file %s is missing", src);
        else
            snprintf(err, errlen, "open %s: %s", src, strerror(errno));
        goto out;
    }
    uint64_t want = j->upd.resized ? j->upd.size : m.size;
    keys_new_data_key(pc->master, dk, wk);
    sealed = pl_work_path(pc, j->job.id);
    struct seal_params sp = {
        .media_id = m.id,
        .owner = m.owner,
        .path = m.path,
        .content_type = m.content_type,
        .created_at = m.created_at,
        .segment_size = (uint32_t)pc->cfg->pipeline.segment_size,
        .data_key = dk,
        .wrapped_key = wk,
        .scratch = true, /* the store makes it durable; see pl_upload_store */
    };
    struct seal_result res;
    /* made relative to work/ and handed to the store open (j->obj_fd),
     * which so neither looks it up nor opens it again */
    const char *sealed_name;
    int sealed_dir = pl_at(pc, sealed, &sealed_name);
    int out_fd = -1;
    uint8_t *out_mem = NULL;
    /* an inline body into memory when the store keeps small objects apart
     * (store_takes_mem): no file at all; the work path recorded stays
     * the name it would have had, which a resumed store step finds absent
     * (seal again) */
    bool mem = in < 0 && store_takes_mem(pc->cfg) && j->job.body_len <= SEAL_MEM_MAX;
    if (mem)
        rc = seal_mem_buf(j->job.body, j->job.body_len, src, &sp, &res, &out_mem, err, errlen);
    else if (in < 0)
        rc = seal_mem_at(j->job.body, j->job.body_len, src, sealed_dir, sealed_name, &sp, &res,
                         &out_fd, err, errlen);
    else
        rc = seal_fd_at(in, src, sealed_dir, sealed_name, &sp, &res, &out_fd, err, errlen);
    memset(dk, 0, sizeof dk);
    if (rc != 0)
        goto out;
    if (res.size != want) {
        rc = -EBADMSG; /* permanent: retrying cannot make the sizes agree */
        snprintf(err, errlen, "%s file %s has %llu bytes, the upload had %llu",
                 src == plain ? "stripped" : "spool", src, (unsigned long long)res.size,
                 (unsigned long long)want);
        if (out_fd >= 0) {
            close(out_fd);
            unlinkat(sealed_dir, sealed_name, 0);
        }
        free(out_mem);
        goto out;
    }
    if (j->obj_fd >= 0)
        close(j->obj_fd); /* an earlier run's (the store did not take it) */
    free(j->obj_mem);
    j->obj_fd = out_fd;
    j->obj_mem = out_mem;
    j->obj_size = res.object_size;
    /* committed with the job's next stage, before anything is stored */
    j->upd.sealed = true;
    memcpy(j->upd.sha256_hex, res.sha256_hex, sizeof j->upd.sha256_hex);
    memcpy(j->upd.wrapped_key, wk, sizeof wk);
    j->sealed_here = true;
    log_debug("job %s: sealed %llu bytes of media %s (sha256 %.16s...)", j->job.id,
              (unsigned long long)res.size, m.id, res.sha256_hex);
    *work_path_out = sealed;
    sealed = NULL;
out:
    if (in >= 0)
        close(in);
    free(sealed);
    free(plain);
    return rc;
}

/* The sealed scratch file of a job that reached "store" in an earlier
 * worker was never fsynced: after a system crash it may be empty, short,
 * stale or garbage. Use it only if it is exactly the object the catalog
 * recorded: header tag, every segment and the plaintext SHA-256 verify,
 * and the SHA-256, the wrapped key and the media id are the catalog's.
 * -ESTALE (seal again) otherwise. */
static int check_sealed(struct pl_tls *t, const struct dr_media *m, const char *path, char *err,
                        size_t errlen)
{
    struct seal_header h;
    memset(&h, 0, sizeof h);
    int rc = -EBADMSG;
    if (m->sha256[0] != '\0' && m->wrapped_key != NULL)
        rc = unseal_file(path, NULL, t->pc->master, m->sha256, &h, err, errlen);
    else
        snprintf(err, errlen, "media %s has no sealed record", m->id);
    if (rc == 0 && (m->wrapped_key_len != DR_WRAPPED_KEY_LEN ||
                    memcmp(h.wrapped_key, m->wrapped_key, DR_WRAPPED_KEY_LEN) != 0 ||
                    strcmp(h.media_id, m->id) != 0)) {
        rc = -EBADMSG;
        snprintf(err, errlen, "it is not the sealed object the catalog recorded");
    }
    seal_header_clear(&h);
    if (rc == -EBADMSG || rc == -ENOENT) {
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "sealed file %s left by an earlier worker is unusable (%s)", path,
                 why);
        rc = -ESTALE;
    }
    return rc;
}

int pl_upload_store(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                    size_t errlen)
{
    struct pl_ctx *pc = t->pc;
    const struct dr_media *mp;
    int rc = pl_load_media(t, j, &mp, err, errlen);
    if (rc != 0)
        return rc;
    const struct dr_media m = *mp;
    if (j->job.work_path == NULL || (!j->sealed_here && access(j->job.work_path, R_OK) != 0)) {
        /* The sealed file is gone (disk trouble, manual cleanup): seal again
         * if the plaintext is still here. */
        rc = -ESTALE;
        snprintf(err, errlen, "sealed file %s is missing",
                 j->job.work_path ? j->job.work_path : "(none)");
        goto out;
    }
    if (!j->sealed_here) {
        rc = check_sealed(t, &m, j->job.work_path, err, errlen);
        if (rc != 0)
            goto out;
        j->sealed_here = true; /* checked once, even if the put is retried */
    }
    if (pc->cfg->pipeline.test_store_delay > 0 &&
        !pl_sleep(pc, pc->cfg->pipeline.test_store_delay)) {
        rc = -ECANCELED;
        snprintf(err, errlen, "draining");
        goto out;
    }
    rc = pl_tls_store(t, err, errlen);
    if (rc != 0)
        goto out;
    char key[300];
    storage_key(m.id, m.created_at, m.name, key, sizeof key);
    /* durable once the batch's store_sync returned (the worker calls it
     * before the commit): one sync for all the objects of a batch. The
     * sealed file may move into the store. Sealed here, it comes as the
     * fd encrypt made it with, named relative to work/; else (resumed,
     * retried) by its path. */
    if (j->obj_mem != NULL) {
        void *mem = j->obj_mem;
        j->obj_mem = NULL; /* the store's now, whatever happens */
        rc = store_put_nosync_mem(t->store, key, mem, j->obj_size, err, errlen);
        j->sealed_moved = true; /* no file was made */
    } else if (j->obj_fd >= 0) {
        const char *name;
        int dir = pl_at(pc, j->job.work_path, &name);
        int fd = j->obj_fd;
        j->obj_fd = -1; /* the store's now, whatever happens */
        rc = store_put_nosync_fd(t->store, key, dir, name, j->job.work_path, fd, j->obj_size,
                                 &j->sealed_moved, err, errlen); /* measured by store.c */
    } else {
        rc = store_put_nosync(t->store, key, j->job.work_path, err, errlen);
    }
    if (rc == -ENOENT && access(j->job.work_path, F_OK) != 0) {
        rc = -ESTALE; /* lost meanwhile: seal again */
        snprintf(err, errlen, "sealed file %s is missing", j->job.work_path);
    }
    if (rc != 0)
        goto out;
    j->upd.put_unsynced = true;
    j->upd.stored = true; /* committed with the job's next stage */
    snprintf(j->upd.storage_key, sizeof j->upd.storage_key, "%s", key);
    log_debug("job %s: stored media %s as %s", j->job.id, m.id, key);
    *work_path_out = xstrdup(j->job.work_path); /* notify removes it if it is still there */
out:
    return rc;
}

int pl_upload_notify(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                     size_t errlen)
{
    struct pl_ctx *pc = t->pc;
    (void)work_path_out;
    if (pc->cfg->pipeline.test_notify_delay > 0 &&
        !pl_sleep(pc, pc->cfg->pipeline.test_notify_delay)) {
        snprintf(err, errlen, "draining");
        return -ECANCELED;
    }
    /* The spool file stays until the job is done (the worker removes it
     * after the commit): a job whose commit a crash loses starts over
     * from it, the small ones from their first step. */
    struct stat st;
    char *plain = pl_plain_path(pc, j->job.id);
    const char *src = NULL;
    uint64_t size = 0;
    if (!j->no_plain && stat(plain, &st) == 0) {
        src = plain;
        size = (uint64_t)st.st_size;
    } else if (j->job.spool_path != NULL && j->no_plain && j->media != NULL) {
        /* the plaintext is the spool file, of the media's size (encrypt
         * checked it); cache_adopt fails if it is gone */
        src = j->job.spool_path;
        size = j->media->size;
    } else if (j->job.spool_path != NULL && stat(j->job.spool_path, &st) == 0) {
        src = j->job.spool_path;
        size = (uint64_t)st.st_size;
    }
    /* a scratch copy moves in (nothing to remove later, nothing deleted
     * in work/), marked unsynced; a synced spool file is linked */
    bool scratch = src != NULL && src == j->job.spool_path && j->scratch_body;
    if (src != NULL && size <= pc->cfg->cache.max_size &&
        (scratch ? cache_adopt_scratch(pc->cfg->data_dir, j->job.media_id, src)
                 : cache_adopt(pc->cfg->data_dir, j->job.media_id, src)) == 0) {
        cache_evictor_note_insert(pc->evictor, size);
        j->body_moved = scratch;
    }
    free(plain);
    if (j->job.work_path && !j->sealed_moved)
        pl_unlink(pc, j->job.work_path);
    /* "available" commits with "done"; a media deleted meanwhile does not
     * stop the job (the caller then drops the cache entry made above) */
    j->upd.available = true;
    j->upd.media_optional = true;
    return 0;
}

void pl_upload_forget(const struct pl_ctx *pc, const struct pl_job *j)
{
    if (j->job.spool_path != NULL && !j->body_moved)
        pl_unlink(pc, j->job.spool_path);
    if (j->no_plain)
        return;
    char *plain = pl_plain_path(pc, j->job.id);
    pl_unlink(pc, plain);
    free(plain);
}

void pl_upload_cleanup(struct pl_tls *t, struct pl_job *j)
{
    if (j->job.work_path)
        pl_unlink(t->pc, j->job.work_path);
    char *sealed = pl_work_path(t->pc, j->job.id);
    pl_unlink(t->pc, sealed);
    free(sealed);
    char *plain = pl_plain_path(t->pc, j->job.id);
    pl_unlink(t->pc, plain);
    free(plain);
    if (j->job.spool_path)
        pl_unlink(t->pc, j->job.spool_path);
    /* notify may have moved the plaintext into the cache before its commit */
    cache_remove(t->pc->cfg->data_dir, j->job.media_id);
}

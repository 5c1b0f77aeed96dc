/* pipeline_download.c - the steps of the download pipeline (cache fills for
 * GETs that miss, and durable warm-up jobs; pipeline_worker.c says how a
 * fill differs from a job: no row, nothing committed):
 *
 *   fetch    a fresh cache entry (cache/<id> younger than cache.ttl) is
 *            passed on as is ("original", as in the book); otherwise, when
 *            the store keeps objects as local files (store_open_read), the
 *            object itself is opened and the fd goes to decrypt with the
 *            job (no copy); else the sealed object is copied from the
 *            store to work/<job>.sealed (through a temporary name).
 *            Next: "decrypt".
 *   decrypt  unless original: verify and decrypt the object (in place,
 *            from fetch's fd, or opened again after a crash) or the scratch
 *            copy into
 *            cache/<id>.tmp.<random>, rename to cache/<id>; nothing is
 *            fsynced (the cache is derived data: cache.h says why a power
 *            cut cannot make it serve lost bytes). The header (its tag,
 *            its SHA-256 against the catalog's), the length and every
 *            segment tag, order and end are checked before the rename,
 *            so the cache never holds bytes that were not sealed for this
 *            media; a durable job also hashes the plaintext against the
 *            header's SHA-256, a fill does not (unseal_fd_tags, seal.h:
 *            the tags already prove each byte; the hash was a third of a
 *            1 MiB fill's CPU). A corrupt object fails the job with the reason
 *            ("object corrupt: segment 3 tag mismatch"). The scratch copy is
 *            not fsynced (it is scratch): if it does not verify, it is
 *            fetched once more before the object is declared corrupt, which
 *            also covers a scratch file damaged by a crash. Next: "notify".
 *   notify   nothing left but the job's completion (by the caller).
 *
 * A job naming a variant (catalog_enqueue_variant_download) does the same
 * with the variant's row and object, into cache/<media id>~<name>.
 *
 * Idempotence: fetch re-copies; decrypt skips work when a fresh entry is
 * already there (it re-fetches when the scratch file is gone); notify does
 * nothing twice.
 *
 * Threads: each function runs on a stage thread with its own catalog and
 * store handles (struct pl_tls).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/cache.h"
#include "dripd/catalog_variants.h"
#include "dripd/config.h"
#include "dripd/log.h"
#include "pipeline_download.h"
#include "dripd/seal.h"
#include "dripd/store.h"
#include "dripd/util.h"

/* The job's cache entry name: "<media id>", or "<media id>~<variant>". */
static void entry_name(const struct pl_job *j, char *out, size_t outlen)
{
    if (j->job.variant[0])
        snprintf(out, outlen, "%s~%s", j->job.media_id, j->job.variant);
    else
        snprintf(out, outlen, "%s", j->job.media_id);
}

/* A variant's row as the media to fetch: its object, hash and size. */
static int load_variant(struct pl_tls *t, struct pl_job *j, struct dr_media *m, char *err,
                        size_t errlen)
{
    struct dr_variant v;
    int rc = catalog_variant_get(t->cat, j->job.media_id, j->job.variant, NULL, &v);
    if (rc != 0) {
        snprintf(err, errlen, "variant %s of media %s: %s", j->job.variant, j->job.media_id,
                 rc == -ENOENT ? "no longer exists" : strerror(-rc));
        return rc;
    }
    if (v.storage_key == NULL || strcmp(v.state, "available") != 0) {
        snprintf(err, errlen, "variant %s of media %s is not available", v.name, v.media_id);
        dr_variant_clear(&v);
        return -ENOENT;
    }
    memset(m, 0, sizeof *m);
    snprintf(m->id, sizeof m->id, "%s", v.media_id);
    m->storage_key = v.storage_key;
    v.storage_key = NULL;
    memcpy(m->sha256, v.sha256, sizeof m->sha256);
    m->size = v.size;
    m->state = xstrdup("available");
    dr_variant_clear(&v);
    return 0;
}

/* The job's media (or the variant it names), which must be available (stored). */
static int load_media(struct pl_tls *t, struct pl_job *j, struct dr_media *m, char *err,
                      size_t errlen)
{
    if (j->job.variant[0])
        return load_variant(t, j, m, err, errlen);
    int rc = pl_read_media(t, j->job.media_id, m, err, errlen);
    if (rc != 0)
        return rc;
    if (m->storage_key == NULL || strcmp(m->state, "available") != 0) {
        snprintf(err, errlen, "media %s is not available (state %s)", m->id, m->state);
        dr_media_clear(m);
        return -ENOENT;
    }
    return 0;
}

/* Copy the object to dst (via dst.tmp + rename). */
static int fetch_object(struct pl_tls *t, const struct dr_media *m, const char *dst, char *err,
                        size_t errlen)
{
    int rc = pl_tls_store(t, err, errlen);
    if (rc != 0)
        return rc;
    char *tmp = xasprintf("%s.tmp", dst);
    rc = store_get(t->store, m->storage_key, tmp, err, errlen); /* measured by store.c */
    if (rc != 0) {
        unlink(tmp);
        if (rc == -ENOENT)
            snprintf(err, errlen, "object %s of media %s is missing from the store", m->storage_key,
                     m->id);
        free(tmp);
        return rc;
    }
    if (rename(tmp, dst) != 0) {
        rc = -errno;
        snprintf(err, errlen, "rename %s: %s", tmp, strerror(errno));
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* Open the object itself for reading when the backend keeps it as a local
 * file (0 and *fd), and ask the kernel to read it ahead: decrypt's threads
 * then find it in the page cache instead of waiting for the disk segment by
 * segment, and the reads of the jobs queued for decrypt overlap. -EOPNOTSUPP
 * when it is not local (copy it instead). */
static int open_in_place(struct pl_tls *t, const struct dr_media *m, int *fd, char *err,
                         size_t errlen)
{
    *fd = -1;
    int rc = pl_tls_store(t, err, errlen);
    if (rc != 0)
        return rc;
    rc = store_open_read(t->store, m->storage_key, fd, err, errlen); /* measured by store.c */
    if (rc == 0) /* read it ahead while the job waits for decrypt (cold cache: many at once) */
        (void)posix_fadvise(*fd, 0, 0, POSIX_FADV_WILLNEED);
    if (rc == -ENOENT)
        snprintf(err, errlen, "object %s of media %s is missing from the store", m->storage_key,
                 m->id);
    return rc;
}

int pl_download_fetch(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                      size_t errlen)
{
    struct pl_ctx *pc = t->pc;
    char entry[DR_ID_LEN + DR_VARIANT_NAME_LEN + 2];
    entry_name(j, entry, sizeof entry);
    if (cache_is_fresh(pc->cfg->data_dir, entry, pc->cfg->cache.ttl, NULL)) {
        j->original = true;
        return 0;
    }
    struct dr_media m;
    int rc = load_media(t, j, &m, err, errlen);
    if (rc != 0)
        return rc;
    j->link.cost = m.size; /* for decrypt's batches */
    /* A local object is decrypted where it is: keep it open for decrypt
     * (the fd pins it, even if the media is deleted meanwhile). */
    int fd;
    rc = open_in_place(t, &m, &fd, err, errlen);
    if (rc != -EOPNOTSUPP) {
        if (rc == 0) {
            if (j->obj_fd >= 0)
                close(j->obj_fd);
            j->obj_fd = fd;
        }
        dr_media_clear(&m);
        return rc;
    }
    char *work = pl_work_path(pc, j->job.id);
    rc = fetch_object(t, &m, work, err, errlen);
    if (rc == 0)
        *work_path_out = work;
    else
        free(work);
    dr_media_clear(&m);
    return rc;
}

/* Decrypt the object read from in (not closed here) into a new cache
 * entry named entry for m; hash: also check the plaintext's SHA-256 (a
 * durable job), else the tags only (a fill, see the top). */
static int fill_cache_fd(struct pl_tls *t, const struct dr_media *m, const char *entry, int in,
                         bool hash, char *err, size_t errlen)
{
    struct pl_ctx *pc = t->pc;
    struct cache_tmp tmp;
    int rc = cache_take_tmp(pc->cfg->data_dir, entry, &tmp);
    if (rc != 0) {
        snprintf(err, errlen, "cache: cannot create an entry: %s", strerror(-rc));
        return rc;
    }
    struct seal_header h;
    memset(&h, 0, sizeof h);
    const char *sha = m->sha256[0] ? m->sha256 : NULL;
    rc = hash ? unseal_fd(in, tmp.fd, pc->master, sha, &h, err, errlen)
              : unseal_fd_tags(in, tmp.fd, pc->master, sha, &h, err, errlen);
    if (rc == 0 && strcmp(h.media_id, m->id) != 0) {
        rc = -EBADMSG;
        snprintf(err, errlen, "object corrupt: it holds media %s, not %s", h.media_id, m->id);
    }
    if (rc == 0) {
        rc = cache_seal_tmp(&tmp, h.size);
        if (rc != 0)
            snprintf(err, errlen, "cache: cannot finish the entry: %s", strerror(-rc));
    }
    close(tmp.fd);
    if (rc == 0) {
        rc = cache_commit_tmp(pc->cfg->data_dir, entry, tmp.path);
        if (rc != 0)
            snprintf(err, errlen, "cache: cannot publish the entry: %s", strerror(-rc));
        else /* what the cache grew by: a recycled file was counted already */
            cache_evictor_note_insert(pc->evictor,
                                      h.size > tmp.old_size ? h.size - tmp.old_size : 0);
    } else {
        unlink(tmp.path);
    }
    seal_header_clear(&h);
    free(tmp.path);
    return rc;
}

/* Decrypt the scratch copy at src into a new cache entry for m. */
static int fill_cache(struct pl_tls *t, const struct dr_media *m, const char *entry,
                      const char *src, bool hash, char *err, size_t errlen)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        int rc = -errno;
        snprintf(err, errlen, "open %s: %s", src, strerror(errno));
        return rc;
    }
    int rc = fill_cache_fd(t, m, entry, in, hash, err, errlen);
    close(in);
    return rc;
}

int pl_download_decrypt(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                        size_t errlen)
{
    struct pl_ctx *pc = t->pc;
    (void)work_path_out;
    if (j->original)
        return 0;
    int in = j->obj_fd; /* the object itself, opened by fetch (local store) */
    j->obj_fd = -1;
    char entry[DR_ID_LEN + DR_VARIANT_NAME_LEN + 2];
    entry_name(j, entry, sizeof entry);
    if (cache_is_fresh(pc->cfg->data_dir, entry, pc->cfg->cache.ttl, NULL)) {
        if (j->job.work_path) /* filled by an earlier run or another job meanwhile */
            unlink(j->job.work_path);
        if (in >= 0)
            close(in);
        return 0;
    }
    struct dr_media m;
    int rc = load_media(t, j, &m, err, errlen);
    if (rc != 0) {
        if (in >= 0)
            close(in);
        return rc;
    }
    if (in < 0 && j->job.work_path == NULL) {
        /* resumed after a crash: open the object in place if it is local */
        rc = open_in_place(t, &m, &in, err, errlen);
        if (rc != 0 && rc != -EOPNOTSUPP) {
            dr_media_clear(&m);
            return rc;
        }
    }
    if (in >= 0) {
        /* No scratch copy that could be damaged: a bad object is bad. */
        rc = fill_cache_fd(t, &m, entry, in, !j->fill, err, errlen);
        close(in);
        if (rc == 0)
            log_debug("job %s: media %s decrypted into the cache (in place)", j->job.id, m.id);
        dr_media_clear(&m);
        return rc;
    }
    char *work = j->job.work_path ? xstrdup(j->job.work_path) : pl_work_path(pc, j->job.id);
    if (access(work, R_OK) != 0) { /* resumed after a crash without its scratch copy */
        rc = fetch_object(t, &m, work, err, errlen);
        j->refetched = true;
        if (rc != 0)
            goto out;
    }
    rc = fill_cache(t, &m, entry, work, !j->fill, err, errlen);
    if (rc == -EBADMSG && !j->refetched) {
        /* The scratch copy may be what is damaged: fetch once more. */
        char first[256];
        snprintf(first, sizeof first, "%s", err);
        log_warn("job %s: %s; fetching the object again to be sure", j->job.id, first);
        j->refetched = true;
        rc = fetch_object(t, &m, work, err, errlen);
        if (rc == 0)
            rc = fill_cache(t, &m, entry, work, !j->fill, err, errlen);
    }
    if (rc == 0)
        log_debug("job %s: media %s decrypted into the cache", j->job.id, m.id);
    unlink(work);
out:
    free(work);
    dr_media_clear(&m);
    return rc;
}

int pl_download_notify(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                       size_t errlen)
{
    (void)t;
    (void)j;
    (void)work_path_out;
    (void)err;
    (void)errlen;
    return 0;
}

void pl_download_cleanup(struct pl_tls *t, struct pl_job *j)
{
    if (j->job.work_path)
        unlink(j->job.work_path);
    char *w = pl_work_path(t->pc, j->job.id);
    unlink(w);
    free(w);
}

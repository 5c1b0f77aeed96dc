/* pipeline_process.c - the "process" stage of the upload pipeline and the
 * same work for stored media (reprocess): the real type, the metadata and
 * the variants of one plaintext file (docs/PROCESSING.md).
 *
 *   1. The first DECODE_PROBE_LEN bytes of the file go to decode_probe().
 *      A file that cannot be an image, a video, audio or a PDF ends here:
 *      one small read, no helper, nothing written (a 1 GiB random file
 *      costs one type check).
 *   2. Otherwise one dripd-decode helper (decode.h: forked by the exec'd zygote, sandboxed,
 *      killed at processing.limits.timeout) gets the file and one empty
 *      scratch file per configured variant, work/<tag>.<name>.var, and
 *      answers with libmagic's type, the metadata and what it made.
 *   3. Each variant made is sealed like an original (its own data key,
 *      the media's id, owner and path, content type "image/webp;
 *      width=W; height=H" so --rebuild-catalog can restore the row) into
 *      work/<tag>.<name>.sealed and put in the store under
 *      "<media id>~<name>.<ext>" (pl_process_variant_key). A variant whose put
 *      fails is recorded as failed with the store's error.
 *   4. One catalog transaction records the metadata (a JSON object: only
 *      the keys that apply) and the variant rows (available, or failed
 *      with the reason), replacing earlier ones; objects no longer
 *      referenced are then deleted from the store.
 *   5. The metadata and the failed variants, which no variant object
 *      carries, are sealed into the media's metadata object
 *      "<media id>.meta" (store_meta_key) and put in the store, replacing
 *      an earlier one, so --rebuild-catalog restores them. A put that
 *      fails fails the step (retried as usual; the catalog already has
 *      the row, and a re-run writes the same).
 *
 * What the decoders do (crash, SIGSYS, timeout, refusal) never fails the
 * job: the variants say why. Errors that do (retried as usual): a missing
 * file, the catalog, the store refusing the metadata object.
 *
 * Idempotence: a re-run makes the variants again, puts the same keys
 * (atomic replace) and overwrites the rows. Scratch files are removed
 * before the step returns, whatever happened.
 *
 * Threads: any stage thread (its own catalog and store handles); the
 * reprocess thread (scrub.c's runner) through pl_process_file.
 */
#include "pipeline_process.h"
#include "pipeline_staged.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/catalog_variants.h"
#include "dripd/config.h"
#include "dripd/decode.h"
#include "dripd/decode_proto.h"
#include "dripd/keys.h"
#include "dripd/log.h"
#include "dripd/seal.h"
#include "dripd/store.h"
#include "dripd/util.h"

static const char *format_ext(const char *format)
{
    return strcmp(format, "jpeg") == 0 ? "jpg" : format;
}

void pl_process_variant_key(const struct dr_media *m, const char *name, const char *format,
                            char *out, size_t outlen)
{
    snprintf(out, outlen, "%s~%s.%s", m->id, name, format_ext(format));
}

static int format_code(const char *format)
{
    if (strcmp(format, "webp") == 0)
        return DECODE_FMT_WEBP;
    if (strcmp(format, "jpeg") == 0)
        return DECODE_FMT_JPEG;
    return DECODE_FMT_PNG;
}

static uint32_t hook_flags(const char *hook)
{
    if (hook == NULL)
        return 0;
    if (strcmp(hook, "socket") == 0)
        return DECODE_F_TEST_SOCKET;
    if (strcmp(hook, "open") == 0)
        return DECODE_F_TEST_OPEN;
    if (strcmp(hook, "segv") == 0)
        return DECODE_F_TEST_SEGV;
    if (strcmp(hook, "hang") == 0)
        return DECODE_F_TEST_HANG;
    if (strcmp(hook, "alloc") == 0)
        return DECODE_F_TEST_ALLOC;
    return 0;
}

/* The metadata object: only the keys that apply (r NULL: the helper did
 * not answer, nothing is known). "stripped" says whether the stored
 * original has its metadata removed: decided here when it was to be
 * stripped (strip_asked), else kept from before (reprocess leaves the
 * stored original alone). Heap JSON text. */
static char *metadata_json(const struct decode_resp *r, bool strip_asked, const char *before)
{
    json_t *o = json_object();
    if (r != NULL) {
        json_object_set_new(o, "detected_type", json_string(r->mime));
        if (r->have & DECODE_HAVE_SIZE) {
            json_object_set_new(o, "width", json_integer(r->width));
            json_object_set_new(o, "height", json_integer(r->height));
        }
        if (r->have & DECODE_HAVE_DURATION)
            json_object_set_new(o, "duration_ms", json_integer((json_int_t)r->duration_ms));
        if (r->have & DECODE_HAVE_PAGES)
            json_object_set_new(o, "pages", json_integer(r->pages));
        if (r->have & DECODE_HAVE_FRAMES)
            json_object_set_new(o, "frames", json_integer(r->frames));
        if (r->have & DECODE_HAVE_TAKEN)
            json_object_set_new(o, "taken_at", json_string(r->taken));
        if (r->have & DECODE_HAVE_CAMERA)
            json_object_set_new(o, "camera", json_string(r->camera));
    }
    if (strip_asked) {
        bool done = r != NULL && (r->strip == DECODE_STRIP_DONE || r->strip == DECODE_STRIP_CLEAN);
        json_object_set_new(o, "stripped", json_boolean(done));
    } else if (before != NULL) {
        json_t *old = json_loads(before, 0, NULL);
        json_t *v = old ? json_object_get(old, "stripped") : NULL;
        if (json_is_boolean(v))
            json_object_set(o, "stripped", v);
        json_decref(old);
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s ? s : xstrdup("{}");
}

static void variant_failed(struct dr_variant *v, const char *why)
{
    snprintf(v->state, sizeof v->state, "failed");
    free(v->error);
    v->error = xstrdup(why && *why ? why : "failed");
}

/* Seal the file plain as an object of media m (its own data key, the
 * media's id, owner and path, content type ct) into sealed and put that
 * in the store under key; sealed is removed. 0 with *res and wk (the
 * wrapped data key) filled, or -errno + err. */
static int seal_put(struct pl_tls *t, const struct dr_media *m, const char *ct, const char *plain,
                    const char *sealed, const char *key, struct seal_result *res,
                    uint8_t wk[DR_WRAPPED_KEY_LEN], char *err, size_t errlen)
{
    struct pl_ctx *pc = t->pc;
    uint8_t dk[DR_KEY_LEN];
    keys_new_data_key(pc->master, dk, wk);
    struct seal_params sp = {
        .media_id = m->id,
        .owner = m->owner,
        .path = m->path,
        .content_type = ct,
        .created_at = m->created_at,
        .segment_size = (uint32_t)pc->cfg->pipeline.segment_size,
        .data_key = dk,
        .wrapped_key = wk,
        .scratch = true, /* the store makes it durable */
    };
    int rc = seal_file(plain, sealed, &sp, res, err, errlen);
    memset(dk, 0, sizeof dk);
    if (rc == 0)
        rc = pl_tls_store(t, err, errlen);
    if (rc == 0)
        rc = store_put(t->store, key, sealed, err, errlen); /* measured by store.c */
    unlink(sealed);
    return rc;
}

/* Seal the plaintext variant at plain and put it in the store; fills the
 * available row. On failure v is marked failed; returns nothing because a
 * variant never fails the job. */
static void seal_and_store(struct pl_tls *t, const struct dr_media *m,
                           const struct dr_variant_cfg *vc, const char *plain, const char *sealed,
                           struct dr_variant *v)
{
    uint8_t wk[DR_WRAPPED_KEY_LEN];
    char err[DR_ERRLEN] = "", ct[96], key[300];
    const char *mime = decode_format_mime(format_code(vc->format));
    snprintf(ct, sizeof ct, "%s; width=%u; height=%u", mime, (unsigned)v->width,
             (unsigned)v->height);
    pl_process_variant_key(m, vc->name, vc->format, key, sizeof key);
    struct seal_result res;
    int rc = seal_put(t, m, ct, plain, sealed, key, &res, wk, err, sizeof err);
    if (rc != 0) {
        char why[DR_ERRLEN + 16];
        snprintf(why, sizeof why, "store: %s", err);
        variant_failed(v, why);
        return;
    }
    snprintf(v->state, sizeof v->state, "available");
    v->content_type = xstrdup(mime);
    v->size = res.size;
    memcpy(v->sha256, res.sha256_hex, sizeof v->sha256);
    v->wrapped_key = xmalloc(sizeof wk);
    memcpy(v->wrapped_key, wk, sizeof wk);
    v->wrapped_key_len = sizeof wk;
    v->storage_key = xstrdup(key);
}

/* The metadata object (store_meta_key): what --rebuild-catalog cannot
 * read from the variants' objects, sealed like them and put after the
 * catalog has it: {"v":1, "metadata":{...}, "failed":[{"name","error",
 * "created_at"}]} (docs/FORMAT.md). 0, or -errno + err (the step is
 * retried: the catalog row is recorded, a re-run makes the same one). */
static int keep_metadata(struct pl_tls *t, const struct dr_media *m, const char *tag,
                         const char *meta, const struct dr_variant *vars, size_t n, char *err,
                         size_t errlen)
{
    struct pl_ctx *pc = t->pc;
    json_t *failed = json_array();
    for (size_t i = 0; i < n; i++)
        if (strcmp(vars[i].state, "failed") == 0)
            json_array_append_new(failed, json_pack("{s:s, s:s?, s:I}", "name", vars[i].name,
                                                    "error", vars[i].error, "created_at",
                                                    (json_int_t)vars[i].created_at));
    json_t *doc = json_pack("{s:i, s:o, s:o}", "v", 1, "metadata", json_loads(meta, 0, NULL),
                            "failed", failed);
    char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    if (text == NULL) {
        dr_set_err(err, errlen, "media %s: cannot encode its metadata", m->id);
        return -EINVAL;
    }
    char *plain = xasprintf("%s/%s.meta", pc->work_dir, tag);
    char *sealed = xasprintf("%s/%s.meta.sealed", pc->work_dir, tag);
    char key[64], why[DR_ERRLEN] = "";
    store_meta_key(m->id, key, sizeof key);
    int rc = 0;
    int fd = open(plain, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        rc = -errno;
    else
        rc = dr_write_all(fd, text, strlen(text));
    if (fd >= 0 && close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc != 0)
        dr_set_err(why, sizeof why, "%s: %s", plain, strerror(-rc));
    uint8_t wk[DR_WRAPPED_KEY_LEN];
    struct seal_result res;
    if (rc == 0)
        rc = seal_put(t, m, STORE_META_TYPE, plain, sealed, key, &res, wk, why, sizeof why);
    unlink(plain);
    free(plain);
    free(sealed);
    free(text);
    if (rc != 0)
        dr_set_err(err, errlen, "media %s: cannot store its metadata object %s: %s", m->id, key,
                   why);
    return rc;
}

static void delete_object(struct pl_tls *t, const struct dr_media *m, const char *key)
{
    char err[DR_ERRLEN] = "";
    if (pl_tls_store(t, err, sizeof err) != 0 || store_delete(t->store, key, err, sizeof err) != 0)
        log_warn("media %s: cannot remove the variant object %s: %s", m->id, key, err);
}

/* The helper wrote the stripped original into fd (tmp): make it durable
 * under final (fsync, rename, fsync of the directory). 0 / -errno + err. */
static int keep_stripped(int fd, const char *tmp, const char *final, uint64_t size, char *err,
                         size_t errlen)
{
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != size) {
        dr_set_err(err, errlen, "the stripped original is not the size the decoder said");
        return -EIO; /* transient: the step runs again */
    }
    if (!dr_test_skip_sync("strip") && fsync(fd) != 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, final) != 0)
        rc = -errno;
    if (rc == 0 && !dr_test_skip_sync("strip"))
        rc = dr_fsync_parent(final);
    if (rc != 0)
        dr_set_err(err, errlen, "cannot keep the stripped original %s: %s", final, strerror(-rc));
    return rc;
}

int pl_process_file(struct pl_tls *t, const struct dr_media *m, int in, const char *tag,
                    const char *strip_to, uint64_t *stripped, bool *decoded, char *err,
                    size_t errlen)
{
    struct pl_ctx *pc = t->pc;
    const struct dr_config *cfg = pc->cfg;
    size_t nv = DR_MIN(cfg->processing.n_variants, (size_t)DECODE_MAX_VARIANTS);
    int outs[DECODE_MAX_VARIANTS + 1];
    char *plain[DECODE_MAX_VARIANTS] = {0};
    char *strip_tmp = NULL;
    struct dr_variant vars[DECODE_MAX_VARIANTS];
    struct decode_resp resp;
    char derr[DR_ERRLEN] = "";
    char *meta = NULL;
    int rc = 0;

    memset(vars, 0, sizeof vars);
    for (size_t i = 0; i < DECODE_MAX_VARIANTS + 1; i++)
        outs[i] = -1;
    if (decoded)
        *decoded = false;
    if (stripped)
        *stripped = 0;
    uint8_t head[DECODE_PROBE_LEN];
    ssize_t got = dr_pread_full(in, head, sizeof head, 0);
    if (got < 0) {
        rc = (int)got;
        dr_set_err(err, errlen, "cannot read media %s: %s", m->id, strerror((int)-got));
        goto out;
    }
    int kind = decode_probe(head, (size_t)got);
    if (kind == DECODE_KIND_OTHER)
        goto out; /* not media: one read, nothing to record */

    struct decode_req req = {
        .flags = (cfg->processing.video_poster ? DECODE_F_POSTER : 0) |
                 hook_flags(cfg->processing.test_decoder),
        .max_pixels = cfg->processing.limits.max_pixels,
        .memory = cfg->processing.limits.memory,
        .timeout_ms = (uint32_t)DR_MIN(cfg->processing.limits.timeout, 3600000),
        .n_variants = (uint32_t)nv,
    };
    for (size_t i = 0; i < nv; i++) {
        const struct dr_variant_cfg *vc = &cfg->processing.variants[i];
        snprintf(req.v[i].name, sizeof req.v[i].name, "%s", vc->name);
        req.v[i].max = (uint32_t)vc->max;
        req.v[i].format = (uint8_t)format_code(vc->format);
        req.v[i].quality = (uint8_t)(vc->quality > 0 ? vc->quality : 80);
        snprintf(vars[i].media_id, sizeof vars[i].media_id, "%s", m->id);
        snprintf(vars[i].name, sizeof vars[i].name, "%s", vc->name);
        plain[i] = xasprintf("%s/%s.%s.var", pc->work_dir, tag, vc->name);
        outs[i] = open(plain[i], O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (outs[i] < 0) {
            rc = -errno;
            dr_set_err(err, errlen, "cannot create %s: %s", plain[i], strerror(errno));
            goto out;
        }
    }
    if (strip_to != NULL && kind == DECODE_KIND_IMAGE) {
        req.flags |= DECODE_F_STRIP;
        strip_tmp = xasprintf("%s.tmp", strip_to);
        outs[nv] = open(strip_tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (outs[nv] < 0) {
            rc = -errno;
            dr_set_err(err, errlen, "cannot create %s: %s", strip_tmp, strerror(errno));
            goto out;
        }
    }
    int drc = decode_run(decode_helper_path(), &req, in, outs, &resp, derr, sizeof derr);
    if (decoded)
        *decoded = true;
    metrics_add(&pc->metrics->decode_runs, 1);
    if (drc != 0) {
        metrics_add(&pc->metrics->decode_failures, 1);
        log_warn("media %s: %s", m->id, derr);
        for (size_t i = 0; i < nv; i++)
            variant_failed(&vars[i], derr);
        /* nothing is known: the helper did not answer (nor stripped) */
        meta = metadata_json(NULL, (req.flags & DECODE_F_STRIP) != 0, m->metadata);
        if (req.flags & DECODE_F_STRIP)
            log_warn("media %s: the original keeps its metadata: the decoder failed", m->id);
    } else {
        meta = metadata_json(&resp, (req.flags & DECODE_F_STRIP) != 0, m->metadata);
        if (resp.strip == DECODE_STRIP_DONE) {
            rc = keep_stripped(outs[nv], strip_tmp, strip_to, resp.strip_size, err, errlen);
            if (rc != 0)
                goto out;
            if (stripped)
                *stripped = resp.strip_size;
        } else if (resp.strip == DECODE_STRIP_FAILED) {
            log_warn("media %s: the original keeps its metadata: %s", m->id, resp.strip_reason);
        }
        bool pictured = resp.kind == DECODE_KIND_IMAGE || resp.kind == DECODE_KIND_PDF ||
                        (resp.kind == DECODE_KIND_VIDEO && cfg->processing.video_poster);
        for (size_t i = 0; i < nv; i++) {
            const struct decode_variant_resp *vr = &resp.v[i];
            if (!pictured && resp.kind != DECODE_KIND_OTHER) {
                vars[i].name[0] = '\0'; /* audio, video without posters: none */
                continue;
            }
            if (vr->status != 0) {
                variant_failed(&vars[i], vr->reason[0] ? vr->reason : resp.reason);
                continue;
            }
            struct stat st;
            if (fstat(outs[i], &st) != 0 || (uint64_t)st.st_size != vr->size || vr->size == 0) {
                variant_failed(&vars[i], "the decoder's output does not match its answer");
                continue;
            }
            vars[i].width = vr->width;
            vars[i].height = vr->height;
            char *sealed = xasprintf("%s/%s.%s.sealed", pc->work_dir, tag, vars[i].name);
            seal_and_store(t, m, &cfg->processing.variants[i], plain[i], sealed, &vars[i]);
            free(sealed);
        }
    }
    /* rows to record: those with a name */
    size_t n = 0;
    for (size_t i = 0; i < nv; i++)
        if (vars[i].name[0] != '\0') {
            vars[i].created_at = dr_now_ms();
            if (n != i) {
                vars[n] = vars[i];
                memset(&vars[i], 0, sizeof vars[i]);
            }
            n++;
        }
    char **stale = NULL;
    size_t n_stale = 0;
    bool recorded = false;
    rc = catalog_media_set_processed(t->cat, m->id, meta, vars, n, &stale, &n_stale);
    for (size_t i = 0; i < n_stale; i++) {
        delete_object(t, m, stale[i]);
        free(stale[i]);
    }
    free(stale);
    if (rc == 0) {
        log_debug("media %s: processed (%s), %zu variant%s", m->id, meta, n, n == 1 ? "" : "s");
        rc = keep_metadata(t, m, tag, meta, vars, n, err, errlen);
        recorded = true;
    } else if (rc == -ENOENT) {
        rc = 0; /* deleted meanwhile: the commit of the step will say so */
    } else {
        dr_set_err(err, errlen, "catalog: cannot record the processing of %s: %s", m->id,
                   strerror(-rc));
    }
    for (size_t i = 0; i < n; i++)
        if (rc != 0 && !recorded && vars[i].storage_key) /* not recorded: the objects go */
            delete_object(t, m, vars[i].storage_key);
out:
    for (size_t i = 0; i < DECODE_MAX_VARIANTS + 1; i++)
        if (outs[i] >= 0)
            close(outs[i]);
    if (strip_tmp) {
        unlink(strip_tmp); /* renamed away when it was kept */
        free(strip_tmp);
    }
    for (size_t i = 0; i < DECODE_MAX_VARIANTS; i++) {
        if (plain[i]) {
            unlink(plain[i]);
            free(plain[i]);
        }
        dr_variant_clear(&vars[i]);
    }
    free(meta);
    return rc;
}

int pl_process_step(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                    size_t errlen)
{
    (void)work_path_out;
    /* A stripped original of an earlier run that did not commit: encrypt
     * would take it for this run's (whatever this run decides). None can
     * be there while the worker has seen none (pc->plains). */
    char *plain = pl_plain_path(t->pc, j->job.id);
    bool plains = __atomic_load_n(&t->pc->plains, __ATOMIC_ACQUIRE) != 0;
    if (plains && pl_unlink(t->pc, plain) != 0 && errno != ENOENT) {
        int e = errno;
        dr_set_err(err, errlen, "cannot remove %s: %s", plain, strerror(e));
        free(plain);
        return -e;
    }
    /* from here on this step alone may make one, where it says so */
    j->no_plain = true;
    if (!t->pc->cfg->processing.enabled) {
        free(plain);
        j->upd.no_commit = true;
        return 0;
    }
    int rc = pl_staged_body(t, j, true, err, errlen); /* a file: inline, or (cluster) fetched */
    if (rc != 0)
        return rc;
    if (j->job.spool_path == NULL) {
        free(plain);
        dr_set_err(err, errlen, "upload job %s has no spool file", j->job.id);
        return -ENOENT;
    }
    /* the type check first: a file that is not media costs this read */
    int fd = pl_open(t->pc, j->job.spool_path, O_RDONLY);
    if (fd < 0) {
        int e = errno;
        free(plain);
        dr_set_err(err, errlen, "spool file %s: %s", j->job.spool_path, strerror(e));
        return -e;
    }
    uint8_t head[DECODE_PROBE_LEN];
    ssize_t got = dr_pread_full(fd, head, sizeof head, 0);
    if (got >= 0 && decode_probe(head, (size_t)got) == DECODE_KIND_OTHER) {
        close(fd);
        free(plain);
        j->upd.no_commit = true;
        return 0;
    }
    struct dr_media m;
    memset(&m, 0, sizeof m);
    rc = catalog_media_get(t->cat, j->job.media_id, NULL, &m);
    if (rc != 0) {
        close(fd);
        free(plain);
        if (rc == -ENOENT)
            dr_set_err(err, errlen, "media %s no longer exists", j->job.media_id);
        else
            dr_set_err(err, errlen, "catalog: cannot read media %s: %s", j->job.media_id,
                       strerror(-rc));
        return rc;
    }
    bool decoded = false;
    uint64_t stripped = 0;
    bool strip = t->pc->cfg->processing.strip_metadata;
    if (strip) {
        /* before the file can exist: encrypt and later runs look for it */
        __atomic_store_n(&t->pc->plains, 1, __ATOMIC_RELEASE);
        j->no_plain = false;
    }
    rc = pl_process_file(t, &m, fd, j->job.id, strip ? plain : NULL, &stripped, &decoded, err,
                         errlen);
    close(fd);
    if (rc == 0 && stripped > 0) {
        /* the media's size is the stored bytes', committed with the stage */
        j->upd.resized = true;
        j->upd.size = stripped;
    }
    if (rc == 0 && !decoded)
        j->upd.no_commit = true; /* not media: nothing was recorded */
    dr_media_clear(&m);
    free(plain);
    return rc;
}

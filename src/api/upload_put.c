/* upload_put.c - PUT /v1/files/{path}: a raw request body becomes a file
 * at that path in the caller's tree (routes.h; docs/HTTP.md for the
 * back-pressure design).
 *
 * Flow (all on the connection's loop thread, except the commit):
 *   on_head  path check (400), size check from Content-Length (413, before
 *            any body byte is read: with Expect: 100-continue the client
 *            never sees 100), queue full (503 + Retry-After), path taken
 *            (409; with If-Match: no file there or another ETag, 412;
 *            ?conflict=rename takes any path, see on_end; a body of at
 *            most EARLY_CHECK_MAX bytes without Expect: 100-continue or
 *            If-Match is checked by the commit only, see early_check), the
 *            pre-upload hook if one is configured
 *            (upload_hook.h: 403 with its reason, 503 when it fails),
 *            the user's quotas and the free-disk floor (quota.h:
 *            507, 429 + Retry-After), then a spool file is created and the
 *            body accepted (which sends 100 Continue if it was expected);
 *            a body of at most INGEST_INLINE_MAX bytes (Content-Length)
 *            gets a buffer instead, while the process's inline budget has
 *            room (ingest.h: SQLite catalogs only): its bytes are
 *            committed with its job (job_bodies), with no spool file;
 *   on_body  an inline body is copied into its buffer; any other piece
 *            is written synchronously into the spool file. That
 *            write IS the back-pressure: the loop does not read the socket
 *            faster than the disk takes the bytes, and the connection
 *            buffers at most 256 KiB (http_conn.c), so an upload costs a small constant
 *            of memory whatever its size. Every 8 MiB the written range is
 *            handed to writeback, and the range 16 MiB behind is waited for
 *            and dropped from the page cache (spool_writeback), so the
 *            fdatasync at the end finds little left to flush.
 *            Chunked bodies are checked against max_upload_size (413)
 *            and the user's max_bytes (507) as they stream; a full disk
 *            is 507; any of them removes the file;
 *   on_end   ingest_submit(): the committer fdatasyncs the file and
 *            commits media + job + event in a group transaction; then 202
 *            {"media":..,"job":..} with Location: /v1/jobs/{id}. The
 *            transaction decides If-Match (412 when the ETag moved on
 *            meanwhile; the upload then replaces the file once it is
 *            stored, catalog_versions.h) and picks the free name of
 *            ?conflict=rename ("cat (1).jpg"), which the 202 body shows,
 *            and a taken path (409, the same detail as on_head's).
 * A client that disconnects before the commit leaves nothing behind: the
 * spool file is removed in on_abort. Once committed, the spool file
 * belongs to the job (the pipeline reads and removes it).
 */
#include "routes.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_req.h"
#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/id.h"
#include "ingest.h"
#include "dripd/log.h"
#include "dripd/path.h"
#include "dripd/router.h"
#include "quota.h"
#include "upload_hook.h"
#include "spool.h"
#include "dripd/util.h"

#define PREFIX "/v1/files"
#define CTYPE_MAX 255
#define EARLY_CHECK_MAX (64u << 10) /* a smaller body skips the early path check */

struct put {
    int fd;
    char *spool_path;
    uint8_t *buf;        /* an inline body (ingest.h), else NULL */
    uint64_t inline_len; /* its Content-Length, reserved in the inline budget; 0 none */
    char *path;
    char *ctype;
    uint64_t size;
    uint64_t writeback_at;
    struct dr_intake item;
    bool committed;
    struct quota_hold hold;
    struct api_overwrite ow;
};

static void put_free(struct put *p)
{
    if (p == NULL)
        return;
    if (p->fd >= 0)
        close(p->fd);
    if (!p->committed && p->spool_path != NULL)
        spool_remove(p->spool_path);
    free(p->buf);
    if (p->inline_len > 0)
        ingest_inline_release(p->inline_len);
    free(p->spool_path);
    free(p->path);
    free(p->ctype);
    free(p->item.renamed);
    api_overwrite_free(&p->ow);
    free(p);
}

/* Drop the partial spool file or inline body now (error answers), keep
 * the struct. */
static void put_discard(struct put *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    free(p->buf);
    p->buf = NULL;
    if (p->inline_len > 0)
        ingest_inline_release(p->inline_len);
    p->inline_len = 0;
    if (p->spool_path != NULL)
        spool_remove(p->spool_path);
    free(p->spool_path);
    p->spool_path = NULL;
}

/* A Content-Type worth recording: printable ASCII, bounded. */
static char *clean_ctype(const char *v)
{
    if (v == NULL || *v == '\0' || strlen(v) > CTYPE_MAX)
        return NULL;
    for (const char *s = v; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            return NULL;
    return xstrdup(v);
}

static void respond_storage_error(struct http_exchange *ex, int rc, const char *what)
{
    if (rc == -ENOSPC || rc == -EDQUOT) {
        http_respond_problem(ex, 507, "no space left on the spool disk (%s)", what);
    } else if (rc == -EMFILE || rc == -ENFILE) {
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "the server has too many files open (%s); retry", what);
    } else if (rc == -EAGAIN) { /* cluster mode: the store took no staged body */
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "the store is unreachable (%s); retry", what);
    } else
        http_respond_problem(ex, 500, "%s failed: %s", what, strerror(-rc));
}

/* Within the user's quotas: take a buffer (a small body) or a spool file,
 * and the body. */
static void put_admitted(struct http_exchange *ex, void *arg)
{
    struct put *p = arg;
    const struct http_request *req = http_req(ex);
    if (req->has_length && ingest_inline_take(http_cfg(ex), req->content_length)) {
        p->inline_len = req->content_length;
        p->buf = xmalloc(p->inline_len);
        http_accept_body(ex);
        return;
    }
    char id[DR_ID_LEN + 1];
    dr_id_new(id);
    int rc = spool_create(http_cfg(ex)->data_dir, id, &p->fd, &p->spool_path);
    if (rc < 0) {
        p->fd = -1;
        respond_storage_error(ex, rc, "creating the spool file");
        return;
    }
    http_accept_body(ex);
}

/* The pre-upload hook allowed it: the user's quotas. */
static void put_checked(struct http_exchange *ex, void *arg)
{
    struct put *p = arg;
    const struct http_request *req = http_req(ex);
    quota_admit(ex, req->has_length ? req->content_length : 0, 1, true, &p->hold, put_admitted, p);
}

static void put_head_admitted(struct http_exchange *ex, void *arg);

static void put_head(struct http_exchange *ex)
{
    const struct http_request *req = http_req(ex);
    const struct dr_config *cfg = http_cfg(ex);
    char err[DR_ERRLEN];
    char *path = NULL;
    if (path_normalize_file(req->path + strlen(PREFIX), &path, err, sizeof err) < 0) {
        http_respond_problem(ex, 400, "invalid path: %s", err);
        return;
    }
    if (req->has_length && req->content_length > cfg->limits.max_upload_size) {
        http_respond_problem(ex, 413,
                             "%" PRIu64 " bytes is over limits.max_upload_size (%" PRIu64 " bytes)",
                             req->content_length, cfg->limits.max_upload_size);
        free(path);
        return;
    }
    ingest_admit(ex, put_head_admitted, path, free); /* waits at the queue limit */
}

/* Is the path checked before the body (409/412 before a byte is read)?
 * Not for a small body without Expect: 100-continue: the client sends it
 * with the head anyway, so the commit's own check (the same rules, in its
 * transaction: put_committed answers the same 409) costs it nothing, and
 * the catalog read on the loop thread was ~15% of the http worker's CPU
 * per 4 KiB PUT (issue 15). If-Match (412 needs the file's row) and a
 * pre-upload hook (it must not be asked about a taken path) keep it. */
static bool early_check(struct http_exchange *ex, const struct api_overwrite *ow)
{
    const struct http_request *req = http_req(ex);
    return ow->if_match != NULL || !req->has_length || req->content_length > EARLY_CHECK_MAX ||
           req->expect_continue || http_cfg(ex)->hooks.pre_upload.url != NULL;
}

/* The head is fine and the queue has room: overwrite rules, then the
 * pre-upload hook. */
static void put_head_admitted(struct http_exchange *ex, void *arg)
{
    const struct http_request *req = http_req(ex);
    char *path = arg;
    struct api_overwrite ow;
    if (!api_overwrite_read(ex, &ow)) {
        free(path);
        return;
    }
    struct catalog *cat = http_thread_catalog(http_ex_thread(ex));
    int rc = !early_check(ex, &ow) ? 0
             : cat                 ? api_overwrite_check(ex, cat, http_user(ex), path, &ow)
                                   : -EIO;
    if (rc != 0) {
        if (rc < 0) {
            http_add_header(ex, "Retry-After", "5");
            http_respond_problem(ex, 503, "the catalog is not available");
        }
        api_overwrite_free(&ow);
        free(path);
        return;
    }
    struct put *p = xcalloc(1, sizeof *p);
    p->ow = ow;
    p->fd = -1;
    p->path = path;
    p->ctype = clean_ctype(http_header(ex, "Content-Type"));
    p->hold = (struct quota_hold)QUOTA_HOLD_INIT;
    http_set_data(ex, p); /* freed by put_finish, whatever happens next */
    struct upload_hook_info hi = {.protocol = "put",
                                  .path = p->path,
                                  .size = req->has_length ? (int64_t)req->content_length : -1,
                                  .content_type = p->ctype};
    upload_hook_check(ex, &hi, put_checked, p);
}

static int put_body(struct http_exchange *ex, const char *data, size_t len)
{
    struct put *p = http_get_data(ex);
    uint64_t max = http_cfg(ex)->limits.max_upload_size;
    if (p->size + len > max) {
        put_discard(p);
        http_respond_problem(ex, 413, "the body is over limits.max_upload_size (%" PRIu64 " bytes)",
                             max);
        return -EFBIG;
    }
    if (p->size + len > p->hold.allowance) {
        put_discard(p);
        http_respond_problem(ex, 507, "the body is over %s's quota (quotas.max_bytes)",
                             http_user(ex));
        return -EDQUOT;
    }
    if (p->buf != NULL) {
        if (p->size + len > p->inline_len) { /* the parser keeps to Content-Length */
            put_discard(p);
            http_respond_problem(ex, 400, "the body is longer than its Content-Length");
            return -EINVAL;
        }
        memcpy(p->buf + p->size, data, len);
        p->size += len;
        return 0;
    }
    int rc = spool_write(p->fd, data, len);
    if (rc < 0) {
        log_warn("upload: writing %s: %s", p->spool_path, strerror(-rc));
        put_discard(p);
        respond_storage_error(ex, rc, "writing the upload");
        return rc;
    }
    p->size += len;
    spool_writeback(p->fd, 0, p->size, &p->writeback_at);
    return 0;
}

static void put_committed(struct http_exchange *ex, struct dr_intake *items, size_t n, int rc,
                          void *arg)
{
    (void)n;
    struct put *p = arg;
    if (rc == 0 && items[0].result == 0)
        p->committed = true; /* the spool file belongs to the job now */
    if (http_ex_closed(ex))
        return; /* on_abort frees p (and keeps the file if committed) */
    if (rc < 0) {
        put_discard(p);
        if (rc == -EBUSY) {
            http_add_header(ex, "Retry-After", "5");
            http_respond_problem(ex, 503, "the catalog is busy; retry");
        } else if (rc == -ENOTCONN) { /* catalog.h: the commit's outcome stayed unknown */
            http_add_header(ex, "Retry-After", "5");
            http_respond_problem(ex, 503,
                                 "the catalog connection broke while committing the upload: "
                                 "whether it was recorded is unknown; retry");
        } else {
            respond_storage_error(ex, rc, "committing the upload");
        }
        return;
    }
    if (items[0].result == -EEXIST) {
        put_discard(p);
        /* the same detail as the early check's (a folder, a file above),
         * read now: this is the rare path */
        struct catalog *cat = http_thread_catalog(http_ex_thread(ex));
        if (!p->ow.rename && cat != NULL &&
            api_overwrite_check(ex, cat, http_user(ex), p->path, &p->ow) == 1)
            return;
        http_respond_problem(ex, 409, "%s %s", p->path,
                             p->ow.rename ? "has no free name left" : "already exists");
        return;
    }
    if (items[0].result == -ESTALE) {
        put_discard(p);
        http_respond_problem(ex, 412, "%s has changed: its ETag is not in If-Match", p->path);
        return;
    }
    if (items[0].result != 0) {
        put_discard(p);
        respond_storage_error(ex, items[0].result, "committing the upload");
        return;
    }
    /* counted before the client hears 202: its next upload, maybe on
     * another loop thread, must see this job (on_done would be too late) */
    quota_release(&p->hold, p->size, 1);
    char *body = ingest_item_json(&items[0], "queued");
    http_add_headerf(ex, "Location", "/v1/jobs/%s", items[0].job_id);
    http_respond(ex, 202, "application/json", body, strlen(body));
    free(body);
}

static void put_end(struct http_exchange *ex)
{
    struct put *p = http_get_data(ex);
    if (p == NULL || (p->fd < 0 && p->buf == NULL))
        return;
    p->item = (struct dr_intake){
        .owner = http_user(ex),
        .path = p->path,
        .size = p->size,
        .content_type = p->ctype,
        .spool_path = p->spool_path,
        .body = p->buf,
        .body_len = p->buf != NULL ? p->size : 0,
        .if_match = p->ow.if_match,
        .rename = p->ow.rename,
    };
    int rc = ingest_submit(ex, &p->item, &p->fd, 1, put_committed, p);
    if (rc < 0) {
        put_discard(p);
        ingest_respond_busy(ex);
    }
}

static void put_finish(struct http_exchange *ex)
{
    struct put *p = http_get_data(ex);
    if (p != NULL)
        quota_release(&p->hold, p->committed ? p->size : 0, p->committed ? 1 : 0);
    put_free(p);
    http_set_data(ex, NULL);
}

static const struct http_route_ops put_ops = {
    .route_class = "upload",
    .on_head = put_head,
    .on_body = put_body,
    .on_end = put_end,
    .on_abort = put_finish,
    .on_done = put_finish,
};

void upload_put_register_routes(void)
{
    router_add("PUT", PREFIX "/", true, &put_ops);
}

/* upload_multipart.c - POST /v1/files/{folder} with multipart/form-data.
 *
 * What: each part named "file" streams (multipart.c) into its own spool
 * file; its media path is the folder from the URL joined with the part's
 * filename (path_join; a bad name is 400). Other parts are ignored; a
 * "file" part with an empty filename and no bytes (a browser's empty file
 * input) is skipped. At the end every file goes to ingest_submit() as ONE
 * batch: one fsync round and one catalog transaction, then 202 with
 * {"uploads":[{"media":..,"job":..},...]}.
 *
 * Checks, early where possible: 415 when not multipart/form-data, 400 for
 * a missing/bad boundary or malformed body, 503 when the job queue is
 * full (before any body is read), 413 when the whole body passes
 * limits.max_upload_size (by Content-Length up front, or while counting),
 * 409 when a target path is taken: checked as each part begins (a catalog
 * read on the loop thread), and again by the intake transaction (-EEXIST;
 * the other items of the batch are committed then, and the 409 body lists
 * them under "uploads"); with ?conflict=rename a taken name (also one
 * that appears twice) gets the first free "name (n).ext" instead, picked
 * by the intake transaction (If-Match is for PUT: 400 here). The
 * pre-upload hook (upload_hook.h) is asked
 * once for the request, before its body, with the folder as the path and
 * the whole body's Content-Length as the size (the files' names are in
 * the body). The user's quotas (quota.h): the request as a
 * whole before its body (507 below health.min_free_disk or over
 * max_bytes, 429 for queued jobs), each file part as it begins (it holds
 * a descriptor until the batch commits: 429 past max_inflight_uploads,
 * 503 past what the worker's descriptor limit allows for all users), and
 * the bytes as they stream (507 past max_bytes).
 *
 * Threads: everything runs on the connection's loop thread; the spool
 * writes are page-cache writes (spool_writeback: handed to writeback
 * every 8 MiB, the window 16 MiB behind waited for and dropped), the
 * fsyncs happen in ingest's committer.
 * Cleanup: every spool file that did not become a job is removed, on any
 * error, abort or conflict.
 */
#include "routes.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
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
#include "dripd/multipart.h"
#include "dripd/path.h"
#include "dripd/router.h"
#include "quota.h"
#include "upload_hook.h"
#include "spool.h"
#include "dripd/util.h"

#define FILES_PREFIX "/v1/files"
/* At most this many file parts per request (each holds a spool fd until
 * the batch commits). */
#define UPLOAD_MULTIPART_MAX_FILES 100
#define CT_MAX 255

struct mp_file {
    char *path; /* media path */
    char *spool_path;
    char *content_type;
    int fd;
    uint64_t size;
    uint64_t writeback_at;
    bool handed; /* became a job: its spool file is the job's now */
};

struct mp_req {
    struct http_exchange *ex;
    const struct dr_config *cfg;
    char *owner;
    char *folder;
    struct mp_parser *parser;
    struct mp_file *files;
    size_t n;
    struct mp_file *cur; /* the "file" part being written, or NULL */
    bool empty_part;     /* current "file" part had filename="" */
    uint64_t total;
    bool responded;
    int status; /* set by a callback that stopped the parser */
    char detail[300];
    struct dr_intake *items;
    int *fds;
    struct quota_hold hold;
    bool rename; /* ?conflict=rename */
};

static void req_error(struct mp_req *st, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void req_error(struct mp_req *st, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->detail, sizeof(st->detail), fmt, ap);
    va_end(ap);
    st->status = status;
}

static void respond_error(struct mp_req *st, int status, const char *detail)
{
    if (st->responded)
        return;
    st->responded = true;
    if (status == 503 || status == 429)
        http_add_header(st->ex, "Retry-After", status == 429 ? "5" : "1");
    http_respond_problem(st->ex, status, "%s", detail);
}

static int status_for(int rc)
{
    switch (rc) {
    case -EEXIST:
        return 409;
    case -ENOSPC:
    case -EDQUOT:
        return 507;
    case -EBUSY:
    case -EAGAIN:
    case -EMFILE:
    case -ENFILE:
    case -ENOTCONN: /* the catalog's COMMIT outcome stayed unknown */
        return 503;
    default:
        return 500;
    }
}

static bool content_type_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > CT_MAX || strchr(s, '/') == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] > 0x7e)
            return false;
    return true;
}

static void req_free(struct mp_req *st)
{
    if (st == NULL)
        return;
    mp_parser_destroy(st->parser);
    for (size_t i = 0; i < st->n; i++) {
        struct mp_file *f = &st->files[i];
        if (f->fd >= 0)
            close(f->fd);
        if (!f->handed)
            spool_remove(f->spool_path);
        free(f->path);
        free(f->spool_path);
        free(f->content_type);
    }
    free(st->files);
    for (size_t i = 0; st->items != NULL && i < st->n; i++)
        free(st->items[i].renamed);
    free(st->items);
    free(st->fds);
    free(st->folder);
    free(st->owner);
    free(st);
}

/* ---- parser callbacks ---- */

static int part_begin(void *arg, const struct mp_part *part)
{
    struct mp_req *st = arg;
    char err[DR_ERRLEN];
    char *path = NULL;
    st->cur = NULL;
    st->empty_part = false;
    if (strcmp(part->name, "file") != 0)
        return 0; /* other form fields are ignored */
    if (part->filename == NULL) {
        req_error(st, 400, "part 'file' has no filename");
        return -EINVAL;
    }
    if (part->filename[0] == '\0') {
        st->empty_part = true; /* an empty file input; fine while it has no bytes */
        return 0;
    }
    if (path_join(st->folder, part->filename, &path, err, sizeof(err)) < 0) {
        req_error(st, 400, "bad filename: %s", err);
        return -EINVAL;
    }
    for (size_t i = 0; i < st->n && !st->rename; i++) {
        if (strcmp(st->files[i].path, path) == 0) {
            req_error(st, 409, "%s appears twice in this request", path);
            free(path);
            return -EEXIST;
        }
    }
    if (st->n == UPLOAD_MULTIPART_MAX_FILES) {
        req_error(st, 400, "more than %d files in one request", UPLOAD_MULTIPART_MAX_FILES);
        free(path);
        return -E2BIG;
    }
    if (part->content_type != NULL && !content_type_ok(part->content_type)) {
        req_error(st, 400, "bad Content-Type of part %s", part->filename);
        free(path);
        return -EINVAL;
    }
    struct catalog *cat = http_thread_catalog(http_ex_thread(st->ex));
    int rc = cat == NULL ? -EAGAIN : st->rename ? 0 : catalog_path_exists(cat, st->owner, path);
    if (rc != 0) {
        if (rc > 0)
            req_error(st, 409, "%s %s", path, catalog_path_clash_text(rc));
        else
            req_error(st, status_for(rc), "checking %s: %s", path, strerror(-rc));
        free(path);
        return rc > 0 ? -EEXIST : rc;
    }
    char quota_detail[256];
    rc = quota_take_file(st->ex, &st->hold, quota_detail, sizeof quota_detail);
    if (rc < 0) {
        req_error(st, rc == -EMFILE ? 503 : 429, "%s", quota_detail);
        free(path);
        return rc;
    }
    char id[DR_ID_LEN + 1];
    dr_id_new(id);
    int fd;
    char *spool_path;
    rc = spool_create(st->cfg->data_dir, id, &fd, &spool_path);
    if (rc == -EMFILE || rc == -ENFILE) {
        req_error(st, 503, "the server has too many files open (creating a spool file); retry");
        free(path);
        return rc;
    }
    if (rc < 0) {
        req_error(st, status_for(rc), "creating a spool file: %s", strerror(-rc));
        free(path);
        return rc;
    }
    st->files = xrealloc(st->files, (st->n + 1) * sizeof(*st->files));
    struct mp_file *f = &st->files[st->n++];
    memset(f, 0, sizeof(*f));
    f->path = path;
    f->spool_path = spool_path;
    f->fd = fd;
    f->content_type = xstrdup(part->content_type);
    st->cur = f;
    return 0;
}

static int part_data(void *arg, const char *data, size_t len)
{
    struct mp_req *st = arg;
    if (st->empty_part) {
        req_error(st, 400, "part 'file' has data but an empty filename");
        return -EINVAL;
    }
    if (st->cur == NULL)
        return 0;
    int rc = spool_write(st->cur->fd, data, len);
    if (rc < 0) {
        req_error(st, status_for(rc), "writing %s: %s", st->cur->path, strerror(-rc));
        return rc;
    }
    struct mp_file *f = st->cur;
    f->size += len;
    spool_writeback(f->fd, 0, f->size, &f->writeback_at);
    return 0;
}

static int part_end(void *arg)
{
    struct mp_req *st = arg;
    st->cur = NULL;
    st->empty_part = false;
    return 0;
}

static const struct mp_callbacks CALLBACKS = {part_begin, part_data, part_end};

/* ---- commit ---- */

static char *uploads_json(const struct dr_intake *items, size_t n, size_t *count)
{
    size_t cap = 64, len = 0;
    char *out = xmalloc(cap);
    len = (size_t)snprintf(out, cap, "[");
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        if (items[i].result != 0)
            continue;
        char *one = ingest_item_json(&items[i], "queued");
        size_t ol = strlen(one);
        if (len + ol + 3 > cap) {
            cap = (len + ol + 3) * 2;
            out = xrealloc(out, cap);
        }
        if (*count > 0)
            out[len++] = ',';
        memcpy(out + len, one, ol);
        len += ol;
        out[len] = '\0';
        free(one);
        (*count)++;
    }
    out[len++] = ']';
    out[len] = '\0';
    return out;
}

/* Give the quota back; what was handed to jobs counts as stored. */
static void release_quota(struct mp_req *st)
{
    uint64_t bytes = 0;
    unsigned jobs = 0;
    for (size_t i = 0; i < st->n; i++)
        if (st->files[i].handed) {
            bytes += st->files[i].size;
            jobs++;
        }
    quota_release(&st->hold, bytes, jobs);
}

static void ingest_done(struct http_exchange *ex, struct dr_intake *items, size_t n, int rc,
                        void *arg)
{
    struct mp_req *st = arg;
    size_t conflicts = 0;
    if (rc == 0) {
        for (size_t i = 0; i < n; i++) {
            if (items[i].result == 0)
                st->files[i].handed = true;
            else
                conflicts++;
        }
    }
    /* Committed spool files belong to their jobs; close ours now. */
    for (size_t i = 0; i < st->n; i++) {
        if (st->files[i].fd >= 0) {
            close(st->files[i].fd);
            st->files[i].fd = -1;
        }
    }
    if (http_ex_closed(ex))
        return; /* on_abort frees st and removes what was not committed */
    if (rc < 0) {
        respond_error(st, status_for(rc),
                      rc == -ENOSPC     ? "no space left on the server"
                      : rc == -ENOTCONN ? "the catalog connection broke while committing the "
                                          "upload: whether it was recorded is unknown; retry"
                                        : "committing the upload failed");
        return;
    }
    release_quota(st); /* counted before the client hears the answer */
    size_t accepted;
    char *list = uploads_json(items, n, &accepted);
    st->responded = true;
    if (conflicts == 0) {
        char *body = xasprintf("{\"uploads\":%s}", list);
        http_respond(ex, 202, "application/json", body, strlen(body));
        free(body);
        free(list);
        log_info("multipart: %s uploaded %zu file(s) into %s", st->owner, accepted, st->folder);
        return;
    }
    /* Some paths were taken meanwhile: 409, naming them; the others are jobs. */
    json_t *doc = json_object();
    json_t *taken = json_array();
    for (size_t i = 0; i < n; i++)
        if (items[i].result != 0)
            json_array_append_new(taken, json_string(items[i].path));
    json_object_set_new(doc, "type", json_string("about:blank"));
    json_object_set_new(doc, "title", json_string(http_reason(409)));
    json_object_set_new(doc, "status", json_integer(409));
    json_object_set_new(doc, "detail",
                        json_string("some target paths already exist; the other files were "
                                    "accepted (see uploads)"));
    json_object_set_new(doc, "conflicts", taken);
    json_t *up = json_loads(list, 0, NULL);
    json_object_set_new(doc, "uploads", up != NULL ? up : json_array());
    char *text = json_dumps(doc, JSON_COMPACT);
    http_respond(ex, 409, "application/problem+json", text, strlen(text));
    free(text);
    json_decref(doc);
    free(list);
}

/* ---- route ops ---- */

static void mp_admitted(struct http_exchange *ex, void *arg);

/* The pre-upload hook allowed it: the user's quotas. */
static void mp_checked(struct http_exchange *ex, void *arg)
{
    const struct http_request *rq = http_req(ex);
    quota_admit(ex, rq->has_length ? rq->content_length : 0, 0, true, &((struct mp_req *)arg)->hold,
                mp_admitted, arg);
}

static void mp_admitted(struct http_exchange *ex, void *arg)
{
    (void)arg;
    http_accept_body(ex);
}

static void mp_head_admitted(struct http_exchange *ex, void *arg);
static void mp_refused(void *arg);

static void mp_on_head(struct http_exchange *ex)
{
    const struct http_request *rq = http_req(ex);
    struct mp_req *st = xcalloc(1, sizeof(*st));
    char err[DR_ERRLEN];
    st->hold = (struct quota_hold)QUOTA_HOLD_INIT;
    st->ex = ex;
    st->cfg = http_cfg(ex);
    st->owner = xstrdup(http_user(ex));
    http_set_data(ex, st);

    if (rq->path == NULL) {
        respond_error(st, 400, "undecodable path");
        return;
    }
    char *in = xstrdup(rq->path + strlen(FILES_PREFIX));
    size_t il = strlen(in);
    if (il > 1 && in[il - 1] == '/')
        in[il - 1] = '\0'; /* "/v1/files/photos/" names the folder too */
    int rc = path_normalize_folder(in, &st->folder, err, sizeof(err));
    free(in);
    if (rc < 0) {
        char d[DR_ERRLEN + 16];
        snprintf(d, sizeof(d), "bad folder: %s", err);
        respond_error(st, 400, d);
        return;
    }
    struct api_overwrite ow;
    if (!api_overwrite_read(ex, &ow)) {
        st->responded = true;
        return;
    }
    st->rename = ow.rename;
    bool if_match = ow.if_match != NULL;
    api_overwrite_free(&ow);
    if (if_match) {
        respond_error(st, 400, "If-Match replaces one file: use PUT /v1/files/{path}");
        return;
    }
    char boundary[MP_BOUNDARY_MAX + 1];
    rc = mp_boundary_from_content_type(http_header(ex, "Content-Type"), boundary, err, sizeof(err));
    if (rc < 0) {
        respond_error(st, rc == -ENOTSUP ? 415 : 400, err);
        return;
    }
    uint64_t max = st->cfg->limits.max_upload_size;
    if (rq->has_length && rq->content_length > max) {
        snprintf(err, sizeof(err), "the body is over the limit of %llu bytes",
                 (unsigned long long)max);
        respond_error(st, 413, err);
        return;
    }
    if (mp_parser_create(boundary, &CALLBACKS, st, &st->parser) < 0) {
        respond_error(st, 400, "bad boundary");
        return;
    }
    ingest_admit(ex, mp_head_admitted, st, mp_refused); /* waits at the queue limit */
}

/* No place in the queue (ingest_admit answered). */
static void mp_refused(void *arg)
{
    ((struct mp_req *)arg)->responded = true;
}

/* The queue has room: the pre-upload hook, then the quotas. */
static void mp_head_admitted(struct http_exchange *ex, void *arg)
{
    struct mp_req *st = arg;
    const struct http_request *rq = http_req(ex);
    struct upload_hook_info hi = {.protocol = "multipart",
                                  .path = st->folder,
                                  .size = rq->has_length ? (int64_t)rq->content_length : -1,
                                  .content_type = "multipart/form-data"};
    upload_hook_check(ex, &hi, mp_checked, st);
}

static int mp_on_body(struct http_exchange *ex, const char *data, size_t len)
{
    struct mp_req *st = http_get_data(ex);
    if (st == NULL || st->responded)
        return -ECANCELED;
    uint64_t max = st->cfg->limits.max_upload_size;
    if (len > max - st->total) {
        char d[96];
        snprintf(d, sizeof(d), "the body is over the limit of %llu bytes", (unsigned long long)max);
        respond_error(st, 413, d);
        return -EFBIG;
    }
    if (len > st->hold.allowance - st->total) {
        respond_error(st, 507, "the body is over your quota (quotas.max_bytes)");
        return -EDQUOT;
    }
    st->total += len;
    int rc = mp_parser_feed(st->parser, data, len);
    if (rc < 0) {
        if (st->status != 0) {
            respond_error(st, st->status, st->detail);
        } else {
            char d[256];
            snprintf(d, sizeof(d), "malformed multipart body: %s", mp_parser_error(st->parser));
            respond_error(st, 400, d);
        }
        return rc;
    }
    return 0;
}

static void mp_on_end(struct http_exchange *ex)
{
    struct mp_req *st = http_get_data(ex);
    if (st == NULL || st->responded)
        return;
    if (mp_parser_finish(st->parser) < 0) {
        char d[256];
        snprintf(d, sizeof(d), "malformed multipart body: %s", mp_parser_error(st->parser));
        respond_error(st, 400, d);
        return;
    }
    if (st->n == 0) {
        respond_error(st, 400, "no part named 'file' with a file in the body");
        return;
    }
    st->items = xcalloc(st->n, sizeof(*st->items));
    st->fds = xcalloc(st->n, sizeof(*st->fds));
    for (size_t i = 0; i < st->n; i++) {
        st->items[i].owner = st->owner;
        st->items[i].path = st->files[i].path;
        st->items[i].size = st->files[i].size;
        st->items[i].content_type = st->files[i].content_type;
        st->items[i].spool_path = st->files[i].spool_path;
        st->items[i].rename = st->rename;
        st->fds[i] = st->files[i].fd;
    }
    int rc = ingest_submit(ex, st->items, st->fds, st->n, ingest_done, st);
    if (rc < 0) {
        st->responded = true;
        ingest_respond_busy(ex);
    }
}

static void mp_on_abort(struct http_exchange *ex)
{
    struct mp_req *st = http_get_data(ex);
    http_set_data(ex, NULL);
    if (st != NULL)
        release_quota(st);
    size_t dropped = 0;
    for (size_t i = 0; st != NULL && i < st->n; i++)
        dropped += st->files[i].handed ? 0 : 1;
    if (dropped > 0)
        log_info("multipart: upload by %s ended early; %zu spool file(s) removed", st->owner,
                 dropped);
    req_free(st);
}

static void mp_on_done(struct http_exchange *ex)
{
    struct mp_req *st = http_get_data(ex);
    http_set_data(ex, NULL);
    if (st != NULL)
        release_quota(st);
    req_free(st);
}

static const struct http_route_ops multipart_ops = {
    .route_class = "upload",
    .on_head = mp_on_head,
    .on_body = mp_on_body,
    .on_end = mp_on_end,
    .on_abort = mp_on_abort,
    .on_done = mp_on_done,
};

void upload_multipart_register_routes(void)
{
    router_add("POST", FILES_PREFIX, true, &multipart_ops);
    router_add("POST", FILES_PREFIX "/", true, &multipart_ops);
}

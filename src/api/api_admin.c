/* api_admin.c - who the caller is, and the admin-only routes: usage
 * report, scrub and reprocess control.
 *
 *   GET  /v1/me            any user: {"user": name, "admin": bool} (the web
 *                          UI shows who is signed in and what they may do)
 *   GET  /v1/admin/usage   users ranked by bytes: {"users":[{"user","files","bytes"}]}
 *   POST /v1/admin/scrub   ask the pipeline to verify every stored object (202)
 *   GET  /v1/admin/scrub   progress and findings of the last scrub
 *   POST /v1/admin/reprocess[?path=/folder|/file]   make the variants and
 *                          metadata of stored media again (202), all of
 *                          them or those at or under path
 *   GET  /v1/admin/reprocess   progress of the last reprocess run
 *
 * Hand-off: the http worker writes <data_dir>/run/<what>.request and
 * wakes the pipeline; the pipeline's runner (scrub.c, reprocess.c) reports
 * into <data_dir>/run/<what>.json (replaced atomically), which GET returns.
 *
 * Runs on http loop threads; the usage query is a single aggregate over
 * the catalog, fast enough to run on the loop. Non-admins get 403. */
#include "routes.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/path.h"
#include "dripd/router.h"
#include "dripd/util.h"
#include "dripd/worker.h"
#include "api_req.h"

static void me_on_head(struct http_exchange *ex)
{
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond_json(ex, 200,
                      json_pack("{s:s,s:b}", "user", http_user(ex), "admin", http_user_admin(ex)));
}

static void usage_on_head(struct http_exchange *ex)
{
    if (api_require_admin(ex) < 0)
        return;
    struct catalog *cat = http_thread_catalog(http_ex_thread(ex));
    struct dr_usage *u = NULL;
    size_t n = 0;
    if (cat == NULL || catalog_usage(cat, &u, &n) < 0) {
        http_respond_problem(ex, 503, "the catalog is not available");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr,
                              json_pack("{s:s,s:I,s:I}", "user", u[i].user, "files",
                                        (json_int_t)u[i].files, "bytes", (json_int_t)u[i].bytes));
    catalog_usage_free(u, n);
    http_respond_json(ex, 200, json_pack("{s:o}", "users", arr));
}

static char *run_path(struct http_exchange *ex, const char *name)
{
    return xasprintf("%s/run/%s", http_cfg(ex)->data_dir, name);
}

/* Write text to path atomically (tmp + rename). */
static int write_atomic(const char *path, const char *text)
{
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int rc = fd < 0 ? -errno : dr_write_all(fd, text, strlen(text));
    if (fd >= 0)
        close(fd);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

static json_t *read_status(struct http_exchange *ex, const char *what)
{
    char *name = xasprintf("%s.json", what);
    char *p = run_path(ex, name);
    free(name);
    json_t *doc = json_load_file(p, 0, NULL);
    free(p);
    return doc ? doc : json_pack("{s:s}", "state", "idle");
}

static void scrub_get_on_head(struct http_exchange *ex)
{
    if (api_require_admin(ex) < 0)
        return;
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond_json(ex, 200, read_status(ex, "scrub"));
}

/* Record a request for the pipeline's runner `what` (scrub, reprocess)
 * and answer 202 with doc (taken) plus the request's state; a run under
 * way answers its status instead. */
static void request_run(struct http_exchange *ex, const char *what, json_t *doc)
{
    json_t *cur = read_status(ex, what);
    const char *st = json_string_value(json_object_get(cur, "state"));
    if (st && (strcmp(st, "running") == 0 || strcmp(st, "requested") == 0)) {
        json_decref(doc);
        http_respond_json(ex, 202, cur); /* already under way: same answer */
        return;
    }
    json_decref(cur);
    char ts[32];
    dr_fmt_time(dr_now_ms(), ts, sizeof ts);
    json_object_set_new(doc, "state", json_string("requested"));
    json_object_set_new(doc, "requested_at", json_string(ts));
    json_object_set_new(doc, "requested_by", json_string(http_user(ex)));
    json_object_set_new(doc, "checked", json_integer(0));
    json_object_set_new(doc, "total", json_integer(0));
    char *text = json_dumps(doc, JSON_COMPACT);
    char *rname = xasprintf("%s.request", what), *sname = xasprintf("%s.json", what);
    char *req = run_path(ex, rname), *status = run_path(ex, sname);
    char *loc = xasprintf("/v1/admin/%s", what);
    free(rname);
    free(sname);
    int rc = write_atomic(status, text);
    if (rc == 0)
        rc = write_atomic(req, text);
    free(text);
    free(req);
    free(status);
    if (rc < 0) {
        json_decref(doc);
        free(loc);
        http_respond_problem(ex, 507, "cannot record the %s request: %s", what, strerror(-rc));
        return;
    }
    worker_send(http_worker_ctx(ex), DR_MSG_JOB_ENQUEUED, 0);
    http_add_header(ex, "Location", loc);
    free(loc);
    http_respond_json(ex, 202, doc);
}

static const struct http_route_ops me_ops = {.route_class = "media", .on_head = me_on_head};
static void scrub_post_on_head(struct http_exchange *ex)
{
    if (api_require_admin(ex) < 0)
        return;
    request_run(ex, "scrub", json_pack("{s:[],s:[]}", "corrupt", "missing"));
}

static void reprocess_get_on_head(struct http_exchange *ex)
{
    if (api_require_admin(ex) < 0)
        return;
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond_json(ex, 200, read_status(ex, "reprocess"));
}

static void reprocess_post_on_head(struct http_exchange *ex)
{
    if (api_require_admin(ex) < 0)
        return;
    const char *p = http_query_param(ex, "path");
    char *norm = NULL, err[DR_ERRLEN];
    if (p && path_normalize_folder(p, &norm, err, sizeof err) < 0) {
        http_respond_problem(ex, 400, "bad path: %s", err);
        return;
    }
    json_t *doc =
        json_pack("{s:s?,s:i,s:i,s:[]}", "path", norm, "processed", 0, "failed", 0, "errors");
    free(norm);
    request_run(ex, "reprocess", doc);
}

static const struct http_route_ops usage_ops = {.route_class = "media", .on_head = usage_on_head};
static const struct http_route_ops scrub_get_ops = {.route_class = "jobs",
                                                    .on_head = scrub_get_on_head};
static const struct http_route_ops scrub_post_ops = {.route_class = "jobs",
                                                     .on_head = scrub_post_on_head};

static const struct http_route_ops reprocess_get_ops = {.route_class = "jobs",
                                                        .on_head = reprocess_get_on_head};
static const struct http_route_ops reprocess_post_ops = {.route_class = "jobs",
                                                         .on_head = reprocess_post_on_head};

void api_admin_register_routes(void)
{
    router_add("GET", "/v1/me", true, &me_ops);
    router_add("GET", "/v1/admin/reprocess", true, &reprocess_get_ops);
    router_add("POST", "/v1/admin/reprocess", true, &reprocess_post_ops);
    router_add("GET", "/v1/admin/usage", true, &usage_ops);
    router_add("GET", "/v1/admin/scrub", true, &scrub_get_ops);
    router_add("POST", "/v1/admin/scrub", true, &scrub_post_ops);
}

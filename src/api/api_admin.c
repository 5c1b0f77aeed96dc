/* api_admin.c - who the caller is, and the admin-only routes: usage
 * report and scrub control.
 *
 *   GET  /v1/me            any user: {"user": name, "admin": bool} (the web
 *                          UI shows who is signed in and what they may do)
 *   GET  /v1/admin/usage   users ranked by bytes: {"users":[{"user","files","bytes"}]}
 *   POST /v1/admin/scrub   ask the pipeline to verify every stored object (202)
 *   GET  /v1/admin/scrub   progress and findings of the last scrub
 *
 * Scrub hand-off: the http worker writes <data_dir>/run/scrub.request and
 * wakes the pipeline; the pipeline's scrub (scrub.c) reports into
 * <data_dir>/run/scrub.json (replaced atomically), which GET returns.
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
#include "dripd/router.h"
#include "dripd/util.h"
#include "dripd/worker.h"

static int require_admin(struct http_exchange *ex)
{
    if (http_user_admin(ex))
        return 0;
    http_respond_problem(ex, 403, "this route needs an admin user");
    return -1;
}

static void me_on_head(struct http_exchange *ex)
{
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond_json(ex, 200,
                      json_pack("{s:s,s:b}", "user", http_user(ex), "admin", http_user_admin(ex)));
}

static void usage_on_head(struct http_exchange *ex)
{
    if (require_admin(ex) < 0)
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

static json_t *read_status(struct http_exchange *ex)
{
    char *p = run_path(ex, "scrub.json");
    json_t *doc = json_load_file(p, 0, NULL);
    free(p);
    return doc ? doc : json_pack("{s:s}", "state", "idle");
}

static void scrub_get_on_head(struct http_exchange *ex)
{
    if (require_admin(ex) < 0)
        return;
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond_json(ex, 200, read_status(ex));
}

static void scrub_post_on_head(struct http_exchange *ex)
{
    if (require_admin(ex) < 0)
        return;
    json_t *cur = read_status(ex);
    const char *st = json_string_value(json_object_get(cur, "state"));
    if (st && (strcmp(st, "running") == 0 || strcmp(st, "requested") == 0)) {
        http_respond_json(ex, 202, cur); /* already under way: same answer */
        return;
    }
    json_decref(cur);
    char ts[32];
    dr_fmt_time(dr_now_ms(), ts, sizeof ts);
    json_t *doc =
        json_pack("{s:s,s:s,s:s,s:i,s:i,s:[],s:[]}", "state", "requested", "requested_at", ts,
                  "requested_by", http_user(ex), "checked", 0, "total", 0, "corrupt", "missing");
    char *text = json_dumps(doc, JSON_COMPACT);
    char *req = run_path(ex, "scrub.request"), *status = run_path(ex, "scrub.json");
    int rc = write_atomic(status, text);
    if (rc == 0)
        rc = write_atomic(req, text);
    free(text);
    free(req);
    free(status);
    if (rc < 0) {
        json_decref(doc);
        http_respond_problem(ex, 507, "cannot record the scrub request: %s", strerror(-rc));
        return;
    }
    worker_send(http_worker_ctx(ex), DR_MSG_JOB_ENQUEUED, 0);
    http_add_header(ex, "Location", "/v1/admin/scrub");
    http_respond_json(ex, 202, doc);
}

static const struct http_route_ops me_ops = {.route_class = "media", .on_head = me_on_head};
static const struct http_route_ops usage_ops = {.route_class = "media", .on_head = usage_on_head};
static const struct http_route_ops scrub_get_ops = {.route_class = "jobs",
                                                    .on_head = scrub_get_on_head};
static const struct http_route_ops scrub_post_ops = {.route_class = "jobs",
                                                     .on_head = scrub_post_on_head};

void api_admin_register_routes(void)
{
    router_add("GET", "/v1/me", true, &me_ops);
    router_add("GET", "/v1/admin/usage", true, &usage_ops);
    router_add("GET", "/v1/admin/scrub", true, &scrub_get_ops);
    router_add("POST", "/v1/admin/scrub", true, &scrub_post_ops);
}

/* api_shares.c - sharing that can be taken back (routes.h, docs/API.md
 * "Sharing"):
 *
 *   POST   /v1/media/{id}/shares         share one file {"user":"bob"}
 *   GET    /v1/media/{id}/shares         who sees it (its own shares and
 *                                        the folder shares that cover it)
 *   DELETE /v1/media/{id}/shares/{user}  unshare
 *   POST   /v1/folders/shares            share a folder {"path","user"}
 *   GET    /v1/folders/shares[?path=]    the caller's folder shares
 *   DELETE /v1/folders/shares?path=&user=  unshare a folder
 *
 * The /v1/media/{id}/ routes arrive through api_media's sub-router
 * (api_shares_media_route). Only the owner may share, list shares or
 * unshare; anyone else gets 404, as if the media were absent.
 *
 * A folder share is a rule over the owner's tree (catalog_shares.h):
 * files added below the folder later are shared too, files moved out or
 * deleted are not, and one DELETE takes it all back.
 *
 * Threads: reads (the lists) use the loop thread's catalog connection;
 * writes run on the worker pool (http_defer) with that thread's own
 * connection. A pool work function touches only its struct share_req and
 * the immutable config.
 *
 * Ownership: struct share_req is the exchange's data from on_head until
 * on_done/on_abort, which free it.
 */
#include "routes.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "api_req.h"
#include "dripd/catalog.h"
#include "dripd/catalog_shares.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/log.h"
#include "dripd/path.h"
#include "dripd/router.h"
#include "dripd/util.h"

#define MEDIA_PREFIX "/v1/media/"
#define FOLDER_SHARES "/v1/folders/shares"

struct share_req {
    struct api_body body; /* first: api_body_append's convention (api_req.h) */
    char id[DR_ID_LEN + 1];
    char *user;   /* the caller */
    char *target; /* the user shared with */
    char *path;   /* folder shares: the folder */
    const struct dr_config *cfg;
    int rc;
    bool created;
};

static struct share_req *req_new(struct http_exchange *ex)
{
    struct share_req *r = xcalloc(1, sizeof *r);
    r->user = xstrdup(http_user(ex));
    r->cfg = http_cfg(ex);
    http_set_data(ex, r);
    return r;
}

static void req_finish(struct http_exchange *ex)
{
    struct share_req *r = http_get_data(ex);
    if (!r)
        return;
    http_set_data(ex, NULL);
    api_body_free(&r->body);
    free(r->user);
    free(r->target);
    free(r->path);
    free(r);
}

/* The media id of the request path, or false after answering 404. */
static bool media_id(struct http_exchange *ex, char id[DR_ID_LEN + 1], const char **rest)
{
    if (api_path_id(ex, MEDIA_PREFIX, id, rest))
        return true;
    http_respond_problem(ex, 404, "no such media");
    return false;
}

/* A known user to share with, or false after answering 400. The config
 * is the truth; the catalog learns its users at start-up and reload, so a
 * user it does not know yet is synced first (pool thread). */
static int known_user(struct catalog *cat, const struct dr_config *cfg, const char *user)
{
    if (config_find_user(cfg, user) == NULL)
        return -ESRCH;
    return catalog_sync_users(cat, cfg);
}

static void respond_user_error(struct http_exchange *ex, const char *user)
{
    http_respond_problem(ex, 400, "unknown user \"%s\"", user);
}

/* ------------------------------------------------------------------ */
/* POST /v1/media/{id}/shares  {"user": "bob"}                         */

static void share_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    const char *rest;
    if (!media_id(ex, id, &rest))
        return;
    struct share_req *r = req_new(ex);
    memcpy(r->id, id, sizeof r->id);
    api_body_start(ex);
}

/* Does media id have a share of its own with user? (A folder share that
 * covers it does not count: unsharing the folder would take it away.) */
static bool shared_alone(struct catalog *cat, const char *id, const char *owner, const char *user)
{
    struct dr_share *v = NULL;
    size_t n = 0;
    bool found = false;
    if (catalog_shares_list(cat, id, owner, &v, &n) == 0)
        for (size_t i = 0; i < n && !found; i++)
            found = v[i].folder == NULL && strcmp(v[i].user, user) == 0;
    catalog_shares_free(v, n);
    return found;
}

static void share_work(void *arg)
{
    struct share_req *r = arg;
    struct catalog *cat = http_work_catalog();
    if (!cat) {
        r->rc = -EAGAIN;
        return;
    }
    struct dr_media m = {0};
    r->rc = catalog_media_get(cat, r->id, r->user, &m);
    bool owner = r->rc == 0 && m.owner && strcmp(m.owner, r->user) == 0;
    dr_media_clear(&m);
    if (r->rc < 0)
        return;
    if (!owner) {
        r->rc = -ENOENT; /* visible through a share, but not theirs */
        return;
    }
    if (strcmp(r->target, r->user) == 0 || shared_alone(cat, r->id, r->user, r->target))
        return; /* the owner, or shared before: 200 */
    r->rc = known_user(cat, r->cfg, r->target);
    if (r->rc == 0)
        r->rc = catalog_media_share(cat, r->id, r->user, r->target);
    if (r->rc == -ENOENT)
        r->rc = -ESRCH; /* the owner was checked above: the user is unknown */
    r->created = r->rc == 0;
}

static void share_done(struct http_exchange *ex, void *arg)
{
    struct share_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such media of yours");
    } else if (r->rc == -ESRCH) {
        respond_user_error(ex, r->target);
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "share");
    } else {
        if (r->created)
            log_info("media %s shared with %s by %s", r->id, r->target, r->user);
        json_t *doc = json_object();
        json_object_set_new(doc, "media_id", json_string(r->id));
        json_object_set_new(doc, "user", json_string(r->target));
        json_object_set_new(doc, "created", json_boolean(r->created));
        http_respond_json(ex, r->created ? 201 : 200, doc);
    }
}

static void share_on_end(struct http_exchange *ex)
{
    struct share_req *r = http_get_data(ex);
    json_t *doc = api_body_object(ex, false);
    const char *u = doc ? api_json_string(ex, doc, "user") : NULL;
    if (u) {
        r->target = xstrdup(u);
        api_defer(ex, share_work, share_done, r);
    }
    json_decref(doc);
}

static const struct http_route_ops share_ops = {
    .route_class = "media",
    .on_head = share_on_head,
    .on_body = api_body_append,
    .on_end = share_on_end,
    .on_abort = req_finish,
    .on_done = req_finish,
};

/* ------------------------------------------------------------------ */
/* GET /v1/media/{id}/shares                                           */

static void list_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    const char *rest;
    if (!media_id(ex, id, &rest))
        return;
    struct catalog *cat = api_loop_catalog(ex);
    if (!cat)
        return;
    struct dr_share *v = NULL;
    size_t n = 0;
    int rc = catalog_shares_list(cat, id, http_user(ex), &v, &n);
    if (rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such media of yours");
        return;
    }
    if (rc < 0) {
        api_respond_catalog_error(ex, rc, "shares");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "user", json_string(v[i].user));
        json_object_set_new(o, "via", json_string(v[i].folder ? "folder" : "file"));
        json_object_set_new(o, "folder", api_str_or_null(v[i].folder));
        json_object_set_new(o, "created_at", api_time_or_null(v[i].created_at));
        json_array_append_new(arr, o);
    }
    catalog_shares_free(v, n);
    json_t *doc = json_object();
    json_object_set_new(doc, "media_id", json_string(id));
    json_object_set_new(doc, "shares", arr);
    http_respond_json(ex, 200, doc);
}

static const struct http_route_ops list_ops = {
    .route_class = "media",
    .on_head = list_on_head,
};

/* ------------------------------------------------------------------ */
/* DELETE /v1/media/{id}/shares/{user}                                 */

static void unshare_work(void *arg)
{
    struct share_req *r = arg;
    struct catalog *cat = http_work_catalog();
    r->rc = cat ? catalog_media_unshare(cat, r->id, r->user, r->target) : -EAGAIN;
}

static void unshare_done(struct http_exchange *ex, void *arg)
{
    struct share_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such media of yours");
    } else if (r->rc == -ESRCH) {
        http_respond_problem(ex, 404, "media %s is not shared with \"%s\" on its own", r->id,
                             r->target);
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "unshare");
    } else {
        log_info("media %s no longer shared with %s by %s", r->id, r->target, r->user);
        http_respond(ex, 204, NULL, NULL, 0);
    }
}

static void unshare_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    const char *rest;
    if (!media_id(ex, id, &rest))
        return;
    const char *user = rest + strlen("shares/");
    if (user[0] == '\0' || strchr(user, '/') != NULL) {
        http_respond_problem(ex, 404, "no such share");
        return;
    }
    struct share_req *r = req_new(ex);
    memcpy(r->id, id, sizeof r->id);
    r->target = xstrdup(user);
    api_defer(ex, unshare_work, unshare_done, r);
}

static const struct http_route_ops unshare_ops = {
    .route_class = "media",
    .on_head = unshare_on_head,
    .on_abort = req_finish,
    .on_done = req_finish,
};

const struct http_route_ops *api_shares_media_route(int method, const char *rest)
{
    if (strcmp(rest, "shares") == 0) {
        if (method == HTTP_POST)
            return &share_ops;
        if (method == HTTP_GET || method == HTTP_HEAD)
            return &list_ops;
        return NULL;
    }
    return method == HTTP_DELETE ? &unshare_ops : NULL;
}

/* ------------------------------------------------------------------ */
/* POST /v1/folders/shares  {"path": "/photos", "user": "bob"}         */

static void folder_share_on_head(struct http_exchange *ex)
{
    req_new(ex);
    api_body_start(ex);
}

static void folder_share_work(void *arg)
{
    struct share_req *r = arg;
    struct catalog *cat = http_work_catalog();
    if (!cat) {
        r->rc = -EAGAIN;
        return;
    }
    r->rc = strcmp(r->target, r->user) == 0 ? -EINVAL : known_user(cat, r->cfg, r->target);
    if (r->rc == 0)
        r->rc = catalog_folder_share(cat, r->user, r->path, r->target, &r->created);
}

static void folder_share_done(struct http_exchange *ex, void *arg)
{
    struct share_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "you have no folder %s", r->path);
    } else if (r->rc == -ESRCH) {
        respond_user_error(ex, r->target);
    } else if (r->rc == -EINVAL) {
        http_respond_problem(ex, 400, "you cannot share with yourself");
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "folder share");
    } else {
        if (r->created)
            log_info("folder %s of %s shared with %s", r->path, r->user, r->target);
        json_t *doc = json_object();
        json_object_set_new(doc, "path", json_string(r->path));
        json_object_set_new(doc, "user", json_string(r->target));
        json_object_set_new(doc, "created", json_boolean(r->created));
        http_respond_json(ex, r->created ? 201 : 200, doc);
    }
}

static void folder_share_on_end(struct http_exchange *ex)
{
    struct share_req *r = http_get_data(ex);
    json_t *doc = api_body_object(ex, false);
    const char *p = doc ? api_json_string(ex, doc, "path") : NULL;
    const char *u = p ? api_json_string(ex, doc, "user") : NULL;
    char err[DR_ERRLEN];
    if (u && path_normalize_folder(p, &r->path, err, sizeof err) < 0) {
        http_respond_problem(ex, 400, "bad path: %s", err);
    } else if (u) {
        r->target = xstrdup(u);
        api_defer(ex, folder_share_work, folder_share_done, r);
    }
    json_decref(doc);
}

static const struct http_route_ops folder_share_ops = {
    .route_class = "media",
    .on_head = folder_share_on_head,
    .on_body = api_body_append,
    .on_end = folder_share_on_end,
    .on_abort = req_finish,
    .on_done = req_finish,
};

/* ------------------------------------------------------------------ */
/* GET /v1/folders/shares[?path=/x]                                    */

/* The folder of query parameter "path": NULL when absent and optional;
 * false after answering 400. */
static bool query_folder(struct http_exchange *ex, bool required, char **out)
{
    *out = NULL;
    const char *v = http_query_param(ex, "path");
    char err[DR_ERRLEN];
    if (v == NULL && (required || api_query_has(ex, "path"))) {
        http_respond_problem(ex, 400, "bad path: %s",
                             api_query_has(ex, "path") ? "not decodable" : "missing");
        return false;
    }
    if (v != NULL && path_normalize_folder(v, out, err, sizeof err) < 0) {
        http_respond_problem(ex, 400, "bad path: %s", err);
        return false;
    }
    return true;
}

static void folder_list_on_head(struct http_exchange *ex)
{
    char *path;
    if (!query_folder(ex, false, &path))
        return;
    struct catalog *cat = api_loop_catalog(ex);
    struct dr_folder_share *v = NULL;
    size_t n = 0;
    int rc = cat ? catalog_folder_shares_list(cat, http_user(ex), path, &v, &n) : 0;
    free(path);
    if (!cat)
        return;
    if (rc < 0) {
        api_respond_catalog_error(ex, rc, "folder shares");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "path", json_string(v[i].path));
        json_object_set_new(o, "user", json_string(v[i].user));
        json_object_set_new(o, "created_at", api_time_or_null(v[i].created_at));
        json_array_append_new(arr, o);
    }
    catalog_folder_shares_free(v, n);
    json_t *doc = json_object();
    json_object_set_new(doc, "shares", arr);
    http_respond_json(ex, 200, doc);
}

/* ------------------------------------------------------------------ */
/* DELETE /v1/folders/shares?path=/x&user=bob                          */

static void folder_unshare_work(void *arg)
{
    struct share_req *r = arg;
    struct catalog *cat = http_work_catalog();
    r->rc = cat ? catalog_folder_unshare(cat, r->user, r->path, r->target) : -EAGAIN;
}

static void folder_unshare_done(struct http_exchange *ex, void *arg)
{
    struct share_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "folder %s is not shared with \"%s\"", r->path, r->target);
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "folder unshare");
    } else {
        log_info("folder %s of %s no longer shared with %s", r->path, r->user, r->target);
        http_respond(ex, 204, NULL, NULL, 0);
    }
}

static void folder_unshare_on_head(struct http_exchange *ex)
{
    char *path;
    if (!query_folder(ex, true, &path))
        return;
    const char *user = http_query_param(ex, "user");
    if (user == NULL || user[0] == '\0') {
        free(path);
        http_respond_problem(ex, 400, "bad user: missing");
        return;
    }
    struct share_req *r = req_new(ex);
    r->path = path;
    r->target = xstrdup(user);
    api_defer(ex, folder_unshare_work, folder_unshare_done, r);
}

static void folder_shares_on_head(struct http_exchange *ex)
{
    int m = http_req(ex)->method;
    if (m == HTTP_GET || m == HTTP_HEAD) {
        folder_list_on_head(ex);
    } else if (m == HTTP_DELETE) {
        folder_unshare_on_head(ex);
    } else {
        http_add_header(ex, "Allow", "GET, HEAD, POST, DELETE");
        http_respond_problem(ex, 405, "%s is not allowed here", http_req(ex)->method_name);
    }
}

static const struct http_route_ops folder_shares_ops = {
    .route_class = "media",
    .on_head = folder_shares_on_head,
    .on_abort = req_finish,
    .on_done = req_finish,
};

static const struct http_route_ops *folder_shares_pick(const struct http_exchange *ex)
{
    return http_req(ex)->method == HTTP_POST ? &folder_share_ops : &folder_shares_ops;
}

static const struct http_route_ops folder_shares_route = {
    .route_class = "media",
    .pick = folder_shares_pick,
};

void api_shares_register_routes(void)
{
    router_add("*", FOLDER_SHARES, true, &folder_shares_route);
}

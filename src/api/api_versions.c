/* api_versions.c - earlier versions and the trash (routes.h, docs/API.md
 * "Versions and the trash"; catalog_versions.h).
 *
 *   GET  /v1/media/{id}/versions               the file's versions (reached through api_media)
 *   POST /v1/media/{id}/versions/{n}/restore   version n becomes the file again
 *   GET  /v1/trash                             the caller's trash
 *   POST /v1/trash/{id}/restore                back to its path (409 when taken)
 *
 * DELETE /v1/media/{id} moves a file into the trash when trash.ttl is set
 * (api_media.c calls api_versions_trash); deleting what is in the trash
 * deletes it for good.
 *
 * Threads: reads on the loop thread with its catalog connection; the
 * restores (writes) on the worker pool (api_defer) with that thread's
 * connection, as api_media.c does. struct ver_req is the exchange's data
 * from on_head until on_done/on_abort.
 */
#include "routes.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api_req.h"
#include "dripd/catalog.h"
#include "dripd/catalog_versions.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/log.h"
#include "dripd/router.h"
#include "dripd/util.h"

#include <http_parser.h>

#define MEDIA_PREFIX "/v1/media/"
#define TRASH "/v1/trash"
#define TRASH_PREFIX "/v1/trash/"
#define VERSION_MAX 1000000000000LL

struct ver_req {
    char id[DR_ID_LEN + 1];
    char *user;
    const struct dr_config *cfg;
    int64_t n; /* the version to restore */
    int rc;
    int clash;
    struct dr_media m;
};

static struct ver_req *req_new(struct http_exchange *ex, const char *id)
{
    struct ver_req *r = xcalloc(1, sizeof *r);
    snprintf(r->id, sizeof r->id, "%s", id);
    r->user = xstrdup(http_user(ex));
    r->cfg = http_cfg(ex);
    http_set_data(ex, r);
    return r;
}

static void req_finish(struct http_exchange *ex)
{
    struct ver_req *r = http_get_data(ex);
    if (r == NULL)
        return;
    http_set_data(ex, NULL);
    free(r->user);
    dr_media_clear(&r->m);
    free(r);
}

/* {"<key>": [media...]}; the trash's entries with "expires_at". */
static json_t *media_list_json(const char *key, const struct dr_media *v, size_t n,
                               const char *user, uint64_t ttl)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = api_media_json(&v[i], user);
        if (ttl > 0 && strcmp(v[i].retired, "trash") == 0)
            json_object_set_new(o, "expires_at", api_time_or_null(v[i].retired_at + (int64_t)ttl));
        json_array_append_new(arr, o);
    }
    json_t *doc = json_object();
    json_object_set_new(doc, key, arr);
    return doc;
}

/* ------------------------------------------------------------------ */
/* GET /v1/media/{id}/versions                                         */

static void list_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    const char *rest;
    if (!api_path_id(ex, MEDIA_PREFIX, id, &rest)) {
        http_respond_problem(ex, 404, "no such media");
        return;
    }
    struct catalog *cat = api_loop_catalog(ex);
    if (!cat)
        return;
    struct dr_media *v = NULL;
    size_t n = 0;
    int rc = catalog_versions_list(cat, id, http_user(ex), &v, &n);
    if (rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such media of yours");
        return;
    }
    if (rc < 0) {
        api_respond_catalog_error(ex, rc, "versions");
        return;
    }
    json_t *doc = media_list_json("versions", v, n, http_user(ex), http_cfg(ex)->trash.ttl);
    json_object_set_new(doc, "keep", json_integer(http_cfg(ex)->versions.keep));
    catalog_media_list_free(v, n, NULL, 0);
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond_json(ex, 200, doc);
}

static const struct http_route_ops list_ops = {
    .route_class = "media",
    .on_head = list_on_head,
};

/* ------------------------------------------------------------------ */
/* POST /v1/media/{id}/versions/{n}/restore                            */

static void restore_version_work(void *arg)
{
    struct ver_req *r = arg;
    struct catalog *cat = http_work_catalog();
    r->rc = cat ? catalog_version_restore(cat, r->id, r->user, r->n, r->cfg->versions.keep, &r->m)
                : -EAGAIN;
}

static void restore_done(struct http_exchange *ex, void *arg)
{
    struct ver_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT && r->n > 0) {
        http_respond_problem(ex, 404, "no such version %lld of your file", (long long)r->n);
    } else if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such file in your trash");
    } else if (r->rc == -ESRCH) {
        http_respond_problem(ex, 409, "the file is in the trash: restore it first");
    } else if (r->rc == -EEXIST) {
        http_respond_problem(ex, 409, "%s %s", r->m.path ? r->m.path : "its path",
                             catalog_path_clash_text(r->clash > 0 ? r->clash : DR_PATH_FILE));
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "restore");
    } else {
        log_info("media %s restored by %s (version %lld of %s)", r->m.id, r->user,
                 (long long)r->m.version, r->m.path);
        http_respond_json(ex, 200, api_media_json(&r->m, r->user));
    }
}

/* "versions/<n>/restore" -> n, or 0. */
static int64_t restore_version_n(const char *rest)
{
    const char *p = rest + strlen("versions/");
    char *end = NULL;
    if (*p < '1' || *p > '9')
        return 0;
    long long n = strtoll(p, &end, 10);
    if (end == NULL || strcmp(end, "/restore") != 0 || n <= 0 || n > VERSION_MAX)
        return 0;
    return n;
}

static void restore_version_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    const char *rest;
    int64_t n = 0;
    if (api_path_id(ex, MEDIA_PREFIX, id, &rest))
        n = restore_version_n(rest);
    if (n == 0) {
        http_respond_problem(ex, 404, "no such resource: want /v1/media/{id}/versions/{n}/restore");
        return;
    }
    struct ver_req *r = req_new(ex, id);
    r->n = n;
    api_defer(ex, restore_version_work, restore_done, r);
}

static const struct http_route_ops restore_version_ops = {
    .route_class = "media",
    .on_head = restore_version_on_head,
    .on_abort = req_finish,
    .on_done = req_finish,
};

const struct http_route_ops *api_versions_media_route(int method, const char *rest)
{
    if (strcmp(rest, "versions") == 0)
        return method == HTTP_GET || method == HTTP_HEAD ? &list_ops : NULL;
    return method == HTTP_POST ? &restore_version_ops : NULL;
}

/* ------------------------------------------------------------------ */
/* GET /v1/trash                                                       */

static void trash_on_head(struct http_exchange *ex)
{
    struct catalog *cat = api_loop_catalog(ex);
    if (!cat)
        return;
    struct dr_media *v = NULL;
    size_t n = 0;
    int rc = catalog_trash_list(cat, http_user(ex), &v, &n);
    if (rc < 0) {
        api_respond_catalog_error(ex, rc == -ENOENT ? -EIO : rc, "trash");
        return;
    }
    const struct dr_config *cfg = http_cfg(ex);
    json_t *doc = media_list_json("files", v, n, http_user(ex), cfg->trash.ttl);
    json_object_set_new(doc, "ttl_seconds", json_integer((json_int_t)(cfg->trash.ttl / 1000)));
    catalog_media_list_free(v, n, NULL, 0);
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond_json(ex, 200, doc);
}

static const struct http_route_ops trash_ops = {
    .route_class = "media",
    .on_head = trash_on_head,
};

/* ------------------------------------------------------------------ */
/* POST /v1/trash/{id}/restore                                         */

static void untrash_work(void *arg)
{
    struct ver_req *r = arg;
    struct catalog *cat = http_work_catalog();
    if (!cat) {
        r->rc = -EAGAIN;
        return;
    }
    r->rc = catalog_trash_restore(cat, r->id, r->user, &r->clash, &r->m);
    if (r->rc == 0)
        api_trash_marks(r->cfg, (const char(*)[DR_ID_LEN + 1]) & r->id, 1, false, 0);
    if (r->rc == -EEXIST) /* for the message: the path it wants */
        (void)catalog_media_get(cat, r->id, r->user, &r->m);
}

static void untrash_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    const char *rest;
    if (!api_path_id(ex, TRASH_PREFIX, id, &rest) || strcmp(rest, "restore") != 0) {
        http_respond_problem(ex, 404, "no such resource: want /v1/trash/{id}/restore");
        return;
    }
    if (http_req(ex)->method != HTTP_POST) {
        http_add_header(ex, "Allow", "POST");
        http_respond_problem(ex, 405, "%s is not allowed here", http_req(ex)->method_name);
        return;
    }
    api_defer(ex, untrash_work, restore_done, req_new(ex, id));
}

static const struct http_route_ops untrash_ops = {
    .route_class = "media",
    .on_head = untrash_on_head,
    .on_abort = req_finish,
    .on_done = req_finish,
};

void api_versions_register_routes(void)
{
    router_add("GET", TRASH, true, &trash_ops);
    router_add("*", TRASH_PREFIX, true, &untrash_ops);
}

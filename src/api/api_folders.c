/* api_folders.c - folders as first-class (routes.h, docs/API.md
 * "Folders"):
 *
 *   POST   /v1/folders  {"path": "/a/b"}             make a folder (empty)
 *   PATCH  /v1/folders  {"from": "/a", "to": "/b"}   move/rename it, with all
 *                                                    in it ("/x/" = into /x)
 *   DELETE /v1/folders?path=/a                        delete it, with all in it
 *
 * What: the routes over catalog_folders.h. A move is one catalog
 * transaction (ids do not change, so nothing else moves); a delete is one
 * transaction for the rows, then, on the same pool thread, store_forget()
 * removes each deleted media's objects and cache entries, as DELETE
 * /v1/media/{id} does, before the answer. A store failure after the rows
 * are gone leaves an orphan for scrub and is still a success: the rows are
 * the truth. With trash.ttl > 0 a delete moves the folder's files to the
 * trash instead (catalog_folder_trash, one transaction; nothing leaves the
 * store), as a file's delete does; each comes back with its restore.
 *
 * Threads: handlers on the loop thread; every catalog write and the store
 * deletes on the worker pool (http_defer), with that pool thread's own
 * catalog connection and store handle. A pool work function touches only
 * its struct folder_req and the immutable config.
 *
 * Ownership: struct folder_req is the exchange's data from on_head until
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
#include "dripd/catalog_folders.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/log.h"
#include "dripd/path.h"
#include "dripd/router.h"
#include "dripd/store.h"
#include "dripd/util.h"

#define FOLDERS "/v1/folders"

struct folder_req {
    struct api_body body; /* first: api_body_append's convention (api_req.h) */
    char *user;
    const struct dr_config *cfg;
    char *path; /* create, delete: the folder; move: from */
    char *to;   /* move: the new path */
    int rc;
    int clash;
    bool created;
    bool trashed; /* delete: into the trash (trash.ttl > 0) */
    uint64_t files;
};

static void req_finish(struct http_exchange *ex)
{
    struct folder_req *r = http_get_data(ex);
    if (!r)
        return;
    http_set_data(ex, NULL);
    api_body_free(&r->body);
    free(r->user);
    free(r->path);
    free(r->to);
    free(r);
}

static struct folder_req *req_new(struct http_exchange *ex)
{
    struct folder_req *r = xcalloc(1, sizeof *r);
    r->user = xstrdup(http_user(ex));
    r->cfg = http_cfg(ex);
    http_set_data(ex, r);
    return r;
}

/* A folder path from a JSON member or query value into *out, not the
 * root; false after answering 400. */
static bool folder_arg(struct http_exchange *ex, const char *name, const char *v, char **out)
{
    char err[DR_ERRLEN];
    if (path_normalize_folder(v, out, err, sizeof err) < 0) {
        http_respond_problem(ex, 400, "bad %s: %s", name, err);
        return false;
    }
    if (strcmp(*out, "/") == 0) {
        http_respond_problem(ex, 400, "bad %s: not the root folder", name);
        free(*out);
        *out = NULL;
        return false;
    }
    return true;
}

static void respond_clash(struct http_exchange *ex, const char *path, int clash)
{
    http_respond_problem(ex, 409, "%s %s", path,
                         catalog_path_clash_text(clash > 0 ? clash : DR_PATH_FILE));
}

/* ------------------------------------------------------------------ */
/* POST /v1/folders  {"path": "/a/b"}                                  */

static void create_work(void *arg)
{
    struct folder_req *r = arg;
    struct catalog *cat = http_work_catalog();
    r->rc = cat ? catalog_folder_create(cat, r->user, r->path, &r->created, &r->clash) : -EAGAIN;
}

static void create_done(struct http_exchange *ex, void *arg)
{
    struct folder_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -EEXIST) {
        respond_clash(ex, r->path, r->clash);
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "folder create");
    } else {
        if (r->created)
            log_info("folder %s made by %s", r->path, r->user);
        json_t *doc = json_object();
        json_object_set_new(doc, "path", json_string(r->path));
        json_object_set_new(doc, "created", json_boolean(r->created));
        http_respond_json(ex, r->created ? 201 : 200, doc);
    }
}

static void create_on_end(struct http_exchange *ex)
{
    struct folder_req *r = http_get_data(ex);
    json_t *doc = api_body_object(ex, false);
    const char *p = doc ? api_json_string(ex, doc, "path") : NULL;
    if (p && folder_arg(ex, "path", p, &r->path))
        api_defer(ex, create_work, create_done, r);
    json_decref(doc);
}

/* ------------------------------------------------------------------ */
/* PATCH /v1/folders  {"from": "/a", "to": "/b"}                        */

static void move_work(void *arg)
{
    struct folder_req *r = arg;
    struct catalog *cat = http_work_catalog();
    r->rc = cat ? catalog_folder_move(cat, r->user, r->path, r->to, &r->files, &r->clash) : -EAGAIN;
}

static void move_done(struct http_exchange *ex, void *arg)
{
    struct folder_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "you have no folder %s", r->path);
    } else if (r->rc == -EEXIST) {
        respond_clash(ex, r->to, r->clash);
    } else if (r->rc == -EINVAL) {
        http_respond_problem(ex, 400, "cannot move %s into itself (%s)", r->path, r->to);
    } else if (r->rc == -ENAMETOOLONG) {
        http_respond_problem(ex, 400, "moving %s to %s would make a path longer than %d bytes",
                             r->path, r->to, DR_PATH_MAX);
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "folder move");
    } else {
        log_info("folder %s of %s moved to %s (%llu files)", r->path, r->user, r->to,
                 (unsigned long long)r->files);
        json_t *doc = json_object();
        json_object_set_new(doc, "from", json_string(r->path));
        json_object_set_new(doc, "to", json_string(r->to));
        json_object_set_new(doc, "files", json_integer((json_int_t)r->files));
        http_respond_json(ex, 200, doc);
    }
}

static void move_on_end(struct http_exchange *ex)
{
    struct folder_req *r = http_get_data(ex);
    json_t *doc = api_body_object(ex, false);
    const char *from = doc ? api_json_string(ex, doc, "from") : NULL;
    const char *to = from ? api_json_string(ex, doc, "to") : NULL;
    if (to && folder_arg(ex, "from", from, &r->path)) {
        /* "/archive/" (or "/") names a folder to move into, keeping the
         * name, as mv(1) does; anything else is the new path. */
        size_t tl = strlen(to);
        char err[DR_ERRLEN], *dest = NULL;
        if (tl > 0 && to[tl - 1] == '/') {
            if (path_normalize_folder(to, &dest, err, sizeof err) < 0) {
                http_respond_problem(ex, 400, "bad to: %s", err);
            } else {
                const char *name = strrchr(r->path, '/') + 1;
                r->to = xasprintf("%s/%s", strcmp(dest, "/") == 0 ? "" : dest, name);
                free(dest);
            }
        } else if (folder_arg(ex, "to", to, &dest)) {
            r->to = dest;
        }
        if (r->to && strlen(r->to) > DR_PATH_MAX) {
            http_respond_problem(ex, 400, "bad to: longer than %d bytes", DR_PATH_MAX);
        } else if (r->to) {
            api_defer(ex, move_work, move_done, r);
        }
    }
    json_decref(doc);
}

/* ------------------------------------------------------------------ */
/* DELETE /v1/folders?path=/a                                          */

static void delete_work(void *arg)
{
    struct folder_req *r = arg;
    struct catalog *cat = http_work_catalog();
    if (!cat) {
        r->rc = -EAGAIN;
        return;
    }
    struct dr_gone *g = NULL;
    size_t n = 0;
    if (r->cfg->trash.ttl > 0) { /* into the trash, like one file's delete */
        char(*ids)[DR_ID_LEN + 1] = NULL;
        int64_t now = dr_now_ms();
        r->rc = catalog_folder_trash(cat, r->user, r->path, now, &ids, &n);
        r->files = n;
        r->trashed = true;
        if (r->rc == 0) {
            api_trash_marks(r->cfg, (const char(*)[DR_ID_LEN + 1]) ids, n, true, now);
            log_info("folder %s of %s moved to the trash: %zu files", r->path, r->user, n);
        }
        free(ids);
        return;
    }
    r->rc = catalog_folder_delete(cat, r->user, r->path, &g, &n);
    if (r->rc < 0)
        return;
    r->files = n;
    /* The rows are gone: from here on, failures leave garbage, never a lie. */
    char err[DR_ERRLEN] = "";
    struct dr_store *st = api_pool_store(r->cfg, err, sizeof err);
    size_t left = 0;
    for (size_t i = 0; i < n; i++) {
        if (st != NULL)
            left += (size_t)store_forget(st, r->cfg->data_dir, g[i].id, g[i].storage_key,
                                         g[i].variant_names, g[i].variant_keys, g[i].n_variants);
        else
            left += (g[i].storage_key != NULL) + g[i].n_variants;
    }
    if (st == NULL && n > 0)
        log_warn("folder %s: no store to delete its objects from (%s); they are orphans", r->path,
                 err);
    log_info("folder %s of %s deleted: %zu files%s", r->path, r->user, n,
             left ? " (some objects left for scrub)" : "");
    catalog_gone_free(g, n);
}

static void delete_done(struct http_exchange *ex, void *arg)
{
    struct folder_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "you have no folder %s", r->path);
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "folder delete");
    } else {
        json_t *doc = json_object();
        json_object_set_new(doc, "path", json_string(r->path));
        json_object_set_new(doc, "files", json_integer((json_int_t)r->files));
        json_object_set_new(doc, "trash", json_boolean(r->trashed));
        http_respond_json(ex, 200, doc);
    }
}

static void delete_on_head(struct http_exchange *ex)
{
    const char *v = http_query_param(ex, "path");
    if (v == NULL) {
        http_respond_problem(ex, 400, "bad path: %s",
                             api_query_has(ex, "path") ? "not decodable" : "missing");
        return;
    }
    char *path;
    if (!folder_arg(ex, "path", v, &path))
        return;
    struct folder_req *r = req_new(ex);
    r->path = path;
    api_defer(ex, delete_work, delete_done, r);
}

/* ------------------------------------------------------------------ */

static void body_on_head(struct http_exchange *ex)
{
    req_new(ex);
    api_body_start(ex);
}

static const struct http_route_ops create_ops = {
    .route_class = "media",
    .on_head = body_on_head,
    .on_body = api_body_append,
    .on_end = create_on_end,
    .on_abort = req_finish,
    .on_done = req_finish,
};

static const struct http_route_ops move_ops = {
    .route_class = "media",
    .on_head = body_on_head,
    .on_body = api_body_append,
    .on_end = move_on_end,
    .on_abort = req_finish,
    .on_done = req_finish,
};

static const struct http_route_ops delete_ops = {
    .route_class = "media",
    .on_head = delete_on_head,
    .on_abort = req_finish,
    .on_done = req_finish,
};

static void method_on_head(struct http_exchange *ex)
{
    http_add_header(ex, "Allow", "POST, PATCH, DELETE");
    http_respond_problem(ex, 405, "%s is not allowed here", http_req(ex)->method_name);
}

static const struct http_route_ops method_ops = {
    .route_class = "media",
    .on_head = method_on_head,
};

static const struct http_route_ops *folders_pick(const struct http_exchange *ex)
{
    switch (http_req(ex)->method) {
    case HTTP_POST:
        return &create_ops;
    case HTTP_PATCH:
        return &move_ops;
    case HTTP_DELETE:
        return &delete_ops;
    default:
        return &method_ops;
    }
}

static const struct http_route_ops folders_route = {
    .route_class = "media",
    .pick = folders_pick,
};

void api_folders_register_routes(void)
{
    router_add("*", FOLDERS, true, &folders_route);
}

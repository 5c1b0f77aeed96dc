/* api_media.c - the media and jobs routes (routes.h, docs/API.md).
 *
 *   GET    /v1/media?folder=/x          folder listing
 *   GET    /v1/media/{id}               one media
 *   PATCH  /v1/media/{id}               move/rename {"path":"/new/name.ext"};
 *                                       {"path":"/folder/"} moves in, keeping the name
 *   DELETE /v1/media/{id}               delete row, cache entry and object
 *   POST   /v1/media/{id}/download      warm the cache (download job)
 *   POST   /v1/media/{id}/link          a signed content URL (link.h)
 *   GET    /v1/media/{id}/content       handed to api_content.c
 *   .../shares, .../shares/{user}       handed to api_shares.c
 *   .../versions, .../versions/{n}/restore  handed to api_versions.c
 *   POST   /v1/media/{id}/public-links  handed to api_links.c
 *   GET    /v1/jobs/{id}                one job
 *
 * What: folder listing, get, move/rename, delete, download warm-up, signed
 * links and job status. The other sub-resources of /v1/media/{id} belong
 * to their modules; this file only routes them there, because the router
 * matches prefixes, not mid-path parameters: one "*" route on
 * "/v1/media/" picks the sub-route from the path and method once per
 * exchange (media_pick(), http_route_ops.pick).
 *
 * Threads: handlers run on the connection's event-loop thread. Reads
 * (get, list, job) use the loop thread's catalog connection: SQLite WAL
 * readers never wait for writers. Every write (move, delete, share,
 * enqueue) runs on the server's worker pool (http_defer) with that pool
 * thread's own catalog connection, because a writer may wait up to the
 * busy timeout. The pool work functions only touch their struct media_req
 * and the immutable config.
 *
 * DELETE: with trash.ttl set, a file that holds its path only moves into
 * the trash (catalog_media_trash: nothing else changes, api_versions.c
 * restores it); otherwise (no trash, or what is deleted is in the trash
 * already, or an earlier version) it goes for good:
 * the catalog row (and its shares) goes first, in one commit;
 * then, still on the pool thread, store_forget() removes the node's cache
 * entries and deletes the objects (the original's and its variants')
 * through the pool thread's store handle (api_pool_store). A store
 * failure after the row is gone is logged and still answered 204: the
 * row is the truth, and the leftover object is an orphan that scrub
 * reports. Only this node's cache entry is removed; other nodes' entries
 * expire by cache.ttl and can never be served again, since the row is gone.
 *
 * Ownership: struct media_req is the exchange's data from on_head until
 * on_done/on_abort, which free it; a pending http_defer never outlives it
 * (the server holds on_abort until the done callback ran).
 */
#include "routes.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api_req.h"
#include "dripd/catalog.h"
#include "dripd/catalog_variants.h"
#include "dripd/catalog_versions.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/id.h"
#include "link.h"
#include "dripd/log.h"
#include "dripd/path.h"
#include "dripd/redact.h"
#include "dripd/router.h"
#include "dripd/store.h"
#include "dripd/util.h"
#include "dripd/worker.h"

#include <http_parser.h>

#define MEDIA_PREFIX "/v1/media/"
#define JOBS_PREFIX "/v1/jobs/"

/* ------------------------------------------------------------------ */
/* JSON views                                                          */

/* GET /v1/media/{id}'s variants, added to o: "variants"
 * ([{"name","content_type","width","height","size","state"}],
 * a failed one with its "error"; while an upload that goes through the
 * process stage runs, the configured variants not made yet are
 * "pending"). */
static void add_variants(json_t *o, struct catalog *cat, const struct dr_media *m,
                         const char *viewer, const struct dr_config *cfg)
{
    struct dr_variant *v = NULL;
    size_t n = 0;
    json_t *arr = json_array();
    if (catalog_variants_list(cat, m->id, viewer, &v, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            json_t *jv = json_object();
            bool ok = strcmp(v[i].state, "available") == 0;
            json_object_set_new(jv, "name", json_string(v[i].name));
            json_object_set_new(jv, "content_type", api_str_or_null(v[i].content_type));
            json_object_set_new(jv, "width", ok ? json_integer(v[i].width) : json_null());
            json_object_set_new(jv, "height", ok ? json_integer(v[i].height) : json_null());
            json_object_set_new(jv, "size", ok ? json_integer((json_int_t)v[i].size) : json_null());
            json_object_set_new(jv, "state", json_string(v[i].state));
            if (!ok)
                json_object_set_new(jv, "error", api_str_or_null(v[i].error));
            json_array_append_new(arr, jv);
        }
    }
    /* pending: queued and not processed yet (metadata is set at intake for
     * uploads that skip processing, by the process stage for the others) */
    bool queued = m->state && strcmp(m->state, "queued") == 0 && m->metadata == NULL;
    for (size_t k = 0; queued && cfg->processing.enabled && k < cfg->processing.n_variants; k++) {
        const struct dr_variant_cfg *vc = &cfg->processing.variants[k];
        bool have = false;
        for (size_t i = 0; i < n && !have; i++)
            have = strcmp(v[i].name, vc->name) == 0;
        if (have)
            continue;
        json_t *jv = json_object();
        json_object_set_new(jv, "name", json_string(vc->name));
        json_object_set_new(jv, "content_type", json_null());
        json_object_set_new(jv, "width", json_null());
        json_object_set_new(jv, "height", json_null());
        json_object_set_new(jv, "size", json_null());
        json_object_set_new(jv, "state", json_string("pending"));
        json_array_append_new(arr, jv);
    }
    catalog_variants_free(v, n);
    json_object_set_new(o, "variants", arr);
}

/* A job as GET /v1/jobs/{id} shows it (new reference, caller owns):
 * {"id","kind","state","stage","media_id","attempts","error",
 *  "created_at","updated_at"}. The error names no server file (redact.h:
 * the log has the full text). */
static json_t *api_job_json(const struct dr_job *j, const struct dr_config *cfg)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(j->id));
    json_object_set_new(o, "kind", json_string(j->kind));
    json_object_set_new(o, "state", json_string(j->state));
    json_object_set_new(o, "stage", api_str_or_null(j->stage));
    json_object_set_new(o, "media_id", api_str_or_null(j->media_id));
    json_object_set_new(o, "attempts", json_integer(j->attempts));
    char *error = redact_server_paths(j->error, cfg);
    json_object_set_new(o, "error", api_str_or_null(error));
    free(error);
    json_object_set_new(o, "created_at", api_time_or_null(j->created_at));
    json_object_set_new(o, "updated_at", api_time_or_null(j->updated_at));
    return o;
}

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

/* The id in "/v1/media/<id>[/<rest>]"; *rest is "" or the part after the
 * id's slash. False if the path has no well-formed id. */
static bool media_path_id(const struct http_exchange *ex, char id[DR_ID_LEN + 1], const char **rest)
{
    return api_path_id(ex, MEDIA_PREFIX, id, rest);
}

/* The id of /v1/media/{id}[/...]; false after answering 404. */
static bool media_id_or_404(struct http_exchange *ex, char id[DR_ID_LEN + 1])
{
    const char *rest;
    if (media_path_id(ex, id, &rest))
        return true;
    http_respond_problem(ex, 404, "no such media");
    return false;
}

/* ------------------------------------------------------------------ */
/* per-request state                                                   */

struct media_req {
    struct api_body body; /* first: api_body_append's convention (api_req.h) */
    char id[DR_ID_LEN + 1];
    char *user;                  /* copy of the caller's name */
    const struct dr_config *cfg; /* immutable, safe on the pool */
    /* work in/out (pool thread) */
    char *arg;        /* PATCH: new path (a folder when into_folder) */
    bool into_folder; /* PATCH: the path ended in '/': keep the name, as mv does */
    int clash;        /* PATCH: catalog_path_exists() of the new path */
    int rc;
    int status; /* link: expires_in */
    bool have_media, have_job;
    struct dr_media m;
    struct dr_job job;
};

static struct media_req *req_new(struct http_exchange *ex, const char *id)
{
    struct media_req *r = xcalloc(1, sizeof *r);
    if (id)
        snprintf(r->id, sizeof r->id, "%s", id);
    r->user = xstrdup(http_user(ex));
    r->cfg = http_cfg(ex);
    http_set_data(ex, r);
    return r;
}

static void req_free(struct http_exchange *ex)
{
    struct media_req *r = http_get_data(ex);
    if (!r)
        return;
    http_set_data(ex, NULL);
    free(r->user);
    api_body_free(&r->body);
    free(r->arg);
    dr_media_clear(&r->m);
    dr_job_clear(&r->job);
    free(r);
}

static void req_on_finish(struct http_exchange *ex)
{
    req_free(ex);
}

/* The body's string member `key`, or NULL after answering 400; *doc_out
 * holds the document it points into (caller decrefs). */
static const char *body_string(struct http_exchange *ex, const char *key, json_t **doc_out)
{
    json_t *doc = api_body_object(ex, false);
    if (!doc)
        return NULL;
    const char *v = api_json_string(ex, doc, key);
    if (!v) {
        json_decref(doc);
        return NULL;
    }
    *doc_out = doc;
    return v;
}

/* ------------------------------------------------------------------ */
/* GET /v1/media?folder=/x                                             */

static void list_on_head(struct http_exchange *ex)
{
    const char *folder_in = http_query_param(ex, "folder");
    char *folder = NULL, err[DR_ERRLEN];
    if (!folder_in && api_query_has(ex, "folder")) {
        http_respond_problem(ex, 400, "bad folder: not decodable");
        return;
    }
    if (path_normalize_folder(folder_in ? folder_in : "/", &folder, err, sizeof err) < 0) {
        http_respond_problem(ex, 400, "bad folder: %s", err);
        return;
    }
    struct catalog *cat = api_loop_catalog(ex);
    if (!cat) {
        free(folder);
        return;
    }
    struct dr_media *files = NULL;
    struct dr_folder_entry *folders = NULL;
    size_t nf = 0, nd = 0;
    const char *user = http_user(ex);
    int rc = catalog_media_list(cat, user, folder, &files, &nf, &folders, &nd);
    if (rc < 0) {
        free(folder);
        api_respond_catalog_error(ex, rc == -ENOENT ? -EIO : rc, "listing");
        return;
    }
    json_t *jfolders = json_array(), *jfiles = json_array();
    for (size_t i = 0; i < nd; i++) {
        char *sub = NULL;
        json_t *f = json_object();
        json_object_set_new(f, "name", json_string(folders[i].name));
        if (path_join(folder, folders[i].name, &sub, err, sizeof err) == 0)
            json_object_set_new(f, "path", json_string(sub));
        free(sub);
        json_object_set_new(f, "files", json_integer((json_int_t)folders[i].files));
        json_object_set_new(f, "size", json_integer((json_int_t)folders[i].size));
        json_array_append_new(jfolders, f);
    }
    for (size_t i = 0; i < nf; i++)
        json_array_append_new(jfiles, api_media_json(&files[i], user));
    catalog_media_list_free(files, nf, folders, nd);
    json_t *doc = json_object();
    json_object_set_new(doc, "folder", json_string(folder));
    json_object_set_new(doc, "folders", jfolders);
    json_object_set_new(doc, "files", jfiles);
    free(folder);
    http_respond_json(ex, 200, doc);
}

static const struct http_route_ops list_ops = {
    .route_class = "media",
    .on_head = list_on_head,
};

/* ------------------------------------------------------------------ */
/* GET /v1/media/{id}                                                  */

static void get_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    if (!media_id_or_404(ex, id))
        return;
    struct catalog *cat = api_loop_catalog(ex);
    if (!cat)
        return;
    struct dr_media m = {0};
    int rc = catalog_media_get(cat, id, http_user(ex), &m);
    if (rc < 0) {
        api_respond_catalog_error(ex, rc, "media lookup");
        return;
    }
    json_t *o = api_media_json(&m, http_user(ex));
    add_variants(o, cat, &m, http_user(ex), http_cfg(ex));
    http_respond_json(ex, 200, o);
    dr_media_clear(&m);
}

static const struct http_route_ops get_ops = {
    .route_class = "media",
    .on_head = get_on_head,
};

/* ------------------------------------------------------------------ */
/* PATCH /v1/media/{id}  {"path": "/new/place/name.ext"} or "/folder/"  */

static void patch_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    if (!media_id_or_404(ex, id))
        return;
    req_new(ex, id);
    api_body_start(ex);
}

static void patch_work(void *arg)
{
    struct media_req *r = arg;
    struct catalog *cat = http_work_catalog();
    if (!cat) {
        r->rc = -EAGAIN;
        return;
    }
    if (r->into_folder) {
        struct dr_media cur = {0};
        r->rc = catalog_media_get(cat, r->id, r->user, &cur);
        if (r->rc < 0)
            return;
        char *full = xasprintf("%s/%s", strcmp(r->arg, "/") == 0 ? "" : r->arg, cur.name);
        dr_media_clear(&cur);
        free(r->arg);
        r->arg = full;
        if (strlen(full) > DR_PATH_MAX) {
            r->rc = -ENAMETOOLONG;
            return;
        }
    }
    /* Which clash, for the message (the move checks again, atomically). */
    r->clash = catalog_path_exists(cat, r->user, r->arg);
    r->rc = catalog_media_move(cat, r->id, r->user, r->arg);
    if (r->rc == 0 && catalog_media_get(cat, r->id, r->user, &r->m) == 0)
        r->have_media = true;
}

static void patch_done(struct http_exchange *ex, void *arg)
{
    struct media_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -EEXIST) {
        http_respond_problem(ex, 409, "%s %s", r->arg,
                             catalog_path_clash_text(r->clash > 0 ? r->clash : DR_PATH_FILE));
    } else if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such media of yours");
    } else if (r->rc == -ENAMETOOLONG) {
        http_respond_problem(ex, 400, "bad path: %s is longer than %d bytes", r->arg, DR_PATH_MAX);
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "move");
    } else if (r->have_media) {
        log_info("media %s moved to %s by %s", r->id, r->arg, r->user);
        http_respond_json(ex, 200, api_media_json(&r->m, r->user));
    } else {
        http_respond_problem(ex, 500, "moved, but the media could not be read back");
    }
}

static void patch_on_end(struct http_exchange *ex)
{
    struct media_req *r = http_get_data(ex);
    json_t *doc = NULL;
    const char *p = body_string(ex, "path", &doc);
    if (!p)
        return;
    char err[DR_ERRLEN];
    /* "/archive/" (or "/") names a folder: the file goes in under its own
     * name, as mv(1) does; the name is read on the pool thread. */
    size_t pl = strlen(p);
    r->into_folder = pl > 0 && p[pl - 1] == '/';
    int rc = r->into_folder ? path_normalize_folder(p, &r->arg, err, sizeof err)
                            : path_normalize_file(p, &r->arg, err, sizeof err);
    json_decref(doc);
    if (rc < 0) {
        http_respond_problem(ex, 400, "bad path: %s", err);
        return;
    }
    api_defer(ex, patch_work, patch_done, r);
}

static const struct http_route_ops patch_ops = {
    .route_class = "media",
    .on_head = patch_on_head,
    .on_body = api_body_append,
    .on_end = patch_on_end,
    .on_abort = req_on_finish,
    .on_done = req_on_finish,
};

/* ------------------------------------------------------------------ */
/* DELETE /v1/media/{id}                                               */

static void delete_work(void *arg)
{
    struct media_req *r = arg;
    struct catalog *cat = http_work_catalog();
    if (!cat) {
        r->rc = -EAGAIN;
        return;
    }
    if (r->cfg->trash.ttl > 0) {
        int64_t now = dr_now_ms();
        r->rc = catalog_media_trash(cat, r->id, r->user);
        if (r->rc == 0) {
            api_trash_marks(r->cfg, (const char(*)[DR_ID_LEN + 1]) & r->id, 1, true, now);
            log_info("media %s moved to the trash by %s", r->id, r->user);
            return;
        }
        if (r->rc != -ENOENT) /* -ENOENT: not a file holding its path; for good, below */
            return;
    }
    char *key = NULL;
    /* the variants' objects go with it (their rows go with the media row) */
    struct dr_variant *v = NULL;
    size_t nv = 0;
    if (catalog_variants_list(cat, r->id, r->user, &v, &nv) < 0)
        nv = 0;
    r->rc = catalog_media_delete(cat, r->id, r->user, &key);
    if (r->rc < 0) {
        catalog_variants_free(v, nv);
        return;
    }
    /* The row is gone: from here on, failures leave garbage, never a lie. */
    char **names = xcalloc(nv + 1, sizeof *names), **keys = xcalloc(nv + 1, sizeof *keys);
    for (size_t i = 0; i < nv; i++) {
        names[i] = v[i].name;
        keys[i] = v[i].storage_key;
    }
    char err[DR_ERRLEN] = "";
    struct dr_store *st = api_pool_store(r->cfg, err, sizeof err);
    if (st != NULL)
        store_forget(st, r->cfg->data_dir, r->id, key, names, keys, nv);
    else
        log_warn("media %s: no store to delete its objects from (%s); they are orphans for "
                 "scrub",
                 r->id, err);
    free(names);
    free(keys);
    catalog_variants_free(v, nv);
    log_info("media %s deleted by %s (object %s)", r->id, r->user, key ? key : "none");
    free(key);
}

static void delete_done(struct http_exchange *ex, void *arg)
{
    struct media_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT)
        http_respond_problem(ex, 404, "no such media of yours");
    else if (r->rc < 0)
        api_respond_catalog_error(ex, r->rc, "delete");
    else
        http_respond(ex, 204, NULL, NULL, 0);
}

static void delete_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    if (!media_id_or_404(ex, id))
        return;
    struct media_req *r = req_new(ex, id);
    api_defer(ex, delete_work, delete_done, r);
}

static const struct http_route_ops delete_ops = {
    .route_class = "media",
    .on_head = delete_on_head,
    .on_abort = req_on_finish,
    .on_done = req_on_finish,
};

/* ------------------------------------------------------------------ */
/* POST /v1/media/{id}/download                                        */

/* Pool thread: r->m = media r->id as r->user sees it. false with r->rc set
 * (-EAGAIN without a catalog connection, -ENOENT if not visible). */
static bool work_load_media(struct media_req *r, struct catalog **cat_out)
{
    struct catalog *cat = http_work_catalog();
    if (!cat) {
        r->rc = -EAGAIN;
        return false;
    }
    r->rc = catalog_media_get(cat, r->id, r->user, &r->m);
    r->have_media = r->rc == 0;
    if (cat_out != NULL)
        *cat_out = cat;
    return r->have_media;
}

static void download_work(void *arg)
{
    struct media_req *r = arg;
    struct catalog *cat;
    if (!work_load_media(r, &cat))
        return;
    if (!r->m.state || strcmp(r->m.state, "available") != 0) {
        r->rc = -EINPROGRESS;
        return;
    }
    uint64_t depth = 0;
    if (r->cfg->pipeline.queue_limit > 0 && catalog_queue_depth(cat, &depth) == 0 &&
        depth >= r->cfg->pipeline.queue_limit) {
        r->rc = -ENOSPC;
        return;
    }
    char job_id[DR_ID_LEN + 1];
    r->rc = catalog_enqueue_download(cat, r->id, r->user, job_id);
    if (r->rc < 0)
        return;
    if (catalog_job_get(cat, job_id, NULL, &r->job) == 0)
        r->have_job = true;
    else
        snprintf(r->job.id, sizeof r->job.id, "%s", job_id);
}

static void download_done(struct http_exchange *ex, void *arg)
{
    struct media_req *r = arg;
    if (r->rc == 0 && http_worker_ctx(ex))
        worker_send(http_worker_ctx(ex), DR_MSG_JOB_ENQUEUED,
                    1); /* a lost wake-up only costs latency */
    if (http_ex_closed(ex))
        return;
    if (r->rc == -EINPROGRESS) {
        http_respond_problem(ex, 409, "media %s is not available yet (state %s)", r->id,
                             r->m.state ? r->m.state : "unknown");
    } else if (r->rc == -ENOSPC) {
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "the job queue is full");
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "download");
    } else {
        http_add_headerf(ex, "Location", "/v1/jobs/%s", r->job.id);
        json_t *doc = json_object();
        if (r->have_job) {
            json_object_set_new(doc, "job", api_job_json(&r->job, http_cfg(ex)));
        } else {
            json_t *j = json_object();
            json_object_set_new(j, "id", json_string(r->job.id));
            json_object_set_new(doc, "job", j);
        }
        http_respond_json(ex, 202, doc);
    }
}

static void download_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    if (!media_id_or_404(ex, id))
        return;
    struct media_req *r = req_new(ex, id);
    api_defer(ex, download_work, download_done, r);
}

static const struct http_route_ops download_ops = {
    .route_class = "media",
    .on_head = download_on_head,
    .on_abort = req_on_finish,
    .on_done = req_on_finish,
};

/* ------------------------------------------------------------------ */
/* POST /v1/media/{id}/link?expires_in=S: a signed content URL (link.h) */

static void link_work(void *arg)
{
    work_load_media(arg, NULL);
}

static void link_done(struct http_exchange *ex, void *arg)
{
    struct media_req *r = arg;
    if (http_ex_closed(ex))
        return;
    const struct dr_user *u = config_find_user(r->cfg, r->user);
    if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "link");
    } else if (u == NULL || u->token == NULL) {
        http_respond_problem(ex, 403, "this user cannot make links");
    } else {
        int64_t expires = dr_now_ms() / 1000 + r->status; /* status holds expires_in here */
        char *path = link_make(u, r->id, expires);
        char *url = http_absolute_url(ex, path); /* as the client (or its proxy) sees us */
        json_t *doc = json_object();
        json_object_set_new(doc, "url", json_string(url));
        json_object_set_new(doc, "path", json_string(path));
        free(path);
        json_object_set_new(doc, "expires_at", api_time_or_null(expires * 1000));
        json_object_set_new(doc, "media_id", json_string(r->id));
        free(url);
        http_add_header(ex, "Cache-Control", "no-store");
        http_respond_json(ex, 200, doc);
    }
}

static void link_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    if (!media_id_or_404(ex, id))
        return;
    long ttl;
    if (!api_query_long(ex, "expires_in", 1, DR_LINK_MAX_TTL, DR_LINK_DEFAULT_TTL, &ttl))
        return;
    struct media_req *r = req_new(ex, id);
    r->status = (int)ttl;
    api_defer(ex, link_work, link_done, r);
}

static const struct http_route_ops link_ops = {
    .route_class = "media",
    .on_head = link_on_head,
    .on_abort = req_on_finish,
    .on_done = req_on_finish,
};

/* Signed links get GET/HEAD of /v1/media/{id}/content, and of its
 * variants (/v1/media/{id}/variants/{name}: derived from the content, so
 * the same link reads them), without a bearer token
 * (router_set_alt_auth); anything else is not a link (0). */
static int link_auth(struct http_exchange *ex, const char **user, bool *admin)
{
    const char *sig = http_query_param(ex, "sig");
    const struct http_request *rq = http_req(ex);
    char id[DR_ID_LEN + 1];
    const char *rest;
    if (sig == NULL || (rq->method != HTTP_GET && rq->method != HTTP_HEAD) ||
        !media_path_id(ex, id, &rest) ||
        (strcmp(rest, "content") != 0 && strncmp(rest, "variants/", 9) != 0))
        return 0;
    const struct dr_user *u = NULL;
    enum link_verdict v = link_check(http_cfg(ex), id, http_query_param(ex, "user"),
                                     http_query_param(ex, "expires"), sig, dr_now_ms() / 1000, &u);
    if (v == LINK_EXPIRED)
        return -2;
    if (v != LINK_OK)
        return -1;
    *user = u->name;
    *admin = false; /* a link is for reading one media, never admin work */
    return 1;
}

/* ------------------------------------------------------------------ */
/* GET /v1/jobs/{id}                                                   */

static void job_on_head(struct http_exchange *ex)
{
    const char *p = http_req(ex)->path;
    const char *id = p ? p + sizeof JOBS_PREFIX - 1 : "";
    if (!p || !dr_id_valid(id)) {
        http_respond_problem(ex, 404, "no such job");
        return;
    }
    struct catalog *cat = api_loop_catalog(ex);
    if (!cat)
        return;
    struct dr_job j = {0};
    int rc = catalog_job_get(cat, id, http_user(ex), &j);
    if (rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such job");
        return;
    }
    if (rc < 0) {
        api_respond_catalog_error(ex, rc, "job lookup");
        return;
    }
    http_respond_json(ex, 200, api_job_json(&j, http_cfg(ex)));
    dr_job_clear(&j);
}

static const struct http_route_ops job_ops = {
    .route_class = "jobs",
    .on_head = job_on_head,
};

/* ------------------------------------------------------------------ */
/* GET /v1/jobs?state=S&limit=N: the caller's newest jobs first        */

#define JOBS_LIST_DEFAULT 50
#define JOBS_LIST_MAX 1000

static void jobs_list_on_head(struct http_exchange *ex)
{
    static const char *const states[] = {"queued", "running", "done", "failed"};
    const char *state = http_query_param(ex, "state");
    if (state != NULL) {
        size_t i = 0;
        while (i < DR_ARRAY_LEN(states) && strcmp(state, states[i]) != 0)
            i++;
        if (i == DR_ARRAY_LEN(states)) {
            http_respond_problem(ex, 400, "bad state: want queued, running, done or failed");
            return;
        }
    } else if (api_query_has(ex, "state")) {
        http_respond_problem(ex, 400, "bad state: not decodable");
        return;
    }
    long limit;
    if (!api_query_long(ex, "limit", 1, JOBS_LIST_MAX, JOBS_LIST_DEFAULT, &limit))
        return;
    struct catalog *cat = api_loop_catalog(ex);
    if (!cat)
        return;
    struct dr_job *jobs = NULL;
    size_t n = 0;
    int rc = catalog_jobs_list(cat, http_user(ex), state, (int)limit, &jobs, &n);
    if (rc < 0) {
        api_respond_catalog_error(ex, rc, "job listing");
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, api_job_json(&jobs[i], http_cfg(ex)));
    catalog_jobs_list_free(jobs, n);
    json_t *doc = json_object();
    json_object_set_new(doc, "jobs", arr);
    http_respond_json(ex, 200, doc);
}

static const struct http_route_ops jobs_list_ops = {
    .route_class = "jobs",
    .on_head = jobs_list_on_head,
};

/* ------------------------------------------------------------------ */
/* "/v1/media/" sub-router                                             */

static void not_found_on_head(struct http_exchange *ex)
{
    http_respond_problem(ex, 404, "no such resource");
}

static const struct http_route_ops not_found_ops = {
    .route_class = "media",
    .on_head = not_found_on_head,
};

/* The Allow list for a sub-resource ("" item, "content", ...), or NULL. */
static const char *sub_allow(const char *rest)
{
    if (rest[0] == '\0')
        return "GET, HEAD, PATCH, DELETE";
    if (strcmp(rest, "content") == 0 || strncmp(rest, "variants/", 9) == 0)
        return "GET, HEAD";
    if (strcmp(rest, "download") == 0 || strcmp(rest, "link") == 0 ||
        strcmp(rest, "public-links") == 0)
        return "POST";
    if (strcmp(rest, "shares") == 0)
        return "GET, HEAD, POST";
    if (strncmp(rest, "shares/", 7) == 0)
        return "DELETE";
    if (strcmp(rest, "versions") == 0)
        return "GET, HEAD";
    if (strncmp(rest, "versions/", 9) == 0)
        return "POST";
    return NULL;
}

static void method_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    const char *rest = "";
    const char *allow = media_path_id(ex, id, &rest) ? sub_allow(rest) : NULL;
    if (allow)
        http_add_header(ex, "Allow", allow);
    http_respond_problem(ex, 405, "%s is not allowed here", http_req(ex)->method_name);
}

static const struct http_route_ops method_ops = {
    .route_class = "media",
    .on_head = method_on_head,
};

/* Which ops serve this exchange, from its path and method. */
static const struct http_route_ops *media_pick(const struct http_exchange *ex)
{
    const struct http_request *rq = http_req(ex);
    if (rq->path && strcmp(rq->path, MEDIA_PREFIX) == 0)
        return rq->method == HTTP_GET || rq->method == HTTP_HEAD ? &list_ops : &method_ops;
    char id[DR_ID_LEN + 1];
    const char *rest;
    if (!media_path_id(ex, id, &rest) || !sub_allow(rest))
        return &not_found_ops;
    int m = rq->method;
    bool get = m == HTTP_GET || m == HTTP_HEAD;
    if (rest[0] == '\0') {
        if (get)
            return &get_ops;
        if (m == HTTP_PATCH)
            return &patch_ops;
        if (m == HTTP_DELETE)
            return &delete_ops;
    } else if (strcmp(rest, "content") == 0 || strncmp(rest, "variants/", 9) == 0) {
        if (get)
            return api_content_route(); /* it answers 404 for a malformed name */
    } else if (strcmp(rest, "download") == 0) {
        if (m == HTTP_POST)
            return &download_ops;
    } else if (strcmp(rest, "shares") == 0 || strncmp(rest, "shares/", 7) == 0) {
        const struct http_route_ops *ops = api_shares_media_route(m, rest);
        if (ops)
            return ops;
    } else if (strcmp(rest, "versions") == 0 || strncmp(rest, "versions/", 9) == 0) {
        const struct http_route_ops *ops = api_versions_media_route(m, rest);
        if (ops)
            return ops;
    } else if (strcmp(rest, "public-links") == 0) {
        const struct http_route_ops *ops = api_links_media_route(m);
        if (ops)
            return ops;
    } else if (strcmp(rest, "link") == 0) {
        if (m == HTTP_POST)
            return &link_ops;
    }
    return &method_ops;
}

/* The router calls media_pick once per exchange (http_route_ops.pick), so
 * each sub-resource keeps its own handlers and metrics label. */
static const struct http_route_ops media_ops = {
    .route_class = "media",
    .pick = media_pick,
};

void api_media_register_routes(void)
{
    router_add("GET", "/v1/media", true, &list_ops);
    router_add("*", MEDIA_PREFIX, true, &media_ops);
    router_add("GET", JOBS_PREFIX, true, &job_ops);
    router_set_alt_auth(link_auth);
    router_add("GET", "/v1/jobs", true, &jobs_list_ops);
}

/* api_links.c - public links (routes.h, docs/API.md "Public links"):
 *
 *   POST   /v1/media/{id}/public-links  {"expires_in","max_downloads"} (both
 *                                        optional; expires_in in seconds or
 *                                        "7d") -> 201 {"id","url",...}
 *   GET    /v1/public-links[?media_id=] the caller's links, newest first
 *   DELETE /v1/public-links/{id}         revoke
 *   GET    /p/{token}                    the content, without a token (HEAD too)
 *
 * What: stored, revocable links (catalog_links.h), unlike the stateless
 * signed links of POST /v1/media/{id}/link (link.h), which stay as they
 * are. The URL's token is the link id plus a MAC keyed with the owner's
 * bearer token (link.h), so the catalog holds no secret and the list can
 * show each URL again.
 *
 * GET /p/{token}: the link row is read on the loop thread; an unknown,
 * revoked or forged token is 404 (the three look the same), an expired or
 * used-up link 410. Then the content goes through the same path as
 * /v1/media/{id}/content (api_content_serve: Range, ETag, If-None-Match,
 * cache or download job), as the link's owner. A GET that starts a
 * download (no Range, or a range from byte 0) is counted first, on the
 * worker pool, by one catalog UPDATE that also re-checks expiry and limit
 * (catalog_link_count), so concurrent downloads never pass
 * max_downloads; a resumed range (bytes=N- with N > 0), a HEAD and a 304
 * are not counted. A link whose file is not available (still being
 * processed) answers 409 like /content.
 *
 * Threads: handlers on the loop thread; catalog writes (create, revoke,
 * count) on the pool with the pool thread's own connection. The pool
 * functions touch only their request struct and the immutable config.
 */
#include "routes.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <http_parser.h>

#include "api_req.h"
#include "dripd/catalog.h"
#include "dripd/catalog_links.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/log.h"
#include "dripd/router.h"
#include "dripd/util.h"
#include "link.h"

#define MEDIA_PREFIX "/v1/media/"
#define LINKS "/v1/public-links"
#define LINKS_PREFIX "/v1/public-links/"
#define PUBLIC_PREFIX "/p/"
/* expires_in: at most ten years, in seconds */
#define LINK_MAX_EXPIRES_IN (10LL * 366 * 24 * 3600)

struct link_req {
    struct api_body body; /* first: api_body_append's convention (api_req.h) */
    char id[DR_ID_LEN + 1];
    char *user;
    const struct dr_config *cfg;
    int64_t expires_at, max_downloads;
    int rc;
    struct dr_link link;
};

static struct link_req *req_new(struct http_exchange *ex)
{
    struct link_req *r = xcalloc(1, sizeof *r);
    r->user = xstrdup(http_user(ex));
    r->cfg = http_cfg(ex);
    http_set_data(ex, r);
    return r;
}

static void req_finish(struct http_exchange *ex)
{
    struct link_req *r = http_get_data(ex);
    if (!r)
        return;
    http_set_data(ex, NULL);
    api_body_free(&r->body);
    free(r->user);
    dr_link_clear(&r->link);
    free(r);
}

/* What the owner sees of a link: {"id","url","link_path","media_id",
 * "path","created_at","expires_at","max_downloads","downloads","state"}:
 * url is absolute as the client (or its trusted proxy) sees this server,
 * like a signed link's, and link_path its path (/p/<token>); both null
 * when the owner has no token to derive it from. "path" is the file's. */
static json_t *link_json(const struct http_exchange *ex, const struct dr_link *l, int64_t now)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(l->id));
    const struct dr_user *u = config_find_user(http_cfg(ex), l->owner);
    if (u && u->token) {
        char tok[DR_PUBLIC_TOKEN_LEN + 1];
        link_public_token(u, l->id, tok);
        char *lp = xasprintf(PUBLIC_PREFIX "%s", tok), *url = http_absolute_url(ex, lp);
        json_object_set_new(o, "url", json_string(url));
        json_object_set_new(o, "link_path", json_string(lp));
        free(url);
        free(lp);
    } else {
        json_object_set_new(o, "url", json_null());
        json_object_set_new(o, "link_path", json_null());
    }
    json_object_set_new(o, "media_id", json_string(l->media_id));
    json_object_set_new(o, "path", api_str_or_null(l->path));
    json_object_set_new(o, "created_at", api_time_or_null(l->created_at));
    json_object_set_new(o, "expires_at", api_time_or_null(l->expires_at));
    json_object_set_new(o, "max_downloads",
                        l->max_downloads > 0 ? json_integer(l->max_downloads) : json_null());
    json_object_set_new(o, "downloads", json_integer(l->downloads));
    const char *state = "active";
    if (l->expires_at > 0 && l->expires_at <= now)
        state = "expired";
    else if (l->max_downloads > 0 && l->downloads >= l->max_downloads)
        state = "used up";
    json_object_set_new(o, "state", json_string(state));
    return o;
}

/* ------------------------------------------------------------------ */
/* POST /v1/media/{id}/public-links                                    */

static void create_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    const char *rest;
    if (!api_path_id(ex, MEDIA_PREFIX, id, &rest)) {
        http_respond_problem(ex, 404, "no such media");
        return;
    }
    struct link_req *r = req_new(ex);
    memcpy(r->id, id, sizeof r->id);
    api_body_start(ex);
}

static void create_work(void *arg)
{
    struct link_req *r = arg;
    struct catalog *cat = http_work_catalog();
    r->rc =
        cat ? catalog_link_create(cat, r->id, r->user, r->expires_at, r->max_downloads, &r->link)
            : -EAGAIN;
}

static void create_done(struct http_exchange *ex, void *arg)
{
    struct link_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such media of yours");
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "public link");
    } else {
        log_info("media %s: public link %s made by %s", r->id, r->link.id, r->user);
        http_add_header(ex, "Cache-Control", "no-store");
        http_respond_json(ex, 201, link_json(ex, &r->link, dr_now_ms()));
    }
}

/* A positive integer member key of doc (*out, 0 when absent or null);
 * false after answering 400. */
static bool body_count(struct http_exchange *ex, json_t *doc, const char *key, long long max,
                       int64_t *out)
{
    json_t *v = json_object_get(doc, key);
    *out = 0;
    if (v == NULL || json_is_null(v))
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max) {
        http_respond_problem(ex, 400, "\"%s\" must be an integer from 1 to %lld", key, max);
        return false;
    }
    *out = (int64_t)json_integer_value(v);
    return true;
}

/* "expires_in": seconds, or a duration string ("7d", "2h", "90s"); *out
 * 0 when absent or null. false after answering 400. */
static bool body_expires_in(struct http_exchange *ex, json_t *doc, int64_t *out)
{
    json_t *v = json_object_get(doc, "expires_in");
    uint64_t ms = 0;
    if (!json_is_string(v))
        return body_count(ex, doc, "expires_in", LINK_MAX_EXPIRES_IN, out);
    if (config_parse_duration(json_string_value(v), &ms) < 0 || ms < 1000 ||
        ms / 1000 > (uint64_t)LINK_MAX_EXPIRES_IN) {
        http_respond_problem(ex, 400,
                             "\"expires_in\" must be seconds or a duration (\"7d\", \"2h\") "
                             "from 1s to ten years");
        return false;
    }
    *out = (int64_t)(ms / 1000);
    return true;
}

static void create_on_end(struct http_exchange *ex)
{
    struct link_req *r = http_get_data(ex);
    json_t *doc = api_body_object(ex, true);
    if (!doc)
        return;
    int64_t expires_in = 0;
    if (body_expires_in(ex, doc, &expires_in) &&
        body_count(ex, doc, "max_downloads", INT32_MAX, &r->max_downloads)) {
        r->expires_at = expires_in > 0 ? dr_now_ms() + expires_in * 1000 : 0;
        api_defer(ex, create_work, create_done, r);
    }
    json_decref(doc);
}

static const struct http_route_ops create_ops = {
    .route_class = "media",
    .on_head = create_on_head,
    .on_body = api_body_append,
    .on_end = create_on_end,
    .on_abort = req_finish,
    .on_done = req_finish,
};

const struct http_route_ops *api_links_media_route(int method)
{
    return method == HTTP_POST ? &create_ops : NULL;
}

/* ------------------------------------------------------------------ */
/* GET /v1/public-links[?media_id=ID]                                  */

static void list_on_head(struct http_exchange *ex)
{
    const char *media = http_query_param(ex, "media_id");
    if ((media == NULL && api_query_has(ex, "media_id")) || (media && !dr_id_valid(media))) {
        http_respond_problem(ex, 400, "bad media_id: not a media id");
        return;
    }
    struct catalog *cat = api_loop_catalog(ex);
    if (!cat)
        return;
    struct dr_link *v = NULL;
    size_t n = 0;
    int rc = catalog_links_list(cat, http_user(ex), media, &v, &n);
    if (rc < 0) {
        api_respond_catalog_error(ex, rc, "public links");
        return;
    }
    int64_t now = dr_now_ms();
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, link_json(ex, &v[i], now));
    catalog_links_free(v, n);
    json_t *doc = json_object();
    json_object_set_new(doc, "links", arr);
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond_json(ex, 200, doc);
}

static const struct http_route_ops list_ops = {
    .route_class = "media",
    .on_head = list_on_head,
};

/* ------------------------------------------------------------------ */
/* DELETE /v1/public-links/{id}                                        */

static void revoke_work(void *arg)
{
    struct link_req *r = arg;
    struct catalog *cat = http_work_catalog();
    r->rc = cat ? catalog_link_delete(cat, r->id, r->user) : -EAGAIN;
}

static void revoke_done(struct http_exchange *ex, void *arg)
{
    struct link_req *r = arg;
    if (http_ex_closed(ex))
        return;
    if (r->rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such public link of yours");
    } else if (r->rc < 0) {
        api_respond_catalog_error(ex, r->rc, "revoke");
    } else {
        log_info("public link %s revoked by %s", r->id, r->user);
        http_respond(ex, 204, NULL, NULL, 0);
    }
}

static void revoke_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1];
    const char *rest;
    if (!api_path_id(ex, LINKS_PREFIX, id, &rest) || rest[0] != '\0') {
        http_respond_problem(ex, 404, "no such public link");
        return;
    }
    struct link_req *r = req_new(ex);
    memcpy(r->id, id, sizeof r->id);
    api_defer(ex, revoke_work, revoke_done, r);
}

static const struct http_route_ops revoke_ops = {
    .route_class = "media",
    .on_head = revoke_on_head,
    .on_abort = req_finish,
    .on_done = req_finish,
};

/* ------------------------------------------------------------------ */
/* GET /p/{token}                                                      */

/* The count of one download, handed from the content gate to the pool. */
struct count_req {
    char id[DR_ID_LEN + 1];
    int rc;
};

static void count_work(void *arg)
{
    struct count_req *c = arg;
    struct catalog *cat = http_work_catalog();
    c->rc = cat ? catalog_link_count(cat, c->id, dr_now_ms(), NULL) : -EAGAIN;
}

static void respond_gone(struct http_exchange *ex, int rc)
{
    http_add_header(ex, "Cache-Control", "no-store");
    if (rc == -ETIME)
        http_respond_problem(ex, 410, "this link has expired");
    else
        http_respond_problem(ex, 410, "this link has been used as often as it may be");
}

static void count_done(struct http_exchange *ex, void *arg)
{
    struct count_req *c = arg;
    if (http_ex_closed(ex))
        return;
    if (c->rc == 0)
        api_content_go(ex);
    else if (c->rc == -ENOENT)
        http_respond_problem(ex, 404, "no such link");
    else if (c->rc == -ETIME || c->rc == -EDQUOT)
        respond_gone(ex, c->rc);
    else
        api_respond_catalog_error(ex, c->rc, "link");
}

static void count_gate(struct http_exchange *ex, void *arg)
{
    api_defer(ex, count_work, count_done, arg);
}

static void public_on_head(struct http_exchange *ex)
{
    const char *token = http_req(ex)->path + strlen(PUBLIC_PREFIX);
    char id[DR_ID_LEN + 1];
    http_add_header(ex, "Referrer-Policy", "no-referrer");
    if (!link_public_id(token, id)) {
        http_respond_problem(ex, 404, "no such link");
        return;
    }
    struct catalog *cat = api_loop_catalog(ex);
    if (!cat)
        return;
    struct dr_link l;
    int rc = catalog_link_get(cat, id, &l);
    if (rc < 0) {
        if (rc == -ENOENT)
            http_respond_problem(ex, 404, "no such link");
        else
            api_respond_catalog_error(ex, rc, "link");
        return;
    }
    if (!link_public_verify(config_find_user(http_cfg(ex), l.owner), token)) {
        http_respond_problem(ex, 404, "no such link");
    } else if (l.expires_at > 0 && l.expires_at <= dr_now_ms()) {
        respond_gone(ex, -ETIME);
    } else if (l.max_downloads > 0 && l.downloads >= l.max_downloads) {
        respond_gone(ex, -EDQUOT);
    } else {
        struct count_req *c = xcalloc(1, sizeof *c);
        memcpy(c->id, l.id, sizeof c->id);
        struct api_content_gate gate = {.fn = count_gate, .arg = c, .free = free};
        api_content_serve(ex, l.media_id, "", l.owner, &gate);
    }
    dr_link_clear(&l);
}

static const struct http_route_ops public_ops = {
    .route_class = "content",
    .on_head = public_on_head,
    .on_abort = api_content_finish,
    .on_done = api_content_finish,
};

void api_links_register_routes(void)
{
    router_add("GET", LINKS, true, &list_ops);
    router_add("DELETE", LINKS_PREFIX, true, &revoke_ops);
    router_add("GET", PUBLIC_PREFIX, false, &public_ops);
}

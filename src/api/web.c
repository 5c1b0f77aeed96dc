/* web.c - the web UI's static files, served from the tables that
 * scripts/embed-web.sh compiles into the binary.
 *
 * Every response carries a strict Content-Security-Policy (no inline
 * scripts or styles, nothing from other origins), nosniff, no framing and
 * no referrer. index.html is revalidated on every load (Cache-Control:
 * no-cache + ETag); the other files are cacheable for an hour and
 * revalidated by ETag after that. Runs on http loop threads; no state.
 */
#include "routes.h"
#include "web_assets.h"

#include <string.h>

#include "dripd/http.h"
#include "dripd/router.h"

/* The Content-Security-Policy every UI response carries. */
static const char web_csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/* The asset for a request path ("/" -> "/index.html"), or NULL. */
static const struct web_asset *web_find(const char *path)
{
    if (path == NULL)
        return NULL;
    if (strcmp(path, "/") == 0)
        path = "/index.html";
    for (size_t i = 0; i < web_assets_count; i++)
        if (strcmp(web_assets[i].path, path) == 0)
            return &web_assets[i];
    return NULL;
}

/* True when an If-None-Match list names etag (or is "*"). */
static int etag_matches(const char *inm, const char *etag)
{
    if (inm == NULL)
        return 0;
    if (strcmp(inm, "*") == 0)
        return 1;
    size_t n = strlen(etag);
    for (const char *p = strstr(inm, etag); p; p = strstr(p + 1, etag)) {
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ')
            return 1;
    }
    return 0;
}

static void web_on_head(struct http_exchange *ex)
{
    const struct http_request *req = http_req(ex);
    const struct web_asset *a = web_find(req->path);
    if (a == NULL) {
        http_respond_problem(ex, 404, "no such page or route");
        return;
    }
    http_add_header(ex, "Content-Security-Policy", web_csp);
    http_add_header(ex, "X-Content-Type-Options", "nosniff");
    http_add_header(ex, "X-Frame-Options", "DENY");
    http_add_header(ex, "Referrer-Policy", "no-referrer");
    http_add_header(ex, "ETag", a->etag);
    http_add_header(ex, "Cache-Control",
                    strcmp(a->path, "/index.html") == 0 ? "no-cache" : "public, max-age=3600");
    if (etag_matches(http_header(ex, "If-None-Match"), a->etag)) {
        http_respond(ex, 304, NULL, NULL, 0);
        return;
    }
    http_respond(ex, 200, a->content_type, a->data, a->len);
}

static const struct http_route_ops web_ops = {
    .route_class = "web",
    .on_head = web_on_head,
};

void web_register_routes(void)
{
    router_add("GET", "/", false, &web_ops);
}

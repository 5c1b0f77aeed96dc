/* router.c - route table, bearer authentication and the fallback answers
 * (400 undecodable path, 401, 404, 405) for the HTTP front end (router.h).
 *
 * Threads: routes and event hooks are registered once on the main thread
 * before the server starts; afterwards the tables are read-only, so
 * router_dispatch() runs on every loop thread without locks.
 *
 * Matching: among the routes whose pattern matches the decoded path (a
 * pattern ending in '/' is a prefix, any other pattern is exact), the
 * longest pattern whose method matches wins; HEAD also matches GET routes,
 * "*" matches every method. When only other methods match, the answer is
 * 405 with Allow. Authentication runs after matching, so an unknown path
 * is 404 even without a token. A request with no Authorization header may
 * still get in through the alt-auth hook (signed download links).
 *
 * CORS (cors.h) runs first, for every request with an Origin header:
 * whatever answers it (a route, 401, 404, 405) carries the same
 * Access-Control-* headers. A preflight (OPTIONS with
 * Access-Control-Request-Method) needs no token: from an allowed origin it
 * gets 204 with the methods of the path (or the path's own OPTIONS route,
 * so tus discovery still answers), from any other origin 403.
 */
#include "dripd/router.h"

#include "cors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define MAX_ROUTES 128
#define MAX_HOOKS 16

struct route {
    const char *method;
    const char *pattern;
    size_t plen;
    bool prefix;
    bool auth;
    const struct http_route_ops *ops;
};

static struct route routes[MAX_ROUTES];
static router_alt_auth_fn alt_auth; /* signed links (link.h), or NULL */
static size_t n_routes;
static router_event_hook hooks[MAX_HOOKS];
static size_t n_hooks;

void router_add(const char *method, const char *pattern, bool auth,
                const struct http_route_ops *ops)
{
    if (n_routes == MAX_ROUTES) {
        log_error("router: more than %d routes; %s %s ignored", MAX_ROUTES, method, pattern);
        return;
    }
    size_t len = strlen(pattern);
    routes[n_routes++] = (struct route){
        .method = method,
        .pattern = pattern,
        .plen = len,
        .prefix = len > 0 && pattern[len - 1] == '/',
        .auth = auth,
        .ops = ops,
    };
}

void router_add_event_hook(router_event_hook fn)
{
    if (n_hooks < MAX_HOOKS)
        hooks[n_hooks++] = fn;
    else
        log_error("router: more than %d event hooks", MAX_HOOKS);
}

void router_run_event_hooks(struct http_server *srv, uint64_t seq)
{
    for (size_t i = 0; i < n_hooks; i++)
        hooks[i](srv, seq);
}

void router_reset(void)
{
    n_routes = 0;
    n_hooks = 0;
    alt_auth = NULL;
}

static bool path_matches(const struct route *r, const char *path)
{
    if (r->prefix)
        return strncmp(path, r->pattern, r->plen) == 0;
    return strcmp(path, r->pattern) == 0;
}

static bool method_matches(const struct route *r, const char *method)
{
    if (strcmp(r->method, "*") == 0 || strcmp(r->method, method) == 0)
        return true;
    return strcmp(method, "HEAD") == 0 && strcmp(r->method, "GET") == 0;
}

/* ---- fallback answers ---- */

static void bad_path_head(struct http_exchange *ex)
{
    http_respond_problem(ex, 400, "the request path is not valid (bad percent-encoding or NUL)");
}

static void not_found_head(struct http_exchange *ex)
{
    http_respond_problem(ex, 404, "no such resource: %s", http_req(ex)->path);
}

#define ANY_METHODS "GET, HEAD, POST, PUT, PATCH, DELETE"

/* "GET, HEAD, PUT" for every method registered on a pattern matching path
 * (*any: a "*" route matches too; its module knows its methods). */
static char *allow_list(const char *path, bool *any)
{
    char buf[256] = "";
    size_t len = 0;
    bool get = false;
    if (any != NULL)
        *any = false;
    for (size_t i = 0; i < n_routes; i++) {
        const struct route *r = &routes[i];
        if (!path_matches(r, path))
            continue;
        if (strcmp(r->method, "*") == 0) {
            if (any != NULL)
                *any = true;
            continue;
        }
        char needle[40];
        size_t ml = strlen(r->method);
        if (ml + 3 > sizeof needle)
            continue;
        memcpy(needle, r->method, ml + 1);
        bool dup = false;
        for (const char *p = buf; (p = strstr(p, needle)) != NULL; p += ml) {
            if ((p == buf || p[-1] == ' ') && (p[ml] == ',' || p[ml] == '\0')) {
                dup = true;
                break;
            }
        }
        if (dup || len + ml + 3 >= sizeof buf)
            continue;
        len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%s", len ? ", " : "", r->method);
        get = get || strcmp(r->method, "GET") == 0;
    }
    if (get && strstr(buf, "HEAD") == NULL && len + 7 < sizeof buf)
        snprintf(buf + len, sizeof buf - len, ", HEAD");
    return xstrdup(buf);
}

static void not_allowed_head(struct http_exchange *ex)
{
    char *allow = allow_list(http_req(ex)->path, NULL);
    http_add_header(ex, "Allow", allow);
    http_respond_problem(ex, 405, "%s is not allowed here; allowed: %s", http_req(ex)->method_name,
                         allow);
    free(allow);
}

static void unauthorized_head(struct http_exchange *ex)
{
    const char *h = http_header(ex, "Authorization");
    if (h != NULL)
        http_add_header(ex, "WWW-Authenticate", "Bearer realm=\"dripd\", error=\"invalid_token\"");
    else
        http_add_header(ex, "WWW-Authenticate", "Bearer realm=\"dripd\"");
    http_respond_problem(ex, 401,
                         h ? "the bearer token is not valid"
                           : "this resource needs an Authorization: Bearer token");
}

static const struct http_route_ops bad_path_ops = {.route_class = "other",
                                                   .on_head = bad_path_head};
static const struct http_route_ops not_found_ops = {.route_class = "other",
                                                    .on_head = not_found_head};
static const struct http_route_ops not_allowed_ops = {.route_class = "other",
                                                      .on_head = not_allowed_head};
static const struct http_route_ops unauthorized_ops = {.route_class = "other",
                                                       .on_head = unauthorized_head};

static void link_bad_head(struct http_exchange *ex)
{
    http_respond_problem(ex, 403, "the link's signature is not valid");
}

static void link_expired_head(struct http_exchange *ex)
{
    http_respond_problem(ex, 403, "the link has expired; ask for a new one");
}

static void cors_refused_head(struct http_exchange *ex)
{
    http_respond_problem(ex, 403, "origin %s may not call this server (cors.origins)",
                         http_header(ex, "Origin"));
}

static void preflight_head(struct http_exchange *ex)
{
    http_respond(ex, 204, NULL, NULL, 0);
}

static const struct http_route_ops cors_refused_ops = {.route_class = "other",
                                                       .on_head = cors_refused_head};
static const struct http_route_ops preflight_ops = {.route_class = "other",
                                                    .on_head = preflight_head};

/* A CORS preflight from an allowed origin: the path's methods, then its
 * own OPTIONS route if it has one (no authentication either way). */
static const struct http_route_ops *preflight(struct http_exchange *ex)
{
    const char *path = http_req(ex)->path;
    bool any = false;
    char *allow = allow_list(path, &any);
    const struct route *own = NULL;
    for (size_t i = 0; i < n_routes; i++) {
        const struct route *r = &routes[i];
        if (path_matches(r, path) && strcmp(r->method, "OPTIONS") == 0 &&
            (own == NULL || r->plen > own->plen))
            own = r;
    }
    const struct http_route_ops *ops = &preflight_ops;
    if (allow[0] == '\0' && !any) {
        ops = &not_found_ops;
    } else {
        const char *methods = any ? ANY_METHODS : allow;
        cors_add_preflight(ex, methods);
        if (own != NULL)
            ops = own->ops;
    }
    free(allow);
    return ops;
}

static const struct http_route_ops link_bad_ops = {.route_class = "other",
                                                   .on_head = link_bad_head};
static const struct http_route_ops link_expired_ops = {.route_class = "other",
                                                       .on_head = link_expired_head};

void router_set_alt_auth(router_alt_auth_fn fn)
{
    alt_auth = fn;
}

/* Authorization: Bearer <token> -> the user, or NULL. */
static const struct dr_user *authenticate(struct http_exchange *ex)
{
    const char *h = http_header(ex, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return NULL;
    const char *tok = h + 7;
    while (*tok == ' ' || *tok == '\t')
        tok++;
    size_t len = strlen(tok);
    if (len == 0)
        return NULL;
    return config_find_token(http_cfg(ex), tok, len);
}

const struct http_route_ops *router_dispatch(struct http_exchange *ex)
{
    const struct http_request *req = http_req(ex);
    const char *origin = http_header(ex, "Origin");
    if (origin != NULL) {
        bool allowed = cors_apply(ex, origin);
        if (req->method == HTTP_OPTIONS &&
            http_header(ex, "Access-Control-Request-Method") != NULL) {
            if (!allowed)
                return &cors_refused_ops;
            if (req->path != NULL)
                return preflight(ex);
        }
    }
    if (req->path == NULL)
        return &bad_path_ops;
    const struct route *best = NULL;
    bool other_method = false;
    for (size_t i = 0; i < n_routes; i++) {
        const struct route *r = &routes[i];
        if (!path_matches(r, req->path))
            continue;
        if (!method_matches(r, req->method_name)) {
            other_method = true;
            continue;
        }
        if (best == NULL || r->plen > best->plen)
            best = r;
    }
    if (best == NULL)
        return other_method ? &not_allowed_ops : &not_found_ops;
    if (best->auth) {
        if (alt_auth != NULL && http_header(ex, "Authorization") == NULL) {
            const char *user = NULL;
            bool admin = false;
            int v = alt_auth(ex, &user, &admin);
            if (v == -1)
                return &link_bad_ops;
            if (v == -2)
                return &link_expired_ops;
            if (v == 1) {
                http_set_user(ex, user, admin);
                return best->ops->pick ? best->ops->pick(ex) : best->ops;
            }
        }
        const struct dr_user *u = authenticate(ex);
        if (u == NULL)
            return &unauthorized_ops;
        http_set_user(ex, u->name, u->admin);
    }
    return best->ops->pick ? best->ops->pick(ex) : best->ops;
}

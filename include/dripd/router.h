/* router.h - maps request heads to route handlers, and authenticates.
 *
 * Modules register their routes once, before the server starts (from
 * http_worker.c): router_add("PUT", "/v1/files/", true, &put_ops).
 * Matching: the longest registered pattern that matches wins; a pattern
 * ending in '/' matches that prefix, any other pattern matches exactly.
 * HEAD matches GET routes (the server drops the body). method "*" matches
 * any method (the module then answers 405 itself). A path that matches a
 * pattern under another method only gets 405 with Allow.
 *
 * With auth=true the router checks "Authorization: Bearer <token>" against
 * the config's users (constant time) before the route's on_head runs, and
 * answers 401 problem+json with WWW-Authenticate: Bearer otherwise; on
 * success http_user(ex) is the user's name.
 *
 * Not thread-safe while registering; read-only (any thread) afterwards.
 */
#ifndef DRIPD_ROUTER_H
#define DRIPD_ROUTER_H

#include <stdbool.h>
#include <stdint.h>

#include "dripd/http.h"

void router_add(const char *method, const char *pattern, bool auth,
                const struct http_route_ops *ops);
/* A second way in for auth=true routes, tried only when the request has
 * no Authorization header at all (signed download links, link.h). fn
 * returns 1 and sets *user (authenticated), 0 (not its kind of request:
 * the usual 401), -1 (a bad signature: 403) or -2 (expired: 403). */
typedef int (*router_alt_auth_fn)(struct http_exchange *ex, const char **user, bool *admin);
void router_set_alt_auth(router_alt_auth_fn fn);
/* The http_dispatch_fn given to the server. */
const struct http_route_ops *router_dispatch(struct http_exchange *ex);
/* Called (on the http worker's main thread) whenever the pipeline reports
 * new events (DR_MSG_EVENT) and on a slow fallback timer; hooks usually
 * http_server_post_all() to wake waiters on every loop thread. */
typedef void (*router_event_hook)(struct http_server *srv, uint64_t seq);
void router_add_event_hook(router_event_hook fn);
void router_run_event_hooks(struct http_server *srv, uint64_t seq);
void router_reset(void); /* tests */

#endif

/* cors.h - Cross-Origin Resource Sharing for every route: which browser
 * origins may call the API (config `cors.origins`, plus the page's own
 * origin), the headers that tell the browser so, and the preflight
 * answer. Internal to the front end: router.c calls it for each request
 * that carries an Origin header, before any route runs, so every answer
 * (401, 404 and problem+json errors included) carries the same headers.
 *
 * Threads: any loop thread; no state (the config is read-only).
 */
#ifndef DRIPD_CORS_H
#define DRIPD_CORS_H

#include <stdbool.h>

struct http_exchange;

/* Response headers a cross-origin script may read (Access-Control-Expose-Headers). */
#define CORS_EXPOSE_HEADERS                                                                        \
    "Location, ETag, Content-Disposition, Content-Range, Accept-Ranges, Retry-After, "             \
    "WWW-Authenticate, Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, "       \
    "Upload-Expires, Upload-Concat, Upload-Job, Upload-Media, Tus-Resumable, Tus-Version, "        \
    "Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm"
/* Request headers a cross-origin script may send (Access-Control-Allow-Headers). */
#define CORS_ALLOW_HEADERS                                                                         \
    "Authorization, Content-Type, Range, If-Match, If-None-Match, X-Requested-With, "              \
    "X-HTTP-Method-Override, Tus-Resumable, Upload-Length, Upload-Defer-Length, "                  \
    "Upload-Metadata, Upload-Offset, Upload-Checksum, Upload-Concat"
#define CORS_MAX_AGE "7200" /* seconds a browser may cache a preflight (Chromium's cap) */

/* Is origin (the request's Origin header) allowed: listed in cors.origins
 * ("*" allows any), or the request's own origin (its authority is the
 * host the request was sent to: Host, or a trusted proxy's word)? */
bool cors_allowed(const struct http_exchange *ex, const char *origin);
/* Add Vary: Origin and, when allowed, Access-Control-Allow-Origin and
 * -Expose-Headers to ex's response. Returns cors_allowed(). */
bool cors_apply(struct http_exchange *ex, const char *origin);
/* A preflight (OPTIONS with Access-Control-Request-Method) from an
 * allowed origin: add -Allow-Methods (methods, and OPTIONS),
 * -Allow-Headers and -Max-Age. */
void cors_add_preflight(struct http_exchange *ex, const char *methods);

#endif

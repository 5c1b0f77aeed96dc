/* api_content.h - GET/HEAD /v1/media/{id}/content: the plaintext bytes.
 *
 * Served from the node's cache (cache/<id>) with sendfile; a miss runs the
 * download pipeline and waits for it (at most 60 s, then 503 +
 * Retry-After). Range (one range), ETag/If-None-Match, If-Range,
 * Content-Disposition. docs/API.md is the reference.
 */
#ifndef DRIPD_API_CONTENT_H
#define DRIPD_API_CONTENT_H

#include "dripd/http.h"

/* How long a request waits for its download job before 503. */
#define API_CONTENT_WAIT_MS 60000

/* The route ops for GET/HEAD /v1/media/{id}/content. The router has no
 * mid-path parameters, so api_media's "/v1/media/" route picks these ops
 * for such requests (http_route_ops.pick); metrics count them as "content". */
const struct http_route_ops *api_content_route(void);

/* Register the event hook that wakes requests waiting for a download job.
 * Call once, before the server starts (no router_add of its own). */
void api_content_register_routes(void);

#endif

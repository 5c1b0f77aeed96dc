/* routes.h - the HTTP API's routes, one registration function per module.
 *
 * The dripd-http process (http_worker.c) calls router_reset() and then
 * each *_register_routes() below once, before the server starts; each
 * adds its routes with router_add() (router.h) and, where it waits for
 * pipeline events, an event hook. docs/API.md is the reference for bodies
 * and status codes.
 *
 *   health.c            GET /healthz, GET /readyz (no auth)
 *   api_metrics.c       GET /metrics (Prometheus text, no auth)
 *   api_admin.c         GET /v1/me; GET /v1/admin/usage, POST|GET /v1/admin/scrub (admin)
 *   web.c               GET / and the UI's static files (the catch-all for GET)
 *   upload_put.c        PUT /v1/files/{path}
 *   upload_multipart.c  POST /v1/files/{folder} (multipart/form-data)
 *   tus.c               /v1/uploads (tus 1.0.0, docs/UPLOADS.md)
 *   api_media.c         GET|PATCH|DELETE /v1/media[/{id}], POST /v1/media/{id}/download,
 *                       POST /v1/media/{id}/link, GET /v1/jobs[/{id}]; the sub-router of
 *                       /v1/media/{id}/... hands the others to their modules
 *   api_shares.c        GET|POST /v1/media/{id}/shares, DELETE /v1/media/{id}/shares/{user},
 *                       GET|POST|DELETE /v1/folders/shares
 *   api_folders.c       POST|PATCH|DELETE /v1/folders (make, move, delete a folder)
 *   api_links.c         POST /v1/media/{id}/public-links, GET /v1/public-links,
 *                       DELETE /v1/public-links/{id}, GET|HEAD /p/{token} (no auth)
 *   api_content.c       GET|HEAD /v1/media/{id}/content (reached through api_media)
 *   api_versions.c      GET /v1/media/{id}/versions, POST .../versions/{n}/restore (reached
 *                       through api_media), GET /v1/trash, POST /v1/trash/{id}/restore
 *   api_events.c        GET /v1/events (Server-Sent Events)
 *   api_pipeline.c      GET /v1/admin/pipeline[/stream] (the pipeline view, admin; SSE)
 *
 * Threads: registration runs on the process's main thread before any loop
 * thread exists; the handlers run on loop threads (http.h).
 */
#ifndef DRIPD_ROUTES_H
#define DRIPD_ROUTES_H

#include <stdint.h>

struct http_exchange;
struct http_server;

struct http_route_ops;
struct http_thread;
struct dr_config;

void health_register_routes(void);
void api_metrics_register_routes(void);
void api_admin_register_routes(void);
void web_register_routes(void);
void upload_put_register_routes(void);
void upload_multipart_register_routes(void);
void tus_register_routes(void);
void api_media_register_routes(void);
/* Only the event hook whose fallback re-checks requests waiting for a
 * cache fill: the content route itself is api_content_route(). */
void api_content_register_routes(void);
/* DR_MSG_FILLED from the pipeline (worker.h: how = DR_FILL_*, data = the
 * entry, a NUL, the error): wakes the requests waiting for that entry.
 * Loop 0 (the supervisor channel). */
void api_content_filled(struct http_server *srv, uint32_t how, const char *data);
void api_events_register_routes(void);
void api_shares_register_routes(void);
void api_links_register_routes(void);
void api_versions_register_routes(void);
void api_folders_register_routes(void);
void api_pipeline_register_routes(void);

/* The ops for GET/HEAD /v1/media/{id}/content. The router has no mid-path
 * parameters, so api_media's "/v1/media/" route picks these ops for such
 * requests (http_route_ops.pick); metrics count them as "content". */
const struct http_route_ops *api_content_route(void);

/* Serve media id (variant "" for the original) as viewer sees it, on the
 * loop thread, exactly as GET /v1/media/{id}/content does (404, 409 not
 * available, 304, 416, cache or cache fill, Range, ETag): for routes
 * that authorise a request their own way (public links). The exchange's
 * data becomes the content request: the route's on_done and on_abort
 * must be api_content_finish. With a gate, a GET that will send bytes
 * from the start of the entity (a new download, not a resumed range or a
 * HEAD) calls gate->fn(ex, gate->arg) once every check passed and before
 * anything is sent; fn answers itself, or calls api_content_go(ex) to
 * serve (later, e.g. from an http_defer done callback). gate->arg belongs
 * to the request from the call on and gate->free(arg) runs with it. */
struct api_content_gate {
    void (*fn)(struct http_exchange *ex, void *arg);
    void *arg;
    void (*free)(void *arg); /* may be NULL */
};
void api_content_serve(struct http_exchange *ex, const char *id, const char *variant,
                       const char *viewer, const struct api_content_gate *gate);
void api_content_go(struct http_exchange *ex);
void api_content_finish(struct http_exchange *ex);

/* The ops of the /v1/media/{id}/ sub-resources other modules serve, for
 * api_media's sub-router: "shares" (GET, POST) and "shares/{user}"
 * (DELETE) from api_shares.c; "public-links" (POST) from api_links.c.
 * NULL when the method is not one of them (api_media answers 405). */
const struct http_route_ops *api_shares_media_route(int method, const char *rest);
const struct http_route_ops *api_links_media_route(int method);
/* The ops for /v1/media/{id}/versions (rest "versions") and
 * .../versions/{n}/restore (rest "versions/..."), or NULL (405). */
const struct http_route_ops *api_versions_media_route(int method, const char *rest);

/* tus expiry sweep on loop thread t: every expiration/4 (clamped to
 * 100 ms .. 30 s) it removes unfinished uploads whose expires_at passed,
 * with their spool files (catalog_tus_expired/catalog_tus_delete), skipping
 * any upload a request is using. Start once, from the thread that runs t's
 * loop or before the server runs (http_worker: loop 0); stop after
 * http_server_run() returned, before http_server_destroy() (safe when
 * never started). */
void tus_sweep_start(struct http_thread *t, const struct dr_config *cfg);
void tus_sweep_stop(void);

#endif

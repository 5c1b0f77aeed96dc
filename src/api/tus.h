/* tus.h - the tus 1.0.0 resumable upload endpoint, /v1/uploads.
 *
 * Core protocol plus the extensions creation, creation-with-upload,
 * creation-defer-length, termination, checksum (sha1, sha256) and
 * expiration. A finished upload becomes an upload job (catalog_tus_finish)
 * whose id the last PATCH returns in the Upload-Job header. The header
 * grammar lives in tus_header.h; the wire behaviour is described in
 * docs/UPLOADS.md.
 */
#ifndef DRIPD_TUS_H
#define DRIPD_TUS_H

struct http_thread;
struct dr_config;

/* Register the /v1/uploads routes with the router (router_add). Call once,
 * before the server starts. */
void tus_register_routes(void);

/* Start the expiry sweep on loop thread t: every expiration/4 (clamped to
 * 100 ms .. 30 s) it removes unfinished uploads whose expires_at passed,
 * with their spool files (catalog_tus_expired/catalog_tus_delete), skipping
 * any upload a request is using. Call once, from the thread that runs t's
 * loop or before the server runs (http_worker: loop 0). */
void tus_sweep_start(struct http_thread *t, const struct dr_config *cfg);
/* Stop it (after http_server_run() returned, before http_server_destroy()).
 * Safe when never started. */
void tus_sweep_stop(void);

#endif

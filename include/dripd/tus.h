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

struct http_server;
struct dr_config;

/* Register the /v1/uploads routes with the router (router_add). Call once,
 * before the server starts. */
void tus_register_routes(void);

/* Start the expiry sweep (removes expired unfinished uploads and their
 * spool files every few seconds) on one loop thread of srv. Idempotent;
 * the first tus request starts it too if this was never called. Call
 * after http_server_create(). */
void tus_server_started(struct http_server *srv, const struct dr_config *cfg);

#endif

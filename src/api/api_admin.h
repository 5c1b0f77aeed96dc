/* api_admin.h - admin-only routes: usage report and scrub control.
 *
 *   GET  /v1/admin/usage   users ranked by bytes: {"users":[{"user","files","bytes"}]}
 *   POST /v1/admin/scrub   ask the pipeline to verify every stored object (202)
 *   GET  /v1/admin/scrub   progress and findings of the last scrub
 *
 * Scrub hand-off: the http worker writes <data_dir>/run/scrub.request and
 * wakes the pipeline; the pipeline's scrub (scrub.c) reports into
 * <data_dir>/run/scrub.json (replaced atomically), which GET returns.
 */
#ifndef DRIPD_API_ADMIN_H
#define DRIPD_API_ADMIN_H

void api_admin_register_routes(void);

#endif

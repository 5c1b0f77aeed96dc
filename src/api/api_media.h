/* api_media.h - the media and jobs routes of the HTTP API.
 *
 *   GET    /v1/media?folder=/x          folder listing
 *   GET    /v1/media/{id}               one media
 *   PATCH  /v1/media/{id}               move/rename {"path":"/new/name.ext"}
 *   DELETE /v1/media/{id}               delete row, cache entry and object
 *   POST   /v1/media/{id}/shares        share {"user":"bob"}
 *   POST   /v1/media/{id}/download      warm the cache (download job)
 *   GET    /v1/media/{id}/content       handed to api_content (api_content.h)
 *   GET    /v1/jobs/{id}                one job
 *
 * docs/API.md is the reference for bodies and status codes.
 */
#ifndef DRIPD_API_MEDIA_H
#define DRIPD_API_MEDIA_H

#include <jansson.h>

struct dr_media;
struct dr_job;

/* router_add() every route above. Call once, before the server starts. */
void api_media_register_routes(void);

/* A media as the API shows it to viewer (new reference, caller owns):
 * {"id","path","name","folder","size","sha256","content_type","state",
 *  "owner","created_at","uploaded_at","shared"}; times RFC 3339, absent
 * values null, "shared" true when viewer is not the owner. */
json_t *api_media_json(const struct dr_media *m, const char *viewer);
/* A job as GET /v1/jobs/{id} shows it (new reference, caller owns):
 * {"id","kind","state","stage","media_id","attempts","error",
 *  "created_at","updated_at"}. */
json_t *api_job_json(const struct dr_job *j);

#endif

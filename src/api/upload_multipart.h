/* upload_multipart.h - POST /v1/files/{folder}: multipart/form-data
 * uploads of one or more parts named "file" into the caller's folder,
 * committed as one ingest batch (202 {"uploads":[{"media":..,"job":..}]}).
 * The streaming parser itself is multipart.h.
 */
#ifndef DRIPD_UPLOAD_MULTIPART_H
#define DRIPD_UPLOAD_MULTIPART_H

/* At most this many file parts per request (each holds a spool fd until
 * the batch commits). */
#define UPLOAD_MULTIPART_MAX_FILES 100

/* Register POST /v1/files and POST /v1/files/ (router_add). Call once,
 * before the server starts. */
void upload_multipart_register_routes(void);

#endif

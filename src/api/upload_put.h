/* upload_put.h - PUT /v1/files/{path}: a raw request body becomes a file
 * at that path in the caller's tree (202 + job once the bytes and the job
 * are durable). See src/upload_put.c for the flow and docs/HTTP.md for the
 * back-pressure design. */
#ifndef DRIPD_UPLOAD_PUT_H
#define DRIPD_UPLOAD_PUT_H

/* Register the route (router_add("PUT", "/v1/files/", auth)). Call once
 * before the server starts. */
void upload_put_register_routes(void);

#endif

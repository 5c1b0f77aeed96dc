/* web.h - serves the embedded web UI (web_assets.h) at "/". */
#ifndef DRIPD_WEB_H
#define DRIPD_WEB_H

#include "web_assets.h"

/* Registers GET "/" (the UI and its static files; the catch-all for GET). */
void web_register_routes(void);
/* The asset for a request path ("/" -> "/index.html"), or NULL. */
const struct web_asset *web_find(const char *path);
/* The Content-Security-Policy every UI response carries. */
extern const char web_csp[];

#endif

/* web_assets.h - the web UI's static files, embedded in the binary at build
 * time by scripts/embed-web.sh from web/public/ (so the daemon never needs
 * node or a web root on disk). Read-only tables; any thread. */
#ifndef DRIPD_WEB_ASSETS_H
#define DRIPD_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path;         /* "/index.html", "/app.js" */
    const char *content_type; /* "text/html; charset=utf-8" */
    const unsigned char *data;
    size_t len;
    const char *etag; /* "\"<16 hex of sha256>\"" */
};

extern const struct web_asset web_assets[];
extern const size_t web_assets_count;

#endif

/* cors.c - Cross-Origin Resource Sharing (cors.h).
 *
 * What: an Origin is allowed when cors.origins lists it (compared without
 * regard to case; "*" allows every origin) or when it is the page's own
 * origin (its authority is the one the request was addressed to). An
 * allowed origin is echoed in Access-Control-Allow-Origin (never "*":
 * echoing works for every client and the answer then says Vary: Origin),
 * without Access-Control-Allow-Credentials: the API authenticates with a
 * bearer header, never with cookies. A refused origin gets no CORS
 * headers at all: the browser withholds the answer from the script, and
 * a same-origin request needs none.
 *
 * Threads: any loop thread; pure functions of the config and the request.
 */
#include "cors.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "dripd/config.h"
#include "dripd/http.h"

bool cors_allowed(const struct http_exchange *ex, const char *origin)
{
    const struct dr_config *cfg = http_cfg(ex);
    for (size_t i = 0; i < cfg->cors.n_origins; i++) {
        const char *o = cfg->cors.origins[i];
        if (strcmp(o, "*") == 0 || strcasecmp(o, origin) == 0)
            return true;
    }
    const char *host = http_req(ex)->host;
    const char *rest = NULL;
    if (strncasecmp(origin, "http://", 7) == 0)
        rest = origin + 7;
    else if (strncasecmp(origin, "https://", 8) == 0)
        rest = origin + 8;
    return rest != NULL && host != NULL && strcasecmp(rest, host) == 0;
}

bool cors_apply(struct http_exchange *ex, const char *origin)
{
    http_add_header(ex, "Vary", "Origin");
    if (!cors_allowed(ex, origin))
        return false;
    http_add_header(ex, "Access-Control-Allow-Origin", origin);
    http_add_header(ex, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
    return true;
}

void cors_add_preflight(struct http_exchange *ex, const char *methods)
{
    bool has_options = strstr(methods, "OPTIONS") != NULL;
    http_add_headerf(ex, "Access-Control-Allow-Methods", "%s%s%s", methods,
                     has_options || methods[0] == '\0' ? "" : ", ", has_options ? "" : "OPTIONS");
    http_add_header(ex, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
    http_add_header(ex, "Access-Control-Max-Age", CORS_MAX_AGE);
}

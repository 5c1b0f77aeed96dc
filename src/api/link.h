/* link.h - signed download links: a media's content URL that works
 * without an Authorization header, for a limited time.
 *
 * Why: a browser's own download manager (streaming to disk, progress,
 * pause) follows a plain URL and cannot add a bearer header, and a bearer
 * token must never appear in a URL. So POST /v1/media/{id}/link returns
 *
 *   /v1/media/{id}/content?user=U&expires=E&sig=S
 *
 * where E is a Unix time in seconds and S the hex HMAC-SHA256, keyed with
 * U's bearer token, of "dripd-link-v1\n{id}\n{U}\n{E}". Like an S3
 * presigned URL it grants GET/HEAD of that one media, as U, until E.
 * Keying with the token means: no new secret to keep or share between
 * nodes (they all have the config), rotating a token revokes its links,
 * and a link reveals nothing that helps recover the token. Access is
 * still checked as U at request time, so a removed share stops the link.
 */
#ifndef DRIPD_LINK_H
#define DRIPD_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "dripd/config.h"
#include "dripd/id.h"

#define DR_LINK_DEFAULT_TTL 300 /* seconds */
#define DR_LINK_MAX_TTL 86400

enum link_verdict {
    LINK_OK = 0,
    LINK_BAD = -1,     /* malformed, unknown user, or the signature does not match */
    LINK_EXPIRED = -2, /* signature good, but E is in the past */
};

/* The link's path and query for u and media_id, valid until expires
 * (Unix seconds). Caller frees. */
char *link_make(const struct dr_user *u, const char *media_id, int64_t expires);

/* Check the query values of a request for media_id at time now (Unix
 * seconds). On LINK_OK *user is the configured user the link speaks for.
 * Never says which part was wrong beyond bad/expired; constant-time
 * signature compare. */
enum link_verdict link_check(const struct dr_config *cfg, const char *media_id, const char *user,
                             const char *expires, const char *sig, int64_t now,
                             const struct dr_user **out);

/* Public links (GET /p/{token}, stored in the catalog: catalog_links.h)
 * use the same idea: the token is the link's id followed by the
 * unpadded base64url HMAC-SHA256, keyed with the owner's bearer token, of
 * "dripd-public-link-v1\n{id}" (43 characters). The catalog holds no
 * secret, the owner's link list can show every URL again, and rotating
 * the owner's token invalidates their public links, as it does their
 * signed ones. */
#define DR_PUBLIC_MAC_LEN 43
#define DR_PUBLIC_TOKEN_LEN (DR_ID_LEN + DR_PUBLIC_MAC_LEN)

/* The token of public link id, owned by u. */
void link_public_token(const struct dr_user *u, const char *link_id,
                       char out[DR_PUBLIC_TOKEN_LEN + 1]);
/* The link id a token names (not checked yet); false when token cannot
 * be one. */
bool link_public_id(const char *token, char id[DR_ID_LEN + 1]);
/* Is token the one of its link id for owner u? Constant-time compare. */
bool link_public_verify(const struct dr_user *u, const char *token);

#endif

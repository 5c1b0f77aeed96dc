/* link.c - signed download links and the tokens of public links (see
 * link.h for the formats and why they are keyed with the user's token).
 *
 * Both sides compute the same MAC with OpenSSL's one-shot HMAC(); the
 * verifier compares in constant time and checks the expiry only after the
 * signature, so an attacker learns nothing from which check failed first
 * beyond "expired" for links that were genuinely issued.
 */
#include "link.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dripd/util.h"

#define LINK_LABEL "dripd-link-v1"
#define SIG_HEX 64

/* false (and no MAC) when the message would not fit: never sign a cut one */
static bool sign(const struct dr_user *u, const char *media_id, int64_t expires,
                 char out[SIG_HEX + 1])
{
    char msg[512];
    int n = snprintf(msg, sizeof msg, LINK_LABEL "\n%s\n%s\n%lld", media_id, u->name,
                     (long long)expires);
    if (n < 0 || (size_t)n >= sizeof msg)
        return false;
    uint8_t mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), u->token, (int)strlen(u->token), (const uint8_t *)msg, (size_t)n, mac, &len);
    dr_hex(mac, sizeof mac, out);
    return true;
}

char *link_make(const struct dr_user *u, const char *media_id, int64_t expires)
{
    char sig[SIG_HEX + 1];
    if (!sign(u, media_id, expires, sig))
        abort(); /* a media id and a configured user name always fit */
    return xasprintf("/v1/media/%s/content?user=%s&expires=%lld&sig=%s", media_id, u->name,
                     (long long)expires, sig);
}

enum link_verdict link_check(const struct dr_config *cfg, const char *media_id, const char *user,
                             const char *expires, const char *sig, int64_t now,
                             const struct dr_user **out)
{
    *out = NULL;
    if (cfg == NULL || media_id == NULL || user == NULL || expires == NULL || sig == NULL)
        return LINK_BAD;
    char *end = NULL;
    errno = 0;
    long long e = strtoll(expires, &end, 10);
    if (end == expires || *end != '\0' || errno != 0 || e <= 0 || strlen(sig) != SIG_HEX)
        return LINK_BAD;
    const struct dr_user *u = config_find_user(cfg, user);
    if (u == NULL || u->token == NULL)
        return LINK_BAD;
    char want[SIG_HEX + 1];
    if (!sign(u, media_id, (int64_t)e, want) || !dr_consttime_eq(want, SIG_HEX, sig, SIG_HEX))
        return LINK_BAD;
    if ((int64_t)e < now)
        return LINK_EXPIRED;
    *out = u;
    return LINK_OK;
}

/* ---- public links ---- */

#define PUBLIC_LABEL "dripd-public-link-v1"

void link_public_token(const struct dr_user *u, const char *link_id,
                       char out[DR_PUBLIC_TOKEN_LEN + 1])
{
    char msg[64];
    int n = snprintf(msg, sizeof msg, PUBLIC_LABEL "\n%.*s", DR_ID_LEN, link_id);
    uint8_t mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), u->token, (int)strlen(u->token), (const uint8_t *)msg, (size_t)n, mac, &len);
    char b64[48];
    EVP_EncodeBlock((unsigned char *)b64, mac, sizeof mac); /* 44 chars, one '=' */
    for (char *c = b64; *c; c++)
        *c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
    memcpy(out, link_id, DR_ID_LEN);
    memcpy(out + DR_ID_LEN, b64, DR_PUBLIC_MAC_LEN);
    out[DR_PUBLIC_TOKEN_LEN] = '\0';
}

bool link_public_id(const char *token, char id[DR_ID_LEN + 1])
{
    if (token == NULL || strlen(token) != DR_PUBLIC_TOKEN_LEN)
        return false;
    memcpy(id, token, DR_ID_LEN);
    id[DR_ID_LEN] = '\0';
    return dr_id_valid(id);
}

bool link_public_verify(const struct dr_user *u, const char *token)
{
    char id[DR_ID_LEN + 1], want[DR_PUBLIC_TOKEN_LEN + 1];
    if (u == NULL || u->token == NULL || !link_public_id(token, id))
        return false;
    link_public_token(u, id, want);
    return dr_consttime_eq(want, DR_PUBLIC_TOKEN_LEN, token, DR_PUBLIC_TOKEN_LEN);
}

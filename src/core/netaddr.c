/* netaddr.c - IP addresses and CIDR blocks (netaddr.h).
 *
 * What: text <-> bits for the addresses of `trusted_proxies`, of
 * connection peers and of X-Forwarded-For / Forwarded entries, and the
 * prefix match between them. inet_pton does the literal parsing, so only
 * the forms it accepts pass (no "1.2.3" shorthands, no zone ids).
 *
 * Threads: pure functions, no state.
 */
#include "dripd/netaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int dr_addr_parse(const char *s, size_t len, struct dr_addr *out)
{
    char buf[DR_ADDR_STRLEN];
    memset(out, 0, sizeof *out);
    if (len >= 2 && s[0] == '[' && s[len - 1] == ']') {
        s++;
        len -= 2;
        if (len == 0 || len >= sizeof buf || memchr(s, ':', len) == NULL)
            return -EINVAL;
    }
    if (len == 0 || len >= sizeof buf)
        return -EINVAL;
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (memchr(buf, ':', len) == NULL) {
        if (inet_pton(AF_INET, buf, out->a) != 1)
            return -EINVAL;
        out->family = DR_AF_INET;
        return 0;
    }
    uint8_t a6[16];
    if (inet_pton(AF_INET6, buf, a6) != 1)
        return -EINVAL;
    if (memcmp(a6, v4_mapped, sizeof v4_mapped) == 0) {
        memcpy(out->a, a6 + 12, 4);
        out->family = DR_AF_INET;
    } else {
        memcpy(out->a, a6, 16);
        out->family = DR_AF_INET6;
    }
    return 0;
}

int dr_addr_parse_peer(const char *remote, struct dr_addr *out)
{
    memset(out, 0, sizeof *out);
    if (remote == NULL)
        return -EINVAL;
    if (strcmp(remote, "unix") == 0) {
        out->family = DR_AF_UNIX;
        return 0;
    }
    const char *colon = strrchr(remote, ':');
    if (remote[0] == '[') {
        const char *close = strchr(remote, ']');
        if (close == NULL)
            return -EINVAL;
        return dr_addr_parse(remote, (size_t)(close - remote) + 1, out);
    }
    size_t len = colon != NULL ? (size_t)(colon - remote) : strlen(remote);
    return dr_addr_parse(remote, len, out);
}

static unsigned addr_bits(const struct dr_addr *a)
{
    return a->family == DR_AF_INET ? 32 : 128;
}

int dr_cidr_parse(const char *s, struct dr_cidr *out, const char **why)
{
    const char *w = NULL;
    memset(out, 0, sizeof *out);
    if (strcmp(s, "unix:") == 0) {
        out->addr.family = DR_AF_UNIX;
        return 0;
    }
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (dr_addr_parse(s, alen, &out->addr) < 0) {
        w = "an IP address or CIDR block (10.0.0.0/8, 2001:db8::/32, 127.0.0.1) or unix:";
        goto bad;
    }
    unsigned max = addr_bits(&out->addr);
    /* "::ffff:10.0.0.0/104" names v4 bits as v6 ones: count from the v4 part */
    bool mapped = out->addr.family == DR_AF_INET && memchr(s, ':', alen) != NULL;
    out->bits = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t n = strlen(p);
        if (n == 0 || n > 3 || strspn(p, "0123456789") != n) {
            w = "a prefix length after '/' (0-32 for IPv4, 0-128 for IPv6)";
            goto bad;
        }
        unsigned v = (unsigned)atoi(p);
        if (mapped) {
            if (v < 96 || v > 128) {
                w = "a prefix length of 96-128 for an IPv4-mapped block";
                goto bad;
            }
            v -= 96;
        }
        if (v > max) {
            w = out->addr.family == DR_AF_INET ? "a prefix length of 0-32 for IPv4"
                                               : "a prefix length of 0-128 for IPv6";
            goto bad;
        }
        out->bits = v;
    }
    /* host bits set: "10.0.0.1/8" */
    for (unsigned i = out->bits; i < max; i++) {
        if (out->addr.a[i / 8] & (0x80u >> (i % 8))) {
            w = "a block whose address has no bits set past the prefix (10.0.0.0/8, not "
                "10.0.0.1/8)";
            goto bad;
        }
    }
    return 0;
bad:
    if (why != NULL)
        *why = w;
    memset(out, 0, sizeof *out);
    return -EINVAL;
}

bool dr_cidr_match(const struct dr_cidr *c, const struct dr_addr *a)
{
    if (c->addr.family == DR_AF_NONE || c->addr.family != a->family)
        return false;
    if (a->family == DR_AF_UNIX)
        return true;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(c->addr.a, a->a, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (c->addr.a[full] & mask) == (a->a[full] & mask);
}

void dr_addr_format(const struct dr_addr *a, char *buf, size_t len)
{
    if (len == 0)
        return;
    switch (a->family) {
    case DR_AF_INET:
        if (inet_ntop(AF_INET, a->a, buf, (socklen_t)len) == NULL)
            snprintf(buf, len, "-");
        break;
    case DR_AF_INET6:
        if (inet_ntop(AF_INET6, a->a, buf, (socklen_t)len) == NULL)
            snprintf(buf, len, "-");
        break;
    case DR_AF_UNIX:
        snprintf(buf, len, "unix");
        break;
    default:
        snprintf(buf, len, "-");
        break;
    }
}

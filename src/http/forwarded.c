/* forwarded.c - trusted proxies and what they say (forwarded.h).
 *
 * What: the compiled `trusted_proxies` list, and parsers for RFC 7239
 * Forwarded (elements separated by ',', pairs by ';', values a token or
 * a quoted-string) and the de-facto X-Forwarded-For/-Proto/-Host. The
 * parsers are strict about structure (an unterminated quote, a pair
 * without '=', a repeated parameter in one element: the whole header is
 * ignored) and lenient about one thing real proxies do: an unquoted
 * for=/host= value with ':' or '[' ']' in it (nginx's
 * `for=$remote_addr;host=$host` without quotes).
 *
 * Threads: the compiled list is immutable after creation; everything
 * else is pure. Memory: fixed-size arrays on the stack, bounded by
 * FWD_MAX_HOPS entries; nothing is allocated per request.
 */
#include "forwarded.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dripd/util.h"

struct fwd_trust {
    struct dr_cidr *blocks;
    size_t n;
};

int fwd_trust_new(char *const *cidrs, size_t n, struct fwd_trust **out)
{
    struct fwd_trust *t = xcalloc(1, sizeof *t);
    t->blocks = xcalloc(n ? n : 1, sizeof *t->blocks);
    for (size_t i = 0; i < n; i++) {
        if (dr_cidr_parse(cidrs[i], &t->blocks[i], NULL) < 0) {
            fwd_trust_free(t);
            *out = NULL;
            return -EINVAL;
        }
    }
    t->n = n;
    *out = t;
    return 0;
}

void fwd_trust_free(struct fwd_trust *t)
{
    if (t == NULL)
        return;
    free(t->blocks);
    free(t);
}

bool fwd_trust_empty(const struct fwd_trust *t)
{
    return t == NULL || t->n == 0;
}

bool fwd_trusted(const struct fwd_trust *t, const struct dr_addr *a)
{
    if (t == NULL)
        return false;
    for (size_t i = 0; i < t->n; i++)
        if (dr_cidr_match(&t->blocks[i], a))
            return true;
    return false;
}

/* ---- small lexing helpers ---- */

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

bool fwd_host_valid(const char *s, size_t n)
{
    if (n == 0 || n > FWD_HOST_MAX)
        return false;
    size_t i = 0;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return false;
        struct dr_addr a;
        size_t hl = (size_t)(close - s) + 1;
        if (dr_addr_parse(s, hl, &a) < 0 || a.family != DR_AF_INET6)
            return false;
        i = hl;
    } else {
        for (; i < n && s[i] != ':'; i++) {
            char c = s[i];
            bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '-' || c == '_';
            if (!ok)
                return false;
        }
        if (i == 0)
            return false;
    }
    if (i == n)
        return true;
    if (s[i] != ':' || n - i - 1 < 1 || n - i - 1 > 5)
        return false;
    for (size_t j = i + 1; j < n; j++)
        if (s[j] < '0' || s[j] > '9')
            return false;
    return atoi(s + i + 1) <= 65535;
}

/* A node of for= or an X-Forwarded-For entry: an address with an optional
 * port, or a name ("unknown", an obfuscated "_id"). 1: an address in *a
 * (text in out); 0: a name (in out); -1: malformed. */
static int parse_node(const char *s, size_t n, struct dr_addr *a, char *out, size_t outlen)
{
    memset(a, 0, sizeof *a);
    if (n == 0)
        return -1;
    if (dr_addr_parse(s, n, a) == 0) { /* bare v4, bare v6, [v6] */
        dr_addr_format(a, out, outlen);
        return 1;
    }
    size_t hl = n;
    if (s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (close == NULL)
            return -1;
        hl = (size_t)(close - s) + 1;
    } else {
        const char *colon = memchr(s, ':', n);
        if (colon != NULL)
            hl = (size_t)(colon - s);
    }
    if (hl < n) { /* ":port" (digits, or an obfuscated "_port") */
        if (s[hl] != ':' || hl + 1 == n)
            return -1;
        for (size_t i = hl + 1; i < n; i++)
            if (!(s[i] >= '0' && s[i] <= '9') &&
                !(s[hl + 1] == '_' && is_tchar((unsigned char)s[i])))
                return -1;
    }
    if (dr_addr_parse(s, hl, a) == 0) {
        dr_addr_format(a, out, outlen);
        return 1;
    }
    /* "unknown" or "_" 1*(ALPHA / DIGIT / "." / "_" / "-") */
    if (hl >= outlen)
        return -1;
    bool name = hl == 7 && strncasecmp(s, "unknown", 7) == 0;
    if (!name && s[0] == '_' && hl > 1) {
        name = true;
        for (size_t i = 1; i < hl; i++) {
            char c = s[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-'))
                name = false;
        }
    }
    if (!name)
        return -1;
    memcpy(out, s, hl);
    out[hl] = '\0';
    memset(a, 0, sizeof *a);
    return 0;
}

/* ---- Forwarded (RFC 7239) ---- */

struct fel {
    char node[FWD_HOST_MAX + 1];
    char proto[8];
    char host[FWD_HOST_MAX + 1];
    bool has_for, has_proto, has_host;
};

/* A value: token (plus ':' '[' ']', see the top) or quoted-string, into
 * buf. Returns the position after it, or NULL. */
static const char *read_value(const char *p, char *buf, size_t len)
{
    size_t n = 0;
    if (*p == '"') {
        p++;
        while (*p != '"') {
            if (*p == '\0')
                return NULL;
            if (*p == '\\') {
                p++;
                if (*p == '\0')
                    return NULL;
            }
            unsigned char c = (unsigned char)*p;
            if ((c < 0x20 && c != '\t') || c == 0x7f || n + 1 >= len)
                return NULL;
            buf[n++] = *p++;
        }
        p++;
    } else {
        while (is_tchar((unsigned char)*p) || *p == ':' || *p == '[' || *p == ']') {
            if (n + 1 >= len)
                return NULL;
            buf[n++] = *p++;
        }
        if (n == 0)
            return NULL;
    }
    buf[n] = '\0';
    return p;
}

/* Parse the whole header into els (at most FWD_MAX_HOPS). 0, or -EINVAL. */
static int parse_forwarded(const char *s, struct fel *els, size_t *n_out)
{
    size_t n = 0;
    const char *p = s;
    *n_out = 0;
    for (;;) {
        if (n == FWD_MAX_HOPS)
            return -EINVAL;
        struct fel *e = &els[n];
        memset(e, 0, sizeof *e);
        for (;;) { /* pairs of one element */
            p = skip_ows(p);
            if (*p == ';') {
                p++;
                continue;
            }
            if (*p == ',' || *p == '\0')
                break;
            const char *name = p;
            while (is_tchar((unsigned char)*p))
                p++;
            size_t nl = (size_t)(p - name);
            if (nl == 0 || *p != '=')
                return -EINVAL;
            p++;
            char val[FWD_HOST_MAX + 1];
            p = read_value(p, val, sizeof val);
            if (p == NULL)
                return -EINVAL;
            if (nl == 3 && strncasecmp(name, "for", 3) == 0) {
                if (e->has_for)
                    return -EINVAL;
                e->has_for = true;
                snprintf(e->node, sizeof e->node, "%s", val);
            } else if (nl == 5 && strncasecmp(name, "proto", 5) == 0) {
                if (e->has_proto)
                    return -EINVAL;
                e->has_proto = true;
                snprintf(e->proto, sizeof e->proto, "%.7s", val);
            } else if (nl == 4 && strncasecmp(name, "host", 4) == 0) {
                if (e->has_host)
                    return -EINVAL;
                e->has_host = true;
                snprintf(e->host, sizeof e->host, "%s", val);
            } /* by= and extensions: not used */
            p = skip_ows(p);
            if (*p == ';') {
                p++;
                continue;
            }
            if (*p != ',' && *p != '\0')
                return -EINVAL;
        }
        n++;
        if (*p == '\0')
            break;
        p++; /* ',' */
    }
    *n_out = n;
    return 0;
}

static const char *proto_word(const char *s, size_t n)
{
    if (n == 4 && strncasecmp(s, "http", 4) == 0)
        return "http";
    if (n == 5 && strncasecmp(s, "https", 5) == 0)
        return "https";
    return NULL;
}

static void set_host(struct fwd_view *out, const char *s, size_t n)
{
    if (fwd_host_valid(s, n)) {
        memcpy(out->host, s, n);
        out->host[n] = '\0';
    }
}

static bool resolve_forwarded(const struct fwd_trust *t, const char *h, struct fwd_view *out)
{
    struct fel els[FWD_MAX_HOPS];
    size_t n = 0;
    if (parse_forwarded(h, els, &n) < 0 || n == 0)
        return false;
    for (size_t k = n; k-- > 0;) {
        const struct fel *e = &els[k];
        out->hops++;
        /* the outermost trusted word on proto and host wins */
        if (e->has_proto) {
            const char *w = proto_word(e->proto, strlen(e->proto));
            if (w != NULL)
                snprintf(out->proto, sizeof out->proto, "%s", w);
        }
        if (e->has_host)
            set_host(out, e->host, strlen(e->host));
        if (!e->has_for) {
            snprintf(out->client, sizeof out->client, "unknown");
            break;
        }
        struct dr_addr a;
        int kind = parse_node(e->node, strlen(e->node), &a, out->client, sizeof out->client);
        if (kind < 0) {
            snprintf(out->client, sizeof out->client, "unknown");
            break;
        }
        if (kind == 0 || !fwd_trusted(t, &a))
            break; /* the client */
    }
    return true;
}

/* ---- X-Forwarded-* ---- */

/* The last comma-separated value of a list, trimmed: [*s, *s + *n). */
static bool last_value(const char *h, const char **s, size_t *n)
{
    const char *c = strrchr(h, ',');
    const char *b = skip_ows(c ? c + 1 : h);
    size_t len = strlen(b);
    while (len > 0 && (b[len - 1] == ' ' || b[len - 1] == '\t'))
        len--;
    *s = b;
    *n = len;
    return len > 0;
}

static void resolve_xff(const struct fwd_trust *t, const char *xff, struct fwd_view *out)
{
    const char *starts[FWD_MAX_HOPS];
    size_t lens[FWD_MAX_HOPS];
    size_t n = 0;
    const char *p = xff;
    for (;;) {
        if (n == FWD_MAX_HOPS)
            return; /* too long to believe */
        const char *b = skip_ows(p);
        const char *c = strchr(b, ',');
        size_t len = c ? (size_t)(c - b) : strlen(b);
        while (len > 0 && (b[len - 1] == ' ' || b[len - 1] == '\t'))
            len--;
        starts[n] = b;
        lens[n] = len;
        n++;
        if (c == NULL)
            break;
        p = c + 1;
    }
    for (size_t k = n; k-- > 0;) {
        struct dr_addr a;
        out->hops++;
        int kind = parse_node(starts[k], lens[k], &a, out->client, sizeof out->client);
        if (kind < 0) {
            snprintf(out->client, sizeof out->client, "unknown");
            break;
        }
        if (kind == 0 || !fwd_trusted(t, &a))
            break;
    }
}

void fwd_resolve(const struct fwd_trust *t, const char *forwarded, const char *xff, const char *xfp,
                 const char *xfh, struct fwd_view *out)
{
    memset(out, 0, sizeof *out);
    if (forwarded != NULL && resolve_forwarded(t, forwarded, out))
        return;
    memset(out, 0, sizeof *out);
    if (xff != NULL)
        resolve_xff(t, xff, out);
    const char *s;
    size_t n;
    if (xfp != NULL && last_value(xfp, &s, &n)) {
        const char *w = proto_word(s, n);
        if (w != NULL)
            snprintf(out->proto, sizeof out->proto, "%s", w);
    }
    if (xfh != NULL && last_value(xfh, &s, &n))
        set_host(out, s, n);
}

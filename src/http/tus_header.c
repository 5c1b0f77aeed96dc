/* tus_header.c - tus 1.0.0 header grammar (see tus_header.h).
 *
 * Pure functions: no I/O, no global state, no threads. Everything they
 * accept is bounded by the HTTP head limits (limits.max_header_size), and
 * Upload-Metadata additionally by TUS_METADATA_MAX_PAIRS.
 */
#include "dripd/tus_header.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dripd/util.h"

int tus_parse_uint(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0')
        return -EINVAL;
    uint64_t v = 0;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

long tus_base64_decode(const char *in, size_t len, uint8_t *out)
{
    /* Padding: only at the end, only to complete a quantum. */
    size_t pad = 0;
    while (len > 0 && in[len - 1] == '=' && pad < 2) {
        len--;
        pad++;
    }
    if (pad > 0 && (len + pad) % 4 != 0)
        return -EINVAL;
    if (len % 4 == 1)
        return -EINVAL;
    long n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)in[i]);
        if (v < 0)
            return -EINVAL;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    return n;
}

void tus_metadata_clear(struct tus_metadata *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++) {
        free(m->pairs[i].key);
        free(m->pairs[i].value);
    }
    free(m->pairs);
    m->pairs = NULL;
    m->n = 0;
}

int tus_parse_metadata(const char *hdr, struct tus_metadata *out, char *err, size_t errlen)
{
    struct tus_metadata m = {0};
    const char *s = hdr != NULL ? hdr : "";
    m.pairs = xcalloc(TUS_METADATA_MAX_PAIRS, sizeof(*m.pairs));
    int rc = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t')
            s++;
        const char *end = strchr(s, ',');
        if (end == NULL)
            end = s + strlen(s);
        const char *e = end;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e == s) {
            if (*end == '\0' && m.n == 0)
                break; /* empty header */
            dr_set_err(err, errlen, "Upload-Metadata has an empty pair");
            rc = -EINVAL;
            goto out;
        }
        const char *sp = memchr(s, ' ', (size_t)(e - s));
        const char *kend = sp != NULL ? sp : e;
        for (const char *k = s; k < kend; k++) {
            if (*k <= 0x20 || *k >= 0x7f) {
                dr_set_err(err, errlen, "Upload-Metadata key must be printable ASCII");
                rc = -EINVAL;
                goto out;
            }
        }
        if (m.n == TUS_METADATA_MAX_PAIRS) {
            dr_set_err(err, errlen, "Upload-Metadata has more than %d pairs",
                       TUS_METADATA_MAX_PAIRS);
            rc = -EINVAL;
            goto out;
        }
        struct tus_meta_pair *p = &m.pairs[m.n];
        p->key = xstrndup(s, (size_t)(kend - s));
        for (size_t i = 0; i < m.n; i++) {
            if (strcmp(m.pairs[i].key, p->key) == 0) {
                dr_set_err(err, errlen, "Upload-Metadata key '%s' appears twice", p->key);
                free(p->key);
                p->key = NULL;
                rc = -EINVAL;
                goto out;
            }
        }
        const char *v = sp != NULL ? sp + 1 : e;
        while (v < e && (*v == ' ' || *v == '\t'))
            v++;
        size_t vlen = (size_t)(e - v);
        p->value = xmalloc(vlen * 3 / 4 + 2);
        long dl = tus_base64_decode(v, vlen, (uint8_t *)p->value);
        if (dl < 0) {
            dr_set_err(err, errlen, "Upload-Metadata value of '%s' is not base64", p->key);
            free(p->key);
            free(p->value);
            p->key = p->value = NULL;
            rc = -EINVAL;
            goto out;
        }
        p->value[dl] = '\0';
        p->len = (size_t)dl;
        p->has_value = sp != NULL;
        m.n++;
        if (*end == '\0')
            break;
        s = end + 1;
    }
out:
    if (rc < 0) {
        tus_metadata_clear(&m);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    *out = m;
    return 0;
}

const struct tus_meta_pair *tus_metadata_get(const struct tus_metadata *m, const char *key)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->pairs[i].key, key) == 0)
            return &m->pairs[i];
    return NULL;
}

const char *tus_metadata_str(const struct tus_metadata *m, const char *key)
{
    const struct tus_meta_pair *p = tus_metadata_get(m, key);
    if (p == NULL || memchr(p->value, '\0', p->len) != NULL)
        return NULL;
    return p->value;
}

int tus_parse_checksum(const char *hdr, struct tus_checksum *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (hdr == NULL) {
        dr_set_err(err, errlen, "no Upload-Checksum");
        return -EINVAL;
    }
    const char *sp = strchr(hdr, ' ');
    if (sp == NULL || sp == hdr) {
        dr_set_err(err, errlen, "Upload-Checksum must be '<algorithm> <base64 digest>'");
        return -EINVAL;
    }
    size_t al = (size_t)(sp - hdr);
    enum tus_algo algo;
    size_t want;
    if (al == 4 && strncasecmp(hdr, "sha1", 4) == 0) {
        algo = TUS_ALGO_SHA1;
        want = 20;
    } else if (al == 6 && strncasecmp(hdr, "sha256", 6) == 0) {
        algo = TUS_ALGO_SHA256;
        want = 32;
    } else {
        dr_set_err(err, errlen, "unsupported checksum algorithm '%.*s' (use %s)",
                   (int)DR_MIN(al, 32), hdr, TUS_CHECKSUM_ALGORITHMS);
        return -ENOTSUP;
    }
    const char *d = sp + 1;
    size_t dl = strlen(d);
    uint8_t buf[64];
    if (dl > 64) {
        dr_set_err(err, errlen, "Upload-Checksum digest is too long");
        return -EINVAL;
    }
    long n = tus_base64_decode(d, dl, buf);
    if (n < 0 || (size_t)n != want) {
        dr_set_err(err, errlen, "Upload-Checksum digest is not a base64 %s digest",
                   algo == TUS_ALGO_SHA1 ? "sha1" : "sha256");
        return -EINVAL;
    }
    out->algo = algo;
    out->len = want;
    memcpy(out->digest, buf, want);
    return 0;
}

void tus_http_date(int64_t ms, char *buf, size_t len)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(buf, len, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
             months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* fuzz_tus.c - libFuzzer target for the tus header grammar.
 *
 * The input is split at the first two '\n' into an Upload-Metadata value,
 * an Upload-Checksum value and an Upload-Length/Offset value. Oracles:
 * parsed metadata, re-encoded, parses back to the same pairs; a parsed
 * checksum has the digest length of its algorithm; a parsed number prints
 * back as the input without leading zeros.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/tus_header.h"
#include "dripd/util.h"

static char *b64(const char *in, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = xmalloc(len * 4 / 3 + 5);
    size_t n = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)(uint8_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)(uint8_t)in[i + 1] << 8;
        if (i + 2 < len)
            v |= (uint8_t)in[i + 2];
        out[n++] = tab[(v >> 18) & 63];
        out[n++] = tab[(v >> 12) & 63];
        out[n++] = i + 1 < len ? tab[(v >> 6) & 63] : '=';
        out[n++] = i + 2 < len ? tab[v & 63] : '=';
    }
    out[n] = '\0';
    return out;
}

static void check_metadata(const char *h)
{
    struct tus_metadata m, m2;
    if (tus_parse_metadata(h, &m, NULL, 0) != 0)
        return;
    char *enc = xstrdup("");
    for (size_t i = 0; i < m.n; i++) {
        char *v = b64(m.pairs[i].value, m.pairs[i].len);
        char *next = m.pairs[i].has_value
                         ? xasprintf("%s%s%s %s", enc, i ? "," : "", m.pairs[i].key, v)
                         : xasprintf("%s%s%s", enc, i ? "," : "", m.pairs[i].key);
        free(v);
        free(enc);
        enc = next;
    }
    if (tus_parse_metadata(enc, &m2, NULL, 0) != 0 || m2.n != m.n)
        abort();
    for (size_t i = 0; i < m.n; i++) {
        if (strcmp(m.pairs[i].key, m2.pairs[i].key) != 0 || m.pairs[i].len != m2.pairs[i].len ||
            memcmp(m.pairs[i].value, m2.pairs[i].value, m.pairs[i].len) != 0 ||
            m.pairs[i].value[m.pairs[i].len] != '\0')
            abort();
        const char *s = tus_metadata_str(&m, m.pairs[i].key);
        if (s != NULL && strlen(s) != m.pairs[i].len)
            abort();
    }
    free(enc);
    tus_metadata_clear(&m);
    tus_metadata_clear(&m2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = xstrndup((const char *)data, size); /* stops at an embedded NUL */
    char *ck = strchr(s, '\n');
    char *num = NULL;
    if (ck != NULL) {
        *ck++ = '\0';
        num = strchr(ck, '\n');
        if (num != NULL)
            *num++ = '\0';
    }
    check_metadata(s);
    if (ck != NULL) {
        struct tus_checksum c;
        if (tus_parse_checksum(ck, &c, NULL, 0) == 0 &&
            !((c.algo == TUS_ALGO_SHA1 && c.len == 20) ||
              (c.algo == TUS_ALGO_SHA256 && c.len == 32)))
            abort();
    }
    if (num != NULL) {
        uint64_t v = 0;
        if (tus_parse_uint(num, &v) == 0) {
            char back[32];
            snprintf(back, sizeof(back), "%" PRIu64, v);
            const char *z = num;
            while (*z == '0' && z[1] != '\0')
                z++;
            if (strcmp(back, z) != 0 || v > (uint64_t)INT64_MAX)
                abort();
        }
        char date[40];
        tus_http_date((int64_t)(v % 253402300799ULL) * 1000, date, sizeof(date));
        if (strlen(date) != 29)
            abort();
    }
    free(s);
    return 0;
}

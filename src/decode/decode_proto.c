/* decode_proto.c - wire format of the dripd-decode request and response
 * (see decode_proto.h).
 *
 * A message is "DRDQ" (request) or "DRDR" (response), a version byte, then
 * fixed-width little-endian fields in a fixed order; strings are stored as
 * their whole fixed-size field, NUL-padded (anything else after the NUL
 * is refused, so a message has exactly one encoding). Encoding and parsing go through
 * a bounded cursor that never reads or writes past the buffer, and the
 * parser checks every count, enum and string, so a garbled or hostile
 * message (a helper taken over by a file it decodes writes the response)
 * is refused as a whole, never half-used.
 *
 * Threads: pure functions, no state.
 */
#include "dripd/decode_proto.h"

#include <errno.h>
#include <string.h>

#define VERSION 2

struct cur {
    uint8_t *w;       /* writer */
    const uint8_t *r; /* reader */
    size_t len, off;
    bool bad;
};

static void put(struct cur *c, const void *p, size_t n)
{
    if (c->bad || c->len - c->off < n) {
        c->bad = true;
        return;
    }
    memcpy(c->w + c->off, p, n);
    c->off += n;
}

static void get(struct cur *c, void *p, size_t n)
{
    if (c->bad || c->len - c->off < n) {
        c->bad = true;
        memset(p, 0, n);
        return;
    }
    memcpy(p, c->r + c->off, n);
    c->off += n;
}

static void put_u(struct cur *c, uint64_t v, int bytes)
{
    uint8_t b[8];
    for (int i = 0; i < bytes; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    put(c, b, (size_t)bytes);
}

static uint64_t get_u(struct cur *c, int bytes)
{
    uint8_t b[8];
    get(c, b, (size_t)bytes);
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)b[i] << (8 * i);
    return v;
}

/* A fixed-size string field: NUL-terminated inside it, printable ASCII. */
static bool str_ok(const char *s, size_t cap)
{
    const char *end = memchr(s, '\0', cap);
    if (end == NULL)
        return false;
    for (const char *p = s; p < end; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return false;
    return true;
}

static void put_str(struct cur *c, const char *s, size_t cap)
{
    if (!str_ok(s, cap)) {
        c->bad = true;
        return;
    }
    char tmp[DECODE_REASON_LEN];
    memset(tmp, 0, sizeof tmp);
    memcpy(tmp, s, strlen(s));
    put(c, tmp, cap);
}

/* A parsed string field must also be NUL-padded: one message, one encoding. */
static void get_str(struct cur *c, char *s, size_t cap)
{
    get(c, s, cap);
    if (!c->bad && !str_ok(s, cap))
        c->bad = true;
    for (size_t i = c->bad ? cap : strlen(s); i < cap; i++)
        if (s[i] != '\0')
            c->bad = true;
    s[cap - 1] = '\0';
}

bool decode_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= DECODE_NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = name[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

const char *decode_format_mime(int format)
{
    switch (format) {
    case DECODE_FMT_WEBP:
        return "image/webp";
    case DECODE_FMT_JPEG:
        return "image/jpeg";
    case DECODE_FMT_PNG:
        return "image/png";
    default:
        return NULL;
    }
}

static void header(struct cur *c, const char *magic)
{
    put(c, magic, 4);
    put_u(c, VERSION, 1);
}

static bool header_ok(struct cur *c, const char *magic)
{
    char m[4];
    get(c, m, 4);
    unsigned v = (unsigned)get_u(c, 1);
    return !c->bad && memcmp(m, magic, 4) == 0 && v == VERSION;
}

int decode_req_encode(const struct decode_req *r, uint8_t *buf, size_t cap)
{
    struct cur c = {.w = buf, .len = cap};
    if (r->n_variants > DECODE_MAX_VARIANTS)
        return -EINVAL;
    header(&c, "DRDQ");
    put_u(&c, r->flags, 4);
    put_u(&c, r->max_pixels, 8);
    put_u(&c, r->memory, 8);
    put_u(&c, r->timeout_ms, 4);
    put_u(&c, r->n_variants, 1);
    for (uint32_t i = 0; i < r->n_variants; i++) {
        const struct decode_variant_req *v = &r->v[i];
        if (!decode_name_ok(v->name) || decode_format_mime(v->format) == NULL || v->max == 0 ||
            v->max > 16384 || v->quality == 0 || v->quality > 100)
            return -EINVAL;
        put_str(&c, v->name, DECODE_NAME_LEN);
        put_u(&c, v->max, 4);
        put_u(&c, v->format, 1);
        put_u(&c, v->quality, 1);
    }
    return c.bad ? -EINVAL : (int)c.off;
}

int decode_req_parse(const uint8_t *buf, size_t len, struct decode_req *out)
{
    struct cur c = {.r = buf, .len = len};
    memset(out, 0, sizeof *out);
    if (len > DECODE_MSG_MAX || !header_ok(&c, "DRDQ"))
        return -EBADMSG;
    out->flags = (uint32_t)get_u(&c, 4);
    out->max_pixels = get_u(&c, 8);
    out->memory = get_u(&c, 8);
    out->timeout_ms = (uint32_t)get_u(&c, 4);
    out->n_variants = (uint32_t)get_u(&c, 1);
    if (c.bad || (out->flags & ~DECODE_F_KNOWN) != 0 || out->n_variants > DECODE_MAX_VARIANTS)
        return -EBADMSG;
    for (uint32_t i = 0; i < out->n_variants; i++) {
        struct decode_variant_req *v = &out->v[i];
        get_str(&c, v->name, DECODE_NAME_LEN);
        v->max = (uint32_t)get_u(&c, 4);
        v->format = (uint8_t)get_u(&c, 1);
        v->quality = (uint8_t)get_u(&c, 1);
        if (c.bad || !decode_name_ok(v->name) || decode_format_mime(v->format) == NULL ||
            v->max == 0 || v->max > 16384 || v->quality == 0 || v->quality > 100)
            return -EBADMSG;
    }
    return c.off == len ? 0 : -EBADMSG;
}

int decode_resp_encode(const struct decode_resp *r, uint8_t *buf, size_t cap)
{
    struct cur c = {.w = buf, .len = cap};
    if (r->n_variants > DECODE_MAX_VARIANTS)
        return -EINVAL;
    header(&c, "DRDR");
    put_u(&c, (uint32_t)r->status, 4);
    put_str(&c, r->reason, DECODE_REASON_LEN);
    put_str(&c, r->mime, DECODE_MIME_LEN);
    put_u(&c, r->kind, 1);
    put_u(&c, r->have, 4);
    put_u(&c, r->width, 4);
    put_u(&c, r->height, 4);
    put_u(&c, r->duration_ms, 8);
    put_u(&c, r->pages, 4);
    put_u(&c, r->frames, 4);
    put_str(&c, r->taken, DECODE_TEXT_LEN);
    put_str(&c, r->camera, DECODE_TEXT_LEN);
    put_u(&c, r->n_variants, 1);
    for (uint32_t i = 0; i < r->n_variants; i++) {
        const struct decode_variant_resp *v = &r->v[i];
        put_u(&c, (uint32_t)v->status, 4);
        put_str(&c, v->reason, DECODE_REASON_LEN);
        put_u(&c, v->width, 4);
        put_u(&c, v->height, 4);
        put_u(&c, v->size, 8);
    }
    put_u(&c, r->strip, 1);
    put_u(&c, r->strip_size, 8);
    put_str(&c, r->strip_reason, DECODE_REASON_LEN);
    return c.bad ? -EINVAL : (int)c.off;
}

int decode_resp_parse(const uint8_t *buf, size_t len, struct decode_resp *out)
{
    struct cur c = {.r = buf, .len = len};
    memset(out, 0, sizeof *out);
    if (len > DECODE_MSG_MAX || !header_ok(&c, "DRDR"))
        return -EBADMSG;
    out->status = (int32_t)(uint32_t)get_u(&c, 4);
    get_str(&c, out->reason, DECODE_REASON_LEN);
    get_str(&c, out->mime, DECODE_MIME_LEN);
    out->kind = (uint32_t)get_u(&c, 1);
    out->have = (uint32_t)get_u(&c, 4);
    out->width = (uint32_t)get_u(&c, 4);
    out->height = (uint32_t)get_u(&c, 4);
    out->duration_ms = get_u(&c, 8);
    out->pages = (uint32_t)get_u(&c, 4);
    out->frames = (uint32_t)get_u(&c, 4);
    get_str(&c, out->taken, DECODE_TEXT_LEN);
    get_str(&c, out->camera, DECODE_TEXT_LEN);
    out->n_variants = (uint32_t)get_u(&c, 1);
    if (c.bad || out->status > 0 || out->status < -4095 || out->kind > DECODE_KIND_PDF ||
        out->n_variants > DECODE_MAX_VARIANTS || (out->have & ~0x3fu) != 0)
        return -EBADMSG;
    for (uint32_t i = 0; i < out->n_variants; i++) {
        struct decode_variant_resp *v = &out->v[i];
        v->status = (int32_t)(uint32_t)get_u(&c, 4);
        get_str(&c, v->reason, DECODE_REASON_LEN);
        v->width = (uint32_t)get_u(&c, 4);
        v->height = (uint32_t)get_u(&c, 4);
        v->size = get_u(&c, 8);
        if (c.bad || v->status > 0 || v->status < -4095)
            return -EBADMSG;
    }
    out->strip = (uint32_t)get_u(&c, 1);
    out->strip_size = get_u(&c, 8);
    get_str(&c, out->strip_reason, DECODE_REASON_LEN);
    if (c.bad || out->strip > DECODE_STRIP_FAILED ||
        (out->strip != DECODE_STRIP_DONE && out->strip_size != 0))
        return -EBADMSG;
    return c.off == len ? 0 : -EBADMSG;
}

/* fuzz_multipart.c - libFuzzer target for the multipart/form-data parser.
 *
 * Input: "<Content-Type value>\n<body>". The first byte of the body also
 * picks a chunk size. The body is parsed twice, in one piece and in small
 * chunks; both runs must give the same result and the same callback trace
 * (a split delimiter must never change what the parser sees). The
 * Content-Type line is also run through mp_parse_disposition.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/multipart.h"
#include "dripd/util.h"

struct trace {
    char *buf;
    size_t len, cap;
};

static void add(struct trace *t, const void *d, size_t n)
{
    if (t->len + n > t->cap) {
        t->cap = (t->len + n) * 2 + 64;
        t->buf = xrealloc(t->buf, t->cap);
    }
    memcpy(t->buf + t->len, d, n);
    t->len += n;
}

static int on_begin(void *arg, const struct mp_part *p)
{
    add(arg, "\x01", 1);
    add(arg, p->name, strlen(p->name) + 1);
    if (p->filename != NULL)
        add(arg, p->filename, strlen(p->filename) + 1);
    if (p->content_type != NULL)
        add(arg, p->content_type, strlen(p->content_type) + 1);
    return 0;
}

static int on_data(void *arg, const char *d, size_t n)
{
    if (n == 0)
        abort(); /* the contract: len > 0 */
    add(arg, d, n);
    return 0;
}

static int on_end(void *arg)
{
    add(arg, "\x02", 1);
    return 0;
}

static const struct mp_callbacks CB = {on_begin, on_data, on_end};

static int run(const char *boundary, const uint8_t *body, size_t len, size_t chunk, struct trace *t)
{
    struct mp_parser *p;
    if (mp_parser_create(boundary, &CB, t, &p) < 0)
        abort(); /* mp_boundary_from_content_type validated it */
    int rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        rc = mp_parser_feed(p, (const char *)body + off, n);
    }
    if (rc == 0)
        rc = mp_parser_finish(p);
    mp_parser_destroy(p);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nl = memchr(data, '\n', size);
    if (nl == NULL || nl - data > 512)
        return 0;
    char *ct = xstrndup((const char *)data, (size_t)(nl - data));
    const uint8_t *body = nl + 1;
    size_t blen = size - (size_t)(nl - data) - 1;

    char *ty = NULL, *name = NULL, *fn = NULL;
    if (mp_parse_disposition(ct, &ty, &name, &fn, NULL, 0) == 0) {
        if (ty == NULL || strlen(ty) == 0)
            abort();
        free(ty);
        free(name);
        free(fn);
    }

    char boundary[MP_BOUNDARY_MAX + 1];
    if (mp_boundary_from_content_type(ct, boundary, NULL, 0) == 0) {
        if (strlen(boundary) == 0 || strlen(boundary) > MP_BOUNDARY_MAX)
            abort();
        struct trace a = {0}, b = {0};
        size_t chunk = blen > 0 ? (size_t)(body[0] % 13) + 1 : 1;
        int ra = run(boundary, body, blen, blen > 0 ? blen : 1, &a);
        int rb = run(boundary, body, blen, chunk, &b);
        if (ra != rb || a.len != b.len || (a.len > 0 && memcmp(a.buf, b.buf, a.len) != 0))
            abort();
        free(a.buf);
        free(b.buf);
    }
    free(ct);
    return 0;
}

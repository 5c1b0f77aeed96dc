/* test_multipart.c - the streaming multipart/form-data parser. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/multipart.h"
#include "dripd/util.h"

/* ---- a recorder: every callback appends to one text log ---- */

struct rec {
    char *log;
    size_t len, cap;
    int stop_at_data; /* stop with -ENOSPC on the n-th data call (0 = never) */
    int data_calls;
};

static void rec_add(struct rec *r, const char *s, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        r->cap = (r->len + n + 1) * 2;
        r->log = xrealloc(r->log, r->cap);
    }
    memcpy(r->log + r->len, s, n);
    r->len += n;
    r->log[r->len] = '\0';
}

static int on_begin(void *arg, const struct mp_part *p)
{
    char *s = xasprintf("[B name=%s fn=%s ct=%s]", p->name, p->filename ? p->filename : "(none)",
                        p->content_type ? p->content_type : "(none)");
    rec_add(arg, s, strlen(s));
    free(s);
    return 0;
}

static int on_data(void *arg, const char *d, size_t n)
{
    struct rec *r = arg;
    ck_assert_uint_gt(n, 0);
    if (r->stop_at_data && ++r->data_calls >= r->stop_at_data)
        return -ENOSPC;
    rec_add(r, d, n);
    return 0;
}

static int on_end(void *arg)
{
    rec_add(arg, "[E]", 3);
    return 0;
}

static const struct mp_callbacks CB = {on_begin, on_data, on_end};

/* Parse body in chunks of the given sizes (the last size repeats);
 * returns the finish/feed result and the log (caller frees). */
static int parse_chunks(const char *boundary, const char *body, size_t len, const size_t *sizes,
                        size_t nsizes, char **log, char *err, size_t errlen)
{
    struct rec r = {0};
    rec_add(&r, "", 0);
    struct mp_parser *p = NULL;
    ck_assert_int_eq(mp_parser_create(boundary, &CB, &r, &p), 0);
    size_t off = 0, k = 0;
    int rc = 0;
    while (off < len && rc == 0) {
        size_t n = sizes[k < nsizes ? k : nsizes - 1];
        k++;
        if (n > len - off)
            n = len - off;
        rc = mp_parser_feed(p, body + off, n);
        off += n;
    }
    if (rc == 0)
        rc = mp_parser_finish(p);
    if (err != NULL)
        snprintf(err, errlen, "%s", mp_parser_error(p));
    mp_parser_destroy(p);
    *log = r.log;
    return rc;
}

static int parse_whole(const char *boundary, const char *body, size_t len, char **log)
{
    size_t all = len ? len : 1;
    return parse_chunks(boundary, body, len, &all, 1, log, NULL, 0);
}

static int parse_err(const char *boundary, const char *body, char *err, size_t errlen)
{
    char *log;
    size_t all = strlen(body) ? strlen(body) : 1;
    int rc = parse_chunks(boundary, body, strlen(body), &all, 1, &log, err, errlen);
    free(log);
    return rc;
}

#define BND "----WebKitFormBoundary7MA4YWxkTrZu0gW"

/* A body like curl -F sends, with data that nearly looks like delimiters. */
static const char SAMPLE[] =
    "--" BND "\r\n"
    "Content-Disposition: form-data; name=\"note\"\r\n"
    "\r\n"
    "hello\r\n--" BND "x is not a delimiter? no: it is junk-free data\r\n"
    "--" BND "\r\n"
    "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
    "Content-Type: text/plain\r\n"
    "\r\n"
    "line1\r\n\r\r\n-\r\n--\r\n--"
    "----WebKitFormBoundary7MA4YWxkTrZu0g\r\nend\r"
    "\r\n--" BND "\r\n"
    "content-disposition: form-data; name=file; filename*=UTF-8''%e2%82%ac%20rates.bin\r\n"
    "\r\n"
    "\r\n"
    "\r\n--" BND "--\r\n"
    "epilogue is ignored\r\n";

/* The first part's data above contains "\r\n--BND" followed by 'x': that is
 * NOT allowed by RFC 2046, so the real sample uses a safe variant. */
static char *sample_body(size_t *len)
{
    char *s = xstrdup(SAMPLE);
    char *bad = strstr(s, "hello\r\n--" BND "x");
    ck_assert_ptr_nonnull(bad);
    bad[6] = 'N'; /* "hello\rN--BNDx...": no CRLF before the dashes */
    *len = strlen(s);
    return s;
}

static const char SAMPLE_LOG[] =
    "[B name=note fn=(none) ct=(none)]"
    "hello\rN--" BND "x is not a delimiter? no: it is junk-free data[E]"
    "[B name=file fn=a.txt ct=text/plain]"
    "line1\r\n\r\r\n-\r\n--\r\n------WebKitFormBoundary7MA4YWxkTrZu0g\r\nend\r[E]"
    "[B name=file fn=\xe2\x82\xac rates.bin ct=(none)]"
    "\r\n[E]";

START_TEST(whole_body)
{
    size_t len;
    char *body = sample_body(&len);
    char *log;
    ck_assert_int_eq(parse_whole(BND, body, len, &log), 0);
    ck_assert_str_eq(log, SAMPLE_LOG);
    free(log);
    free(body);
}
END_TEST

/* Split the body into two reads at every byte position. */
START_TEST(split_every_position)
{
    size_t len;
    char *body = sample_body(&len);
    for (size_t cut = 0; cut <= len; cut++) {
        size_t sizes[2] = {cut ? cut : len, len};
        char *log;
        ck_assert_int_eq(parse_chunks(BND, body, len, sizes, 2, &log, NULL, 0), 0);
        ck_assert_msg(strcmp(log, SAMPLE_LOG) == 0, "split at %zu gave %s", cut, log);
        free(log);
    }
    free(body);
}
END_TEST

/* Three reads: every pair of cut points (covers a delimiter cut twice). */
START_TEST(split_three_ways)
{
    size_t len;
    char *body = sample_body(&len);
    for (size_t a = 1; a < len; a += 3) {
        for (size_t b = a + 1; b < len; b += 7) {
            size_t sizes[3] = {a, b - a, len};
            char *log;
            ck_assert_int_eq(parse_chunks(BND, body, len, sizes, 3, &log, NULL, 0), 0);
            ck_assert_msg(strcmp(log, SAMPLE_LOG) == 0, "cuts %zu,%zu", a, b);
            free(log);
        }
    }
    free(body);
}
END_TEST

START_TEST(byte_by_byte)
{
    size_t len;
    char *body = sample_body(&len);
    size_t one = 1;
    char *log;
    ck_assert_int_eq(parse_chunks(BND, body, len, &one, 1, &log, NULL, 0), 0);
    ck_assert_str_eq(log, SAMPLE_LOG);
    free(log);
    free(body);
}
END_TEST

START_TEST(preamble_padding_and_leading_crlf)
{
    const char *b = "xyz";
    char *log;
    const char body[] = "this is a preamble\r\n--xyz  \t\r\n"
                        "Content-Disposition: form-data; name=\"a\"\r\n\r\n"
                        "1\r\n--xyz\r\n"
                        "Content-Disposition: form-data; name=\"b\"\r\n\r\n"
                        "\r\n--xyz--";
    ck_assert_int_eq(parse_whole(b, body, sizeof(body) - 1, &log), 0);
    ck_assert_str_eq(log, "[B name=a fn=(none) ct=(none)]1[E][B name=b fn=(none) ct=(none)][E]");
    free(log);
    const char body2[] = "\r\n--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\nq\r\n--xyz--";
    ck_assert_int_eq(parse_whole(b, body2, sizeof(body2) - 1, &log), 0);
    ck_assert_str_eq(log, "[B name=a fn=(none) ct=(none)]q[E]");
    free(log);
}
END_TEST

START_TEST(no_parts_and_folding)
{
    char *log;
    ck_assert_int_eq(parse_whole("b", "--b--", 5, &log), 0);
    ck_assert_str_eq(log, "");
    free(log);
    const char body[] =
        "--b\r\nContent-Disposition: form-data;\r\n name=\"x\";\r\n\tfilename=\"y\"\r\n"
        "X-Other: 1\r\n\r\nD\r\n--b--\r\n";
    ck_assert_int_eq(parse_whole("b", body, sizeof(body) - 1, &log), 0);
    ck_assert_str_eq(log, "[B name=x fn=y ct=(none)]D[E]");
    free(log);
}
END_TEST

START_TEST(malformed_bodies)
{
    char err[200];
    const char *cd = "Content-Disposition: form-data; name=\"f\"\r\n\r\n";
    char *body;

    /* truncated data: no final boundary */
    body = xasprintf("--b\r\n%sabc", cd);
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "final boundary"));
    free(body);
    /* ends right after a delimiter */
    body = xasprintf("--b\r\n%sabc\r\n--b", cd);
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), -EINVAL);
    free(body);
    body = xasprintf("--b\r\n%sabc\r\n--b\r\n", cd);
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "headers"));
    free(body);
    /* junk right after a boundary */
    body = xasprintf("--b\r\n%sabc\r\n--bX\r\n", cd);
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "after a boundary"));
    free(body);
    body = xasprintf("--b-x\r\n%s\r\n--b--", cd);
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), -EINVAL);
    free(body);
    body = xasprintf("--b \tx\r\n%s\r\n--b--", cd);
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), -EINVAL);
    free(body);
    body = xasprintf("--b\rx%s\r\n--b--", cd);
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), -EINVAL);
    free(body);
    /* no boundary at all */
    ck_assert_int_eq(parse_err("b", "just some text", err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "opening boundary"));
    ck_assert_int_eq(parse_err("b", "", err, sizeof(err)), -EINVAL);
    /* headers: bare LF, no disposition, not form-data, no name, NUL */
    ck_assert_int_eq(parse_err("b", "--b\r\nContent-Disposition: form-data; name=a\n\r\n\r\n--b--",
                               err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "bare LF"));
    ck_assert_int_eq(
        parse_err("b", "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", err, sizeof(err)),
        -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "no Content-Disposition"));
    ck_assert_int_eq(parse_err("b",
                               "--b\r\nContent-Disposition: attachment; name=a\r\n\r\n\r\n--b--",
                               err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(
        parse_err("b", "--b\r\nContent-Disposition: form-data\r\n\r\n\r\n--b--", err, sizeof(err)),
        -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "no name"));
    ck_assert_int_eq(parse_err("b", "--b\r\nNo colon here\r\n\r\n\r\n--b--", err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(parse_err("b",
                               "--b\r\n\tContent-Disposition: form-data; name=a\r\n\r\n\r\n--b--",
                               err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(parse_err("b",
                               "--b\r\nContent-Disposition: form-data; name=a\r\n"
                               "Content-Disposition: form-data; name=b\r\n\r\n\r\n--b--",
                               err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(parse_err("b",
                               "--b\r\nContent-Disposition: form-data; name=\"a\r\n\r\n\r\n--b--",
                               err, sizeof(err)),
                     -EINVAL);
    char nul[] = "--b\r\nContent-Disposition: form-data; name=a\r\nX: \0\r\n\r\n\r\n--b--";
    struct mp_parser *p;
    ck_assert_int_eq(mp_parser_create("b", &CB, NULL, &p), 0);
    ck_assert_int_eq(mp_parser_feed(p, nul, sizeof(nul) - 1), -EINVAL);
    ck_assert_int_eq(mp_parser_feed(p, "x", 1), -EINVAL); /* sticky */
    ck_assert_int_eq(mp_parser_finish(p), -EINVAL);
    mp_parser_destroy(p);
}
END_TEST

START_TEST(bounded_headers_and_preamble)
{
    char err[200];
    size_t big = MP_HEADER_MAX + 10;
    char *body = xmalloc(big + 100);
    int n = sprintf(body, "--b\r\nContent-Disposition: form-data; name=a\r\nX-Pad: ");
    memset(body + n, 'x', big);
    strcpy(body + n + big, "\r\n\r\n\r\n--b--");
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "larger than"));
    /* exactly at the cap is fine */
    size_t fixed = (size_t)n - 5 + 4; /* block minus "--b\r\n", plus CRLF CRLF */
    memset(body + n, 'x', MP_HEADER_MAX - fixed);
    strcpy(body + n + (MP_HEADER_MAX - fixed), "\r\n\r\nok\r\n--b--");
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), 0);
    free(body);

    body = xmalloc(MP_PREAMBLE_MAX + 100);
    memset(body, 'p', MP_PREAMBLE_MAX + 1);
    strcpy(body + MP_PREAMBLE_MAX + 1, "\r\n--b--");
    ck_assert_int_eq(parse_err("b", body, err, sizeof(err)), -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "opening boundary"));
    free(body);
}
END_TEST

START_TEST(callback_stops_parser)
{
    struct rec r = {.stop_at_data = 2};
    rec_add(&r, "", 0);
    struct mp_parser *p;
    ck_assert_int_eq(mp_parser_create("b", &CB, &r, &p), 0);
    const char *a = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nfirst";
    ck_assert_int_eq(mp_parser_feed(p, a, strlen(a)), 0);
    ck_assert_int_eq(mp_parser_feed(p, "second", 6), -ENOSPC);
    ck_assert_int_eq(mp_parser_feed(p, "third", 5), -ENOSPC);
    ck_assert_int_eq(mp_parser_finish(p), -ENOSPC);
    /* one part begun, its first piece delivered, nothing after the stop */
    ck_assert_str_eq(r.log, "[B name=a fn=(none) ct=(none)]first");
    mp_parser_destroy(p);
    free(r.log);
}
END_TEST

START_TEST(boundary_from_content_type)
{
    char b[MP_BOUNDARY_MAX + 1], err[200];
    ck_assert_int_eq(
        mp_boundary_from_content_type("multipart/form-data; boundary=abc", b, err, sizeof(err)), 0);
    ck_assert_str_eq(b, "abc");
    ck_assert_int_eq(
        mp_boundary_from_content_type(
            "Multipart/Form-Data;charset=utf-8; BOUNDARY=\"a b'()+_,-./:=?\"", b, err, sizeof(err)),
        0);
    ck_assert_str_eq(b, "a b'()+_,-./:=?");
    ck_assert_int_eq(
        mp_boundary_from_content_type(
            "multipart/form-data ; boundary=------------------------d74496d66958873e ;", b, err,
            sizeof(err)),
        0);
    ck_assert_str_eq(b, "------------------------d74496d66958873e");
    char seventy[80], ct[120];
    memset(seventy, 'z', 70);
    seventy[70] = '\0';
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%s", seventy);
    ck_assert_int_eq(mp_boundary_from_content_type(ct, b, err, sizeof(err)), 0);
    ck_assert_str_eq(b, seventy);
    snprintf(ct, sizeof(ct), "multipart/form-data; boundary=%sz", seventy);
    ck_assert_int_eq(mp_boundary_from_content_type(ct, b, err, sizeof(err)), -EINVAL);

    ck_assert_int_eq(mp_boundary_from_content_type("multipart/form-data", b, err, sizeof(err)),
                     -EINVAL);
    ck_assert_ptr_nonnull(strstr(err, "boundary"));
    ck_assert_int_eq(
        mp_boundary_from_content_type("multipart/form-data; boundary=", b, err, sizeof(err)),
        -EINVAL);
    ck_assert_int_eq(
        mp_boundary_from_content_type("multipart/form-data; boundary=\"\"", b, err, sizeof(err)),
        -EINVAL);
    ck_assert_int_eq(
        mp_boundary_from_content_type("multipart/form-data; boundary=\"ab \"", b, err, sizeof(err)),
        -EINVAL);
    ck_assert_int_eq(mp_boundary_from_content_type("multipart/form-data; boundary=\"a\rb\"", b, err,
                                                   sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(mp_boundary_from_content_type("multipart/form-data; boundary=a;boundary=b", b,
                                                   err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(
        mp_boundary_from_content_type("multipart/form-data; boundary=\"abc", b, err, sizeof(err)),
        -EINVAL);
    ck_assert_int_eq(
        mp_boundary_from_content_type("multipart/form-data boundary=abc", b, err, sizeof(err)),
        -EINVAL);
    ck_assert_int_eq(
        mp_boundary_from_content_type("multipart/form-datax; boundary=a", b, err, sizeof(err)),
        -ENOTSUP);
    ck_assert_int_eq(mp_boundary_from_content_type("text/plain", b, err, sizeof(err)), -ENOTSUP);
    ck_assert_int_eq(mp_boundary_from_content_type(NULL, b, err, sizeof(err)), -ENOTSUP);
    struct mp_parser *p;
    ck_assert_int_eq(mp_parser_create("bad\r", &CB, NULL, &p), -EINVAL);
    ck_assert_int_eq(mp_parser_create("", &CB, NULL, &p), -EINVAL);
}
END_TEST

static void disp_ok(const char *v, const char *type, const char *name, const char *fn)
{
    char *t, *n, *f, err[200];
    ck_assert_msg(mp_parse_disposition(v, &t, &n, &f, err, sizeof(err)) == 0, "%s: %s", v, err);
    ck_assert_str_eq(t, type);
    if (name)
        ck_assert_str_eq(n, name);
    else
        ck_assert_ptr_null(n);
    if (fn)
        ck_assert_str_eq(f, fn);
    else
        ck_assert_ptr_null(f);
    free(t);
    free(n);
    free(f);
}

static void disp_bad(const char *v)
{
    char *t = NULL, *n = NULL, *f = NULL, err[200];
    ck_assert_msg(mp_parse_disposition(v, &t, &n, &f, err, sizeof(err)) == -EINVAL, "%s", v);
    ck_assert_ptr_null(t);
}

START_TEST(content_disposition)
{
    disp_ok("form-data; name=\"file\"; filename=\"a.txt\"", "form-data", "file", "a.txt");
    disp_ok("Form-Data;name=file;filename=a.txt", "form-data", "file", "a.txt");
    disp_ok("form-data; name=\"f\"; filename=\"say \\\"hi\\\".txt\"", "form-data", "f",
            "say \"hi\".txt");
    disp_ok("form-data; name=\"f\"; filename=\"C:\\dir\\a.txt\"", "form-data", "f",
            "C:\\dir\\a.txt");
    disp_ok("form-data; name=\"f\"; filename=\"back\\\\slash\"", "form-data", "f", "back\\slash");
    disp_ok("form-data; name=\"f\"; filename=\"caf\xc3\xa9.txt\"", "form-data", "f",
            "caf\xc3\xa9.txt");
    disp_ok("form-data; name=f; filename=\"x.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt",
            "form-data", "f", "\xe2\x82\xac rates.txt");
    disp_ok("form-data; filename*=utf-8'en'a%2fb; name=f", "form-data", "f", "a/b");
    disp_ok("form-data; name=f; filename*=ISO-8859-1''caf%E9", "form-data", "f", "caf\xc3\xa9");
    disp_ok("form-data; name=\"\"; filename=\"\"", "form-data", "", "");
    disp_ok("form-data; name=a; size=123;", "form-data", "a", NULL);
    disp_ok("inline", "inline", NULL, NULL);

    disp_bad("");
    disp_bad("; name=a");
    disp_bad("form-data; name=\"a");
    disp_bad("form-data; name=a; name=b");
    disp_bad("form-data; name=a; filename=x; filename=y");
    disp_bad("form-data; name");
    disp_bad("form-data; name=");
    disp_bad("form-data name=a");
    disp_bad("form-data; =a");
    disp_bad("form-data; name=a b");
    disp_bad("form-data; name=a; filename*=UTF-8''%G1");
    disp_bad("form-data; name=a; filename*=UTF-8''%0");
    disp_bad("form-data; name=a; filename*=UTF-8''a%00b");
    disp_bad("form-data; name=a; filename*=KOI8-R''abc");
    disp_bad("form-data; name=a; filename*=abc");
    disp_bad("form-data; name=\"a\x01\"");
}
END_TEST

/* ---- how often on_part_data is called ---- */
struct calls {
    int data;
    size_t bytes;
    char last;
};

static int count_data(void *arg, const char *d, size_t n)
{
    struct calls *c = arg;
    c->data++;
    c->bytes += n;
    c->last = d[n - 1];
    return 0;
}

static const struct mp_callbacks COUNT_CB = {NULL, count_data, NULL};

/* Data full of CRs and of delimiter prefixes that fail (binary files
 * have a CR every ~256 bytes) goes to on_part_data in one call per
 * buffer fed: each call is a write(2) of the upload. A prefix that
 * straddles two buffers and fails is the one extra call. */
START_TEST(one_data_call_per_buffer)
{
    /* BND without its last byte: the whole delimiter would end the part */
    const char *near[] = {
        "\r",       "\r\n", "\r\n-", "\r\n--", "\r\n------WebKitFormBoundary7MA4YWxkTrZu0g",
        "\r\r\n--", "\n\r"};
    char *data = NULL;
    size_t dlen = 0;
    for (int k = 0; k < 2000; k++) {
        const char *piece = near[k % (sizeof near / sizeof *near)];
        char filler[16];
        int n = snprintf(filler, sizeof filler, "x%dy", k);
        data = xrealloc(data, dlen + strlen(piece) + (size_t)n + 1);
        memcpy(data + dlen, piece, strlen(piece));
        dlen += strlen(piece);
        memcpy(data + dlen, filler, (size_t)n);
        dlen += (size_t)n;
    }
    const char *head = "--" BND "\r\nContent-Disposition: form-data; name=\"f\"; "
                       "filename=\"b.bin\"\r\n\r\n";
    const char *tail = "\r\n--" BND "--\r\n";
    size_t hl = strlen(head), tl = strlen(tail), len = hl + dlen + tl;
    char *body = xmalloc(len);
    memcpy(body, head, hl);
    memcpy(body + hl, data, dlen);
    memcpy(body + hl + dlen, tail, tl);

    struct calls c = {0};
    struct mp_parser *p = NULL;
    ck_assert_int_eq(mp_parser_create(BND, &COUNT_CB, &c, &p), 0);
    ck_assert_int_eq(mp_parser_feed(p, body, len), 0);
    ck_assert_int_eq(mp_parser_finish(p), 0);
    mp_parser_destroy(p);
    ck_assert_int_eq(c.data, 1);
    ck_assert_uint_eq(c.bytes, dlen);

    /* the data in two buffers, split inside a delimiter prefix that fails
     * (BND but its last byte, then 'x'): the held bytes come as one extra
     * call */
    const char *cut = strstr(body + hl, "\r\n------WebKitFormBoundary7MA4YWxkTrZu0gx");
    ck_assert_ptr_nonnull(cut);
    size_t at = (size_t)(cut - body) + 5;
    memset(&c, 0, sizeof c);
    ck_assert_int_eq(mp_parser_create(BND, &COUNT_CB, &c, &p), 0);
    ck_assert_int_eq(mp_parser_feed(p, body, at), 0);
    ck_assert_int_eq(mp_parser_feed(p, body + at, len - at), 0);
    ck_assert_int_eq(mp_parser_finish(p), 0);
    mp_parser_destroy(p);
    ck_assert_int_eq(c.data, 3);
    ck_assert_uint_eq(c.bytes, dlen);
    free(body);
    free(data);
}
END_TEST

static Suite *multipart_suite(void)
{
    Suite *s = suite_create("multipart");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, whole_body);
    tcase_add_test(tc, split_every_position);
    tcase_add_test(tc, split_three_ways);
    tcase_add_test(tc, byte_by_byte);
    tcase_add_test(tc, preamble_padding_and_leading_crlf);
    tcase_add_test(tc, no_parts_and_folding);
    tcase_add_test(tc, malformed_bodies);
    tcase_add_test(tc, bounded_headers_and_preamble);
    tcase_add_test(tc, callback_stops_parser);
    tcase_add_test(tc, boundary_from_content_type);
    tcase_add_test(tc, content_disposition);
    tcase_add_test(tc, one_data_call_per_buffer);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(multipart_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

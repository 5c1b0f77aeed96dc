/* multipart.c - streaming multipart/form-data parser (see multipart.h).
 *
 * Design: a byte-level state machine. The delimiter searched for in part
 * data is CRLF "--" boundary; the body's first boundary may come without
 * the CRLF, so the preamble starts as if CRLF had just been seen. Because
 * a boundary never contains CR (RFC 2046 bchars), the only place a failed
 * partial match can restart is the byte that broke it; so the parser
 * never keeps data bytes of its own: bytes that looked like the start of
 * a delimiter are data on a mismatch, and stay in the buffer's run of data
 * (one on_part_data call per buffer, without copying: memchr finds the
 * CRs); only a partial match carried over from the previous buffer is
 * handed over straight out of the delimiter string (it is equal to its
 * prefix).
 *
 * Part headers are collected in a fixed MP_HEADER_MAX buffer, checked
 * (CRLF line ends, no NUL, no bare CR/LF), then parsed in place.
 *
 * Threads: none of its own; a parser is used by one thread at a time.
 * Never allocates while feeding, except the strings of one part's
 * Content-Disposition, freed before the next part begins.
 */
#include "dripd/multipart.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dripd/util.h"

#define MP_PADDING_MAX 64 /* spaces/tabs allowed after a boundary */

enum mp_state {
    S_PREAMBLE,    /* before the first delimiter */
    S_AFTER_DELIM, /* a delimiter just matched: "--", padding or CRLF next */
    S_CLOSE_DASH,  /* saw one '-' after the delimiter */
    S_PADDING,     /* spaces/tabs after the delimiter */
    S_PADDING_LF,  /* CR after the delimiter, LF must follow */
    S_HEADERS,     /* collecting the part's header block */
    S_DATA,        /* part data, searching for the delimiter */
    S_EPILOGUE,    /* after the close delimiter: ignored */
    S_ERROR,
};

struct mp_parser {
    const struct mp_callbacks *cb;
    void *arg;
    char delim[4 + MP_BOUNDARY_MAX + 1]; /* "\r\n--" boundary */
    size_t dlen;
    enum mp_state state;
    size_t matched; /* delimiter bytes matched so far */
    size_t count;   /* preamble or padding bytes seen */
    size_t parts;
    bool in_part;
    int err;
    char errmsg[160];
    size_t hlen;
    char hbuf[MP_HEADER_MAX + 1];
};

/* ---- small lexical helpers ---- */

static bool is_tchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 2046 bchars: DIGIT / ALPHA / "'" / "(" / ")" / "+" / "_" / "," /
 * "-" / "." / "/" / ":" / "=" / "?" / " " */
static bool is_bchar(unsigned char c)
{
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        return true;
    return c != 0 && strchr("'()+_,-./:=? ", c) != NULL;
}

static const char *skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

/* Parse one parameter value at *ps: a quoted-string or a token-like run.
 * In quoted strings a backslash escapes only '"' and '\' (browsers send
 * Windows paths with bare backslashes). Returns a heap copy or NULL with
 * err set; *ps moves past the value. */
static char *parse_value(const char **ps, char *err, size_t errlen)
{
    const char *s = *ps;
    if (*s == '"') {
        s++;
        size_t n = 0;
        char *out = xmalloc(strlen(s) + 1);
        for (;;) {
            unsigned char c = (unsigned char)*s;
            if (c == 0) {
                free(out);
                dr_set_err(err, errlen, "unterminated quoted string");
                return NULL;
            }
            if (c == '"') {
                s++;
                break;
            }
            if ((c < 0x20 && c != '\t') || c == 0x7f) {
                free(out);
                dr_set_err(err, errlen, "control character in quoted string");
                return NULL;
            }
            if (c == '\\' && (s[1] == '"' || s[1] == '\\'))
                c = (unsigned char)*++s;
            out[n++] = (char)c;
            s++;
        }
        out[n] = '\0';
        *ps = s;
        return out;
    }
    const char *start = s;
    while (*s != '\0') {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c == 0x7f || c == ';' || c == ',' || c == '"')
            break;
        s++;
    }
    if (s == start) {
        dr_set_err(err, errlen, "empty parameter value");
        return NULL;
    }
    *ps = s;
    return xstrndup(start, (size_t)(s - start));
}

/* Walk "; name=value" parameters after a media/disposition type. fn gets
 * the name (not NUL-terminated) and takes ownership of value. */
typedef int (*param_fn)(void *arg, const char *name, size_t nlen, char *value, char *err,
                        size_t errlen);

static int parse_params(const char *s, param_fn fn, void *arg, char *err, size_t errlen)
{
    for (;;) {
        s = skip_ows(s);
        if (*s == '\0')
            return 0;
        if (*s != ';') {
            dr_set_err(err, errlen, "expected ';' between parameters");
            return -EINVAL;
        }
        s = skip_ows(s + 1);
        if (*s == '\0')
            return 0; /* a trailing ';' is harmless */
        const char *name = s;
        while (is_tchar((unsigned char)*s))
            s++;
        size_t nlen = (size_t)(s - name);
        if (nlen == 0) {
            dr_set_err(err, errlen, "malformed parameter name");
            return -EINVAL;
        }
        s = skip_ows(s);
        if (*s != '=') {
            dr_set_err(err, errlen, "parameter '%.*s' has no value", (int)DR_MIN(nlen, 40), name);
            return -EINVAL;
        }
        s = skip_ows(s + 1);
        char *value = parse_value(&s, err, errlen);
        if (value == NULL)
            return -EINVAL;
        int rc = fn(arg, name, nlen, value, err, errlen);
        if (rc < 0)
            return rc;
    }
}

static bool name_is(const char *name, size_t nlen, const char *want)
{
    return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

/* ---- boundary ---- */

static int check_boundary(const char *b, char *err, size_t errlen)
{
    size_t n = strlen(b);
    if (n == 0 || n > MP_BOUNDARY_MAX) {
        dr_set_err(err, errlen, "boundary must be 1 to %d characters", MP_BOUNDARY_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        if (!is_bchar((unsigned char)b[i])) {
            dr_set_err(err, errlen, "boundary contains an invalid character");
            return -EINVAL;
        }
    }
    if (b[n - 1] == ' ') {
        dr_set_err(err, errlen, "boundary must not end with a space");
        return -EINVAL;
    }
    return 0;
}

struct ct_params {
    char *boundary;
};

static int ct_param(void *arg, const char *name, size_t nlen, char *value, char *err, size_t errlen)
{
    struct ct_params *cp = arg;
    if (!name_is(name, nlen, "boundary")) {
        free(value);
        return 0;
    }
    if (cp->boundary != NULL) {
        free(value);
        dr_set_err(err, errlen, "duplicate boundary parameter");
        return -EINVAL;
    }
    cp->boundary = value;
    return 0;
}

int mp_boundary_from_content_type(const char *ct, char out[MP_BOUNDARY_MAX + 1], char *err,
                                  size_t errlen)
{
    static const char type[] = "multipart/form-data";
    if (ct == NULL) {
        dr_set_err(err, errlen, "Content-Type must be multipart/form-data");
        return -ENOTSUP;
    }
    const char *s = skip_ows(ct);
    size_t tl = sizeof(type) - 1;
    if (strncasecmp(s, type, tl) != 0 ||
        (s[tl] != '\0' && s[tl] != ';' && s[tl] != ' ' && s[tl] != '\t')) {
        dr_set_err(err, errlen, "Content-Type must be multipart/form-data");
        return -ENOTSUP;
    }
    struct ct_params cp = {0};
    int rc = parse_params(s + tl, ct_param, &cp, err, errlen);
    if (rc < 0)
        goto out;
    if (cp.boundary == NULL) {
        dr_set_err(err, errlen, "multipart/form-data without a boundary parameter");
        rc = -EINVAL;
        goto out;
    }
    rc = check_boundary(cp.boundary, err, errlen);
    if (rc < 0)
        goto out;
    memcpy(out, cp.boundary, strlen(cp.boundary) + 1);
out:
    free(cp.boundary);
    return rc;
}

/* ---- Content-Disposition ---- */

struct disp_params {
    char *name;
    char *filename;
    char *filename_ext; /* decoded filename* */
};

/* RFC 5987 ext-value: charset "'" [language] "'" pct-encoded chars.
 * UTF-8 is kept as is; ISO-8859-1 is converted to UTF-8. */
static char *decode_ext_value(const char *v, char *err, size_t errlen)
{
    const char *q1 = strchr(v, '\'');
    const char *q2 = q1 != NULL ? strchr(q1 + 1, '\'') : NULL;
    if (q2 == NULL) {
        dr_set_err(err, errlen, "filename* is not charset'lang'value");
        return NULL;
    }
    size_t cl = (size_t)(q1 - v);
    bool latin1;
    if (cl == 5 && strncasecmp(v, "utf-8", 5) == 0) {
        latin1 = false;
    } else if (cl == 10 && strncasecmp(v, "iso-8859-1", 10) == 0) {
        latin1 = true;
    } else {
        dr_set_err(err, errlen, "filename* charset must be UTF-8 or ISO-8859-1");
        return NULL;
    }
    const char *s = q2 + 1;
    char *out = xmalloc(strlen(s) * 2 + 1);
    size_t n = 0;
    while (*s != '\0') {
        unsigned char c = (unsigned char)*s;
        if (c == '%') {
            int b = dr_hex_byte(s + 1);
            if (b < 0) {
                free(out);
                dr_set_err(err, errlen, "bad percent-encoding in filename*");
                return NULL;
            }
            c = (unsigned char)b;
            s += 3;
        } else {
            s++;
        }
        if (c == 0) {
            free(out);
            dr_set_err(err, errlen, "NUL in filename*");
            return NULL;
        }
        if (latin1 && c >= 0x80) {
            out[n++] = (char)(0xc0 | (c >> 6));
            out[n++] = (char)(0x80 | (c & 0x3f));
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
    return out;
}

static int disp_param(void *arg, const char *name, size_t nlen, char *value, char *err,
                      size_t errlen)
{
    struct disp_params *dp = arg;
    char **slot = NULL;
    if (name_is(name, nlen, "name")) {
        slot = &dp->name;
    } else if (name_is(name, nlen, "filename")) {
        slot = &dp->filename;
    } else if (name_is(name, nlen, "filename*")) {
        char *dec = decode_ext_value(value, err, errlen);
        free(value);
        if (dec == NULL)
            return -EINVAL;
        value = dec;
        slot = &dp->filename_ext;
    } else {
        free(value);
        return 0;
    }
    if (*slot != NULL) {
        dr_set_err(err, errlen, "duplicate '%.*s' parameter", (int)nlen, name);
        free(value);
        return -EINVAL;
    }
    *slot = value;
    return 0;
}

int mp_parse_disposition(const char *value, char **type, char **name, char **filename, char *err,
                         size_t errlen)
{
    const char *s = skip_ows(value);
    const char *t = s;
    while (is_tchar((unsigned char)*s))
        s++;
    if (s == t) {
        dr_set_err(err, errlen, "Content-Disposition has no type");
        return -EINVAL;
    }
    struct disp_params dp = {0};
    int rc = parse_params(s, disp_param, &dp, err, errlen);
    if (rc < 0) {
        free(dp.name);
        free(dp.filename);
        free(dp.filename_ext);
        return rc;
    }
    char *ty = xstrndup(t, (size_t)(s - t));
    for (char *c = ty; *c != '\0'; c++)
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    *type = ty;
    *name = dp.name;
    if (dp.filename_ext != NULL) {
        free(dp.filename);
        *filename = dp.filename_ext;
    } else {
        *filename = dp.filename;
    }
    return 0;
}

/* ---- the parser ---- */

static int fail(struct mp_parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct mp_parser *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
    va_end(ap);
    p->state = S_ERROR;
    p->err = -EINVAL;
    return p->err;
}

static int stopped(struct mp_parser *p, int rc)
{
    p->state = S_ERROR;
    p->err = rc < 0 ? rc : -ECANCELED;
    snprintf(p->errmsg, sizeof(p->errmsg), "stopped by the receiver (%s)", strerror(-p->err));
    return p->err;
}

int mp_parser_create(const char *boundary, const struct mp_callbacks *cb, void *arg,
                     struct mp_parser **out)
{
    if (boundary == NULL || check_boundary(boundary, NULL, 0) < 0)
        return -EINVAL;
    struct mp_parser *p = xcalloc(1, sizeof(*p));
    p->cb = cb;
    p->arg = arg;
    p->dlen = (size_t)snprintf(p->delim, sizeof(p->delim), "\r\n--%s", boundary);
    p->state = S_PREAMBLE;
    p->matched = 2; /* the body's start counts as a line start */
    *out = p;
    return 0;
}

void mp_parser_destroy(struct mp_parser *p)
{
    free(p);
}

const char *mp_parser_error(const struct mp_parser *p)
{
    return p->errmsg;
}

static int emit(struct mp_parser *p, const char *data, size_t len)
{
    if (len == 0 || p->cb == NULL || p->cb->on_part_data == NULL)
        return 0;
    int rc = p->cb->on_part_data(p->arg, data, len);
    return rc != 0 ? stopped(p, rc) : 0;
}

/* The header block is complete in hbuf[0..hlen) (ending in the empty
 * line); it was checked for NUL and bare CR/LF while collected. */
static int parse_headers(struct mp_parser *p)
{
    char *h = p->hbuf;
    size_t n = p->hlen - 2; /* drop the empty line's CRLF */
    h[n] = '\0';
    if (n > 0 && (h[0] == ' ' || h[0] == '\t'))
        return fail(p, "part header block starts with whitespace");
    /* Unfold obsolete line folding in place. */
    for (size_t i = 0; i + 2 < n; i++) {
        if (h[i] == '\r' && h[i + 1] == '\n' && (h[i + 2] == ' ' || h[i + 2] == '\t'))
            h[i] = h[i + 1] = ' ';
    }
    const char *disp = NULL, *ctype = NULL;
    char *line = h;
    while (*line != '\0') {
        char *eol = strstr(line, "\r\n");
        char *next;
        if (eol != NULL) {
            *eol = '\0';
            next = eol + 2;
        } else {
            next = line + strlen(line);
        }
        char *colon = strchr(line, ':');
        if (colon == NULL || colon == line)
            return fail(p, "malformed part header line");
        for (char *c = line; c < colon; c++)
            if (!is_tchar((unsigned char)*c))
                return fail(p, "malformed part header name");
        *colon = '\0';
        char *v = (char *)skip_ows(colon + 1);
        size_t vl = strlen(v);
        while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            v[--vl] = '\0';
        if (strcasecmp(line, "content-disposition") == 0) {
            if (disp != NULL)
                return fail(p, "duplicate Content-Disposition in a part");
            disp = v;
        } else if (strcasecmp(line, "content-type") == 0) {
            if (ctype != NULL)
                return fail(p, "duplicate Content-Type in a part");
            ctype = v;
        }
        line = next;
    }
    if (disp == NULL)
        return fail(p, "part %zu has no Content-Disposition", p->parts + 1);
    char *type = NULL, *name = NULL, *filename = NULL;
    char why[120];
    if (mp_parse_disposition(disp, &type, &name, &filename, why, sizeof(why)) < 0)
        return fail(p, "part %zu: bad Content-Disposition: %s", p->parts + 1, why);
    int rc = 0;
    if (strcmp(type, "form-data") != 0) {
        rc = fail(p, "part %zu: Content-Disposition is not form-data", p->parts + 1);
        goto out;
    }
    if (name == NULL) {
        rc = fail(p, "part %zu has no name", p->parts + 1);
        goto out;
    }
    p->parts++;
    p->in_part = true;
    if (p->cb != NULL && p->cb->on_part_begin != NULL) {
        struct mp_part part = {.name = name, .filename = filename, .content_type = ctype};
        int crc = p->cb->on_part_begin(p->arg, &part);
        if (crc != 0)
            rc = stopped(p, crc);
    }
out:
    free(type);
    free(name);
    free(filename);
    return rc;
}

static int delimiter_seen(struct mp_parser *p)
{
    p->state = S_AFTER_DELIM;
    p->matched = 0;
    p->count = 0;
    if (p->in_part) {
        p->in_part = false;
        if (p->cb != NULL && p->cb->on_part_end != NULL) {
            int rc = p->cb->on_part_end(p->arg);
            if (rc != 0)
                return stopped(p, rc);
        }
    }
    return 0;
}

/* Go on matching the delimiter from p->matched with d[j..len): returns
 * the index of the first byte that breaks the match, or len, or the index
 * just past the delimiter when it is complete (p->matched == p->dlen). */
static size_t match_delim(struct mp_parser *p, const char *d, size_t j, size_t len)
{
    while (j < len && p->matched < p->dlen && d[j] == p->delim[p->matched]) {
        j++;
        p->matched++;
    }
    return j;
}

/* Part data: d[0..len) in S_DATA. A delimiter can only start at a CR,
 * and the bytes that matched its prefix before a mismatch are data; when
 * they lie in d they stay in the run, so a buffer's data goes to
 * on_part_data in one call (not two more at every CR in it, which cost the
 * upload two write(2)s per ~256 bytes of binary data). Only a partial
 * match carried over from the previous buffer is handed over out of the
 * delimiter string when it fails. Returns the bytes used (up to and
 * including a delimiter), or the error. */
static ssize_t feed_data(struct mp_parser *p, const char *d, size_t len)
{
    size_t i = 0;
    if (p->matched > 0) { /* a match begun in the previous buffer */
        size_t carried = p->matched;
        i = match_delim(p, d, 0, len);
        if (p->matched == p->dlen)
            return delimiter_seen(p) < 0 ? p->err : (ssize_t)i;
        if (i == len)
            return (ssize_t)i;
        p->matched = 0; /* d[i] broke it: the held bytes were data */
        if (emit(p, p->delim, carried) < 0)
            return p->err;
    }
    size_t start = 0; /* d[start..) is data not yet handed over */
    while (i < len) {
        const char *cr = memchr(d + i, '\r', len - i);
        if (cr == NULL)
            break;
        size_t at = (size_t)(cr - d);
        p->matched = 1;
        size_t j = match_delim(p, d, at + 1, len);
        if (p->matched == p->dlen || j == len) { /* a delimiter, or maybe one */
            if (emit(p, d + start, at - start) < 0)
                return p->err;
            if (p->matched < p->dlen)
                return (ssize_t)len; /* the next buffer tells */
            return delimiter_seen(p) < 0 ? p->err : (ssize_t)j;
        }
        p->matched = 0; /* d[at..j) were data; d[j] may start a delimiter */
        i = j;
    }
    if (emit(p, d + start, len - start) < 0)
        return p->err;
    return (ssize_t)len;
}

static int feed_header_byte(struct mp_parser *p, char c)
{
    if (c == '\0')
        return fail(p, "NUL byte in part headers");
    if (p->hlen > 0 && p->hbuf[p->hlen - 1] == '\r' && c != '\n')
        return fail(p, "bare CR in part headers");
    if (c == '\n' && (p->hlen == 0 || p->hbuf[p->hlen - 1] != '\r'))
        return fail(p, "bare LF in part headers (lines must end in CRLF)");
    if (p->hlen >= MP_HEADER_MAX)
        return fail(p, "part headers larger than %d bytes", MP_HEADER_MAX);
    p->hbuf[p->hlen++] = c;
    if (c != '\n')
        return 0;
    if (p->hlen == 2 || (p->hlen >= 4 && memcmp(p->hbuf + p->hlen - 4, "\r\n\r\n", 4) == 0)) {
        int rc = parse_headers(p);
        if (rc < 0)
            return rc;
        p->state = S_DATA;
        p->matched = 0;
    }
    return 0;
}

int mp_parser_feed(struct mp_parser *p, const char *data, size_t len)
{
    size_t i = 0;
    if (p->err != 0)
        return p->err;
    while (i < len) {
        char c = data[i];
        switch (p->state) {
        case S_PREAMBLE:
            if (++p->count > MP_PREAMBLE_MAX)
                return fail(p, "no opening boundary in the first %d bytes", MP_PREAMBLE_MAX);
            i++;
            if (c == p->delim[p->matched]) {
                if (++p->matched == p->dlen && delimiter_seen(p) < 0)
                    return p->err;
            } else {
                p->matched = c == '\r' ? 1 : 0;
            }
            break;
        case S_AFTER_DELIM:
            i++;
            if (c == '-')
                p->state = S_CLOSE_DASH;
            else if (c == ' ' || c == '\t')
                p->state = S_PADDING;
            else if (c == '\r')
                p->state = S_PADDING_LF;
            else
                return fail(p, "unexpected data after a boundary");
            break;
        case S_CLOSE_DASH:
            i++;
            if (c != '-')
                return fail(p, "unexpected data after a boundary");
            p->state = S_EPILOGUE;
            break;
        case S_PADDING:
            i++;
            if (c == '\r')
                p->state = S_PADDING_LF;
            else if ((c != ' ' && c != '\t') || ++p->count > MP_PADDING_MAX)
                return fail(p, "unexpected data after a boundary");
            break;
        case S_PADDING_LF:
            i++;
            if (c != '\n')
                return fail(p, "boundary line does not end in CRLF");
            p->state = S_HEADERS;
            p->hlen = 0;
            break;
        case S_HEADERS:
            i++;
            if (feed_header_byte(p, c) < 0)
                return p->err;
            break;
        case S_DATA: {
            ssize_t used = feed_data(p, data + i, len - i);
            if (used < 0)
                return (int)used;
            i += (size_t)used;
            break;
        }
        case S_EPILOGUE:
            i = len;
            break;
        case S_ERROR:
            return p->err;
        }
    }
    return 0;
}

int mp_parser_finish(struct mp_parser *p)
{
    if (p->err != 0)
        return p->err;
    switch (p->state) {
    case S_EPILOGUE:
        return 0;
    case S_PREAMBLE:
        return fail(p, "no opening boundary");
    case S_HEADERS:
        return fail(p, "body ended inside part headers");
    case S_DATA:
        return fail(p, "missing final boundary (body truncated)");
    default:
        return fail(p, "missing final boundary");
    }
}

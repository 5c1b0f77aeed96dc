/* range.c - strict HTTP Range header parser (see range.h).
 *
 * What: turns a Range header value into "serve all", "serve [start, len)"
 * or "416". Grammar from RFC 9110 section 14.1.1:
 *
 *   ranges-specifier = range-unit "=" range-set
 *   range-set        = 1#range-spec            ; OWS "," OWS, empty elements ok
 *   range-spec       = int-range / suffix-range
 *   int-range        = first-pos "-" [ last-pos ]
 *   suffix-range     = "-" suffix-length
 *
 * Anything outside the grammar makes the whole header invalid, which RFC
 * 9110 says to ignore (serve 200); no whitespace is accepted inside a
 * range-spec or around "=". Only the "bytes" unit is known; other units
 * are ignored too.
 *
 * Threads: pure functions on the caller's buffers, no state, no allocation.
 * Never reads past the NUL or past RANGE_MAX_HEADER bytes.
 */
#include "dripd/range.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

struct spec {
    bool suffix;    /* "-n" */
    uint64_t first; /* int-range */
    bool has_last;
    uint64_t last;
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* 1*DIGIT at *p, saturating at UINT64_MAX. False if no digit. */
static bool parse_digits(const char **p, const char *end, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;
    bool sat = false;
    while (s < end && is_digit(*s)) {
        unsigned d = (unsigned)(*s - '0');
        if (!sat && v > (UINT64_MAX - d) / 10)
            sat = true;
        if (!sat)
            v = v * 10 + d;
        s++;
    }
    if (s == *p)
        return false;
    *out = sat ? UINT64_MAX : v;
    *p = s;
    return true;
}

/* One range-spec occupying exactly [s, end). */
static bool parse_spec(const char *s, const char *end, struct spec *sp)
{
    memset(sp, 0, sizeof *sp);
    if (s < end && *s == '-') {
        s++;
        sp->suffix = true;
        if (!parse_digits(&s, end, &sp->first))
            return false;
        return s == end;
    }
    if (!parse_digits(&s, end, &sp->first))
        return false;
    if (s == end || *s != '-')
        return false;
    s++;
    if (s == end)
        return true;
    if (!parse_digits(&s, end, &sp->last))
        return false;
    sp->has_last = true;
    if (s != end)
        return false;
    return sp->last >= sp->first;
}

/* Satisfiable against size (> 0)? Sets start/len when it is. */
static bool spec_eval(const struct spec *sp, uint64_t size, uint64_t *start, uint64_t *len)
{
    if (sp->suffix) {
        if (sp->first == 0)
            return false;
        uint64_t n = sp->first < size ? sp->first : size;
        *start = size - n;
        *len = n;
        return true;
    }
    if (sp->first >= size)
        return false;
    uint64_t last = sp->has_last && sp->last < size - 1 ? sp->last : size - 1;
    *start = sp->first;
    *len = last - sp->first + 1;
    return true;
}

enum range_result range_parse(const char *hdr, uint64_t size, uint64_t *start, uint64_t *len)
{
    if (!hdr || size == 0)
        return RANGE_FULL;
    size_t n = strnlen(hdr, RANGE_MAX_HEADER + 1);
    if (n > RANGE_MAX_HEADER)
        return RANGE_FULL;
    const char *p = hdr, *end = hdr + n;
    while (p < end && is_ows(*p))
        p++;
    while (end > p && is_ows(end[-1]))
        end--;

    static const char unit[] = "bytes=";
    if ((size_t)(end - p) < sizeof unit - 1 || strncasecmp(p, unit, sizeof unit - 1) != 0)
        return RANGE_FULL;
    p += sizeof unit - 1;

    struct spec specs[RANGE_MAX_SPECS];
    size_t nspecs = 0;
    for (;;) {
        /* one list element: OWS spec OWS, up to ',' or the end */
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *el_end = comma ? comma : end;
        const char *a = p, *b = el_end;
        while (a < b && is_ows(*a))
            a++;
        while (b > a && is_ows(b[-1]))
            b--;
        if (a < b) {
            if (nspecs == RANGE_MAX_SPECS)
                return RANGE_FULL;
            if (!parse_spec(a, b, &specs[nspecs]))
                return RANGE_FULL;
            nspecs++;
        }
        if (!comma)
            break;
        p = comma + 1;
    }
    if (nspecs == 0)
        return RANGE_FULL;

    uint64_t s0 = 0, l0 = 0;
    size_t satisfiable = 0;
    for (size_t i = 0; i < nspecs; i++) {
        uint64_t s, l;
        if (spec_eval(&specs[i], size, &s, &l)) {
            if (satisfiable++ == 0) {
                s0 = s;
                l0 = l;
            }
        }
    }
    if (satisfiable == 0)
        return RANGE_UNSATISFIABLE;
    if (nspecs > 1)
        return RANGE_FULL; /* one range per response: several -> the whole body */
    if (start)
        *start = s0;
    if (len)
        *len = l0;
    return RANGE_PARTIAL;
}

const char *range_content_range(char *buf, size_t buflen, uint64_t start, uint64_t len,
                                uint64_t size)
{
    snprintf(buf, buflen, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, start + len - 1, size);
    return buf;
}

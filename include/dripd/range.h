/* range.h - a strict parser for the HTTP Range request header (RFC 9110
 * section 14.1/14.2), byte ranges only.
 *
 * dripd serves one range per response: a header asking for several ranges
 * is answered with the whole representation (200), unless none of them is
 * satisfiable (416). Pure functions, no allocation, thread-safe.
 */
#ifndef DRIPD_RANGE_H
#define DRIPD_RANGE_H

#include <stddef.h>
#include <stdint.h>

enum range_result {
    RANGE_FULL = 0,          /* serve 200 with the whole body: no Range, a
                              * malformed one, another unit, several ranges,
                              * or an empty representation */
    RANGE_PARTIAL = 1,       /* serve 206: *start and *len are set (len >= 1) */
    RANGE_UNSATISFIABLE = 2, /* serve 416 with Content-Range: bytes * / size */
};

/* Longest Range header value looked at; longer ones are ignored (200). */
#define RANGE_MAX_HEADER 4096
/* Most range-specs accepted in one header; more are ignored (200). */
#define RANGE_MAX_SPECS 64

/* Evaluate the Range header value `hdr` (NULL = absent) against a
 * representation of `size` bytes. Syntax (case-insensitive unit):
 *   bytes=first-last | bytes=first- | bytes=-suffix   (comma-separated,
 *   optional whitespace around commas, empty list elements allowed)
 * A syntactically invalid header (last < first, non-digits, missing '=',
 * signs, garbage) is ignored as RFC 9110 requires: RANGE_FULL.
 * Numbers too large for uint64_t saturate (a first-pos past the end is
 * unsatisfiable, a last-pos is clamped to size - 1). start/len may be NULL
 * only when the caller does not need them. */
enum range_result range_parse(const char *hdr, uint64_t size, uint64_t *start, uint64_t *len);

/* "bytes a-b/size" for a 206 into buf (>= 64 bytes). Returns buf. */
const char *range_content_range(char *buf, size_t buflen, uint64_t start, uint64_t len,
                                uint64_t size);

#endif

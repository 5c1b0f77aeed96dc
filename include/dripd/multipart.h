/* multipart.h - a streaming multipart/form-data parser (RFC 7578, RFC 2046).
 *
 * Push style: the caller feeds body bytes in chunks of any size, as they
 * arrive; a delimiter may be split across chunks at any byte. The parser
 * calls back for each part's headers, its data (in pieces, never copied
 * into a growing buffer: at most one call per part and chunk fed, plus one
 * when bytes held over from the previous chunk as a possible delimiter
 * turn out to be data) and its end. Memory is bounded: one parser holds
 * the part-header block (at most MP_HEADER_MAX bytes) and nothing else
 * that grows with the input.
 *
 * Grammar (strict where it matters for safety): the body may start with a
 * preamble (at most MP_PREAMBLE_MAX bytes); then "--boundary", optional
 * spaces/tabs, CRLF, the part's headers (CRLF line ends), an empty line,
 * the data, then CRLF "--boundary" again, and so on; "--boundary--" closes
 * the body and anything after it (the epilogue) is ignored. Each part needs
 * "Content-Disposition: form-data; name=..."; filename="..." and the
 * RFC 5987 form filename*=UTF-8''%e2%82%ac.txt (which wins) are decoded.
 *
 * Threads: a parser belongs to one thread at a time; the free functions
 * are pure and thread-safe.
 */
#ifndef DRIPD_MULTIPART_H
#define DRIPD_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#define MP_BOUNDARY_MAX 70    /* RFC 2046 */
#define MP_HEADER_MAX 8192    /* one part's header block, CRLFs included */
#define MP_PREAMBLE_MAX 16384 /* bytes before the first boundary */

/* One part's headers, valid only during the on_part_begin call. */
struct mp_part {
    const char *name;         /* form field name; never NULL (may be "") */
    const char *filename;     /* decoded file name; NULL when the part has none */
    const char *content_type; /* the part's Content-Type value (trimmed); NULL if absent */
};

/* Callbacks return 0 to go on, or a negative errno to stop the parser:
 * mp_parser_feed() then returns that value and the parser stays stopped. */
struct mp_callbacks {
    int (*on_part_begin)(void *arg, const struct mp_part *part);
    int (*on_part_data)(void *arg, const char *data, size_t len); /* len > 0 */
    int (*on_part_end)(void *arg);
};

struct mp_parser;

/* Extract the boundary from a request's Content-Type header value
 * ("multipart/form-data; boundary=xyz", quoted or not) into out
 * (MP_BOUNDARY_MAX + 1 bytes). Returns 0, -ENOTSUP when the media type is
 * not multipart/form-data (or ct is NULL), -EINVAL when the boundary is
 * missing or malformed (1..70 chars of the RFC 2046 bchars, not ending
 * in a space); err gets one line. */
int mp_boundary_from_content_type(const char *ct, char out[MP_BOUNDARY_MAX + 1], char *err,
                                  size_t errlen);

/* Parse a Content-Disposition value. On success returns 0 and heap copies
 * (caller frees) of the disposition type (lower-cased), the name parameter
 * (NULL if absent) and the decoded file name (filename* if present, else
 * filename; NULL if neither). -EINVAL on malformed input (nothing set). */
int mp_parse_disposition(const char *value, char **type, char **name, char **filename, char *err,
                         size_t errlen);

/* Create a parser for boundary (validated as above; -EINVAL otherwise).
 * cb and arg are borrowed and must outlive the parser. */
int mp_parser_create(const char *boundary, const struct mp_callbacks *cb, void *arg,
                     struct mp_parser **out);
/* Feed the next len bytes. Returns 0, -EINVAL on malformed input (see
 * mp_parser_error), or a callback's negative return value. After a
 * non-zero return the parser ignores further input and returns the same
 * error. */
int mp_parser_feed(struct mp_parser *p, const char *data, size_t len);
/* The body ended: 0 if the closing boundary was seen, else -EINVAL
 * ("missing final boundary", or the error feed already returned). */
int mp_parser_finish(struct mp_parser *p);
/* Human explanation of the last error ("" if none). */
const char *mp_parser_error(const struct mp_parser *p);
void mp_parser_destroy(struct mp_parser *p); /* NULL ok */

#endif

/* tus_header.h - the tus 1.0.0 request header grammar, as pure functions:
 * Upload-Length / Upload-Offset, Upload-Metadata, Upload-Checksum, and
 * the RFC 9110 date format of Upload-Expires. Used by tus.c; kept apart
 * from the routes so tests and fuzz targets need no server. Thread-safe,
 * no global state.
 */
#ifndef DRIPD_TUS_HEADER_H
#define DRIPD_TUS_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TUS_METADATA_MAX_PAIRS 64

/* Upload-Length / Upload-Offset: 1*DIGIT, no sign, no spaces, at most
 * INT64_MAX. 0 or -EINVAL. */
int tus_parse_uint(const char *s, uint64_t *out);

/* One Upload-Metadata pair. value is the base64-decoded bytes, with a NUL
 * after them (so a text value can be used as a C string once checked with
 * memchr for embedded NULs); a key sent without a value has value "" and
 * has_value false. */
struct tus_meta_pair {
    char *key;
    char *value;
    size_t len;
    bool has_value;
};

struct tus_metadata {
    struct tus_meta_pair *pairs;
    size_t n;
};

/* Parse "key b64,key2 b64,key3". Keys are printable ASCII without spaces
 * or commas, unique; values standard base64 (padding optional). Spaces
 * around pairs are ignored. An empty header gives zero pairs. Returns 0
 * (out filled; free with tus_metadata_clear) or -EINVAL with err set and
 * out zeroed. */
int tus_parse_metadata(const char *hdr, struct tus_metadata *out, char *err, size_t errlen);
/* The pair for key, or NULL. */
const struct tus_meta_pair *tus_metadata_get(const struct tus_metadata *m, const char *key);
/* The value of key as a C string when it exists and holds no NUL, else NULL. */
const char *tus_metadata_str(const struct tus_metadata *m, const char *key);
void tus_metadata_clear(struct tus_metadata *m); /* zeroed struct ok */

enum tus_algo { TUS_ALGO_NONE = 0, TUS_ALGO_SHA1 = 1, TUS_ALGO_SHA256 = 2 };
#define TUS_DIGEST_MAX 32

struct tus_checksum {
    enum tus_algo algo;
    uint8_t digest[TUS_DIGEST_MAX];
    size_t len; /* 20 for sha1, 32 for sha256 */
};

/* "sha1 <base64 digest>" or "sha256 <base64 digest>" (algorithm names are
 * case-insensitive). 0, -ENOTSUP for another algorithm, -EINVAL when
 * malformed (digest not base64 or of the wrong length). Both are 400 per
 * the tus checksum extension. */
int tus_parse_checksum(const char *hdr, struct tus_checksum *out, char *err, size_t errlen);
/* "sha1,sha256": the Tus-Checksum-Algorithm value. */
#define TUS_CHECKSUM_ALGORITHMS "sha1,sha256"

/* RFC 9110 IMF-fixdate of a wall-clock time in ms:
 * "Sun, 06 Nov 1994 08:49:37 GMT". buf >= 30 bytes. */
void tus_http_date(int64_t ms, char *buf, size_t len);

/* Strict standard base64 (RFC 4648 section 4, padding optional, no
 * whitespace). Writes at most (len * 3) / 4 + 1 bytes to out; returns the
 * decoded length or -EINVAL. */
long tus_base64_decode(const char *in, size_t len, uint8_t *out);

#endif

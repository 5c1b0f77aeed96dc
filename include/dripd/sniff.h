/* sniff.h - guess a Content-Type from a file's first bytes.
 *
 * Used by GET /v1/media/{id}/content when the catalog has no useful
 * content type. Recognises PNG, JPEG, GIF, WebP, PDF, MP4, WebM, MP3,
 * OGG, WAV, ZIP and plain text (UTF-8 or a UTF-16 BOM); anything else is
 * application/octet-stream. It never answers text/html or any other type
 * a browser would execute. Pure functions, thread-safe.
 */
#ifndef DRIPD_SNIFF_H
#define DRIPD_SNIFF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* How many leading bytes sniff_content_type() looks at, at most. */
#define SNIFF_LEN 512

/* A static string (never NULL) for the first len bytes of a file. */
const char *sniff_content_type(const uint8_t *buf, size_t len);

/* True when ct is fit to be sent as a Content-Type header as-is: a
 * type/subtype of token characters, optional parameters, printable ASCII,
 * <= 255 bytes; and not the generic application/octet-stream (worth
 * sniffing instead). */
bool sniff_type_usable(const char *ct);

#endif

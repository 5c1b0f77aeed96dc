/* strip.h - remove the metadata of an image file without touching its
 * pixels (strip.c), for processing.strip_metadata: the stored original
 * keeps its compressed image data byte for byte and loses EXIF (GPS,
 * camera, times, maker notes), XMP, IPTC, comments and embedded extra
 * images.
 *
 * Linked only into the dripd-decode helper (and the tests and the decoder
 * fuzz target): it parses hostile bytes, so it runs in the sandbox.
 *
 * Threads: pure functions over a buffer and an output fd; no state.
 */
#ifndef DRIPD_STRIP_H
#define DRIPD_STRIP_H

#include <stddef.h>
#include <stdint.h>

/* Strip the image in b[0..len) into out_fd (an empty file, written from
 * its current offset). orientation (1..8, EXIF's) is kept, as the only
 * EXIF tag, when it is not 1, so the original still displays upright.
 * Returns 0 with *out_len bytes written; 1 when there is nothing to
 * remove (nothing written: the original stays as it is); -ENOTSUP for a
 * format it cannot strip (only JPEG, PNG, WebP and GIF); -EBADMSG with why
 * for a file whose structure does not hold together (nothing written: it
 * is stored as uploaded); -errno of a failed write. A JPEG cut short in
 * its image data is not malformed in that sense: it is stripped, the
 * image bytes up to the cut kept as they are (strip.c). */
int strip_image(const uint8_t *b, size_t len, int orientation, int out_fd, uint64_t *out_len,
                char *why, size_t whylen);

#endif

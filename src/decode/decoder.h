/* decoder.h - the decoding done inside a dripd-decode helper (decoder.c):
 * the real type of a file (libmagic), its metadata, and its variants
 * (libvips for images and PDF, FFmpeg for video posters and durations).
 *
 * Linked only into the helper (bin/dripd-decode) and the decoder fuzz
 * target, never into dripd: these libraries parse hostile bytes and run
 * only in the sandboxed helper (sandbox.h).
 *
 * Threads: one caller; libvips starts worker threads of its own.
 */
#ifndef DRIPD_DECODER_H
#define DRIPD_DECODER_H

#include <stddef.h>
#include <stdint.h>

#include "dripd/decode_proto.h"

/* Load the libraries and everything they read from disk (libvips and the
 * loader modules flags ask for: DECODE_F_MOD_HEIF, DECODE_F_MOD_PDF; the
 * magic database), before the sandbox closes the file
 * system: libvips's run-time code generator (orc) is turned off (it needs
 * writable+executable memory, which the sandbox and systemd's
 * MemoryDenyWriteExecute= forbid), its operation cache is off, it runs one
 * worker thread, and only the loaders for the formats dripd processes stay
 * enabled (JPEG, PNG, WebP, GIF, TIFF, HEIF, PDF). 0 / -errno + err. */
int decoder_open(uint32_t flags, char *err, size_t errlen);

/* Examine the file at in_fd (read from offset 0; it need not be seekable
 * by others) and write variant i of req into out_fds[i] (an empty file,
 * or -1 to skip it); with DECODE_F_STRIP, an image's original without its
 * metadata into out_fds[req->n_variants] (resp->strip says what became of
 * it). resp is filled in whatever happens; a file that is not media is
 * resp->status 0 with kind OTHER and no variants made. */
void decoder_run(const struct decode_req *req, int in_fd, const int *out_fds,
                 struct decode_resp *resp);

/* Remove the EXIF, XMP and ICCP chunks of the RIFF WebP in b (in place)
 * and clear their flags in its VP8X header. Returns the new length, or 0
 * when b is not a well-formed WebP. */
size_t decoder_webp_strip(uint8_t *b, size_t len);

/* Release what decoder_open loaded (fuzz target, leak checks). */
void decoder_close(void);

#endif

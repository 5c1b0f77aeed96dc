/* strip.c - lossless removal of an image's metadata (strip.h).
 *
 * DESIGN
 *
 * The file is walked by its container structure and copied to the output
 * minus what carries metadata; the compressed image data is copied byte
 * for byte, never decoded or re-encoded:
 *
 *   JPEG  segments up to each SOS, the entropy-coded data after it (up to
 *         the next marker that is not a stuffed 0xFF00, a restart or fill),
 *         up to EOI. Dropped: APP1 (EXIF, XMP), APP2 other than
 *         ICC_PROFILE (MPF, FlashPix), APP3..APP13 and APP15 (IPTC,
 *         maker segments), COM, and everything after EOI (the extra
 *         images of MPF and motion photos, which carry their own EXIF).
 *         Kept: APP0 (JFIF), ICC profiles, APP14 (Adobe: how to read the
 *         colours), and every coding segment.
 *   PNG   chunks up to IEND; dropped: eXIf, tEXt, zTXt, iTXt, tIME, and
 *         anything after IEND.
 *   WebP  RIFF chunks; dropped: EXIF, XMP (their VP8X flags cleared, the
 *         RIFF size rewritten), anything after the RIFF.
 *   GIF   blocks; dropped: comment extensions, XMP application
 *         extensions, anything after the trailer.
 *
 * Truncated and malformed files. The rule: drop only bytes the walk can
 * name as metadata, never image data, and never guess. A JPEG cut short
 * inside its entropy-coded data (a truncated upload) has been walked in
 * full up to the cut, so it is stripped like a whole one: the metadata
 * segments before the cut go, every byte from the scan to the cut is
 * kept as it is (the user asked for the metadata to go, and the pixels
 * the file has are all still there). A file whose structure does not hold
 * (a segment or chunk that claims more bytes than the file has, a cut
 * inside the headers, a marker where none may be, no PNG IEND, a RIFF
 * size past the end) is refused with -EBADMSG: there the walk cannot tell
 * metadata from image data, and the process stage stores the file as
 * uploaded with metadata.stripped false.
 *
 * The EXIF orientation, when not 1, is written back as a minimal EXIF
 * (one IFD, one tag) where the format keeps EXIF, so the stored original
 * still shows upright; nothing else of EXIF survives.
 *
 * Two passes over the same walk: a dry one decides whether anything would
 * change (and the output's size, which WebP's header needs), the second
 * writes. The output is a list of input ranges (coalesced) and small new
 * pieces, written with write(2) from a buffer the caller mapped; nothing
 * is allocated. Every length is checked against the end of the buffer
 * before it is used (fuzz/fuzz_decoder.c runs this on hostile bytes).
 *
 * Threads: none; reentrant.
 */
#include "strip.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dripd/util.h"

struct out {
    int fd;            /* -1: the dry pass */
    const uint8_t *b;  /* the input */
    size_t run, n_run; /* the input range being collected */
    size_t expect;     /* where the input would continue if nothing changed */
    uint64_t total;    /* bytes of output */
    bool changed;
    int err;
};

static void flush(struct out *o)
{
    size_t n = o->n_run;
    o->n_run = 0;
    if (o->fd >= 0 && n > 0 && o->err == 0)
        o->err = dr_write_all(o->fd, o->b + o->run, n);
}

/* Copy input bytes [off, off + n). */
static void copy(struct out *o, size_t off, size_t n)
{
    if (n == 0)
        return;
    if (off != o->expect)
        o->changed = true;
    o->expect = off + n;
    o->total += n;
    if (o->n_run > 0 && o->run + o->n_run == off) {
        o->n_run += n;
        return;
    }
    flush(o);
    o->run = off;
    o->n_run = n;
}

/* Write new bytes. */
static void emit(struct out *o, const void *p, size_t n)
{
    o->changed = true;
    o->total += n;
    flush(o);
    if (o->fd >= 0 && n > 0 && o->err == 0)
        o->err = dr_write_all(o->fd, p, n);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A TIFF structure (big-endian) with one IFD holding only Orientation. */
#define TIFF_LEN 26
static void orientation_tiff(uint8_t t[TIFF_LEN], int orientation)
{
    static const uint8_t tmpl[TIFF_LEN] = {'M',  'M',  0, 42, 0, 0, 0, 8, /* header, IFD0 at 8 */
                                           0,    1,                       /* one entry */
                                           0x01, 0x12, 0, 3,              /* Orientation, SHORT */
                                           0,    0,    0, 1,              /* count 1 */
                                           0,    0,    0, 0,              /* value (set below) */
                                           0,    0,    0, 0};             /* no next IFD */
    memcpy(t, tmpl, TIFF_LEN);
    t[19] = (uint8_t)orientation;
}

static bool keep_orientation(int orientation)
{
    return orientation >= 2 && orientation <= 8;
}

/* ---- JPEG ---- */

static int walk_jpeg(struct out *o, const uint8_t *b, size_t len, int orientation, char *why,
                     size_t whylen)
{
    size_t p = 2;
    bool inserted = !keep_orientation(orientation);
    copy(o, 0, 2); /* SOI */
    for (;;) {
        if (p >= len) {
            snprintf(why, whylen, "JPEG: no EOI");
            return -EBADMSG;
        }
        if (b[p] != 0xff) {
            snprintf(why, whylen, "JPEG: no marker at byte %zu", p);
            return -EBADMSG;
        }
        while (p < len && b[p] == 0xff) /* fill bytes */
            p++;
        if (p >= len) {
            snprintf(why, whylen, "JPEG: cut after a marker's 0xFF");
            return -EBADMSG;
        }
        uint8_t m = b[p++];
        if (m == 0xd9) { /* EOI: the end, whatever follows */
            copy(o, p - 2, 2);
            return 0;
        }
        if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) { /* no length */
            copy(o, p - 2, 2);
            continue;
        }
        if (m == 0xd8 || m == 0x00) {
            snprintf(why, whylen, "JPEG: unexpected marker 0x%02x", m);
            return -EBADMSG;
        }
        if (len - p < 2) {
            snprintf(why, whylen, "JPEG: cut in a segment header");
            return -EBADMSG;
        }
        size_t seg = (size_t)b[p] << 8 | b[p + 1];
        if (seg < 2 || seg > len - p) {
            snprintf(why, whylen, "JPEG: segment 0x%02x of %zu bytes overruns the file", m, seg);
            return -EBADMSG;
        }
        const uint8_t *data = b + p + 2;
        size_t n = seg - 2;
        bool app = m >= 0xe0 && m <= 0xef;
        bool keep = !(app || m == 0xfe) || m == 0xe0 || m == 0xee ||
                    (m == 0xe2 && n >= 12 && memcmp(data, "ICC_PROFILE\0", 12) == 0);
        if (!inserted && m != 0xe0) { /* the orientation after SOI (and JFIF) */
            uint8_t seg1[4 + 6 + TIFF_LEN] = {0xff, 0xe1, 0, 2 + 6 + TIFF_LEN, 'E', 'x', 'i', 'f'};
            orientation_tiff(seg1 + 10, orientation);
            emit(o, seg1, sizeof seg1);
            inserted = true;
        }
        if (keep)
            copy(o, p - 2, 2 + seg); /* the marker without its fill bytes */
        p += seg;
        if (m != 0xda)
            continue;
        /* SOS: entropy-coded data up to the next real marker */
        size_t start = p;
        for (;;) {
            const uint8_t *ff = memchr(b + p, 0xff, len - p);
            if (ff == NULL) { /* cut short (truncated): keep what there is, byte for byte */
                copy(o, start, len - start);
                return 0;
            }
            p = (size_t)(ff - b);
            if (p + 1 >= len) {
                copy(o, start, len - start);
                return 0;
            }
            uint8_t nx = b[p + 1];
            if (nx == 0x00 || (nx >= 0xd0 && nx <= 0xd7) || nx == 0xff) {
                p += nx == 0xff ? 1 : 2;
                continue;
            }
            break;
        }
        copy(o, start, p - start);
    }
}

/* ---- PNG ---- */

static uint32_t crc32_png(const uint8_t *p, size_t n, uint32_t crc)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static int walk_png(struct out *o, const uint8_t *b, size_t len, int orientation, char *why,
                    size_t whylen)
{
    size_t p = 8;
    bool inserted = !keep_orientation(orientation);
    copy(o, 0, 8);
    for (;;) {
        if (len - p < 12) {
            snprintf(why, whylen, "PNG: no IEND");
            return -EBADMSG;
        }
        uint32_t n = be32(b + p);
        const uint8_t *type = b + p + 4;
        if (n > 0x7fffffffu || (size_t)n > len - p - 12) {
            snprintf(why, whylen, "PNG: chunk of %u bytes overruns the file", n);
            return -EBADMSG;
        }
        bool drop = memcmp(type, "eXIf", 4) == 0 || memcmp(type, "tEXt", 4) == 0 ||
                    memcmp(type, "zTXt", 4) == 0 || memcmp(type, "iTXt", 4) == 0 ||
                    memcmp(type, "tIME", 4) == 0;
        if (!inserted && memcmp(type, "IDAT", 4) == 0) { /* eXIf goes before the image data */
            uint8_t c[12 + TIFF_LEN];
            put_be32(c, TIFF_LEN);
            memcpy(c + 4, "eXIf", 4);
            orientation_tiff(c + 8, orientation);
            put_be32(c + 8 + TIFF_LEN, crc32_png(c + 4, 4 + TIFF_LEN, 0));
            emit(o, c, sizeof c);
            inserted = true;
        }
        if (!drop)
            copy(o, p, 12 + (size_t)n);
        p += 12 + (size_t)n;
        if (memcmp(type, "IEND", 4) == 0)
            return 0;
    }
}

/* ---- WebP ---- */

static int walk_webp(struct out *o, const uint8_t *b, size_t len, int orientation,
                     uint64_t final_len, char *why, size_t whylen)
{
    uint32_t riff = le32(b + 4);
    if (riff < 4 || riff > len - 8) {
        snprintf(why, whylen, "WebP: RIFF size %u does not fit the file", riff);
        return -EBADMSG;
    }
    size_t end = 8 + (size_t)riff, p = 12;
    /* the header with the output's size (known on the second pass) */
    uint8_t hdr[12];
    memcpy(hdr, b, 12);
    put_le32(hdr + 4, (uint32_t)(final_len >= 8 ? final_len - 8 : 0));
    if (final_len == (uint64_t)end && memcmp(hdr, b, 12) == 0)
        copy(o, 0, 12);
    else
        emit(o, hdr, 12);
    bool vp8x = false;
    while (p < end) {
        if (end - p < 8) {
            snprintf(why, whylen, "WebP: a chunk header is cut");
            return -EBADMSG;
        }
        uint32_t n = le32(b + p + 4);
        size_t whole = 8 + (size_t)n + (n & 1u);
        if (whole > end - p) {
            snprintf(why, whylen, "WebP: chunk of %u bytes overruns the file", n);
            return -EBADMSG;
        }
        const uint8_t *type = b + p;
        if (memcmp(type, "VP8X", 4) == 0 && n >= 10) {
            vp8x = true;
            uint8_t c[18];
            memcpy(c, b + p, 18);
            c[8] &= (uint8_t) ~(0x08u | 0x04u); /* EXIF, XMP */
            if (keep_orientation(orientation))
                c[8] |= 0x08u;
            if (c[8] == b[p + 8])
                copy(o, p, 18);
            else
                emit(o, c, 18);
            copy(o, p + 18, whole - 18);
        } else if (memcmp(type, "EXIF", 4) != 0 && memcmp(type, "XMP ", 4) != 0) {
            copy(o, p, whole);
        }
        p += whole;
    }
    if (vp8x && keep_orientation(orientation)) { /* EXIF after the image data */
        uint8_t c[8 + TIFF_LEN];
        memcpy(c, "EXIF", 4);
        put_le32(c + 4, TIFF_LEN);
        orientation_tiff(c + 8, orientation);
        emit(o, c, sizeof c);
    }
    return 0;
}

/* ---- GIF ---- */

/* Past the sub-blocks starting at *p (each a length byte, 0 ends them). */
static bool skip_blocks(const uint8_t *b, size_t len, size_t *p)
{
    for (;;) {
        if (*p >= len)
            return false;
        size_t n = b[*p];
        *p += 1;
        if (n == 0)
            return true;
        if (n > len - *p)
            return false;
        *p += n;
    }
}

static size_t color_table(uint8_t packed)
{
    return (packed & 0x80u) ? 3u * (2u << (packed & 7u)) : 0;
}

static int walk_gif(struct out *o, const uint8_t *b, size_t len, char *why, size_t whylen)
{
    if (len < 13) {
        snprintf(why, whylen, "GIF: cut in its header");
        return -EBADMSG;
    }
    size_t p = 13 + color_table(b[10]);
    if (p > len) {
        snprintf(why, whylen, "GIF: cut in its color table");
        return -EBADMSG;
    }
    copy(o, 0, p);
    for (;;) {
        if (p >= len) {
            snprintf(why, whylen, "GIF: no trailer");
            return -EBADMSG;
        }
        size_t start = p;
        if (b[p] == 0x3b) {
            copy(o, p, 1);
            return 0;
        }
        bool keep = true;
        if (b[p] == 0x21) {
            if (len - p < 2) {
                snprintf(why, whylen, "GIF: cut in an extension");
                return -EBADMSG;
            }
            uint8_t label = b[p + 1];
            keep = !(label == 0xfe || (label == 0xff && len - p >= 14 && b[p + 2] == 11 &&
                                       memcmp(b + p + 3, "XMP DataXMP", 11) == 0));
            p += 2;
        } else if (b[p] == 0x2c) {
            if (len - p < 11) {
                snprintf(why, whylen, "GIF: cut in an image descriptor");
                return -EBADMSG;
            }
            size_t lct = color_table(b[p + 9]);
            if (lct > len - p - 10 - 1) {
                snprintf(why, whylen, "GIF: cut in a local color table");
                return -EBADMSG;
            }
            p += 10 + lct + 1; /* descriptor, table, LZW code size */
        } else {
            snprintf(why, whylen, "GIF: unknown block 0x%02x", b[p]);
            return -EBADMSG;
        }
        if (!skip_blocks(b, len, &p)) {
            snprintf(why, whylen, "GIF: a data block overruns the file");
            return -EBADMSG;
        }
        if (keep)
            copy(o, start, p - start);
    }
}

static int walk(struct out *o, const uint8_t *b, size_t len, int orientation, uint64_t final_len,
                char *why, size_t whylen)
{
    if (len >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return walk_jpeg(o, b, len, orientation, why, whylen);
    if (len >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return walk_png(o, b, len, orientation, why, whylen);
    if (len >= 12 && memcmp(b, "RIFF", 4) == 0 && memcmp(b + 8, "WEBP", 4) == 0)
        return walk_webp(o, b, len, orientation, final_len, why, whylen);
    if (len >= 6 && (memcmp(b, "GIF87a", 6) == 0 || memcmp(b, "GIF89a", 6) == 0))
        return walk_gif(o, b, len, why, whylen);
    snprintf(why, whylen, "not a JPEG, PNG, WebP or GIF");
    return -ENOTSUP;
}

int strip_image(const uint8_t *b, size_t len, int orientation, int out_fd, uint64_t *out_len,
                char *why, size_t whylen)
{
    *out_len = 0;
    if (why && whylen)
        why[0] = '\0';
    char scratch[8];
    if (why == NULL || whylen == 0)
        why = scratch, whylen = sizeof scratch;
    struct out dry = {.fd = -1, .b = b};
    int rc = walk(&dry, b, len, orientation, len, why, whylen);
    if (rc != 0)
        return rc;
    if (dry.expect != len)
        dry.changed = true; /* something after the end was cut */
    if (!dry.changed)
        return 1;
    struct out wet = {.fd = out_fd, .b = b};
    rc = walk(&wet, b, len, orientation, dry.total, why, whylen);
    flush(&wet);
    if (rc == 0 && wet.err != 0) {
        rc = wet.err;
        snprintf(why, whylen, "write: %s", strerror(-rc));
    }
    if (rc == 0)
        *out_len = wet.total;
    return rc;
}

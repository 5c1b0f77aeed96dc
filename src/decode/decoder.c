/* decoder.c - what a dripd-decode helper does with one file (decoder.h).
 *
 * 1. Type: libmagic on the first 64 KiB (MIME type), whatever name or
 *    Content-Type the client gave.
 * 2. Images (JPEG, PNG, WebP, GIF, TIFF, HEIF/HEIC/AVIF) and PDF, with
 *    libvips: the header alone gives the size, the EXIF orientation, the
 *    EXIF capture time and camera model and the page count; an image over
 *    max_pixels is refused there, before any pixel is decoded (a 50,000 x
 *    50,000 PNG bomb costs a header read). Then ONE decode per file: the
 *    largest variant comes from the file with shrink-on-load
 *    (vips_thumbnail_source: a JPEG is decoded at 1/2, 1/4 or 1/8 scale by
 *    libjpeg itself) and auto-rotation, it is rendered to memory, and each
 *    smaller variant is made from the one above it. A truncated input
 *    fails the variants (a cut-off photo gets a failed variant, not a grey
 *    half): libvips 8.14 ignores fail_on when loading from a source, so its
 *    "Premature end" warning is caught instead (on_glib_log).
 * 3. Video and audio, with libavformat: the duration; for video, the width
 *    and height as displayed (after the rotation in the container's
 *    display matrix) and, when DECODE_F_POSTER is set, a poster frame
 *    (the first decoded frame, libavcodec + libswscale to RGB) from which
 *    the variants are made as for an image. The frame size is checked
 *    against max_pixels before the decoder opens. Input goes through a
 *    custom AVIOContext on the fd: FFmpeg never opens a path.
 * 4. Variants are written with "strip": no EXIF, GPS, XMP, IPTC or ICC
 *    profile in them. JPEG variants of images with alpha are flattened on
 *    white.
 * 5. With DECODE_F_STRIP, an image's original is also written without its
 *    metadata into the output after the variants' (strip.h: lossless,
 *    the orientation kept), from the input mapped read-only.
 *
 * Every failure becomes a reason string in the response (the first line
 * of libvips's or FFmpeg's message). Nothing here opens a file: the input
 * and outputs are fds handed over by the parent, and the sandbox
 * (sandbox.c) kills the process if anything tries.
 *
 * Threads: the helper's main thread; libvips's own worker threads.
 */
#include "decoder.h"

#include <errno.h>
#include <magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vips/vips.h>
#include <vips/vector.h>
#include <gmodule.h>

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>

#include "dripd/util.h"
#include "strip.h"

#define MAGIC_BYTES (64 * 1024)
#define AVIO_BUF (64 * 1024)
#define MAX_PACKETS 4000 /* a poster frame must come out of this many packets */

static magic_t magic;

/* The first libvips warning that means the input was cut short. libvips
 * 8.14 ignores fail_on for loads from a source (a truncated JPEG gives a
 * warning and a grey lower half), so the warning is caught here and fails
 * the variants. Written once (atomic claim), by any libvips thread. */
static int truncated_claimed;
static char truncated_msg[DECODE_REASON_LEN];

static void on_glib_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer a)
{
    (void)domain, (void)level, (void)a;
    if (msg == NULL)
        return;
    if ((strstr(msg, "Premature end") || strstr(msg, "runcated") ||
         strstr(msg, "unexpected end")) &&
        __atomic_exchange_n(&truncated_claimed, 1, __ATOMIC_ACQ_REL) == 0) {
        snprintf(truncated_msg, sizeof truncated_msg, "truncated input: %s", msg);
        __atomic_store_n(&truncated_claimed, 2, __ATOMIC_RELEASE);
    }
}

/* The reason a load was cut short, or NULL. */
static const char *truncated_reason(void)
{
    return __atomic_load_n(&truncated_claimed, __ATOMIC_ACQUIRE) == 2 ? truncated_msg : NULL;
}

/* Loaders left enabled; every other libvips loader is blocked (ImageMagick,
 * SVG, JPEG 2000, JPEG XL, OpenSlide, FITS, Matlab, CSV, ... are more
 * attack surface than dripd needs). */
static const char *const allowed_loaders[] = {
    "VipsForeignLoadJpeg", "VipsForeignLoadPng",  "VipsForeignLoadWebp", "VipsForeignLoadNsgif",
    "VipsForeignLoadTiff", "VipsForeignLoadHeif", "VipsForeignLoadPdf",
};
#ifndef DRIPD_VIPS_LIBDIR
#define DRIPD_VIPS_LIBDIR "/usr/lib/x86_64-linux-gnu"
#endif

/* libvips's loadable modules that dripd uses (HEIF via libheif, PDF via
 * poppler). The others Debian ships (ImageMagick, OpenSlide, JPEG XL) are
 * never loaded: vips_init would load all of them, ~35 ms of CPU per helper
 * and more code mapped into it, so VIPSHOME points it elsewhere and these
 * two are opened by hand, each only for a file that may need it (the
 * request's flags, from the file's signature: ~10 ms for HEIF, ~17 ms for
 * poppler, that a JPEG photo does not pay). */
static const struct {
    const char *file;
    uint32_t flag;
} modules[] = {{"vips-heif.so", DECODE_F_MOD_HEIF}, {"vips-poppler.so", DECODE_F_MOD_PDF}};

static void load_modules(uint32_t flags)
{
    for (size_t i = 0; i < DR_ARRAY_LEN(modules); i++) {
        if (!(flags & modules[i].flag))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/vips-modules-%d.%d/%s", DRIPD_VIPS_LIBDIR, vips_version(0),
                 vips_version(1), modules[i].file);
        GModule *m = g_module_open(path, G_MODULE_BIND_LAZY | G_MODULE_BIND_LOCAL);
        if (m)
            g_module_make_resident(m);
    }
}

int decoder_open(uint32_t flags, char *err, size_t errlen)
{
    /* orc JIT off before vips_init reads it: W^X (sandbox, systemd) */
    setenv("VIPS_NOVECTOR", "1", 1);
    setenv("VIPSHOME", "/nonexistent/dripd-decode", 1); /* no module scan: load_modules */
    if (VIPS_INIT("dripd-decode") != 0) {
        dr_set_err(err, errlen, "libvips: %s", vips_error_buffer());
        return -EIO;
    }
    load_modules(flags);
    vips_vector_set_enabled(FALSE);
    vips_cache_set_max(0);
    vips_concurrency_set(1);
    vips_operation_block_set("VipsForeignLoad", TRUE);
    for (size_t i = 0; i < DR_ARRAY_LEN(allowed_loaders); i++)
        vips_operation_block_set(allowed_loaders[i], FALSE);
    magic = magic_open(MAGIC_MIME_TYPE | MAGIC_ERROR | MAGIC_NO_CHECK_COMPRESS |
                       MAGIC_NO_CHECK_ELF | MAGIC_NO_CHECK_TAR);
    if (magic == NULL || magic_load(magic, NULL) != 0) {
        dr_set_err(err, errlen, "libmagic: %s", magic ? magic_error(magic) : "out of memory");
        return -EIO;
    }
    av_log_set_level(AV_LOG_QUIET);
    /* warnings are caught (truncation), never printed */
    g_log_set_default_handler(on_glib_log, NULL);
    return 0;
}

void decoder_close(void)
{
    if (magic)
        magic_close(magic);
    magic = NULL;
    vips_shutdown();
}

/* ---- helpers ---- */

/* Copy the first line of msg into a reason field, printable ASCII only. */
static void set_reason(char *dst, size_t cap, const char *prefix, const char *msg)
{
    char tmp[DECODE_REASON_LEN * 2];
    snprintf(tmp, sizeof tmp, "%s%s", prefix, msg ? msg : "");
    size_t o = 0;
    for (const char *p = tmp; *p && *p != '\n' && o + 1 < cap; p++)
        dst[o++] = ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f) ? *p : '?';
    while (o > 0 && dst[o - 1] == ' ')
        o--;
    dst[o] = '\0';
}

static void vips_reason(char *dst, size_t cap, const char *what)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s: ", what);
    const char *e = vips_error_buffer();
    set_reason(dst, cap, prefix, e && *e ? e : "libvips failed");
    vips_error_clear();
}

static void copy_text(char *dst, size_t cap, const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && src[i] && o + 1 < cap; i++)
        dst[o++] = ((unsigned char)src[i] >= 0x20 && (unsigned char)src[i] < 0x7f) ? src[i] : '?';
    while (o > 0 && dst[o - 1] == ' ')
        o--;
    dst[o] = '\0';
}

/* libvips shows an EXIF field as "VALUE (VALUE, ASCII, N components, M
 * bytes)": the value is the prefix that the part in parentheses repeats. */
static bool exif_value(VipsImage *im, const char *field, char *out, size_t cap)
{
    const char *s = NULL;
    if (vips_image_get_typeof(im, field) == 0 || vips_image_get_string(im, field, &s) != 0 ||
        s == NULL)
        return false;
    size_t n = strlen(s);
    for (size_t k = 0; k + 2 <= n; k++)
        if (s[k] == ' ' && s[k + 1] == '(' && n - (k + 2) >= k && strncmp(s + k + 2, s, k) == 0) {
            copy_text(out, cap, s, k);
            return out[0] != '\0';
        }
    copy_text(out, cap, s, n);
    return out[0] != '\0';
}

/* "2024:05:01 12:34:56" -> "2024-05-01T12:34:56"; false if not that shape. */
static bool exif_time(const char *v, char *out, size_t cap)
{
    static const char shape[] = "dddd:dd:dd dd:dd:dd";
    if (strlen(v) < sizeof shape - 1 || cap < sizeof shape)
        return false;
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        bool digit = v[i] >= '0' && v[i] <= '9';
        if (shape[i] == 'd' ? !digit : v[i] != shape[i])
            return false;
    }
    if (strncmp(v, "0000", 4) == 0)
        return false;
    snprintf(out, cap, "%.4s-%.2s-%.2sT%.8s", v, v + 5, v + 8, v + 11);
    return true;
}

static enum decode_kind kind_of(const char *mime)
{
    static const char *const images[] = {"image/jpeg", "image/png",  "image/gif",  "image/webp",
                                         "image/tiff", "image/heic", "image/heif", "image/avif"};
    for (size_t i = 0; i < DR_ARRAY_LEN(images); i++)
        if (strcmp(mime, images[i]) == 0)
            return DECODE_KIND_IMAGE;
    if (strcmp(mime, "application/pdf") == 0)
        return DECODE_KIND_PDF;
    if (strncmp(mime, "video/", 6) == 0)
        return DECODE_KIND_VIDEO;
    if (strncmp(mime, "audio/", 6) == 0 || strcmp(mime, "application/ogg") == 0)
        return DECODE_KIND_AUDIO;
    return DECODE_KIND_OTHER;
}

static void fail_variants(const struct decode_req *req, struct decode_resp *resp, int status,
                          const char *reason)
{
    for (uint32_t i = 0; i < req->n_variants; i++)
        if (resp->v[i].status == 0 && resp->v[i].size == 0) {
            resp->v[i].status = status;
            set_reason(resp->v[i].reason, sizeof resp->v[i].reason, "", reason);
        }
}

static void *collect_field(VipsImage *im, const char *name, GValue *value, void *a)
{
    (void)im, (void)value;
    GPtrArray *names = a;
    if (strcmp(name, "exif-data") == 0 || strcmp(name, "xmp-data") == 0 ||
        strcmp(name, "iptc-data") == 0 || strcmp(name, "icc-profile-data") == 0 ||
        strcmp(name, "orientation") == 0 || strncmp(name, "exif-", 5) == 0 ||
        strncmp(name, "png-comment-", 12) == 0 || strcmp(name, "gif-comment") == 0)
        g_ptr_array_add(names, g_strdup(name));
    return NULL;
}

/* A copy of im without any metadata (EXIF, GPS, XMP, IPTC, ICC, comments):
 * savers' "strip" is not trusted alone. NULL on failure. */
static VipsImage *bare_copy(VipsImage *im)
{
    VipsImage *c = NULL;
    if (vips_copy(im, &c, NULL) != 0)
        return NULL;
    GPtrArray *names = g_ptr_array_new_with_free_func(g_free);
    vips_image_map(c, collect_field, names);
    for (guint i = 0; i < names->len; i++)
        vips_image_remove(c, g_ptr_array_index(names, i));
    g_ptr_array_free(names, TRUE);
    return c;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

size_t decoder_webp_strip(uint8_t *b, size_t len)
{
    if (len < 12 || memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WEBP", 4) != 0)
        return 0;
    size_t r = 12, w = 12;
    uint8_t *vp8x = NULL;
    while (r + 8 <= len) {
        uint32_t n = le32(b + r + 4);
        size_t whole = 8 + (size_t)n + (n & 1u);
        if (whole > len - r)
            return 0;
        bool drop = memcmp(b + r, "EXIF", 4) == 0 || memcmp(b + r, "XMP ", 4) == 0 ||
                    memcmp(b + r, "ICCP", 4) == 0;
        if (!drop) {
            memmove(b + w, b + r, whole);
            if (memcmp(b + w, "VP8X", 4) == 0 && n >= 1)
                vp8x = b + w + 8;
            w += whole;
        }
        r += whole;
    }
    if (r != len)
        return 0;
    if (vp8x)
        vp8x[0] &= (uint8_t) ~(0x20u | 0x08u | 0x04u); /* ICC, EXIF, XMP flags */
    uint32_t riff = (uint32_t)(w - 8);
    b[4] = (uint8_t)riff, b[5] = (uint8_t)(riff >> 8), b[6] = (uint8_t)(riff >> 16);
    b[7] = (uint8_t)(riff >> 24);
    return w;
}

/* Save im as variant i and write it to fd. */
static void save_variant(const struct decode_variant_req *vr, VipsImage *im, int fd,
                         struct decode_variant_resp *out)
{
    VipsImage *flat = NULL;
    void *buf = NULL;
    size_t len = 0;
    int rc;
    if (vr->format == DECODE_FMT_JPEG && vips_image_hasalpha(im)) {
        VipsArrayDouble *white = vips_array_double_newv(3, 255.0, 255.0, 255.0);
        rc = vips_flatten(im, &flat, "background", white, NULL);
        vips_area_unref(VIPS_AREA(white));
    } else {
        rc = (flat = bare_copy(im)) == NULL ? -1 : 0;
    }
    if (rc == 0 && vr->format == DECODE_FMT_JPEG) { /* flatten keeps the fields */
        VipsImage *b = bare_copy(flat);
        g_object_unref(flat);
        flat = b;
        rc = b == NULL ? -1 : 0;
    }
    if (rc != 0) {
        out->status = -EIO;
        vips_reason(out->reason, sizeof out->reason, "copy");
        return;
    }
    im = flat;
    switch (vr->format) {
    case DECODE_FMT_WEBP:
        /* libvips 8.14 writes an EXIF chunk even with strip: cut it out */
        rc = vips_webpsave_buffer(im, &buf, &len, "Q", (int)vr->quality, "strip", TRUE, NULL);
        if (rc == 0 && (len = decoder_webp_strip(buf, len)) == 0) {
            g_free(buf);
            vips_error("webpsave", "malformed WebP from the encoder");
            rc = -1;
        }
        break;
    case DECODE_FMT_JPEG:
        rc = vips_jpegsave_buffer(im, &buf, &len, "Q", (int)vr->quality, "strip", TRUE, NULL);
        break;
    default:
        rc = vips_pngsave_buffer(im, &buf, &len, "strip", TRUE, NULL);
        break;
    }
    if (rc != 0) {
        g_object_unref(flat);
        out->status = -EIO;
        vips_reason(out->reason, sizeof out->reason, "encode");
        return;
    }
    uint32_t w = (uint32_t)vips_image_get_width(im), h = (uint32_t)vips_image_get_height(im);
    g_object_unref(flat);
    if (fd < 0) {
        g_free(buf);
        return;
    }
    int wrc = dr_write_all(fd, buf, len);
    g_free(buf);
    if (wrc != 0) {
        out->status = wrc;
        set_reason(out->reason, sizeof out->reason, "write: ", strerror(-wrc));
        return;
    }
    out->status = 0;
    out->size = len;
    out->width = w;
    out->height = h;
}

/* Variants in decreasing size: each made from the one above it (order[]
 * is the request's indexes sorted by max, largest first). */
static void sort_variants(const struct decode_req *req, int *order)
{
    int n = (int)req->n_variants;
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = 1; i < n; i++)
        for (int k = i; k > 0 && req->v[order[k]].max > req->v[order[k - 1]].max; k--) {
            int t = order[k];
            order[k] = order[k - 1];
            order[k - 1] = t;
        }
}

/* im scaled so that its longest side is max (never enlarged), in memory.
 * NULL on failure (vips_error set). */
static VipsImage *fit_in_memory(VipsImage *im, uint32_t max)
{
    int w = vips_image_get_width(im), h = vips_image_get_height(im);
    int longest = w > h ? w : h;
    VipsImage *r = NULL;
    if (longest > (int)max) {
        if (vips_resize(im, &r, (double)max / longest, "kernel", VIPS_KERNEL_LANCZOS3, NULL) != 0)
            return NULL;
    } else {
        g_object_ref(im);
        r = im;
    }
    VipsImage *mem = vips_image_copy_memory(r);
    g_object_unref(r);
    return mem;
}

/* The chain from an already decoded, upright image (a video frame). */
static void variants_from_image(const struct decode_req *req, VipsImage *first, const int *out_fds,
                                struct decode_resp *resp)
{
    int order[DECODE_MAX_VARIANTS];
    sort_variants(req, order);
    VipsImage *prev = first;
    g_object_ref(prev);
    for (uint32_t k = 0; k < req->n_variants; k++) {
        int i = order[k];
        const struct decode_variant_req *vr = &req->v[i];
        VipsImage *mem = fit_in_memory(prev, vr->max);
        if (mem == NULL) {
            resp->v[i].status = -EIO;
            vips_reason(resp->v[i].reason, sizeof resp->v[i].reason, "resize");
            continue;
        }
        save_variant(vr, mem, out_fds[i], &resp->v[i]);
        g_object_unref(prev);
        prev = mem;
    }
    g_object_unref(prev);
}

/* ---- images and PDF (libvips) ---- */

static VipsSource *source_at_start(int fd)
{
    if (lseek(fd, 0, SEEK_SET) != 0)
        return NULL;
    return vips_source_new_from_descriptor(fd);
}

/* The one decode of a plain JPEG photo (8-bit sRGB or grey), cheaper than
 * vips_thumbnail: libjpeg's own shrink-on-load (1/2, 1/4, 1/8: the
 * largest that still leaves the longest side >= max), one Lanczos3 resize
 * to max, rendered to memory, then turned upright by its EXIF orientation
 * (after the resize: rotating the small image is cheap). NULL when the
 * file is not such a JPEG (CMYK, an ICC profile other than sRGB...):
 * the caller falls back to vips_thumbnail_source. */
static VipsImage *jpeg_fit(int fd, uint32_t max)
{
    VipsSource *src = source_at_start(fd);
    VipsImage *hdr = NULL, *img = NULL, *mem = NULL, *up = NULL;
    if (src == NULL)
        return NULL;
    hdr = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (hdr == NULL || vips_image_get_format(hdr) != VIPS_FORMAT_UCHAR ||
        (vips_image_get_bands(hdr) != 3 && vips_image_get_bands(hdr) != 1) ||
        vips_image_get_typeof(hdr, VIPS_META_ICC_NAME) != 0)
        goto out;
    int w = vips_image_get_width(hdr), h = vips_image_get_height(hdr);
    int longest = w > h ? w : h, shrink = 1;
    while (shrink < 8 && longest / (shrink * 2) >= (int)max)
        shrink *= 2;
    g_object_unref(hdr);
    hdr = NULL;
    g_object_unref(src);
    if ((src = source_at_start(fd)) == NULL ||
        vips_jpegload_source(src, &img, "shrink", shrink, "access", VIPS_ACCESS_SEQUENTIAL, NULL) !=
            0)
        goto out;
    mem = fit_in_memory(img, max);
    if (mem != NULL && vips_autorot(mem, &up, NULL) != 0)
        up = NULL;
out:
    if (mem)
        g_object_unref(mem);
    if (img)
        g_object_unref(img);
    if (hdr)
        g_object_unref(hdr);
    if (src)
        g_object_unref(src);
    if (up == NULL)
        vips_error_clear();
    return up;
}

/* *orientation gets the EXIF orientation from the header (1 if unknown). */
static void do_image(const struct decode_req *req, int in_fd, const int *out_fds,
                     struct decode_resp *resp, int *orientation)
{
    VipsSource *src = source_at_start(in_fd);
    VipsImage *hdr = NULL, *big = NULL, *mem = NULL;
    if (src == NULL) {
        resp->status = -EIO;
        vips_reason(resp->reason, sizeof resp->reason, "open");
        return;
    }
    hdr = vips_image_new_from_source(src, "", "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (hdr == NULL) {
        vips_reason(resp->reason, sizeof resp->reason, "header");
        fail_variants(req, resp, -EBADMSG, resp->reason);
        goto out;
    }
    uint64_t w = (uint64_t)vips_image_get_width(hdr);
    uint64_t h = (uint64_t)vips_image_get_height(hdr);
    int pages = vips_image_get_n_pages(hdr);
    if (vips_image_get_typeof(hdr, "page-height")) {
        int ph = 0;
        if (vips_image_get_int(hdr, "page-height", &ph) == 0 && ph > 0 && (uint64_t)ph <= h)
            h = (uint64_t)ph;
    }
    bool swap = vips_image_get_orientation_swap(hdr);
    *orientation = vips_image_get_orientation(hdr);
    resp->width = (uint32_t)(swap ? h : w);
    resp->height = (uint32_t)(swap ? w : h);
    resp->have |= DECODE_HAVE_SIZE;
    if (resp->kind == DECODE_KIND_PDF) {
        resp->pages = (uint32_t)(pages > 0 ? pages : 1);
        resp->have |= DECODE_HAVE_PAGES;
    } else if (pages > 1) {
        resp->frames = (uint32_t)pages;
        resp->have |= DECODE_HAVE_FRAMES;
    }
    char v[DECODE_TEXT_LEN];
    if (exif_value(hdr, "exif-ifd2-DateTimeOriginal", v, sizeof v) &&
        exif_time(v, resp->taken, sizeof resp->taken))
        resp->have |= DECODE_HAVE_TAKEN;
    if (exif_value(hdr, "exif-ifd0-Model", resp->camera, sizeof resp->camera))
        resp->have |= DECODE_HAVE_CAMERA;
    if (req->max_pixels > 0 && w * h > req->max_pixels) {
        char why[DECODE_REASON_LEN];
        snprintf(why, sizeof why,
                 "%llux%llu is %llu pixels, over processing.limits.max_pixels (%llu)",
                 (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
                 (unsigned long long)req->max_pixels);
        fail_variants(req, resp, -EFBIG, why);
        goto out;
    }
    if (req->n_variants == 0)
        goto out;
    g_object_unref(hdr);
    hdr = NULL;
    g_object_unref(src);
    src = source_at_start(in_fd);
    int order[DECODE_MAX_VARIANTS];
    sort_variants(req, order);
    const struct decode_variant_req *first = &req->v[order[0]];
    if (req->flags & DECODE_F_TEST_SEGV)
        raise(SIGSEGV); /* test hook: a crash inside the decoder */
    if (strcmp(resp->mime, "image/jpeg") == 0)
        mem = jpeg_fit(in_fd, first->max);
    if (mem == NULL) {
        if (src == NULL ||
            vips_thumbnail_source(src, &big, (int)first->max, "height", (int)first->max, "size",
                                  VIPS_SIZE_DOWN, NULL) != 0) {
            char why[DECODE_REASON_LEN];
            vips_reason(why, sizeof why, "decode");
            fail_variants(req, resp, -EBADMSG, why);
            goto out;
        }
        mem = vips_image_copy_memory(big);
        /* the loader reports its warnings when it is closed */
        g_object_unref(big);
        big = NULL;
    }
    g_object_unref(src);
    src = NULL;
    if (mem == NULL || truncated_reason()) {
        char why[DECODE_REASON_LEN];
        if (mem == NULL)
            vips_reason(why, sizeof why, "decode");
        else
            set_reason(why, sizeof why, "", truncated_reason());
        fail_variants(req, resp, -EBADMSG, why);
        goto out;
    }
    save_variant(first, mem, out_fds[order[0]], &resp->v[order[0]]);
    if (resp->v[order[0]].status == 0 && req->n_variants > 1) {
        struct decode_req rest = *req;
        /* the others from the first, already upright */
        rest.n_variants = 0;
        int map[DECODE_MAX_VARIANTS], fds[DECODE_MAX_VARIANTS];
        struct decode_resp sub;
        memset(&sub, 0, sizeof sub);
        for (uint32_t k = 1; k < req->n_variants; k++) {
            map[rest.n_variants] = order[k];
            fds[rest.n_variants] = out_fds[order[k]];
            rest.v[rest.n_variants++] = req->v[order[k]];
        }
        variants_from_image(&rest, mem, fds, &sub);
        for (uint32_t k = 0; k < rest.n_variants; k++)
            resp->v[map[k]] = sub.v[k];
    } else if (resp->v[order[0]].status != 0) {
        fail_variants(req, resp, resp->v[order[0]].status, resp->v[order[0]].reason);
    }
out:
    if (mem)
        g_object_unref(mem);
    if (big)
        g_object_unref(big);
    if (hdr)
        g_object_unref(hdr);
    if (src)
        g_object_unref(src);
}

/* ---- video and audio (FFmpeg) ---- */

static int fd_read(void *opaque, uint8_t *buf, int len)
{
    int fd = *(int *)opaque;
    ssize_t n = read(fd, buf, (size_t)len);
    if (n < 0)
        return AVERROR(errno);
    return n == 0 ? AVERROR_EOF : (int)n;
}

static int64_t fd_seek(void *opaque, int64_t off, int whence)
{
    int fd = *(int *)opaque;
    if (whence == AVSEEK_SIZE) {
        off_t cur = lseek(fd, 0, SEEK_CUR), end = lseek(fd, 0, SEEK_END);
        lseek(fd, cur, SEEK_SET);
        return end;
    }
    off_t r = lseek(fd, (off_t)off, whence & ~AVSEEK_FORCE);
    return r < 0 ? AVERROR(errno) : (int64_t)r;
}

static void av_reason(char *dst, size_t cap, const char *what, int averr)
{
    char msg[128];
    av_strerror(averr, msg, sizeof msg);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%s: ", what);
    set_reason(dst, cap, prefix, msg);
}

/* Degrees to turn the frame clockwise so it shows upright (0, 90, 180, 270). */
static int stream_rotation(const AVStream *st)
{
    const uint8_t *m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, NULL);
    if (m == NULL)
        return 0;
    double ccw = av_display_rotation_get((const int32_t *)m);
    if (ccw != ccw) /* NaN */
        return 0;
    long cw = lround(-ccw);
    cw = ((cw % 360) + 360) % 360;
    return (int)(((cw + 45) / 90) * 90 % 360);
}

/* Decode the first frame of stream idx into an upright RGB VipsImage. */
static int poster_frame(AVFormatContext *fc, int idx, const AVCodec *codec, int rot,
                        VipsImage **out, char *why, size_t whylen)
{
    AVCodecContext *cc = avcodec_alloc_context3(codec);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *fr = av_frame_alloc();
    struct SwsContext *sws = NULL;
    uint8_t *rgb = NULL;
    int rc = -EBADMSG, e;
    if (cc == NULL || pkt == NULL || fr == NULL) {
        snprintf(why, whylen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    if ((e = avcodec_parameters_to_context(cc, fc->streams[idx]->codecpar)) < 0) {
        av_reason(why, whylen, "codec", e);
        goto out;
    }
    cc->thread_count = 1;
    if ((e = avcodec_open2(cc, codec, NULL)) < 0) {
        av_reason(why, whylen, "codec", e);
        goto out;
    }
    bool got = false;
    for (int n = 0; n < MAX_PACKETS && !got; n++) {
        e = av_read_frame(fc, pkt);
        if (e < 0) {
            avcodec_send_packet(cc, NULL); /* drain what the decoder holds */
        } else if (pkt->stream_index != idx) {
            av_packet_unref(pkt);
            continue;
        } else {
            avcodec_send_packet(cc, pkt);
            av_packet_unref(pkt);
        }
        int r = avcodec_receive_frame(cc, fr);
        if (r == 0)
            got = true;
        else if (e < 0) {
            av_reason(why, whylen, "poster", r == AVERROR(EAGAIN) ? AVERROR_EOF : r);
            goto out;
        }
    }
    if (!got) {
        snprintf(why, whylen, "poster: no frame in the first %d packets", MAX_PACKETS);
        goto out;
    }
    int w = fr->width, h = fr->height;
    if (w <= 0 || h <= 0 || w > 16384 || h > 16384) {
        snprintf(why, whylen, "poster: bad frame size %dx%d", w, h);
        goto out;
    }
    sws = sws_getContext(w, h, (enum AVPixelFormat)fr->format, w, h, AV_PIX_FMT_RGB24, SWS_BILINEAR,
                         NULL, NULL, NULL);
    if (sws == NULL) {
        snprintf(why, whylen, "poster: cannot convert pixel format %d", fr->format);
        goto out;
    }
    size_t stride = (size_t)w * 3;
    rgb = av_malloc(stride * (size_t)h);
    if (rgb == NULL) {
        snprintf(why, whylen, "out of memory");
        rc = -ENOMEM;
        goto out;
    }
    uint8_t *dst[4] = {rgb, NULL, NULL, NULL};
    int dst_stride[4] = {(int)stride, 0, 0, 0};
    sws_scale(sws, (const uint8_t *const *)fr->data, fr->linesize, 0, h, dst, dst_stride);
    VipsImage *im =
        vips_image_new_from_memory_copy(rgb, stride * (size_t)h, w, h, 3, VIPS_FORMAT_UCHAR);
    if (im == NULL) {
        vips_reason(why, whylen, "poster");
        goto out;
    }
    if (rot != 0) {
        VipsImage *r = NULL;
        VipsAngle a = rot == 90 ? VIPS_ANGLE_D90 : rot == 180 ? VIPS_ANGLE_D180 : VIPS_ANGLE_D270;
        if (vips_rot(im, &r, a, NULL) != 0) {
            g_object_unref(im);
            vips_reason(why, whylen, "poster");
            goto out;
        }
        g_object_unref(im);
        im = r;
    }
    *out = im;
    rc = 0;
out:
    av_free(rgb);
    sws_freeContext(sws);
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&cc);
    return rc;
}

static void do_av(const struct decode_req *req, int in_fd, const int *out_fds,
                  struct decode_resp *resp)
{
    AVFormatContext *fc = NULL;
    AVIOContext *avio = NULL;
    uint8_t *iobuf = NULL;
    int fd = in_fd, e;
    char why[DECODE_REASON_LEN] = "";
    bool want_poster =
        resp->kind == DECODE_KIND_VIDEO && (req->flags & DECODE_F_POSTER) && req->n_variants > 0;

    if (lseek(fd, 0, SEEK_SET) != 0 || (iobuf = av_malloc(AVIO_BUF)) == NULL ||
        (avio = avio_alloc_context(iobuf, AVIO_BUF, 0, &fd, fd_read, NULL, fd_seek)) == NULL ||
        (fc = avformat_alloc_context()) == NULL) {
        snprintf(why, sizeof why, "out of memory");
        if (avio == NULL)
            av_free(iobuf);
        goto fail;
    }
    fc->pb = avio;
    fc->flags |= AVFMT_FLAG_CUSTOM_IO;
    fc->probesize = 8 * 1024 * 1024;
    fc->max_analyze_duration = 5 * AV_TIME_BASE;
    if ((e = avformat_open_input(&fc, NULL, NULL, NULL)) < 0) {
        av_reason(why, sizeof why, "container", e);
        fc = NULL; /* freed by avformat_open_input */
        goto fail;
    }
    if ((e = avformat_find_stream_info(fc, NULL)) < 0) {
        av_reason(why, sizeof why, "streams", e);
        goto fail;
    }
    if (fc->duration != AV_NOPTS_VALUE && fc->duration > 0) {
        resp->duration_ms = (uint64_t)(fc->duration / (AV_TIME_BASE / 1000));
        resp->have |= DECODE_HAVE_DURATION;
    }
    if (resp->kind != DECODE_KIND_VIDEO)
        goto done;
    const AVCodec *codec = NULL;
    int idx = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (idx < 0) {
        snprintf(why, sizeof why, "no video stream");
        goto fail;
    }
    const AVCodecParameters *par = fc->streams[idx]->codecpar;
    int rot = stream_rotation(fc->streams[idx]);
    uint64_t w = par->width > 0 ? (uint64_t)par->width : 0;
    uint64_t h = par->height > 0 ? (uint64_t)par->height : 0;
    if (w && h) {
        bool swap = rot == 90 || rot == 270;
        resp->width = (uint32_t)(swap ? h : w);
        resp->height = (uint32_t)(swap ? w : h);
        resp->have |= DECODE_HAVE_SIZE;
    }
    if (!want_poster)
        goto done;
    if (req->max_pixels > 0 && w * h > req->max_pixels) {
        snprintf(why, sizeof why,
                 "%llux%llu is %llu pixels, over processing.limits.max_pixels (%llu)",
                 (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
                 (unsigned long long)req->max_pixels);
        fail_variants(req, resp, -EFBIG, why);
        goto done;
    }
    if (codec == NULL) {
        snprintf(why, sizeof why, "no decoder for %s", avcodec_get_name(par->codec_id));
        goto fail;
    }
    if (req->flags & DECODE_F_TEST_SEGV)
        raise(SIGSEGV); /* test hook: a crash inside the decoder */
    VipsImage *frame = NULL;
    int prc = poster_frame(fc, idx, codec, rot, &frame, why, sizeof why);
    if (prc != 0) {
        fail_variants(req, resp, prc, why);
        goto done;
    }
    variants_from_image(req, frame, out_fds, resp);
    g_object_unref(frame);
done:
    if (fc)
        avformat_close_input(&fc);
    if (avio) {
        av_freep(&avio->buffer);
        avio_context_free(&avio);
    }
    return;
fail:
    if (want_poster)
        fail_variants(req, resp, -EBADMSG, why);
    else if (resp->reason[0] == '\0')
        set_reason(resp->reason, sizeof resp->reason, "", why);
    goto done;
}

/* ---- the original without its metadata (DECODE_F_STRIP) ---- */

static void strip_original(int in_fd, int orientation, int out_fd, struct decode_resp *resp)
{
    struct stat st;
    resp->strip = DECODE_STRIP_FAILED;
    if (out_fd < 0 || fstat(in_fd, &st) != 0 || st.st_size <= 0) {
        set_reason(resp->strip_reason, sizeof resp->strip_reason, "", "no input or output");
        return;
    }
    size_t len = (size_t)st.st_size;
    void *b = mmap(NULL, len, PROT_READ, MAP_PRIVATE, in_fd, 0);
    if (b == MAP_FAILED) {
        set_reason(resp->strip_reason, sizeof resp->strip_reason,
                   "cannot map the original: ", strerror(errno));
        return;
    }
    uint64_t n = 0;
    char why[DECODE_REASON_LEN] = "";
    int rc = strip_image(b, len, orientation, out_fd, &n, why, sizeof why);
    munmap(b, len);
    if (rc == 0) {
        resp->strip = DECODE_STRIP_DONE;
        resp->strip_size = n;
    } else if (rc == 1) {
        resp->strip = DECODE_STRIP_CLEAN;
    } else {
        set_reason(resp->strip_reason, sizeof resp->strip_reason, "", why[0] ? why : strerror(-rc));
    }
}

void decoder_run(const struct decode_req *req, int in_fd, const int *out_fds,
                 struct decode_resp *resp)
{
    memset(resp, 0, sizeof *resp);
    resp->n_variants = req->n_variants;
    uint8_t *head = xmalloc(MAGIC_BYTES);
    ssize_t got = dr_pread_full(in_fd, head, MAGIC_BYTES, 0);
    if (got < 0) {
        resp->status = (int32_t)got;
        set_reason(resp->reason, sizeof resp->reason, "read: ", strerror((int)-got));
        free(head);
        fail_variants(req, resp, (int)got, resp->reason);
        return;
    }
    const char *mime = got > 0 ? magic_buffer(magic, head, (size_t)got) : "application/x-empty";
    free(head);
    set_reason(resp->mime, sizeof resp->mime, "", mime ? mime : "application/octet-stream");
    resp->kind = kind_of(resp->mime);
    switch (resp->kind) {
    case DECODE_KIND_IMAGE:
    case DECODE_KIND_PDF: {
        int orientation = 1;
        do_image(req, in_fd, out_fds, resp, &orientation);
        if ((req->flags & DECODE_F_STRIP) && resp->kind == DECODE_KIND_IMAGE)
            strip_original(in_fd, orientation, out_fds[req->n_variants], resp);
        break;
    }
    case DECODE_KIND_VIDEO:
    case DECODE_KIND_AUDIO:
        do_av(req, in_fd, out_fds, resp);
        if (resp->kind == DECODE_KIND_AUDIO)
            fail_variants(req, resp, -ENOTSUP, "audio has no picture");
        break;
    default: {
        char why[DECODE_REASON_LEN];
        snprintf(why, sizeof why, "%s is not an image, video or PDF", resp->mime);
        fail_variants(req, resp, -ENOTSUP, why);
        break;
    }
    }
}

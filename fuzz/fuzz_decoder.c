/* fuzz_decoder.c - libFuzzer target for the decoders dripd runs in its
 * dripd-decode helper (src/decode/decoder.c): libmagic, the libvips
 * image path (header, pixel limit, one decode, variants; PDFs not: see
 * LLVMFuzzerInitialize), the FFmpeg
 * poster path, the WebP metadata stripper of the variants, and the
 * lossless stripper of originals (strip.c). The libraries themselves
 * are not instrumented; dripd's code around them is, and a crash in them
 * is a crash here too (the helper's sandbox is not used: this is the code
 * the sandbox contains).
 *
 * Input: one byte; 'W' feeds the rest to decoder_webp_strip, 'S' the rest
 * after an orientation byte to strip_image (output to /dev/null), anything
 * else feeds it as a file to decoder_run with a 4 Mpx limit and two small
 * variants (64 px WebP, 32 px JPEG). Seeds: fuzz/corpus/decoder/ (small
 * JPEG, PNG, GIF, WebP, PDF, MP4 files).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "decode/decoder.h"
#include "decode/strip.h"

#include <fcntl.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
const char *__asan_default_options(void);

/* glib and libvips keep process-wide caches they never free */
const char *__asan_default_options(void)
{
    return "detect_leaks=0";
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    char err[256];
    /* No PDF module: poppler recurses without bound on some 200-byte PDFs
     * (one ran 88 s into 2 GiB, poppler 22.02), a poppler bug that the
     * helper's sandbox contains (memory limit, timeout; test_processing's
     * hostile files) and that would only stall this target. The PDF path
     * is still tested end to end (test_formats). */
    if (decoder_open(DECODE_F_MOD_HEIF, err, sizeof err) != 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] == 'W') {
        uint8_t *b = malloc(size - 1 + 1);
        memcpy(b, data + 1, size - 1);
        size_t n = decoder_webp_strip(b, size - 1);
        if (n > size - 1)
            abort();
        free(b);
        return 0;
    }
    if (data[0] == 'S' && size >= 2) {
        static int null_fd = -1;
        if (null_fd < 0 && (null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC)) < 0)
            abort();
        uint8_t *b = malloc(size - 2 + 1); /* exact size: a read past it is caught */
        memcpy(b, data + 2, size - 2);
        uint64_t n = 0;
        char why[200];
        int rc = strip_image(b, size - 2, data[1] % 9, null_fd, &n, why, sizeof why);
        if (rc == 0 && n > size + 64)
            abort(); /* it only removes, and adds at most one small EXIF */
        free(b);
        return 0;
    }
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0 || write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
        abort();
    struct decode_req req = {.flags = DECODE_F_POSTER, .max_pixels = 4000000, .n_variants = 2};
    strcpy(req.v[0].name, "thumb");
    req.v[0].max = 64, req.v[0].format = DECODE_FMT_WEBP, req.v[0].quality = 50;
    strcpy(req.v[1].name, "small");
    req.v[1].max = 32, req.v[1].format = DECODE_FMT_JPEG, req.v[1].quality = 50;
    int outs[2] = {-1, -1};
    struct decode_resp resp;
    decoder_run(&req, fd, outs, &resp);
    close(fd);
    return 0;
}

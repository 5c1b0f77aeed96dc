/* test_decode.c - Check suite for the dripd-decode helper and its client
 * (decode.c, decode_proto.c; the helper is bin/dripd-decode, found
 * through DRIPD_DECODE_BIN, which `make unit` sets).
 *
 * Real inputs are made at start with Debian's tools (ffmpeg, exiftool,
 * vips) into a temporary directory: a 12 MP JPEG with EXIF orientation 6,
 * GPS, capture time and camera model; a PNG with alpha; a WebP; an
 * animated GIF; a HEIC; a 3 s MP4; a two-page PDF (written here); and the hostile
 * ones: a truncated JPEG, a PNG that claims 50,000 x 50,000 pixels, a text
 * file named .jpg, an empty file. Variants are read back with vipsheader
 * and exiftool. A missing tool fails the suite.
 *
 * Under valgrind (`make valgrind`: the helper is traced too, the tools
 * that make the inputs are not) the helper runs without its seccomp
 * filter and rlimits (sandbox.c: valgrind cannot run seccomp(2)), so the
 * tests of the filter and of RLIMIT_AS are left out there, and the
 * helper's time limits are 20 times longer.
 */
#include <check.h>
#include <stdarg.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <valgrind/valgrind.h>

#include "dripd/decode.h"

static char dir[256];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* First line of a command's output (trimmed), "" if none. */
static void run_out(char *out, size_t cap, const char *cmd)
{
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return;
    if (fgets(out, (int)cap, p) == NULL)
        out[0] = '\0';
    pclose(p);
    out[strcspn(out, "\r\n")] = '\0';
}

/* For the setup, outside any test (Check's asserts need a running test). */
static void need(bool ok, const char *what)
{
    if (!ok) {
        perror(what);
        exit(1);
    }
}

static uint32_t crc32_of(const uint8_t *b, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= b[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
    }
    return c ^ 0xffffffffu;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A PNG whose header claims w x h RGBA pixels, with a tiny IDAT. */
static void write_bomb(const char *path, uint32_t w, uint32_t h)
{
    uint8_t png[128];
    size_t n = 0;
    memcpy(png, "\x89PNG\r\n\x1a\n", 8);
    n = 8;
    put32(png + n, 13);
    memcpy(png + n + 4, "IHDR", 4);
    put32(png + n + 8, w);
    put32(png + n + 12, h);
    png[n + 16] = 8, png[n + 17] = 6, png[n + 18] = 0, png[n + 19] = 0, png[n + 20] = 0;
    put32(png + n + 21, crc32_of(png + n + 4, 17));
    n += 25;
    static const uint8_t idat[] = {0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01};
    put32(png + n, sizeof idat);
    memcpy(png + n + 4, "IDAT", 4);
    memcpy(png + n + 8, idat, sizeof idat);
    put32(png + n + 8 + sizeof idat, crc32_of(png + n + 4, 4 + sizeof idat));
    n += 12 + sizeof idat;
    put32(png + n, 0);
    memcpy(png + n + 4, "IEND", 4);
    put32(png + n + 8, crc32_of(png + n + 4, 4));
    n += 12;
    FILE *f = fopen(path, "wb");
    need(f != NULL, path);
    need(fwrite(png, 1, n, f) == n, path);
    fclose(f);
}

/* A two-page PDF with a line of text on each page (xref offsets computed). */
static void write_pdf(const char *path)
{
    const char *objs[] = {
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << >> >>",
        "<< /Length 44 >>\nstream\n0 0 1 rg 100 100 412 592 re f 0 g 1 w\nendstream",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << >> >>",
    };
    FILE *f = fopen(path, "wb");
    need(f != NULL, path);
    long off[6];
    fputs("%PDF-1.4\n", f);
    for (int i = 0; i < 5; i++) {
        off[i] = ftell(f);
        fprintf(f, "%d 0 obj\n%s\nendobj\n", i + 1, objs[i]);
    }
    long xref = ftell(f);
    fprintf(f, "xref\n0 6\n0000000000 65535 f \n");
    for (int i = 0; i < 5; i++)
        fprintf(f, "%010ld 00000 n \n", off[i]);
    fprintf(f, "trailer\n<< /Size 6 /Root 1 0 R >>\nstartxref\n%ld\n%%%%EOF\n", xref);
    fclose(f);
}

static void make_inputs(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_decode.XXXXXX");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    int rc = 0;
    rc |= sh("cd %s && ffmpeg -v error -y -f lavfi -i 'testsrc2=size=4000x3000:rate=1' "
             "-frames:v 1 -q:v 2 photo.jpg",
             dir);
    rc |= sh("cd %s && exiftool -q -overwrite_original -Orientation#=6 -GPSLatitude=48.8584 "
             "-GPSLatitudeRef=N -GPSLongitude=2.2945 -GPSLongitudeRef=E "
             "-DateTimeOriginal='2024:05:01 12:34:56' -Model='Pixel 7' photo.jpg",
             dir);
    rc |= sh("cd %s && ffmpeg -v error -y -f lavfi -i "
             "'color=c=red@0.5:size=640x480,format=rgba' -frames:v 1 alpha.png",
             dir);
    rc |= sh("cd %s && ffmpeg -v error -y -f lavfi -i 'testsrc2=size=800x600' -frames:v 1 "
             "pic.webp",
             dir);
    rc |= sh("cd %s && ffmpeg -v error -y -f lavfi -i 'testsrc2=size=320x240:rate=5' -t 2 "
             "anim.gif",
             dir);
    rc |= sh("cd %s && vips copy pic.webp 'photo.heic[compression=hevc]' 2>/dev/null", dir);
    rc |= sh("cd %s && ffmpeg -v error -y -f lavfi -i 'testsrc2=size=640x360:rate=25' -t 3 "
             "-c:v libx264 -pix_fmt yuv420p clip.mp4",
             dir);
    rc |= sh("cd %s && ffmpeg -v error -y -f lavfi -i 'sine=frequency=440:duration=2' "
             "tone.mp3",
             dir);
    rc |= sh("cd %s && head -c 300000 photo.jpg > truncated.jpg && "
             "echo 'not a photo at all' > lying.jpg && : > empty.jpg",
             dir);
    if (rc != 0) {
        fprintf(stderr, "test_decode: cannot make the inputs (ffmpeg, exiftool; make deps)\n");
        exit(1);
    }
    char p[300];
    snprintf(p, sizeof p, "%s/bomb.png", dir);
    write_bomb(p, 50000, 50000);
    snprintf(p, sizeof p, "%s/doc.pdf", dir);
    write_pdf(p);
}

static void remove_inputs(void)
{
    if (getenv("TEST_DECODE_KEEP")) /* debugging: keep the files */
        fprintf(stderr, "test_decode: files kept in %s\n", dir);
    else
        sh("rm -rf %s", dir);
}

struct run {
    int rc;
    char err[256];
    struct decode_resp resp;
    char out[2][300]; /* variant files */
};

/* Decode dir/name into two variants, preview (1280 jpeg) and thumb
 * (256 webp), with the given flags and limits. */
static void decode_file(const char *name, uint32_t flags, uint32_t timeout_ms, struct run *r)
{
    memset(r, 0, sizeof *r);
    char in[300];
    snprintf(in, sizeof in, "%s/%s", dir, name);
    int fd = open(in, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    struct decode_req req = {
        .flags = flags | DECODE_F_POSTER,
        .max_pixels = 100000000,
        .memory = 512ull << 20,
        .timeout_ms = timeout_ms * (RUNNING_ON_VALGRIND ? 20 : 1),
        .n_variants = 2,
    };
    snprintf(req.v[0].name, sizeof req.v[0].name, "preview");
    req.v[0].max = 1280, req.v[0].format = DECODE_FMT_JPEG, req.v[0].quality = 82;
    snprintf(req.v[1].name, sizeof req.v[1].name, "thumb");
    req.v[1].max = 256, req.v[1].format = DECODE_FMT_WEBP, req.v[1].quality = 80;
    int outs[2];
    for (int i = 0; i < 2; i++) {
        snprintf(r->out[i], sizeof r->out[i], "%s/%s.%x.%s.%s", dir, name, flags, req.v[i].name,
                 i == 0 ? "jpg" : "webp");
        outs[i] = open(r->out[i], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ck_assert_int_ge(outs[i], 0);
    }
    r->rc = decode_run(decode_helper_path(), &req, fd, outs, &r->resp, r->err, sizeof r->err);
    if (getenv("TEST_DECODE_KEEP"))
        fprintf(stderr, "%s %x: %llu ms (CPU %llu ms), peak RSS %llu KiB\n", name, flags,
                (unsigned long long)r->resp.wall_ms, (unsigned long long)r->resp.cpu_ms,
                (unsigned long long)r->resp.peak_rss_kib);
    close(fd);
    close(outs[0]);
    close(outs[1]);
}

static void dims(const char *path, int *w, int *h)
{
    char cmd[400], out[64];
    snprintf(cmd, sizeof cmd, "vipsheader -f width %s", path);
    run_out(out, sizeof out, cmd);
    *w = atoi(out);
    snprintf(cmd, sizeof cmd, "vipsheader -f height %s", path);
    run_out(out, sizeof out, cmd);
    *h = atoi(out);
}

/* exiftool's count of EXIF/GPS/XMP tags in a file. */
static int meta_tags(const char *path)
{
    char cmd[400], out[64];
    snprintf(cmd, sizeof cmd, "exiftool -q -q -EXIF:all -GPS:all -XMP:all -IPTC:all -s3 %s | wc -l",
             path);
    run_out(out, sizeof out, cmd);
    return atoi(out);
}

START_TEST(test_probe)
{
    ck_assert_int_eq(decode_probe((const uint8_t *)"\xff\xd8\xff\xe1", 4), DECODE_KIND_IMAGE);
    ck_assert_int_eq(decode_probe((const uint8_t *)"\x89PNG\r\n\x1a\n", 8), DECODE_KIND_IMAGE);
    ck_assert_int_eq(decode_probe((const uint8_t *)"RIFF\0\0\0\0WEBPVP8 ", 16), DECODE_KIND_IMAGE);
    ck_assert_int_eq(decode_probe((const uint8_t *)"\0\0\0\x18"
                                                   "ftypheic",
                                  12),
                     DECODE_KIND_IMAGE);
    ck_assert_int_eq(decode_probe((const uint8_t *)"\0\0\0\x18"
                                                   "ftypisom",
                                  12),
                     DECODE_KIND_VIDEO);
    ck_assert_int_eq(decode_probe((const uint8_t *)"%PDF-1.7", 8), DECODE_KIND_PDF);
    ck_assert_int_eq(decode_probe((const uint8_t *)"ID3\x04", 4), DECODE_KIND_AUDIO);
    ck_assert_int_eq(decode_probe((const uint8_t *)"PK\x03\x04", 4), DECODE_KIND_OTHER);
    ck_assert_int_eq(decode_probe((const uint8_t *)"hello world", 11), DECODE_KIND_OTHER);
    ck_assert_int_eq(decode_probe((const uint8_t *)"", 0), DECODE_KIND_OTHER);
    ck_assert_int_eq(decode_probe((const uint8_t *)"\xff", 1), DECODE_KIND_OTHER);
}
END_TEST

START_TEST(test_proto_roundtrip)
{
    struct decode_req q = {
        .flags = DECODE_F_POSTER, .max_pixels = 7, .memory = 9, .timeout_ms = 11, .n_variants = 1};
    snprintf(q.v[0].name, sizeof q.v[0].name, "thumb");
    q.v[0].max = 256, q.v[0].format = DECODE_FMT_WEBP, q.v[0].quality = 80;
    uint8_t buf[DECODE_MSG_MAX];
    int n = decode_req_encode(&q, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    struct decode_req q2;
    ck_assert_int_eq(decode_req_parse(buf, (size_t)n, &q2), 0);
    ck_assert_str_eq(q2.v[0].name, "thumb");
    ck_assert_uint_eq(q2.max_pixels, 7);
    /* every truncation and a trailing byte are refused */
    for (int k = 0; k < n; k++)
        ck_assert_int_eq(decode_req_parse(buf, (size_t)k, &q2), -EBADMSG);
    ck_assert_int_eq(decode_req_parse(buf, (size_t)n + 1, &q2), -EBADMSG);
    /* bad names, formats and counts are refused at both ends */
    snprintf(q.v[0].name, sizeof q.v[0].name, "../x");
    ck_assert_int_eq(decode_req_encode(&q, buf, sizeof buf), -EINVAL);

    struct decode_resp r;
    memset(&r, 0, sizeof r);
    r.status = 0, r.kind = DECODE_KIND_IMAGE, r.have = DECODE_HAVE_SIZE, r.width = 3;
    snprintf(r.mime, sizeof r.mime, "image/jpeg");
    r.n_variants = 1;
    r.v[0].status = -EFBIG;
    snprintf(r.v[0].reason, sizeof r.v[0].reason, "too big");
    n = decode_resp_encode(&r, buf, sizeof buf);
    ck_assert_int_gt(n, 0);
    struct decode_resp r2;
    ck_assert_int_eq(decode_resp_parse(buf, (size_t)n, &r2), 0);
    ck_assert_str_eq(r2.v[0].reason, "too big");
    ck_assert_int_eq(r2.v[0].status, -EFBIG);
    /* a control character in a string, or a positive status: refused */
    uint8_t bad[DECODE_MSG_MAX];
    memcpy(bad, buf, (size_t)n);
    bad[9] = '\n'; /* first byte of reason */
    ck_assert_int_eq(decode_resp_parse(bad, (size_t)n, &r2), -EBADMSG);
    memcpy(bad, buf, (size_t)n);
    bad[5] = 1; /* status = 1 */
    ck_assert_int_eq(decode_resp_parse(bad, (size_t)n, &r2), -EBADMSG);
}
END_TEST

START_TEST(test_phone_photo)
{
    struct run r;
    decode_file("photo.jpg", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_str_eq(r.resp.mime, "image/jpeg");
    ck_assert_uint_eq(r.resp.kind, DECODE_KIND_IMAGE);
    /* 4000x3000 stored, orientation 6: shown 3000x4000 */
    ck_assert_uint_eq(r.resp.width, 3000);
    ck_assert_uint_eq(r.resp.height, 4000);
    ck_assert_str_eq(r.resp.taken, "2024-05-01T12:34:56");
    ck_assert_str_eq(r.resp.camera, "Pixel 7");
    ck_assert_msg(r.resp.v[0].status == 0, "%s", r.resp.v[0].reason);
    ck_assert_msg(r.resp.v[1].status == 0, "%s", r.resp.v[1].reason);
    ck_assert_uint_eq(r.resp.v[0].width, 960);
    ck_assert_uint_eq(r.resp.v[0].height, 1280);
    ck_assert_uint_eq(r.resp.v[1].width, 192);
    ck_assert_uint_eq(r.resp.v[1].height, 256);
    int w, h;
    dims(r.out[0], &w, &h);
    ck_assert_int_eq(w, 960);
    ck_assert_int_eq(h, 1280);
    dims(r.out[1], &w, &h);
    ck_assert_int_eq(w, 192);
    ck_assert_int_eq(h, 256);
    struct stat st;
    ck_assert_int_eq(stat(r.out[0], &st), 0);
    ck_assert_uint_eq((uint64_t)st.st_size, r.resp.v[0].size);
    /* the original has them; the variants have none */
    char p[300];
    snprintf(p, sizeof p, "%s/photo.jpg", dir);
    ck_assert_int_gt(meta_tags(p), 3);
    ck_assert_int_eq(meta_tags(r.out[0]), 0);
    ck_assert_int_eq(meta_tags(r.out[1]), 0);
    /* shrink-on-load: a 12 MP photo in well under the 256 MiB budget */
    ck_assert_uint_lt(r.resp.peak_rss_kib, 200 * 1024);
}
END_TEST

START_TEST(test_other_images)
{
    struct run r;
    decode_file("alpha.png", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_str_eq(r.resp.mime, "image/png");
    ck_assert_uint_eq(r.resp.width, 640);
    ck_assert_msg(r.resp.v[0].status == 0, "%s", r.resp.v[0].reason);
    ck_assert_uint_eq(r.resp.v[0].width, 640); /* never enlarged */
    ck_assert_uint_eq(r.resp.v[1].width, 256);
    ck_assert_uint_eq(r.resp.v[1].height, 192);

    decode_file("pic.webp", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_str_eq(r.resp.mime, "image/webp");
    ck_assert_uint_eq(r.resp.height, 600);
    ck_assert_int_eq(r.resp.v[1].status, 0);

    decode_file("photo.heic", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_str_eq(r.resp.mime, "image/heic");
    ck_assert_uint_eq(r.resp.width, 800);
    ck_assert_msg(r.resp.v[1].status == 0, "%s", r.resp.v[1].reason);
    ck_assert_uint_eq(r.resp.v[1].width, 256);

    decode_file("anim.gif", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_str_eq(r.resp.mime, "image/gif");
    ck_assert_uint_eq(r.resp.width, 320);
    ck_assert_uint_eq(r.resp.height, 240);
    ck_assert_uint_eq(r.resp.frames, 10);
    ck_assert_int_eq(r.resp.v[1].status, 0);
    ck_assert_uint_eq(r.resp.v[1].height, 192);
}
END_TEST

START_TEST(test_video_audio_pdf)
{
    struct run r;
    decode_file("clip.mp4", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_str_eq(r.resp.mime, "video/mp4");
    ck_assert_uint_eq(r.resp.kind, DECODE_KIND_VIDEO);
    ck_assert(r.resp.have & DECODE_HAVE_DURATION);
    ck_assert_uint_ge(r.resp.duration_ms, 2900);
    ck_assert_uint_le(r.resp.duration_ms, 3100);
    ck_assert_uint_eq(r.resp.width, 640);
    ck_assert_uint_eq(r.resp.height, 360);
    ck_assert_msg(r.resp.v[0].status == 0, "%s", r.resp.v[0].reason);
    ck_assert_uint_eq(r.resp.v[0].width, 640);
    ck_assert_uint_eq(r.resp.v[1].width, 256);
    ck_assert_uint_eq(r.resp.v[1].height, 144);

    decode_file("tone.mp3", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_str_eq(r.resp.mime, "audio/mpeg");
    ck_assert_uint_ge(r.resp.duration_ms, 1900);
    ck_assert_uint_le(r.resp.duration_ms, 2100);
    ck_assert_int_ne(r.resp.v[0].status, 0);

    decode_file("doc.pdf", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_str_eq(r.resp.mime, "application/pdf");
    ck_assert_uint_eq(r.resp.pages, 2);
    ck_assert_msg(r.resp.v[0].status == 0, "%s", r.resp.v[0].reason);
    ck_assert_uint_eq(r.resp.v[0].height, 792); /* a 72 dpi page is not enlarged */
    ck_assert_uint_eq(r.resp.v[1].height, 256);
}
END_TEST

START_TEST(test_hostile_files)
{
    struct run r;
    decode_file("bomb.png", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_uint_eq(r.resp.width, 50000);
    ck_assert_int_eq(r.resp.v[0].status, -EFBIG);
    ck_assert_ptr_nonnull(strstr(r.resp.v[0].reason, "max_pixels"));
    /* refused from the header (valgrind's own tool takes ~130 MiB) */
    ck_assert_uint_lt(r.resp.peak_rss_kib, (RUNNING_ON_VALGRIND ? 256 : 64) * 1024);

    decode_file("truncated.jpg", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_int_ne(r.resp.v[0].status, 0);
    ck_assert_int_ne(r.resp.v[1].status, 0);
    ck_assert_str_ne(r.resp.v[0].reason, "");

    decode_file("lying.jpg", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_str_eq(r.resp.mime, "text/plain");
    ck_assert_uint_eq(r.resp.kind, DECODE_KIND_OTHER);
    ck_assert_int_eq(r.resp.v[0].status, -ENOTSUP);

    decode_file("empty.jpg", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_uint_eq(r.resp.kind, DECODE_KIND_OTHER);
    ck_assert_int_ne(r.resp.v[0].status, 0);
}
END_TEST

START_TEST(test_sandbox_kills)
{
    struct run r;
    if (!RUNNING_ON_VALGRIND) { /* no filter under valgrind (see the top) */
        decode_file("photo.jpg", DECODE_F_TEST_SOCKET, 30000, &r);
        ck_assert_int_eq(r.rc, -ECHILD);
        ck_assert_msg(strstr(r.err, "SIGSYS") != NULL, "%s", r.err);
        decode_file("photo.jpg", DECODE_F_TEST_OPEN, 30000, &r);
        ck_assert_msg(r.rc == 0, "%s", r.err);
        ck_assert_int_eq(r.resp.status, -EACCES);
        ck_assert_msg(strstr(r.resp.reason, "Permission denied") != NULL, "%s", r.resp.reason);
    }
    decode_file("photo.jpg", DECODE_F_TEST_SEGV, 30000, &r);
    ck_assert_int_eq(r.rc, -ECHILD);
    ck_assert_msg(strstr(r.err, "SIGSEGV") != NULL, "%s", r.err);
    decode_file("clip.mp4", DECODE_F_TEST_SEGV, 30000, &r);
    ck_assert_int_eq(r.rc, -ECHILD);
}
END_TEST

START_TEST(test_limits)
{
    struct run r;
    decode_file("photo.jpg", DECODE_F_TEST_HANG, 700, &r);
    ck_assert_int_eq(r.rc, -ETIMEDOUT);
    ck_assert_uint_lt(r.resp.wall_ms, RUNNING_ON_VALGRIND ? 60000 : 5000);
    ck_assert_ptr_nonnull(strstr(r.err, "processing.limits.timeout"));
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    if (getenv("DRIPD_DECODE_NO_RLIMIT_AS") == NULL && !RUNNING_ON_VALGRIND) {
        decode_file("photo.jpg", DECODE_F_TEST_ALLOC, 30000, &r);
        ck_assert_msg(r.rc == 0, "%s", r.err);
        ck_assert_int_eq(r.resp.status, -ENOMEM);
        ck_assert_ptr_nonnull(strstr(r.resp.v[0].reason, "memory limit"));
    }
#endif
}
END_TEST

START_TEST(test_no_helper_no_leak)
{
    int before = 0, after = 0;
    struct run r;
    decode_file("pic.webp", 0, 30000, &r); /* the zygote's control socket stays */
    ck_assert_int_eq(r.rc, 0);
    DIR *d = opendir("/proc/self/fd");
    while (readdir(d))
        before++;
    closedir(d);
    decode_file("pic.webp", 0, 30000, &r);
    ck_assert_int_eq(r.rc, 0);
    d = opendir("/proc/self/fd");
    while (readdir(d))
        after++;
    closedir(d);
    ck_assert_int_eq(before, after);
    struct decode_req req = {.n_variants = 0, .timeout_ms = 1000};
    struct decode_resp resp;
    char err[256];
    ck_assert_int_eq(decode_run("/nonexistent/dripd-decode", &req, 0, NULL, &resp, err, sizeof err),
                     -ENOENT);
}
END_TEST

/* The pids of this process's children named comm (/proc/PID/stat). */
static int children_named(const char *comm, pid_t *out, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        char path[300], buf[512];
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        char *open = strchr(buf, '('), *close = strrchr(buf, ')');
        int ppid = 0;
        char state = 0;
        if (open == NULL || close == NULL || sscanf(close + 2, "%c %d", &state, &ppid) != 2)
            continue;
        *close = '\0';
        if (ppid == getpid() && state != 'Z' && strcmp(open + 1, comm) == 0 && n < cap)
            out[n++] = atoi(e->d_name);
    }
    if (d)
        closedir(d);
    return n;
}

static void *decode_in_thread(void *arg)
{
    decode_file("pic.webp", 0, 30000, arg);
    return NULL;
}

static void *hang_in_thread(void *arg)
{
    decode_file("pic.webp", DECODE_F_TEST_HANG, 3000, arg);
    return NULL;
}

/* One zygote serves many files; its children are this process's own
 * (CLONE_PARENT: they are waited for, timed out and measured here); it
 * outlives the thread that first needed it (a reprocess run's thread
 * ends); a zygote that dies is replaced at the next file. */
START_TEST(test_zygote)
{
    struct run r;
    pthread_t t;
    pid_t z[4], h[4];
    ck_assert_int_eq(children_named("dripd-zygote", z, 4), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, decode_in_thread, &r), 0);
    pthread_join(t, NULL); /* the thread that started the zygote is gone */
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_int_eq(children_named("dripd-zygote", z, 4), 1);
    pid_t first = z[0];
    decode_file("photo.jpg", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_int_eq(r.resp.n_variants, 2);
    ck_assert_int_eq(children_named("dripd-zygote", z, 4), 1);
    ck_assert_int_eq(z[0], first); /* the same one, alive */

    /* a helper hanging: a child of this process, named dripd-decode */
    struct run hr;
    ck_assert_int_eq(pthread_create(&t, NULL, hang_in_thread, &hr), 0);
    int n = 0;
    for (int i = 0; i < 2000 && n == 0; i++) {
        n = children_named("dripd-decode", h, 4);
        if (n == 0)
            usleep(1000); /* polling /proc with a deadline (2 s) */
    }
    ck_assert_int_eq(n, 1);
    pthread_join(t, NULL);
    ck_assert_int_eq(hr.rc, -ETIMEDOUT);
    ck_assert_int_eq(children_named("dripd-decode", h, 4), 0); /* reaped */

    /* the zygote killed: the next file gets a new one */
    ck_assert_int_eq(kill(first, SIGKILL), 0);
    decode_file("pic.webp", 0, 30000, &r);
    ck_assert_msg(r.rc == 0, "%s", r.err);
    ck_assert_int_eq(children_named("dripd-zygote", z, 4), 1);
    ck_assert_int_ne(z[0], first);
}
END_TEST

int main(void)
{
    if (decode_helper_path() == NULL) {
        fprintf(stderr, "test_decode: no dripd-decode (set DRIPD_DECODE_BIN)\n");
        return 1;
    }
    make_inputs();
    Suite *s = suite_create("decode");
    TCase *tc = tcase_create("decode");
    tcase_set_timeout(tc, RUNNING_ON_VALGRIND ? 2400 : 120);
    tcase_add_test(tc, test_probe);
    tcase_add_test(tc, test_proto_roundtrip);
    tcase_add_test(tc, test_phone_photo);
    tcase_add_test(tc, test_other_images);
    tcase_add_test(tc, test_video_audio_pdf);
    tcase_add_test(tc, test_hostile_files);
    tcase_add_test(tc, test_sandbox_kills);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_no_helper_no_leak);
    tcase_add_test(tc, test_zygote);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int nf = srunner_ntests_failed(sr);
    srunner_free(sr);
    remove_inputs();
    return nf == 0 ? 0 : 1;
}

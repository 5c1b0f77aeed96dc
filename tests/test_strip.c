/* test_strip.c - Check suite for strip.c (processing.strip_metadata):
 * real files made at start with Debian's tools (ffmpeg, exiftool, vips)
 * carrying EXIF with GPS, XMP, IPTC, comments, PNG text chunks, WebP
 * EXIF/XMP chunks and a GIF comment; stripped, then read back with
 * exiftool (no GPS, no camera, no text; the orientation kept) and
 * decoded with vips (the very same pixels). A JPEG cut in its image data
 * is stripped, one cut in its headers refused. Hostile inputs: every prefix
 * of a real JPEG and PNG, and segment lengths that overrun the file. A
 * missing tool fails the suite.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "decode/strip.h"

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

/* The whole output of a command ("" if none), at most cap - 1 bytes. */
static void run_out(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void run_out(char *out, size_t cap, const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    out[0] = '\0';
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    pclose(p);
}

static uint8_t *slurp(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ck_assert_msg(fd >= 0, "%s: %s", path, strerror(errno));
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    uint8_t *b = malloc((size_t)st.st_size + 1);
    ck_assert_int_eq(read(fd, b, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

/* Strip in/<name> into out/<name>: strip_image's result. */
static int strip_file(const char *name, int orientation, uint64_t *n, char *why, size_t whylen)
{
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/%s", dir, name);
    snprintf(out, sizeof out, "%s/s-%s", dir, name);
    size_t len;
    uint8_t *b = slurp(in, &len);
    int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ck_assert_int_ge(fd, 0);
    int rc = strip_image(b, len, orientation, fd, n, why, whylen);
    struct stat st;
    ck_assert_int_eq(fstat(fd, &st), 0);
    if (rc == 0)
        ck_assert_uint_eq((uint64_t)st.st_size, *n);
    else
        ck_assert_int_eq(st.st_size, 0); /* nothing written unless stripped */
    close(fd);
    free(b);
    return rc;
}

/* Same decoded pixels (vips rawsave; loaders do not rotate unless asked). */
static void same_pixels(const char *a, const char *b)
{
    ck_assert_int_eq(sh("cd %s && vips rawsave '%s' pa.raw && "
                        "vips rawsave '%s' pb.raw && cmp -s pa.raw pb.raw",
                        dir, a, b),
                     0);
}

static void setup_files(void)
{
    const char *t = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/dripd-strip-XXXXXX", t && *t ? t : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    const char *gps = "-GPSLatitude=48.8584 -GPSLatitudeRef=N -GPSLongitude=2.2945 "
                      "-GPSLongitudeRef=E -Model='Pixel 7' -DateTimeOriginal='2024:05:01 12:34:56'";
    int rc =
        sh("cd %s && ffmpeg -v error -y -f lavfi -i 'testsrc2=size=640x480' -frames:v 1 "
           "-q:v 3 photo.jpg && exiftool -q -overwrite_original -Orientation#=6 %s "
           "-XMP:Creator=Alice -IPTC:Keywords=secret -Comment='a comment' photo.jpg && "
           "cp photo.jpg upright.jpg && exiftool -q -overwrite_original -Orientation#=1 "
           "upright.jpg && "
           "ffmpeg -v error -y -f lavfi -i 'testsrc2=size=320x240' -frames:v 1 plain.jpg && "
           "ffmpeg -v error -y -f lavfi -i 'testsrc2=size=320x240' -frames:v 1 pic.png && "
           "cp pic.png clean.png && exiftool -q -overwrite_original %s -PNG:Comment=hello "
           "-XMP:Creator=Alice pic.png && "
           "ffmpeg -v error -y -f lavfi -i 'testsrc2=size=320x240' -frames:v 1 pic.webp && "
           "exiftool -q -overwrite_original %s -XMP:Creator=Alice pic.webp && "
           "ffmpeg -v error -y -f lavfi -i 'testsrc2=size=160x120:rate=5' -t 1 anim.gif && "
           "exiftool -q -overwrite_original -Comment='a comment' -XMP:Creator=Alice anim.gif && "
           "vips copy pic.png pic.tif",
           dir, gps, gps, gps);
    if (rc != 0) {
        fprintf(stderr, "test_strip: cannot make the inputs (ffmpeg, exiftool, vips)\n");
        exit(1);
    }
}

static void teardown_files(void)
{
    sh("rm -rf %s", dir);
}

/* exiftool's view of in/<name>: every tag, one per line ("-G -s"). */
static void tags(const char *name, char *out, size_t cap)
{
    run_out(out, cap, "exiftool -G -s -a '%s/%s' 2>&1", dir, name);
}

static void no_secrets(const char *name)
{
    static char t[32768];
    tags(name, t, sizeof t);
    ck_assert_msg(strstr(t, "GPS") == NULL, "%s still has GPS:\n%s", name, t);
    ck_assert_msg(strstr(t, "Pixel 7") == NULL, "%s still has the camera:\n%s", name, t);
    ck_assert_msg(strstr(t, "2024:05:01") == NULL, "%s still has the time:\n%s", name, t);
    ck_assert_msg(strstr(t, "Alice") == NULL, "%s still has XMP:\n%s", name, t);
    ck_assert_msg(strstr(t, "secret") == NULL, "%s still has IPTC:\n%s", name, t);
    ck_assert_msg(strstr(t, "a comment") == NULL && strstr(t, "hello") == NULL,
                  "%s still has a comment:\n%s", name, t);
    ck_assert_msg(strstr(t, "Warning") == NULL && strstr(t, "Error") == NULL, "%s:\n%s", name, t);
}

START_TEST(test_jpeg)
{
    uint64_t n;
    char why[200];
    static char t[32768];
    tags("photo.jpg", t, sizeof t);
    ck_assert_msg(strstr(t, "GPS") && strstr(t, "Alice") && strstr(t, "secret"), "%s", t);
    ck_assert_int_eq(strip_file("photo.jpg", 6, &n, why, sizeof why), 0);
    no_secrets("s-photo.jpg");
    tags("s-photo.jpg", t, sizeof t);
    ck_assert_msg(strstr(t, "Orientation") && strstr(t, "Rotate 90 CW"), "%s", t);
    same_pixels("photo.jpg", "s-photo.jpg");
    /* what stripping leaves is stripped: the same bytes again */
    ck_assert_int_eq(strip_file("s-photo.jpg", 6, &n, why, sizeof why), 0);
    ck_assert_int_eq(sh("cmp -s %s/s-photo.jpg %s/s-s-photo.jpg", dir, dir), 0);
    /* upright: no EXIF at all is left */
    ck_assert_int_eq(strip_file("upright.jpg", 1, &n, why, sizeof why), 0);
    tags("s-upright.jpg", t, sizeof t);
    ck_assert_msg(strstr(t, "[EXIF]") == NULL, "%s", t);
    same_pixels("upright.jpg", "s-upright.jpg");
}
END_TEST

/* A JPEG cut short in its image data (a truncated upload) is stripped:
 * the metadata segments go, every byte of the image data up to the cut
 * stays as it is. One cut in its headers is refused (stored as uploaded):
 * there the walk cannot tell metadata from image. */
START_TEST(test_truncated_jpeg)
{
    uint64_t n;
    char why[200];
    static char t[32768];
    ck_assert_int_eq(sh("cd %s && size=$(stat -c %%s photo.jpg) && "
                        "head -c $((size * 2 / 3)) photo.jpg > cut.jpg && "
                        "head -c 200 photo.jpg > cuthead.jpg",
                        dir),
                     0);
    ck_assert_int_eq(strip_file("cut.jpg", 6, &n, why, sizeof why), 0);
    tags("s-cut.jpg", t, sizeof t);
    ck_assert_msg(strstr(t, "GPS") == NULL && strstr(t, "Pixel 7") == NULL &&
                      strstr(t, "Alice") == NULL && strstr(t, "secret") == NULL,
                  "%s", t);
    ck_assert_msg(strstr(t, "Rotate 90 CW"), "%s", t);
    char in[512], out[512];
    snprintf(in, sizeof in, "%s/cut.jpg", dir);
    snprintf(out, sizeof out, "%s/s-cut.jpg", dir);
    size_t il, ol;
    uint8_t *a = slurp(in, &il), *b = slurp(out, &ol);
    ck_assert_uint_lt(ol, il);    /* the metadata went */
    ck_assert_uint_gt(ol, 8192u); /* the image data did not */
    size_t tail = ol - 4096;      /* all but the headers: the image data, byte for byte */
    ck_assert_int_eq(memcmp(a + il - tail, b + ol - tail, tail), 0);
    free(a);
    free(b);
    ck_assert_int_eq(strip_file("cuthead.jpg", 6, &n, why, sizeof why), -EBADMSG);
    ck_assert_msg(strstr(why, "JPEG"), "%s", why);
}
END_TEST

START_TEST(test_nothing_to_strip)
{
    uint64_t n = 7;
    char why[200];
    ck_assert_int_eq(strip_file("clean.png", 1, &n, why, sizeof why), 1);
    ck_assert_uint_eq(n, 0);
    /* ffmpeg's JPEG has a JFIF APP0 and a COM ("Lavc"): the comment goes */
    ck_assert_int_eq(strip_file("plain.jpg", 1, &n, why, sizeof why), 0);
    ck_assert_int_eq(strip_file("s-plain.jpg", 1, &n, why, sizeof why), 1);
}
END_TEST

START_TEST(test_png)
{
    uint64_t n;
    char why[200];
    ck_assert_int_eq(strip_file("pic.png", 6, &n, why, sizeof why), 0);
    no_secrets("s-pic.png");
    static char t[32768];
    tags("s-pic.png", t, sizeof t);
    ck_assert_msg(strstr(t, "Orientation") && strstr(t, "Rotate 90 CW"), "%s", t);
    same_pixels("pic.png", "s-pic.png");
    /* every chunk's CRC is right (the new eXIf's too) */
    ck_assert_int_eq(
        sh("python3 -c 'import struct,sys,zlib\n"
           "b=open(sys.argv[1],\"rb\").read(); p=8\n"
           "while p < len(b):\n"
           " n=struct.unpack(\">I\",b[p:p+4])[0]\n"
           " assert zlib.crc32(b[p+4:p+8+n])==struct.unpack(\">I\",b[p+8+n:p+12+n])[0]\n"
           " p+=12+n' %s/s-pic.png",
           dir),
        0);
}
END_TEST

START_TEST(test_webp)
{
    uint64_t n;
    char why[200];
    ck_assert_int_eq(strip_file("pic.webp", 1, &n, why, sizeof why), 0);
    no_secrets("s-pic.webp");
    same_pixels("pic.webp", "s-pic.webp");
    ck_assert_int_eq(strip_file("pic.webp", 3, &n, why, sizeof why), 0);
    static char t[32768];
    tags("s-pic.webp", t, sizeof t);
    ck_assert_msg(strstr(t, "Orientation") && strstr(t, "Rotate 180"), "%s", t);
    ck_assert_msg(strstr(t, "GPS") == NULL && strstr(t, "Alice") == NULL, "%s", t);
}
END_TEST

START_TEST(test_gif)
{
    uint64_t n;
    char why[200];
    ck_assert_int_eq(strip_file("anim.gif", 1, &n, why, sizeof why), 0);
    no_secrets("s-anim.gif");
    char out[64];
    run_out(out, sizeof out, "vipsheader -f n-pages %s/s-anim.gif", dir);
    ck_assert_int_eq(atoi(out), 5);
    same_pixels("anim.gif", "s-anim.gif");
}
END_TEST

START_TEST(test_unsupported)
{
    uint64_t n;
    char why[200];
    ck_assert_int_eq(strip_file("pic.tif", 1, &n, why, sizeof why), -ENOTSUP);
    ck_assert_msg(strstr(why, "not a JPEG"), "%s", why);
}
END_TEST

/* Every prefix of a real file, and lengths that lie: an answer, never a
 * crash or a read past the end (ASan builds check the latter). */
static void every_prefix(const char *name)
{
    char in[512];
    snprintf(in, sizeof in, "%s/%s", dir, name);
    size_t len;
    uint8_t *b = slurp(in, &len);
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    size_t step = len > 4096 ? len / 997 : 1;
    for (size_t cut = 0; cut < len; cut += (cut < 600 ? 1 : step)) {
        /* an exact-size copy, so a read past the cut is a heap overflow */
        uint8_t *c = malloc(cut ? cut : 1);
        memcpy(c, b, cut);
        uint64_t n;
        char why[200];
        int rc = strip_image(c, cut, 6, fd, &n, why, sizeof why);
        ck_assert_msg(rc == 0 || rc == 1 || rc == -EBADMSG || rc == -ENOTSUP, "%s cut at %zu: %d",
                      name, cut, rc);
        free(c);
    }
    close(fd);
    free(b);
}

START_TEST(test_hostile)
{
    every_prefix("photo.jpg");
    every_prefix("pic.png");
    every_prefix("pic.webp");
    every_prefix("anim.gif");
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    uint64_t n;
    char why[200];
    /* a segment claiming 65535 bytes in a 10-byte file */
    static const uint8_t jpg[] = {0xff, 0xd8, 0xff, 0xe1, 0xff, 0xff, 'E', 'x', 'i', 'f'};
    ck_assert_int_eq(strip_image(jpg, sizeof jpg, 1, fd, &n, why, sizeof why), -EBADMSG);
    /* a PNG chunk of 2^31 - 1 bytes */
    static const uint8_t png[] = {0x89, 'P',  'N', 'G', '\r', '\n', 0x1a, '\n', 0x7f, 0xff,
                                  0xff, 0xff, 't', 'E', 'X',  't',  0,    0,    0,    0};
    ck_assert_int_eq(strip_image(png, sizeof png, 1, fd, &n, why, sizeof why), -EBADMSG);
    /* a RIFF that claims more than there is */
    static const uint8_t webp[] = {'R', 'I', 'F', 'F', 0xf0, 0xff, 0xff, 0x7f, 'W', 'E',
                                   'B', 'P', 'V', 'P', '8',  'X',  10,   0,    0,   0};
    ck_assert_int_eq(strip_image(webp, sizeof webp, 1, fd, &n, why, sizeof why), -EBADMSG);
    close(fd);
}
END_TEST

START_TEST(test_write_error)
{
    char in[512];
    snprintf(in, sizeof in, "%s/photo.jpg", dir);
    size_t len;
    uint8_t *b = slurp(in, &len);
    int fd = open("/dev/full", O_WRONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    uint64_t n;
    char why[200];
    ck_assert_int_eq(strip_image(b, len, 6, fd, &n, why, sizeof why), -ENOSPC);
    close(fd);
    free(b);
}
END_TEST

int main(void)
{
    setup_files();
    Suite *s = suite_create("strip");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_jpeg);
    tcase_add_test(tc, test_truncated_jpeg);
    tcase_add_test(tc, test_nothing_to_strip);
    tcase_add_test(tc, test_png);
    tcase_add_test(tc, test_webp);
    tcase_add_test(tc, test_gif);
    tcase_add_test(tc, test_unsupported);
    tcase_add_test(tc, test_hostile);
    tcase_add_test(tc, test_write_error);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    teardown_files();
    return failed ? 1 : 0;
}

/* test_sniff.c - Check suite for content-type sniffing (sniff.c). */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/sniff.h"

static const char *sn(const char *b, size_t n)
{
    return sniff_content_type((const uint8_t *)b, n);
}
#define SN(lit) sn(lit, sizeof(lit) - 1)

START_TEST(test_images)
{
    ck_assert_str_eq(SN("\x89PNG\r\n\x1A\n\0\0\0\rIHDR"), "image/png");
    ck_assert_str_eq(SN("\xFF\xD8\xFF\xE0\0\x10JFIF"), "image/jpeg");
    ck_assert_str_eq(SN("GIF89a\x01\0\x01\0"), "image/gif");
    ck_assert_str_eq(SN("GIF87a\x01\0\x01\0"), "image/gif");
    ck_assert_str_eq(SN("RIFF\x24\0\0\0WEBPVP8 "), "image/webp");
}
END_TEST

START_TEST(test_documents_and_archives)
{
    ck_assert_str_eq(SN("%PDF-1.7\n%\xE2\xE3\xCF\xD3"), "application/pdf");
    ck_assert_str_eq(SN("PK\x03\x04\x14\0\0\0"), "application/zip");
    ck_assert_str_eq(SN("PK\x05\x06\0\0\0\0"), "application/zip");
}
END_TEST

START_TEST(test_audio_video)
{
    ck_assert_str_eq(SN("\0\0\0\x20"
                        "ftypisom\0\0\x02\0"),
                     "video/mp4");
    ck_assert_str_eq(SN("\0\0\0\x20"
                        "ftypM4A \0\0\x02\0"),
                     "audio/mp4");
    ck_assert_str_eq(SN("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x84webm"), "video/webm");
    ck_assert_str_eq(SN("\x1A\x45\xDF\xA3\x9F\x42\x86\x81\x01\x42\x82\x88matroska"),
                     "video/x-matroska");
    ck_assert_str_eq(SN("ID3\x04\0\0\0\0\0\0"), "audio/mpeg");
    ck_assert_str_eq(SN("\xFF\xFB\x90\x64\0\0"), "audio/mpeg");
    ck_assert_str_eq(SN("OggS\0\x02\0\0"), "audio/ogg");
    ck_assert_str_eq(SN("RIFF\x24\0\0\0WAVEfmt "), "audio/wav");
}
END_TEST

START_TEST(test_text)
{
    ck_assert_str_eq(SN("hello world\n"), "text/plain; charset=utf-8");
    ck_assert_str_eq(SN("caf\xC3\xA9 \xE2\x82\xAC\r\n\t"), "text/plain; charset=utf-8");
    ck_assert_str_eq(SN("caf\xE9 latin-1"), "text/plain");
    ck_assert_str_eq(SN("\xFF\xFEh\0i\0"), "text/plain; charset=utf-16le");
    ck_assert_str_eq(SN("\xFE\xFF\0h\0i"), "text/plain; charset=utf-16be");
    /* A UTF-8 sequence cut by the end of the window is still text. */
    ck_assert_str_eq(SN("abc\xE2\x82"), "text/plain; charset=utf-8");
    /* Overlong and surrogate encodings are not UTF-8. */
    ck_assert_str_eq(SN("an overlong slash: \xC0\xAF in text"), "text/plain");
    ck_assert_str_eq(SN("a surrogate here: \xED\xA0\x80 and text"), "text/plain");
}
END_TEST

START_TEST(test_binary_and_never_html)
{
    ck_assert_str_eq(SN("\0\x01\x02\x03"), "application/octet-stream");
    ck_assert_str_eq(SN("abc\x1B[0m\x01"), "application/octet-stream");
    ck_assert_str_eq(sniff_content_type(NULL, 0), "application/octet-stream");
    ck_assert_str_eq(sn("", 0), "application/octet-stream");
    /* HTML is only ever plain text. */
    ck_assert_str_eq(SN("<!DOCTYPE html><script>alert(1)</script>"), "text/plain; charset=utf-8");
    /* Near misses. */
    ck_assert_str_eq(SN("\x89PNG\r\n\x1A"), "application/octet-stream");
    ck_assert_str_eq(SN("\xFF\xD8"), "application/octet-stream");
    ck_assert_str_eq(SN("RIFF\x24\0\0\0AVI LIST"), "application/octet-stream");
}
END_TEST

START_TEST(test_window)
{
    /* Bytes past SNIFF_LEN are never looked at. */
    char buf[SNIFF_LEN + 16];
    memset(buf, 'a', sizeof buf);
    buf[SNIFF_LEN + 3] = '\0';
    ck_assert_str_eq(sn(buf, sizeof buf), "text/plain; charset=utf-8");
}
END_TEST

START_TEST(test_type_usable)
{
    ck_assert(sniff_type_usable("image/png"));
    ck_assert(sniff_type_usable("text/plain; charset=utf-8"));
    ck_assert(sniff_type_usable("application/vnd.api+json"));
    ck_assert(!sniff_type_usable(NULL));
    ck_assert(!sniff_type_usable(""));
    ck_assert(!sniff_type_usable("application/octet-stream"));
    ck_assert(!sniff_type_usable("Application/Octet-Stream; x=1"));
    ck_assert(!sniff_type_usable("image"));
    ck_assert(!sniff_type_usable("/png"));
    ck_assert(!sniff_type_usable("image/"));
    ck_assert(!sniff_type_usable("image/png\r\nSet-Cookie: x=1"));
    ck_assert(!sniff_type_usable("image/p(ng"));
    ck_assert(!sniff_type_usable("text/plain; charset=\xC3\xA9"));
}
END_TEST

static Suite *sniff_suite(void)
{
    Suite *s = suite_create("sniff");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_images);
    tcase_add_test(tc, test_documents_and_archives);
    tcase_add_test(tc, test_audio_video);
    tcase_add_test(tc, test_text);
    tcase_add_test(tc, test_binary_and_never_html);
    tcase_add_test(tc, test_window);
    tcase_add_test(tc, test_type_usable);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(sniff_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

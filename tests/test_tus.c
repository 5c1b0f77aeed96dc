/* test_tus.c - tus header grammar: Upload-Length/Offset, Upload-Metadata,
 * Upload-Checksum, the Upload-Expires date and base64. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/tus_header.h"

START_TEST(uint_values)
{
    uint64_t v = 7;
    ck_assert_int_eq(tus_parse_uint("0", &v), 0);
    ck_assert_uint_eq(v, 0);
    ck_assert_int_eq(tus_parse_uint("1048576", &v), 0);
    ck_assert_uint_eq(v, 1048576);
    ck_assert_int_eq(tus_parse_uint("9223372036854775807", &v), 0);
    ck_assert_uint_eq(v, 9223372036854775807ULL);
    v = 7;
    ck_assert_int_eq(tus_parse_uint("9223372036854775808", &v), -EINVAL);
    ck_assert_int_eq(tus_parse_uint("99999999999999999999999", &v), -EINVAL);
    ck_assert_int_eq(tus_parse_uint("", &v), -EINVAL);
    ck_assert_int_eq(tus_parse_uint(NULL, &v), -EINVAL);
    ck_assert_int_eq(tus_parse_uint("-1", &v), -EINVAL);
    ck_assert_int_eq(tus_parse_uint("+1", &v), -EINVAL);
    ck_assert_int_eq(tus_parse_uint(" 1", &v), -EINVAL);
    ck_assert_int_eq(tus_parse_uint("1 ", &v), -EINVAL);
    ck_assert_int_eq(tus_parse_uint("0x10", &v), -EINVAL);
    ck_assert_int_eq(tus_parse_uint("1.5", &v), -EINVAL);
    ck_assert_uint_eq(v, 7); /* untouched on error */
}
END_TEST

START_TEST(base64)
{
    uint8_t out[16];
    ck_assert_int_eq(tus_base64_decode("", 0, out), 0);
    ck_assert_int_eq(tus_base64_decode("YQ==", 4, out), 1);
    ck_assert_int_eq(out[0], 'a');
    ck_assert_int_eq(tus_base64_decode("YQ", 2, out), 1);
    ck_assert_int_eq(tus_base64_decode("YWI=", 4, out), 2);
    ck_assert_int_eq(tus_base64_decode("YWJj", 4, out), 3);
    ck_assert_int_eq(memcmp(out, "abc", 3), 0);
    ck_assert_int_eq(tus_base64_decode("+/+/", 4, out), 3);
    ck_assert_int_eq(out[0], 0xfb);
    ck_assert_int_eq(tus_base64_decode("YQ=", 3, out), -EINVAL);
    ck_assert_int_eq(tus_base64_decode("Y===", 4, out), -EINVAL);
    ck_assert_int_eq(tus_base64_decode("Y", 1, out), -EINVAL);
    ck_assert_int_eq(tus_base64_decode("YW=j", 4, out), -EINVAL);
    ck_assert_int_eq(tus_base64_decode("YW J", 4, out), -EINVAL);
    ck_assert_int_eq(tus_base64_decode("YW-_", 4, out),
                     -EINVAL); /* url-safe alphabet is not base64 */
}
END_TEST

START_TEST(metadata_pairs)
{
    struct tus_metadata m;
    char err[200];
    /* what tus-js-client sends: filename, filetype, an empty value */
    ck_assert_int_eq(tus_parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,filetype "
                                        "YXBwbGljYXRpb24vcGRm,empty,folder L3Bob3Rvcw",
                                        &m, err, sizeof(err)),
                     0);
    ck_assert_uint_eq(m.n, 4);
    ck_assert_str_eq(tus_metadata_str(&m, "filename"), "world_domination_plan.pdf");
    ck_assert_str_eq(tus_metadata_str(&m, "filetype"), "application/pdf");
    ck_assert_str_eq(tus_metadata_str(&m, "folder"), "/photos");
    const struct tus_meta_pair *e = tus_metadata_get(&m, "empty");
    ck_assert_ptr_nonnull(e);
    ck_assert(!e->has_value);
    ck_assert_str_eq(e->value, "");
    ck_assert_ptr_null(tus_metadata_get(&m, "missing"));
    ck_assert_ptr_null(tus_metadata_str(&m, "Filename")); /* keys are case-sensitive */
    tus_metadata_clear(&m);

    ck_assert_int_eq(tus_parse_metadata(" a YQ== , b  Yg== ", &m, err, sizeof(err)), 0);
    ck_assert_uint_eq(m.n, 2);
    ck_assert_str_eq(tus_metadata_str(&m, "a"), "a");
    ck_assert_str_eq(tus_metadata_str(&m, "b"), "b");
    tus_metadata_clear(&m);

    ck_assert_int_eq(tus_parse_metadata("", &m, err, sizeof(err)), 0);
    ck_assert_uint_eq(m.n, 0);
    tus_metadata_clear(&m);
    ck_assert_int_eq(tus_parse_metadata(NULL, &m, err, sizeof(err)), 0);
    ck_assert_uint_eq(m.n, 0);
    tus_metadata_clear(&m);

    /* a value with a NUL byte is there but not a string */
    ck_assert_int_eq(tus_parse_metadata("bin YQBi", &m, err, sizeof(err)), 0);
    ck_assert_uint_eq(tus_metadata_get(&m, "bin")->len, 3);
    ck_assert_ptr_null(tus_metadata_str(&m, "bin"));
    tus_metadata_clear(&m);
    tus_metadata_clear(NULL);
}
END_TEST

static void meta_bad(const char *h, const char *why)
{
    struct tus_metadata m = {.n = 99};
    char err[200] = "";
    ck_assert_msg(tus_parse_metadata(h, &m, err, sizeof(err)) == -EINVAL, "accepted %s", h);
    ck_assert_uint_eq(m.n, 0);
    ck_assert_ptr_null(m.pairs);
    ck_assert_msg(strstr(err, why) != NULL, "%s: error '%s' lacks '%s'", h, err, why);
}

START_TEST(metadata_errors)
{
    meta_bad("a YQ==,a Yg==", "twice");
    meta_bad("a YQ==,,b Yg==", "empty pair");
    meta_bad("a YQ==,", "empty pair");
    meta_bad(",a YQ==", "empty pair");
    meta_bad("a Y", "base64");
    meta_bad("a YQ=", "base64");
    meta_bad("a Y Q", "base64");
    meta_bad("a @@@@", "base64");
    meta_bad("k\x01 YQ==", "printable");
    meta_bad("k\xc3\xa9 YQ==", "printable");
    char big[64 * 6 + 20] = "";
    for (int i = 0; i <= TUS_METADATA_MAX_PAIRS; i++) {
        char one[16];
        snprintf(one, sizeof(one), "%sk%d", i ? "," : "", i);
        strcat(big, one);
    }
    meta_bad(big, "more than");
}
END_TEST

START_TEST(checksum_header)
{
    struct tus_checksum c;
    char err[200];
    /* sha1("hello") = aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d */
    ck_assert_int_eq(tus_parse_checksum("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=", &c, err, sizeof(err)),
                     0);
    ck_assert_int_eq(c.algo, TUS_ALGO_SHA1);
    ck_assert_uint_eq(c.len, 20);
    ck_assert_int_eq(c.digest[0], 0xaa);
    ck_assert_int_eq(c.digest[19], 0x4d);
    ck_assert_int_eq(tus_parse_checksum("SHA256 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", &c,
                                        err, sizeof(err)),
                     0);
    ck_assert_int_eq(c.algo, TUS_ALGO_SHA256);
    ck_assert_uint_eq(c.len, 32);
    ck_assert_int_eq(c.digest[0], 0x2c);

    ck_assert_int_eq(tus_parse_checksum("md5 XUFAKrxLKna5cZ2REBfFkg==", &c, err, sizeof(err)),
                     -ENOTSUP);
    ck_assert_ptr_nonnull(strstr(err, "unsupported"));
    ck_assert_int_eq(tus_parse_checksum("crc32 AAAAAA==", &c, err, sizeof(err)), -ENOTSUP);
    /* a sha256-length digest labelled sha1, a truncated one, garbage */
    ck_assert_int_eq(tus_parse_checksum("sha1 LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=", &c,
                                        err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(tus_parse_checksum("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ0", &c, err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(tus_parse_checksum("sha1 not base64!!", &c, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(tus_parse_checksum("sha1", &c, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(tus_parse_checksum("sha1 ", &c, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(tus_parse_checksum(" sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=", &c, err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(tus_parse_checksum("sha1  qvTGHdzF6KLavt4PO0gs2a6pQ00=", &c, err, sizeof(err)),
                     -EINVAL);
    ck_assert_int_eq(tus_parse_checksum(NULL, &c, err, sizeof(err)), -EINVAL);
    ck_assert_int_eq(c.algo, TUS_ALGO_NONE);
}
END_TEST

START_TEST(http_date)
{
    char buf[40];
    tus_http_date(784111777000LL, buf, sizeof(buf));
    ck_assert_str_eq(buf, "Sun, 06 Nov 1994 08:49:37 GMT");
    tus_http_date(0, buf, sizeof(buf));
    ck_assert_str_eq(buf, "Thu, 01 Jan 1970 00:00:00 GMT");
    tus_http_date(1767225599999LL, buf, sizeof(buf));
    ck_assert_str_eq(buf, "Wed, 31 Dec 2025 23:59:59 GMT");
}
END_TEST

static Suite *tus_suite(void)
{
    Suite *s = suite_create("tus");
    TCase *tc = tcase_create("headers");
    tcase_add_test(tc, uint_values);
    tcase_add_test(tc, base64);
    tcase_add_test(tc, metadata_pairs);
    tcase_add_test(tc, metadata_errors);
    tcase_add_test(tc, checksum_header);
    tcase_add_test(tc, http_date);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(tus_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

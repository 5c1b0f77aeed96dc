/* test_range.c - Check suite for the Range header parser (range.c). */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/range.h"

static enum range_result rp(const char *h, uint64_t size, uint64_t *s, uint64_t *l)
{
    *s = 12345;
    *l = 12345;
    return range_parse(h, size, s, l);
}

#define PARTIAL(h, size, es, el)                                                                   \
    do {                                                                                           \
        uint64_t s_, l_;                                                                           \
        ck_assert_int_eq(rp(h, size, &s_, &l_), RANGE_PARTIAL);                                    \
        ck_assert_uint_eq(s_, es);                                                                 \
        ck_assert_uint_eq(l_, el);                                                                 \
    } while (0)
#define FULL(h, size)                                                                              \
    do {                                                                                           \
        uint64_t s_, l_;                                                                           \
        ck_assert_int_eq(rp(h, size, &s_, &l_), RANGE_FULL);                                       \
    } while (0)
#define UNSAT(h, size)                                                                             \
    do {                                                                                           \
        uint64_t s_, l_;                                                                           \
        ck_assert_int_eq(rp(h, size, &s_, &l_), RANGE_UNSATISFIABLE);                              \
    } while (0)

START_TEST(test_simple_forms)
{
    PARTIAL("bytes=0-0", 100, 0, 1);
    PARTIAL("bytes=0-9", 100, 0, 10);
    PARTIAL("bytes=10-19", 100, 10, 10);
    PARTIAL("bytes=90-", 100, 90, 10);
    PARTIAL("bytes=0-", 100, 0, 100);
    PARTIAL("bytes=-10", 100, 90, 10);
    PARTIAL("bytes=99-99", 100, 99, 1);
}
END_TEST

START_TEST(test_clamping)
{
    PARTIAL("bytes=50-1000", 100, 50, 50);
    PARTIAL("bytes=-1000", 100, 0, 100);
    PARTIAL("bytes=0-99999999999999999999999999", 100, 0, 100);
    PARTIAL("bytes=-99999999999999999999999999", 100, 0, 100);
    PARTIAL("bytes=0-18446744073709551615", 100, 0, 100);
    PARTIAL("bytes=0-18446744073709551616", UINT64_MAX, 0, UINT64_MAX);
}
END_TEST

START_TEST(test_unsatisfiable)
{
    UNSAT("bytes=100-", 100);
    UNSAT("bytes=100-200", 100);
    UNSAT("bytes=-0", 100);
    UNSAT("bytes=99999999999999999999999-", 100);
    UNSAT("bytes=100-100, 200-", 100);
    UNSAT("bytes=-0,-0", 100);
}
END_TEST

START_TEST(test_invalid_is_ignored)
{
    FULL(NULL, 100);
    FULL("", 100);
    FULL("bytes", 100);
    FULL("bytes=", 100);
    FULL("bytes=,", 100);
    FULL("bytes= , ,", 100);
    FULL("bytes=-", 100);
    FULL("bytes=--5", 100);
    FULL("bytes=5", 100);
    FULL("bytes=a-b", 100);
    FULL("bytes=1-a", 100);
    FULL("bytes=10-5", 100); /* last < first */
    FULL("bytes=+1-5", 100);
    FULL("bytes=0x10-20", 100);
    FULL("bytes=1 -5", 100);
    FULL("bytes=1- 5", 100);
    FULL("bytes =1-5", 100);
    FULL("bytes= 1-5x", 100);
    FULL("bytes=1-5-", 100);
    FULL("bytes=-5-", 100);
    FULL("bytes=1-5;", 100);
    FULL("items=1-5", 100);
    FULL("bytesx=1-5", 100);
    FULL("bytes=1-5\r\n", 100);
    FULL("bytes=\x01-5", 100);
    FULL("bytes=1-2,x", 100); /* one bad element spoils the header */
    FULL("bytes=100-200,x", 100);
}
END_TEST

START_TEST(test_whitespace_and_case)
{
    PARTIAL("  bytes=1-5  ", 100, 1, 5);
    PARTIAL("Bytes=1-5", 100, 1, 5);
    PARTIAL("BYTES=1-5", 100, 1, 5);
    PARTIAL("bytes= 1-5", 100, 1, 5);  /* OWS before a list element */
    PARTIAL("bytes=1-5 ,", 100, 1, 5); /* empty elements do not count */
    PARTIAL("bytes=,,1-5,\t,", 100, 1, 5);
}
END_TEST

START_TEST(test_multiple_ranges_serve_full)
{
    FULL("bytes=0-1,5-6", 100);
    FULL("bytes=0-1, 5-6", 100);
    FULL("bytes=0-1,200-300", 100); /* one satisfiable of two: still whole body */
    FULL("bytes=0-,0-", 100);
}
END_TEST

START_TEST(test_empty_representation)
{
    FULL("bytes=0-0", 0);
    FULL("bytes=-5", 0);
    FULL("bytes=5-", 0);
}
END_TEST

START_TEST(test_limits)
{
    /* RANGE_MAX_SPECS specs are fine (several -> FULL), one more is ignored too. */
    size_t cap = RANGE_MAX_HEADER + 64;
    char *h = malloc(cap);
    strcpy(h, "bytes=");
    for (int i = 0; i < RANGE_MAX_SPECS + 1; i++)
        strcat(h, "1000-1001,");
    ck_assert_int_eq(range_parse(h, 10, NULL, NULL), RANGE_FULL);
    /* Too long a header is ignored, even if it would be unsatisfiable. */
    memset(h, ' ', cap - 1);
    h[cap - 1] = '\0';
    memcpy(h + cap - 20, "bytes=1000-1001", 15);
    ck_assert_int_eq(range_parse(h, 10, NULL, NULL), RANGE_FULL);
    free(h);
    /* NULL out-pointers are allowed. */
    ck_assert_int_eq(range_parse("bytes=0-1", 10, NULL, NULL), RANGE_PARTIAL);
}
END_TEST

START_TEST(test_content_range)
{
    char buf[64];
    ck_assert_str_eq(range_content_range(buf, sizeof buf, 0, 10, 100), "bytes 0-9/100");
    ck_assert_str_eq(range_content_range(buf, sizeof buf, 99, 1, 100), "bytes 99-99/100");
    ck_assert_str_eq(range_content_range(buf, sizeof buf, 0, UINT64_MAX, UINT64_MAX),
                     "bytes 0-18446744073709551614/18446744073709551615");
}
END_TEST

static Suite *range_suite(void)
{
    Suite *s = suite_create("range");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_simple_forms);
    tcase_add_test(tc, test_clamping);
    tcase_add_test(tc, test_unsatisfiable);
    tcase_add_test(tc, test_invalid_is_ignored);
    tcase_add_test(tc, test_whitespace_and_case);
    tcase_add_test(tc, test_multiple_ranges_serve_full);
    tcase_add_test(tc, test_empty_representation);
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_content_range);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(range_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

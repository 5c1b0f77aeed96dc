/* test_netaddr.c - Check suite for IP addresses and CIDR blocks (netaddr.c). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/netaddr.h"

static bool in(const char *cidr, const char *addr)
{
    struct dr_cidr c;
    struct dr_addr a;
    ck_assert_int_eq(dr_cidr_parse(cidr, &c, NULL), 0);
    ck_assert_int_eq(dr_addr_parse(addr, strlen(addr), &a), 0);
    return dr_cidr_match(&c, &a);
}

static const char *fmt(const char *s)
{
    static char buf[DR_ADDR_STRLEN];
    struct dr_addr a;
    if (dr_addr_parse(s, strlen(s), &a) < 0)
        return "BAD";
    dr_addr_format(&a, buf, sizeof buf);
    return buf;
}

START_TEST(test_addr_forms)
{
    ck_assert_str_eq(fmt("192.0.2.1"), "192.0.2.1");
    ck_assert_str_eq(fmt("2001:db8::1"), "2001:db8::1");
    ck_assert_str_eq(fmt("[2001:db8::1]"), "2001:db8::1");
    ck_assert_str_eq(fmt("::ffff:10.1.2.3"), "10.1.2.3"); /* mapped v4 is v4 */
    ck_assert_str_eq(fmt("::1"), "::1");
    ck_assert_str_eq(fmt("1.2.3"), "BAD");
    ck_assert_str_eq(fmt("256.1.1.1"), "BAD");
    ck_assert_str_eq(fmt("[1.2.3.4]"), "BAD");
    ck_assert_str_eq(fmt("[]"), "BAD");
    ck_assert_str_eq(fmt(""), "BAD");
    ck_assert_str_eq(fmt("fe80::1%eth0"), "BAD");
    ck_assert_str_eq(fmt("example.com"), "BAD");
}
END_TEST

START_TEST(test_peer_forms)
{
    struct dr_addr a;
    char buf[DR_ADDR_STRLEN];
    ck_assert_int_eq(dr_addr_parse_peer("127.0.0.1:5555", &a), 0);
    dr_addr_format(&a, buf, sizeof buf);
    ck_assert_str_eq(buf, "127.0.0.1");
    ck_assert_int_eq(dr_addr_parse_peer("[::1]:80", &a), 0);
    dr_addr_format(&a, buf, sizeof buf);
    ck_assert_str_eq(buf, "::1");
    ck_assert_int_eq(dr_addr_parse_peer("unix", &a), 0);
    ck_assert_int_eq(a.family, DR_AF_UNIX);
    dr_addr_format(&a, buf, sizeof buf);
    ck_assert_str_eq(buf, "unix");
    ck_assert_int_lt(dr_addr_parse_peer("test", &a), 0);
    ck_assert_int_lt(dr_addr_parse_peer("[::1:80", &a), 0);
    ck_assert_int_lt(dr_addr_parse_peer(NULL, &a), 0);
}
END_TEST

START_TEST(test_cidr_match)
{
    ck_assert(in("10.0.0.0/8", "10.200.3.4"));
    ck_assert(!in("10.0.0.0/8", "11.0.0.1"));
    ck_assert(in("127.0.0.1", "127.0.0.1"));
    ck_assert(!in("127.0.0.1", "127.0.0.2"));
    ck_assert(in("192.168.1.0/25", "192.168.1.127"));
    ck_assert(!in("192.168.1.0/25", "192.168.1.128"));
    ck_assert(in("0.0.0.0/0", "203.0.113.9"));
    ck_assert(!in("0.0.0.0/0", "2001:db8::1")); /* families never mix */
    ck_assert(in("2001:db8::/32", "2001:db8:ffff::1"));
    ck_assert(!in("2001:db8::/32", "2001:db9::1"));
    ck_assert(in("::/0", "::1"));
    ck_assert(in("::1/128", "::1"));
    ck_assert(in("10.0.0.0/8", "::ffff:10.9.9.9"));
    ck_assert(in("::ffff:10.0.0.0/104", "10.1.1.1"));
    ck_assert(!in("::ffff:10.0.0.0/104", "11.1.1.1"));
}
END_TEST

START_TEST(test_cidr_unix)
{
    struct dr_cidr c;
    struct dr_addr u = {.family = DR_AF_UNIX}, v4;
    ck_assert_int_eq(dr_cidr_parse("unix:", &c, NULL), 0);
    ck_assert(dr_cidr_match(&c, &u));
    ck_assert_int_eq(dr_addr_parse("127.0.0.1", 9, &v4), 0);
    ck_assert(!dr_cidr_match(&c, &v4));
    ck_assert_int_eq(dr_cidr_parse("0.0.0.0/0", &c, NULL), 0);
    ck_assert(!dr_cidr_match(&c, &u)); /* unix peers only by "unix:" */
}
END_TEST

START_TEST(test_cidr_refused)
{
    static const char *const bad[] = {
        "10.0.0.1/8",
        "10.0.0.0/33",
        "2001:db8::/129",
        "10.0.0.0/",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "10.0.0.0/0x8",
        "example.com",
        "",
        "/8",
        "unix",
        "unix:/x",
        "::ffff:10.0.0.0/8",
        "10.0.0.0/0008",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct dr_cidr c;
        const char *why = NULL;
        ck_assert_msg(dr_cidr_parse(bad[i], &c, &why) < 0, "%s accepted", bad[i]);
        ck_assert_ptr_nonnull(why);
    }
}
END_TEST

static Suite *netaddr_suite(void)
{
    Suite *s = suite_create("netaddr");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_addr_forms);
    tcase_add_test(tc, test_peer_forms);
    tcase_add_test(tc, test_cidr_match);
    tcase_add_test(tc, test_cidr_unix);
    tcase_add_test(tc, test_cidr_refused);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(netaddr_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

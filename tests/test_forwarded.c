/* test_forwarded.c - Check suite for trusted proxies and what they say
 * (src/http/forwarded.c): Forwarded (RFC 7239) and X-Forwarded-*. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "http/forwarded.h"

static struct fwd_trust *trust(void)
{
    static char *cidrs[] = {"127.0.0.1", "10.0.0.0/8", "2001:db8::/32"};
    struct fwd_trust *t = NULL;
    ck_assert_int_eq(fwd_trust_new(cidrs, 3, &t), 0);
    return t;
}

static struct fwd_view view(const char *fw, const char *xff, const char *xfp, const char *xfh)
{
    struct fwd_trust *t = trust();
    struct fwd_view v;
    fwd_resolve(t, fw, xff, xfp, xfh, &v);
    fwd_trust_free(t);
    return v;
}

START_TEST(test_trust_list)
{
    struct fwd_trust *t = trust();
    struct dr_addr a;
    ck_assert_int_eq(dr_addr_parse("10.1.1.1", 8, &a), 0);
    ck_assert(fwd_trusted(t, &a));
    ck_assert_int_eq(dr_addr_parse("127.0.0.2", 9, &a), 0);
    ck_assert(!fwd_trusted(t, &a));
    ck_assert(!fwd_trust_empty(t));
    fwd_trust_free(t);
    ck_assert(!fwd_trusted(NULL, &a));
    ck_assert(fwd_trust_empty(NULL));
    static char *bad[] = {"10.0.0.1/8"};
    ck_assert_int_eq(fwd_trust_new(bad, 1, &t), -EINVAL);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(fwd_trust_new(NULL, 0, &t), 0);
    ck_assert(fwd_trust_empty(t));
    fwd_trust_free(t);
}
END_TEST

START_TEST(test_xff_walk)
{
    /* the rightmost untrusted hop is the client */
    struct fwd_view v = view(NULL, "203.0.113.7", NULL, NULL);
    ck_assert_str_eq(v.client, "203.0.113.7");
    v = view(NULL, "198.51.100.1, 203.0.113.7, 10.0.0.2", NULL, NULL);
    ck_assert_str_eq(v.client, "203.0.113.7"); /* 198.51.100.1 said so, untrusted */
    ck_assert_uint_eq(v.hops, 2);
    v = view(NULL, "10.0.0.3,10.0.0.2", NULL, NULL);
    ck_assert_str_eq(v.client, "10.0.0.3"); /* all trusted: the leftmost */
    v = view(NULL, "203.0.113.7:4711", NULL, NULL);
    ck_assert_str_eq(v.client, "203.0.113.7");
    v = view(NULL, "[2001:db9::1]:80, 2001:db8::5", NULL, NULL);
    ck_assert_str_eq(v.client, "2001:db9::1");
    v = view(NULL, "junk, 10.0.0.1", NULL, NULL);
    ck_assert_str_eq(v.client, "unknown");
    v = view(NULL, "::ffff:203.0.113.9", NULL, NULL);
    ck_assert_str_eq(v.client, "203.0.113.9");
}
END_TEST

START_TEST(test_xfp_xfh)
{
    struct fwd_view v = view(NULL, NULL, "https", "app.example");
    ck_assert_str_eq(v.proto, "https");
    ck_assert_str_eq(v.host, "app.example");
    ck_assert_str_eq(v.client, "");
    v = view(NULL, NULL, "http, HTTPS", "evil.example, app.example:8443");
    ck_assert_str_eq(v.proto, "https"); /* the last value: what our proxy set */
    ck_assert_str_eq(v.host, "app.example:8443");
    v = view(NULL, NULL, "gopher", "bad host/x");
    ck_assert_str_eq(v.proto, "");
    ck_assert_str_eq(v.host, "");
    v = view(NULL, NULL, "https", "[2001:db8::1]:443");
    ck_assert_str_eq(v.host, "[2001:db8::1]:443");
    v = view(NULL, NULL, NULL, "a.example:99999");
    ck_assert_str_eq(v.host, "");
}
END_TEST

START_TEST(test_forwarded_rfc7239)
{
    struct fwd_view v = view("for=192.0.2.60;proto=https;by=203.0.113.43", NULL, NULL, NULL);
    ck_assert_str_eq(v.client, "192.0.2.60");
    ck_assert_str_eq(v.proto, "https");
    v = view("for=\"_gazonk\"", NULL, NULL, NULL);
    ck_assert_str_eq(v.client, "_gazonk");
    v = view("For=\"[2001:db9:cafe::17]:4711\"", NULL, NULL, NULL);
    ck_assert_str_eq(v.client, "2001:db9:cafe::17");
    v = view("for=192.0.2.43, for=198.51.100.17", NULL, NULL, NULL);
    ck_assert_str_eq(v.client, "198.51.100.17");
    /* two trusted proxies: the outer one's host and proto win */
    v = view("for=203.0.113.5;proto=https;host=app.example, for=10.0.0.9;proto=http;host=inner",
             NULL, NULL, NULL);
    ck_assert_str_eq(v.client, "203.0.113.5");
    ck_assert_str_eq(v.proto, "https");
    ck_assert_str_eq(v.host, "app.example");
    ck_assert_uint_eq(v.hops, 2);
    /* host= needs quotes for ':'; accepted unquoted too (nginx configs) */
    v = view("for=198.51.100.1;host=\"app.example:8443\"", NULL, NULL, NULL);
    ck_assert_str_eq(v.host, "app.example:8443");
    v = view("for=198.51.100.1;host=app.example:8443", NULL, NULL, NULL);
    ck_assert_str_eq(v.host, "app.example:8443");
    /* quoted-string escapes; commas inside quotes do not split */
    v = view("for=\"198.51.100.1\";host=\"a\\.example\", for=\"10.0.0.1\";ext=\"x,y\"", NULL, NULL,
             NULL);
    ck_assert_str_eq(v.client, "198.51.100.1");
    ck_assert_str_eq(v.host, "a.example");
    v = view("for=unknown", NULL, NULL, NULL);
    ck_assert_str_eq(v.client, "unknown");
    v = view("proto=https", NULL, NULL, NULL); /* no for=: the client is not known */
    ck_assert_str_eq(v.client, "unknown");
    ck_assert_str_eq(v.proto, "https");
}
END_TEST

START_TEST(test_forwarded_malformed_falls_back)
{
    static const char *const bad[] = {
        "for=\"192.0.2.1",         /* unterminated quote */
        "for",                     /* no '=' */
        "for=1.2.3.4;for=5.6.7.8", /* repeated parameter */
        "for=1.2.3.4 junk",        /* trailing junk */
        "=x",                      /* no name */
        "for=",                    /* no value */
        "for=\"a\\",               /* escape at the end */
        "host=\"a\x01\"",          /* control character */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct fwd_view v = view(bad[i], "203.0.113.1", "https", NULL);
        ck_assert_msg(strcmp(v.client, "203.0.113.1") == 0, "%s: client %s", bad[i], v.client);
        ck_assert_str_eq(v.proto, "https");
    }
    /* empty elements and pairs are allowed */
    struct fwd_view v = view(";;for=192.0.2.9;,", NULL, NULL, NULL);
    ck_assert_str_eq(v.client, "unknown"); /* the last (empty) element has no for= */
}
END_TEST

START_TEST(test_bounds)
{
    /* FWD_MAX_HOPS entries are read; more are not believed at all */
    size_t n = FWD_MAX_HOPS + 1;
    char *xff = calloc(n, 16);
    for (size_t i = 0; i < n; i++)
        strcat(xff, i ? ",10.0.0.1" : "203.0.113.1");
    struct fwd_view v = view(NULL, xff, NULL, NULL);
    ck_assert_str_eq(v.client, "");
    free(xff);
    char *fw = calloc(n, 24);
    for (size_t i = 0; i < n; i++)
        strcat(fw, i ? ",for=10.0.0.1" : "for=203.0.113.1");
    v = view(fw, "198.51.100.2", NULL, NULL);
    ck_assert_str_eq(v.client, "198.51.100.2"); /* Forwarded ignored, X-Forwarded-For used */
    free(fw);
    char big[600];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_assert(!fwd_host_valid(big, strlen(big)));
    ck_assert(fwd_host_valid("a", 1));
    ck_assert(!fwd_host_valid(":80", 3));
    ck_assert(!fwd_host_valid("[::1", 4));
    ck_assert(!fwd_host_valid("[1.2.3.4]", 9));
}
END_TEST

static Suite *forwarded_suite(void)
{
    Suite *s = suite_create("forwarded");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_trust_list);
    tcase_add_test(tc, test_xff_walk);
    tcase_add_test(tc, test_xfp_xfh);
    tcase_add_test(tc, test_forwarded_rfc7239);
    tcase_add_test(tc, test_forwarded_malformed_falls_back);
    tcase_add_test(tc, test_bounds);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(forwarded_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

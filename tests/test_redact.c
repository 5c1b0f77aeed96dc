/* test_redact.c - URLs and server paths made safe to log and to show. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/config.h"
#include "dripd/redact.h"
#include "dripd/util.h"

static void url_is(const char *in, const char *want)
{
    char out[256];
    ck_assert_str_eq(redact_url(in, out, sizeof out), want);
}

START_TEST(url_userinfo_and_query)
{
    url_is("http://user:pass@127.0.0.1:9000/hook?api_key=SECRET&x=1",
           "http://***@127.0.0.1:9000/hook?***");
    url_is("https://token@example.com/", "https://***@example.com/");
    url_is("https://example.com/a/b", "https://example.com/a/b");
    url_is("https://example.com", "https://example.com");
    url_is("https://example.com/p?q#frag", "https://example.com/p?***#***");
    url_is("https://a@b@example.com:1/x", "https://***@example.com:1/x");
    url_is("http://example.com/path@x?y", "http://example.com/path@x?***");
    url_is("/bucket/key?uploadId=abc&partNumber=1", "/bucket/key?***");
    url_is("", "");
    url_is(NULL, "");
    char small[12];
    ck_assert_str_eq(redact_url("http://u:p@host/x?y", small, sizeof small), "http://***@");
}
END_TEST

static void paths_are(const char *in, const char *want)
{
    const char *roots[] = {"/srv/dripd/var", "./var", "/etc/dripd/"};
    char *out = redact_paths(in, roots, 3);
    ck_assert_str_eq(out, want);
    free(out);
}

START_TEST(paths_under_roots)
{
    paths_are("spool file /srv/dripd/var/spool/01J.part has 24 bytes, the upload had 0",
              "spool file [server path] has 24 bytes, the upload had 0");
    paths_are("open /etc/dripd/master.key: Permission denied",
              "open [server path]: Permission denied");
    paths_are("sealed file './var/work/x.sealed' is missing",
              "sealed file '[server path]' is missing");
    paths_are("(/srv/dripd/var)", "([server path])");
    /* not a path under a root: kept */
    paths_are("/photos/cat.jpg already exists", "/photos/cat.jpg already exists");
    paths_are("/srv/dripd/variable/x", "/srv/dripd/variable/x");
    paths_are("x/srv/dripd/var/y", "x/srv/dripd/var/y");
    paths_are("", "");
    ck_assert_ptr_null(redact_paths(NULL, NULL, 0));
    const char *tiny[] = {"/"};
    char *out = redact_paths("/a /b", tiny, 1);
    ck_assert_str_eq(out, "/a /b");
    free(out);
}
END_TEST

START_TEST(server_paths_from_config)
{
    struct dr_config *cfg = config_defaults();
    free(cfg->data_dir);
    cfg->data_dir = xstrdup("/nonexistent/dripd");
    free(cfg->storage.local.path);
    cfg->storage.local.path = xstrdup("/mnt/objects");
    free(cfg->encryption.key_file);
    cfg->encryption.key_file = xstrdup("/etc/dripd/master.key");
    char *out = redact_server_paths(
        "a /nonexistent/dripd/spool/x.part b /mnt/objects/ab/cd c /etc/dripd/master.key d", cfg);
    ck_assert_str_eq(out, "a [server path] b [server path] c [server path] d");
    free(out);
    ck_assert_ptr_null(redact_server_paths(NULL, cfg));
    config_destroy(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redact");
    TCase *tc = tcase_create("redact");
    tcase_add_test(tc, url_userinfo_and_query);
    tcase_add_test(tc, paths_under_roots);
    tcase_add_test(tc, server_paths_from_config);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

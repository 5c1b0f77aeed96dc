/* test_path.c - path.h rules: what is accepted, what is refused, and why. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/path.h"

static void ok_file(const char *in)
{
    char *out = NULL, err[128] = "";
    int rc = path_normalize_file(in, &out, err, sizeof err);
    ck_assert_msg(rc == 0, "'%s' refused: %s", in, err);
    ck_assert_str_eq(out, in);
    free(out);
}

static void bad_file(const char *in, const char *why)
{
    char *out = (char *)1, err[128] = "";
    int rc = path_normalize_file(in, &out, err, sizeof err);
    ck_assert_msg(rc == -EINVAL, "'%s' accepted", in);
    ck_assert_ptr_null(out);
    ck_assert_msg(strstr(err, why) != NULL, "'%s': err '%s' lacks '%s'", in, err, why);
}

START_TEST(file_ok)
{
    ok_file("/a");
    ok_file("/photos/cat.jpg");
    ok_file("/a b/c d.txt");
    ok_file("/.hidden");
    ok_file("/...");
    ok_file("/a..b/c.");
    ok_file("/caf\xc3\xa9/\xe2\x82\xac.txt"); /* é, € */
    ok_file("/\xf0\x9f\x98\x80");             /* emoji */
    ok_file("/\xed\x9f\xbf");                 /* U+D7FF, last before surrogates */
    ok_file("/\xf4\x8f\xbf\xbf");             /* U+10FFFF */
}
END_TEST

START_TEST(file_bad)
{
    bad_file("", "start with '/'");
    bad_file("a.txt", "start with '/'");
    bad_file("/", "needs a name");
    bad_file("/a/", "empty path segment");
    bad_file("//a", "empty path segment");
    bad_file("/a//b", "empty path segment");
    bad_file("/a/./b", "'.'");
    bad_file("/.", "'.'");
    bad_file("/..", "'..'");
    bad_file("/a/../b", "'..'");
    bad_file("/a\x01", "control");
    bad_file("/a\x1f"
             "b",
             "control");
    bad_file("/a\x7f", "control");
    bad_file("/a\tb", "control");
    bad_file("/\xff", "UTF-8");
    bad_file("/\xc0\xaf", "UTF-8");         /* overlong '/' */
    bad_file("/\xe0\x80\xaf", "UTF-8");     /* overlong */
    bad_file("/\xed\xa0\x80", "UTF-8");     /* surrogate U+D800 */
    bad_file("/\xf4\x90\x80\x80", "UTF-8"); /* > U+10FFFF */
    bad_file("/\xc3", "UTF-8");             /* truncated */
    bad_file("/\xe2\x82", "UTF-8");
    bad_file("/\x80", "UTF-8"); /* lone continuation */
}
END_TEST

START_TEST(file_lengths)
{
    char seg[300], path[1400];
    memset(seg, 'x', 255);
    seg[255] = '\0';
    snprintf(path, sizeof path, "/%s", seg);
    ok_file(path);
    memset(seg, 'x', 256);
    seg[256] = '\0';
    snprintf(path, sizeof path, "/%s", seg);
    bad_file(path, "255");

    /* 1024 bytes total: four "/" + 255-byte segments = 1024 exactly. */
    memset(seg, 'y', 255);
    seg[255] = '\0';
    snprintf(path, sizeof path, "/%s/%s/%s/%s", seg, seg, seg, seg);
    ck_assert_uint_eq(strlen(path), 1024);
    ok_file(path);
    strcat(path, "z"); /* 1025 */
    bad_file(path, "1024");
    /* a multi-byte character cut by the segment end is still UTF-8 checked */
    bad_file("/a\xc3/b", "UTF-8");
}
END_TEST

START_TEST(folders)
{
    char *out, err[128];
    ck_assert_int_eq(path_normalize_folder("", &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "/");
    free(out);
    ck_assert_int_eq(path_normalize_folder("/", &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "/");
    free(out);
    ck_assert_int_eq(path_normalize_folder("/photos", &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "/photos");
    free(out);
    ck_assert_int_eq(path_normalize_folder("/photos/2024/", &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "/photos/2024");
    free(out);
    ck_assert_int_eq(path_normalize_folder("//", &out, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(out);
    ck_assert_int_eq(path_normalize_folder("/a//", &out, err, sizeof err), -EINVAL);
    ck_assert_int_eq(path_normalize_folder("photos", &out, err, sizeof err), -EINVAL);
    ck_assert_int_eq(path_normalize_folder("/a/../b", &out, err, sizeof err), -EINVAL);
    ck_assert_int_eq(path_normalize_folder(NULL, &out, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(join_split)
{
    char *out, err[128], *folder, *name;
    ck_assert_int_eq(path_join("/", "a.txt", &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "/a.txt");
    free(out);
    ck_assert_int_eq(path_join("", "a.txt", &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "/a.txt");
    free(out);
    ck_assert_int_eq(path_join("/x/y/", "a.txt", &out, err, sizeof err), 0);
    ck_assert_str_eq(out, "/x/y/a.txt");
    free(out);
    ck_assert_int_eq(path_join("/x", "a/b", &out, err, sizeof err), -EINVAL);
    ck_assert_int_eq(path_join("/x", "..", &out, err, sizeof err), -EINVAL);
    ck_assert_int_eq(path_join("/x", "", &out, err, sizeof err), -EINVAL);
    ck_assert_int_eq(path_join("/x", NULL, &out, err, sizeof err), -EINVAL);
    ck_assert_int_eq(path_join("/../x", "a", &out, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(out);

    path_split("/a/b/c.txt", &folder, &name);
    ck_assert_str_eq(folder, "/a/b");
    ck_assert_str_eq(name, "c.txt");
    free(folder);
    free(name);
    path_split("/c.txt", &folder, &name);
    ck_assert_str_eq(folder, "/");
    ck_assert_str_eq(name, "c.txt");
    free(folder);
    free(name);
}
END_TEST

START_TEST(join_length)
{
    char seg[256], folder[1100], *out, err[128];
    memset(seg, 'q', 255);
    seg[255] = '\0';
    snprintf(folder, sizeof folder, "/%s/%s/%s/%s", seg, seg, seg, seg);
    ck_assert_int_eq(path_join(folder, "a", &out, err, sizeof err), -EINVAL);
    ck_assert_ptr_null(out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("path");
    TCase *tc = tcase_create("rules");
    tcase_add_test(tc, file_ok);
    tcase_add_test(tc, file_bad);
    tcase_add_test(tc, file_lengths);
    tcase_add_test(tc, folders);
    tcase_add_test(tc, join_split);
    tcase_add_test(tc, join_length);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

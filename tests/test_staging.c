/* test_staging.c - upload bodies staged in the store (staging.h): a part
 * is sealed, put, fetched back verified and appended; a part that does
 * not verify (tampered, another length, another part's object) appends
 * nothing; keys parse back to their ids and time; delete is idempotent.
 * Against the local store (store_open_read: read in place). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/id.h"
#include "dripd/staging.h"
#include "dripd/store.h"
#include "dripd/util.h"

static char dir[256];
static struct dr_config *cfg;
static struct dr_store *st;
static uint8_t master[DR_KEY_LEN];

static void write_file(const char *path, const void *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dr_write_all(fd, b, len), 0);
    close(fd);
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/dripd-test-staging-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    cfg = config_defaults();
    free(cfg->storage.local.path);
    cfg->storage.local.path = xasprintf("%s/objects", dir);
    char err[256];
    ck_assert_int_eq(store_open(cfg, &st, err, sizeof err), 0);
    dr_random(master, sizeof master);
}

static void teardown(void)
{
    store_close(st);
    config_destroy(cfg);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

/* Put size random bytes as part of body; their copy in *data (freed by the caller). */
static void put_part(const char *body, const char *part, size_t size, uint8_t **data)
{
    *data = xmalloc(size ? size : 1);
    dr_random(*data, size);
    char *src = xasprintf("%s/src-%s", dir, part), *scratch = xasprintf("%s/scratch", dir);
    write_file(src, *data, size);
    struct staging_part p = {.body = body,
                             .part = part,
                             .owner = "alice",
                             .path = "/up/x.bin",
                             .content_type = "application/octet-stream",
                             .segment_size = 4096};
    char err[256] = "";
    ck_assert_msg(staging_put(st, master, &p, src, scratch, err, sizeof err) == 0, "%s", err);
    ck_assert_int_ne(access(scratch, F_OK), 0); /* the scratch file is gone */
    free(src);
    free(scratch);
}

START_TEST(test_put_fetch_parts_in_order)
{
    char body[DR_ID_LEN + 1], p1[DR_ID_LEN + 1], p2[DR_ID_LEN + 1], p3[DR_ID_LEN + 1];
    dr_id_new(body);
    dr_id_new(p1);
    dr_id_new(p2);
    dr_id_new(p3);
    uint8_t *a, *b, *c;
    put_part(body, p1, 10000, &a);
    put_part(body, p2, 0, &b); /* an empty PATCH's part */
    put_part(body, p3, 70001, &c);
    char key[STAGING_KEY_LEN];
    staging_key(body, p1, key);
    char err[256] = "";
    ck_assert_int_eq(store_exists(st, key, NULL, err, sizeof err), 1);

    char *out = xasprintf("%s/out", dir), *scratch = xasprintf("%s/fetch", dir);
    int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(staging_fetch(st, master, body, p1, 10000, fd, scratch, err, sizeof err), 0);
    ck_assert_int_eq(staging_fetch(st, master, body, p2, 0, fd, scratch, err, sizeof err), 0);
    ck_assert_int_eq(staging_fetch(st, master, body, p3, 70001, fd, scratch, err, sizeof err), 0);
    struct stat sb;
    ck_assert_int_eq(fstat(fd, &sb), 0);
    ck_assert_int_eq((int)sb.st_size, 80001);
    uint8_t *back = xmalloc(80001);
    ck_assert_int_eq((int)pread(fd, back, 80001, 0), 80001);
    ck_assert(memcmp(back, a, 10000) == 0 && memcmp(back + 10000, c, 70001) == 0);

    /* The length the catalog recorded must be the object's: else nothing
     * is appended (the file keeps its size). */
    ck_assert_int_eq(staging_fetch(st, master, body, p1, 9999, fd, scratch, err, sizeof err),
                     -EBADMSG);
    ck_assert_ptr_nonnull(strstr(err, "the catalog says 9999"));
    ck_assert_int_eq(fstat(fd, &sb), 0);
    ck_assert_int_eq((int)sb.st_size, 80001);
    /* Another master key cannot read it. */
    uint8_t other[DR_KEY_LEN];
    dr_random(other, sizeof other);
    ck_assert_int_eq(staging_fetch(st, other, body, p1, 10000, fd, scratch, err, sizeof err),
                     -EBADMSG);
    ck_assert_int_eq(fstat(fd, &sb), 0);
    ck_assert_int_eq((int)sb.st_size, 80001);
    /* Absent. */
    char none[DR_ID_LEN + 1];
    dr_id_new(none);
    ck_assert_int_eq(staging_fetch(st, master, body, none, 1, fd, scratch, err, sizeof err),
                     -ENOENT);
    ck_assert_ptr_nonnull(strstr(err, "missing"));
    close(fd);

    /* Delete is idempotent. */
    ck_assert_int_eq(staging_delete(st, body, p1, err, sizeof err), 0);
    ck_assert_int_eq(staging_delete(st, body, p1, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st, key, NULL, err, sizeof err), 0);
    free(a);
    free(b);
    free(c);
    free(back);
    free(out);
    free(scratch);
}
END_TEST

START_TEST(test_tampered_part_appends_nothing)
{
    char body[DR_ID_LEN + 1], p1[DR_ID_LEN + 1];
    dr_id_new(body);
    dr_id_new(p1);
    uint8_t *a;
    put_part(body, p1, 50000, &a);
    char key[STAGING_KEY_LEN];
    staging_key(body, p1, key);
    char *obj = xasprintf("%s/objects/%s", dir, key);
    int fd = open(obj, O_RDWR);
    ck_assert_int_ge(fd, 0);
    uint8_t byte;
    ck_assert_int_eq((int)pread(fd, &byte, 1, 30000), 1);
    byte ^= 1;
    ck_assert_int_eq((int)pwrite(fd, &byte, 1, 30000), 1);
    close(fd);
    char *out = xasprintf("%s/out", dir), *scratch = xasprintf("%s/fetch", dir);
    fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_eq(dr_write_all(fd, "head", 4), 0);
    char err[256] = "";
    ck_assert_int_eq(staging_fetch(st, master, body, p1, 50000, fd, scratch, err, sizeof err),
                     -EBADMSG);
    struct stat sb;
    ck_assert_int_eq(fstat(fd, &sb), 0);
    ck_assert_int_eq((int)sb.st_size, 4); /* what was there stays, nothing more */
    close(fd);
    free(a);
    free(obj);
    free(out);
    free(scratch);
}
END_TEST

START_TEST(test_keys)
{
    char body[DR_ID_LEN + 1], part[DR_ID_LEN + 1], b2[DR_ID_LEN + 1], p2[DR_ID_LEN + 1];
    int64_t before = dr_now_ms();
    dr_id_new(body);
    dr_id_new(part);
    int64_t after = dr_now_ms();
    char key[STAGING_KEY_LEN];
    staging_key(body, part, key);
    ck_assert(staging_key_is(key));
    ck_assert_int_eq((int)strlen(key), (int)STAGING_KEY_LEN - 1);
    int64_t t = staging_key_parse(key, b2, p2);
    ck_assert(t >= before && t <= after);
    ck_assert_str_eq(b2, body);
    ck_assert_str_eq(p2, part);
    /* media objects and variants are not staging keys */
    ck_assert(!staging_key_is("01JABCDEFGHJKMNPQRSTVWXYZ0_20261125T000605Z.jpg"));
    ck_assert(!staging_key_is("01JABCDEFGHJKMNPQRSTVWXYZ0~thumb.webp"));
    ck_assert_int_eq(staging_key_parse("staging-x-y", b2, p2), -1);
    ck_assert_int_eq(staging_key_parse("01JABCDEFGHJKMNPQRSTVWXYZ0_x", b2, p2), -1);
    key[sizeof STAGING_PREFIX - 1 + DR_ID_LEN] = '_';
    ck_assert_int_eq(staging_key_parse(key, b2, p2), -1);
}
END_TEST

static Suite *staging_suite(void)
{
    Suite *s = suite_create("staging");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_put_fetch_parts_in_order);
    tcase_add_test(tc, test_tampered_part_appends_nothing);
    tcase_add_test(tc, test_keys);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(staging_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

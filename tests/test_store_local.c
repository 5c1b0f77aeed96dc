/* test_store_local.c - the local object store: atomic put, streaming get,
 * ranges, idempotent delete, listing, key validation. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/store.h"
#include "dripd/util.h"

static char dir[256];
static struct dr_config *cfg;
static struct dr_store *st;

static void write_file(const char *path, const void *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dr_write_all(fd, b, len), 0);
    close(fd);
}

static size_t read_file(const char *path, void *b, size_t cap)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ssize_t n = dr_read_full(fd, b, cap);
    close(fd);
    ck_assert_int_ge(n, 0);
    return (size_t)n;
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/dripd-test-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    cfg = config_defaults();
    free(cfg->storage.local.path);
    cfg->storage.local.path = xasprintf("%s/objects", dir);
    char err[256];
    ck_assert_int_eq(store_open(cfg, &st, err, sizeof err), 0);
    ck_assert_str_eq(st->ops->name, "local");
}

static void teardown(void)
{
    store_close(st);
    config_destroy(cfg);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

static int count_keys(const char *key, uint64_t size, void *arg)
{
    (void)size;
    ck_assert(key[0] != '.');
    (*(int *)arg)++;
    return 0;
}

START_TEST(test_put_get_del)
{
    char err[256], *src = xasprintf("%s/src", dir), *dst = xasprintf("%s/dst", dir);
    static uint8_t data[300000], back[300001];
    dr_random(data, sizeof data);
    write_file(src, data, sizeof data);
    const char *key = "01JABCDEFGHJKMNPQRSTVWXYZ0_20261125T000605Z.jpg";
    uint64_t size = 0;
    ck_assert_int_eq(store_exists(st, key, &size, err, sizeof err), 0);
    ck_assert_int_eq(store_put(st, key, src, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st, key, &size, err, sizeof err), 1);
    ck_assert_uint_eq(size, sizeof data);
    ck_assert_int_eq(store_get(st, key, dst, err, sizeof err), 0);
    ck_assert_uint_eq(read_file(dst, back, sizeof back), sizeof data);
    ck_assert(memcmp(back, data, sizeof data) == 0);
    /* ranges: start, middle, across the end, past the end */
    uint8_t r[100];
    ck_assert_int_eq(st->ops->get_range(st, key, 0, r, 100, err, sizeof err), 100);
    ck_assert(memcmp(r, data, 100) == 0);
    ck_assert_int_eq(st->ops->get_range(st, key, 123456, r, 100, err, sizeof err), 100);
    ck_assert(memcmp(r, data + 123456, 100) == 0);
    ck_assert_int_eq(st->ops->get_range(st, key, sizeof data - 10, r, 100, err, sizeof err), 10);
    ck_assert_int_eq(st->ops->get_range(st, key, sizeof data + 10, r, 100, err, sizeof err), 0);
    /* the object does not change when the source is replaced (by rename) */
    uint8_t other[10] = "0123456789";
    char *src2 = xasprintf("%s/src2", dir);
    write_file(src2, other, sizeof other);
    ck_assert_int_eq(rename(src2, src), 0);
    ck_assert_int_eq(store_get(st, key, dst, err, sizeof err), 0);
    ck_assert_uint_eq(read_file(dst, back, sizeof back), sizeof data);
    ck_assert(memcmp(back, data, sizeof data) == 0);
    /* put again replaces atomically */
    ck_assert_int_eq(store_put(st, key, src, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st, key, &size, err, sizeof err), 1);
    ck_assert_uint_eq(size, 10);
    int n = 0;
    ck_assert_int_eq(st->ops->list(st, count_keys, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(st->ops->check(st, err, sizeof err), 0);
    /* delete is idempotent */
    ck_assert_int_eq(store_delete(st, key, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st, key, NULL, err, sizeof err), 0);
    ck_assert_int_eq(store_delete(st, key, err, sizeof err), 0);
    ck_assert_int_eq(store_get(st, key, dst, err, sizeof err), -ENOENT);
    ck_assert_msg(strstr(err, "no such object") != NULL, "%s", err);
    ck_assert_int_eq(st->ops->get_range(st, key, 0, r, 1, err, sizeof err), -ENOENT);
    free(src);
    free(src2);
    free(dst);
}
END_TEST

START_TEST(test_bad_keys)
{
    char err[256], *src = xasprintf("%s/src", dir), *dst = xasprintf("%s/dst", dir);
    write_file(src, "x", 1);
    const char *bad[] = {"", "a/b", "..", ".", ".hidden", "../escape", "/abs"};
    for (size_t i = 0; i < DR_ARRAY_LEN(bad); i++) {
        ck_assert_int_eq(store_put(st, bad[i], src, err, sizeof err), -EINVAL);
        ck_assert_int_eq(store_get(st, bad[i], dst, err, sizeof err), -EINVAL);
        ck_assert_int_eq(store_delete(st, bad[i], err, sizeof err), -EINVAL);
        ck_assert_int_eq(store_exists(st, bad[i], NULL, err, sizeof err), -EINVAL);
    }
    char longkey[300];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[299] = 0;
    ck_assert_int_eq(store_put(st, longkey, src, err, sizeof err), -EINVAL);
    /* missing source: permanent error, nothing left behind */
    ck_assert_int_eq(store_put(st, "k1", "/nonexistent/file", err, sizeof err), -ENOENT);
    int n = 0;
    ck_assert_int_eq(st->ops->list(st, count_keys, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 0);
    char *objdir = xasprintf("%s/objects", dir);
    char *cmd = xasprintf("test -z \"$(ls -A '%s')\"", objdir);
    ck_assert_int_eq(system(cmd), 0); /* no temporary files either */
    free(cmd);
    free(objdir);
    free(src);
    free(dst);
}
END_TEST

START_TEST(test_copy_across_filesystems)
{
    /* /dev/shm is another filesystem: put must copy, not link */
    char err[256];
    char *src = xasprintf("/dev/shm/dripd-test-store-%d", (int)getpid());
    static uint8_t data[70000], back[70001];
    dr_random(data, sizeof data);
    write_file(src, data, sizeof data);
    ck_assert_int_eq(store_put(st, "k2", src, err, sizeof err), 0);
    unlink(src);
    char *dst = xasprintf("%s/dst", dir);
    ck_assert_int_eq(store_get(st, "k2", dst, err, sizeof err), 0);
    ck_assert_uint_eq(read_file(dst, back, sizeof back), sizeof data);
    ck_assert(memcmp(back, data, sizeof data) == 0);
    free(src);
    free(dst);
}
END_TEST

START_TEST(test_open_read_in_place)
{
    char err[256], *src = xasprintf("%s/src", dir);
    static uint8_t data[100000], back[100001];
    dr_random(data, sizeof data);
    write_file(src, data, sizeof data);
    ck_assert_int_eq(store_put(st, "k3", src, err, sizeof err), 0);
    int fd = 99;
    ck_assert_int_eq(store_open_read(st, "k3", &fd, err, sizeof err), 0);
    ck_assert_int_ge(fd, 0);
    /* the fd stays valid while the object is deleted or replaced */
    ck_assert_int_eq(store_delete(st, "k3", err, sizeof err), 0);
    ck_assert_int_eq((int)dr_pread_full(fd, back, sizeof back, 0), (int)sizeof data);
    ck_assert(memcmp(back, data, sizeof data) == 0);
    ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    close(fd);
    fd = 99;
    ck_assert_int_eq(store_open_read(st, "k3", &fd, err, sizeof err), -ENOENT);
    ck_assert_int_eq(fd, -1);
    ck_assert_msg(strstr(err, "no such object") != NULL, "%s", err);
    ck_assert_int_eq(store_open_read(st, "../k3", &fd, err, sizeof err), -EINVAL);
    /* a backend without local files says so */
    struct dr_store_ops no_local = *st->ops;
    no_local.open_read = NULL;
    struct dr_store fake = {.ops = &no_local, .cfg = cfg};
    ck_assert_int_eq(store_open_read(&fake, "k3", &fd, err, sizeof err), -EOPNOTSUPP);
    ck_assert_int_eq(fd, -1);
    free(src);
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store_local");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_put_get_del);
    tcase_add_test(tc, test_bad_keys);
    tcase_add_test(tc, test_copy_across_filesystems);
    tcase_add_test(tc, test_open_read_in_place);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

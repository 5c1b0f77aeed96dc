/* test_store.c - the store dispatch (store.c): every operation of every
 * backend is measured there, once. A fake backend answers as told. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/metrics.h"
#include "dripd/store.h"
#include "dripd/util.h"

static struct dr_metrics m;
static int next_rc;                                   /* what the fake's next operation answers */
static char dir[64];                                  /* scratch files */
static const char payload[] = "0123456789abcdef0123"; /* 20 bytes */

static int f_put(struct dr_store *st, const char *key, const char *src, char *err, size_t n)
{
    (void)st, (void)key, (void)src;
    if (next_rc)
        dr_set_err(err, n, "fake put failed");
    return next_rc;
}

static int f_get(struct dr_store *st, const char *key, const char *dst, char *err, size_t n)
{
    (void)st, (void)key, (void)err, (void)n;
    if (next_rc)
        return next_rc;
    int fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dr_write_all(fd, payload, 20), 0);
    close(fd);
    return 0;
}

static long f_get_range(struct dr_store *st, const char *key, uint64_t off, void *buf, size_t len,
                        char *err, size_t n)
{
    (void)st, (void)key, (void)off, (void)buf, (void)err, (void)n;
    return next_rc ? next_rc : (long)DR_MIN(len, 7);
}

static int f_del(struct dr_store *st, const char *key, char *err, size_t n)
{
    (void)st, (void)key, (void)err, (void)n;
    return next_rc;
}

static int f_exists(struct dr_store *st, const char *key, uint64_t *size, char *err, size_t n)
{
    (void)st, (void)key, (void)size, (void)err, (void)n;
    return next_rc ? next_rc : 1;
}

static int f_open_read(struct dr_store *st, const char *key, int *fd, char *err, size_t n)
{
    (void)st, (void)key, (void)err, (void)n;
    if (next_rc)
        return next_rc;
    char *p = xasprintf("%s/obj", dir);
    *fd = open(p, O_RDONLY);
    free(p);
    return *fd >= 0 ? 0 : -errno;
}

static const struct dr_store_ops fake_ops = {
    .name = "fake",
    .put = f_put,
    .get = f_get,
    .get_range = f_get_range,
    .del = f_del,
    .exists = f_exists,
    .open_read = f_open_read,
};
static struct dr_store fake = {.ops = &fake_ops};

static void setup(void)
{
    memset(&m, 0, sizeof m);
    next_rc = 0;
    snprintf(dir, sizeof dir, "/tmp/dripd-test-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *p = xasprintf("%s/obj", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dr_write_all(fd, payload, 20), 0);
    close(fd);
    free(p);
    store_set_metrics(&m);
}

static void teardown(void)
{
    store_set_metrics(NULL);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

START_TEST(test_every_op_counted_once)
{
    char err[128], *obj = xasprintf("%s/obj", dir), *dst = xasprintf("%s/dst", dir);
    uint8_t buf[16];
    int fd = -1;
    ck_assert_int_eq(store_put(&fake, "k", obj, err, sizeof err), 0);
    ck_assert_int_eq(store_get(&fake, "k", dst, err, sizeof err), 0);
    ck_assert_int_eq(store_get_range(&fake, "k", 0, buf, sizeof buf, err, sizeof err), 7);
    ck_assert_int_eq(store_open_read(&fake, "k", &fd, err, sizeof err), 0);
    close(fd);
    ck_assert_int_eq(store_delete(&fake, "k", err, sizeof err), 0);
    ck_assert_int_eq(store_exists(&fake, "k", NULL, err, sizeof err), 1);

    ck_assert_uint_eq(m.store_duration[DR_SOP_PUT].count, 1);
    ck_assert_uint_eq(m.store_duration[DR_SOP_GET].count, 3); /* get, range, open_read */
    ck_assert_uint_eq(m.store_duration[DR_SOP_DELETE].count, 1);
    ck_assert_uint_eq(m.store_duration[DR_SOP_EXISTS].count, 1);
    for (int op = 0; op < DR_SOP_COUNT; op++)
        ck_assert_uint_eq(m.store_errors[op], 0);
    ck_assert_uint_eq(m.store_bytes_up, 20);            /* the object put */
    ck_assert_uint_eq(m.store_bytes_down, 20 + 7 + 20); /* get + range + open_read */
    free(obj);
    free(dst);
}
END_TEST

START_TEST(test_errors_but_not_absent)
{
    char err[128], *obj = xasprintf("%s/obj", dir), *dst = xasprintf("%s/dst", dir);
    uint8_t buf[16];
    int fd = -1;
    next_rc = -EAGAIN;
    ck_assert_int_eq(store_put(&fake, "k", obj, err, sizeof err), -EAGAIN);
    ck_assert_int_eq(store_get(&fake, "k", dst, err, sizeof err), -EAGAIN);
    ck_assert_int_eq(store_delete(&fake, "k", err, sizeof err), -EAGAIN);
    ck_assert_int_eq(store_exists(&fake, "k", NULL, err, sizeof err), -EAGAIN);
    next_rc = -ENOENT; /* absent is an answer, not an error */
    ck_assert_int_eq(store_get(&fake, "k", dst, err, sizeof err), -ENOENT);
    ck_assert_int_eq(store_get_range(&fake, "k", 0, buf, sizeof buf, err, sizeof err), -ENOENT);
    ck_assert_int_eq(store_open_read(&fake, "k", &fd, err, sizeof err), -ENOENT);

    ck_assert_uint_eq(m.store_errors[DR_SOP_PUT], 1);
    ck_assert_uint_eq(m.store_errors[DR_SOP_GET], 1);
    ck_assert_uint_eq(m.store_errors[DR_SOP_DELETE], 1);
    ck_assert_uint_eq(m.store_errors[DR_SOP_EXISTS], 1);
    ck_assert_uint_eq(m.store_duration[DR_SOP_GET].count, 4);
    ck_assert_uint_eq(m.store_bytes_up, 0);
    ck_assert_uint_eq(m.store_bytes_down, 0);
    free(obj);
    free(dst);
}
END_TEST

START_TEST(test_no_local_files_not_counted)
{
    struct dr_store_ops no_local = fake_ops;
    no_local.open_read = NULL;
    struct dr_store st = {.ops = &no_local};
    char err[128];
    int fd = 99;
    ck_assert_int_eq(store_open_read(&st, "k", &fd, err, sizeof err), -EOPNOTSUPP);
    ck_assert_int_eq(fd, -1);
    ck_assert_uint_eq(m.store_duration[DR_SOP_GET].count, 0);
    ck_assert_uint_eq(m.store_errors[DR_SOP_GET], 0);
}
END_TEST

START_TEST(test_no_sink_records_nothing)
{
    store_set_metrics(NULL);
    char err[128], *obj = xasprintf("%s/obj", dir);
    ck_assert_int_eq(store_put(&fake, "k", obj, err, sizeof err), 0);
    ck_assert_uint_eq(m.store_duration[DR_SOP_PUT].count, 0);
    ck_assert_uint_eq(m.store_bytes_up, 0);
    free(obj);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("dispatch");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_every_op_counted_once);
    tcase_add_test(tc, test_errors_but_not_absent);
    tcase_add_test(tc, test_no_local_files_not_counted);
    tcase_add_test(tc, test_no_sink_records_nothing);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/* test_pipeline.c - the helpers the pipeline steps share (pipeline.c):
 * retry classification, the scratch path, the *at helpers (pl_at,
 * pl_open, pl_unlink) and the stop protocol. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/util.h"
#include "pipeline/pipeline.h"

static struct pl_ctx pc;

static void setup(void)
{
    memset(&pc, 0, sizeof pc);
    pthread_mutex_init(&pc.stop_mu, NULL);
    dr_cond_init_mono(&pc.stop_cv);
    pc.work_dir = "/data/work";
    pc.work_fd = pc.spool_fd = -1;
}

static void teardown(void)
{
    pthread_mutex_destroy(&pc.stop_mu);
    pthread_cond_destroy(&pc.stop_cv);
}

START_TEST(test_transient)
{
    static const int transient[] = {EAGAIN,    EIO,          ENOSPC,     EDQUOT,       EBUSY,
                                    ETIMEDOUT, ECONNREFUSED, ECONNRESET, EHOSTUNREACH, ENETUNREACH,
                                    EINTR,     ENOMEM,       EMFILE,     ENFILE};
    for (size_t i = 0; i < DR_ARRAY_LEN(transient); i++)
        ck_assert_msg(pl_is_transient(-transient[i]), "%s", strerror(transient[i]));
    static const int permanent[] = {ENOENT, EINVAL, EACCES, EPERM, ENXIO, EEXIST, ESTALE, 0};
    for (size_t i = 0; i < DR_ARRAY_LEN(permanent); i++)
        ck_assert_msg(!pl_is_transient(-permanent[i]), "%s", strerror(permanent[i]));
}
END_TEST

START_TEST(test_work_path)
{
    char *p = pl_work_path(&pc, "01JOB");
    ck_assert_str_eq(p, "/data/work/01JOB.sealed");
    free(p);
}
END_TEST

START_TEST(test_at)
{
    const char *name;
    ck_assert_int_eq(pl_at(&pc, "/data/work/01JOB.sealed", &name), AT_FDCWD); /* no fds yet */
    ck_assert_str_eq(name, "/data/work/01JOB.sealed");
    pc.work_fd = 7;
    pc.spool_fd = 8;
    pc.spool_dir = "/data/spool";
    ck_assert_int_eq(pl_at(&pc, "/data/work/01JOB.sealed", &name), 7);
    ck_assert_str_eq(name, "01JOB.sealed");
    ck_assert_int_eq(pl_at(&pc, "/data/spool/01UP.part", &name), 8);
    ck_assert_str_eq(name, "01UP.part");
    /* anything not directly in one of them is itself */
    static const char *const other[] = {"/data/work/sub/x", "/data/workx/a", "/data/work/",
                                        "/data/work",       "/elsewhere/a",  "rel/a"};
    for (size_t i = 0; i < DR_ARRAY_LEN(other); i++) {
        ck_assert_int_eq(pl_at(&pc, other[i], &name), AT_FDCWD);
        ck_assert_str_eq(name, other[i]);
    }
}
END_TEST

/* The http worker makes spool file f; the pipeline opens and removes it. */
static void spool_file_round_trip(const char *f)
{
    int fd = open(f, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(fd, 0);
    close(fd);
    fd = pl_open(&pc, f, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(pl_unlink(&pc, f), 0);
}

/* A spool file is found by its full path when spool/ was made anew after
 * the worker opened it (the fd names the removed directory). */
START_TEST(test_spool_replaced)
{
    char root[] = "/tmp/test_pipeline.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(root));
    char *spool = xasprintf("%s/spool", root), *f = xasprintf("%s/spool/a.part", root);
    ck_assert_int_eq(mkdir(spool, 0700), 0);
    pc.spool_dir = spool;
    pc.spool_fd = open(spool, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(pc.spool_fd, 0);
    spool_file_round_trip(f);
    ck_assert_int_eq(rmdir(spool), 0);
    ck_assert_int_eq(mkdir(spool, 0700), 0); /* the http worker's new spool/ */
    spool_file_round_trip(f);
    ck_assert_int_eq(access(f, F_OK), -1);
    ck_assert_int_eq(pl_open(&pc, f, O_RDONLY), -1);
    ck_assert_int_eq(errno, ENOENT);
    close(pc.spool_fd);
    pc.spool_fd = -1;
    rmdir(spool);
    rmdir(root);
    free(spool);
    free(f);
}
END_TEST

START_TEST(test_sleep_times_out)
{
    int64_t t0 = dr_mono_ms();
    ck_assert(pl_sleep(&pc, 50));
    ck_assert_int_ge(dr_mono_ms() - t0, 50);
    ck_assert(!pl_stopping(&pc));
}
END_TEST

static void *stopper(void *arg)
{
    pl_ctx_stop(arg);
    return NULL;
}

START_TEST(test_stop_wakes_sleeper)
{
    pthread_t t;
    int64_t t0 = dr_mono_ms();
    ck_assert_int_eq(pthread_create(&t, NULL, stopper, &pc), 0);
    /* a minute-long sleep ends as soon as the stop arrives */
    ck_assert(!pl_sleep(&pc, 60000));
    ck_assert_int_lt(dr_mono_ms() - t0, 30000);
    pthread_join(t, NULL);
    ck_assert(pl_stopping(&pc));
    ck_assert(!pl_sleep(&pc, 60000)); /* and every later sleep returns at once */
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pipeline");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_transient);
    tcase_add_test(tc, test_work_path);
    tcase_add_test(tc, test_at);
    tcase_add_test(tc, test_spool_replaced);
    tcase_add_test(tc, test_sleep_times_out);
    tcase_add_test(tc, test_stop_wakes_sleeper);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

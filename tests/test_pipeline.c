/* test_pipeline.c - the helpers the pipeline steps share (pipeline.c):
 * retry classification, the scratch path, and the stop protocol. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/util.h"
#include "pipeline/pipeline.h"

static struct pl_ctx pc;

static void setup(void)
{
    memset(&pc, 0, sizeof pc);
    pthread_mutex_init(&pc.stop_mu, NULL);
    dr_cond_init_mono(&pc.stop_cv);
    pc.work_dir = "/data/work";
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

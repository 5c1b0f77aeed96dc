/* test_util.c - the shared helpers of src/core/util.c that have no module
 * of their own to be tested through: hex, the monotonic condition
 * variable, threads started with signals blocked. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/util.h"

START_TEST(test_hex_byte)
{
    ck_assert_int_eq(dr_hex_byte("00"), 0);
    ck_assert_int_eq(dr_hex_byte("7f"), 0x7f);
    ck_assert_int_eq(dr_hex_byte("aB"), 0xab);
    ck_assert_int_eq(dr_hex_byte("Ff"), 0xff);
    ck_assert_int_eq(dr_hex_byte("09x"), 9); /* only two digits are read */
    ck_assert_int_eq(dr_hex_byte("g0"), -1);
    ck_assert_int_eq(dr_hex_byte("0g"), -1);
    ck_assert_int_eq(dr_hex_byte(" 1"), -1);
    ck_assert_int_eq(dr_hex_byte("1"), -1); /* ends after one digit */
    ck_assert_int_eq(dr_hex_byte(""), -1);  /* s[1] is never read */
    /* round trip with dr_hex */
    for (int b = 0; b < 256; b++) {
        uint8_t in = (uint8_t)b;
        char out[3];
        dr_hex(&in, 1, out);
        ck_assert_int_eq(dr_hex_byte(out), b);
    }
}
END_TEST

START_TEST(test_mono_cond_times_out)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    dr_cond_init_mono(&cv);
    struct timespec ts;
    int64_t t0 = dr_mono_ms();
    dr_mono_timespec(&ts, t0 + 30);
    ck_assert_int_eq(ts.tv_sec, t0 / 1000 + (t0 % 1000 + 30) / 1000);
    pthread_mutex_lock(&mu);
    int rc;
    while ((rc = pthread_cond_timedwait(&cv, &mu, &ts)) == 0)
        ; /* spurious wake-ups */
    pthread_mutex_unlock(&mu);
    ck_assert_int_eq(rc, ETIMEDOUT);
    ck_assert_int_ge(dr_mono_ms() - t0, 30);
    /* a deadline on the monotonic clock, not the wall clock: a wall-clock
     * reading as the deadline (decades ahead of the monotonic one) would
     * block here */
    dr_mono_timespec(&ts, dr_mono_ms() - 1000);
    pthread_mutex_lock(&mu);
    ck_assert_int_eq(pthread_cond_timedwait(&cv, &mu, &ts), ETIMEDOUT);
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
}
END_TEST

static void *report_mask(void *arg)
{
    sigset_t *out = arg;
    pthread_sigmask(SIG_BLOCK, NULL, out);
    return NULL;
}

START_TEST(test_thread_start_blocks_signals)
{
    sigset_t mask, before, after;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    pthread_t t;
    ck_assert_int_eq(dr_thread_start(&t, report_mask, &mask), 0);
    pthread_join(t, NULL);
    ck_assert(sigismember(&mask, SIGTERM));
    ck_assert(sigismember(&mask, SIGINT));
    ck_assert(sigismember(&mask, SIGHUP));
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    ck_assert_int_eq(sigismember(&after, SIGTERM), sigismember(&before, SIGTERM));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("util");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_hex_byte);
    tcase_add_test(tc, test_mono_cond_times_out);
    tcase_add_test(tc, test_thread_start_blocks_signals);
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

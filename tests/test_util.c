/* test_util.c - the shared helpers of src/core/util.c that have no module
 * of their own to be tested through: hex, the monotonic condition
 * variable, threads started with signals blocked, the random pool. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dripd/util.h"

/* dr_random hands out each byte once: two draws differ, draws larger
 * than the pool work, and a forked child never gets the bytes its parent
 * gets next (both would take the same slice of an inherited pool). */
START_TEST(test_random_pool)
{
    unsigned char a[16], b[16], big[4096];
    dr_random(a, sizeof a);
    dr_random(b, sizeof b);
    ck_assert(memcmp(a, b, sizeof a) != 0);
    memset(big, 0, sizeof big);
    dr_random(big, sizeof big);
    size_t zeros = 0;
    for (size_t i = 0; i < sizeof big; i++)
        zeros += big[i] == 0;
    ck_assert_uint_lt(zeros, 64); /* ~16 expected */
    for (int round = 0; round < 8; round++) {
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            unsigned char c[16];
            dr_random(c, sizeof c);
            _exit(write(fds[1], c, sizeof c) == (ssize_t)sizeof c ? 0 : 1);
        }
        unsigned char child[16], parent[16];
        dr_random(parent, sizeof parent);
        ck_assert_int_eq(read(fds[0], child, sizeof child), (ssize_t)sizeof child);
        int st;
        ck_assert_int_eq(waitpid(pid, &st, 0), pid);
        ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        ck_assert(memcmp(child, parent, sizeof child) != 0);
        close(fds[0]);
        close(fds[1]);
    }
}
END_TEST

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
    tcase_add_test(tc, test_random_pool);
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

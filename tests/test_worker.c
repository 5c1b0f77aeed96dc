/* test_worker.c - the worker side of the supervisor channel and the
 * signal setup both worker processes share (worker.c). */
#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dripd/worker.h"

START_TEST(test_signals)
{
    /* Check runs each test in its own process: raising is safe here */
    worker_install_signals();
    ck_assert(!worker_term_requested());
    ck_assert_int_eq(raise(SIGHUP), 0); /* ignored: the process lives on */
    ck_assert_int_eq(raise(SIGPIPE), 0);
    ck_assert(!worker_term_requested());
    ck_assert_int_eq(raise(SIGTERM), 0); /* a flag, not a death */
    ck_assert(worker_term_requested());
    struct sigaction sa;
    sigaction(SIGHUP, NULL, &sa);
    ck_assert(sa.sa_handler == SIG_IGN);
    sigaction(SIGINT, NULL, &sa);
    ck_assert(sa.sa_flags & SA_RESTART);
}
END_TEST

START_TEST(test_channel)
{
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv), 0);
    struct dr_worker_ctx w = {.chan_fd = sv[0]}, sup = {.chan_fd = sv[1]};
    struct dr_msg m;
    ck_assert_int_eq(worker_recv(&sup, &m), 0); /* nothing yet */
    ck_assert_int_eq(worker_send(&w, DR_MSG_HEARTBEAT, 42), 0);
    ck_assert_int_eq(worker_recv(&sup, &m), 1);
    ck_assert_uint_eq(m.type, DR_MSG_HEARTBEAT);
    ck_assert_uint_eq(m.arg, 42);
    ck_assert_uint_eq(m.flags, 0);
    /* the intake's wake-up says "uploads only" (the pipeline leaves its
     * download starter asleep) and keeps its hint */
    ck_assert_int_eq(worker_send_flags(&w, DR_MSG_JOB_ENQUEUED, DR_ENQ_UPLOADS, 7), 0);
    ck_assert_int_eq(worker_recv(&sup, &m), 1);
    ck_assert_uint_eq(m.type, DR_MSG_JOB_ENQUEUED);
    ck_assert_uint_eq(m.flags, DR_ENQ_UPLOADS);
    ck_assert_uint_eq(m.arg, 7);
    close(sv[1]);
    ck_assert_int_eq(worker_recv(&w, &m), -EPIPE); /* the supervisor is gone */
    close(sv[0]);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_signals);
    tcase_add_test(tc, test_channel);
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

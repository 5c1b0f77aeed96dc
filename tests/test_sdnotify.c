/* test_sdnotify.c - the sd_notify sender against real AF_UNIX datagram
 * sockets (a path socket and an abstract one), message formatting and the
 * WATCHDOG_USEC/WATCHDOG_PID rules. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "supervisor/sdnotify.h"

/* A bound datagram socket standing in for systemd's notify socket. */
struct listener {
    int fd;
    char addr[108];
};

static void listener_path(struct listener *l)
{
    snprintf(l->addr, sizeof l->addr, "/tmp/dripd-sdn-%d-%ld.sock", (int)getpid(), random());
    unlink(l->addr);
    l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(l->fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", l->addr);
    ck_assert_int_eq(bind(l->fd, (struct sockaddr *)&sa, sizeof sa), 0);
}

static void listener_abstract(struct listener *l)
{
    snprintf(l->addr, sizeof l->addr, "@dripd-sdn-%d-%ld", (int)getpid(), random());
    l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(l->fd, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(l->addr);
    memcpy(sa.sun_path, l->addr, n);
    sa.sun_path[0] = '\0';
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    ck_assert_int_eq(bind(l->fd, (struct sockaddr *)&sa, len), 0);
}

static void listener_done(struct listener *l)
{
    close(l->fd);
    if (l->addr[0] == '/')
        unlink(l->addr);
}

/* Receive one datagram (waits at most 2 s) as a string. */
static void recv_msg(struct listener *l, char *buf, size_t len)
{
    struct timeval tv = {.tv_sec = 2};
    setsockopt(l->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t n = recv(l->fd, buf, len - 1, 0);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
}

START_TEST(send_to_path_socket)
{
    struct listener l;
    listener_path(&l);
    struct dr_sdnotify *sd = NULL;
    ck_assert_int_eq(sdnotify_open(l.addr, &sd), 0);
    ck_assert_ptr_nonnull(sd);
    ck_assert_int_eq(sdnotify_send(sd, "READY=1\nSTATUS=2 workers, queue depth 0"), 0);
    char buf[256];
    recv_msg(&l, buf, sizeof buf);
    ck_assert_str_eq(buf, "READY=1\nSTATUS=2 workers, queue depth 0");
    /* one datagram per message: the second arrives separately */
    ck_assert_int_eq(sdnotify_sendf(sd, "WATCHDOG=%d", 1), 0);
    ck_assert_int_eq(sdnotify_send(sd, "STOPPING=1"), 0);
    recv_msg(&l, buf, sizeof buf);
    ck_assert_str_eq(buf, "WATCHDOG=1");
    recv_msg(&l, buf, sizeof buf);
    ck_assert_str_eq(buf, "STOPPING=1");
    sdnotify_close(sd);
    listener_done(&l);
}
END_TEST

START_TEST(send_to_abstract_socket)
{
    struct listener l;
    listener_abstract(&l);
    struct dr_sdnotify *sd = NULL;
    ck_assert_int_eq(sdnotify_open(l.addr, &sd), 0);
    ck_assert_int_eq(sdnotify_send(sd, "READY=1"), 0);
    char buf[64];
    recv_msg(&l, buf, sizeof buf);
    ck_assert_str_eq(buf, "READY=1");
    sdnotify_close(sd);
    listener_done(&l);
}
END_TEST

START_TEST(open_env_reads_and_unsets)
{
    struct listener l;
    listener_path(&l);
    setenv("NOTIFY_SOCKET", l.addr, 1);
    struct dr_sdnotify *sd = NULL;
    ck_assert_int_eq(sdnotify_open_env(&sd), 0);
    ck_assert_ptr_nonnull(sd);
    ck_assert_ptr_null(getenv("NOTIFY_SOCKET")); /* children must not inherit it */
    ck_assert_int_eq(sdnotify_send(sd, "STATUS=x"), 0);
    char buf[64];
    recv_msg(&l, buf, sizeof buf);
    ck_assert_str_eq(buf, "STATUS=x");
    sdnotify_close(sd);
    listener_done(&l);
}
END_TEST

START_TEST(no_socket_is_a_noop)
{
    unsetenv("NOTIFY_SOCKET");
    struct dr_sdnotify *sd = (struct dr_sdnotify *)&sd; /* must be overwritten */
    ck_assert_int_eq(sdnotify_open_env(&sd), 0);
    ck_assert_ptr_null(sd);
    ck_assert_int_eq(sdnotify_send(NULL, "READY=1"), 0);
    ck_assert_int_eq(sdnotify_sendf(NULL, "STATUS=%d", 3), 0);
    sdnotify_close(NULL);
}
END_TEST

START_TEST(bad_addresses)
{
    struct dr_sdnotify *sd = NULL;
    ck_assert_int_eq(sdnotify_open("", &sd), -EINVAL);
    ck_assert_int_eq(sdnotify_open("@", &sd), -EINVAL);
    ck_assert_int_eq(sdnotify_open("vsock:2:1234", &sd), -EAFNOSUPPORT);
    char longp[200];
    memset(longp, 'a', sizeof longp - 1);
    longp[0] = '/';
    longp[sizeof longp - 1] = '\0';
    ck_assert_int_eq(sdnotify_open(longp, &sd), -EINVAL);
    ck_assert_ptr_null(sd);
}
END_TEST

START_TEST(send_errors_are_reported)
{
    struct dr_sdnotify *sd = NULL;
    ck_assert_int_eq(sdnotify_open("/tmp/dripd-sdn-nobody-listens-here.sock", &sd), 0);
    int r = sdnotify_send(sd, "READY=1");
    ck_assert(r == -ENOENT || r == -ECONNREFUSED);
    char big[DR_SDNOTIFY_MAX + 10];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ck_assert_int_eq(sdnotify_send(sd, big), -EMSGSIZE);
    ck_assert_int_eq(sdnotify_sendf(sd, "%s", big), -EMSGSIZE);
    sdnotify_close(sd);
}
END_TEST

START_TEST(format_messages)
{
    char buf[128];
    int n = sdnotify_fmt_status(buf, sizeof buf, 2, 17);
    ck_assert_str_eq(buf, "STATUS=2 workers, queue depth 17");
    ck_assert_int_eq(n, (int)strlen(buf));
    sdnotify_fmt_status(buf, sizeof buf, 1, 0);
    ck_assert_str_eq(buf, "STATUS=1 worker, queue depth 0");
    n = sdnotify_fmt_reloading(buf, sizeof buf, 123456789ull);
    ck_assert_str_eq(buf, "RELOADING=1\nMONOTONIC_USEC=123456789");
    ck_assert_int_eq(n, (int)strlen(buf));
    char tiny[8];
    ck_assert_int_eq(sdnotify_fmt_status(tiny, sizeof tiny, 2, 0), -EMSGSIZE);
    ck_assert_int_eq(sdnotify_fmt_reloading(tiny, sizeof tiny, 1), -EMSGSIZE);
}
END_TEST

START_TEST(watchdog_env)
{
    uint64_t us = 99;
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    ck_assert_int_eq(sdnotify_watchdog_usec(&us, 0), 0);
    ck_assert_uint_eq(us, 0);

    setenv("WATCHDOG_USEC", "400000", 1);
    ck_assert_int_eq(sdnotify_watchdog_usec(&us, 0), 1);
    ck_assert_uint_eq(us, 400000);

    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    ck_assert_int_eq(sdnotify_watchdog_usec(&us, 0), 1);

    snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1); /* for another process */
    ck_assert_int_eq(sdnotify_watchdog_usec(&us, 0), 0);

    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "12x", 1);
    ck_assert_int_eq(sdnotify_watchdog_usec(&us, 0), -EINVAL);
    setenv("WATCHDOG_USEC", "0", 1);
    ck_assert_int_eq(sdnotify_watchdog_usec(&us, 0), -EINVAL);

    setenv("WATCHDOG_USEC", "30000000", 1);
    ck_assert_int_eq(sdnotify_watchdog_usec(&us, 1), 1);
    ck_assert_uint_eq(us, 30000000);
    ck_assert_ptr_null(getenv("WATCHDOG_USEC"));
}
END_TEST

static Suite *sdnotify_suite(void)
{
    Suite *s = suite_create("sdnotify");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, send_to_path_socket);
    tcase_add_test(tc, send_to_abstract_socket);
    tcase_add_test(tc, open_env_reads_and_unsets);
    tcase_add_test(tc, no_socket_is_a_noop);
    tcase_add_test(tc, bad_addresses);
    tcase_add_test(tc, send_errors_are_reported);
    tcase_add_test(tc, format_messages);
    tcase_add_test(tc, watchdog_env);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    srandom((unsigned)getpid());
    SRunner *sr = srunner_create(sdnotify_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

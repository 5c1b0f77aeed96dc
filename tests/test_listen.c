/* test_listen.c - `listen:` address parsing (valid and invalid), opening
 * real sockets on loopback, reuse across a reload, the run/listen file,
 * and systemd socket activation (LISTEN_PID/LISTEN_FDS). */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "supervisor/listen.h"
#include "dripd/util.h"

static void parse_ok(const char *spec, enum dr_listen_kind kind, const char *host, unsigned port,
                     bool v6)
{
    struct dr_listen_addr a;
    char err[DR_ERRLEN] = "";
    ck_assert_msg(listen_parse(spec, &a, err, sizeof err) == 0, "%s: %s", spec, err);
    ck_assert_int_eq(a.kind, kind);
    if (kind == DR_LISTEN_TCP) {
        ck_assert_str_eq(a.host, host);
        ck_assert_uint_eq(a.port, port);
        ck_assert_int_eq(a.ipv6, v6);
    } else {
        ck_assert_str_eq(a.path, host);
    }
}

static void parse_bad(const char *spec, const char *want)
{
    struct dr_listen_addr a;
    char err[DR_ERRLEN] = "";
    ck_assert_msg(listen_parse(spec, &a, err, sizeof err) == -EINVAL, "%s parsed", spec);
    ck_assert_msg(strstr(err, want) != NULL, "%s: error '%s' lacks '%s'", spec, err, want);
}

START_TEST(parse_valid)
{
    parse_ok("127.0.0.1:8080", DR_LISTEN_TCP, "127.0.0.1", 8080, false);
    parse_ok("127.0.0.1:0", DR_LISTEN_TCP, "127.0.0.1", 0, false);
    parse_ok("localhost:65535", DR_LISTEN_TCP, "localhost", 65535, false);
    parse_ok("*:80", DR_LISTEN_TCP, "", 80, false);
    parse_ok(":80", DR_LISTEN_TCP, "", 80, false);
    parse_ok("[::1]:8080", DR_LISTEN_TCP, "::1", 8080, true);
    parse_ok("[::]:0", DR_LISTEN_TCP, "::", 0, true);
    parse_ok("[fe80::1:2]:443", DR_LISTEN_TCP, "fe80::1:2", 443, true);
    parse_ok("unix:/run/dripd/http.sock", DR_LISTEN_UNIX, "/run/dripd/http.sock", 0, false);
    parse_ok("unix:relative.sock", DR_LISTEN_UNIX, "relative.sock", 0, false);
    parse_ok("unix:@dripd", DR_LISTEN_UNIX, "@dripd", 0, false);
}
END_TEST

START_TEST(parse_invalid)
{
    parse_bad("", "empty");
    parse_bad("127.0.0.1", "host:port");
    parse_bad("127.0.0.1:", "port");
    parse_bad("127.0.0.1:65536", "port");
    parse_bad("127.0.0.1:80a", "port");
    parse_bad("127.0.0.1:-1", "port");
    parse_bad("127.0.0.1:123456", "port");
    parse_bad("::1:8080", "brackets");
    parse_bad("[::1]8080", "':port'");
    parse_bad("[::1:8080", "']'");
    parse_bad("[]:80", "IPv6");
    parse_bad("[not-v6]:80", "IPv6");
    parse_bad("[127.0.0.1]:80", "IPv6");
    parse_bad("host name:80", "character");
    parse_bad("unix:", "empty");
    parse_bad("unix:@", "empty");
    char longp[200] = "unix:/";
    memset(longp + 6, 'a', sizeof longp - 7);
    longp[sizeof longp - 1] = '\0';
    parse_bad(longp, "longer");
}
END_TEST

static int port_of(int fd)
{
    struct sockaddr_in sa;
    socklen_t l = sizeof sa;
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &l), 0);
    return ntohs(sa.sin_port);
}

START_TEST(open_tcp_port_zero)
{
    struct dr_listen_addr a;
    char err[DR_ERRLEN] = "";
    ck_assert_int_eq(listen_parse("127.0.0.1:0", &a, err, sizeof err), 0);
    int fd = -1;
    ck_assert_int_eq(listen_open(&a, &fd, err, sizeof err), 0);
    ck_assert_int_gt(port_of(fd), 0);
    ck_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
    ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    int acc = 0;
    socklen_t l = sizeof acc;
    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &l);
    ck_assert_int_eq(acc, 1);
    char name[128];
    ck_assert_int_eq(listen_bound_name(fd, name, sizeof name), 0);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port_of(fd));
    ck_assert_str_eq(name, want);

    /* the same port again: a clear error */
    struct dr_listen_addr b;
    ck_assert_int_eq(listen_parse(want, &b, err, sizeof err), 0);
    int fd2 = -1;
    ck_assert_int_eq(listen_open(&b, &fd2, err, sizeof err), -EADDRINUSE);
    ck_assert_ptr_nonnull(strstr(err, want));
    ck_assert_ptr_nonnull(strstr(err, "in use"));
    ck_assert_int_eq(fd2, -1);
    close(fd);
}
END_TEST

START_TEST(open_ipv6_loopback)
{
    struct dr_listen_addr a;
    char err[DR_ERRLEN] = "";
    ck_assert_int_eq(listen_parse("[::1]:0", &a, err, sizeof err), 0);
    int fd = -1;
    int r = listen_open(&a, &fd, err, sizeof err);
    if (r == -EADDRNOTAVAIL || r == -EAFNOSUPPORT)
        return; /* no IPv6 on this host */
    ck_assert_msg(r == 0, "%s", err);
    char name[128];
    ck_assert_int_eq(listen_bound_name(fd, name, sizeof name), 0);
    ck_assert_msg(strncmp(name, "[::1]:", 6) == 0, "%s", name);
    close(fd);
}
END_TEST

START_TEST(open_unix_replaces_stale_file)
{
    char path[96];
    snprintf(path, sizeof path, "/tmp/dripd-listen-%d.sock", (int)getpid());
    unlink(path);
    char spec[128];
    snprintf(spec, sizeof spec, "unix:%s", path);
    struct dr_listen_set s;
    char err[DR_ERRLEN] = "";
    char *specs[] = {spec};
    ck_assert_msg(listen_set_open(&s, specs, 1, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_str_eq(s.v[0].name, spec);
    /* a live socket is not stolen */
    struct dr_listen_set s2;
    ck_assert_int_lt(listen_set_open(&s2, specs, 1, NULL, err, sizeof err), 0);
    /* close without unlinking: a stale file, as a crash leaves it */
    close(s.v[0].fd);
    s.v[0].fd = -1;
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_msg(listen_set_open(&s2, specs, 1, NULL, err, sizeof err) == 0, "%s", err);
    listen_set_close(&s, NULL);
    listen_set_close(&s2, NULL);
    ck_assert_int_eq(stat(path, &st), -1); /* unlinked on close */
}
END_TEST

START_TEST(reuse_across_reload)
{
    char err[DR_ERRLEN] = "";
    char *v1[] = {"127.0.0.1:0", "127.0.0.1:0"}; /* duplicate: one socket */
    struct dr_listen_set a;
    ck_assert_msg(listen_set_open(&a, v1, 2, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(a.n, 1);
    int fd_a = a.v[0].fd;
    int port_a = port_of(fd_a);

    char *v2[] = {"127.0.0.1:0", "localhost:0"};
    struct dr_listen_set b;
    ck_assert_msg(listen_set_open(&b, v2, 2, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(b.n, 2);
    ck_assert_int_eq(b.v[0].fd, fd_a); /* unchanged entry: same socket, same port */
    ck_assert_int_eq(port_of(b.v[0].fd), port_a);
    int fd_new = b.v[1].fd;

    /* naming the port a "...:0" entry got also keeps the socket, whatever
     * the order; another "...:0" entry beside it gets a new socket */
    char bound[64];
    snprintf(bound, sizeof bound, "127.0.0.1:%d", port_a);
    char *vb[] = {"127.0.0.1:0", bound};
    struct dr_listen_set bb;
    ck_assert_msg(listen_set_open(&bb, vb, 2, &a, err, sizeof err) == 0, "%s", err);
    ck_assert_uint_eq(bb.n, 2);
    ck_assert_int_eq(bb.v[1].fd, fd_a);
    ck_assert_int_ne(bb.v[0].fd, fd_a);
    int fd_extra = bb.v[0].fd;
    listen_set_close(&bb, &a);
    ck_assert_int_ge(fcntl(fd_a, F_GETFD), 0);
    ck_assert_int_eq(fcntl(fd_extra, F_GETFD), -1);

    /* commit: the old set goes, shared fds stay open */
    listen_set_close(&a, &b);
    ck_assert_int_ge(fcntl(fd_a, F_GETFD), 0);

    /* a failing reload closes only what it opened */
    char *v3[] = {"127.0.0.1:0", "localhost:0", "127.0.0.1:99999"};
    struct dr_listen_set c;
    ck_assert_int_eq(listen_set_open(&c, v3, 3, &b, err, sizeof err), -EINVAL);
    ck_assert_uint_eq(c.n, 0);
    ck_assert_int_ge(fcntl(fd_a, F_GETFD), 0);
    ck_assert_int_ge(fcntl(fd_new, F_GETFD), 0);

    listen_set_close(&b, NULL);
    ck_assert_int_eq(fcntl(fd_a, F_GETFD), -1);
    ck_assert_int_eq(fcntl(fd_new, F_GETFD), -1);
}
END_TEST

START_TEST(write_listen_file)
{
    char err[DR_ERRLEN] = "";
    char *v[] = {"127.0.0.1:0", "127.0.0.2:0"};
    struct dr_listen_set s;
    ck_assert_msg(listen_set_open(&s, v, 2, NULL, err, sizeof err) == 0, "%s", err);
    char path[96];
    snprintf(path, sizeof path, "/tmp/dripd-listen-file-%d", (int)getpid());
    ck_assert_int_eq(listen_write_file(&s, path), 0);
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char want[256];
    snprintf(want, sizeof want, "127.0.0.1:%d\n127.0.0.2:%d\n", port_of(s.v[0].fd),
             port_of(s.v[1].fd));
    ck_assert_str_eq(buf, want);
    unlink(path);
    ck_assert_int_lt(listen_write_file(&s, "/nonexistent-dir/listen"), 0);
    listen_set_close(&s, NULL);
}
END_TEST

/* Runs in a forked child: fd 3 and 4 belong to Check in the test process,
 * so the child takes them over and reports the first failed step as its
 * exit status (no ck_assert here: that would write to Check's fds). */
#define STEP(n, cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "step %d failed: %s (%s)\n", n, #cond, err);                           \
            return n;                                                                              \
        }                                                                                          \
    } while (0)

static int activation_child(void)
{
    struct dr_listen_addr a;
    char err[DR_ERRLEN] = "";
    int fd = -1;
    STEP(1, listen_parse("127.0.0.1:0", &a, err, sizeof err) == 0);
    STEP(2, listen_open(&a, &fd, err, sizeof err) == 0);
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    STEP(3, getsockname(fd, (struct sockaddr *)&sin, &sl) == 0);
    int port = ntohs(sin.sin_port);
    STEP(4, dup2(fd, 3) == 3);
    if (fd != 3)
        close(fd);
    char pid[32];
    snprintf(pid, sizeof pid, "%d", (int)getpid());

    setenv("LISTEN_PID", "1", 1); /* not for us */
    setenv("LISTEN_FDS", "1", 1);
    struct dr_listen_set s;
    STEP(5, listen_set_from_systemd(&s, err, sizeof err) == 0);
    STEP(6, getenv("LISTEN_FDS") == NULL);

    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    setenv("LISTEN_FDNAMES", "http", 1);
    STEP(7, listen_set_from_systemd(&s, err, sizeof err) == 1);
    STEP(8, s.from_systemd && s.n == 1 && s.v[0].fd == 3);
    STEP(9, strcmp(s.v[0].spec, "systemd:http") == 0);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    STEP(10, strcmp(s.v[0].name, want) == 0);
    STEP(11, (fcntl(3, F_GETFD) & FD_CLOEXEC) != 0);
    STEP(12, getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDNAMES") == NULL);

    int p[2];
    STEP(13, pipe(p) == 0);
    STEP(14, dup2(p[0], 4) == 4); /* fd 4: not a listening socket */
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "2", 1);
    struct dr_listen_set bad;
    STEP(15, listen_set_from_systemd(&bad, err, sizeof err) == -ENOTSOCK);
    STEP(16, strstr(err, "fd 4") != NULL);
    STEP(17, fcntl(3, F_GETFD) >= 0); /* systemd's fds are never closed on error */

    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "lots", 1);
    STEP(18, listen_set_from_systemd(&bad, err, sizeof err) == -EINVAL);
    listen_set_close(&s, NULL);
    return 0;
}

START_TEST(systemd_activation)
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0)
        _exit(activation_child());
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "activation step %d failed",
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}
END_TEST

static Suite *listen_suite(void)
{
    Suite *s = suite_create("listen");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, parse_valid);
    tcase_add_test(tc, parse_invalid);
    tcase_add_test(tc, open_tcp_port_zero);
    tcase_add_test(tc, open_ipv6_loopback);
    tcase_add_test(tc, open_unix_replaces_stale_file);
    tcase_add_test(tc, reuse_across_reload);
    tcase_add_test(tc, write_listen_file);
    tcase_add_test(tc, systemd_activation);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(listen_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

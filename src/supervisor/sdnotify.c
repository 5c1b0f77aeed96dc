/* sdnotify.c - the sd_notify(3) datagram protocol without libsystemd.
 *
 * What: the supervisor tells systemd (or the test harness, which plays
 * systemd) about its state: READY=1, RELOADING=1, STOPPING=1, STATUS=,
 * WATCHDOG=1. Each call sends exactly one datagram with sendto(); there is
 * no reply and no retry (a lost STATUS= is replaced by the next one).
 *
 * Threads: the supervisor's single thread only. The socket is CLOEXEC and
 * the supervisor closes it in every forked worker.
 *
 * Never: blocks (MSG_DONTWAIT), raises SIGPIPE (datagram socket), or
 * allocates per message (a bounded stack buffer).
 */
#include "sdnotify.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "dripd/util.h"

struct dr_sdnotify {
    int fd;
    struct sockaddr_un sa;
    socklen_t salen;
};

int sdnotify_open(const char *addr, struct dr_sdnotify **out)
{
    *out = NULL;
    if (addr == NULL || addr[0] == '\0')
        return -EINVAL;
    if (addr[0] != '/' && addr[0] != '@')
        return -EAFNOSUPPORT; /* vsock: and friends (systemd 254+) */
    size_t n = strlen(addr);
    struct dr_sdnotify *sd = xcalloc(1, sizeof *sd);
    if (n > sizeof sd->sa.sun_path - (addr[0] == '/' ? 1 : 0) || n < 2) {
        free(sd);
        return -EINVAL;
    }
    sd->sa.sun_family = AF_UNIX;
    memcpy(sd->sa.sun_path, addr, n);
    if (addr[0] == '@')
        sd->sa.sun_path[0] = '\0'; /* abstract namespace; length, not NUL, ends it */
    sd->salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    sd->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sd->fd < 0) {
        int e = -errno;
        free(sd);
        return e;
    }
    *out = sd;
    return 0;
}

int sdnotify_open_env(struct dr_sdnotify **out)
{
    *out = NULL;
    const char *e = getenv("NOTIFY_SOCKET");
    if (e == NULL || e[0] == '\0') {
        unsetenv("NOTIFY_SOCKET");
        return 0;
    }
    int r = sdnotify_open(e, out);
    unsetenv("NOTIFY_SOCKET");
    return r;
}

void sdnotify_close(struct dr_sdnotify *sd)
{
    if (sd == NULL)
        return;
    close(sd->fd);
    free(sd);
}

int sdnotify_send(struct dr_sdnotify *sd, const char *msg)
{
    if (sd == NULL)
        return 0;
    size_t n = strlen(msg);
    if (n > DR_SDNOTIFY_MAX)
        return -EMSGSIZE;
    for (;;) {
        ssize_t w = sendto(sd->fd, msg, n, MSG_DONTWAIT | MSG_NOSIGNAL,
                           (const struct sockaddr *)&sd->sa, sd->salen);
        if (w >= 0)
            return 0;
        if (errno != EINTR)
            return -errno;
    }
}

int sdnotify_sendf(struct dr_sdnotify *sd, const char *fmt, ...)
{
    if (sd == NULL)
        return 0;
    char buf[DR_SDNOTIFY_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof buf)
        return -EMSGSIZE;
    return sdnotify_send(sd, buf);
}

static int fmt_result(int n, size_t len)
{
    if (n < 0 || (size_t)n >= len)
        return -EMSGSIZE;
    return n;
}

int sdnotify_fmt_reloading(char *buf, size_t len, uint64_t mono_usec)
{
    int n = snprintf(buf, len, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64, mono_usec);
    return fmt_result(n, len);
}

int sdnotify_fmt_status(char *buf, size_t len, unsigned workers, uint64_t queue_depth)
{
    int n = snprintf(buf, len, "STATUS=%u worker%s, queue depth %" PRIu64, workers,
                     workers == 1 ? "" : "s", queue_depth);
    return fmt_result(n, len);
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || s[0] < '0' || s[0] > '9')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return -EINVAL;
    *out = v;
    return 0;
}

int sdnotify_watchdog_usec(uint64_t *usec, int unset)
{
    const char *us = getenv("WATCHDOG_USEC");
    const char *pid = getenv("WATCHDOG_PID");
    uint64_t v = 0, p = 0;
    int r = 0;
    *usec = 0;
    if (us == NULL)
        goto out;
    if (parse_u64(us, &v) < 0 || v == 0) {
        r = -EINVAL;
        goto out;
    }
    if (pid != NULL) {
        if (parse_u64(pid, &p) < 0) {
            r = -EINVAL;
            goto out;
        }
        if (p != (uint64_t)getpid())
            goto out; /* meant for another process */
    }
    *usec = v;
    r = 1;
out:
    if (unset) {
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
    }
    return r;
}

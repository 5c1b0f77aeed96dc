/* worker.c - the worker side of the supervisor channel, and the signal
 * setup every worker process shares (see worker.h).
 * Non-blocking SEQPACKET sends: a full channel drops the message, which is
 * fine because every message is an idempotent heartbeat, wake-up or cache
 * fill request (re-sent by its waiter).
 * Signals: the handler only sets a sig_atomic_t; the worker's main loop
 * polls it. */
#include "dripd/worker.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>

static volatile sig_atomic_t term_flag;

static void on_term(int sig)
{
    (void)sig;
    term_flag = 1;
}

void worker_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL); /* reload is the supervisor's (worker.h) */
}

bool worker_term_requested(void)
{
    return term_flag != 0;
}

static int send_msg(const struct dr_worker_ctx *ctx, const struct dr_msg *m)
{
    for (;;) {
        ssize_t n = send(ctx->chan_fd, m, sizeof *m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == (ssize_t)sizeof *m)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
            return -EAGAIN;
        return n < 0 ? -errno : -EIO;
    }
}

int worker_send(const struct dr_worker_ctx *ctx, enum dr_msg_type type, uint64_t arg)
{
    struct dr_msg m = {.type = (uint32_t)type, .flags = 0, .arg = arg};
    return send_msg(ctx, &m);
}

int worker_send_flags(const struct dr_worker_ctx *ctx, enum dr_msg_type type, uint32_t flags,
                      uint64_t arg)
{
    struct dr_msg m = {.type = (uint32_t)type, .flags = flags, .arg = arg};
    return send_msg(ctx, &m);
}

int worker_send_data(const struct dr_worker_ctx *ctx, enum dr_msg_type type, uint32_t flags,
                     const void *data, size_t len)
{
    struct dr_msg m = {.type = (uint32_t)type, .flags = flags};
    memcpy(m.data, data, len < sizeof m.data ? len : sizeof m.data);
    return send_msg(ctx, &m);
}

int worker_recv(const struct dr_worker_ctx *ctx, struct dr_msg *msg)
{
    for (;;) {
        ssize_t n = recv(ctx->chan_fd, msg, sizeof *msg, MSG_DONTWAIT);
        if (n == (ssize_t)sizeof *msg)
            return 1;
        if (n == 0)
            return -EPIPE;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n > 0)
            continue; /* short message: ignore it */
        return -errno;
    }
}

/* worker.c - the worker side of the supervisor channel (see worker.h).
 * Non-blocking SEQPACKET sends: a full channel drops the message, which is
 * fine because every message is an idempotent heartbeat or wake-up. */
#include "dripd/worker.h"

#include <errno.h>
#include <sys/socket.h>

int worker_send(const struct dr_worker_ctx *ctx, enum dr_msg_type type, uint64_t arg)
{
    struct dr_msg m = {.type = (uint32_t)type, .flags = 0, .arg = arg};
    for (;;) {
        ssize_t n = send(ctx->chan_fd, &m, sizeof m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == (ssize_t)sizeof m)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS))
            return -EAGAIN;
        return n < 0 ? -errno : -EIO;
    }
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

#include <poll.h>
#include <signal.h>
#include <string.h>

#include "dripd/config.h"

static volatile sig_atomic_t idle_stop;

static void idle_on_term(int sig)
{
    (void)sig;
    idle_stop = 1;
}

int worker_idle_loop(struct dr_worker_ctx *ctx)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = idle_on_term;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigset_t none, term;
    sigemptyset(&none);
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigaddset(&term, SIGINT);
    sigprocmask(SIG_BLOCK, &term, NULL);
    worker_send(ctx, DR_MSG_READY, 0);
    uint64_t iv = ctx->cfg->supervisor.heartbeat_interval;
    struct timespec ts = {.tv_sec = (time_t)(iv / 1000), .tv_nsec = (long)(iv % 1000) * 1000000};
    while (!idle_stop) {
        struct pollfd pfd = {.fd = ctx->chan_fd, .events = POLLIN};
        int n = ppoll(&pfd, 1, &ts, &none); /* signals are delivered only here */
        if (n > 0) {
            struct dr_msg m;
            int r;
            while ((r = worker_recv(ctx, &m)) == 1)
                ;
            if (r < 0)
                return 0; /* supervisor gone */
        }
        worker_send(ctx, DR_MSG_HEARTBEAT, 0);
    }
    return 0;
}

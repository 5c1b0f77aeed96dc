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

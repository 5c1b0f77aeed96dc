/* decode_main.c - the dripd-decode helper program (bin/dripd-decode).
 *
 * Started by the pipeline worker (decode.c) with posix_spawn as a zygote
 * (`dripd-decode --zygote`), never by hand: exec'd once, its libraries
 * (libvips, glib, FFmpeg, libmagic... ~170 shared objects) loaded and
 * relocated once, single-threaded, it reads nothing but its control
 * socket and makes one child per file (zygote() below: clone with
 * CLONE_PARENT, so the child is the pipeline worker's own child, which
 * waits for it, times it out and reads its CPU and peak RSS). Each child
 * is a helper for one file, as an exec'd one was. It finds its file descriptors in place (see
 * decode_proto.h: 3 the request/response socket, 4 the input, 5.. the
 * variant outputs), closes every other one, reads the request, loads the
 * libraries (decoder_open: everything read from disk is read now), enters
 * the sandbox (sandbox.h: RLIMIT_AS, RLIMIT_CPU, seccomp), and only then
 * reads the first byte of the file. It answers with one response message
 * and exits 0; exit 2 means it could not even read its request. A crash,
 * a forbidden system call (SIGSYS) or a limit ends it by a signal: the
 * parent reports that as the variants' failure.
 *
 * Test hooks (request flags, set by processing.test_decoder): try a
 * forbidden system call, crash inside the decoder, hang, or allocate
 * beyond the memory limit, all after the sandbox is up.
 *
 * A forked child shares the zygote's address-space layout (ASLR) and stack
 * canary with its siblings, where an exec per file drew new ones: the
 * pipeline replaces the zygote after DECODE_ZYGOTE_FORKS children
 * (decode.c), which bounds how many files one layout serves.
 *
 * Threads: main; libvips's workers (after the sandbox, so they inherit it).
 * The zygote has one thread (it may fork).
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "dripd/decode_proto.h"
#include "decoder.h"
#include "sandbox.h"
#include "dripd/util.h"

#define MAX_OUTPUT (256ull << 20) /* bytes a variant may have (RLIMIT_FSIZE) */

static void answer(const struct decode_resp *resp)
{
    uint8_t buf[DECODE_MSG_MAX];
    int n = decode_resp_encode(resp, buf, sizeof buf);
    if (n < 0 || send(DECODE_FD_CHAN, buf, (size_t)n, MSG_NOSIGNAL) != n)
        _exit(3);
}

static void fail_all(struct decode_resp *resp, const struct decode_req *req, int rc,
                     const char *why)
{
    memset(resp, 0, sizeof *resp);
    resp->status = rc;
    snprintf(resp->reason, sizeof resp->reason, "%s", why);
    resp->n_variants = req->n_variants;
    for (uint32_t i = 0; i < req->n_variants; i++) {
        resp->v[i].status = rc;
        snprintf(resp->v[i].reason, sizeof resp->v[i].reason, "%s", why);
    }
    snprintf(resp->mime, sizeof resp->mime, "application/octet-stream");
}

static void test_hooks(const struct decode_req *req, struct decode_resp *resp)
{
    if (req->flags & DECODE_F_TEST_SOCKET) {
        int s = socket(AF_INET, SOCK_STREAM, 0); /* the sandbox kills us here */
        close(s);
    }
    if (req->flags & DECODE_F_TEST_OPEN) {
        int fd = open("/etc/passwd", O_RDONLY); /* refused: EACCES */
        if (fd >= 0)
            abort();
        char why[DECODE_REASON_LEN];
        snprintf(why, sizeof why, "test hook: open /etc/passwd: %s", strerror(errno));
        fail_all(resp, req, -EACCES, why);
        answer(resp);
        _exit(0);
    }
    if (req->flags & DECODE_F_TEST_HANG)
        for (;;) {
            struct timespec ts = {1, 0};
            nanosleep(&ts, NULL);
        }
    if (req->flags & DECODE_F_TEST_ALLOC) {
        size_t big = (size_t)2 << 30;
        char *p = malloc(big);
        if (p == NULL) {
            fail_all(resp, req, -ENOMEM, "cannot allocate 2 GiB: over the memory limit");
            answer(resp);
            _exit(0);
        }
        memset(p, 1, big);
        free(p);
    }
}

/* Place the n descriptors fds[k] at DECODE_FD_CHAN + slot[k] (targets
 * may collide with the fds themselves: each goes above first). */
static int place_fds(const int *fds, const uint8_t *slot, uint32_t n)
{
    int hi[DECODE_FORK_MAX_FDS];
    for (uint32_t k = 0; k < n; k++) {
        if ((hi[k] = fcntl(fds[k], F_DUPFD, 64)) < 0)
            return -1;
        close(fds[k]);
    }
    for (uint32_t k = 0; k < n; k++) {
        if (dup2(hi[k], DECODE_FD_CHAN + slot[k]) < 0)
            return -1;
        close(hi[k]);
    }
    return 0;
}

/* The zygote's loop: one child per request, its pid answered. Returns
 * only in a child, with its descriptors in place (the control socket
 * closed); the zygote itself exits when the pipeline closes the socket. */
static void zygote(void)
{
    prctl(PR_SET_NAME, "dripd-zygote", 0, 0, 0);
    pid_t parent = getppid();
    int ctl = fcntl(DECODE_FD_CHAN, F_DUPFD_CLOEXEC, 100);
    if (ctl < 0)
        _exit(2);
    close(DECODE_FD_CHAN);
    for (;;) {
        struct decode_fork_req fr;
        union {
            char buf[CMSG_SPACE(sizeof(int) * DECODE_FORK_MAX_FDS)];
            struct cmsghdr align;
        } cm;
        struct iovec iov = {.iov_base = &fr, .iov_len = sizeof fr};
        struct msghdr mh = {.msg_iov = &iov,
                            .msg_iovlen = 1,
                            .msg_control = cm.buf,
                            .msg_controllen = sizeof cm.buf};
        ssize_t got = recvmsg(ctl, &mh, MSG_CMSG_CLOEXEC);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            _exit(0); /* the pipeline closed it (or died) */
        int fds[DECODE_FORK_MAX_FDS];
        uint32_t nfd = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                for (size_t off = 0; off + sizeof(int) <= c->cmsg_len - CMSG_LEN(0);
                     off += sizeof(int))
                    if (nfd < DECODE_FORK_MAX_FDS)
                        memcpy(&fds[nfd++], CMSG_DATA(c) + off, sizeof(int));
        int32_t ans = 0;
        uint32_t seen = 0;
        if ((size_t)got != sizeof fr || fr.magic != DECODE_FORK_MAGIC || fr.n != nfd ||
            (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
            ans = -EINVAL;
        for (uint32_t k = 0; ans == 0 && k < nfd; k++) {
            if (fr.slot[k] >= DECODE_FORK_MAX_FDS || (seen & (1u << fr.slot[k])))
                ans = -EINVAL;
            else
                seen |= 1u << fr.slot[k];
        }
        if (ans == 0) {
            /* fork, the child a sibling of the zygote: the pipeline worker
             * reaps it (glibc's fork takes no flags) */
            long pid =
                syscall(SYS_clone, (unsigned long)(CLONE_PARENT | SIGCHLD), 0, NULL, NULL, 0);
            if (pid == 0) {
                close(ctl);
                prctl(PR_SET_NAME, "dripd-decode", 0, 0, 0);
                prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
                if (getppid() != parent || place_fds(fds, fr.slot, nfd) != 0)
                    _exit(2);
                return;
            }
            ans = pid < 0 ? -errno : (int32_t)pid;
        }
        for (uint32_t k = 0; k < nfd; k++)
            close(fds[k]);
        if (send(ctl, &ans, sizeof ans, MSG_NOSIGNAL) != (ssize_t)sizeof ans)
            _exit(0);
    }
}

int main(int argc, char **argv)
{
    /* One malloc arena: glibc reads /proc/sys/vm/overcommit_memory the
     * first time it shrinks a thread's arena, and the sandbox forbids
     * opening files. */
    mallopt(M_ARENA_MAX, 1);
    prctl(PR_SET_NAME, "dripd-decode", 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    int type = 0;
    socklen_t tl = sizeof type;
    bool is_zygote = argc == 2 && strcmp(argv[1], "--zygote") == 0;
    if ((argc != 1 && !is_zygote) ||
        getsockopt(DECODE_FD_CHAN, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
        type != SOCK_SEQPACKET) {
        fprintf(stderr, "dripd-decode: the decoding helper of dripd-pipeline; it is started by "
                        "dripd, not by hand\n");
        return 2;
    }
    if (is_zygote)
        zygote(); /* returns in a child, one per file */
    /* fds 0-2 stay (stderr is the daemon's log); 3, 4 and the outputs; no
     * other descriptor of the pipeline worker may leak in */
    close_range(DECODE_FD_OUT0 + DECODE_MAX_VARIANTS + 1, ~0u, 0);

    uint8_t buf[DECODE_MSG_MAX + 1];
    ssize_t n = recv(DECODE_FD_CHAN, buf, sizeof buf, 0);
    struct decode_req req;
    if (n <= 0 || n > DECODE_MSG_MAX || decode_req_parse(buf, (size_t)n, &req) != 0)
        return 2;
    if (req.flags & DECODE_F_TEST_SEGV) {
        /* the hook's SIGSEGV must kill a sanitized helper as it kills a
         * plain one: the default action, past the sanitizer's handler
         * (whose sigaction interceptor would keep it) */
        struct {
            void *handler;
            unsigned long flags;
            void *restorer;
            uint64_t mask;
        } dfl = {0};
        syscall(SYS_rt_sigaction, SIGSEGV, &dfl, NULL, sizeof dfl.mask);
    }
    int out_fds[DECODE_MAX_VARIANTS + 1];
    for (uint32_t i = 0; i < req.n_variants + ((req.flags & DECODE_F_STRIP) ? 1 : 0); i++) {
        int fd = DECODE_FD_OUT0 + (int)i;
        out_fds[i] = fcntl(fd, F_GETFD) >= 0 ? fd : -1;
    }

    struct decode_resp resp;
    char err[DECODE_REASON_LEN] = "";
    if (decoder_open(req.flags, err, sizeof err) != 0) {
        fail_all(&resp, &req, -EIO, err);
        answer(&resp);
        return 0;
    }
    if (sandbox_enter(req.memory, req.timeout_ms, MAX_OUTPUT, err, sizeof err) != 0) {
        fail_all(&resp, &req, -EPERM, err);
        answer(&resp);
        return 0;
    }
    test_hooks(&req, &resp);
    decoder_run(&req, DECODE_FD_INPUT, out_fds, &resp);
    if (req.flags & DECODE_F_TEST_SEGV)
        raise(SIGSEGV); /* files the decoder did not crash on (not an image or a video) */
    answer(&resp);
    _exit(0); /* no library teardown: the process ends here */
}

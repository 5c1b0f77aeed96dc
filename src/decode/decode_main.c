/* decode_main.c - the dripd-decode helper program (bin/dripd-decode).
 *
 * Started by the pipeline worker (decode.c) with posix_spawn, one helper
 * per file, never by hand. It finds its file descriptors in place (see
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
 * Threads: main; libvips's workers (after the sandbox, so they inherit it).
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

int main(int argc, char **argv)
{
    (void)argv;
    /* One malloc arena: glibc reads /proc/sys/vm/overcommit_memory the
     * first time it shrinks a thread's arena, and the sandbox forbids
     * opening files. */
    mallopt(M_ARENA_MAX, 1);
    prctl(PR_SET_NAME, "dripd-decode", 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    int type = 0;
    socklen_t tl = sizeof type;
    if (argc != 1 || getsockopt(DECODE_FD_CHAN, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
        type != SOCK_SEQPACKET) {
        fprintf(stderr, "dripd-decode: the decoding helper of dripd-pipeline; it is started by "
                        "dripd, not by hand\n");
        return 2;
    }
    /* fds 0-2 stay (stderr is the daemon's log); 3, 4 and the outputs; no
     * other descriptor of the pipeline worker may leak in */
    close_range(DECODE_FD_OUT0 + DECODE_MAX_VARIANTS + 1, ~0u, 0);

    uint8_t buf[DECODE_MSG_MAX + 1];
    ssize_t n = recv(DECODE_FD_CHAN, buf, sizeof buf, 0);
    struct decode_req req;
    if (n <= 0 || n > DECODE_MSG_MAX || decode_req_parse(buf, (size_t)n, &req) != 0)
        return 2;
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

/* decode.c - the pipeline side of a dripd-decode helper (decode.h).
 *
 * decode_run(): socketpair(SOCK_SEQPACKET) for the one request and the one
 * response; the input and output fds are first duplicated above fd 63
 * (so the dup2s into 3, 4, 5.. at spawn cannot clobber each other), then
 * posix_spawn runs the helper with file actions that dup2 them into place
 * and close every other descriptor (posix_spawn_file_actions_addclosefrom_np),
 * with a minimal environment. posix_spawn is vfork+exec: the threaded
 * worker is never forked into a copy that runs code.
 *
 * The wait: poll the socket until the response or EOF, then until EOF
 * (the helper's exit closes its end), all within one deadline; past it
 * the helper is SIGKILLed. Then wait4(pid) (its peak RSS goes into the
 * response) (this thread reaps its own
 * child; the pipeline process has no SIGCHLD handler). A response counts
 * only when the helper also exited 0.
 *
 * Threads: any stage thread; nothing shared but the helper path.
 */
#include "dripd/decode.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dripd/util.h"

#define HIGH_FD 64

int decode_probe(const uint8_t *b, size_t len)
{
#define AT(off, s) (len >= (off) + sizeof(s) - 1 && memcmp(b + (off), s, sizeof(s) - 1) == 0)
    if (AT(0, "\xff\xd8\xff") || AT(0, "\x89PNG\r\n\x1a\n") || AT(0, "GIF87a") || AT(0, "GIF89a") ||
        (AT(0, "RIFF") && AT(8, "WEBP")) || AT(0, "II*\0") || AT(0, "MM\0*"))
        return DECODE_KIND_IMAGE;
    if (AT(4, "ftyp")) { /* ISO BMFF: HEIF/AVIF images, MP4/MOV/3GP video, M4A audio */
        if (AT(8, "heic") || AT(8, "heix") || AT(8, "hevc") || AT(8, "heim") || AT(8, "heis") ||
            AT(8, "mif1") || AT(8, "msf1") || AT(8, "avif") || AT(8, "avis"))
            return DECODE_KIND_IMAGE;
        if (AT(8, "M4A ") || AT(8, "M4B "))
            return DECODE_KIND_AUDIO;
        return DECODE_KIND_VIDEO;
    }
    if (AT(0, "%PDF-"))
        return DECODE_KIND_PDF;
    if (AT(0, "\x1a\x45\xdf\xa3") || (AT(0, "RIFF") && AT(8, "AVI ")) || AT(0, "FLV") ||
        AT(0, "\x00\x00\x01\xba") || (len >= 189 && b[0] == 0x47 && b[188] == 0x47))
        return DECODE_KIND_VIDEO; /* Matroska/WebM, AVI, FLV, MPEG-PS, MPEG-TS */
    if (AT(0, "ID3") || AT(0, "fLaC") || AT(0, "OggS") || (AT(0, "RIFF") && AT(8, "WAVE")) ||
        (len >= 2 && b[0] == 0xff && (b[1] & 0xf6) == 0xf0) /* AAC ADTS */ ||
        (len >= 2 && b[0] == 0xff && (b[1] & 0xe0) == 0xe0 && (b[1] & 0x06) != 0)) /* MPEG audio */
        return DECODE_KIND_AUDIO;
    return DECODE_KIND_OTHER;
#undef AT
}

static char helper_buf[PATH_MAX];
static pthread_once_t helper_once = PTHREAD_ONCE_INIT;

static void find_helper(void)
{
    const char *env = getenv("DRIPD_DECODE_BIN");
    if (env && *env) {
        snprintf(helper_buf, sizeof helper_buf, "%s", env);
        return;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash == NULL)
        return;
    *slash = '\0';
    const char *base = slash + 1;
    const char *suffix = strncmp(base, "dripd", 5) == 0 ? base + 5 : "";
    /* a ThreadSanitizer dripd runs the plain helper: the helper's own code
     * is single-threaded, and TSan cannot see the locks of the
     * uninstrumented libvips and glib it reports races in */
    if (strncmp(suffix, "-decode", 7) == 0 || strncmp(suffix, "ctl", 3) == 0 ||
        strcmp(suffix, "-thread") == 0)
        suffix = "";
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/dripd-decode%s", self, suffix) < (int)sizeof path &&
        access(path, X_OK) == 0)
        snprintf(helper_buf, sizeof helper_buf, "%s", path);
    else if (snprintf(path, sizeof path, "%s/dripd-decode", self) < (int)sizeof path &&
             access(path, X_OK) == 0)
        snprintf(helper_buf, sizeof helper_buf, "%s", path);
}

const char *decode_helper_path(void)
{
    pthread_once(&helper_once, find_helper);
    return helper_buf[0] ? helper_buf : NULL;
}

/* What the helper may see of the environment: sanitizer and valgrind
 * settings and the helper's own switches. */
static const char *const env_pass[] = {"ASAN_OPTIONS=",
                                       "UBSAN_OPTIONS=",
                                       "TSAN_OPTIONS=",
                                       "LSAN_OPTIONS=",
                                       "DRIPD_DECODE_NO_RLIMIT_AS=",
                                       "DRIPD_DECODE_SECCOMP_TRAP=",
                                       "LD_PRELOAD="};

static int build_env(char **envp, int cap, bool injected_segv)
{
    extern char **environ;
    int n = 0;
    envp[n++] = "PATH=/usr/bin:/bin";
    envp[n++] = "LC_ALL=C";
    /* the test hook's SIGSEGV must kill a sanitized helper as it kills a
     * plain one (ASan would catch it, report and exit 1) */
    if (injected_segv)
        envp[n++] = "ASAN_OPTIONS=handle_segv=0";
    for (char **e = environ; e && *e && n < cap - 1; e++)
        for (size_t i = 0; i < DR_ARRAY_LEN(env_pass); i++)
            if (strncmp(*e, env_pass[i], strlen(env_pass[i])) == 0 && !(injected_segv && i == 0))
                envp[n++] = *e;
    envp[n] = NULL;
    return n;
}

static const char *sig_text(int sig)
{
    switch (sig) {
    case SIGSYS:
        return "by the sandbox (SIGSYS: a forbidden system call)";
    case SIGSEGV:
        return "by SIGSEGV (a crash in the decoder)";
    case SIGBUS:
        return "by SIGBUS";
    case SIGABRT:
        return "by SIGABRT (the decoder aborted, e.g. out of memory)";
    case SIGXCPU:
        return "by SIGXCPU (over its CPU time limit)";
    case SIGXFSZ:
        return "by SIGXFSZ (an output over its size limit)";
    case SIGKILL:
        return "by SIGKILL";
    default:
        return NULL;
    }
}

/* Wait for fd to become readable or hang up, until deadline (mono ms).
 * 1 ready, 0 timed out, -errno. */
static int wait_fd(int fd, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - dr_mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, (int)DR_MIN(left, 60000));
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

int decode_run(const char *helper, const struct decode_req *req, int input_fd, const int *out_fds,
               struct decode_resp *resp, char *err, size_t errlen)
{
    int sv[2] = {-1, -1};
    int hi[3 + DECODE_MAX_VARIANTS];
    int n_hi = 0;
    pid_t pid = -1;
    int rc = 0;
    posix_spawn_file_actions_t fa;
    bool fa_init = false;
    uint8_t buf[DECODE_MSG_MAX + 1];
    uint64_t rss = 0, wall = 0, cpu = 0;

    memset(resp, 0, sizeof *resp);
    /* the loadable libvips modules this file may need, by its signature
     * (the helper opens them before its sandbox, and never reads the file
     * before it): each costs ~10-20 ms of CPU per helper */
    struct decode_req rq = *req;
    uint8_t head[16];
    ssize_t got = dr_pread_full(input_fd, head, sizeof head, 0);
    if (got >= 12 && memcmp(head + 4, "ftyp", 4) == 0)
        rq.flags |= DECODE_F_MOD_HEIF; /* HEIC/AVIF, or a video (no harm) */
    else if (got >= 5 && memcmp(head, "%PDF-", 5) == 0)
        rq.flags |= DECODE_F_MOD_PDF;
    req = &rq;
    if (helper == NULL || access(helper, X_OK) != 0) {
        dr_set_err(err, errlen, "the decoding helper dripd-decode is missing (%s)",
                   helper ? helper : "not found beside dripd");
        return -ENOENT;
    }
    int len = decode_req_encode(req, buf, sizeof buf);
    if (len < 0) {
        dr_set_err(err, errlen, "bad decode request");
        return -EINVAL;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        rc = -errno;
        dr_set_err(err, errlen, "socketpair: %s", strerror(errno));
        return rc;
    }
    /* every fd the child gets, above the targets first */
    int srcs[3 + DECODE_MAX_VARIANTS];
    int n_src = 0;
    srcs[n_src++] = sv[1];
    srcs[n_src++] = input_fd;
    for (uint32_t i = 0; i < req->n_variants + ((req->flags & DECODE_F_STRIP) ? 1u : 0u); i++)
        srcs[n_src++] = out_fds[i];
    for (int i = 0; i < n_src; i++) {
        if (srcs[i] < 0) {
            hi[n_hi++] = -1;
            continue;
        }
        int d = fcntl(srcs[i], F_DUPFD_CLOEXEC, HIGH_FD);
        if (d < 0) {
            rc = -errno;
            dr_set_err(err, errlen, "dup: %s", strerror(errno));
            goto out;
        }
        hi[n_hi++] = d;
    }
    close(sv[1]);
    sv[1] = -1;
    posix_spawn_file_actions_init(&fa);
    fa_init = true;
    for (int i = 0; i < n_hi; i++)
        if (hi[i] >= 0)
            posix_spawn_file_actions_adddup2(&fa, hi[i], DECODE_FD_CHAN + i);
    posix_spawn_file_actions_addclosefrom_np(&fa, DECODE_FD_CHAN + n_hi);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *envp[16];
    build_env(envp, (int)DR_ARRAY_LEN(envp), (req->flags & DECODE_F_TEST_SEGV) != 0);
    char *argv[] = {"dripd-decode", NULL};
    int64_t started = dr_mono_ms();
    int e = posix_spawn(&pid, helper, &fa, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    for (int i = 0; i < n_hi; i++)
        if (hi[i] >= 0)
            close(hi[i]);
    n_hi = 0;
    if (e != 0) {
        pid = -1;
        rc = -e;
        dr_set_err(err, errlen, "cannot start %s: %s", helper, strerror(e));
        goto out;
    }

    int64_t deadline = started + (req->timeout_ms ? req->timeout_ms : 30000);
    if (send(sv[0], buf, (size_t)len, MSG_NOSIGNAL) != len) {
        /* it died at once; its exit status says why */
    }
    bool answered = false, timed_out = false;
    int w = wait_fd(sv[0], deadline);
    if (w == 1) {
        ssize_t n = recv(sv[0], buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            answered = n <= DECODE_MSG_MAX && decode_resp_parse(buf, (size_t)n, resp) == 0;
            if (!answered) {
                rc = -EPROTO;
                dr_set_err(err, errlen, "the decoder sent a malformed answer");
            }
            w = wait_fd(sv[0], deadline); /* until it exits (EOF) */
        }
    }
    if (w == 0) {
        timed_out = true;
        kill(pid, SIGKILL);
    }
    int st = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR)
        ;
    pid = -1;
    rss = (uint64_t)ru.ru_maxrss;
    cpu = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
          (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
    wall = (uint64_t)(dr_mono_ms() - started);
    if (timed_out) {
        rc = -ETIMEDOUT;
        dr_set_err(err, errlen, "the decoder took longer than processing.limits.timeout (%u ms)",
                   (unsigned)req->timeout_ms);
    } else if (WIFSIGNALED(st)) {
        const char *why = sig_text(WTERMSIG(st));
        rc = -ECHILD;
        if (why)
            dr_set_err(err, errlen, "decoder killed %s", why);
        else
            dr_set_err(err, errlen, "decoder killed by signal %d", WTERMSIG(st));
    } else if (WEXITSTATUS(st) != 0) {
        rc = -ECHILD;
        dr_set_err(err, errlen, "decoder exited with status %d", WEXITSTATUS(st));
    } else if (!answered) {
        if (rc != -EPROTO)
            dr_set_err(err, errlen, "the decoder exited without an answer");
        rc = -EPROTO;
    } else if (resp->n_variants != req->n_variants) {
        rc = -EPROTO;
        dr_set_err(err, errlen, "the decoder answered for %u variants, not %u",
                   (unsigned)resp->n_variants, (unsigned)req->n_variants);
    } else {
        rc = 0;
    }
out:
    if (fa_init)
        posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < n_hi; i++)
        if (hi[i] >= 0)
            close(hi[i]);
    if (sv[0] >= 0)
        close(sv[0]);
    if (sv[1] >= 0)
        close(sv[1]);
    if (rc != 0)
        memset(resp, 0, sizeof *resp);
    resp->peak_rss_kib = rss;
    resp->wall_ms = wall;
    resp->cpu_ms = cpu;
    return rc;
}

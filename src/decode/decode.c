/* decode.c - the pipeline side of a dripd-decode helper (decode.h).
 *
 * The zygote: `dripd-decode --zygote`, started with posix_spawn (vfork +
 * exec: the threaded worker is never forked into a copy that runs code)
 * with its control socket at fd 3, a minimal environment and every other
 * descriptor closed. It loads the decoders' ~170 shared libraries once
 * (~60 ms of CPU that an exec per file paid for every photo) and makes
 * one child per file (decode_main.c). It is started and reaped by a
 * keeper thread of its own (zygote_keeper), because a child's parent
 * death signal follows the thread that started the zygote: a stage or
 * reprocess thread that ends must not take the helpers of the others
 * with it. After DECODE_ZYGOTE_FORKS children, or when it fails, it is
 * replaced (a fresh exec: a new address-space layout).
 *
 * decode_run(): socketpair(SOCK_SEQPACKET) for the one request and the one
 * response; the zygote gets that socket's other end, the input and the
 * output fds (SCM_RIGHTS, with the slot each takes: 3, 4, 5..) and answers
 * the child's pid; the child is this process's own (CLONE_PARENT).
 *
 * The wait: poll the socket until the response or EOF, then until EOF
 * (the helper's exit closes its end), all within one deadline; past it
 * the helper is SIGKILLed. Then wait4(pid) (its peak RSS and CPU time go
 * into the response) (this thread reaps its own helper; the pipeline
 * process has no SIGCHLD handler and never waits for any child). A
 * response counts only when the helper also exited 0.
 *
 * Threads: any stage thread; the zygote's control socket under zy.mu; the
 * keeper thread.
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
#define DECODE_ZYGOTE_FORKS 256 /* children per zygote (one address-space layout) */
#define ZYGOTE_ANSWER_MS 10000  /* for the zygote's pid answer */

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

static int build_env(char **envp, int cap)
{
    extern char **environ;
    int n = 0;
    envp[n++] = "PATH=/usr/bin:/bin";
    envp[n++] = "LC_ALL=C";
    for (char **e = environ; e && *e && n < cap - 1; e++)
        for (size_t i = 0; i < DR_ARRAY_LEN(env_pass); i++)
            if (strncmp(*e, env_pass[i], strlen(env_pass[i])) == 0)
                envp[n++] = *e;
    envp[n] = NULL;
    return n;
}

static int wait_fd(int fd, int64_t deadline);

/* ---- the zygote ---- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool keeper;         /* the keeper thread runs */
    bool want;           /* a start is asked of the keeper */
    uint64_t starts;     /* start attempts the keeper finished */
    int start_err;       /* of the last one: 0 or -errno */
    pid_t pid;           /* the running zygote, 0: none */
    int ctl;             /* its control socket, -1: none */
    unsigned forks;      /* children it made */
    char path[PATH_MAX]; /* of the running one, or of the one to start */
} zy = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, false, 0, 0, 0, -1, 0, ""};

/* posix_spawn `path --zygote` with the control socket at fd 3. */
static int zygote_spawn(const char *path, pid_t *pid, int *ctl)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return -errno;
    int hi = fcntl(sv[1], F_DUPFD_CLOEXEC, HIGH_FD);
    close(sv[1]);
    if (hi < 0) {
        int e = errno;
        close(sv[0]);
        return -e;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, hi, DECODE_FD_CHAN);
    posix_spawn_file_actions_addclosefrom_np(&fa, DECODE_FD_CHAN + 1);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    char *envp[16];
    build_env(envp, (int)DR_ARRAY_LEN(envp));
    char *argv[] = {"dripd-decode", "--zygote", NULL};
    int e = posix_spawn(pid, path, &fa, &attr, argv, envp);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    close(hi);
    if (e != 0) {
        close(sv[0]);
        return -e;
    }
    *ctl = sv[0];
    return 0;
}

/* Starts a zygote when asked (zy.want) and reaps it when it ends: the
 * zygote and, through CLONE_PARENT, every helper are children of this
 * thread, which never exits (their PR_SET_PDEATHSIG follows it). */
static void *zygote_keeper(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&zy.mu);
    for (;;) {
        while (!zy.want)
            pthread_cond_wait(&zy.cv, &zy.mu);
        zy.want = false;
        pid_t pid = 0;
        int ctl = -1;
        zy.start_err = zygote_spawn(zy.path, &pid, &ctl);
        zy.starts++;
        if (zy.start_err == 0) {
            zy.pid = pid;
            zy.ctl = ctl;
            zy.forks = 0;
        }
        pthread_cond_broadcast(&zy.cv);
        if (zy.start_err != 0)
            continue;
        pthread_mutex_unlock(&zy.mu);
        /* wait without reaping: its pid stays its own (a zombie) until
         * zy.pid no longer names it, so a kill() under zy.mu never hits a
         * reused pid */
        siginfo_t si;
        while (waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT) != 0 && errno == EINTR)
            ;
        pthread_mutex_lock(&zy.mu);
        if (zy.pid == pid) { /* it ended on its own */
            close(zy.ctl);
            zy.ctl = -1;
            zy.pid = 0;
        }
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    return NULL;
}

/* Under zy.mu: stop using the running zygote (the keeper reaps it). */
static void zygote_retire(void)
{
    if (zy.pid == 0)
        return;
    kill(zy.pid, SIGKILL);
    close(zy.ctl);
    zy.ctl = -1;
    zy.pid = 0;
}

/* Under zy.mu: a running zygote of path, or -errno. */
static int zygote_get(const char *path)
{
    if (!zy.keeper) {
        pthread_t t;
        int rc = dr_thread_start(&t, zygote_keeper, NULL);
        if (rc != 0)
            return rc;
        pthread_detach(t);
        zy.keeper = true;
    }
    if (zy.pid != 0 && (strcmp(zy.path, path) != 0 || zy.forks >= DECODE_ZYGOTE_FORKS))
        zygote_retire();
    if (zy.pid != 0)
        return 0;
    snprintf(zy.path, sizeof zy.path, "%s", path);
    uint64_t asked = zy.starts;
    zy.want = true;
    pthread_cond_broadcast(&zy.cv);
    while (zy.starts == asked)
        pthread_cond_wait(&zy.cv, &zy.mu);
    return zy.pid != 0 ? 0 : (zy.start_err ? zy.start_err : -ECHILD);
}

/* One request to a running zygote (under zy.mu): the child's pid, or
 * -errno (the zygote is then retired). */
static pid_t zygote_ask(const int *fds, const uint8_t *slot, uint32_t n)
{
    struct decode_fork_req fr = {.magic = DECODE_FORK_MAGIC, .n = n};
    memcpy(fr.slot, slot, n);
    union {
        char buf[CMSG_SPACE(sizeof(int) * DECODE_FORK_MAX_FDS)];
        struct cmsghdr align;
    } cm;
    memset(&cm, 0, sizeof cm);
    struct iovec iov = {.iov_base = &fr, .iov_len = sizeof fr};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = cm.buf,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    int32_t ans = -EPROTO;
    ssize_t w;
    while ((w = sendmsg(zy.ctl, &mh, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (w == (ssize_t)sizeof fr) {
        int r = wait_fd(zy.ctl, dr_mono_ms() + ZYGOTE_ANSWER_MS);
        if (r == 1 && recv(zy.ctl, &ans, sizeof ans, MSG_DONTWAIT) != (ssize_t)sizeof ans)
            ans = -EPROTO;
        else if (r != 1)
            ans = r == 0 ? -ETIMEDOUT : r;
    } else {
        ans = w < 0 ? -errno : -EPROTO;
    }
    if (ans > 0)
        zy.forks++;
    else
        zygote_retire();
    return ans;
}

/* A helper for one file: a child of this process with fds[k] at fd
 * DECODE_FD_CHAN + slot[k]; its pid, or -errno + err. A zygote that
 * fails is replaced once. */
static pid_t zygote_fork(const char *path, const int *fds, const uint8_t *slot, uint32_t n,
                         char *err, size_t errlen)
{
    pid_t pid = -EPROTO;
    pthread_mutex_lock(&zy.mu);
    for (int attempt = 0; attempt < 2 && pid < 0; attempt++) {
        int rc = zygote_get(path);
        if (rc != 0) {
            pthread_mutex_unlock(&zy.mu);
            dr_set_err(err, errlen, "cannot start %s: %s", path, strerror(-rc));
            return rc;
        }
        pid = zygote_ask(fds, slot, n);
    }
    pthread_mutex_unlock(&zy.mu);
    if (pid < 0)
        dr_set_err(err, errlen, "%s made no helper: %s", path, strerror(-pid));
    return pid;
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
    pid_t pid;
    int rc = 0;
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
    /* every fd the child gets, and the slot it takes (3 + slot) */
    int fds[DECODE_FORK_MAX_FDS];
    uint8_t slot[DECODE_FORK_MAX_FDS];
    uint32_t n_fd = 0;
    fds[n_fd] = sv[1], slot[n_fd++] = 0;
    fds[n_fd] = input_fd, slot[n_fd++] = 1;
    for (uint32_t i = 0; i < req->n_variants + ((req->flags & DECODE_F_STRIP) ? 1u : 0u); i++)
        if (out_fds[i] >= 0)
            fds[n_fd] = out_fds[i], slot[n_fd++] = (uint8_t)(2 + i);
    int64_t started = dr_mono_ms();
    pid = zygote_fork(helper, fds, slot, n_fd, err, errlen);
    close(sv[1]);
    sv[1] = -1;
    if (pid < 0) {
        rc = pid;
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

/* sandbox.c - resource limits and the seccomp filter of a dripd-decode
 * helper (sandbox.h).
 *
 * The filter is an allow list (libseccomp); the default action is
 * SCMP_ACT_KILL_PROCESS, so a decoder taken over by a hostile file can
 * read its input, write its outputs and its one response, allocate memory
 * and run threads, and nothing else: socket, connect, exec, fork,
 * ptrace, kill of another process, ioctl... end the helper with SIGSYS,
 * which the parent reports as "killed by the sandbox". Opening a file
 * (open, openat) fails with EACCES instead: a library that probes for an
 * optional data file (poppler's encodings, fontconfig) copes, and the
 * helper still reads nothing but its input. Arguments are checked where it
 * matters:
 *   - mmap/mprotect never with PROT_EXEC (no code generated at run time:
 *     libvips's orc is off, see decoder.c), answered EPERM;
 *   - clone only for threads (CLONE_THREAD), never a new process; clone3
 *     answers ENOSYS so glibc falls back to clone;
 *   - newfstatat only on an fd (AT_EMPTY_PATH), never a path;
 *   - prctl only PR_SET_NAME (glib names its threads); ioctl only TCGETS
 *     (isatty, glib's logging);
 *   - tgkill/kill only to this process (abort()).
 * DRIPD_DECODE_SECCOMP_TRAP=1 (development only) makes a forbidden call
 * SIGSYS-trap with the syscall number printed, to find what a library
 * needs. Under valgrind (RUNNING_ON_VALGRIND, which is never true
 * otherwise) there is no filter, no RLIMIT_AS and no RLIMIT_NOFILE:
 * valgrind does not implement seccomp(2), maps its tool into the address
 * space and refuses a lower descriptor limit; the other limits stay.
 *
 * Threads: sandbox_enter runs on the helper's only thread.
 */
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#include "dripd/decode_proto.h"
#include "dripd/util.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static int set_limit(int res, rlim_t v)
{
    struct rlimit rl = {v, v};
    return setrlimit(res, &rl) == 0 ? 0 : -errno;
}

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)uc;
    char msg[80];
    int n = snprintf(msg, sizeof msg, "dripd-decode: forbidden syscall %d\n", si->si_syscall);
    if (write(2, msg, (size_t)n) < 0)
        _exit(98);
    _exit(98);
}

/* Calls allowed as they are. */
static const int plain[] = {
    SCMP_SYS(read),
    SCMP_SYS(pread64),
    SCMP_SYS(readv),
    SCMP_SYS(write),
    SCMP_SYS(pwrite64),
    SCMP_SYS(writev),
    SCMP_SYS(lseek),
    SCMP_SYS(fstat),
    SCMP_SYS(close),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(brk),
    SCMP_SYS(madvise),
    SCMP_SYS(futex),
    SCMP_SYS(set_robust_list),
    SCMP_SYS(rseq),
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(sigaltstack),
    SCMP_SYS(gettid),
    SCMP_SYS(getpid),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
    SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(nanosleep),
    SCMP_SYS(gettimeofday),
    SCMP_SYS(getrandom),
    SCMP_SYS(sched_yield),
    SCMP_SYS(sched_getaffinity),
    SCMP_SYS(getrusage),
    SCMP_SYS(sendmsg),
    SCMP_SYS(sendto),
    SCMP_SYS(recvmsg),
    SCMP_SYS(recvfrom),
    SCMP_SYS(membarrier),
    SCMP_SYS(restart_syscall),
    SCMP_SYS(dup),
    SCMP_SYS(dup3),
    SCMP_SYS(fcntl),
    SCMP_SYS(getpeername),
};

static int build(scmp_filter_ctx ctx)
{
    int rc = 0;
    for (size_t i = 0; i < DR_ARRAY_LEN(plain) && rc == 0; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, plain[i], 0);
    /* memory: never executable */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mmap), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mprotect), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC));
    /* threads, never processes */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
    /* opening any file is refused (EACCES) rather than fatal: libraries
     * probe for data files (poppler, fontconfig) and cope without them */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(openat), 0);
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(open), 0);
    /* fstat(fd) is newfstatat(fd, "", AT_EMPTY_PATH) in glibc */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), 1,
                              SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH));
    /* isatty(2) (glib's logging) */
    if (rc == 0)
        rc =
            seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, TCGETS));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1,
                              SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
    /* abort(): signals to itself only */
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(tgkill), 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    if (rc == 0)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(kill), 1,
                              SCMP_A0(SCMP_CMP_EQ, (scmp_datum_t)getpid()));
    return rc;
}

int sandbox_enter(uint64_t memory, uint32_t timeout_ms, uint64_t max_output, char *err,
                  size_t errlen)
{
    int rc;
    const char *no_as = getenv("DRIPD_DECODE_NO_RLIMIT_AS");
    /* valgrind maps its own tools into the address space, and refuses a
     * lower RLIMIT_NOFILE (it keeps descriptors above the program's) */
    bool vg = RUNNING_ON_VALGRIND != 0;
    if (memory > 0 && !SANITIZED && !vg && !(no_as && strcmp(no_as, "1") == 0) &&
        (rc = set_limit(RLIMIT_AS, (rlim_t)memory)) != 0) {
        dr_set_err(err, errlen, "RLIMIT_AS: %s", strerror(-rc));
        return rc;
    }
    if (timeout_ms > 0 && (rc = set_limit(RLIMIT_CPU, (rlim_t)(timeout_ms / 1000 + 2))) != 0) {
        dr_set_err(err, errlen, "RLIMIT_CPU: %s", strerror(-rc));
        return rc;
    }
    if ((rc = set_limit(RLIMIT_FSIZE, (rlim_t)max_output)) != 0 ||
        (rc = set_limit(RLIMIT_CORE, 0)) != 0 ||
        (!vg && (rc = set_limit(RLIMIT_NOFILE, DECODE_FD_OUT0 + DECODE_MAX_VARIANTS + 8)) != 0)) {
        dr_set_err(err, errlen, "setrlimit: %s", strerror(-rc));
        return rc;
    }
    if (vg) /* valgrind cannot run seccomp(2) (nor emulate a filter) */
        return 0;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        dr_set_err(err, errlen, "PR_SET_NO_NEW_PRIVS: %s", strerror(errno));
        return -errno;
    }
    const char *trap = getenv("DRIPD_DECODE_SECCOMP_TRAP");
    bool trapping = trap && strcmp(trap, "1") == 0;
    if (trapping) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigsys;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSYS, &sa, NULL);
    }
    scmp_filter_ctx ctx = seccomp_init(trapping ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS);
    if (ctx == NULL) {
        dr_set_err(err, errlen, "seccomp_init failed");
        return -ENOMEM;
    }
    rc = build(ctx);
    if (rc == 0)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc != 0)
        dr_set_err(err, errlen, "seccomp: %s", strerror(-rc));
    return rc;
}

/* preload.c - LD_PRELOAD shim: a syncfs(2) (or sync(2)) that reaches a
 * lossyfs mount makes lossyfs's state durable, as it would on a real
 * file system.
 *
 * The kernel does not pass syncfs to an ordinary FUSE server (only
 * virtiofs gets FUSE_SYNCFS), so without this shim lossyfs would never
 * see dripd's spool batches become durable. After the real call succeeds,
 * if the fd is on the mount (same st_dev as $LOSSYFS_MOUNT), the shim
 * writes "sync REPLY" to lossyfs's control FIFO ($LOSSYFS_CONTROL) and
 * waits for the answer on REPLY, a FIFO of its own next to the control
 * FIFO; no answer within 60 s (lossyfs frozen or crashed) is EIO.
 *
 * Build: cc -D_GNU_SOURCE -fPIC -shared (the Makefile's lossyfs target).
 *
 * Threads: any; each call uses its own reply FIFO. Unset variables make
 * the shim a plain pass-through.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 60000

int syncfs(int fd);
void sync(void);

static int lossyfs_sync(void)
{
    const char *ctl = getenv("LOSSYFS_CONTROL");
    if (ctl == NULL || *ctl == '\0')
        return 0;
    static unsigned counter;
    char reply[PATH_MAX];
    snprintf(reply, sizeof reply, "%s.reply.%d.%ld.%u", ctl, (int)getpid(),
             (long)syscall(SYS_gettid), __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED));
    unlink(reply);
    if (mkfifo(reply, 0600) != 0)
        return -1;
    int rc = -1;
    /* O_RDWR: lossyfs's non-blocking open for writing finds a reader, and
     * we never see a hang-up before the answer */
    int rfd = open(reply, O_RDWR | O_NONBLOCK | O_CLOEXEC);
    int cfd = open(ctl, O_WRONLY | O_CLOEXEC);
    if (rfd >= 0 && cfd >= 0) {
        char cmd[PATH_MAX + 16];
        int len = snprintf(cmd, sizeof cmd, "sync %s\n", reply);
        if (len > 0 && write(cfd, cmd, (size_t)len) == len) {
            struct pollfd p = {.fd = rfd, .events = POLLIN};
            char ans[256];
            if (poll(&p, 1, WAIT_MS) == 1) {
                ssize_t n = read(rfd, ans, sizeof ans - 1);
                if (n > 0) {
                    ans[n] = '\0';
                    rc = strncmp(ans, "ok", 2) == 0 ? 0 : -1;
                }
            }
        }
    }
    if (cfd >= 0)
        close(cfd);
    if (rfd >= 0)
        close(rfd);
    unlink(reply);
    if (rc != 0)
        errno = EIO;
    return rc;
}

static int on_mount(int fd)
{
    const char *mnt = getenv("LOSSYFS_MOUNT");
    struct stat a, b;
    if (mnt == NULL || *mnt == '\0' || stat(mnt, &a) != 0)
        return 0;
    if (fd < 0)
        return 1; /* sync(2): every file system */
    return fstat(fd, &b) == 0 && a.st_dev == b.st_dev;
}

int syncfs(int fd)
{
    static int (*real)(int);
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "syncfs"); /* POSIX's way around -Wpedantic */
    int rc = real ? real(fd) : (int)syscall(SYS_syncfs, fd);
    if (rc == 0 && on_mount(fd))
        rc = lossyfs_sync();
    return rc;
}

void sync(void)
{
    static void (*real)(void);
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "sync");
    if (real)
        real();
    if (on_mount(-1))
        (void)lossyfs_sync();
}

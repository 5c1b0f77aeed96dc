/* spool.c - see spool.h. Plain POSIX file calls; callers decide threads.
 *
 * Durability of a batch (spool_sync_batch): per-file fdatasync costs a
 * data write, an inode write, a directory write and a device cache flush,
 * one file after the other: ~0.3 ms per 4 KiB file on the bench VM, so 64
 * uploads waited ~20 ms for each other. syncfs(2) writes all of them (and
 * their inode-table and directory blocks, which neighbouring new files
 * share) in one round and waits for it: ~1.5-3 ms for 64 files. Its price
 * is that it also writes whatever else is dirty on that filesystem (big
 * uploads keep that small with sync_file_range windows; see docs/HTTP.md).
 * syncfs flushes the device cache BEFORE its final metadata write-out on
 * filesystems without a journal, so the caller's directory fsync (one
 * more flush) is what makes those last writes durable.
 */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "dripd/util.h"

int spool_create(const char *data_dir, const char *id, int *fd, char **path)
{
    char *p = xasprintf("%s/spool/%s.part", data_dir, id);
    int f = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f < 0 && errno == ENOENT) {
        /* only the first upload (or one after someone removed spool/)
         * makes the directory: an mkdir per upload costs ~5 syscalls and
         * takes the parent directories' locks that creates contend for */
        char *dir = xasprintf("%s/spool", data_dir);
        int rc = dr_mkdirs(dir, 0700);
        free(dir);
        if (rc < 0) {
            free(p);
            return rc;
        }
        f = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (f < 0) {
        int rc = -errno;
        free(p);
        return rc;
    }
    *fd = f;
    *path = p;
    return 0;
}

int spool_reopen(const char *path, uint64_t offset, int *fd)
{
    int f = open(path, O_WRONLY | O_CLOEXEC);
    if (f < 0)
        return -errno;
    /* Drop anything past the acknowledged offset (a write that was cut). */
    if (ftruncate(f, (off_t)offset) < 0 || lseek(f, (off_t)offset, SEEK_SET) < 0) {
        int rc = -errno;
        close(f);
        return rc;
    }
    *fd = f;
    return 0;
}

int spool_write(int fd, const void *data, size_t len)
{
    return dr_write_all(fd, data, len);
}

int spool_sync(int fd)
{
    if (dr_test_skip_sync("spool"))
        return 0;
    return fdatasync(fd) < 0 ? -errno : 0;
}

/* The writeback error state of one file after a syncfs: waits for pages
 * still under writeback (none, normally) and reports, once per fd, an
 * error that hit this file's pages since it was opened. */
static int check_written(int fd)
{
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER) < 0
               ? -errno
               : 0;
}

size_t spool_sync_batch(const int *fds, int *rcs, size_t n)
{
    size_t failed = 0;
    if (n == 0)
        return 0;
    if (n > 1 && !dr_test_skip_sync("spool") && syncfs(fds[0]) == 0) {
        for (size_t i = 0; i < n; i++) {
            rcs[i] = check_written(fds[i]);
            failed += rcs[i] < 0;
        }
        return failed;
    }
    for (size_t i = 0; i < n; i++) {
        rcs[i] = spool_sync(fds[i]);
        failed += rcs[i] < 0;
    }
    return failed;
}

void spool_remove(const char *path)
{
    if (path != NULL)
        (void)unlink(path);
}

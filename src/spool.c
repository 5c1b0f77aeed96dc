/* spool.c - see spool.h. Plain POSIX file calls; callers decide threads. */
#include "dripd/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "dripd/util.h"

int spool_create(const char *data_dir, const char *id, int *fd, char **path)
{
    char *dir = xasprintf("%s/spool", data_dir);
    int rc = dr_mkdirs(dir, 0700);
    free(dir);
    if (rc < 0)
        return rc;
    char *p = xasprintf("%s/spool/%s.part", data_dir, id);
    int f = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (f < 0) {
        rc = -errno;
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
    return fdatasync(fd) < 0 ? -errno : 0;
}

void spool_remove(const char *path)
{
    if (path != NULL)
        (void)unlink(path);
}

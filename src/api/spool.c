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
 *
 * In use, or an orphan? Every file spool_create() makes is flock()ed
 * (LOCK_EX) by its creator for as long as the creator holds it open, and
 * the creator takes that lock inside a shared flock of the spool
 * directory itself, so the file never exists unlocked while its creator
 * lives. spool_sweep() tries each file's lock under the exclusive
 * directory lock; the files it gets belong to
 * nobody alive (a worker killed mid-upload), and of those it removes the
 * ones the catalog does not name (read after the locks were taken: an
 * owner that let go had committed its reference before). Locks die with
 * their process, so this also holds across the two http generations of a
 * reload. Each thread has its own directory descriptor (flock locks
 * belong to an open file description: one shared with another thread
 * would be released by that thread's unlock).
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/util.h"

#define SWEEP_BATCH 256 /* files locked (descriptors held) at once by a sweep */

/* This thread's descriptor of the spool directory, whose flock is the
 * creators' (shared) and sweeps' (exclusive) lock; fresh: open it again
 * (the directory was removed and made anew). -errno (-ENOENT: no spool
 * directory). */
static int dir_lock_fd(const char *spool_dir, bool fresh)
{
    static __thread int fd = -1;
    static __thread char dir[PATH_MAX];
    if (fd >= 0 && !fresh && strcmp(dir, spool_dir) == 0)
        return fd;
    if (strlen(spool_dir) >= sizeof dir)
        return -ENAMETOOLONG;
    int f = open(spool_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (f < 0)
        return -errno;
    if (fd >= 0)
        close(fd);
    fd = f;
    snprintf(dir, sizeof dir, "%s", spool_dir);
    return fd;
}

char *spool_path_for(const char *data_dir, const char *id)
{
    return xasprintf("%s/spool/%s.part", data_dir, id);
}

int spool_create(const char *data_dir, const char *id, int *fd, char **path)
{
    char *p = spool_path_for(data_dir, id);
    int rc = spool_create_at(p, fd);
    if (rc < 0) {
        free(p);
        return rc;
    }
    *path = p;
    return 0;
}

int spool_create_at(const char *p, int *fd)
{
    const char *slash = strrchr(p, '/');
    if (slash == NULL || slash == p)
        return -EINVAL;
    char *dir = xstrndup(p, (size_t)(slash - p));
    int rc = 0, f = -1;
    for (int attempt = 0; attempt < 2; attempt++) {
        int lk = dir_lock_fd(dir, attempt > 0);
        if (lk == -ENOENT) {
            /* only the first upload (or one after someone removed spool/)
             * makes the directory: an mkdir per upload costs ~5 syscalls
             * and takes the parent directories' locks that creates
             * contend for */
            rc = dr_mkdirs(dir, 0700);
            lk = rc < 0 ? rc : dir_lock_fd(dir, true);
        }
        if (lk < 0) {
            rc = lk;
            break;
        }
        rc = 0;
        (void)flock(lk, LOCK_SH); /* waits only while a sweep looks */
        f = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (f < 0)
            rc = -errno;
        else if (flock(f, LOCK_EX | LOCK_NB) < 0)
            rc = -errno; /* cannot happen: a new file, and sweeps wait for us */
        (void)flock(lk, LOCK_UN);
        if (rc != -ENOENT)
            break; /* else spool/ went away behind our back: make it again */
    }
    free(dir);
    if (rc < 0) {
        if (f >= 0) {
            close(f);
            unlink(p);
        }
        return rc;
    }
    *fd = f;
    return 0;
}

int spool_reopen(const char *path, uint64_t offset, int *fd)
{
    int f = open(path, O_RDWR | O_CLOEXEC);
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

void spool_writeback(int fd, uint64_t base, uint64_t size, uint64_t *at)
{
    while (size - *at >= SPOOL_WRITEBACK_STEP) {
        off_t win = (off_t)(base + *at);
        (void)sync_file_range(fd, win, SPOOL_WRITEBACK_STEP, SYNC_FILE_RANGE_WRITE);
        *at += SPOOL_WRITEBACK_STEP;
        if (*at >= 3ull * SPOOL_WRITEBACK_STEP) {
            off_t old = win - 2 * (off_t)SPOOL_WRITEBACK_STEP;
            (void)sync_file_range(fd, old, SPOOL_WRITEBACK_STEP,
                                  SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                      SYNC_FILE_RANGE_WAIT_AFTER);
            (void)posix_fadvise(fd, old, SPOOL_WRITEBACK_STEP, POSIX_FADV_DONTNEED);
        }
    }
}

int spool_sync(int fd)
{
    if (dr_test_skip_sync("spool"))
        return 0;
    return fdatasync(fd) < 0 ? -errno : 0;
}

size_t spool_sync_batch(const int *fds, int *rcs, size_t n)
{
    return dr_sync_files(fds, rcs, n, "spool");
}

void spool_remove(const char *path)
{
    if (path != NULL)
        (void)unlink(path);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static const char *base_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int spool_sweep(const char *data_dir, spool_refs_fn refs, void *arg, size_t *removed,
                uint64_t *bytes)
{
    *removed = 0;
    *bytes = 0;
    char *dir = xasprintf("%s/spool", data_dir);
    int lk = dir_lock_fd(dir, true);
    DIR *d = lk >= 0 ? opendir(dir) : NULL;
    int rc = lk == -ENOENT ? 0 : lk < 0 ? lk : d == NULL ? -errno : 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (l <= 5 || strcmp(e->d_name + l - 5, ".part") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            names = xrealloc(names, cap * sizeof *names);
        }
        names[n++] = xstrdup(e->d_name);
    }
    int dfd = d != NULL ? dirfd(d) : -1;
    int fds[SWEEP_BATCH];
    for (size_t at = 0; rc == 0 && at < n; at += SWEEP_BATCH) {
        size_t k = DR_MIN(n - at, (size_t)SWEEP_BATCH);
        /* 1. lock what nobody alive holds (creators wait meanwhile) */
        (void)flock(lk, LOCK_EX);
        for (size_t i = 0; i < k; i++) {
            fds[i] = openat(dfd, names[at + i], O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
            if (fds[i] >= 0 && flock(fds[i], LOCK_EX | LOCK_NB) < 0) {
                close(fds[i]);
                fds[i] = -1;
            }
        }
        (void)flock(lk, LOCK_UN);
        /* 2. what the catalog names now (after the locks) stays */
        char **r = NULL;
        size_t nr = 0;
        rc = refs(arg, &r, &nr);
        for (size_t i = 0; i < nr; i++) {
            char *b = xstrdup(base_of(r[i]));
            free(r[i]);
            r[i] = b;
        }
        if (rc == 0 && nr > 0) /* r is NULL when nothing is named */
            qsort(r, nr, sizeof *r, cmp_str);
        /* 3. the rest is an orphan */
        for (size_t i = 0; i < k; i++) {
            if (fds[i] < 0)
                continue;
            const char *name = names[at + i];
            struct stat st;
            if (rc == 0 && (nr == 0 || bsearch(&name, r, nr, sizeof *r, cmp_str) == NULL) &&
                fstat(fds[i], &st) == 0 && S_ISREG(st.st_mode) && unlinkat(dfd, name, 0) == 0) {
                (*removed)++;
                *bytes += (uint64_t)st.st_size;
            }
            close(fds[i]);
        }
        dr_strv_free(r, nr);
    }
    if (d != NULL)
        closedir(d);
    dr_strv_free(names, n);
    free(dir);
    return rc;
}

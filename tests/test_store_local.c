/* test_store_local.c - the local object store: atomic put, streaming get,
 * ranges, idempotent delete, listing, key validation, the sweep of what
 * puts cut short left, small objects kept as rows of .small.db. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/store.h"
#include "dripd/util.h"

static char dir[256];
static struct dr_config *cfg;
static struct dr_store *st;

static void write_file(const char *path, const void *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dr_write_all(fd, b, len), 0);
    close(fd);
}

static size_t read_file(const char *path, void *b, size_t cap)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    ssize_t n = dr_read_full(fd, b, cap);
    close(fd);
    ck_assert_int_ge(n, 0);
    return (size_t)n;
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/dripd-test-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    cfg = config_defaults();
    free(cfg->storage.local.path);
    cfg->storage.local.path = xasprintf("%s/objects", dir);
    char err[256];
    ck_assert_int_eq(store_open(cfg, &st, err, sizeof err), 0);
    ck_assert_str_eq(st->ops->name, "local");
}

static void teardown(void)
{
    store_close(st);
    config_destroy(cfg);
    char *cmd = xasprintf("rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

static int count_keys(const char *key, uint64_t size, void *arg)
{
    (void)size;
    ck_assert(key[0] != '.');
    (*(int *)arg)++;
    return 0;
}

START_TEST(test_put_get_del)
{
    char err[256], *src = xasprintf("%s/src", dir), *dst = xasprintf("%s/dst", dir);
    static uint8_t data[300000], back[300001];
    dr_random(data, sizeof data);
    write_file(src, data, sizeof data);
    const char *key = "01JABCDEFGHJKMNPQRSTVWXYZ0_20261125T000605Z.jpg";
    uint64_t size = 0;
    ck_assert_int_eq(store_exists(st, key, &size, err, sizeof err), 0);
    ck_assert_int_eq(store_put(st, key, src, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st, key, &size, err, sizeof err), 1);
    ck_assert_uint_eq(size, sizeof data);
    ck_assert_int_eq(store_get(st, key, dst, err, sizeof err), 0);
    ck_assert_uint_eq(read_file(dst, back, sizeof back), sizeof data);
    ck_assert(memcmp(back, data, sizeof data) == 0);
    /* ranges: start, middle, across the end, past the end */
    uint8_t r[100];
    ck_assert_int_eq(st->ops->get_range(st, key, 0, r, 100, err, sizeof err), 100);
    ck_assert(memcmp(r, data, 100) == 0);
    ck_assert_int_eq(st->ops->get_range(st, key, 123456, r, 100, err, sizeof err), 100);
    ck_assert(memcmp(r, data + 123456, 100) == 0);
    ck_assert_int_eq(st->ops->get_range(st, key, sizeof data - 10, r, 100, err, sizeof err), 10);
    ck_assert_int_eq(st->ops->get_range(st, key, sizeof data + 10, r, 100, err, sizeof err), 0);
    /* the object does not change when the source is replaced (by rename) */
    uint8_t other[10] = "0123456789";
    char *src2 = xasprintf("%s/src2", dir);
    write_file(src2, other, sizeof other);
    ck_assert_int_eq(rename(src2, src), 0);
    ck_assert_int_eq(store_get(st, key, dst, err, sizeof err), 0);
    ck_assert_uint_eq(read_file(dst, back, sizeof back), sizeof data);
    ck_assert(memcmp(back, data, sizeof data) == 0);
    /* put again replaces atomically */
    ck_assert_int_eq(store_put(st, key, src, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st, key, &size, err, sizeof err), 1);
    ck_assert_uint_eq(size, 10);
    int n = 0;
    ck_assert_int_eq(st->ops->list(st, count_keys, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(st->ops->check(st, err, sizeof err), 0);
    /* delete is idempotent */
    ck_assert_int_eq(store_delete(st, key, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st, key, NULL, err, sizeof err), 0);
    ck_assert_int_eq(store_delete(st, key, err, sizeof err), 0);
    ck_assert_int_eq(store_get(st, key, dst, err, sizeof err), -ENOENT);
    ck_assert_msg(strstr(err, "no such object") != NULL, "%s", err);
    ck_assert_int_eq(st->ops->get_range(st, key, 0, r, 1, err, sizeof err), -ENOENT);
    free(src);
    free(src2);
    free(dst);
}
END_TEST

START_TEST(test_bad_keys)
{
    char err[256], *src = xasprintf("%s/src", dir), *dst = xasprintf("%s/dst", dir);
    write_file(src, "x", 1);
    const char *bad[] = {"", "a/b", "..", ".", ".hidden", "../escape", "/abs"};
    for (size_t i = 0; i < DR_ARRAY_LEN(bad); i++) {
        ck_assert_int_eq(store_put(st, bad[i], src, err, sizeof err), -EINVAL);
        ck_assert_int_eq(store_get(st, bad[i], dst, err, sizeof err), -EINVAL);
        ck_assert_int_eq(store_delete(st, bad[i], err, sizeof err), -EINVAL);
        ck_assert_int_eq(store_exists(st, bad[i], NULL, err, sizeof err), -EINVAL);
    }
    char longkey[300];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[299] = 0;
    ck_assert_int_eq(store_put(st, longkey, src, err, sizeof err), -EINVAL);
    /* missing source: permanent error, nothing left behind */
    ck_assert_int_eq(store_put(st, "k1", "/nonexistent/file", err, sizeof err), -ENOENT);
    int n = 0;
    ck_assert_int_eq(st->ops->list(st, count_keys, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 0);
    char *objdir = xasprintf("%s/objects", dir);
    char *cmd = xasprintf("test -z \"$(ls -A '%s')\"", objdir);
    ck_assert_int_eq(system(cmd), 0); /* no temporary files either */
    free(cmd);
    free(objdir);
    free(src);
    free(dst);
}
END_TEST

START_TEST(test_copy_across_filesystems)
{
    /* /dev/shm is another filesystem: put must copy, not link */
    char err[256];
    char *src = xasprintf("/dev/shm/dripd-test-store-%d", (int)getpid());
    static uint8_t data[70000], back[70001];
    dr_random(data, sizeof data);
    write_file(src, data, sizeof data);
    ck_assert_int_eq(store_put(st, "k2", src, err, sizeof err), 0);
    unlink(src);
    char *dst = xasprintf("%s/dst", dir);
    ck_assert_int_eq(store_get(st, "k2", dst, err, sizeof err), 0);
    ck_assert_uint_eq(read_file(dst, back, sizeof back), sizeof data);
    ck_assert(memcmp(back, data, sizeof data) == 0);
    free(src);
    free(dst);
}
END_TEST

START_TEST(test_open_read_in_place)
{
    char err[256], *src = xasprintf("%s/src", dir);
    static uint8_t data[100000], back[100001];
    dr_random(data, sizeof data);
    write_file(src, data, sizeof data);
    ck_assert_int_eq(store_put(st, "k3", src, err, sizeof err), 0);
    int fd = 99;
    ck_assert_int_eq(store_open_read(st, "k3", &fd, err, sizeof err), 0);
    ck_assert_int_ge(fd, 0);
    /* the fd stays valid while the object is deleted or replaced */
    ck_assert_int_eq(store_delete(st, "k3", err, sizeof err), 0);
    ck_assert_int_eq((int)dr_pread_full(fd, back, sizeof back, 0), (int)sizeof data);
    ck_assert(memcmp(back, data, sizeof data) == 0);
    ck_assert_int_eq(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
    close(fd);
    fd = 99;
    ck_assert_int_eq(store_open_read(st, "k3", &fd, err, sizeof err), -ENOENT);
    ck_assert_int_eq(fd, -1);
    ck_assert_msg(strstr(err, "no such object") != NULL, "%s", err);
    ck_assert_int_eq(store_open_read(st, "../k3", &fd, err, sizeof err), -EINVAL);
    /* a backend without local files says so */
    struct dr_store_ops no_local = *st->ops;
    no_local.open_read = NULL;
    struct dr_store fake = {.ops = &no_local, .cfg = cfg};
    ck_assert_int_eq(store_open_read(&fake, "k3", &fd, err, sizeof err), -EOPNOTSUPP);
    ck_assert_int_eq(fd, -1);
    free(src);
}
END_TEST

static void touch(const char *name)
{
    char *path = xasprintf("%s/objects/%s", dir, name);
    write_file(path, "x", 1);
    free(path);
}

static bool there(const char *name)
{
    char *path = xasprintf("%s/objects/%s", dir, name);
    bool ok = access(path, F_OK) == 0;
    free(path);
    return ok;
}

/* Is there a file named prefix...suffix in the store directory? */
static bool there_prefix(const char *prefix, const char *suffix)
{
    char *odir = xasprintf("%s/objects", dir);
    DIR *d = opendir(odir);
    ck_assert_ptr_nonnull(d);
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name), ls = strlen(suffix);
        found = strncmp(e->d_name, prefix, strlen(prefix)) == 0 && n >= ls &&
                strcmp(e->d_name + n - ls, suffix) == 0;
    }
    closedir(d);
    free(odir);
    return found;
}

struct put_arg {
    const char *src;
    int rc;
};

static void *put_thread(void *arg)
{
    struct put_arg *a = arg;
    struct dr_store *own;
    char err[256];
    ck_assert_int_eq(store_open(cfg, &own, err, sizeof err), 0);
    a->rc = store_put(own, "k7", a->src, err, sizeof err);
    store_close(own);
    return NULL;
}

/* A crash between a put's link and its rename leaves ".tmp-<rnd>-<key>";
 * sweep removes such files, but never while a put runs anywhere. */
START_TEST(test_sweep_leftovers_of_cut_puts)
{
    char err[256], *src = xasprintf("%s/src", dir);
    write_file(src, "object", 6);
    ck_assert_int_eq(store_put(st, "k4", src, err, sizeof err), 0); /* and it unlocked */
    touch(".tmp-0123456789abcdef-k5");
    touch(".tmp-fedcba9876543210-k4");
    touch(".keep"); /* not a put's: stays */
    size_t removed = 99;
    /* a put of another process holds the directory's shared lock */
    char *odir = xasprintf("%s/objects", dir);
    int other = open(odir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(other, 0);
    ck_assert_int_eq(flock(other, LOCK_SH), 0);
    ck_assert_int_eq(store_sweep(st, &removed, err, sizeof err), -EAGAIN);
    ck_assert_uint_eq(removed, 0);
    ck_assert(there(".tmp-0123456789abcdef-k5"));
    ck_assert_int_eq(flock(other, LOCK_UN), 0);
    /* a put of ours holds it while it runs: one copying from a FIFO on
     * another filesystem (/dev/shm) waits in the copy for our bytes */
    char *fifo = xasprintf("/dev/shm/dripd-test-store-fifo-%d", (int)getpid());
    unlink(fifo);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    struct put_arg a = {.src = fifo, .rc = 1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, put_thread, &a), 0);
    int w = open(fifo, O_WRONLY); /* returns once the put opened it */
    ck_assert_int_ge(w, 0);
    ck_assert_int_eq(write(w, "in", 2), 2);
    int64_t deadline = dr_mono_ms() + 10000;
    while (!there_prefix(".tmp-", "-k7")) { /* the put made its temporary file */
        ck_assert_int_lt(dr_mono_ms(), deadline);
        usleep(1000);
    }
    ck_assert_int_eq(store_sweep(st, &removed, err, sizeof err), -EAGAIN);
    ck_assert_uint_eq(removed, 0);
    ck_assert(there(".tmp-0123456789abcdef-k5"));
    ck_assert_int_eq(write(w, " flight", 7), 7);
    close(w);
    pthread_join(th, NULL);
    ck_assert_int_eq(a.rc, 0);
    unlink(fifo);
    free(fifo);
    char back[16] = "", *dst = xasprintf("%s/dst", dir);
    ck_assert_int_eq(store_get(st, "k7", dst, err, sizeof err), 0);
    ck_assert_uint_eq(read_file(dst, back, sizeof back), 9);
    ck_assert(memcmp(back, "in flight", 9) == 0);
    free(dst);
    /* no put runs: the leftovers go, the objects and other files stay */
    ck_assert_int_eq(store_sweep(st, &removed, err, sizeof err), 0);
    ck_assert_uint_eq(removed, 2);
    ck_assert(!there(".tmp-0123456789abcdef-k5") && !there(".tmp-fedcba9876543210-k4"));
    ck_assert(there("k4") && there(".keep"));
    ck_assert_int_eq(store_sweep(st, &removed, err, sizeof err), 0);
    ck_assert_uint_eq(removed, 0);
    /* a backend without the operation has nothing to sweep */
    struct dr_store_ops none = *st->ops;
    none.sweep = NULL;
    struct dr_store fake = {.ops = &none, .cfg = cfg};
    removed = 99;
    ck_assert_int_eq(store_sweep(&fake, &removed, err, sizeof err), 0);
    ck_assert_uint_eq(removed, 0);
    close(other);
    free(odir);
    free(src);
}
END_TEST

/* A job resumed after a crash stores the same sealed file again: the
 * temporary name and the key are then two links of one inode, and
 * rename(2) between them does nothing (POSIX): the put must not leave
 * its temporary file behind. */
START_TEST(test_put_of_the_same_file_again_leaves_nothing)
{
    char err[256], *src = xasprintf("%s/sealed", dir);
    write_file(src, "sealed bytes", 12);
    ck_assert_int_eq(store_put(st, "k8", src, err, sizeof err), 0);
    ck_assert_int_eq(store_put(st, "k8", src, err, sizeof err), 0);
    ck_assert(!there_prefix(".tmp-", "-k8"));
    uint64_t size = 0;
    ck_assert_int_eq(store_exists(st, "k8", &size, err, sizeof err), 1);
    ck_assert_uint_eq(size, 12);
    free(src);
}
END_TEST

START_TEST(test_put_nosync_batch)
{
    /* puts without a sync: each object is there at once, whole, src moved
     * in (one directory entry made); a second put of a key replaces it;
     * one sync then makes the batch durable; across file systems the put
     * copies (and leaves src) */
    char err[256];
    static uint8_t data[5][5000], back[5001];
    char *keys[5];
    for (int i = 0; i < 5; i++) {
        dr_random(data[i], sizeof data[i]);
        char *src = xasprintf("%s/src%d", dir, i);
        write_file(src, data[i], sizeof data[i]);
        keys[i] = xasprintf("b%d", i % 4); /* b0 twice */
        ck_assert_int_eq(store_put_nosync(st, keys[i], src, err, sizeof err), 0);
        ck_assert_int_eq(access(src, F_OK), -1); /* moved into the store */
        char *obj = xasprintf("%s/objects/%s", dir, keys[i]);
        ck_assert_uint_eq(read_file(obj, back, sizeof back), sizeof data[i]);
        ck_assert(memcmp(back, data[i], sizeof data[i]) == 0);
        free(obj);
        free(src);
    }
    ck_assert_int_eq(store_sync(st, err, sizeof err), 0);
    ck_assert_int_eq(store_sync(st, err, sizeof err), 0); /* nothing left: no-op */
    int n = 0;
    ck_assert_int_eq(store_list(st, count_keys, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 4);
    char *obj = xasprintf("%s/objects/b0", dir);
    ck_assert_uint_eq(read_file(obj, back, sizeof back), sizeof data[4]); /* the second put */
    ck_assert(memcmp(back, data[4], sizeof data[4]) == 0);
    free(obj);
    char *shm = xasprintf("/dev/shm/dripd-test-store-nosync-%d", (int)getpid());
    write_file(shm, data[0], sizeof data[0]);
    ck_assert_int_eq(store_put_nosync(st, "x", shm, err, sizeof err), 0);
    ck_assert_int_eq(access(shm, F_OK), 0); /* copied */
    unlink(shm);
    free(shm);
    ck_assert_int_eq(store_sync(st, err, sizeof err), 0);
    ck_assert_int_eq(store_put_nosync(st, "../x", "/nonexistent", err, sizeof err), -EINVAL);
    ck_assert_int_eq(store_put_nosync(st, "y", "/nonexistent", err, sizeof err), -ENOENT);
    for (int i = 0; i < 5; i++)
        free(keys[i]);
}
END_TEST

START_TEST(test_put_nosync_fd)
{
    /* the caller's open fd and the name relative to a directory fd: moved
     * in (*moved), the fd kept for the sync; across file systems a copy
     * (src left, not moved); a bad key or a missing name fails, and the
     * fd is consumed whatever happens */
    char err[256];
    static uint8_t data[3000], back[3001];
    dr_random(data, sizeof data);
    char *src = xasprintf("%s/sealed", dir);
    write_file(src, data, sizeof data);
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ck_assert_int_ge(dfd, 0);
    int fd = open(src, O_WRONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    bool moved = false;
    ck_assert_int_eq(
        store_put_nosync_fd(st, "f1", dfd, "sealed", src, fd, sizeof data, &moved, err, sizeof err),
        0);
    ck_assert(moved);
    ck_assert_int_eq(access(src, F_OK), -1);
    char *obj = xasprintf("%s/objects/f1", dir);
    ck_assert_uint_eq(read_file(obj, back, sizeof back), sizeof data);
    ck_assert(memcmp(back, data, sizeof data) == 0);
    free(obj);
    ck_assert_int_eq(store_sync(st, err, sizeof err), 0);

    char *shm = xasprintf("/dev/shm/dripd-test-store-fd-%d", (int)getpid());
    write_file(shm, data, sizeof data);
    int sdfd = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    fd = open(shm, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(store_put_nosync_fd(st, "f2", sdfd, strrchr(shm, '/') + 1, shm, fd,
                                         sizeof data, &moved, err, sizeof err),
                     0);
    ck_assert(!moved);
    ck_assert_int_eq(access(shm, F_OK), 0); /* copied */
    unlink(shm);
    free(shm);
    close(sdfd);

    fd = open(dir, O_RDONLY | O_CLOEXEC);
    ck_assert_int_eq(
        store_put_nosync_fd(st, "../x", dfd, "sealed", src, fd, 1, &moved, err, sizeof err),
        -EINVAL);
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1); /* closed */
    fd = open(dir, O_RDONLY | O_CLOEXEC);
    ck_assert_int_eq(
        store_put_nosync_fd(st, "f3", dfd, "sealed", src, fd, 1, &moved, err, sizeof err), -ENOENT);
    ck_assert(!moved);
    ck_assert_int_eq(fcntl(fd, F_GETFD), -1);
    ck_assert_int_eq(store_sync(st, err, sizeof err), 0);
    close(dfd);
    free(src);
}
END_TEST

static void *dup_bytes(const void *b, size_t len)
{
    void *m = xmalloc(len);
    memcpy(m, b, len);
    return m;
}

static int collect_keys(const char *key, uint64_t size, void *arg)
{
    char *seen = arg; /* "key=size;" ... */
    snprintf(seen + strlen(seen), 4096 - strlen(seen), "%s=%llu;", key, (unsigned long long)size);
    return 0;
}

START_TEST(test_put_nosync_mem)
{
    /* small objects from memory: nothing before the sync (no file ever),
     * rows of .small.db after it that every read finds (exists, get,
     * get_range, open_read from offset 0) and another handle sees; a
     * second put of a key replaces it; list yields rows and files once
     * each; delete removes the row and is idempotent */
    char err[256];
    static uint8_t a[4200], b[5000], c[300], back[8192];
    dr_random(a, sizeof a);
    dr_random(b, sizeof b);
    dr_random(c, sizeof c);
    const char *ka = "01JABCDEFGHJKMNPQRSTVWXYZ0_20261207T120000Z.jpg", *kb = "small-b";
    ck_assert_int_eq(
        store_put_nosync_mem(st, ka, dup_bytes(c, sizeof c), sizeof c, err, sizeof err), 0);
    ck_assert_int_eq(
        store_put_nosync_mem(st, ka, dup_bytes(a, sizeof a), sizeof a, err, sizeof err), 0);
    ck_assert_int_eq(
        store_put_nosync_mem(st, kb, dup_bytes(b, sizeof b), sizeof b, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st, ka, NULL, err, sizeof err), 0); /* not before the sync */
    ck_assert_int_eq(store_sync(st, err, sizeof err), 0);
    char *file = xasprintf("%s/objects/%s", dir, ka);
    ck_assert_int_eq(access(file, F_OK), -1); /* a row, never a file */
    free(file);
    uint64_t size = 0;
    ck_assert_int_eq(store_exists(st, ka, &size, err, sizeof err), 1);
    ck_assert_uint_eq(size, sizeof a); /* the second put */
    char *dst = xasprintf("%s/dst", dir);
    ck_assert_int_eq(store_get(st, kb, dst, err, sizeof err), 0);
    ck_assert_uint_eq(read_file(dst, back, sizeof back), sizeof b);
    ck_assert(memcmp(back, b, sizeof b) == 0);
    uint8_t r[100];
    ck_assert_int_eq(store_get_range(st, ka, 0, r, 100, err, sizeof err), 100);
    ck_assert(memcmp(r, a, 100) == 0);
    ck_assert_int_eq(store_get_range(st, ka, 2000, r, 100, err, sizeof err), 100);
    ck_assert(memcmp(r, a + 2000, 100) == 0);
    ck_assert_int_eq(store_get_range(st, ka, sizeof a - 10, r, 100, err, sizeof err), 10);
    ck_assert(memcmp(r, a + sizeof a - 10, 10) == 0);
    ck_assert_int_eq(store_get_range(st, ka, sizeof a + 10, r, 100, err, sizeof err), 0);
    int fd = -1;
    ck_assert_int_eq(store_open_read(st, ka, &fd, err, sizeof err), 0);
    ck_assert_int_eq(dr_read_full(fd, back, sizeof back), (ssize_t)sizeof a);
    ck_assert(memcmp(back, a, sizeof a) == 0);
    /* another handle (another stage thread, another process) reads it */
    struct dr_store *st2;
    ck_assert_int_eq(store_open(cfg, &st2, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st2, kb, &size, err, sizeof err), 1);
    ck_assert_uint_eq(size, sizeof b);
    /* a file object beside the rows: list yields each key once */
    char *src = xasprintf("%s/src", dir);
    write_file(src, c, sizeof c);
    ck_assert_int_eq(store_put(st2, "a-file", src, err, sizeof err), 0);
    char seen[4096] = "";
    ck_assert_int_eq(store_list(st, collect_keys, seen, err, sizeof err), 0);
    char want[4096];
    snprintf(want, sizeof want, "%s=%zu;", ka, sizeof a);
    ck_assert_msg(strstr(seen, want) != NULL, "%s", seen);
    ck_assert_msg(strstr(seen, "small-b=5000;") != NULL, "%s", seen);
    ck_assert_msg(strstr(seen, "a-file=300;") != NULL, "%s", seen);
    int n = 0;
    ck_assert_int_eq(store_list(st, count_keys, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 3);
    /* delete: the row goes (the open copy stays readable), twice is fine */
    ck_assert_int_eq(store_delete(st2, ka, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st, ka, NULL, err, sizeof err), 0);
    ck_assert_int_eq(store_delete(st, ka, err, sizeof err), 0);
    ck_assert_int_eq(store_get(st, ka, dst, err, sizeof err), -ENOENT);
    ck_assert_int_eq(store_open_read(st, ka, &n, err, sizeof err), -ENOENT);
    ck_assert_int_eq(pread(fd, back, 10, 0), 10);
    ck_assert(memcmp(back, a, 10) == 0);
    close(fd);
    /* refused: a bad key, an object too big to be small; mem is taken */
    ck_assert_int_eq(store_put_nosync_mem(st, "../x", xmalloc(10), 10, err, sizeof err), -EINVAL);
    ck_assert_int_eq(store_put_nosync_mem(st, "big", xmalloc(STORE_MEM_MAX + 1), STORE_MEM_MAX + 1,
                                          err, sizeof err),
                     -EOPNOTSUPP);
    ck_assert_int_eq(store_sync(st, err, sizeof err), 0);
    store_close(st2);
    free(src);
    free(dst);
}
END_TEST

START_TEST(test_put_nosync_mem_bounded)
{
    /* at most 256 objects wait in memory: the next put commits them
     * first, so another handle sees them before this one syncs; closing
     * without a sync drops what waits (the caller never counted on it) */
    char err[256];
    uint8_t one[64];
    dr_random(one, sizeof one);
    for (int i = 0; i <= 256; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%03d", i);
        ck_assert_int_eq(
            store_put_nosync_mem(st, key, dup_bytes(one, sizeof one), sizeof one, err, sizeof err),
            0);
    }
    struct dr_store *st2;
    ck_assert_int_eq(store_open(cfg, &st2, err, sizeof err), 0);
    int n = 0;
    ck_assert_int_eq(store_list(st2, count_keys, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 256);
    store_close(st); /* k256 was never synced */
    ck_assert_int_eq(store_open(cfg, &st, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st2, "k256", NULL, err, sizeof err), 0);
    ck_assert_int_eq(store_exists(st2, "k255", NULL, err, sizeof err), 1);
    store_close(st2);
}
END_TEST

struct mem_writer {
    int id;
    int rc;
    char err[256];
};

static void *mem_writer_main(void *arg)
{
    struct mem_writer *w = arg;
    char *err = w->err;
    const size_t errlen = sizeof w->err;
    struct dr_store *s;
    w->rc = store_open(cfg, &s, err, errlen);
    for (int batch = 0; batch < 20 && w->rc == 0; batch++) {
        for (int i = 0; i < 16 && w->rc == 0; i++) {
            char key[64];
            snprintf(key, sizeof key, "w%d-%d-%d", w->id, batch, i);
            w->rc = store_put_nosync_mem(s, key, xcalloc(1, 100), 100, err, errlen);
        }
        if (w->rc == 0)
            w->rc = store_sync(s, err, errlen);
    }
    store_close(s);
    return NULL;
}

START_TEST(test_put_nosync_mem_threads)
{
    /* stage threads commit their batches side by side (the first of them
     * makes the database): every batch lands, none is refused as busy */
    pthread_t th[4];
    struct mem_writer w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct mem_writer){.id = i, .rc = -1};
        ck_assert_int_eq(pthread_create(&th[i], NULL, mem_writer_main, &w[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].rc == 0, "writer %d: %d %s", i, w[i].rc, w[i].err);
    }
    char err[256];
    int n = 0;
    ck_assert_int_eq(store_list(st, count_keys, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 4 * 20 * 16);
}
END_TEST

START_TEST(test_put_nosync_mem_two_processes)
{
    /* the http worker deletes rows while the pipeline commits batches:
     * two processes on one database, neither refused (busy handler, BEGIN
     * IMMEDIATE), and what each did is there afterwards */
    char err[256];
    for (int i = 0; i < 200; i++) { /* rows for the child to delete */
        char key[32];
        snprintf(key, sizeof key, "old%03d", i);
        ck_assert_int_eq(store_put_nosync_mem(st, key, xcalloc(1, 50), 50, err, sizeof err), 0);
    }
    ck_assert_int_eq(store_sync(st, err, sizeof err), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        struct dr_store *c;
        char cerr[256];
        int rc = store_open(cfg, &c, cerr, sizeof cerr);
        for (int i = 0; i < 200 && rc == 0; i++) {
            char key[32];
            snprintf(key, sizeof key, "old%03d", i);
            rc = store_delete(c, key, cerr, sizeof cerr);
        }
        if (rc != 0)
            fprintf(stderr, "child: %d %s\n", rc, cerr);
        _exit(rc == 0 ? 0 : 1);
    }
    int rc = 0;
    for (int batch = 0; batch < 40 && rc == 0; batch++) {
        for (int i = 0; i < 16 && rc == 0; i++) {
            char key[32];
            snprintf(key, sizeof key, "new%02d-%02d", batch, i);
            rc = store_put_nosync_mem(st, key, xcalloc(1, 4200), 4200, err, sizeof err);
        }
        if (rc == 0)
            rc = store_sync(st, err, sizeof err);
    }
    ck_assert_msg(rc == 0, "%d %s", rc, err);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int n = 0;
    ck_assert_int_eq(store_list(st, count_keys, &n, err, sizeof err), 0);
    ck_assert_int_eq(n, 40 * 16); /* every old row gone, every new one there */
}
END_TEST

static Suite *store_suite(void)
{
    Suite *s = suite_create("store_local");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_put_get_del);
    tcase_add_test(tc, test_bad_keys);
    tcase_add_test(tc, test_copy_across_filesystems);
    tcase_add_test(tc, test_open_read_in_place);
    tcase_add_test(tc, test_sweep_leftovers_of_cut_puts);
    tcase_add_test(tc, test_put_of_the_same_file_again_leaves_nothing);
    tcase_add_test(tc, test_put_nosync_batch);
    tcase_add_test(tc, test_put_nosync_fd);
    tcase_add_test(tc, test_put_nosync_mem);
    tcase_add_test(tc, test_put_nosync_mem_bounded);
    tcase_add_test(tc, test_put_nosync_mem_threads);
    tcase_add_test(tc, test_put_nosync_mem_two_processes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(store_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

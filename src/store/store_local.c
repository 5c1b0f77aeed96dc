/* store_local.c - the "local" object store: one file per object in a
 * directory (storage.local.path, default <data_dir>/objects).
 *
 * Guarantees:
 *   - put is atomic and durable: the object is built as a hidden temporary
 *     file (".tmp-<random>-<key>") in the same directory, fsynced, renamed
 *     to its key, and the directory is fsynced; a reader sees the whole
 *     object or nothing, and a crash leaves at most a temporary file.
 *     Putting the same file under the same key again is a success that
 *     leaves nothing behind (a no-op rename, its temporary link removed).
 *     The temporary file is made, cheapest first, by a hard link when src
 *     is on the same filesystem (zero copy, and no new inode: the
 *     pipeline's sealed work files are written once and never modified in
 *     place; they are replaced by rename, so sharing the inode is safe;
 *     the fsync of the object is then the fsync of the work file, which
 *     the pipeline leaves to this put), else by a reflink (FICLONE,
 *     copy-on-write filesystems), else by copy_file_range.
 *     Callers must therefore never modify src in place after a put.
 *     (Link first: trying FICLONE first cost every put on ext4 a probe
 *     file, i.e. an inode allocated and freed, and right after mass
 *     deletes ext4's inode allocator is slow: 4 KiB jobs spent half their
 *     CPU there.)
 *   - put_nosync (the pipeline's store stage, one batch of jobs at a
 *     time) moves src to its key at once (rename: one directory entry
 *     made, none left to remove later; a complete file, so readers see
 *     all of it or nothing, and an existing key is replaced atomically)
 *     and keeps an fd on it; sync then makes the whole batch durable with
 *     one syncfs of the store's file system (dr_sync_files; fdatasync for
 *     one object) and one fsync of the directory: 2 syncs per batch
 *     instead of 2 per object. A src on another file system is put the
 *     durable way (a copy) at once. put_nosync_fd is the same with the
 *     caller's open fd on src and src's name relative to a directory fd
 *     (the pipeline's sealed file, handed on by encrypt): no open, no
 *     stat, and a rename of one path component, so the store looks up no
 *     path of the caller's; the fd, written by the caller, also reports
 *     writeback errors since the file was made (one opened afterwards
 *     does not see earlier ones).
 *   - get streams the object into dst (in-kernel copy), get_range preads,
 *     open_read hands out a read-only fd on the object file itself (the
 *     download pipeline decrypts from it: no copy);
 *   - del is idempotent (absent is success); exists/list never see
 *     temporary files (keys never start with '.').
 *   - sweep removes the temporary files that puts cut short by a crash
 *     left (nothing else ever would): a put holds a shared flock of the
 *     store directory from before its temporary file exists until it is
 *     renamed or removed, and sweep removes temporary files only under an
 *     exclusive flock of the directory (taken without waiting: while a
 *     put of any process runs, sweep says -EAGAIN and removes nothing).
 *     Every temporary file it sees there belongs to no running put.
 *   - small objects (issue 15): put_nosync_mem takes a sealed object from
 *     memory (a small upload's: the pipeline seals an inline body there,
 *     store_takes_mem) and keeps it as a row of <dir>/.small.db (SQLite,
 *     WAL: table objects(key, data)) instead of a file. A file per object
 *     cost ~60 us of CPU in inode allocation alone (bench/store_floor.sh:
 *     a row costs 0.34x of it, O_TMPFILE + linkat 0.98x), about a quarter
 *     of a 4 KiB upload's pipeline. The puts wait in memory (at most
 *     PENDING_MAX of at most STORE_MEM_MAX bytes) and sync writes them in
 *     one transaction whose commit fsyncs the WAL (synchronous=FULL):
 *     nothing is visible or durable before the sync, all of the batch is
 *     after it. One writer per process at a time (small_write_mu: the
 *     store threads queue on a mutex, not in SQLite's sleeping busy
 *     handler); other processes (the http worker's deletes) wait in the
 *     busy handler (deletes too begin with the write lock: BEGIN
 *     IMMEDIATE). The database is made, and set to WAL, by the first such
 *     put, under that mutex; until it exists every read is of files only.
 *     Reads look for a row first, then for a file: a key is in one place
 *     or the other (a small upload's object is always a row, any other
 *     always a file), and del removes both. get, get_range and exists
 *     read the row; open_read copies it into a memfd (the caller reads an
 *     fd from offset 0 as it does a file, and the copy stays readable if
 *     the row goes); list yields the rows and then the files that are
 *     not rows. A deleted row's pages are reused by later rows (the
 *     database does not shrink).
 * Keys are validated: 1..255 bytes, no '/', no NUL, not starting with '.',
 * so a key can never leave the directory (nor name .small.db).
 *
 * Threads: a handle belongs to one thread (store.h); the directory may be
 * shared by any number of handles and processes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/store.h"
#include "dripd/util.h"

#define PENDING_MAX 256 /* puts awaiting one sync; a put beyond syncs first */
#define SMALL_DB ".small.db"
#define SMALL_BUSY_MS 10000 /* another process's write transaction (a delete) */

struct pending_mem {
    char key[256];
    void *mem; /* the sealed object, the store's */
    size_t len;
};

struct local_store {
    struct dr_store base;
    char *dir;
    int dirfd;
    int pending[PENDING_MAX]; /* fds of objects put without a sync yet */
    size_t n_pending;
    struct pending_mem mem[PENDING_MAX]; /* small objects put without a sync yet */
    size_t n_mem;
    sqlite3 *db;          /* .small.db, opened on first use; NULL until then */
    sqlite3_stmt *q_find; /* SELECT data ... WHERE key=?1 */
    sqlite3_stmt *q_put;  /* INSERT OR REPLACE */
    sqlite3_stmt *q_del;  /* DELETE ... WHERE key=?1 */
};

/* one write transaction of .small.db per process at a time (see the top) */
static pthread_mutex_t small_write_mu = PTHREAD_MUTEX_INITIALIZER;

static int key_ok(const char *key, char *err, size_t errlen)
{
    size_t n = key ? strlen(key) : 0;
    if (n == 0 || n > 255 || key[0] == '.' || strchr(key, '/') != NULL) {
        snprintf(err, errlen, "local store: invalid object key '%.64s'", key ? key : "");
        return -EINVAL;
    }
    return 0;
}

static int set_err(char *err, size_t errlen, int rc, const char *what, const char *key)
{
    snprintf(err, errlen, "local store: %s %.200s: %s", what, key, strerror(-rc));
    return rc;
}

/* ---- small objects: rows of .small.db (see the top) ---- */

/* SQLite's answer as an -errno: a full disk, an I/O error or a lock held
 * too long are transient (put the batch again), anything else is not. */
static int small_errno(int src)
{
    switch (src & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EAGAIN;
    case SQLITE_CANTOPEN:
        return -EACCES;
    default:
        return -EIO;
    }
}

static int small_fail(struct local_store *ls, int src, const char *what, char *err, size_t errlen)
{
    snprintf(err, errlen, "local store: %s %s/" SMALL_DB ": %s", what, ls->dir,
             ls->db ? sqlite3_errmsg(ls->db) : sqlite3_errstr(src));
    return small_errno(src);
}

static void small_close(struct local_store *ls)
{
    sqlite3_finalize(ls->q_find);
    sqlite3_finalize(ls->q_put);
    sqlite3_finalize(ls->q_del);
    sqlite3_close(ls->db);
    ls->q_find = ls->q_put = ls->q_del = NULL;
    ls->db = NULL;
}

/* Open .small.db (make it when create; a new file's name is made durable
 * with the directory). 0, -ENOENT when it does not exist (and !create),
 * else -errno + err. */
static int small_open(struct local_store *ls, bool create, char *err, size_t errlen)
{
    if (ls->db != NULL)
        return 0;
    bool made = false;
    if (faccessat(ls->dirfd, SMALL_DB, F_OK, 0) != 0) {
        if (errno != ENOENT)
            return set_err(err, errlen, -errno, "look for", SMALL_DB);
        if (!create)
            return -ENOENT;
        made = true;
    }
    char *path = xasprintf("%s/" SMALL_DB, ls->dir);
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    /* A writer sets the database up (WAL, which is persistent, and the
     * table) under the process's write mutex: two threads switching a
     * new file to WAL at once get "database is locked" at once, without
     * the busy handler. A reader only opens what a writer made. */
    if (create)
        pthread_mutex_lock(&small_write_mu);
    int src = sqlite3_open_v2(path, &ls->db, flags, NULL);
    free(path);
    if (src == SQLITE_OK) {
        sqlite3_busy_timeout(ls->db, SMALL_BUSY_MS);
        if (create)
            src = sqlite3_exec(ls->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL);
    }
    if (src == SQLITE_OK)
        src = sqlite3_exec(ls->db,
                           dr_test_skip_sync("store") ? "PRAGMA synchronous=OFF"
                                                      : "PRAGMA synchronous=FULL",
                           NULL, NULL, NULL);
    if (src == SQLITE_OK && create)
        src = sqlite3_exec(ls->db,
                           "CREATE TABLE IF NOT EXISTS objects("
                           "key TEXT PRIMARY KEY NOT NULL, data BLOB NOT NULL)",
                           NULL, NULL, NULL);
    if (create)
        pthread_mutex_unlock(&small_write_mu);
    const unsigned pf = SQLITE_PREPARE_PERSISTENT;
    if (src == SQLITE_OK)
        src = sqlite3_prepare_v3(ls->db, "SELECT data FROM objects WHERE key=?1", -1, pf,
                                 &ls->q_find, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_prepare_v3(ls->db, "INSERT OR REPLACE INTO objects(key, data) VALUES(?1, ?2)",
                                 -1, pf, &ls->q_put, NULL);
    if (src == SQLITE_OK)
        src = sqlite3_prepare_v3(ls->db, "DELETE FROM objects WHERE key=?1", -1, pf, &ls->q_del,
                                 NULL);
    if (src != SQLITE_OK) {
        /* a database another handle is making this very moment, its
         * table not there yet, holds nothing */
        bool young = !create && strstr(sqlite3_errmsg(ls->db), "no such table") != NULL;
        int rc = young ? -ENOENT : small_fail(ls, src, "open", err, errlen);
        small_close(ls);
        return rc;
    }
    if (made && !dr_test_skip_sync("store_dir"))
        fsync(ls->dirfd);
    return 0;
}

/* The row of key: 1 and its bytes in *data (valid until small_done), 0
 * absent (or no database), -errno + err. */
static int small_find(struct local_store *ls, const char *key, const void **data, size_t *len,
                      char *err, size_t errlen)
{
    int rc = small_open(ls, false, err, errlen);
    if (rc != 0)
        return rc == -ENOENT ? 0 : rc;
    sqlite3_bind_text(ls->q_find, 1, key, -1, SQLITE_STATIC);
    int src = sqlite3_step(ls->q_find);
    if (src == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(ls->q_find, 0);
        *data = sqlite3_column_blob(ls->q_find, 0);
        if (*data == NULL)
            *data = ""; /* an empty blob */
        return 1;
    }
    rc = src == SQLITE_DONE ? 0 : small_fail(ls, src, "read", err, errlen);
    sqlite3_reset(ls->q_find);
    return rc;
}

static void small_done(struct local_store *ls)
{
    sqlite3_reset(ls->q_find); /* ends the read transaction */
}

static void drop_mem(struct local_store *ls)
{
    for (size_t i = 0; i < ls->n_mem; i++)
        free(ls->mem[i].mem);
    ls->n_mem = 0;
}

/* The pending small objects, in one transaction: 0 when all are durable. */
static int small_commit(struct local_store *ls, char *err, size_t errlen)
{
    if (ls->n_mem == 0)
        return 0;
    int rc = small_open(ls, true, err, errlen);
    if (rc != 0) {
        drop_mem(ls);
        return rc;
    }
    pthread_mutex_lock(&small_write_mu);
    int src = sqlite3_exec(ls->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    for (size_t i = 0; i < ls->n_mem && src == SQLITE_OK; i++) {
        struct pending_mem *p = &ls->mem[i];
        sqlite3_bind_text(ls->q_put, 1, p->key, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ls->q_put, 2, p->mem, (int)p->len, SQLITE_STATIC);
        src = sqlite3_step(ls->q_put);
        sqlite3_reset(ls->q_put);
        src = src == SQLITE_DONE ? SQLITE_OK : src;
    }
    if (src == SQLITE_OK)
        src = sqlite3_exec(ls->db, "COMMIT", NULL, NULL, NULL);
    if (src != SQLITE_OK) {
        rc = small_fail(ls, src, "write a batch of objects into", err, errlen);
        if (!sqlite3_get_autocommit(ls->db))
            sqlite3_exec(ls->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&small_write_mu);
    drop_mem(ls);
    return rc;
}

/* Remove key's row if there is one: 0 (absent too), -errno + err. */
static int small_delete(struct local_store *ls, const char *key, char *err, size_t errlen)
{
    int rc = small_open(ls, false, err, errlen);
    if (rc != 0)
        return rc == -ENOENT ? 0 : rc;
    /* BEGIN IMMEDIATE: the write lock first, waited for in the busy
     * handler (another process's commit), never a read snapshot that a
     * commit makes stale before the write */
    pthread_mutex_lock(&small_write_mu);
    int src = sqlite3_exec(ls->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_text(ls->q_del, 1, key, -1, SQLITE_STATIC);
        src = sqlite3_step(ls->q_del);
        sqlite3_reset(ls->q_del);
        src = src == SQLITE_DONE ? sqlite3_exec(ls->db, "COMMIT", NULL, NULL, NULL) : src;
    }
    if (src != SQLITE_OK) {
        rc = small_fail(ls, src, "delete from", err, errlen);
        if (!sqlite3_get_autocommit(ls->db))
            sqlite3_exec(ls->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&small_write_mu);
    return rc;
}

/* Full copy src -> dst from offset 0, in the kernel when possible. */
static int copy_fd(int src, int dst)
{
    for (;;) {
        ssize_t n = copy_file_range(src, NULL, dst, NULL, 1 << 30, 0);
        if (n == 0)
            return 0;
        if (n > 0)
            continue;
        if (errno == EINTR)
            continue;
        if (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)
            break; /* fall back to read/write (nothing copied yet on these) */
        return -errno;
    }
    char *buf = xmalloc(1 << 20);
    int rc = 0;
    for (;;) {
        ssize_t n = dr_read_full(src, buf, 1 << 20);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n == 0)
            break;
        rc = dr_write_all(dst, buf, (size_t)n);
        if (rc != 0)
            break;
    }
    free(buf);
    return rc;
}

static int local_put(struct dr_store *st, const char *key, const char *src_path, char *err,
                     size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = key_ok(key, err, errlen);
    if (rc != 0)
        return rc;
    uint8_t r[8];
    char rnd[17];
    dr_random(r, sizeof r);
    dr_hex(r, sizeof r, rnd);
    char *tmp = xasprintf(".tmp-%s-%s", rnd, key);
    int src = -1, dst = -1;
    /* "a put is running" for sweep (no lock where flock is not supported:
     * a sweep there never gets its exclusive lock either) */
    while (flock(ls->dirfd, LOCK_SH) != 0 && errno == EINTR)
        ;

    src = open(src_path, O_RDONLY | O_CLOEXEC);
    if (src < 0) {
        rc = set_err(err, errlen, -errno, "open source", src_path);
        goto out;
    }
    bool linked = linkat(AT_FDCWD, src_path, ls->dirfd, tmp, 0) == 0;
    if (!linked) {
        /* Another filesystem (or no hard links): a reflink if the
         * filesystem can, else a copy. */
        dst = openat(ls->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (dst < 0) {
            rc = set_err(err, errlen, -errno, "create", tmp);
            goto out;
        }
        if (ioctl(dst, FICLONE, src) != 0) {
            rc = copy_fd(src, dst);
            if (rc != 0) {
                set_err(err, errlen, rc, "write", tmp);
                goto out;
            }
        }
    }
    if (!dr_test_skip_sync("store") &&
        fsync(linked ? src : dst) != 0) { /* a link: the same inode */
        rc = set_err(err, errlen, -errno, "fsync", tmp);
        goto out;
    }
    if (renameat(ls->dirfd, tmp, ls->dirfd, key) != 0) {
        rc = set_err(err, errlen, -errno, "rename to", key);
        goto out;
    }
    /* A put of the same file again (a job resumed after a crash stores
     * its sealed file anew): tmp and key are two links of one inode, and
     * rename(2) between them does nothing. */
    if (linked)
        unlinkat(ls->dirfd, tmp, 0); /* ENOENT unless the rename did nothing */
    if (!dr_test_skip_sync("store_dir") && fsync(ls->dirfd) != 0) {
        rc = set_err(err, errlen, -errno, "fsync directory of", key);
        goto out;
    }
out:
    if (dst >= 0)
        close(dst);
    if (src >= 0)
        close(src);
    if (rc != 0) {
        unlinkat(ls->dirfd, tmp, 0);
        if (rc == -ENOSPC || rc == -EDQUOT || rc == -EIO || rc == -EINTR)
            rc = -EAGAIN; /* transient for the caller: retry with backoff */
    }
    flock(ls->dirfd, LOCK_UN);
    free(tmp);
    return rc;
}

static void drop_pending(struct local_store *ls)
{
    for (size_t i = 0; i < ls->n_pending; i++)
        close(ls->pending[i]);
    ls->n_pending = 0;
}

static int local_sync(struct dr_store *st, char *err, size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = small_commit(ls, err, errlen);
    if (ls->n_pending == 0 || rc != 0) {
        drop_pending(ls);
        return rc;
    }
    int rcs[PENDING_MAX];
    if (dr_sync_files(ls->pending, rcs, ls->n_pending, "store") > 0)
        for (size_t i = 0; i < ls->n_pending && rc == 0; i++)
            rc = rcs[i];
    if (rc != 0)
        set_err(err, errlen, rc, "sync of", "a batch of objects");
    else if (!dr_test_skip_sync("store_dir") && fsync(ls->dirfd) != 0)
        rc = set_err(err, errlen, -errno, "fsync directory", ls->dir);
    drop_pending(ls);
    return rc == -ENOSPC || rc == -EDQUOT || rc == -EIO || rc == -EINTR ? -EAGAIN : rc;
}

/* The put_nosyncs' move: src_name (relative to src_dirfd; src_path is
 * the same file by full path) becomes the object key (*moved true), and
 * fd, that file open, waits in pending[] for the next sync (a slot is
 * free); on failure fd is closed. Across file systems, a durable copy
 * instead (local_put; the source stays, *moved false). */
static int move_in(struct local_store *ls, const char *key, int src_dirfd, const char *src_name,
                   const char *src_path, int fd, bool *moved, char *err, size_t errlen)
{
    *moved = false;
    if (renameat(src_dirfd, src_name, ls->dirfd, key) != 0) {
        int rc = -errno;
        close(fd);
        if (rc == -EXDEV) /* another file system: a copy, made durable now */
            return local_put(&ls->base, key, src_path, err, errlen);
        set_err(err, errlen, rc, "move into the store as", key);
        return rc == -ENOSPC || rc == -EDQUOT || rc == -EIO ? -EAGAIN : rc;
    }
    ls->pending[ls->n_pending++] = fd;
    *moved = true;
    return 0;
}

static int local_put_nosync(struct dr_store *st, const char *key, const char *src_path, char *err,
                            size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = key_ok(key, err, errlen);
    if (rc != 0)
        return rc;
    if (ls->n_pending == PENDING_MAX && (rc = local_sync(st, err, errlen)) != 0)
        return rc;
    int src = open(src_path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return set_err(err, errlen, -errno, "open source", src_path);
    bool moved;
    return move_in(ls, key, AT_FDCWD, src_path, src_path, src, &moved, err, errlen);
}

static int local_put_nosync_fd(struct dr_store *st, const char *key, int src_dirfd,
                               const char *src_name, const char *src_path, int fd, bool *moved,
                               char *err, size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = key_ok(key, err, errlen);
    if (rc == 0 && ls->n_pending == PENDING_MAX)
        rc = local_sync(st, err, errlen);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    /* fd is the file named src_name (the caller's word: it made the file
     * and nothing renames it meanwhile), so the sync below is of the
     * inode moved in, as with put_nosync's own open */
    return move_in(ls, key, src_dirfd, src_name, src_path, fd, moved, err, errlen);
}

static int local_put_nosync_mem(struct dr_store *st, const char *key, void *mem, size_t len,
                                char *err, size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = key_ok(key, err, errlen);
    if (rc == 0 && ls->n_mem == PENDING_MAX)
        rc = local_sync(st, err, errlen);
    if (rc != 0) {
        free(mem);
        return rc;
    }
    struct pending_mem *p = &ls->mem[ls->n_mem++];
    snprintf(p->key, sizeof p->key, "%s", key);
    p->mem = mem;
    p->len = len;
    return 0;
}

static int local_get(struct dr_store *st, const char *key, const char *dst_path, char *err,
                     size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = key_ok(key, err, errlen);
    if (rc != 0)
        return rc;
    const void *data;
    size_t len;
    if ((rc = small_find(ls, key, &data, &len, err, errlen)) != 0) {
        if (rc < 0)
            return rc;
        int dst = open(dst_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        rc = dst < 0 ? -errno : dr_write_all(dst, data, len);
        small_done(ls);
        if (dst >= 0)
            close(dst);
        if (rc != 0)
            set_err(err, errlen, rc, "write", dst_path);
        return rc == -ENOSPC || rc == -EIO ? -EAGAIN : rc;
    }
    int src = openat(ls->dirfd, key, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return set_err(err, errlen, -errno, errno == ENOENT ? "no such object" : "open", key);
    posix_fadvise(src, 0, 0, POSIX_FADV_SEQUENTIAL);
    int dst = open(dst_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (dst < 0) {
        rc = set_err(err, errlen, -errno, "create", dst_path);
        close(src);
        return rc;
    }
    rc = copy_fd(src, dst);
    if (rc != 0)
        set_err(err, errlen, rc, "read", key);
    close(dst);
    close(src);
    if (rc == -EIO || rc == -ENOSPC)
        rc = -EAGAIN;
    return rc;
}

static int local_open_read(struct dr_store *st, const char *key, int *fd, char *err, size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = key_ok(key, err, errlen);
    if (rc != 0)
        return rc;
    const void *data;
    size_t len;
    if ((rc = small_find(ls, key, &data, &len, err, errlen)) != 0) {
        if (rc < 0)
            return rc;
        /* a copy in memory, read from offset 0 like the file would be */
        int f = memfd_create("dripd-object", MFD_CLOEXEC);
        rc = f < 0 ? -errno : dr_write_all(f, data, len);
        small_done(ls);
        if (rc == 0 && lseek(f, 0, SEEK_SET) != 0)
            rc = -errno;
        if (rc != 0) {
            if (f >= 0)
                close(f);
            if (rc == -ENOSYS || rc == -EPERM)
                return -EOPNOTSUPP; /* no memfd here: the caller copies with get */
            return set_err(err, errlen, rc, "copy out", key);
        }
        *fd = f;
        return 0;
    }
    int f = openat(ls->dirfd, key, O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        rc = set_err(err, errlen, -errno, errno == ENOENT ? "no such object" : "open", key);
        return rc == -EIO ? -EAGAIN : rc;
    }
    *fd = f;
    return 0;
}

static long local_get_range(struct dr_store *st, const char *key, uint64_t offset, void *buf,
                            size_t len, char *err, size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = key_ok(key, err, errlen);
    if (rc != 0)
        return rc;
    const void *data;
    size_t have;
    if ((rc = small_find(ls, key, &data, &have, err, errlen)) != 0) {
        if (rc < 0)
            return rc;
        size_t n = offset >= have ? 0 : DR_MIN(len, have - (size_t)offset);
        if (n > 0)
            memcpy(buf, (const char *)data + offset, n);
        small_done(ls);
        return (long)n;
    }
    int fd = openat(ls->dirfd, key, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return set_err(err, errlen, -errno, errno == ENOENT ? "no such object" : "open", key);
    ssize_t n = dr_pread_full(fd, buf, len, offset);
    close(fd);
    if (n < 0)
        return set_err(err, errlen, (int)n, "read", key);
    return (long)n;
}

static int local_del(struct dr_store *st, const char *key, char *err, size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = key_ok(key, err, errlen);
    if (rc == 0)
        rc = small_delete(ls, key, err, errlen);
    if (rc != 0)
        return rc;
    if (unlinkat(ls->dirfd, key, 0) != 0) {
        if (errno == ENOENT)
            return 0;
        return set_err(err, errlen, -errno, "delete", key);
    }
    fsync(ls->dirfd);
    return 0;
}

static int local_exists(struct dr_store *st, const char *key, uint64_t *size, char *err,
                        size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = key_ok(key, err, errlen);
    if (rc != 0)
        return rc;
    const void *data;
    size_t len;
    if ((rc = small_find(ls, key, &data, &len, err, errlen)) != 0) {
        if (rc > 0) {
            small_done(ls);
            if (size)
                *size = len;
        }
        return rc;
    }
    struct stat sb;
    if (fstatat(ls->dirfd, key, &sb, 0) != 0) {
        if (errno == ENOENT)
            return 0;
        return set_err(err, errlen, -errno, "stat", key);
    }
    if (size)
        *size = (uint64_t)sb.st_size;
    return 1;
}

/* local_list's rows: fn for each; 1 when fn stopped, 0, -errno + err. */
static int small_list(struct local_store *ls, int (*fn)(const char *key, uint64_t size, void *arg),
                      void *arg, char *err, size_t errlen)
{
    int rc = small_open(ls, false, err, errlen);
    if (rc != 0)
        return rc == -ENOENT ? 0 : rc;
    sqlite3_stmt *q = NULL;
    int src = sqlite3_prepare_v2(ls->db, "SELECT key, length(data) FROM objects", -1, &q, NULL);
    while (src == SQLITE_OK && (src = sqlite3_step(q)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(q, 0);
        if (key != NULL && fn(key, (uint64_t)sqlite3_column_int64(q, 1), arg) != 0) {
            rc = 1;
            break;
        }
        src = SQLITE_OK;
    }
    if (rc == 0 && src != SQLITE_DONE)
        rc = small_fail(ls, src, "list", err, errlen);
    sqlite3_finalize(q);
    return rc;
}

static int local_list(struct dr_store *st, int (*fn)(const char *key, uint64_t size, void *arg),
                      void *arg, char *err, size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    int rc = small_list(ls, fn, arg, err, errlen);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    int fd = openat(ls->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return set_err(err, errlen, -errno, "open directory", ls->dir);
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return set_err(err, errlen, -errno, "open directory", ls->dir);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ".", "..", temporary files, .small.db */
        const void *data;
        size_t len;
        char ferr[256];
        if (small_find(ls, e->d_name, &data, &len, ferr, sizeof ferr) > 0) {
            small_done(ls);
            continue; /* a row, listed above */
        }
        struct stat sb;
        if (fstatat(ls->dirfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
            continue;
        if (fn(e->d_name, (uint64_t)sb.st_size, arg) != 0)
            break;
    }
    closedir(d);
    return rc;
}

static bool is_tmp(const char *name)
{
    return strncmp(name, ".tmp-", 5) == 0;
}

static int local_sweep(struct dr_store *st, size_t *removed, char *err, size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    *removed = 0;
    /* Our own open file description: a flock belongs to it (the handle's
     * dirfd holds a put's shared lock). */
    int fd = openat(ls->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return set_err(err, errlen, -errno, "open directory", ls->dir);
    int lfd = dup(fd);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (d == NULL) {
        int rc = set_err(err, errlen, -errno, "open directory", ls->dir);
        if (lfd >= 0)
            close(lfd);
        close(fd);
        return rc;
    }
    /* The names first, unlocked (a big directory is read without holding
     * puts back); usually there are none. */
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!is_tmp(e->d_name))
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            names = xrealloc(names, cap * sizeof *names);
        }
        names[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    int rc = 0;
    if (n > 0 && flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? -EAGAIN : -errno;
        set_err(err, errlen, rc, "lock directory", ls->dir);
    } else if (n > 0) {
        /* No put runs: each name that is still there is a put's leftover
         * (one that finished meanwhile renamed or removed its own). */
        for (size_t i = 0; i < n; i++)
            if (unlinkat(fd, names[i], 0) == 0)
                (*removed)++;
        if (*removed > 0)
            fsync(fd);
        flock(fd, LOCK_UN);
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    close(fd);
    return rc;
}

static int local_check(struct dr_store *st, char *err, size_t errlen)
{
    struct local_store *ls = (struct local_store *)st;
    if (faccessat(ls->dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0)
        return set_err(err, errlen, -errno, "directory not writable:", ls->dir);
    return 0;
}

static void local_close(struct dr_store *st)
{
    struct local_store *ls = (struct local_store *)st;
    drop_pending(ls); /* not synced: the caller did not count on them */
    drop_mem(ls);
    small_close(ls);
    if (ls->dirfd >= 0)
        close(ls->dirfd);
    free(ls->dir);
    free(ls);
}

static const struct dr_store_ops local_ops = {
    .name = "local",
    .put = local_put,
    .get = local_get,
    .get_range = local_get_range,
    .del = local_del,
    .exists = local_exists,
    .list = local_list,
    .check = local_check,
    .close = local_close,
    .open_read = local_open_read,
    .sweep = local_sweep,
    .put_nosync = local_put_nosync,
    .put_nosync_fd = local_put_nosync_fd,
    .put_nosync_mem = local_put_nosync_mem,
    .sync = local_sync,
};

int store_local_open(const struct dr_config *cfg, struct dr_store **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *dir = cfg->storage.local.path;
    if (dir == NULL || *dir == '\0') {
        snprintf(err, errlen, "storage.local.path is not set");
        return -EINVAL;
    }
    /* the directory is made only when it is missing: every handle open
     * (the store probe opens one every few seconds) used to cost an mkdir
     * per path component */
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        int rc = dr_mkdirs(dir, 0700);
        if (rc != 0)
            return set_err(err, errlen, rc, "create directory", dir);
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    }
    if (fd < 0)
        return set_err(err, errlen, -errno, "open directory", dir);
    struct local_store *ls = xcalloc(1, sizeof *ls);
    ls->base.ops = &local_ops;
    ls->base.cfg = cfg;
    ls->dir = xstrdup(dir);
    ls->dirfd = fd;
    *out = &ls->base;
    return 0;
}

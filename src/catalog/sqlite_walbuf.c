/* sqlite_walbuf.c - a SQLite VFS that writes a transaction's WAL frames
 * with one pwrite (see sqlite_walbuf.h).
 *
 * Why: SQLite writes a WAL frame as two writes, its 24-byte header and
 * then the page, one frame per page a transaction changed, and the unix
 * VFS makes each a pwrite: ~4-8 system calls per 4 KiB upload in
 * dripd-http's intake commits and ~4.5 in the pipeline's step commits
 * (issue 15; on the bench VM every system call also pays a
 * paravirtualised interrupt enable).
 *
 * How: "dripd-walbuf" is a copy of the default VFS ("unix") with its own
 * xOpen. Every file is the default VFS's file behind methods that pass
 * each call on, except for a WAL file (SQLITE_OPEN_WAL): a write that
 * continues the previous one (a transaction's frames are consecutive)
 * goes into a buffer of WALBUF_SIZE bytes, written with one pwrite:
 *   - right after the page of the frame whose header marks a commit (its
 *     database-size field is not 0): the commit's frames are in the file
 *     (the page cache) when its last write returns, and an error writing
 *     them is that write's error, as without the buffer;
 *   - when a write does not continue the buffer or would overflow it;
 *   - before anything else touches the file: read, sync, truncate, size,
 *     file control, close;
 *   - before the database file's shared memory is barriered or locked:
 *     other connections learn of frames only from the wal-index header,
 *     which SQLite writes around a barrier. The commit rule has written
 *     them by then, so this is a safety net; should a write fail there,
 *     where it cannot be reported, the process aborts rather than let a
 *     reader find a committed frame missing.
 * A write to an offset this write transaction already wrote (a frame
 * rewritten in place, checksums rewritten after a cache spill) goes
 * straight to the file. What a transaction wrote is counted from when it
 * takes the WAL's write lock (xShmLock of WAL_WRITE_LOCK): another
 * connection may have restarted the WAL since this one last wrote, and
 * then this one's frames go below its old end. Counted from its first
 * write instead, every frame went through unbuffered, one pwrite per
 * header and one per page, in every connection but the one that
 * restarted the WAL (issue 15: 8 of 9 of dripd-http's WAL writes under
 * load). A write at offset 0 (a new WAL's header) starts the WAL over.
 * Frames that never commit (a spill, then a rollback) are written like
 * the others; SQLite never publishes them.
 *
 * Threads: SQLite uses a sqlite3_file from one thread at a time, and the
 * buffer belongs to its file; a WAL file reaches its database file with
 * sqlite3_database_file_object(), and the database file (which outlives
 * its WAL's handle) points back while the WAL is open. The two counters
 * are atomics.
 */
#include "sqlite_walbuf.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/log.h"

#define WALBUF_SIZE (128u << 10) /* bytes of frames held per WAL file */
#define WAL_HDR 32               /* the WAL file's header */
#define WAL_FRAME_HDR 24         /* each frame's header */
#define WAL_WRITE_LOCK 0         /* the wal-index lock slot of the one writer (wal.c) */

struct wb_file {
    sqlite3_file base;   /* pMethods: &wb_io */
    sqlite3_file *real;  /* the default VFS's file, after this struct */
    struct wb_file *wal; /* a database file: its WAL file while open */
    struct wb_file *db;  /* a WAL file: its database file */
    bool is_wal;         /* buffer this file's writes */
    bool commit_next;    /* the next write is a commit's last page */
    unsigned char *buf;  /* pending bytes (sqlite3_malloc'd on first use) */
    size_t len;          /* of buf */
    sqlite3_int64 off;   /* file offset of buf[0] */
    sqlite3_int64 end;   /* the end of what this write transaction wrote (or holds) */
};

#define FILE_HDR ((sizeof(struct wb_file) + 7) & ~(size_t)7)

static sqlite3_vfs *g_real; /* the default VFS */
static sqlite3_vfs g_vfs;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static int g_rc;                 /* of the registration */
static uint64_t g_asked, g_made; /* atomics */

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int flush(struct wb_file *w)
{
    if (w->len == 0)
        return SQLITE_OK;
    int rc = w->real->pMethods->xWrite(w->real, w->buf, (int)w->len, w->off);
    __atomic_add_fetch(&g_made, 1, __ATOMIC_RELAXED);
    w->len = 0; /* written or failed: the transaction hears of it either way */
    return rc;
}

/* The database file's WAL, its pending frames written (the shm methods). */
static int flush_wal_of(sqlite3_file *f)
{
    struct wb_file *w = ((struct wb_file *)f)->wal;
    return w != NULL ? flush(w) : SQLITE_OK;
}

static int wal_write(struct wb_file *w, const unsigned char *p, int n, sqlite3_int64 off)
{
    __atomic_add_fetch(&g_asked, 1, __ATOMIC_RELAXED);
    bool ends_commit = w->commit_next;
    w->commit_next = false;
    int rc;
    if (w->len > 0 && (off != w->off + (sqlite3_int64)w->len || w->len + (size_t)n > WALBUF_SIZE) &&
        (rc = flush(w)) != SQLITE_OK)
        return rc;
    if (off == 0)
        w->end = 0; /* a new WAL: its header, then frames from WAL_HDR on */
    sqlite3_int64 to = off + n;
    if (w->len == 0 && (off < w->end || (size_t)n > WALBUF_SIZE)) {
        /* written again in place, or too big to hold: straight through */
        if (to > w->end)
            w->end = to;
        __atomic_add_fetch(&g_made, 1, __ATOMIC_RELAXED);
        return w->real->pMethods->xWrite(w->real, p, n, off);
    }
    if (w->buf == NULL && (w->buf = sqlite3_malloc((int)WALBUF_SIZE)) == NULL)
        return SQLITE_IOERR_NOMEM;
    if (w->len == 0)
        w->off = off;
    memcpy(w->buf + w->len, p, (size_t)n);
    w->len += (size_t)n;
    if (to > w->end)
        w->end = to;
    if (n == WAL_FRAME_HDR && off >= WAL_HDR && be32(p + 4) != 0)
        w->commit_next = true;
    else if (ends_commit)
        return flush(w);
    return SQLITE_OK;
}

/* ---- io methods: pass on, writing a WAL's pending frames first ---------- */

#define REAL(f) (((struct wb_file *)(f))->real)
#define FLUSH_WAL(f)                                                                               \
    do {                                                                                           \
        struct wb_file *w_ = (struct wb_file *)(f);                                                \
        int rc_ = w_->is_wal ? flush(w_) : SQLITE_OK;                                              \
        if (rc_ != SQLITE_OK)                                                                      \
            return rc_;                                                                            \
    } while (0)

static int wb_close(sqlite3_file *f)
{
    struct wb_file *w = (struct wb_file *)f;
    int rc = w->is_wal ? flush(w) : SQLITE_OK;
    if (w->db != NULL && w->db->wal == w)
        w->db->wal = NULL;
    if (w->wal != NULL)
        w->wal->db = NULL;
    sqlite3_free(w->buf);
    w->buf = NULL;
    int rc2 = w->real->pMethods->xClose(w->real);
    return rc != SQLITE_OK ? rc : rc2;
}

static int wb_read(sqlite3_file *f, void *p, int n, sqlite3_int64 off)
{
    FLUSH_WAL(f);
    return REAL(f)->pMethods->xRead(REAL(f), p, n, off);
}

static int wb_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 off)
{
    struct wb_file *w = (struct wb_file *)f;
    if (w->is_wal)
        return wal_write(w, p, n, off);
    return w->real->pMethods->xWrite(w->real, p, n, off);
}

static int wb_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    struct wb_file *w = (struct wb_file *)f;
    FLUSH_WAL(f);
    if (w->is_wal && w->end > size)
        w->end = size;
    return w->real->pMethods->xTruncate(w->real, size);
}

static int wb_sync(sqlite3_file *f, int flags)
{
    FLUSH_WAL(f);
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int wb_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    FLUSH_WAL(f);
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int wb_lock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xLock(REAL(f), lock);
}

static int wb_unlock(sqlite3_file *f, int lock)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), lock);
}

static int wb_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int wb_file_control(sqlite3_file *f, int op, void *arg)
{
    FLUSH_WAL(f);
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int wb_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int wb_device_characteristics(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int wb_shm_map(sqlite3_file *f, int pg, int pgsz, int extend, void volatile **pp)
{
    if (REAL(f)->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMMAP;
    return REAL(f)->pMethods->xShmMap(REAL(f), pg, pgsz, extend, pp);
}

static int wb_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    int rc = flush_wal_of(f);
    if (rc != SQLITE_OK)
        return rc;
    if (REAL(f)->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMLOCK;
    rc = REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
    struct wb_file *wal = ((struct wb_file *)f)->wal;
    if (rc == SQLITE_OK && offset == WAL_WRITE_LOCK && (flags & SQLITE_SHM_LOCK) &&
        (flags & SQLITE_SHM_EXCLUSIVE) && wal != NULL)
        wal->end = 0; /* a new write transaction: nothing of it written yet */
    return rc;
}

static void wb_shm_barrier(sqlite3_file *f)
{
    int rc = flush_wal_of(f);
    if (rc != SQLITE_OK) {
        /* the commit rule wrote every published frame: never reached */
        log_error("catalog: writing WAL frames before publishing them failed (%d)", rc);
        abort();
    }
    if (REAL(f)->pMethods->iVersion >= 2)
        REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int wb_shm_unmap(sqlite3_file *f, int delete_flag)
{
    if (REAL(f)->pMethods->iVersion < 2)
        return SQLITE_OK;
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int wb_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **pp)
{
    if (REAL(f)->pMethods->iVersion < 3) {
        *pp = NULL;
        return SQLITE_OK;
    }
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, pp);
}

static int wb_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    if (REAL(f)->pMethods->iVersion < 3)
        return SQLITE_OK;
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods wb_io = {
    .iVersion = 3,
    .xClose = wb_close,
    .xRead = wb_read,
    .xWrite = wb_write,
    .xTruncate = wb_truncate,
    .xSync = wb_sync,
    .xFileSize = wb_file_size,
    .xLock = wb_lock,
    .xUnlock = wb_unlock,
    .xCheckReservedLock = wb_check_reserved,
    .xFileControl = wb_file_control,
    .xSectorSize = wb_sector_size,
    .xDeviceCharacteristics = wb_device_characteristics,
    .xShmMap = wb_shm_map,
    .xShmLock = wb_shm_lock,
    .xShmBarrier = wb_shm_barrier,
    .xShmUnmap = wb_shm_unmap,
    .xFetch = wb_fetch,
    .xUnfetch = wb_unfetch,
};

/* ---- the VFS -------------------------------------------------------------- */

static int wb_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags, int *out)
{
    (void)vfs;
    struct wb_file *w = (struct wb_file *)f;
    memset(w, 0, sizeof *w);
    w->real = (sqlite3_file *)((char *)f + FILE_HDR);
    int rc = g_real->xOpen(g_real, name, w->real, flags, out);
    if (w->real->pMethods == NULL) {
        w->base.pMethods = NULL; /* nothing to close */
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    w->base.pMethods = &wb_io;
    if (rc == SQLITE_OK && (flags & SQLITE_OPEN_WAL) && name != NULL) {
        w->is_wal = true;
        w->db = (struct wb_file *)sqlite3_database_file_object(name);
        if (w->db != NULL && w->db->base.pMethods == &wb_io)
            w->db->wal = w;
        else
            w->db = NULL;
    }
    return rc;
}

static void do_register(void)
{
    g_real = sqlite3_vfs_find(NULL);
    if (g_real == NULL) {
        g_rc = -ENOSYS;
        return;
    }
    /* The methods that take no file stay the default VFS's, called with
     * this one: the unix VFS reads nothing of it but pAppData, copied. */
    g_vfs = *g_real;
    g_vfs.pNext = NULL;
    g_vfs.zName = SQLITE_WALBUF_VFS;
    g_vfs.szOsFile = (int)FILE_HDR + g_real->szOsFile;
    g_vfs.xOpen = wb_open;
    g_rc = sqlite3_vfs_register(&g_vfs, 0) == SQLITE_OK ? 0 : -ENOMEM;
}

int sqlite_walbuf_register(void)
{
    pthread_once(&g_once, do_register);
    return g_rc;
}

void sqlite_walbuf_counts(uint64_t *asked, uint64_t *made)
{
    *asked = __atomic_load_n(&g_asked, __ATOMIC_RELAXED);
    *made = __atomic_load_n(&g_made, __ATOMIC_RELAXED);
}

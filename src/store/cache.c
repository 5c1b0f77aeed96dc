/* cache.c - the node-local plaintext cache and its evictor (cache.h has the
 * conventions shared with the http worker).
 *
 * DESIGN
 *
 * The cache is a plain directory, <data_dir>/cache, one file per media id;
 * there is no index to corrupt or to keep in sync across processes. The
 * file system's own metadata is the state: MTIME = filled at (TTL), ATIME
 * = last served (LRU), flock = "being served".
 *
 * Filling: the download pipeline writes cache/<id>.tmp.<random> (a new file,
 * or a recycled one: below) and renames it (cache_take_tmp/cache_seal_tmp/
 * cache_commit_tmp) once every byte is verified; a
 * finished upload renames its fsynced spool file in (cache_adopt: a hard
 * link, no directory fsync, see cache.h), or moves in the scratch copy of
 * its bytes the pipeline wrote and never synced (an inline or a fetched
 * staged body: cache_adopt_scratch, made 0400 as a fill is). All stamp
 * atime = mtime = now.
 *
 * A fill is derived data and is never fsynced (issue 15): a process crash
 * cannot tear it (the page cache holds what was written before the
 * rename), and a power cut may. So a fill is created mode 0400, which
 * marks it "maybe not durable" (an adopted upload keeps its 0600: its
 * bytes were fsynced before the 202), and cache_drop_unsynced(), run by
 * the supervisor at every start, removes every entry that is not 0600-like
 * (readable and writable by its owner: 0400 fills, 0200 refills, below)
 * when the machine rebooted since the last start (the boot id in
 * run/cache-boot changed).
 * A lost fill is a miss; a fill whose bytes did not reach the disk is
 * never served. (The http side also refuses an entry whose size is not
 * the media's.) There is no per-entry identity tag (an xattr or a header
 * with the id and SHA-256) that a reader checks: that would be a system
 * call or a read per GET, and what ties a file to its name is the rule
 * below that a file a reader holds never reaches the free pool.
 *
 * Recycling (issue 15): creating a file is a third of a cold GET's
 * system time on ext4 without a journal, whose inode allocator skips (and
 * re-reads the inode table for) every inode deleted in the last minute or
 * so: an evicting cache that unlinks one file per fill makes each create
 * scan all of them. So the evictor does not unlink an evicted fill: under
 * the entry's LOCK_EX it renames it to a name of its own, checks that
 * this name holds the inode it locked (see "Evicting"), makes it mode
 * 0200 and renames it to cache/.free/<random>; a fill (cache_take_tmp)
 * claims a free file by renaming it to its .tmp name, and refills it
 * only if it is 0200 with one link and it gets flock(LOCK_EX|LOCK_NB) on
 * it (else the file is unlinked): truncated to 0 first (never written
 * over, see "Sendfile"), then made 0400 again (cache_seal_tmp) before
 * the rename into place. The pool is bounded:
 * at most FREE_MAX files, and its bytes count toward cache.max_size; the
 * LRU pass brings the entries down to max_size less a slack (a sixteenth,
 * at most SLACK_MAX) so what it evicts can wait in the pool, then unlinks
 * free files while entries + pool exceed max_size. Only unsynced fills
 * (0400, one link) are recycled; an adopted upload is unlinked as before.
 * Crash safety is the fills': a free file is writable and not readable
 * (0200), so it is never served, and a refill becomes an entry only
 * after it was rewritten and made 0400. After a reboot every entry that
 * is not both readable and writable by its owner (0400 fills, and a
 * 0200 refill whose chmod a cut lost) is dropped; a cut may leave the
 * previous entry's bytes in a recycled file, which therefore goes too.
 *
 * Reading (cache_open_fresh, any process): open, flock(LOCK_SH), then
 * re-check that the open file is still the one named cache/<id> (the
 * evictor may have unlinked it, or a new fill replaced it, between our open
 * and our lock), refuse a file its owner cannot read (a free file a cut
 * left under the name: root reads it all the same), check the TTL, set
 * atime (unless it is less than a second
 * old: the LRU order is kept to the second, without an inode write per GET). The shared lock is
 * held until the reader closes the fd.
 *
 * Sendfile: the http worker serves an entry with sendfile(), which puts
 * the file's page-cache pages into the socket by reference (on loopback
 * they wait in the client's receive queue until it reads), and its lock
 * goes when sendfile has returned, not when the client has the bytes. So
 * a file that was an entry is never written over in place: a recycled
 * one is truncated to 0 before its refill, which takes the old pages out
 * of the file and leaves them to whoever still references them. Written
 * over, they sent another entry's bytes inside a response that had
 * already left the server (the torn downloads of make test-powerloss,
 * issue 15: one media's first 1.9 MB, then another's bytes).
 *
 * Evicting (cache_evict_pass, the "cache-evict" thread of the pipeline
 * process): scan, expire by mtime, then drop least recently used entries
 * until they fit cache.max_size less the slack, then trim the free pool
 * until entries + pool fit cache.max_size. An entry is unlinked (or moved
 * to the pool) only under flock(LOCK_EX|LOCK_NB) on the inode the pass
 * scanned; a held entry is skipped, so a reader never loses the file it
 * serves (and, thanks to the re-check above, never serves an unlinked one
 * after waiting for the lock). A rename or an unlink goes by name, and a
 * fill (or an adopt) may publish a new inode under the name between the
 * lock and the rename; a reader may already hold that new file. Moved
 * straight into the pool, it was refilled with another entry's bytes
 * under that reader (the wrong-bytes downloads of the power-cut suite,
 * issue 15). So the evictor first renames the name to
 * <name>.tmp.x<random>, which nobody else uses, and goes on only if that
 * holds the inode it locked; a newer file taken by mistake is renamed
 * back (RENAME_NOREPLACE; if an even newer one took the name meanwhile
 * it is unlinked, never pooled). The thread runs a pass when inserts may
 * have pushed the cache over max_size and on a timer (ttl/4, 1..60 s); in
 * between, the cache_bytes gauge follows the inserts within a second (the
 * last pass's total plus the bytes inserted since: an entry removed by
 * cache_remove counts until the next pass).
 *
 * Lock order: the evictor's own mutex guards only its counters and flags;
 * flock()s are never held while taking it. A pass holds at most one entry's
 * flock at a time.
 */
#include "dripd/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/util.h"

#define TMP_MAX_AGE_MS (3600 * 1000)
#define ATIME_STEP_MS 1000 /* the LRU clock's resolution (cache_open_fresh) */
/* The mode of a fill, never fsynced (see the top); an adopted file is 0600. */
#define CACHE_UNSYNCED_MODE 0400
/* The mode of a free file (see the top): writable, never readable, so it
 * can be refilled without a chmod that could reach the disk before the
 * bytes do, and it is never served. */
#define CACHE_FREE_MODE 0200
/* The free files kept for recycling (see the top): at most FREE_MAX of
 * them, about the LRU pass's slack in bytes. */
#define FREE_DIR ".free"
#define FREE_MAX 64
#define SLACK_MAX ((uint64_t)64 << 20)
/* Whether the pool is worth a look (a cold GET's fill otherwise opens and
 * reads an empty directory: 5 system calls). Files are pooled only by the
 * evictor, which runs in the pipeline worker, the process whose fills take
 * them: pool_gen counts the files this process pooled, and a take that
 * found the pool empty records the count it saw before looking
 * (pool_empty_gen). The next take looks again only once a file was pooled
 * since. A new process starts with "maybe" (what an earlier worker pooled
 * is still there). */
static _Atomic uint64_t pool_gen = 1;
static _Atomic uint64_t pool_empty_gen;
/* An entry filled by the download pipeline is not an LRU victim until its
 * first read or for this long, so the request that ran the download can
 * open it even when the entry alone is larger than cache.max_size (the
 * cache may overshoot by such unread entries). TTL expiry still applies. */
static int64_t cache_pin_ms = 30 * 1000;

void cache_set_pin_ms(int64_t ms)
{
    cache_pin_ms = ms;
}

char *cache_path(const char *data_dir, const char *id)
{
    return xasprintf("%s/cache/%s", data_dir, id);
}

static char *cache_dir(const char *data_dir)
{
    return xasprintf("%s/cache", data_dir);
}

static int64_t ts_ms(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

static bool stale(const struct stat *st, uint64_t ttl_ms)
{
    return ttl_ms > 0 && dr_now_ms() - ts_ms(&st->st_mtim) > (int64_t)ttl_ms;
}

static bool valid_id(const char *id)
{
    return id && *id && strchr(id, '/') == NULL && id[0] != '.' && strlen(id) < 128;
}

/* A file whose bytes may not be on the disk: a fill (0400), a free file or
 * one being refilled (0200). Only a durable (adopted) file is both
 * readable and writable by its owner. */
static bool unsynced_mode(mode_t mode)
{
    return (mode & (S_IRUSR | S_IWUSR)) != (S_IRUSR | S_IWUSR);
}

/* How far below max_size the LRU pass brings the entries, so that what it
 * evicts can wait in the free pool for the next fills. */
static uint64_t slack(uint64_t max_size)
{
    return DR_MIN(max_size / 16, SLACK_MAX);
}

int cache_open_fresh(const char *data_dir, const char *id, uint64_t ttl_ms, struct dr_metrics *m,
                     int *fd_out, uint64_t *size)
{
    if (!valid_id(id))
        return -EINVAL;
    char *path = cache_path(data_dir, id);
    int rc = -ENOENT;
    for (int tries = 0; tries < 3; tries++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
            rc = errno == ENOENT ? -ENOENT : -errno;
            break;
        }
        struct stat st, cur;
        if (flock(fd, LOCK_SH) != 0 || fstat(fd, &st) != 0) {
            rc = -errno;
            close(fd);
            break;
        }
        /* Evicted or replaced between open and lock? Try the current one. */
        if (st.st_nlink == 0 || stat(path, &cur) != 0 || cur.st_ino != st.st_ino ||
            cur.st_dev != st.st_dev) {
            close(fd);
            rc = -ENOENT;
            continue;
        }
        /* not readable by its owner: a free file (0200) a cut left under
         * the name; root could read it all the same */
        if (!S_ISREG(st.st_mode) || !(st.st_mode & S_IRUSR) || stale(&st, ttl_ms)) {
            close(fd);
            rc = -ENOENT;
            break;
        }
        /* the LRU clock, to the second: an atime this recent is left alone
         * (a write of the inode per GET otherwise); one in the future is a
         * reservation (cache_commit_tmp) that the first read ends */
        int64_t at = ts_ms(&st.st_atim), now = dr_now_ms();
        if (at > now || now - at >= ATIME_STEP_MS) {
            struct timespec ts[2] = {{.tv_nsec = UTIME_NOW}, {.tv_nsec = UTIME_OMIT}};
            futimens(fd, ts);
        }
        *fd_out = fd;
        if (size)
            *size = (uint64_t)st.st_size;
        rc = 0;
        break;
    }
    free(path);
    if (m)
        metrics_add(rc == 0 ? &m->cache_hits : &m->cache_misses, 1);
    return rc;
}

bool cache_is_fresh(const char *data_dir, const char *id, uint64_t ttl_ms, uint64_t *size)
{
    if (!valid_id(id))
        return false;
    char *path = cache_path(data_dir, id);
    struct stat st;
    bool ok = stat(path, &st) == 0 && S_ISREG(st.st_mode) && !stale(&st, ttl_ms);
    free(path);
    if (ok && size)
        *size = (uint64_t)st.st_size;
    return ok;
}

int cache_create_tmp(const char *data_dir, const char *id, int *fd, char **tmp_path)
{
    if (!valid_id(id))
        return -EINVAL;
    uint8_t r[6];
    char hex[13];
    dr_random(r, sizeof r);
    dr_hex(r, sizeof r, hex);
    char *p = xasprintf("%s/cache/%s.tmp.%s", data_dir, id, hex);
    int f = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, CACHE_UNSYNCED_MODE);
    if (f < 0 && errno == ENOENT) { /* the first entry: make the directory */
        char *dir = cache_dir(data_dir);
        int rc = dr_mkdirs(dir, 0700);
        free(dir);
        if (rc != 0) {
            free(p);
            return rc;
        }
        f = open(p, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, CACHE_UNSYNCED_MODE);
    }
    if (f < 0) {
        int rc = -errno;
        free(p);
        return rc;
    }
    *fd = f;
    *tmp_path = p;
    return 0;
}

/* Claim a free file for id as cache/<id>.tmp.<hex> (renamed out of
 * cache/.free: the rename is the claim, so two fills never share one) and
 * open it for writing into *t. -ENOENT when the pool is empty. */
static int take_free(const char *data_dir, const char *id, const char *hex, struct cache_tmp *t)
{
    uint64_t gen = atomic_load(&pool_gen);
    if (atomic_load(&pool_empty_gen) == gen)
        return -ENOENT; /* empty when last looked, nothing pooled since (see FREE_MAX) */
    char *fdir = xasprintf("%s/cache/" FREE_DIR, data_dir);
    DIR *d = opendir(fdir);
    free(fdir);
    if (d == NULL) {
        if (errno == ENOENT)
            atomic_store(&pool_empty_gen, gen);
        return -ENOENT;
    }
    char *p = xasprintf("%s/cache/%s.tmp.%s", data_dir, id, hex);
    int rc = -ENOENT;
    struct dirent *e;
    while (rc == -ENOENT && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (renameat(dirfd(d), e->d_name, AT_FDCWD, p) != 0)
            continue; /* taken by another fill meanwhile */
        /* Only a file the evictor pooled (0200, one link) that nobody
         * holds is overwritten; anything else (a cut lost its chmod, a
         * reader holds it) is dropped: unlinked, its readers keep their
         * bytes. The lock is held until the fill closes t->fd. */
        int f = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        if (f < 0 || fstat(f, &st) != 0 || !S_ISREG(st.st_mode) ||
            (st.st_mode & 0777) != CACHE_FREE_MODE || st.st_nlink != 1 ||
            flock(f, LOCK_EX | LOCK_NB) != 0) {
            if (f >= 0)
                close(f);
            unlink(p);
            continue;
        }
        /* Empty before a byte is written: never over pages a response
         * may still reference (see "Sendfile" at the top). The truncate
         * takes the old pages out of the file, whoever references them
         * keeps them, and the fill writes new ones; the inode is still
         * reused (no create). */
        if (ftruncate(f, 0) != 0) {
            close(f);
            unlink(p);
            continue;
        }
        /* a fresh mtime: the pass removes .tmp files by age */
        futimens(f, NULL);
        t->fd = f;
        t->old_size = (uint64_t)st.st_size;
        t->recycled = true;
        rc = 0;
    }
    closedir(d);
    if (rc == 0) {
        t->path = p;
    } else {
        free(p);
        atomic_store(&pool_empty_gen, gen);
    }
    return rc;
}

int cache_take_tmp(const char *data_dir, const char *id, struct cache_tmp *t)
{
    memset(t, 0, sizeof *t);
    t->fd = -1;
    if (!valid_id(id))
        return -EINVAL;
    uint8_t r[6];
    char hex[13];
    dr_random(r, sizeof r);
    dr_hex(r, sizeof r, hex);
    if (take_free(data_dir, id, hex, t) == 0)
        return 0;
    return cache_create_tmp(data_dir, id, &t->fd, &t->path);
}

int cache_seal_tmp(const struct cache_tmp *t, uint64_t size)
{
    (void)size; /* a recycled file was emptied when taken: what was written is all of it */
    if (!t->recycled)
        return 0; /* created 0400 */
    /* 0400 before the rename: what cache_drop_unsynced drops after a cut
     * (a cut that loses this chmod leaves 0200, dropped as well) */
    return fchmod(t->fd, CACHE_UNSYNCED_MODE) == 0 ? 0 : -errno;
}

enum {
    PUB_REMOVE_ON_FAIL = 1 << 0, /* unlink src if it cannot be published */
    PUB_RESERVE = 1 << 1,        /* atime in the future (see cache_commit_tmp) */
    PUB_LINK = 1 << 2,           /* link src in (src keeps its name), do not move it */
    PUB_UNSYNCED = 1 << 3,       /* mark src an unsynced fill (mode 0400) before the move */
};

/* src at dst: moved, or (PUB_LINK) linked, replacing what is there. */
static int place(const char *src, const char *dst, unsigned flags)
{
    if (!(flags & PUB_LINK))
        return rename(src, dst) == 0 ? 0 : -errno;
    if (link(src, dst) == 0)
        return 0;
    if (errno != EEXIST)
        return -errno;
    char *tmp = xasprintf("%s.tmp.link", dst); /* replaced atomically */
    unlink(tmp);
    int rc = link(src, tmp) == 0 ? 0 : -errno;
    if (rc == 0 && rename(tmp, dst) != 0) {
        rc = -errno;
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* Put src into the cache as id. mtime = now (the TTL clock); atime = now,
 * or now + cache_pin_ms with PUB_RESERVE. */
static int publish(const char *data_dir, const char *id, const char *src, unsigned flags)
{
    struct timespec ts[2];
    clock_gettime(CLOCK_REALTIME, &ts[1]);
    ts[0] = ts[1];
    if (flags & PUB_RESERVE)
        ts[0].tv_sec += cache_pin_ms / 1000;
    if (!valid_id(id))
        return -EINVAL;
    int rc = 0;
    char *dst = cache_path(data_dir, id);
    if (utimensat(AT_FDCWD, src, ts, 0) != 0)
        rc = -errno;
    if (rc == 0 && (flags & PUB_UNSYNCED) && chmod(src, CACHE_UNSYNCED_MODE) != 0)
        rc = -errno;
    if (rc == 0)
        rc = place(src, dst, flags);
    if (rc == -ENOENT) { /* the cache directory is gone (src is there: utimensat) */
        char *dir = cache_dir(data_dir);
        rc = dr_mkdirs(dir, 0700);
        free(dir);
        if (rc == 0)
            rc = place(src, dst, flags);
    }
    if (rc != 0 && (flags & PUB_REMOVE_ON_FAIL))
        unlink(src);
    free(dst);
    return rc;
}

int cache_commit_tmp(const char *data_dir, const char *id, const char *tmp_path)
{
    /* Reserve the entry for the request that is waiting for it: an atime
     * in the future is "not yet read", and the LRU pass skips it until
     * then or until a reader touches it (setting atime to now). Nothing is
     * fsynced: see the top. */
    return publish(data_dir, id, tmp_path, PUB_REMOVE_ON_FAIL | PUB_RESERVE);
}

/* This boot's id (DRIPD_TEST_BOOT_ID stands in for it in tests): 0 and
 * out, or -errno. */
static int boot_id(char *out, size_t outlen)
{
    const char *t = getenv("DRIPD_TEST_BOOT_ID");
    if (t && *t) {
        snprintf(out, outlen, "%s", t);
        return 0;
    }
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, out, outlen - 1);
    int rc = n > 0 ? 0 : -EIO;
    close(fd);
    out[n > 0 ? n : 0] = '\0';
    out[strcspn(out, "\n")] = '\0';
    return rc;
}

int cache_drop_unsynced(const char *data_dir, size_t *dropped)
{
    *dropped = 0;
    char now[64], was[64] = "";
    int rc = boot_id(now, sizeof now);
    if (rc != 0)
        snprintf(now, sizeof now, "unknown"); /* no id: every start is after a reboot */
    char *rec = xasprintf("%s/run/cache-boot", data_dir);
    int fd = open(rec, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, was, sizeof was - 1);
        was[n > 0 ? n : 0] = '\0';
        close(fd);
    }
    if (rc == 0 && strcmp(now, was) == 0) {
        free(rec);
        return 0; /* same boot: the page cache kept every fill */
    }
    char *dir = cache_dir(data_dir);
    DIR *d = opendir(dir);
    free(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            struct stat st;
            if (e->d_name[0] == '.' ||
                fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                !S_ISREG(st.st_mode) || !unsynced_mode(st.st_mode))
                continue;
            if (unlinkat(dirfd(d), e->d_name, 0) == 0)
                (*dropped)++;
        }
        closedir(d);
    }
    /* Record this boot (durably: a cut before it only repeats the sweep). */
    char *tmp = xasprintf("%s.tmp", rec);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    rc = fd < 0 ? -errno : 0;
    if (rc == 0 && (dr_write_all(fd, now, strlen(now)) != 0 || fsync(fd) != 0))
        rc = -EIO;
    if (fd >= 0)
        close(fd);
    if (rc == 0 && rename(tmp, rec) != 0)
        rc = -errno;
    if (rc == 0)
        dr_fsync_parent(rec);
    else
        unlink(tmp);
    free(tmp);
    free(rec);
    return rc;
}

int cache_adopt(const char *data_dir, const char *id, const char *path)
{
    return publish(data_dir, id, path, PUB_LINK);
}

int cache_adopt_scratch(const char *data_dir, const char *id, const char *path)
{
    return publish(data_dir, id, path, PUB_UNSYNCED);
}

/* Take dir/name out of the cache, if it is the inode want (0: whichever it
 * is now), only under an exclusive, non-blocking flock on that inode:
 * into the free pool (cache/.free/<random> in pooled, mode 0200) when
 * free_fd >= 0 and it is an unsynced fill, else unlinked. 1 removed, 2
 * moved to the pool, 0 absent (or replaced meanwhile), -EBUSY held by a
 * reader.
 *
 * A fill or an adopt may publish a new inode under name at any time, also
 * between our lock and our rename, and a rename (or an unlink) goes by
 * name: it would take the new file, which a reader may hold, having
 * opened, locked and re-checked it after the publish. So the file is
 * first renamed to a name only this call knows (<name>.tmp.x<random>),
 * and only if that name holds the locked inode does it go on to the pool
 * or away; a new file taken by mistake is put back (or, when an even
 * newer one took the name meanwhile, unlinked: never recycled). */
static int evict_to(int dirfd, const char *name, ino_t want, int free_fd, char pooled[16])
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int rc;
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
        close(fd);
        return rc;
    }
    struct stat a, b;
    if (fstat(fd, &a) != 0 || a.st_nlink == 0 || (want != 0 && a.st_ino != want)) {
        close(fd); /* replaced meanwhile: leave the new one for the next pass */
        return 0;
    }
    uint8_t r[6];
    char hex[13];
    dr_random(r, sizeof r);
    dr_hex(r, sizeof r, hex);
    char *own = xasprintf("%s.tmp.x%s", name, hex);
    if (renameat(dirfd, name, dirfd, own) != 0) {
        rc = errno == ENOENT ? 0 : -errno;
        goto out;
    }
    if (fstatat(dirfd, own, &b, AT_SYMLINK_NOFOLLOW) != 0) {
        rc = 0; /* the pass's sweep of old .tmp. names took it: unlinked */
        goto out;
    }
    if (b.st_ino != a.st_ino || b.st_dev != a.st_dev) {
        /* a newer entry, not ours (ours lost its name to it): back it goes */
        if (renameat2(dirfd, own, dirfd, name, RENAME_NOREPLACE) != 0)
            unlinkat(dirfd, own, 0);
        rc = 0;
        goto out;
    }
    /* Ours, under a name nobody else uses: made writable, then pooled (a
     * reader that opened it before the rename and waits for our lock finds
     * the name moved once it has the lock, and does not serve it). */
    if (free_fd >= 0 && (a.st_mode & 0777) == CACHE_UNSYNCED_MODE && a.st_nlink == 1 &&
        fchmod(fd, CACHE_FREE_MODE) == 0) {
        dr_random(r, sizeof r);
        dr_hex(r, sizeof r, pooled);
        if (renameat(dirfd, own, free_fd, pooled) == 0) {
            atomic_fetch_add(&pool_gen, 1);
            rc = 2;
            goto out;
        }
    }
    rc = unlinkat(dirfd, own, 0) == 0 || errno == ENOENT ? 1 : -errno;
out:
    free(own);
    close(fd);
    return rc;
}

int cache_remove(const char *data_dir, const char *id)
{
    if (!valid_id(id))
        return -EINVAL;
    char *dir = cache_dir(data_dir);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (dirfd < 0)
        return errno == ENOENT ? 0 : -errno;
    char unused[16];
    int rc = evict_to(dirfd, id, 0, -1, unused);
    close(dirfd);
    return rc;
}

struct entry {
    char *name;
    ino_t ino; /* the file scanned: a newer one under the name is left alone */
    uint64_t size;
    struct timespec atime;
    bool young; /* atime in the future: filled for a waiter that has not read it yet */
};

static int by_atime(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->atime.tv_sec != y->atime.tv_sec)
        return x->atime.tv_sec < y->atime.tv_sec ? -1 : 1;
    if (x->atime.tv_nsec != y->atime.tv_nsec)
        return x->atime.tv_nsec < y->atime.tv_nsec ? -1 : 1;
    return 0;
}

/* The free pool: cache/.free opened (created if need be) into *free_fd,
 * its files' names and sizes appended to *fl. -1 in *free_fd if it cannot
 * be had (then nothing is recycled). */
struct freefile {
    char name[16];
    uint64_t size;
};

static void pool_add(struct freefile **fl, size_t *nf, size_t *cap, const char *name,
                     uint64_t size);

static void scan_free(int dirfd, int *free_fd, struct freefile **fl, size_t *nf, size_t *cap)
{
    *free_fd = openat(dirfd, FREE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*free_fd < 0 && errno == ENOENT && mkdirat(dirfd, FREE_DIR, 0700) == 0)
        *free_fd = openat(dirfd, FREE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (*free_fd < 0)
        return;
    int lfd = dup(*free_fd);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (d == NULL) {
        if (lfd >= 0)
            close(lfd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof(*fl)->name ||
            fstatat(*free_fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        pool_add(fl, nf, cap, e->d_name, (uint64_t)st.st_size);
    }
    closedir(d);
}

static void pool_add(struct freefile **fl, size_t *nf, size_t *cap, const char *name, uint64_t size)
{
    if (*nf == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *fl = xrealloc(*fl, *cap * sizeof **fl);
    }
    snprintf((*fl)[*nf].name, sizeof(*fl)->name, "%s", name);
    (*fl)[*nf].size = size;
    (*nf)++;
}

int cache_evict_pass(const char *data_dir, uint64_t max_size, uint64_t ttl_ms, struct dr_metrics *m,
                     struct cache_pass *out)
{
    struct cache_pass res;
    memset(&res, 0, sizeof res);
    char *dir = cache_dir(data_dir);
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (dirfd < 0) {
        if (out)
            *out = res;
        if (m)
            metrics_gauge_set(&m->cache_bytes, 0);
        return errno == ENOENT ? 0 : -errno;
    }
    int lfd = dup(dirfd);
    DIR *d = lfd >= 0 ? fdopendir(lfd) : NULL;
    if (d == NULL) {
        int rc = -errno;
        if (lfd >= 0)
            close(lfd);
        close(dirfd);
        return rc;
    }
    struct freefile *fl = NULL;
    size_t nf = 0, fcap = 0;
    int free_fd = -1;
    scan_free(dirfd, &free_fd, &fl, &nf, &fcap);
    uint64_t fbytes = 0; /* the pool's */
    for (size_t i = 0; i < nf; i++)
        fbytes += fl[i].size;
    struct entry *ents = NULL;
    size_t n = 0, cap = 0;
    int64_t now = dr_now_ms();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (strstr(e->d_name, ".tmp.") != NULL) {
            /* a fill in progress, or left by a crash when old */
            if (now - ts_ms(&st.st_mtim) > TMP_MAX_AGE_MS)
                unlinkat(dirfd, e->d_name, 0);
            continue;
        }
        if (stale(&st, ttl_ms)) {
            char pooled[16];
            int r = evict_to(dirfd, e->d_name, st.st_ino, nf < FREE_MAX ? free_fd : -1, pooled);
            if (r == 1 || r == 2) {
                res.evicted++;
                res.evicted_bytes += (uint64_t)st.st_size;
                if (r == 2) {
                    res.recycled++;
                    fbytes += (uint64_t)st.st_size;
                    pool_add(&fl, &nf, &fcap, pooled, (uint64_t)st.st_size);
                }
                continue;
            }
            if (r == -EBUSY)
                res.skipped_busy++;
            /* still there (busy): counts toward the size */
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            ents = xrealloc(ents, cap * sizeof *ents);
        }
        ents[n].name = xstrdup(e->d_name);
        ents[n].ino = st.st_ino;
        ents[n].size = (uint64_t)st.st_size;
        ents[n].atime = st.st_atim;
        ents[n].young = ts_ms(&st.st_atim) > now; /* reserved by cache_commit_tmp */
        res.bytes += (uint64_t)st.st_size;
        n++;
    }
    closedir(d);
    size_t gone = 0;
    /* Over the bound: the least recently used entries go until the entries
     * fit in max_size less the slack; unsynced fills wait in the pool. */
    if (res.bytes + fbytes > max_size && n > 0) {
        uint64_t low = max_size - slack(max_size);
        qsort(ents, n, sizeof *ents, by_atime);
        for (size_t i = 0; i < n && res.bytes > low; i++) {
            if (ents[i].young) {
                res.skipped_busy++; /* just filled: its requester has not opened it yet */
                continue;
            }
            char pooled[16];
            int r =
                evict_to(dirfd, ents[i].name, ents[i].ino, nf < FREE_MAX ? free_fd : -1, pooled);
            if (r >= 0) {
                res.bytes -= ents[i].size;
                gone++;
                if (r >= 1) {
                    res.evicted++;
                    res.evicted_bytes += ents[i].size;
                }
                if (r == 2) {
                    res.recycled++;
                    fbytes += ents[i].size;
                    pool_add(&fl, &nf, &fcap, pooled, ents[i].size);
                }
            } else if (r == -EBUSY) {
                res.skipped_busy++;
            }
        }
    }
    /* The pool counts in the bound: unlink free files while over it, the
     * oldest (found by the scan) first. */
    size_t kept = 0;
    for (size_t i = 0; i < nf; i++) {
        if (res.bytes + fbytes > max_size &&
            (unlinkat(free_fd, fl[i].name, 0) == 0 || errno == ENOENT)) {
            fbytes -= fl[i].size; /* ENOENT: taken by a fill (now an entry or tmp) */
            continue;
        }
        kept++;
    }
    nf = kept;
    res.free = nf;
    res.free_bytes = fbytes;
    res.entries = n - gone;
    for (size_t i = 0; i < n; i++)
        free(ents[i].name);
    free(ents);
    free(fl);
    if (free_fd >= 0)
        close(free_fd);
    close(dirfd);
    res.bytes += fbytes;
    if (m) {
        metrics_gauge_set(&m->cache_bytes, (int64_t)res.bytes);
        metrics_add(&m->cache_evictions, res.evicted);
    }
    if (res.evicted)
        log_debug("cache: evicted %llu entries (%llu bytes, %llu into the free pool), %llu bytes "
                  "left",
                  (unsigned long long)res.evicted, (unsigned long long)res.evicted_bytes,
                  (unsigned long long)res.recycled, (unsigned long long)res.bytes);
    if (out)
        *out = res;
    return 0;
}

/* ---- the evictor thread ---- */

struct cache_evictor {
    const struct dr_config *cfg;
    struct dr_metrics *m;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop, kick, dirty;
    uint64_t added;    /* bytes inserted, ever */
    uint64_t estimate; /* bytes after the last pass + inserted since */
};

static void *evictor_main(void *arg)
{
    struct cache_evictor *ev = arg;
    pthread_setname_np(pthread_self(), "cache-evict");
    uint64_t ttl = ev->cfg->cache.ttl;
    int64_t period = ttl ? (int64_t)DR_MAX(1000, DR_MIN(60000, ttl / 4)) : 60000;
    pthread_mutex_lock(&ev->mu);
    while (!ev->stop) {
        ev->dirty = false; /* the pass sets the gauge; inserts from now on move it */
        uint64_t added = ev->added;
        pthread_mutex_unlock(&ev->mu);
        struct cache_pass p = {0};
        if (cache_evict_pass(ev->cfg->data_dir, ev->cfg->cache.max_size, ttl, ev->m, &p) != 0)
            memset(&p, 0, sizeof p);
        pthread_mutex_lock(&ev->mu);
        ev->estimate = p.bytes + (ev->added - added); /* + what came in meanwhile */
        if (ev->stop)
            break;
        int64_t last = dr_mono_ms(), shown = last;
        while (!ev->stop && !ev->kick) {
            /* The next pass: on the timer, or when inserts may have pushed
             * the cache over max_size (kick). Inserts under the bound only
             * refresh the gauge, a second after the last refresh, from the
             * estimate: a pass stats every entry, and one a second while
             * small uploads kept arriving cost this process 6-19% of its
             * CPU (issue 15). */
            int64_t now = dr_mono_ms(), due = last + period;
            if (now >= due)
                break;
            if (ev->dirty && now >= shown + 1000) {
                if (ev->m)
                    metrics_gauge_set(&ev->m->cache_bytes, (int64_t)ev->estimate);
                ev->dirty = false;
                shown = now;
                continue;
            }
            if (ev->dirty)
                due = DR_MIN(due, shown + 1000);
            struct timespec ts;
            dr_mono_timespec(&ts, due);
            pthread_cond_timedwait(&ev->cv, &ev->mu, &ts);
        }
        ev->kick = false;
    }
    pthread_mutex_unlock(&ev->mu);
    return NULL;
}

struct cache_evictor *cache_evictor_start(const struct dr_config *cfg, struct dr_metrics *m)
{
    struct cache_evictor *ev = xcalloc(1, sizeof *ev);
    ev->cfg = cfg;
    ev->m = m;
    pthread_mutex_init(&ev->mu, NULL);
    dr_cond_init_mono(&ev->cv);
    int e = dr_thread_start(&ev->tid, evictor_main, ev);
    if (e != 0) {
        log_error("cache: cannot start the evictor: %s", strerror(-e));
        pthread_mutex_destroy(&ev->mu);
        pthread_cond_destroy(&ev->cv);
        free(ev);
        return NULL;
    }
    return ev;
}

void cache_evictor_note_insert(struct cache_evictor *ev, uint64_t bytes)
{
    if (ev == NULL)
        return;
    pthread_mutex_lock(&ev->mu);
    ev->estimate += bytes;
    ev->added += bytes;
    /* Wake the thread only when its deadline moves: the first insert since
     * the gauge was shown (a refresh within a second), or the one that may
     * push the cache over max_size (a pass now). A wake-up per insert was a
     * context switch per small upload. */
    bool wake = !ev->dirty;
    ev->dirty = true;
    if (ev->estimate > ev->cfg->cache.max_size && !ev->kick) {
        ev->kick = true;
        wake = true;
    }
    if (wake)
        pthread_cond_signal(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
}

void cache_evictor_stop(struct cache_evictor *ev)
{
    if (ev == NULL)
        return;
    pthread_mutex_lock(&ev->mu);
    ev->stop = true;
    pthread_cond_signal(&ev->cv);
    pthread_mutex_unlock(&ev->mu);
    pthread_join(ev->tid, NULL);
    pthread_mutex_destroy(&ev->mu);
    pthread_cond_destroy(&ev->cv);
    free(ev);
}

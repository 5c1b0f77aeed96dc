/* cache.h - the node-local plaintext cache: <data_dir>/cache/<media id>.
 *
 * Conventions (shared by the http worker, which serves entries, and the
 * pipeline, which fills and evicts them):
 *   - an entry is written as cache/<id>.tmp.<random> (mode 0400), then
 *     renamed to cache/<id> once verified: a present cache/<id> is always
 *     complete. A fill is not fsynced (derived data): after a reboot the
 *     supervisor drops the 0400 entries (cache_drop_unsynced);
 *   - evicted fills wait in cache/.free (mode 0200, never served) for a
 *     fill to overwrite them (cache_take_tmp): no inode created or freed
 *     per fill; the pool counts toward cache.max_size (cache.c: recycling);
 *   - its MTIME is the time it was filled (never touched afterwards): an
 *     entry older than cache.ttl is a miss for everybody;
 *   - its ATIME is the LRU clock: readers set it to now when they open it;
 *   - readers hold flock(LOCK_SH) while serving; the evictor unlinks an
 *     entry only while holding flock(LOCK_EX|LOCK_NB) on it, so an entry
 *     being served is never evicted under its reader (it is skipped and
 *     retried on the next pass).
 * The evictor (cache_evictor_*) runs as one thread in the pipeline process:
 * after inserts that push the cache over cache.max_size, and on a timer for
 * TTL expiry. Everything else here is thread-safe and stateless.
 */
#ifndef DRIPD_CACHE_H
#define DRIPD_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dr_config;
struct dr_metrics;

/* "<data_dir>/cache/<id>" (caller frees). */
char *cache_path(const char *data_dir, const char *id);

/* Open a fresh entry for reading: open, flock(LOCK_SH) (kept until the fd
 * is closed), check it was not evicted meanwhile and is younger than
 * ttl_ms (0 = no TTL), set its atime to now. 0 with *fd (caller closes)
 * and *size; -ENOENT on a miss or a stale entry; other -errno. Counts
 * m->cache_hits / cache_misses when m is not NULL. */
int cache_open_fresh(const char *data_dir, const char *id, uint64_t ttl_ms, struct dr_metrics *m,
                     int *fd, uint64_t *size);

/* Is there a fresh entry (no lock, no atime touch, no metrics)? Its size in
 * *size when not NULL. */
bool cache_is_fresh(const char *data_dir, const char *id, uint64_t ttl_ms, uint64_t *size);

/* A new temporary entry cache/<id>.tmp.<random> (0400: an unsynced fill,
 * O_EXCL): 0 with *fd (caller closes) and *tmp_path (caller frees). */
int cache_create_tmp(const char *data_dir, const char *id, int *fd, char **tmp_path);
/* A temporary entry for a fill, taken from the free pool when it has a
 * file (cache_take_tmp): recycled, that file is emptied first (never
 * written over: a response may still reference its old pages, cache.c). */
struct cache_tmp {
    int fd;            /* open for writing at offset 0 (the caller closes it) */
    char *path;        /* cache/<id>.tmp.<random> (the caller frees it) */
    bool recycled;     /* a free file, not a new one */
    uint64_t old_size; /* its size when taken (0 when new) */
};
/* As cache_create_tmp, but a free file (cache/.free, mode 0200, filled by
 * the evictor) is renamed to the temporary name and reused when there is
 * one: no inode to allocate or free. 0 with *t; -errno (nothing to free). */
int cache_take_tmp(const char *data_dir, const char *id, struct cache_tmp *t);
/* After every byte of a size-byte fill is written to t->fd: a recycled
 * file is made 0400 (unsynced fill). 0 or -errno. */
int cache_seal_tmp(const struct cache_tmp *t, uint64_t size);
/* Publish a complete temporary entry: set its mtime/atime to now, rename
 * it to cache/<id>. Nothing is fsynced. On failure tmp_path is removed. */
int cache_commit_tmp(const char *data_dir, const char *id, const char *tmp_path);
/* At start, before any worker: when the machine rebooted since the last
 * start (run/cache-boot holds the boot id; DRIPD_TEST_BOOT_ID replaces
 * /proc/sys/kernel/random/boot_id in tests), remove every unsynced fill
 * (mode 0400, or 0200: a refill cut short), whose bytes a power cut may have lost, and record this
 * boot. 0 (*dropped: how many) or -errno. */
int cache_drop_unsynced(const char *data_dir, size_t *dropped);
/* Link an existing complete, fsynced file (a finished upload's spool file,
 * same filesystem) into the cache as cache/<id>, replacing any entry;
 * path keeps its name (the caller removes it once nothing needs it: the
 * upload's job is done). As commit, but the directory is not fsynced: the
 * entry is derived data, its bytes are durable already, and a cut that
 * loses the link leaves a miss. */
int cache_adopt(const char *data_dir, const char *id, const char *path);
/* Move a complete file that was never fsynced (an upload's bytes the
 * pipeline wrote from its inline body, or fetched from its staged body;
 * same filesystem) into the cache as cache/<id>, replacing any entry; it
 * is made mode 0400 first, an unsynced fill, which cache_drop_unsynced
 * drops after a reboot. path is gone on success. */
int cache_adopt_scratch(const char *data_dir, const char *id, const char *path);
/* Remove an entry if no reader holds it (flock LOCK_EX|LOCK_NB). 1 removed,
 * 0 absent, -EBUSY being read. */
int cache_remove(const char *data_dir, const char *id);

/* One eviction pass: remove entries whose mtime is older than ttl_ms, then
 * the least recently used (oldest atime) until they are at most max_size
 * less a sixteenth (at most 64 MiB); entries a reader holds are skipped.
 * Removed fills go to the free pool (at most 64 files) and free files are
 * unlinked while entries + pool exceed max_size. Temporary files older than
 * an hour (left by a crash) go too. Updates m->cache_bytes and
 * m->cache_evictions when m is not NULL. */
struct cache_pass {
    uint64_t entries, bytes;   /* what is left (bytes: the entries' and the pool's) */
    uint64_t free, free_bytes; /* the free pool, left */
    uint64_t evicted, evicted_bytes, skipped_busy;
    uint64_t recycled; /* of the evicted, how many went into the pool */
};
int cache_evict_pass(const char *data_dir, uint64_t max_size, uint64_t ttl_ms, struct dr_metrics *m,
                     struct cache_pass *out);

/* The evictor thread ("cache-evict"). */
struct cache_evictor;
struct cache_evictor *cache_evictor_start(const struct dr_config *cfg, struct dr_metrics *m);
/* Tell it bytes were added; it runs a pass at once when the cache may be
 * over max_size, else within a second (which refreshes the cache_bytes
 * gauge). Any thread. */
void cache_evictor_note_insert(struct cache_evictor *ev, uint64_t bytes);
void cache_evictor_stop(struct cache_evictor *ev); /* joins; NULL ok */

/* How long a freshly filled entry is safe from LRU eviction (default 30 s),
 * so the request that ran the download can open it even if it alone is
 * over max_size. Set once at start (tests use 0). */
void cache_set_pin_ms(int64_t ms);

#endif

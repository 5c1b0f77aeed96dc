/* spool.h - node-local files that hold upload bodies until the pipeline
 * has sealed and stored them: <data_dir>/spool/<id>.part.
 *
 * Written by http worker loop threads (one file per upload, one writer),
 * read by the pipeline's encrypt stage, then renamed into the cache
 * (a finished upload warms the cache) or removed. A file is flock()ed by
 * its creator while held open, which tells spool_sweep() it is in use. Spool files are node-local
 * state: a job whose spool file lives on this node is processed here.
 */
#ifndef DRIPD_SPOOL_H
#define DRIPD_SPOOL_H

#include <stddef.h>
#include <stdint.h>

/* Create <data_dir>/spool/<id>.part exclusively (O_EXCL, 0600), open for
 * reading and writing (ingest reads the head through it), and lock it
 * (flock LOCK_EX, held until *fd is closed). On success returns 0,
 * sets *fd (caller owns) and *path (caller frees). */
int spool_create(const char *data_dir, const char *id, int *fd, char **path);
/* The same at a path spool_path_for() gave (a tus upload whose creation
 * made no file: its first bytes make it). */
int spool_create_at(const char *path, int *fd);
/* <data_dir>/spool/<id>.part, the path spool_create() gives (caller frees). */
char *spool_path_for(const char *data_dir, const char *id);
/* Reopen an existing spool file (read-write) for appending at offset (tus
 * resume). */
int spool_reopen(const char *path, uint64_t offset, int *fd);
/* Append len bytes; 0, -ENOSPC (disk full: answer 507), -EDQUOT, -EIO... */
int spool_write(int fd, const void *data, size_t len);
/* Keep a streaming body's page-cache footprint small (PUT, tus PATCH,
 * multipart parts; docs/HTTP.md): called after each write with the bytes
 * of the body written so far (size, from file offset base on) and
 * *at, the bytes already handed to writeback (0 at the start). Each
 * finished SPOOL_WRITEBACK_STEP window is handed to writeback at once
 * (no wait), and the window two steps back is waited for and dropped from
 * the page cache. The final fdatasync then finds at most ~2 windows to
 * flush, dirty memory stays bounded whatever the size, and the same few
 * page-cache pages are recycled instead of touching fresh memory for
 * every MiB. A body smaller than 3 windows stays cached for the
 * pipeline. The wait blocks the caller only when the disk is slower than
 * the network: back-pressure. */
#define SPOOL_WRITEBACK_STEP (8u << 20)
void spool_writeback(int fd, uint64_t base, uint64_t size, uint64_t *at);
/* fsync the file (and, the first time, its directory). 0 / -errno. */
int spool_sync(int fd);
/* Make n spool files (open fds, all on the spool filesystem) durable at
 * once, for group commit; rcs[i] gets 0 or -errno for fds[i]. One file:
 * fdatasync. Several: ONE syncfs(2) of the spool filesystem (it writes
 * and waits for every dirty page, inode and metadata block there, which
 * costs one round of I/O instead of one per file), then a per-file check
 * of the writeback error state (sync_file_range WAIT, no I/O); if syncfs
 * fails, each file is fdatasynced on its own to tell which one failed.
 * The caller must still fsync the spool directory afterwards: that fsync
 * is also the device cache flush that follows syncfs's last metadata
 * writes. Returns how many files failed. */
size_t spool_sync_batch(const int *fds, int *rcs, size_t n);
/* Remove a spool file; absent is fine. */
void spool_remove(const char *path);

/* The spool files something still needs (full paths or names; only the
 * names count); 0 and *paths (caller frees with dr_strv_free), or -errno. */
typedef int (*spool_refs_fn)(void *arg, char ***paths, size_t *n);
/* Remove orphans: spool files that no live process holds (spool_create's
 * lock, see spool.c) and refs() does not name (a worker killed mid-upload,
 * a lost tus session). Safe while other processes upload. Sets the count
 * and bytes removed; 0, or -errno (refs() failing removes nothing). */
int spool_sweep(const char *data_dir, spool_refs_fn refs, void *arg, size_t *removed,
                uint64_t *bytes);

#endif

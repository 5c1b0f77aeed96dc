/* spool.h - node-local files that hold upload bodies until the pipeline
 * has sealed and stored them: <data_dir>/spool/<id>.part.
 *
 * Written by http worker loop threads (one file per upload, one writer),
 * read by the pipeline's encrypt stage, then renamed into the cache
 * (a finished upload warms the cache) or removed. Spool files are node-local
 * state: a job whose spool file lives on this node is processed here.
 */
#ifndef DRIPD_SPOOL_H
#define DRIPD_SPOOL_H

#include <stddef.h>
#include <stdint.h>

/* Create <data_dir>/spool/<id>.part exclusively (O_EXCL, 0600). On success
 * returns 0, sets *fd (caller owns) and *path (caller frees). */
int spool_create(const char *data_dir, const char *id, int *fd, char **path);
/* Reopen an existing spool file for appending at offset (tus resume). */
int spool_reopen(const char *path, uint64_t offset, int *fd);
/* Append len bytes; 0, -ENOSPC (disk full: answer 507), -EDQUOT, -EIO... */
int spool_write(int fd, const void *data, size_t len);
/* fsync the file (and, the first time, its directory). 0 / -errno. */
int spool_sync(int fd);
/* Remove a spool file; absent is fine. */
void spool_remove(const char *path);

#endif

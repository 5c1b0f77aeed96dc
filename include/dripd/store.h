/* store.h - where sealed objects live: a small put/get/delete/exists
 * interface with one implementation per backend (store_local.c,
 * store_s3.c). Objects are immutable once put; keys are
 * "<media id>_<UTC yyyymmddThhmmssZ><ext>" as in ElixirDrip, plain ASCII.
 *
 * Threads: a `struct dr_store` handle belongs to one thread (the S3 one
 * owns curl handles whose connections it keeps alive); each stage thread
 * opens its own with store_open().
 *
 * Errors: 0 on success; -EAGAIN for transient failures the caller should
 * retry with backoff (connection refused, timeout, 5xx, SlowDown);
 * -ENOENT object absent; any other -errno is permanent (-EACCES bucket
 * denied, -ENXIO no such bucket, -EINVAL bad request). Every failure writes
 * one human line into err (e.g. "s3: NoSuchBucket: media-x does not exist").
 */
#ifndef DRIPD_STORE_H
#define DRIPD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/id.h"

struct dr_config;
struct dr_store;

struct dr_store_ops {
    const char *name; /* "local" | "s3" */
    /* Put the whole file at src_path as key, atomically (all or nothing visible). */
    int (*put)(struct dr_store *st, const char *key, const char *src_path, char *err,
               size_t errlen);
    /* Write the object into dst_path (created or truncated), streaming. */
    int (*get)(struct dr_store *st, const char *key, const char *dst_path, char *err,
               size_t errlen);
    /* Read len bytes at offset into buf (object headers, scrub, ranged
     * parallel fetches). Returns bytes read (< len only at the end) or -errno. */
    long (*get_range)(struct dr_store *st, const char *key, uint64_t offset, void *buf, size_t len,
                      char *err, size_t errlen);
    /* Remove; absent is success (idempotent). */
    int (*del)(struct dr_store *st, const char *key, char *err, size_t errlen);
    /* 1 present, 0 absent, -errno. If size is not NULL it receives the object size. */
    int (*exists)(struct dr_store *st, const char *key, uint64_t *size, char *err, size_t errlen);
    /* Call fn for every key (rebuild-catalog, scrub); fn returns non-zero to stop. */
    int (*list)(struct dr_store *st, int (*fn)(const char *key, uint64_t size, void *arg),
                void *arg, char *err, size_t errlen);
    /* Is the backend reachable and writable? (readiness). 0 or -errno + err. */
    int (*check)(struct dr_store *st, char *err, size_t errlen);
    void (*close)(struct dr_store *st);
    /* Optional (NULL: put is durable when it returns, and store_sync has
     * nothing to do): put src_path as key, visible at once but durable
     * only after the next sync of this handle, so that a batch of puts
     * shares one sync (store_put_nosync); src may be moved. */
    int (*put_nosync)(struct dr_store *st, const char *key, const char *src_path, char *err,
                      size_t errlen);
    int (*sync)(struct dr_store *st, char *err, size_t errlen);
    /* Optional (NULL: put_nosync by src_path): put_nosync of an open file,
     * named src_name in the directory src_dirfd, without opening it again
     * (store_put_nosync_fd). */
    int (*put_nosync_fd)(struct dr_store *st, const char *key, int src_dirfd, const char *src_name,
                         const char *src_path, int fd, bool *moved, char *err, size_t errlen);
    /* Optional (NULL: not supported): put_nosync of a small sealed object
     * held in memory (len <= STORE_MEM_MAX bytes at mem, malloc'd), which
     * the store takes, on success and on failure (store_put_nosync_mem). */
    int (*put_nosync_mem)(struct dr_store *st, const char *key, void *mem, size_t len, char *err,
                          size_t errlen);
    /* Optional (NULL: not supported): a read-only fd on the object itself,
     * for backends whose objects are local files, so a reader needs no
     * copy (see store_open_read). */
    int (*open_read)(struct dr_store *st, const char *key, int *fd, char *err, size_t errlen);
    /* Optional (NULL: nothing to do): remove what puts cut short by a
     * crash left behind, never what a running put (of any process) still
     * uses; *removed counts it. -EAGAIN: puts are running, try later. */
    int (*sweep)(struct dr_store *st, size_t *removed, char *err, size_t errlen);
};

/* Every backend's handle starts with this header. */
struct dr_store {
    const struct dr_store_ops *ops;
    const struct dr_config *cfg;
};

/* Open a handle for cfg->storage.backend. 0 / -errno + err. */
int store_open(const struct dr_config *cfg, struct dr_store **out, char *err, size_t errlen);
void store_close(struct dr_store *st); /* NULL ok */

/* Backend constructors (called by store_open). */
int store_local_open(const struct dr_config *cfg, struct dr_store **out, char *err, size_t errlen);
int store_s3_open(const struct dr_config *cfg, struct dr_store **out, char *err, size_t errlen);

/* The operations, for every backend: callers use these, never st->ops
 * directly, because this dispatch (store.c) is where every operation is
 * measured, once, whatever the backend: store_duration[op] and, unless it
 * failed with anything but -ENOENT (absent is an answer, not an error),
 * store_errors[op]; store_bytes_up counts the object bytes a put stored,
 * store_bytes_down the bytes a get or get_range fetched. get_range counts
 * as a get, and so does store_open_read(), with the object's size as its
 * bytes (the caller reads all of it); list, check and sweep are not
 * measured. */
int store_put(struct dr_store *st, const char *key, const char *src_path, char *err, size_t errlen);
/* A put that may leave the object's durability to the next store_sync() of
 * this handle (local: src is moved in, the file and directory syncs are
 * shared by every put of the batch); measured as a put. src_path is
 * consumed: it may be gone afterwards (moved into the store), or not.
 * Backends whose puts are durable at once (S3) just put. Until
 * store_sync() returned 0 nothing may rest on the object: a crash may
 * lose it, or leave its name with garbage behind it (never a partial
 * object: it is moved in whole).
 * store_sync(): 0 when every put_nosync since the last sync is durable,
 * else -errno + err for the whole batch (-EAGAIN when transient: put them
 * again). Not measured. */
int store_put_nosync(struct dr_store *st, const char *key, const char *src_path, char *err,
                     size_t errlen);
/* store_put_nosync of a file its caller has open (the pipeline's sealed
 * scratch file, handed on by encrypt), by the fd and its name relative to
 * a directory fd: no path lookups but the move itself. fd is open on the
 * file named src_name in src_dirfd (src_path is the same file by its full
 * path, for backends that need one and for messages), size its bytes (for
 * the metrics). fd is consumed, on success and on failure: kept until the
 * sync (local), or closed. *moved: the file was moved into the store
 * (src_name is gone), else it is still there for the caller to remove. */
int store_put_nosync_fd(struct dr_store *st, const char *key, int src_dirfd, const char *src_name,
                        const char *src_path, int fd, uint64_t size, bool *moved, char *err,
                        size_t errlen);
/* Small objects (issue 15): a backend that keeps them apart from files
 * (local: rows of <dir>/.small.db, store_local.c) takes a sealed object
 * from memory, so that a small upload makes no file at all: no inode, no
 * rename, and a batch's objects made durable by one commit.
 * store_takes_mem(cfg): whether the configured backend does (then the
 * pipeline seals an inline body of at most STORE_MEM_MAX bytes of object
 * into memory: seal_mem_buf). store_put_nosync_mem: as store_put_nosync,
 * durable after the next store_sync; mem (len bytes, malloc'd) is the
 * store's, on success and on failure; measured as a put. */
#define STORE_MEM_MAX (80u << 10)
bool store_takes_mem(const struct dr_config *cfg);
int store_put_nosync_mem(struct dr_store *st, const char *key, void *mem, size_t len, char *err,
                         size_t errlen);
int store_sync(struct dr_store *st, char *err, size_t errlen);
int store_get(struct dr_store *st, const char *key, const char *dst_path, char *err, size_t errlen);
long store_get_range(struct dr_store *st, const char *key, uint64_t offset, void *buf, size_t len,
                     char *err, size_t errlen);
int store_delete(struct dr_store *st, const char *key, char *err, size_t errlen);
int store_exists(struct dr_store *st, const char *key, uint64_t *size, char *err, size_t errlen);
int store_list(struct dr_store *st, int (*fn)(const char *key, uint64_t size, void *arg), void *arg,
               char *err, size_t errlen);
int store_check(struct dr_store *st, char *err, size_t errlen);
/* Remove leftovers of interrupted puts (the op above; 0 and *removed = 0
 * for a backend without it). Not measured, like list and check. */
int store_sweep(struct dr_store *st, size_t *removed, char *err, size_t errlen);
/* Open the object key for reading in place. 0 and *fd (the caller closes
 * it; the object stays readable through it even if it is deleted or
 * replaced meanwhile), -ENOENT absent, -EOPNOTSUPP when the backend has no
 * local files (fetch a copy with store_get instead; not measured), other
 * -errno + err. */
int store_open_read(struct dr_store *st, const char *key, int *fd, char *err, size_t errlen);

/* The media's metadata object: "<media id>.meta", a sealed JSON document
 * (content type STORE_META_TYPE) that the process stage writes beside the
 * variants so that --rebuild-catalog restores the metadata and the failed
 * variants, which no other object carries (docs/FORMAT.md). out >= 64. */
#define STORE_META_SUFFIX ".meta"
#define STORE_META_TYPE "application/vnd.dripd.metadata+json"
void store_meta_key(const char *media_id, char *out, size_t outlen);
/* Is key a metadata object's? Then its media id goes into id (>= 27 bytes). */
bool store_is_meta_key(const char *key, char *id, size_t idlen);

/* A media in the trash (trash.ttl) has a trash mark: "<media id>.trash",
 * a small JSON document {"v":1,"retired_at":ms} (not sealed: the http
 * process that trashes has no master key; it names nothing but the id),
 * so that --rebuild-catalog puts the media back in the trash and not
 * among the live files (docs/FORMAT.md). */
#define STORE_TRASH_SUFFIX ".trash"
void store_trash_key(const char *media_id, char *out, size_t outlen);
bool store_is_trash_key(const char *key, char *id, size_t idlen);
/* Put (in_trash, at: when) or delete (a restore) the trash marks of
 * ids[0..n), through a temporary file in tmp_dir (on the data disk).
 * Best effort, after the catalog committed: returns how many failed, each
 * logged (a missing mark only means a rebuild shows that file live). */
int store_mark_trash(struct dr_store *st, const char *tmp_dir, const char (*ids)[DR_ID_LEN + 1],
                     size_t n, bool in_trash, int64_t at);

/* Remove what a media the catalog no longer has leaves behind: its
 * objects, the original's (key; NULL: never stored), its metadata
 * object's (store_meta_key) and trash mark's (absent is fine) and its variants'
 * (keys[0..n); NULL entries skipped), each retried on a transient error
 * (three tries over about 0.6 s: the caller is a worker thread that may
 * wait), and its cache entries on this node (cache/<id> and
 * cache/<id>~<names[i]>, through cache_remove's lock, so no reader loses
 * bytes mid-response). Returns how many objects are left behind; each is
 * logged as an orphan, which the next scrub reports. */
int store_forget(struct dr_store *st, const char *data_dir, const char *id, const char *key,
                 char *const *names, char *const *keys, size_t n);

/* The process-global metrics sink of the dispatch above. Set it once per
 * process, before any thread opens a store (each worker does, with the
 * supervisor's shared counters); NULL (the default) records nothing. */
struct dr_metrics;
void store_set_metrics(struct dr_metrics *m);

#endif

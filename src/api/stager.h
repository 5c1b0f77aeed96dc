/* stager.h - the http worker's side of staged upload bodies (cluster
 * mode, docs/CLUSTER.md "Staged bodies"): with catalog.backend postgres,
 * the bytes of every upload are sealed into the shared store (staging.h)
 * before the upload is acknowledged, so the node that took it may die
 * with its disk and any other node finishes it.
 *
 * Threads: stager_start/stop once, from the worker's main thread, before
 * and after every user; stager_put/delete from any thread (ingest's stage
 * threads, the worker pool for tus), each with a store handle of its own
 * (thread-local, opened on first use, closed when the thread exits).
 */
#ifndef DRIPD_API_STAGER_H
#define DRIPD_API_STAGER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dr_config;

/* Cluster mode (a PostgreSQL catalog): load the master key. 0, or -errno
 * (logged) when staging is on and the key cannot be read. */
int stager_start(const struct dr_config *cfg);
void stager_stop(void);
/* Is staging on (the catalog is PostgreSQL)? */
bool stager_on(const struct dr_config *cfg);

/* What one part is: the body it belongs to, its own id, and the upload's
 * owner, path and content type (they go into the sealed header). */
struct stager_part {
    const char *body, *part;
    const char *owner, *path, *content_type;
};
/* Seal all of src_path and put it as the part's object (staging_put).
 * 0 once it is durable in the store, else -errno with one line in err. */
int stager_put(const struct dr_config *cfg, const struct stager_part *p, const char *src_path,
               char *err, size_t errlen);
/* Remove a part's object that will not be recorded (best effort, logged). */
void stager_delete(const struct dr_config *cfg, const char *body, const char *part);

/* A tus PATCH cut short (the client went away) in cluster mode: what it
 * received, in the part file path, is staged and recorded later, off the
 * loop thread (catalog_tus_add_part from off, with new_length if >= 0; a
 * request that moved the offset meanwhile wins and the part is dropped).
 * The file is removed afterwards. Strings are copied. At most
 * STAGER_SAVES_MAX wait; beyond that (or without the saver thread) the
 * bytes are dropped, as a client must be ready for: it resends from the
 * offset HEAD reports. */
#define STAGER_SAVES_MAX 64
void stager_save_later(const struct dr_config *cfg, const char *tus_id, const char *part,
                       const char *owner, const char *path, const char *content_type,
                       const char *file, uint64_t off, uint64_t len, int64_t new_length);

#endif

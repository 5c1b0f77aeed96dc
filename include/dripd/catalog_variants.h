/* catalog_variants.h - what the process stage found out about a media:
 * its metadata (a JSON object in the media row: struct dr_media's
 * metadata) and its variants (one row
 * each: thumb, preview, ...; a sealed object of its own in the store).
 * Implemented by src/catalog/catalog_variants.c on the catalog's db layer.
 *
 * A variant row is "available" (made, sealed and stored: storage_key,
 * sha256 and wrapped_key set) or "failed" (error says why: the decoder
 * crashed, the file is not an image, over the pixel limit...). A media
 * with no row for a configured variant name is "pending" while its upload
 * job runs, else has no such variant (stored before processing existed,
 * or processing off): a reprocess makes them.
 *
 * Threads and errors: as catalog.h (one handle per thread; 0 / -errno;
 * -ENOENT absent or not visible to the viewer).
 */
#ifndef DRIPD_CATALOG_VARIANTS_H
#define DRIPD_CATALOG_VARIANTS_H

#include <stddef.h>
#include <stdint.h>

#include "dripd/catalog.h"

#define DR_VARIANT_NAME_LEN 32

struct dr_variant {
    char media_id[DR_ID_LEN + 1];
    char name[DR_VARIANT_NAME_LEN];
    char state[16];     /* "available" | "failed" */
    char *content_type; /* "image/webp"; NULL when failed */
    uint32_t width, height;
    uint64_t size;   /* plaintext bytes */
    char sha256[65]; /* hex of the plaintext; "" when failed */
    uint8_t *wrapped_key;
    size_t wrapped_key_len;
    char *storage_key; /* NULL when failed */
    char *error;       /* NULL when available */
    int64_t created_at;
};

/* In ONE transaction: the media's metadata (JSON object text; NULL leaves
 * it as is) and its variants replaced by v[0..n) (rows of other names are
 * removed). The storage keys of objects no longer referenced (a replaced
 * or removed variant whose key differs) are returned in *stale (caller
 * frees each and the array; may be NULL when stale is NULL) for the
 * caller to delete from the store after the commit. -ENOENT: the media is
 * gone (nothing written). */
int catalog_media_set_processed(struct catalog *cat, const char *media_id, const char *metadata,
                                const struct dr_variant *v, size_t n, char ***stale,
                                size_t *n_stale);
/* The media's variants, by name. viewer: as catalog_media_get (NULL = any).
 * Caller frees with catalog_variants_free. */
int catalog_variants_list(struct catalog *cat, const char *media_id, const char *viewer,
                          struct dr_variant **out, size_t *n_out);
/* One variant. -ENOENT no such row (or media not visible). */
int catalog_variant_get(struct catalog *cat, const char *media_id, const char *name,
                        const char *viewer, struct dr_variant *out);
/* Every available variant (scrub), oldest first; callback non-zero stops. */
int catalog_variants_foreach(struct catalog *cat, int (*fn)(const struct dr_variant *v, void *arg),
                             void *arg);
/* Insert one variant row as found in the store (rebuild-catalog). -EEXIST
 * if (media, name) is there; -ENOENT if the media row is not. */
int catalog_variant_insert(struct catalog *cat, const struct dr_variant *v);
/* Set the media's metadata (JSON object text) if it has none, as read
 * from its metadata object (rebuild-catalog). -EEXIST if it has some
 * (left as is); -ENOENT if the media row is not there. */
int catalog_media_restore_metadata(struct catalog *cat, const char *media_id, const char *metadata);
/* A download job (as catalog_enqueue_download) that warms the cache with
 * the variant `name` of media_id: the job row carries the variant, and
 * the download pipeline fetches and decrypts its object into
 * cache/<media id>~<name>. */
int catalog_enqueue_variant_download(struct catalog *cat, const char *media_id, const char *name,
                                     const char *viewer, char job_id_out[DR_ID_LEN + 1]);
void dr_variant_clear(struct dr_variant *v);
void catalog_variants_free(struct dr_variant *v, size_t n);

#endif

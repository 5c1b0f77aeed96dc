/* staging.h - upload bodies staged in the shared store (cluster mode).
 *
 * With several nodes (catalog.backend postgres) an upload is acknowledged
 * only once its bytes are in the store that every node reaches, sealed
 * like any object (seal.h, envelope encryption under the master key), so
 * that any node can finish it after the accepting node is gone with its
 * disk (docs/CLUSTER.md, "Staged bodies"). A body is staged as one or
 * more parts; the catalog records which (catalog_staged_parts). Each part
 * is the object "staging-<body id>-<part id>": not a media object, so
 * --rebuild-catalog and scrub leave it alone (staging_key_is), and an S3
 * lifecycle rule on the prefix "staging-" may expire leftovers.
 *
 * Threads: no state; each caller passes its own store handle (store.h:
 * one per thread).
 *
 * Errors: 0 / -errno with one line in err, as store.h (-EAGAIN transient:
 * retry; -EBADMSG a part that does not verify).
 */
#ifndef DRIPD_STAGING_H
#define DRIPD_STAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/id.h"
#include "dripd/keys.h"

struct dr_store;

#define STAGING_PREFIX "staging-"
#define STAGING_KEY_LEN (sizeof STAGING_PREFIX + 2 * DR_ID_LEN + 1)

/* "staging-<body>-<part>" into out (STAGING_KEY_LEN bytes). */
void staging_key(const char *body, const char *part, char out[STAGING_KEY_LEN]);
/* Is key a staged part (not a media object or a variant)? */
bool staging_key_is(const char *key);
/* Split a staged part's key into its body and part ids. Returns the time
 * the part's id was made (ms since the epoch: a ULID's first 48 bits), or
 * -1 when key is not a well-formed staging key. */
int64_t staging_key_parse(const char *key, char body[DR_ID_LEN + 1], char part[DR_ID_LEN + 1]);

/* What a part's sealed header says (seal.h): the part's id stands in the
 * media id field, owner and path are the upload's. */
struct staging_part {
    const char *body;
    const char *part;
    const char *owner;
    const char *path;
    const char *content_type; /* may be NULL */
    uint32_t segment_size;
};

/* Seal the whole file src_path into the scratch file scratch (removed
 * afterwards, whatever happens) and put it as the part's object: when
 * this returns 0 the part is durable in the store. */
int staging_put(struct dr_store *st, const uint8_t master[DR_KEY_LEN], const struct staging_part *p,
                const char *src_path, const char *scratch, char *err, size_t errlen);

/* Fetch the part's object, verify it (every tag, its length, its SHA-256:
 * -EBADMSG otherwise) and append its plaintext to out_fd; expect_len is
 * the length the catalog recorded. Objects that are local files are read
 * in place; others are copied to the scratch file first (removed after). */
int staging_fetch(struct dr_store *st, const uint8_t master[DR_KEY_LEN], const char *body,
                  const char *part, uint64_t expect_len, int out_fd, const char *scratch, char *err,
                  size_t errlen);

/* Delete the part's object (absent is fine). */
int staging_delete(struct dr_store *st, const char *body, const char *part, char *err,
                   size_t errlen);

#endif

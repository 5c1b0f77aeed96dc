/* seal.h - dripd's sealed object format: self-describing, streaming
 * AES-256-GCM (docs/FORMAT.md is the byte-level reference).
 *
 * An object is a header followed by the plaintext in fixed segments. The
 * header's clear part (magic "DRIPD1", version, lengths, segment size, the
 * data key wrapped by the master key, a random nonce prefix) says only how
 * to read it; what it says about the media (media id, owner, path, size,
 * SHA-256, content type, created_at) is sealed under the data key
 * (version 2, which seal_file writes). Version-1 objects, whose header has
 * those fields in clear and a GMAC tag, are still read. The plaintext
 * follows in fixed segments, each encrypted under the data key with its own nonce
 * (prefix || segment index) and tag, and with the header digest, the
 * segment index and a final-segment flag in its associated data, so any
 * changed byte, truncation, extension or reordering is detected.
 *
 * Streaming with bounded memory (about 1 MiB per call); thread-safe (no
 * global state). Errors: 0 / -errno with one line in err; a corrupt or
 * truncated object or a wrong key is -EBADMSG with a line that says where
 * ("object corrupt: segment 3 tag mismatch").
 */
#ifndef DRIPD_SEAL_H
#define DRIPD_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/id.h"
#include "dripd/keys.h"

#define SEAL_MAGIC "DRIPD1"
#define SEAL_VERSION 2 /* written; 1 and 2 are read */
#define SEAL_TAG_LEN 16
#define SEAL_NONCE_PREFIX_LEN 8
/* Read this much of an object to get its header in one go in practice
 * (headers are smaller unless paths are very long; seal_read_header says
 * how much it needs when the buffer is short). */
#define SEAL_HEADER_READ 4096
#define SEAL_HEADER_MAX 65536
#define SEAL_MIN_SEGMENT 1024u
#define SEAL_MAX_SEGMENT (16u << 20)

/* Everything an object says about itself. Strings are heap copies owned by
 * the struct (seal_header_clear frees them; a zeroed struct is fine). */
struct seal_header {
    unsigned version; /* 1 or 2 */
    char media_id[DR_ID_LEN + 1];
    char *owner;
    char *path;
    char *content_type; /* NULL when none */
    uint64_t size;      /* plaintext bytes */
    uint8_t sha256[32]; /* of the plaintext */
    char sha256_hex[65];
    int64_t created_at; /* ms since epoch */
    uint32_t segment_size;
    uint8_t wrapped_key[DR_WRAPPED_KEY_LEN];
    uint8_t nonce_prefix[SEAL_NONCE_PREFIX_LEN];
    uint32_t header_len;  /* header bytes on disk (object offset of segment 0) */
    uint64_t object_size; /* header_len + size + SEAL_TAG_LEN * segments */
};
void seal_header_clear(struct seal_header *h);

/* What seal_file writes into the header. */
struct seal_params {
    const char *media_id; /* DR_ID_LEN chars */
    const char *owner;
    const char *path;
    const char *content_type; /* may be NULL */
    int64_t created_at;
    uint32_t segment_size;      /* SEAL_MIN_SEGMENT .. SEAL_MAX_SEGMENT */
    const uint8_t *data_key;    /* DR_KEY_LEN bytes */
    const uint8_t *wrapped_key; /* DR_WRAPPED_KEY_LEN bytes: data_key under the master key */
    /* A scratch file whose durability the caller takes care of (the
     * pipeline: the store fsyncs what it keeps, and a crash re-checks or
     * re-seals): no fsync of the file or of its directory, and no
     * temporary name: out_path is unlinked (an inode the store may have
     * linked stays as it is) and written anew, so a crash can leave it
     * partial: the caller verifies a scratch file it did not just seal. */
    bool scratch;
};

struct seal_result {
    uint64_t size; /* plaintext bytes sealed */
    uint8_t sha256[32];
    char sha256_hex[65];
    uint64_t object_size;
};

/* Number of segments for a plaintext size (an empty plaintext still has
 * one, empty, final segment) and the resulting object size. */
uint64_t seal_segments(uint64_t size, uint32_t segment_size);
uint64_t seal_object_size(uint32_t header_len, uint64_t size, uint32_t segment_size);

/* Seal the file in_path into out_path in one streaming pass (SHA-256 and
 * encryption together). out_path is replaced atomically: the object is
 * written to "<out_path>.tmp", fsynced, renamed, and the directory fsynced
 * (with p->scratch: written in place, no fsyncs, see above), so out_path
 * is always absent or complete (after a system crash too), unless
 * scratch. Returns 0 and fills res. */
int seal_file(const char *in_path, const char *out_path, const struct seal_params *p,
              struct seal_result *res, char *err, size_t errlen);
/* seal_file for the pipeline's scratch files (p->scratch must be set),
 * with no path lookups of its own: in is an open plaintext fd (read from
 * offset 0 with pread; the caller keeps and closes it; in_path names it in
 * messages), the object is made as out_name in the directory out_dirfd,
 * and on success *out_fd is its fd, open for writing, which the caller
 * owns (the pipeline hands it to the store, which syncs that very inode
 * without opening it again); -1 on failure, where nothing is left. */
int seal_fd_at(int in, const char *in_path, int out_dirfd, const char *out_name,
               const struct seal_params *p, struct seal_result *res, int *out_fd, char *err,
               size_t errlen);
/* seal_fd_at for a plaintext in memory (len bytes at mem, at least one;
 * what names it in messages): a small upload's inline body, sealed where
 * it lies, no file read. */
int seal_mem_at(const void *mem, size_t len, const char *what, int out_dirfd, const char *out_name,
                const struct seal_params *p, struct seal_result *res, int *out_fd, char *err,
                size_t errlen);

/* seal_mem_at into memory, no file: the sealed object, res->object_size
 * bytes, in *out (malloc'd, the caller's; NULL on failure). For a small
 * upload kept in the local store's database (store_put_nosync_mem): at
 * most SEAL_MEM_MAX bytes of plaintext, sealed in one chunk. */
#define SEAL_MEM_MAX (64u << 10)
int seal_mem_buf(const void *mem, size_t len, const char *what, const struct seal_params *p,
                 struct seal_result *res, uint8_t **out, char *err, size_t errlen);

/* Parse and authenticate the header at the start of buf (len bytes): the
 * magic, the fields, the wrapped key (unwrapped with master) and the header
 * tag. 0 and *out filled (caller clears it); -EMSGSIZE when buf is shorter
 * than the header (out->header_len then says how many bytes are needed,
 * if known, else 0: read SEAL_HEADER_MAX); -EBADMSG corrupt or wrong key. */
int seal_read_header(const void *buf, size_t len, const uint8_t master[DR_KEY_LEN],
                     struct seal_header *out, char *err, size_t errlen);

/* Verify and decrypt the object read from in_fd (from offset 0) into out_fd
 * (written from its current position; -1 = verify only). Every segment
 * tag, the order, the end, the length and the SHA-256 of the plaintext are
 * checked; expected_sha_hex (may be NULL) must match the header's too.
 * out_fd is not fsynced here. On failure out_fd holds a prefix of the
 * plaintext at most: the caller must discard it. hdr (may be NULL) gets
 * the header. */
int unseal_fd(int in_fd, int out_fd, const uint8_t master[DR_KEY_LEN], const char *expected_sha_hex,
              struct seal_header *hdr, char *err, size_t errlen);
/* unseal_fd without step 4 of docs/FORMAT.md "Reading": the header (its
 * tag, and expected_sha_hex against the header's SHA-256), the length and
 * every segment tag, order and end are checked, the plaintext is not
 * hashed again. The GCM tags under the object's own data key already
 * prove every byte is the one sealed, in its place, up to the end; the
 * hash only re-proves what the sealer computed, at a third of a cache
 * fill's CPU (issue 15). For cache fills; scrub, the durable download
 * jobs, staging and the rebuild keep unseal_fd. */
int unseal_fd_tags(int in_fd, int out_fd, const uint8_t master[DR_KEY_LEN],
                   const char *expected_sha_hex, struct seal_header *hdr, char *err, size_t errlen);
/* unseal_fd from in_path into out_path (created or truncated, 0600, and
 * fsynced when done). out_path NULL = verify only. On failure out_path is
 * removed. */
int unseal_file(const char *in_path, const char *out_path, const uint8_t master[DR_KEY_LEN],
                const char *expected_sha_hex, struct seal_header *hdr, char *err, size_t errlen);

#endif

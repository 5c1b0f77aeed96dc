/* staging.c - upload bodies staged in the shared store (see staging.h).
 *
 * A part is sealed with a data key of its own (keys.h) into a scratch
 * file, which is put under the part's key and removed; fetching reverses
 * it, verifying the whole object before the caller uses a byte (unseal_fd
 * checks every segment tag, the order, the end and the SHA-256 in the
 * header; the header's plaintext size must be the length the catalog
 * recorded). The scratch files are never fsynced: a put is durable when
 * the store says so, and a fetched copy is verified.
 *
 * Threads: none of its own; the caller's store handle (one per thread).
 */
#include "dripd/staging.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "dripd/seal.h"
#include "dripd/store.h"
#include "dripd/util.h"

void staging_key(const char *body, const char *part, char out[STAGING_KEY_LEN])
{
    snprintf(out, STAGING_KEY_LEN, STAGING_PREFIX "%s-%s", body, part);
}

bool staging_key_is(const char *key)
{
    return key != NULL && strncmp(key, STAGING_PREFIX, sizeof STAGING_PREFIX - 1) == 0;
}

int64_t staging_key_parse(const char *key, char body[DR_ID_LEN + 1], char part[DR_ID_LEN + 1])
{
    if (!staging_key_is(key))
        return -1;
    const char *b = key + sizeof STAGING_PREFIX - 1;
    if (strlen(b) != 2 * DR_ID_LEN + 1 || b[DR_ID_LEN] != '-')
        return -1;
    memcpy(body, b, DR_ID_LEN);
    body[DR_ID_LEN] = '\0';
    memcpy(part, b + DR_ID_LEN + 1, DR_ID_LEN);
    part[DR_ID_LEN] = '\0';
    if (!dr_id_valid(body) || !dr_id_valid(part))
        return -1;
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    int64_t ms = 0;
    for (int i = 0; i < 10; i++) { /* 10 base32 digits: the 48-bit time */
        const char *c = strchr(alphabet, part[i] >= 'a' && part[i] <= 'z' ? part[i] - 32 : part[i]);
        if (c == NULL || *c == '\0')
            return -1;
        ms = ms * 32 + (c - alphabet);
    }
    return ms;
}

int staging_put(struct dr_store *st, const uint8_t master[DR_KEY_LEN], const struct staging_part *p,
                const char *src_path, const char *scratch, char *err, size_t errlen)
{
    uint8_t dk[DR_KEY_LEN], wk[DR_WRAPPED_KEY_LEN];
    keys_new_data_key(master, dk, wk);
    struct seal_params sp = {
        .media_id = p->part,
        .owner = p->owner,
        .path = p->path,
        .content_type = p->content_type,
        .created_at = dr_now_ms(),
        .segment_size = p->segment_size,
        .data_key = dk,
        .wrapped_key = wk,
        .scratch = true, /* the store makes the object durable */
    };
    struct seal_result res;
    int rc = seal_file(src_path, scratch, &sp, &res, err, errlen);
    explicit_bzero(dk, sizeof dk);
    if (rc == 0) {
        char key[STAGING_KEY_LEN];
        staging_key(p->body, p->part, key);
        rc = store_put(st, key, scratch, err, errlen);
    }
    unlink(scratch);
    return rc;
}

int staging_fetch(struct dr_store *st, const uint8_t master[DR_KEY_LEN], const char *body,
                  const char *part, uint64_t expect_len, int out_fd, const char *scratch, char *err,
                  size_t errlen)
{
    char key[STAGING_KEY_LEN];
    staging_key(body, part, key);
    int in = -1;
    bool copied = false;
    int rc = store_open_read(st, key, &in, err, errlen);
    if (rc == -EOPNOTSUPP) {
        rc = store_get(st, key, scratch, err, errlen);
        copied = true;
        if (rc == 0) {
            in = open(scratch, O_RDONLY | O_CLOEXEC);
            if (in < 0) {
                rc = -errno;
                snprintf(err, errlen, "open %s: %s", scratch, strerror(errno));
            }
        }
    }
    if (rc == -ENOENT)
        snprintf(err, errlen, "staged part %s is missing from the store", key);
    off_t start = rc == 0 ? lseek(out_fd, 0, SEEK_CUR) : 0;
    struct seal_header h;
    memset(&h, 0, sizeof h);
    if (rc == 0)
        rc = unseal_fd(in, out_fd, master, NULL, &h, err, errlen);
    if (rc == 0 && (h.size != expect_len || strcmp(h.media_id, part) != 0)) {
        rc = -EBADMSG;
        snprintf(err, errlen, "staged part %s holds %llu bytes of %s, the catalog says %llu", key,
                 (unsigned long long)h.size, h.media_id, (unsigned long long)expect_len);
    }
    if (rc != 0 && start >= 0 && ftruncate(out_fd, start) == 0)
        (void)lseek(out_fd, start, SEEK_SET); /* nothing unverified stays behind */
    seal_header_clear(&h);
    if (in >= 0)
        close(in);
    if (copied)
        unlink(scratch);
    return rc;
}

int staging_delete(struct dr_store *st, const char *body, const char *part, char *err,
                   size_t errlen)
{
    char key[STAGING_KEY_LEN];
    staging_key(body, part, key);
    return store_delete(st, key, err, errlen);
}

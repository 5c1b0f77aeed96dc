/* fuzz_seal.c - libFuzzer target for the sealed-object reader (seal.c).
 *
 * Input: a whole object. It goes through seal_read_header() (the path
 * --rebuild-catalog takes on untrusted store contents) and, from a memfd,
 * through unseal_fd() in verify-only mode, both with the fixed master key
 * 0x42 * 32 that the seeds in fuzz/corpus/seal/ were sealed with (so
 * mutations get past the key unwrap and the header tag): format version 1
 * (seed-*) and version 2 (seed-v2-*, encrypted meta block). Invariants: no
 * crash, no out-of-bounds read (ASan); a header that verifies has
 * consistent fields; a successful unseal was given exactly the object
 * length its header promises.
 *
 *   sh scripts/build-fuzz.sh && build/fuzz/fuzz_seal -max_total_time=60 fuzz/corpus/seal
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dripd/seal.h"
#include "dripd/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t master[DR_KEY_LEN];
    memset(master, 0x42, sizeof master);
    char err[256];
    struct seal_header h;
    if (size > (1u << 20))
        return 0;
    int rc = seal_read_header(data, size, master, &h, err, sizeof err);
    if (rc == 0) {
        if (h.header_len > size || h.owner == NULL || h.path == NULL ||
            h.segment_size < SEAL_MIN_SEGMENT || h.segment_size > SEAL_MAX_SEGMENT)
            abort();
        seal_header_clear(&h);
    } else if (rc == -EMSGSIZE) {
        if (h.header_len != 0 && h.header_len <= size)
            abort();
    } else if (rc != -EBADMSG) {
        abort();
    }
    int fd = memfd_create("fuzz-seal", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    if (dr_write_all(fd, data, size) == 0) {
        struct seal_header u;
        memset(&u, 0, sizeof u);
        rc = unseal_fd(fd, -1, master, NULL, &u, err, sizeof err);
        if (rc == 0) {
            if (u.object_size != size)
                abort();
            seal_header_clear(&u);
        } else if (rc != -EBADMSG) {
            abort();
        }
    }
    close(fd);
    return 0;
}

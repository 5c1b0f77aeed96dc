/* fuzz_range.c - libFuzzer target for the Range header parser (range.c).
 *
 * Input: 8 bytes of representation size (little endian), then the header
 * value. Checks the invariants every caller relies on: a partial range is
 * non-empty and lies inside the representation, and the parser never reads
 * past the NUL (ASan) or crashes.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
 *       fuzz/fuzz_range.c src/range.c -o build/fuzz/fuzz_range
 *   build/fuzz/fuzz_range -max_total_time=60 fuzz/corpus/range
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/range.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t rep = 0;
    size_t take = size < 8 ? size : 8;
    for (size_t i = 0; i < take; i++)
        rep |= (uint64_t)data[i] << (8 * i);
    /* Mostly small sizes, so ranges are often satisfiable. */
    if (size > 0 && (data[0] & 1))
        rep %= 4096;
    data += take;
    size -= take;

    char *hdr = malloc(size + 1);
    if (!hdr)
        return 0;
    memcpy(hdr, data, size);
    hdr[size] = '\0';

    uint64_t start = 0, len = 0;
    enum range_result r = range_parse(hdr, rep, &start, &len);
    if (r == RANGE_PARTIAL) {
        if (len == 0 || start >= rep || len > rep - start)
            abort();
        char buf[64];
        range_content_range(buf, sizeof buf, start, len, rep);
    } else if (r != RANGE_FULL && r != RANGE_UNSATISFIABLE) {
        abort();
    }
    if (rep == 0 && r != RANGE_FULL)
        abort();
    free(hdr);
    return 0;
}

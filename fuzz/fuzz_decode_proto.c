/* fuzz_decode_proto.c - libFuzzer target for the dripd-decode wire format
 * (src/decode/decode_proto.c): the request a helper parses and the
 * response the pipeline parses (written by a helper that may have been
 * taken over by the file it decoded).
 *
 * Input: one byte choosing request (even) or response (odd), then the
 * message. A message that parses must encode again to the same bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/decode_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t buf[DECODE_MSG_MAX];
    bool resp = data[0] & 1;
    data++, size--;
    if (resp) {
        struct decode_resp r;
        if (decode_resp_parse(data, size, &r) == 0) {
            int n = decode_resp_encode(&r, buf, sizeof buf);
            if (n != (int)size || memcmp(buf, data, size) != 0)
                abort();
        }
    } else {
        struct decode_req r;
        if (decode_req_parse(data, size, &r) == 0) {
            int n = decode_req_encode(&r, buf, sizeof buf);
            if (n != (int)size || memcmp(buf, data, size) != 0)
                abort();
        }
    }
    return 0;
}

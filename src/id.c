/* id.c - ULID generation, see id.h. */
#include "dripd/id.h"

#include <stdint.h>
#include <string.h>

#include "dripd/util.h"

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

void dr_id_new(char out[DR_ID_LEN + 1])
{
    uint8_t raw[16];
    uint64_t ms = (uint64_t)dr_now_ms();
    for (int i = 0; i < 6; i++)
        raw[i] = (uint8_t)(ms >> (40 - 8 * i));
    dr_random(raw + 6, 10);
    /* 128 bits -> 26 base32 digits (the first digit carries 3 bits). */
    unsigned bit = 0;
    for (int i = 0; i < DR_ID_LEN; i++) {
        unsigned width = i == 0 ? 3 : 5, v = 0;
        for (unsigned k = 0; k < width; k++, bit++)
            v = (v << 1) | ((raw[bit / 8] >> (7 - bit % 8)) & 1u);
        out[i] = b32[v];
    }
    out[DR_ID_LEN] = '\0';
}

bool dr_id_valid(const char *s)
{
    if (s == NULL || strlen(s) != DR_ID_LEN || s[0] > '7')
        return false;
    for (int i = 0; i < DR_ID_LEN; i++)
        if (strchr(b32, s[i]) == NULL || s[i] == '\0')
            return false;
    return true;
}

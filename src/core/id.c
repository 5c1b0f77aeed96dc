/* id.c - ULID generation, see id.h. Thread-safe (one small mutex). */
#include "dripd/id.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "dripd/util.h"

static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Monotonic within a process: ids made in the same millisecond increment
 * the random part instead of drawing a new one, so sorting by id is
 * creation order (the ULID spec's monotonic mode). */
static pthread_mutex_t id_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t id_last_ms;
static uint8_t id_last_rand[10];

void dr_id_new(char out[DR_ID_LEN + 1])
{
    uint8_t raw[16];
    uint64_t ms = (uint64_t)dr_now_ms();
    pthread_mutex_lock(&id_mu);
    if (ms <= id_last_ms) {
        ms = id_last_ms;
        for (int i = 9; i >= 0 && ++id_last_rand[i] == 0; i--)
            ;
    } else {
        id_last_ms = ms;
        dr_random(id_last_rand, sizeof id_last_rand);
    }
    memcpy(raw + 6, id_last_rand, 10);
    pthread_mutex_unlock(&id_mu);
    for (int i = 0; i < 6; i++)
        raw[i] = (uint8_t)(ms >> (40 - 8 * i));
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

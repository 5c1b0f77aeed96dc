/* keys.c - placeholder until the key module lands. */
#include "dripd/keys.h"

#include <errno.h>
#include <stdio.h>

int keys_load_master(const char *key_file, bool create, uint8_t key[DR_KEY_LEN], char *err,
                     size_t errlen)
{
    (void)key_file;
    (void)create;
    (void)key;
    (void)err;
    (void)errlen;
    return 0;
}

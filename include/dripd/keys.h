/* keys.h - the master key (encryption.key_file) and envelope encryption of
 * per-media data keys.
 *
 * The master key is 32 random bytes, stored hex-encoded in key_file (mode
 * 0600). keys_load_master() creates it on first start when create is true.
 * Data keys are 32 random bytes per media, wrapped with AES-256-GCM under
 * the master key (12-byte nonce || ciphertext || 16-byte tag). Thread-safe:
 * no global state.
 */
#ifndef DRIPD_KEYS_H
#define DRIPD_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DR_KEY_LEN 32
#define DR_WRAPPED_KEY_LEN (12 + DR_KEY_LEN + 16)

/* Load (or, with create, generate and fsync) the master key.
 * 0 / -errno with a line in err ("key_file ./var/master.key: bad length"). */
int keys_load_master(const char *key_file, bool create, uint8_t key[DR_KEY_LEN], char *err,
                     size_t errlen);
/* New random data key, wrapped. wrapped must hold DR_WRAPPED_KEY_LEN. */
void keys_new_data_key(const uint8_t master[DR_KEY_LEN], uint8_t data_key[DR_KEY_LEN],
                       uint8_t wrapped[DR_WRAPPED_KEY_LEN]);
/* Unwrap; -EBADMSG if the tag does not verify (wrong master key or corrupt). */
int keys_unwrap(const uint8_t master[DR_KEY_LEN], const uint8_t *wrapped, size_t wrapped_len,
                uint8_t data_key[DR_KEY_LEN]);

#endif

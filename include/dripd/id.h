/* id.h - globally unique, time-sortable ids (ULID: 48-bit ms timestamp +
 * 80 random bits, Crockford base32, 26 chars). Used for media, jobs and tus
 * uploads. Unique across nodes without coordination, so several dripd nodes
 * can share one bucket and one catalog. Thread-safe. */
#ifndef DRIPD_ID_H
#define DRIPD_ID_H

#include <stdbool.h>
#include <stddef.h>

#define DR_ID_LEN 26 /* characters, without the NUL */

/* Writes a new id and its NUL into out (at least DR_ID_LEN + 1 bytes). */
void dr_id_new(char out[DR_ID_LEN + 1]);
/* True when s is exactly one well-formed id (26 base32 chars). */
bool dr_id_valid(const char *s);

#endif

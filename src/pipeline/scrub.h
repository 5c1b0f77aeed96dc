/* scrub.h - verify every stored object (admin "dripctl scrub").
 *
 * The http worker records a request in <data_dir>/run/scrub.request
 * (api_admin.c); the pipeline worker calls scrub_poll() when it wakes. A
 * run takes the request, lists every available media in the catalog and
 * every available variant (path "<name> variant" in the findings), and
 * has `threads` verifier threads (nice +10, pulling one object at a time
 * from a bounded queue, so uploads keep their CPU and the store its
 * bandwidth) fetch each object, check every AEAD tag and the SHA-256, and
 * record what is corrupt or missing. Reads are held to scrub.rate_limit
 * bytes/s in total. Progress and findings go to <data_dir>/run/scrub.json,
 * replaced atomically about twice a second:
 *   {"state":"running"|"done"|"failed","checked","total","bytes",
 *    "corrupt":[{"id","path","error"}],"missing":[{"id","path"}],...}
 */
#ifndef DRIPD_SCRUB_H
#define DRIPD_SCRUB_H

#include <stdint.h>

#include "dripd/keys.h"

struct dr_config;
struct dr_metrics;
struct scrub;

/* master is copied. Never fails (aborts on OOM). */
struct scrub *scrub_create(const struct dr_config *cfg, struct dr_metrics *m,
                           const uint8_t master[DR_KEY_LEN], int threads);
/* Start a run if one was requested and none is running. Cheap (one stat). */
void scrub_poll(struct scrub *s);
/* Stop a running scrub (it records state "failed": interrupted) and join. NULL ok. */
void scrub_destroy(struct scrub *s);

#endif

/* store.c - picks the object store backend named by storage.backend.
 *
 * The backends live in store_local.c (a directory) and store_s3.c (an S3
 * bucket); both implement struct dr_store_ops from store.h. Handles are
 * per thread (see store.h); this file keeps no state.
 */
#include "dripd/store.h"

#include <errno.h>
#include <stdio.h>

#include "dripd/config.h"

int store_open(const struct dr_config *cfg, struct dr_store **out, char *err, size_t errlen)
{
    *out = NULL;
    switch (cfg->storage.backend) {
    case DR_STORE_LOCAL:
        return store_local_open(cfg, out, err, errlen);
    case DR_STORE_S3:
        return store_s3_open(cfg, out, err, errlen);
    }
    snprintf(err, errlen, "storage.backend: unknown backend %d", (int)cfg->storage.backend);
    return -EINVAL;
}

void store_close(struct dr_store *st)
{
    if (st != NULL && st->ops != NULL && st->ops->close != NULL)
        st->ops->close(st);
}

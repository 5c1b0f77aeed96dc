/* store_s3.c - S3 backend. Not built yet in this revision: store_open()
 * reports the s3 backend as unsupported until it lands. */
#include <errno.h>
#include <stdio.h>

#include "dripd/store.h"

int store_s3_open(const struct dr_config *cfg, struct dr_store **out, char *err, size_t errlen)
{
    (void)cfg;
    *out = NULL;
    snprintf(err, errlen, "s3 backend is not available in this build");
    return -ENOTSUP;
}

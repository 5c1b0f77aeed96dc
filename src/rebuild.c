/* rebuild.c - placeholder until the self-describing object format lands. */
#include "dripd/rebuild.h"

#include <errno.h>
#include <stdio.h>

int rebuild_catalog(const struct dr_config *cfg, char *err, size_t errlen)
{
    (void)cfg;
    snprintf(err, errlen, "--rebuild-catalog is not available in this build");
    return -ENOTSUP;
}

/* rebuild.h - disaster recovery: recreate the catalog's media rows from the
 * self-describing sealed objects in the store (dripd -c FILE --rebuild-catalog).
 * Runs in the supervisor process before any worker starts. */
#ifndef DRIPD_REBUILD_H
#define DRIPD_REBUILD_H

#include <stddef.h>

struct dr_config;

/* Lists every object, verifies and reads its header with the master key,
 * and inserts missing media rows (state "available"). Prints a summary
 * line to stderr. 0 / -errno with err. */
int rebuild_catalog(const struct dr_config *cfg, char *err, size_t errlen);

#endif

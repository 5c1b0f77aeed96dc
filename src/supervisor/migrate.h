/* migrate.h - dripd -c FILE --migrate-catalog postgres: move a node's
 * SQLite catalog into PostgreSQL (catalog_copy), report and verify. Runs
 * in the supervisor process, alone: the node must be stopped. */
#ifndef DRIPD_MIGRATE_H
#define DRIPD_MIGRATE_H

#include <stddef.h>

struct dr_config;

/* target: "postgres" (the only one). The source is <data_dir>/catalog.db,
 * the target catalog.postgres.dsn of cfg. Prints one line per table (rows,
 * SHA-256) and a summary on stdout. 0 / -errno with err. */
int migrate_catalog(const struct dr_config *cfg, const char *target, char *err, size_t errlen);

#endif

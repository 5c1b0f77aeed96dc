/* migrate.c - dripd -c FILE --migrate-catalog postgres (see migrate.h).
 *
 * The configuration names both ends: the source is the SQLite catalog in
 * data_dir, the target the database of catalog.postgres.dsn (catalog.backend
 * may already say postgres, or still sqlite: either way the DSN is used).
 * The copy and its verification are catalog_copy's (catalog.h): one
 * transaction, then row counts and SHA-256 digests compared per table.
 * The jobs become this node's (node.id), whose data_dir holds their spool
 * files, so the node that migrated must be the one that starts on the new
 * catalog first. Single-threaded, before any worker exists.
 */
#include "migrate.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/util.h"

int migrate_catalog(const struct dr_config *cfg, const char *target, char *err, size_t errlen)
{
    if (strcmp(target, "postgres") != 0) {
        dr_set_err(err, errlen, "cannot migrate to '%s': the only target is postgres", target);
        return -EINVAL;
    }
    if (cfg->catalog.postgres.dsn == NULL) {
        dr_set_err(err, errlen,
                   "%s: catalog.postgres.dsn (or dsn_file) names the target; it is "
                   "not set",
                   cfg->path);
        return -EINVAL;
    }
    char *db = xasprintf("%s/catalog.db", cfg->data_dir);
    int ok = access(db, R_OK | W_OK);
    if (ok != 0) {
        dr_set_err(err, errlen, "no SQLite catalog to migrate at %s: %s", db, strerror(errno));
        free(db);
        return -ENOENT;
    }
    struct dr_config from = *cfg, to = *cfg;
    from.catalog.backend = DR_CATALOG_SQLITE;
    to.catalog.backend = DR_CATALOG_POSTGRES;
    struct dr_catalog_copy out[CATALOG_COPY_TABLES];
    char why[DR_ERRLEN];
    int rc = catalog_copy(&from, &to, out, why, sizeof why);
    if (rc < 0) {
        dr_set_err(err, errlen, "%s", why);
        free(db);
        return rc;
    }
    uint64_t total = 0;
    for (int i = 0; i < CATALOG_COPY_TABLES; i++) {
        printf("%-7s %10" PRIu64 " rows  sha256 %s\n", out[i].table, out[i].rows, out[i].sha256);
        total += out[i].rows;
    }
    printf("migrate-catalog: %" PRIu64 " rows in %d tables copied from %s into PostgreSQL and "
           "verified (the same counts and SHA-256 on both sides). Set catalog.backend: postgres "
           "and start this node (node.id %s) first: its data_dir holds the spool files of the "
           "jobs still queued.\n",
           total, CATALOG_COPY_TABLES, db, cfg->node.id);
    free(db);
    return 0;
}

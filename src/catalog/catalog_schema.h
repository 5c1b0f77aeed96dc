/* catalog_schema.h - the catalog's tables and their migrations. */
#ifndef DRIPD_CATALOG_SCHEMA_H
#define DRIPD_CATALOG_SCHEMA_H

#include "db.h"

#define CATALOG_SCHEMA_VERSION 3

/* The schema version the database records (0 for an empty one). */
int catalog_schema_version(struct db *db, int *out);
/* Bring the schema to CATALOG_SCHEMA_VERSION, each missing step once even
 * with concurrent migrators. -EIO (logged) for a database newer than this
 * binary. No transaction may be open. */
int catalog_schema_migrate(struct db *db);

#endif

/* catalog_schema.h - the catalog's tables and their migrations. */
#ifndef DRIPD_CATALOG_SCHEMA_H
#define DRIPD_CATALOG_SCHEMA_H

#include "db.h"

#define CATALOG_SCHEMA_VERSION 9

/* PostgreSQL advisory lock keys (two int4: 'drip', n), as SQL text. */
#define CATALOG_LOCK_MIGRATE "1685219696, 0" /* migrators, one at a time */
#define CATALOG_LOCK_EVENTS                                                                        \
    "1685219696, 1" /* event writers until commit: seq order = commit order */
/* + hashtext(owner): an owner's path checks and writes (catalog_media.c) */
#define CATALOG_LOCK_PATHS "1685219697"
/* PostgreSQL NOTIFY channels (catalog_watch in catalog.h listens). */
#define CATALOG_CHANNEL_JOBS "dripd_jobs"     /* payload: the job kind */
#define CATALOG_CHANNEL_EVENTS "dripd_events" /* payload: empty */

/* The schema version the database records (0 for an empty one). */
int catalog_schema_version(struct db *db, int *out);
/* Bring the schema to CATALOG_SCHEMA_VERSION, each missing step once even
 * with concurrent migrators. -EIO (logged) for a database newer than this
 * binary. No transaction may be open. */
int catalog_schema_migrate(struct db *db);

#endif

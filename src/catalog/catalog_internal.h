/* catalog_internal.h - what catalog.c shares with the other modules of
 * src/catalog: the handle behind include/dripd/catalog.h's opaque
 * `struct catalog`, and the caps every module keeps to.
 *
 * The catalog is split by table (docs/CATALOG.md, "Source files"):
 * catalog.c (lifecycle, info, housekeeping), catalog_schema.c (DDL and
 * migrations), catalog_media.c (media, shares, listing), catalog_jobs.c
 * (intake and the job queue), catalog_events.c, catalog_tus.c,
 * catalog_users.c (users, usage), and for a PostgreSQL cluster
 * catalog_nodes.c (heartbeats, leases), catalog_watch.c (LISTEN) and
 * catalog_copy.c (--migrate-catalog). Each talks SQL only through db.h.
 */
#ifndef DRIPD_CATALOG_INTERNAL_H
#define DRIPD_CATALOG_INTERNAL_H

#include "db.h"

struct catalog {
    struct db *db; /* one connection (PostgreSQL: a lease on the pool); its statements are cached */
    char *node;    /* node.id: this node's jobs (PostgreSQL jobs.node), leases and heartbeat */
};

#endif

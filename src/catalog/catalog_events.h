/* catalog_events.h - what catalog_events.c gives the other catalog
 * modules. (Its public calls are in include/dripd/catalog.h.) */
#ifndef DRIPD_CATALOG_EVENTS_H
#define DRIPD_CATALOG_EVENTS_H

#include <stdint.h>

#include "db.h"

/* Inside the caller's transaction: append the event of type for job_id,
 * its data built from the job row (and its media) as they are now.
 * -ENOENT if there is no such job. */
int catalog_event_add(struct db *db, const char *job_id, const char *type, int64_t now);
/* Inside the caller's write transaction: the seq of the newest event,
 * which is the caller's own last one if it wrote any (event writers are
 * serialised until they commit). 0 for an empty log. */
int catalog_event_newest(struct db *db, int64_t *seq);

#endif

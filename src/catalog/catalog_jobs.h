/* catalog_jobs.h - what catalog_jobs.c gives the other catalog modules:
 * the intake of one upload, which the tus module's finish shares; and the
 * tus module's item of a group intake. (Their public calls are in
 * include/dripd/catalog.h.) */
#ifndef DRIPD_CATALOG_JOBS_H
#define DRIPD_CATALOG_JOBS_H

#include <stdbool.h>
#include <stdint.h>

#include "dripd/catalog.h"

/* The inputs of an intake item are complete and well formed. */
bool catalog_intake_valid(const struct dr_intake *it);
/* One intake item inside the caller's transaction: media row, owner link,
 * upload job, "job.created" event. A taken path is not an error here: the
 * item gets result -EEXIST (nothing of it written) and the transaction
 * goes on. Returns 0 or a fatal -errno. */
int catalog_intake_one(struct catalog *cat, struct dr_intake *it, int64_t now);
/* (catalog_tus.c) A tus intake item (it->tus_new, it->tus_id) inside the
 * caller's transaction: it->result as catalog_intake_uploads says;
 * returns 0 or a fatal -errno. With savepoint, the item runs under one, so
 * an item that fails (it->result < 0) is undone alone. Without, such an
 * item sets *redo instead and may leave changes behind: the caller rolls
 * the transaction back and runs every item again with savepoints (a
 * savepoint copies each page its item changes into the statement journal
 * first; items fail rarely). */
int catalog_tus_intake(struct catalog *cat, struct dr_intake *it, bool savepoint, bool *redo);

#endif

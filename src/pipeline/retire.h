/* retire.h - the retire sweep: the trash's expiry and the deletion of
 * replaced versions (catalog_versions.h; docs/CATALOG.md, "Versions and
 * the trash").
 *
 * Called by the upload starter every few seconds. Once per cluster: the
 * node holding the catalog lease "retire" does it (with SQLite, every
 * node is the only one). A sweep marks "purge" the trash older than
 * trash.ttl (all of it with trash.ttl 0) and the earlier versions of files
 * that are gone, then deletes up to RETIRE_BATCH purge rows, each as
 * DELETE /v1/media/{id} does: the row (with its shares, links, variant
 * rows) first, in one commit, then this node's cache entries and the
 * objects of the original and its variants (store_forget). A failure
 * after the row is gone leaves an orphan object for scrub, never a row
 * without its object.
 */
#ifndef DRIPD_RETIRE_H
#define DRIPD_RETIRE_H

#include <stdbool.h>

struct catalog;
struct dr_config;

/* One sweep. Returns true when it had more to purge than one batch (call
 * again soon). */
bool retire_sweep(const struct dr_config *cfg, struct catalog *cat);

#endif

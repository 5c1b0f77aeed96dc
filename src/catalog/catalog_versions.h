/* catalog_versions.h - what catalog_versions.c gives the other catalog
 * modules: the overwrite steps of an intake, written inside the caller's
 * transaction. (Its public calls are in include/dripd/catalog_versions.h.) */
#ifndef DRIPD_CATALOG_VERSIONS_INTERNAL_H
#define DRIPD_CATALOG_VERSIONS_INTERNAL_H

#include <stdint.h>

#include "db.h"
#include "dripd/catalog.h"

/* Before intake inserts m (it->path): with it->if_match, if the ETag of
 * the file at the path is listed, m becomes its next version, "pending"
 * until its upload is stored (m->file_id, m->version, m->retired;
 * it->replaced names the file's current row); with it->rename, a taken
 * path is replaced by the first free "name (n).ext" (it->renamed, and
 * m->path points at it). 0, with it->result -ESTALE (no file, or the ETag
 * moved on) or -EEXIST (no free name) when the item is to be skipped; or
 * -errno. */
int catalog_versions_place(struct db *db, struct dr_intake *it, struct dr_media *m);
/* After the replacing row new_id went in: shares and public links move
 * from old_id to it, and earlier versions of file_id beyond keep become
 * "purge". */
int catalog_versions_follow(struct db *db, const char *old_id, const char *new_id,
                            const char *file_id, int keep);
/* Upload id became available (inside its job step's transaction): when it
 * is a pending replacement, it takes the path of its file's current row,
 * which becomes an earlier version ("purge" with keep 0), and its shares
 * and links follow (as catalog_versions_follow). When the file is gone it
 * takes its own path, or goes to the trash if that is taken now. */
int catalog_versions_promote(struct db *db, const char *id, int keep, int64_t now);
/* A file deleted for good (media id): its earlier versions become "purge". */
int catalog_versions_purge_of(struct db *db, const char *id, int64_t now);

#endif

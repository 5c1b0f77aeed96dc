/* catalog_media.h - what catalog_media.c gives the other catalog modules:
 * the media and shares rows, written inside the caller's transaction.
 * (Its public calls are in include/dripd/catalog.h.) */
#ifndef DRIPD_CATALOG_MEDIA_H
#define DRIPD_CATALOG_MEDIA_H

#include <stdint.h>

#include "db.h"
#include "dripd/catalog.h"

/* The columns of a media row (alias m), in the order catalog_media_read
 * reads them. */
#define MEDIA_COLS                                                                                 \
    "m.id, m.owner, m.path, m.name, m.folder, m.size, m.sha256, m.content_type, m.state, "         \
    "m.storage_key, m.wrapped_key, m.created_at, m.uploaded_at, m.metadata, m.file_id, "           \
    "m.version, m.retired, m.retired_at"
/* The row s is on (selected with MEDIA_COLS) into m (zeroed first). */
void catalog_media_read(struct db_stmt *s, struct dr_media *m);
/* Inside the caller's transaction (or none): the media row id into m
 * (zeroed first; dr_media_clear it). 0, -ENOENT, -errno. */
int catalog_media_read_id(struct db *db, const char *id, struct dr_media *m);
/* Insert m (folder and name derived from m->path). -EEXIST when the path
 * is taken among live media or the id exists (nothing written, and the
 * transaction goes on); -EINVAL for a path that is not absolute or has an
 * empty name. */
int catalog_media_add(struct db *db, const struct dr_media *m);
/* Inside the caller's transaction: take the path locks of these owners
 * (PostgreSQL; duplicates allowed), in name order, so that writers of
 * several owners cannot deadlock on them. A no-op on SQLite. */
int catalog_media_lock_owners(struct db *db, const char *const *owners, size_t n);
/* Where owner may put a file at path (media `except` aside, "" for
 * none): 0, or DR_PATH_FILE / DR_PATH_FOLDER / DR_PATH_UNDER_FILE
 * (catalog.h), or -errno. DR_PATH_FOLDER is also how to ask whether owner
 * has a folder at path: a file below it, or a folder made there or below
 * it (catalog_folders.h). */
int catalog_path_clash(struct db *db, const char *owner, const char *path, const char *except);
/* Link user to media_id; a link that exists already is kept. */
int catalog_share_add(struct db *db, const char *media_id, const char *user, int64_t now);
/* The owner of media id if viewer may see it (NULL viewer: anyone), as
 * a heap copy in *owner (caller frees); -ENOENT otherwise. */
int catalog_media_owner_for(struct db *db, const char *id, const char *viewer, char **owner);
/* The media fields a job step fills in (sealed: hash and wrapped key;
 * size; stored: storage key; available: state and uploaded_at = now), in
 * one UPDATE, then, for an available row that is a pending version,
 * catalog_versions_promote. 0, or -ENOENT when the row is gone. */
int catalog_media_apply_step(struct db *db, const struct dr_job_step *st, int64_t now);
/* A media still "queued" becomes "failed" (its upload job failed); any
 * other state, or no row, is left alone. */
int catalog_media_fail_queued(struct db *db, const char *id);

#endif

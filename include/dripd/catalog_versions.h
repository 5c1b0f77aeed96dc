/* catalog_versions.h - overwrite, earlier versions and the trash.
 * Implemented by src/catalog/catalog_versions.c on the catalog's db layer
 * (docs/CATALOG.md, "Versions and the trash").
 *
 * Every upload is its own media row. The rows of one file share a
 * file_id (its first upload's id) and are numbered by version; at most
 * one of them holds the file's path (retired ""). The others are retired:
 *   "version"  an earlier version, kept (versions.keep), restorable;
 *   "trash"    the file was deleted into the trash (trash.ttl), restorable;
 *   "purge"    nobody sees it any more; the pipeline's retire sweep deletes
 *              its row and objects (catalog_retired_purgeable).
 * A retired row is its owner's alone: shares and public links follow the
 * row that holds the path (they move to a replacing upload and back to a
 * restored version); a trashed file is nobody else's until restored.
 *
 * Threads and errors: as catalog.h (one handle per thread; 0 / -errno;
 * -ENOENT absent or not the caller's).
 */
#ifndef DRIPD_CATALOG_VERSIONS_H
#define DRIPD_CATALOG_VERSIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/catalog.h"

/* Is sha256 (a media's ETag, hex; "" before it is sealed) in list, the
 * form of dr_intake.if_match ("*", or hex values separated by ',')? */
bool catalog_etag_listed(const char *list, const char *sha256);
/* The versions of the file media id is a version of (id may be any of
 * them), the one holding the path first, then the kept earlier ones,
 * newest first. Only the owner: -ENOENT otherwise. Free with
 * catalog_media_list_free(*out, *n, NULL, 0). */
int catalog_versions_list(struct catalog *cat, const char *id, const char *owner,
                          struct dr_media **out, size_t *n);
/* Version n of id's file becomes the file again, in its path (the file's
 * current path); the version it replaces is kept as an earlier version
 * (trimmed to keep). *out (may be NULL) gets the restored row.
 * -ENOENT no such version of the owner's (or it failed); -ESRCH the file
 * has no current version (it is in the trash). */
int catalog_version_restore(struct catalog *cat, const char *id, const char *owner, int64_t n,
                            int keep, struct dr_media *out);
/* Move media id (owner's, holding its path) into the trash. -ENOENT. */
int catalog_media_trash(struct catalog *cat, const char *id, const char *owner);
/* owner's trash, most recently deleted first. Free as catalog_versions_list. */
int catalog_trash_list(struct catalog *cat, const char *owner, struct dr_media **out, size_t *n);
/* Media id leaves the trash, back to its path. -ENOENT not in owner's
 * trash; -EEXIST its path is taken now (a file, or a folder: *clash, may
 * be NULL, says which, as catalog_path_exists). *out may be NULL. */
int catalog_trash_restore(struct catalog *cat, const char *id, const char *owner, int *clash,
                          struct dr_media *out);
/* The retire sweep's first half, one transaction: trash deleted before
 * trash_before_ms, and earlier versions of files that no longer exist,
 * become "purge". *marked (may be NULL) counts them. */
int catalog_retired_expire(struct catalog *cat, int64_t trash_before_ms, uint64_t *marked);
/* versions.keep lowered: every file's earlier versions beyond its newest
 * keep become "purge" (one statement). *marked (may be NULL) counts them. */
int catalog_versions_trim_all(struct catalog *cat, int keep, uint64_t *marked);
/* Up to max ids of "purge" rows whose upload is not running any more
 * (state not "queued"), oldest first: delete each with its variants'
 * objects as DELETE /v1/media/{id} does (catalog_media_delete, NULL
 * owner). *n gets how many. */
int catalog_retired_purgeable(struct catalog *cat, size_t max, char (*ids)[DR_ID_LEN + 1],
                              size_t *n);

#endif

/* catalog_folders.h - folders as first-class: make an empty one, move or
 * rename one with everything in it, delete one with everything in it.
 * Implemented by src/catalog/catalog_folders.c on the catalog's db layer
 * (docs/CATALOG.md, "Folders").
 *
 * A folder of owner's exists while owner has a file below it, or a folder
 * made with catalog_folder_create at it or below it. A made folder stays,
 * empty or not, until it is deleted (or moved); a folder that only its
 * files make goes with its last file, as before. A file and a folder
 * never share a path (catalog.h), made folders included.
 *
 * Threads and errors: as catalog.h (one handle per thread; 0 / -errno).
 */
#ifndef DRIPD_CATALOG_FOLDERS_H
#define DRIPD_CATALOG_FOLDERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/catalog.h"

/* Make owner's folder path (normalised, not "/"; its parents need not
 * exist: they exist through it). *created (may be NULL) is false when a
 * folder was there already; it is kept from now on either way. -EEXIST
 * with *clash (may be NULL) DR_PATH_FILE or DR_PATH_UNDER_FILE when a
 * file is there or above it; -EINVAL for "/". */
int catalog_folder_create(struct catalog *cat, const char *owner, const char *path, bool *created,
                          int *clash);

/* Move owner's folder `from` to `to` (a new name, a new place, or both),
 * in ONE transaction: every file below it (whatever its state; ids do not
 * change, so shares, public links, variants and cached bytes follow), the
 * folders made below it, and the folder shares of it and below. *moved
 * (may be NULL) is the number of files moved. -ENOENT no folder at from;
 * -EEXIST with *clash (may be NULL) when `to` is taken (DR_PATH_FILE,
 * DR_PATH_FOLDER, DR_PATH_UNDER_FILE); -EINVAL when either is "/" or `to`
 * is inside `from`; -ENAMETOOLONG when a moved path would pass
 * DR_PATH_MAX bytes. from == to is a no-op. */
int catalog_folder_move(struct catalog *cat, const char *owner, const char *from, const char *to,
                        uint64_t *moved, int *clash);

/* What a deleted media leaves to remove outside the catalog: its object
 * (NULL if it was never stored) and its variants' objects (names[i] and
 * keys[i]; a key is NULL for a failed variant). */
struct dr_gone {
    char id[DR_ID_LEN + 1];
    char *storage_key;
    char **variant_names;
    char **variant_keys;
    size_t n_variants;
};
void catalog_gone_free(struct dr_gone *g, size_t n);

/* Delete owner's folder path (not "/") with everything in it, in ONE
 * transaction: every file below it (their shares, public links and
 * variant rows), the folders made at or below it, and the folder shares
 * of it and below. *out (caller frees with catalog_gone_free) lists the
 * deleted media and their objects, for the caller to remove from the
 * store and the cache after the commit. -ENOENT no folder there; -EINVAL
 * for "/". */
int catalog_folder_delete(struct catalog *cat, const char *owner, const char *path,
                          struct dr_gone **out, size_t *n_out);
/* The same with the trash on (trash.ttl > 0), in ONE transaction: every
 * live file below path goes to the trash (retired "trash" at now_ms, as
 * catalog_media_trash: its shares, links, variants and earlier versions
 * stay, to come back with it), the folders made at or below it and the
 * folder shares of it and below are deleted. *ids (caller frees; NULL
 * when none) and *n_out: the files trashed, for their trash marks
 * (store_mark_trash). Nothing leaves the store. -ENOENT no folder there;
 * -EINVAL for "/". */
int catalog_folder_trash(struct catalog *cat, const char *owner, const char *path, int64_t now_ms,
                         char (**ids)[DR_ID_LEN + 1], size_t *n_out);

#endif

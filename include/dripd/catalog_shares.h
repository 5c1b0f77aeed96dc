/* catalog_shares.h - sharing that can be taken back: who a media is
 * shared with, unsharing, and folder shares. Implemented by
 * src/catalog/catalog_shares.c on the catalog's db layer (docs/CATALOG.md,
 * "Sharing"). Sharing one media is catalog_media_share() (catalog.h).
 *
 * A folder share is a rule, not a copy: owner's folder `path` shared with
 * `user` lets user see every live file of owner whose path is below
 * `path`, now and later: a file added (or moved) there later is shared
 * too, one moved out or deleted is not any more, and unsharing the folder
 * takes all of it back at once. A file shared on its own stays shared
 * whatever happens to a folder share above it. The rule speaks of owner's
 * own files only: a file someone else shared with owner is never passed
 * on.
 *
 * Threads and errors: as catalog.h (one handle per thread; 0 / -errno;
 * -ENOENT absent or not the caller's).
 */
#ifndef DRIPD_CATALOG_SHARES_H
#define DRIPD_CATALOG_SHARES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dripd/catalog.h"

/* Someone who can see a media besides its owner. */
struct dr_share {
    char *user;
    char *folder; /* NULL: the file itself was shared; else the shared folder that covers it */
    int64_t created_at;
};

/* Who media id (owner's; NULL owner = internal) is shared with: its own
 * shares, then the folder shares that cover it, ordered by user. The
 * owner is not listed. -ENOENT when the media is not owner's. Free with
 * catalog_shares_free. */
int catalog_shares_list(struct catalog *cat, const char *id, const char *owner,
                        struct dr_share **out, size_t *n_out);
void catalog_shares_free(struct dr_share *s, size_t n);
/* Stop sharing media id (owner's) with user. -ENOENT the media is not
 * owner's; -ESRCH it was not shared with user on its own (a folder share
 * that covers it is taken back with catalog_folder_unshare). */
int catalog_media_unshare(struct catalog *cat, const char *id, const char *owner, const char *user);

/* A folder share of owner's. */
struct dr_folder_share {
    char *path; /* "/photos" */
    char *user;
    int64_t created_at;
};

/* Share owner's folder path (normalised, "/" the whole tree) with user.
 * *created (may be NULL) says whether it is new (sharing twice is a
 * no-op). -ENOENT owner has no folder there; -ESRCH user is unknown;
 * -EINVAL user is owner. */
int catalog_folder_share(struct catalog *cat, const char *owner, const char *path, const char *user,
                         bool *created);
/* Take a folder share back. -ENOENT when there is none. */
int catalog_folder_unshare(struct catalog *cat, const char *owner, const char *path,
                           const char *user);
/* owner's folder shares, of path only unless path is NULL, ordered by
 * path then user. Free with catalog_folder_shares_free. */
int catalog_folder_shares_list(struct catalog *cat, const char *owner, const char *path,
                               struct dr_folder_share **out, size_t *n_out);
void catalog_folder_shares_free(struct dr_folder_share *s, size_t n);

#endif

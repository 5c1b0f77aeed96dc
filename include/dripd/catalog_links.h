/* catalog_links.h - public links: stored, revocable links to one media
 * that anyone holding the URL may download, without a token, until they
 * expire, run out of downloads or are revoked. Implemented by
 * src/catalog/catalog_links.c on the catalog's db layer (docs/CATALOG.md,
 * "Public links").
 *
 * The catalog keeps no secret: the URL's token is derived from the link's
 * id and the owner's bearer token (src/api/link.c), so a copy of the
 * catalog opens no link. A link belongs to its file: it follows a move or
 * rename, it dies with the media (ON DELETE CASCADE), and it is revoked by
 * deleting its row.
 *
 * Downloads are counted by catalog_link_count, in one statement that
 * also checks the expiry and the limit, so concurrent requests on any
 * number of nodes never pass max_downloads.
 *
 * Threads and errors: as catalog.h (one handle per thread; 0 / -errno;
 * -ENOENT absent or not the caller's).
 */
#ifndef DRIPD_CATALOG_LINKS_H
#define DRIPD_CATALOG_LINKS_H

#include <stddef.h>
#include <stdint.h>

#include "dripd/catalog.h"

struct dr_link {
    char id[DR_ID_LEN + 1];
    char *owner;
    char media_id[DR_ID_LEN + 1];
    char *path;            /* the media's path now */
    char *state;           /* the media's state ("available", ...) */
    int64_t created_at;    /* ms */
    int64_t expires_at;    /* ms; 0 never */
    int64_t max_downloads; /* 0: no limit */
    int64_t downloads;     /* counted so far */
};

/* A new link to media id, which must be owner's. expires_at 0 = never,
 * max_downloads 0 = no limit. *out gets the row as stored. */
int catalog_link_create(struct catalog *cat, const char *media_id, const char *owner,
                        int64_t expires_at, int64_t max_downloads, struct dr_link *out);
/* Link id, whoever owns it (the public route checks the token itself). */
int catalog_link_get(struct catalog *cat, const char *id, struct dr_link *out);
/* owner's links, newest first; of media_id only unless it is NULL. Free
 * with catalog_links_free. */
int catalog_links_list(struct catalog *cat, const char *owner, const char *media_id,
                       struct dr_link **out, size_t *n_out);
void catalog_links_free(struct dr_link *l, size_t n);
/* Revoke: the row goes. -ENOENT when it is not owner's. */
int catalog_link_delete(struct catalog *cat, const char *id, const char *owner);
/* Count one download of link id at now_ms, if it may still be used: 0
 * counted (*downloads, may be NULL, is the new count); -ENOENT no such
 * link (revoked); -ETIME expired; -EDQUOT max_downloads reached. */
int catalog_link_count(struct catalog *cat, const char *id, int64_t now_ms, int64_t *downloads);
void dr_link_clear(struct dr_link *l);

#endif

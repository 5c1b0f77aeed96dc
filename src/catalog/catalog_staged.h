/* catalog_staged.h - what catalog_staged.c gives the other catalog
 * modules: recording a part inside the caller's transaction (the intake
 * of a PUT, a tus PATCH). (Its public calls are in include/dripd/catalog.h.) */
#ifndef DRIPD_CATALOG_STAGED_H
#define DRIPD_CATALOG_STAGED_H

#include <stdint.h>

#include "db.h"

/* Inside the caller's transaction: the part [off, off + len) of body.
 * -EEXIST if body already has a part at off. A no-op (0) on SQLite,
 * which stages nothing. */
int catalog_staged_add(struct db *db, const char *body, const char *part, uint64_t off,
                       uint64_t len, int64_t now);

/* Inside the caller's transaction (tus concatenation): every part of body
 * from, which must hold exactly len bytes (-EIO otherwise), becomes a
 * part of body to at base + its offset; its object keeps its name (src).
 * A no-op (0) on SQLite. */
int catalog_staged_move(struct db *db, const char *from, const char *to, uint64_t base,
                        uint64_t len);

#endif

/* catalog_users.h - what catalog_users.c gives the other catalog modules.
 * (Its public calls are in include/dripd/catalog.h.) */
#ifndef DRIPD_CATALOG_USERS_H
#define DRIPD_CATALOG_USERS_H

#include "db.h"

/* 0 if a user of that name is known, -ENOENT if not. */
int catalog_user_exists(struct db *db, const char *name);

#endif

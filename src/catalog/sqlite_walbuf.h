/* sqlite_walbuf.h - a SQLite VFS that writes a transaction's WAL frames
 * with one pwrite instead of two per page (issue 15).
 *
 * "dripd-walbuf" wraps the default VFS: every file behaves as the default
 * VFS's, except that the consecutive writes of a WAL file collect in a
 * buffer that is written out, at the latest, with the frame that commits
 * (sqlite_walbuf.c says exactly when). db_sqlite.c opens every catalog
 * connection with it.
 */
#ifndef DRIPD_SQLITE_WALBUF_H
#define DRIPD_SQLITE_WALBUF_H

#include <stdint.h>

#define SQLITE_WALBUF_VFS "dripd-walbuf"

/* Register the VFS (not as the default; once per process, thread-safe).
 * 0 or -ENOSYS (no default VFS to wrap) / -ENOMEM. */
int sqlite_walbuf_register(void);

/* For tests and benchmarks: WAL writes this process's WAL files asked of
 * the VFS (*asked) and made to the file system (*made), since start. */
void sqlite_walbuf_counts(uint64_t *asked, uint64_t *made);

#endif

/* util.h - allocation, time and small string helpers used by every module.
 *
 * Error convention (whole project): functions return 0 on success and a
 * negative errno value on failure (-ENOENT, -EAGAIN, ...). Where a human
 * explanation helps, the function also takes `char *err, size_t errlen`
 * and writes one line into it on failure. -EAGAIN means "transient, retry".
 *
 * Allocation goes through x*alloc(), which abort() on out-of-memory, so
 * callers never check for NULL (redis zmalloc style).
 */
#ifndef DRIPD_UTIL_H
#define DRIPD_UTIL_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>
#include <sys/types.h>
#include <time.h>

#define DR_ERRLEN 256
#define DR_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define DR_MIN(a, b) ((a) < (b) ? (a) : (b))
#define DR_MAX(a, b) ((a) > (b) ? (a) : (b))

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s); /* NULL in, NULL out */
char *xstrndup(const char *s, size_t n);
void dr_strv_free(char **v, size_t n); /* free v[0..n) and v; NULL ok */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap);

/* Write one formatted line into err (the `char *err, size_t errlen`
 * convention); err may be NULL or errlen 0, then nothing is written. */
void dr_set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clocks. Wall time for records, monotonic for timeouts. */
int64_t dr_now_ms(void);  /* CLOCK_REALTIME, ms since epoch */
int64_t dr_mono_ms(void); /* CLOCK_MONOTONIC, ms */
uint64_t dr_mono_ns(void);
/* Condition variables whose timed waits run on CLOCK_MONOTONIC, so a step
 * of the wall clock never stretches or cuts a timeout. Every timed wait in
 * dripd uses one: init it with dr_cond_init_mono() and give
 * pthread_cond_timedwait() the deadline from dr_mono_timespec(), an
 * absolute dr_mono_ms() value (e.g. dr_mono_ms() + 200). */
void dr_cond_init_mono(pthread_cond_t *cv);
void dr_mono_timespec(struct timespec *ts, int64_t mono_ms);
/* RFC 3339 UTC with milliseconds: "2026-11-25T00:06:05.123Z". buf >= 32. */
void dr_fmt_time(int64_t ms, char *buf, size_t len);

/* Whole-buffer I/O that retries on EINTR and short writes. 0 / -errno. */
int dr_write_all(int fd, const void *buf, size_t len);
int dr_pwrite_all(int fd, const void *buf, size_t len, uint64_t off);
/* Reads up to len bytes; returns bytes read (< len only at EOF) or -errno. */
ssize_t dr_read_full(int fd, void *buf, size_t len);
ssize_t dr_pread_full(int fd, void *buf, size_t len, uint64_t off);
/* mkdir -p with mode; every directory it creates is made durable (its
 * parent is fsynced: else a power cut can take it, and all that was
 * synced inside it, away). 0 / -errno. */
int dr_mkdirs(const char *path, unsigned mode);
/* fsync the directory containing path (after a rename/create). 0 / -errno. */
int dr_fsync_parent(const char *path);
/* Make n files' written data durable at once: one syncfs(2) of their
 * file system when n > 1 (one write-out round and one device cache flush
 * for all, instead of an fdatasync and a flush per file; it also writes
 * whatever else is dirty there), then each file's writeback error state;
 * fdatasync when n == 1. rcs[i] gets file i's 0 / -errno; returns how
 * many failed. All the fds must be on one file system. The names of new
 * files need their directory fsynced too (on ext4 without a journal
 * syncfs flushes the device before its last metadata write-out). With
 * `skip_hook` listed in $DRIPD_TEST_SKIP_SYNC nothing is synced. */
size_t dr_sync_files(const int *fds, int *rcs, size_t n, const char *skip_hook);
/* Test hook (power-cut suite, docs/PIPELINE.md): true when the sync named
 * `what` ("spool", "spool_dir", "tus", "store", "store_dir", "catalog",
 * "strip")
 * is listed in $DRIPD_TEST_SKIP_SYNC, so that the suite can prove it
 * notices that sync missing. Never set it in production. */
bool dr_test_skip_sync(const char *what);
/* Start a thread with every signal blocked, so signals stay with the main
 * thread (whose handlers only set flags). 0 / -errno. */
int dr_thread_start(pthread_t *tid, void *(*fn)(void *), void *arg);
/* Secure random bytes (getrandom, through a per-thread pool that a fork
 * empties; not for a child of a raw clone). Aborts if none can be had. */
void dr_random(void *buf, size_t len);
/* Constant-time comparison; true when equal. */
bool dr_consttime_eq(const void *a, size_t alen, const void *b, size_t blen);
/* Lower-case hex of len bytes into out (2*len+1). */
void dr_hex(const uint8_t *in, size_t len, char *out);
/* The byte the two hex digits at s spell (either case), or -1 when they
 * are not two hex digits. Reads s[1] only when s[0] is one, so a string
 * that ends after s[0] is safe. */
int dr_hex_byte(const char *s);

#endif

/* util.c - allocation wrappers, clocks, monotonic condition variables,
 * whole-buffer I/O, directories, threads started with signals blocked,
 * randomness and hex (util.h).
 *
 * Thread-safe, no global state. x*alloc() abort on OOM: a daemon that
 * bounds every queue and buffer treats OOM as a bug, not a condition.
 */
#include "dripd/util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void oom(size_t n)
{
    fprintf(stderr, "dripd: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void dr_strv_free(char **v, size_t n)
{
    for (size_t i = 0; v != NULL && i < n; i++)
        free(v[i]);
    free(v);
}

char *xvasprintf(const char *fmt, va_list ap)
{
    /* Format into a stack buffer first: most strings fit, and the second
     * pass only runs for long ones. */
    char small[256];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        abort();
    char *p = xmalloc((size_t)n + 1);
    if ((size_t)n < sizeof small)
        memcpy(p, small, (size_t)n + 1);
    else
        vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *p = xvasprintf(fmt, ap);
    va_end(ap);
    return p;
}

void dr_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int64_t dr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t dr_mono_ms(void)
{
    return (int64_t)(dr_mono_ns() / 1000000);
}

uint64_t dr_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void dr_cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

void dr_mono_timespec(struct timespec *ts, int64_t mono_ms)
{
    ts->tv_sec = (time_t)(mono_ms / 1000);
    ts->tv_nsec = (long)(mono_ms % 1000) * 1000000L;
}

void dr_fmt_time(int64_t ms, char *buf, size_t len)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

int dr_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int dr_pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

ssize_t dr_read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (char *)buf + got, len - got);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t dr_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, (char *)buf + got, len - got, (off_t)(off + got));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

int dr_mkdirs(const char *path, unsigned mode)
{
    char *p = xstrdup(path);
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, (mode_t)mode) < 0) {
                if (errno != EEXIST) {
                    rc = -errno;
                    break;
                }
            } else if ((rc = dr_fsync_parent(p)) < 0) {
                break; /* a directory we made is durable only once its parent is synced */
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    free(p);
    return rc;
}

int dr_thread_start(pthread_t *tid, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* the new thread inherits the mask */
    int e = pthread_create(tid, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -e;
}

int dr_fsync_parent(const char *path)
{
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL) {
        free(dir);
        dir = xstrdup(".");
    } else if (slash == dir) {
        slash[1] = '\0';
    } else {
        *slash = '\0';
    }
    int rc = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        rc = -errno;
    else {
        if (fsync(fd) < 0)
            rc = -errno;
        close(fd);
    }
    free(dir);
    return rc;
}

/* The writeback error state of one file after a syncfs: waits for pages
 * still under writeback (none, normally) and reports, once per fd, an
 * error that hit this file's pages since it was opened. */
static int check_written(int fd)
{
    return sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WAIT_AFTER) < 0
               ? -errno
               : 0;
}

size_t dr_sync_files(const int *fds, int *rcs, size_t n, const char *skip_hook)
{
    size_t failed = 0;
    bool skip = skip_hook != NULL && dr_test_skip_sync(skip_hook);
    if (n > 1 && !skip && syncfs(fds[0]) == 0) {
        for (size_t i = 0; i < n; i++) {
            rcs[i] = check_written(fds[i]);
            failed += rcs[i] < 0;
        }
        return failed;
    }
    for (size_t i = 0; i < n; i++) {
        rcs[i] = skip || fdatasync(fds[i]) == 0 ? 0 : -errno;
        failed += rcs[i] < 0;
    }
    return failed;
}

bool dr_test_skip_sync(const char *what)
{
    const char *list = getenv("DRIPD_TEST_SKIP_SYNC");
    size_t n = strlen(what);
    for (const char *p = list; p != NULL && *p != '\0'; p += strcspn(p, ",")) {
        p += *p == ',';
        if (strncmp(p, what, n) == 0 && (p[n] == ',' || p[n] == '\0'))
            return true;
    }
    return false;
}

/* Secure random bytes come from getrandom(2) through a small per-thread
 * pool, each byte handed out once and wiped from the pool: a getrandom per
 * call cost ~4 system calls per 4 KiB upload (ids, data keys, nonces,
 * scratch names; issue 15), and OpenSSL's RAND_bytes makes a getpid per
 * call for its fork check. A forked child must never hand out bytes its
 * parent has too: fork() bumps pool_gen (pthread_atfork, registered before
 * the first pool is filled), which empties every pool the child inherited.
 * A raw clone(2) runs no atfork handler, so such a child (the decode
 * zygote's) must not call dr_random. */
#define RANDOM_POOL 256
static unsigned pool_gen; /* atomic */
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_forked(void)
{
    __atomic_add_fetch(&pool_gen, 1, __ATOMIC_SEQ_CST);
}

static void pool_init(void)
{
    if (pthread_atfork(NULL, NULL, pool_forked) != 0)
        abort();
}

static void getrandom_all(unsigned char *p, size_t len)
{
    while (len > 0) {
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            abort();
        }
        p += n;
        len -= (size_t)n;
    }
}

void dr_random(void *buf, size_t len)
{
    static __thread unsigned char pool[RANDOM_POOL];
    static __thread size_t left; /* unused bytes, at the end of pool */
    static __thread unsigned gen;
    pthread_once(&pool_once, pool_init);
    unsigned g = __atomic_load_n(&pool_gen, __ATOMIC_SEQ_CST);
    if (gen != g) {
        explicit_bzero(pool, sizeof pool);
        left = 0;
        gen = g;
    }
    if (len > RANDOM_POOL / 2) {
        getrandom_all(buf, len);
        return;
    }
    if (left < len) {
        getrandom_all(pool, sizeof pool);
        left = sizeof pool;
    }
    unsigned char *src = pool + sizeof pool - left;
    memcpy(buf, src, len);
    explicit_bzero(src, len);
    left -= len;
}

bool dr_consttime_eq(const void *a, size_t alen, const void *b, size_t blen)
{
    const unsigned char *x = a, *y = b;
    unsigned char diff = (unsigned char)(alen != blen);
    size_t n = alen < blen ? alen : blen;
    /* Always walk the full length of `a` so timing depends only on it. */
    for (size_t i = 0; i < alen; i++)
        diff |= (unsigned char)(x[i] ^ (i < n ? y[i] : (unsigned char)~x[i]));
    return diff == 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int dr_hex_byte(const char *s)
{
    int hi = hex_digit(s[0]);
    if (hi < 0)
        return -1;
    int lo = hex_digit(s[1]);
    return lo < 0 ? -1 : hi << 4 | lo;
}

void dr_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
}

/* quota.c - per-user limits and the free-disk floor (see quota.h).
 *
 * State: one struct user_state per configured user (cfg->users order),
 * made on first use. Files in flight and event streams are atomics. The
 * catalog's view of the user (bytes stored, jobs pending) is cached under
 * the user's mutex: read again when older than LOAD_TTL_MS, and moved by
 * what this process reserves for uploads in flight and commits meanwhile.
 * The catalog read runs on the loop thread's own connection (like the
 * routes' path checks) and only for users with max_bytes or
 * max_queued_jobs set.
 *
 * Globally: every file in flight is an open spool descriptor, so the
 * files in flight of all users together are bounded too (G.files against
 * G.files_max): the descriptor limit less what limits.max_connections and
 * the worker's own files need (FD_RESERVE), but at least a quarter of the
 * limit. Past it: 503 + Retry-After, before the process runs out of
 * descriptors for connections, the catalog or the store.
 *
 * Lock order: G.mu (setup only) and each user's mu are leaves.
 */
#include "quota.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>

#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define LOAD_TTL_MS 1000
#define RETRY_AFTER_S "5"
#define FD_RESERVE 256 /* the worker's own descriptors: listeners, loops, catalog, store */
#define DISK_TTL_MS 100
#define DISK_MARGIN                                                                                \
    (256ull << 20) /* free space above the floor that is read at most every DISK_TTL_MS */

struct user_state {
    pthread_mutex_t mu;
    int64_t files;   /* atomic: files in flight */
    int64_t streams; /* atomic: open event streams */
    /* under mu */
    int64_t read_at;   /* dr_mono_ms() of the last catalog read; 0: never */
    uint64_t bytes;    /* catalog bytes at that read + committed since */
    uint64_t jobs;     /* pending jobs at that read + committed since */
    uint64_t reserved; /* bytes reserved by uploads in flight here */
};

static struct {
    pthread_mutex_t mu;
    const struct dr_config *cfg;
    struct user_state *u;
    size_t n;
    int64_t files;     /* atomic: files in flight, all users */
    int64_t files_max; /* set with cfg: the bound of files */
} G = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* How many upload files this process may hold open at once (see top). */
static int64_t files_max(const struct dr_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
        rl.rlim_cur > (rlim_t)INT64_MAX / 2)
        return INT64_MAX / 2;
    int64_t lim = (int64_t)rl.rlim_cur;
    int64_t rest = lim - (int64_t)cfg->limits.max_connections - FD_RESERVE;
    return DR_MAX(rest, lim / 4);
}

/* The state of ex's user and its index; NULL for an unknown user. */
static struct user_state *state_of(struct http_exchange *ex, int *idx)
{
    const struct dr_config *cfg = http_cfg(ex);
    pthread_mutex_lock(&G.mu);
    if (G.cfg != cfg) { /* first use (a process serves one config) */
        struct user_state *u = xcalloc(cfg->n_users ? cfg->n_users : 1, sizeof *u);
        for (size_t i = 0; i < cfg->n_users; i++)
            pthread_mutex_init(&u[i].mu, NULL);
        G.u = u; /* an older config's states stay allocated: tests only */
        G.n = cfg->n_users;
        G.files_max = files_max(cfg);
        G.cfg = cfg;
    }
    pthread_mutex_unlock(&G.mu);
    const struct dr_user *user = config_find_user(cfg, http_user(ex));
    if (user == NULL)
        return NULL;
    *idx = (int)(user - cfg->users);
    return &G.u[*idx];
}

static void too_many(struct http_exchange *ex, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void too_many(struct http_exchange *ex, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *detail = xvasprintf(fmt, ap);
    va_end(ap);
    http_add_header(ex, "Retry-After", RETRY_AFTER_S);
    http_respond_problem(ex, 429, "%s", detail);
    free(detail);
}

static void human(uint64_t v, char *out, size_t len)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double d = (double)v;
    int i = 0;
    while (d >= 1024 && i < 5) {
        d /= 1024;
        i++;
    }
    snprintf(out, len, i ? "%.1f %s" : "%.0f %s", d, unit[i]);
}

/* Below health.min_free_disk the spool cannot take uploads: 507. Each
 * loop thread reads the free space (a statvfs: a path walk) at most every
 * DISK_TTL_MS while it was more than DISK_MARGIN above the floor, and at
 * every upload nearer to it (issue 15: one statvfs per 4 KiB upload). */
static bool disk_ok(struct http_exchange *ex)
{
    static __thread int64_t read_at = -1;
    static __thread uint64_t avail;
    const struct dr_config *cfg = http_cfg(ex);
    if (cfg->health.min_free_disk == 0)
        return true;
    int64_t now = dr_mono_ms();
    if (read_at < 0 || now - read_at >= DISK_TTL_MS ||
        avail < cfg->health.min_free_disk + DISK_MARGIN) {
        struct statvfs vfs;
        if (statvfs(cfg->data_dir, &vfs) != 0) {
            read_at = -1;
            return true;
        }
        avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        read_at = now;
    }
    if (avail >= cfg->health.min_free_disk)
        return true;
    char a[32], m[32];
    human(avail, a, sizeof a);
    human(cfg->health.min_free_disk, m, sizeof m);
    http_respond_problem(ex, 507,
                         "the server's disk is nearly full (%s free, health.min_free_disk is %s); "
                         "retry later",
                         a, m);
    return false;
}

/* Fresh catalog numbers for the user (under s->mu). A failed read keeps
 * the old ones (the upload's own catalog work reports the trouble). */
static void refresh(struct http_exchange *ex, struct user_state *s)
{
    int64_t now = dr_mono_ms();
    if (s->read_at != 0 && now - s->read_at < LOAD_TTL_MS)
        return;
    struct catalog *cat = http_thread_catalog(http_ex_thread(ex));
    struct dr_user_load load;
    int rc = cat != NULL ? catalog_user_load(cat, http_user(ex), &load) : -EAGAIN;
    if (rc < 0) {
        log_warn("quota: reading %s's usage: %s", http_user(ex), strerror(-rc));
        return;
    }
    s->bytes = load.bytes;
    s->jobs = load.pending_jobs;
    s->read_at = now;
}

/* Files in flight for all users (G.files): 0, or -EMFILE with the 503
 * detail when the process holds G.files_max already. */
static int take_global_files(unsigned files, char *detail, size_t len)
{
    if (files == 0)
        return 0;
    int64_t now = __atomic_add_fetch(&G.files, (int64_t)files, __ATOMIC_ACQ_REL);
    if (now <= G.files_max)
        return 0;
    __atomic_sub_fetch(&G.files, (int64_t)files, __ATOMIC_ACQ_REL);
    snprintf(detail, len,
             "the server has too many files open (%" PRId64 " uploads in flight, as many as its "
             "descriptor limit allows); retry",
             now - (int64_t)files);
    return -EMFILE;
}

/* One user's files in flight (s->files) and the global count: 0, or
 * -EDQUOT (429) / -EMFILE (503) with the detail; nothing taken then. */
static int take_files(struct http_exchange *ex, struct user_state *s, const struct dr_quota *q,
                      unsigned files, char *detail, size_t len)
{
    if (files == 0)
        return 0;
    int64_t now = __atomic_add_fetch(&s->files, (int64_t)files, __ATOMIC_ACQ_REL);
    if (q->max_inflight_uploads != 0 && (uint64_t)now > q->max_inflight_uploads) {
        __atomic_sub_fetch(&s->files, (int64_t)files, __ATOMIC_ACQ_REL);
        snprintf(detail, len,
                 "%s has %" PRId64 " files uploading (quotas.max_inflight_uploads %" PRIu64
                 "); retry when one has finished",
                 http_user(ex), now - (int64_t)files, q->max_inflight_uploads);
        return -EDQUOT;
    }
    if (take_global_files(files, detail, len) < 0) {
        __atomic_sub_fetch(&s->files, (int64_t)files, __ATOMIC_ACQ_REL);
        return -EMFILE;
    }
    return 0;
}

/* Answer a refused take_files(): 429 over the user's own limit, 503 when
 * the server holds all the files it may. */
static void refuse_files(struct http_exchange *ex, int rc, const char *detail)
{
    if (rc == -EDQUOT) {
        too_many(ex, "%s", detail);
        return;
    }
    http_add_header(ex, "Retry-After", "1");
    http_respond_problem(ex, 503, "%s", detail);
}

void quota_admit(struct http_exchange *ex, uint64_t declared, unsigned files, bool makes_job,
                 struct quota_hold *h, void (*then)(struct http_exchange *ex, void *arg), void *arg)
{
    if (!disk_ok(ex))
        return;
    int idx = -1;
    struct user_state *s = state_of(ex, &idx);
    char detail[256];
    int rc;
    if (s == NULL) { /* no such user (no quota): only the global bound */
        if ((rc = take_global_files(files, detail, sizeof detail)) < 0) {
            refuse_files(ex, rc, detail);
            return;
        }
        h->files = files;
        then(ex, arg);
        return;
    }
    struct dr_quota q = config_user_quota(http_cfg(ex), http_user(ex));
    if ((rc = take_files(ex, s, &q, files, detail, sizeof detail)) < 0) {
        refuse_files(ex, rc, detail);
        return;
    }
    uint64_t reserved = 0, allowance = UINT64_MAX;
    if (!makes_job)
        q.max_queued_jobs = 0;
    if (q.max_bytes != 0 || q.max_queued_jobs != 0) {
        pthread_mutex_lock(&s->mu);
        refresh(ex, s);
        uint64_t used = s->bytes + s->reserved, jobs = s->jobs;
        bool over_jobs = q.max_queued_jobs != 0 && jobs >= q.max_queued_jobs;
        bool over_bytes =
            q.max_bytes != 0 && (used > q.max_bytes || declared > q.max_bytes - used ||
                                 (declared == 0 && used >= q.max_bytes));
        if (!over_jobs && !over_bytes && q.max_bytes != 0) {
            reserved = declared;
            s->reserved += declared;
            allowance = q.max_bytes - used;
        }
        pthread_mutex_unlock(&s->mu);
        if (over_jobs || over_bytes) {
            __atomic_sub_fetch(&s->files, (int64_t)files, __ATOMIC_ACQ_REL);
            __atomic_sub_fetch(&G.files, (int64_t)files, __ATOMIC_ACQ_REL);
            if (over_jobs) {
                too_many(ex,
                         "%s has %" PRIu64 " jobs queued (quotas.max_queued_jobs %" PRIu64
                         "); retry when some have finished",
                         http_user(ex), jobs, q.max_queued_jobs);
            } else {
                char u[32], m[32], d[32];
                human(used, u, sizeof u);
                human(q.max_bytes, m, sizeof m);
                human(declared, d, sizeof d);
                http_respond_problem(
                    ex, 507, "%s stores %s of their quota of %s (quotas.max_bytes)%s%s",
                    http_user(ex), u, m, declared ? "; this upload needs " : "", declared ? d : "");
            }
            return;
        }
    }
    h->user = idx;
    h->files = files;
    h->reserved = reserved;
    h->allowance = allowance;
    then(ex, arg);
}

int quota_take_file(struct http_exchange *ex, struct quota_hold *h, char *detail, size_t len)
{
    int idx = -1, rc;
    struct user_state *s = state_of(ex, &idx);
    if (s == NULL) {
        if ((rc = take_global_files(1, detail, len)) < 0)
            return rc;
        h->files++;
        return 0;
    }
    struct dr_quota q = config_user_quota(http_cfg(ex), http_user(ex));
    if ((rc = take_files(ex, s, &q, 1, detail, len)) < 0)
        return rc;
    h->user = idx;
    h->files++;
    return 0;
}

void quota_release(struct quota_hold *h, uint64_t committed_bytes, unsigned committed_jobs)
{
    if (h == NULL)
        return;
    if (h->files > 0)
        __atomic_sub_fetch(&G.files, (int64_t)h->files, __ATOMIC_ACQ_REL);
    if (h->user < 0 || (size_t)h->user >= G.n) {
        *h = (struct quota_hold)QUOTA_HOLD_INIT;
        return;
    }
    struct user_state *s = &G.u[h->user];
    if (h->files > 0)
        __atomic_sub_fetch(&s->files, (int64_t)h->files, __ATOMIC_ACQ_REL);
    if (h->stream)
        __atomic_sub_fetch(&s->streams, 1, __ATOMIC_ACQ_REL);
    if (h->reserved > 0 || committed_bytes > 0 || committed_jobs > 0) {
        pthread_mutex_lock(&s->mu);
        s->reserved -= DR_MIN(s->reserved, h->reserved);
        s->bytes += committed_bytes;
        s->jobs += committed_jobs;
        pthread_mutex_unlock(&s->mu);
    }
    *h = (struct quota_hold)QUOTA_HOLD_INIT;
}

int64_t quota_files_in_flight(void)
{
    int64_t n = 0;
    pthread_mutex_lock(&G.mu);
    for (size_t i = 0; G.u != NULL && i < G.n; i++)
        n += __atomic_load_n(&G.u[i].files, __ATOMIC_ACQUIRE);
    pthread_mutex_unlock(&G.mu);
    return n;
}

int quota_stream_take(struct http_exchange *ex, struct quota_hold *h)
{
    int idx = -1;
    struct user_state *s = state_of(ex, &idx);
    if (s == NULL)
        return 0;
    struct dr_quota q = config_user_quota(http_cfg(ex), http_user(ex));
    int64_t now = __atomic_add_fetch(&s->streams, 1, __ATOMIC_ACQ_REL);
    if (q.max_event_streams != 0 && (uint64_t)now > q.max_event_streams) {
        __atomic_sub_fetch(&s->streams, 1, __ATOMIC_ACQ_REL);
        too_many(ex, "%s has %" PRId64 " event streams open (quotas.max_event_streams %" PRIu64 ")",
                 http_user(ex), now - 1, q.max_event_streams);
        return -EDQUOT;
    }
    h->user = idx;
    h->stream = true;
    return 0;
}

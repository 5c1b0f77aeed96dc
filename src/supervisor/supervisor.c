/* supervisor.c - fork, watch, restart and reload the worker processes.
 *
 * DESIGN
 * The supervisor is one thread and one loop (supervisor_run):
 *
 *   signals --> sig_atomic_t flags        (handlers do nothing else)
 *   ppoll(worker channels, timeout, mask without TERM/INT/HUP/CHLD)
 *     -> handle flags: TERM/INT begin a drain, HUP a reload, CHLD a reap
 *     -> read channels: READY, HEARTBEAT, STATUS; relay JOB_ENQUEUED to
 *        the pipeline workers and EVENT to the http workers
 *     -> timers: restart backoff, silent/never-ready workers, TERM->KILL
 *        escalation, the systemd watchdog
 *     -> every 5 s: STATUS= rates, and a point of the pipeline view's
 *        history ring in the shared metrics (metrics.h)
 *
 * The four signals are blocked at all times except inside ppoll(), so a
 * signal either interrupts the wait or is seen before the next one; no
 * wake-up is lost and no handler races with the loop.
 *
 * Workers live in slots. A slot is (generation, role, index); it survives
 * the restarts of its worker. A reload starts a new generation of slots
 * with the new config, and when all of them are READY the old generation
 * is sent SIGTERM (it drains) and its slots are freed as they exit. If a
 * new worker exits with DR_EXIT_FATAL_CONFIG before that, the reload is
 * abandoned and the old generation keeps serving.
 *
 * Supervision follows OTP: a crashed worker of the serving generation is
 * restarted after a backoff (100 ms doubling to 5 s, back to 100 ms once a
 * worker ran for supervisor.max_seconds); more than max_restarts restarts
 * (all roles together) within max_seconds means something is badly wrong:
 * stop everything and exit 2 so systemd escalates. A worker exiting 78
 * (EX_CONFIG) is never restarted: stop everything, exit 1.
 *
 * Liveness: a READY worker that sends no heartbeat for heartbeat_timeout,
 * or a worker not READY 30 s after its start, gets SIGTERM and, 2 s later,
 * SIGKILL; its exit then goes through the restart path above. The systemd
 * watchdog (WATCHDOG=1) is only fed while every worker of the serving
 * generation is READY and heartbeating, so a wedged tree that the
 * supervisor cannot fix ends with systemd restarting the service.
 *
 * Never: threads, request work, blocking I/O on a channel (all sends are
 * MSG_DONTWAIT; a full channel drops an idempotent wake-up), allocation in
 * a signal handler.
 */
#include "supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dripd/cache.h"
#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/keys.h"
#include "listen.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "sdnotify.h"
#include "dripd/util.h"
#include "dripd/worker.h"

#define MAX_SLOTS (2 * DR_ROLE_COUNT * DR_SUP_MAX_PER_ROLE) /* two generations */
_Static_assert(MAX_SLOTS <= DR_PROC_SLOTS, "every worker slot needs its metrics gauge block");
#define READY_TIMEOUT_MS 30000
#define KILL_GRACE_MS 2000    /* hung worker: SIGTERM .. SIGKILL */
#define GIVE_UP_GRACE_MS 5000 /* exit 1/2: at most this long for the others */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define RESTART_RING 256 /* restart timestamps kept for the intensity check */
#define MSGS_PER_WAKE 64 /* channel messages read per worker per loop turn */

static volatile sig_atomic_t sig_stop, sig_hup, sig_chld;

static void on_signal(int sig)
{
    if (sig == SIGTERM || sig == SIGINT)
        sig_stop++;
    else if (sig == SIGHUP)
        sig_hup = 1;
    else if (sig == SIGCHLD)
        sig_chld = 1;
}

static const char *const role_names[DR_ROLE_COUNT] = {"http", "pipeline"};
static const char *const proc_names[DR_ROLE_COUNT] = {"dripd-http", "dripd-pipeline"};

struct slot {
    bool used;
    unsigned gen;
    enum dr_role role;
    pid_t pid;      /* 0: no process (waiting for a restart, or done) */
    int chan;       /* supervisor's end, -1 when closed */
    bool chan_open; /* still worth polling (no EOF seen) */
    bool ready;
    bool has_run; /* a later start is a restart */
    int64_t started_ms;
    int64_t last_seen_ms; /* READY or last HEARTBEAT */
    int64_t term_ms;      /* SIGTERM sent at; 0 none */
    int64_t kill_at_ms;   /* SIGKILL due at; 0 none */
    bool kill_sent;
    uint64_t backoff_ms;   /* delay before the next restart */
    int64_t restart_at_ms; /* 0: no restart scheduled */
    uint64_t queue_depth;  /* last DR_MSG_STATUS */
};

struct sup {
    struct dr_config *cfg;      /* serving config (the new one during a reload) */
    struct dr_config *prev_cfg; /* during a reload: the one to go back to */
    const char *config_path;
    int per_role[DR_ROLE_COUNT];
    unsigned gen;      /* current generation */
    unsigned prev_gen; /* during a reload: the one being replaced */
    unsigned last_gen; /* generation numbers are never reused */
    bool reloading;
    bool hup_pending;
    struct dr_listen_set ls, prev_ls;
    struct slot slots[MAX_SLOTS];
    struct dr_metrics *metrics;
    /* STATUS= rates, recomputed every RATE_WINDOW_MS from the shared counters */
    int64_t rate_t_ms;
    uint64_t rate_uploads, rate_jobs;
    double uploads_per_s, jobs_per_s;
    int64_t history_t_ms; /* last point of the pipeline view's history (metrics.h) */
    struct dr_sdnotify *sd;
    uint64_t wd_ms; /* WATCHDOG=1 period; 0 off */
    int64_t wd_next_ms;
    int64_t restarts[RESTART_RING];
    size_t n_restarts;
    bool stopping;
    int exit_code;
    bool announced_ready;
    char status[128];
    char *listen_file;
    int lock_fd;
    pid_t self;
    sigset_t wait_mask;
};

/* ---------------------------------------------------------------- start-up */

int supervisor_prepare(const struct dr_config *cfg, unsigned flags, char *err, size_t errlen)
{
    int lvl = cfg->log.level ? log_level_parse(cfg->log.level) : LOG_LVL_INFO;
    if (lvl < 0) {
        snprintf(err, errlen, "log.level %s: expected error, warn, info or debug", cfg->log.level);
        return -EINVAL;
    }
    log_set_level((enum log_level)lvl);

    static const char *const subdirs[] = {"", "/run", "/spool", "/cache", "/work"};
    for (size_t i = 0; i < DR_ARRAY_LEN(subdirs); i++) {
        char *p = xasprintf("%s%s", cfg->data_dir, subdirs[i]);
        int r = dr_mkdirs(p, 0700);
        if (r < 0) {
            snprintf(err, errlen, "data_dir: cannot create %s: %s", p, strerror(-r));
            free(p);
            return r;
        }
        free(p);
    }
    size_t dropped = 0;
    int r = cache_drop_unsynced(cfg->data_dir, &dropped);
    if (r < 0)
        log_warn("cache: cannot record this boot: %s", strerror(-r));
    if (dropped > 0)
        log_info("cache: rebooted since the last start: dropped %zu unsynced cache fill%s", dropped,
                 dropped == 1 ? "" : "s");
    r = catalog_migrate(cfg);
    if (r < 0) {
        snprintf(err, errlen, "catalog %s/catalog.db: cannot open or migrate: %s", cfg->data_dir,
                 strerror(-r));
        return r;
    }
    /* The catalog knows the configured users (sharing checks them). */
    struct catalog *cat = NULL;
    r = catalog_open(cfg, &cat);
    if (r == 0)
        r = catalog_sync_users(cat, cfg);
    catalog_close(cat);
    if (r < 0) {
        snprintf(err, errlen, "catalog %s/catalog.db: cannot record the users: %s", cfg->data_dir,
                 strerror(-r));
        return r;
    }
    uint8_t key[DR_KEY_LEN];
    char kerr[DR_ERRLEN] = "";
    r = keys_load_master(cfg->encryption.key_file, !(flags & DR_PREP_NO_NEW_KEY), key, kerr,
                         sizeof kerr);
    explicit_bzero(key, sizeof key);
    if (r < 0) {
        snprintf(err, errlen, "%s", kerr[0] ? kerr : strerror(-r));
        return r;
    }
    return 0;
}

static int read_token(const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    char buf[256];
    ssize_t n = dr_read_full(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return (int)n;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    if (n < 16)
        return -EINVAL; /* empty or too short to be ours */
    *out = xstrdup(buf);
    return 0;
}

static int write_token(const char *path, char **out)
{
    uint8_t raw[24];
    char hex[2 * sizeof raw + 2];
    dr_random(raw, sizeof raw);
    dr_hex(raw, sizeof raw, hex);
    explicit_bzero(raw, sizeof raw);
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    size_t len = strlen(hex);
    hex[len] = '\n';
    rc = dr_write_all(fd, hex, len + 1);
    hex[len] = '\0';
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    /* link(), not rename(): a token someone made meanwhile is never replaced */
    if (rc == 0 && link(tmp, path) < 0)
        rc = -errno;
    unlink(tmp);
    if (rc == 0)
        rc = dr_fsync_parent(path);
    if (rc == 0)
        *out = xstrdup(hex);
out:
    explicit_bzero(hex, sizeof hex);
    free(tmp);
    return rc;
}

int supervisor_token_file(const char *path, char **token, bool *created)
{
    *created = false;
    int r = read_token(path, token);
    if (r != -ENOENT)
        return r;
    r = write_token(path, token);
    if (r == -EEXIST) /* made by someone else meanwhile: theirs stands */
        return read_token(path, token);
    *created = r == 0;
    return r;
}

int supervisor_default_admin(struct dr_config *cfg, char *err, size_t errlen)
{
    char *path = xasprintf("%s/admin.token", cfg->data_dir);
    char *token = NULL;
    bool created;
    int r = dr_mkdirs(cfg->data_dir, 0700);
    if (r == 0)
        r = supervisor_token_file(path, &token, &created);
    if (r < 0) {
        snprintf(err, errlen, "admin token %s: %s", path,
                 r == -EINVAL ? "empty or too short (delete it to get a new one)" : strerror(-r));
        free(path);
        return r;
    }
    cfg->users = xrealloc(cfg->users, (cfg->n_users + 1) * sizeof *cfg->users);
    cfg->users[cfg->n_users] =
        (struct dr_user){.name = xstrdup("admin"), .token = token, .admin = true};
    cfg->n_users++;
    log_info("no config file: user \"admin\", admin token in %s", path);
    free(path);
    return 0;
}

/* One dripd per data_dir: two would share spool/, cache/ and run/listen. */
static int lock_data_dir(struct sup *s, char *err, size_t errlen)
{
    char *path = xasprintf("%s/run/dripd.pid", s->cfg->data_dir);
    int rc = 0;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        rc = -errno;
        char other[32] = "";
        ssize_t n = pread(fd, other, sizeof other - 1, 0);
        other[n > 0 ? n : 0] = '\0';
        other[strcspn(other, "\n")] = '\0';
        snprintf(err, errlen, "data_dir %s is in use by another dripd (pid %s)", s->cfg->data_dir,
                 other[0] ? other : "?");
        close(fd);
        goto out;
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || dr_pwrite_all(fd, pid, (size_t)len, 0) < 0)
        log_warn("%s: cannot write pid: %s", path, strerror(errno));
    s->lock_fd = fd;
out:
    free(path);
    return rc;
}

/* ------------------------------------------------------------------ slots */

static int64_t hb_timeout(const struct sup *s)
{
    return (int64_t)s->cfg->supervisor.heartbeat_timeout;
}

static void deadline_min(int64_t *acc, int64_t t)
{
    if (t > 0 && (*acc == 0 || t < *acc))
        *acc = t;
}

static struct slot *slot_alloc(struct sup *s, unsigned gen, enum dr_role role)
{
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        struct slot *w = &s->slots[i];
        if (!w->used) {
            memset(w, 0, sizeof *w);
            w->used = true;
            w->gen = gen;
            w->role = role;
            w->chan = -1;
            w->backoff_ms = BACKOFF_MIN_MS;
            return w;
        }
    }
    return NULL;
}

static void slot_free(struct slot *w)
{
    if (w->chan >= 0)
        close(w->chan);
    memset(w, 0, sizeof *w);
    w->chan = -1;
}

static size_t free_slots(const struct sup *s)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_SLOTS; i++)
        n += !s->slots[i].used;
    return n;
}

static size_t live_workers(const struct sup *s)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_SLOTS; i++)
        n += s->slots[i].used && s->slots[i].pid > 0;
    return n;
}

static void sort_ints(int *v, size_t n)
{
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
            int t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

static void close_fds_from_to(unsigned lo, unsigned hi)
{
    if (lo > hi)
        return;
    if (close_range(lo, hi, 0) == 0)
        return;
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536)
        max = 65536;
    for (unsigned fd = lo; fd <= hi && fd < (unsigned)max; fd++)
        close((int)fd);
}

/* Close every fd but keep[] (which it sorts). */
static void close_other_fds(int *keep, size_t n)
{
    sort_ints(keep, n);
    unsigned lo = 0;
    for (size_t i = 0; i < n; i++) {
        if (keep[i] < 0 || (unsigned)keep[i] < lo)
            continue;
        if ((unsigned)keep[i] > lo)
            close_fds_from_to(lo, (unsigned)keep[i] - 1);
        lo = (unsigned)keep[i] + 1;
    }
    close_fds_from_to(lo, ~0U);
}

/* In the child, right after fork(): become a worker and never return. */
static void __attribute__((noreturn)) child_run(struct sup *s, struct slot *w, int chan)
{
    prctl(PR_SET_NAME, proc_names[w->role], 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0);
    if (getppid() != s->self)
        _exit(0); /* the supervisor died before PDEATHSIG was armed */
    log_set_role(role_names[w->role]);

    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL); /* fails harmlessly for glibc's reserved signals */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    int lfds[DR_LISTEN_MAX];
    size_t nl = 0;
    if (w->role == DR_ROLE_HTTP)
        for (size_t i = 0; i < s->ls.n && nl < DR_LISTEN_MAX; i++)
            lfds[nl++] = s->ls.v[i].fd;
    int keep[3 + 1 + DR_LISTEN_MAX] = {0, 1, 2, chan};
    size_t nk = 4;
    for (size_t i = 0; i < nl; i++)
        keep[nk++] = lfds[i];
    close_other_fds(keep, nk);

    struct dr_worker_ctx ctx = {
        .cfg = s->cfg,
        .role = w->role,
        .chan_fd = chan,
        .listen_fds = nl ? lfds : NULL,
        .n_listen = nl,
        .metrics = s->metrics,
        .generation = w->gen,
        .slot = (unsigned)(w - s->slots),
    };
    int rc = w->role == DR_ROLE_HTTP ? http_worker_main(&ctx) : pipeline_worker_main(&ctx);
    _exit(rc & 0xff);
}

static void schedule_retry(struct slot *w, int64_t now)
{
    w->restart_at_ms = now + (int64_t)w->backoff_ms;
    w->backoff_ms = DR_MIN(w->backoff_ms * 2, (uint64_t)BACKOFF_MAX_MS);
}

static void spawn(struct sup *s, struct slot *w)
{
    int64_t now = dr_mono_ms();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) {
        log_error("worker %s: socketpair: %s; retrying in %" PRIu64 "ms", role_names[w->role],
                  strerror(errno), w->backoff_ms);
        schedule_retry(w, now);
        return;
    }
    pid_t pid = fork();
    if (pid < 0) {
        log_error("worker %s: fork: %s; retrying in %" PRIu64 "ms", role_names[w->role],
                  strerror(errno), w->backoff_ms);
        close(sv[0]);
        close(sv[1]);
        schedule_retry(w, now);
        return;
    }
    if (pid == 0) {
        close(sv[0]);
        child_run(s, w, sv[1]);
    }
    close(sv[1]);
    w->pid = pid;
    w->chan = sv[0];
    w->chan_open = true;
    w->ready = false;
    w->started_ms = now;
    w->last_seen_ms = now;
    w->term_ms = 0;
    w->kill_at_ms = 0;
    w->kill_sent = false;
    w->restart_at_ms = 0;
    w->queue_depth = 0;
    if (w->has_run) {
        metrics_add(&s->metrics->restarts[w->role], 1);
        log_info("worker %s restarted: pid %d (generation %u, %" PRIu64 " %s restarts so far)",
                 role_names[w->role], (int)pid, w->gen,
                 __atomic_load_n(&s->metrics->restarts[w->role], __ATOMIC_RELAXED),
                 role_names[w->role]);
    } else {
        log_info("worker %s started: pid %d (generation %u)", role_names[w->role], (int)pid,
                 w->gen);
    }
    w->has_run = true;
}

static void spawn_generation(struct sup *s, unsigned gen)
{
    for (int r = 0; r < DR_ROLE_COUNT; r++)
        for (int i = 0; i < s->per_role[r]; i++) {
            struct slot *w = slot_alloc(s, gen, (enum dr_role)r);
            if (w != NULL)
                spawn(s, w);
        }
}

/* SIGTERM now, SIGKILL after grace_ms (an earlier deadline is kept). */
static void terminate(struct slot *w, int64_t now, int64_t grace_ms)
{
    if (w->pid <= 0)
        return;
    if (w->term_ms == 0) {
        w->term_ms = now;
        kill(w->pid, SIGTERM);
    }
    int64_t at = now + grace_ms;
    if (w->kill_at_ms == 0 || at < w->kill_at_ms)
        w->kill_at_ms = at;
}

/* ---------------------------------------------------------- notification */

static unsigned ready_workers(const struct sup *s)
{
    unsigned n = 0;
    for (size_t i = 0; i < MAX_SLOTS; i++)
        n += s->slots[i].used && s->slots[i].pid > 0 && s->slots[i].ready;
    return n;
}

static uint64_t queue_depth(const struct sup *s)
{
    uint64_t q = 0;
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        const struct slot *w = &s->slots[i];
        if (w->used && w->pid > 0 && w->role == DR_ROLE_PIPELINE && w->gen == s->gen)
            q += w->queue_depth;
    }
    return q;
}

/* Start-up (config, catalog migration, master key, and the constructors
 * of every library the one binary links: gnutls and p11-kit alone leave
 * ~1.6 MiB) touches ~8 MiB of library pages that the supervisor's loop
 * (ppoll, waitpid, a few sends) never needs again; they stayed in its RSS
 * for good. Once the workers are ready (they fault in their own pages),
 * unmap the resident pages of every private, read-only file mapping that
 * holds no copy-on-write page (smaps "Anonymous: 0"): such a page is
 * byte for byte the file's, so touching it again just maps it back from
 * the page cache. Relocated (RELRO) and writable mappings are left alone.
 * What drops is this process's RSS; the page cache is not touched (the
 * workers share most of those pages anyway). Best effort, any failure
 * just leaves the pages mapped. */
#define DROP_MAX 512
static void drop_startup_pages(void)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (f == NULL)
        return;
    static struct {
        unsigned long lo, hi;
    } cand[DROP_MAX];
    size_t n = 0;
    char line[512];
    bool in_cand = false; /* the current mapping may qualify */
    unsigned long lo = 0, hi = 0;
    long rss_kb = 0, dropped_kb = 0;
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long a, b;
        char perms[8] = "";
        int used = 0;
        if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %n", &a, &b, perms, &used) == 3) {
            /* a mapping's header: "lo-hi perms offset dev inode path" */
            in_cand = used > 0 && line[used] == '/' && perms[0] == 'r' && perms[1] == '-' &&
                      perms[3] == 'p';
            lo = a;
            hi = b;
            rss_kb = 0;
        } else if (in_cand && sscanf(line, "Rss: %ld kB", &rss_kb) == 1) {
            /* read below, with Anonymous */
        } else if (in_cand && strncmp(line, "Anonymous:", 10) == 0) {
            long anon = -1;
            if (sscanf(line + 10, "%ld", &anon) == 1 && anon == 0 && rss_kb > 0 && n < DROP_MAX) {
                cand[n].lo = lo;
                cand[n].hi = hi;
                n++;
                dropped_kb += rss_kb;
            }
            in_cand = false;
        }
    }
    fclose(f);
    for (size_t i = 0; i < n; i++)
        madvise((void *)cand[i].lo, cand[i].hi - cand[i].lo, MADV_DONTNEED);
    log_debug("supervisor: unmapped %ld KiB of start-up library pages (%zu mappings)", dropped_kb,
              n);
}

static void send_ready(struct sup *s)
{
    sdnotify_fmt_status(s->status, sizeof s->status, ready_workers(s), queue_depth(s));
    int r = sdnotify_sendf(s->sd, "READY=1\n%s", s->status);
    if (r < 0)
        log_warn("sd_notify READY=1: %s", strerror(-r));
}

#define RATE_WINDOW_MS 5000

/* Uploads accepted by PUT/multipart (202s) and finished jobs, node-wide,
 * from the shared counters. */
static void rate_totals(const struct dr_metrics *m, uint64_t *uploads, uint64_t *jobs)
{
    *uploads = __atomic_load_n(&m->http_requests[DR_RC_UPLOAD][metrics_status_slot(202)],
                               __ATOMIC_RELAXED);
    *jobs = 0;
    for (int p = 0; p < DR_PL_COUNT; p++)
        *jobs += __atomic_load_n(&m->jobs_completed[p], __ATOMIC_RELAXED);
}

static void update_rates(struct sup *s, int64_t now)
{
    if (now - s->rate_t_ms < RATE_WINDOW_MS)
        return;
    uint64_t up, jobs;
    rate_totals(s->metrics, &up, &jobs);
    if (s->rate_t_ms != 0) {
        double secs = (double)(now - s->rate_t_ms) / 1000.0;
        s->uploads_per_s = (double)(up - s->rate_uploads) / secs;
        s->jobs_per_s = (double)(jobs - s->rate_jobs) / secs;
    }
    s->rate_t_ms = now;
    s->rate_uploads = up;
    s->rate_jobs = jobs;
}

/* The pipeline view's 10-minute history: a point every DR_HISTORY_STEP_MS,
 * taken on this existing tick (the loop wakes at least every heartbeat). */
static void update_history(struct sup *s, int64_t now)
{
    if (s->history_t_ms != 0 && now - s->history_t_ms < DR_HISTORY_STEP_MS)
        return;
    s->history_t_ms = now;
    if (s->metrics != NULL)
        metrics_history_record(s->metrics, (uint64_t)dr_now_ms());
}

static void update_status(struct sup *s)
{
    char st[sizeof s->status];
    update_rates(s, dr_mono_ms());
    update_history(s, dr_mono_ms());
    int n = sdnotify_fmt_status(st, sizeof st, ready_workers(s), queue_depth(s));
    /* "STATUS=2 workers, queue depth 3, 12.4 uploads/s, 11.8 jobs/s" */
    if (n > 0 && (size_t)n < sizeof st)
        snprintf(st + n, sizeof st - (size_t)n, ", %.1f uploads/s, %.1f jobs/s", s->uploads_per_s,
                 s->jobs_per_s);
    if (strcmp(st, s->status) == 0)
        return;
    memcpy(s->status, st, sizeof st);
    sdnotify_send(s->sd, s->status);
}

/* Every worker of the generation that serves (the old one during a
 * reload) is READY, not being killed, and heard from recently. */
static bool tree_healthy(const struct sup *s, int64_t now)
{
    unsigned serving = s->reloading ? s->prev_gen : s->gen;
    size_t n = 0;
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        const struct slot *w = &s->slots[i];
        if (!w->used || w->gen != serving)
            continue;
        if (w->pid <= 0 || !w->ready || w->term_ms != 0 || now - w->last_seen_ms >= hb_timeout(s))
            return false;
        n++;
    }
    return n > 0;
}

static void watchdog_tick(struct sup *s, int64_t now)
{
    if (s->wd_ms == 0 || now < s->wd_next_ms)
        return;
    if (s->announced_ready && !s->stopping && tree_healthy(s, now))
        sdnotify_send(s->sd, "WATCHDOG=1");
    s->wd_next_ms += (int64_t)s->wd_ms;
    if (s->wd_next_ms <= now)
        s->wd_next_ms = now + (int64_t)s->wd_ms;
}

/* ------------------------------------------------------------ stop/reload */

static void begin_stop(struct sup *s, int code, int64_t grace_ms)
{
    int64_t now = dr_mono_ms();
    if (!s->stopping) {
        s->stopping = true;
        s->exit_code = code;
        sdnotify_send(s->sd, "STOPPING=1");
    }
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        struct slot *w = &s->slots[i];
        if (!w->used)
            continue;
        w->restart_at_ms = 0;
        terminate(w, now, grace_ms);
    }
}

static void kill_now(struct sup *s)
{
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        struct slot *w = &s->slots[i];
        if (w->used && w->pid > 0 && !w->kill_sent) {
            kill(w->pid, SIGKILL);
            w->kill_sent = true;
        }
    }
}

static void free_generation_if_dead(struct sup *s, unsigned gen)
{
    for (size_t i = 0; i < MAX_SLOTS; i++)
        if (s->slots[i].used && s->slots[i].gen == gen && s->slots[i].pid <= 0)
            slot_free(&s->slots[i]);
}

static void log_new_listeners(const struct dr_listen_set *now, const struct dr_listen_set *before)
{
    for (size_t i = 0; i < now->n; i++) {
        bool old = false;
        for (size_t j = 0; before && j < before->n; j++)
            old = old || before->v[j].fd == now->v[i].fd;
        if (!old)
            log_info("listening on %s (%s)", now->v[i].name, now->v[i].spec);
    }
}

static void apply_log_level(const struct dr_config *cfg)
{
    int lvl = cfg->log.level ? log_level_parse(cfg->log.level) : LOG_LVL_INFO;
    if (lvl >= 0)
        log_set_level((enum log_level)lvl);
}

static void reload_rejected(struct sup *s, const char *why)
{
    log_error("reload failed: %s; still serving generation %u with the previous configuration", why,
              s->gen);
    send_ready(s);
}

static void start_reload(struct sup *s)
{
    char buf[128];
    if (sdnotify_fmt_reloading(buf, sizeof buf, dr_mono_ns() / 1000) > 0)
        sdnotify_send(s->sd, buf);
    if (s->config_path == NULL) {
        log_warn("reload: running on the embedded defaults (no -c); nothing to reload");
        send_ready(s);
        return;
    }
    log_info("reload: loading %s", s->config_path);
    struct dr_config *nc = NULL;
    struct dr_config_errors errs = {0};
    int r = config_load(s->config_path, &nc, &errs);
    if (r < 0) {
        for (size_t i = 0; i < errs.n; i++)
            log_error("%s", errs.msgs[i]);
        if (errs.n == 0)
            log_error("%s: %s", s->config_path, strerror(-r));
        config_errors_clear(&errs);
        reload_rejected(s, "the configuration has errors");
        return;
    }
    config_errors_clear(&errs);

    char err[DR_ERRLEN] = "";
    struct dr_listen_set nls;
    if (strcmp(nc->data_dir, s->cfg->data_dir) != 0) {
        snprintf(err, sizeof err, "data_dir cannot change from %s to %s without a restart",
                 s->cfg->data_dir, nc->data_dir);
        goto reject;
    }
    size_t need = 0;
    for (int i = 0; i < DR_ROLE_COUNT; i++)
        need += (size_t)s->per_role[i];
    if (free_slots(s) < need) {
        snprintf(err, sizeof err, "the previous reload is still draining");
        goto reject;
    }
    if (supervisor_prepare(nc, 0, err, sizeof err) < 0) {
        apply_log_level(s->cfg);
        goto reject;
    }
    if (s->ls.from_systemd) {
        /* Socket activation owns the sockets: keep them all. */
        char **specs = xcalloc(s->ls.n, sizeof *specs);
        for (size_t i = 0; i < s->ls.n; i++)
            specs[i] = s->ls.v[i].spec;
        r = listen_set_open(&nls, specs, s->ls.n, &s->ls, err, sizeof err);
        free(specs);
        nls.from_systemd = true;
    } else {
        r = listen_set_open(&nls, nc->listen, nc->n_listen, &s->ls, err, sizeof err);
    }
    if (r < 0) {
        apply_log_level(s->cfg);
        goto reject;
    }
    log_new_listeners(&nls, &s->ls);

    s->prev_ls = s->ls;
    s->ls = nls;
    s->prev_cfg = s->cfg;
    s->cfg = nc;
    s->prev_gen = s->gen;
    s->gen = ++s->last_gen;
    s->reloading = true;
    log_info("reload: configuration ok; starting generation %u", s->gen);
    spawn_generation(s, s->gen);
    return;
reject:
    config_destroy(nc);
    reload_rejected(s, err);
}

/* Every worker of the new generation is READY: retire the old one. */
static void commit_reload(struct sup *s)
{
    int64_t now = dr_mono_ms();
    unsigned old = s->prev_gen;
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        struct slot *w = &s->slots[i];
        if (w->used && w->gen == old) {
            w->restart_at_ms = 0;
            terminate(w, now, (int64_t)s->cfg->supervisor.drain_timeout);
        }
    }
    free_generation_if_dead(s, old);
    /* The old workers keep their own copies of removed listeners until they exit. */
    for (size_t i = 0; i < s->prev_ls.n; i++) {
        bool kept = false;
        for (size_t j = 0; j < s->ls.n; j++)
            kept = kept || s->ls.v[j].fd == s->prev_ls.v[i].fd;
        if (!kept)
            log_info("no longer listening on %s", s->prev_ls.v[i].name);
    }
    listen_set_close(&s->prev_ls, &s->ls);
    int r = listen_write_file(&s->ls, s->listen_file);
    if (r < 0)
        log_error("%s: %s", s->listen_file, strerror(-r));
    config_destroy(s->prev_cfg);
    s->prev_cfg = NULL;
    s->prev_gen = 0;
    s->reloading = false;
    metrics_add(&s->metrics->reloads, 1);
    log_info("reload ok: generation %u serving, generation %u draining", s->gen, old);
    send_ready(s);
    drop_startup_pages(); /* the reload parsed a config and opened the catalog again */
}

/* A worker of the new generation refused its config: keep the old one. */
static void abort_reload(struct sup *s, const char *why)
{
    int64_t now = dr_mono_ms();
    unsigned failed = s->gen;
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        struct slot *w = &s->slots[i];
        if (w->used && w->gen == failed) {
            w->restart_at_ms = 0;
            terminate(w, now, KILL_GRACE_MS);
        }
    }
    free_generation_if_dead(s, failed);
    listen_set_close(&s->ls, &s->prev_ls);
    s->ls = s->prev_ls;
    memset(&s->prev_ls, 0, sizeof s->prev_ls);
    config_destroy(s->cfg);
    s->cfg = s->prev_cfg;
    s->prev_cfg = NULL;
    s->gen = s->prev_gen;
    s->prev_gen = 0;
    s->reloading = false;
    apply_log_level(s->cfg);
    /* Old workers that died during the reload were left for the new ones. */
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        struct slot *w = &s->slots[i];
        if (w->used && w->gen == s->gen && w->pid <= 0 && w->restart_at_ms == 0)
            w->restart_at_ms = now;
    }
    reload_rejected(s, why);
}

/* ---------------------------------------------------------------- reaping */

static void describe_exit(int status, char *buf, size_t len)
{
    if (WIFEXITED(status)) {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        snprintf(buf, len, "killed by signal %d (%s)%s", sig, strsignal(sig),
                 WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(buf, len, "changed state 0x%x", (unsigned)status);
    }
}

/* Returns false when the restart intensity is exceeded. */
static bool note_restart(struct sup *s, int64_t now)
{
    int64_t window = (int64_t)s->cfg->supervisor.max_seconds;
    size_t keep = 0;
    for (size_t i = 0; i < s->n_restarts; i++)
        if (now - s->restarts[i] < window)
            s->restarts[keep++] = s->restarts[i];
    s->n_restarts = keep;
    int max = s->cfg->supervisor.max_restarts;
    if (max < 0)
        max = 0;
    if (max > RESTART_RING - 1)
        max = RESTART_RING - 1;
    if (s->n_restarts >= (size_t)max)
        return false;
    s->restarts[s->n_restarts++] = now;
    return true;
}

static void worker_exited(struct sup *s, struct slot *w, int status)
{
    int64_t now = dr_mono_ms();
    char how[128];
    describe_exit(status, how, sizeof how);
    bool asked = w->term_ms != 0 || s->stopping;
    bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    pid_t pid = w->pid;
    const char *role = role_names[w->role];
    if (asked && clean)
        log_info("worker %s pid %d %s", role, (int)pid, how);
    else
        log_warn("worker %s pid %d %s", role, (int)pid, how);

    int64_t ran = now - w->started_ms;
    /* what the dead process held (connections, jobs in stages) is gone */
    metrics_proc_reset(s->metrics, (unsigned)(w - s->slots));
    w->pid = 0;
    w->ready = false;
    w->term_ms = 0;
    w->kill_at_ms = 0;
    w->kill_sent = false;
    if (w->chan >= 0)
        close(w->chan);
    w->chan = -1;
    w->chan_open = false;

    if (s->stopping) {
        slot_free(w);
        return;
    }
    if (w->gen != s->gen) {
        /* old generation: retired, or left behind by a reload in progress */
        if (!(s->reloading && w->gen == s->prev_gen))
            slot_free(w);
        return;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == DR_EXIT_FATAL_CONFIG) {
        if (s->reloading) {
            char why[96];
            snprintf(why, sizeof why, "worker %s refused the new configuration (exit %d)", role,
                     DR_EXIT_FATAL_CONFIG);
            abort_reload(s, why);
            return;
        }
        log_error("worker %s exited with status %d (fatal configuration error): not "
                  "restarting; stopping dripd",
                  role, DR_EXIT_FATAL_CONFIG);
        begin_stop(s, DR_EXIT_STARTUP,
                   DR_MIN((int64_t)s->cfg->supervisor.drain_timeout, GIVE_UP_GRACE_MS));
        return;
    }
    if (!note_restart(s, now)) {
        log_error("restart intensity exceeded: more than %d restarts within %.1fs; giving up "
                  "(exit %d)",
                  s->cfg->supervisor.max_restarts, (double)s->cfg->supervisor.max_seconds / 1000.0,
                  DR_EXIT_GAVE_UP);
        begin_stop(s, DR_EXIT_GAVE_UP,
                   DR_MIN((int64_t)s->cfg->supervisor.drain_timeout, GIVE_UP_GRACE_MS));
        return;
    }
    if (ran >= (int64_t)s->cfg->supervisor.max_seconds)
        w->backoff_ms = BACKOFF_MIN_MS;
    log_info("worker %s will restart in %" PRIu64 "ms (%zu of %d restarts allowed in %.1fs)", role,
             w->backoff_ms, s->n_restarts, s->cfg->supervisor.max_restarts,
             (double)s->cfg->supervisor.max_seconds / 1000.0);
    schedule_retry(w, now);
}

static void reap(struct sup *s)
{
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0)
            return;
        struct slot *w = NULL;
        for (size_t i = 0; i < MAX_SLOTS && w == NULL; i++)
            if (s->slots[i].used && s->slots[i].pid == pid)
                w = &s->slots[i];
        if (w == NULL) {
            log_debug("reaped unknown child %d", (int)pid);
            continue;
        }
        worker_exited(s, w, status);
    }
}

/* --------------------------------------------------------------- channels */

static void relay(struct sup *s, enum dr_role to, const struct dr_msg *m)
{
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        struct slot *w = &s->slots[i];
        if (!w->used || w->role != to || w->pid <= 0 || !w->chan_open)
            continue;
        ssize_t n = send(w->chan, m, sizeof *m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
            log_debug("relay to %s pid %d: %s", role_names[to], (int)w->pid, strerror(errno));
    }
}

static void handle_msg(struct sup *s, struct slot *w, const struct dr_msg *m, int64_t now)
{
    switch (m->type) {
    case DR_MSG_READY:
        if (!w->ready) {
            w->ready = true;
            log_info("worker %s pid %d ready (generation %u, %.1fs after start)",
                     role_names[w->role], (int)w->pid, w->gen,
                     (double)(now - w->started_ms) / 1000.0);
        }
        w->last_seen_ms = now;
        break;
    case DR_MSG_HEARTBEAT:
        w->last_seen_ms = now;
        break;
    case DR_MSG_JOB_ENQUEUED:
        if (w->role == DR_ROLE_HTTP)
            relay(s, DR_ROLE_PIPELINE, m);
        break;
    case DR_MSG_EVENT:
    case DR_MSG_FILLED:
        if (w->role == DR_ROLE_PIPELINE)
            relay(s, DR_ROLE_HTTP, m);
        break;
    case DR_MSG_FILL:
        if (w->role == DR_ROLE_HTTP)
            relay(s, DR_ROLE_PIPELINE, m);
        break;
    case DR_MSG_STATUS:
        w->queue_depth = m->arg;
        break;
    default:
        log_debug("worker %s pid %d: unknown message type %u", role_names[w->role], (int)w->pid,
                  (unsigned)m->type);
    }
}

static void read_channel(struct sup *s, struct slot *w, int64_t now)
{
    for (int i = 0; i < MSGS_PER_WAKE; i++) {
        struct dr_msg m;
        ssize_t n = recv(w->chan, &m, sizeof m, MSG_DONTWAIT);
        if (n == (ssize_t)sizeof m) {
            handle_msg(s, w, &m, now);
            continue;
        }
        if (n > 0)
            continue; /* short message: ignore */
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        w->chan_open = false; /* EOF or error: the worker is going; SIGCHLD follows */
        return;
    }
}

/* ----------------------------------------------------------------- timers */

static void check_timers(struct sup *s, int64_t now)
{
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        struct slot *w = &s->slots[i];
        if (!w->used)
            continue;
        const char *role = role_names[w->role];
        if (w->pid > 0) {
            if (w->kill_at_ms != 0 && now >= w->kill_at_ms && !w->kill_sent) {
                log_warn("worker %s pid %d still running %.1fs after SIGTERM, sending SIGKILL",
                         role, (int)w->pid, (double)(now - w->term_ms) / 1000.0);
                kill(w->pid, SIGKILL);
                w->kill_sent = true;
            } else if (w->term_ms == 0 && !s->stopping) {
                if (w->ready && now - w->last_seen_ms >= hb_timeout(s)) {
                    log_warn("worker %s pid %d silent for %.1fs, killing", role, (int)w->pid,
                             (double)(now - w->last_seen_ms) / 1000.0);
                    terminate(w, now, KILL_GRACE_MS);
                } else if (!w->ready && now - w->started_ms >= READY_TIMEOUT_MS) {
                    log_warn("worker %s pid %d not ready after %.1fs, killing", role, (int)w->pid,
                             (double)(now - w->started_ms) / 1000.0);
                    terminate(w, now, KILL_GRACE_MS);
                }
            }
        } else if (w->restart_at_ms != 0 && now >= w->restart_at_ms && w->gen == s->gen &&
                   !s->stopping) {
            spawn(s, w);
        }
    }
}

static int64_t next_deadline(const struct sup *s)
{
    int64_t t = 0;
    if (s->wd_ms)
        deadline_min(&t, s->wd_next_ms);
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        const struct slot *w = &s->slots[i];
        if (!w->used)
            continue;
        if (w->pid > 0) {
            if (w->kill_at_ms && !w->kill_sent)
                deadline_min(&t, w->kill_at_ms);
            else if (w->term_ms == 0 && w->ready)
                deadline_min(&t, w->last_seen_ms + hb_timeout(s));
            else if (w->term_ms == 0)
                deadline_min(&t, w->started_ms + READY_TIMEOUT_MS);
        } else if (w->restart_at_ms && w->gen == s->gen) {
            deadline_min(&t, w->restart_at_ms);
        }
    }
    return t;
}

static bool generation_ready(const struct sup *s, unsigned gen)
{
    size_t n = 0;
    for (size_t i = 0; i < MAX_SLOTS; i++) {
        const struct slot *w = &s->slots[i];
        if (!w->used || w->gen != gen)
            continue;
        if (w->pid <= 0 || !w->ready)
            return false;
        n++;
    }
    return n > 0;
}

/* ------------------------------------------------------------------- loop */

static void handle_signals(struct sup *s)
{
    if (sig_stop) {
        int n = sig_stop;
        sig_stop = 0;
        if (!s->stopping) {
            log_info("stop requested: draining %zu workers (up to %.1fs)", live_workers(s),
                     (double)s->cfg->supervisor.drain_timeout / 1000.0);
            begin_stop(s, DR_EXIT_OK, (int64_t)s->cfg->supervisor.drain_timeout);
            n--;
        }
        if (n > 0) {
            log_warn("stop requested again: killing the workers now");
            kill_now(s);
        }
    }
    if (sig_chld) {
        sig_chld = 0;
        reap(s);
    }
    if (sig_hup) {
        sig_hup = 0;
        s->hup_pending = true;
    }
}

static void main_loop(struct sup *s)
{
    struct pollfd pfd[MAX_SLOTS];
    struct slot *who[MAX_SLOTS];
    for (;;) {
        handle_signals(s);
        if (s->stopping && live_workers(s) == 0)
            return;
        if (s->hup_pending && !s->stopping && !s->reloading && s->announced_ready) {
            s->hup_pending = false;
            start_reload(s);
        }
        int64_t now = dr_mono_ms();
        check_timers(s, now);
        if (!s->stopping && !s->announced_ready && generation_ready(s, s->gen)) {
            s->announced_ready = true;
            log_info("ready: %u workers, listening on %s%s", ready_workers(s), s->ls.v[0].name,
                     s->ls.n > 1 ? " and more" : "");
            send_ready(s);
            drop_startup_pages();
        }
        if (!s->stopping && s->reloading && generation_ready(s, s->gen))
            commit_reload(s);
        watchdog_tick(s, now);
        if (s->announced_ready && !s->stopping)
            update_status(s);

        nfds_t n = 0;
        for (size_t i = 0; i < MAX_SLOTS; i++) {
            struct slot *w = &s->slots[i];
            if (w->used && w->pid > 0 && w->chan_open) {
                pfd[n] = (struct pollfd){.fd = w->chan, .events = POLLIN};
                who[n++] = w;
            }
        }
        int64_t dl = next_deadline(s);
        int64_t wait_ms = 1000;
        if (dl != 0)
            wait_ms = DR_MAX((int64_t)0, DR_MIN(dl - dr_mono_ms(), wait_ms));
        struct timespec ts = {.tv_sec = (time_t)(wait_ms / 1000),
                              .tv_nsec = (long)(wait_ms % 1000) * 1000000L};
        int r = ppoll(pfd, n, &ts, &s->wait_mask);
        if (r <= 0)
            continue; /* timeout, or EINTR: a signal flag is set */
        now = dr_mono_ms();
        for (nfds_t i = 0; i < n; i++)
            if (pfd[i].revents != 0 && who[i]->pid > 0)
                read_channel(s, who[i], now);
    }
}

static void install_signals(struct sup *s)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_NOCLDSTOP;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGCHLD, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    s->wait_mask = old;
    sigdelset(&s->wait_mask, SIGTERM);
    sigdelset(&s->wait_mask, SIGINT);
    sigdelset(&s->wait_mask, SIGHUP);
    sigdelset(&s->wait_mask, SIGCHLD);
}

int supervisor_run(struct dr_config *cfg, const char *config_path, const struct dr_sup_opts *opts)
{
    struct sup *s = xcalloc(1, sizeof *s);
    char err[DR_ERRLEN] = "";
    int rc = DR_EXIT_STARTUP;
    bool started = false;
    s->cfg = cfg;
    s->config_path = config_path;
    s->self = getpid();
    s->lock_fd = -1;
    for (size_t i = 0; i < MAX_SLOTS; i++)
        s->slots[i].chan = -1;
    for (int r = 0; r < DR_ROLE_COUNT; r++) {
        int n = opts ? opts->workers[r] : 0;
        s->per_role[r] = n <= 0 ? 1 : DR_MIN(n, DR_SUP_MAX_PER_ROLE);
    }
    prctl(PR_SET_NAME, "dripd", 0, 0, 0); /* the contract's name, whatever the binary is called */
    log_set_role("supervisor");
    install_signals(s);
    log_info("dripd %s starting (config %s, data_dir %s)", DRIPD_VERSION,
             config_path ? config_path : "<defaults>", cfg->data_dir);

    if (lock_data_dir(s, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    s->metrics = metrics_create_shared();
    if (s->metrics == NULL) {
        log_error("cannot map the shared metrics: %s", strerror(errno));
        goto out;
    }
    int r = catalog_share_writer(s->cfg);
    if (r < 0) {
        log_error("cannot map the catalog's shared write lock: %s", strerror(-r));
        goto out;
    }
    r = sdnotify_open_env(&s->sd);
    if (r < 0)
        log_warn("NOTIFY_SOCKET: %s; not notifying systemd", strerror(-r));
    uint64_t wd_us = 0;
    r = sdnotify_watchdog_usec(&wd_us, 1);
    if (r < 0)
        log_warn("WATCHDOG_USEC/WATCHDOG_PID malformed; watchdog off");
    if (r == 1 && wd_us >= 2000) {
        s->wd_ms = wd_us / 2000; /* half the interval, in ms */
        s->wd_next_ms = dr_mono_ms() + (int64_t)s->wd_ms;
        log_info("systemd watchdog: WATCHDOG=1 every %" PRIu64 "ms while all workers are healthy",
                 s->wd_ms);
    }

    r = listen_set_from_systemd(&s->ls, err, sizeof err);
    if (r < 0) {
        log_error("%s", err);
        goto out;
    }
    if (r == 1) {
        log_info("using %zu socket(s) passed by systemd; `listen:` in the config is ignored",
                 s->ls.n);
    } else if (cfg->n_listen == 0) {
        log_error("listen: no addresses configured");
        goto out;
    } else if (listen_set_open(&s->ls, cfg->listen, cfg->n_listen, NULL, err, sizeof err) < 0) {
        log_error("%s", err);
        goto out;
    }
    log_new_listeners(&s->ls, NULL);
    s->listen_file = xasprintf("%s/run/listen", cfg->data_dir);
    r = listen_write_file(&s->ls, s->listen_file);
    if (r < 0) {
        log_error("%s: %s", s->listen_file, strerror(-r));
        goto out;
    }

    s->gen = s->last_gen = 1;
    spawn_generation(s, s->gen);
    main_loop(s);
    rc = s->exit_code;
    unlink(s->listen_file);
    log_info("stopped; exit status %d", rc);
    started = true;
out:
    if (!started)
        log_error("start-up failed; exit status %d", rc);
    listen_set_close(&s->prev_ls, &s->ls);
    listen_set_close(&s->ls, NULL);
    sdnotify_close(s->sd);
    metrics_destroy_shared(s->metrics);
    config_destroy(s->prev_cfg);
    config_destroy(s->cfg);
    free(s->listen_file);
    if (s->lock_fd >= 0) {
        if (ftruncate(s->lock_fd, 0) < 0) /* no stale pid; the file itself stays */
            log_debug("run/dripd.pid: %s", strerror(errno));
        close(s->lock_fd);
    }
    free(s);
    return rc;
}

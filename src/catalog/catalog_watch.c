/* catalog_watch.c - wake-ups and reachability of a shared (PostgreSQL)
 * catalog.
 *
 * What: with catalog.backend postgres, a thread ("catalog-watch") holds a
 * connection that LISTENs on the catalog's channels (catalog_schema.h):
 * CATALOG_CHANNEL_JOBS, notified by every transaction that enqueues or
 * releases jobs, and CATALOG_CHANNEL_EVENTS, by every transaction that
 * writes events, on any node. It calls ops->wake with what it heard, and
 * pings the server every probe_ms to tell ops->state whether it answers
 * (/readyz, dripd_catalog_up). With SQLite there is nothing to watch:
 * the supervisor relays wake-ups between the processes of the one node.
 *
 * Guarantees: notifications are hints, the tables are the truth. A
 * notification sent while the connection was down is lost, so after every
 * (re)connection the thread reports CATALOG_WAKE_JOBS | CATALOG_WAKE_EVENTS
 * once, and the callers keep their slow safety polls. Reconnection backs
 * off from 100 ms to 5 s. No busy polling: the thread sleeps in poll(2)
 * until a notification, a ping or a stop.
 *
 * Threads: the watch thread calls ops->wake and ops->state; they must be
 * quick and thread-safe (set a flag, signal a condition, post to a loop).
 * catalog_watch_stop (any other thread) wakes it through a pipe and joins.
 */
#include "dripd/catalog.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog_schema.h"
#include "db.h"
#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

struct catalog_watch {
    const struct dr_config *cfg;
    uint64_t probe_ms;
    struct catalog_watch_ops ops;
    void *arg;
    int stop_pipe[2];
    pthread_t tid;
};

static void on_note(const char *channel, const char *payload, void *arg)
{
    (void)payload;
    unsigned *what = arg;
    if (strcmp(channel, CATALOG_CHANNEL_JOBS) == 0)
        *what |= CATALOG_WAKE_JOBS;
    else if (strcmp(channel, CATALOG_CHANNEL_EVENTS) == 0)
        *what |= CATALOG_WAKE_EVENTS;
}

static void set_state(struct catalog_watch *w, int *up, int now_up, const char *why)
{
    if (*up == now_up)
        return;
    if (now_up)
        log_info("catalog: PostgreSQL listening connection up");
    else
        log_warn("catalog: PostgreSQL unreachable: %s", why);
    *up = now_up;
    if (w->ops.state != NULL)
        w->ops.state(now_up != 0, w->arg);
}

/* Sleep up to ms, or until stopped: true when stopped. */
static bool nap(struct catalog_watch *w, int64_t ms)
{
    struct pollfd p = {.fd = w->stop_pipe[0], .events = POLLIN};
    return poll(&p, 1, (int)ms) > 0;
}

static void *watch_main(void *arg)
{
    struct catalog_watch *w = arg;
    static const char *const channels[] = {CATALOG_CHANNEL_JOBS, CATALOG_CHANNEL_EVENTS};
    struct db_listener *l = NULL;
    int up = -1;
    int64_t backoff = BACKOFF_MIN_MS;
    char err[256];
    for (;;) {
        if (l == NULL) {
            if (db_listen_open(w->cfg->catalog.postgres.dsn, channels, DR_ARRAY_LEN(channels), &l,
                               err, sizeof err) < 0) {
                set_state(w, &up, 0, err);
                if (nap(w, backoff))
                    break;
                backoff = DR_MIN(backoff * 2, BACKOFF_MAX_MS);
                continue;
            }
            backoff = BACKOFF_MIN_MS;
            set_state(w, &up, 1, "");
            /* Whatever was sent while we were not listening is lost. */
            w->ops.wake(CATALOG_WAKE_JOBS | CATALOG_WAKE_EVENTS, w->arg);
        }
        int64_t next_ping = dr_mono_ms() + (int64_t)w->probe_ms;
        bool stop = false;
        while (l != NULL) {
            struct pollfd p[2] = {{.fd = db_listen_fd(l), .events = POLLIN},
                                  {.fd = w->stop_pipe[0], .events = POLLIN}};
            int64_t wait = next_ping - dr_mono_ms();
            int n = poll(p, 2, (int)(wait > 0 ? wait : 0));
            if (n > 0 && (p[1].revents & POLLIN)) {
                stop = true;
                break;
            }
            unsigned what = 0;
            int rc = 0;
            if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR)))
                rc = db_listen_drain(l, on_note, &what);
            if (rc == 0 && dr_mono_ms() >= next_ping) {
                rc = db_listen_ping(l);
                if (rc == 0)
                    rc = db_listen_drain(l, on_note, &what); /* what arrived with the ping */
                next_ping = dr_mono_ms() + (int64_t)w->probe_ms;
            }
            if (what != 0)
                w->ops.wake(what, w->arg);
            if (rc < 0) {
                db_listen_close(l);
                l = NULL;
                set_state(w, &up, 0, "the listening connection was lost");
            }
        }
        if (stop)
            break;
    }
    db_listen_close(l);
    return NULL;
}

int catalog_watch_start(const struct dr_config *cfg, uint64_t probe_ms,
                        const struct catalog_watch_ops *ops, void *arg, struct catalog_watch **out)
{
    if (out == NULL)
        return -EINVAL;
    *out = NULL;
    if (cfg == NULL || ops == NULL || ops->wake == NULL)
        return -EINVAL;
    if (cfg->catalog.backend != DR_CATALOG_POSTGRES)
        return 0;
    struct catalog_watch *w = xcalloc(1, sizeof *w);
    w->cfg = cfg;
    w->probe_ms = probe_ms > 0 ? probe_ms : 5000;
    w->ops = *ops;
    w->arg = arg;
    if (pipe2(w->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
        int e = errno;
        free(w);
        return -e;
    }
    int rc = dr_thread_start(&w->tid, watch_main, w);
    if (rc < 0) {
        close(w->stop_pipe[0]);
        close(w->stop_pipe[1]);
        free(w);
        return rc;
    }
    pthread_setname_np(w->tid, "catalog-watch");
    *out = w;
    return 0;
}

void catalog_watch_stop(struct catalog_watch *w)
{
    if (w == NULL)
        return;
    if (write(w->stop_pipe[1], "x", 1) < 0)
        log_warn("catalog: waking the watch thread: %s", strerror(errno));
    pthread_join(w->tid, NULL);
    close(w->stop_pipe[0]);
    close(w->stop_pipe[1]);
    free(w);
}

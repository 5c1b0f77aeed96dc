/* http_worker.c - the dripd-http worker process (worker.h contract).
 *
 * Sets up the routes, starts the HTTP server with cfg->http.threads loops
 * (0 = one per core) and the ingest committer, tells the supervisor it is
 * READY, then runs loop 0 on this (main) thread until the server stops.
 *
 * On loop 0 (so a stuck loop stops them):
 *   - heartbeat timer (supervisor.heartbeat_interval): DR_MSG_HEARTBEAT,
 *     sent only while every loop thread ticks (http_server_loops_alive);
 *   - the supervisor channel: DR_MSG_EVENT -> router_run_event_hooks(seq),
 *     DR_MSG_FILLED -> api_content_filled (requests waiting for a cache fill);
 *     EOF (the supervisor died) -> stop now;
 *   - a 1 s fallback timer -> router_run_event_hooks(seq 0), because relay
 *     messages are wake-ups that may be lost;
 *   - with a PostgreSQL catalog, events written on any node: the
 *     catalog-watch thread (catalog.h) posts router_run_event_hooks(0) to
 *     loop 0, so SSE streams and download waiters hear of them at once;
 *   - a 100 ms timer that notices the SIGTERM/SIGINT flag (the handler only
 *     sets a sig_atomic_t) and starts the drain: stop accepting, finish
 *     in-flight exchanges, close idle keep-alives; after
 *     supervisor.drain_timeout whatever is left is aborted. Exit status 0.
 *
 * Before it serves, it removes orphaned spool files (spool_sweep: bodies
 * of uploads a killed worker was receiving, files no tus session or
 * pending job names); a file another live process is still writing is
 * never touched, so this is safe during a reload.
 *
 * Route registration lives in setup_routes(): each route module declares
 * its *_register_routes() function in routes.h and is listed there.
 *
 * This file lives in src/api/, not src/http/: it is the process that wires
 * the routes (api) to the server (http), and src/http/ stays the HTTP
 * layer below the routes, which never includes api code.
 */
#include "dripd/worker.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <event2/event.h>

#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "ingest.h"
#include "routes.h"
#include "dripd/log.h"
#include "dripd/router.h"
#include "dripd/store.h"
#include "dripd/util.h"
#include "spool.h"
#include "stager.h"
#include "upload_hook.h"

#define EVENT_FALLBACK_MS 1000
#define SIGNAL_POLL_MS 100

struct hw {
    struct dr_worker_ctx *ctx;
    struct http_server *srv;
    struct http_timer *heartbeat, *fallback, *sigpoll, *drain_deadline;
    struct event *chan_ev;
    struct catalog_watch *watch; /* PostgreSQL: events from every node */
    bool draining;
};

static void run_event_hooks(struct http_thread *t, void *arg)
{
    (void)t;
    struct hw *w = arg;
    router_run_event_hooks(w->srv, 0);
}

/* On the catalog-watch thread: hand the wake-up to loop 0 (a full post
 * queue drops it; the fallback timer re-checks). */
static void on_watch_wake(unsigned what, void *arg)
{
    struct hw *w = arg;
    if (what & CATALOG_WAKE_EVENTS)
        (void)http_thread_post(http_server_thread(w->srv, 0), run_event_hooks, w);
}

static void setup_routes(void)
{
    router_reset();
    health_register_routes();
    upload_put_register_routes();
    api_metrics_register_routes();
    api_admin_register_routes();
    web_register_routes();
    upload_multipart_register_routes();
    tus_register_routes();
    api_media_register_routes();    /* /v1/media, /v1/media/, /v1/jobs, /v1/jobs/ */
    api_content_register_routes();  /* event hook; content is routed by api_media */
    api_events_register_routes();   /* /v1/events + event hook */
    api_shares_register_routes();   /* /v1/folders/shares (media shares via api_media) */
    api_versions_register_routes(); /* /v1/trash, /v1/trash/ */
    api_links_register_routes();    /* /v1/public-links[/], /p/ */
    api_folders_register_routes();  /* /v1/folders */
    api_pipeline_register_routes(); /* /v1/admin/pipeline[/stream] */
}

static int spool_refs(void *arg, char ***paths, size_t *n)
{
    return catalog_spool_refs(arg, paths, n);
}

/* Orphaned spool files go before we serve (see the top of the file). */
static void sweep_spool(const struct dr_config *cfg)
{
    struct catalog *cat = NULL;
    int rc = catalog_open(cfg, &cat);
    size_t removed = 0;
    uint64_t bytes = 0;
    if (rc == 0)
        rc = spool_sweep(cfg->data_dir, spool_refs, cat, &removed, &bytes);
    catalog_close(cat);
    if (rc < 0)
        log_warn("spool: sweeping orphaned files: %s", strerror(-rc));
    else if (removed > 0)
        log_info("spool: removed %zu unreferenced spool file(s), %" PRIu64 " bytes", removed,
                 bytes);
}

static void on_heartbeat(void *arg)
{
    struct hw *w = arg;
    uint64_t iv = w->ctx->cfg->supervisor.heartbeat_interval;
    uint64_t max_age = DR_MAX(3 * iv, 2000);
    if (http_server_loops_alive(w->srv, max_age))
        worker_send(w->ctx, DR_MSG_HEARTBEAT, (uint64_t)getpid());
    else
        log_warn("http: a loop thread is stuck; heartbeat withheld");
}

static void on_fallback(void *arg)
{
    struct hw *w = arg;
    router_run_event_hooks(w->srv, 0);
}

static void on_drain_deadline(void *arg)
{
    struct hw *w = arg;
    log_warn("http: drain_timeout reached; aborting the exchanges still in flight");
    http_server_stop(w->srv);
}

static void start_drain(struct hw *w, const char *why)
{
    if (w->draining)
        return;
    w->draining = true;
    log_info("http: %s: draining", why);
    http_server_drain(w->srv);
    w->drain_deadline =
        http_timer_start(http_server_thread(w->srv, 0), w->ctx->cfg->supervisor.drain_timeout,
                         false, on_drain_deadline, w);
}

static void on_sigpoll(void *arg)
{
    struct hw *w = arg;
    if (worker_term_requested())
        start_drain(w, "SIGTERM");
}

static void on_chan(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct hw *w = arg;
    struct dr_msg m;
    int r;
    uint64_t newest = 0;
    bool event = false;
    while ((r = worker_recv(w->ctx, &m)) == 1) {
        if (m.type == DR_MSG_EVENT) {
            event = true;
            newest = DR_MAX(newest, m.arg);
        } else if (m.type == DR_MSG_FILLED) {
            api_content_filled(w->srv, m.flags, m.data);
        }
    }
    if (event)
        router_run_event_hooks(w->srv, newest);
    if (r < 0) {
        log_warn("http: the supervisor is gone; stopping");
        event_del(w->chan_ev);
        http_server_stop(w->srv);
    }
}

int http_worker_main(struct dr_worker_ctx *ctx)
{
    const struct dr_config *cfg = ctx->cfg;
    prctl(PR_SET_NAME, "dripd-http", 0, 0, 0);
    log_set_role("http");
    worker_install_signals();
    store_set_metrics(ctx->metrics); /* DELETE removes objects (api_media.c) */
    setup_routes();

    struct hw w = {.ctx = ctx};
    struct http_server_opts opts = {
        .cfg = cfg,
        .ctx = ctx,
        .listen_fds = ctx->listen_fds,
        .n_listen = ctx->n_listen,
        .threads = cfg->http.threads,
        .dispatch = router_dispatch,
    };
    int rc = http_server_create(&opts, &w.srv);
    if (rc == -EKEYREJECTED) {
        /* tls.cert/tls.key changed since the config was checked: a reload
         * that brought them is abandoned, the old generation keeps serving */
        log_error("http: cannot start the server: the TLS certificate or key does not load");
        return DR_EXIT_FATAL_CONFIG;
    }
    if (rc < 0) {
        log_error("http: cannot start the server: %s", strerror(-rc));
        return 1;
    }
    rc = stager_start(cfg);
    if (rc == 0)
        rc = ingest_start(cfg, ctx);
    if (rc < 0) {
        http_server_destroy(w.srv);
        stager_stop();
        return 1;
    }
    sweep_spool(cfg);
    struct http_thread *t0 = http_server_thread(w.srv, 0);
    uint64_t iv = cfg->supervisor.heartbeat_interval ? cfg->supervisor.heartbeat_interval : 1000;
    w.heartbeat = http_timer_start(t0, iv, true, on_heartbeat, &w);
    w.fallback = http_timer_start(t0, EVENT_FALLBACK_MS, true, on_fallback, &w);
    w.sigpoll = http_timer_start(t0, SIGNAL_POLL_MS, true, on_sigpoll, &w);
    tus_sweep_start(t0, cfg);
    w.chan_ev = event_new(http_thread_base(t0), ctx->chan_fd, EV_READ | EV_PERSIST, on_chan, &w);
    if (w.chan_ev != NULL)
        event_add(w.chan_ev, NULL);

    static const struct catalog_watch_ops watch_ops = {.wake = on_watch_wake};
    rc = catalog_watch_start(cfg, cfg->health.store_probe_interval, &watch_ops, &w, &w.watch);
    if (rc < 0)
        log_warn("http: no catalog watch thread (%s): other nodes' events come by polling",
                 strerror(-rc));
    log_info("http: serving with %d loop thread(s)", http_server_thread_count(w.srv));
    worker_send(ctx, DR_MSG_READY, 0);
    worker_send(ctx, DR_MSG_HEARTBEAT, (uint64_t)getpid());
    if (worker_term_requested())
        start_drain(&w, "SIGTERM");
    rc = http_server_run(w.srv);
    catalog_watch_stop(w.watch);

    http_timer_stop(w.heartbeat);
    http_timer_stop(w.fallback);
    http_timer_stop(w.sigpoll);
    http_timer_stop(w.drain_deadline);
    tus_sweep_stop();
    if (w.chan_ev != NULL)
        event_free(w.chan_ev);
    upload_hook_stop(); /* its last answers are posted before the destroy runs them */
    ingest_stop();
    http_server_destroy(w.srv);
    stager_stop();
    log_info("http: stopped");
    return rc < 0 ? 1 : 0;
}

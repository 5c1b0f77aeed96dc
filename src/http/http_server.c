/* http_server.c - listener, event-loop threads, the bounded worker pool
 * behind http_defer(), timers and cross-thread posts (see http.h).
 *
 * Threads:
 *   - N loop threads, each with its own event_base. Loop 0 is the thread
 *     that calls http_server_run() (the http worker's main thread): it
 *     owns the listeners, accepts every connection and hands it round-robin
 *     to a loop (itself included) through that loop's inbox. A connection
 *     stays on its loop for life (http_conn.c).
 *   - P pool threads run http_defer() work; each has its own catalog
 *     connection (http_work_catalog()). The pool queue is bounded
 *     (POOL_QUEUE_MAX): a full queue is -EAGAIN, which routes answer 503.
 * Spawned threads are named ("dripd-http-N", "dripd-pool-N") and block
 * every signal, so signal handlers run on the main thread only.
 *
 * Inbox: per loop, a mutex-protected FIFO of closures plus a libevent
 * event made active with event_active() (libevent is set up for pthreads,
 * so that call is safe from any thread). Posts run in order, on the loop.
 *
 * Lock order: pool mutex and inbox mutexes are leaves (never nested).
 *
 * Fairness: a connection callback does a bounded amount of work and then
 * yields (http_conn.c, STEP_BUDGET). Housekeeping timers (the heartbeat
 * tick, http_timer_start(): heartbeat, signal poll, drain deadline) have
 * the higher of two priorities, and a loop looks for due timers after
 * DISPATCH_SLICE_MS of connection callbacks, so a flood of pipelined
 * requests on thousands of connections neither withholds the heartbeat
 * nor delays a SIGTERM drain.
 *
 * Drain: stop accepting, ask every connection to close after its current
 * exchange (idle ones close at once), and stop the loops when the last
 * connection is gone. http_server_stop() stops at once; destroy then
 * aborts what is left (handlers get on_abort).
 */
#include "dripd/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <http_parser.h>

#include "dripd/catalog.h"
#include "dripd/config.h"
#include "forwarded.h"
#include "http_conn.h"
#include "tls.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/util.h"
#include "dripd/worker.h"

#define POOL_THREADS 4
#define POOL_QUEUE_MAX 1024
#define REFUSING_MAX 256 /* connections answered 503 and still lingering */
#define CATALOG_RETRY_MS 1000
#define PRIO_TIMERS 0        /* heartbeat tick, http_timer_start() timers */
#define PRIO_CONNS 1         /* everything else (libevent's default: the middle one) */
#define DISPATCH_SLICE_MS 20 /* connection callbacks in a row before timers are checked */

struct post {
    struct post *next;
    void (*fn)(struct http_thread *t, void *arg);
    void *arg;
};

struct http_thread {
    struct http_server *srv;
    int idx;
    pthread_t th;
    bool spawned;
    struct event_base *base;
    struct event *inbox_ev;
    struct event *tick_ev;
    pthread_mutex_t mu;
    struct post *head, *tail;
    struct http_conn *conns;
    struct catalog *cat;
    int64_t cat_retry_at;
    int64_t tick_ms; /* atomic */
};

struct job {
    struct job *next;
    struct http_exchange *ex;
    struct http_thread *t;
    void (*work)(void *arg);
    void (*done)(struct http_exchange *ex, void *arg);
    void *arg;
};

struct http_server {
    const struct dr_config *cfg;
    struct dr_worker_ctx *ctx;
    struct dr_metrics *metrics;
    struct dr_proc_gauges *gauges; /* this process's block */
    http_dispatch_fn dispatch;
    struct fwd_trust *trust; /* trusted_proxies, compiled */
    struct tls_ctx *tls;     /* tls: {cert, key}, or NULL: plain HTTP */
    int n_threads;
    struct http_thread *threads;
    struct evconnlistener **lev;
    size_t n_lev;
    unsigned rr;
    uint64_t in_reserved; /* atomic: bytes of limits.max_buffered_input taken */
    int n_conns;          /* atomic: open, not refused */
    int n_refusing;       /* atomic */
    int draining;         /* atomic flag */
    int stopping;         /* atomic flag */
    /* pool */
    pthread_mutex_t pmu;
    pthread_cond_t pcv;
    struct job *jh, *jt;
    unsigned jn;
    bool pstop;
    pthread_t pool[POOL_THREADS];
    int n_pool;
};

static struct dr_metrics fallback_metrics; /* no worker ctx (tests, fuzzing) */

static __thread struct http_server *pool_srv;
static __thread struct catalog *pool_cat;
static __thread int64_t pool_cat_retry_at;

/* ------------------------------------------------------------------ */
/* accessors for http_conn.c and route modules                         */

const struct dr_config *http_thread_config(struct http_thread *t)
{
    return t->srv->cfg;
}

const struct fwd_trust *http_thread_trust(struct http_thread *t)
{
    return t->srv->trust;
}

struct tls_ctx *http_thread_tls(struct http_thread *t)
{
    return t->srv->tls;
}

struct dr_metrics *http_thread_metrics(struct http_thread *t)
{
    return t->srv->metrics;
}

struct dr_proc_gauges *http_thread_gauges(struct http_thread *t)
{
    return t->srv->gauges;
}

http_dispatch_fn http_thread_dispatch_fn(struct http_thread *t)
{
    return t->srv->dispatch;
}

bool http_thread_draining(struct http_thread *t)
{
    return __atomic_load_n(&t->srv->draining, __ATOMIC_ACQUIRE) != 0;
}

bool http_thread_input_reserve(struct http_thread *t, size_t n)
{
    struct http_server *srv = t->srv;
    uint64_t max = srv->cfg->limits.max_buffered_input;
    uint64_t cur = __atomic_load_n(&srv->in_reserved, __ATOMIC_RELAXED);
    do {
        if (cur + n > max)
            return false;
    } while (!__atomic_compare_exchange_n(&srv->in_reserved, &cur, cur + n, true, __ATOMIC_ACQ_REL,
                                          __ATOMIC_RELAXED));
    return true;
}

void http_thread_input_release(struct http_thread *t, size_t n)
{
    __atomic_sub_fetch(&t->srv->in_reserved, (uint64_t)n, __ATOMIC_ACQ_REL);
}

struct http_conn **http_thread_conn_list(struct http_thread *t)
{
    return &t->conns;
}

struct event_base *http_thread_base(struct http_thread *t)
{
    return t->base;
}

struct http_server *http_thread_server(struct http_thread *t)
{
    return t->srv;
}

struct dr_worker_ctx *http_worker_ctx(const struct http_exchange *ex)
{
    return http_ex_thread(ex)->srv->ctx;
}

int http_server_thread_count(const struct http_server *srv)
{
    return srv->n_threads;
}

struct http_thread *http_server_thread(struct http_server *srv, int i)
{
    return i >= 0 && i < srv->n_threads ? &srv->threads[i] : NULL;
}

bool http_server_draining(const struct http_server *srv)
{
    return __atomic_load_n(&srv->draining, __ATOMIC_ACQUIRE) != 0;
}

struct catalog *http_thread_catalog(struct http_thread *t)
{
    if (t->cat != NULL)
        return t->cat;
    int64_t now = dr_mono_ms();
    if (now < t->cat_retry_at)
        return NULL;
    int rc = catalog_open(t->srv->cfg, &t->cat);
    if (rc < 0) {
        log_error("http: cannot open the catalog in %s: %s", t->srv->cfg->data_dir, strerror(-rc));
        t->cat = NULL;
        t->cat_retry_at = now + CATALOG_RETRY_MS;
    }
    return t->cat;
}

struct catalog *http_work_catalog(void)
{
    if (pool_srv == NULL)
        return NULL;
    if (pool_cat != NULL)
        return pool_cat;
    int64_t now = dr_mono_ms();
    if (now < pool_cat_retry_at)
        return NULL;
    int rc = catalog_open(pool_srv->cfg, &pool_cat);
    if (rc < 0) {
        log_error("http pool: cannot open the catalog: %s", strerror(-rc));
        pool_cat = NULL;
        pool_cat_retry_at = now + CATALOG_RETRY_MS;
    }
    return pool_cat;
}

/* ------------------------------------------------------------------ */
/* inbox                                                               */

int http_thread_post(struct http_thread *t, void (*fn)(struct http_thread *t, void *arg), void *arg)
{
    struct post *p = xmalloc(sizeof *p);
    p->next = NULL;
    p->fn = fn;
    p->arg = arg;
    pthread_mutex_lock(&t->mu);
    if (t->tail)
        t->tail->next = p;
    else
        t->head = p;
    t->tail = p;
    pthread_mutex_unlock(&t->mu);
    event_active(t->inbox_ev, EV_READ, 0);
    return 0;
}

static void run_inbox(struct http_thread *t)
{
    for (;;) {
        pthread_mutex_lock(&t->mu);
        struct post *p = t->head;
        t->head = t->tail = NULL;
        pthread_mutex_unlock(&t->mu);
        if (p == NULL)
            return;
        while (p != NULL) {
            struct post *n = p->next;
            p->fn(t, p->arg);
            free(p);
            p = n;
        }
    }
}

static void on_inbox(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run_inbox(arg);
}

void http_server_post_all(struct http_server *srv, void (*fn)(struct http_thread *t, void *arg),
                          void *arg)
{
    for (int i = 0; i < srv->n_threads; i++)
        http_thread_post(&srv->threads[i], fn, arg);
}

/* ------------------------------------------------------------------ */
/* timers                                                              */

struct http_timer {
    struct event *ev;
    void (*fn)(void *arg);
    void *arg;
};

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_timer *tm = arg;
    tm->fn(tm->arg);
}

struct http_timer *http_timer_start(struct http_thread *t, uint64_t ms, bool repeat,
                                    void (*fn)(void *arg), void *arg)
{
    struct http_timer *tm = xcalloc(1, sizeof *tm);
    tm->fn = fn;
    tm->arg = arg;
    tm->ev = event_new(t->base, -1, repeat ? EV_PERSIST : 0, on_timer, tm);
    if (tm->ev == NULL)
        abort();
    event_priority_set(tm->ev, PRIO_TIMERS);
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    event_add(tm->ev, &tv);
    return tm;
}

void http_timer_stop(struct http_timer *tm)
{
    if (tm == NULL)
        return;
    event_free(tm->ev);
    free(tm);
}

/* ------------------------------------------------------------------ */
/* worker pool                                                         */

static void job_done(struct http_thread *t, void *arg)
{
    (void)t;
    struct job *j = arg;
    if (j->done)
        j->done(j->ex, j->arg);
    http_ex_release(j->ex);
    free(j);
}

static void *pool_main(void *arg)
{
    struct http_server *srv = arg;
    pool_srv = srv;
    for (;;) {
        pthread_mutex_lock(&srv->pmu);
        while (srv->jh == NULL && !srv->pstop)
            pthread_cond_wait(&srv->pcv, &srv->pmu);
        struct job *j = srv->jh;
        if (j == NULL) { /* stopping, queue empty */
            pthread_mutex_unlock(&srv->pmu);
            break;
        }
        srv->jh = j->next;
        if (srv->jh == NULL)
            srv->jt = NULL;
        srv->jn--;
        pthread_mutex_unlock(&srv->pmu);
        j->work(j->arg);
        http_thread_post(j->t, job_done, j);
    }
    catalog_close(pool_cat);
    pool_cat = NULL;
    return NULL;
}

int http_defer(struct http_exchange *ex, void (*work)(void *arg),
               void (*done)(struct http_exchange *ex, void *arg), void *arg)
{
    struct http_thread *t = http_ex_thread(ex);
    struct http_server *srv = t->srv;
    pthread_mutex_lock(&srv->pmu);
    if (srv->jn >= POOL_QUEUE_MAX || srv->pstop) {
        pthread_mutex_unlock(&srv->pmu);
        return -EAGAIN;
    }
    struct job *j = xcalloc(1, sizeof *j);
    j->ex = ex;
    j->t = t;
    j->work = work;
    j->done = done;
    j->arg = arg;
    if (srv->jt)
        srv->jt->next = j;
    else
        srv->jh = j;
    srv->jt = j;
    srv->jn++;
    http_ex_hold(ex);
    pthread_cond_signal(&srv->pcv);
    pthread_mutex_unlock(&srv->pmu);
    return 0;
}

/* Spawn a thread with every signal blocked and a name. */
static int spawn(pthread_t *th, void *(*fn)(void *), void *arg, const char *name)
{
    int rc = dr_thread_start(th, fn, arg);
    if (rc != 0)
        return rc;
    pthread_setname_np(*th, name);
    return 0;
}

/* ------------------------------------------------------------------ */
/* connections                                                         */

void http_thread_conn_gone(struct http_thread *t, bool refused)
{
    struct http_server *srv = t->srv;
    if (refused) {
        __atomic_sub_fetch(&srv->n_refusing, 1, __ATOMIC_ACQ_REL);
        return;
    }
    int left = __atomic_sub_fetch(&srv->n_conns, 1, __ATOMIC_ACQ_REL);
    if (left == 0 && http_server_draining(srv)) {
        log_info("http: drained, every connection is closed");
        http_server_stop(srv);
    }
}

struct handoff {
    int fd;
    bool refuse;
    char remote[64];
};

static void start_conn(struct http_thread *t, void *arg)
{
    struct handoff *h = arg;
    http_conn_start(t, h->fd, h->remote, h->refuse);
    free(h);
}

static void format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%u", host, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(out, outlen, "unix");
    }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)l;
    struct http_server *srv = arg;
    struct handoff *h = xcalloc(1, sizeof *h);
    h->fd = fd;
    format_addr(sa, (socklen_t)salen, h->remote, sizeof h->remote);
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int max = srv->cfg->limits.max_connections;
    int open = __atomic_add_fetch(&srv->n_conns, 1, __ATOMIC_ACQ_REL);
    if (max > 0 && open > max) {
        __atomic_sub_fetch(&srv->n_conns, 1, __ATOMIC_ACQ_REL);
        int refusing = __atomic_add_fetch(&srv->n_refusing, 1, __ATOMIC_ACQ_REL);
        if (refusing > REFUSING_MAX) {
            __atomic_sub_fetch(&srv->n_refusing, 1, __ATOMIC_ACQ_REL);
            metrics_add(&srv->metrics->http_connections_refused, 1);
            close(fd);
            free(h);
            return;
        }
        h->refuse = true;
        start_conn(&srv->threads[0], h); /* a few bytes of 503, on the acceptor */
        return;
    }
    struct http_thread *t = &srv->threads[srv->rr++ % (unsigned)srv->n_threads];
    if (t->idx == 0)
        start_conn(t, h);
    else
        http_thread_post(t, start_conn, h);
}

struct reaccept {
    struct http_server *srv;
    struct evconnlistener *l;
};

static void on_reaccept(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct reaccept *r = arg;
    if (!http_server_draining(r->srv))
        evconnlistener_enable(r->l);
    free(r);
}

static void on_accept_error(struct evconnlistener *l, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    log_warn("http: accept: %s", evutil_socket_error_to_string(err));
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* Out of descriptors: pause accepting for a moment instead of
         * spinning on the still-readable listener. */
        struct reaccept *r = xcalloc(1, sizeof *r);
        r->srv = arg;
        r->l = l;
        evconnlistener_disable(l);
        struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
        if (event_base_once(evconnlistener_get_base(l), -1, EV_TIMEOUT, on_reaccept, r, &tv) < 0) {
            evconnlistener_enable(l);
            free(r);
        }
    }
}

/* ------------------------------------------------------------------ */
/* loops                                                               */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_thread *t = arg;
    __atomic_store_n(&t->tick_ms, dr_mono_ms(), __ATOMIC_RELEASE);
}

bool http_server_loops_alive(struct http_server *srv, uint64_t max_age_ms)
{
    int64_t now = dr_mono_ms();
    for (int i = 0; i < srv->n_threads; i++) {
        int64_t t = __atomic_load_n(&srv->threads[i].tick_ms, __ATOMIC_ACQUIRE);
        if (now - t > (int64_t)max_age_ms)
            return false;
    }
    return true;
}

static void loop_break(struct http_thread *t, void *arg)
{
    (void)arg;
    event_base_loopbreak(t->base);
}

static void run_loop(struct http_thread *t)
{
    while (!__atomic_load_n(&t->srv->stopping, __ATOMIC_ACQUIRE)) {
        if (event_base_loop(t->base, 0) < 0) {
            log_error("http: event loop %d failed", t->idx);
            break;
        }
    }
}

static void *loop_main(void *arg)
{
    run_loop(arg);
    return NULL;
}

void http_server_stop(struct http_server *srv)
{
    if (__atomic_exchange_n(&srv->stopping, 1, __ATOMIC_ACQ_REL))
        return;
    http_server_post_all(srv, loop_break, NULL);
}

static void drain_thread(struct http_thread *t, void *arg)
{
    (void)arg;
    struct http_conn *c = t->conns;
    while (c != NULL) {
        struct http_conn *next = http_conn_next(c);
        http_conn_drain(c); /* may free c */
        c = next;
    }
}

static void drain_listeners(struct http_thread *t, void *arg)
{
    (void)arg;
    struct http_server *srv = t->srv;
    for (size_t i = 0; i < srv->n_lev; i++)
        evconnlistener_disable(srv->lev[i]);
    if (__atomic_load_n(&srv->n_conns, __ATOMIC_ACQUIRE) == 0)
        http_server_stop(srv);
}

void http_server_drain(struct http_server *srv)
{
    if (__atomic_exchange_n(&srv->draining, 1, __ATOMIC_ACQ_REL))
        return;
    log_info("http: draining: no new connections, closing after in-flight exchanges");
    http_thread_post(&srv->threads[0], drain_listeners, NULL);
    http_server_post_all(srv, drain_thread, NULL);
}

/* ------------------------------------------------------------------ */
/* create / run / destroy                                              */

static int thread_init(struct http_server *srv, struct http_thread *t, int idx)
{
    t->srv = srv;
    t->idx = idx;
    pthread_mutex_init(&t->mu, NULL);
    struct event_config *ec = event_config_new();
    if (ec == NULL)
        return -ENOMEM;
    /* Two priorities: housekeeping timers (PRIO_TIMERS) run before any
     * connection event, and the loop stops running connection callbacks
     * after DISPATCH_SLICE_MS to look for due timers. */
    struct timeval slice = {.tv_sec = 0, .tv_usec = DISPATCH_SLICE_MS * 1000};
    event_config_set_max_dispatch_interval(ec, &slice, -1, PRIO_CONNS);
    t->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (t->base == NULL || event_base_priority_init(t->base, 2) != 0)
        return -ENOMEM;
    t->inbox_ev = event_new(t->base, -1, EV_PERSIST, on_inbox, t);
    t->tick_ev = event_new(t->base, -1, EV_PERSIST, on_tick, t);
    if (t->inbox_ev == NULL || t->tick_ev == NULL)
        return -ENOMEM;
    event_priority_set(t->tick_ev, PRIO_TIMERS);
    uint64_t iv = srv->cfg->supervisor.heartbeat_interval;
    if (iv == 0 || iv > 1000)
        iv = 1000;
    struct timeval tv = {.tv_sec = (time_t)(iv / 1000), .tv_usec = (suseconds_t)(iv % 1000) * 1000};
    event_add(t->tick_ev, &tv);
    t->tick_ms = dr_mono_ms();
    return 0;
}

static int nproc(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 64 ? 64 : (int)n;
}

int http_server_create(const struct http_server_opts *opts, struct http_server **out)
{
    *out = NULL;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, (void (*)(void))evthread_use_pthreads);
    /* A peer that closes while we write must give EPIPE, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    uint64_t hmax = opts->cfg->limits.max_header_size + 4096;
    if (hmax > 80 * 1024) /* http_parser's own (process-wide) limit */
        http_parser_set_max_header_size((uint32_t)DR_MIN(hmax, (uint64_t)UINT32_MAX));

    struct http_server *srv = xcalloc(1, sizeof *srv);
    srv->cfg = opts->cfg;
    srv->ctx = opts->ctx;
    srv->metrics = opts->ctx && opts->ctx->metrics ? opts->ctx->metrics : &fallback_metrics;
    srv->gauges =
        metrics_proc(opts->ctx ? opts->ctx->metrics : NULL, opts->ctx ? opts->ctx->slot : 0);
    srv->dispatch = opts->dispatch;
    int rc = fwd_trust_new(opts->cfg->trusted_proxies, opts->cfg->n_trusted_proxies, &srv->trust);
    if (rc < 0) { /* config_load refuses these: cannot happen */
        log_error("http: trusted_proxies: a bad entry");
        free(srv);
        return rc;
    }
    if (opts->cfg->tls.cert != NULL) {
        rc = tls_ctx_new(opts->cfg, &srv->tls);
        if (rc < 0) {
            fwd_trust_free(srv->trust);
            free(srv);
            return rc;
        }
    }
    srv->n_threads = opts->threads > 0 ? opts->threads : nproc();
    srv->threads = xcalloc((size_t)srv->n_threads, sizeof *srv->threads);
    pthread_mutex_init(&srv->pmu, NULL);
    pthread_cond_init(&srv->pcv, NULL);
    for (int i = 0; i < srv->n_threads && rc == 0; i++)
        rc = thread_init(srv, &srv->threads[i], i);
    if (rc < 0)
        goto fail;

    srv->lev = xcalloc(opts->n_listen ? opts->n_listen : 1, sizeof *srv->lev);
    for (size_t i = 0; i < opts->n_listen; i++) {
        int fd = opts->listen_fds[i];
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0)
            fcntl(fd, F_SETFL, fl | O_NONBLOCK);
        struct evconnlistener *l =
            evconnlistener_new(srv->threads[0].base, on_accept, srv, LEV_OPT_CLOSE_ON_EXEC, -1, fd);
        if (l == NULL) {
            rc = -EINVAL;
            log_error("http: cannot listen on fd %d", fd);
            goto fail;
        }
        evconnlistener_set_error_cb(l, on_accept_error);
        srv->lev[srv->n_lev++] = l;
    }

    for (int i = 0; i < POOL_THREADS; i++) {
        char name[16];
        snprintf(name, sizeof name, "dripd-pool-%d", i % 100);
        rc = spawn(&srv->pool[i], pool_main, srv, name);
        if (rc < 0) {
            log_error("http: cannot start pool thread: %s", strerror(-rc));
            goto fail;
        }
        srv->n_pool++;
    }
    *out = srv;
    return 0;
fail:
    http_server_destroy(srv);
    return rc;
}

int http_server_run(struct http_server *srv)
{
    int rc = 0;
    for (int i = 1; i < srv->n_threads; i++) {
        char name[16];
        snprintf(name, sizeof name, "dripd-http-%d", i % 100);
        rc = spawn(&srv->threads[i].th, loop_main, &srv->threads[i], name);
        if (rc < 0) {
            log_error("http: cannot start loop thread: %s", strerror(-rc));
            http_server_stop(srv);
            break;
        }
        srv->threads[i].spawned = true;
    }
    if (rc == 0)
        run_loop(&srv->threads[0]);
    for (int i = 1; i < srv->n_threads; i++) {
        if (srv->threads[i].spawned) {
            pthread_join(srv->threads[i].th, NULL);
            srv->threads[i].spawned = false;
        }
    }
    return rc;
}

void http_server_destroy(struct http_server *srv)
{
    if (srv == NULL)
        return;
    __atomic_store_n(&srv->stopping, 1, __ATOMIC_RELEASE);
    /* 1. the pool finishes its queue and exits */
    pthread_mutex_lock(&srv->pmu);
    srv->pstop = true;
    pthread_cond_broadcast(&srv->pcv);
    pthread_mutex_unlock(&srv->pmu);
    for (int i = 0; i < srv->n_pool; i++)
        pthread_join(srv->pool[i], NULL);
    /* 2. completions still queued run here (the loops are stopped) */
    for (int i = 0; i < srv->n_threads; i++)
        if (srv->threads[i].base)
            run_inbox(&srv->threads[i]);
    /* 3. whatever is still connected is aborted */
    for (int i = 0; i < srv->n_threads; i++) {
        struct http_thread *t = &srv->threads[i];
        while (t->conns != NULL) {
            struct http_conn *c = t->conns;
            http_conn_abort(c);
            if (t->conns == c) { /* still held by someone: leave it */
                log_warn("http: a connection is still held at shutdown");
                t->conns = http_conn_next(c);
            }
        }
        run_inbox(t);
    }
    for (size_t i = 0; i < srv->n_lev; i++)
        evconnlistener_free(srv->lev[i]);
    free(srv->lev);
    for (int i = 0; i < srv->n_threads; i++) {
        struct http_thread *t = &srv->threads[i];
        if (t->inbox_ev)
            event_free(t->inbox_ev);
        if (t->tick_ev)
            event_free(t->tick_ev);
        if (t->base)
            event_base_free(t->base);
        catalog_close(t->cat);
        pthread_mutex_destroy(&t->mu);
    }
    free(srv->threads);
    pthread_mutex_destroy(&srv->pmu);
    pthread_cond_destroy(&srv->pcv);
    fwd_trust_free(srv->trust);
    tls_ctx_free(srv->tls);
    free(srv);
}

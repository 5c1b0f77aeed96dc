/* http.h - the HTTP/1.1 server's face towards route handlers.
 *
 * The server (http_server.c: listener + event-loop threads; http_conn.c:
 * one connection's state machine: its own socket I/O with two events and
 * two evbuffers, no bufferevent, plus http_parser) parses
 * request heads, then asks the application's dispatch function for a
 * route. Handlers run on the connection's loop thread and must never
 * block for long; slow work (fsync, catalog writes, waiting) goes through
 * http_defer() to a bounded worker pool.
 *
 * Lifecycle of one exchange (request + its response):
 *   dispatch(ex)          -> handler ops chosen from the request head
 *   ops->on_head(ex)      -> respond now (error, small GET), or call
 *                            http_accept_body() to receive the body, or
 *                            defer and respond later
 *   ops->on_body(ex,...)  -> 0 to go on, -errno after responding to stop
 *   ops->on_end(ex)       -> whole body received
 *   ops->on_abort(ex)     -> the connection died or timed out before the
 *                            response was complete; free your state. Never
 *                            called while a deferred job is pending: the
 *                            server waits for its done callback first.
 *   ops->on_done(ex)      -> the response was fully handed to the socket
 *                            (optional; free your state here too).
 * Exactly one of on_abort/on_done is called for every exchange whose ops
 * has them. If the head is answered without accepting the body, the
 * server discards the body (or closes the connection when it is large or
 * Expect: 100-continue was sent), so the client never sees 100 Continue.
 *
 * Memory: a request's head is bounded by limits.max_header_size and
 * limits.max_headers; body bytes are handed over as they arrive, and
 * reading pauses while a handler has the body paused (back-pressure).
 */
#ifndef DRIPD_HTTP_H
#define DRIPD_HTTP_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct http_exchange;
struct http_thread;
struct http_server;
struct dr_config;
struct dr_worker_ctx;
struct catalog;
struct json_t;
struct dr_metrics;
struct dr_proc_gauges;

struct http_request {
    int method;              /* enum http_method from http_parser.h */
    const char *method_name; /* "GET" */
    const char *target;      /* raw request-target */
    const char *path;        /* percent-decoded path, no query; NULL if undecodable */
    const char *query;       /* raw query string after '?', or NULL */
    int http_major, http_minor;
    bool keep_alive;
    bool chunked;    /* Transfer-Encoding: chunked */
    bool has_length; /* Content-Length given */
    uint64_t content_length;
    bool expect_continue;
    const char *remote_addr; /* the peer: "127.0.0.1:5555" */
    /* Who asked, and how: the connection's own view, or what trusted
     * proxies said (config trusted_proxies; X-Forwarded-For/-Proto/-Host,
     * RFC 7239 Forwarded; docs/HTTP.md "Behind a proxy"). */
    const char *client_addr; /* "192.0.2.1" (no port), "unix", "unknown" */
    const char *scheme;      /* "http" or "https" */
    const char *host;        /* authority the client addressed ("app.example:8443"), or NULL */
    bool via_proxy;          /* client_addr came from a trusted proxy */
};

struct http_route_ops {
    const char *route_class; /* metrics label: "upload", "tus", "media", ... */
    void (*on_head)(struct http_exchange *ex);
    int (*on_body)(struct http_exchange *ex, const char *data, size_t len);
    void (*on_end)(struct http_exchange *ex);
    void (*on_abort)(struct http_exchange *ex);
    void (*on_done)(struct http_exchange *ex);
    /* Optional sub-router: the router calls it once the route matched and
     * the caller is authenticated, and the exchange then uses the ops it
     * returns (never NULL) for its whole life, metrics label included.
     * The other members of a route with pick are not used. */
    const struct http_route_ops *(*pick)(const struct http_exchange *ex);
};

/* The application: chooses ops for a request head (never NULL: return a
 * "not found" route instead). Runs on the loop thread. */
typedef const struct http_route_ops *(*http_dispatch_fn)(struct http_exchange *ex);

/* ---- request ---- */
const struct http_request *http_req(const struct http_exchange *ex);
/* First header with that name (case-insensitive), or NULL. */
const char *http_header(const struct http_exchange *ex, const char *name);
/* Value of query parameter (percent-decoded into a per-exchange copy), or NULL. */
const char *http_query_param(struct http_exchange *ex, const char *name);

/* An absolute URL for path ("/v1/uploads/ID") as the client sees this
 * server: "<scheme>://<host><path>" (req->scheme, req->host), or a copy of
 * path when the request named no host. Caller frees. */
char *http_absolute_url(const struct http_exchange *ex, const char *path);

/* Per-exchange handler state. */
void http_set_data(struct http_exchange *ex, void *data);
void *http_get_data(const struct http_exchange *ex);
/* Authenticated user name, set by the application's auth step (copied). */
void http_set_user(struct http_exchange *ex, const char *user, bool admin);
const char *http_user(const struct http_exchange *ex);
bool http_user_admin(const struct http_exchange *ex);

/* ---- context ---- */
struct http_thread *http_ex_thread(const struct http_exchange *ex);
const struct dr_config *http_cfg(const struct http_exchange *ex);
struct dr_worker_ctx *http_worker_ctx(const struct http_exchange *ex);
/* Shared counters (never NULL: a private zeroed struct without a worker ctx). */
struct dr_metrics *http_ex_metrics(const struct http_exchange *ex);
/* This process's gauges in it (never NULL, as http_ex_metrics). */
struct dr_proc_gauges *http_ex_gauges(const struct http_exchange *ex);
/* The loop thread's own catalog connection (opened lazily, never NULL
 * unless the catalog cannot be opened; then NULL and the caller answers 503). */
struct catalog *http_thread_catalog(struct http_thread *t);
struct event_base *http_thread_base(struct http_thread *t);

/* ---- body flow ---- */
/* Start receiving the body (sends "100 Continue" first if it was expected). */
void http_accept_body(struct http_exchange *ex);
/* Stop/restart reading the socket for this exchange's body. */
void http_pause_body(struct http_exchange *ex);
void http_resume_body(struct http_exchange *ex);

/* ---- response ---- */
/* Add a response header (before the response starts). Copies both. */
void http_add_header(struct http_exchange *ex, const char *name, const char *value);
void http_add_headerf(struct http_exchange *ex, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Whole response from memory (copied). HEAD requests get headers only. */
void http_respond(struct http_exchange *ex, int status, const char *content_type, const void *body,
                  size_t len);
/* application/problem+json {"type":"about:blank","title":<reason>,"status":..,"detail":..}.
 * Errors >= 400 that leave the body unread also set Connection: close as needed. */
void http_respond_problem(struct http_exchange *ex, int status, const char *detail_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* JSON body; steals the reference to obj. */
void http_respond_json(struct http_exchange *ex, int status, struct json_t *obj);
/* Body from a file by sendfile (evbuffer_add_file); takes ownership of fd
 * (closed when sent or on abort). */
void http_respond_file(struct http_exchange *ex, int status, const char *content_type, int fd,
                       uint64_t offset, uint64_t len);
/* Streaming response (chunked on HTTP/1.1; close-delimited on 1.0). */
void http_stream_start(struct http_exchange *ex, int status, const char *content_type);
/* Queue bytes; returns -EAGAIN (and queues nothing) while more than
 * 256 KiB is waiting to be written: the caller retries later. */
int http_stream_write(struct http_exchange *ex, const void *data, size_t len);
/* Streaming back-pressure: fn(ex, arg) runs on the loop thread each time
 * the queued output drops below the http_stream_write() limit after a
 * write returned -EAGAIN. NULL fn clears it. */
void http_stream_on_drain(struct http_exchange *ex, void (*fn)(struct http_exchange *ex, void *arg),
                          void *arg);
void http_stream_end(struct http_exchange *ex);
/* True once the client is gone (a deferred done callback must check it). */
bool http_ex_closed(const struct http_exchange *ex);
/* Close the connection after this response even if keep-alive was asked. */
void http_close_after(struct http_exchange *ex);

/* ---- slow work ---- */
/* Run work(arg) on the server's bounded worker pool, then done(ex, arg)
 * on ex's loop thread. Returns -EAGAIN if the pool queue is full (nothing
 * will be called; answer 503). While pending, ex stays valid. */
int http_defer(struct http_exchange *ex, void (*work)(void *arg),
               void (*done)(struct http_exchange *ex, void *arg), void *arg);
/* Inside a work() function only: the calling pool thread's own catalog
 * connection (opened lazily; NULL if the catalog cannot be opened). */
struct catalog *http_work_catalog(void);
/* Keep ex valid across an asynchronous operation of your own (ingest uses
 * it): while held, the exchange is neither finished nor freed and on_abort
 * waits, exactly as for http_defer(). Loop thread only; every hold needs
 * one release. A release that drops the last hold of a dead connection
 * runs on_abort and frees it. */
void http_ex_hold(struct http_exchange *ex);
void http_ex_release(struct http_exchange *ex);
/* Run fn(t, arg) on loop thread t (from any thread). Returns 0; fn runs
 * exactly once, in order with other posts to t (at the latest while the
 * server is destroyed). */
int http_thread_post(struct http_thread *t, void (*fn)(struct http_thread *t, void *arg),
                     void *arg);
/* Run fn(t, arg) on every loop thread (e.g. wake SSE streams after an event). */
void http_server_post_all(struct http_server *srv, void (*fn)(struct http_thread *t, void *arg),
                          void *arg);
struct http_server *http_thread_server(struct http_thread *t);
/* Timers on the loop thread. A one-shot timer stays allocated after it
 * fired; always release it with http_timer_stop() (safe after it fired,
 * and from inside its own fn). Timers run before connection events (the
 * loop's higher priority), so keep fn short. */
struct http_timer;
struct http_timer *http_timer_start(struct http_thread *t, uint64_t ms, bool repeat,
                                    void (*fn)(void *arg), void *arg);
void http_timer_stop(struct http_timer *tm); /* NULL ok */

/* ---- server ---- */
struct http_server_opts {
    const struct dr_config *cfg;
    struct dr_worker_ctx *ctx;
    const int *listen_fds;
    size_t n_listen;
    int threads; /* event-loop threads */
    http_dispatch_fn dispatch;
};
int http_server_create(const struct http_server_opts *opts, struct http_server **out);
/* Runs until http_server_drain() completes or http_server_stop(). */
int http_server_run(struct http_server *srv);
/* Stop accepting; finish in-flight exchanges; close idle keep-alives. */
void http_server_drain(struct http_server *srv);
/* True once http_server_drain() was called (long-lived streams should end). */
bool http_server_draining(const struct http_server *srv);
/* Stop now: http_server_run() returns; in-flight exchanges are aborted by
 * http_server_destroy(). Any thread. */
void http_server_stop(struct http_server *srv);
void http_server_destroy(struct http_server *srv); /* NULL ok */
/* Loop threads: index 0 is the thread that calls http_server_run(). */
int http_server_thread_count(const struct http_server *srv);
struct http_thread *http_server_thread(struct http_server *srv, int i);
/* True when every loop thread ran its tick timer within max_age_ms (the
 * http worker sends heartbeats only then, so a stuck loop stops them). */
bool http_server_loops_alive(struct http_server *srv, uint64_t max_age_ms);

/* Reason phrase for a status ("Not Found"; 460 "Checksum Mismatch"). */
const char *http_reason(int status);

#endif

/* http_conn.h - one HTTP/1.1 connection: the state machine between a
 * socket and the route handlers of http.h. Internal to the front end:
 * used by http_server.c (which accepts and owns the threads), by the unit
 * tests and by the fuzz target, never by route modules.
 *
 * A connection belongs to one loop thread for its whole life; every
 * function here runs on that thread. It parses requests with http_parser,
 * answers them strictly in order (the next request is parsed only once the
 * current response has been handed to the socket; unread bytes are kept,
 * bounded at 256 KiB), and closes with a lingering close (shutdown(WR),
 * then read and drop until EOF or 2 s of silence) so a client still
 * sending a body sees the response rather than a reset.
 *
 * See docs/HTTP.md for the timeouts, limits and back-pressure design.
 */
#ifndef DRIPD_HTTP_CONN_H
#define DRIPD_HTTP_CONN_H

#include <stdbool.h>
#include <stddef.h>

#include "dripd/http.h"

struct http_conn;
struct dr_metrics;
struct fwd_trust;
struct tls_ctx;

/* Serve the connected socket fd on thread t (call on t's loop thread).
 * Takes ownership of fd (made non-blocking here; closed when the
 * connection ends). refuse: answer 503 problem+json and close at once
 * (limits.max_connections reached). remote is copied ("1.2.3.4:5678").
 * Returns nothing: the connection may already be gone when this returns
 * (a refused one is answered and freed at once). */
void http_conn_start(struct http_thread *t, int fd, const char *remote, bool refuse);
/* Graceful stop of one connection: an idle one closes now, a busy one
 * after its current exchange (its response says Connection: close). */
void http_conn_drain(struct http_conn *c);
/* Close at once (server shutdown). The exchange's handler gets on_abort,
 * unless a deferred job holds it: then the connection is freed when the
 * last hold is released. */
void http_conn_abort(struct http_conn *c);
/* The next connection of the same thread (list iteration), or NULL. */
struct http_conn *http_conn_next(const struct http_conn *c);

/* ---- what the connection layer needs from the server (http_server.c) ---- */
const struct dr_config *http_thread_config(struct http_thread *t);
/* The compiled trusted_proxies (forwarded.h), never NULL after start. */
const struct fwd_trust *http_thread_trust(struct http_thread *t);
/* The TLS context (tls.h) when the server speaks HTTPS, else NULL. */
struct tls_ctx *http_thread_tls(struct http_thread *t);
struct dr_metrics *http_thread_metrics(struct http_thread *t);
/* Read-ahead memory for accepted bodies, from limits.max_buffered_input
 * (all loops together): true when n bytes were granted. Any thread. */
bool http_thread_input_reserve(struct http_thread *t, size_t n);
void http_thread_input_release(struct http_thread *t, size_t n);
/* This process's gauge block (metrics_proc) */
struct dr_proc_gauges *http_thread_gauges(struct http_thread *t);
http_dispatch_fn http_thread_dispatch_fn(struct http_thread *t);
/* True once the server drains: responses say Connection: close. */
bool http_thread_draining(struct http_thread *t);
/* The thread's connection list head (the connection links itself in and
 * out), and the call every connection makes as it is freed. */
struct http_conn **http_thread_conn_list(struct http_thread *t);
void http_thread_conn_gone(struct http_thread *t, bool refused);

#endif

/* api_events.c - GET /v1/events, Server-Sent Events (routes.h, docs/API.md).
 *
 * What: one long streaming response per client carrying that user's job
 * events from the catalog's event log, in seq order, each as
 *     id: <seq>\nevent: <type>\ndata: <json>\n\n
 * The catalog is the source of truth and the stream is only a cursor over
 * it (last_seq), so nothing is lost across pipeline restarts, lost wake-up
 * messages or a client reconnecting with Last-Event-ID.
 *
 * Wake-ups: the router's event hook (DR_MSG_EVENT from the pipeline, and
 * the router's slow fallback timer) posts to every loop thread, which
 * pumps its own streams. The 15 s ping timer pumps too, as a last resort.
 * The pipeline sends DR_MSG_EVENT only while some process has a stream
 * open (metrics.h event_streams, counted in stream_link before the
 * stream's first pump reads the log): a commit that finds none wakes
 * neither the supervisor nor dripd-http (issue 15: ~2 process wake-ups
 * per group commit, for nobody).
 *
 * Back-pressure: a pump writes at most SSE_BATCHES * SSE_BATCH events, then
 * yields to the loop (1 ms timer). When http_stream_write() answers -EAGAIN
 * (more than 256 KiB unsent) the stream stops without advancing last_seq
 * and resumes from the catalog when the server reports the output drained
 * (http_stream_on_drain), so a slow reader holds at most that much memory
 * on the server and never blocks the loop.
 *
 * Limits: API_EVENTS_MAX_STREAMS per loop thread (503), and per user
 * quotas.max_event_streams (429, quota.h), so one user cannot take them
 * all.
 *
 * Drain (SIGTERM/reload): the next wake-up (the router's 1 s fallback
 * tick at the latest) or ping ends every stream with http_stream_end(), so
 * streams never hold a drain until drain_timeout; clients reconnect with
 * Last-Event-ID.
 *
 * Threads: a stream lives on its exchange's loop thread; stream lists are
 * thread-local, so no locks. Ownership: struct sse_stream is the
 * exchange's data from on_head until on_abort/on_done frees it (timers
 * stopped, unlinked).
 */
#include "routes.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/catalog.h"
#include "dripd/http.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/router.h"
#include "dripd/util.h"
#include "quota.h"

#define API_EVENTS_PING_MS 15000
/* Open streams per event-loop thread; more get 503. */
#define API_EVENTS_MAX_STREAMS 1024
#define SSE_BATCH 64     /* events per catalog read */
#define SSE_BATCHES 16   /* reads per pump before yielding to the loop */
#define SSE_RETRY_MS 250 /* back-off after a catalog error */
#define SSE_RECONNECT_MS 2000

struct sse_stream {
    struct http_exchange *ex;
    struct http_thread *thread;
    struct dr_proc_gauges *gauges; /* event_streams counts it while linked */
    char *user;
    int64_t last_seq;
    struct http_timer *ping;  /* repeating */
    struct http_timer *retry; /* one-shot; NULL once fired */
    bool linked;
    bool blocked;           /* waiting for on_drained() */
    bool ended;             /* http_stream_end() called (drain) */
    struct quota_hold hold; /* the user's stream slot (quotas.max_event_streams) */
    struct sse_stream *prev, *next;
};

static _Thread_local struct sse_stream *tl_streams;
static _Thread_local int tl_count;
static int n_streams; /* whole process; lets the hook skip posting when idle */

static void stream_link(struct sse_stream *s)
{
    s->linked = true;
    s->prev = NULL;
    s->next = tl_streams;
    if (tl_streams)
        tl_streams->prev = s;
    tl_streams = s;
    tl_count++;
    __atomic_add_fetch(&n_streams, 1, __ATOMIC_RELAXED);
    metrics_event_streams_add(s->gauges, 1);
}

static void stream_unlink(struct sse_stream *s)
{
    if (!s->linked)
        return;
    if (s->prev)
        s->prev->next = s->next;
    else
        tl_streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->linked = false;
    tl_count--;
    __atomic_sub_fetch(&n_streams, 1, __ATOMIC_RELAXED);
    metrics_event_streams_add(s->gauges, -1);
}

static void stream_free(struct http_exchange *ex)
{
    struct sse_stream *s = http_get_data(ex);
    if (!s)
        return;
    http_set_data(ex, NULL);
    http_stream_on_drain(ex, NULL, NULL);
    stream_unlink(s);
    quota_release(&s->hold, 0, 0);
    http_timer_stop(s->ping);
    http_timer_stop(s->retry);
    log_debug("events: stream of %s closed at seq %lld", s->user, (long long)s->last_seq);
    free(s->user);
    free(s);
}

/* One event in SSE framing; a data payload with line breaks becomes
 * several data: lines, as the format requires. Caller frees. */
static char *sse_render(const struct dr_event *ev, size_t *len)
{
    const char *d = ev->data ? ev->data : "{}";
    size_t dl = strlen(d), cap = dl * 7 + 128 + sizeof ev->type;
    char *buf = xmalloc(cap);
    int n = snprintf(buf, cap, "id: %lld\nevent: %s\n", (long long)ev->seq, ev->type);
    size_t o = (size_t)n;
    const char *p = d;
    for (;;) {
        size_t ll = strcspn(p, "\r\n");
        memcpy(buf + o, "data: ", 6);
        o += 6;
        memcpy(buf + o, p, ll);
        o += ll;
        buf[o++] = '\n';
        p += ll;
        if (*p == '\0')
            break;
        p += (p[0] == '\r' && p[1] == '\n') ? 2 : 1;
    }
    buf[o++] = '\n';
    buf[o] = '\0';
    *len = o;
    return buf;
}

static void stream_pump(struct sse_stream *s);

static void retry_fire(void *arg)
{
    struct sse_stream *s = arg;
    http_timer_stop(s->retry); /* one-shot timers are released by their owner */
    s->retry = NULL;
    stream_pump(s);
}

static void arm_retry(struct sse_stream *s, uint64_t ms)
{
    if (!s->retry)
        s->retry = http_timer_start(s->thread, ms, false, retry_fire, s);
}

static void on_drained(struct http_exchange *ex, void *arg)
{
    struct sse_stream *s = arg;
    http_stream_on_drain(ex, NULL, NULL);
    s->blocked = false;
    stream_pump(s);
}

/* The server drains (SIGTERM, reload): end the stream so the drain can
 * finish; EventSource clients reconnect with Last-Event-ID elsewhere. */
static bool stream_end_if_draining(struct sse_stream *s)
{
    if (!http_server_draining(http_thread_server(s->thread)))
        return false;
    stream_unlink(s);
    http_timer_stop(s->ping);
    http_timer_stop(s->retry);
    s->ping = s->retry = NULL;
    s->ended = true;
    http_stream_on_drain(s->ex, NULL, NULL);
    http_stream_end(s->ex);
    return true;
}

/* Send what the catalog has after last_seq, as far as the socket takes it. */
static void stream_pump(struct sse_stream *s)
{
    if (s->ended || s->blocked || http_ex_closed(s->ex) || stream_end_if_draining(s))
        return;
    struct catalog *cat = http_thread_catalog(s->thread);
    if (!cat)
        return;
    for (int b = 0; b < SSE_BATCHES; b++) {
        struct dr_event *ev = NULL;
        size_t n = 0;
        int rc = catalog_events_since(cat, s->user, s->last_seq, SSE_BATCH, &ev, &n);
        if (rc < 0) {
            arm_retry(s, SSE_RETRY_MS);
            return;
        }
        for (size_t i = 0; i < n; i++) {
            size_t len;
            char *frame = sse_render(&ev[i], &len);
            int wrc = http_stream_write(s->ex, frame, len);
            free(frame);
            if (wrc < 0) {
                catalog_events_free(ev, n);
                if (wrc == -EAGAIN) {
                    s->blocked = true; /* resumes from last_seq in on_drained() */
                    http_stream_on_drain(s->ex, on_drained, s);
                }
                return;
            }
            s->last_seq = ev[i].seq;
        }
        catalog_events_free(ev, n);
        if (n < SSE_BATCH)
            return;
    }
    arm_retry(s, 1); /* more to send: yield to other connections first */
}

static void ping_fire(void *arg)
{
    struct sse_stream *s = arg;
    if (s->ended || http_ex_closed(s->ex) || stream_end_if_draining(s))
        return;
    static const char ping[] = ": ping\n\n";
    (void)http_stream_write(s->ex, ping, sizeof ping - 1); /* backed up is alive too */
    stream_pump(s);
}

static void wake_thread(struct http_thread *t, void *arg)
{
    (void)t;
    (void)arg;
    struct sse_stream *next;
    for (struct sse_stream *s = tl_streams; s; s = next) {
        next = s->next;
        stream_pump(s);
    }
}

static void events_hook(struct http_server *srv, uint64_t seq)
{
    (void)seq;
    if (__atomic_load_n(&n_streams, __ATOMIC_RELAXED) > 0)
        http_server_post_all(srv, wake_thread, NULL);
}

/* A non-negative decimal seq (<= 18 digits), surrounding blanks allowed. */
static bool parse_seq(const char *v, int64_t *out)
{
    while (*v == ' ' || *v == '\t')
        v++;
    int64_t x = 0;
    int digits = 0;
    while (*v >= '0' && *v <= '9') {
        if (++digits > 18)
            return false;
        x = x * 10 + (*v - '0');
        v++;
    }
    while (*v == ' ' || *v == '\t')
        v++;
    if (digits == 0 || *v != '\0')
        return false;
    *out = x;
    return true;
}

static void events_on_head(struct http_exchange *ex)
{
    struct http_thread *t = http_ex_thread(ex);
    struct catalog *cat = http_thread_catalog(t);
    if (!cat) {
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "the catalog cannot be opened");
        return;
    }
    int64_t after = -1;
    const char *from = http_header(ex, "Last-Event-ID");
    const char *what = "Last-Event-ID";
    if (!from) {
        from = http_query_param(ex, "after");
        what = "after";
        const char *q = http_req(ex)->query;
        if (!from && q && (strncmp(q, "after=", 6) == 0 || strstr(q, "&after=")))
            from = ""; /* present but not decodable */
    }
    if (from && !parse_seq(from, &after)) {
        http_respond_problem(ex, 400, "%s must be an event id (a non-negative integer)", what);
        return;
    }
    if (after < 0) {
        int rc = catalog_events_last_seq(cat, &after);
        if (rc < 0) {
            http_add_header(ex, "Retry-After", "1");
            http_respond_problem(ex, 503, "cannot read the event log: %s", strerror(-rc));
            return;
        }
    }
    if (tl_count >= API_EVENTS_MAX_STREAMS) {
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "too many event streams");
        return;
    }
    struct quota_hold hold = QUOTA_HOLD_INIT;
    if (quota_stream_take(ex, &hold) < 0)
        return; /* 429: the user's own streams are at quotas.max_event_streams */

    struct sse_stream *s = xcalloc(1, sizeof *s);
    s->hold = hold;
    s->ex = ex;
    s->thread = t;
    s->gauges = http_ex_gauges(ex);
    s->user = xstrdup(http_user(ex));
    s->last_seq = after;
    http_set_data(ex, s);
    stream_link(s);

    http_add_header(ex, "Cache-Control", "no-cache");
    http_add_header(ex, "X-Accel-Buffering", "no");
    http_add_header(ex, "X-Content-Type-Options", "nosniff");
    http_stream_start(ex, 200, "text/event-stream");
    char hello[64];
    int n = snprintf(hello, sizeof hello, "retry: %d\n: connected\n\n", SSE_RECONNECT_MS);
    (void)http_stream_write(ex, hello, (size_t)n);
    log_debug("events: stream of %s opened after seq %lld", s->user, (long long)after);
    s->ping = http_timer_start(t, API_EVENTS_PING_MS, true, ping_fire, s);
    stream_pump(s);
}

static const struct http_route_ops events_ops = {
    .route_class = "events",
    .on_head = events_on_head,
    .on_abort = stream_free,
    .on_done = stream_free,
};

void api_events_register_routes(void)
{
    router_add("GET", "/v1/events", true, &events_ops);
    router_add_event_hook(events_hook);
}

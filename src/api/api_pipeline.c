/* api_pipeline.c - the pipeline view for admins (issue 20, docs/API.md):
 *
 *   GET /v1/admin/pipeline          one snapshot (pipeview.h), JSON
 *   GET /v1/admin/pipeline/stream   Server-Sent Events: `event: pipeline`
 *                                   with a snapshot every second
 *
 * Non-admins get 403 problem+json. The snapshot is computed only when
 * asked: by a GET, or by a stream's 1 s timer while the stream is open;
 * with nobody watching nothing here runs (the supervisor's history points
 * are taken on its existing tick, metrics.h). All streams share one
 * rendering per tick (pipeview_render's cache).
 *
 * Back-pressure: a snapshot replaces the previous one, so a stream whose
 * output is backed up (http_stream_write -EAGAIN, over 256 KiB unsent)
 * skips ticks instead of queueing them: a slow reader holds a bounded
 * amount of memory. Limits: PIPELINE_MAX_STREAMS per loop thread (503),
 * and the user's quotas.max_event_streams (429), as GET /v1/events.
 * Drain: the next tick ends the stream.
 *
 * Threads: a stream lives on its exchange's loop thread; the per-thread
 * count is thread-local. Ownership: struct pv_stream is the exchange's
 * data from on_head until on_done/on_abort frees it.
 */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_req.h"
#include "dripd/http.h"
#include "dripd/log.h"
#include "dripd/router.h"
#include "dripd/util.h"
#include "dripd/worker.h"
#include "pipeview.h"
#include "quota.h"

#define PIPELINE_TICK_MS 1000
#define PIPELINE_MAX_STREAMS 64
#define PIPELINE_RECONNECT_MS 2000

struct pv_stream {
    struct http_exchange *ex;
    struct http_timer *tick;
    struct quota_hold hold;
    bool ended;
};

static _Thread_local int tl_streams;

static char *render(struct http_exchange *ex, size_t *len)
{
    const struct dr_worker_ctx *ctx = http_worker_ctx(ex);
    if (ctx == NULL || ctx->metrics == NULL)
        return NULL;
    return pipeview_render(ctx->metrics, http_cfg(ex), quota_files_in_flight(), len);
}

static void snapshot_on_head(struct http_exchange *ex)
{
    if (api_require_admin(ex) < 0)
        return;
    size_t len = 0;
    char *text = render(ex, &len);
    if (text == NULL) {
        http_respond_problem(ex, 503, "the pipeline's counters are not available");
        return;
    }
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond(ex, 200, "application/json", text, len);
    free(text);
}

static void stream_free(struct http_exchange *ex)
{
    struct pv_stream *s = http_get_data(ex);
    if (s == NULL)
        return;
    http_set_data(ex, NULL);
    http_timer_stop(s->tick);
    quota_release(&s->hold, 0, 0);
    tl_streams--;
    free(s);
}

/* One snapshot as an SSE event; false when the stream has ended. */
static bool send_snapshot(struct pv_stream *s)
{
    if (s->ended || http_ex_closed(s->ex))
        return false;
    if (http_server_draining(http_thread_server(http_ex_thread(s->ex)))) {
        s->ended = true;
        http_timer_stop(s->tick);
        s->tick = NULL;
        http_stream_end(s->ex);
        return false;
    }
    size_t len = 0;
    char *text = render(s->ex, &len);
    if (text == NULL)
        return true;
    char *frame = xasprintf("event: pipeline\ndata: %s\n\n", text);
    free(text);
    (void)http_stream_write(s->ex, frame, strlen(frame)); /* -EAGAIN: this tick is skipped */
    free(frame);
    return true;
}

static void tick_fire(void *arg)
{
    send_snapshot(arg);
}

static void stream_on_head(struct http_exchange *ex)
{
    if (api_require_admin(ex) < 0)
        return;
    if (tl_streams >= PIPELINE_MAX_STREAMS) {
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "too many pipeline streams");
        return;
    }
    struct quota_hold hold = QUOTA_HOLD_INIT;
    if (quota_stream_take(ex, &hold) < 0)
        return; /* 429 */
    struct pv_stream *s = xcalloc(1, sizeof *s);
    s->ex = ex;
    s->hold = hold;
    tl_streams++;
    http_set_data(ex, s);
    http_add_header(ex, "Cache-Control", "no-cache");
    http_add_header(ex, "X-Accel-Buffering", "no");
    http_add_header(ex, "X-Content-Type-Options", "nosniff");
    http_stream_start(ex, 200, "text/event-stream");
    char hello[64];
    int n = snprintf(hello, sizeof hello, "retry: %d\n: connected\n\n", PIPELINE_RECONNECT_MS);
    (void)http_stream_write(ex, hello, (size_t)n);
    if (send_snapshot(s))
        s->tick = http_timer_start(http_ex_thread(ex), PIPELINE_TICK_MS, true, tick_fire, s);
}

static const struct http_route_ops snapshot_ops = {.route_class = "jobs",
                                                   .on_head = snapshot_on_head};
static const struct http_route_ops stream_ops = {
    .route_class = "events",
    .on_head = stream_on_head,
    .on_abort = stream_free,
    .on_done = stream_free,
};

void api_pipeline_register_routes(void)
{
    router_add("GET", "/v1/admin/pipeline", true, &snapshot_ops);
    router_add("GET", "/v1/admin/pipeline/stream", true, &stream_ops);
}

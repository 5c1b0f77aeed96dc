/* api_metrics.c - GET /metrics: the node-wide counters (metrics.h) in the
 * Prometheus text format, no auth (bind the listener or firewall it if the
 * numbers are sensitive). Renders the shared counters on the loop thread:
 * a fixed-size struct, so a bounded amount of work per scrape. */
#include "routes.h"

#include <stdlib.h>

#include "dripd/http.h"
#include "dripd/metrics.h"
#include "dripd/router.h"
#include "dripd/worker.h"

static void metrics_on_head(struct http_exchange *ex)
{
    const struct dr_worker_ctx *ctx = http_worker_ctx(ex);
    char *text = NULL;
    size_t len = 0;
    if (ctx == NULL || ctx->metrics == NULL || metrics_render(ctx->metrics, &text, &len) < 0) {
        http_respond_problem(ex, 503, "metrics are not available");
        return;
    }
    http_add_header(ex, "Cache-Control", "no-store");
    http_respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static const struct http_route_ops metrics_ops = {.route_class = "metrics",
                                                  .on_head = metrics_on_head};

void api_metrics_register_routes(void)
{
    router_add("GET", "/metrics", false, &metrics_ops);
}

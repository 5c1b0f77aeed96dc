/* api_metrics.c - GET /metrics: the node-wide counters (metrics.h) in the
 * Prometheus text format, no auth (bind the listener or firewall it if the
 * numbers are sensitive). Renders the shared counters on the loop thread:
 * a fixed-size struct, so a bounded amount of work per scrape. The
 * headroom gauges (free disk of data_dir by statvfs(2), and the limits the
 * config sets: health.min_free_disk, pipeline.queue_limit) are added here,
 * where the config is, so alert rules can compare against them
 * (contrib/prometheus/dripd.rules.yml). */
#include "routes.h"

#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "dripd/config.h"

#include "dripd/http.h"
#include "dripd/metrics.h"
#include "dripd/router.h"
#include "dripd/util.h"
#include "dripd/worker.h"

/* The gauges that need the config or a syscall; appended to the render. */
static char *headroom_text(const struct dr_config *cfg)
{
    struct statvfs vfs;
    unsigned long long avail = 0, size = 0;
    if (statvfs(cfg->data_dir, &vfs) == 0) {
        avail = (unsigned long long)vfs.f_bavail * vfs.f_frsize;
        size = (unsigned long long)vfs.f_blocks * vfs.f_frsize;
    }
    return xasprintf(
        "# HELP dripd_disk_free_bytes Bytes free for dripd on data_dir's filesystem.\n"
        "# TYPE dripd_disk_free_bytes gauge\ndripd_disk_free_bytes %llu\n"
        "# HELP dripd_disk_size_bytes Size of data_dir's filesystem.\n"
        "# TYPE dripd_disk_size_bytes gauge\ndripd_disk_size_bytes %llu\n"
        "# HELP dripd_disk_min_free_bytes health.min_free_disk: below it uploads get 507.\n"
        "# TYPE dripd_disk_min_free_bytes gauge\ndripd_disk_min_free_bytes %llu\n"
        "# HELP dripd_jobs_queue_limit pipeline.queue_limit: at it uploads get 503.\n"
        "# TYPE dripd_jobs_queue_limit gauge\ndripd_jobs_queue_limit %llu\n",
        avail, size, (unsigned long long)cfg->health.min_free_disk,
        (unsigned long long)cfg->pipeline.queue_limit);
}

static void metrics_on_head(struct http_exchange *ex)
{
    const struct dr_worker_ctx *ctx = http_worker_ctx(ex);
    char *text = NULL;
    size_t len = 0;
    if (ctx == NULL || ctx->metrics == NULL || metrics_render(ctx->metrics, &text, &len) < 0) {
        http_respond_problem(ex, 503, "metrics are not available");
        return;
    }
    char *extra = headroom_text(http_cfg(ex));
    size_t elen = strlen(extra);
    text = xrealloc(text, len + elen);
    memcpy(text + len, extra, elen);
    len += elen;
    free(extra);
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

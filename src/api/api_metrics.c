/* api_metrics.c - GET /metrics: the node-wide counters (metrics.h) in the
 * Prometheus text format, no auth (bind the listener or firewall it if the
 * numbers are sensitive). Renders the shared counters on the loop thread:
 * a fixed-size struct, so a bounded amount of work per scrape. The
 * headroom gauges (free disk of data_dir by statvfs(2), and the limits the
 * config sets: health.min_free_disk, pipeline.queue_limit) are added here,
 * where the config is, so alert rules can compare against them
 * (contrib/prometheus/dripd.rules.yml); and the SQLite catalog writer's
 * statistics (catalog_writer_stats), which live with its lock. */
#include "routes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "dripd/catalog.h"
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

/* The catalog writer's statistics (catalog_writer_stats): they live next
 * to the SQLite write lock, in the catalog's shared memory, not in the
 * metrics block. Fixed size: 4 kinds, 20 samples. */
static char *writer_text(void)
{
    struct dr_writer_stats st[DR_WRITER_KINDS];
    catalog_writer_stats(st);
    char buf[4096];
    size_t n = 0;
#define PUT(...) (n += (size_t)snprintf(buf + n, n < sizeof buf ? sizeof buf - n : 0, __VA_ARGS__))
    PUT("# HELP dripd_catalog_writer_transactions_total Write transactions of the SQLite "
        "catalog, by kind.\n# TYPE dripd_catalog_writer_transactions_total counter\n");
    for (int k = 0; k < DR_WRITER_KINDS; k++)
        PUT("dripd_catalog_writer_transactions_total{kind=\"%s\"} %llu\n", dr_writer_kind_names[k],
            (unsigned long long)st[k].transactions);
    PUT("# HELP dripd_catalog_writer_seconds_total Time SQLite catalog writers spent waiting "
        "for the one write lock, holding it, and syncing and checkpointing the WAL after "
        "it, by kind.\n"
        "# TYPE dripd_catalog_writer_seconds_total counter\n");
    for (int k = 0; k < DR_WRITER_KINDS; k++) {
        const char *kind = dr_writer_kind_names[k];
        PUT("dripd_catalog_writer_seconds_total{kind=\"%s\",phase=\"wait\"} %.6f\n"
            "dripd_catalog_writer_seconds_total{kind=\"%s\",phase=\"held\"} %.6f\n"
            "dripd_catalog_writer_seconds_total{kind=\"%s\",phase=\"sync\"} %.6f\n"
            "dripd_catalog_writer_seconds_total{kind=\"%s\",phase=\"checkpoint\"} %.6f\n",
            kind, (double)st[k].wait_ns / 1e9, kind, (double)st[k].held_ns / 1e9, kind,
            (double)st[k].sync_ns / 1e9, kind, (double)st[k].ckpt_ns / 1e9);
    }
#undef PUT
    return n < sizeof buf ? xstrdup(buf) : xstrdup(""); /* cannot overflow: ~1.7 KiB */
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
    char *extras[] = {headroom_text(http_cfg(ex)), writer_text()};
    for (size_t i = 0; i < sizeof extras / sizeof extras[0]; i++) {
        size_t elen = strlen(extras[i]);
        text = xrealloc(text, len + elen);
        memcpy(text + len, extras[i], elen);
        len += elen;
        free(extras[i]);
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

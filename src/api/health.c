/* health.c - GET /healthz and GET /readyz (routes.h). No authentication.
 *
 * /healthz answers 200 whenever the loop that serves it runs: that is
 * liveness. /readyz answers 200 {"ready":true,...} only when this node can
 * take an upload now: not draining, the catalog opens and its file is
 * writable (PostgreSQL: its server answered the last ping,
 * dripd_catalog_up), the durable queue is below pipeline.queue_limit, and the
 * spool disk has at least health.min_free_disk free; otherwise 503 with
 * the failed checks listed. Both run on the loop thread and only do cheap
 * local checks (access(2), statvfs(2), a shared counter).
 */
#include "routes.h"

#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <jansson.h>

#include "dripd/config.h"
#include "dripd/http.h"
#include "ingest.h"
#include "dripd/metrics.h"
#include "dripd/router.h"
#include "dripd/util.h"

static void healthz_head(struct http_exchange *ex)
{
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) != 0)
        strcpy(host, "unknown");
    http_respond_json(ex, 200,
                      json_pack("{s:s, s:s, s:i, s:s}", "status", "ok", "role", "http", "pid",
                                (int)getpid(), "host", host));
}

static void readyz_head(struct http_exchange *ex)
{
    const struct dr_config *cfg = http_cfg(ex);
    json_t *problems = json_array();
    if (http_server_draining(http_thread_server(http_ex_thread(ex))))
        json_array_append_new(problems, json_string("draining"));
    if (http_thread_catalog(http_ex_thread(ex)) == NULL) {
        json_array_append_new(problems, json_string("catalog cannot be opened"));
    } else if (cfg->catalog.backend == DR_CATALOG_POSTGRES) {
        /* The pipeline's catalog-watch thread pings the server. */
        if (__atomic_load_n(&http_ex_metrics(ex)->catalog_up, __ATOMIC_RELAXED) == 0)
            json_array_append_new(problems, json_string("catalog (postgres) unreachable"));
    } else {
        char *db = xasprintf("%s/catalog.db", cfg->data_dir);
        if (access(db, W_OK) != 0)
            json_array_append_new(problems, json_string("catalog is not writable"));
        free(db);
    }
    int64_t depth = __atomic_load_n(&http_ex_metrics(ex)->jobs_queue_depth, __ATOMIC_RELAXED);
    if (ingest_queue_full(ex))
        json_array_append_new(problems, json_string("job queue is full"));
    struct statvfs vfs;
    uint64_t free_bytes = 0;
    if (statvfs(cfg->data_dir, &vfs) == 0) {
        free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        if (free_bytes < cfg->health.min_free_disk)
            json_array_append_new(problems, json_string("low free disk space in data_dir"));
    }
    /* The pipeline's store probe (store_probe.c) publishes reachability. */
    int64_t up = __atomic_load_n(&http_ex_metrics(ex)->store_up, __ATOMIC_RELAXED);
    if (up == 0) {
        int64_t e = __atomic_load_n(&http_ex_metrics(ex)->store_errno, __ATOMIC_RELAXED);
        char *msg =
            xasprintf("store (%s) unreachable: %s",
                      cfg->storage.backend == DR_STORE_S3 ? "s3" : "local", strerror((int)e));
        json_array_append_new(problems, json_string(msg));
        free(msg);
    }
    bool ready = json_array_size(problems) == 0;
    json_t *o = json_pack("{s:b, s:I, s:I, s:I, s:s, s:o}", "ready", ready, "queue_depth",
                          (json_int_t)(depth < 0 ? 0 : depth), "queue_limit",
                          (json_int_t)cfg->pipeline.queue_limit, "free_disk",
                          (json_int_t)free_bytes, "store",
                          up == 1   ? "reachable"
                          : up == 0 ? "unreachable"
                                    : "unknown",
                          "problems", problems);
    if (!ready)
        http_add_header(ex, "Retry-After", "5");
    http_respond_json(ex, ready ? 200 : 503, o);
}

static const struct http_route_ops healthz_ops = {.route_class = "health", .on_head = healthz_head};
static const struct http_route_ops readyz_ops = {.route_class = "health", .on_head = readyz_head};

void health_register_routes(void)
{
    router_add("GET", "/healthz", false, &healthz_ops);
    router_add("GET", "/readyz", false, &readyz_ops);
}

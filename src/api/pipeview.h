/* pipeview.h - the pipeline view's snapshot (issue 20): what GET
 * /v1/admin/pipeline answers and its stream sends (docs/API.md), built
 * from the shared counters and their history ring (metrics.h).
 *
 * Computed on demand only: nothing here runs while nobody asks.
 * pipeview_render() keeps the last rendering for PIPEVIEW_REUSE_MS, so any
 * number of viewers cost about one snapshot per second. Threads: any; the
 * cache is one per process, under a mutex.
 */
#ifndef DRIPD_PIPEVIEW_H
#define DRIPD_PIPEVIEW_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

struct dr_config;
struct dr_metrics;

#define PIPEVIEW_REUSE_MS 500
/* Rates are over at least this long (the newest history point that old). */
#define PIPEVIEW_RATE_MIN_MS 3000
/* p50/p99 are over the last minute. */
#define PIPEVIEW_LATENCY_MS 60000

/* The snapshot as a JSON object (docs/API.md, GET /v1/admin/pipeline).
 * uploads_in_progress: this node's uploads receiving bodies now. */
json_t *pipeview_snapshot(const struct dr_metrics *m, const struct dr_config *cfg,
                          int64_t uploads_in_progress, uint64_t wall_ms);
/* The snapshot as compact JSON text (a copy: the caller frees it), the
 * same rendering for PIPEVIEW_REUSE_MS. NULL if it cannot be made. */
char *pipeview_render(const struct dr_metrics *m, const struct dr_config *cfg,
                      int64_t uploads_in_progress, size_t *len);

#endif

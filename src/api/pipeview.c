/* pipeview.c - the pipeline view's snapshot (see pipeview.h).
 *
 * What: for the upload and download pipelines, each stage's queue,
 * in-flight jobs, threads, jobs/s, p50/p99, utilisation and a 10-minute
 * history; the front end's intake; retries, failures and the last errors;
 * worker restarts; and which stage is the bottleneck.
 *
 * Where the numbers come from: the live counters (metrics.h) and the
 * history ring the supervisor fills every DR_HISTORY_STEP_MS. Rates are
 * the difference between now and the newest history point at least
 * PIPEVIEW_RATE_MIN_MS old; p50/p99 interpolate the duration histogram's
 * difference over PIPEVIEW_LATENCY_MS (as Prometheus's histogram_quantile).
 *
 * The bottleneck: of the stages holding work (queued or in flight), the
 * one whose threads are busiest (handler time / wall time / threads);
 * ties go to the longer queue, then to the later stage. Back-pressure
 * fills the inboxes upstream of a slow stage too, but those stages' threads
 * idle, so the busiest stage with work is the one behind. None when no
 * stage holds work or none is at least half busy with an empty inbox.
 *
 * Threads: any; the render cache is one per process, under its mutex
 * (a leaf). Allocation: the ring copy (about 300 KiB) lives only during a
 * snapshot.
 */
#include "pipeview.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/config.h"
#include "dripd/metrics.h"
#include "dripd/util.h"

#define N_VIEW 2 /* pipelines shown: upload, download (not scrub) */

static int stage_threads(const struct dr_config *cfg, int pl, int s)
{
    const struct dr_stage_cfg *c = NULL;
    if (s == 0)
        return 1; /* the starter: one thread claims jobs */
    if (pl == DR_PL_UPLOAD)
        c = s == 1   ? &cfg->pipeline.upload.process
            : s == 2 ? &cfg->pipeline.upload.encrypt
            : s == 3 ? &cfg->pipeline.upload.store
                     : NULL;
    else
        c = s == 1   ? &cfg->pipeline.download.fetch
            : s == 2 ? &cfg->pipeline.download.decrypt
                     : NULL;
    if (c == NULL)
        return DR_NOTIFY_STAGE_THREADS;
    return c->concurrency > 0 ? c->concurrency : 1;
}

/* The newest point at least min_age_ms older than now; else the oldest; NULL if none. */
static const struct dr_history_point *ref_point(const struct dr_history_point *pts, size_t n,
                                                uint64_t now, uint64_t min_age_ms)
{
    for (size_t i = n; i-- > 0;)
        if (pts[i].t_ms + min_age_ms <= now)
            return &pts[i];
    return n ? &pts[0] : NULL;
}

static double per_s(uint64_t now_v, uint64_t then_v, uint64_t dt_ms)
{
    if (dt_ms == 0 || now_v < then_v)
        return 0;
    return (double)(now_v - then_v) * 1000.0 / (double)dt_ms;
}

static json_t *round2(double v)
{
    return json_real((double)(int64_t)(v * 100.0 + 0.5) / 100.0);
}

static json_t *ms_or_null(double s)
{
    return s < 0 ? json_null() : round2(s * 1000.0);
}

struct stage_now {
    const struct dr_history_stage *now, *rate_ref, *lat_ref;
    double busy, jobs_per_s;
    int threads;
};

static json_t *stage_json(int pl, int s, const struct stage_now *st,
                          const struct dr_history_point *pts, size_t n,
                          const struct dr_history_point *live)
{
    const struct dr_history_stage *h = st->now;
    uint64_t b[DR_HIST_BUCKETS];
    for (int i = 0; i < DR_HIST_BUCKETS; i++)
        b[i] = st->lat_ref && h->buckets[i] >= st->lat_ref->buckets[i]
                   ? h->buckets[i] - st->lat_ref->buckets[i]
                   : h->buckets[i];
    json_t *hq = json_array(), *hr = json_array();
    for (size_t i = 0; i <= n; i++) {
        const struct dr_history_point *p = i < n ? &pts[i] : live;
        json_array_append_new(hq, json_integer((json_int_t)p->stages[pl][s].queued));
        if (i == 0) {
            json_array_append_new(hr, json_real(0));
            continue;
        }
        const struct dr_history_point *q = &pts[i - 1];
        json_array_append_new(hr, round2(per_s(p->stages[pl][s].processed,
                                               q->stages[pl][s].processed, p->t_ms - q->t_ms)));
    }
    return json_pack(
        "{s:s, s:I, s:I, s:i, s:o, s:o, s:o, s:o, s:I, s:I, s:b, s:{s:o, s:o}}", "name",
        metrics_stage_name(pl, s), "queued", (json_int_t)h->queued, "in_flight",
        (json_int_t)h->in_flight, "threads", st->threads, "jobs_per_s", round2(st->jobs_per_s),
        "busy", round2(st->busy), "p50_ms", ms_or_null(metrics_quantile(b, 0.5)), "p99_ms",
        ms_or_null(metrics_quantile(b, 0.99)), "processed", (json_int_t)h->processed, "failed",
        (json_int_t)h->failed, "bottleneck", 0, "history", "queued", hq, "jobs_per_s", hr);
}

json_t *pipeview_snapshot(const struct dr_metrics *m, const struct dr_config *cfg,
                          int64_t uploads_in_progress, uint64_t wall_ms)
{
    struct dr_history_point *pts = xmalloc(sizeof *pts * (DR_HISTORY_POINTS + 1));
    size_t n = metrics_history_read(m, pts, DR_HISTORY_POINTS);
    struct dr_history_point *live = &pts[DR_HISTORY_POINTS];
    metrics_history_now(m, wall_ms, live);
    /* a point from a clock step ahead of now would make negative ages */
    while (n > 0 && pts[n - 1].t_ms > wall_ms)
        n--;
    const struct dr_history_point *rref = ref_point(pts, n, wall_ms, PIPEVIEW_RATE_MIN_MS);
    const struct dr_history_point *lref = ref_point(pts, n, wall_ms, PIPEVIEW_LATENCY_MS);
    uint64_t rdt = rref ? wall_ms - rref->t_ms : 0;

    json_t *pipes = json_array();
    json_t *stage_objs[N_VIEW][DR_STAGE_SLOTS] = {{0}};
    int best_pl = -1, best_s = -1;
    double best_busy = -1;
    uint64_t best_q = 0;
    for (int pl = 0; pl < N_VIEW; pl++) {
        json_t *stages = json_array();
        for (int s = 0; s < DR_STAGE_SLOTS && metrics_stage_name(pl, s); s++) {
            struct stage_now st = {.now = &live->stages[pl][s],
                                   .rate_ref = rref ? &rref->stages[pl][s] : NULL,
                                   .lat_ref = lref ? &lref->stages[pl][s] : NULL,
                                   .threads = stage_threads(cfg, pl, s)};
            if (st.rate_ref) {
                st.jobs_per_s = per_s(st.now->processed, st.rate_ref->processed, rdt);
                st.busy = per_s(st.now->busy_us, st.rate_ref->busy_us, rdt) / 1e6 / st.threads;
                if (st.busy > 1)
                    st.busy = 1;
            }
            json_t *o = stage_json(pl, s, &st, pts, n, live);
            stage_objs[pl][s] = o;
            json_array_append_new(stages, o);
            uint64_t q = st.now->queued;
            bool has_work = q > 0 || st.now->in_flight > 0;
            if (has_work && (q > 0 || st.busy >= 0.5) &&
                (st.busy > best_busy || (st.busy == best_busy && q >= best_q))) {
                best_busy = st.busy;
                best_q = q;
                best_pl = pl;
                best_s = s;
            }
        }
        json_array_append_new(
            pipes, json_pack("{s:s, s:o}", "name", metrics_pipeline_name(pl), "stages", stages));
    }
    json_t *bottleneck = json_null();
    if (best_pl >= 0) {
        json_object_set_new(stage_objs[best_pl][best_s], "bottleneck", json_true());
        const struct dr_history_stage *h = &live->stages[best_pl][best_s];
        char why[160];
        snprintf(why, sizeof why, "%llu queued, %llu of %d threads working, busy %.0f%%",
                 (unsigned long long)h->queued, (unsigned long long)h->in_flight,
                 stage_threads(cfg, best_pl, best_s), best_busy * 100);
        bottleneck = json_pack("{s:s, s:s, s:s}", "pipeline", metrics_pipeline_name(best_pl),
                               "stage", metrics_stage_name(best_pl, best_s), "why", why);
    }

    json_t *times = json_array();
    for (size_t i = 0; i <= n; i++)
        json_array_append_new(times,
                              json_integer((json_int_t)((i < n ? pts[i].t_ms : wall_ms) / 1000)));

    json_t *errors = json_array();
    struct dr_error_note notes[DR_ERROR_NOTES];
    size_t ne = metrics_errors_read(m, notes, DR_ERROR_NOTES);
    for (size_t i = 0; i < ne; i++) {
        char t[40];
        dr_fmt_time((int64_t)notes[i].t_ms, t, sizeof t);
        const char *stage = metrics_stage_name((int)notes[i].pipeline, (int)notes[i].stage);
        const char *pipe = metrics_pipeline_name((int)notes[i].pipeline);
        json_array_append_new(
            errors, json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:s}", "time", t, "job_id",
                              metrics_error_job(&notes[i]), "pipeline", pipe ? pipe : "?", "stage",
                              stage ? stage : "?", "attempt", (json_int_t)notes[i].attempt, "final",
                              notes[i].final != 0, "error", metrics_error_text(&notes[i])));
    }

    char now_s[40];
    dr_fmt_time((int64_t)wall_ms, now_s, sizeof now_s);
    const struct dr_history_point *r = rref;
    json_t *o = json_pack(
        "{s:s, s:i, s:i, s:o, s:{s:o, s:o, s:o, s:I, s:I}, s:{s:I, s:I}, s:o, s:o, "
        "s:{s:I, s:I, s:I, s:o, s:o, s:o}, s:{s:I, s:I}, s:o}",
        "time", now_s, "history_step_s", DR_HISTORY_STEP_MS / 1000, "rate_window_s",
        (int)(rdt / 1000), "history_t", times, "front", "intake_per_s",
        round2(r ? per_s(live->uploads_accepted, r->uploads_accepted, rdt) : 0), "requests_per_s",
        round2(r ? per_s(live->http_requests, r->http_requests, rdt) : 0), "received_bytes_per_s",
        round2(r ? per_s(live->http_bytes_received, r->http_bytes_received, rdt) : 0),
        "open_connections", (json_int_t)live->open_connections, "uploads_in_progress",
        (json_int_t)(uploads_in_progress < 0 ? 0 : uploads_in_progress), "queue", "depth",
        (json_int_t)live->jobs_queue_depth, "limit", (json_int_t)cfg->pipeline.queue_limit,
        "pipelines", pipes, "bottleneck", bottleneck, "jobs", "completed",
        (json_int_t)live->jobs_completed, "failed", (json_int_t)live->jobs_failed, "retries",
        (json_int_t)live->retries, "completed_per_s",
        round2(r ? per_s(live->jobs_completed, r->jobs_completed, rdt) : 0), "failed_per_s",
        round2(r ? per_s(live->jobs_failed, r->jobs_failed, rdt) : 0), "retries_per_s",
        round2(r ? per_s(live->retries, r->retries, rdt) : 0), "restarts", "http",
        (json_int_t)__atomic_load_n(&m->restarts[0], __ATOMIC_RELAXED), "pipeline",
        (json_int_t)__atomic_load_n(&m->restarts[1], __ATOMIC_RELAXED), "errors", errors);
    free(pts);
    return o;
}

/* The last rendering, shared by every thread of the process (a global, so
 * it stays reachable: no leak at exit). */
static struct {
    pthread_mutex_t mu;
    char *text;
    size_t len;
    int64_t at;
} cache = {.mu = PTHREAD_MUTEX_INITIALIZER};

char *pipeview_render(const struct dr_metrics *m, const struct dr_config *cfg,
                      int64_t uploads_in_progress, size_t *len)
{
    pthread_mutex_lock(&cache.mu);
    int64_t now = dr_mono_ms();
    if (cache.text == NULL || now - cache.at >= PIPEVIEW_REUSE_MS) {
        json_t *o = pipeview_snapshot(m, cfg, uploads_in_progress, (uint64_t)dr_now_ms());
        char *t = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (t == NULL) {
            pthread_mutex_unlock(&cache.mu);
            return NULL;
        }
        free(cache.text);
        cache.text = t;
        cache.len = strlen(t);
        cache.at = now;
    }
    char *copy = xmalloc(cache.len + 1);
    memcpy(copy, cache.text, cache.len + 1);
    *len = cache.len;
    pthread_mutex_unlock(&cache.mu);
    return copy;
}

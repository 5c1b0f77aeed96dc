/* metrics.c - shared-memory counters (see metrics.h) and their Prometheus
 * rendering. Writers: every thread of every dripd process, with relaxed
 * atomics. Reader: whoever renders /metrics (a snapshot, not atomic as a
 * whole, which Prometheus tolerates). */
#include "dripd/metrics.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "dripd/util.h"

static const double hist_bounds[DR_HIST_BUCKETS - 1] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 60};

static const int status_codes[DR_STATUS_SLOTS] = {200, 201, 202, 204, 206, 304, 400, 401,
                                                  403, 404, 405, 409, 412, 413, 415, 416,
                                                  460, 500, 503, 507, 408, 411, 431, 0};

struct dr_metrics *metrics_create_shared(void)
{
    void *p = mmap(NULL, sizeof(struct dr_metrics), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return NULL;
    memset(p, 0, sizeof(struct dr_metrics));
    ((struct dr_metrics *)p)->start_time_ms = (uint64_t)dr_now_ms();
    ((struct dr_metrics *)p)->store_up = -1;
    ((struct dr_metrics *)p)->catalog_up = -1;
    return p;
}

void metrics_destroy_shared(struct dr_metrics *m)
{
    if (m != NULL)
        munmap(m, sizeof *m);
}

void metrics_observe(struct dr_hist *h, uint64_t usec)
{
    double s = (double)usec / 1e6;
    int i = 0;
    while (i < DR_HIST_BUCKETS - 1 && s > hist_bounds[i])
        i++;
    metrics_add(&h->buckets[i], 1);
    metrics_add(&h->count, 1);
    metrics_add(&h->sum_us, usec);
}

int metrics_status_slot(int status)
{
    for (int i = 0; i < DR_STATUS_SLOTS - 1; i++)
        if (status_codes[i] == status)
            return i;
    return DR_STATUS_SLOTS - 1; /* "other" */
}

int metrics_slot_status(int slot)
{
    return status_codes[slot];
}

enum dr_route_class metrics_route_class(const char *name)
{
    static const char *names[DR_RC_COUNT] = {"upload", "tus",    "media",   "content", "jobs",
                                             "events", "health", "metrics", "web",     "other"};
    for (int i = 0; name && i < DR_RC_COUNT; i++)
        if (strcmp(names[i], name) == 0)
            return (enum dr_route_class)i;
    return DR_RC_OTHER;
}

static const char *const pipeline_names[DR_PL_COUNT] = {"upload", "download", "scrub"};
static const char *const stage_names[DR_PL_COUNT][DR_STAGE_SLOTS] = {
    {"starter", "process", "encrypt", "store", "notify"},
    {"starter", "fetch", "decrypt", "notify", NULL},
    {"starter", "verify", NULL, NULL, NULL},
};

static const char *const rc_names[DR_RC_COUNT] = {
    "upload", "tus", "media", "content", "jobs", "events", "health", "metrics", "web", "other"};
static const char *const sop_names[DR_SOP_COUNT] = {"put", "get", "delete", "exists"};

/* A bounded text builder: the struct is fixed-size, so the output is too. */
struct mbuf {
    char *p;
    size_t len, cap;
};

static void mb_printf(struct mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mb_printf(struct mbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        b->cap *= 2;
        b->p = xrealloc(b->p, b->cap);
    }
}

static uint64_t ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static int64_t lds(const int64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

struct dr_proc_gauges *metrics_proc(struct dr_metrics *m, unsigned slot)
{
    static struct dr_proc_gauges private_gauges;
    if (m == NULL || slot >= DR_PROC_SLOTS)
        return &private_gauges;
    return &m->procs[slot];
}

void metrics_proc_reset(struct dr_metrics *m, unsigned slot)
{
    if (m == NULL || slot >= DR_PROC_SLOTS)
        return;
    struct dr_proc_gauges *g = &m->procs[slot];
    __atomic_store_n(&g->http_connections_open, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g->writers_pending, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g->writes_done, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&g->event_streams, 0, __ATOMIC_RELAXED);
    for (int p = 0; p < DR_PL_COUNT; p++)
        for (int s = 0; s < DR_STAGE_SLOTS; s++) {
            __atomic_store_n(&g->stages[p][s].queued, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&g->stages[p][s].in_flight, 0, __ATOMIC_RELAXED);
        }
}

void metrics_writers(const struct dr_metrics *m, int64_t *pending, uint64_t *done)
{
    int64_t p = 0;
    uint64_t d = 0;
    for (unsigned i = 0; m != NULL && i < DR_PROC_SLOTS; i++) {
        d += __atomic_load_n(&m->procs[i].writes_done, __ATOMIC_RELAXED);
        p += __atomic_load_n(&m->procs[i].writers_pending, __ATOMIC_RELAXED);
    }
    *pending = p;
    *done = d;
}

int64_t metrics_event_streams(const struct dr_metrics *m)
{
    if (m == NULL)
        return 1;
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    int64_t n = 0;
    for (unsigned i = 0; i < DR_PROC_SLOTS; i++)
        n += __atomic_load_n(&m->procs[i].event_streams, __ATOMIC_RELAXED);
    return n;
}

/* The sum of one gauge over every process block (offset into the block). */
static int64_t proc_sum(const struct dr_metrics *m, size_t off)
{
    int64_t v = 0;
    for (int i = 0; i < DR_PROC_SLOTS; i++)
        v += __atomic_load_n((const int64_t *)((const char *)&m->procs[i] + off), __ATOMIC_RELAXED);
    return v;
}

static void head(struct mbuf *b, const char *name, const char *type, const char *help)
{
    mb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram series; labels is "" or `a="b",` (trailing comma). */
static void hist(struct mbuf *b, const char *name, const char *labels, const struct dr_hist *h)
{
    uint64_t cum = 0;
    for (int i = 0; i < DR_HIST_BUCKETS; i++) {
        cum += ld(&h->buckets[i]);
        if (i < DR_HIST_BUCKETS - 1)
            mb_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, hist_bounds[i],
                      (unsigned long long)cum);
        else
            mb_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cum);
    }
    /* Strip the trailing comma for the _sum/_count label sets. */
    char l[160];
    snprintf(l, sizeof l, "%s", labels);
    size_t n = strlen(l);
    if (n > 0 && l[n - 1] == ',')
        l[n - 1] = '\0';
    const char *open = l[0] ? "{" : "", *close = l[0] ? "}" : "";
    mb_printf(b, "%s_sum%s%s%s %.6f\n", name, open, l, close, (double)ld(&h->sum_us) / 1e6);
    mb_printf(b, "%s_count%s%s%s %llu\n", name, open, l, close, (unsigned long long)cum);
}

static void counter1(struct mbuf *b, const char *name, const char *help, uint64_t v)
{
    head(b, name, "counter", help);
    mb_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static void gauge1(struct mbuf *b, const char *name, const char *help, int64_t v)
{
    head(b, name, "gauge", help);
    mb_printf(b, "%s %lld\n", name, (long long)v);
}

int metrics_render(const struct dr_metrics *m, char **out, size_t *len)
{
    struct mbuf b = {.p = xmalloc(16384), .len = 0, .cap = 16384};
    char l[160];

    head(&b, "dripd_build_info", "gauge", "Build information.");
    mb_printf(&b, "dripd_build_info{version=\"%s\"} 1\n", DRIPD_VERSION);
    head(&b, "dripd_start_time_seconds", "gauge",
         "Start time of the supervisor, seconds since the epoch.");
    mb_printf(&b, "dripd_start_time_seconds %.3f\n", (double)m->start_time_ms / 1000);

    head(&b, "dripd_http_requests_total", "counter",
         "HTTP requests by route class and status code.");
    for (int r = 0; r < DR_RC_COUNT; r++)
        for (int s = 0; s < DR_STATUS_SLOTS; s++) {
            uint64_t v = ld(&m->http_requests[r][s]);
            if (v == 0)
                continue;
            int code = metrics_slot_status(s);
            if (code)
                mb_printf(&b, "dripd_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                          rc_names[r], code, (unsigned long long)v);
            else
                mb_printf(&b, "dripd_http_requests_total{route=\"%s\",status=\"other\"} %llu\n",
                          rc_names[r], (unsigned long long)v);
        }
    head(&b, "dripd_http_request_duration_seconds", "histogram",
         "HTTP request duration by route class.");
    for (int r = 0; r < DR_RC_COUNT; r++) {
        if (ld(&m->http_duration[r].count) == 0)
            continue;
        snprintf(l, sizeof l, "route=\"%s\",", rc_names[r]);
        hist(&b, "dripd_http_request_duration_seconds", l, &m->http_duration[r]);
    }
    counter1(&b, "dripd_http_received_bytes_total", "Request bytes received.",
             ld(&m->http_bytes_received));
    counter1(&b, "dripd_http_sent_bytes_total", "Response bytes sent.", ld(&m->http_bytes_sent));
    gauge1(&b, "dripd_http_open_connections", "Open client connections.",
           proc_sum(m, offsetof(struct dr_proc_gauges, http_connections_open)));
    counter1(&b, "dripd_http_refused_connections_total",
             "Connections refused over limits.max_connections.", ld(&m->http_connections_refused));

    static const char *const sf[] = {"queued", "in_flight"};
    for (int g = 0; g < 2; g++) {
        char name[64];
        snprintf(name, sizeof name, "dripd_stage_%s", sf[g]);
        head(&b, name, "gauge",
             g ? "Jobs being handled by a stage." : "Jobs waiting in a stage's inbox.");
        for (int p = 0; p < DR_PL_COUNT; p++)
            for (int s = 0; s < DR_STAGE_SLOTS; s++) {
                if (stage_names[p][s] == NULL)
                    continue;
                size_t off =
                    offsetof(struct dr_proc_gauges, stages) +
                    ((size_t)p * DR_STAGE_SLOTS + (size_t)s) * sizeof(struct dr_stage_gauges) +
                    (g ? offsetof(struct dr_stage_gauges, in_flight)
                       : offsetof(struct dr_stage_gauges, queued));
                mb_printf(&b, "%s{pipeline=\"%s\",stage=\"%s\"} %lld\n", name, pipeline_names[p],
                          stage_names[p][s], (long long)proc_sum(m, off));
            }
    }
    static const char *const cf[] = {"processed", "failed"};
    for (int c = 0; c < 2; c++) {
        char name[64];
        snprintf(name, sizeof name, "dripd_stage_%s_total", cf[c]);
        head(&b, name, "counter",
             c ? "Jobs a stage failed (each attempt)." : "Jobs a stage finished.");
        for (int p = 0; p < DR_PL_COUNT; p++)
            for (int s = 0; s < DR_STAGE_SLOTS; s++) {
                if (stage_names[p][s] == NULL)
                    continue;
                const struct dr_stage_metrics *sm = &m->stages[p][s];
                mb_printf(&b, "%s{pipeline=\"%s\",stage=\"%s\"} %llu\n", name, pipeline_names[p],
                          stage_names[p][s],
                          (unsigned long long)ld(c ? &sm->failed : &sm->processed));
            }
    }
    head(&b, "dripd_stage_busy_seconds_total", "counter", "Time stage handlers spent working.");
    for (int p = 0; p < DR_PL_COUNT; p++)
        for (int s = 0; s < DR_STAGE_SLOTS; s++)
            if (stage_names[p][s] != NULL)
                mb_printf(&b, "dripd_stage_busy_seconds_total{pipeline=\"%s\",stage=\"%s\"} %.6f\n",
                          pipeline_names[p], stage_names[p][s],
                          (double)ld(&m->stages[p][s].busy_us) / 1e6);
    head(&b, "dripd_stage_duration_seconds", "histogram",
         "Time one job spent in a stage's handler.");
    for (int p = 0; p < DR_PL_COUNT; p++)
        for (int s = 0; s < DR_STAGE_SLOTS; s++) {
            if (stage_names[p][s] == NULL)
                continue;
            snprintf(l, sizeof l, "pipeline=\"%s\",stage=\"%s\",", pipeline_names[p],
                     stage_names[p][s]);
            hist(&b, "dripd_stage_duration_seconds", l, &m->stages[p][s].duration);
        }

    gauge1(&b, "dripd_jobs_queue_depth", "Durable jobs not yet done or failed.",
           lds(&m->jobs_queue_depth));
    counter1(&b, "dripd_job_retries_total",
             "Job attempts that failed transiently and were retried.", ld(&m->jobs_retries));
    static const char *const jf[] = {"completed", "failed"};
    for (int c = 0; c < 2; c++) {
        char name[64];
        snprintf(name, sizeof name, "dripd_jobs_%s_total", jf[c]);
        head(&b, name, "counter", c ? "Jobs that failed for good." : "Jobs completed.");
        for (int p = 0; p < DR_PL_COUNT; p++)
            mb_printf(&b, "%s{pipeline=\"%s\"} %llu\n", name, pipeline_names[p],
                      (unsigned long long)ld(c ? &m->jobs_failed[p] : &m->jobs_completed[p]));
    }
    counter1(&b, "dripd_uploads_rejected_total",
             "Uploads refused with 503 because the queue was full.", ld(&m->uploads_rejected_full));
    counter1(&b, "dripd_uploads_waited_total",
             "Uploads that waited, body unread, for the queue to drain below its limit.",
             ld(&m->uploads_waited));
    counter1(
        &b, "dripd_ingest_rounds_total",
        "Group commit rounds of the intake: one sync of the spool and one catalog commit each.",
        ld(&m->ingest_rounds));
    counter1(&b, "dripd_ingest_round_requests_total",
             "Upload requests (PUT, multipart, tus finishes) made durable by those rounds.",
             ld(&m->ingest_round_requests));

    counter1(&b, "dripd_cache_hits_total", "Content requests served from the cache.",
             ld(&m->cache_hits));
    counter1(&b, "dripd_cache_misses_total", "Content requests that needed the download pipeline.",
             ld(&m->cache_misses));
    counter1(&b, "dripd_cache_fills_total",
             "Cache misses the download stages filled (no durable job).", ld(&m->cache_fills));
    counter1(&b, "dripd_cache_fill_failures_total",
             "Cache fills that failed for good (the GET got 502).", ld(&m->cache_fill_failures));
    counter1(&b, "dripd_cache_evictions_total", "Cache entries evicted (LRU or TTL).",
             ld(&m->cache_evictions));
    gauge1(&b, "dripd_cache_bytes", "Bytes held in the plaintext cache.", lds(&m->cache_bytes));

    head(&b, "dripd_store_request_duration_seconds", "histogram",
         "Storage backend request duration.");
    for (int o = 0; o < DR_SOP_COUNT; o++) {
        if (ld(&m->store_duration[o].count) == 0)
            continue;
        snprintf(l, sizeof l, "op=\"%s\",", sop_names[o]);
        hist(&b, "dripd_store_request_duration_seconds", l, &m->store_duration[o]);
    }
    head(&b, "dripd_store_errors_total", "counter", "Storage backend requests that failed.");
    for (int o = 0; o < DR_SOP_COUNT; o++)
        mb_printf(&b, "dripd_store_errors_total{op=\"%s\"} %llu\n", sop_names[o],
                  (unsigned long long)ld(&m->store_errors[o]));
    gauge1(&b, "dripd_store_up",
           "1 when the last probe reached the storage backend, 0 when not, -1 before the first.",
           lds(&m->store_up));
    gauge1(&b, "dripd_catalog_up",
           "1 when the catalog's PostgreSQL server answers, 0 when not, -1 for SQLite or "
           "before the first probe.",
           lds(&m->catalog_up));
    counter1(&b, "dripd_store_uploaded_bytes_total", "Bytes put to the store.",
             ld(&m->store_bytes_up));
    counter1(&b, "dripd_store_downloaded_bytes_total", "Bytes read from the store.",
             ld(&m->store_bytes_down));

    head(&b, "dripd_supervisor_restarts_total", "counter",
         "Worker restarts after a crash or hang.");
    mb_printf(&b, "dripd_supervisor_restarts_total{role=\"http\"} %llu\n",
              (unsigned long long)ld(&m->restarts[0]));
    mb_printf(&b, "dripd_supervisor_restarts_total{role=\"pipeline\"} %llu\n",
              (unsigned long long)ld(&m->restarts[1]));
    counter1(&b, "dripd_supervisor_reloads_total", "Successful configuration reloads.",
             ld(&m->reloads));
    counter1(&b, "dripd_webhook_deliveries_total", "Webhook deliveries acknowledged with 2xx.",
             ld(&m->webhook_deliveries));
    counter1(&b, "dripd_webhook_failures_total", "Webhook delivery attempts that failed.",
             ld(&m->webhook_failures));
    counter1(&b, "dripd_scrub_objects_total", "Objects verified by scrub.", ld(&m->scrub_objects));
    counter1(&b, "dripd_scrub_bytes_total", "Bytes read by scrub.", ld(&m->scrub_bytes));
    counter1(&b, "dripd_scrub_corrupt_total", "Objects scrub found corrupt.",
             ld(&m->scrub_corrupt));
    counter1(&b, "dripd_scrub_missing_total", "Objects scrub found missing.",
             ld(&m->scrub_missing));
    counter1(&b, "dripd_decode_runs_total", "dripd-decode helpers run by the process stage.",
             ld(&m->decode_runs));
    counter1(&b, "dripd_decode_failures_total",
             "dripd-decode helpers that crashed, were killed or gave no usable answer.",
             ld(&m->decode_failures));
    counter1(&b, "dripd_reprocess_media_total", "Media handled by reprocess runs.",
             ld(&m->reprocess_media));

    *out = b.p;
    *len = b.len;
    return 0;
}

/* ---- the pipeline view: history ring and error notes (metrics.h) ---- */

const char *metrics_pipeline_name(int pl)
{
    return pl >= 0 && pl < DR_PL_COUNT ? pipeline_names[pl] : NULL;
}

const char *metrics_stage_name(int pl, int s)
{
    if (pl < 0 || pl >= DR_PL_COUNT || s < 0 || s >= DR_STAGE_SLOTS)
        return NULL;
    return stage_names[pl][s];
}

static uint64_t nonneg(int64_t v)
{
    return v < 0 ? 0 : (uint64_t)v;
}

void metrics_history_now(const struct dr_metrics *m, uint64_t wall_ms, struct dr_history_point *p)
{
    memset(p, 0, sizeof *p);
    p->t_ms = wall_ms;
    for (int pl = 0; pl < DR_PL_COUNT; pl++)
        for (int s = 0; s < DR_STAGE_SLOTS; s++) {
            struct dr_history_stage *h = &p->stages[pl][s];
            const struct dr_stage_metrics *sm = &m->stages[pl][s];
            size_t g = offsetof(struct dr_proc_gauges, stages) +
                       ((size_t)pl * DR_STAGE_SLOTS + (size_t)s) * sizeof(struct dr_stage_gauges);
            h->queued = nonneg(proc_sum(m, g + offsetof(struct dr_stage_gauges, queued)));
            h->in_flight = nonneg(proc_sum(m, g + offsetof(struct dr_stage_gauges, in_flight)));
            h->processed = ld(&sm->processed);
            h->failed = ld(&sm->failed);
            h->busy_us = ld(&sm->busy_us);
            for (int b = 0; b < DR_HIST_BUCKETS; b++)
                h->buckets[b] = ld(&sm->duration.buckets[b]);
        }
    p->uploads_accepted = ld(&m->http_requests[DR_RC_UPLOAD][metrics_status_slot(202)]) +
                          ld(&m->http_requests[DR_RC_TUS][metrics_status_slot(201)]);
    for (int r = 0; r < DR_RC_COUNT; r++)
        for (int s = 0; s < DR_STATUS_SLOTS; s++)
            p->http_requests += ld(&m->http_requests[r][s]);
    p->http_bytes_received = ld(&m->http_bytes_received);
    p->open_connections =
        nonneg(proc_sum(m, offsetof(struct dr_proc_gauges, http_connections_open)));
    p->jobs_queue_depth = nonneg(lds(&m->jobs_queue_depth));
    p->retries = ld(&m->jobs_retries);
    for (int pl = 0; pl < DR_PL_COUNT; pl++) {
        p->jobs_completed += ld(&m->jobs_completed[pl]);
        p->jobs_failed += ld(&m->jobs_failed[pl]);
    }
    p->restarts = ld(&m->restarts[0]) + ld(&m->restarts[1]);
}

/* Seqlock copies: the payload after `seq` is whole uint64_t words. */
static void seq_write(uint64_t *seq, uint64_t *dst, const uint64_t *src, size_t words)
{
    uint64_t s = __atomic_load_n(seq, __ATOMIC_RELAXED);
    if (s & 1) /* another writer (error notes only) is in this slot: take over */
        s++;
    __atomic_store_n(seq, s + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    for (size_t i = 0; i < words; i++)
        __atomic_store_n(&dst[i], src[i], __ATOMIC_RELAXED);
    __atomic_store_n(seq, s + 2, __ATOMIC_RELEASE);
}

static bool seq_read(const uint64_t *seq, uint64_t *dst, const uint64_t *src, size_t words)
{
    uint64_t s1 = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
    if (s1 == 0 || (s1 & 1))
        return false; /* never written, or being written */
    for (size_t i = 0; i < words; i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    return __atomic_load_n(seq, __ATOMIC_RELAXED) == s1;
}

#define PAYLOAD_WORDS(type) ((sizeof(type) - sizeof(uint64_t)) / sizeof(uint64_t))

void metrics_history_record(struct dr_metrics *m, uint64_t wall_ms)
{
    struct dr_history_point p;
    metrics_history_now(m, wall_ms, &p);
    uint64_t h = __atomic_load_n(&m->history.head, __ATOMIC_RELAXED);
    struct dr_history_point *slot = &m->history.pts[h % DR_HISTORY_POINTS];
    seq_write(&slot->seq, &slot->t_ms, &p.t_ms, PAYLOAD_WORDS(struct dr_history_point));
    __atomic_store_n(&m->history.head, h + 1, __ATOMIC_RELEASE);
}

size_t metrics_history_read(const struct dr_metrics *m, struct dr_history_point *out, size_t max)
{
    uint64_t h = __atomic_load_n(&m->history.head, __ATOMIC_ACQUIRE);
    uint64_t have = h < DR_HISTORY_POINTS ? h : DR_HISTORY_POINTS;
    if (have > max)
        have = max;
    size_t n = 0;
    for (uint64_t i = h - have; i < h; i++) {
        const struct dr_history_point *slot = &m->history.pts[i % DR_HISTORY_POINTS];
        if (seq_read(&slot->seq, &out[n].t_ms, &slot->t_ms,
                     PAYLOAD_WORDS(struct dr_history_point))) {
            out[n].seq = 0;
            n++;
        }
    }
    return n;
}

void metrics_note_error(struct dr_metrics *m, int pl, int stage, const char *job_id, int attempt,
                        bool final, const char *error)
{
    if (m == NULL)
        return;
    struct dr_error_note n = {0};
    n.t_ms = (uint64_t)dr_now_ms();
    n.pipeline = (uint64_t)pl;
    n.stage = (uint64_t)stage;
    n.attempt = (uint64_t)(attempt < 0 ? 0 : attempt);
    n.final = final;
    char *t = (char *)n.text;
    size_t cap = sizeof n.text;
    int k = snprintf(t, cap, "%s", job_id ? job_id : "");
    size_t off = (size_t)(k < 0 ? 0 : k) + 1;
    if (off < cap)
        snprintf(t + off, cap - off, "%s", error ? error : "");
    uint64_t h = __atomic_fetch_add(&m->errors.head, 1, __ATOMIC_ACQ_REL);
    struct dr_error_note *slot = &m->errors.notes[h % DR_ERROR_NOTES];
    seq_write(&slot->seq, &slot->t_ms, &n.t_ms, PAYLOAD_WORDS(struct dr_error_note));
}

size_t metrics_errors_read(const struct dr_metrics *m, struct dr_error_note *out, size_t max)
{
    uint64_t h = __atomic_load_n(&m->errors.head, __ATOMIC_ACQUIRE);
    size_t n = 0;
    for (uint64_t i = 0; i < DR_ERROR_NOTES && i < h && n < max; i++) {
        const struct dr_error_note *slot = &m->errors.notes[(h - 1 - i) % DR_ERROR_NOTES];
        if (seq_read(&slot->seq, &out[n].t_ms, &slot->t_ms, PAYLOAD_WORDS(struct dr_error_note))) {
            ((char *)out[n].text)[sizeof out[n].text - 1] = '\0';
            out[n].seq = 0;
            n++;
        }
    }
    return n;
}

const char *metrics_error_job(const struct dr_error_note *n)
{
    return (const char *)n->text;
}

const char *metrics_error_text(const struct dr_error_note *n)
{
    const char *t = (const char *)n->text;
    size_t l = strnlen(t, sizeof n->text - 1);
    return l + 1 < sizeof n->text ? t + l + 1 : "";
}

double metrics_quantile(const uint64_t buckets[DR_HIST_BUCKETS], double q)
{
    uint64_t total = 0;
    for (int i = 0; i < DR_HIST_BUCKETS; i++)
        total += buckets[i];
    if (total == 0)
        return -1;
    double rank = q * (double)total, cum = 0;
    for (int i = 0; i < DR_HIST_BUCKETS; i++) {
        double c = (double)buckets[i];
        if (cum + c >= rank && c > 0) {
            if (i == DR_HIST_BUCKETS - 1) /* +Inf: the highest finite bound, as Prometheus */
                return hist_bounds[DR_HIST_BUCKETS - 2];
            double lo = i == 0 ? 0 : hist_bounds[i - 1], hi = hist_bounds[i];
            return lo + (hi - lo) * (rank - cum) / c;
        }
        cum += c;
    }
    return hist_bounds[DR_HIST_BUCKETS - 2];
}

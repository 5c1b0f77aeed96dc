/* stage.h - a demand-driven stage engine (GenStage semantics in threads).
 *
 * A pipeline is a chain of stages fed by one producer (the "starter",
 * owned by the caller). Each stage has a name, a handler, `concurrency`
 * threads and max_demand/min_demand. Every stage thread is a consumer of the
 * stage above with its own demand: it asks for max_demand items at first and
 * asks again (for max_demand - outstanding) only when its outstanding count
 * (asked and not yet finished) falls to min_demand. Items delivered to a
 * stage wait in its bounded inbox (an intrusive FIFO); an upstream thread
 * may hand an item over only while the stage has unmet demand, so a slow
 * stage blocks everything above it, up to the starter, which should take
 * new work only as fast as stage_wait_demand() allows.
 *
 * Items are caller structs that embed a `struct stage_item` (intrusive; the
 * engine never allocates per item). The engine owns an item from
 * stage_push() until a handler returns STAGE_DONE (the handler took it
 * back) or the pipeline stops (ops->discard gets it).
 *
 * Threads: stage_push/stage_wait_demand from one producer thread; stop/free
 * from the thread that started the pipeline.
 */
#ifndef DRIPD_STAGE_H
#define DRIPD_STAGE_H

#include <stdbool.h>
#include <stdint.h>

struct dr_stage_metrics;
struct dr_stage_gauges;

struct stage_item {
    struct stage_item *next; /* engine-private link */
    uint64_t cost;           /* the producer's estimate of the work (bytes); see max_batch */
};

enum stage_verdict {
    STAGE_FORWARD = 0, /* hand the item to the next stage (the last stage: same as DONE) */
    STAGE_DONE = 1,    /* the handler kept or freed the item; the engine forgets it */
    STAGE_AGAIN = 2,   /* batches only: not started; back to the front of the inbox, for any
                          thread of the stage (a handler that ran out of time) */
};

struct stage_ops {
    /* Optional. Runs on each new stage thread before it asks for work;
     * *tls is passed to handle/thread_fini. Non-zero: the thread exits
     * (logged) and the stage runs with fewer threads. */
    int (*thread_init)(void *arg, int index, void **tls);
    void (*thread_fini)(void *arg, void *tls);
    /* Process one item (no engine lock held). Used when handle_batch is
     * NULL. */
    enum stage_verdict (*handle)(void *arg, void *tls, struct stage_item *it);
    /* Optional: process the n items a thread took at once (1 <= n <=
     * max_batch, oldest first; no engine lock held) and set verdicts[i]
     * for each. The items are then handed on in that order. */
    void (*handle_batch)(void *arg, void *tls, struct stage_item **items, int n,
                         enum stage_verdict *verdicts);
    /* An item still owned by the engine when the pipeline stops. */
    void (*discard)(void *arg, struct stage_item *it);
};

struct stage_spec {
    const char *name;       /* "encrypt"; threads are named "<short>-<n>" */
    const char *short_name; /* <= 10 chars, e.g. "enc" (thread names are <= 15) */
    int concurrency;        /* >= 1 */
    int max_demand;         /* >= 1 */
    int min_demand;         /* 0 <= min < max */
    /* Batches (with ops->handle_batch): a thread that finds several items
     * in the inbox takes up to max_batch of them at once (< 1: 1), as
     * long as their costs add up to at most batch_cost (0: no limit); the
     * first item is taken whatever its cost, so a big job goes alone and
     * never holds small ones back. */
    int max_batch;
    uint64_t batch_cost;
    const struct stage_ops *ops;
    void *arg;
    struct dr_stage_metrics *metrics; /* counters; may be NULL */
    struct dr_stage_gauges *gauges;   /* this process's queued/in_flight; may be NULL */
};

struct stage_pipeline;

/* Create a pipeline of n stages (specs are copied; names must outlive it).
 * Invalid demand settings are clamped (max >= 1, 0 <= min < max). */
struct stage_pipeline *stage_pipeline_create(const struct stage_spec *specs, int n);
/* Start every stage's threads (signals blocked in them). 0 / -errno. */
int stage_pipeline_start(struct stage_pipeline *p);
/* Producer side. Wait up to timeout_ms (-1 forever) for demand of the first
 * stage. Returns the number of items the producer may push now (0 on
 * timeout), or -ECANCELED once stopping. */
int stage_wait_demand(struct stage_pipeline *p, int64_t timeout_ms);
/* Hand n items (n <= the demand just returned) to the first stage. Items
 * beyond the demand are refused: returns how many were taken; the caller
 * keeps the rest. */
int stage_push(struct stage_pipeline *p, struct stage_item **items, int n);
/* Begin stopping without waiting (marks, discards queued items, wakes
 * everybody); stage_pipeline_stop() then joins. Idempotent. */
void stage_pipeline_signal_stop(struct stage_pipeline *p);
/* Stop: the producer's wait returns -ECANCELED, each thread finishes the
 * item it is processing (a finished item is not forwarded any more),
 * queued items go to ops->discard, threads are joined. Idempotent. */
void stage_pipeline_stop(struct stage_pipeline *p);
void stage_pipeline_destroy(struct stage_pipeline *p); /* stops first; NULL ok */

/* Stats for tests: items queued in stage i's inbox, its unmet demand, items
 * its threads hold (popped, not finished) and the most items the stage ever
 * held delivered-and-unfinished (queued + held) at once. */
struct stage_stats {
    int queued;
    int demand;
    int in_flight;
    int max_outstanding_seen;
    uint64_t processed;
};
void stage_get_stats(struct stage_pipeline *p, int stage, struct stage_stats *out);

/* ---- demand arithmetic (pure, unit-tested) ---- */
/* How many items a consumer with `outstanding` asked-and-unfinished items
 * asks for now: max - outstanding when outstanding <= min, else 0. */
int stage_demand_ask(int outstanding, int max_demand, int min_demand);
/* Retry delay before attempt `attempt` (1 = the first retry): exponential,
 * base * 2^(attempt-1) capped at max_ms, with "equal jitter": half of it
 * fixed, the other half scaled by rnd / 2^32. Never 0 when base > 0. */
uint64_t stage_backoff_ms(int attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd);
/* Clamp a (max, min) pair to a valid one: max >= 1, 0 <= min < max. */
void stage_demand_clamp(int *max_demand, int *min_demand);

#endif

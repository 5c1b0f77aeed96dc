/* stage.c - the demand-driven stage engine behind the upload and download
 * pipelines (GenStage's producer/consumer contract, in POSIX threads).
 *
 * DESIGN
 *
 * A pipeline is a chain of stages; the caller's "starter" thread produces
 * into the first one. A stage is:
 *   - one mutex `mu`, two condition variables (`items_cv`: its threads wait
 *     for items; `demand_cv`: producers wait for its demand) and one
 *     intrusive FIFO (`head`/`tail`): the stage's inbox;
 *   - `concurrency` threads, each a GenStage consumer of the stage above.
 *
 * Demand. Each thread keeps `outstanding`: items it asked for and has not
 * finished. It asks (adds to the stage's `demand`, the count its producers
 * may still deliver) max_demand - outstanding items whenever outstanding
 * falls to min_demand (stage_demand_ask(), a pure function); at start that
 * is max_demand. A producer may move an item into the inbox only while
 * demand > 0 (and decrements it). Any idle thread of the stage pops the
 * oldest item (work sharing: no item waits behind a long one while a
 * sibling is idle); the thread that finishes an item decrements its own
 * outstanding. Invariant (under mu):
 *     sum(outstanding) == demand + queued + held-by-threads
 * so a stage never holds more than concurrency * max_demand items.
 *
 * Batches (GenStage hands a consumer a list of events). With
 * ops->handle_batch, a thread that pops an item also takes the items
 * queued behind it, up to spec.max_batch and while their costs (the
 * producer's estimate, e.g. bytes) add up to at most spec.batch_cost; the
 * first item goes alone if it is bigger. The handler does the per-item
 * work for all of them, then what they can share once (one sync, one
 * commit), and the items are handed on together (one lock, one wake-up
 * of the next stage). A thread may so take more than it asked for: its
 * own outstanding goes below zero and it asks again; the sum above, and
 * the bound, hold. A handler that runs out of time gives the items it
 * did not start back (STAGE_AGAIN): they return to the front of the
 * inbox, still outstanding, for whichever thread is free first.
 *
 * Wake-ups (issue 15: each one is a context switch, much of what a small
 * job costs the pipeline process). Whoever puts items into an
 * inbox (the starter's stage_push, forward(), STAGE_AGAIN) signals ONE
 * waiting thread of the stage, however many items it put: that thread
 * takes the oldest as a batch, and a thread that leaves items behind in
 * the inbox (its batch was full, or the stage does not batch) signals one
 * more before it starts work. So every queued item has a thread on its
 * way, the wake-ups follow the work, and a burst that fits one batch
 * wakes one thread, not all of them to find the inbox empty. A woken
 * thread may still find nothing (a busy sibling came back first): it waits
 * again. Stop is the exception: it broadcasts (every thread must see its
 * sentinel). Demand is unchanged by this: who takes an item from the
 * inbox never mattered to the counts below.
 *
 * Back-pressure. A thread that finished an item must hand it downstream
 * before it counts the item finished; when the next stage has no demand it
 * blocks (on that stage's demand_cv) holding the item (the rest of its
 * batch), asks its own producer for nothing more, and so the stall travels
 * up to the starter, which only takes new work from stage_wait_demand().
 *
 * Stop. stage_pipeline_stop() marks every stage stopping, takes the queued
 * items out (they go to ops->discard), puts one sentinel per thread in each
 * inbox and wakes every waiter. A thread that is running a handler
 * finishes that step; a finished item that can no longer be handed on is
 * discarded; then the thread pops its sentinel and exits. Threads are
 * joined. Items are never freed by the engine itself: the caller's
 * discard() decides (the pipeline leaves such jobs claimed in the catalog,
 * where crash recovery releases them).
 *
 * Threads. Stage threads are named "<short>-<n>" (e.g. "enc-1") and run
 * with every signal blocked. The producer calls stage_wait_demand /
 * stage_push; the owner calls start/stop/free.
 *
 * Lock order. A thread holds at most ONE stage mutex at any time (it takes
 * its own stage's mu to pop and to count a finish, and the next stage's mu
 * to hand an item on, never both), so there is no order to get wrong.
 * Handlers run with no engine lock held. Metrics are relaxed atomics.
 */
#include "stage.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/util.h"

struct stage;

struct stage_thread {
    struct stage *st;
    int index;
    pthread_t tid;
    bool started;
    int outstanding; /* under st->mu */
    struct stage_item sentinel;
};

struct stage {
    struct stage_pipeline *p;
    struct stage_spec spec;
    int idx;
    pthread_mutex_t mu;
    pthread_cond_t items_cv;
    pthread_cond_t demand_cv;
    struct stage_item *head, *tail;
    int queued;
    int demand;   /* unmet demand announced to the producer(s) */
    int held;     /* popped by a thread and not yet finished */
    int waiting;  /* of those, in a thread's batch behind the item it runs */
    int max_held; /* peak of queued + held (stats) */
    uint64_t processed;
    bool stopping;
    struct stage_thread *threads;
};

struct stage_pipeline {
    struct stage *stages;
    int n;
    int stopping; /* atomic */
    bool started;
};

/* ---- demand arithmetic ---- */

void stage_demand_clamp(int *max_demand, int *min_demand)
{
    if (*max_demand < 1)
        *max_demand = 1;
    if (*min_demand < 0)
        *min_demand = 0;
    if (*min_demand >= *max_demand)
        *min_demand = *max_demand - 1;
}

int stage_demand_ask(int outstanding, int max_demand, int min_demand)
{
    stage_demand_clamp(&max_demand, &min_demand);
    if (outstanding < 0)
        outstanding = 0;
    if (outstanding > min_demand)
        return 0;
    return max_demand - outstanding;
}

uint64_t stage_backoff_ms(int attempt, uint64_t base_ms, uint64_t max_ms, uint32_t rnd)
{
    if (attempt < 1)
        attempt = 1;
    uint64_t d = base_ms;
    for (int i = 1; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    uint64_t half = d / 2;
    uint64_t span = d - half; /* <= max_ms / 2 + 1: no overflow below 2^32 ms */
    uint64_t j = span < (UINT64_C(1) << 32) ? (span * rnd) >> 32 : (span >> 32) * rnd;
    uint64_t r = half + j;
    return r == 0 && base_ms > 0 ? 1 : r;
}

/* ---- small helpers ---- */

static void gauge_set(int64_t *g, int64_t v)
{
    __atomic_store_n(g, v, __ATOMIC_RELAXED);
}

/* Caller holds st->mu. The queued gauge counts the jobs that wait for a
 * thread of the stage: in the inbox, or in a batch behind the job its
 * thread runs (so in_flight counts the threads at work). */
static void publish_queued(struct stage *st)
{
    if (st->spec.gauges)
        gauge_set(&st->spec.gauges->queued, (int64_t)(st->queued + st->waiting));
}

/* Caller holds st->mu. */
static void fifo_push(struct stage *st, struct stage_item *it)
{
    it->next = NULL;
    if (st->tail)
        st->tail->next = it;
    else
        st->head = it;
    st->tail = it;
    st->queued++;
    if (st->queued + st->held > st->max_held)
        st->max_held = st->queued + st->held;
    publish_queued(st);
}

/* Caller holds st->mu: put it back at the head (STAGE_AGAIN). */
static void fifo_push_front(struct stage *st, struct stage_item *it)
{
    it->next = st->head;
    st->head = it;
    if (st->tail == NULL)
        st->tail = it;
    st->queued++;
    publish_queued(st);
}

/* Caller holds st->mu; inbox not empty. */
static struct stage_item *fifo_pop(struct stage *st)
{
    struct stage_item *it = st->head;
    st->head = it->next;
    if (st->head == NULL)
        st->tail = NULL;
    it->next = NULL;
    st->queued--;
    publish_queued(st);
    return it;
}

/* Caller holds st->mu: thread t asks for more if its outstanding fell to min. */
static void ask_more(struct stage *st, struct stage_thread *t)
{
    int ask = stage_demand_ask(t->outstanding, st->spec.max_demand, st->spec.min_demand);
    if (ask <= 0 || st->stopping)
        return;
    t->outstanding += ask;
    st->demand += ask;
    pthread_cond_broadcast(&st->demand_cv);
}

static bool is_sentinel(struct stage *st, struct stage_item *it)
{
    for (int i = 0; i < st->spec.concurrency; i++)
        if (it == &st->threads[i].sentinel)
            return true;
    return false;
}

/* Hand n items to stage `to`, in order, as its demand allows: one lock
 * and one wake-up for all that fit, blocking while `to` has no demand.
 * Items left when the pipeline stops are discarded. */
static void forward(struct stage *from, struct stage *to, struct stage_item **its, int n)
{
    int k = 0;
    pthread_mutex_lock(&to->mu);
    while (k < n) {
        while (to->demand == 0 && !to->stopping)
            pthread_cond_wait(&to->demand_cv, &to->mu);
        if (to->stopping)
            break;
        int m = 0;
        for (; k < n && to->demand > 0; k++, m++) {
            to->demand--;
            fifo_push(to, its[k]);
        }
        pthread_cond_signal(&to->items_cv); /* one: it wakes the next (see the top) */
    }
    pthread_mutex_unlock(&to->mu);
    for (; k < n; k++)
        if (from->spec.ops->discard)
            from->spec.ops->discard(from->spec.arg, its[k]);
}

/* Caller holds st->mu and popped `first`: add to batch[] the items that
 * follow it in the inbox while the batch stays within max_batch and
 * batch_cost (a sentinel ends it). Returns the batch's size. */
static int take_batch(struct stage *st, struct stage_item *first, struct stage_item **batch)
{
    int n = 0;
    batch[n++] = first;
    uint64_t cost = first->cost, cap = st->spec.batch_cost;
    while (n < st->spec.max_batch && st->head != NULL && !is_sentinel(st, st->head) &&
           (cap == 0 || cost + st->head->cost <= cap)) {
        cost += st->head->cost;
        batch[n++] = fifo_pop(st);
    }
    return n;
}

static void *stage_thread_main(void *arg)
{
    struct stage_thread *t = arg;
    struct stage *st = t->st;
    struct stage_pipeline *p = st->p;
    const struct stage_ops *ops = st->spec.ops;
    struct dr_stage_metrics *m = st->spec.metrics;
    struct dr_stage_gauges *g = st->spec.gauges;
    char name[32];
    void *tls = NULL;

    snprintf(name, sizeof name, "%.10s-%u",
             st->spec.short_name ? st->spec.short_name : st->spec.name,
             (unsigned)(t->index + 1) % 1000u);
    name[15] = '\0'; /* the kernel's limit */
    pthread_setname_np(pthread_self(), name);
    if (ops->thread_init && ops->thread_init(st->spec.arg, t->index, &tls) != 0) {
        log_error("stage %s: thread %s could not start; the stage runs without it", st->spec.name,
                  name);
        /* It never asked for work, so it owns none: just end. stop() still
         * joins it; the sentinel it leaves unused is harmless. */
        return NULL;
    }

    int cap = ops->handle_batch ? st->spec.max_batch : 1;
    struct stage_item **batch = xcalloc((size_t)cap, sizeof *batch);
    enum stage_verdict *verdicts = xcalloc((size_t)cap, sizeof *verdicts);
    pthread_mutex_lock(&st->mu);
    ask_more(st, t);
    for (;;) {
        while (st->head == NULL)
            pthread_cond_wait(&st->items_cv, &st->mu);
        struct stage_item *it = fifo_pop(st);
        if (is_sentinel(st, it))
            break;
        int n = cap > 1 ? take_batch(st, it, batch) : (batch[0] = it, 1);
        st->held += n;
        st->waiting += n - 1;
        publish_queued(st);
        if (st->head != NULL) /* left some behind: a sibling's turn (see the top) */
            pthread_cond_signal(&st->items_cv);
        pthread_mutex_unlock(&st->mu);

        if (g)
            metrics_gauge_add(&g->in_flight, 1);
        uint64_t t0 = dr_mono_ns();
        if (ops->handle_batch)
            ops->handle_batch(st->spec.arg, tls, batch, n, verdicts);
        else
            verdicts[0] = ops->handle(st->spec.arg, tls, it);
        uint64_t us = (dr_mono_ns() - t0) / 1000;
        if (g)
            metrics_gauge_add(&g->in_flight, -1);
        if (n > 1) {
            pthread_mutex_lock(&st->mu);
            st->waiting -= n - 1;
            publish_queued(st);
            pthread_mutex_unlock(&st->mu);
        }
        int done = n;
        for (int i = 0; i < n; i++)
            done -= verdicts[i] == STAGE_AGAIN;
        if (m) {
            metrics_add(&m->processed, (uint64_t)done);
            metrics_add(&m->busy_us, us);
            for (int i = 0; i < done; i++) /* a batch's items share its time */
                metrics_observe(&m->duration, us / (uint64_t)done);
        }
        int again = 0;
        for (int i = 0; i < n; i++)
            again += verdicts[i] == STAGE_AGAIN;
        if (again > 0) {
            pthread_mutex_lock(&st->mu);
            bool stopping = st->stopping;
            for (int i = n - 1; i >= 0 && !stopping; i--) /* back in front, in order */
                if (verdicts[i] == STAGE_AGAIN)
                    fifo_push_front(st, batch[i]);
            if (!stopping) {
                st->held -= again; /* still outstanding: queued again */
                pthread_cond_signal(&st->items_cv);
            }
            pthread_mutex_unlock(&st->mu);
            for (int i = 0; i < n && stopping; i++) /* stopping: as queued items are */
                if (verdicts[i] == STAGE_AGAIN) {
                    verdicts[i] = STAGE_DONE;
                    if (ops->discard)
                        ops->discard(st->spec.arg, batch[i]);
                }
            if (stopping)
                again = 0;
        }
        int fwd = 0, finished = n - again;
        for (int i = 0; i < n; i++)
            if (verdicts[i] == STAGE_FORWARD)
                batch[fwd++] = batch[i];
        if (fwd > 0 && st->idx + 1 < p->n)
            forward(st, &p->stages[st->idx + 1], batch, fwd);
        else
            for (int i = 0; i < fwd && ops->discard; i++)
                ops->discard(st->spec.arg, batch[i]); /* nothing downstream: treat as done */

        pthread_mutex_lock(&st->mu);
        st->held -= finished;
        st->processed += (uint64_t)finished;
        /* A thread may have taken items its siblings asked for: its own
         * count then goes below zero, and it asks again at once. The sum
         * over the threads stays demand + queued + held. */
        t->outstanding -= finished;
        ask_more(st, t);
    }
    pthread_mutex_unlock(&st->mu);
    free(batch);
    free(verdicts);
    if (ops->thread_fini)
        ops->thread_fini(st->spec.arg, tls);
    return NULL;
}

/* ---- public ---- */

struct stage_pipeline *stage_pipeline_create(const struct stage_spec *specs, int n)
{
    struct stage_pipeline *p = xcalloc(1, sizeof *p);
    p->n = n;
    p->stages = xcalloc((size_t)n, sizeof *p->stages);
    for (int i = 0; i < n; i++) {
        struct stage *st = &p->stages[i];
        st->p = p;
        st->idx = i;
        st->spec = specs[i];
        if (st->spec.concurrency < 1)
            st->spec.concurrency = 1;
        if (st->spec.max_batch < 1)
            st->spec.max_batch = 1;
        stage_demand_clamp(&st->spec.max_demand, &st->spec.min_demand);
        pthread_mutex_init(&st->mu, NULL);
        dr_cond_init_mono(&st->items_cv);
        dr_cond_init_mono(&st->demand_cv);
        st->threads = xcalloc((size_t)st->spec.concurrency, sizeof *st->threads);
        for (int k = 0; k < st->spec.concurrency; k++) {
            st->threads[k].st = st;
            st->threads[k].index = k;
        }
    }
    return p;
}

int stage_pipeline_start(struct stage_pipeline *p)
{
    int rc = 0;
    for (int i = 0; i < p->n && rc == 0; i++) {
        struct stage *st = &p->stages[i];
        for (int k = 0; k < st->spec.concurrency; k++) {
            int e = dr_thread_start(&st->threads[k].tid, stage_thread_main, &st->threads[k]);
            if (e != 0) {
                log_error("stage %s: cannot start a thread: %s", st->spec.name, strerror(-e));
                rc = e;
                break;
            }
            st->threads[k].started = true;
        }
    }
    p->started = true;
    if (rc != 0)
        stage_pipeline_stop(p);
    return rc;
}

int stage_wait_demand(struct stage_pipeline *p, int64_t timeout_ms)
{
    struct stage *st = &p->stages[0];
    struct timespec ts;
    if (timeout_ms >= 0)
        dr_mono_timespec(&ts, dr_mono_ms() + timeout_ms);
    pthread_mutex_lock(&st->mu);
    while (st->demand == 0 && !st->stopping) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&st->demand_cv, &st->mu);
        } else if (pthread_cond_timedwait(&st->demand_cv, &st->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    int r = st->stopping ? -ECANCELED : st->demand;
    pthread_mutex_unlock(&st->mu);
    return r;
}

int stage_push(struct stage_pipeline *p, struct stage_item **items, int n)
{
    struct stage *st = &p->stages[0];
    int taken = 0;
    pthread_mutex_lock(&st->mu);
    while (taken < n && st->demand > 0 && !st->stopping) {
        st->demand--;
        fifo_push(st, items[taken++]);
    }
    if (taken > 0)
        pthread_cond_signal(&st->items_cv); /* one: it wakes the next (see the top) */
    pthread_mutex_unlock(&st->mu);
    return taken;
}

void stage_pipeline_signal_stop(struct stage_pipeline *p)
{
    if (p == NULL || __atomic_exchange_n(&p->stopping, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    for (int i = 0; i < p->n; i++) {
        struct stage *st = &p->stages[i];
        pthread_mutex_lock(&st->mu);
        st->stopping = true;
        struct stage_item *left = st->head;
        st->head = st->tail = NULL;
        st->queued = 0;
        st->demand = 0;
        for (int k = 0; k < st->spec.concurrency; k++)
            if (st->threads[k].started)
                fifo_push(st, &st->threads[k].sentinel);
        pthread_cond_broadcast(&st->items_cv);
        pthread_cond_broadcast(&st->demand_cv);
        pthread_mutex_unlock(&st->mu);
        while (left) {
            struct stage_item *next = left->next;
            if (st->spec.ops->discard)
                st->spec.ops->discard(st->spec.arg, left);
            left = next;
        }
    }
}

void stage_pipeline_stop(struct stage_pipeline *p)
{
    if (p == NULL)
        return;
    stage_pipeline_signal_stop(p);
    for (int i = 0; i < p->n; i++) {
        struct stage *st = &p->stages[i];
        for (int k = 0; k < st->spec.concurrency; k++)
            if (st->threads[k].started) {
                pthread_join(st->threads[k].tid, NULL);
                st->threads[k].started = false;
            }
        if (st->spec.gauges)
            gauge_set(&st->spec.gauges->queued, 0);
    }
}

void stage_pipeline_destroy(struct stage_pipeline *p)
{
    if (p == NULL)
        return;
    stage_pipeline_stop(p);
    for (int i = 0; i < p->n; i++) {
        struct stage *st = &p->stages[i];
        pthread_mutex_destroy(&st->mu);
        pthread_cond_destroy(&st->items_cv);
        pthread_cond_destroy(&st->demand_cv);
        free(st->threads);
    }
    free(p->stages);
    free(p);
}

void stage_get_stats(struct stage_pipeline *p, int stage, struct stage_stats *out)
{
    struct stage *st = &p->stages[stage];
    pthread_mutex_lock(&st->mu);
    out->queued = st->queued;
    out->demand = st->demand;
    out->in_flight = st->held;
    out->max_outstanding_seen = st->max_held;
    out->processed = st->processed;
    pthread_mutex_unlock(&st->mu);
}

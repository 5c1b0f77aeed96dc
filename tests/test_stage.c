/* test_stage.c - the stage engine: demand arithmetic (pure) and the
 * bounded, demand-driven hand-off between threads. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/metrics.h"
#include "dripd/util.h"
#include "pipeline/stage.h"

/* Generous: a loaded CI machine is slow, a hang is still caught. */
#define DEADLINE_MS 20000

/* ---- pure demand arithmetic ---- */

START_TEST(test_demand_ask)
{
    /* GenStage: ask max at first, then only when outstanding falls to min. */
    ck_assert_int_eq(stage_demand_ask(0, 10, 1), 10);
    ck_assert_int_eq(stage_demand_ask(1, 10, 1), 9);
    ck_assert_int_eq(stage_demand_ask(2, 10, 1), 0);
    ck_assert_int_eq(stage_demand_ask(10, 10, 1), 0);
    ck_assert_int_eq(stage_demand_ask(5, 10, 5), 5);
    ck_assert_int_eq(stage_demand_ask(6, 10, 5), 0);
    ck_assert_int_eq(stage_demand_ask(0, 1, 0), 1);
    ck_assert_int_eq(stage_demand_ask(1, 1, 0), 0);
    ck_assert_int_eq(stage_demand_ask(-3, 4, 1), 4); /* never asks beyond max */
}
END_TEST

START_TEST(test_demand_clamp)
{
    int mx = 0, mn = 5;
    stage_demand_clamp(&mx, &mn);
    ck_assert_int_eq(mx, 1);
    ck_assert_int_eq(mn, 0);
    mx = 10, mn = 10;
    stage_demand_clamp(&mx, &mn);
    ck_assert_int_eq(mn, 9);
    mx = 10, mn = -1;
    stage_demand_clamp(&mx, &mn);
    ck_assert_int_eq(mn, 0);
    /* clamped values drive the ask: min >= max behaves as max - 1 */
    ck_assert_int_eq(stage_demand_ask(9, 10, 10), 1);
}
END_TEST

START_TEST(test_backoff)
{
    /* exponential, capped, jitter within [d/2, d] */
    ck_assert_uint_eq(stage_backoff_ms(1, 1000, 60000, 0), 500);
    ck_assert_uint_eq(stage_backoff_ms(1, 1000, 60000, UINT32_MAX), 999);
    ck_assert_uint_eq(stage_backoff_ms(2, 1000, 60000, 0), 1000);
    ck_assert_uint_eq(stage_backoff_ms(3, 1000, 60000, 0), 2000);
    ck_assert_uint_eq(stage_backoff_ms(10, 1000, 60000, 0), 30000);
    ck_assert_uint_le(stage_backoff_ms(10, 1000, 60000, UINT32_MAX), 60000);
    ck_assert_uint_le(stage_backoff_ms(1000, 1000, 60000, UINT32_MAX), 60000);
    ck_assert_uint_ge(stage_backoff_ms(1000, 1000, 60000, 0), 30000);
    ck_assert_uint_eq(stage_backoff_ms(0, 100, 1000, 0), 50);
    ck_assert_uint_eq(stage_backoff_ms(1, 1, 1, 0), 1); /* never 0 */
    uint64_t prev = 0;
    for (int a = 1; a < 12; a++) { /* monotone for a fixed rnd */
        uint64_t d = stage_backoff_ms(a, 100, 60000, 1u << 31);
        ck_assert_uint_ge(d, prev);
        prev = d;
    }
}
END_TEST

/* ---- a gated test stage ---- */

struct titem {
    struct stage_item link;
    int n;
};

struct tstage {
    sem_t gate; /* each handled item takes one token (if gated) */
    bool gated;
    pthread_mutex_t mu;
    int seen[256];
    int n_seen;
    int discarded;
    int block_item; /* item number that blocks until `unblock` (-1 none) */
    sem_t unblock;
    char names[256][16];
};

static void tstage_init(struct tstage *t, bool gated)
{
    memset(t, 0, sizeof *t);
    sem_init(&t->gate, 0, 0);
    sem_init(&t->unblock, 0, 0);
    pthread_mutex_init(&t->mu, NULL);
    t->gated = gated;
    t->block_item = -1;
}

static enum stage_verdict t_handle(void *arg, void *tls, struct stage_item *it)
{
    (void)tls;
    struct tstage *t = arg;
    struct titem *x = (struct titem *)it;
    if (t->gated)
        sem_wait(&t->gate);
    if (x->n == t->block_item)
        sem_wait(&t->unblock);
    pthread_mutex_lock(&t->mu);
    if (t->n_seen < 256) {
        pthread_getname_np(pthread_self(), t->names[t->n_seen], 16);
        t->seen[t->n_seen] = x->n;
        t->n_seen++;
    }
    pthread_mutex_unlock(&t->mu);
    return STAGE_FORWARD;
}

static void t_discard(void *arg, struct stage_item *it)
{
    struct tstage *t = arg;
    (void)it;
    pthread_mutex_lock(&t->mu);
    t->discarded++;
    pthread_mutex_unlock(&t->mu);
}

static const struct stage_ops t_ops = {.handle = t_handle, .discard = t_discard};

static int seen(struct tstage *t)
{
    pthread_mutex_lock(&t->mu);
    int n = t->n_seen;
    pthread_mutex_unlock(&t->mu);
    return n;
}

static int discarded(struct tstage *t)
{
    pthread_mutex_lock(&t->mu);
    int n = t->discarded;
    pthread_mutex_unlock(&t->mu);
    return n;
}

/* Poll until seen(t) reaches n (deadline: the assert fails). */
static void wait_seen(struct tstage *t, int n)
{
    int64_t end = dr_mono_ms() + DEADLINE_MS;
    while (seen(t) < n && dr_mono_ms() < end)
        usleep(1000);
    ck_assert_int_ge(seen(t), n);
}

/* Poll until discarded(a) + discarded(b) reaches n (b may be NULL). */
static void wait_discarded(struct tstage *a, struct tstage *b, int n)
{
    int64_t end = dr_mono_ms() + DEADLINE_MS;
    while (discarded(a) + (b ? discarded(b) : 0) < n && dr_mono_ms() < end)
        usleep(1000);
    ck_assert_int_eq(discarded(a) + (b ? discarded(b) : 0), n);
}

static struct titem items[256];

static void *stop_thread(void *p)
{
    stage_pipeline_stop(p);
    return NULL;
}

/* Push as many items as the pipeline will take without blocking. */
static int push_until_full(struct stage_pipeline *p, int *next, int limit)
{
    int pushed = 0;
    for (;;) {
        int d = stage_wait_demand(p, 50);
        if (d <= 0 || *next >= limit)
            return pushed;
        for (int k = 0; k < d && *next < limit; k++) {
            struct stage_item *it = &items[*next].link;
            items[*next].n = *next;
            ck_assert_int_eq(stage_push(p, &it, 1), 1);
            (*next)++;
            pushed++;
        }
    }
}

/* Push until `limit` items went in, however slowly the stages ask. */
static void push_all(struct stage_pipeline *p, int *next, int limit)
{
    int64_t end = dr_mono_ms() + DEADLINE_MS;
    while (*next < limit && dr_mono_ms() < end)
        push_until_full(p, next, limit);
    ck_assert_int_eq(*next, limit);
}

START_TEST(test_slow_consumer_bounded)
{
    struct tstage t;
    tstage_init(&t, true);
    struct dr_stage_metrics m;
    memset(&m, 0, sizeof m);
    struct stage_spec spec = {.name = "slow",
                              .short_name = "slow",
                              .concurrency = 1,
                              .max_demand = 3,
                              .min_demand = 1,
                              .ops = &t_ops,
                              .arg = &t,
                              .metrics = &m};
    struct stage_pipeline *p = stage_pipeline_create(&spec, 1);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    int next = 0;
    /* the consumer asked for max_demand and nothing more */
    push_all(p, &next, 3);
    ck_assert_int_eq(stage_wait_demand(p, 30), 0);
    ck_assert_int_eq(push_until_full(p, &next, 200), 0);
    /* a push beyond the demand is refused */
    struct stage_item *extra = &items[199].link;
    ck_assert_int_eq(stage_push(p, &extra, 1), 0);
    /* one item done: outstanding 2 > min 1, no new demand */
    sem_post(&t.gate);
    wait_seen(&t, 1);
    ck_assert_int_eq(stage_wait_demand(p, 30), 0);
    /* second done: outstanding 1 == min: asks max - 1 = 2 */
    sem_post(&t.gate);
    wait_seen(&t, 2);
    ck_assert_int_eq(stage_wait_demand(p, DEADLINE_MS), 2);
    /* run 100 items through with the gate open slowly; never more than 3 held */
    for (int i = 0; i < 200; i++)
        sem_post(&t.gate);
    while (next < 100) {
        push_until_full(p, &next, 100);
        struct stage_stats s;
        stage_get_stats(p, 0, &s);
        ck_assert_int_le(s.queued + s.in_flight, 3);
    }
    wait_seen(&t, 100);
    struct stage_stats s;
    stage_get_stats(p, 0, &s);
    ck_assert_int_le(s.max_outstanding_seen, 3);
    ck_assert_uint_eq(s.processed, 100);
    ck_assert_uint_eq(m.processed, 100);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(t.seen[i], i); /* FIFO */
    ck_assert_str_eq(t.names[0], "slow-1");
    stage_pipeline_destroy(p);
    ck_assert_int_eq(t.discarded, 100); /* the last stage hands finished items back */
}
END_TEST

START_TEST(test_backpressure_two_stages)
{
    struct tstage a, b;
    tstage_init(&a, false);
    tstage_init(&b, true);
    struct stage_spec specs[2] = {
        {.name = "a",
         .short_name = "a",
         .concurrency = 1,
         .max_demand = 2,
         .min_demand = 1,
         .ops = &t_ops,
         .arg = &a},
        {.name = "b",
         .short_name = "b",
         .concurrency = 1,
         .max_demand = 2,
         .min_demand = 1,
         .ops = &t_ops,
         .arg = &b},
    };
    struct stage_pipeline *p = stage_pipeline_create(specs, 2);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    int next = 0;
    /* b holds 2 (its max: item 0 in its handler, item 1 queued), a holds 2
     * (item 2 handled and blocked handing on, item 3 queued): the starter
     * gets exactly 4, however long the threads take to get there, and is
     * then refused. */
    int got = 0;
    int64_t end = dr_mono_ms() + DEADLINE_MS;
    while (got < 4 && dr_mono_ms() < end)
        got += push_until_full(p, &next, 100);
    ck_assert_int_eq(got, 4);
    wait_seen(&a, 3);
    ck_assert_int_eq(stage_wait_demand(p, 50), 0);
    ck_assert_int_eq(push_until_full(p, &next, 100), 0);
    ck_assert_int_eq(seen(&a), 3);
    struct stage_stats sa, sb;
    stage_get_stats(p, 0, &sa);
    stage_get_stats(p, 1, &sb);
    ck_assert_int_le(sa.max_outstanding_seen, 2);
    ck_assert_int_le(sb.max_outstanding_seen, 2);
    /* open the slow stage: everything drains, in order */
    for (int i = 0; i < 64; i++)
        sem_post(&b.gate);
    while (next < 40)
        push_until_full(p, &next, 40);
    wait_seen(&b, 40);
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(b.seen[i], i);
    stage_get_stats(p, 1, &sb);
    ck_assert_int_le(sb.max_outstanding_seen, 2);
    stage_pipeline_destroy(p);
}
END_TEST

START_TEST(test_work_sharing)
{
    /* One thread stuck on item 0 never keeps the sibling from the rest. */
    struct tstage t;
    tstage_init(&t, false);
    t.block_item = 0;
    struct stage_spec spec = {.name = "w",
                              .short_name = "w",
                              .concurrency = 2,
                              .max_demand = 10,
                              .min_demand = 1,
                              .ops = &t_ops,
                              .arg = &t};
    struct stage_pipeline *p = stage_pipeline_create(&spec, 1);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    int next = 0;
    push_all(p, &next, 12);
    wait_seen(&t, 11);
    ck_assert_int_eq(seen(&t), 11);
    sem_post(&t.unblock);
    wait_seen(&t, 12);
    stage_pipeline_destroy(p);
}
END_TEST

START_TEST(test_stop_discards_queued)
{
    struct tstage t;
    tstage_init(&t, false);
    t.block_item = 0;
    struct stage_spec spec = {.name = "s",
                              .short_name = "s",
                              .concurrency = 1,
                              .max_demand = 5,
                              .min_demand = 1,
                              .ops = &t_ops,
                              .arg = &t};
    struct stage_pipeline *p = stage_pipeline_create(&spec, 1);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    int next = 0;
    push_all(p, &next, 5);
    /* stop while item 0 is in the handler: 1..4 are discarded at once, the
     * stop waits for the handler, which then finishes item 0 */
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, stop_thread, p), 0);
    wait_discarded(&t, NULL, 4);
    ck_assert_int_eq(stage_wait_demand(p, 10), -ECANCELED);
    ck_assert_int_eq(seen(&t), 0);
    sem_post(&t.unblock);
    pthread_join(th, NULL);
    ck_assert_int_eq(seen(&t), 1);
    ck_assert_int_eq(t.discarded, 5); /* 4 queued + the finished one (last stage) */
    stage_pipeline_destroy(p);
}
END_TEST

START_TEST(test_stop_unblocks_forwarder)
{
    /* a's thread blocked handing on (b full) must exit on stop */
    struct tstage a, b;
    tstage_init(&a, false);
    tstage_init(&b, true);
    struct stage_spec specs[2] = {
        {.name = "a",
         .short_name = "a",
         .concurrency = 1,
         .max_demand = 1,
         .min_demand = 0,
         .ops = &t_ops,
         .arg = &a},
        {.name = "b",
         .short_name = "b",
         .concurrency = 1,
         .max_demand = 1,
         .min_demand = 0,
         .ops = &t_ops,
         .arg = &b},
    };
    struct stage_pipeline *p = stage_pipeline_create(specs, 2);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    int next = 0;
    /* a handled 2: item 0 went to b (in b's handler), item 1 is blocked in
     * a's hand-off; nobody asks for a third */
    push_all(p, &next, 2);
    wait_seen(&a, 2);
    ck_assert_int_eq(stage_wait_demand(p, 50), 0);
    ck_assert_int_eq(seen(&a), 2);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, stop_thread, p), 0);
    /* the stop frees a's thread from its hand-off: item 1 is discarded */
    wait_discarded(&a, &b, 1);
    ck_assert_int_eq(stage_wait_demand(p, 10), -ECANCELED);
    sem_post(&b.gate); /* b's handler finishes its step; then everything exits */
    pthread_join(th, NULL);
    ck_assert_int_eq(seen(&b), 1);
    /* item 1 (blocked in a's hand-off) and item 0 (finished by the last stage) */
    ck_assert_int_eq(a.discarded + b.discarded, 2);
    stage_pipeline_destroy(p);
}
END_TEST

static int fail_first_init(void *arg, int index, void **tls)
{
    (void)arg;
    *tls = NULL;
    return index == 0 ? -EIO : 0;
}

START_TEST(test_thread_init_failure)
{
    /* a thread that cannot start takes no work; its sibling does it all */
    struct tstage t;
    tstage_init(&t, false);
    struct stage_ops ops = t_ops;
    ops.thread_init = fail_first_init;
    struct stage_spec spec = {.name = "f",
                              .short_name = "f",
                              .concurrency = 2,
                              .max_demand = 2,
                              .min_demand = 1,
                              .ops = &ops,
                              .arg = &t};
    struct stage_pipeline *p = stage_pipeline_create(&spec, 1);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    int next = 0;
    while (next < 30)
        push_until_full(p, &next, 30);
    wait_seen(&t, 30);
    for (int i = 0; i < 30; i++)
        ck_assert_str_eq(t.names[i], "f-2");
    stage_pipeline_destroy(p);
}
END_TEST

/* ---- batches ---- */

struct bstage {
    pthread_mutex_t mu;
    sem_t unblock;
    int batches[64][2]; /* (first item, size) of each batch */
    int n_batches;
    int handled[64]; /* times each item was handled (not given back) */
    int blocking;    /* batches that start with an item below this wait for unblock */
    int again_first; /* give back all but the first item of this many batches (of 2 or more) */
    int given_back;
};

static void b_handle(void *arg, void *tls, struct stage_item **its, int n, enum stage_verdict *v)
{
    (void)tls;
    struct bstage *b = arg;
    int first = ((struct titem *)its[0])->n;
    if (first < b->blocking)
        sem_wait(&b->unblock); /* the others queue up meanwhile */
    pthread_mutex_lock(&b->mu);
    bool give_back = b->again_first > 0 && n > 1;
    if (give_back)
        b->again_first--;
    if (b->n_batches < 64) {
        b->batches[b->n_batches][0] = first;
        b->batches[b->n_batches][1] = give_back ? 1 : n;
        b->n_batches++;
    }
    for (int i = 0; i < n; i++) {
        v[i] = give_back && i > 0 ? STAGE_AGAIN : STAGE_FORWARD;
        if (v[i] == STAGE_FORWARD)
            b->handled[((struct titem *)its[i])->n]++;
        else
            b->given_back++;
    }
    pthread_mutex_unlock(&b->mu);
}

static void b_discard(void *arg, struct stage_item *it)
{
    (void)arg;
    (void)it; /* the last stage hands its items back: nothing to free */
}

static const struct stage_ops b_ops = {.handle_batch = b_handle, .discard = b_discard};

static int b_batches(struct bstage *b)
{
    pthread_mutex_lock(&b->mu);
    int n = b->n_batches;
    pthread_mutex_unlock(&b->mu);
    return n;
}

/* Push items from..n-1 (costs from cost[]) as demand allows. */
static void push_costed(struct stage_pipeline *p, int from, int n, const uint64_t *cost)
{
    int next = from;
    int64_t end = dr_mono_ms() + DEADLINE_MS;
    while (next < n && dr_mono_ms() < end) {
        int d = stage_wait_demand(p, 50);
        for (int k = 0; k < d && next < n; k++, next++) {
            items[next].n = next;
            items[next].link.cost = cost[next];
            struct stage_item *it = &items[next].link;
            ck_assert_int_eq(stage_push(p, &it, 1), 1);
        }
    }
    ck_assert_int_eq(next, n);
}

START_TEST(test_batches_by_count_and_cost)
{
    /* One thread takes the items queued behind the one it pops: at most
     * max_batch, costs adding up to at most batch_cost; a costly item
     * goes alone; the batches reach the next stage in order. */
    struct bstage b;
    memset(&b, 0, sizeof b);
    pthread_mutex_init(&b.mu, NULL);
    sem_init(&b.unblock, 0, 0);
    b.blocking = 1;
    struct tstage next;
    tstage_init(&next, false);
    struct stage_spec specs[2] = {
        {.name = "b",
         .short_name = "b",
         .concurrency = 1,
         .max_demand = 32,
         .min_demand = 1,
         .max_batch = 8,
         .batch_cost = 10,
         .ops = &b_ops,
         .arg = &b},
        {.name = "n",
         .short_name = "n",
         .concurrency = 1,
         .max_demand = 32,
         .min_demand = 1,
         .ops = &t_ops,
         .arg = &next},
    };
    struct stage_pipeline *p = stage_pipeline_create(specs, 2);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    uint64_t cost[20];
    for (int i = 0; i < 20; i++)
        cost[i] = i == 5 ? 100 : 1;
    push_costed(p, 0, 1, cost);
    struct stage_stats st;
    int64_t end = dr_mono_ms() + DEADLINE_MS;
    do { /* until item 0 is in the handler: the rest queue up behind it */
        stage_get_stats(p, 0, &st);
        if (st.in_flight != 1)
            usleep(1000);
    } while (st.in_flight != 1 && dr_mono_ms() < end);
    ck_assert_int_eq(st.in_flight, 1);
    push_costed(p, 1, 20, cost);
    stage_get_stats(p, 0, &st);
    ck_assert_int_eq(st.queued, 19);
    sem_post(&b.unblock);
    wait_seen(&next, 20);
    static const int want[][2] = {{0, 1}, {1, 4}, {5, 1}, {6, 8}, {14, 6}};
    ck_assert_int_eq(b_batches(&b), 5);
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(b.batches[i][0], want[i][0]);
        ck_assert_int_eq(b.batches[i][1], want[i][1]);
    }
    for (int i = 0; i < 20; i++)
        ck_assert_int_eq(next.seen[i], i); /* in order */
    stage_get_stats(p, 0, &st);
    ck_assert_uint_eq(st.processed, 20);
    ck_assert_int_le(st.max_outstanding_seen, 32);
    stage_pipeline_destroy(p);
}
END_TEST

START_TEST(test_again_gives_items_back)
{
    /* A handler that gives back what it did not start: the items return to
     * the front of the inbox, are handled exactly once, by either thread,
     * and the demand bookkeeping still lets everything through. */
    struct bstage b;
    memset(&b, 0, sizeof b);
    pthread_mutex_init(&b.mu, NULL);
    sem_init(&b.unblock, 0, 0);
    b.blocking = 2;
    b.again_first = 3;
    struct stage_spec spec = {.name = "a",
                              .short_name = "a",
                              .concurrency = 2,
                              .max_demand = 8,
                              .min_demand = 2,
                              .max_batch = 16,
                              .ops = &b_ops,
                              .arg = &b};
    struct stage_pipeline *p = stage_pipeline_create(&spec, 1);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    uint64_t cost[60] = {0};
    /* items 0 and 1 hold both threads, 2..15 queue up behind them */
    push_costed(p, 0, 1, cost);
    int64_t end = dr_mono_ms() + DEADLINE_MS;
    struct stage_stats st;
    do {
        stage_get_stats(p, 0, &st);
        if (st.in_flight != 1)
            usleep(1000);
    } while (st.in_flight != 1 && dr_mono_ms() < end);
    push_costed(p, 1, 2, cost);
    do {
        stage_get_stats(p, 0, &st);
        if (st.in_flight != 2)
            usleep(1000);
    } while (st.in_flight != 2 && dr_mono_ms() < end);
    push_costed(p, 2, 16, cost);
    sem_post(&b.unblock);
    sem_post(&b.unblock);
    push_costed(p, 16, 60, cost);
    do {
        stage_get_stats(p, 0, &st);
        if (st.processed < 60)
            usleep(1000);
    } while (st.processed < 60 && dr_mono_ms() < end);
    ck_assert_uint_eq(st.processed, 60);
    for (int i = 0; i < 60; i++)
        ck_assert_int_eq(b.handled[i], 1);
    ck_assert_int_eq(b.again_first, 0);
    ck_assert_int_gt(b.given_back, 0);
    stage_pipeline_destroy(p);
}
END_TEST

/* ---- wake-ups: one signal per hand-over, passed on ---- */

/* A stage whose handlers meet: each batch waits (up to DEADLINE_MS) until
 * `meet` batches are in handlers at once. */
struct mstage {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int meet;
    int inside, max_inside;
    int handled;
    int sizes[16]; /* size of each batch */
    int n_batches;
};

static void m_handle(void *arg, void *tls, struct stage_item **its, int n, enum stage_verdict *v)
{
    (void)tls;
    (void)its;
    struct mstage *m = arg;
    struct timespec ts;
    dr_mono_timespec(&ts, dr_mono_ms() + DEADLINE_MS);
    pthread_mutex_lock(&m->mu);
    m->inside++;
    if (m->inside > m->max_inside)
        m->max_inside = m->inside;
    if (m->n_batches < 16)
        m->sizes[m->n_batches++] = n;
    pthread_cond_broadcast(&m->cv);
    while (m->max_inside < m->meet)
        if (pthread_cond_timedwait(&m->cv, &m->mu, &ts) == ETIMEDOUT)
            break;
    m->inside--;
    m->handled += n;
    pthread_mutex_unlock(&m->mu);
    for (int i = 0; i < n; i++)
        v[i] = STAGE_FORWARD;
}

static const struct stage_ops m_ops = {.handle_batch = m_handle, .discard = b_discard};

/* Once every thread of the stage waits for items (the stage's demand is
 * n: each thread asked under the stage's lock, then waited on it), push n
 * items at once (one call, one signal) and wait until all are handled. */
static void push_at_once(struct stage_pipeline *p, struct mstage *m, int threads, int n)
{
    int64_t end = dr_mono_ms() + DEADLINE_MS;
    struct stage_stats st;
    do {
        stage_get_stats(p, 0, &st);
        if (st.demand < n)
            usleep(1000);
    } while (st.demand < n && dr_mono_ms() < end);
    ck_assert_int_eq(st.demand, n);
    struct stage_item *its[16];
    for (int i = 0; i < n; i++) {
        items[i].n = i;
        items[i].link.cost = 0;
        its[i] = &items[i].link;
    }
    ck_assert_int_eq(stage_push(p, its, n), n);
    do {
        pthread_mutex_lock(&m->mu);
        int h = m->handled;
        pthread_mutex_unlock(&m->mu);
        if (h == n)
            break;
        usleep(1000);
    } while (dr_mono_ms() < end);
    pthread_mutex_lock(&m->mu);
    ck_assert_int_eq(m->handled, n);
    ck_assert_int_eq(m->max_inside, threads); /* no item waited for a busy thread */
    pthread_mutex_unlock(&m->mu);
}

START_TEST(test_signal_one_wakes_enough)
{
    /* Four items pushed at once into a stage of four idle threads that do
     * not batch: the push wakes one thread, each thread that leaves items
     * behind wakes the next, so all four run at once (the handlers only
     * return once four are inside). */
    struct mstage m = {.meet = 4};
    pthread_mutex_init(&m.mu, NULL);
    dr_cond_init_mono(&m.cv);
    struct stage_spec spec = {.name = "s",
                              .short_name = "s",
                              .concurrency = 4,
                              .max_demand = 1, /* demand 4: every thread asked */
                              .min_demand = 0,
                              .max_batch = 1,
                              .ops = &m_ops,
                              .arg = &m};
    struct stage_pipeline *p = stage_pipeline_create(&spec, 1);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    push_at_once(p, &m, 4, 4);
    ck_assert_int_eq(m.n_batches, 4);
    stage_pipeline_destroy(p);
    pthread_cond_destroy(&m.cv);
    pthread_mutex_destroy(&m.mu);
}
END_TEST

START_TEST(test_signal_one_batches)
{
    /* Six items at once, batches of at most two, three threads: three
     * batches of two run at once. With batches of up to eight, the one
     * woken thread takes all six and wakes nobody. */
    struct mstage m = {.meet = 3};
    pthread_mutex_init(&m.mu, NULL);
    dr_cond_init_mono(&m.cv);
    struct stage_spec spec = {.name = "s",
                              .short_name = "s",
                              .concurrency = 3,
                              .max_demand = 2, /* demand 6: every thread asked */
                              .min_demand = 0,
                              .max_batch = 2,
                              .ops = &m_ops,
                              .arg = &m};
    struct stage_pipeline *p = stage_pipeline_create(&spec, 1);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    push_at_once(p, &m, 3, 6);
    ck_assert_int_eq(m.n_batches, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(m.sizes[i], 2);
    stage_pipeline_destroy(p);

    struct mstage one = {.meet = 1};
    pthread_mutex_init(&one.mu, NULL);
    dr_cond_init_mono(&one.cv);
    spec.max_batch = 8;
    spec.arg = &one;
    p = stage_pipeline_create(&spec, 1);
    ck_assert_int_eq(stage_pipeline_start(p), 0);
    push_at_once(p, &one, 1, 6);
    ck_assert_int_eq(one.n_batches, 1);
    ck_assert_int_eq(one.sizes[0], 6);
    stage_pipeline_destroy(p);
    pthread_cond_destroy(&one.cv);
    pthread_mutex_destroy(&one.mu);
    pthread_cond_destroy(&m.cv);
    pthread_mutex_destroy(&m.mu);
}
END_TEST

static Suite *stage_suite(void)
{
    Suite *s = suite_create("stage");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_demand_ask);
    tcase_add_test(tc, test_demand_clamp);
    tcase_add_test(tc, test_backoff);
    tcase_add_test(tc, test_slow_consumer_bounded);
    tcase_add_test(tc, test_backpressure_two_stages);
    tcase_add_test(tc, test_work_sharing);
    tcase_add_test(tc, test_stop_discards_queued);
    tcase_add_test(tc, test_stop_unblocks_forwarder);
    tcase_add_test(tc, test_thread_init_failure);
    tcase_add_test(tc, test_batches_by_count_and_cost);
    tcase_add_test(tc, test_again_gives_items_back);
    tcase_add_test(tc, test_signal_one_wakes_enough);
    tcase_add_test(tc, test_signal_one_batches);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(stage_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/* pipeline_commit.c - group commit of job steps (pipeline_commit.h).
 *
 * DESIGN
 *
 * A waiting list of requests (each on its submitter's stack, each one or
 * more steps: a stage thread submits its whole batch at once) under one
 * mutex, and a "leading" flag. A submitter appends its request; while its
 * request is not done it either waits (someone leads) or becomes the
 * leader: it takes requests from the head while they hold at most
 * max_batch steps in all (at least one request, whatever its size), drops
 * the mutex, commits them in one catalog_jobs_step_deferred transaction
 * (the shared connection, or its own), then, under the mutex again,
 * writes each result back and gives up the lead: the next batch's leader
 * begins its transaction while this one makes its commit durable
 * (catalog_make_durable: the WAL's fsync, on the thread's own handle;
 * issue 15, the fsync was ~1 ms of each commit under load). Then it marks
 * its batch's requests done and runs the commit callback (under a mutex
 * of its own: callbacks never overlap, though they may come out of
 * commit order; a later batch's fsync covers every earlier commit). If
 * its own request did not fit in the batch it goes round again.
 *
 * Wake-ups (issue 15: each is a context switch). Each request has its own
 * condition variable (on its submitter's stack), and a waiter is woken
 * only when it has something to do: when its request is done (the leader
 * signals the other submitters in its batch; alone in it, it wakes
 * nobody), or when the lead is free and its request is the oldest waiting
 * (the leader that gives up the lead signals the head's submitter, who
 * leads the next batch). A request taken into a batch is out of the
 * waiting list and never leads, also while its batch's fsync runs. A broadcast on one shared
 * variable woke every waiter twice per commit, to find its request done
 * or not, and the lead taken or not.
 *
 * Priority: the leader counts its transaction as a priority commit of the
 * catalog's writer (metrics_writer_enter, from before its BEGIN to its
 * end), so the http worker's intake lets it go first (ingest.c): one
 * commit here finishes a batch of jobs, one there accepts uploads that
 * only add to the queue.
 *
 * Threads: any; a request's step is read by the leader only between its
 * hand-over and its completion, both under the mutex (the happens-before
 * edges TSan wants). Lock order: the mutex is a leaf; the catalog call and
 * the callback run without it.
 */
#include "pipeline_commit.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/util.h"

struct req {
    struct dr_job_step *steps;
    int n;
    int rc;
    bool in_batch; /* taken by a leader: waits for it to finish the batch */
    bool done;
    pthread_cond_t cv; /* its submitter waits here: done, or its turn to lead */
    struct req *next;
};

struct pl_committer {
    pthread_mutex_t mu;
    struct req *head, *tail; /* waiting, oldest first */
    bool leading;
    int max_batch;
    struct dr_job_step *buf; /* the leader's copy of its batch's steps (cap) */
    size_t cap;
    struct req **batch; /* the leader's requests (max_batch) */
    pl_commit_cb cb;
    void *arg;
    pthread_mutex_t cb_mu;         /* callbacks never overlap */
    struct dr_proc_gauges *gauges; /* NULL: no priority (tests) */
    uint64_t transactions, steps;
    /* The shared connection (pl_committer_share_conn), under conn_mu. */
    const struct dr_config *cfg; /* NULL: none, each leader commits on its own */
    pthread_mutex_t conn_mu;
    struct catalog *conn;
};

struct pl_committer *pl_committer_create(int max_batch, pl_commit_cb cb, void *arg)
{
    struct pl_committer *c = xcalloc(1, sizeof *c);
    c->max_batch = max_batch < 1 ? 1 : max_batch;
    c->cap = (size_t)c->max_batch;
    c->buf = xcalloc(c->cap, sizeof *c->buf);
    c->batch = xcalloc((size_t)c->max_batch, sizeof *c->batch);
    c->cb = cb;
    c->arg = arg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->conn_mu, NULL);
    pthread_mutex_init(&c->cb_mu, NULL);
    return c;
}

void pl_committer_share_conn(struct pl_committer *c, const struct dr_config *cfg)
{
    c->cfg = cfg;
}

/* With conn_mu held: the shared connection (opened now if need be), or
 * fallback when there is none. One that cannot be opened is not tried
 * again at every commit: sharing is off from then on (it only saves
 * page reads; each caller's own connection works as before). */
static struct catalog *conn_get(struct pl_committer *c, struct catalog *fallback)
{
    if (c->cfg != NULL && c->conn == NULL) {
        int rc = catalog_open(c->cfg, &c->conn);
        if (rc != 0) {
            log_warn("group commit: no connection of its own (%s): each stage thread "
                     "commits on its own",
                     strerror(-rc));
            c->conn = NULL;
            c->cfg = NULL;
        }
    }
    return c->conn != NULL ? c->conn : fallback;
}

int pl_committer_run(struct pl_committer *c, struct catalog *fallback,
                     int (*fn)(struct catalog *cat, void *arg), void *arg)
{
    pthread_mutex_lock(&c->conn_mu);
    int rc = fn(conn_get(c, fallback), arg);
    pthread_mutex_unlock(&c->conn_mu);
    return rc;
}

void pl_committer_set_gauges(struct pl_committer *c, struct dr_proc_gauges *gauges)
{
    c->gauges = gauges;
}

void pl_committer_destroy(struct pl_committer *c)
{
    if (c == NULL)
        return;
    catalog_close(c->conn);
    pthread_mutex_destroy(&c->conn_mu);
    pthread_mutex_destroy(&c->cb_mu);
    pthread_mutex_destroy(&c->mu);
    free(c->buf);
    free(c->batch);
    free(c);
}

/* Caller holds mu and is the leader, `me` its request: run one batch.
 * Returns with mu held and the lead given up. */
static void lead(struct pl_committer *c, struct catalog *cat, struct req *me)
{
    int nr = 0;
    size_t n = 0;
    while (c->head != NULL && nr < c->max_batch &&
           (nr == 0 || n + (size_t)c->head->n <= (size_t)c->max_batch)) {
        struct req *r = c->head;
        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->batch[nr++] = r;
        if (n + (size_t)r->n > c->cap) { /* a request bigger than max_batch */
            c->cap = n + (size_t)r->n;
            c->buf = xrealloc(c->buf, c->cap * sizeof *c->buf);
        }
        memcpy(c->buf + n, r->steps, (size_t)r->n * sizeof *c->buf);
        n += (size_t)r->n;
    }
    pthread_mutex_unlock(&c->mu);

    int64_t seq = 0;
    if (c->gauges != NULL)
        metrics_writer_enter(c->gauges);
    pthread_mutex_lock(&c->conn_mu);
    struct catalog *conn = conn_get(c, cat);
    int rc = catalog_jobs_step_deferred(conn, c->buf, n, &seq);
    pthread_mutex_unlock(&c->conn_mu);
    if (c->gauges != NULL)
        metrics_writer_leave(c->gauges);
    int done = 0;
    for (size_t i = 0; i < n; i++)
        if (rc == 0 && c->buf[i].result == 0 && c->buf[i].next_stage == NULL)
            done++;

    /* The results go back now (buf and batch are the next leader's), and
     * the lead goes to the oldest request waiting: its transaction runs
     * while this one's fsync does. The batch's requests are linked
     * through next (no longer in the waiting list) until they are done. */
    pthread_mutex_lock(&c->mu);
    size_t k = 0;
    struct req *mine = NULL;
    for (int i = nr - 1; i >= 0; i--) {
        struct req *r = c->batch[i];
        r->next = mine;
        mine = r;
    }
    for (struct req *r = mine; r != NULL; r = r->next) {
        for (int j = 0; j < r->n; j++, k++) {
            r->steps[j].result = c->buf[k].result;
            r->steps[j].media_gone = c->buf[k].media_gone;
        }
        r->in_batch = true;
    }
    c->transactions++;
    c->steps += (uint64_t)n;
    c->leading = false;
    if (c->head != NULL && c->head != me)
        pthread_cond_signal(&c->head->cv);
    pthread_mutex_unlock(&c->mu);

    /* On this thread's own handle: the shared one is the next leader's
     * (a leader without a handle of its own takes its turn on it). */
    if (rc == 0) {
        if (cat == NULL)
            pthread_mutex_lock(&c->conn_mu);
        rc = catalog_make_durable(cat != NULL ? cat : conn, DR_WRITER_STEPS);
        if (cat == NULL)
            pthread_mutex_unlock(&c->conn_mu);
        if (rc < 0)
            log_error("group commit: %d steps committed, but their fsync failed", (int)n);
    }

    pthread_mutex_lock(&c->mu);
    for (struct req *r = mine, *next; r != NULL; r = next) {
        next = r->next; /* r may be freed once it is done and mu free */
        r->rc = rc;
        r->done = true;
        if (r != me)
            pthread_cond_signal(&r->cv);
    }
    if (rc == 0 && c->cb != NULL) {
        pthread_mutex_unlock(&c->mu);
        pthread_mutex_lock(&c->cb_mu);
        c->cb(c->arg, cat, seq, done);
        pthread_mutex_unlock(&c->cb_mu);
        pthread_mutex_lock(&c->mu);
    }
}

int pl_commit_steps(struct pl_committer *c, struct catalog *cat, struct dr_job_step *steps, int n)
{
    if (n <= 0)
        return 0;
    struct req me = {.steps = steps, .n = n};
    pthread_cond_init(&me.cv, NULL);
    pthread_mutex_lock(&c->mu);
    if (c->tail != NULL)
        c->tail->next = &me;
    else
        c->head = &me;
    c->tail = &me;
    while (!me.done) {
        if (c->leading || me.in_batch) {
            pthread_cond_wait(&me.cv, &c->mu);
            continue;
        }
        c->leading = true;
        lead(c, cat, &me);
        /* Mine did not fit: I lead again once the lead is free (lead()
         * handed it to the head, which is mine then, or to an older one). */
    }
    pthread_mutex_unlock(&c->mu);
    pthread_cond_destroy(&me.cv);
    return me.rc;
}

void pl_committer_stats(struct pl_committer *c, uint64_t *transactions, uint64_t *steps)
{
    pthread_mutex_lock(&c->mu);
    if (transactions)
        *transactions = c->transactions;
    if (steps)
        *steps = c->steps;
    pthread_mutex_unlock(&c->mu);
}

/* pipeline_commit.c - group commit of job steps (pipeline_commit.h).
 *
 * DESIGN
 *
 * A waiting list of requests (each on its submitter's stack) under one
 * mutex, and a "leading" flag. A submitter appends its request; while its
 * request is not done it either waits (someone leads) or becomes the
 * leader: it takes up to max_batch requests from the head, drops the
 * mutex, commits them in one catalog_jobs_step transaction on its own
 * connection, then, under the mutex again, writes each result back, marks
 * the requests done and wakes everyone. Then it runs the commit callback
 * (still the leader, so callbacks never overlap and the next batch keeps
 * growing meanwhile) and gives up the lead. If its own request did not fit
 * in the batch it goes round again.
 *
 * Threads: any; a request's step is read by the leader only between its
 * hand-over and its completion, both under the mutex (the happens-before
 * edges TSan wants). Lock order: the mutex is a leaf; the catalog call and
 * the callback run without it.
 */
#include "pipeline_commit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/util.h"

struct req {
    struct dr_job_step *step;
    int rc;
    bool done;
    struct req *next;
};

struct pl_committer {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct req *head, *tail; /* waiting, oldest first */
    bool leading;
    int max_batch;
    struct dr_job_step *buf; /* the leader's copy of its batch (max_batch) */
    struct req **batch;      /* the leader's requests (max_batch) */
    pl_commit_cb cb;
    void *arg;
    uint64_t transactions, steps;
};

struct pl_committer *pl_committer_create(int max_batch, pl_commit_cb cb, void *arg)
{
    struct pl_committer *c = xcalloc(1, sizeof *c);
    c->max_batch = max_batch < 1 ? 1 : max_batch;
    c->buf = xcalloc((size_t)c->max_batch, sizeof *c->buf);
    c->batch = xcalloc((size_t)c->max_batch, sizeof *c->batch);
    c->cb = cb;
    c->arg = arg;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    return c;
}

void pl_committer_destroy(struct pl_committer *c)
{
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c->buf);
    free(c->batch);
    free(c);
}

/* Caller holds mu and is the leader: run one batch. Returns with mu held. */
static void lead(struct pl_committer *c, struct catalog *cat)
{
    int n = 0;
    while (c->head != NULL && n < c->max_batch) {
        struct req *r = c->head;
        c->head = r->next;
        if (c->head == NULL)
            c->tail = NULL;
        c->batch[n] = r;
        c->buf[n] = *r->step;
        n++;
    }
    pthread_mutex_unlock(&c->mu);

    int64_t seq = 0;
    int rc = catalog_jobs_step(cat, c->buf, (size_t)n, &seq);
    int done = 0;
    for (int i = 0; i < n; i++)
        if (rc == 0 && c->buf[i].result == 0 && c->buf[i].next_stage == NULL)
            done++;

    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < n; i++) {
        struct req *r = c->batch[i];
        r->step->result = c->buf[i].result;
        r->step->media_gone = c->buf[i].media_gone;
        r->rc = rc;
        r->done = true;
    }
    c->transactions++;
    c->steps += (uint64_t)n;
    pthread_cond_broadcast(&c->cv);
    if (rc == 0 && c->cb != NULL) {
        pthread_mutex_unlock(&c->mu);
        c->cb(c->arg, cat, seq, done);
        pthread_mutex_lock(&c->mu);
    }
}

int pl_commit_step(struct pl_committer *c, struct catalog *cat, struct dr_job_step *step)
{
    struct req me = {.step = step};
    pthread_mutex_lock(&c->mu);
    if (c->tail != NULL)
        c->tail->next = &me;
    else
        c->head = &me;
    c->tail = &me;
    while (!me.done) {
        if (c->leading) {
            pthread_cond_wait(&c->cv, &c->mu);
            continue;
        }
        c->leading = true;
        lead(c, cat);
        c->leading = false;
        pthread_cond_broadcast(&c->cv); /* a waiter may lead the next batch */
    }
    pthread_mutex_unlock(&c->mu);
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

/* pipeline_commit.h - group commit of job steps for the pipeline worker.
 *
 * Every finished stage of every job is one durable catalog commit, and in
 * SQLite's WAL mode commits are serialised, each with its own fsync: a
 * pipeline that commits stages one by one does at most one stage per
 * fsync, whatever its number of threads. A committer lets the stage
 * threads of a process share commits: a thread that finished a step
 * submits it and waits; if no commit is in flight it leads, taking every
 * step queued so far (its own included) into one catalog_jobs_step
 * transaction on its own connection; steps submitted meanwhile wait for
 * the next leader. Alone, a thread commits at once (no timer, no added
 * latency); under load, one fsync covers the steps of many jobs.
 *
 * Durability is unchanged: pl_commit_steps returns only after the
 * transaction holding the step committed and was made durable (or
 * failed). The fsync after a commit runs on its leader's own connection
 * after the lead went to the next batch, so the next transaction and that
 * fsync overlap.
 *
 * Threads: any number of threads, each with its own catalog connection
 * (or one shared connection: pl_committer_share_conn). Lock order: the
 * committer's mutex is a leaf; no catalog call and no callback runs under
 * it. The shared connection's mutex is held for one catalog transaction
 * (or, for a leader without a connection of its own, the fsync after it)
 * and nothing else is taken under it but the catalog's own writer lock.
 */
#ifndef DRIPD_PIPELINE_COMMIT_H
#define DRIPD_PIPELINE_COMMIT_H

#include <stdint.h>

#include "dripd/catalog.h"

struct pl_committer;

/* Called by the leader after each transaction that committed and is
 * durable, outside the lock, on the leader's thread, with its connection
 * (callbacks never overlap, but a later transaction's may come first):
 * last_seq is the newest event seq written (0 if none) and done the
 * number of steps that finished a job. */
typedef void (*pl_commit_cb)(void *arg, struct catalog *cat, int64_t last_seq, int done);

/* max_batch: steps per transaction (>= 1; a bigger request goes alone).
 * cb may be NULL. */
struct pl_committer *pl_committer_create(int max_batch, pl_commit_cb cb, void *arg);
void pl_committer_destroy(struct pl_committer *c); /* NULL ok; no thread may be inside */
/* Count each transaction as a priority commit of the catalog's writer in
 * gauges (metrics.h, metrics_writer_enter), so that the intake lets it go
 * first. Before the first commit; gauges is borrowed (the process's own
 * block, which outlives the committer). */
struct dr_proc_gauges;
void pl_committer_set_gauges(struct pl_committer *c, struct dr_proc_gauges *gauges);

/* Commit n steps (a stage thread's batch) durably in one transaction,
 * possibly with other threads' steps (see above), on cat if this thread
 * leads. Blocks until the transaction holding them ended (and, committed,
 * is durable). Returns 0 when it committed (each steps[i].result says whether that step applied, as
 * catalog_jobs_step), else the transaction's -errno (nothing of the steps
 * was committed; each result is that -errno too; -EIO also when the fsync
 * after a commit failed). The steps' strings are
 * borrowed until the call returns. */
int pl_commit_steps(struct pl_committer *c, struct catalog *cat, struct dr_job_step *steps, int n);

/* One connection for the process's job writes (issue 15): from now on the
 * batches commit on a catalog connection of the committer's own (opened
 * with cfg at the first use; should that fail, the leader's, from then
 * on), and
 * pl_committer_run lends it out. SQLite drops a connection's whole page
 * cache when another connection has written since its last transaction;
 * with the claim and the step commits on one connection, the pages one
 * reads (the jobs' rows, their bodies' overflow pages, the indexes) are
 * still cached for the other. Before the first commit; cfg is borrowed. */
struct dr_config;
void pl_committer_share_conn(struct pl_committer *c, const struct dr_config *cfg);
/* fn(cat, arg) on the shared connection (fallback: none, or it cannot be
 * opened), alone on it: no batch commits meanwhile. Returns fn's result.
 * fn must end any transaction it begins. */
int pl_committer_run(struct pl_committer *c, struct catalog *fallback,
                     int (*fn)(struct catalog *cat, void *arg), void *arg);

/* Stats for tests and logs: transactions run and steps committed. */
void pl_committer_stats(struct pl_committer *c, uint64_t *transactions, uint64_t *steps);

#endif

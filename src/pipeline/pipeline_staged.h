/* pipeline_staged.h - an upload's bytes on this node, wherever it was
 * accepted (cluster mode: staged bodies, docs/CLUSTER.md). */
#ifndef DRIPD_PIPELINE_STAGED_H
#define DRIPD_PIPELINE_STAGED_H

#include <stdbool.h>
#include <stddef.h>

#include "pipeline.h"

/* Before a step reads the upload's bytes: make them local. An inline body
 * (a small upload's bytes claimed with its job, j->job.body:
 * docs/CATALOG.md, "Inline bodies") stays in memory, unless need_file (a
 * decoder reads a file): then it is written, not synced, into
 * <work_dir>/<job id>.body, which becomes the job's spool path in memory
 * (j->scratch_body), and the memory is freed. Nothing to do for a job
 * without a staged body, or when its spool file is on this node (the node
 * that took the upload, the common case). Otherwise (another node took
 * it, or this node lost its disk) the body's parts are fetched from the
 * store, verified, into <work_dir>/<job id>.body, the same way.
 * 0, or -errno + err (-EAGAIN and the store's transient errors: retry). */
int pl_staged_body(struct pl_tls *t, struct pl_job *j, bool need_file, char *err, size_t errlen);

/* The collector of staged parts nothing needs any more (their job is
 * done or failed, their tus session gone; catalog_staged_garbage): one
 * thread ("staged-gc") per pipeline worker in cluster mode, working on
 * the node that holds the "staged-gc" lease, so once per cluster. It
 * deletes each part's object, then its row. NULL (nothing to collect)
 * with a SQLite catalog. Stop it after pl_ctx_stop(pc): it joins. */
struct pl_staged_gc;
struct pl_staged_gc *pl_staged_gc_start(struct pl_ctx *pc);
void pl_staged_gc_stop(struct pl_staged_gc *g); /* NULL ok */

#endif

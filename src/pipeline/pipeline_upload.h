/* pipeline_upload.h - the steps of the upload pipeline (encrypt -> store
 * -> notify), run by pipeline_worker.c on its stage threads. The step
 * contract (pl_step_fn, idempotence, errors) is pipeline.h's; what each
 * step does is in pipeline_upload.c's design comment.
 */
#ifndef DRIPD_PIPELINE_UPLOAD_H
#define DRIPD_PIPELINE_UPLOAD_H

#include "pipeline.h"

int pl_upload_encrypt(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                      size_t errlen);
int pl_upload_store(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                    size_t errlen);
int pl_upload_notify(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                     size_t errlen);
/* After the commit of a job's done: remove its spool file and the
 * stripped original (the cache has its own link to the one it keeps). */
void pl_upload_forget(const struct pl_ctx *pc, const struct pl_job *j);
/* Remove the node-local files of a job that failed for good (spool file,
 * sealed scratch, a cache entry notify may have made). */
void pl_upload_cleanup(struct pl_tls *t, struct pl_job *j);

#endif

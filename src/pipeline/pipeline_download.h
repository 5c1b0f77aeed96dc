/* pipeline_download.h - the steps of the download pipeline (fetch ->
 * decrypt -> notify: a cache warm-up), run by pipeline_worker.c on its
 * stage threads. The step contract (pl_step_fn, idempotence, errors) is
 * pipeline.h's; what each step does is in pipeline_download.c's design
 * comment.
 */
#ifndef DRIPD_PIPELINE_DOWNLOAD_H
#define DRIPD_PIPELINE_DOWNLOAD_H

#include "pipeline.h"

int pl_download_fetch(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                      size_t errlen);
int pl_download_decrypt(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                        size_t errlen);
int pl_download_notify(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                       size_t errlen);
/* Remove the node-local scratch of a job that failed for good. */
void pl_download_cleanup(struct pl_tls *t, struct pl_job *j);

#endif

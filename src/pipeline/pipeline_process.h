/* pipeline_process.h - the upload pipeline's first stage, "process"
 * (starter -> process -> encrypt -> store -> notify), and the same work
 * for media already stored (reprocess). See pipeline_process.c and
 * docs/PROCESSING.md.
 */
#ifndef DRIPD_PIPELINE_PROCESS_H
#define DRIPD_PIPELINE_PROCESS_H

#include "pipeline.h"

/* The step: the real type, the metadata and the variants of the job's
 * spool file, each variant sealed and stored as an object of its own,
 * all recorded in the catalog. A file the decoders refuse, or a helper
 * that crashes or hangs, is not an error of the step: its variants are
 * recorded as failed with the reason and the job goes on. Errors (retried
 * as usual) are the catalog's and a missing spool file. */
int pl_process_step(struct pl_tls *t, struct pl_job *j, char **work_path_out, char *err,
                    size_t errlen);

/* Process the plaintext file open at fd (read from offset 0; not closed)
 * for media m, stored or not: what the step does, for reprocess too. tag
 * names the scratch files (unique per caller, e.g. a job id). strip_to
 * (NULL: no stripping) names where an image's original without its
 * metadata goes, made durable there (fsync, rename, directory fsync);
 * *stripped (may be NULL) gets its size, 0 when none was written (not an
 * image, nothing to remove, a format or file that cannot be stripped, a
 * failed helper; the metadata's "stripped" says which). *decoded (may be
 * NULL) is set when a helper ran (nothing is recorded when the file is
 * not media). 0 / -errno + err as the step. */
int pl_process_file(struct pl_tls *t, const struct dr_media *m, int fd, const char *tag,
                    const char *strip_to, uint64_t *stripped, bool *decoded, char *err,
                    size_t errlen);

/* "<original's key>~<name>.<ext>": the store key of a media's variant
 * (never a key the original could have: those have no '~'). out >= 64. */
void pl_process_variant_key(const struct dr_media *m, const char *name, const char *format,
                            char *out, size_t outlen);

#endif

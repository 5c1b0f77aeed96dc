/* reprocess.h - make the variants and metadata of stored media again
 * (admin "dripctl reprocess [PATH|--all]"): after a change of
 * processing.variants, or for media stored before processing existed.
 *
 * The same hand-off as scrub (scrub.h): the http worker writes
 * <data_dir>/run/reprocess.request ({"path": P} or {"path": null} for all)
 * and wakes the pipeline worker, which calls reprocess_poll(). A run takes
 * the request and goes through the available media whose path is P or
 * lies under the folder P (all media when P is null), oldest first, one
 * at a time on one thread (nice +10): the plaintext comes from the cache
 * when a fresh entry is there, else the object is fetched and verified
 * into work/, then the process stage's own work runs on it
 * (pl_process_file: a sandboxed dripd-decode helper, sealed variants,
 * one catalog transaction, old objects removed). Reads are held to
 * processing.rate_limit bytes/s. Progress goes to
 * <data_dir>/run/reprocess.json, replaced atomically about twice a second:
 *   {"state":"running"|"done"|"failed","path","checked","total",
 *    "processed","skipped","errors":[{"id","path","error"}],...}
 */
#ifndef DRIPD_REPROCESS_H
#define DRIPD_REPROCESS_H

struct pl_ctx;
struct reprocess;

/* pc must outlive it. Never fails (aborts on OOM). */
struct reprocess *reprocess_create(struct pl_ctx *pc);
/* Start a run if one was requested and none is running. Cheap (one stat). */
void reprocess_poll(struct reprocess *r);
/* Stop a running run (state "failed": interrupted) and join. NULL ok. */
void reprocess_destroy(struct reprocess *r);

#endif

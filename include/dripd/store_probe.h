/* store_probe.h - is the storage backend reachable? A thread in the
 * pipeline worker opens a fresh store handle and runs its check() every
 * few seconds (a missing local directory, a dead or denying S3 endpoint),
 * and publishes the answer in the shared metrics (store_up, store_errno),
 * which /readyz and dripd_store_up report. */
#ifndef DRIPD_STORE_PROBE_H
#define DRIPD_STORE_PROBE_H

#include <stdint.h>

struct dr_config;
struct dr_metrics;
struct store_probe;

/* Start probing every interval_ms (first probe at once). NULL if the thread
 * cannot start (then store_up stays -1: unknown). */
struct store_probe *store_probe_start(const struct dr_config *cfg, struct dr_metrics *m,
                                      uint64_t interval_ms);
/* Stop and join. NULL ok. */
void store_probe_stop(struct store_probe *p);

#endif

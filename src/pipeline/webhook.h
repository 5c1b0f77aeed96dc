/* webhook.h - at-least-once delivery of catalog events to the configured
 * webhooks (config `webhooks: [{url, secret}]`).
 *
 * One thread per webhook ("hook-<n>") in the pipeline process reads events
 * in seq order (catalog_events_since) after the last seq it delivered, and
 * POSTs each one as JSON with
 *     Content-Type: application/json
 *     X-Dripd-Event: <type>
 *     X-Dripd-Delivery: <seq>
 *     X-Dripd-Signature: sha256=<hex HMAC-SHA256(secret, body)>
 * retrying with exponential backoff (pipeline.retry.backoff doubling up to
 * pipeline.retry.max_backoff) until the endpoint answers 2xx. The last
 * delivered seq is kept in <data_dir>/run/webhook-<hash of url>.seq
 * (written atomically), so a restart resends at most the events after it:
 * receivers should deduplicate on X-Dripd-Delivery.
 */
#ifndef DRIPD_WEBHOOK_H
#define DRIPD_WEBHOOK_H

struct dr_config;
struct dr_metrics;
struct webhooks;

/* Start one thread per configured webhook; NULL when there are none.
 * Call curl_global_init() first (once per process). */
struct webhooks *webhook_start(const struct dr_config *cfg, struct dr_metrics *m);
/* New events may be there (any thread). NULL ok. */
void webhook_wake(struct webhooks *wh);
/* Stop and join (an in-flight POST is aborted). NULL ok. */
void webhook_stop(struct webhooks *wh);

#endif

/* api_metrics.h - GET /metrics: the node-wide counters (metrics.h) in the
 * Prometheus text format, no auth (bind the listener or firewall it if the
 * numbers are sensitive). */
#ifndef DRIPD_API_METRICS_H
#define DRIPD_API_METRICS_H

void api_metrics_register_routes(void);

#endif

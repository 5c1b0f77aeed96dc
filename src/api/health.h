/* health.h - GET /healthz (liveness) and GET /readyz (ready to take
 * uploads), both without authentication. See src/health.c. */
#ifndef DRIPD_HEALTH_H
#define DRIPD_HEALTH_H

/* Register both routes. Call once before the server starts. */
void health_register_routes(void);

#endif

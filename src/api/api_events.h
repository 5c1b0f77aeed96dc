/* api_events.h - GET /v1/events: the caller's job events as Server-Sent
 * Events (text/event-stream).
 *
 * Each event is "id: <seq>\nevent: <type>\ndata: <job json>\n\n", in
 * catalog order. A client resumes with Last-Event-ID (or ?after=<seq>);
 * without either the stream starts with the events that come after it
 * opened. A ": ping" comment every 15 s keeps proxies and idle timers
 * from closing it. docs/API.md is the reference.
 */
#ifndef DRIPD_API_EVENTS_H
#define DRIPD_API_EVENTS_H

#define API_EVENTS_PING_MS 15000
/* Open streams per event-loop thread; more get 503. */
#define API_EVENTS_MAX_STREAMS 1024

/* router_add("GET", "/v1/events") and the event hook that wakes streams.
 * Call once, before the server starts. */
void api_events_register_routes(void);

#endif

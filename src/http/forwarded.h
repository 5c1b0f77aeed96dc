/* forwarded.h - what trusted reverse proxies say about a request:
 * `trusted_proxies` compiled for matching, and the client address, scheme
 * and host read from RFC 7239 Forwarded or X-Forwarded-For/-Proto/-Host.
 * Internal to the front end (http_conn.c builds each request's view with
 * it); the unit tests and the fuzz target use it too.
 *
 * Trust is hop by hop, from the right: the connection's peer must be
 * trusted for any of these headers to count; then each entry, read from
 * the right, names the previous hop, and the walk goes on only while that
 * hop is itself a trusted proxy. The first hop that is not (or the
 * leftmost one) is the client. Forwarded, when present and well formed,
 * wins over the X-Forwarded-* trio; its proto= and host= come from the
 * outermost trusted element that has them. X-Forwarded-Proto and
 * X-Forwarded-Host: their last value (the one the proxy talking to dripd
 * set). Malformed values are ignored, never half believed.
 *
 * Threads: a compiled list is read-only after fwd_trust_new(), so every
 * loop thread reads it without locks; fwd_resolve() is pure.
 */
#ifndef DRIPD_FORWARDED_H
#define DRIPD_FORWARDED_H

#include <stdbool.h>
#include <stddef.h>

#include "dripd/netaddr.h"

#define FWD_HOST_MAX 255 /* an authority (host[:port]) */
#define FWD_MAX_HOPS 64  /* entries of one header; a longer list is not believed */

struct fwd_trust;

/* Compile n CIDR strings (config `trusted_proxies`). 0 and *out (caller
 * frees with fwd_trust_free; n == 0 gives an empty list), or -EINVAL for
 * an entry dr_cidr_parse() refuses. */
int fwd_trust_new(char *const *cidrs, size_t n, struct fwd_trust **out);
void fwd_trust_free(struct fwd_trust *t); /* NULL ok */
/* True when a is inside one of the blocks (t NULL or empty: false). */
bool fwd_trusted(const struct fwd_trust *t, const struct dr_addr *a);
bool fwd_trust_empty(const struct fwd_trust *t);

struct fwd_view {
    char client[DR_ADDR_STRLEN]; /* "192.0.2.1", "2001:db8::1", "unknown", "_hidden"; "" none */
    char proto[6];               /* "http" or "https"; "" none */
    char host[FWD_HOST_MAX + 1]; /* "app.example:8443"; "" none */
    unsigned hops;               /* entries believed */
};

/* Read the view of a request whose peer is trusted. Each header argument
 * is the field's combined value (several lines joined with ", ") or NULL.
 * Always fills *out (empty strings where nothing trustworthy was said). */
void fwd_resolve(const struct fwd_trust *t, const char *forwarded, const char *xff, const char *xfp,
                 const char *xfh, struct fwd_view *out);
/* An authority a URL may carry: a host name, IPv4 or [IPv6] literal with
 * an optional :port, at most FWD_HOST_MAX bytes. */
bool fwd_host_valid(const char *s, size_t n);

#endif

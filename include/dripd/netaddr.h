/* netaddr.h - IP addresses and CIDR blocks as text and as bits: the
 * grammar of `trusted_proxies` (config.c checks it, the HTTP front end
 * matches peers against it, forwarded.c reads client addresses from
 * X-Forwarded-For and Forwarded). Pure functions, thread-safe.
 *
 * An IPv4-mapped IPv6 address (::ffff:1.2.3.4) is the IPv4 address: a
 * dual-stack listener sees v4 clients that way, and "10.0.0.0/8" must
 * match them.
 */
#ifndef DRIPD_NETADDR_H
#define DRIPD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DR_ADDR_STRLEN 48 /* an IPv6 literal and its NUL, with room */

enum dr_addr_family { DR_AF_NONE = 0, DR_AF_INET = 4, DR_AF_INET6 = 6, DR_AF_UNIX = 1 };

struct dr_addr {
    enum dr_addr_family family; /* DR_AF_UNIX: a peer on a unix socket */
    uint8_t a[16];              /* network order; 4 bytes for IPv4 */
};

struct dr_cidr {
    struct dr_addr addr; /* bits past the prefix are zero */
    unsigned bits;       /* 0-32 (IPv4), 0-128 (IPv6); unused for unix */
};

/* An address literal of len bytes: "192.0.2.1", "2001:db8::1" or
 * "[2001:db8::1]". 0, or -EINVAL. */
int dr_addr_parse(const char *s, size_t len, struct dr_addr *out);
/* The address of a peer as the server formats it ("192.0.2.1:5555",
 * "[2001:db8::1]:5555", "unix"). 0, or -EINVAL. */
int dr_addr_parse_peer(const char *remote, struct dr_addr *out);
/* "10.0.0.0/8", "2001:db8::/32", a single address ("127.0.0.1": /32 or
 * /128) or "unix:" (every peer on a unix socket). Host bits must be zero
 * ("10.0.0.1/8" is refused: it is nearly always a typo). 0, or -EINVAL
 * with what was wrong in *why (a static string) when why is not NULL. */
int dr_cidr_parse(const char *s, struct dr_cidr *out, const char **why);
bool dr_cidr_match(const struct dr_cidr *c, const struct dr_addr *a);
/* "192.0.2.1", "2001:db8::1", "unix" or "-" into buf (DR_ADDR_STRLEN). */
void dr_addr_format(const struct dr_addr *a, char *buf, size_t len);

#endif

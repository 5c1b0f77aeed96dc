/* listen.h - the listening sockets the supervisor opens (or inherits from
 * systemd) and hands to the http workers.
 *
 * Address syntax (config `listen:`):
 *   "127.0.0.1:8080", "localhost:8080", "*:8080" / ":8080" (any IPv4),
 *   "[::1]:8080", "[::]:8080" (IPv6 only; IPV6_V6ONLY is set),
 *   "unix:/run/dripd.sock", "unix:@abstract". Port 0 asks for a free port.
 *
 * Sockets are SOCK_STREAM, non-blocking, CLOEXEC (workers are forked, never
 * exec'd, so they inherit them anyway), SO_REUSEADDR, backlog 1024.
 *
 * A dr_listen_set owns its fds, except the ones it shares with the set it
 * was opened from (reuse, see listen_set_open), which are closed by
 * whichever set is closed last without the other as `keep`.
 */
#ifndef DRIPD_LISTEN_H
#define DRIPD_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DR_LISTEN_BACKLOG 1024
#define DR_LISTEN_MAX 64 /* listeners per set (config entries or systemd fds) */

enum dr_listen_kind { DR_LISTEN_TCP = 0, DR_LISTEN_UNIX = 1 };

struct dr_listen_addr {
    enum dr_listen_kind kind;
    char host[256]; /* TCP: name or literal without brackets; "" = any IPv4 */
    uint16_t port;  /* TCP */
    bool ipv6;      /* TCP: host was a bracketed IPv6 literal */
    char path[108]; /* UNIX: "/path" or "@abstract" */
};

/* Parse one `listen:` entry. 0 / -EINVAL with a line in err. */
int listen_parse(const char *spec, struct dr_listen_addr *out, char *err, size_t errlen);

/* Open, bind and listen. 0 and *fd, or -errno with a line in err
 * ("listen 127.0.0.1:8080: Address already in use"). A unix socket file
 * left by a dead process is replaced; one somebody listens on is not. */
int listen_open(const struct dr_listen_addr *a, int *fd, char *err, size_t errlen);

/* The bound address of fd as written to run/listen: "127.0.0.1:41234",
 * "[::1]:41234", "unix:/path". 0 / -errno. */
int listen_bound_name(int fd, char *buf, size_t len);

struct dr_listener {
    char *spec;      /* the config entry; "systemd:NAME" when inherited */
    char *name;      /* bound address (listen_bound_name) */
    char *unix_path; /* socket file this process created (unlinked on close); NULL */
    int fd;
};

struct dr_listen_set {
    struct dr_listener *v; /* owned */
    size_t n;
    bool from_systemd; /* LISTEN_FDS sockets: `listen:` is ignored */
};

/* systemd socket activation: when LISTEN_PID == getpid(), take fds
 * 3 .. 3+LISTEN_FDS-1 (names from LISTEN_FDNAMES) and unset the three
 * variables. 1 activated (out filled, from_systemd set), 0 not activated
 * (out zeroed), -errno with err (an fd that is not a listening stream
 * socket, a malformed variable). */
int listen_set_from_systemd(struct dr_listen_set *out, char *err, size_t errlen);

/* Open one listener per spec. An entry whose spec string equals one in
 * reuse (may be NULL), or equals the bound name of one ("127.0.0.1:41234"
 * for an earlier "127.0.0.1:0"), shares that listener's fd instead of
 * binding again (a reload keeps unchanged sockets, and their ports). On failure closes
 * what it opened (never reused fds), zeroes out, returns -errno with err. */
int listen_set_open(struct dr_listen_set *out, char *const *specs, size_t n,
                    const struct dr_listen_set *reuse, char *err, size_t errlen);

/* Close every fd of s that keep (may be NULL) does not also hold, unlink
 * the unix socket files of the closed ones, free s's memory, zero it. */
void listen_set_close(struct dr_listen_set *s, const struct dr_listen_set *keep);

/* Write the bound names, one per line, to path atomically (path.tmp.PID,
 * fsync, rename). 0 / -errno. */
int listen_write_file(const struct dr_listen_set *s, const char *path);

#endif

/* sdnotify.h - the systemd notification protocol, by hand (no libsystemd).
 *
 * One datagram per message to the AF_UNIX socket named by NOTIFY_SOCKET
 * (a path, or an abstract name written with a leading '@'). Used by the
 * supervisor only (the unit says NotifyAccess=main): READY=1, RELOADING=1,
 * STOPPING=1, STATUS=..., WATCHDOG=1.
 *
 * A NULL handle means "not started by systemd": every send is a no-op that
 * returns 0, so callers never test whether notification is on.
 */
#ifndef DRIPD_SDNOTIFY_H
#define DRIPD_SDNOTIFY_H

#include <stddef.h>
#include <stdint.h>

struct dr_sdnotify;

#define DR_SDNOTIFY_MAX 1024 /* longest message we send, bytes */

/* Open a sender for addr ("/run/systemd/notify" or "@abstract").
 * 0 and *out set (caller owns, sdnotify_close), or -errno:
 * -EINVAL empty or over-long address, -EAFNOSUPPORT another scheme
 * (e.g. vsock:). */
int sdnotify_open(const char *addr, struct dr_sdnotify **out);

/* Open from NOTIFY_SOCKET and unset it (so children do not inherit it).
 * Unset or empty: 0 with *out = NULL. */
int sdnotify_open_env(struct dr_sdnotify **out);

void sdnotify_close(struct dr_sdnotify *sd); /* NULL ok */

/* Send msg as one datagram ("READY=1\nSTATUS=..."). 0 / -errno;
 * -EMSGSIZE over DR_SDNOTIFY_MAX. NULL sd: 0. */
int sdnotify_send(struct dr_sdnotify *sd, const char *msg);
int sdnotify_sendf(struct dr_sdnotify *sd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "RELOADING=1\nMONOTONIC_USEC=<now>" into buf (systemd 253+ wants the
 * timestamp; older versions ignore it). Returns the length, or -EMSGSIZE. */
int sdnotify_fmt_reloading(char *buf, size_t len, uint64_t mono_usec);

/* "STATUS=N workers, queue depth Q" into buf. Returns the length, or -EMSGSIZE. */
int sdnotify_fmt_status(char *buf, size_t len, unsigned workers, uint64_t queue_depth);

/* The watchdog interval from WATCHDOG_USEC, honouring WATCHDOG_PID (absent
 * or equal to getpid()). 1 and *usec set when the watchdog is on, 0 when
 * off, -EINVAL when the variables are malformed. With unset, both
 * variables are removed from the environment afterwards. */
int sdnotify_watchdog_usec(uint64_t *usec, int unset);

#endif

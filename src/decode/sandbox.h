/* sandbox.h - lock a dripd-decode helper down before it reads hostile
 * bytes (sandbox.c): resource limits and a seccomp filter.
 *
 * Linked only into the helper. Threads: call from the only thread, before
 * any other starts (the filter is inherited by threads started later).
 */
#ifndef DRIPD_SANDBOX_H
#define DRIPD_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

/* Set RLIMIT_AS to memory bytes (0: leave it; also skipped in sanitizer
 * builds, whose shadow memory needs terabytes of address space, and when
 * DRIPD_DECODE_NO_RLIMIT_AS=1 is in the environment, for valgrind),
 * RLIMIT_CPU to the timeout rounded up plus one second, RLIMIT_FSIZE to
 * max_output bytes, RLIMIT_NOFILE to a few more than the helper's fds,
 * no core dumps; then load the seccomp filter (the kernel kills the process
 * with SIGSYS on any system call not on its list: no socket, no exec, no
 * fork; opening a file fails with EACCES, executable memory with EPERM).
 * 0 / -errno + err. */
int sandbox_enter(uint64_t memory, uint32_t timeout_ms, uint64_t max_output, char *err,
                  size_t errlen);

#endif

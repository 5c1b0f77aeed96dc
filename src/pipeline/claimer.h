/* claimer.h - who holds a claimed job, and is it still alive?
 *
 * A pipeline worker claims jobs under a claimer string (catalog_jobs_claim)
 * that names one process incarnation, not just a pid:
 *
 *     "<node.id>:<boot>.<start>:<pid>"
 *
 * <boot> is the first 8 hex digits of the kernel's boot id
 * (/proc/sys/kernel/random/boot_id), <start> the process's start time in
 * clock ticks since boot (field 22 of /proc/<pid>/stat). A pid alone is
 * reused: on a busy host within minutes (pid_max is often 32768), in a
 * container at every restart (the pids of a fresh pid namespace repeat),
 * after a reboot by the same service; and a reused pid may well be another
 * dripd-pipeline (two dripd services on one host, or the worker of the
 * restarted container itself). The pair (boot, start) never repeats for one
 * pid. Node ids never hold ':' (config.c).
 *
 * Claims written by an older dripd, "<node.id>:<pid>", are still judged the
 * old way (a live, non-zombie process named dripd-pipeline that is not this
 * one).
 *
 * Only src/pipeline includes it (and its tests). No state; any thread.
 */
#ifndef DRIPD_CLAIMER_H
#define DRIPD_CLAIMER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define CLAIMER_MAX 128 /* a node id of 64, ':', 8 + '.' + 20, ':', a pid, NUL */

/* Writes this process's claimer for node into out. 0, or -errno when
 * /proc cannot say this process's start time (out then holds the old
 * "<node>:<pid>" form, which still works, pid reuse aside). */
int claimer_self(const char *node, char *out, size_t outlen);

/* Is claim a claimer of the same node as self (the same text before the
 * first ':')? A claim with no ':' is nobody's node: false. */
bool claimer_same_node(const char *self, const char *claim);

/* For a claim of this node (claimer_same_node): does the process it names
 * still run? self is this process's own claimer (claimer_self). Dead: no
 * such pid; a zombie; another incarnation of the pid (another boot, another
 * start time); for an old-format claim, this very pid or a process not
 * named dripd-pipeline. When /proc cannot tell, alive: a live claimer's
 * jobs released by mistake would run twice, a dead one's never. */
bool claimer_alive_here(const char *self, const char *claim);

/* The state letter and start time of pid from /proc/<pid>/stat (comm, if
 * not NULL, gets its name). 0, -ENOENT when there is no such process, or
 * another -errno. Exposed for the tests. */
int claimer_proc_stat(pid_t pid, char *state, unsigned long long *start, char *comm,
                      size_t commlen);

#endif

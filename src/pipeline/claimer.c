/* claimer.c - the claimer of a job names one process incarnation
 * ("<node>:<boot>.<start>:<pid>", claimer.h), and the recovery asks here
 * whether the process a claim of this node names still runs.
 *
 * DESIGN
 *
 * Why not the pid: after a crash of the whole node the dead worker's pid
 * comes back, sooner or later, and maybe as another dripd-pipeline (another
 * dripd service on the host, the restarted container's own worker). Its
 * jobs would then look claimed by a live worker for ever, and the uploads
 * behind them never complete. The start time in clock ticks since boot
 * (/proc/<pid>/stat, field 22) tells two processes of one pid apart within
 * a boot, and the boot id tells boots apart.
 *
 * What is dead (claimer_alive_here): no /proc/<pid>; state Z or X (killed,
 * not reaped yet: a supervisor killed with its workers leaves them to
 * whoever adopts them, who may be slow or never reap); another boot; another
 * start time; a process no longer named dripd-pipeline. What /proc cannot
 * answer (an error other than ENOENT) is alive: releasing a live claimer's
 * jobs makes them run twice (steps are idempotent and the old claimer's
 * late commits are refused, catalog_job_advance), a dead claimer's jobs kept
 * never run at all; but the first is not the answer to a mere read error.
 *
 * Threads: none of its own; no state; every function is reentrant.
 */
#include "claimer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKER_NAME "dripd-pipeline"
#define BOOT_LEN 8

/* The first BOOT_LEN hex digits of the boot id, or zeros when unreadable. */
static void boot_tag(char out[BOOT_LEN + 1])
{
    char buf[64] = "";
    snprintf(out, BOOT_LEN + 1, "00000000");
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < BOOT_LEN)
        return;
    buf[BOOT_LEN] = '\0';
    if (strspn(buf, "0123456789abcdef") == BOOT_LEN)
        memcpy(out, buf, BOOT_LEN + 1);
}

int claimer_proc_stat(pid_t pid, char *state, unsigned long long *start, char *comm, size_t commlen)
{
    /* "pid (comm) S ppid ...": comm may hold spaces and ')', so it ends at
     * the last ')'; starttime is the 20th field after the state. */
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    int err = errno;
    close(fd);
    if (n < 0)
        return err == ESRCH ? -ENOENT : -err; /* it went between open and read */
    buf[n] = '\0';
    char *open_paren = strchr(buf, '('), *close_paren = strrchr(buf, ')');
    if (open_paren == NULL || close_paren == NULL || close_paren < open_paren ||
        close_paren[1] != ' ' || close_paren[2] == '\0')
        return -EPROTO;
    if (comm != NULL && commlen > 0)
        snprintf(comm, commlen, "%.*s", (int)(close_paren - open_paren - 1), open_paren + 1);
    *state = close_paren[2];
    char *p = close_paren + 3;
    for (int field = 0; field < 18; field++) { /* ppid .. itrealvalue */
        p = strchr(p + 1, ' ');
        if (p == NULL)
            return -EPROTO;
    }
    char *end;
    errno = 0;
    *start = strtoull(p + 1, &end, 10);
    if (errno != 0 || end == p + 1 || (*end != ' ' && *end != '\0' && *end != '\n'))
        return -EPROTO;
    return 0;
}

int claimer_self(const char *node, char *out, size_t outlen)
{
    char state, boot[BOOT_LEN + 1];
    unsigned long long start;
    int rc = claimer_proc_stat(getpid(), &state, &start, NULL, 0);
    if (rc != 0) {
        snprintf(out, outlen, "%s:%ld", node, (long)getpid());
        return rc;
    }
    boot_tag(boot);
    snprintf(out, outlen, "%s:%s.%llu:%ld", node, boot, start, (long)getpid());
    return 0;
}

bool claimer_same_node(const char *self, const char *claim)
{
    const char *a = strchr(self, ':'), *b = strchr(claim, ':');
    if (a == NULL || b == NULL || a - self != b - claim)
        return false;
    return memcmp(self, claim, (size_t)(a - self)) == 0;
}

/* Splits "<node>:[<boot>.<start>:]<pid>": *inc ("<boot>.<start>") is
 * NULL for the old form. */
static int parse(const char *claim, long *pid, const char **inc, size_t *inc_len)
{
    const char *first = strchr(claim, ':'), *last = strrchr(claim, ':');
    if (first == NULL)
        return -EINVAL;
    *inc = first == last ? NULL : first + 1;
    *inc_len = first == last ? 0 : (size_t)(last - first - 1);
    if (*inc != NULL && (*inc_len < BOOT_LEN + 2 || (*inc)[BOOT_LEN] != '.'))
        return -EINVAL;
    char *end;
    errno = 0;
    *pid = strtol(last + 1, &end, 10);
    if (errno != 0 || end == last + 1 || *end != '\0' || *pid <= 0)
        return -EINVAL;
    return 0;
}

bool claimer_alive_here(const char *self, const char *claim)
{
    if (strcmp(self, claim) == 0)
        return true;
    long pid;
    const char *inc, *self_inc;
    size_t inc_len, self_len;
    long self_pid;
    if (parse(claim, &pid, &inc, &inc_len) != 0)
        return false; /* no dripd process claims like that */
    if (pid == (long)getpid())
        return false; /* this process claims as self only */
    /* another boot: dead, whatever runs under that pid now */
    if (inc != NULL && parse(self, &self_pid, &self_inc, &self_len) == 0 && self_inc != NULL &&
        memcmp(inc, self_inc, BOOT_LEN) != 0)
        return false;
    char state = '\0', comm[32] = "";
    unsigned long long start = 0;
    int rc = claimer_proc_stat((pid_t)pid, &state, &start, comm, sizeof comm);
    if (rc == -ENOENT)
        return false;
    if (rc != 0)
        return true; /* cannot tell */
    if (state == 'Z' || state == 'X' || strcmp(comm, WORKER_NAME) != 0)
        return false;
    if (inc == NULL)
        return true; /* an old claim: the pid is all it says */
    char want[32];
    int len = snprintf(want, sizeof want, "%llu", start);
    const char *claimed_start = inc + BOOT_LEN + 1;
    return (size_t)len == inc_len - BOOT_LEN - 1 && memcmp(claimed_start, want, (size_t)len) == 0;
}

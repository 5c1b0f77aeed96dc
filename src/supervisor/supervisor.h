/* supervisor.h - dripd's process tree: the supervisor that forks, watches,
 * restarts and reloads the worker processes (see worker.h for the worker
 * side and docs/OPERATIONS.md for signals, exit codes and systemd).
 *
 * The supervisor is single-threaded and does no request work. Its only
 * inputs are signals (TERM/INT stop, HUP reload, CHLD), the workers'
 * channels and its own timers; its outputs are fork/kill, the workers'
 * relayed wake-ups, log lines and sd_notify messages.
 */
#ifndef DRIPD_SUPERVISOR_H
#define DRIPD_SUPERVISOR_H

#include <stdbool.h>
#include <stddef.h>

#include "dripd/worker.h"

struct dr_config;

/* Process exit codes (docs/OPERATIONS.md, "Exit codes"). */
enum {
    DR_EXIT_OK = 0,      /* clean stop */
    DR_EXIT_STARTUP = 1, /* bad config, start-up failure, worker said "fatal config" */
    DR_EXIT_GAVE_UP = 2, /* restart intensity exceeded */
};

#define DR_SUP_MAX_PER_ROLE 16

struct dr_sup_opts {
    int workers[DR_ROLE_COUNT]; /* processes per role, 1..DR_SUP_MAX_PER_ROLE; 0 means 1 */
};

/* supervisor_prepare flags */
#define DR_PREP_NO_NEW_KEY 1u /* the master key must exist already (--rebuild-catalog) */

/* Everything that must exist before a worker runs, for cfg: applies
 * log.level, creates data_dir and its run/ spool/ cache/ work/ (0700),
 * migrates the catalog, loads the master key (creating it on first start
 * unless DR_PREP_NO_NEW_KEY). Idempotent; a reload runs it for the new
 * config. 0 / -errno with one line in err. */
int supervisor_prepare(const struct dr_config *cfg, unsigned flags, char *err, size_t errlen);

/* The bearer token kept in the file at path: read it, or, when there is
 * no such file, create it (0600, 48 random hex digits, fsynced; a file made
 * meanwhile by another process is never replaced). *token is the caller's
 * to free; *created says whether this call made it. 0 / -errno (-EINVAL: the
 * file is empty or too short to be a token). `dripd --make-token` and the
 * embedded defaults' admin use it. */
int supervisor_token_file(const char *path, char **token, bool *created);

/* For the embedded defaults (no -c), which have no users: add user
 * "admin" (admin: true) whose token is kept in <data_dir>/admin.token
 * (created 0600 with a random token on first use, reused afterwards), and
 * log where it is. Creates data_dir if needed. Call it before
 * supervisor_prepare, which records the users in the catalog.
 * 0 / -errno with err. */
int supervisor_default_admin(struct dr_config *cfg, char *err, size_t errlen);

/* Run the supervisor until it stops; returns the process exit code
 * (DR_EXIT_*). Takes ownership of cfg (freed before returning, also on
 * failure). config_path is what SIGHUP reloads; NULL means the embedded
 * defaults (a SIGHUP then only logs). opts may be NULL (one worker per
 * role). Call supervisor_prepare first. Reads and unsets NOTIFY_SOCKET,
 * WATCHDOG_USEC/PID and LISTEN_PID/FDS/FDNAMES. */
int supervisor_run(struct dr_config *cfg, const char *config_path, const struct dr_sup_opts *opts);

#endif

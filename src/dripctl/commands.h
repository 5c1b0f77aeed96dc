/* commands.h - dripctl's commands, each one request or a few against the
 * server (see commands.c). dripctl.c parses the command line into struct
 * args and calls one of these; each returns the process's exit code. */
#ifndef DRIPCTL_COMMANDS_H
#define DRIPCTL_COMMANDS_H

#include <stdbool.h>
#include <stdint.h>

#include "client.h"

/* Everything any command may take; each command reads its own fields. */
struct args {
    int argc;    /* positional arguments after the command word */
    char **argv; /* borrowed from main's argv */
    const char *to;
    bool wait;
    uint64_t chunk, limit_rate;
    const char *if_match; /* upload --if-match ETAG */
    bool replace;         /* upload --replace */
    bool rename;          /* upload --conflict=rename */
    unsigned parallel;    /* upload --parallel N */
    const char *output;
    bool force;
    const char *state;
    const char *limit;
    const char *variant;       /* download --variant */
    bool all;                  /* reprocess --all */
    const char *expires;       /* link --expires: seconds or a duration (7d) */
    const char *max_downloads; /* link --max-downloads */
    bool recursive;            /* rm -r */
    long count;                /* top -n: snapshots to show; 0: until Ctrl-C */
};

int cmd_upload(struct client *c, const struct args *a);
int cmd_download(struct client *c, const struct args *a);
int cmd_ls(struct client *c, const struct args *a);
int cmd_mv(struct client *c, const struct args *a);
int cmd_mkdir(struct client *c, const struct args *a);
int cmd_rm(struct client *c, const struct args *a);
int cmd_share(struct client *c, const struct args *a);
int cmd_unshare(struct client *c, const struct args *a);
int cmd_shares(struct client *c, const struct args *a);
int cmd_link(struct client *c, const struct args *a);
int cmd_links(struct client *c, const struct args *a);
int cmd_revoke(struct client *c, const struct args *a);
int cmd_versions(struct client *c, const struct args *a);
int cmd_restore(struct client *c, const struct args *a);
int cmd_trash(struct client *c, const struct args *a);
int cmd_untrash(struct client *c, const struct args *a);
int cmd_jobs(struct client *c, const struct args *a);
int cmd_watch(struct client *c, const struct args *a);
int cmd_usage(struct client *c, const struct args *a);
int cmd_scrub(struct client *c, const struct args *a);
int cmd_reprocess(struct client *c, const struct args *a);

/* Follow the SSE stream at path, calling fn per event, reconnecting (with
 * Last-Event-ID) when the server ends it or the connection drops, until
 * Ctrl-C, *done (when not NULL) turns true after an event, or an HTTP 4xx
 * (reported as `what`). Returns the exit code. */
int cmd_follow(struct client *c, const char *path, const char *what,
               int (*fn)(const char *id, const char *type, const char *data, void *arg), void *arg,
               const bool *done);

/* The job states `jobs --state` takes (the server's four), NULL-ended. */
extern const char *const job_states[];

#endif

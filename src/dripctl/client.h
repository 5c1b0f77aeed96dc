/* client.h - dripctl's HTTP client: JSON requests, streamed downloads,
 * resumable tus uploads and a progress bar, over one libcurl easy handle.
 * Single-threaded; one struct client per process. */
#ifndef DRIPCTL_CLIENT_H
#define DRIPCTL_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct client {
    char *url; /* base, no trailing slash */
    char *token;
    bool json; /* --json output */
    bool quiet;
    bool tty;      /* stderr is a terminal: progress bars */
    void *curl;    /* CURL * */
    char err[512]; /* last error, one line */
    long status;   /* last HTTP status */
};

/* Exit codes (documented in dripctl(1)). */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1, /* server error, network, local I/O */
    EXIT_USAGE = 2,
    EXIT_AUTH = 3,     /* 401 */
    EXIT_NOTFOUND = 4, /* 404 */
    EXIT_CONFLICT = 5, /* 409 */
    EXIT_BUSY = 6,     /* 503: try again later */
};

int client_init(struct client *c);
void client_cleanup(struct client *c);
/* Map c->status (or a transport error when 0) to an exit code. */
int client_exit_code(const struct client *c);

/* JSON request. body may be NULL. On 2xx returns 0 and *out (may be NULL
 * for empty bodies; caller decrefs). Otherwise -1 with c->err set from the
 * problem+json detail. */
int client_json(struct client *c, const char *method, const char *path, json_t *body, json_t **out);
/* GET path into the file at dst (progress shown as label). */
int client_download(struct client *c, const char *path, const char *dst, const char *label);
/* Resumable tus upload of file into folder (remote name = base name).
 * The upload URL is kept in state_file so an interrupted run resumes.
 * limit_rate (bytes/s, 0 = none) exists for tests. On success fills
 * job_id/media_id (64 bytes each) and returns 0. */
int client_tus_upload(struct client *c, const char *file, const char *folder,
                      const char *state_file, uint64_t chunk, uint64_t limit_rate, char *job_id,
                      char *media_id, uint64_t *resumed_at);
/* Follow an SSE stream, calling fn(event type, data) per event; returns
 * when the server closes or fn returns non-zero. */
int client_sse(struct client *c, const char *path,
               int (*fn)(const char *type, const char *data, void *arg), void *arg);

/* URL-encode s (heap). */
char *client_escape(struct client *c, const char *s);

#endif

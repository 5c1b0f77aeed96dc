/* client.h - dripctl's HTTP client: JSON requests, streamed downloads,
 * resumable tus uploads and an event stream, over one libcurl easy handle.
 * One struct client per process, used by one thread; a parallel upload
 * (tus_opts.parallel) runs each part on a thread of its own with an easy
 * handle of its own. */
#ifndef DRIPCTL_CLIENT_H
#define DRIPCTL_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct progress;

struct client {
    char *url; /* base, no trailing slash */
    char *token;
    char *cacert; /* --cacert: CA certificates (PEM) for https://, or NULL: the system's */
    bool json;    /* --json output */
    bool quiet;
    bool tty;                  /* stderr is a terminal: progress bars */
    void *curl;                /* CURL * */
    char err[512];             /* last error, one line */
    long status;               /* last HTTP status; 0 for a transport or local error */
    int local_code;            /* with status 0: the exit code of a local error (0 = EXIT_FAIL) */
    struct progress *progress; /* the transfer on screen, or NULL */
    uint64_t xfer_base;        /* private: the offset of the chunk being sent */
    uint64_t *xfer_now;        /* private: a parallel part's thread stores the bytes it
                                * has sent here (atomic), or NULL */
};

/* Exit codes: README.md ("With dripctl") and dripctl(1) list the same. */
enum {
    EXIT_OK = 0,
    EXIT_FAIL = 1, /* server error, network, local I/O, failed job */
    EXIT_USAGE = 2,
    EXIT_AUTH = 3,     /* 401, 403 */
    EXIT_NOTFOUND = 4, /* 404 */
    EXIT_CONFLICT = 5, /* 409, 412 */
    EXIT_BUSY = 6,     /* 503: try again later */
    EXIT_INTERRUPTED = 130,
};

int client_init(struct client *c);
void client_cleanup(struct client *c);
/* Map the last error (c->status, or a transport, local or interrupt error
 * when it is 0) to an exit code. */
int client_exit_code(const struct client *c);
/* Set a local error: message into c->err, c->status 0, exit code code. */
void client_local_error(struct client *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ctrl-C: the first SIGINT (or SIGTERM) makes the transfer in progress stop
 * at its next progress callback and every wait return; the request then
 * fails with "interrupted" and client_exit_code() gives EXIT_INTERRUPTED.
 * A second one kills the process as usual. */
void client_catch_interrupt(void);
bool client_interrupted(void);
/* Sleep ms, or less when interrupted. */
void client_sleep_ms(long ms);

/* JSON request. body may be NULL. On 2xx returns 0 and *out (may be NULL
 * for empty bodies; caller decrefs). Otherwise -1 with c->err set from the
 * problem+json detail. */
int client_json(struct client *c, const char *method, const char *path, json_t *body, json_t **out);
/* GET path into the stream f (a file or stdout), with progress as label.
 * Only a 200's body reaches f; an error's body becomes c->err. 0 / -1. */
int client_download(struct client *c, const char *path, FILE *f, const char *label);
/* How client_tus_upload sends a file. */
struct tus_opts {
    uint64_t chunk;       /* bytes per PATCH */
    uint64_t limit_rate;  /* bytes/s, 0 = none (exists for tests) */
    const char *if_match; /* If-Match on the creation: replace the file with
                           * that ETag (412 when it moved on); NULL: none */
    bool replace;         /* a taken name (409) is replaced (If-Match: *) */
    bool rename;          /* ?conflict=rename: a taken name gets a free one */
    unsigned parallel;    /* > 1: that many partial uploads at once, then a final
                           * one joining them (tus concatenation); 0, 1: one */
};
/* Resumable tus upload of file into folder (remote name = base name).
 * The upload URL is kept in state_file so an interrupted run resumes.
 * A lost connection or a 5xx is retried (the server's offset is asked for
 * again each time) for about 20 s before giving up.
 * On success fills job_id/media_id (64 bytes each) and returns 0.
 * *resumed_at is the offset this run started from. */
int client_tus_upload(struct client *c, const char *file, const char *folder,
                      const char *state_file, const struct tus_opts *o, char *job_id,
                      char *media_id, uint64_t *resumed_at);
/* Follow an SSE stream once, calling fn(id, event type, data) per event.
 * last_id (in/out, cap bytes) is sent as Last-Event-ID when non-empty and
 * tracks the id of the last event; *retry_ms takes the server's retry:
 * field. Returns 0 when the server ends the stream or fn returns non-zero,
 * -1 on an error (c->status says whether it was HTTP). */
int client_sse(struct client *c, const char *path, char *last_id, size_t cap, long *retry_ms,
               int (*fn)(const char *id, const char *type, const char *data, void *arg), void *arg);

/* URL-encode s (heap). */
char *client_escape(struct client *c, const char *s);

#endif

/* upload_hook.h - the blocking pre-upload hook (config hooks.pre_upload;
 * docs/API.md, "Pre-upload hook").
 *
 * An upload route calls upload_hook_check() from on_head once its own
 * checks passed and before it reads any body: with no hook configured,
 * then(ex, arg) runs at once; otherwise the hook is asked (an HTTP POST
 * on a thread of this module, never on the loop thread) and then() runs
 * later on ex's loop thread if it allows the upload. If it refuses, the
 * client gets 403 problem+json with the hook's reason; if it fails
 * (timeout, refused connection, an answer that is not 200 JSON) the
 * upload is refused with 503 + Retry-After (on_error: deny, the default)
 * or allowed (on_error: allow). then() is not called when the client went
 * away meanwhile (the route's on_abort frees its state as usual).
 *
 * Threads: upload_hook_check() and then() on the loop thread; the hook
 * threads only do HTTP. Bounded: UPLOAD_HOOK_THREADS requests to the hook
 * at a time, UPLOAD_HOOK_QUEUE waiting; past that, 503.
 */
#ifndef DRIPD_UPLOAD_HOOK_H
#define DRIPD_UPLOAD_HOOK_H

#include <stddef.h>
#include <stdint.h>

struct http_exchange;

struct upload_hook_info {
    const char *protocol;     /* "put", "multipart" or "tus" */
    const char *path;         /* the file's path; for multipart, the folder */
    int64_t size;             /* declared bytes, -1 unknown */
    const char *content_type; /* NULL: not given */
    /* tus concatenation (tusd's pre-create hook sees it too): NULL, or
     * "partial" (path NULL: a part has none) or "final" with the partial
     * uploads' ids it joins, in order */
    const char *concat;
    const char *const *parts;
    size_t n_parts;
};

/* Ask the hook (copies info). then(ex, arg) runs once if the upload may
 * go on; otherwise the exchange has been answered. */
void upload_hook_check(struct http_exchange *ex, const struct upload_hook_info *info,
                       void (*then)(struct http_exchange *ex, void *arg), void *arg);
/* Stop the hook threads (after the server drained: nothing is waiting). */
void upload_hook_stop(void);

#endif

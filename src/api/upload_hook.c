/* upload_hook.c - the blocking pre-upload hook (upload_hook.h).
 *
 * What: before an upload's body is read, POST to hooks.pre_upload.url
 *   {"user": "alice", "path": "/photos/cat.jpg", "size": 123 | null,
 *    "content_type": "image/jpeg" | null, "protocol": "put",
 *    "client": "192.0.2.1"}
 * plus, for tus concatenation, "concat": "partial" (path null) or
 * "concat": "final" with "partial_uploads": ["<id>", ...]
 * and expect 200 with {"allow": true} or {"allow": false, "reason": "..."}
 * (tusd's pre-create hook, reduced to the decision). Anything else within
 * hooks.pre_upload.timeout (a refused connection, a timeout, another
 * status, a body that is not that JSON) is a hook failure, decided by
 * hooks.pre_upload.on_error: deny (503 + Retry-After, the default: a
 * policy that is down does not become no policy) or allow (logged).
 *
 * Threads: UPLOAD_HOOK_THREADS threads, started at the first check, take
 * requests from one bounded queue (UPLOAD_HOOK_QUEUE; full: 503 at once),
 * each with its own curl handle so connections to the hook are reused.
 * The exchange is held (http_ex_hold) while the hook is asked and the
 * answer goes back to its loop thread with http_thread_post. The queue
 * mutex is a leaf. upload_hook_stop() joins the threads once the server
 * has drained (every held exchange was answered, so the queue is empty).
 */
#include "upload_hook.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/log.h"
#include "dripd/util.h"

#define UPLOAD_HOOK_THREADS 4
#define UPLOAD_HOOK_QUEUE 256
#define ANSWER_MAX (16u << 10) /* bytes of the hook's answer read */
#define REASON_MAX 512         /* bytes of its reason shown to the client */

enum verdict { V_ALLOW, V_REFUSE, V_FAILED };

struct hook_req {
    struct hook_req *next;
    struct http_exchange *ex;
    struct http_thread *t;
    void (*then)(struct http_exchange *ex, void *arg);
    void *arg;
    char *url;
    uint64_t timeout;
    char *body; /* the JSON sent */
    /* the answer */
    enum verdict verdict;
    char why[REASON_MAX + 1]; /* the refusal's reason, or why the hook failed */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct hook_req *head, *tail;
    size_t queued;
    bool started, stopping;
    pthread_t threads[UPLOAD_HOOK_THREADS];
    int n_threads;
} H = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

struct answer {
    char buf[ANSWER_MAX];
    size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    struct answer *a = arg;
    size_t len = size * n, room = sizeof a->buf - a->len;
    if (len > room)
        return 0; /* too long: the transfer fails (a hook failure) */
    memcpy(a->buf + a->len, p, len);
    a->len += len;
    return len;
}

/* Printable ASCII of s (up to REASON_MAX bytes) into out: the reason goes
 * into a problem+json detail and the log. */
static void clean_reason(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    for (; *s != '\0' && o + 1 < cap; s++)
        out[o++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
    out[o] = '\0';
}

/* Ask the hook for r (a hook thread). */
static void ask(CURL *h, struct hook_req *r)
{
    struct answer *a = xcalloc(1, sizeof *a);
    struct curl_slist *hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)r->timeout);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "dripd/" DRIPD_VERSION " pre-upload hook");
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    r->verdict = V_FAILED;
    if (cc != CURLE_OK) {
        snprintf(r->why, sizeof r->why, "%s", curl_easy_strerror(cc));
    } else if (status != 200) {
        snprintf(r->why, sizeof r->why, "it answered %ld, not 200", status);
    } else {
        json_error_t err;
        json_t *doc = json_loadb(a->buf, a->len, 0, &err);
        json_t *allow = json_object_get(doc, "allow");
        json_t *reason = json_object_get(doc, "reason");
        if (!json_is_boolean(allow)) {
            snprintf(r->why, sizeof r->why, "its answer is not {\"allow\": true|false}");
        } else if (json_is_true(allow)) {
            r->verdict = V_ALLOW;
        } else {
            r->verdict = V_REFUSE;
            clean_reason(json_is_string(reason) && json_string_length(reason) > 0
                             ? json_string_value(reason)
                             : "no reason given",
                         r->why, sizeof r->why);
        }
        json_decref(doc);
    }
    free(a);
}

/* Back on the exchange's loop thread. */
static void answered(struct http_thread *t, void *arg)
{
    (void)t;
    struct hook_req *r = arg;
    struct http_exchange *ex = r->ex;
    bool on_error_allow = http_cfg(ex)->hooks.pre_upload.on_error != NULL &&
                          strcmp(http_cfg(ex)->hooks.pre_upload.on_error, "allow") == 0;
    if (http_ex_closed(ex)) {
        /* the client went away: nothing to answer, on_abort frees */
    } else if (r->verdict == V_ALLOW) {
        r->then(ex, r->arg);
    } else if (r->verdict == V_REFUSE) {
        log_info("upload refused by the pre-upload hook for %s: %s", http_user(ex), r->why);
        http_respond_problem(ex, 403, "refused by the pre-upload hook: %s", r->why);
    } else if (on_error_allow) {
        log_warn("pre-upload hook failed (%s); upload allowed (hooks.pre_upload.on_error: allow)",
                 r->why);
        r->then(ex, r->arg);
    } else {
        log_warn("pre-upload hook failed (%s); upload refused (hooks.pre_upload.on_error: deny)",
                 r->why);
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "the pre-upload hook did not answer (%s); retry later",
                             r->why);
    }
    http_ex_release(ex);
    free(r->url);
    free(r->body);
    free(r);
}

static void *hook_thread(void *unused)
{
    (void)unused;
    pthread_setname_np(pthread_self(), "dripd-hook");
    CURL *h = curl_easy_init();
    if (h == NULL) {
        log_error("pre-upload hook: out of libcurl resources");
        abort(); /* like an allocation failure (util.h) */
    }
    pthread_mutex_lock(&H.mu);
    for (;;) {
        while (H.head == NULL && !H.stopping)
            pthread_cond_wait(&H.cv, &H.mu);
        if (H.head == NULL)
            break;
        struct hook_req *r = H.head;
        H.head = r->next;
        if (H.head == NULL)
            H.tail = NULL;
        H.queued--;
        pthread_mutex_unlock(&H.mu);
        ask(h, r);
        (void)http_thread_post(r->t, answered, r);
        pthread_mutex_lock(&H.mu);
    }
    pthread_mutex_unlock(&H.mu);
    curl_easy_cleanup(h);
    return NULL;
}

/* Start the threads once (H.mu held). 0 / -errno. */
static int start_locked(void)
{
    if (H.started)
        return H.n_threads > 0 ? 0 : -EAGAIN;
    H.started = true;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    for (int i = 0; i < UPLOAD_HOOK_THREADS; i++) {
        if (dr_thread_start(&H.threads[i], hook_thread, NULL) != 0)
            break;
        H.n_threads++;
    }
    if (H.n_threads == 0) {
        log_error("pre-upload hook: cannot start its threads");
        return -EAGAIN;
    }
    return 0;
}

static char *request_json(struct http_exchange *ex, const struct upload_hook_info *in)
{
    json_t *o = json_object();
    json_object_set_new(o, "user", json_string(http_user(ex)));
    json_object_set_new(o, "path", in->path != NULL ? json_string(in->path) : json_null());
    json_object_set_new(o, "size", in->size >= 0 ? json_integer(in->size) : json_null());
    json_object_set_new(o, "content_type",
                        in->content_type ? json_string(in->content_type) : json_null());
    json_object_set_new(o, "protocol", json_string(in->protocol));
    json_object_set_new(o, "client", json_string(http_req(ex)->client_addr));
    if (in->concat != NULL) {
        json_object_set_new(o, "concat", json_string(in->concat));
        if (in->n_parts > 0) {
            json_t *a = json_array();
            for (size_t i = 0; i < in->n_parts; i++)
                json_array_append_new(a, json_string(in->parts[i]));
            json_object_set_new(o, "partial_uploads", a);
        }
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL)
        abort(); /* out of memory, like x*alloc (util.h) */
    return s;
}

void upload_hook_check(struct http_exchange *ex, const struct upload_hook_info *info,
                       void (*then)(struct http_exchange *ex, void *arg), void *arg)
{
    const struct dr_config *cfg = http_cfg(ex);
    if (cfg->hooks.pre_upload.url == NULL) {
        then(ex, arg);
        return;
    }
    struct hook_req *r = xcalloc(1, sizeof *r);
    r->ex = ex;
    r->t = http_ex_thread(ex);
    r->then = then;
    r->arg = arg;
    r->url = xstrdup(cfg->hooks.pre_upload.url);
    r->timeout = cfg->hooks.pre_upload.timeout;
    r->body = request_json(ex, info);
    pthread_mutex_lock(&H.mu);
    int rc = H.stopping ? -EAGAIN : start_locked();
    if (rc == 0 && H.queued >= UPLOAD_HOOK_QUEUE)
        rc = -EAGAIN;
    if (rc == 0) {
        if (H.tail != NULL)
            H.tail->next = r;
        else
            H.head = r;
        H.tail = r;
        H.queued++;
        http_ex_hold(ex);
        pthread_cond_signal(&H.cv);
    }
    pthread_mutex_unlock(&H.mu);
    if (rc < 0) {
        free(r->url);
        free(r->body);
        free(r);
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "too many uploads wait for the pre-upload hook; retry");
    }
}

void upload_hook_stop(void)
{
    pthread_mutex_lock(&H.mu);
    H.stopping = true;
    pthread_cond_broadcast(&H.cv);
    int n = H.n_threads;
    pthread_mutex_unlock(&H.mu);
    for (int i = 0; i < n; i++)
        pthread_join(H.threads[i], NULL);
}

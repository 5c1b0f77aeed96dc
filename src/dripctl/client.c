/* client.c - dripctl's libcurl client (see client.h).
 *
 * One easy handle is reused for every request so connections stay alive.
 * Response bodies are collected into a buffer capped at 16 MiB (JSON only;
 * downloads stream to a file or stdout, and only a 200's body gets there).
 * tus uploads send fixed-size PATCH chunks read straight from the file, so
 * memory stays small whatever the size, and after each acknowledged chunk
 * the server's offset is durable: a killed dripctl resumes from there on
 * its next run (state_file maps the file to its upload URL). A chunk that
 * fails on the way (connection lost, 5xx, 409/423 from a race) is not an
 * error yet: the server's offset is asked for again with HEAD, with a
 * growing pause, for about 20 s (a daemon restart fits in that).
 *
 * Ctrl-C (client_catch_interrupt) only sets a flag; every request's
 * progress callback returns non-zero once it is set, so libcurl stops the
 * transfer within about a second and the caller reports where it stopped.
 *
 * Parallel upload (--parallel N, tus concatenation): the file is N
 * partial uploads, each sent by a thread of its own with its own easy
 * handle and FILE (nothing else is shared but the read-only settings and
 * an atomic byte count per part that the calling thread sums for the
 * progress line), then one final upload joins them on the server. The
 * parts' URLs are kept in the state file, so a rerun resumes each. A
 * server that does not offer concatenation (OPTIONS says so: an older
 * dripd, another tus server) gets the file as one stream, with a note on
 * stderr. A cluster offers it: any node takes any part.
 *
 * Threads: dripctl's, plus a parallel upload's part threads while it runs.
 */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dripd/util.h"
#include "progress.h"

#define BODY_CAP (16u << 20)

struct buf {
    char *p;
    size_t len, cap;
    bool toobig;
};

static size_t buf_write(char *data, size_t size, size_t n, void *arg)
{
    struct buf *b = arg;
    size_t len = size * n;
    if (b->len + len + 1 > BODY_CAP) {
        b->toobig = true;
        return 0;
    }
    if (b->p == NULL || b->len + len + 1 > b->cap) {
        b->cap = DR_MAX(b->cap * 2, b->len + len + 1);
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return len;
}

/* Response headers we care about. */
struct hdrs {
    char location[1024];
    char offset[32];
    char job[64];
    char media[64];
    char retry_after[32];
    char extension[256];
};

static void copy_hdr(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
        n--;
    while (n > 0 && *v == ' ') {
        v++;
        n--;
    }
    snprintf(dst, cap, "%.*s", (int)n, v);
}

static size_t hdr_cb(char *data, size_t size, size_t n, void *arg)
{
    struct hdrs *h = arg;
    size_t len = size * n;
    const char *colon = memchr(data, ':', len);
    if (colon == NULL)
        return len;
    size_t klen = (size_t)(colon - data), vlen = len - klen - 1;
    const char *v = colon + 1;
#define HDR(name, field)                                                                           \
    if (klen == strlen(name) && strncasecmp(data, name, klen) == 0)                                \
        copy_hdr(h->field, sizeof h->field, v, vlen);
    HDR("Location", location)
    HDR("Upload-Offset", offset)
    HDR("Upload-Job", job)
    HDR("Upload-Media", media)
    HDR("Retry-After", retry_after)
    HDR("Tus-Extension", extension)
#undef HDR
    return len;
}

/* ---------- interruption and progress ---------- */
static volatile sig_atomic_t g_interrupted;

static void on_interrupt(int sig)
{
    (void)sig;
    g_interrupted = 1; /* SA_RESETHAND: a second Ctrl-C kills as usual */
}

void client_catch_interrupt(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_interrupt;
    sa.sa_flags = SA_RESETHAND; /* no SA_RESTART: waits end at once */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool client_interrupted(void)
{
    return g_interrupted != 0;
}

void client_sleep_ms(long ms)
{
    uint64_t end = (uint64_t)dr_mono_ms() + (uint64_t)ms;
    while (!g_interrupted) {
        uint64_t now = (uint64_t)dr_mono_ms();
        if (now >= end)
            return;
        uint64_t left = DR_MIN(end - now, 100);
        struct timespec ts = {0, (long)left * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Every request's progress callback: stops it on Ctrl-C, and moves the
 * transfer's progress when one is on screen. */
static int xfer_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                   curl_off_t ulnow)
{
    struct client *c = arg;
    if (g_interrupted)
        return 1;
    if (c->xfer_now != NULL && (ultotal > 0 || ulnow > 0))
        __atomic_store_n(c->xfer_now, c->xfer_base + (uint64_t)ulnow, __ATOMIC_RELAXED);
    struct progress *p = c->progress;
    if (p == NULL)
        return 0;
    if (ultotal > 0 || ulnow > 0)
        progress_update(p, c->xfer_base + (uint64_t)ulnow);
    else if (dltotal > 0 || dlnow > 0) {
        if (dltotal > 0)
            p->total = (uint64_t)dltotal;
        progress_update(p, (uint64_t)dlnow);
    }
    return 0;
}

/* ---------- basics ---------- */
int client_init(struct client *c)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    c->curl = curl_easy_init();
    c->tty = isatty(2);
    return c->curl ? 0 : -1;
}

void client_cleanup(struct client *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_global_cleanup();
}

int client_exit_code(const struct client *c)
{
    switch (c->status) {
    case 0:
        return c->local_code ? c->local_code : EXIT_FAIL;
    case 401:
    case 403:
        return EXIT_AUTH;
    case 404:
        return EXIT_NOTFOUND;
    case 409:
    case 412:
        return EXIT_CONFLICT;
    case 503:
        return EXIT_BUSY;
    default:
        return EXIT_FAIL;
    }
}

void client_local_error(struct client *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    c->status = 0;
    c->local_code = code;
}

char *client_escape(struct client *c, const char *s)
{
    char *e = curl_easy_escape(c->curl, s, 0);
    char *r = xstrdup(e);
    curl_free(e);
    return r;
}

static struct curl_slist *base_headers(struct client *c)
{
    struct curl_slist *h = NULL;
    if (c->token && c->token[0]) {
        char *a = xasprintf("Authorization: Bearer %s", c->token);
        h = curl_slist_append(h, a);
        free(a);
    }
    return h;
}

static void reset(struct client *c, const char *path)
{
    CURL *k = c->curl;
    curl_easy_reset(k);
    char *url = xasprintf("%s%s", c->url, path);
    curl_easy_setopt(k, CURLOPT_URL, url);
    free(url);
    curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(k, CURLOPT_USERAGENT, "dripctl/" DRIPD_VERSION);
    if (c->cacert != NULL)
        curl_easy_setopt(k, CURLOPT_CAINFO, c->cacert);
    curl_easy_setopt(k, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(k, CURLOPT_XFERINFOFUNCTION, xfer_cb);
    curl_easy_setopt(k, CURLOPT_XFERINFODATA, c);
    c->status = 0;
    c->local_code = 0;
}

/* Run the prepared request; c->status is its HTTP status (0 when none). */
static CURLcode perform(struct client *c)
{
    CURLcode rc = curl_easy_perform(c->curl);
    c->status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
    return rc;
}

/* Fill c->err from a problem+json body (or the status line). */
static void set_error(struct client *c, CURLcode rc, const struct buf *b)
{
    if (rc == CURLE_ABORTED_BY_CALLBACK && g_interrupted) {
        client_local_error(c, EXIT_INTERRUPTED, "interrupted");
        return;
    }
    if (rc != CURLE_OK && (c->status == 0 || c->status / 100 == 2)) {
        c->status = 0;
        snprintf(c->err, sizeof c->err, "%s: %s", c->url, curl_easy_strerror(rc));
        return;
    }
    json_t *doc = b && b->p ? json_loads(b->p, 0, NULL) : NULL;
    const char *detail = doc ? json_string_value(json_object_get(doc, "detail")) : NULL;
    const char *title = doc ? json_string_value(json_object_get(doc, "title")) : NULL;
    snprintf(c->err, sizeof c->err, "HTTP %ld%s%s", c->status, detail || title ? ": " : "",
             detail  ? detail
             : title ? title
                     : "");
    json_decref(doc);
}

int client_json(struct client *c, const char *method, const char *path, json_t *body, json_t **out)
{
    reset(c, path);
    struct buf b = {0};
    struct curl_slist *h = base_headers(c);
    h = curl_slist_append(h, "Accept: application/json");
    char *text = NULL;
    if (body) {
        text = json_dumps(body, JSON_COMPACT);
        h = curl_slist_append(h, "Content-Type: application/json");
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, text);
    }
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 120L);
    CURLcode rc = perform(c);
    curl_slist_free_all(h);
    free(text);
    int ret = -1;
    if (rc == CURLE_OK && c->status >= 200 && c->status < 300) {
        ret = 0;
        if (out)
            *out = b.len ? json_loads(b.p, 0, NULL) : NULL;
    } else {
        set_error(c, rc, &b);
    }
    free(b.p);
    return ret;
}

/* A download's body: a 200's goes to the stream, anything else into err. */
struct dl {
    struct client *c;
    FILE *f;
    int ok; /* -1 until the status is known */
    bool write_failed;
    struct buf err;
};

static size_t dl_write(char *data, size_t size, size_t n, void *arg)
{
    struct dl *d = arg;
    size_t len = size * n;
    if (d->ok < 0) {
        long st = 0;
        curl_easy_getinfo(d->c->curl, CURLINFO_RESPONSE_CODE, &st);
        d->ok = st == 200;
    }
    if (!d->ok)
        return d->err.len < 4096 ? buf_write(data, size, n, &d->err) : len;
    if (fwrite(data, 1, len, d->f) != len) {
        d->write_failed = true;
        return 0;
    }
    return len;
}

int client_download(struct client *c, const char *path, FILE *f, const char *label)
{
    reset(c, path);
    struct curl_slist *h = base_headers(c);
    struct dl d = {.c = c, .f = f, .ok = -1};
    struct progress p;
    progress_begin(&p, !c->quiet && !c->json, c->tty, label, 0, 0);
    c->progress = &p;
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, dl_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &d);
    CURLcode rc = perform(c);
    c->progress = NULL;
    curl_slist_free_all(h);
    int ret = -1;
    if (d.write_failed)
        client_local_error(c, EXIT_FAIL, "writing: %s", strerror(errno));
    else if (rc != CURLE_OK || c->status != 200)
        set_error(c, rc, &d.err);
    else
        ret = 0;
    if (ret == 0) {
        curl_off_t got = 0;
        curl_easy_getinfo(c->curl, CURLINFO_SIZE_DOWNLOAD_T, &got);
        p.done = (uint64_t)got;
        progress_end(&p);
    } else {
        progress_break(&p);
    }
    free(d.err.p);
    return ret;
}

/* ---------- tus ---------- */
#define TUS_RETRIES 6 /* pauses of 1, 2, 3, 4, 5, 5 s: about 20 s in all */

static char *b64(const char *s)
{
    size_t n = strlen(s);
    char *out = xmalloc(4 * ((n + 2) / 3) + 1);
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

/* The state file is a JSON object: fingerprint -> upload URL. */
static json_t *state_load(const char *file)
{
    json_t *s = file ? json_load_file(file, 0, NULL) : NULL;
    if (!json_is_object(s)) {
        json_decref(s);
        s = json_object();
    }
    return s;
}

static void state_save(const char *file, json_t *s)
{
    if (file == NULL)
        return;
    char *dir = xstrdup(file);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        dr_mkdirs(dir, 0700);
    }
    free(dir);
    char *tmp = xasprintf("%s.tmp", file);
    if (json_dump_file(s, tmp, JSON_INDENT(1)) == 0)
        rename(tmp, file);
    free(tmp);
}

struct reader {
    FILE *f;
    uint64_t left;
};

static size_t read_cb(char *dst, size_t size, size_t n, void *arg)
{
    struct reader *r = arg;
    size_t want = size * n;
    if (want > r->left)
        want = (size_t)r->left;
    size_t got = fread(dst, 1, want, r->f);
    r->left -= got;
    return got;
}

/* HEAD the upload: its offset, or -1 with c->err set (c->status 404 when
 * it is gone). */
/* A tus request without a body (HEAD, OPTIONS): its headers into *hd. */
static CURLcode tus_bodiless(struct client *c, const char *method, const char *path,
                             struct hdrs *hd)
{
    reset(c, path);
    struct curl_slist *h = base_headers(c);
    h = curl_slist_append(h, "Tus-Resumable: 1.0.0");
    if (strcmp(method, "HEAD") != 0)
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, hdr_cb);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, hd);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 30L);
    CURLcode rc = perform(c);
    curl_slist_free_all(h);
    return rc;
}

static int64_t tus_head(struct client *c, const char *loc)
{
    struct hdrs hd = {0};
    CURLcode rc = tus_bodiless(c, "HEAD", loc, &hd);
    if (rc == CURLE_OK && c->status == 200 && hd.offset[0] != '\0')
        return strtoll(hd.offset, NULL, 10);
    set_error(c, rc, NULL);
    return -1;
}

/* Does the server offer tus concatenation (OPTIONS /v1/uploads, its
 * Tus-Extension)? A cluster does not (docs/CLUSTER.md); when the answer
 * is anything else, the caller sends one stream, whose own requests say
 * what is wrong. */
static bool tus_offers_concat(struct client *c)
{
    struct hdrs hd = {0};
    CURLcode rc = tus_bodiless(c, "OPTIONS", "/v1/uploads", &hd);
    return rc == CURLE_OK && c->status / 100 == 2 && strstr(hd.extension, "concatenation") != NULL;
}

/* A chunk failed with c->status / c->err. When that may pass (no answer,
 * 5xx, 409 or 423: a race on the offset), ask the server for its offset
 * again, pausing longer each time, until it answers or *attempts reaches
 * TUS_RETRIES. 0 with *off updated, or -1 with the reason in c->err. */
static int tus_recover(struct client *c, const char *label, const char *loc, int *attempts,
                       int64_t *off)
{
    long first = c->status;
    char why[sizeof c->err];
    snprintf(why, sizeof why, "%s", c->err);
    if (c->local_code == EXIT_INTERRUPTED ||
        !(first == 0 || first >= 500 || first == 409 || first == 423))
        return -1;
    while (*attempts < TUS_RETRIES) {
        long pause = DR_MIN(*attempts + 1, 5);
        (*attempts)++;
        if (c->progress)
            progress_break(c->progress);
        if (!c->quiet)
            fprintf(stderr, "dripctl: %s: %s; retrying in %ld s\n", label, why, pause);
        client_sleep_ms(pause * 1000);
        if (g_interrupted) {
            client_local_error(c, EXIT_INTERRUPTED, "interrupted");
            return -1;
        }
        int64_t o = tus_head(c, loc);
        if (o >= 0) {
            *off = o;
            return 0;
        }
        if (c->local_code == EXIT_INTERRUPTED)
            return -1;
        if (c->status != 0 && c->status < 500 && c->status != 423) {
            /* The upload is gone (a 409 that ended it, an expiry): the
             * chunk's own answer says why. */
            if (first != 0) {
                c->status = first;
                snprintf(c->err, sizeof c->err, "%s", why);
            }
            return -1;
        }
        snprintf(why, sizeof why, "%s", c->err);
    }
    snprintf(c->err, sizeof c->err, "%.400s (gave up after %d retries; rerun to resume)", why,
             TUS_RETRIES);
    return -1;
}

/* What a creation (POST /v1/uploads) asks for. */
struct create_req {
    const char *name, *folder; /* NULL name: a partial upload (no metadata) */
    int64_t length;            /* Upload-Length; -1: none (a final upload) */
    const char *concat;        /* Upload-Concat value, or NULL */
    const char *if_match;      /* If-Match value, or NULL */
    bool rename;               /* ?conflict=rename */
};

/* POST /v1/uploads; the new upload's path into *loc, and (a final upload,
 * which completes at once) its job and media ids into job_id / media_id
 * (64 bytes each) when given. 0 / -1 with c->status / c->err. */
static int tus_create(struct client *c, const struct create_req *r, char **loc, char *job_id,
                      char *media_id)
{
    reset(c, r->rename ? "/v1/uploads?conflict=rename" : "/v1/uploads");
    struct hdrs hd = {0};
    struct buf b = {0};
    struct curl_slist *h = base_headers(c);
    h = curl_slist_append(h, "Tus-Resumable: 1.0.0");
    char *v[4] = {NULL, NULL, NULL, NULL};
    if (r->name != NULL) {
        char *m1 = b64(r->name), *m2 = b64(r->folder);
        v[0] = xasprintf("Upload-Metadata: filename %s,folder %s", m1, m2);
        free(m1);
        free(m2);
    }
    if (r->length >= 0)
        v[1] = xasprintf("Upload-Length: %lld", (long long)r->length);
    if (r->concat != NULL)
        v[2] = xasprintf("Upload-Concat: %s", r->concat);
    if (r->if_match != NULL)
        v[3] = xasprintf("If-Match: %s", r->if_match);
    for (int i = 0; i < 4; i++) {
        if (v[i] != NULL)
            h = curl_slist_append(h, v[i]);
        free(v[i]);
    }
    curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, 0L);
    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, hdr_cb);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &hd);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    CURLcode rc = perform(c);
    curl_slist_free_all(h);
    int ret = -1;
    if (rc != CURLE_OK || c->status != 201 || hd.location[0] == '\0') {
        set_error(c, rc, &b);
    } else {
        /* Keep only the path part so the state survives a host alias. */
        const char *p = strstr(hd.location, "://");
        p = p ? strchr(p + 3, '/') : hd.location;
        *loc = xstrdup(p ? p : hd.location);
        if (job_id != NULL && hd.job[0])
            snprintf(job_id, 64, "%s", hd.job);
        if (media_id != NULL && hd.media[0])
            snprintf(media_id, 64, "%s", hd.media);
        ret = 0;
    }
    free(b.p);
    return ret;
}

/* One PATCH of n bytes of f at base + *off (base: where a partial
 * upload's bytes start in the file). 0 with *off moved on (and the job and
 * media ids, when given, once the server has them); -1 with c->status /
 * c->err. */
static int tus_patch(struct client *c, const char *loc, FILE *f, uint64_t base, int64_t *off,
                     uint64_t n, uint64_t limit_rate, char *job_id, char *media_id)
{
    if (fseeko(f, (off_t)(base + (uint64_t)*off), SEEK_SET) < 0) {
        client_local_error(c, EXIT_FAIL, "%s", strerror(errno));
        return -1;
    }
    reset(c, loc);
    struct hdrs hd = {0};
    struct buf b = {0};
    struct reader rd = {.f = f, .left = n};
    char *oh = xasprintf("Upload-Offset: %lld", (long long)*off);
    struct curl_slist *h = base_headers(c);
    h = curl_slist_append(h, "Tus-Resumable: 1.0.0");
    h = curl_slist_append(h, "Content-Type: application/offset+octet-stream");
    h = curl_slist_append(h, "Expect:");
    h = curl_slist_append(h, oh);
    free(oh);
    curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, "PATCH");
    curl_easy_setopt(c->curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c->curl, CURLOPT_READFUNCTION, read_cb);
    curl_easy_setopt(c->curl, CURLOPT_READDATA, &rd);
    curl_easy_setopt(c->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)n);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, hdr_cb);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &hd);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
    if (limit_rate)
        curl_easy_setopt(c->curl, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)limit_rate);
    c->xfer_base = (uint64_t)*off;
    CURLcode rc = perform(c);
    curl_slist_free_all(h);
    int ret = -1;
    if (rc == CURLE_OK && c->status == 204 && hd.offset[0]) {
        *off = strtoll(hd.offset, NULL, 10);
        if (job_id != NULL && hd.job[0])
            snprintf(job_id, 64, "%s", hd.job);
        if (media_id != NULL && hd.media[0])
            snprintf(media_id, 64, "%s", hd.media);
        ret = 0;
    } else {
        set_error(c, rc, &b);
    }
    free(b.p);
    return ret;
}

/* --if-match ETAG as a header value: an entity tag is quoted ("<sha256>",
 * as the server's ETag header gives it); a bare one is quoted here. */
static char *if_match_value(const char *etag)
{
    if (strcmp(etag, "*") == 0 || etag[0] == '"' || strncmp(etag, "W/", 2) == 0)
        return xstrdup(etag);
    return xasprintf("\"%s\"", etag);
}

/* ---------- parallel: tus concatenation ---------- */

/* One partial upload of a parallel upload, sent by its own thread with
 * its own easy handle (libcurl handles are not shared across threads). */
struct part {
    struct client c; /* url, token, cacert borrowed from the caller's */
    const char *file;
    char *loc;
    uint64_t start, len; /* the part's bytes in the file */
    int64_t off;         /* the server's durable offset of the part */
    uint64_t chunk, limit_rate;
    uint64_t sent; /* atomic: bytes of the part sent so far (progress) */
    int done;      /* atomic: the thread has finished */
    int rc;        /* 0, or -1 with c.status / c.err */
};

static void *part_main(void *arg)
{
    struct part *p = arg;
    FILE *f = fopen(p->file, "rb");
    p->rc = -1;
    if (f == NULL) {
        client_local_error(&p->c, EXIT_FAIL, "%s: %s", p->file, strerror(errno));
        goto out;
    }
    int attempts = 0;
    while ((uint64_t)p->off < p->len) {
        uint64_t n = DR_MIN(p->chunk, p->len - (uint64_t)p->off);
        int64_t before = p->off;
        if (tus_patch(&p->c, p->loc, f, p->start, &p->off, n, p->limit_rate, NULL, NULL) == 0) {
            if (p->off > before)
                attempts = 0;
            __atomic_store_n(&p->sent, (uint64_t)p->off, __ATOMIC_RELAXED);
            continue;
        }
        if (p->c.local_code == EXIT_INTERRUPTED ||
            tus_recover(&p->c, p->loc, p->loc, &attempts, &p->off) < 0)
            goto out;
    }
    p->rc = 0;
out:
    if (f != NULL)
        fclose(f);
    __atomic_store_n(&p->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* The file as n partial uploads sent at once, then one final upload that
 * joins them (Upload-Concat). state[key] holds the parts' URLs, so a rerun
 * resumes each part where the server has it; a final upload refused (409,
 * 412) keeps them for a rerun with --replace or --conflict=rename. */
static int tus_upload_parallel(struct client *c, const char *file, uint64_t size, const char *name,
                               const char *folder, const char *state_file, json_t *state,
                               const char *key, const struct tus_opts *o, char *job_id,
                               char *media_id, uint64_t *resumed_at)
{
    size_t n = o->parallel;
    struct part *parts = xcalloc(n, sizeof *parts);
    pthread_t *th = xcalloc(n, sizeof *th);
    size_t started = 0;
    int ret = -1;
    json_t *known = json_object_get(state, key);
    if (!json_is_array(known) || json_array_size(known) != n)
        known = NULL;
    json_t *locs = json_array();
    uint64_t have = 0;
    for (size_t i = 0; i < n; i++) {
        struct part *p = &parts[i];
        p->file = file;
        p->start = size * i / n;
        p->len = size * (i + 1) / n - p->start;
        p->chunk = o->chunk;
        p->limit_rate = o->limit_rate;
        const char *k = known ? json_string_value(json_array_get(known, i)) : NULL;
        p->off = -1;
        if (k != NULL) {
            p->off = tus_head(c, k);
            if (p->off < 0 && c->local_code == EXIT_INTERRUPTED)
                goto out;
            if (p->off >= 0)
                p->loc = xstrdup(k);
        }
        if (p->off < 0) { /* new, expired or gone: a new partial upload */
            struct create_req r = {.length = (int64_t)p->len, .concat = "partial"};
            if (tus_create(c, &r, &p->loc, NULL, NULL) < 0)
                goto out;
            p->off = 0;
        }
        p->sent = (uint64_t)p->off;
        have += (uint64_t)p->off;
        json_array_append_new(locs, json_string(p->loc));
    }
    json_object_set(state, key, locs);
    state_save(state_file, state);
    *resumed_at = have;

    struct progress pg;
    progress_begin(&pg, !c->quiet && !c->json, c->tty, name, size, have);
    c->progress = &pg;
    for (; started < n; started++) {
        struct part *p = &parts[started];
        p->c.url = c->url;
        p->c.token = c->token;
        p->c.cacert = c->cacert;
        p->c.quiet = c->quiet || c->json;
        p->c.curl = curl_easy_init();
        p->c.xfer_now = &p->sent;
        if (p->c.curl == NULL || pthread_create(&th[started], NULL, part_main, p) != 0) {
            client_local_error(c, EXIT_FAIL, "cannot start the upload of part %zu", started + 1);
            if (p->c.curl != NULL)
                curl_easy_cleanup(p->c.curl);
            p->c.curl = NULL;
            break;
        }
    }
    /* the threads stop by themselves on Ctrl-C (xfer_cb) */
    for (;;) {
        uint64_t sent = 0;
        size_t done = 0;
        for (size_t i = 0; i < started; i++) {
            sent += __atomic_load_n(&parts[i].sent, __ATOMIC_RELAXED);
            done += __atomic_load_n(&parts[i].done, __ATOMIC_ACQUIRE) != 0;
        }
        progress_update(&pg, sent);
        if (done == started)
            break;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    bool ok = started == n;
    for (size_t i = 0; i < started && ok; i++) {
        if (parts[i].rc < 0) { /* the first failure says why */
            ok = false;
            c->status = parts[i].c.status;
            c->local_code = parts[i].c.local_code;
            snprintf(c->err, sizeof c->err, "part %zu of %zu: %.400s", i + 1, n, parts[i].c.err);
        }
    }
    if (!ok) {
        progress_break(&pg);
        c->progress = NULL;
        goto out;
    }
    pg.done = size;
    progress_end(&pg);
    c->progress = NULL;

    /* the final upload: joins the parts, becomes the file and its job */
    size_t cap = 8;
    for (size_t i = 0; i < n; i++)
        cap += strlen(parts[i].loc) + 1;
    char *concat = xmalloc(cap);
    size_t at = (size_t)snprintf(concat, cap, "final;");
    for (size_t i = 0; i < n; i++)
        at += (size_t)snprintf(concat + at, cap - at, "%s%s", i ? " " : "", parts[i].loc);
    char *im = o->if_match != NULL ? if_match_value(o->if_match) : NULL;
    struct create_req r = {.name = name,
                           .folder = folder,
                           .length = -1,
                           .concat = concat,
                           .if_match = im,
                           .rename = o->rename};
    char *loc = NULL;
    int rc = tus_create(c, &r, &loc, job_id, media_id);
    if (rc < 0 && o->replace && c->status == 409) {
        r.if_match = "*";
        rc = tus_create(c, &r, &loc, job_id, media_id);
    }
    free(im);
    free(concat);
    free(loc);
    if (rc < 0)
        goto out;
    json_object_del(state, key);
    state_save(state_file, state);
    ret = 0;
out:
    for (size_t i = 0; i < n; i++) {
        if (parts[i].c.curl != NULL)
            curl_easy_cleanup(parts[i].c.curl);
        free(parts[i].loc);
    }
    json_decref(locs);
    free(parts);
    free(th);
    return ret;
}

int client_tus_upload(struct client *c, const char *file, const char *folder,
                      const char *state_file, const struct tus_opts *o, char *job_id,
                      char *media_id, uint64_t *resumed_at)
{
    struct stat st;
    *resumed_at = 0;
    if (stat(file, &st) < 0) {
        client_local_error(c, EXIT_FAIL, "%s", strerror(errno));
        return -1;
    }
    if (S_ISDIR(st.st_mode)) {
        client_local_error(c, EXIT_USAGE, "is a directory; upload takes files (e.g. %s/*)", file);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        client_local_error(c, EXIT_USAGE, "not a regular file");
        return -1;
    }
    FILE *f = fopen(file, "rb");
    if (f == NULL) {
        client_local_error(c, EXIT_FAIL, "%s", strerror(errno));
        return -1;
    }
    char *abs = realpath(file, NULL);
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    char *fp = xasprintf("%s|%lld|%lld|%s|%s", abs ? abs : file, (long long)st.st_size,
                         (long long)st.st_mtime, folder, c->url);
    free(abs);
    json_t *state = state_load(state_file);
    bool parallel = o->parallel > 1 && (uint64_t)st.st_size >= o->parallel;
    if (parallel && !tus_offers_concat(c)) {
        fprintf(stderr, "dripctl: %s does not offer tus concatenation; sending %s as one stream\n",
                c->url, base);
        parallel = false;
    }
    if (parallel) {
        char *key = xasprintf("%s|parallel %u", fp, o->parallel);
        int r = tus_upload_parallel(c, file, (uint64_t)st.st_size, base, folder, state_file, state,
                                    key, o, job_id, media_id, resumed_at);
        free(key);
        if (r < 0 && c->local_code == EXIT_INTERRUPTED)
            client_local_error(c, EXIT_INTERRUPTED,
                               "interrupted; rerun the same command to resume each part");
        fclose(f);
        json_decref(state);
        free(fp);
        return r;
    }
    const char *known = json_string_value(json_object_get(state, fp));
    char *loc = known ? xstrdup(known) : NULL;
    int64_t off = -1;
    int ret = -1;
    struct progress pg;
    if (loc) {
        off = tus_head(c, loc);
        if (off < 0 && c->local_code == EXIT_INTERRUPTED)
            goto out;
        if (off < 0) { /* expired or gone: start again */
            free(loc);
            loc = NULL;
        } else {
            *resumed_at = (uint64_t)off;
        }
    }
    if (loc == NULL) {
        char *im = o->if_match != NULL ? if_match_value(o->if_match) : NULL;
        struct create_req r = {.name = base,
                               .folder = folder,
                               .length = st.st_size,
                               .if_match = im,
                               .rename = o->rename};
        int rc = tus_create(c, &r, &loc, NULL, NULL);
        /* --replace: the name is taken, so replace whatever is there */
        if (rc < 0 && o->replace && c->status == 409) {
            r.if_match = "*";
            rc = tus_create(c, &r, &loc, NULL, NULL);
        }
        free(im);
        if (rc < 0)
            goto out;
        off = 0;
        json_object_set_new(state, fp, json_string(loc));
        state_save(state_file, state);
    }
    progress_begin(&pg, !c->quiet && !c->json, c->tty, base, (uint64_t)st.st_size, (uint64_t)off);
    c->progress = &pg;
    int attempts = 0;
    while ((uint64_t)off < (uint64_t)st.st_size || (st.st_size == 0 && job_id[0] == '\0')) {
        uint64_t n = DR_MIN(o->chunk, (uint64_t)st.st_size - (uint64_t)off);
        int64_t before = off;
        if (tus_patch(c, loc, f, 0, &off, n, o->limit_rate, job_id, media_id) == 0) {
            if (off > before)
                attempts = 0;
            progress_update(&pg, (uint64_t)off);
            continue;
        }
        if (c->local_code == EXIT_INTERRUPTED || tus_recover(c, base, loc, &attempts, &off) < 0)
            goto out;
    }
    pg.done = (uint64_t)st.st_size;
    progress_end(&pg);
    json_object_del(state, fp);
    state_save(state_file, state);
    ret = 0;
out:
    if (c->progress) {
        progress_break(c->progress);
        c->progress = NULL;
    }
    if (ret < 0 && c->local_code == EXIT_INTERRUPTED) {
        char d[32], t[32];
        human_size((double)DR_MAX(off, 0), d, sizeof d);
        human_size((double)st.st_size, t, sizeof t);
        client_local_error(c, EXIT_INTERRUPTED,
                           "interrupted at %s of %s; rerun the same command to resume", d, t);
    }
    fclose(f);
    json_decref(state);
    free(loc);
    free(fp);
    return ret;
}

/* ---------- SSE ---------- */
struct sse {
    struct buf line;
    char type[64];
    char id[64];
    struct buf data;
    char *last_id;
    size_t last_cap;
    long *retry_ms;
    int (*fn)(const char *, const char *, const char *, void *);
    void *arg;
    int stop;
    void *curl;      /* to tell an error's body from the stream */
    struct buf body; /* an error's body (problem+json), at most 64 KiB */
};

static void sse_line(struct sse *s, const char *l)
{
    if (l[0] == '\0') {
        if (s->id[0])
            snprintf(s->last_id, s->last_cap, "%s", s->id);
        if (s->data.len && s->fn(s->id, s->type[0] ? s->type : "message", s->data.p, s->arg))
            s->stop = 1;
        s->type[0] = '\0';
        s->id[0] = '\0';
        s->data.len = 0;
        if (s->data.p)
            s->data.p[0] = '\0';
        return;
    }
    if (l[0] == ':')
        return;
    const char *v = strchr(l, ':');
    size_t k = v ? (size_t)(v - l) : strlen(l);
    v = v ? v + 1 : "";
    if (*v == ' ')
        v++;
    if (k == 5 && strncmp(l, "event", 5) == 0)
        snprintf(s->type, sizeof s->type, "%s", v);
    else if (k == 2 && strncmp(l, "id", 2) == 0)
        snprintf(s->id, sizeof s->id, "%s", v);
    else if (k == 5 && strncmp(l, "retry", 5) == 0 && *v >= '0' && *v <= '9')
        *s->retry_ms = strtol(v, NULL, 10);
    else if (k == 4 && strncmp(l, "data", 4) == 0) {
        if (s->data.len)
            buf_write("\n", 1, 1, &s->data);
        buf_write((char *)v, 1, strlen(v), &s->data);
    }
}

static size_t sse_write(char *data, size_t size, size_t n, void *arg)
{
    struct sse *s = arg;
    size_t len = size * n;
    long code = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code != 200) {
        if (s->body.len + len <= 65536)
            buf_write(data, 1, len, &s->body);
        return len;
    }
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n') {
            if (s->line.len && s->line.p[s->line.len - 1] == '\r')
                s->line.p[--s->line.len] = '\0';
            sse_line(s, s->line.p ? s->line.p : "");
            s->line.len = 0;
            if (s->line.p)
                s->line.p[0] = '\0';
            if (s->stop)
                return 0;
        } else if (s->line.len < 65536) {
            buf_write(&data[i], 1, 1, &s->line);
        }
    }
    return len;
}

int client_sse(struct client *c, const char *path, char *last_id, size_t cap, long *retry_ms,
               int (*fn)(const char *id, const char *type, const char *data, void *arg), void *arg)
{
    reset(c, path);
    struct sse s = {.fn = fn,
                    .arg = arg,
                    .last_id = last_id,
                    .last_cap = cap,
                    .retry_ms = retry_ms,
                    .curl = c->curl};
    struct curl_slist *h = base_headers(c);
    h = curl_slist_append(h, "Accept: text/event-stream");
    if (last_id[0]) {
        char *l = xasprintf("Last-Event-ID: %s", last_id);
        h = curl_slist_append(h, l);
        free(l);
    }
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, sse_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &s);
    /* The server pings every 15 s: a silent minute is a dead connection. */
    curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, 60L);
    CURLcode rc = perform(c);
    curl_slist_free_all(h);
    free(s.line.p);
    free(s.data.p);
    if (s.stop) {
        free(s.body.p);
        return 0;
    }
    if (rc != CURLE_OK || c->status != 200) {
        set_error(c, rc, &s.body);
        free(s.body.p);
        return -1;
    }
    free(s.body.p);
    return 0;
}

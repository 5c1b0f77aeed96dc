/* client.c - dripctl's libcurl client (see client.h).
 *
 * One easy handle is reused for every request so connections stay alive.
 * Response bodies are collected into a buffer capped at 16 MiB (JSON only;
 * downloads stream to a file). tus uploads send fixed-size PATCH chunks
 * read straight from the file, so memory stays small whatever the size,
 * and after each acknowledged chunk the server's offset is durable: a
 * killed dripctl resumes from there on its next run (state_file maps the
 * file to its upload URL).
 */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dripd/util.h"

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
    if (b->len + len + 1 > b->cap) {
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
#undef HDR
    return len;
}

/* ---------- progress bar ---------- */
struct progress {
    struct client *c;
    const char *label;
    uint64_t base; /* bytes done before this transfer (resume) */
    uint64_t total;
    uint64_t t0_ms;
    uint64_t last_ms;
    uint64_t last_line;
};

static uint64_t now_ms(void)
{
    return (uint64_t)dr_mono_ms();
}

static void human(double v, char *out, size_t n)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(out, n, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void progress_show(struct progress *p, uint64_t done, bool final)
{
    if (p->c->quiet || p->c->json)
        return;
    uint64_t t = now_ms();
    if (!final && t - p->last_ms < 200)
        return;
    p->last_ms = t;
    double secs = (double)(t - p->t0_ms) / 1000.0;
    double rate = secs > 0 ? (double)(done - p->base) / secs : 0;
    char r[32], d[32], tot[32];
    human(rate, r, sizeof r);
    human((double)done, d, sizeof d);
    human((double)p->total, tot, sizeof tot);
    int pct = p->total ? (int)(done * 100 / p->total) : 100;
    if (p->c->tty) {
        char bar[31];
        int fill = pct * 30 / 100;
        for (int i = 0; i < 30; i++)
            bar[i] = i < fill ? '#' : ' ';
        bar[30] = '\0';
        char eta[32] = "--:--";
        if (rate > 0 && p->total >= done) {
            uint64_t s = (uint64_t)((double)(p->total - done) / rate);
            snprintf(eta, sizeof eta, "%02llu:%02llu", (unsigned long long)(s / 60),
                     (unsigned long long)(s % 60));
        }
        fprintf(stderr, "\r%-24.24s [%s] %3d%% %9s/s ETA %s%s", p->label, bar, pct, r, eta,
                final ? "\n" : "");
    } else if (final || t - p->last_line >= 2000) {
        /* Plain lines for logs and pipes: at most one every 2 s. */
        p->last_line = t;
        fprintf(stderr, "%s: %s of %s (%d%%) at %s/s\n", p->label, d, tot, pct, r);
    }
}

static int xfer_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                   curl_off_t ulnow)
{
    struct progress *p = arg;
    if (ultotal > 0 || ulnow > 0)
        progress_show(p, p->base + (uint64_t)ulnow, false);
    else if (dltotal > 0) {
        p->total = (uint64_t)dltotal;
        progress_show(p, (uint64_t)dlnow, false);
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
    case 401:
    case 403:
        return EXIT_AUTH;
    case 404:
        return EXIT_NOTFOUND;
    case 409:
        return EXIT_CONFLICT;
    case 503:
        return EXIT_BUSY;
    default:
        return EXIT_FAIL;
    }
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
}

/* Fill c->err from a problem+json body (or the status line). */
static void set_error(struct client *c, CURLcode rc, const struct buf *b)
{
    if (rc != CURLE_OK && c->status == 0) {
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
    c->status = 0;
    CURLcode rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
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

int client_download(struct client *c, const char *path, const char *dst, const char *label)
{
    reset(c, path);
    char *tmp = xasprintf("%s.part", dst);
    FILE *f = fopen(tmp, "wb");
    if (f == NULL) {
        snprintf(c->err, sizeof c->err, "%s: %s", tmp, strerror(errno));
        free(tmp);
        c->status = 0;
        return -1;
    }
    struct curl_slist *h = base_headers(c);
    struct progress p = {.c = c, .label = label, .t0_ms = now_ms()};
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, f);
    curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, xfer_cb);
    curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, &p);
    curl_easy_setopt(c->curl, CURLOPT_FAILONERROR, 0L);
    c->status = 0;
    CURLcode rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
    curl_slist_free_all(h);
    int ok = rc == CURLE_OK && c->status == 200;
    if (fclose(f) != 0)
        ok = 0;
    if (!ok) {
        /* The body is a problem+json document: read it back for the message. */
        struct buf b = {0};
        FILE *e = fopen(tmp, "rb");
        if (e) {
            char chunk[4096];
            size_t n = fread(chunk, 1, sizeof chunk - 1, e);
            fclose(e);
            buf_write(chunk, 1, n, &b);
        }
        set_error(c, rc, &b);
        free(b.p);
        unlink(tmp);
        free(tmp);
        return -1;
    }
    curl_off_t got = 0;
    curl_easy_getinfo(c->curl, CURLINFO_SIZE_DOWNLOAD_T, &got);
    p.total = (uint64_t)got;
    progress_show(&p, (uint64_t)got, true);
    int r = rename(tmp, dst) == 0 ? 0 : -1;
    if (r < 0)
        snprintf(c->err, sizeof c->err, "%s: %s", dst, strerror(errno));
    free(tmp);
    return r;
}

/* ---------- tus ---------- */
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

/* HEAD the upload: its offset, or -1 when it is gone. */
static int64_t tus_head(struct client *c, const char *loc)
{
    reset(c, loc);
    struct hdrs hd = {0};
    struct curl_slist *h = base_headers(c);
    h = curl_slist_append(h, "Tus-Resumable: 1.0.0");
    curl_easy_setopt(c->curl, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, hdr_cb);
    curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &hd);
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 30L);
    c->status = 0;
    CURLcode rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
    curl_slist_free_all(h);
    if (rc != CURLE_OK || c->status != 200 || hd.offset[0] == '\0')
        return -1;
    return strtoll(hd.offset, NULL, 10);
}

int client_tus_upload(struct client *c, const char *file, const char *folder,
                      const char *state_file, uint64_t chunk, uint64_t limit_rate, char *job_id,
                      char *media_id, uint64_t *resumed_at)
{
    struct stat st;
    if (stat(file, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(c->err, sizeof c->err, "%s: %s", file,
                 errno ? strerror(errno) : "not a regular file");
        c->status = 0;
        return -1;
    }
    char *abs = realpath(file, NULL);
    const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
    char *fp = xasprintf("%s|%lld|%lld|%s|%s", abs ? abs : file, (long long)st.st_size,
                         (long long)st.st_mtime, folder, c->url);
    free(abs);
    json_t *state = state_load(state_file);
    const char *known = json_string_value(json_object_get(state, fp));
    char *loc = known ? xstrdup(known) : NULL;
    int64_t off = -1;
    int ret = -1;
    FILE *f = NULL;
    *resumed_at = 0;
    if (loc) {
        off = tus_head(c, loc);
        if (off < 0) { /* expired or gone: start again */
            free(loc);
            loc = NULL;
        } else {
            *resumed_at = (uint64_t)off;
        }
    }
    if (loc == NULL) {
        reset(c, "/v1/uploads");
        struct hdrs hd = {0};
        struct buf b = {0};
        char *m1 = b64(base), *m2 = b64(folder);
        char *meta = xasprintf("Upload-Metadata: filename %s,folder %s", m1, m2);
        char *len = xasprintf("Upload-Length: %lld", (long long)st.st_size);
        struct curl_slist *h = base_headers(c);
        h = curl_slist_append(h, "Tus-Resumable: 1.0.0");
        h = curl_slist_append(h, meta);
        h = curl_slist_append(h, len);
        free(m1);
        free(m2);
        free(meta);
        free(len);
        curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE, 0L);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, hdr_cb);
        curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, &hd);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, buf_write);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &b);
        c->status = 0;
        CURLcode rc = curl_easy_perform(c->curl);
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
        curl_slist_free_all(h);
        if (rc != CURLE_OK || c->status != 201 || hd.location[0] == '\0') {
            set_error(c, rc, &b);
            free(b.p);
            goto out;
        }
        free(b.p);
        /* Keep only the path part so the state survives a host alias. */
        const char *p = strstr(hd.location, "://");
        p = p ? strchr(p + 3, '/') : hd.location;
        loc = xstrdup(p ? p : hd.location);
        off = 0;
        json_object_set_new(state, fp, json_string(loc));
        state_save(state_file, state);
    }
    f = fopen(file, "rb");
    if (f == NULL) {
        snprintf(c->err, sizeof c->err, "%s: %s", file, strerror(errno));
        goto out;
    }
    struct progress pg = {.c = c,
                          .label = base,
                          .base = (uint64_t)off,
                          .total = (uint64_t)st.st_size,
                          .t0_ms = now_ms()};
    int transient = 0;
    do {
        uint64_t n = DR_MIN(chunk, (uint64_t)st.st_size - (uint64_t)off);
        if (fseeko(f, (off_t)off, SEEK_SET) < 0) {
            snprintf(c->err, sizeof c->err, "%s: %s", file, strerror(errno));
            goto out;
        }
        reset(c, loc);
        struct hdrs hd = {0};
        struct buf b = {0};
        struct reader rd = {.f = f, .left = n};
        char *oh = xasprintf("Upload-Offset: %lld", (long long)off);
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
        curl_easy_setopt(c->curl, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(c->curl, CURLOPT_XFERINFOFUNCTION, xfer_cb);
        curl_easy_setopt(c->curl, CURLOPT_XFERINFODATA, &pg);
        if (limit_rate)
            curl_easy_setopt(c->curl, CURLOPT_MAX_SEND_SPEED_LARGE, (curl_off_t)limit_rate);
        pg.base = (uint64_t)off;
        c->status = 0;
        CURLcode rc = curl_easy_perform(c->curl);
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
        curl_slist_free_all(h);
        if (rc == CURLE_OK && c->status == 204) {
            off = strtoll(hd.offset, NULL, 10);
            transient = 0;
            if (hd.job[0])
                snprintf(job_id, 64, "%s", hd.job);
            if (hd.media[0])
                snprintf(media_id, 64, "%s", hd.media);
            free(b.p);
            continue;
        }
        /* Network trouble or 5xx: ask the server where it is, then go on. */
        if ((rc != CURLE_OK || c->status >= 500 || c->status == 409) && transient++ < 5) {
            free(b.p);
            struct timespec ts = {.tv_sec = transient, .tv_nsec = 0};
            nanosleep(&ts, NULL);
            int64_t o = tus_head(c, loc);
            if (o >= 0) {
                off = o;
                continue;
            }
        }
        set_error(c, rc, &b);
        free(b.p);
        goto out;
    } while ((uint64_t)off < (uint64_t)st.st_size || (st.st_size == 0 && job_id[0] == '\0'));
    progress_show(&pg, (uint64_t)st.st_size, true);
    json_object_del(state, fp);
    state_save(state_file, state);
    ret = 0;
out:
    if (f)
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
    struct buf data;
    int (*fn)(const char *, const char *, void *);
    void *arg;
    int stop;
};

static void sse_line(struct sse *s, const char *l)
{
    if (l[0] == '\0') {
        if (s->data.len && s->fn(s->type[0] ? s->type : "message", s->data.p, s->arg))
            s->stop = 1;
        s->type[0] = '\0';
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

int client_sse(struct client *c, const char *path,
               int (*fn)(const char *type, const char *data, void *arg), void *arg)
{
    reset(c, path);
    struct sse s = {.fn = fn, .arg = arg};
    struct curl_slist *h = base_headers(c);
    h = curl_slist_append(h, "Accept: text/event-stream");
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, sse_write);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &s);
    c->status = 0;
    CURLcode rc = curl_easy_perform(c->curl);
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &c->status);
    curl_slist_free_all(h);
    free(s.line.p);
    free(s.data.p);
    if (s.stop)
        return 0;
    if (rc != CURLE_OK || c->status != 200) {
        set_error(c, rc, NULL);
        return -1;
    }
    return 0;
}

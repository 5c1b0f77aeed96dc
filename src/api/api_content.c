/* api_content.c - GET/HEAD /v1/media/{id}/content and
 * /v1/media/{id}/variants/{name} (routes.h, docs/API.md).
 *
 * What: serves a media's plaintext (or one of its variants: thumb,
 * preview, poster; docs/PROCESSING.md) from this node's cache with
 * sendfile, with conditional and range requests; on a cache miss it
 * asks the pipeline to fill the entry and waits for it, then serves. A
 * variant is the same machinery with its own row: its size, its SHA-256
 * as ETag, its cache entry cache/<id>~<name>, filled the same way; a
 * variant not made yet answers 409 while its media's upload runs, a
 * failed or unknown one 404 (the media JSON says why it failed).
 *
 * Order of checks (all on the loop thread, before any byte is read):
 * visibility (404) -> media state (409 unless "available") ->
 * If-None-Match (304) -> If-Range/Range (416) -> cache -> miss path.
 * So a 304 or 416 never starts a download.
 *
 * Cache protocol (cache.h): cache_open_fresh() opens
 * <data_dir>/cache/<id>, takes flock(LOCK_SH) (the evictor only holds
 * LOCK_EX for an unlink), refuses an entry evicted meanwhile or whose MTIME
 * is older than cache.ttl, and sets its ATIME to now (the LRU clock); this
 * file also refuses an entry whose size is not the media's. The lock
 * lives on the open file description: the fd handed to
 * http_respond_file() is a dup of ours, and ours (lock_fd) is closed in
 * on_done/on_abort, so the lock is held until the response is complete.
 *
 * Miss path (issue 15: a fill is derived data, so no durable job, no
 * catalog write, no fsync): the request sends DR_MSG_FILL naming the entry
 * (worker.h; the pipeline's download stages fetch, verify and decrypt it,
 * pipeline_worker.c) and parks on its loop thread's waiter list.
 * DR_MSG_FILLED (api_content_filled, on loop 0) goes into a small ring
 * and wakes every loop thread; each checks the waiters of the entries
 * named since it last looked: filled -> serve from the cache (an entry
 * gone again is asked for once more, at most CONTENT_MAX_FILLS times);
 * failed -> 502 with the error; busy (the pipeline has FILL_MAX fills) ->
 * 503 + Retry-After. The 1 s fallback (router event hook, seq 0) checks
 * every waiter and asks again every FILL_RESEND_MS (messages can be lost,
 * the pipeline may have restarted); nothing after API_CONTENT_WAIT_MS ->
 * 503 + Retry-After. The pipeline fills an entry once, however many
 * requests ask.
 *
 * Threads: everything runs on the exchange's loop thread; waiter lists
 * are thread-local. The ring of fill answers is shared: fill_mu guards it
 * (a leaf lock).
 */
#include "routes.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <http_parser.h>

#include "dripd/cache.h"
#include "dripd/catalog.h"
#include "dripd/catalog_variants.h"
#include "dripd/config.h"
#include "dripd/http.h"
#include "dripd/id.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/range.h"
#include "dripd/router.h"
#include "dripd/sniff.h"
#include "dripd/util.h"
#include "dripd/worker.h"

#define CONTENT_PREFIX "/v1/media/"
#define CONTENT_SUFFIX "/content"
#define VARIANT_INFIX "/variants/"
/* Fills one request may ask for (a filled entry that vanished at once). */
#define CONTENT_MAX_FILLS 3
/* How long a request waits for its fill before 503. */
#define API_CONTENT_WAIT_MS 60000
/* A waiter asks again when nothing was heard for this long. */
#define FILL_RESEND_MS 1000
/* Fill answers kept for the loop threads (one that fell further behind
 * checks all its waiters). */
#define FILLED_RING 256
#define ENTRY_LEN (DR_ID_LEN + DR_VARIANT_NAME_LEN + 2)

struct content_req {
    struct http_exchange *ex;
    struct http_thread *thread;
    const struct dr_config *cfg;
    char id[DR_ID_LEN + 1];
    char variant[DR_VARIANT_NAME_LEN];                  /* "" for the original */
    char cache_id[DR_ID_LEN + DR_VARIANT_NAME_LEN + 2]; /* "<id>" or "<id>~<variant>" */
    char *user;
    char *name;
    char *content_type;
    char etag[72]; /* "\"<sha256>\"" or "" */
    uint64_t size;
    enum range_result rr;
    uint64_t start, len;
    int lock_fd; /* holds LOCK_SH while the response is sent; -1 */
    /* miss path */
    int fills_asked;    /* DR_MSG_FILL episodes (CONTENT_MAX_FILLS) */
    int64_t asked_at;   /* mono ms of the last DR_MSG_FILL */
    uint64_t asked_seq; /* fill_seq then: older answers are not about this ask */
    bool waiting;
    void *gate_arg; /* api_content_gate's, freed with the request */
    void (*gate_free)(void *arg);
    struct content_req *prev, *next;
    struct http_timer *timer;
};

/* Requests of this loop thread waiting for a fill. */
static _Thread_local struct content_req *tl_waiters;
/* All waiters of the process: lets the event hook skip posting when idle. */
static int n_waiters;

/* The pipeline's answers (DR_MSG_FILLED), newest fill_seq last. */
struct filled {
    uint64_t seq;
    uint32_t how; /* DR_FILL_* */
    char entry[ENTRY_LEN];
    char err[DR_MSG_DATA_LEN];
};
static pthread_mutex_t fill_mu = PTHREAD_MUTEX_INITIALIZER;
static struct filled fill_ring[FILLED_RING];
static uint64_t fill_seq;              /* under fill_mu */
static _Thread_local uint64_t tl_seen; /* the newest answer this loop thread looked at */

static void waiter_add(struct content_req *cr)
{
    if (cr->waiting)
        return;
    cr->waiting = true;
    cr->prev = NULL;
    cr->next = tl_waiters;
    if (tl_waiters)
        tl_waiters->prev = cr;
    tl_waiters = cr;
    __atomic_add_fetch(&n_waiters, 1, __ATOMIC_RELAXED);
}

static void waiter_remove(struct content_req *cr)
{
    if (!cr->waiting)
        return;
    if (cr->prev)
        cr->prev->next = cr->next;
    else
        tl_waiters = cr->next;
    if (cr->next)
        cr->next->prev = cr->prev;
    cr->prev = cr->next = NULL;
    cr->waiting = false;
    __atomic_sub_fetch(&n_waiters, 1, __ATOMIC_RELAXED);
}

/* Leave the miss path for good (before answering). */
static void wait_end(struct content_req *cr)
{
    waiter_remove(cr);
    http_timer_stop(cr->timer);
    cr->timer = NULL;
}

static void cr_free(struct http_exchange *ex)
{
    struct content_req *cr = http_get_data(ex);
    if (!cr)
        return;
    http_set_data(ex, NULL);
    wait_end(cr);
    if (cr->lock_fd >= 0)
        close(cr->lock_fd);
    if (cr->gate_free)
        cr->gate_free(cr->gate_arg);
    free(cr->user);
    free(cr->name);
    free(cr->content_type);
    free(cr);
}

/* ------------------------------------------------------------------ */
/* the cache entry                                                     */

/* Open this media's cache entry through cache.h (open, flock(LOCK_SH),
 * evicted/stale checks, atime touch; hits/misses counted when m is not
 * NULL) and also refuse one whose size is not the media's: 0 and *out =
 * the locked fd, or -ENOENT on a miss. */
static int content_cache_open(const struct content_req *cr, struct dr_metrics *m, int *out)
{
    int fd = -1;
    uint64_t size = 0;
    int rc = cache_open_fresh(cr->cfg->data_dir, cr->cache_id, cr->cfg->cache.ttl, m, &fd, &size);
    if (rc < 0) {
        if (rc != -ENOENT)
            log_warn("content %s: cache entry unreadable: %s", cr->id, strerror(-rc));
        return -ENOENT;
    }
    if (size != cr->size) {
        log_warn("content %s: cache entry has %llu bytes, the media %llu; refilling", cr->id,
                 (unsigned long long)size, (unsigned long long)cr->size);
        close(fd);
        return -ENOENT;
    }
    *out = fd;
    return 0;
}

/* ------------------------------------------------------------------ */
/* headers                                                             */

static bool etag_char(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/* Does an If-None-Match value ("*", or a list of possibly weak entity
 * tags) match our tag (weak comparison: the opaque parts are equal)?
 * A malformed list matches nothing. */
static bool etag_list_matches(const char *hdr, const char *etag)
{
    size_t elen = strlen(etag);
    const char *p = hdr;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return false;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p != '"')
            return false;
        const char *q = p + 1;
        while (*q && etag_char((unsigned char)*q))
            q++;
        if (*q != '"')
            return false;
        if ((size_t)(q + 1 - p) == elen && memcmp(p, etag, elen) == 0)
            return true;
        p = q + 1;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ',' && *p != '\0')
            return false;
    }
}

/* Does If-Range allow the range? Only our exact strong entity tag does;
 * a date or another tag means "send everything". */
static bool if_range_ok(const char *hdr, const char *etag)
{
    if (!hdr)
        return true;
    while (*hdr == ' ' || *hdr == '\t')
        hdr++;
    size_t n = strlen(hdr);
    while (n > 0 && (hdr[n - 1] == ' ' || hdr[n - 1] == '\t'))
        n--;
    return etag[0] && n == strlen(etag) && memcmp(hdr, etag, n) == 0;
}

static bool attr_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$&+-.^_`|~", c) != NULL);
}

/* <type>; filename="<ASCII fallback>"; filename*=UTF-8''<RFC 8187>.
 * The fallback keeps printable ASCII except '"', '\\' and '%' and puts one
 * '_' per other character; caller frees. */
static char *content_disposition(const char *type, const char *name)
{
    if (!name || !*name)
        name = "download";
    size_t n = strlen(name);
    char *fb = xmalloc(n + 1), *star = xmalloc(3 * n + 1);
    size_t f = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '%')
            fb[f++] = (char)c;
        else if (c < 0x80 || c >= 0xC0)
            fb[f++] = '_'; /* one per character: UTF-8 continuation bytes add none */
        if (attr_char(c)) {
            star[s++] = (char)c;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            star[s++] = '%';
            star[s++] = hex[c >> 4];
            star[s++] = hex[c & 15];
        }
    }
    fb[f] = '\0';
    star[s] = '\0';
    char *v = xasprintf("%s; filename=\"%s\"; filename*=UTF-8''%s", type, fb, star);
    free(fb);
    free(star);
    return v;
}

static void add_common_headers(struct content_req *cr)
{
    if (cr->etag[0])
        http_add_header(cr->ex, "ETag", cr->etag);
    http_add_header(cr->ex, "Cache-Control", "private");
    http_add_header(cr->ex, "X-Content-Type-Options", "nosniff");
}

/* ------------------------------------------------------------------ */
/* serving                                                             */

/* Answer from the open, locked cache entry fd (ownership passes here). */
static void content_serve(struct content_req *cr, int fd)
{
    struct http_exchange *ex = cr->ex;
    const char *ct = cr->content_type;
    if (!sniff_type_usable(ct)) {
        uint8_t head[SNIFF_LEN];
        ssize_t got = dr_pread_full(fd, head, sizeof head, 0);
        ct = sniff_content_type(head, got > 0 ? (size_t)got : 0);
    }
    add_common_headers(cr);
    http_add_header(ex, "Accept-Ranges", "bytes");
    /* a variant is an image to show (the web UI's <img>), not to save */
    char *cd = content_disposition(cr->variant[0] ? "inline" : "attachment", cr->name);
    http_add_header(ex, "Content-Disposition", cd);
    free(cd);
    http_add_header(ex, "Content-Security-Policy", "default-src 'none'; sandbox");

    int status = 200;
    uint64_t off = 0, len = cr->size;
    if (cr->rr == RANGE_PARTIAL) {
        char buf[96];
        status = 206;
        off = cr->start;
        len = cr->len;
        http_add_header(ex, "Content-Range",
                        range_content_range(buf, sizeof buf, cr->start, cr->len, cr->size));
    }
    if (len == 0) {
        close(fd);
        http_respond(ex, status, ct, "", 0);
        return;
    }
    /* Keep our own reference to the open file description: the lock stays
     * until on_done/on_abort closes lock_fd, whatever the server does with fd. */
    cr->lock_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    http_respond_file(ex, status, ct, fd, off, len);
}

/* ------------------------------------------------------------------ */
/* miss path                                                           */

static void content_miss(struct content_req *cr);

static void respond_wait_timeout(struct content_req *cr)
{
    wait_end(cr);
    http_add_header(cr->ex, "Retry-After", "5");
    http_respond_problem(cr->ex, 503, "the download of media %s is still running; retry later",
                         cr->id);
}

/* Serve cr if its entry is there now: true when answered. */
static bool try_serve(struct content_req *cr)
{
    int fd;
    if (content_cache_open(cr, NULL, &fd) != 0)
        return false;
    wait_end(cr); /* before answering: cr may be freed once it is sent */
    content_serve(cr, fd);
    return true;
}

/* Ask the pipeline (again) to fill cr's entry. */
static void ask_fill(struct content_req *cr)
{
    pthread_mutex_lock(&fill_mu);
    cr->asked_seq = fill_seq;
    pthread_mutex_unlock(&fill_mu);
    cr->asked_at = dr_mono_ms();
    struct dr_worker_ctx *ctx = http_worker_ctx(cr->ex);
    if (ctx)
        worker_send_data(ctx, DR_MSG_FILL, 0, cr->cache_id, strlen(cr->cache_id) + 1);
}

/* The pipeline answered about cr's entry. Loop thread. */
static void content_answer(struct content_req *cr, uint32_t how, const char *err)
{
    if (try_serve(cr))
        return;
    if (how == DR_FILL_OK) {
        content_miss(cr); /* evicted or expired already: once more */
        return;
    }
    wait_end(cr);
    if (how == DR_FILL_BUSY) {
        http_add_header(cr->ex, "Retry-After", "1");
        http_respond_problem(cr->ex, 503, "the server is busy filling its cache; retry shortly");
        return;
    }
    log_warn("content %s: the download failed: %s", cr->cache_id, err);
    http_respond_problem(cr->ex, 502, "download failed: %s", err[0] ? err : "unknown error");
}

/* The fallback: serve if the entry is there (an answer may be lost), or
 * ask again when nothing came for FILL_RESEND_MS. Loop thread. */
static void content_check(struct content_req *cr)
{
    if (!cr->waiting || try_serve(cr))
        return;
    if (dr_mono_ms() - cr->asked_at >= FILL_RESEND_MS)
        ask_fill(cr);
}

static void content_deadline(void *arg)
{
    struct content_req *cr = arg;
    http_timer_stop(cr->timer); /* one-shot timers are released by their owner */
    cr->timer = NULL;
    respond_wait_timeout(cr);
}

/* The entry is not there: ask for a fill and wait. */
static void content_miss(struct content_req *cr)
{
    if (cr->fills_asked >= CONTENT_MAX_FILLS) {
        wait_end(cr);
        http_add_header(cr->ex, "Retry-After", "5");
        http_respond_problem(cr->ex, 503, "the cache entry of media %s keeps disappearing", cr->id);
        return;
    }
    if (!cr->timer && cr->fills_asked == 0)
        cr->timer = http_timer_start(cr->thread, API_CONTENT_WAIT_MS, false, content_deadline, cr);
    cr->fills_asked++;
    waiter_add(cr);
    ask_fill(cr);
    log_debug("content %s: cache miss, fill asked", cr->cache_id);
}

/* On every loop thread: the answers since this thread last looked go to
 * their waiters; arg != NULL (the fallback): every waiter is checked. */
static void wake_thread(struct http_thread *t, void *arg)
{
    (void)t;
    enum { BATCH = 32 };
    for (;;) {
        struct filled got[BATCH];
        int n = 0;
        bool all = false;
        pthread_mutex_lock(&fill_mu);
        if (fill_seq - tl_seen > FILLED_RING) {
            all = true; /* fell behind: check everyone below */
            tl_seen = fill_seq;
        }
        while (n < BATCH && tl_seen < fill_seq) {
            tl_seen++;
            got[n++] = fill_ring[tl_seen % FILLED_RING];
        }
        bool more = tl_seen < fill_seq;
        pthread_mutex_unlock(&fill_mu);
        struct content_req *next;
        for (int i = 0; i < n; i++)
            for (struct content_req *cr = tl_waiters; cr; cr = next) {
                next = cr->next;
                if (got[i].seq > cr->asked_seq && strcmp(got[i].entry, cr->cache_id) == 0)
                    content_answer(cr, got[i].how, got[i].err);
            }
        if (all || (!more && arg != NULL))
            for (struct content_req *cr = tl_waiters; cr; cr = next) {
                next = cr->next;
                content_check(cr);
            }
        if (!more)
            return;
    }
}

void api_content_filled(struct http_server *srv, uint32_t how, const char *data)
{
    struct filled f = {.how = how};
    size_t n = strnlen(data, DR_MSG_DATA_LEN);
    if (n >= sizeof f.entry)
        return;
    memcpy(f.entry, data, n);
    if (n + 1 < DR_MSG_DATA_LEN)
        snprintf(f.err, sizeof f.err, "%.*s", (int)(DR_MSG_DATA_LEN - n - 1), data + n + 1);
    pthread_mutex_lock(&fill_mu);
    f.seq = ++fill_seq;
    fill_ring[f.seq % FILLED_RING] = f;
    pthread_mutex_unlock(&fill_mu);
    if (__atomic_load_n(&n_waiters, __ATOMIC_RELAXED) > 0)
        http_server_post_all(srv, wake_thread, NULL);
}

static void content_event_hook(struct http_server *srv, uint64_t seq)
{
    static int fallback;
    /* only the fallback (seq 0): fills are not catalog events */
    if (seq == 0 && __atomic_load_n(&n_waiters, __ATOMIC_RELAXED) > 0)
        http_server_post_all(srv, wake_thread, &fallback);
}

/* ------------------------------------------------------------------ */
/* the route                                                           */

/* /v1/media/{id}/content, or /v1/media/{id}/variants/{name} (variant
 * set; "" for content). */
static bool content_path_id(const struct http_exchange *ex, char id[DR_ID_LEN + 1],
                            char variant[DR_VARIANT_NAME_LEN])
{
    const char *p = http_req(ex)->path;
    size_t pl = sizeof CONTENT_PREFIX - 1, sl = sizeof CONTENT_SUFFIX - 1;
    size_t vl = sizeof VARIANT_INFIX - 1;
    variant[0] = '\0';
    if (!p || strlen(p) < pl + DR_ID_LEN || strncmp(p, CONTENT_PREFIX, pl) != 0)
        return false;
    const char *rest = p + pl + DR_ID_LEN;
    if (strncmp(rest, VARIANT_INFIX, vl) == 0) {
        const char *name = rest + vl;
        size_t n = strlen(name);
        if (n == 0 || n >= DR_VARIANT_NAME_LEN ||
            strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
            return false;
        memcpy(variant, name, n + 1);
    } else if (strlen(rest) != sl || strcmp(rest, CONTENT_SUFFIX) != 0) {
        return false;
    }
    memcpy(id, p + pl, DR_ID_LEN);
    id[DR_ID_LEN] = '\0';
    return dr_id_valid(id);
}

static bool variant_configured(const struct dr_config *cfg, const char *name)
{
    for (size_t i = 0; cfg->processing.enabled && i < cfg->processing.n_variants; i++)
        if (strcmp(cfg->processing.variants[i].name, name) == 0)
            return true;
    return false;
}

/* The variant's row as the served entity (fills cr's size, tag, type and
 * file name), or the answer: 409 pending, 404 failed or unknown. Loop
 * thread. true when cr may go on. */
static bool variant_lookup(struct http_exchange *ex, struct catalog *cat, struct content_req *cr,
                           const struct dr_media *m)
{
    struct dr_variant v;
    int rc = catalog_variant_get(cat, cr->id, cr->variant, cr->user, &v);
    if (rc == -ENOENT) {
        if (m->state && strcmp(m->state, "queued") == 0 && m->metadata == NULL &&
            variant_configured(cr->cfg, cr->variant))
            http_respond_problem(ex, 409, "variant %s of media %s is not made yet (pending)",
                                 cr->variant, cr->id);
        else
            http_respond_problem(ex, 404, "media %s has no variant %s", cr->id, cr->variant);
        return false;
    }
    if (rc < 0) {
        http_add_header(ex, "Retry-After", "1");
        http_respond_problem(ex, 503, "variant lookup failed: %s", strerror(-rc));
        return false;
    }
    if (strcmp(v.state, "available") != 0 || v.storage_key == NULL) {
        http_respond_problem(ex, 404, "variant %s of media %s failed: %s", cr->variant, cr->id,
                             v.error ? v.error : "unknown error");
        dr_variant_clear(&v);
        return false;
    }
    cr->size = v.size;
    snprintf(cr->etag, sizeof cr->etag, "\"%s\"", v.sha256);
    free(cr->content_type);
    cr->content_type = xstrdup(v.content_type);
    const char *ext = v.content_type && strstr(v.content_type, "webp")  ? "webp"
                      : v.content_type && strstr(v.content_type, "png") ? "png"
                                                                        : "jpg";
    const char *dot = m->name ? strrchr(m->name, '.') : NULL;
    int base = dot && dot != m->name ? (int)(dot - m->name) : (int)strlen(m->name ? m->name : "");
    free(cr->name);
    cr->name = xasprintf("%.*s.%s.%s", base, m->name ? m->name : "", cr->variant, ext);
    dr_variant_clear(&v);
    return true;
}

/* The cache entry, or the miss path. */
static void content_go(struct content_req *cr)
{
    int fd;
    if (content_cache_open(cr, http_ex_metrics(cr->ex), &fd) == 0) {
        content_serve(cr, fd);
        return;
    }
    content_miss(cr);
}

void api_content_go(struct http_exchange *ex)
{
    struct content_req *cr = http_get_data(ex);
    if (cr && !http_ex_closed(ex))
        content_go(cr);
}

void api_content_serve(struct http_exchange *ex, const char *id, const char *variant,
                       const char *viewer, const struct api_content_gate *gate)
{
    struct catalog *cat = http_thread_catalog(http_ex_thread(ex));
    struct dr_media m = {0};
    int rc = cat ? catalog_media_get(cat, id, viewer, &m) : -EAGAIN;
    if (rc < 0 && gate && gate->free)
        gate->free(gate->arg); /* answered here, never asked */
    if (!cat) {
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "the catalog cannot be opened");
        return;
    }
    if (rc == -ENOENT) {
        http_respond_problem(ex, 404, "no such media");
        return;
    }
    if (rc < 0) {
        http_add_header(ex, "Retry-After", "1");
        http_respond_problem(ex, 503, "media lookup failed: %s", strerror(-rc));
        return;
    }
    struct content_req *cr = xcalloc(1, sizeof *cr);
    if (gate) { /* the request owns the gate's arg from here on */
        cr->gate_arg = gate->arg;
        cr->gate_free = gate->free;
    }
    cr->ex = ex;
    cr->thread = http_ex_thread(ex);
    cr->cfg = http_cfg(ex);
    cr->lock_fd = -1;
    memcpy(cr->id, id, sizeof cr->id);
    snprintf(cr->variant, sizeof cr->variant, "%s", variant);
    if (variant[0])
        snprintf(cr->cache_id, sizeof cr->cache_id, "%s~%s", id, variant);
    else
        snprintf(cr->cache_id, sizeof cr->cache_id, "%s", id);
    cr->user = xstrdup(viewer);
    cr->name = xstrdup(m.name);
    cr->content_type = xstrdup(m.content_type);
    cr->size = m.size;
    if (m.sha256[0])
        snprintf(cr->etag, sizeof cr->etag, "\"%s\"", m.sha256);
    http_set_data(ex, cr);
    if (!variant[0] && (!m.state || strcmp(m.state, "available") != 0)) {
        http_respond_problem(ex, 409, "media %s is not available yet (state %s)", id,
                             m.state ? m.state : "unknown");
        dr_media_clear(&m);
        return;
    }
    if (variant[0] && !variant_lookup(ex, cat, cr, &m)) {
        dr_media_clear(&m);
        return;
    }
    dr_media_clear(&m);

    const char *inm = http_header(ex, "If-None-Match");
    if (inm && cr->etag[0] && etag_list_matches(inm, cr->etag)) {
        add_common_headers(cr);
        http_respond(ex, 304, NULL, NULL, 0);
        return;
    }
    const char *range = http_header(ex, "Range");
    if (range && !if_range_ok(http_header(ex, "If-Range"), cr->etag))
        range = NULL;
    cr->rr = range_parse(range, cr->size, &cr->start, &cr->len);
    if (cr->rr == RANGE_UNSATISFIABLE) {
        http_add_headerf(ex, "Content-Range", "bytes */%llu", (unsigned long long)cr->size);
        http_respond_problem(ex, 416, "range not satisfiable for %llu bytes",
                             (unsigned long long)cr->size);
        return;
    }
    /* A gate sees every GET that will send bytes from the start of the
     * entity (a whole body, or a range from byte 0): a new download. */
    bool from_start = cr->rr != RANGE_PARTIAL || cr->start == 0;
    if (gate && gate->fn && http_req(ex)->method == HTTP_GET && from_start) {
        gate->fn(ex, gate->arg);
        return;
    }
    content_go(cr);
}

static void content_on_head(struct http_exchange *ex)
{
    char id[DR_ID_LEN + 1], variant[DR_VARIANT_NAME_LEN];
    if (!content_path_id(ex, id, variant)) {
        http_respond_problem(ex, 404, variant[0] ? "no such variant" : "no such media");
        return;
    }
    api_content_serve(ex, id, variant, http_user(ex), NULL);
}

void api_content_finish(struct http_exchange *ex)
{
    cr_free(ex);
}

static const struct http_route_ops content_ops = {
    .route_class = "content",
    .on_head = content_on_head,
    .on_abort = cr_free,
    .on_done = cr_free,
};

const struct http_route_ops *api_content_route(void)
{
    return &content_ops;
}

void api_content_register_routes(void)
{
    router_add_event_hook(content_event_hook);
}

/* webhook.c - delivers catalog events to webhooks, at least once, in order.
 *
 * DESIGN
 * One thread per configured webhook ("hook-1", ...), in the pipeline
 * process, each with its own catalog connection and curl easy handle
 * (keep-alive). Loop: read up to 32 events after the last delivered seq
 * (catalog_events_since, every user), POST them one by one, each retried
 * with exponential backoff and jitter until the endpoint answers 2xx, then
 * persist the new last seq in <data_dir>/run/webhook-<hash>.seq (temporary
 * file + fsync + rename). A crash between a delivery and the persist means
 * those events are sent again: at least once, never skipped, always in seq
 * order per webhook; a failing webhook delays only itself.
 *
 * Cluster (catalog.backend postgres): every node runs these threads, but
 * a webhook is delivered by one node at a time, the holder of the
 * catalog lease "webhook:<hash>" (catalog.h; renewed before each batch and
 * each retry, LEASE_MS). The last delivered seq is the lease's cursor, in
 * the catalog, so a node that takes over after its holder died resumes
 * where it stopped: each event once per webhook, not once per node (at
 * least once across a failover). Holding no lease, a thread re-tries to
 * take it every LEASE_MS / 3.
 *
 * Wake-ups: webhook_wake() after the pipeline commits events and when the
 * http worker enqueues jobs; otherwise a 1 s fallback re-check (events are
 * also written by the http worker, which cannot reach this process
 * directly).
 *
 * Stop: a flag checked between events, in backoff sleeps (condition wait)
 * and by curl's progress callback (aborts a POST in flight).
 * Lock order: wh->mu is a leaf; no lock is held during I/O.
 */
#include "webhook.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dripd/catalog.h"
#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/redact.h"
#include "stage.h"
#include "dripd/util.h"

#define BATCH 32
#define FALLBACK_MS 1000
#define LEASE_MS 30000 /* a webhook's lease, renewed before every batch and retry */

struct hook {
    struct webhooks *wh;
    int index;
    const struct dr_webhook *conf;
    char *log_url; /* conf->url without userinfo or query (redact.h): what the log shows */
    char *state_path;
    char *lease; /* "webhook:<hash>": the cluster's lease (and cursor) of this webhook */
    pthread_t tid;
    bool started;
};

struct webhooks {
    const struct dr_config *cfg;
    struct dr_metrics *m;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t gen;
    int stop; /* under mu; read atomically by curl's callback */
    struct hook *hooks;
    size_t n;
};

/* "sha256=" + lower-case hex HMAC-SHA256(secret, body): 71 chars + NUL. */
#define WEBHOOK_SIG_LEN 72

static void webhook_signature(const char *secret, const void *body, size_t len,
                              char out[WEBHOOK_SIG_LEN])
{
    uint8_t mac[32];
    unsigned mlen = sizeof mac;
    const char *key = secret ? secret : "";
    HMAC(EVP_sha256(), key, (int)strlen(key), body, len, mac, &mlen);
    memcpy(out, "sha256=", 7);
    dr_hex(mac, 32, out + 7);
}

/* The POST body of an event: {"seq","type","user","job_id","media_id",
 * "created_at" (RFC 3339),"data":{the job}}. Caller frees. */
static char *webhook_event_json(const struct dr_event *ev)
{
    char ts[40];
    dr_fmt_time(ev->created_at, ts, sizeof ts);
    json_t *data = ev->data ? json_loads(ev->data, 0, NULL) : NULL;
    if (data == NULL)
        data = ev->data ? json_string(ev->data) : json_null();
    json_t *o = json_pack("{s:I, s:s, s:s?, s:s, s:s, s:s, s:o}", "seq", (json_int_t)ev->seq,
                          "type", ev->type, "user", ev->user, "job_id", ev->job_id, "media_id",
                          ev->media_id, "created_at", ts, "data", data);
    if (o == NULL)
        return xstrdup("{}");
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *r = xstrdup(s ? s : "{}");
    free(s);
    return r;
}

/* ---- state file ---- */

static int64_t read_state(const char *path)
{
    char buf[32] = "";
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = dr_read_full(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtoll(buf, NULL, 10);
}

static void write_state(const char *path, int64_t seq)
{
    char *tmp = xasprintf("%s.tmp", path);
    char buf[32];
    int len = snprintf(buf, sizeof buf, "%" PRId64 "\n", seq);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || dr_write_all(fd, buf, (size_t)len) != 0 || fsync(fd) != 0 ||
        rename(tmp, path) != 0)
        log_warn("webhook: cannot save %s: %s", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    free(tmp);
}

/* ---- delivery ---- */

static bool stopped(struct webhooks *wh)
{
    return __atomic_load_n(&wh->stop, __ATOMIC_RELAXED) != 0;
}

static size_t discard_body(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static int progress_cb(void *arg, curl_off_t a, curl_off_t b, curl_off_t c, curl_off_t d)
{
    (void)a, (void)b, (void)c, (void)d;
    return stopped(arg) ? 1 : 0;
}

/* POST one body; 0 on 2xx, else -EAGAIN with a line in err. */
static int post(struct hook *h, CURL *curl, const struct dr_event *ev, const char *body, char *err,
                size_t errlen)
{
    char sig[WEBHOOK_SIG_LEN], line[128 + WEBHOOK_SIG_LEN];
    webhook_signature(h->conf->secret, body, strlen(body), sig);
    struct curl_slist *hdrs = NULL;
    hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
    snprintf(line, sizeof line, "X-Dripd-Signature: %s", sig);
    hdrs = curl_slist_append(hdrs, line);
    snprintf(line, sizeof line, "X-Dripd-Event: %s", ev->type);
    hdrs = curl_slist_append(hdrs, line);
    snprintf(line, sizeof line, "X-Dripd-Delivery: %" PRId64, ev->seq);
    hdrs = curl_slist_append(hdrs, line);
    hdrs = curl_slist_append(hdrs, "Expect:");
    curl_easy_setopt(curl, CURLOPT_URL, h->conf->url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, h->wh);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "dripd-webhook/1");
    CURLcode cc = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s", curl_easy_strerror(cc));
        return -EAGAIN;
    }
    if (status < 200 || status > 299) {
        snprintf(err, errlen, "HTTP %ld", status);
        return -EAGAIN;
    }
    return 0;
}

/* Wait until ms pass, stop, or (wake_on_gen) a wake-up moves gen past
 * seen_gen; false when stopping. */
static bool hook_wait(struct webhooks *wh, bool wake_on_gen, uint64_t seen_gen, int64_t ms)
{
    struct timespec ts;
    dr_mono_timespec(&ts, dr_mono_ms() + ms);
    pthread_mutex_lock(&wh->mu);
    while (!wh->stop && (!wake_on_gen || wh->gen == seen_gen))
        if (pthread_cond_timedwait(&wh->cv, &wh->mu, &ts) == ETIMEDOUT)
            break;
    bool ok = !wh->stop;
    pthread_mutex_unlock(&wh->mu);
    return ok;
}

static uint64_t current_gen(struct webhooks *wh)
{
    pthread_mutex_lock(&wh->mu);
    uint64_t g = wh->gen;
    pthread_mutex_unlock(&wh->mu);
    return g;
}

static void *hook_main(void *arg)
{
    struct hook *h = arg;
    struct webhooks *wh = h->wh;
    const struct dr_config *cfg = wh->cfg;
    char name[16];
    snprintf(name, sizeof name, "hook-%d", h->index % 1000 + 1);
    pthread_setname_np(pthread_self(), name);
    struct catalog *cat = NULL;
    while (!stopped(wh)) {
        int rc = catalog_open(cfg, &cat);
        if (rc == 0)
            break;
        log_error("webhook %s: cannot open the catalog: %s", h->log_url, strerror(-rc));
        hook_wait(wh, false, 0, 1000);
    }
    CURL *curl = curl_easy_init();
    bool shared = cfg->catalog.backend == DR_CATALOG_POSTGRES;
    bool holding = !shared; /* a single node holds every lease */
    int64_t last = shared ? 0 : read_state(h->state_path);
    if (!shared)
        log_info("webhook %s: delivering events after seq %" PRId64, h->log_url, last);
    while (cat && curl && !stopped(wh)) {
        uint64_t gen = current_gen(wh);
        if (shared) {
            int64_t cursor = 0;
            int held = catalog_lease(cat, h->lease, LEASE_MS, &cursor);
            if (held != 1) {
                if (held < 0)
                    log_warn("webhook %s: lease: catalog: %s", h->log_url, strerror(-held));
                else if (holding)
                    log_info("webhook %s: another node delivers it now", h->log_url);
                holding = false;
                hook_wait(wh, false, 0, LEASE_MS / 3);
                continue;
            }
            if (!holding)
                log_info("webhook %s: this node delivers it, after seq %" PRId64, h->log_url,
                         cursor);
            holding = true;
            last = cursor;
        }
        struct dr_event *ev = NULL;
        size_t n = 0;
        int rc = catalog_events_since(cat, NULL, last, BATCH, &ev, &n);
        if (rc != 0 || n == 0) {
            if (rc != 0)
                log_warn("webhook %s: catalog: %s", h->log_url, strerror(-rc));
            hook_wait(wh, true, gen, FALLBACK_MS);
            continue;
        }
        int64_t before = last;
        for (size_t i = 0; i < n && !stopped(wh) && holding; i++) {
            char *body = webhook_event_json(&ev[i]);
            for (int attempt = 1; !stopped(wh); attempt++) {
                char err[256] = "";
                if (post(h, curl, &ev[i], body, err, sizeof err) == 0) {
                    metrics_add(&wh->m->webhook_deliveries, 1);
                    last = ev[i].seq;
                    break;
                }
                if (stopped(wh))
                    break;
                metrics_add(&wh->m->webhook_failures, 1);
                uint32_t rnd;
                dr_random(&rnd, sizeof rnd);
                uint64_t d = stage_backoff_ms(attempt, cfg->pipeline.retry.backoff,
                                              cfg->pipeline.retry.max_backoff, rnd);
                log_warn("webhook %s: event %" PRId64 " (%s): %s; retrying in %llu ms", h->log_url,
                         ev[i].seq, ev[i].type, err, (unsigned long long)d);
                hook_wait(wh, false, 0, (int64_t)d); /* only stop ends it early */
                /* Still ours? (A long outage must not let two nodes post.) */
                if (shared && catalog_lease(cat, h->lease, LEASE_MS, NULL) != 1) {
                    holding = false;
                    break;
                }
            }
            free(body);
        }
        catalog_events_free(ev, n);
        if (last != before) {
            if (!shared)
                write_state(h->state_path, last);
            else if (catalog_lease_save(cat, h->lease, last) != 0)
                holding = false; /* lost it: the new holder resends from its cursor */
        }
    }
    if (shared && holding && cat != NULL)
        (void)catalog_lease_drop(cat, h->lease); /* a draining node hands over at once */
    if (curl)
        curl_easy_cleanup(curl);
    catalog_close(cat);
    return NULL;
}

struct webhooks *webhook_start(const struct dr_config *cfg, struct dr_metrics *m)
{
    if (cfg->n_webhooks == 0)
        return NULL;
    struct webhooks *wh = xcalloc(1, sizeof *wh);
    wh->cfg = cfg;
    wh->m = m;
    pthread_mutex_init(&wh->mu, NULL);
    dr_cond_init_mono(&wh->cv);
    wh->n = cfg->n_webhooks;
    wh->hooks = xcalloc(wh->n, sizeof *wh->hooks);
    char *run = xasprintf("%s/run", cfg->data_dir);
    dr_mkdirs(run, 0700);
    for (size_t i = 0; i < wh->n; i++) {
        struct hook *h = &wh->hooks[i];
        h->wh = wh;
        h->index = (int)i;
        h->conf = &cfg->webhooks[i];
        uint8_t dg[32];
        unsigned dl = sizeof dg;
        const char *url = h->conf->url ? h->conf->url : "";
        EVP_Digest(url, strlen(url), dg, &dl, EVP_sha256(), NULL);
        char hex[65];
        dr_hex(dg, 8, hex);
        h->state_path = xasprintf("%s/webhook-%s.seq", run, hex);
        h->lease = xasprintf("webhook:%s", hex);
        char shown[512];
        h->log_url = xstrdup(redact_url(url, shown, sizeof shown));
        if (h->conf->url == NULL || *h->conf->url == '\0') {
            log_warn("webhook %zu has no url; skipped", i + 1);
            continue;
        }
        int e = dr_thread_start(&h->tid, hook_main, h);
        if (e != 0)
            log_error("webhook %s: cannot start its thread: %s", h->log_url, strerror(-e));
        else
            h->started = true;
    }
    free(run);
    return wh;
}

void webhook_wake(struct webhooks *wh)
{
    if (wh == NULL)
        return;
    pthread_mutex_lock(&wh->mu);
    wh->gen++;
    pthread_cond_broadcast(&wh->cv);
    pthread_mutex_unlock(&wh->mu);
}

void webhook_stop(struct webhooks *wh)
{
    if (wh == NULL)
        return;
    pthread_mutex_lock(&wh->mu);
    __atomic_store_n(&wh->stop, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&wh->cv);
    pthread_mutex_unlock(&wh->mu);
    for (size_t i = 0; i < wh->n; i++) {
        if (wh->hooks[i].started)
            pthread_join(wh->hooks[i].tid, NULL);
        free(wh->hooks[i].state_path);
        free(wh->hooks[i].lease);
        free(wh->hooks[i].log_url);
    }
    free(wh->hooks);
    pthread_mutex_destroy(&wh->mu);
    pthread_cond_destroy(&wh->cv);
    free(wh);
}

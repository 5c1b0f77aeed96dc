/* config.c - dripd's YAML configuration: defaults, loader, validation.
 *
 * What: config_load()/config_load_buffer() turn a YAML file (block or flow
 * style; JSON is flow-style YAML) into a struct dr_config. libyaml's
 * document API builds the node graph; a table-driven walker (`struct field`
 * schemas below, one per mapping) copies every known key into the struct.
 * The YAML key names are the struct field names, so the schema tables are
 * the single place that knows the file format (docs/CONFIG.md documents it).
 *
 * Errors: nothing stops at the first problem. Every problem becomes one
 * "FILE:LINE:COL: dotted.key: message" line (1-based, from the offending
 * node's libyaml start mark) appended to struct dr_config_errors; the walk
 * goes on, then the cross-field checks run. The dotted key names list items
 * by their 0-based index ("users[1].token"). While walking, every visited
 * key's path is recorded with its value's mark (`struct loc`), so later
 * checks can point at the right place, fall back to the nearest enclosing
 * key when a required key is absent, and skip follow-on complaints about a
 * key that was already reported as bad. The number of messages is bounded
 * (MAX_ERRORS).
 *
 * Aliases: libyaml resolves them to shared nodes and lets an anchored
 * collection contain itself. The walker only descends along the schema,
 * whose depth is fixed, so cycles and alias bombs cannot make it loop or
 * blow up.
 *
 * Threads: none of its own; the loader keeps no global state, so any thread
 * may load. A loaded struct is never mutated afterwards (see config.h).
 *
 * Secrets (tokens, secret keys, webhook secrets) are never echoed back in
 * messages. *_file keys are read from regular files only, at most
 * SECRET_FILE_MAX bytes, trailing CR/LF stripped; relative paths are
 * relative to the cwd.
 */
#include "dripd/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <yaml.h>

#include "dripd/netaddr.h"
#include "dripd/redact.h"
#include "dripd/util.h"

#define CONFIG_FILE_MAX (4u << 20) /* larger config files are refused */
#define SECRET_FILE_MAX 4096       /* token_file / secret_access_key_file */
#define MAX_ERRORS 100             /* then one "too many problems" line */
#define VALUE_SHOW_MAX 48          /* echoed value bytes in a message */
#define NAME_MAX_LEN 64            /* user names */
#define TOKEN_MIN_LEN 8
#define SIZE_VALUE_MAX ((uint64_t)INT64_MAX) /* consumers may use off_t */

/* ------------------------------------------------------------------ */
/* Defaults                                                             */
/* ------------------------------------------------------------------ */

/* "<dir>/<leaf>" without doubling a trailing '/'. */
static char *join_dir(const char *dir, const char *leaf)
{
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/')
        n--;
    if (n == 1 && dir[0] == '/')
        return xasprintf("/%s", leaf);
    return xasprintf("%.*s/%s", (int)n, dir, leaf);
}

/* Fill in derived defaults that depend on data_dir (local.path, key_file). */
static void config_finish(struct dr_config *c)
{
    if (c->storage.local.path == NULL)
        c->storage.local.path = join_dir(c->data_dir, "objects");
    if (c->encryption.key_file == NULL)
        c->encryption.key_file = join_dir(c->data_dir, "master.key");
    if (c->node.id == NULL) {
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0')
            snprintf(host, sizeof host, "%s", "localhost");
        host[strcspn(host, ":")] = '\0'; /* claimers are "<node>:...", claimer.h */
        c->node.id = xstrdup(host);
    }
}

static void free_variants(struct dr_config *c)
{
    for (size_t i = 0; i < c->processing.n_variants; i++) {
        free(c->processing.variants[i].name);
        free(c->processing.variants[i].format);
    }
    free(c->processing.variants);
    c->processing.variants = NULL;
    c->processing.n_variants = 0;
}

/* thumb (256 px WebP) and preview (1280 px JPEG, quality 82) */
static void default_variants(struct dr_config *c)
{
    free_variants(c);
    c->processing.variants = xcalloc(2, sizeof *c->processing.variants);
    c->processing.variants[0] = (struct dr_variant_cfg){xstrdup("thumb"), 256, xstrdup("webp"), 80};
    c->processing.variants[1] =
        (struct dr_variant_cfg){xstrdup("preview"), 1280, xstrdup("jpeg"), 82};
    c->processing.n_variants = 2;
}

struct dr_config *config_defaults(void)
{
    struct dr_config *c = xcalloc(1, sizeof *c);
    c->path = xstrdup("<defaults>");
    c->listen = xcalloc(1, sizeof(char *));
    c->listen[0] = xstrdup("127.0.0.1:8080");
    c->n_listen = 1;
    c->data_dir = xstrdup("./var");
    c->storage.backend = DR_STORE_LOCAL;
    c->storage.s3.region = xstrdup("us-east-1");
    c->storage.s3.path_style = true;
    c->storage.s3.verify_tls = true;
    c->storage.s3.part_size = 16ull << 20;
    c->storage.s3.parallel_parts = 4;
    c->storage.s3.connect_timeout = 5000;
    c->storage.s3.idle_timeout = 30000;
    c->storage.s3.timeout = 3600000;
    c->catalog.backend = DR_CATALOG_SQLITE;
    c->catalog.postgres.pool = 8;
    c->pipeline.queue_limit = 10000;
    c->pipeline.retention = 7ull * 24 * 3600 * 1000;
    /* 64/16: a stage keeps enough small jobs in hand to make batches of
     * them (docs/PIPELINE.md); a big job is still taken alone */
    c->pipeline.upload.process = (struct dr_stage_cfg){2, 64, 16};
    c->pipeline.upload.encrypt = (struct dr_stage_cfg){2, 64, 16};
    c->pipeline.upload.store = (struct dr_stage_cfg){4, 64, 16};
    c->pipeline.download.fetch = (struct dr_stage_cfg){4, 10, 1};
    c->pipeline.download.decrypt = (struct dr_stage_cfg){2, 10, 1};
    c->pipeline.retry.attempts = 5;
    c->pipeline.retry.backoff = 1000;
    c->pipeline.retry.max_backoff = 60000;
    c->pipeline.segment_size = 64 << 10;
    c->pipeline.stage_commit_size = 1 << 20;
    c->cache.max_size = 1ull << 30;
    c->cache.ttl = 2 * 3600 * 1000;
    c->limits.max_upload_size = 10ull << 30;
    c->limits.header_timeout = 10000;
    c->limits.body_timeout = 60000;
    c->limits.keepalive_timeout = 75000;
    c->limits.max_connections = 10000;
    c->limits.max_header_size = 16 << 10;
    c->limits.max_buffered_input = 64ull << 20;
    /* unlimited bytes and queue by default (operators know their disks);
     * bounded files in flight (descriptors) and event streams per user */
    c->quotas.def = (struct dr_quota){.max_inflight_uploads = 128, .max_event_streams = 64};
    c->limits.max_headers = 100;
    c->tus.expiration = 24ull * 3600 * 1000;
    c->hooks.pre_upload.timeout = 2000;
    c->supervisor.max_restarts = 5;
    c->supervisor.max_seconds = 10000;
    c->supervisor.heartbeat_interval = 1000;
    c->supervisor.heartbeat_timeout = 10000;
    c->supervisor.drain_timeout = 30000;
    c->health.min_free_disk = 256ull << 20;
    c->health.store_probe_interval = 5000;
    c->scrub.rate_limit = 50ull << 20;
    c->log.level = xstrdup("info");
    c->processing.enabled = true;
    c->processing.video_poster = true;
    c->processing.limits.max_pixels = 100000000;
    c->processing.limits.timeout = 30000;
    c->processing.limits.memory = 512ull << 20;
    c->processing.rate_limit = 50ull << 20;
    default_variants(c);
    config_finish(c);
    return c;
}

void config_destroy(struct dr_config *c)
{
    if (c == NULL)
        return;
    free(c->path);
    for (size_t i = 0; i < c->n_listen; i++)
        free(c->listen[i]);
    free(c->listen);
    free(c->data_dir);
    for (size_t i = 0; i < c->n_users; i++) {
        free(c->users[i].name);
        free(c->users[i].token);
    }
    free(c->users);
    free(c->storage.local.path);
    free(c->storage.s3.endpoint);
    free(c->storage.s3.bucket);
    free(c->storage.s3.region);
    free(c->storage.s3.access_key_id);
    free(c->storage.s3.secret_access_key);
    free(c->storage.s3.session_token);
    free(c->encryption.key_file);
    free(c->catalog.postgres.dsn);
    free(c->node.id);
    free(c->log.level);
    for (size_t i = 0; i < c->n_webhooks; i++) {
        free(c->webhooks[i].url);
        free(c->webhooks[i].secret);
    }
    free(c->webhooks);
    dr_strv_free(c->trusted_proxies, c->n_trusted_proxies);
    dr_strv_free(c->cors.origins, c->cors.n_origins);
    free(c->tls.cert);
    free(c->tls.key);
    free(c->hooks.pre_upload.url);
    free(c->hooks.pre_upload.on_error);
    for (size_t i = 0; i < c->quotas.n_users; i++)
        free(c->quotas.users[i].name);
    free(c->quotas.users);
    free_variants(c);
    free(c->processing.test_decoder);
    free(c);
}

void config_errors_clear(struct dr_config_errors *errs)
{
    if (errs == NULL)
        return;
    for (size_t i = 0; i < errs->n; i++)
        free(errs->msgs[i]);
    free(errs->msgs);
    errs->msgs = NULL;
    errs->n = 0;
}

/* ------------------------------------------------------------------ */
/* Sizes and durations                                                  */
/* ------------------------------------------------------------------ */

struct unit {
    const char *name;
    uint64_t mult;
};

static const struct unit size_units[] = {
    {"", 1},
    {"B", 1},
    {"KiB", 1ull << 10},
    {"MiB", 1ull << 20},
    {"GiB", 1ull << 30},
    {"TiB", 1ull << 40},
    {"KB", 1000ull},
    {"MB", 1000ull * 1000},
    {"GB", 1000ull * 1000 * 1000},
    {"TB", 1000ull * 1000 * 1000 * 1000},
};

/* clang-format off */
static const struct unit duration_units[] = {
    {"", 1000}, /* a bare number is seconds */
    {"ms", 1},
    {"s", 1000},
    {"m", 60ull * 1000},
    {"h", 3600ull * 1000},
    {"d", 86400ull * 1000},
};
/* clang-format on */

#define FRAC_DIGITS_MAX 6 /* keeps frac * mult (<= 10^6 * 2^40) inside uint64 */

/* NUMBER [' '...] UNIT, NUMBER = DIGITS [ '.' DIGITS ]. The result must be
 * a whole number of base units ("1.5KiB" ok, "1.5B" not) and <= INT64_MAX. */
static int parse_scaled(const char *s, const struct unit *units, size_t n_units, uint64_t *out)
{
    const char *p = s;
    uint64_t ip = 0, fp = 0, pow10 = 1;

    if (s == NULL || *p < '0' || *p > '9')
        return -EINVAL;
    while (*p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p++ - '0');
        if (ip > (UINT64_MAX - d) / 10)
            return -EINVAL;
        ip = ip * 10 + d;
    }
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        int k = 0;
        while (*p >= '0' && *p <= '9') {
            if (++k > FRAC_DIGITS_MAX)
                return -EINVAL;
            fp = fp * 10 + (uint64_t)(*p++ - '0');
            pow10 *= 10;
        }
    }
    const char *num_end = p;
    while (*p == ' ')
        p++;
    if (*p == '\0' && p != num_end)
        return -EINVAL; /* trailing blanks without a unit */

    for (size_t i = 0; i < n_units; i++) {
        if (strcmp(p, units[i].name) != 0)
            continue;
        uint64_t mult = units[i].mult, v;
        if (__builtin_mul_overflow(ip, mult, &v))
            return -EINVAL;
        uint64_t f = fp * mult; /* cannot overflow, see FRAC_DIGITS_MAX */
        if (f % pow10 != 0)
            return -EINVAL;
        if (__builtin_add_overflow(v, f / pow10, &v) || v > SIZE_VALUE_MAX)
            return -EINVAL;
        *out = v;
        return 0;
    }
    return -EINVAL;
}

int config_parse_size(const char *s, uint64_t *out)
{
    return parse_scaled(s, size_units, DR_ARRAY_LEN(size_units), out);
}

int config_parse_duration(const char *s, uint64_t *out_ms)
{
    return parse_scaled(s, duration_units, DR_ARRAY_LEN(duration_units), out_ms);
}

/* Human form of a size / duration for messages: the largest exact unit. */
static void fmt_size(uint64_t v, char *buf, size_t len)
{
    static const char *const names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t i = 0;
    while (i + 1 < DR_ARRAY_LEN(names) && v != 0 && v % 1024 == 0) {
        v /= 1024;
        i++;
    }
    snprintf(buf, len, "%llu%s", (unsigned long long)v, names[i]);
}

static void fmt_duration(uint64_t ms, char *buf, size_t len)
{
    static const struct unit u[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < DR_ARRAY_LEN(u); i++) {
        if (ms != 0 && ms % u[i].mult == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(ms / u[i].mult), u[i].name);
            return;
        }
    }
    snprintf(buf, len, "%llums", (unsigned long long)ms);
}

/* ------------------------------------------------------------------ */
/* Tokens                                                               */
/* ------------------------------------------------------------------ */

const struct dr_user *config_find_token(const struct dr_config *cfg, const char *token, size_t len)
{
    const struct dr_user *found = NULL;
    if (cfg == NULL || token == NULL)
        return NULL;
    /* Compare against every user (no early exit) so the time taken does not
     * tell which user, if any, matched. */
    for (size_t i = 0; i < cfg->n_users; i++) {
        const char *t = cfg->users[i].token;
        if (t == NULL)
            continue;
        bool eq = dr_consttime_eq(t, strlen(t), token, len);
        if (eq && found == NULL)
            found = &cfg->users[i];
    }
    return found;
}

const struct dr_user *config_find_user(const struct dr_config *cfg, const char *name)
{
    for (size_t i = 0; cfg != NULL && name != NULL && i < cfg->n_users; i++)
        if (strcmp(cfg->users[i].name, name) == 0)
            return &cfg->users[i];
    return NULL;
}

struct dr_quota config_user_quota(const struct dr_config *cfg, const char *name)
{
    struct dr_quota q = cfg->quotas.def;
    for (size_t i = 0; name != NULL && i < cfg->quotas.n_users; i++) {
        const struct dr_quota *o = &cfg->quotas.users[i].q;
        if (strcmp(cfg->quotas.users[i].name, name) != 0)
            continue;
        if (o->max_bytes != DR_QUOTA_UNSET)
            q.max_bytes = o->max_bytes;
        if (o->max_inflight_uploads != DR_QUOTA_UNSET)
            q.max_inflight_uploads = o->max_inflight_uploads;
        if (o->max_queued_jobs != DR_QUOTA_UNSET)
            q.max_queued_jobs = o->max_queued_jobs;
        if (o->max_event_streams != DR_QUOTA_UNSET)
            q.max_event_streams = o->max_event_streams;
        break;
    }
    return q;
}

/* ------------------------------------------------------------------ */
/* Loader state and error collection                                    */
/* ------------------------------------------------------------------ */

/* Where a key's value sits in the file. */
struct loc {
    char *path;       /* dotted key, "" for the document root */
    yaml_mark_t mark; /* start of the value node */
    yaml_node_type_t type;
    bool bad; /* a problem was already reported for it */
};

/* One problem, kept until the end of the load so the messages come out
 * in file order. */
struct problem {
    size_t line, column, seq;
    char *msg;
};

struct loader {
    const char *name; /* file name used in messages */
    size_t n_errors;  /* problems found, including dropped ones */
    struct problem *probs;
    size_t n_probs;
    yaml_document_t *doc;
    struct loc *locs;
    size_t n_locs, cap_locs;
};

static void err_mark(struct loader *L, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err_mark(struct loader *L, yaml_mark_t m, const char *fmt, ...)
{
    L->n_errors++;
    if (L->n_probs >= MAX_ERRORS)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *body = xvasprintf(fmt, ap);
    va_end(ap);
    L->probs = xrealloc(L->probs, (L->n_probs + 1) * sizeof *L->probs);
    L->probs[L->n_probs] =
        (struct problem){m.line + 1, m.column + 1, L->n_probs,
                         xasprintf("%s:%zu:%zu: %s", L->name, m.line + 1, m.column + 1, body)};
    L->n_probs++;
    free(body);
}

static int problem_cmp(const void *a, const void *b)
{
    const struct problem *x = a, *y = b;
    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->column != y->column)
        return x->column < y->column ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Appends the collected problems, in file order, to errs (may be NULL). */
static void flush_problems(struct loader *L, struct dr_config_errors *errs)
{
    if (L->n_probs > 1)
        qsort(L->probs, L->n_probs, sizeof *L->probs, problem_cmp);
    for (size_t i = 0; i < L->n_probs; i++) {
        if (errs == NULL) {
            free(L->probs[i].msg);
            continue;
        }
        errs->msgs = xrealloc(errs->msgs, (errs->n + 2) * sizeof(char *));
        errs->msgs[errs->n++] = L->probs[i].msg;
    }
    if (errs != NULL && L->n_errors > L->n_probs) {
        errs->msgs = xrealloc(errs->msgs, (errs->n + 2) * sizeof(char *));
        errs->msgs[errs->n++] = xasprintf("%s:1:1: too many problems, %zu more not shown", L->name,
                                          L->n_errors - L->n_probs);
    }
    free(L->probs);
    L->probs = NULL;
    L->n_probs = 0;
}

static void record_loc(struct loader *L, const char *path, const yaml_node_t *node)
{
    if (L->n_locs == L->cap_locs) {
        L->cap_locs = L->cap_locs ? 2 * L->cap_locs : 64;
        L->locs = xrealloc(L->locs, L->cap_locs * sizeof *L->locs);
    }
    L->locs[L->n_locs++] = (struct loc){xstrdup(path), node->start_mark, node->type, false};
}

static struct loc *find_loc(struct loader *L, const char *path)
{
    for (size_t i = L->n_locs; i-- > 0;)
        if (strcmp(L->locs[i].path, path) == 0)
            return &L->locs[i];
    return NULL;
}

static bool given(struct loader *L, const char *path)
{
    return find_loc(L, path) != NULL;
}

static bool is_bad(struct loader *L, const char *path)
{
    struct loc *l = find_loc(L, path);
    return l != NULL && l->bad;
}

/* The nearest recorded location for path: itself, else its closest
 * enclosing key ("a.b[2].c" -> "a.b[2]" -> "a.b" -> "a" -> root). */
static struct loc *near_loc(struct loader *L, const char *path)
{
    char *p = xstrdup(path);
    struct loc *l = NULL;
    for (;;) {
        l = find_loc(L, p);
        if (l != NULL || p[0] == '\0')
            break;
        char *dot = strrchr(p, '.'), *br = strrchr(p, '[');
        char *cut = dot > br ? dot : br;
        if (cut == NULL)
            p[0] = '\0';
        else
            *cut = '\0';
    }
    free(p);
    return l;
}

/* Report "path: message" at path's (or its nearest parent's) location. */
static void err_path(struct loader *L, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err_path(struct loader *L, const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *body = xvasprintf(fmt, ap);
    va_end(ap);
    struct loc *l = near_loc(L, path);
    yaml_mark_t m = {0, 0, 0};
    if (l != NULL) {
        m = l->mark;
        if (strcmp(l->path, path) == 0)
            l->bad = true;
    }
    err_mark(L, m, "%s: %s", path, body);
    free(body);
}

/* A bounded, escaped copy of a scalar for messages (caller frees):
 * control bytes become \xNN, '"' and '\' are escaped, long values end
 * in "...". */
static char *escape(const unsigned char *s, size_t len)
{
    size_t n = len > VALUE_SHOW_MAX ? VALUE_SHOW_MAX : len;
    char *out = xmalloc(n * 4 + 4), *o = out;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c == '"' || c == '\\') {
            *o++ = '\\';
            *o++ = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += sprintf(o, "\\x%02x", c);
        } else {
            *o++ = (char)c;
        }
    }
    if (n < len)
        o += sprintf(o, "...");
    *o = '\0';
    return out;
}

/* The same, in double quotes. */
static char *show(const unsigned char *s, size_t len)
{
    char *e = escape(s, len);
    char *q = xasprintf("\"%s\"", e);
    free(e);
    return q;
}

static bool is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    size_t len = n->data.scalar.length;
    return len == 0 || (len == 1 && v[0] == '~') ||
           (len == 4 && (!memcmp(v, "null", 4) || !memcmp(v, "Null", 4) || !memcmp(v, "NULL", 4)));
}

/* What a node is, for "got ..." (caller frees). */
static char *describe(const yaml_node_t *n, bool secret)
{
    switch (n->type) {
    case YAML_SCALAR_NODE:
        if (is_null(n))
            return xstrdup("null");
        if (secret)
            return xstrdup("a string");
        return show(n->data.scalar.value, n->data.scalar.length);
    case YAML_SEQUENCE_NODE:
        return xstrdup("a sequence");
    case YAML_MAPPING_NODE:
        return xstrdup("a mapping");
    default:
        return xstrdup("nothing");
    }
}

static void err_expected(struct loader *L, const char *path, const yaml_node_t *n, bool secret,
                         const char *expected)
{
    char *got = describe(n, secret);
    err_path(L, path, "expected %s, got %s", expected, got);
    free(got);
}

/* ------------------------------------------------------------------ */
/* Value checks used by the schema                                      */
/* ------------------------------------------------------------------ */

/* Each returns NULL when s is acceptable, else what was expected. */
typedef const char *(*check_fn)(const char *s);

static const char *check_listen(const char *s)
{
    static const char *const what = "an address host:port, [v6]:port or unix:/path";
    if (strncmp(s, "unix:", 5) == 0) {
        size_t n = strlen(s + 5);
        if (n == 0 || n >= sizeof(((struct sockaddr_un *)0)->sun_path))
            return "unix:PATH with a path of 1-107 bytes";
        return NULL;
    }
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return what;
    const char *port = colon + 1;
    size_t plen = strlen(port);
    if (plen == 0 || plen > 5 || strspn(port, "0123456789") != plen || atoi(port) > 65535)
        return "an address whose port is 0-65535";
    if (s[0] == '[') {
        char host[INET6_ADDRSTRLEN + 1];
        struct in6_addr a6;
        size_t hl = (size_t)(colon - s);
        if (hl < 3 || s[hl - 1] != ']' || hl - 2 > INET6_ADDRSTRLEN)
            return what;
        memcpy(host, s + 1, hl - 2);
        host[hl - 2] = '\0';
        if (inet_pton(AF_INET6, host, &a6) != 1)
            return "an address with a valid IPv6 literal in [ ]";
        return NULL;
    }
    for (const char *p = s; p < colon; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_' || c == '*';
        if (!ok)
            return what;
    }
    return NULL;
}

static const char *check_cidr(const char *s)
{
    struct dr_cidr c;
    const char *why = NULL;
    if (dr_cidr_parse(s, &c, &why) < 0)
        return why;
    return NULL;
}

/* A browser origin: "*", or scheme://host[:port] exactly as a browser
 * sends it in Origin (no path, no trailing '/'). */
static const char *check_origin(const char *s)
{
    static const char *const what =
        "an origin like https://app.example or http://127.0.0.1:3000 (no path), or *";
    if (strcmp(s, "*") == 0)
        return NULL;
    const char *rest = NULL;
    if (strncasecmp(s, "http://", 7) == 0)
        rest = s + 7;
    else if (strncasecmp(s, "https://", 8) == 0)
        rest = s + 8;
    if (rest == NULL || rest[0] == '\0')
        return what;
    size_t n = strlen(rest);
    size_t i = 0;
    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');
        struct dr_addr a;
        if (close == NULL || dr_addr_parse(rest, (size_t)(close - rest) + 1, &a) < 0)
            return what;
        i = (size_t)(close - rest) + 1;
    } else {
        while (i < n && (isalnum((unsigned char)rest[i]) || rest[i] == '.' || rest[i] == '-' ||
                         rest[i] == '_'))
            i++;
        if (i == 0)
            return what;
    }
    if (i == n)
        return NULL;
    if (rest[i] != ':' || i + 1 == n || n - i - 1 > 5 ||
        strspn(rest + i + 1, "0123456789") != n - i - 1 || atoi(rest + i + 1) > 65535)
        return what;
    return NULL;
}

static const char *check_user_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > NAME_MAX_LEN ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n)
        return "a name of 1-64 characters from A-Z a-z 0-9 _ . -";
    return NULL;
}

/* A node id: it names the node in claimers ("<node>:...", the first colon ends it), leases and
 * logs. */
static const char *check_node_id(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > NAME_MAX_LEN ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != n)
        return "a name of 1-64 characters from A-Z a-z 0-9 _ . -";
    return NULL;
}

static const char *check_token(const char *s)
{
    size_t n = strlen(s);
    if (n < TOKEN_MIN_LEN)
        return "a token of at least 8 characters";
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return "a token of printable ASCII without spaces";
    return NULL;
}

static const char *check_http_url(const char *s)
{
    const char *rest = NULL;
    if (strncmp(s, "http://", 7) == 0)
        rest = s + 7;
    else if (strncmp(s, "https://", 8) == 0)
        rest = s + 8;
    if (rest == NULL || rest[0] == '\0' || rest[0] == '/')
        return "an http:// or https:// URL";
    return NULL;
}

static const char *check_on_error(const char *s)
{
    if (strcmp(s, "allow") == 0 || strcmp(s, "deny") == 0)
        return NULL;
    return "allow or deny";
}

static const char *check_variant_name(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 31 || strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
        return "a name of 1-31 characters from a-z 0-9 _ -";
    return NULL;
}

static const char *check_format(const char *s)
{
    if (strcmp(s, "webp") == 0 || strcmp(s, "jpeg") == 0 || strcmp(s, "png") == 0)
        return NULL;
    return "one of webp, jpeg, png";
}

static const char *check_test_decoder(const char *s)
{
    static const char *const ok[] = {"socket", "open", "segv", "hang", "alloc"};
    for (size_t i = 0; i < DR_ARRAY_LEN(ok); i++)
        if (strcmp(s, ok[i]) == 0)
            return NULL;
    return "one of socket, open, segv, hang, alloc";
}

static const char *check_level(const char *s)
{
    static const char *const ok[] = {"error", "warn", "info", "debug"};
    for (size_t i = 0; i < DR_ARRAY_LEN(ok); i++)
        if (strcmp(s, ok[i]) == 0)
            return NULL;
    return "one of error, warn, info, debug";
}

/* ------------------------------------------------------------------ */
/* Schema                                                               */
/* ------------------------------------------------------------------ */

enum kind {
    K_MAP,     /* nested mapping: sub, base moves by off */
    K_STR,     /* char *, non-empty */
    K_FILE,    /* char * read from the file named by the value */
    K_BOOL,    /* bool */
    K_INT,     /* int in [min, max] */
    K_U64,     /* uint64_t integer in [min, max] */
    K_SIZE,    /* uint64_t bytes in [min, max] */
    K_DUR,     /* uint64_t ms in [min, max] */
    K_BACKEND, /* enum dr_store_backend */
    K_CATALOG, /* enum dr_catalog_backend */
    K_STRLIST, /* char ** at off, size_t count at off_n */
    K_LIST,    /* array of item_size structs at off, count at off_n, each a sub mapping */
    K_QUOTAS,  /* quotas.users: user name -> a quota mapping (struct dr_quota_user) */
};

struct field {
    const char *name;
    enum kind kind;
    size_t off;
    size_t off_n;
    const struct field *sub; /* NULL-name terminated */
    size_t item_size;
    uint64_t min, max;
    check_fn check;
    bool secret; /* never echo the value */
};

#define C(m) offsetof(struct dr_config, m)
/* clang-format off */
#define END {NULL, K_MAP, 0, 0, NULL, 0, 0, 0, NULL, false}
#define F_MAP(n, o, s) {n, K_MAP, o, 0, s, 0, 0, 0, NULL, false}
#define F_STR(n, o) {n, K_STR, o, 0, NULL, 0, 0, 0, NULL, false}
#define F_STRC(n, o, chk) {n, K_STR, o, 0, NULL, 0, 0, 0, chk, false}
#define F_SECRET(n, o, chk) {n, K_STR, o, 0, NULL, 0, 0, 0, chk, true}
#define F_FILE(n, o, chk) {n, K_FILE, o, 0, NULL, 0, 0, 0, chk, true}
#define F_BOOL(n, o) {n, K_BOOL, o, 0, NULL, 0, 0, 0, NULL, false}
#define F_INT(n, o, lo, hi) {n, K_INT, o, 0, NULL, 0, lo, hi, NULL, false}
#define F_U64(n, o, lo, hi) {n, K_U64, o, 0, NULL, 0, lo, hi, NULL, false}
#define F_SIZE(n, o, lo, hi) {n, K_SIZE, o, 0, NULL, 0, lo, hi, NULL, false}
#define F_DUR(n, o, lo, hi) {n, K_DUR, o, 0, NULL, 0, lo, hi, NULL, false}
/* clang-format on */

#define INT_LIMIT 1000000000ull
#define U64_LIMIT SIZE_VALUE_MAX
#define MiB (1ull << 20)
#define GiB (1ull << 30)

static const struct field user_fields[] = {
    F_STRC("name", offsetof(struct dr_user, name), check_user_name),
    F_SECRET("token", offsetof(struct dr_user, token), check_token),
    F_FILE("token_file", offsetof(struct dr_user, token), check_token),
    F_BOOL("admin", offsetof(struct dr_user, admin)),
    END,
};

static const struct field webhook_fields[] = {
    F_STRC("url", offsetof(struct dr_webhook, url), check_http_url),
    F_SECRET("secret", offsetof(struct dr_webhook, secret), NULL),
    END,
};

static const struct field local_fields[] = {
    F_STR("path", C(storage.local.path)),
    END,
};

static const struct field s3_fields[] = {
    F_STRC("endpoint", C(storage.s3.endpoint), check_http_url),
    F_STR("bucket", C(storage.s3.bucket)),
    F_STR("region", C(storage.s3.region)),
    F_STR("access_key_id", C(storage.s3.access_key_id)),
    F_SECRET("secret_access_key", C(storage.s3.secret_access_key), NULL),
    F_FILE("secret_access_key_file", C(storage.s3.secret_access_key), NULL),
    F_SECRET("session_token", C(storage.s3.session_token), NULL),
    F_BOOL("path_style", C(storage.s3.path_style)),
    F_BOOL("verify_tls", C(storage.s3.verify_tls)),
    F_SIZE("part_size", C(storage.s3.part_size), 5 * MiB, 5 * GiB),
    F_INT("parallel_parts", C(storage.s3.parallel_parts), 1, 256),
    F_DUR("connect_timeout", C(storage.s3.connect_timeout), 1, U64_LIMIT),
    F_DUR("idle_timeout", C(storage.s3.idle_timeout), 1, U64_LIMIT),
    F_DUR("timeout", C(storage.s3.timeout), 1, U64_LIMIT),
    END,
};

static const struct field storage_fields[] = {
    {"backend", K_BACKEND, C(storage.backend), 0, NULL, 0, 0, 0, NULL, false},
    F_MAP("local", 0, local_fields),
    F_MAP("s3", 0, s3_fields),
    END,
};

static const struct field encryption_fields[] = {
    F_STR("key_file", C(encryption.key_file)),
    END,
};

static const struct field postgres_fields[] = {
    F_SECRET("dsn", C(catalog.postgres.dsn), NULL),
    F_FILE("dsn_file", C(catalog.postgres.dsn), NULL),
    F_INT("pool", C(catalog.postgres.pool), 1, 1000),
    END,
};

static const struct field catalog_fields[] = {
    {"backend", K_CATALOG, C(catalog.backend), 0, NULL, 0, 0, 0, NULL, false},
    F_MAP("postgres", 0, postgres_fields),
    END,
};

static const struct field node_fields[] = {
    F_STRC("id", C(node.id), check_node_id),
    END,
};

/* Relative to a struct dr_stage_cfg. */
static const struct field stage_fields[] = {
    F_INT("concurrency", offsetof(struct dr_stage_cfg, concurrency), 1, 256),
    F_INT("max_demand", offsetof(struct dr_stage_cfg, max_demand), 1, INT_LIMIT),
    F_INT("min_demand", offsetof(struct dr_stage_cfg, min_demand), 1, INT_LIMIT),
    END,
};

static const struct field upload_fields[] = {
    F_MAP("process", C(pipeline.upload.process), stage_fields),
    F_MAP("encrypt", C(pipeline.upload.encrypt), stage_fields),
    F_MAP("store", C(pipeline.upload.store), stage_fields),
    END,
};

static const struct field download_fields[] = {
    F_MAP("fetch", C(pipeline.download.fetch), stage_fields),
    F_MAP("decrypt", C(pipeline.download.decrypt), stage_fields),
    END,
};

static const struct field retry_fields[] = {
    F_INT("attempts", C(pipeline.retry.attempts), 1, 1000),
    F_DUR("backoff", C(pipeline.retry.backoff), 0, U64_LIMIT),
    F_DUR("max_backoff", C(pipeline.retry.max_backoff), 0, U64_LIMIT),
    END,
};

static const struct field pipeline_fields[] = {
    F_U64("queue_limit", C(pipeline.queue_limit), 1, U64_LIMIT),
    F_MAP("upload", 0, upload_fields),
    F_MAP("download", 0, download_fields),
    F_MAP("retry", 0, retry_fields),
    F_SIZE("segment_size", C(pipeline.segment_size), 1ull << 10, 64 * MiB),
    F_SIZE("stage_commit_size", C(pipeline.stage_commit_size), 0, U64_LIMIT),
    F_DUR("retention", C(pipeline.retention), 0, U64_LIMIT),
    F_DUR("test_store_delay", C(pipeline.test_store_delay), 0, U64_LIMIT),
    F_DUR("test_notify_delay", C(pipeline.test_notify_delay), 0, U64_LIMIT),
    END,
};

static const struct field cache_fields[] = {
    F_SIZE("max_size", C(cache.max_size), 0, U64_LIMIT),
    F_DUR("ttl", C(cache.ttl), 0, U64_LIMIT),
    END,
};

static const struct field limits_fields[] = {
    F_SIZE("max_upload_size", C(limits.max_upload_size), 1, U64_LIMIT),
    F_DUR("header_timeout", C(limits.header_timeout), 1, U64_LIMIT),
    F_DUR("body_timeout", C(limits.body_timeout), 1, U64_LIMIT),
    F_DUR("keepalive_timeout", C(limits.keepalive_timeout), 0, U64_LIMIT),
    F_INT("max_connections", C(limits.max_connections), 1, INT_LIMIT),
    F_SIZE("max_header_size", C(limits.max_header_size), 1ull << 10, 1 * MiB),
    F_INT("max_headers", C(limits.max_headers), 1, 10000),
    F_SIZE("max_buffered_input", C(limits.max_buffered_input), 0, U64_LIMIT),
    END,
};

static const struct field http_fields[] = {
    F_INT("threads", C(http.threads), 0, 256),
    END,
};

static const struct field tus_fields[] = {
    F_DUR("expiration", C(tus.expiration), 1, U64_LIMIT),
    END,
};

static const struct field supervisor_fields[] = {
    F_INT("max_restarts", C(supervisor.max_restarts), 0, INT_LIMIT),
    F_DUR("max_seconds", C(supervisor.max_seconds), 1, U64_LIMIT),
    F_DUR("heartbeat_interval", C(supervisor.heartbeat_interval), 1, U64_LIMIT),
    F_DUR("heartbeat_timeout", C(supervisor.heartbeat_timeout), 1, U64_LIMIT),
    F_DUR("drain_timeout", C(supervisor.drain_timeout), 0, U64_LIMIT),
    END,
};

static const struct field health_fields[] = {
    F_SIZE("min_free_disk", C(health.min_free_disk), 0, U64_LIMIT),
    F_DUR("store_probe_interval", C(health.store_probe_interval), 100, U64_LIMIT),
    END,
};

static const struct field scrub_fields[] = {
    F_SIZE("rate_limit", C(scrub.rate_limit), 0, U64_LIMIT),
    END,
};

static const struct field log_fields[] = {
    F_STRC("level", C(log.level), check_level),
    END,
};

static const struct field variant_fields[] = {
    F_STRC("name", offsetof(struct dr_variant_cfg, name), check_variant_name),
    F_INT("max", offsetof(struct dr_variant_cfg, max), 1, 16384),
    F_STRC("format", offsetof(struct dr_variant_cfg, format), check_format),
    F_INT("quality", offsetof(struct dr_variant_cfg, quality), 1, 100),
    END,
};

static const struct field processing_limits_fields[] = {
    F_U64("max_pixels", C(processing.limits.max_pixels), 1, U64_LIMIT),
    F_DUR("timeout", C(processing.limits.timeout), 100, 3600000),
    F_SIZE("memory", C(processing.limits.memory), 0, U64_LIMIT),
    END,
};

static const struct field processing_fields[] = {
    F_BOOL("enabled", C(processing.enabled)),
    {"variants", K_LIST, C(processing.variants), C(processing.n_variants), variant_fields,
     sizeof(struct dr_variant_cfg), 0, 0, NULL, false},
    F_BOOL("video_poster", C(processing.video_poster)),
    F_BOOL("strip_metadata", C(processing.strip_metadata)),
    F_MAP("limits", 0, processing_limits_fields),
    F_SIZE("rate_limit", C(processing.rate_limit), 0, U64_LIMIT),
    F_STRC("test_decoder", C(processing.test_decoder), check_test_decoder),
    END,
};

/* offsets into struct dr_quota */
static const struct field quota_fields[] = {
    F_SIZE("max_bytes", offsetof(struct dr_quota, max_bytes), 0, U64_LIMIT),
    F_U64("max_inflight_uploads", offsetof(struct dr_quota, max_inflight_uploads), 0, U64_LIMIT),
    F_U64("max_queued_jobs", offsetof(struct dr_quota, max_queued_jobs), 0, U64_LIMIT),
    F_U64("max_event_streams", offsetof(struct dr_quota, max_event_streams), 0, U64_LIMIT),
    END,
};

static const struct field cors_fields[] = {
    {"origins", K_STRLIST, C(cors.origins), C(cors.n_origins), NULL, 0, 0, 0, check_origin, false},
    END,
};

static const struct field tls_fields[] = {
    F_STR("cert", C(tls.cert)),
    F_STR("key", C(tls.key)),
    END,
};

static const struct field pre_upload_fields[] = {
    F_STRC("url", C(hooks.pre_upload.url), check_http_url),
    F_DUR("timeout", C(hooks.pre_upload.timeout), 1, 600000),
    F_STRC("on_error", C(hooks.pre_upload.on_error), check_on_error),
    END,
};

static const struct field hooks_fields[] = {
    F_MAP("pre_upload", 0, pre_upload_fields),
    END,
};

static const struct field quotas_fields[] = {
    F_MAP("default", C(quotas.def), quota_fields),
    {"users", K_QUOTAS, C(quotas.users), C(quotas.n_users), quota_fields,
     sizeof(struct dr_quota_user), 0, 0, NULL, false},
    END,
};

static const struct field versions_fields[] = {
    F_INT("keep", C(versions.keep), 0, 1000),
    END,
};

static const struct field trash_fields[] = {
    F_DUR("ttl", C(trash.ttl), 0, U64_LIMIT),
    END,
};

static const struct field root_fields[] = {
    {"listen", K_STRLIST, C(listen), C(n_listen), NULL, 0, 0, 0, check_listen, false},
    F_STR("data_dir", C(data_dir)),
    {"users", K_LIST, C(users), C(n_users), user_fields, sizeof(struct dr_user), 0, 0, NULL, false},
    F_MAP("storage", 0, storage_fields),
    F_MAP("encryption", 0, encryption_fields),
    F_MAP("catalog", 0, catalog_fields),
    F_MAP("node", 0, node_fields),
    F_MAP("pipeline", 0, pipeline_fields),
    F_MAP("cache", 0, cache_fields),
    F_MAP("limits", 0, limits_fields),
    F_MAP("http", 0, http_fields),
    F_MAP("tus", 0, tus_fields),
    F_MAP("supervisor", 0, supervisor_fields),
    F_MAP("health", 0, health_fields),
    F_MAP("scrub", 0, scrub_fields),
    F_MAP("log", 0, log_fields),
    F_MAP("processing", 0, processing_fields),
    {"webhooks", K_LIST, C(webhooks), C(n_webhooks), webhook_fields, sizeof(struct dr_webhook), 0,
     0, NULL, false},
    F_MAP("quotas", 0, quotas_fields),
    {"trusted_proxies", K_STRLIST, C(trusted_proxies), C(n_trusted_proxies), NULL, 0, 0, 0,
     check_cidr, false},
    F_MAP("cors", 0, cors_fields),
    F_MAP("tls", 0, tls_fields),
    F_MAP("hooks", 0, hooks_fields),
    F_MAP("versions", 0, versions_fields),
    F_MAP("trash", 0, trash_fields),
    END,
};

/* ------------------------------------------------------------------ */
/* Walker                                                               */
/* ------------------------------------------------------------------ */

#define FIELDS_MAX 32 /* per mapping; checked by the unit tests' coverage */

static char *child_path(const char *parent, const char *name)
{
    return parent[0] ? xasprintf("%s.%s", parent, name) : xstrdup(name);
}

/* Levenshtein distance, cut off above 3 (only small distances matter). */
static size_t edit_distance(const char *a, size_t la, const char *b, size_t lb)
{
    size_t prev[NAME_MAX_LEN + 1], cur[NAME_MAX_LEN + 1];
    if (la > NAME_MAX_LEN || lb > NAME_MAX_LEN)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = DR_MIN(sub, DR_MIN(del, ins));
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb];
}

/* The known sibling a mistyped key most likely meant, or NULL. */
static const char *suggest(const struct field *fields, const char *key, size_t len)
{
    const char *best = NULL;
    size_t best_d = 3;
    for (const struct field *f = fields; f->name; f++) {
        size_t d = edit_distance(key, len, f->name, strlen(f->name));
        if (d < best_d) {
            best_d = d;
            best = f->name;
        }
    }
    if (best != NULL || len < 3)
        return best;
    for (const struct field *f = fields; f->name; f++) {
        size_t fl = strlen(f->name);
        size_t n = DR_MIN(len, fl);
        if (memcmp(key, f->name, n) == 0)
            return f->name;
    }
    return NULL;
}

/* Scalar text as a C string; NULL (with a message) if it is not a usable
 * non-null scalar without NUL bytes. */
static const char *scalar_str(struct loader *L, const yaml_node_t *n, const char *path, bool secret,
                              const char *expected)
{
    if (n->type != YAML_SCALAR_NODE || is_null(n)) {
        err_expected(L, path, n, secret, expected);
        return NULL;
    }
    const char *v = (const char *)n->data.scalar.value;
    if (memchr(v, '\0', n->data.scalar.length) != NULL) {
        err_path(L, path, "contains a NUL byte");
        return NULL;
    }
    return v;
}

/* Decimal integer, no sign, no junk. */
static int parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    if (*s == '\0')
        return -EINVAL;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -EINVAL;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "yes"}, *const no[] = {"false", "no"};
    for (size_t i = 0; i < 2; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -EINVAL;
}

static bool check_mode; /* config_check_mode() */

void config_check_mode(bool on)
{
    check_mode = on;
}

/* A systemd credential (LoadCredential=) that --check, outside the
 * service, cannot see: it exists only in the service's own
 * /run/credentials/<unit>/ while the service runs. */
static bool credential_elsewhere(const char *file, int err)
{
    return check_mode && (err == ENOENT || err == EACCES) &&
           getenv("CREDENTIALS_DIRECTORY") == NULL && strncmp(file, "/run/credentials/", 17) == 0;
}

/* Reads a secret from a regular file (bounded), strips trailing CR/LF.
 * Returns the string (caller frees) or NULL after reporting why. In
 * check mode a credential of a service is noted on stderr and stands in
 * as a placeholder, since only the service can read it. */
static char *read_secret_file(struct loader *L, const char *path, const char *file)
{
    char *buf = NULL;
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0 && credential_elsewhere(file, errno)) {
        struct loc *l = near_loc(L, path);
        fprintf(stderr,
                "%s:%zu:%zu: note: %s: \"%s\" is a systemd credential, there only while the "
                "service runs; not read by --check\n",
                L->name, l ? l->mark.line + 1 : 1, l ? l->mark.column + 1 : 1, path, file);
        return xasprintf("unchecked-credential:%s", path);
    }
    if (fd < 0) {
        err_path(L, path, "cannot read \"%s\": %s", file, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_path(L, path, "\"%s\" is not a regular file", file);
        goto out;
    }
    buf = xmalloc(SECRET_FILE_MAX + 1);
    ssize_t n = dr_read_full(fd, buf, SECRET_FILE_MAX + 1);
    if (n < 0) {
        err_path(L, path, "cannot read \"%s\": %s", file, strerror((int)-n));
        free(buf);
        buf = NULL;
        goto out;
    }
    if (n > SECRET_FILE_MAX) {
        err_path(L, path, "\"%s\" is larger than %d bytes", file, SECRET_FILE_MAX);
        free(buf);
        buf = NULL;
        goto out;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    if (memchr(buf, '\0', (size_t)n) != NULL || n == 0) {
        err_path(L, path, "\"%s\" is empty or contains a NUL byte", file);
        free(buf);
        buf = NULL;
    }
out:
    close(fd);
    return buf;
}

static void set_str(char **slot, char *v)
{
    free(*slot);
    *slot = v;
}

static void walk_map(struct loader *L, const yaml_node_t *map, const struct field *fields,
                     char *base, const char *path);

static void range_text(const struct field *f, char *buf, size_t len)
{
    char lo[32], hi[32];
    if (f->kind == K_SIZE) {
        fmt_size(f->min, lo, sizeof lo);
        fmt_size(f->max, hi, sizeof hi);
    } else if (f->kind == K_DUR) {
        fmt_duration(f->min, lo, sizeof lo);
        fmt_duration(f->max, hi, sizeof hi);
    } else {
        snprintf(lo, sizeof lo, "%llu", (unsigned long long)f->min);
        snprintf(hi, sizeof hi, "%llu", (unsigned long long)f->max);
    }
    const char *what = f->kind == K_SIZE  ? "a size (e.g. 10MiB)"
                       : f->kind == K_DUR ? "a duration (e.g. 30s)"
                                          : "an integer";
    bool no_max = f->max >= (f->kind == K_INT ? INT_LIMIT : U64_LIMIT);
    bool integer = f->kind == K_INT || f->kind == K_U64;
    if (no_max && f->min == 0 && !integer)
        snprintf(buf, len, "%s", what);
    else if (no_max)
        snprintf(buf, len, "%s >= %s", what, lo);
    else
        snprintf(buf, len, "%s between %s and %s", what, lo, hi);
}

static void apply_number(struct loader *L, const struct field *f, const yaml_node_t *n, char *slot,
                         const char *path)
{
    char expected[128];
    range_text(f, expected, sizeof expected);
    const char *s = scalar_str(L, n, path, false, expected);
    if (s == NULL)
        return;
    uint64_t v;
    int rc = f->kind == K_SIZE  ? config_parse_size(s, &v)
             : f->kind == K_DUR ? config_parse_duration(s, &v)
                                : parse_uint(s, &v);
    if (rc != 0 || v < f->min || v > f->max) {
        err_expected(L, path, n, false, expected);
        return;
    }
    if (f->kind == K_INT)
        *(int *)(void *)slot = (int)v;
    else
        *(uint64_t *)(void *)slot = v;
}

static void apply_string(struct loader *L, const struct field *f, const yaml_node_t *n, char **slot,
                         const char *path)
{
    const char *s =
        scalar_str(L, n, path, f->secret, f->kind == K_FILE ? "a file name" : "a string");
    if (s == NULL)
        return;
    if (s[0] == '\0') {
        err_path(L, path, "must not be empty");
        return;
    }
    char *v = f->kind == K_FILE ? read_secret_file(L, path, s) : xstrdup(s);
    if (v == NULL)
        return;
    const char *why = f->check ? f->check(v) : NULL;
    if (why != NULL) {
        if (f->secret) {
            err_path(L, path, "expected %s", why);
        } else {
            char url[512]; /* a URL's userinfo and query may be credentials */
            const char *shown = f->check == check_http_url ? redact_url(v, url, sizeof url) : v;
            char *got = show((const unsigned char *)shown, strlen(shown));
            err_path(L, path, "expected %s, got %s", why, got);
            free(got);
        }
        free(v);
        return;
    }
    set_str(slot, v);
}

static void apply_strlist(struct loader *L, const struct field *f, const yaml_node_t *n, char *base,
                          const char *path)
{
    char ***arr = (char ***)(void *)(base + f->off);
    size_t *cnt = (size_t *)(void *)(base + f->off_n);
    if (n->type != YAML_SEQUENCE_NODE) {
        err_expected(L, path, n, false, "a sequence of strings");
        return;
    }
    for (size_t i = 0; i < *cnt; i++)
        free((*arr)[i]);
    free(*arr);
    size_t items = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    *arr = xcalloc(items ? items : 1, sizeof(char *));
    *cnt = 0;
    for (size_t i = 0; i < items; i++) {
        yaml_node_t *it = yaml_document_get_node(L->doc, n->data.sequence.items.start[i]);
        char *ipath = xasprintf("%s[%zu]", path, i);
        char *v = NULL;
        record_loc(L, ipath, it);
        struct field one = *f;
        one.kind = K_STR;
        apply_string(L, &one, it, &v, ipath);
        if (v != NULL)
            (*arr)[(*cnt)++] = v;
        free(ipath);
    }
}

static void apply_list(struct loader *L, const struct field *f, const yaml_node_t *n, char *base,
                       const char *path)
{
    void **arr = (void **)(void *)(base + f->off);
    size_t *cnt = (size_t *)(void *)(base + f->off_n);
    if (n->type != YAML_SEQUENCE_NODE) {
        err_expected(L, path, n, false, "a sequence of mappings");
        return;
    }
    if (*arr != NULL) /* defaults never hold items; duplicates are skipped */
        return;
    size_t items = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    *arr = xcalloc(items ? items : 1, f->item_size);
    *cnt = items;
    for (size_t i = 0; i < items; i++) {
        yaml_node_t *it = yaml_document_get_node(L->doc, n->data.sequence.items.start[i]);
        char *ipath = xasprintf("%s[%zu]", path, i);
        record_loc(L, ipath, it);
        if (it->type != YAML_MAPPING_NODE)
            err_expected(L, ipath, it, false, "a mapping");
        else
            walk_map(L, it, f->sub, (char *)*arr + i * f->item_size, ipath);
        free(ipath);
    }
}

/* quotas.users: {alice: {max_bytes: 100GiB}, ...}; the names are checked
 * against users in validate_quotas. */
static void apply_quotas(struct loader *L, const struct field *f, const yaml_node_t *n, char *base,
                         const char *path)
{
    struct dr_quota_user **arr = (struct dr_quota_user **)(void *)(base + f->off);
    size_t *cnt = (size_t *)(void *)(base + f->off_n);
    if (n->type != YAML_MAPPING_NODE) {
        err_expected(L, path, n, false, "a mapping of user names to quotas");
        return;
    }
    if (*arr != NULL) /* a duplicate key: reported by the walker */
        return;
    size_t items = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    *arr = xcalloc(items ? items : 1, sizeof **arr);
    *cnt = 0;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(L->doc, p->value);
        if (k == NULL || v == NULL)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            err_mark(L, k->start_mark, "%s: user names must be plain strings", path);
            continue;
        }
        char *shown = escape(k->data.scalar.value, k->data.scalar.length);
        char *upath = child_path(path, shown);
        free(shown);
        record_loc(L, upath, v);
        struct dr_quota_user *u = &(*arr)[(*cnt)++];
        u->name = xstrndup((const char *)k->data.scalar.value, k->data.scalar.length);
        u->q = (struct dr_quota){DR_QUOTA_UNSET, DR_QUOTA_UNSET, DR_QUOTA_UNSET, DR_QUOTA_UNSET};
        if (v->type != YAML_MAPPING_NODE)
            err_expected(L, upath, v, false, "a mapping");
        else
            walk_map(L, v, f->sub, (char *)&u->q, upath);
        free(upath);
    }
}

static void apply_field(struct loader *L, const struct field *f, const yaml_node_t *n, char *base,
                        const char *path)
{
    char *slot = base + f->off;
    switch (f->kind) {
    case K_MAP:
        if (n->type != YAML_MAPPING_NODE)
            err_expected(L, path, n, false, "a mapping");
        else
            walk_map(L, n, f->sub, slot, path);
        break;
    case K_STR:
    case K_FILE:
        apply_string(L, f, n, (char **)(void *)slot, path);
        break;
    case K_BOOL: {
        static const char *const expected = "a boolean (true/false/yes/no)";
        const char *s = scalar_str(L, n, path, false, expected);
        bool b;
        if (s != NULL && parse_bool(s, &b) != 0)
            err_expected(L, path, n, false, expected);
        else if (s != NULL)
            *(bool *)(void *)slot = b;
        break;
    }
    case K_INT:
    case K_U64:
    case K_SIZE:
    case K_DUR:
        apply_number(L, f, n, slot, path);
        break;
    case K_BACKEND: {
        static const char *const expected = "one of local, s3";
        const char *s = scalar_str(L, n, path, false, expected);
        if (s == NULL)
            break;
        if (strcmp(s, "local") == 0)
            *(enum dr_store_backend *)(void *)slot = DR_STORE_LOCAL;
        else if (strcmp(s, "s3") == 0)
            *(enum dr_store_backend *)(void *)slot = DR_STORE_S3;
        else
            err_expected(L, path, n, false, expected);
        break;
    }
    case K_CATALOG: {
        static const char *const expected = "one of sqlite, postgres";
        const char *s = scalar_str(L, n, path, false, expected);
        if (s == NULL)
            break;
        if (strcmp(s, "sqlite") == 0)
            *(enum dr_catalog_backend *)(void *)slot = DR_CATALOG_SQLITE;
        else if (strcmp(s, "postgres") == 0)
            *(enum dr_catalog_backend *)(void *)slot = DR_CATALOG_POSTGRES;
        else
            err_expected(L, path, n, false, expected);
        break;
    }
    case K_STRLIST:
        apply_strlist(L, f, n, base, path);
        break;
    case K_LIST:
        apply_list(L, f, n, base, path);
        break;
    case K_QUOTAS:
        apply_quotas(L, f, n, base, path);
        break;
    }
}

static void walk_map(struct loader *L, const yaml_node_t *map, const struct field *fields,
                     char *base, const char *path)
{
    const yaml_node_t *seen[FIELDS_MAX] = {0};
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(L->doc, p->key);
        yaml_node_t *v = yaml_document_get_node(L->doc, p->value);
        if (k == NULL || v == NULL)
            continue;
        if (k->type != YAML_SCALAR_NODE) {
            err_mark(L, k->start_mark, "%s%skeys must be plain strings, got %s", path,
                     path[0] ? ": " : "",
                     k->type == YAML_SEQUENCE_NODE ? "a sequence" : "a mapping");
            continue;
        }
        const char *key = (const char *)k->data.scalar.value;
        size_t klen = k->data.scalar.length;
        size_t idx = 0;
        const struct field *f = NULL;
        for (const struct field *c = fields; c->name; c++, idx++) {
            if (strlen(c->name) == klen && memcmp(c->name, key, klen) == 0) {
                f = c;
                break;
            }
        }
        if (f == NULL) {
            char *shown = escape(k->data.scalar.value, klen);
            char *kpath = child_path(path, shown);
            const char *hint = suggest(fields, key, klen);
            if (hint != NULL)
                err_mark(L, k->start_mark, "%s: unknown key, did you mean '%s'?", kpath, hint);
            else
                err_mark(L, k->start_mark, "%s: unknown key", kpath);
            free(kpath);
            free(shown);
            continue;
        }
        char *cpath = child_path(path, f->name);
        if (idx < FIELDS_MAX && seen[idx] != NULL) {
            err_mark(L, k->start_mark, "%s: duplicate key (first given at %zu:%zu)", cpath,
                     seen[idx]->start_mark.line + 1, seen[idx]->start_mark.column + 1);
        } else {
            if (idx < FIELDS_MAX)
                seen[idx] = k;
            record_loc(L, cpath, v);
            apply_field(L, f, v, base, cpath);
        }
        free(cpath);
    }
}

/* ------------------------------------------------------------------ */
/* Cross-field validation                                               */
/* ------------------------------------------------------------------ */

static void validate_users(struct loader *L, const struct dr_config *c)
{
    if (c->n_users == 0) {
        if (!is_bad(L, "users"))
            err_path(L, "users", "at least one user is required");
        return;
    }
    for (size_t i = 0; i < c->n_users; i++) {
        const struct dr_user *u = &c->users[i];
        char *up = xasprintf("users[%zu]", i);
        char *np = xasprintf("%s.name", up), *tp = xasprintf("%s.token", up),
             *fp = xasprintf("%s.token_file", up);
        struct loc *ul = find_loc(L, up);
        if (ul == NULL || ul->type != YAML_MAPPING_NODE)
            goto next; /* already reported as not a mapping */
        if (!given(L, np))
            err_path(L, np, "required");
        bool has_t = given(L, tp), has_f = given(L, fp);
        if (!has_t && !has_f)
            err_path(L, up, "needs token or token_file");
        else if (has_t && has_f)
            err_path(L, fp, "give either token or token_file, not both");
        for (size_t j = 0; j < i; j++) {
            const struct dr_user *o = &c->users[j];
            if (u->name && o->name && strcmp(u->name, o->name) == 0)
                err_path(L, np, "duplicate user name \"%s\" (also users[%zu])", u->name, j);
            if (u->token && o->token && !(has_t && has_f) && strcmp(u->token, o->token) == 0)
                err_path(L, has_t ? tp : fp, "same token as users[%zu]", j);
        }
    next:
        free(up);
        free(np);
        free(tp);
        free(fp);
    }
}

static void validate_s3(struct loader *L, const struct dr_config *c)
{
    bool has_k = given(L, "storage.s3.secret_access_key");
    bool has_f = given(L, "storage.s3.secret_access_key_file");
    if (has_k && has_f)
        err_path(L, "storage.s3.secret_access_key_file",
                 "give either secret_access_key or secret_access_key_file, not both");
    if (c->storage.backend != DR_STORE_S3)
        return;
    static const struct {
        const char *path;
        size_t off;
    } req[] = {
        {"storage.s3.endpoint", C(storage.s3.endpoint)},
        {"storage.s3.bucket", C(storage.s3.bucket)},
        {"storage.s3.access_key_id", C(storage.s3.access_key_id)},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(req); i++) {
        const char *v = *(char *const *)(const void *)((const char *)c + req[i].off);
        if (v == NULL && !given(L, req[i].path))
            err_path(L, req[i].path, "required when storage.backend is s3");
    }
    if (!has_k && !has_f)
        err_path(L, "storage.s3.secret_access_key",
                 "required (or secret_access_key_file) when storage.backend is s3");
}

static void validate_catalog(struct loader *L, const struct dr_config *c)
{
    bool has_d = given(L, "catalog.postgres.dsn");
    bool has_f = given(L, "catalog.postgres.dsn_file");
    if (has_d && has_f)
        err_path(L, "catalog.postgres.dsn_file", "give either dsn or dsn_file, not both");
    if (c->catalog.backend == DR_CATALOG_POSTGRES && !has_d && !has_f)
        err_path(L, "catalog.postgres.dsn",
                 "required (or dsn_file) when catalog.backend is postgres");
}

static void validate_stages(struct loader *L, const struct dr_config *c)
{
    static const struct {
        const char *path;
        size_t off;
    } st[] = {
        {"pipeline.upload.process", C(pipeline.upload.process)},
        {"pipeline.upload.encrypt", C(pipeline.upload.encrypt)},
        {"pipeline.upload.store", C(pipeline.upload.store)},
        {"pipeline.download.fetch", C(pipeline.download.fetch)},
        {"pipeline.download.decrypt", C(pipeline.download.decrypt)},
    };
    for (size_t i = 0; i < DR_ARRAY_LEN(st); i++) {
        const struct dr_stage_cfg *s =
            (const struct dr_stage_cfg *)(const void *)((const char *)c + st[i].off);
        char *minp = xasprintf("%s.min_demand", st[i].path);
        char *maxp = xasprintf("%s.max_demand", st[i].path);
        if (s->min_demand > s->max_demand && !is_bad(L, minp) && !is_bad(L, maxp))
            err_path(L, given(L, minp) ? minp : maxp, "min_demand (%d) must be <= max_demand (%d)",
                     s->min_demand, s->max_demand);
        free(minp);
        free(maxp);
    }
}

static void validate_variants(struct loader *L, const struct dr_config *c)
{
    if (c->processing.n_variants > DR_MAX_VARIANTS && !is_bad(L, "processing.variants"))
        err_path(L, "processing.variants", "at most %d variants", DR_MAX_VARIANTS);
    for (size_t i = 0; i < c->processing.n_variants; i++) {
        const struct dr_variant_cfg *v = &c->processing.variants[i];
        char *vp = xasprintf("processing.variants[%zu]", i);
        struct loc *vl = find_loc(L, vp);
        if (vl != NULL && vl->type == YAML_MAPPING_NODE) {
            static const char *const req[] = {"name", "max", "format"};
            for (size_t k = 0; k < DR_ARRAY_LEN(req); k++) {
                char *kp = xasprintf("%s.%s", vp, req[k]);
                if (!given(L, kp))
                    err_path(L, kp, "required");
                free(kp);
            }
        }
        for (size_t k = 0; k < i && v->name; k++)
            if (c->processing.variants[k].name &&
                strcmp(c->processing.variants[k].name, v->name) == 0) {
                char *np = xasprintf("%s.name", vp);
                err_path(L, np, "duplicate variant name '%s' (also processing.variants[%zu])",
                         v->name, k);
                free(np);
            }
        free(vp);
    }
}

static void validate_quotas(struct loader *L, const struct dr_config *c)
{
    for (size_t i = 0; i < c->quotas.n_users; i++) {
        const struct dr_quota_user *q = &c->quotas.users[i];
        if (config_find_user(c, q->name) != NULL)
            continue;
        char *shown = escape((const unsigned char *)q->name, strlen(q->name));
        char *p = xasprintf("quotas.users.%s", shown);
        err_path(L, p, "no user named \"%s\" (users[].name)", shown);
        free(p);
        free(shown);
    }
}

/* Never ask a terminal for a passphrase: an encrypted key is an error. */
int config_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* The PEM file at path ("tls.cert"), opened: a BIO, or NULL after
 * reporting why (or after a --check note about a service credential). */
static BIO *open_pem(struct loader *L, const char *path, const char *file, bool *noted)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 && credential_elsewhere(file, errno)) {
        struct loc *l = near_loc(L, path);
        fprintf(stderr,
                "%s:%zu:%zu: note: %s: \"%s\" is a systemd credential, there only while the "
                "service runs; not read by --check\n",
                L->name, l ? l->mark.line + 1 : 1, l ? l->mark.column + 1 : 1, path, file);
        *noted = true;
        return NULL;
    }
    struct stat st;
    if (fd < 0) {
        err_path(L, path, "cannot read \"%s\": %s", file, strerror(errno));
        return NULL;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        err_path(L, path, "\"%s\" is not a regular file", file);
        close(fd);
        return NULL;
    }
    BIO *b = BIO_new_fd(fd, BIO_CLOSE);
    if (b == NULL)
        close(fd);
    return b;
}

/* tls.cert and tls.key: both or neither; they load (the server loads
 * them the same way) and the key is the certificate's. */
static void validate_tls(struct loader *L, const struct dr_config *c)
{
    bool has_c = c->tls.cert != NULL, has_k = c->tls.key != NULL;
    if (!has_c && !has_k)
        return;
    if (!has_c || !has_k) {
        if (!is_bad(L, has_c ? "tls.cert" : "tls.key"))
            err_path(L, has_c ? "tls.key" : "tls.cert", "required with tls.%s",
                     has_c ? "cert" : "key");
        return;
    }
    bool noted = false;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    BIO *b = open_pem(L, "tls.cert", c->tls.cert, &noted);
    if (b != NULL) {
        x = PEM_read_bio_X509_AUX(b, NULL, config_no_passphrase, NULL);
        if (x == NULL)
            err_path(L, "tls.cert", "\"%s\" holds no PEM certificate", c->tls.cert);
        BIO_free(b);
    }
    b = open_pem(L, "tls.key", c->tls.key, &noted);
    if (b != NULL) {
        k = PEM_read_bio_PrivateKey(b, NULL, config_no_passphrase, NULL);
        if (k == NULL)
            err_path(L, "tls.key",
                     "\"%s\" holds no PEM private key (an encrypted key is not supported)",
                     c->tls.key);
        BIO_free(b);
    }
    if (x != NULL && k != NULL && X509_check_private_key(x, k) != 1)
        err_path(L, "tls.key", "\"%s\" is not the private key of tls.cert", c->tls.key);
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
}

static void validate(struct loader *L, const struct dr_config *c)
{
    validate_tls(L, c);
    validate_users(L, c);
    validate_quotas(L, c);
    validate_variants(L, c);
    validate_s3(L, c);
    validate_catalog(L, c);
    validate_stages(L, c);

    if (c->pipeline.retry.max_backoff < c->pipeline.retry.backoff &&
        !is_bad(L, "pipeline.retry.backoff") && !is_bad(L, "pipeline.retry.max_backoff")) {
        char a[32], b[32];
        fmt_duration(c->pipeline.retry.max_backoff, a, sizeof a);
        fmt_duration(c->pipeline.retry.backoff, b, sizeof b);
        err_path(L,
                 given(L, "pipeline.retry.max_backoff") ? "pipeline.retry.max_backoff"
                                                        : "pipeline.retry.backoff",
                 "max_backoff (%s) must be >= backoff (%s)", a, b);
    }
    if (c->supervisor.heartbeat_timeout <= c->supervisor.heartbeat_interval &&
        !is_bad(L, "supervisor.heartbeat_timeout") && !is_bad(L, "supervisor.heartbeat_interval")) {
        char a[32], b[32];
        fmt_duration(c->supervisor.heartbeat_timeout, a, sizeof a);
        fmt_duration(c->supervisor.heartbeat_interval, b, sizeof b);
        err_path(L,
                 given(L, "supervisor.heartbeat_timeout") ? "supervisor.heartbeat_timeout"
                                                          : "supervisor.heartbeat_interval",
                 "heartbeat_timeout (%s) must be longer than heartbeat_interval (%s)", a, b);
    }
    for (size_t i = 0; i < c->n_webhooks; i++) {
        char *wp = xasprintf("webhooks[%zu]", i);
        struct loc *wl = find_loc(L, wp);
        if (wl != NULL && wl->type == YAML_MAPPING_NODE) {
            char *u = xasprintf("%s.url", wp), *s = xasprintf("%s.secret", wp);
            if (!given(L, u))
                err_path(L, u, "required");
            if (!given(L, s))
                err_path(L, s, "required");
            free(u);
            free(s);
        }
        free(wp);
    }
}

/* ------------------------------------------------------------------ */
/* Entry points                                                         */
/* ------------------------------------------------------------------ */

/* 0-based line/column of a byte offset, for libyaml reader errors. */
static yaml_mark_t mark_at(const char *buf, size_t len, size_t off)
{
    yaml_mark_t m = {off, 0, 0};
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            m.line++;
            m.column = 0;
        } else if (((unsigned char)buf[i] & 0xc0) != 0x80) {
            m.column++;
        }
    }
    return m;
}

static void err_syntax(struct loader *L, const yaml_parser_t *p, const char *buf, size_t len)
{
    const char *problem = p->problem ? p->problem : "cannot parse";
    if (p->error == YAML_READER_ERROR) {
        err_mark(L, mark_at(buf, len, p->problem_offset), "YAML error: %s", problem);
    } else if (p->context != NULL) {
        err_mark(L, p->problem_mark, "YAML syntax error: %s (%s at %zu:%zu)", problem, p->context,
                 p->context_mark.line + 1, p->context_mark.column + 1);
    } else {
        err_mark(L, p->problem_mark, "YAML syntax error: %s", problem);
    }
}

int config_load_buffer(const char *name, const char *buf, size_t len, struct dr_config **out,
                       struct dr_config_errors *errs)
{
    struct loader L = {.name = name ? name : "<config>"};
    struct dr_config *c = config_defaults();
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool have_doc = false;

    *out = NULL;
    free(c->path);
    c->path = xstrdup(L.name);
    if (!yaml_parser_initialize(&parser))
        abort(); /* only fails on out-of-memory; see xmalloc */
    yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);

    if (!yaml_parser_load(&parser, &doc)) {
        err_syntax(&L, &parser, buf, len);
        goto out;
    }
    have_doc = true;
    L.doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root == NULL || is_null(root)) {
        yaml_mark_t m = {0, 0, 0};
        err_mark(&L, root ? root->start_mark : m, "empty config file");
        goto out;
    }
    if (!yaml_parser_load(&parser, &extra)) {
        err_syntax(&L, &parser, buf, len);
    } else {
        yaml_node_t *r2 = yaml_document_get_root_node(&extra);
        if (r2 != NULL)
            err_mark(&L, r2->start_mark, "only one YAML document is allowed");
        yaml_document_delete(&extra);
    }
    record_loc(&L, "", root);
    if (root->type != YAML_MAPPING_NODE) {
        char *got = describe(root, false);
        err_mark(&L, root->start_mark, "expected a mapping of keys at the top level, got %s", got);
        free(got);
        goto out;
    }
    free_variants(c); /* a list in the file replaces the defaults (apply_list) */
    walk_map(&L, root, root_fields, (char *)c, "");
    if (!given(&L, "processing.variants"))
        default_variants(c);
    for (size_t i = 0; i < c->processing.n_variants; i++)
        if (c->processing.variants[i].quality == 0)
            c->processing.variants[i].quality = 80;
    validate(&L, c);
    /* Paths derived from the default data_dir follow the loaded one. */
    if (!given(&L, "storage.local.path")) {
        free(c->storage.local.path);
        c->storage.local.path = NULL;
    }
    if (!given(&L, "encryption.key_file")) {
        free(c->encryption.key_file);
        c->encryption.key_file = NULL;
    }
    config_finish(c);

out:
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    for (size_t i = 0; i < L.n_locs; i++)
        free(L.locs[i].path);
    free(L.locs);
    flush_problems(&L, errs);
    if (L.n_errors > 0) {
        config_destroy(c);
        return -EINVAL;
    }
    *out = c;
    return 0;
}

int config_load(const char *path, struct dr_config **out, struct dr_config_errors *errs)
{
    struct dr_config_errors scratch = {NULL, 0};
    struct dr_config_errors *e = errs ? errs : &scratch;
    char *buf = NULL;
    int rc, fd;

    *out = NULL;
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        rc = -errno;
        e->msgs = xrealloc(e->msgs, (e->n + 1) * sizeof(char *));
        e->msgs[e->n++] = xasprintf("%s:1:1: cannot open config file: %s", path, strerror(-rc));
        goto out;
    }
    buf = xmalloc(CONFIG_FILE_MAX + 1);
    ssize_t n = dr_read_full(fd, buf, CONFIG_FILE_MAX + 1);
    if (n < 0 || n > CONFIG_FILE_MAX) {
        rc = n < 0 ? (int)n : -EFBIG;
        e->msgs = xrealloc(e->msgs, (e->n + 1) * sizeof(char *));
        e->msgs[e->n++] =
            n < 0 ? xasprintf("%s:1:1: cannot read config file: %s", path, strerror((int)-n))
                  : xasprintf("%s:1:1: config file is larger than %u bytes", path, CONFIG_FILE_MAX);
        goto out;
    }
    rc = config_load_buffer(path, buf, (size_t)n, out, e);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    config_errors_clear(&scratch);
    return rc;
}

/* api_req.c - what the JSON routes of the API share (api_req.h): JSON
 * request bodies, the common answers, the media object, query parameters
 * and the hand-off to the worker pool.
 *
 * Threads: the body, answer and query helpers run on the exchange's loop
 * thread; api_media_json() and the JSON value helpers only build values
 * and may run anywhere. api_pool_store() keeps one store handle per pool
 * thread (a pthread key; closed when the thread exits); nothing else is
 * state.
 */
#include "api_req.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/catalog_versions.h"
#include "dripd/log.h"
#include "dripd/store.h"
#include "dripd/util.h"

/* ---- bodies ---- */

bool api_body_start(struct http_exchange *ex)
{
    const struct http_request *rq = http_req(ex);
    if (rq->has_length && rq->content_length > API_BODY_MAX) {
        http_respond_problem(ex, 413, "request body over %d bytes", API_BODY_MAX);
        return false;
    }
    http_accept_body(ex);
    return true;
}

int api_body_append(struct http_exchange *ex, const char *data, size_t len)
{
    struct api_body *b = http_get_data(ex);
    if (b->len + len > API_BODY_MAX) {
        http_respond_problem(ex, 413, "request body over %d bytes", API_BODY_MAX);
        return -EFBIG;
    }
    b->buf = xrealloc(b->buf, b->len + len + 1);
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    b->buf[b->len] = '\0';
    return 0;
}

void api_body_free(struct api_body *b)
{
    if (b == NULL)
        return;
    free(b->buf);
    b->buf = NULL;
    b->len = 0;
}

json_t *api_body_object(struct http_exchange *ex, bool empty_ok)
{
    struct api_body *b = http_get_data(ex);
    if (b->len == 0 && empty_ok)
        return json_object();
    json_error_t jerr;
    json_t *doc = json_loadb(b->buf ? b->buf : "", b->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        http_respond_problem(ex, 400, "body is not valid JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(doc)) {
        json_decref(doc);
        http_respond_problem(ex, 400, "body must be a JSON object");
        return NULL;
    }
    return doc;
}

const char *api_json_string(struct http_exchange *ex, json_t *doc, const char *key)
{
    json_t *v = json_object_get(doc, key);
    if (!json_is_string(v) || json_string_length(v) == 0 ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        http_respond_problem(ex, 400, "body needs a non-empty string \"%s\"", key);
        return NULL;
    }
    return json_string_value(v);
}

/* ---- JSON values ---- */

json_t *api_str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

json_t *api_time_or_null(int64_t ms)
{
    if (ms <= 0)
        return json_null();
    char buf[40];
    dr_fmt_time(ms, buf, sizeof buf);
    return json_string(buf);
}

/* Times RFC 3339, absent values null, "shared" true when viewer is not
 * the owner. */
json_t *api_media_json(const struct dr_media *m, const char *viewer)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(m->id));
    json_object_set_new(o, "path", api_str_or_null(m->path));
    json_object_set_new(o, "name", api_str_or_null(m->name));
    json_object_set_new(o, "folder", api_str_or_null(m->folder));
    json_object_set_new(o, "size", json_integer((json_int_t)m->size));
    json_object_set_new(o, "sha256", api_str_or_null(m->sha256));
    json_object_set_new(o, "content_type", api_str_or_null(m->content_type));
    json_object_set_new(o, "state", api_str_or_null(m->state));
    json_object_set_new(o, "owner", api_str_or_null(m->owner));
    json_object_set_new(o, "created_at", api_time_or_null(m->created_at));
    json_object_set_new(o, "uploaded_at", api_time_or_null(m->uploaded_at));
    /* versions and the trash (catalog_versions.h): "retired" only on a
     * row that does not hold its path */
    json_object_set_new(o, "version", json_integer(m->version > 0 ? m->version : 1));
    if (m->retired[0]) {
        json_object_set_new(o, "retired", json_string(m->retired));
        json_object_set_new(o, "retired_at", api_time_or_null(m->retired_at));
    }
    bool shared = viewer && m->owner && strcmp(viewer, m->owner) != 0;
    json_object_set_new(o, "shared", json_boolean(shared));
    /* what the process stage found: only the keys that apply, {} none */
    json_t *jm = m->metadata ? json_loads(m->metadata, 0, NULL) : NULL;
    if (!json_is_object(jm)) {
        json_decref(jm);
        jm = json_object();
    }
    json_object_set_new(o, "metadata", jm);
    return o;
}

/* ---- answers ---- */

void api_respond_busy(struct http_exchange *ex, const char *what)
{
    http_add_header(ex, "Retry-After", "1");
    http_respond_problem(ex, 503, "%s: the catalog is busy, retry shortly", what);
}

void api_respond_catalog_error(struct http_exchange *ex, int rc, const char *what)
{
    if (rc == -ENOENT)
        http_respond_problem(ex, 404, "no such media");
    else if (rc == -EBUSY || rc == -EAGAIN)
        api_respond_busy(ex, what);
    else
        http_respond_problem(ex, 500, "%s failed: %s", what, strerror(-rc));
}

struct catalog *api_loop_catalog(struct http_exchange *ex)
{
    struct catalog *cat = http_thread_catalog(http_ex_thread(ex));
    if (!cat) {
        http_add_header(ex, "Retry-After", "5");
        http_respond_problem(ex, 503, "the catalog cannot be opened");
    }
    return cat;
}

int api_defer(struct http_exchange *ex, void (*work)(void *),
              void (*done)(struct http_exchange *, void *), void *arg)
{
    int rc = http_defer(ex, work, done, arg);
    if (rc < 0) {
        http_add_header(ex, "Retry-After", "1");
        http_respond_problem(ex, 503, "the server is busy, retry shortly");
    }
    return rc;
}

/* ---- the store, per pool thread ---- */

static pthread_key_t store_key;
static pthread_once_t store_key_once = PTHREAD_ONCE_INIT;

static void store_key_destroy(void *p)
{
    store_close(p);
}

static void store_key_init(void)
{
    if (pthread_key_create(&store_key, store_key_destroy) != 0)
        abort();
}

struct dr_store *api_pool_store(const struct dr_config *cfg, char *err, size_t errlen)
{
    pthread_once(&store_key_once, store_key_init);
    struct dr_store *st = pthread_getspecific(store_key);
    if (st == NULL && store_open(cfg, &st, err, errlen) == 0)
        pthread_setspecific(store_key, st);
    return st;
}

void api_trash_marks(const struct dr_config *cfg, const char (*ids)[DR_ID_LEN + 1], size_t n,
                     bool in_trash, int64_t at)
{
    char err[DR_ERRLEN] = "";
    struct dr_store *st = n > 0 ? api_pool_store(cfg, err, sizeof err) : NULL;
    if (n > 0 && st == NULL) {
        log_warn("trash: no store for the trash marks of %zu files (%s); a rebuilt catalog "
                 "would show them %s",
                 n, err, in_trash ? "live" : "in the trash");
        return;
    }
    if (n > 0)
        (void)store_mark_trash(st, cfg->data_dir, ids, n, in_trash, at);
}

/* ---- the request line ---- */

bool api_query_has(const struct http_exchange *ex, const char *key)
{
    const char *q = http_req(ex)->query;
    size_t n = strlen(key);
    while (q && *q) {
        if (strncmp(q, key, n) == 0 && (q[n] == '=' || q[n] == '&' || q[n] == '\0'))
            return true;
        q = strchr(q, '&');
        if (q)
            q++;
    }
    return false;
}

bool api_query_long(struct http_exchange *ex, const char *name, long lo, long hi, long dflt,
                    long *out)
{
    const char *v = http_query_param(ex, name);
    *out = dflt;
    if (v == NULL && !api_query_has(ex, name))
        return true;
    char *end = NULL;
    errno = 0;
    long n = v != NULL ? strtol(v, &end, 10) : 0;
    if (v == NULL || end == v || *end != '\0' || errno != 0 || n < lo || n > hi) {
        http_respond_problem(ex, 400, "bad %s: want %ld..%ld", name, lo, hi);
        return false;
    }
    *out = n;
    return true;
}

bool api_path_id(const struct http_exchange *ex, const char *prefix, char id[DR_ID_LEN + 1],
                 const char **rest)
{
    const char *p = http_req(ex)->path;
    size_t pl = strlen(prefix);
    if (!p || strncmp(p, prefix, pl) != 0)
        return false;
    p += pl;
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n != DR_ID_LEN)
        return false;
    memcpy(id, p, n);
    id[n] = '\0';
    if (!dr_id_valid(id))
        return false;
    *rest = slash ? slash + 1 : "";
    return true;
}

int api_require_admin(struct http_exchange *ex)
{
    if (http_user_admin(ex))
        return 0;
    http_respond_problem(ex, 403, "this route needs an admin user");
    return -1;
}

/* ---- overwrite: If-Match and ?conflict=rename ---- */

static bool etag_char(unsigned char c)
{
    return c == 0x21 || (c >= 0x23 && c != 0x7f);
}

/* "*" or a list of entity tags (RFC 9110 8.8.3) into "*" or the strong
 * tags' opaque parts joined by ','; NULL when malformed. */
static char *if_match_list(const char *hdr)
{
    size_t cap = strlen(hdr) + 2, n = 0;
    char *out = xmalloc(cap);
    out[0] = '\0';
    const char *p = hdr;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '*') {
        for (p++; *p == ' ' || *p == '\t'; p++)
            ;
        if (*p != '\0') {
            free(out);
            return NULL;
        }
        snprintf(out, cap, "*");
        return out;
    }
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return out;
        bool weak = p[0] == 'W' && p[1] == '/';
        if (weak)
            p += 2;
        if (*p != '"')
            break;
        const char *q = p + 1;
        while (*q && etag_char((unsigned char)*q))
            q++;
        if (*q != '"' || q == p + 1)
            break;
        if (!weak) {
            if (n > 0)
                out[n++] = ',';
            memcpy(out + n, p + 1, (size_t)(q - p - 1));
            n += (size_t)(q - p - 1);
            out[n] = '\0';
        }
        p = q + 1;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ',' && *p != '\0')
            break;
    }
    free(out);
    return NULL;
}

bool api_overwrite_read(struct http_exchange *ex, struct api_overwrite *ow)
{
    memset(ow, 0, sizeof *ow);
    const char *conflict = http_query_param(ex, "conflict");
    if (conflict != NULL || api_query_has(ex, "conflict")) {
        if (conflict == NULL || strcmp(conflict, "rename") != 0) {
            http_respond_problem(ex, 400,
                                 "bad conflict: want conflict=rename (or If-Match to "
                                 "replace the file)");
            return false;
        }
        ow->rename = true;
    }
    const char *im = http_header(ex, "If-Match");
    if (im != NULL) {
        if (ow->rename) {
            http_respond_problem(ex, 400,
                                 "If-Match replaces the file and conflict=rename keeps "
                                 "both: send one of them");
            return false;
        }
        ow->if_match = if_match_list(im);
        if (ow->if_match == NULL) {
            http_respond_problem(ex, 400,
                                 "bad If-Match: want \"*\" or entity tags such as "
                                 "\"<sha256>\" (the file's ETag)");
            return false;
        }
    }
    return true;
}

void api_overwrite_free(struct api_overwrite *ow)
{
    free(ow->if_match);
    ow->if_match = NULL;
}

bool api_overwrite_matches(const struct api_overwrite *ow, const struct dr_media *m)
{
    return ow->if_match == NULL || catalog_etag_listed(ow->if_match, m->sha256);
}

int api_overwrite_check(struct http_exchange *ex, struct catalog *cat, const char *owner,
                        const char *path, const struct api_overwrite *ow)
{
    if (ow->rename)
        return 0; /* any path: the commit finds a free name */
    if (ow->if_match != NULL) {
        struct dr_media m = {0};
        int rc = catalog_media_by_path(cat, owner, path, &m);
        bool live = rc == 0 && strcmp(m.state, "failed") != 0;
        bool ok = live && api_overwrite_matches(ow, &m);
        dr_media_clear(&m);
        if (rc < 0 && rc != -ENOENT)
            return rc;
        if (ok)
            return 0;
        http_respond_problem(ex, 412,
                             live ? "%s has changed: its ETag is not in If-Match"
                                  : "%s does not exist (If-Match needs a file to replace)",
                             path);
        return 1;
    }
    int rc = catalog_path_exists(cat, owner, path);
    if (rc > 0)
        http_respond_problem(ex, 409,
                             "%s %s (send If-Match: <its ETag> to replace it, or "
                             "?conflict=rename to keep both)",
                             path, catalog_path_clash_text(rc));
    return rc < 0 ? rc : rc > 0;
}

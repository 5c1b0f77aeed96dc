/* http_conn.c - one HTTP/1.1 connection's state machine (see http_conn.h,
 * http.h for the handler contract, docs/HTTP.md for the design notes).
 *
 * Threads: a connection and its exchanges live on ONE loop thread; every
 * function in this file runs there. Other threads reach a connection only
 * through http_thread_post() (http_defer completions, ingest), never
 * directly.
 *
 * I/O: the connection does its own socket I/O with two libevent events
 * and two evbuffers instead of a bufferevent, because libevent 2.1's
 * evbuffer_read() reads at most 4096 bytes per call (262144 read calls
 * and loop turns per GiB). Input is bounded by a high-water mark: once
 * that much is buffered the read event is removed, so a handler that
 * pauses the body (or writes it synchronously to disk in on_body) slows
 * the client down through TCP flow control. The mark is IN_BASE (8 KiB)
 * for everything but an accepted request body: heads are parsed as they
 * arrive, and whatever a client pipelines behind a response it does not
 * read stays in the kernel, not here. A connection streaming an accepted
 * body reads up to IN_HIGH (256 KiB) per readv() when the server-wide
 * budget limits.max_buffered_input grants it the difference (released when
 * the exchange ends); otherwise it streams at IN_BASE.
 * Output goes through evbuffer_write_atmost(), which uses sendfile(2) for
 * http_respond_file() segments; a long file goes out corked (set_cork).
 *
 * TLS (tls: {cert, key}; tls.h): the same state machine, with OpenSSL's
 * record layer on the same fd. A connection starts with the handshake
 * (driven by the read and write events; the first request's header
 * timeout covers it). Reads decrypt into the same bounded input buffer
 * (SSL_read per record until the room or the socket runs out); bytes
 * OpenSSL has already taken from the socket but not handed out yet are
 * picked up without waiting for the socket (tls_pending). Writes encrypt
 * the output buffer, TLS_WRITE_MAX per SSL_write and TLS_BATCH at a time,
 * into tls_out, which goes to the socket like plain output (writev of
 * many records at once); nothing more is encrypted while records wait
 * for the socket, so ciphertext is bounded by TLS_BATCH too. A file
 * response cannot go by sendfile (the kernel would send plaintext; kTLS,
 * which could, is not on this kernel): it is "pumped" instead, PUMP_CHUNK
 * bytes read with pread into the output buffer whenever it runs low, so a
 * 1 GiB download holds a few hundred KiB. A close sends close_notify
 * before shutdown(SHUT_WR).
 *
 * Re-entrancy: handler callbacks may call any http.h function. Those only
 * change state and queue output, then ask for progress (conn_touch); all
 * state transitions, frees and socket writes happen in conn_progress(),
 * which never runs nested. The only callback made from inside
 * http_parser_execute() is on_body (its data points into the input
 * buffer); everything else is called from conn_progress().
 *
 * Per exchange: request state rq (HEAD -> WAIT -> BODY | DISCARD -> DONE,
 * or ABANDONED when the body will not be read and the connection closes
 * after the response) and response state rs (NONE -> STREAM -> COMPLETE).
 * An exchange finishes when its response is complete and written, its
 * request is DONE or ABANDONED, and nothing holds it (http_defer, ingest).
 * Then exactly one of on_done / on_abort runs.
 */
#include "http_conn.h"

#include "forwarded.h"
#include "tls.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <http_parser.h>
#include <jansson.h>

#include "dripd/config.h"
#include "dripd/netaddr.h"
#include "dripd/log.h"
#include "dripd/metrics.h"
#include "dripd/util.h"

#define IN_BASE (8u << 10)       /* input bound of every connection */
#define IN_HIGH (256u << 10)     /* input bound while streaming an accepted body, if granted */
#define READ_MIN 4096u           /* smallest read attempt */
#define STREAM_HIGH (256u << 10) /* http_stream_write returns -EAGAIN above this */
#define DISCARD_MAX (64u << 10)  /* unaccepted bodies up to this are read and dropped */
#define LINGER_IDLE_MS 2000
#define LINGER_TOTAL_MS 10000
#define RH_MAX (16u << 10)        /* extra response header bytes per exchange */
#define STEP_BUDGET 64            /* state-machine steps per callback; then yield to the loop */
#define TLS_WRITE_MAX (64u << 10) /* plaintext per SSL_write (four records) */
#define TLS_BATCH (256u << 10)    /* plaintext encrypted before the records are sent */
#define PUMP_CHUNK (256u << 10)   /* TLS file responses: bytes read from the file at a time */
#define CORK_MIN (256u << 10)     /* plain file responses this long go out corked (set_cork) */

enum rq { RQ_HEAD, RQ_WAIT, RQ_BODY, RQ_DISCARD, RQ_DONE, RQ_ABANDONED };
enum rs { RS_NONE, RS_STREAM, RS_COMPLETE };
enum tmode { T_NONE, T_IDLE, T_HEADER, T_BODY, T_LINGER };
enum hstate { H_URL, H_FIELD, H_VALUE };

struct hdr {
    uint32_t name, value; /* offsets into the head arena */
};

struct qparam {
    struct qparam *next;
    char *value;
};

struct http_exchange {
    struct http_conn *c;
    struct http_request req;
    const struct http_route_ops *ops;
    enum dr_route_class rclass;
    /* head arena: "target\0name\0value\0name\0value\0..." */
    char *buf;
    size_t len, cap;
    struct hdr *hdrs;
    unsigned n_hdrs, cap_hdrs;
    enum hstate hstate;
    uint64_t trailer_bytes; /* chunked trailer fields: counted, never stored */
    unsigned n_trailers;
    char *path, *query;
    struct qparam *qparams;
    /* the request's view (http.h: client_addr, scheme, host) */
    char client[DR_ADDR_STRLEN];
    char host[FWD_HOST_MAX + 1];
    /* handler state */
    void *data;
    char *user;
    bool admin;
    /* response */
    char *rh; /* extra headers, "Name: value\r\n"... */
    size_t rh_len, rh_cap;
    int status;
    enum rq rq;
    enum rs rs;
    bool accepted, paused, stopped, msg_complete, end_called;
    bool close_after, is_head, chunked_out, aborting, cb_called, sent_100, stream_full;
    int holds;
    uint64_t t0_us;
    void (*drain_fn)(struct http_exchange *ex, void *arg);
    void *drain_arg;
};

struct http_conn {
    struct http_thread *t;
    struct http_conn *prev, *next;
    int fd;
    struct event *rev, *wev, *kick, *timer;
    struct evbuffer *in, *out;
    http_parser p;
    struct http_exchange *ex;
    enum tmode tmode;
    uint64_t head_bytes;
    int err_status;         /* set by parser callbacks: 431 */
    const char *err_detail; /* set by parser callbacks: why a body failed */
    bool reading, writing, peer_eof, dead, closing, lingering, draining;
    bool in_progress, again, head_done, refused, freed;
    bool in_big; /* holds IN_HIGH - IN_BASE of limits.max_buffered_input */
    int64_t linger_end;
    unsigned nreq;
    unsigned idle_nreq; /* nreq when the T_IDLE timer was last armed */
    char remote[64];
    struct dr_addr peer;
    bool peer_trusted; /* peer is in trusted_proxies */
    /* TLS (tls.h): the SSL on fd, or NULL for plain HTTP */
    SSL *ssl;
    struct evbuffer *tls_out; /* records OpenSSL wrote, not yet sent */
    bool tls_handshaking;     /* before any request byte */
    /* TLS file responses (sendfile cannot encrypt): what is left to read */
    int pump_fd;
    uint64_t pump_off, pump_left;
    /* Plain file responses, counted in bytes of output since the start:
     * those handed to the socket, where the file queued behind a response
     * head starts (flush_plain sends that head with MSG_MORE), and where the
     * last file queued ends */
    uint64_t out_sent, file_at, file_end;
    /* TCP_CORK is on while a long file response goes out (set_cork) */
    bool corked, no_cork;
    char peer_host[DR_ADDR_STRLEN];
};

static void conn_progress(struct http_conn *c);
static void conn_kill(struct http_conn *c);
static void set_cork(struct http_conn *c, bool on);

/* ------------------------------------------------------------------ */
/* small helpers                                                       */

static uint64_t now_us(void)
{
    return dr_mono_ns() / 1000;
}

static const struct dr_config *cfg_of(const struct http_conn *c)
{
    return http_thread_config(c->t);
}

static struct dr_metrics *metrics_of(const struct http_conn *c)
{
    return http_thread_metrics(c->t);
}

/* Output not yet handed to the socket: the buffer, and a TLS file
 * response's unread rest. */
static size_t out_pending(const struct http_conn *c)
{
    size_t n = evbuffer_get_length(c->out) + (size_t)c->pump_left;
    return c->tls_out != NULL ? n + evbuffer_get_length(c->tls_out) : n;
}

static void conn_touch(struct http_conn *c)
{
    if (c->in_progress)
        c->again = true;
    else
        event_active(c->kick, EV_TIMEOUT, 0);
}

/* "Date:" value, cached per thread for a second. */
static const char *http_date(void)
{
    static __thread time_t last;
    static __thread char buf[40];
    time_t now = time(NULL);
    if (now != last) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return buf;
}

const char *http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 412:
        return "Precondition Failed";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 460:
        return "Checksum Mismatch";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 507:
        return "Insufficient Storage";
    default:
        break;
    }
    if (status >= 100 && status < 200)
        return "Informational";
    if (status >= 200 && status < 300)
        return "Success";
    if (status >= 300 && status < 400)
        return "Redirection";
    if (status >= 400 && status < 500)
        return "Client Error";
    return "Server Error";
}

static bool status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* ------------------------------------------------------------------ */
/* exchange allocation and the head arena                              */

static struct http_exchange *ex_new(struct http_conn *c)
{
    struct http_exchange *ex = xcalloc(1, sizeof *ex);
    ex->c = c;
    ex->rq = RQ_HEAD;
    ex->rs = RS_NONE;
    ex->rclass = DR_RC_OTHER;
    ex->t0_us = now_us();
    return ex;
}

static void ex_free(struct http_exchange *ex)
{
    if (ex == NULL)
        return;
    free(ex->buf);
    free(ex->hdrs);
    free(ex->path);
    free(ex->query);
    for (struct qparam *q = ex->qparams, *n; q != NULL; q = n) {
        n = q->next;
        free(q->value);
        free(q);
    }
    free(ex->user);
    free(ex->rh);
    free(ex);
}

/* Append to the head arena; -1 when max_header_size would be exceeded. */
static int arena_put(struct http_exchange *ex, const char *p, size_t n)
{
    size_t max = (size_t)cfg_of(ex->c)->limits.max_header_size + 1;
    if (ex->len + n + 1 > max)
        return -1;
    if (ex->len + n + 1 > ex->cap) {
        size_t cap = ex->cap ? ex->cap : 512;
        while (cap < ex->len + n + 1)
            cap *= 2;
        if (cap > max)
            cap = max;
        ex->buf = xrealloc(ex->buf, cap);
        ex->cap = cap;
    }
    memcpy(ex->buf + ex->len, p, n);
    ex->len += n;
    return 0;
}

static int arena_nul(struct http_exchange *ex)
{
    return arena_put(ex, "", 1);
}

/* ------------------------------------------------------------------ */
/* http_parser callbacks                                               */

static int p_on_message_begin(http_parser *p)
{
    struct http_conn *c = p->data;
    if (c->ex != NULL) /* cannot happen: we pause after each message */
        return -1;
    c->ex = ex_new(c);
    return 0;
}

/* A trailer field (after a chunked body; the head is done). The head arena
 * must not grow any more: handlers hold pointers into it (req.target,
 * http_header() values) and a realloc would leave them dangling. Nobody
 * reads trailers (RFC 9110 6.5.1 lets a recipient drop them), so they are
 * counted against the head's limits and dropped. */
static int trailer_part(struct http_conn *c, size_t len, bool field_start)
{
    struct http_exchange *ex = c->ex;
    const struct dr_config *cfg = cfg_of(c);
    ex->trailer_bytes += len + (field_start ? 4 : 0); /* ": " and CRLF */
    if (field_start)
        ex->n_trailers++;
    if (ex->trailer_bytes > cfg->limits.max_header_size ||
        ex->n_trailers > (unsigned)cfg->limits.max_headers) {
        c->err_detail = "chunked trailer section too large (limits.max_header_size / "
                        "limits.max_headers)";
        return -1;
    }
    return 0;
}

static int p_on_url(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    if (arena_put(c->ex, at, len) < 0) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int p_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_exchange *ex = c->ex;
    if (c->head_done) {
        bool start = ex->hstate != H_FIELD;
        ex->hstate = H_FIELD;
        return trailer_part(c, len, start);
    }
    if (ex->hstate != H_FIELD) {
        if ((int)ex->n_hdrs >= cfg_of(c)->limits.max_headers) {
            c->err_status = 431;
            return -1;
        }
        if (arena_nul(ex) < 0) {
            c->err_status = 431;
            return -1;
        }
        if (ex->n_hdrs == ex->cap_hdrs) {
            ex->cap_hdrs = ex->cap_hdrs ? ex->cap_hdrs * 2 : 16;
            ex->hdrs = xrealloc(ex->hdrs, ex->cap_hdrs * sizeof *ex->hdrs);
        }
        ex->hdrs[ex->n_hdrs].name = (uint32_t)ex->len;
        ex->hdrs[ex->n_hdrs].value = (uint32_t)ex->len; /* fixed up below */
        ex->n_hdrs++;
        ex->hstate = H_FIELD;
    }
    if (arena_put(ex, at, len) < 0) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int p_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_exchange *ex = c->ex;
    if (c->head_done) {
        ex->hstate = H_VALUE;
        return trailer_part(c, len, false);
    }
    if (ex->hstate != H_VALUE) {
        if (arena_nul(ex) < 0) {
            c->err_status = 431;
            return -1;
        }
        ex->hdrs[ex->n_hdrs - 1].value = (uint32_t)ex->len;
        ex->hstate = H_VALUE;
    }
    if (arena_put(ex, at, len) < 0) {
        c->err_status = 431;
        return -1;
    }
    return 0;
}

static int p_on_headers_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    struct http_exchange *ex = c->ex;
    if (ex->hstate == H_FIELD) { /* a field without ':' never gets here */
        if (arena_nul(ex) < 0) {
            c->err_status = 431;
            return -1;
        }
        ex->hdrs[ex->n_hdrs - 1].value = (uint32_t)ex->len;
    }
    if (arena_nul(ex) < 0) {
        c->err_status = 431;
        return -1;
    }
    c->head_done = true;
    http_parser_pause(p, 1);
    return 0;
}

static int p_on_body(http_parser *p, const char *at, size_t len)
{
    struct http_conn *c = p->data;
    struct http_exchange *ex = c->ex;
    if (ex->rq != RQ_BODY || ex->stopped)
        return 0; /* DISCARD: drop */
    int rc = ex->ops->on_body ? ex->ops->on_body(ex, at, len) : 0;
    if (rc < 0)
        ex->stopped = true;
    if (ex->stopped || ex->paused || ex->rq != RQ_BODY)
        http_parser_pause(p, 1);
    return 0;
}

static int p_on_message_complete(http_parser *p)
{
    struct http_conn *c = p->data;
    c->ex->msg_complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = p_on_message_begin,
    .on_url = p_on_url,
    .on_header_field = p_on_header_field,
    .on_header_value = p_on_header_value,
    .on_headers_complete = p_on_headers_complete,
    .on_body = p_on_body,
    .on_message_complete = p_on_message_complete,
};

/* ------------------------------------------------------------------ */
/* request head -> struct http_request                                 */

/* Percent-decode s[0..n) into a heap string; plus_space turns '+' into ' '
 * (query strings). NULL for a bad escape or an encoded NUL. */
static char *pct_decode(const char *s, size_t n, bool plus_space)
{
    char *out = xmalloc(n + 1);
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '%') {
            if (i + 2 >= n) {
                free(out);
                return NULL;
            }
            int b = dr_hex_byte(s + i + 1);
            if (b <= 0) { /* a bad escape, or an encoded NUL */
                free(out);
                return NULL;
            }
            out[j++] = (char)b;
            i += 2;
        } else if (ch == '+' && plus_space) {
            out[j++] = ' ';
        } else {
            out[j++] = ch;
        }
    }
    out[j] = '\0';
    return out;
}

static const char *hdr_value(const struct http_exchange *ex, const char *name)
{
    for (unsigned i = 0; i < ex->n_hdrs; i++)
        if (strcasecmp(ex->buf + ex->hdrs[i].name, name) == 0)
            return ex->buf + ex->hdrs[i].value;
    return NULL;
}

/* Split the request-target into a decoded path and a raw query. */
static void parse_target(struct http_exchange *ex)
{
    const char *t = ex->buf;
    size_t tlen = strlen(t);
    const char *path = NULL, *q = NULL;
    size_t plen = 0, qlen = 0;
    if (t[0] == '/') {
        const char *qm = memchr(t, '?', tlen);
        const char *hash = memchr(t, '#', tlen);
        size_t end = hash ? (size_t)(hash - t) : tlen;
        path = t;
        plen = qm && (size_t)(qm - t) < end ? (size_t)(qm - t) : end;
        if (qm && (size_t)(qm - t) < end) {
            q = qm + 1;
            qlen = end - plen - 1;
        }
    } else if (strcmp(t, "*") == 0) {
        ex->path = xstrdup("*");
        return;
    } else {
        struct http_parser_url u;
        http_parser_url_init(&u);
        if (http_parser_parse_url(t, tlen, ex->req.method == HTTP_CONNECT, &u) != 0)
            return;
        if (u.field_set & (1 << UF_PATH)) {
            path = t + u.field_data[UF_PATH].off;
            plen = u.field_data[UF_PATH].len;
        } else {
            path = "/";
            plen = 1;
        }
        if (u.field_set & (1 << UF_QUERY)) {
            q = t + u.field_data[UF_QUERY].off;
            qlen = u.field_data[UF_QUERY].len;
        }
    }
    if (path != NULL && plen > 0 && path[0] == '/')
        ex->path = pct_decode(path, plen, false);
    if (q != NULL)
        ex->query = xstrndup(q, qlen);
}

static bool value_has_token(const char *v, const char *token)
{
    size_t n = strlen(token);
    while (v && *v) {
        while (*v == ' ' || *v == '\t' || *v == ',')
            v++;
        if (strncasecmp(v, token, n) == 0) {
            const char *e = v + n;
            while (*e == ' ' || *e == '\t')
                e++;
            if (*e == '\0' || *e == ',' || *e == ';')
                return true;
        }
        v = strchr(v, ',');
    }
    return false;
}

/* Every line of header name joined with ", " (RFC 9110 5.3): the single
 * value, a joined copy in *heap (the caller frees it), or NULL. */
static const char *hdr_all(const struct http_exchange *ex, const char *name, char **heap)
{
    const char *first = NULL;
    char *joined = NULL;
    for (unsigned i = 0; i < ex->n_hdrs; i++) {
        if (strcasecmp(ex->buf + ex->hdrs[i].name, name) != 0)
            continue;
        const char *v = ex->buf + ex->hdrs[i].value;
        if (first == NULL) {
            first = v;
        } else {
            char *j = xasprintf("%s, %s", joined ? joined : first, v);
            free(joined);
            joined = j;
        }
    }
    *heap = joined;
    return joined ? joined : first;
}

/* client_addr, scheme and host: the connection's, or a trusted proxy's
 * word for them (forwarded.h). */
static void resolve_view(struct http_conn *c, struct http_exchange *ex)
{
    struct http_request *r = &ex->req;
    snprintf(ex->client, sizeof ex->client, "%s", c->peer_host);
    r->scheme = c->ssl != NULL ? "https" : "http";
    const char *host = hdr_value(ex, "Host");
    if (host != NULL && fwd_host_valid(host, strlen(host)))
        snprintf(ex->host, sizeof ex->host, "%s", host);
    if (c->peer_trusted) {
        char *h[4];
        const char *fw = hdr_all(ex, "Forwarded", &h[0]);
        const char *xff = hdr_all(ex, "X-Forwarded-For", &h[1]);
        const char *xfp = hdr_all(ex, "X-Forwarded-Proto", &h[2]);
        const char *xfh = hdr_all(ex, "X-Forwarded-Host", &h[3]);
        if (fw != NULL || xff != NULL || xfp != NULL || xfh != NULL) {
            struct fwd_view v;
            fwd_resolve(http_thread_trust(c->t), fw, xff, xfp, xfh, &v);
            if (v.client[0] != '\0') {
                snprintf(ex->client, sizeof ex->client, "%s", v.client);
                r->via_proxy = true;
            }
            if (v.proto[0] != '\0')
                r->scheme = strcmp(v.proto, "https") == 0 ? "https" : "http";
            if (v.host[0] != '\0')
                snprintf(ex->host, sizeof ex->host, "%s", v.host);
        }
        for (size_t i = 0; i < DR_ARRAY_LEN(h); i++)
            free(h[i]);
    }
    r->client_addr = ex->client;
    r->host = ex->host[0] != '\0' ? ex->host : NULL;
}

static void build_request(struct http_conn *c, struct http_exchange *ex)
{
    /* trim trailing blanks of header values */
    for (unsigned i = 0; i < ex->n_hdrs; i++) {
        char *v = ex->buf + ex->hdrs[i].value;
        size_t n = strlen(v);
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            v[--n] = '\0';
    }
    struct http_request *r = &ex->req;
    r->method = (int)c->p.method;
    r->method_name = http_method_str((enum http_method)c->p.method);
    r->target = ex->buf;
    r->http_major = c->p.http_major;
    r->http_minor = c->p.http_minor;
    r->keep_alive = http_should_keep_alive(&c->p) != 0;
    r->chunked = (c->p.flags & F_CHUNKED) != 0;
    r->has_length = !r->chunked && (c->p.flags & F_CONTENTLENGTH) != 0;
    r->content_length = r->has_length ? c->p.content_length : 0;
    const char *expect = hdr_value(ex, "Expect");
    r->expect_continue = expect != NULL && r->http_major == 1 && r->http_minor >= 1 &&
                         value_has_token(expect, "100-continue");
    r->remote_addr = c->remote;
    resolve_view(c, ex);
    ex->is_head = r->method == HTTP_HEAD;
    parse_target(ex);
    r->path = ex->path;
    r->query = ex->query;
}

static bool body_empty(const struct http_exchange *ex)
{
    return !ex->req.chunked && ex->req.content_length == 0;
}

/* ------------------------------------------------------------------ */
/* output                                                              */

static void out_add(struct http_conn *c, const void *p, size_t n)
{
    if (!c->dead && n > 0)
        evbuffer_add(c->out, p, n);
}

/* Decide, as the response starts, whether the connection stays open, and
 * what happens to a body nobody accepted. */
static void decide_close(struct http_exchange *ex)
{
    struct http_conn *c = ex->c;
    bool close = ex->close_after || !ex->req.keep_alive || c->draining ||
                 http_thread_draining(c->t) || c->p.upgrade ||
                 cfg_of(c)->limits.keepalive_timeout == 0;
    switch (ex->rq) {
    case RQ_WAIT:
        if (body_empty(ex)) {
            ex->rq = RQ_DISCARD;
        } else if (close || ex->req.chunked || ex->req.expect_continue ||
                   ex->req.content_length > DISCARD_MAX) {
            ex->rq = RQ_ABANDONED;
            close = true;
        } else {
            ex->rq = RQ_DISCARD;
        }
        break;
    case RQ_BODY:
        if (!ex->msg_complete) {
            ex->rq = RQ_ABANDONED;
            close = true;
        }
        break;
    default:
        break;
    }
    if (close)
        ex->close_after = true;
}

static void write_head(struct http_exchange *ex, int status, const char *ctype, int64_t clen,
                       bool chunked)
{
    struct http_conn *c = ex->c;
    char head[1024];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: dripd\r\n", status,
                     http_reason(status), http_date());
    if (ctype != NULL && (size_t)n < sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Type: %.200s\r\n", ctype);
    if (clen >= 0 && (size_t)n < sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n, "Content-Length: %" PRId64 "\r\n", clen);
    if (chunked && (size_t)n < sizeof head)
        n += snprintf(head + n, sizeof head - (size_t)n, "Transfer-Encoding: chunked\r\n");
    if ((size_t)n < sizeof head) {
        if (ex->close_after)
            n += snprintf(head + n, sizeof head - (size_t)n, "Connection: close\r\n");
        else if (ex->req.http_minor == 0)
            n += snprintf(head + n, sizeof head - (size_t)n, "Connection: keep-alive\r\n");
    }
    if ((size_t)n >= sizeof head)
        n = (int)sizeof head - 1;
    out_add(c, head, (size_t)n);
    out_add(c, ex->rh, ex->rh_len);
    out_add(c, "\r\n", 2);
    ex->status = status;
}

/* May a handler respond now? */
static bool can_respond(struct http_exchange *ex, const char *what)
{
    if (ex->rs != RS_NONE || ex->aborting || ex->c->dead) {
        if (ex->rs != RS_NONE && !ex->aborting && !ex->c->dead)
            log_warn("http: %s after the response started (%s %s) ignored", what,
                     ex->req.method_name, ex->req.target);
        return false;
    }
    return true;
}

void http_respond(struct http_exchange *ex, int status, const char *content_type, const void *body,
                  size_t len)
{
    if (!can_respond(ex, "http_respond"))
        return;
    decide_close(ex);
    bool has_body = status_has_body(status);
    write_head(ex, status, has_body ? content_type : NULL, has_body ? (int64_t)len : -1, false);
    if (has_body && !ex->is_head)
        out_add(ex->c, body, len);
    ex->rs = RS_COMPLETE;
    conn_touch(ex->c);
}

static char *problem_text(int status, const char *detail)
{
    json_t *o = json_pack("{s:s, s:s, s:i, s:s}", "type", "about:blank", "title",
                          http_reason(status), "status", status, "detail", detail ? detail : "");
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (s == NULL) /* detail was not UTF-8 */
        s = xasprintf("{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d}",
                      http_reason(status), status);
    return s;
}

void http_respond_problem(struct http_exchange *ex, int status, const char *detail_fmt, ...)
{
    if (!can_respond(ex, "http_respond_problem"))
        return;
    va_list ap;
    va_start(ap, detail_fmt);
    char *detail = xvasprintf(detail_fmt, ap);
    va_end(ap);
    char *body = problem_text(status, detail);
    http_respond(ex, status, "application/problem+json", body, strlen(body));
    free(body); /* jansson and xvasprintf both allocate with malloc */
    free(detail);
}

void http_respond_json(struct http_exchange *ex, int status, struct json_t *obj)
{
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (s == NULL) {
        http_respond_problem(ex, 500, "response could not be encoded");
        return;
    }
    http_respond(ex, status, "application/json", s, strlen(s));
    free(s);
}

void http_respond_file(struct http_exchange *ex, int status, const char *content_type, int fd,
                       uint64_t offset, uint64_t len)
{
    if (!can_respond(ex, "http_respond_file")) {
        close(fd);
        return;
    }
    decide_close(ex);
    write_head(ex, status, content_type, (int64_t)len, false);
    ex->rs = RS_COMPLETE;
    if (ex->is_head || len == 0 || ex->c->dead) {
        close(fd);
    } else if (ex->c->ssl != NULL) {
        ex->c->pump_fd = fd; /* read as it is sent (flush_tls) */
        ex->c->pump_off = offset;
        ex->c->pump_left = len;
    } else {
        struct http_conn *c = ex->c;
        uint64_t at = c->out_sent + evbuffer_get_length(c->out); /* after the head */
        if (evbuffer_add_file(c->out, fd, (ev_off_t)offset, (ev_off_t)len) != 0) {
            log_error("http: evbuffer_add_file failed; closing the connection");
            close(fd);
            conn_kill(c);
            return;
        }
        if (c->file_end <= c->out_sent) /* only memory before it */
            c->file_at = at;
        c->file_end = at + len;
        if (len >= CORK_MIN)
            set_cork(c, true);
    }
    conn_touch(ex->c);
}

void http_stream_start(struct http_exchange *ex, int status, const char *content_type)
{
    if (!can_respond(ex, "http_stream_start"))
        return;
    decide_close(ex);
    ex->chunked_out = ex->req.http_minor >= 1;
    if (!ex->chunked_out)
        ex->close_after = true; /* HTTP/1.0: the body ends with the connection */
    write_head(ex, status, content_type, -1, ex->chunked_out);
    ex->rs = RS_STREAM;
    conn_touch(ex->c);
}

int http_stream_write(struct http_exchange *ex, const void *data, size_t len)
{
    struct http_conn *c = ex->c;
    if (ex->rs != RS_STREAM || c->dead || ex->aborting)
        return -EPIPE;
    if (evbuffer_get_length(c->out) > STREAM_HIGH) {
        ex->stream_full = true;
        return -EAGAIN;
    }
    if (len == 0 || ex->is_head)
        return 0;
    if (ex->chunked_out) {
        char sz[24];
        int n = snprintf(sz, sizeof sz, "%zx\r\n", len);
        out_add(c, sz, (size_t)n);
        out_add(c, data, len);
        out_add(c, "\r\n", 2);
    } else {
        out_add(c, data, len);
    }
    conn_touch(c);
    return 0;
}

void http_stream_end(struct http_exchange *ex)
{
    if (ex->rs != RS_STREAM)
        return;
    if (ex->chunked_out && !ex->is_head)
        out_add(ex->c, "0\r\n\r\n", 5);
    ex->rs = RS_COMPLETE;
    conn_touch(ex->c);
}

void http_stream_on_drain(struct http_exchange *ex, void (*fn)(struct http_exchange *ex, void *arg),
                          void *arg)
{
    ex->drain_fn = fn;
    ex->drain_arg = arg;
}

void http_add_header(struct http_exchange *ex, const char *name, const char *value)
{
    if (ex->rs != RS_NONE)
        return;
    size_t nl = strlen(name), vl = strlen(value);
    if (ex->rh_len + nl + vl + 4 > RH_MAX) {
        log_warn("http: response headers over %u bytes; '%s' dropped", RH_MAX, name);
        return;
    }
    if (ex->rh_len + nl + vl + 4 > ex->rh_cap) {
        ex->rh_cap = DR_MAX(ex->rh_cap * 2, ex->rh_len + nl + vl + 4);
        ex->rh = xrealloc(ex->rh, ex->rh_cap);
    }
    char *p = ex->rh + ex->rh_len;
    for (size_t i = 0; i < nl; i++) /* no CR/LF/':' injection through the name */
        *p++ = (name[i] == '\r' || name[i] == '\n' || name[i] == ':') ? '-' : name[i];
    *p++ = ':';
    *p++ = ' ';
    for (size_t i = 0; i < vl; i++)
        *p++ = (value[i] == '\r' || value[i] == '\n') ? ' ' : value[i];
    *p++ = '\r';
    *p++ = '\n';
    ex->rh_len = (size_t)(p - ex->rh);
}

void http_add_headerf(struct http_exchange *ex, const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *v = xvasprintf(fmt, ap);
    va_end(ap);
    http_add_header(ex, name, v);
    free(v);
}

void http_close_after(struct http_exchange *ex)
{
    ex->close_after = true;
}

/* An answer from the server itself, outside any handler (malformed head,
 * header timeout, refusal): problem+json, Connection: close, then close. */
static void server_error(struct http_conn *c, int status, const char *detail)
{
    struct dr_metrics *m = metrics_of(c);
    bool head = c->head_done && c->p.method == HTTP_HEAD;
    uint64_t t0 = c->ex ? c->ex->t0_us : now_us();
    ex_free(c->ex);
    c->ex = NULL;
    c->head_done = false;
    if (!c->dead) {
        char *body = problem_text(status, detail);
        char head_buf[512];
        int n = snprintf(head_buf, sizeof head_buf,
                         "HTTP/1.1 %d %s\r\nDate: %s\r\nServer: dripd\r\n"
                         "Content-Type: application/problem+json\r\nContent-Length: %zu\r\n"
                         "Connection: close\r\n\r\n",
                         status, http_reason(status), http_date(), strlen(body));
        out_add(c, head_buf, (size_t)n);
        if (!head)
            out_add(c, body, strlen(body));
        free(body);
    }
    metrics_add(&m->http_requests[DR_RC_OTHER][metrics_status_slot(status)], 1);
    metrics_observe(&m->http_duration[DR_RC_OTHER], now_us() - t0);
    log_debug("http: %s -> %d %s", c->remote, status, detail);
    c->closing = true;
    conn_touch(c);
}

/* The body cannot be completed (malformed framing, idle timeout): answer
 * with status unless a response is under way, never read the rest, close
 * after the response. A handler that had accepted the body gets on_abort. */
static void fail_body(struct http_conn *c, int status, const char *detail)
{
    struct http_exchange *ex = c->ex;
    if (ex->rs == RS_STREAM) {
        conn_kill(c);
        return;
    }
    bool handler_had_body = ex->rq == RQ_BODY;
    ex->close_after = true;
    if (ex->rs == RS_NONE)
        http_respond_problem(ex, status, "%s", detail);
    ex->rq = RQ_ABANDONED;
    if (handler_had_body)
        ex->aborting = true;
}

/* ------------------------------------------------------------------ */
/* socket events                                                       */

static void set_reading(struct http_conn *c, bool on)
{
    if (on == c->reading || c->dead)
        return;
    if (on)
        event_add(c->rev, NULL);
    else
        event_del(c->rev);
    c->reading = on;
}

static void set_timer(struct http_conn *c, enum tmode mode, uint64_t ms, bool rearm)
{
    if (mode == c->tmode && !rearm)
        return;
    c->tmode = mode;
    if (mode == T_NONE) {
        event_del(c->timer);
        return;
    }
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    event_add(c->timer, &tv);
}

static void linger_rearm(struct http_conn *c)
{
    int64_t left = c->linger_end - dr_mono_ms();
    if (left < 0)
        left = 0;
    set_timer(c, T_LINGER, (uint64_t)DR_MIN(left, LINGER_IDLE_MS), true);
}

static size_t in_cap(const struct http_conn *c)
{
    return c->in_big ? IN_HIGH : IN_BASE;
}

static void in_big_release(struct http_conn *c)
{
    if (!c->in_big)
        return;
    c->in_big = false;
    http_thread_input_release(c->t, IN_HIGH - IN_BASE);
}

static void tls_handshake_step(struct http_conn *c);
static void read_tls(struct http_conn *c, size_t room);

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct http_conn *c = arg;
    if (c->ssl != NULL && !c->lingering) {
        if (c->tls_handshaking) {
            tls_handshake_step(c);
            return;
        }
    }
    size_t have = evbuffer_get_length(c->in);
    size_t cap = in_cap(c);
    size_t room = have < cap ? cap - have : 0;
    if (c->lingering)
        room = IN_HIGH;
    if (room == 0) {
        set_reading(c, false);
        return;
    }
    if (c->ssl != NULL && !c->lingering) {
        read_tls(c, room);
        return;
    }
    /* At the base bound a read takes what fits (at most IN_BASE): asking
     * first how much is there (FIONREAD) cost a syscall per small request.
     * A body streaming under the high bound reads what is there. */
    int avail = 0;
    size_t want = READ_MIN;
    if (room <= IN_BASE)
        want = room;
    else if (ioctl(fd, FIONREAD, &avail) == 0 && avail > (int)want)
        want = (size_t)avail;
    if (want > room)
        want = room;
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(c->in, (ev_ssize_t)want, v, 2);
    if (nv <= 0) {
        conn_kill(c);
        conn_progress(c);
        return;
    }
    /* read no more than want, even if the reservation is larger */
    size_t left = want;
    for (int i = 0; i < nv; i++) {
        if (v[i].iov_len > left)
            v[i].iov_len = left;
        left -= v[i].iov_len;
    }
    ssize_t n;
    do {
        n = readv(fd, (struct iovec *)v, nv);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        evbuffer_commit_space(c->in, v, 0);
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        conn_kill(c); /* ECONNRESET and friends: the client is gone */
        conn_progress(c);
        return;
    }
    if (n == 0) {
        evbuffer_commit_space(c->in, v, 0);
        c->peer_eof = true;
        set_reading(c, false);
        conn_progress(c);
        return;
    }
    size_t got = (size_t)n;
    int used = 0;
    for (int i = 0; i < nv && got > 0; i++, used++) {
        if (v[i].iov_len > got)
            v[i].iov_len = got;
        got -= v[i].iov_len;
    }
    evbuffer_commit_space(c->in, v, used);
    metrics_add(&metrics_of(c)->http_bytes_received, (uint64_t)n);
    if (c->lingering) {
        evbuffer_drain(c->in, evbuffer_get_length(c->in));
        linger_rearm(c);
        return;
    }
    if (c->tmode == T_BODY)
        set_timer(c, T_BODY, cfg_of(c)->limits.body_timeout, true);
    conn_progress(c);
}

/* Decrypt up to room bytes into the input buffer: record by record
 * until the room or what the socket has runs out. */
static void read_tls(struct http_conn *c, size_t room)
{
    struct evbuffer_iovec v[2];
    int nv = evbuffer_reserve_space(c->in, (ev_ssize_t)room, v, 2);
    if (nv <= 0) {
        conn_kill(c);
        conn_progress(c);
        return;
    }
    size_t total = 0, left = room;
    enum tls_io r = TLS_IO_OK;
    int used = 0;
    for (int i = 0; i < nv && left > 0 && r == TLS_IO_OK; i++) {
        size_t cap = DR_MIN(v[i].iov_len, left), filled = 0;
        while (filled < cap) {
            size_t got = 0;
            r = tls_read(c->ssl, (char *)v[i].iov_base + filled, cap - filled, &got);
            if (r != TLS_IO_OK)
                break;
            filled += got;
        }
        v[i].iov_len = filled;
        if (filled > 0)
            used = i + 1;
        total += filled;
        left -= filled;
    }
    evbuffer_commit_space(c->in, v, used);
    if (total > 0) {
        metrics_add(&metrics_of(c)->http_bytes_received, (uint64_t)total);
        if (c->tmode == T_BODY)
            set_timer(c, T_BODY, cfg_of(c)->limits.body_timeout, true);
    }
    if (r == TLS_IO_EOF) {
        c->peer_eof = true;
        set_reading(c, false);
    } else if (r == TLS_IO_ERROR || r == TLS_IO_WANT_WRITE) {
        char why[160];
        log_debug("http: %s: TLS read: %s", c->remote, tls_last_error(why, sizeof why));
        conn_kill(c);
    }
    conn_progress(c); /* also sends what the read made OpenSSL write */
}

/* The handshake, one step per readable socket (conn_progress sends what
 * it wrote). Done: requests may come (maybe already inside OpenSSL) and
 * queued output (a refusal) may go. */
static void tls_handshake_step(struct http_conn *c)
{
    enum tls_io r = tls_handshake(c->ssl);
    if (r == TLS_IO_OK) {
        char d[96];
        c->tls_handshaking = false;
        log_debug("http: %s: %s", c->remote, tls_describe(c->ssl, d, sizeof d));
        if (tls_pending(c->ssl))
            event_active(c->rev, EV_READ, 0);
    } else if (r == TLS_IO_ERROR && tls_plain_http()) {
        /* plain HTTP on an HTTPS port: say so in plain HTTP, as nginx does */
        log_debug("http: %s: plain HTTP on the TLS port", c->remote);
        tls_conn_free(c->ssl);
        c->ssl = NULL;
        c->tls_handshaking = false;
        evbuffer_drain(c->tls_out, evbuffer_get_length(c->tls_out));
        server_error(c, 400, "this port speaks HTTPS: use an https:// URL");
    } else if (r != TLS_IO_WANT_READ) {
        char why[160];
        log_debug("http: %s: TLS handshake failed: %s", c->remote, tls_last_error(why, sizeof why));
        conn_kill(c);
    }
    conn_progress(c);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    struct http_conn *c = arg;
    if (what & EV_TIMEOUT) {
        log_debug("http: %s: write timeout, closing", c->remote);
        conn_kill(c);
    }
    conn_progress(c); /* writes whatever the socket takes */
}

static void on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    conn_progress(arg);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_conn *c = arg;
    enum tmode mode = c->tmode;
    c->tmode = T_NONE;
    struct http_exchange *ex = c->ex;
    switch (mode) {
    case T_IDLE:
        conn_kill(c);
        break;
    case T_HEADER:
        server_error(c, 408, "the request head did not arrive in time");
        break;
    case T_BODY:
        log_debug("http: %s: body idle timeout", c->remote);
        if (ex == NULL) {
            conn_kill(c);
        } else {
            fail_body(c, 408, "no request body bytes within limits.body_timeout");
        }
        break;
    case T_LINGER:
        conn_kill(c);
        break;
    case T_NONE:
        break;
    }
    conn_progress(c);
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                           */

static void conn_unlink(struct http_conn *c)
{
    struct http_conn **head = http_thread_conn_list(c->t);
    if (c->prev)
        c->prev->next = c->next;
    else if (*head == c)
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
}

/* The socket is gone or must go now: close it, stop all I/O. The exchange
 * (if any) finishes with on_abort once nothing holds it. */
static void conn_kill(struct http_conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    event_del(c->rev);
    event_del(c->wev);
    event_del(c->timer);
    c->reading = c->writing = false;
    c->tmode = T_NONE;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    if (c->pump_fd >= 0)
        close(c->pump_fd);
    c->pump_fd = -1;
    c->pump_left = 0;
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    evbuffer_drain(c->out, evbuffer_get_length(c->out));
    if (c->tls_out != NULL)
        evbuffer_drain(c->tls_out, evbuffer_get_length(c->tls_out));
    if (c->ex != NULL && c->ex->rq != RQ_HEAD)
        c->ex->aborting = true;
}

static void conn_free(struct http_conn *c)
{
    conn_kill(c);
    conn_unlink(c);
    c->freed = true;
    event_free(c->rev);
    event_free(c->wev);
    event_free(c->kick);
    event_free(c->timer);
    in_big_release(c);
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    tls_conn_free(c->ssl); /* before tls_out: its write BIO points there */
    if (c->tls_out != NULL)
        evbuffer_free(c->tls_out);
    metrics_gauge_add(&http_thread_gauges(c->t)->http_connections_open, -1);
    http_thread_conn_gone(c->t, c->refused);
    free(c);
}

static void start_linger(struct http_conn *c)
{
    c->lingering = true;
    if (c->peer_eof) {
        conn_kill(c);
        return;
    }
    if (c->ssl != NULL && !c->tls_handshaking) {
        tls_close_notify(c->ssl); /* best effort: one try to send it */
        (void)evbuffer_write_atmost(c->tls_out, c->fd, -1);
    }
    shutdown(c->fd, SHUT_WR);
    evbuffer_drain(c->in, evbuffer_get_length(c->in));
    c->linger_end = dr_mono_ms() + LINGER_TOTAL_MS;
    set_reading(c, true);
    linger_rearm(c);
}

/* Finish the current exchange: exactly one of on_done/on_abort, metrics,
 * access log, then the next request or the close. */
static void finish_exchange(struct http_conn *c)
{
    struct http_exchange *ex = c->ex;
    bool sent = ex->rs == RS_COMPLETE && !ex->aborting && !c->dead;
    if (ex->ops != NULL && !ex->cb_called) {
        ex->cb_called = true;
        if (sent) {
            if (ex->ops->on_done)
                ex->ops->on_done(ex);
        } else if (ex->ops->on_abort) {
            ex->ops->on_abort(ex);
        }
    }
    struct dr_metrics *m = metrics_of(c);
    uint64_t us = now_us() - ex->t0_us;
    int status = ex->rs == RS_NONE ? 0 : ex->status;
    metrics_add(&m->http_requests[ex->rclass][metrics_status_slot(status)], 1);
    metrics_observe(&m->http_duration[ex->rclass], us);
    if (ex->req.via_proxy)
        log_debug("http: %s via %s \"%s %.200s\" %d%s %.1fms", ex->req.client_addr, c->remote,
                  ex->req.method_name, ex->req.target, status, sent ? "" : " (aborted)",
                  (double)us / 1000.0);
    else
        log_debug("http: %s \"%s %.200s\" %d%s %.1fms", c->remote, ex->req.method_name,
                  ex->req.target, status, sent ? "" : " (aborted)", (double)us / 1000.0);
    bool close = ex->close_after || ex->rq == RQ_ABANDONED || c->draining ||
                 http_thread_draining(c->t) || c->p.upgrade;
    ex_free(ex);
    c->ex = NULL;
    in_big_release(c);
    c->nreq++;
    c->head_done = false;
    c->head_bytes = 0;
    if (c->dead)
        return;
    if (close)
        c->closing = true;
    else if (HTTP_PARSER_ERRNO(&c->p) == HPE_PAUSED)
        http_parser_pause(&c->p, 0);
}

/* Hand the head to the application: dispatch, then on_head. */
static void start_exchange(struct http_conn *c)
{
    struct http_exchange *ex = c->ex;
    if (c->p.http_major != 1) {
        server_error(c, 505, "only HTTP/1.0 and HTTP/1.1 are spoken here");
        return;
    }
    build_request(c, ex);
    ex->rq = RQ_WAIT;
    ex->t0_us = now_us();
    ex->ops = http_thread_dispatch_fn(c->t)(ex);
    ex->rclass = metrics_route_class(ex->ops ? ex->ops->route_class : NULL);
    if (ex->ops == NULL) {
        static const struct http_route_ops none = {.route_class = "other"};
        ex->ops = &none;
    }
    if (ex->ops->on_head)
        ex->ops->on_head(ex);
    else
        http_respond_problem(ex, 500, "route has no handler");
}

static bool may_parse(const struct http_conn *c)
{
    if (c->dead || c->closing || c->lingering)
        return false;
    const struct http_exchange *ex = c->ex;
    if (ex == NULL)
        return true;
    switch (ex->rq) {
    case RQ_HEAD:
        return !c->head_done;
    case RQ_BODY:
        return !ex->paused && !ex->stopped && !ex->msg_complete;
    case RQ_DISCARD:
        return !ex->msg_complete;
    default:
        return false;
    }
}

static void parse_error(struct http_conn *c, enum http_errno err)
{
    struct http_exchange *ex = c->ex;
    if (ex == NULL || ex->rq == RQ_HEAD) {
        int status = c->err_status ? c->err_status : err == HPE_HEADER_OVERFLOW ? 431 : 400;
        server_error(c, status,
                     status == 431 ? "request head too large (limits.max_header_size / "
                                     "limits.max_headers)"
                                   : http_errno_description(err));
        return;
    }
    fail_body(c, 400, c->err_detail ? c->err_detail : http_errno_description(err));
}

/* Run the parser over buffered input while the state allows it. */
static void parse_input(struct http_conn *c)
{
    const struct dr_config *cfg = cfg_of(c);
    while (may_parse(c) && evbuffer_get_length(c->in) > 0) {
        bool in_head = c->ex == NULL || c->ex->rq == RQ_HEAD;
        struct evbuffer_iovec v;
        if (evbuffer_peek(c->in, -1, NULL, &v, 1) < 1)
            break;
        size_t len = v.iov_len;
        if (in_head) {
            uint64_t max = cfg->limits.max_header_size;
            if (c->head_bytes >= max) {
                server_error(c, 431, "request head too large (limits.max_header_size)");
                return;
            }
            if (len > max - c->head_bytes + 1)
                len = (size_t)(max - c->head_bytes + 1);
        }
        if (HTTP_PARSER_ERRNO(&c->p) == HPE_PAUSED)
            http_parser_pause(&c->p, 0);
        size_t n = http_parser_execute(&c->p, &parser_settings, v.iov_base, len);
        enum http_errno err = HTTP_PARSER_ERRNO(&c->p);
        if (in_head)
            c->head_bytes += n;
        evbuffer_drain(c->in, n);
        if (err != HPE_OK && err != HPE_PAUSED) {
            parse_error(c, err);
            return;
        }
        if (in_head && !c->head_done && c->head_bytes > cfg->limits.max_header_size) {
            server_error(c, 431, "request head too large (limits.max_header_size)");
            return;
        }
        if (c->head_done && c->ex->rq == RQ_HEAD)
            return; /* dispatch first */
        if (err == HPE_OK && n < len)
            break; /* cannot happen; avoid spinning */
    }
}

/* A TLS file response: refill the output buffer from the file while it
 * holds less than PUMP_CHUNK. 0, or -1 after killing the connection. */
static int pump_refill(struct http_conn *c)
{
    while (c->pump_left > 0 && evbuffer_get_length(c->out) < PUMP_CHUNK) {
        size_t want = (size_t)DR_MIN(c->pump_left, (uint64_t)PUMP_CHUNK);
        struct evbuffer_iovec v;
        if (evbuffer_reserve_space(c->out, (ev_ssize_t)want, &v, 1) != 1) {
            conn_kill(c);
            return -1;
        }
        ssize_t n;
        do {
            n = pread(c->pump_fd, v.iov_base, DR_MIN(want, v.iov_len), (off_t)c->pump_off);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            evbuffer_commit_space(c->out, &v, 0);
            if (n == 0)
                log_warn("http: %s: response file ended early; closing", c->remote);
            else
                log_warn("http: %s: reading the response file: %s", c->remote, strerror(errno));
            conn_kill(c);
            return -1;
        }
        v.iov_len = (size_t)n;
        evbuffer_commit_space(c->out, &v, 1);
        c->pump_off += (uint64_t)n;
        c->pump_left -= (uint64_t)n;
    }
    if (c->pump_left == 0 && c->pump_fd >= 0) {
        close(c->pump_fd);
        c->pump_fd = -1;
    }
    return 0;
}

/* Send buf (plain output, or TLS records) as far as the socket takes it:
 * 0, or -1 after killing the connection. */
static int send_buffer(struct http_conn *c, struct evbuffer *buf)
{
    if (evbuffer_get_length(buf) == 0)
        return 0;
    errno = 0;
    int n = evbuffer_write_atmost(buf, c->fd, -1);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        log_debug("http: %s: write: %s", c->remote, strerror(errno));
        conn_kill(c);
        return -1;
    }
    if (n == 0 && errno == 0) {
        /* sendfile hit the end of a file shorter than announced */
        log_warn("http: %s: response file ended early; closing", c->remote);
        conn_kill(c);
        return -1;
    }
    return 0;
}

/* Send the records waiting, then encrypt the next TLS_BATCH of output,
 * and again, until the socket is full or nothing is left. */
static void flush_tls(struct http_conn *c)
{
    for (;;) {
        if (send_buffer(c, c->tls_out) < 0 || evbuffer_get_length(c->tls_out) > 0)
            return; /* dead, or the socket is full: the write event resumes */
        if (c->tls_handshaking)
            return;
        size_t budget = TLS_BATCH;
        while (budget > 0) {
            if (pump_refill(c) < 0)
                return;
            struct evbuffer_iovec v;
            if (evbuffer_peek(c->out, -1, NULL, &v, 1) < 1 || v.iov_len == 0)
                break;
            size_t put = 0;
            size_t len = DR_MIN(DR_MIN(v.iov_len, (size_t)TLS_WRITE_MAX), budget);
            if (tls_write(c->ssl, v.iov_base, len, &put) != TLS_IO_OK) {
                char why[160];
                log_debug("http: %s: TLS write: %s", c->remote, tls_last_error(why, sizeof why));
                conn_kill(c);
                return;
            }
            evbuffer_drain(c->out, put);
            metrics_add(&metrics_of(c)->http_bytes_sent, (uint64_t)put);
            budget -= put;
        }
        if (evbuffer_get_length(c->tls_out) == 0)
            return; /* nothing more to send */
    }
}

/* Cork or uncork the socket (TCP_CORK; set_cork(c, false) sends what it
 * held back). A file response of CORK_MIN bytes or more goes out corked,
 * as nginx's tcp_nopush does, until its last byte is handed to the socket:
 * the connection has TCP_NODELAY (http_server.c), and with a pacing
 * congestion control (BBR) the kernel then sends the partly filled
 * segment at the tail of the queue whenever the pacing timer fires: a
 * 1 GiB GET went out in segments of ~44 KB where nginx's are 64 KB (the
 * loopback MSS), and at 0.88x its rate (issue 15). A socket that is not
 * TCP (a Unix one) answers ENOPROTOOPT once and is not asked again. */
static void set_cork(struct http_conn *c, bool on)
{
    if (c->no_cork || c->corked == on)
        return;
    int v = on ? 1 : 0;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &v, sizeof v) != 0) {
        c->no_cork = true;
        c->corked = false;
        return;
    }
    c->corked = on;
}

/* Plain output. A response head with a file behind it (http_respond_file)
 * goes out by send(MSG_MORE) and the file by sendfile in the same pass:
 * the kernel holds the head back for the file's first bytes (one segment,
 * as nginx's tcp_nopush; TCP_NODELAY would send it alone), and no loop
 * turn is spent between the two (libevent writes either memory or a file
 * per call). */
static void flush_plain(struct http_conn *c)
{
    size_t before = evbuffer_get_length(c->out);
    size_t lead = c->file_at > c->out_sent ? (size_t)(c->file_at - c->out_sent) : 0;
    if (lead > 0 && lead < before) {
        unsigned char *p = evbuffer_pullup(c->out, (ev_ssize_t)lead);
        ssize_t n = p ? send(c->fd, p, lead, MSG_MORE | MSG_NOSIGNAL) : -1;
        if (n < 0 && p && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            log_debug("http: %s: write: %s", c->remote, strerror(errno));
            conn_kill(c);
            return;
        }
        if (n > 0) {
            evbuffer_drain(c->out, (size_t)n);
            c->out_sent += (uint64_t)n;
        }
        if (n != (ssize_t)lead && p) { /* the socket is full: the write event resumes */
            metrics_add(&metrics_of(c)->http_bytes_sent, before - evbuffer_get_length(c->out));
            return;
        }
    }
    size_t mid = evbuffer_get_length(c->out);
    if (send_buffer(c, c->out) == 0 && before > evbuffer_get_length(c->out)) {
        c->out_sent += mid - evbuffer_get_length(c->out);
        metrics_add(&metrics_of(c)->http_bytes_sent, before - evbuffer_get_length(c->out));
    }
    if (c->corked && !c->dead && c->out_sent >= c->file_end)
        set_cork(c, false); /* the file's last bytes are queued: send them now */
}

static void flush_output(struct http_conn *c)
{
    if (c->dead)
        return;
    if (c->ssl != NULL)
        flush_tls(c);
    else
        flush_plain(c);
    if (c->dead)
        return;
    size_t after = out_pending(c);
    bool wait = after > 0;
    if (wait && !c->writing) {
        uint64_t ms = cfg_of(c)->limits.body_timeout;
        struct timeval tv = {.tv_sec = (time_t)(ms / 1000),
                             .tv_usec = (suseconds_t)(ms % 1000) * 1000};
        event_add(c->wev, &tv);
        c->writing = true;
    } else if (!wait && c->writing) {
        event_del(c->wev);
        c->writing = false;
    }
    struct http_exchange *ex = c->ex;
    if (ex && ex->stream_full && ex->rs == RS_STREAM && after <= STREAM_HIGH) {
        ex->stream_full = false;
        if (ex->drain_fn)
            ex->drain_fn(ex, ex->drain_arg);
    }
}

/* One pass over the state machine; sets c->again when something changed,
 * so conn_progress() runs another (up to STEP_BUDGET). */
static void step(struct http_conn *c)
{
    struct http_exchange *ex = c->ex;

    if (c->dead) {
        if (ex != NULL) {
            if (ex->holds > 0)
                return; /* wait for the deferred work */
            if (ex->rq != RQ_HEAD)
                finish_exchange(c);
            else {
                ex_free(ex);
                c->ex = NULL;
            }
        }
        return;
    }
    if (c->lingering)
        return;

    if (ex != NULL && c->head_done && ex->rq == RQ_HEAD) {
        start_exchange(c);
        c->again = true;
        return;
    }
    if (ex != NULL && ex->msg_complete && !ex->end_called &&
        (ex->rq == RQ_BODY || ex->rq == RQ_DISCARD)) {
        ex->end_called = true;
        bool call = ex->rq == RQ_BODY && !ex->stopped;
        ex->rq = RQ_DONE;
        if (call && ex->ops->on_end)
            ex->ops->on_end(ex);
        c->again = true;
        return;
    }
    if (ex != NULL && ex->stopped && ex->rs == RS_NONE && ex->holds == 0) {
        ex->close_after = true;
        http_respond_problem(ex, 500, "the upload handler stopped reading the body");
    }

    flush_output(c);
    if (c->dead) {
        c->again = true;
        return;
    }

    if (ex != NULL && ex->holds == 0 && ex->rs == RS_COMPLETE && ex->c->writing == false &&
        out_pending(c) == 0 && (ex->rq == RQ_DONE || ex->rq == RQ_ABANDONED)) {
        finish_exchange(c);
        c->again = true;
        return;
    }

    if (c->closing) { /* set only between exchanges (c->ex == NULL) */
        if (c->ex == NULL && out_pending(c) == 0 && !c->writing)
            start_linger(c);
        return;
    }

    /* Only a keep-alive connection that served a request is idle: one
     * accepted just before the drain (in its TLS handshake, or its first
     * request still in flight) gets that request answered, with close. */
    if (ex == NULL && c->nreq > 0 && (c->draining || http_thread_draining(c->t)) &&
        evbuffer_get_length(c->in) == 0) {
        conn_kill(c); /* idle keep-alive during a drain */
        return;
    }

    size_t before = evbuffer_get_length(c->in);
    bool had_ex = c->ex != NULL, had_head = c->head_done;
    parse_input(c);
    if (evbuffer_get_length(c->in) != before || had_ex != (c->ex != NULL) ||
        had_head != c->head_done || c->closing || c->dead)
        c->again = true;

    /* the client closed its side */
    ex = c->ex;
    if (c->peer_eof && evbuffer_get_length(c->in) == 0 && !c->closing && !c->dead) {
        if (ex == NULL || ex->rq == RQ_HEAD) {
            conn_kill(c);
            c->again = true;
        } else if ((ex->rq == RQ_BODY && !ex->msg_complete) ||
                   (ex->rq == RQ_DISCARD && !ex->msg_complete)) {
            if (ex->rs == RS_COMPLETE) {
                ex->rq = RQ_ABANDONED;
                ex->close_after = true;
            } else {
                log_debug("http: %s: client closed mid-body", c->remote);
                conn_kill(c);
            }
            c->again = true;
        } else if (ex->rs == RS_STREAM) {
            conn_kill(c);
            c->again = true;
        } else {
            ex->close_after = true; /* answer, then close */
        }
    }
}

static void update_io(struct http_conn *c)
{
    if (c->dead || c->lingering)
        return;
    set_reading(c, !c->peer_eof && evbuffer_get_length(c->in) < in_cap(c));
    /* plaintext OpenSSL holds wakes no socket event: read it now */
    if (c->ssl != NULL && c->reading && !c->tls_handshaking && tls_pending(c->ssl))
        event_active(c->rev, EV_READ, 0);
    const struct dr_config *cfg = cfg_of(c);
    struct http_exchange *ex = c->ex;
    if (c->closing) {
        set_timer(c, T_NONE, 0, false);
    } else if (ex == NULL) {
        if (evbuffer_get_length(c->in) == 0) {
            /* A request answered within one read never leaves T_IDLE, so
             * a new request must restart the idle clock explicitly. */
            bool fresh = c->idle_nreq != c->nreq;
            c->idle_nreq = c->nreq;
            set_timer(c, T_IDLE,
                      c->nreq == 0 ? cfg->limits.header_timeout : cfg->limits.keepalive_timeout,
                      fresh);
        } else
            set_timer(c, T_HEADER, cfg->limits.header_timeout, false);
    } else if (ex->rq == RQ_HEAD) {
        set_timer(c, T_HEADER, cfg->limits.header_timeout, false);
    } else if ((ex->rq == RQ_BODY && !ex->paused && !ex->stopped && !ex->msg_complete) ||
               (ex->rq == RQ_DISCARD && !ex->msg_complete)) {
        set_timer(c, T_BODY, cfg->limits.body_timeout, false);
    } else {
        set_timer(c, T_NONE, 0, false);
    }
}

/* Run the state machine for at most STEP_BUDGET steps (a few pipelined
 * requests). A connection with work left yields: its kick event goes into
 * the loop's timer queue with a zero timeout, so it runs again on the next
 * loop turn, after the other connections and the loop's timers (heartbeat
 * tick, signal poll) had theirs. Nothing else would wake it: its input may
 * all be buffered already. */
static void conn_progress(struct http_conn *c)
{
    if (c->in_progress) {
        c->again = true;
        return;
    }
    c->in_progress = true;
    int steps = 0;
    do {
        c->again = false;
        step(c);
    } while (c->again && ++steps < STEP_BUDGET);
    c->in_progress = false;
    if (c->dead && c->ex == NULL) {
        conn_free(c);
        return;
    }
    update_io(c);
    if (c->again) {
        static const struct timeval next_turn = {0, 0};
        event_add(c->kick, &next_turn);
    }
}

/* ------------------------------------------------------------------ */
/* public: connection                                                  */

void http_conn_start(struct http_thread *t, int fd, const char *remote, bool refuse)
{
    struct http_conn *c = xcalloc(1, sizeof *c);
    struct event_base *base = http_thread_base(t);
    c->t = t;
    c->fd = fd;
    c->refused = refuse;
    snprintf(c->remote, sizeof c->remote, "%s", remote ? remote : "-");
    if (dr_addr_parse_peer(c->remote, &c->peer) == 0) {
        c->peer_trusted = fwd_trusted(http_thread_trust(t), &c->peer);
        dr_addr_format(&c->peer, c->peer_host, sizeof c->peer_host);
    } else {
        snprintf(c->peer_host, sizeof c->peer_host, "%.*s", (int)sizeof c->peer_host - 1,
                 c->remote);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0 && !(fl & O_NONBLOCK))
        fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    c->pump_fd = -1;
    struct tls_ctx *tls = http_thread_tls(t);
    if (tls != NULL) {
        c->tls_out = evbuffer_new();
        if (c->tls_out == NULL) {
            log_error("http: out of libevent resources");
            abort();
        }
        c->ssl = tls_conn_new(tls, fd, c->tls_out);
        c->tls_handshaking = true;
    }
    c->in = evbuffer_new();
    c->out = evbuffer_new();
    if (c->out && c->ssl == NULL) /* lets evbuffer_add_file() use sendfile(2) */
        evbuffer_set_flags(c->out, EVBUFFER_FLAG_DRAINS_TO_FD);
    c->rev = event_new(base, fd, EV_READ | EV_PERSIST, on_read, c);
    c->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, on_write, c);
    c->kick = event_new(base, -1, 0, on_kick, c);
    c->timer = event_new(base, -1, 0, on_timer, c);
    if (!c->in || !c->out || !c->rev || !c->wev || !c->kick || !c->timer) {
        log_error("http: out of libevent resources");
        abort();
    }
    http_parser_init(&c->p, HTTP_REQUEST);
    c->p.data = c;
    struct http_conn **head = http_thread_conn_list(t);
    c->next = *head;
    if (*head)
        (*head)->prev = c;
    *head = c;
    metrics_gauge_add(&http_thread_gauges(t)->http_connections_open, 1);
    if (refuse) {
        metrics_add(&http_thread_metrics(t)->http_connections_refused, 1);
        server_error(c, 503, "too many connections (limits.max_connections)");
    }
    conn_progress(c); /* may free c */
}

void http_conn_drain(struct http_conn *c)
{
    c->draining = true;
    if (c->ex != NULL)
        c->ex->close_after = c->ex->close_after || c->ex->rs == RS_NONE;
    conn_touch(c);
}

void http_conn_abort(struct http_conn *c)
{
    conn_kill(c);
    conn_progress(c);
}

struct http_conn *http_conn_next(const struct http_conn *c)
{
    return c->next;
}

/* ------------------------------------------------------------------ */
/* public: exchange                                                    */

const struct http_request *http_req(const struct http_exchange *ex)
{
    return &ex->req;
}

const char *http_header(const struct http_exchange *ex, const char *name)
{
    return hdr_value(ex, name);
}

char *http_absolute_url(const struct http_exchange *ex, const char *path)
{
    if (ex->req.host == NULL)
        return xstrdup(path);
    return xasprintf("%s://%s%s", ex->req.scheme, ex->req.host, path);
}

const char *http_query_param(struct http_exchange *ex, const char *name)
{
    const char *q = ex->query;
    size_t nlen = strlen(name);
    while (q != NULL && *q != '\0') {
        const char *amp = strchr(q, '&');
        size_t seg = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', seg);
        size_t klen = eq ? (size_t)(eq - q) : seg;
        char *key = pct_decode(q, klen, true);
        bool match = key != NULL && strlen(key) == nlen && memcmp(key, name, nlen) == 0;
        free(key);
        if (match) {
            char *val = eq ? pct_decode(eq + 1, seg - klen - 1, true) : xstrdup("");
            if (val == NULL)
                return NULL;
            struct qparam *qp = xcalloc(1, sizeof *qp);
            qp->value = val;
            qp->next = ex->qparams;
            ex->qparams = qp;
            return val;
        }
        q = amp ? amp + 1 : NULL;
    }
    return NULL;
}

void http_set_data(struct http_exchange *ex, void *data)
{
    ex->data = data;
}

void *http_get_data(const struct http_exchange *ex)
{
    return ex->data;
}

void http_set_user(struct http_exchange *ex, const char *user, bool admin)
{
    free(ex->user);
    ex->user = xstrdup(user);
    ex->admin = admin;
}

const char *http_user(const struct http_exchange *ex)
{
    return ex->user;
}

bool http_user_admin(const struct http_exchange *ex)
{
    return ex->admin;
}

struct http_thread *http_ex_thread(const struct http_exchange *ex)
{
    return ex->c->t;
}

const struct dr_config *http_cfg(const struct http_exchange *ex)
{
    return cfg_of(ex->c);
}

struct dr_metrics *http_ex_metrics(const struct http_exchange *ex)
{
    return metrics_of(ex->c);
}

struct dr_proc_gauges *http_ex_gauges(const struct http_exchange *ex)
{
    return http_thread_gauges(ex->c->t);
}

void http_accept_body(struct http_exchange *ex)
{
    if (ex->rq != RQ_WAIT || ex->rs != RS_NONE || ex->aborting)
        return;
    ex->rq = RQ_BODY;
    ex->accepted = true;
    struct http_conn *c = ex->c;
    if (!c->in_big && !body_empty(ex) && http_thread_input_reserve(c->t, IN_HIGH - IN_BASE))
        c->in_big = true;
    if (ex->req.expect_continue && !ex->sent_100 && !body_empty(ex)) {
        ex->sent_100 = true;
        out_add(ex->c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }
    conn_touch(ex->c);
}

void http_pause_body(struct http_exchange *ex)
{
    ex->paused = true;
}

void http_resume_body(struct http_exchange *ex)
{
    if (!ex->paused)
        return;
    ex->paused = false;
    conn_touch(ex->c);
}

bool http_ex_closed(const struct http_exchange *ex)
{
    return ex->c->dead || ex->aborting;
}

void http_ex_hold(struct http_exchange *ex)
{
    ex->holds++;
}

void http_ex_release(struct http_exchange *ex)
{
    if (ex->holds > 0)
        ex->holds--;
    if (ex->holds == 0) {
        struct http_conn *c = ex->c;
        if (c->in_progress)
            c->again = true;
        else
            conn_progress(c);
    }
}

/* store_s3.c - the S3-compatible object store backend over libcurl.
 *
 * What: struct dr_store_ops for AWS S3, MinIO, Cloudflare R2, s3rver and
 * anything else that speaks the S3 REST API with Signature V4. Requests are
 * signed by libcurl itself (CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3",
 * access key and secret as user name and password); dripd never computes a
 * signature. Bodies read from files are sent with
 * "x-amz-content-sha256: UNSIGNED-PAYLOAD" (S3 allows it; over https the
 * transport protects the body), small in-memory bodies with their real
 * SHA-256. libcurl 7.88 signs every header we add but uses the query string
 * as given, so every query built here is already canonical: parameters
 * sorted, values URI-encoded the AWS way, "uploads=" with its '='.
 *
 * Threads: a handle belongs to one thread (store.h). It owns one curl multi
 * handle and up to storage.s3.parallel_parts easy handles, created on first
 * use and reused for every request (connections are kept alive in the multi
 * handle's pool, so single requests and parts share them). Every transfer,
 * single or not, runs through the multi handle on the calling thread; no
 * thread is ever started here. The only process-global state is
 * curl_global_init, run once. Metrics are taken by the dispatch (store.c),
 * not here.
 *
 * Objects: put() of a file smaller than part_size is one PUT streamed from
 * the file; a larger one is a multipart upload with up to parallel_parts
 * UploadPart requests in flight, each streamed from the file with pread
 * (memory per handle is bounded by curl's buffers, never the object). A
 * part that fails transiently is retried (S3_PART_TRIES attempts, short
 * backoff) before the whole put fails; any failure aborts the multipart
 * upload (AbortMultipartUpload, best effort) so no parts are left billed.
 * Nothing is visible under the key until the PUT or the
 * CompleteMultipartUpload succeeds: put is all or nothing.
 *
 * Why a multi handle and not one thread per part: the store stage already
 * runs one thread per handle, the client side of an upload costs almost no
 * CPU (pread + send; the service is the bottleneck), and a multi handle
 * gives the parts one shared connection pool and one place to cancel them
 * all, without threads to start, join and cancel per object. bench/s3.sh
 * measures both; they are within noise of each other (docs/S3.md).
 *
 * get() fetches ranges of part_size: the first also gives the size
 * (Content-Range) and ETag, the rest run like parts, up to parallel_parts
 * in flight (run_units), each written in place with pwrite and pinned to
 * the version with If-Match; a failed range is retried on its own. It
 * fsyncs dst_path, and on any failure removes it, so a partial object is
 * never left.
 * Never creates buckets, never follows redirects (a redirect means a wrong
 * region or endpoint: reported, not chased).
 *
 * Timeouts: every transfer has CURLOPT_CONNECTTIMEOUT_MS (connect_timeout),
 * a low-speed limit of 1 byte/s for idle_timeout (nothing moving) and
 * CURLOPT_TIMEOUT_MS (timeout) for the whole request.
 *
 * Errors (store.h convention): connection refused or reset, timeouts, 5xx,
 * 429, SlowDown and RequestTimeout are -EAGAIN; NoSuchBucket -ENXIO;
 * AccessDenied and other 403s -EACCES; InvalidAccessKeyId,
 * SignatureDoesNotMatch, expired tokens and clock skew -EPERM;
 * NoSuchKey/404 -ENOENT; other 4xx -EINVAL; local file errors their errno.
 * Each failure writes one line into err that names the S3 code, the bucket
 * or key and the config key to check.
 */
#include "dripd/store.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/redact.h"
#include "s3xml.h"
#include "dripd/util.h"

#define S3_MAX_PARALLEL 64          /* cap on storage.s3.parallel_parts */
#define S3_MIN_PART (5ull << 20)    /* S3's minimum part size (all but the last) */
#define S3_MAX_PARTS 10000          /* S3's maximum part count */
#define S3_BODY_MAX (16u << 20)     /* largest XML reply we buffer (a list page is < 1 MiB) */
#define S3_ERR_BODY_MAX (64u << 10) /* error bodies beyond this are cut (only the head matters) */
#define S3_PART_TRIES 3             /* attempts per part before the put fails */
#define S3_PART_BACKOFF_MS 250      /* first part retry delay, doubled each time */
#define S3_ETAG_MAX 128
#define S3_LIST_PAGE "1000"

static const char EMPTY_SHA256[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/* ---- process-global: curl init ---- */

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc;

static void curl_init_once(void)
{
    g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- one HTTP exchange ---- */

struct s3_store;

struct s3_xfer {
    struct s3_store *st;
    CURL *easy;
    struct curl_slist *headers;
    char *url;
    /* request body: a file range (pread) or memory */
    int in_fd;
    uint64_t in_off, in_len, in_pos;
    const char *in_mem;
    size_t in_mem_len;
    int read_errno;
    /* 2xx response body: a file, a caller buffer, or the body buffer */
    int out_fd;
    int write_errno;
    char *out_mem;
    size_t out_cap, out_len;
    uint64_t range_off; /* the Range asked starts here */
    bool range_seen;    /* the first body bytes were looked at */
    uint64_t out_skip;  /* bytes to drop first (a 200 where a 206 was asked) */
    bool out_full;      /* out_mem is full: stop the transfer, not an error */
    /* 2xx body written with pwrite at out_at_off (parallel get): a 206 of at
     * most out_at_len bytes, or (out_at_off 0 only) a 200 with everything */
    bool out_at, out_whole;
    uint64_t out_at_off, out_at_len, out_at_done;
    uint64_t total; /* object size from Content-Range ".../total", 0 if none */
    /* buffered body: XML results and error documents */
    char *body;
    size_t body_len, body_cap, body_max;
    bool body_cut;
    /* response */
    long status;
    char etag[S3_ETAG_MAX];
    CURLcode cc;
    char curl_err[CURL_ERROR_SIZE];
    /* multipart bookkeeping */
    int part;           /* 1-based part number, 0 if not a part */
    int64_t not_before; /* retry delay (mono ms) */
    uint64_t t0;        /* start (mono ns) */
};

struct s3_store {
    struct dr_store base; /* first: the store.h header */
    CURLM *multi;
    CURL *easy[S3_MAX_PARALLEL];
    int parallel;
    uint64_t part_size;
    char *origin;     /* endpoint without trailing '/', for messages */
    char *url_bucket; /* URL of the bucket root, ending in '/' */
    char *bucket;
    char *sigv4;     /* "aws:amz:<region>:s3" */
    char *token_hdr; /* "x-amz-security-token: ..." or NULL */
    long low_speed_time;
};

static struct s3_store *S3(struct dr_store *st)
{
    return (struct s3_store *)st;
}

/* AWS URI encoding: everything but A-Z a-z 0-9 - _ . ~ as %XX (and '/'
 * kept when keep_slash, for object keys). */
static char *uri_encode(const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = strlen(s);
    char *out = xmalloc(3 * n + 1), *o = out;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = '\0';
    return out;
}

static void sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
        abort(); /* libcrypto only fails here on out-of-memory */
    dr_hex(md, 32, out);
}

/* ---- curl callbacks ---- */

static size_t on_read(char *buf, size_t size, size_t nitems, void *ud)
{
    struct s3_xfer *x = ud;
    size_t want = size * nitems;
    if (x->in_mem != NULL) {
        size_t left = x->in_mem_len - (size_t)x->in_pos;
        size_t n = DR_MIN(want, left);
        memcpy(buf, x->in_mem + x->in_pos, n);
        x->in_pos += n;
        return n;
    }
    uint64_t left = x->in_len - x->in_pos;
    size_t n = (size_t)DR_MIN((uint64_t)want, left);
    if (n == 0)
        return 0;
    ssize_t got = dr_pread_full(x->in_fd, buf, n, x->in_off + x->in_pos);
    if (got < 0) {
        x->read_errno = (int)-got;
        return CURL_READFUNC_ABORT;
    }
    if ((size_t)got < n) { /* the file shrank under us */
        x->read_errno = EIO;
        return CURL_READFUNC_ABORT;
    }
    x->in_pos += n;
    return n;
}

/* curl rewinds the body to resend it (a redirect, a retried connection,
 * an early final answer to Expect: 100-continue). */
static int on_seek(void *ud, curl_off_t offset, int origin)
{
    struct s3_xfer *x = ud;
    uint64_t len = x->in_mem ? x->in_mem_len : x->in_len;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > len)
        return CURL_SEEKFUNC_CANTSEEK;
    x->in_pos = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static bool buf_append(struct s3_xfer *x, const char *data, size_t n)
{
    if (x->body_len + n > x->body_max) {
        n = x->body_max - x->body_len;
        x->body_cut = true;
    }
    if (x->body_len + n + 1 > x->body_cap) {
        size_t cap = x->body_cap ? x->body_cap : 4096;
        while (cap < x->body_len + n + 1)
            cap *= 2;
        x->body = xrealloc(x->body, cap);
        x->body_cap = cap;
    }
    memcpy(x->body + x->body_len, data, n);
    x->body_len += n;
    x->body[x->body_len] = '\0';
    return !x->body_cut;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
    struct s3_xfer *x = ud;
    size_t n = size * nmemb;
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    bool ok = code >= 200 && code < 300;
    if (ok && x->out_at) {
        if (code == 200 && x->out_at_off == 0)
            x->out_whole = true; /* Range ignored: this is the whole object */
        if (!x->out_whole && (code != 206 || x->out_at_done + n > x->out_at_len)) {
            x->write_errno = EPROTO; /* a range we did not ask for */
            return 0;
        }
        for (size_t off = 0; off < n;) {
            ssize_t w = pwrite(x->out_fd, data + off, n - off,
                               (off_t)(x->out_at_off + x->out_at_done + off));
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                x->write_errno = w < 0 ? errno : EIO;
                return 0;
            }
            off += (size_t)w;
        }
        x->out_at_done += n;
        return n;
    }
    if (ok && x->out_fd >= 0) {
        int rc = dr_write_all(x->out_fd, data, n);
        if (rc < 0) {
            x->write_errno = -rc;
            return 0;
        }
        return n;
    }
    if (ok && x->out_mem != NULL) {
        size_t off = 0;
        if (!x->range_seen) {
            /* A server that ignores Range answers 200 with the whole object. */
            x->range_seen = true;
            x->out_skip = code == 200 ? x->range_off : 0;
        }
        if (x->out_skip > 0) {
            off = (size_t)DR_MIN((uint64_t)n, x->out_skip);
            x->out_skip -= off;
        }
        size_t take = DR_MIN(n - off, x->out_cap - x->out_len);
        memcpy(x->out_mem + x->out_len, data + off, take);
        x->out_len += take;
        if (x->out_len == x->out_cap && off + take < n) {
            x->out_full = true; /* the server sent more than asked: we have enough */
            return 0;
        }
        return n;
    }
    if (!buf_append(x, data, n) && ok)
        return 0; /* a result document over S3_BODY_MAX: refuse it */
    return n;     /* an error body is cut, the rest drained */
}

static size_t on_header(char *data, size_t size, size_t nitems, void *ud)
{
    struct s3_xfer *x = ud;
    size_t n = size * nitems;
    if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        x->etag[0] = '\0'; /* a new response (after 100 Continue) */
        return n;
    }
    if (n > 14 && strncasecmp(data, "content-range:", 14) == 0) {
        /* "Content-Range: bytes 0-16777215/1073741824" */
        const char *slash = memchr(data, '/', n);
        if (slash != NULL) {
            char num[24];
            size_t len = DR_MIN((size_t)(data + n - slash - 1), sizeof num - 1);
            memcpy(num, slash + 1, len);
            num[len] = '\0';
            x->total = strtoull(num, NULL, 10);
        }
        return n;
    }
    if (n > 5 && strncasecmp(data, "etag:", 5) == 0) {
        const char *v = data + 5, *end = data + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        size_t len = DR_MIN((size_t)(end - v), sizeof x->etag - 1);
        memcpy(x->etag, v, len);
        x->etag[len] = '\0';
    }
    return n;
}

/* ---- building requests ---- */

static CURL *easy_get(struct s3_store *s, int i)
{
    if (s->easy[i] == NULL) {
        s->easy[i] = curl_easy_init();
        if (s->easy[i] == NULL)
            abort(); /* only on out-of-memory */
    }
    return s->easy[i];
}

static void xfer_init(struct s3_xfer *x, struct s3_store *s, int slot)
{
    memset(x, 0, sizeof *x);
    x->st = s;
    x->easy = easy_get(s, slot);
    x->in_fd = -1;
    x->out_fd = -1;
    x->body_max = S3_ERR_BODY_MAX;
}

static void xfer_clear(struct s3_xfer *x)
{
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    free(x->url);
    x->url = NULL;
    free(x->body);
    x->body = NULL;
    x->body_len = x->body_cap = 0;
    x->body_cut = false;
}

static void add_header(struct s3_xfer *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_header(struct s3_xfer *x, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *h = xvasprintf(fmt, ap);
    va_end(ap);
    struct curl_slist *l = curl_slist_append(x->headers, h);
    free(h);
    if (l == NULL)
        abort();
    x->headers = l;
}

/* method: "GET" "HEAD" "PUT" "POST" "DELETE". key NULL = the bucket.
 * query: canonical (sorted, encoded) or NULL. The body (if any) is set by
 * the caller in x before (in_fd/in_mem). Resets the easy handle, which
 * keeps its live connections. */
static void xfer_prepare(struct s3_xfer *x, const char *method, const char *key, const char *query)
{
    struct s3_store *s = x->st;
    CURL *e = x->easy;
    char *ekey = key ? uri_encode(key, true) : xstrdup("");
    curl_slist_free_all(x->headers);
    x->headers = NULL;
    free(x->url);
    x->url = xasprintf("%s%s%s%s", s->url_bucket, ekey, query ? "?" : "", query ? query : "");
    free(ekey);
    x->status = 0;
    x->etag[0] = '\0';
    x->cc = CURLE_OK;
    x->curl_err[0] = '\0';
    x->read_errno = x->write_errno = 0;
    x->in_pos = 0;
    x->out_len = 0;
    x->out_full = false;
    x->range_seen = false;
    x->out_skip = 0;
    x->out_whole = false;
    x->out_at_done = 0;
    x->total = 0;
    x->body_len = 0;
    x->body_cut = false;

    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, x->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->curl_err);
    curl_easy_setopt(e, CURLOPT_AWS_SIGV4, s->sigv4);
    curl_easy_setopt(e, CURLOPT_USERNAME, s->base.cfg->storage.s3.access_key_id);
    curl_easy_setopt(e, CURLOPT_PASSWORD, s->base.cfg->storage.s3.secret_access_key);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->base.cfg->storage.s3.connect_timeout);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->base.cfg->storage.s3.timeout);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, s->low_speed_time);
    long verify = s->base.cfg->storage.s3.verify_tls ? 1L : 0L;
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, verify);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L << 10);
    curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 256L << 10);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(e, CURLOPT_PRIVATE, x);

    bool file_body = x->in_fd >= 0;
    char hash[65];
    if (file_body) {
        snprintf(hash, sizeof hash, "UNSIGNED-PAYLOAD");
    } else if (x->in_mem != NULL) {
        sha256_hex(x->in_mem, x->in_mem_len, hash);
    } else {
        snprintf(hash, sizeof hash, "%s", EMPTY_SHA256);
    }
    add_header(x, "x-amz-content-sha256: %s", hash);
    if (s->token_hdr != NULL)
        add_header(x, "%s", s->token_hdr);

    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "PUT") == 0) {
        uint64_t len = file_body ? x->in_len : x->in_mem_len;
        curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, x);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->in_mem_len);
        curl_easy_setopt(e, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(e, CURLOPT_READDATA, x);
        curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(e, CURLOPT_SEEKDATA, x);
    } else if (strcmp(method, "DELETE") == 0) {
        curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
    }
}

static void xfer_finish_headers(struct s3_xfer *x)
{
    curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
}

/* ---- running transfers on the multi handle ---- */

/* After a transfer ended: its status. */
static void xfer_done(struct s3_xfer *x, CURLcode cc)
{
    x->cc = cc;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->status);
    if (cc == CURLE_WRITE_ERROR && x->out_full) {
        x->cc = CURLE_OK;
    }
}

/* Run one transfer to completion on the calling thread. */
static void xfer_run(struct s3_xfer *x)
{
    CURLM *m = x->st->multi;
    xfer_finish_headers(x);
    CURLMcode mc = curl_multi_add_handle(m, x->easy);
    if (mc != CURLM_OK) {
        snprintf(x->curl_err, sizeof x->curl_err, "%s", curl_multi_strerror(mc));
        x->cc = CURLE_FAILED_INIT;
        return;
    }
    int running = 1;
    CURLcode cc = CURLE_OK;
    bool done = false;
    while (!done) {
        mc = curl_multi_perform(m, &running);
        if (mc != CURLM_OK) {
            snprintf(x->curl_err, sizeof x->curl_err, "%s", curl_multi_strerror(mc));
            cc = CURLE_FAILED_INIT;
            break;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == x->easy) {
                cc = msg->data.result;
                done = true;
            }
        }
        if (!done && running > 0)
            curl_multi_poll(m, NULL, 0, 1000, NULL);
        else if (!done) {
            /* Nothing running and no result: never seen, but not a success. */
            snprintf(x->curl_err, sizeof x->curl_err, "transfer ended without a result");
            cc = CURLE_RECV_ERROR;
            done = true;
        }
    }
    curl_multi_remove_handle(m, x->easy);
    xfer_done(x, cc);
}

/* ---- error mapping ---- */

static bool transient_curl(CURLcode cc)
{
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_AGAIN:
    case CURLE_WEIRD_SERVER_REPLY:
        return true;
    default:
        return false;
    }
}

static bool code_is(const struct s3xml_error *e, const char *code)
{
    return strcmp(e->code, code) == 0;
}

/* Classify a finished transfer. 0 for 2xx. Otherwise -errno and one line
 * in err: "s3: <op> <key>: <what> (<hint>)". */
static int xfer_result(struct s3_xfer *x, const char *op, const char *key, char *err, size_t errlen)
{
    struct s3_store *s = x->st;
    const char *k = key ? key : "";
    const char *sp = key ? " " : "";
    if (x->cc != CURLE_OK) {
        if (x->cc == CURLE_WRITE_ERROR && x->write_errno) {
            dr_set_err(err, errlen, "s3: %s %s: writing the local file: %s", op, k,
                       strerror(x->write_errno));
            return -x->write_errno;
        }
        if ((x->cc == CURLE_ABORTED_BY_CALLBACK || x->cc == CURLE_READ_ERROR) && x->read_errno) {
            dr_set_err(err, errlen, "s3: %s %s: reading the local file: %s", op, k,
                       strerror(x->read_errno));
            return -x->read_errno;
        }
        const char *detail = x->curl_err[0] ? x->curl_err : curl_easy_strerror(x->cc);
        if (x->cc == CURLE_OPERATION_TIMEDOUT) {
            dr_set_err(err, errlen,
                       "s3: %s%s%s: timed out talking to %s: %s (storage.s3.connect_timeout, "
                       "idle_timeout, timeout; transient, will retry)",
                       op, sp, k, s->origin, detail);
            return -EAGAIN;
        }
        if (x->cc == CURLE_PEER_FAILED_VERIFICATION || x->cc == CURLE_SSL_CACERT_BADFILE ||
            x->cc == CURLE_SSL_CERTPROBLEM) {
            dr_set_err(err, errlen,
                       "s3: %s%s%s: TLS verification of %s failed: %s (fix the certificate, or set "
                       "storage.s3.verify_tls: false for a test endpoint)",
                       op, sp, k, s->origin, detail);
            return -EPROTO;
        }
        if (transient_curl(x->cc)) {
            dr_set_err(err, errlen, "s3: %s%s%s: %s: %s (transient, will retry)", op, sp, k,
                       s->origin, detail);
            return -EAGAIN;
        }
        if (x->cc == CURLE_WRITE_ERROR && x->body_cut) {
            dr_set_err(err, errlen, "s3: %s%s%s: reply larger than %u bytes", op, sp, k,
                       (unsigned)x->body_max);
            return -EBADMSG;
        }
        dr_set_err(err, errlen, "s3: %s%s%s: %s: %s", op, sp, k, s->origin, detail);
        return -EIO;
    }
    if (x->status >= 200 && x->status < 300)
        return 0;

    struct s3xml_error e;
    if (x->body_len == 0 || s3xml_parse_error(x->body, x->body_len, &e) < 0)
        memset(&e, 0, sizeof e);
    const char *code = e.code[0] ? e.code : NULL;
    char codebuf[80];
    snprintf(codebuf, sizeof codebuf, "HTTP %ld%s%s", x->status, code ? " " : "", code ? code : "");
    const char *msg = e.message[0] ? e.message : "";
    const char *ms = e.message[0] ? ": " : "";
    const char *id = s->base.cfg->storage.s3.access_key_id;

    if ((code && code_is(&e, "NoSuchBucket")) || (x->status == 404 && !code && !key)) {
        dr_set_err(err, errlen,
                   "s3: NoSuchBucket: bucket '%s' does not exist at %s (check storage.s3.bucket "
                   "and storage.s3.endpoint)",
                   s->bucket, s->origin);
        return -ENXIO;
    }
    if (code && (code_is(&e, "InvalidAccessKeyId") || code_is(&e, "NotSignedUp"))) {
        dr_set_err(err, errlen,
                   "s3: %s: %s does not know access key id '%s' (check "
                   "storage.s3.access_key_id)%s%s",
                   e.code, s->origin, id, ms, msg);
        return -EPERM;
    }
    if (code && code_is(&e, "SignatureDoesNotMatch")) {
        dr_set_err(err, errlen,
                   "s3: SignatureDoesNotMatch: %s rejected the request signature for key id '%s' "
                   "(check storage.s3.secret_access_key and storage.s3.region '%s')",
                   s->origin, id, s->base.cfg->storage.s3.region);
        return -EPERM;
    }
    if (code && (code_is(&e, "ExpiredToken") || code_is(&e, "InvalidToken") ||
                 code_is(&e, "TokenRefreshRequired"))) {
        dr_set_err(err, errlen,
                   "s3: %s: the session token was refused (renew "
                   "storage.s3.session_token)%s%s",
                   e.code, ms, msg);
        return -EPERM;
    }
    if (code && code_is(&e, "RequestTimeTooSkewed")) {
        dr_set_err(err, errlen,
                   "s3: RequestTimeTooSkewed: this host's clock differs from %s by more than 15 "
                   "minutes (fix the clock: NTP)",
                   s->origin);
        return -EPERM;
    }
    bool busy = code_is(&e, "SlowDown") || code_is(&e, "ServiceUnavailable") ||
                code_is(&e, "InternalError") || code_is(&e, "RequestTimeout") ||
                code_is(&e, "OperationAborted") || code_is(&e, "IncompleteBody");
    if (busy || x->status == 429 || x->status >= 500) {
        dr_set_err(err, errlen, "s3: %s%s%s: %s%s%s (transient, will retry)", op, sp, k, codebuf,
                   ms, msg);
        return -EAGAIN;
    }
    if (x->status == 403) {
        dr_set_err(err, errlen,
                   "s3: %s: %s denied %s%s%s in bucket '%s' to key id '%s' (check the bucket "
                   "policy or the key's permissions)%s%s",
                   code ? code : "AccessDenied (HTTP 403)", s->origin, op, sp, k, s->bucket, id, ms,
                   msg);
        return -EACCES;
    }
    if (x->status == 404) {
        dr_set_err(err, errlen, "s3: %s: %s'%s' not found in bucket '%s'%s%s",
                   code ? code : "NoSuchKey", key ? "object " : "", k, s->bucket, ms, msg);
        return -ENOENT;
    }
    if (x->status == 301 || x->status == 307 || (code && code_is(&e, "PermanentRedirect")) ||
        (code && code_is(&e, "AuthorizationHeaderMalformed"))) {
        dr_set_err(err, errlen,
                   "s3: %s: bucket '%s' is not served by %s in region '%s' (check "
                   "storage.s3.endpoint and storage.s3.region)%s%s",
                   code ? code : codebuf, s->bucket, s->origin, s->base.cfg->storage.s3.region, ms,
                   msg);
        return -EINVAL;
    }
    dr_set_err(err, errlen, "s3: %s%s%s: %s%s%s", op, sp, k, codebuf, ms, msg);
    return -EINVAL;
}

static void log_xfer(const struct s3_xfer *x, const char *method, uint64_t t0_ns)
{
    char shown[512];
    log_debug("s3: %s %s -> %ld%s%s (%.1f ms)", method, redact_url(x->url, shown, sizeof shown),
              x->status, x->cc != CURLE_OK ? " curl: " : "",
              x->cc != CURLE_OK ? (x->curl_err[0] ? x->curl_err : curl_easy_strerror(x->cc)) : "",
              (double)(dr_mono_ns() - t0_ns) / 1e6);
}

/* One request on easy[0]: prepare, run, classify. */
static int simple_request(struct s3_xfer *x, const char *method, const char *op, const char *key,
                          const char *query, char *err, size_t errlen)
{
    uint64_t t0 = dr_mono_ns();
    xfer_prepare(x, method, key, query);
    xfer_run(x);
    log_xfer(x, method, t0);
    return xfer_result(x, op, key, err, errlen);
}

/* ---- operations ---- */

static int s3_put_single(struct s3_store *s, const char *key, int fd, uint64_t size, char *err,
                         size_t errlen)
{
    struct s3_xfer x;
    xfer_init(&x, s, 0);
    x.in_fd = fd;
    x.in_off = 0;
    x.in_len = size;
    xfer_prepare(&x, "PUT", key, NULL);
    add_header(&x, "Content-Type: application/octet-stream");
    uint64_t t0 = dr_mono_ns();
    xfer_run(&x);
    log_xfer(&x, "PUT", t0);
    int rc = xfer_result(&x, "PutObject", key, err, errlen);
    xfer_clear(&x);
    return rc;
}

static void abort_multipart(struct s3_store *s, const char *key, const char *upload_id)
{
    struct s3_xfer x;
    char aerr[DR_ERRLEN];
    xfer_init(&x, s, 0);
    char *eid = uri_encode(upload_id, false);
    char *q = xasprintf("uploadId=%s", eid);
    int rc = simple_request(&x, "DELETE", "AbortMultipartUpload", key, q, aerr, sizeof aerr);
    if (rc < 0 && rc != -ENOENT)
        log_warn("%s (the incomplete upload %s stays until a bucket lifecycle rule removes it)",
                 aerr, upload_id);
    free(q);
    free(eid);
    xfer_clear(&x);
}

/* ---- many ranged transfers at once (multipart put, parallel get) ---- */

/* A job of units (parts, ranges) numbered first..last, run with up to
 * s->parallel in flight on the multi handle. start() prepares x for a unit
 * (xfer_prepare + headers); finish() classifies it: 0 done, -EAGAIN to
 * retry (up to S3_PART_TRIES attempts, backoff doubling from
 * S3_PART_BACKOFF_MS), anything else fails the job. */
struct par_ops {
    const char *method; /* for the debug log */
    void (*start)(void *ctx, struct s3_xfer *x, int unit);
    int (*finish)(void *ctx, struct s3_xfer *x, int unit, char *perr, size_t perrlen);
};

static int run_units(struct s3_store *s, int first, int last, const struct par_ops *ops, void *ctx,
                     char *err, size_t errlen)
{
    int n = last - first + 1;
    if (n <= 0)
        return 0;
    int P = DR_MIN(s->parallel, n);
    struct s3_xfer *xs = xcalloc((size_t)P, sizeof *xs);
    bool *busy = xcalloc((size_t)P, sizeof *busy);
    int *unit_of = xcalloc((size_t)P, sizeof *unit_of);
    int *tries = xcalloc((size_t)n, sizeof *tries);
    int64_t *ready_at = xcalloc((size_t)n, sizeof *ready_at);
    int *pending = xcalloc((size_t)n + 1, sizeof *pending); /* a ring of unit numbers */
    int head = 0, tail = 0, done = 0, in_flight = 0, rc = 0;
    for (int u = first; u <= last; u++)
        pending[tail++ % (n + 1)] = u;
    for (int i = 0; i < P; i++)
        xfer_init(&xs[i], s, i);

    while (done < n) {
        /* Fill idle slots with units whose retry delay has passed. */
        int64_t now = dr_mono_ms(), next_wake = INT64_MAX;
        for (int i = 0; i < P && rc == 0 && head != tail; i++) {
            if (busy[i])
                continue;
            int u = pending[head % (n + 1)];
            if (ready_at[u - first] > now) {
                next_wake = ready_at[u - first];
                break;
            }
            head++;
            ops->start(ctx, &xs[i], u);
            xfer_finish_headers(&xs[i]);
            xs[i].t0 = dr_mono_ns();
            tries[u - first]++;
            unit_of[i] = u;
            if (curl_multi_add_handle(s->multi, xs[i].easy) != CURLM_OK)
                abort(); /* only on misuse or out-of-memory */
            busy[i] = true;
            in_flight++;
        }
        if (in_flight == 0) {
            if (rc != 0)
                break;
            if (next_wake != INT64_MAX) {
                int64_t ms = next_wake - dr_mono_ms();
                if (ms > 0)
                    usleep((useconds_t)ms * 1000);
                continue;
            }
            dr_set_err(err, errlen, "s3: %d of %d transfers done and none queued", done, n);
            rc = -EIO; /* cannot happen: nothing pending, nothing running */
            break;
        }
        int running = 0;
        CURLMcode mc = curl_multi_perform(s->multi, &running);
        if (mc != CURLM_OK) {
            dr_set_err(err, errlen, "s3: %s: %s", ops->method, curl_multi_strerror(mc));
            rc = -EIO;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct s3_xfer *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            int slot = (int)(x - xs);
            int u = unit_of[slot];
            CURLcode cc = msg->data.result;
            curl_multi_remove_handle(s->multi, x->easy);
            busy[slot] = false;
            in_flight--;
            xfer_done(x, cc);
            log_xfer(x, ops->method, x->t0);
            char perr[DR_ERRLEN];
            int prc = ops->finish(ctx, x, u, perr, sizeof perr);
            int t = tries[u - first];
            if (prc == 0) {
                done++;
            } else if (prc == -EAGAIN && rc == 0 && t < S3_PART_TRIES) {
                log_warn("%s; retrying (attempt %d of %d)", perr, t + 1, S3_PART_TRIES);
                ready_at[u - first] = dr_mono_ms() + ((int64_t)S3_PART_BACKOFF_MS << (t - 1));
                pending[tail++ % (n + 1)] = u;
            } else if (rc == 0) {
                rc = prc;
                dr_set_err(err, errlen, "%s", perr);
            }
        }
        if (rc != 0) {
            /* Stop every transfer still in flight. */
            for (int i = 0; i < P; i++) {
                if (busy[i]) {
                    curl_multi_remove_handle(s->multi, xs[i].easy);
                    busy[i] = false;
                    in_flight--;
                }
            }
            break;
        }
        if (in_flight > 0)
            curl_multi_poll(s->multi, NULL, 0, 200, NULL);
    }
    for (int i = 0; i < P; i++)
        xfer_clear(&xs[i]);
    free(pending);
    free(ready_at);
    free(tries);
    free(unit_of);
    free(busy);
    free(xs);
    return rc;
}

struct mp_state {
    const char *key;
    char *eid; /* encoded upload id */
    int fd;
    uint64_t size, part_size;
    int n_parts;
    char (*etags)[S3_ETAG_MAX];
};

static void mp_start(void *ctx, struct s3_xfer *x, int part)
{
    struct mp_state *mp = ctx;
    x->in_fd = mp->fd;
    x->in_off = (uint64_t)(part - 1) * mp->part_size;
    x->in_len = DR_MIN(mp->part_size, mp->size - x->in_off);
    char *q = xasprintf("partNumber=%d&uploadId=%s", part, mp->eid);
    xfer_prepare(x, "PUT", mp->key, q);
    free(q);
}

static int mp_finish(void *ctx, struct s3_xfer *x, int part, char *perr, size_t perrlen)
{
    struct mp_state *mp = ctx;
    char what[64];
    snprintf(what, sizeof what, "UploadPart %d/%d", part, mp->n_parts);
    int rc = xfer_result(x, what, mp->key, perr, perrlen);
    if (rc == 0 && x->etag[0] == '\0') {
        snprintf(perr, perrlen, "s3: %s %s: the reply carried no ETag", what, mp->key);
        rc = -EBADMSG;
    }
    if (rc == 0)
        memcpy(mp->etags[part - 1], x->etag, S3_ETAG_MAX);
    return rc;
}

static const struct par_ops mp_ops = {"PUT", mp_start, mp_finish};

static int s3_put_multipart(struct s3_store *s, const char *key, int fd, uint64_t size, char *err,
                            size_t errlen)
{
    uint64_t part_size = DR_MAX(s->part_size, S3_MIN_PART);
    if ((size + part_size - 1) / part_size > S3_MAX_PARTS) {
        /* Grow the parts (to whole MiB) so the object fits in 10000. */
        part_size =
            ((size + S3_MAX_PARTS - 1) / S3_MAX_PARTS + (1u << 20) - 1) & ~((1ull << 20) - 1);
    }
    struct s3_xfer x;
    xfer_init(&x, s, 0);
    x.in_mem = "";
    x.in_mem_len = 0;
    x.body_max = S3_BODY_MAX;
    xfer_prepare(&x, "POST", key, "uploads=");
    add_header(&x, "Content-Type: application/octet-stream");
    uint64_t t0 = dr_mono_ns();
    xfer_run(&x);
    log_xfer(&x, "POST", t0);
    int rc = xfer_result(&x, "CreateMultipartUpload", key, err, errlen);
    char *upload_id = NULL;
    if (rc == 0) {
        struct s3xml_error e;
        int prc = s3xml_parse_initiate(x.body, x.body_len, &upload_id, &e);
        if (prc < 0) {
            dr_set_err(err, errlen, "s3: CreateMultipartUpload %s: unexpected reply from %s (%s)",
                       key, s->origin, prc == -EREMOTEIO ? e.code : "no UploadId");
            rc = prc == -EREMOTEIO ? -EAGAIN : -EBADMSG;
        }
    }
    xfer_clear(&x);
    if (rc < 0)
        return rc;

    struct mp_state mp = {
        .key = key,
        .eid = uri_encode(upload_id, false),
        .fd = fd,
        .size = size,
        .part_size = part_size,
        .n_parts = (int)((size + part_size - 1) / part_size),
    };
    mp.etags = xcalloc((size_t)mp.n_parts, sizeof *mp.etags);
    log_debug("s3: multipart %s: %d parts of %llu bytes, %d in flight, upload id %s", key,
              mp.n_parts, (unsigned long long)part_size, DR_MIN(s->parallel, mp.n_parts),
              upload_id);

    rc = run_units(s, 1, mp.n_parts, &mp_ops, &mp, err, errlen);
    if (rc == 0) {
        struct s3xml_part *parts = xcalloc((size_t)mp.n_parts, sizeof *parts);
        for (int i = 0; i < mp.n_parts; i++)
            parts[i] = (struct s3xml_part){i + 1, mp.etags[i]};
        char *body = s3xml_complete_body(parts, (size_t)mp.n_parts);
        free(parts);
        xfer_init(&x, s, 0);
        x.in_mem = body;
        x.in_mem_len = strlen(body);
        x.body_max = S3_BODY_MAX;
        char *q = xasprintf("uploadId=%s", mp.eid);
        xfer_prepare(&x, "POST", key, q);
        add_header(&x, "Content-Type: application/xml");
        t0 = dr_mono_ns();
        xfer_run(&x);
        log_xfer(&x, "POST", t0);
        rc = xfer_result(&x, "CompleteMultipartUpload", key, err, errlen);
        if (rc == 0) {
            /* S3 may answer 200 and put an <Error> in the body. */
            char *etag = NULL;
            struct s3xml_error e;
            int prc = s3xml_parse_complete(x.body, x.body_len, &etag, &e);
            if (prc == -EREMOTEIO) {
                dr_set_err(err, errlen,
                           "s3: CompleteMultipartUpload %s: %s: %s (transient, will retry)", key,
                           e.code, e.message);
                rc = -EAGAIN;
            } else if (prc < 0) {
                dr_set_err(err, errlen, "s3: CompleteMultipartUpload %s: unexpected reply from %s",
                           key, s->origin);
                rc = -EBADMSG;
            }
            free(etag);
        }
        free(q);
        free(body);
        xfer_clear(&x);
    }
    if (rc < 0)
        abort_multipart(s, key, upload_id);
    free(mp.etags);
    free(mp.eid);
    free(upload_id);
    return rc;
}

static int s3_put(struct dr_store *st, const char *key, const char *src_path, char *err,
                  size_t errlen)
{
    struct s3_store *s = S3(st);
    int rc;
    int fd = open(src_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        dr_set_err(err, errlen, "s3: PutObject %s: open %s: %s", key, src_path, strerror(errno));
        goto out;
    }
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        dr_set_err(err, errlen, "s3: PutObject %s: stat %s: %s", key, src_path, strerror(errno));
        goto out;
    }
    uint64_t size = (uint64_t)sb.st_size;
    if (size < s->part_size)
        rc = s3_put_single(s, key, fd, size, err, errlen);
    else
        rc = s3_put_multipart(s, key, fd, size, err, errlen);
out:
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Parallel get: the first range (part_size bytes) is one plain request
 * that also tells the object's size (Content-Range) and ETag; a small
 * object ends there, in one request as before. The other ranges then run
 * with up to parallel_parts in flight, each written in place with pwrite
 * and bound to the same object version by If-Match. */
struct get_state {
    const char *key;
    int fd;
    uint64_t size, part_size;
    int n_ranges;
    char etag[S3_ETAG_MAX];
};

static void get_start(void *ctx, struct s3_xfer *x, int unit)
{
    struct get_state *g = ctx;
    x->out_fd = g->fd;
    x->out_at = true;
    x->out_at_off = (uint64_t)(unit - 1) * g->part_size;
    x->out_at_len = DR_MIN(g->part_size, g->size - x->out_at_off);
    xfer_prepare(x, "GET", g->key, NULL);
    add_header(x, "Range: bytes=%llu-%llu", (unsigned long long)x->out_at_off,
               (unsigned long long)(x->out_at_off + x->out_at_len - 1));
    if (g->etag[0] != '\0')
        add_header(x, "If-Match: %s", g->etag);
}

static int get_finish(void *ctx, struct s3_xfer *x, int unit, char *perr, size_t perrlen)
{
    struct get_state *g = ctx;
    char what[64];
    snprintf(what, sizeof what, "GetObject range %d/%d", unit, g->n_ranges);
    if (x->status == 412) {
        snprintf(perr, perrlen,
                 "s3: %s %s: the object changed while it was read (transient, will retry)", what,
                 g->key);
        return -EAGAIN; /* the next job attempt starts again from the first range */
    }
    int rc = xfer_result(x, what, g->key, perr, perrlen);
    if (rc == 0 && x->out_at_done != x->out_at_len) {
        snprintf(perr, perrlen, "s3: %s %s: %llu of %llu bytes arrived (transient, will retry)",
                 what, g->key, (unsigned long long)x->out_at_done,
                 (unsigned long long)x->out_at_len);
        rc = -EAGAIN;
    }
    return rc;
}

static const struct par_ops get_ops = {"GET", get_start, get_finish};

static int s3_get_ranges(struct s3_store *s, const char *key, int fd, char *err, size_t errlen)
{
    struct get_state g = {.key = key, .fd = fd, .part_size = DR_MAX(s->part_size, S3_MIN_PART)};
    /* Range 1, before the size is known: ask for part_size bytes. */
    struct s3_xfer x;
    xfer_init(&x, s, 0);
    x.out_fd = fd;
    x.out_at = true;
    x.out_at_off = 0;
    x.out_at_len = g.part_size;
    xfer_prepare(&x, "GET", key, NULL);
    add_header(&x, "Range: bytes=0-%llu", (unsigned long long)(g.part_size - 1));
    uint64_t t0 = dr_mono_ns();
    xfer_run(&x);
    log_xfer(&x, "GET", t0);
    int rc;
    if (x.cc == CURLE_OK && x.status == 416) {
        rc = 0; /* an empty object: no byte 0 to send */
    } else {
        rc = xfer_result(&x, "GetObject", key, err, errlen);
    }
    if (rc == 0 && x.status == 206 && x.total > x.out_at_done) {
        if (x.out_at_done != g.part_size) {
            dr_set_err(err, errlen,
                       "s3: GetObject %s: the first range was cut short (transient, will retry)",
                       key);
            rc = -EAGAIN;
        } else {
            g.size = x.total;
            g.n_ranges = (int)((g.size + g.part_size - 1) / g.part_size);
            snprintf(g.etag, sizeof g.etag, "%s", x.etag);
            if (ftruncate(fd, (off_t)g.size) < 0) {
                rc = -errno;
                dr_set_err(err, errlen, "s3: GetObject %s: ftruncate: %s", key, strerror(errno));
            } else {
                log_debug("s3: get %s: %d ranges of %llu bytes, %d in flight", key, g.n_ranges,
                          (unsigned long long)g.part_size, DR_MIN(s->parallel, g.n_ranges - 1));
                rc = run_units(s, 2, g.n_ranges, &get_ops, &g, err, errlen);
            }
        }
    }
    xfer_clear(&x);
    return rc;
}

static int s3_get(struct dr_store *st, const char *key, const char *dst_path, char *err,
                  size_t errlen)
{
    struct s3_store *s = S3(st);
    int rc;
    int fd = open(dst_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        dr_set_err(err, errlen, "s3: GetObject %s: open %s: %s", key, dst_path, strerror(errno));
        return rc;
    }
    if (s->parallel > 1) {
        rc = s3_get_ranges(s, key, fd, err, errlen);
    } else {
        struct s3_xfer x;
        xfer_init(&x, s, 0);
        x.out_fd = fd;
        rc = simple_request(&x, "GET", "GetObject", key, NULL, err, errlen);
        xfer_clear(&x);
    }
    if (rc == 0 && fsync(fd) < 0) {
        rc = -errno;
        dr_set_err(err, errlen, "s3: GetObject %s: fsync %s: %s", key, dst_path, strerror(errno));
    }
    if (close(fd) < 0 && rc == 0) {
        rc = -errno;
        dr_set_err(err, errlen, "s3: GetObject %s: close %s: %s", key, dst_path, strerror(errno));
    }
    if (rc < 0)
        unlink(dst_path); /* never leave a partial object behind */
    return rc;
}

static long s3_get_range(struct dr_store *st, const char *key, uint64_t offset, void *buf,
                         size_t len, char *err, size_t errlen)
{
    struct s3_store *s = S3(st);
    if (len == 0)
        return 0;
    uint64_t t0 = dr_mono_ns();
    struct s3_xfer x;
    xfer_init(&x, s, 0);
    x.out_mem = buf;
    x.out_cap = len;
    x.range_off = offset;
    xfer_prepare(&x, "GET", key, NULL);
    add_header(&x, "Range: bytes=%llu-%llu", (unsigned long long)offset,
               (unsigned long long)(offset + len - 1));
    xfer_run(&x);
    log_xfer(&x, "GET", t0);
    long rc;
    if (x.cc == CURLE_OK && x.status == 416) {
        rc = 0; /* the range starts at or past the end */
    } else {
        rc = xfer_result(&x, "GetObject", key, err, errlen);
        if (rc == 0)
            rc = (long)x.out_len;
    }
    xfer_clear(&x);
    return rc;
}

static int s3_del(struct dr_store *st, const char *key, char *err, size_t errlen)
{
    struct s3_store *s = S3(st);
    struct s3_xfer x;
    xfer_init(&x, s, 0);
    int rc = simple_request(&x, "DELETE", "DeleteObject", key, NULL, err, errlen);
    xfer_clear(&x);
    if (rc == -ENOENT)
        rc = 0; /* already gone: delete is idempotent */
    return rc;
}

static int s3_exists(struct dr_store *st, const char *key, uint64_t *size, char *err, size_t errlen)
{
    struct s3_store *s = S3(st);
    struct s3_xfer x;
    xfer_init(&x, s, 0);
    int rc = simple_request(&x, "HEAD", "HeadObject", key, NULL, err, errlen);
    if (rc == 0) {
        curl_off_t cl = -1;
        curl_easy_getinfo(x.easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
        if (size != NULL)
            *size = cl > 0 ? (uint64_t)cl : 0;
        rc = 1;
    } else if (rc == -ENOENT) {
        rc = 0;
    }
    xfer_clear(&x);
    return rc;
}

/* One ListObjectsV2 page. token NULL for the first. */
static int list_page(struct s3_store *s, const char *token, const char *max_keys,
                     struct s3xml_list *page, char *err, size_t errlen)
{
    struct s3_xfer x;
    xfer_init(&x, s, 0);
    x.body_max = S3_BODY_MAX;
    char *q;
    if (token != NULL) {
        char *et = uri_encode(token, false);
        q = xasprintf("continuation-token=%s&list-type=2&max-keys=%s", et, max_keys);
        free(et);
    } else {
        q = xasprintf("list-type=2&max-keys=%s", max_keys);
    }
    int rc = simple_request(&x, "GET", "ListObjectsV2", NULL, q, err, errlen);
    if (rc == 0) {
        struct s3xml_error e;
        int prc = s3xml_parse_list(x.body, x.body_len, page, &e);
        if (prc < 0) {
            dr_set_err(err, errlen, "s3: ListObjectsV2 bucket '%s': unexpected reply from %s%s%s",
                       s->bucket, s->origin, prc == -EREMOTEIO ? ": " : "",
                       prc == -EREMOTEIO ? e.code : "");
            rc = prc == -EREMOTEIO ? -EAGAIN : -EBADMSG;
        }
    }
    free(q);
    xfer_clear(&x);
    return rc;
}

static int s3_list(struct dr_store *st, int (*fn)(const char *key, uint64_t size, void *arg),
                   void *arg, char *err, size_t errlen)
{
    struct s3_store *s = S3(st);
    char *token = NULL;
    int rc = 0;
    for (;;) {
        struct s3xml_list page = {0};
        rc = list_page(s, token, S3_LIST_PAGE, &page, err, errlen);
        if (rc < 0)
            break;
        bool stop = false;
        for (size_t i = 0; i < page.n && !stop; i++)
            stop = fn(page.objects[i].key, page.objects[i].size, arg) != 0;
        free(token);
        token = page.truncated && !stop ? xstrdup(page.next_token) : NULL;
        s3xml_list_clear(&page);
        if (token == NULL)
            break;
    }
    free(token);
    return rc;
}

static int s3_check(struct dr_store *st, char *err, size_t errlen)
{
    struct s3xml_list page;
    int rc = list_page(S3(st), NULL, "1", &page, err, errlen);
    if (rc == 0)
        s3xml_list_clear(&page);
    return rc;
}

static void s3_close(struct dr_store *st)
{
    struct s3_store *s = S3(st);
    if (s == NULL)
        return;
    for (int i = 0; i < S3_MAX_PARALLEL; i++)
        if (s->easy[i] != NULL)
            curl_easy_cleanup(s->easy[i]);
    if (s->multi != NULL)
        curl_multi_cleanup(s->multi);
    free(s->origin);
    free(s->url_bucket);
    free(s->bucket);
    free(s->sigv4);
    free(s->token_hdr);
    free(s);
}

static const struct dr_store_ops s3_ops = {
    .name = "s3",
    .put = s3_put,
    .get = s3_get,
    .get_range = s3_get_range,
    .del = s3_del,
    .exists = s3_exists,
    .list = s3_list,
    .check = s3_check,
    .close = s3_close,
};

/* Is s a bucket name usable in a host name (virtual-host style)? */
static bool dns_bucket(const char *s)
{
    size_t n = strlen(s);
    if (n < 3 || n > 63)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
            return false;
    return true;
}

int store_s3_open(const struct dr_config *cfg, struct dr_store **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *endpoint = cfg->storage.s3.endpoint;
    const char *bucket = cfg->storage.s3.bucket;
    const char *region = cfg->storage.s3.region ? cfg->storage.s3.region : "us-east-1";
    if (bucket == NULL || bucket[0] == '\0') {
        dr_set_err(err, errlen, "s3: storage.s3.bucket is not set");
        return -EINVAL;
    }
    if (cfg->storage.s3.access_key_id == NULL || cfg->storage.s3.secret_access_key == NULL) {
        dr_set_err(err, errlen,
                   "s3: storage.s3.access_key_id and secret_access_key (or "
                   "secret_access_key_file) are required");
        return -EINVAL;
    }
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK) {
        dr_set_err(err, errlen, "s3: curl_global_init: %s", curl_easy_strerror(g_curl_init_rc));
        return -EIO;
    }
    char *origin;
    if (endpoint == NULL || endpoint[0] == '\0')
        origin = xasprintf("https://s3.%s.amazonaws.com", region);
    else
        origin = xstrdup(endpoint);
    size_t ol = strlen(origin);
    while (ol > 0 && origin[ol - 1] == '/')
        origin[--ol] = '\0';
    const char *hostpart = strstr(origin, "://");
    if (hostpart == NULL ||
        (strncmp(origin, "http://", 7) != 0 && strncmp(origin, "https://", 8) != 0)) {
        dr_set_err(err, errlen, "s3: storage.s3.endpoint '%s' must start with http:// or https://",
                   origin);
        free(origin);
        return -EINVAL;
    }
    if (!cfg->storage.s3.path_style && !dns_bucket(bucket)) {
        dr_set_err(err, errlen,
                   "s3: bucket '%s' cannot be used in a host name; set storage.s3.path_style: true",
                   bucket);
        free(origin);
        return -EINVAL;
    }

    struct s3_store *s = xcalloc(1, sizeof *s);
    s->base.ops = &s3_ops;
    s->base.cfg = cfg;
    s->origin = origin;
    s->bucket = xstrdup(bucket);
    char *ebucket = uri_encode(bucket, false);
    if (cfg->storage.s3.path_style) {
        s->url_bucket = xasprintf("%s/%s/", origin, ebucket);
    } else {
        int scheme_len = (int)(hostpart - origin);
        s->url_bucket = xasprintf("%.*s://%s.%s/", scheme_len, origin, ebucket, hostpart + 3);
    }
    free(ebucket);
    s->sigv4 = xasprintf("aws:amz:%s:s3", region);
    if (cfg->storage.s3.session_token != NULL && cfg->storage.s3.session_token[0] != '\0')
        s->token_hdr = xasprintf("x-amz-security-token: %s", cfg->storage.s3.session_token);
    s->parallel = cfg->storage.s3.parallel_parts;
    if (s->parallel < 1)
        s->parallel = 1;
    if (s->parallel > S3_MAX_PARALLEL)
        s->parallel = S3_MAX_PARALLEL;
    s->part_size = DR_MAX(cfg->storage.s3.part_size, S3_MIN_PART);
    uint64_t idle = cfg->storage.s3.idle_timeout ? cfg->storage.s3.idle_timeout : 30000;
    s->low_speed_time = (long)((idle + 999) / 1000);
    s->multi = curl_multi_init();
    if (s->multi == NULL)
        abort();
    /* Keep enough idle connections for every part slot plus one. */
    curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)s->parallel + 1);
    easy_get(s, 0);
    *out = &s->base;
    return 0;
}

/* test_http_conn.c - the connection state machine driven with raw bytes.
 *
 * Each test builds a one-loop server without listeners, hands one end of
 * a socketpair to http_conn_start() and plays the client on the other
 * end, turning the loop by hand (EVLOOP_NONBLOCK) until the expected bytes
 * arrived. Route handlers below record which callbacks ran.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "dripd/config.h"
#include "dripd/http.h"
#include "http/http_conn.h"
#include "dripd/router.h"
#include "dripd/util.h"

static struct dr_config *cfg;
static struct http_server *srv;
static struct event_base *base;
static int cli = -1;
static char rbuf[1 << 20];
static size_t rlen;
static bool peer_closed;

/* what the handlers saw */
static int n_done, n_abort, n_end;
static uint64_t body_bytes;

/* ---- test routes ---- */

static void echo_head(struct http_exchange *ex)
{
    const struct http_request *r = http_req(ex);
    const char *q = http_query_param(ex, "q");
    char body[512];
    int n = snprintf(body, sizeof body, "path=%s q=%s ka=%d", r->path ? r->path : "(null)",
                     q ? q : "(null)", r->keep_alive);
    http_respond(ex, 200, "text/plain", body, (size_t)n);
}

static void count_done(struct http_exchange *ex)
{
    (void)ex;
    n_done++;
}

static void count_abort(struct http_exchange *ex)
{
    (void)ex;
    n_abort++;
}

static void upload_head(struct http_exchange *ex)
{
    http_accept_body(ex);
}

static int upload_body(struct http_exchange *ex, const char *data, size_t len)
{
    (void)ex;
    for (size_t i = 0; i < len; i++)
        ck_assert_int_eq((unsigned char)data[i], (unsigned char)('a' + (body_bytes + i) % 26));
    body_bytes += len;
    return 0;
}

static void upload_end(struct http_exchange *ex)
{
    n_end++;
    char body[64];
    int n = snprintf(body, sizeof body, "%llu", (unsigned long long)body_bytes);
    http_respond(ex, 201, "text/plain", body, (size_t)n);
}

static void reject_head(struct http_exchange *ex)
{
    http_respond_problem(ex, 413, "too big");
}

static void work_fn(void *arg)
{
    *(int *)arg = 42;
}

static int work_val;

static void defer_done(struct http_exchange *ex, void *arg)
{
    ck_assert_int_eq(*(int *)arg, 42);
    if (!http_ex_closed(ex))
        http_respond(ex, 200, "text/plain", "deferred", 8);
}

static void defer_head(struct http_exchange *ex)
{
    ck_assert_int_eq(http_defer(ex, work_fn, defer_done, &work_val), 0);
}

static void stream_head(struct http_exchange *ex)
{
    http_stream_start(ex, 200, "text/plain");
    ck_assert_int_eq(http_stream_write(ex, "hello ", 6), 0);
    ck_assert_int_eq(http_stream_write(ex, "world", 5), 0);
    http_stream_end(ex);
}

static char file_path[64];

static void file_head(struct http_exchange *ex)
{
    int fd = open(file_path, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(fd, 0);
    http_respond_file(ex, 200, "application/octet-stream", fd, 10, 50000);
}

/* on_end sees the request as it was when the head was dispatched, however
 * long the chunked trailers were. */
static void trailer_end(struct http_exchange *ex)
{
    n_end++;
    const struct http_request *r = http_req(ex);
    ck_assert_str_eq(r->target, "/up/trailer?x=1");
    ck_assert_str_eq(r->path, "/up/trailer");
    ck_assert_str_eq(http_header(ex, "X-Head"), "kept");
    http_respond(ex, 201, "text/plain", "ok", 2);
}

static const struct http_route_ops file_ops = {.route_class = "content", .on_head = file_head};
static const struct http_route_ops trailer_ops = {.route_class = "upload",
                                                  .on_head = upload_head,
                                                  .on_body = upload_body,
                                                  .on_end = trailer_end,
                                                  .on_done = count_done,
                                                  .on_abort = count_abort};
static const struct http_route_ops echo_ops = {.route_class = "other", .on_head = echo_head};
static const struct http_route_ops upload_ops = {.route_class = "upload",
                                                 .on_head = upload_head,
                                                 .on_body = upload_body,
                                                 .on_end = upload_end,
                                                 .on_done = count_done,
                                                 .on_abort = count_abort};
static const struct http_route_ops reject_ops = {.route_class = "upload",
                                                 .on_head = reject_head,
                                                 .on_done = count_done,
                                                 .on_abort = count_abort};
static const struct http_route_ops defer_ops = {.route_class = "other", .on_head = defer_head};
static const struct http_route_ops stream_ops = {.route_class = "other", .on_head = stream_head};

/* A fresh client connection (the old one, if any, is closed); its header
 * timer starts now, with cfg's header_timeout. */
static void new_conn(void)
{
    if (cli >= 0)
        close(cli);
    int sv[2];
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cli = sv[1];
    fcntl(cli, F_SETFL, fcntl(cli, F_GETFL) | O_NONBLOCK);
    http_conn_start(http_server_thread(srv, 0), sv[0], "test", false);
    rlen = 0;
    peer_closed = false;
}

static void setup(void)
{
    cfg = config_defaults();
    cfg->limits.max_header_size = 2048;
    cfg->limits.max_headers = 10;
    /* Long enough that a loaded machine (sanitizers, other builds) never
     * times a test out; the timeout tests set their own (new_conn). */
    cfg->limits.body_timeout = 10000;
    cfg->limits.header_timeout = 10000;
    cfg->n_users = 1;
    cfg->users = xcalloc(1, sizeof *cfg->users);
    cfg->users[0].name = xstrdup("alice");
    cfg->users[0].token = xstrdup("sekrit");
    router_reset();
    router_add("GET", "/echo", false, &echo_ops);
    router_add("PUT", "/up/trailer", false, &trailer_ops);
    router_add("PUT", "/up/", false, &upload_ops);
    router_add("PUT", "/reject", false, &reject_ops);
    router_add("GET", "/defer", false, &defer_ops);
    router_add("GET", "/stream", false, &stream_ops);
    router_add("GET", "/private/", true, &echo_ops);
    router_add("GET", "/file", false, &file_ops);
    struct http_server_opts o = {.cfg = cfg, .threads = 1, .dispatch = router_dispatch};
    ck_assert_int_eq(http_server_create(&o, &srv), 0);
    base = http_thread_base(http_server_thread(srv, 0));
    cli = -1;
    new_conn();
    n_done = n_abort = n_end = 0;
    body_bytes = 0;
}

static void teardown(void)
{
    if (cli >= 0)
        close(cli);
    cli = -1;
    http_server_destroy(srv);
    config_destroy(cfg);
}

static void send_all(const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = write(cli, s, n);
        if (w < 0 && errno == EAGAIN) {
            event_base_loop(base, EVLOOP_NONBLOCK);
            continue;
        }
        ck_assert_int_gt(w, 0);
        s += w;
        n -= (size_t)w;
    }
}

static void send_str(const char *s)
{
    send_all(s, strlen(s));
}

/* Turn the loop and collect client bytes until pred() or deadline. */
static bool pump(bool (*pred)(void), int ms)
{
    int64_t end = dr_mono_ms() + ms;
    while (dr_mono_ms() < end) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        for (;;) {
            if (rlen >= sizeof rbuf - 1)
                break;
            ssize_t n = read(cli, rbuf + rlen, sizeof rbuf - 1 - rlen);
            if (n > 0) {
                rlen += (size_t)n;
                rbuf[rlen] = '\0';
                continue;
            }
            if (n == 0)
                peer_closed = true;
            break;
        }
        if (pred())
            return true;
        struct pollfd p = {.fd = cli, .events = POLLIN};
        poll(&p, 1, 2);
    }
    return pred();
}

/* number of complete responses (Content-Length or chunked) in rbuf */
static int responses(void)
{
    int count = 0;
    const char *p = rbuf, *end = rbuf + rlen;
    while (p < end) {
        const char *he = strstr(p, "\r\n\r\n");
        if (he == NULL)
            break;
        he += 4;
        if (strncmp(p, "HTTP/1.1 100", 12) == 0) {
            p = he;
            continue;
        }
        const char *cl = strcasestr(p, "Content-Length:");
        if (cl != NULL && cl < he) {
            long n = strtol(cl + 15, NULL, 10);
            bool head = strstr(p, "X-Head") != NULL;
            if (!head && end - he < n)
                break;
            p = head ? he : he + n;
        } else if (strcasestr(p, "Transfer-Encoding: chunked") != NULL) {
            const char *z = strstr(he, "0\r\n\r\n");
            if (z == NULL)
                break;
            p = z + 5;
        } else {
            p = he;
        }
        count++;
    }
    return count;
}

static bool one(void)
{
    return responses() >= 1;
}

static bool two(void)
{
    return responses() >= 2;
}

static bool closed(void)
{
    return peer_closed;
}

static bool head_seen(void)
{
    return strstr(rbuf, "\r\n\r\n") != NULL;
}

START_TEST(get_keepalive)
{
    send_str("GET /echo?q=a%20b+c HTTP/1.1\r\nHost: x\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 200 OK\r\n"));
    ck_assert_ptr_nonnull(strstr(rbuf, "\r\nDate: "));
    ck_assert_ptr_nonnull(strstr(rbuf, "path=/echo q=a b c ka=1"));
    ck_assert_ptr_null(strstr(rbuf, "Connection: close"));
    /* same connection, second request */
    send_str("GET /echo HTTP/1.1\r\n\r\n");
    ck_assert(pump(two, 2000));
    ck_assert(!peer_closed);
}
END_TEST

START_TEST(pipelined_in_order)
{
    send_str(
        "GET /echo?q=1 HTTP/1.1\r\n\r\nGET /defer HTTP/1.1\r\n\r\nGET /echo?q=3 HTTP/1.1\r\n\r\n");
    ck_assert(pump(two, 2000));
    int64_t end = dr_mono_ms() + 2000;
    while (responses() < 3 && dr_mono_ms() < end)
        pump(two, 10);
    ck_assert_int_eq(responses(), 3);
    char *a = strstr(rbuf, "q=1"), *b = strstr(rbuf, "deferred"), *c = strstr(rbuf, "q=3");
    ck_assert(a && b && c && a < b && b < c);
}
END_TEST

START_TEST(head_has_no_body)
{
    send_str("HEAD /echo HTTP/1.1\r\n\r\nGET /echo?q=after HTTP/1.1\r\n\r\n");
    int64_t end = dr_mono_ms() + 2000;
    while (strstr(rbuf, "q=after") == NULL && dr_mono_ms() < end)
        pump(one, 10);
    ck_assert_ptr_nonnull(strstr(rbuf, "q=after"));
    /* the HEAD answer announces the length but sends no body */
    ck_assert_ptr_nonnull(strstr(rbuf, "Content-Length: "));
    ck_assert_ptr_null(strstr(rbuf, "q=(null)"));
}
END_TEST

START_TEST(garbage_400_and_close)
{
    send_str("\x01\x02 what is this\r\n\r\n");
    ck_assert(pump(closed, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 400 Bad Request\r\n"));
    ck_assert_ptr_nonnull(strstr(rbuf, "application/problem+json"));
    ck_assert_ptr_nonnull(strstr(rbuf, "Connection: close"));
}
END_TEST

START_TEST(head_too_large_431)
{
    char big[4096];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    send_str("GET /echo HTTP/1.1\r\nX-Big: ");
    send_str(big);
    send_str("\r\n\r\n");
    ck_assert(pump(closed, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 431 "));
}
END_TEST

START_TEST(too_many_headers_431)
{
    send_str("GET /echo HTTP/1.1\r\n");
    for (int i = 0; i < 12; i++) {
        char h[32];
        snprintf(h, sizeof h, "X-H%d: v\r\n", i);
        send_str(h);
    }
    send_str("\r\n");
    ck_assert(pump(closed, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 431 "));
}
END_TEST

static void send_body(size_t n)
{
    char buf[4096];
    size_t off = 0;
    while (off < n) {
        size_t k = DR_MIN(sizeof buf, n - off);
        for (size_t i = 0; i < k; i++)
            buf[i] = (char)('a' + (off + i) % 26);
        send_all(buf, k);
        off += k;
    }
}

START_TEST(put_content_length)
{
    size_t n = 300000; /* more than the 256 KiB input bound */
    char head[128];
    snprintf(head, sizeof head, "PUT /up/x HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", n);
    send_str(head);
    send_body(n);
    ck_assert(pump(one, 5000));
    ck_assert_msg(strstr(rbuf, "HTTP/1.1 201 Created\r\n") != NULL, "got: %.300s", rbuf);
    ck_assert_ptr_nonnull(strstr(rbuf, "\r\n\r\n300000"));
    ck_assert_int_eq(n_end, 1);
    pump(one, 50);
    ck_assert_int_eq(n_done, 1);
    ck_assert_int_eq(n_abort, 0);
}
END_TEST

START_TEST(put_chunked)
{
    send_str("PUT /up/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
    send_str("3\r\nabc\r\n");
    send_str("a;ext=1\r\ndefghijklm\r\n");
    send_str("0\r\nX-Trailer: y\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "\r\n\r\n13"));
    ck_assert_int_eq(body_bytes, 13);
}
END_TEST

START_TEST(expect_continue_accepted)
{
    send_str("PUT /up/x HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    ck_assert(pump(head_seen, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 100 Continue\r\n\r\n"));
    send_str("abcde");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 201 "));
}
END_TEST

START_TEST(expect_continue_rejected)
{
    send_str("PUT /reject HTTP/1.1\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n");
    ck_assert(pump(closed, 3000));
    ck_assert_ptr_null(strstr(rbuf, "100 Continue"));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 413 "));
    ck_assert_ptr_nonnull(strstr(rbuf, "Connection: close"));
    ck_assert_int_eq(n_done, 1);
}
END_TEST

START_TEST(small_unaccepted_body_discarded)
{
    send_str("PUT /reject HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789GET /echo?q=next "
             "HTTP/1.1\r\n\r\n");
    ck_assert(pump(two, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "q=next"));
    ck_assert(!peer_closed);
}
END_TEST

START_TEST(disconnect_mid_body_aborts)
{
    send_str("PUT /up/x HTTP/1.1\r\nContent-Length: 1000\r\n\r\n");
    send_body(100);
    pump(one, 50);
    close(cli);
    cli = -1;
    int64_t end = dr_mono_ms() + 2000;
    while (n_abort == 0 && dr_mono_ms() < end)
        event_base_loop(base, EVLOOP_NONBLOCK);
    ck_assert_int_eq(n_abort, 1);
    ck_assert_int_eq(n_done, 0);
    ck_assert_int_eq(n_end, 0);
}
END_TEST

START_TEST(bad_chunk_aborts_400)
{
    send_str("PUT /up/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nZZ\r\n");
    ck_assert(pump(closed, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 400 "));
    ck_assert_int_eq(n_abort, 1);
    ck_assert_int_eq(n_done, 0);
}
END_TEST

START_TEST(body_timeout_408)
{
    cfg->limits.body_timeout = 1000;
    new_conn();
    send_str("PUT /up/x HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    ck_assert(pump(closed, 3000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 408 "));
    ck_assert_int_eq(n_abort, 1);
}
END_TEST

START_TEST(header_timeout_408)
{
    cfg->limits.header_timeout = 1000;
    new_conn();
    send_str("GET /echo HTTP/1.1\r\nX-Slow: ");
    ck_assert(pump(closed, 3000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 408 "));
}
END_TEST

START_TEST(streamed_chunked)
{
    send_str("GET /stream HTTP/1.1\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "Transfer-Encoding: chunked\r\n"));
    ck_assert_ptr_nonnull(strstr(rbuf, "6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"));
}
END_TEST

START_TEST(http10_closes)
{
    send_str("GET /echo HTTP/1.0\r\n\r\n");
    ck_assert(pump(closed, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "ka=0"));
    ck_assert_ptr_nonnull(strstr(rbuf, "Connection: close"));
}
END_TEST

START_TEST(http10_keepalive)
{
    send_str("GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "Connection: keep-alive"));
    ck_assert(!peer_closed);
}
END_TEST

START_TEST(encoded_nul_400)
{
    send_str("GET /echo%00x HTTP/1.1\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 400 "));
}
END_TEST

START_TEST(router_auth_404_405)
{
    send_str("GET /private/a HTTP/1.1\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 401 "));
    ck_assert_ptr_nonnull(strstr(rbuf, "WWW-Authenticate: Bearer realm=\"dripd\"\r\n"));
    rlen = 0;
    send_str("GET /private/a HTTP/1.1\r\nAuthorization: Bearer wrong\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 401 "));
    ck_assert_ptr_nonnull(strstr(rbuf, "invalid_token"));
    rlen = 0;
    send_str("GET /private/a HTTP/1.1\r\nAuthorization: Bearer sekrit\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 200 "));
    rlen = 0;
    send_str("GET /nowhere HTTP/1.1\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 404 "));
    rlen = 0;
    send_str("DELETE /echo HTTP/1.1\r\n\r\n");
    ck_assert(pump(one, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 405 "));
    ck_assert_ptr_nonnull(strstr(rbuf, "Allow: GET, HEAD\r\n"));
}
END_TEST

START_TEST(smuggling_cl_and_te_rejected)
{
    send_str("PUT /up/x HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
             "0\r\n\r\n");
    ck_assert(pump(closed, 2000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 400 "));
    ck_assert_int_eq(n_end, 0);
}
END_TEST

START_TEST(file_response_by_sendfile)
{
    snprintf(file_path, sizeof file_path, "/tmp/test_http_conn.%d", (int)getpid());
    int fd = open(file_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    static char data[100000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (char)(i * 7);
    ck_assert_int_eq(dr_write_all(fd, data, sizeof data), 0);
    close(fd);
    send_str("HEAD /file HTTP/1.1\r\n\r\nGET /file HTTP/1.1\r\n\r\n");
    int64_t end = dr_mono_ms() + 3000;
    while (rlen < 50000 && dr_mono_ms() < end)
        pump(one, 10);
    unlink(file_path);
    /* HEAD: head only; then GET: head + exactly bytes 10..50009 */
    const char *h1 = strstr(rbuf, "\r\n\r\n");
    ck_assert_ptr_nonnull(h1);
    ck_assert_ptr_nonnull(strstr(rbuf, "Content-Length: 50000\r\n"));
    const char *g = h1 + 4;
    ck_assert(strncmp(g, "HTTP/1.1 200 OK", 15) == 0);
    const char *b = strstr(g, "\r\n\r\n");
    ck_assert_ptr_nonnull(b);
    b += 4;
    ck_assert_int_eq((long)(rbuf + rlen - b), 50000);
    ck_assert(memcmp(b, data + 10, 50000) == 0);
}
END_TEST

static int want_responses;

static bool enough(void)
{
    return responses() >= want_responses || peer_closed;
}

/* Replace the socketpair client by a TCP loopback connection: its socket
 * buffers take thousands of small responses without blocking the server
 * (a unix socket charges each write a whole buffer). */
static void use_tcp(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(l, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    ck_assert_int_eq(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(l, 1), 0);
    ck_assert_int_eq(getsockname(l, (struct sockaddr *)&a, &al), 0);
    int c = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_eq(connect(c, (struct sockaddr *)&a, sizeof a), 0);
    int s = accept(l, NULL, NULL);
    ck_assert_int_ge(s, 0);
    close(l);
    close(cli);
    cli = c;
    fcntl(cli, F_SETFL, fcntl(cli, F_GETFL) | O_NONBLOCK);
    http_conn_start(http_server_thread(srv, 0), s, "tcp", false);
}

/* 2,400 requests in one send, more than the old guard of 10,000 steps per
 * callback. The connection must be rescheduled when it yields with input
 * left (it was not: 2,000 answers, then 408 after header_timeout). */
START_TEST(pipelined_2400_in_one_send_all_answered)
{
    use_tcp();
    static const char req[] = "GET /echo HTTP/1.1\r\n\r\n";
    size_t n = 2400, rl = sizeof req - 1;
    char *all = xmalloc(n * rl);
    for (size_t i = 0; i < n; i++)
        memcpy(all + i * rl, req, rl);
    send_all(all, n * rl);
    free(all);
    want_responses = (int)n;
    ck_assert(pump(enough, 10000));
    ck_assert_int_eq(responses(), (int)n);
    ck_assert_ptr_null(strstr(rbuf, " 408 "));
    ck_assert(!peer_closed);
}
END_TEST

/* Trailers after a chunked body: they are read (within max_header_size)
 * and dropped; the head the handler saw stays valid (it was
 * use-after-free: the trailers grew the head arena by realloc). */
START_TEST(chunked_trailers_do_not_move_the_head)
{
    char trailers[1600];
    size_t off = 0;
    for (int i = 0; i < 8; i++) /* 10 fields in all: limits.max_headers here */
        off += (size_t)snprintf(trailers + off, sizeof trailers - off, "X-Trailer-%02d: %0120d\r\n",
                                i, i);
    char *msg = xasprintf("PUT /up/trailer?x=1 HTTP/1.1\r\nX-Head: kept\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n"
                          "3\r\nabc\r\n0\r\n%s\r\nGET /echo?q=next HTTP/1.1\r\n\r\n",
                          trailers);
    send_str(msg);
    free(msg);
    bool both = pump(two, 3000);
    ck_assert_msg(both, "got: %.400s", rbuf);
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 201 "));
    ck_assert_ptr_nonnull(strstr(rbuf, "q=next"));
    ck_assert_int_eq(n_end, 1);
    ck_assert_int_eq(body_bytes, 3);
}
END_TEST

/* Trailers count against limits.max_header_size like a head does. */
START_TEST(chunked_trailers_too_large_400)
{
    send_str("PUT /up/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n");
    char line[128];
    for (int i = 0; i < 40; i++) {
        snprintf(line, sizeof line, "X-T%02d: %080d\r\n", i, i);
        send_str(line);
    }
    send_str("\r\n");
    ck_assert(pump(closed, 3000));
    ck_assert_ptr_nonnull(strstr(rbuf, "HTTP/1.1 400 "));
    ck_assert_ptr_nonnull(strstr(rbuf, "trailer"));
    ck_assert_int_eq(n_end, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http_conn");
    TCase *tc = tcase_create("conn");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, get_keepalive);
    tcase_add_test(tc, pipelined_in_order);
    tcase_add_test(tc, head_has_no_body);
    tcase_add_test(tc, garbage_400_and_close);
    tcase_add_test(tc, head_too_large_431);
    tcase_add_test(tc, too_many_headers_431);
    tcase_add_test(tc, put_content_length);
    tcase_add_test(tc, put_chunked);
    tcase_add_test(tc, expect_continue_accepted);
    tcase_add_test(tc, expect_continue_rejected);
    tcase_add_test(tc, small_unaccepted_body_discarded);
    tcase_add_test(tc, disconnect_mid_body_aborts);
    tcase_add_test(tc, bad_chunk_aborts_400);
    tcase_add_test(tc, body_timeout_408);
    tcase_add_test(tc, header_timeout_408);
    tcase_add_test(tc, streamed_chunked);
    tcase_add_test(tc, http10_closes);
    tcase_add_test(tc, http10_keepalive);
    tcase_add_test(tc, encoded_nul_400);
    tcase_add_test(tc, router_auth_404_405);
    tcase_add_test(tc, smuggling_cl_and_te_rejected);
    tcase_add_test(tc, file_response_by_sendfile);
    tcase_add_test(tc, pipelined_2400_in_one_send_all_answered);
    tcase_add_test(tc, chunked_trailers_do_not_move_the_head);
    tcase_add_test(tc, chunked_trailers_too_large_400);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/* fuzz_http.c - raw bytes into the HTTP connection layer (http_conn.c via
 * http_server.c and the router), under ASan/UBSan.
 *
 * One process-wide server with one loop and no listeners. Each input is
 * written into one end of a socketpair whose other end is served by
 * http_conn_start(), in pieces whose size comes from the first input byte
 * (so heads and bodies get split at every position), with loop turns in
 * between; then the client half-closes, the loop runs until the connection
 * is gone or stops progressing, and the client end is closed. Routes cover
 * the handler paths: immediate answers, accepted bodies (with pause and
 * resume; on_end reads the head back, after any chunked trailers),
 * refusals before the body, streamed and file responses, HEAD.
 * Build: sh scripts/build-fuzz.sh; run: build/fuzz/fuzz_http fuzz/corpus/http
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "dripd/config.h"
#include "dripd/http.h"
#include "http/http_conn.h"
#include "dripd/log.h"
#include "dripd/router.h"
#include "dripd/util.h"

static struct http_server *srv;
static struct http_thread *thr;
static struct event_base *base;

static void echo_head(struct http_exchange *ex)
{
    const struct http_request *r = http_req(ex);
    char *url = http_absolute_url(ex, "/x"); /* client view: scheme, host */
    http_add_headerf(ex, "X-Client", "%s %s", r->client_addr, url);
    free(url);
    const char *q = http_query_param(ex, "q");
    const char *h = http_header(ex, "X-Test");
    char *body =
        xasprintf("%s %s %s %s", r->method_name, r->path ? r->path : "-", q ? q : "-", h ? h : "-");
    http_add_header(ex, "X-Echo", h ? h : "none");
    http_respond(ex, 200, "text/plain", body, strlen(body));
    free(body);
}

struct up {
    size_t n;
    int pieces;
};

static void up_head(struct http_exchange *ex)
{
    http_set_data(ex, xcalloc(1, sizeof(struct up)));
    http_accept_body(ex);
}

static int up_body(struct http_exchange *ex, const char *data, size_t len)
{
    struct up *u = http_get_data(ex);
    u->n += len;
    if (len > 0 && data[0] == '!') {
        http_respond_problem(ex, 413, "stop at %zu", u->n);
        return -EFBIG;
    }
    if (++u->pieces % 3 == 0) {
        http_pause_body(ex);
        http_resume_body(ex);
    }
    return 0;
}

static void up_end(struct http_exchange *ex)
{
    struct up *u = http_get_data(ex);
    const char *h = http_header(ex, "X-Test");
    /* the head must still be intact after the body (and its trailers) */
    http_add_headerf(ex, "X-Target", "%.40s %s", http_req(ex)->target, h ? h : "-");
    http_add_headerf(ex, "X-Bytes", "%zu", u->n);
    http_respond(ex, 201, "text/plain", "ok", 2);
}

static void up_free(struct http_exchange *ex)
{
    free(http_get_data(ex));
    http_set_data(ex, NULL);
}

static void reject_head(struct http_exchange *ex)
{
    http_close_after(ex);
    http_respond_problem(ex, 409, "no");
}

static void stream_head(struct http_exchange *ex)
{
    http_stream_start(ex, 200, "text/event-stream");
    http_stream_write(ex, "data: 1\n\n", 9);
    http_stream_write(ex, "", 0);
    http_stream_end(ex);
}

static void file_head(struct http_exchange *ex)
{
    int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        http_respond_problem(ex, 500, "open");
        return;
    }
    http_respond_file(ex, 200, "application/octet-stream", fd, 0, 4);
}

static const struct http_route_ops echo_ops = {.route_class = "other", .on_head = echo_head};
static const struct http_route_ops up_ops = {.route_class = "upload",
                                             .on_head = up_head,
                                             .on_body = up_body,
                                             .on_end = up_end,
                                             .on_abort = up_free,
                                             .on_done = up_free};
static const struct http_route_ops reject_ops = {.route_class = "upload", .on_head = reject_head};
static const struct http_route_ops stream_ops = {.route_class = "events", .on_head = stream_head};
static const struct http_route_ops file_ops = {.route_class = "content", .on_head = file_head};

static void init(void)
{
    log_set_level(LOG_LVL_ERROR);
    struct dr_config *cfg = config_defaults(); /* lives for the process */
    cfg->limits.max_header_size = 4096;
    cfg->limits.max_headers = 20;
    cfg->limits.max_upload_size = 1 << 20;
    cfg->n_users = 1;
    cfg->users = xcalloc(1, sizeof *cfg->users);
    cfg->users[0].name = xstrdup("u");
    cfg->users[0].token = xstrdup("t");
    /* the peer below is trusted: X-Forwarded-* and Forwarded get parsed,
     * and CORS answers every request with an Origin */
    cfg->n_trusted_proxies = 1;
    cfg->trusted_proxies = xcalloc(1, sizeof(char *));
    cfg->trusted_proxies[0] = xstrdup("127.0.0.0/8");
    cfg->cors.n_origins = 1;
    cfg->cors.origins = xcalloc(1, sizeof(char *));
    cfg->cors.origins[0] = xstrdup("https://app.example");
    router_reset();
    router_add("GET", "/echo", false, &echo_ops);
    router_add("*", "/any/", false, &echo_ops);
    router_add("PUT", "/up/", false, &up_ops);
    router_add("POST", "/up/", true, &up_ops);
    router_add("PUT", "/reject", false, &reject_ops);
    router_add("GET", "/stream", false, &stream_ops);
    router_add("GET", "/file", false, &file_ops);
    struct http_server_opts o = {.cfg = cfg, .threads = 1, .dispatch = router_dispatch};
    if (http_server_create(&o, &srv) != 0)
        abort();
    thr = http_server_thread(srv, 0);
    base = http_thread_base(thr);
}

static void drain_client(int fd)
{
    char buf[65536];
    while (read(fd, buf, sizeof buf) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (srv == NULL)
        init();
    if (size == 0)
        return 0;
    size_t piece = (size_t)data[0] % 64 + 1;
    if (data[0] >= 192)
        piece = size; /* all at once, to exercise pipelining */
    data++;
    size--;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return 0;
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    http_conn_start(thr, sv[0], "127.0.0.1:1", false);
    size_t off = 0;
    int stuck = 0;
    while (off < size && stuck < 1000) {
        size_t n = size - off < piece ? size - off : piece;
        ssize_t w = write(sv[1], data + off, n);
        if (w > 0)
            off += (size_t)w;
        else if (w < 0 && errno != EAGAIN)
            break; /* the server closed */
        else
            stuck++;
        event_base_loop(base, EVLOOP_NONBLOCK);
        drain_client(sv[1]);
    }
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < 50 && *http_thread_conn_list(thr) != NULL; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        drain_client(sv[1]);
    }
    close(sv[1]);
    for (int i = 0; i < 50 && *http_thread_conn_list(thr) != NULL; i++)
        event_base_loop(base, EVLOOP_NONBLOCK);
    while (*http_thread_conn_list(thr) != NULL) /* lingering or waiting: end it */
        http_conn_abort(*http_thread_conn_list(thr));
    return 0;
}

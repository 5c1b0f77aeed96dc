/* tls.c - the front end's TLS (tls.h).
 *
 * What: one SSL_CTX per http worker, loaded from tls.cert (the
 * certificate and its chain) and tls.key, and thin non-blocking wrappers
 * for one connection's handshake, reads and writes. The connection code
 * (http_conn.c) keeps its own fd events. OpenSSL reads records straight
 * from the socket, but writes them into an evbuffer of the connection
 * (a small BIO of our own, below), which the connection sends with
 * writev: several 16 KiB records per system call instead of one each
 * (the difference between ~110 and several hundred MB/s here). So a
 * write never waits inside OpenSSL: the connection bounds the ciphertext
 * it lets pile up. No bufferevent_openssl: the front end does not use
 * bufferevents (docs/HTTP.md says why).
 *
 * Choices: TLS 1.2 and 1.3 (OpenSSL's default ciphers), ALPN answers
 * "http/1.1" (so a client that prefers h2 falls back at once), no
 * renegotiation, an unexpected EOF reads as a plain EOF (many clients
 * skip close_notify), partial writes with a moving write buffer (the
 * caller writes from an evbuffer's first chunk), and
 * SSL_MODE_RELEASE_BUFFERS so an idle keep-alive connection holds no
 * 16 KiB record buffers. An encrypted private key is
 * refused (no one is there to type a passphrase); config.c refuses it
 * first, with the file and line.
 *
 * Reload: a certificate is read once per worker. SIGHUP starts a new
 * generation of workers (docs/OPERATIONS.md), which reads the files
 * again: new connections get the new certificate, connections of the old
 * generation finish on the old one.
 *
 * Threads: the context is read-only once made; an SSL is used by one loop
 * thread. Every wrapper clears this thread's OpenSSL error queue first.
 */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>

#include "dripd/config.h"
#include "dripd/log.h"
#include "dripd/util.h"

struct tls_ctx {
    SSL_CTX *ctx;
};

/* ---- the write BIO: records go into the connection's evbuffer ---- */

static BIO_METHOD *evb_method;
static pthread_once_t evb_once = PTHREAD_ONCE_INIT;

static int evb_write(BIO *b, const char *data, int len)
{
    BIO_clear_retry_flags(b);
    if (len <= 0)
        return 0;
    if (evbuffer_add(BIO_get_data(b), data, (size_t)len) != 0)
        return -1;
    return len;
}

static long evb_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int evb_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void evb_init(void)
{
    evb_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "dripd evbuffer");
    if (evb_method == NULL || BIO_meth_set_write(evb_method, evb_write) != 1 ||
        BIO_meth_set_ctrl(evb_method, evb_ctrl) != 1 ||
        BIO_meth_set_create(evb_method, evb_create) != 1) {
        log_error("http: out of OpenSSL resources");
        abort();
    }
}

static int alpn_select(SSL *s, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)s;
    (void)arg;
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel = NULL;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no ALPN in the answer: HTTP/1.1 anyway */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

const char *tls_last_error(char *buf, size_t len)
{
    unsigned long e = ERR_peek_last_error();
    if (e == 0)
        snprintf(buf, len, "%s", errno ? strerror(errno) : "connection closed");
    else
        ERR_error_string_n(e, buf, len);
    return buf;
}

int tls_ctx_new(const struct dr_config *cfg, struct tls_ctx **out)
{
    char why[256];
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL)
        goto fail;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_default_passwd_cb(ctx, config_no_passphrase); /* as config.c's check */
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls.cert) != 1) {
        log_error("tls: cannot load tls.cert %s: %s", cfg->tls.cert,
                  tls_last_error(why, sizeof why));
        goto fail_logged;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls.key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        log_error("tls: cannot use tls.key %s: %s", cfg->tls.key, tls_last_error(why, sizeof why));
        goto fail_logged;
    }
    struct tls_ctx *t = xcalloc(1, sizeof *t);
    t->ctx = ctx;
    *out = t;
    ERR_clear_error();
    return 0;
fail:
    log_error("tls: cannot make a TLS context: %s", tls_last_error(why, sizeof why));
fail_logged:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return -EKEYREJECTED;
}

void tls_ctx_free(struct tls_ctx *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t);
}

SSL *tls_conn_new(struct tls_ctx *t, int fd, struct evbuffer *out)
{
    pthread_once(&evb_once, evb_init);
    ERR_clear_error();
    SSL *s = SSL_new(t->ctx);
    BIO *rb = BIO_new_socket(fd, BIO_NOCLOSE);
    BIO *wb = BIO_new(evb_method);
    if (s == NULL || rb == NULL || wb == NULL) {
        log_error("http: out of OpenSSL resources");
        abort(); /* like an allocation failure (util.h) */
    }
    BIO_set_data(wb, out);
    SSL_set_bio(s, rb, wb); /* s owns both */
    SSL_set_accept_state(s);
    return s;
}

void tls_conn_free(SSL *s)
{
    SSL_free(s);
}

/* The outcome of a call that returned rc <= 0. */
static enum tls_io outcome(SSL *s, int rc)
{
    switch (SSL_get_error(s, rc)) {
    case SSL_ERROR_WANT_READ:
        return TLS_IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return TLS_IO_EOF;
    case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0 && (errno == 0 || errno == ECONNRESET || errno == EPIPE))
            return TLS_IO_EOF;
        return TLS_IO_ERROR;
    default:
        return TLS_IO_ERROR;
    }
}

enum tls_io tls_handshake(SSL *s)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(s);
    return rc == 1 ? TLS_IO_OK : outcome(s, rc);
}

enum tls_io tls_read(SSL *s, void *buf, size_t len, size_t *got)
{
    ERR_clear_error();
    errno = 0;
    *got = 0;
    if (SSL_read_ex(s, buf, len, got) == 1)
        return TLS_IO_OK;
    return outcome(s, 0);
}

enum tls_io tls_write(SSL *s, const void *buf, size_t len, size_t *put)
{
    ERR_clear_error();
    errno = 0;
    *put = 0;
    if (SSL_write_ex(s, buf, len, put) == 1)
        return TLS_IO_OK;
    return outcome(s, 0);
}

bool tls_plain_http(void)
{
    unsigned long e = ERR_peek_last_error();
    return ERR_GET_LIB(e) == ERR_LIB_SSL && (ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST ||
                                             ERR_GET_REASON(e) == SSL_R_HTTPS_PROXY_REQUEST);
}

bool tls_pending(SSL *s)
{
    /* decrypted bytes of a record a short read left behind; not
     * SSL_has_pending(), which is also true for half a record that the
     * socket must still complete (waiting for it would spin) */
    return SSL_pending(s) > 0;
}

void tls_close_notify(SSL *s)
{
    ERR_clear_error();
    if (SSL_is_init_finished(s))
        (void)SSL_shutdown(s);
    ERR_clear_error();
}

const char *tls_describe(SSL *s, char *buf, size_t len)
{
    const char *cipher = SSL_get_cipher_name(s);
    snprintf(buf, len, "%s %s", SSL_get_version(s), cipher ? cipher : "-");
    return buf;
}

/* tls.h - TLS for the front end's own connection code (OpenSSL): the
 * server context made from `tls: {cert, key}`, and non-blocking record
 * I/O on a connection's socket with OpenSSL's want-read/want-write folded
 * into four answers. Internal to the front end: http_server.c owns the
 * context, http_conn.c drives one SSL per connection over its fd-driven
 * state machine (docs/HTTP.md, "TLS").
 *
 * Threads: a context is created before the loops start and only read
 * afterwards (OpenSSL's SSL_CTX is safe to share for SSL_new); an SSL
 * belongs to its connection's loop thread. OpenSSL's error queue is per
 * thread; every call here clears it first, so a stale error from an
 * earlier call never decides the fate of this one.
 */
#ifndef DRIPD_TLS_H
#define DRIPD_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct dr_config;
struct evbuffer;
struct tls_ctx;
typedef struct ssl_st SSL;

enum tls_io {
    TLS_IO_OK,         /* done (some bytes moved, or the handshake finished) */
    TLS_IO_WANT_READ,  /* retry once the socket is readable */
    TLS_IO_WANT_WRITE, /* never with tls_conn_new's write buffer; kept for completeness */
    TLS_IO_EOF,        /* the peer closed (close_notify, or a plain EOF) */
    TLS_IO_ERROR,      /* a protocol or socket error: close the connection */
};

/* The server context for cfg->tls (TLS 1.2+, ALPN http/1.1, no
 * renegotiation, buffers released while idle). 0 and *out, or -EKEYREJECTED
 * with the reason logged (a cert or key that no longer loads). */
int tls_ctx_new(const struct dr_config *cfg, struct tls_ctx **out);
void tls_ctx_free(struct tls_ctx *t); /* NULL ok */
/* A server-side SSL reading records from fd (not owned: the caller
 * closes it) and appending the records it writes to out (not owned; it
 * must outlive the SSL): the caller sends them. */
SSL *tls_conn_new(struct tls_ctx *t, int fd, struct evbuffer *out);
void tls_conn_free(SSL *s); /* NULL ok */

enum tls_io tls_handshake(SSL *s);
/* Up to len plaintext bytes into buf; *got bytes on TLS_IO_OK. */
enum tls_io tls_read(SSL *s, void *buf, size_t len, size_t *got);
/* Encrypt up to len bytes of buf into the connection's record buffer
 * (partial writes allowed); *put on TLS_IO_OK. */
enum tls_io tls_write(SSL *s, const void *buf, size_t len, size_t *put);
/* Decrypted bytes wait inside OpenSSL (a read stopped short of a
 * record's end): a read would not block although the socket may not be
 * readable again. */
bool tls_pending(SSL *s);
/* Queue our close_notify in the record buffer (send it, then
 * shutdown(SHUT_WR)). */
void tls_close_notify(SSL *s);
/* The handshake that just failed on this thread met a plain HTTP request. */
bool tls_plain_http(void);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384", for the debug log. */
const char *tls_describe(SSL *s, char *buf, size_t len);
/* Why the last TLS_IO_ERROR on this thread happened, for the debug log. */
const char *tls_last_error(char *buf, size_t len);

#endif

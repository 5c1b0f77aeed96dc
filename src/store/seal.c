/* seal.c - sealing and unsealing dripd objects (format: docs/FORMAT.md).
 *
 * DESIGN
 *
 * Layout: header || segment_0 || ... || segment_{n-1}; segment i is
 * AES-256-GCM(data key, nonce = prefix || be32(i), aad = H || be64(i) ||
 * final(i)) of plaintext bytes [i*S, min((i+1)*S, size)) followed by its
 * 16-byte tag, where final(i) is 1 only for the last segment.
 *
 * Version 2 (written since issue 17): the header's clear part says only
 * how to read the object (magic, version, lengths, segment size, the
 * wrapped data key, the nonce prefix). Everything about the media - its
 * id, created_at, size, owner, path, content type and plaintext SHA-256 -
 * is the "meta" block, zero-padded to a multiple of 256 bytes (so its
 * length does not give away the length of the path) and sealed with
 * AES-256-GCM under the data key (nonce prefix || 0xffffffff, aad = the
 * clear part), so whoever can read the bucket sees none of it, and the
 * meta tag authenticates every header byte. H = SHA-256(clear part ||
 * meta without its SHA-256). (The object's length still tells the
 * plaintext size, as for any unpadded cipher: docs/FORMAT.md.)
 * Version 1 (read only): the same fields in clear, H = SHA-256 of the
 * header up to its plaintext SHA-256, and a GMAC header tag (same nonce)
 * over every header byte before it.
 * So every segment is bound to its object (H), to its place (i) and to
 * the end (final), and an object's length follows from its header.
 *
 * One pass: sealing reads the plaintext once in CHUNK (256 KiB) chunks, hashing and
 * encrypting each chunk, writes the header with a zeroed meta block first
 * and writes the sealed meta block (which holds the SHA-256) at the end
 * (pwrite); an object of one chunk is written once, at the end, header
 * and segments together. Then it fsyncs (unless the
 * caller says the file is scratch, see seal_params.scratch). Writeback is
 * started every 8 MiB (sync_file_range) so the disk works while the CPU
 * encrypts, and the final fsync has little left to do. For objects of
 * 8 MiB and more the SHA-256 runs on a helper thread (struct hasher) beside
 * the cipher, and input and output go through a small page-cache window
 * kept by another helper (struct pager). One EVP cipher context per call is keyed
 * once and only re-IVed per segment.
 *
 * Unsealing checks the header (magic, version, bounds, key unwrap, header
 * tag) and the object length before it decrypts anything, then every
 * segment tag in order, then the SHA-256 of all the plaintext
 * (unseal_fd_tags, for cache fills, stops after the tags: seal.h).
 *
 * Threads: any; no shared state but each thread's spare unseal buffer.
 * Memory per call: for objects of 8 MiB and more, RING input (seal) or
 * output (unseal) chunks of 256 KiB for the hasher plus one chunk on the
 * other side, about 1 MiB; smaller objects use one chunk each way, sized
 * to the object (a 4 KiB object needs 64 KiB). Unsealing a small object
 * takes its two chunks from the calling thread's spare (struct spare:
 * kept when the call ends, at most SPARE_MAX, freed when the thread
 * exits): the cache fills of a GET that misses are mostly small objects,
 * and with the pipeline's fixed mmap threshold (pipeline_worker.c) every
 * fresh buffer was an mmap, a page fault per 4 KiB and a munmap, about a
 * tenth of a 1 MiB fill's CPU.
 */
#include "dripd/seal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/util.h"

#define FIXED_LEN 128                        /* v1: bytes before the owner field */
#define TRAILER_LEN (32 + SEAL_TAG_LEN)      /* v1: plaintext SHA-256 + header tag */
#define V2_CLEAR_LEN 90                      /* v2: the clear part, up to the meta block */
#define V2_META_FIXED 42                     /* v2 meta: media id, created_at, size */
#define V2_META_MIN (V2_META_FIXED + 6 + 32) /* ... three empty texts, SHA-256 */
/* v2 meta blocks are zero-padded to a multiple of this, so the header's
 * length does not tell how long the owner, path and content type are */
#define V2_META_ALIGN 256
/* Plaintext bytes per read (rounded to segments). 256 KiB reads run as
 * fast as 1 MiB ones here (the cipher, the hash and the disk dominate), and
 * keep a call's buffers near 1 MiB instead of 4 MiB: the pipeline process
 * runs up to one seal per encrypt thread and one unseal per decrypt thread. */
#define CHUNK (256u << 10)
#define KICK_WRITEBACK (8u << 20)
#define HEADER_NONCE_CTR 0xffffffffu

/* ---- byte helpers ---- */

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return rc;
}

uint64_t seal_segments(uint64_t size, uint32_t segment_size)
{
    if (segment_size == 0)
        return 0;
    return size == 0 ? 1 : (size + segment_size - 1) / segment_size;
}

uint64_t seal_object_size(uint32_t header_len, uint64_t size, uint32_t segment_size)
{
    return (uint64_t)header_len + size + SEAL_TAG_LEN * seal_segments(size, segment_size);
}

void seal_header_clear(struct seal_header *h)
{
    if (h == NULL)
        return;
    free(h->owner);
    free(h->path);
    free(h->content_type);
    memset(h, 0, sizeof *h);
}

/* ---- GCM pieces ---- */

static void make_nonce(uint8_t nonce[12], const uint8_t prefix[SEAL_NONCE_PREFIX_LEN], uint32_t ctr)
{
    memcpy(nonce, prefix, SEAL_NONCE_PREFIX_LEN);
    put32(nonce + SEAL_NONCE_PREFIX_LEN, ctr);
}

static void make_aad(uint8_t aad[41], const uint8_t hbind[32], uint64_t idx, bool final)
{
    memcpy(aad, hbind, 32);
    put64(aad + 32, idx);
    aad[40] = final ? 1 : 0;
}

/* GMAC of the header (everything before its tag). */
static int header_tag(const uint8_t key[DR_KEY_LEN], const uint8_t *hdr, size_t len_before_tag,
                      const uint8_t prefix[SEAL_NONCE_PREFIX_LEN], uint8_t tag[SEAL_TAG_LEN])
{
    uint8_t nonce[12];
    make_nonce(nonce, prefix, HEADER_NONCE_CTR);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = c != NULL;
    uint8_t dummy[16];
    ok = ok && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1;
    ok = ok && EVP_EncryptUpdate(c, NULL, &len, hdr, (int)len_before_tag) == 1;
    ok = ok && EVP_EncryptFinal_ex(c, dummy, &len) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -EIO;
}

static void sha256(const void *buf, size_t len, uint8_t out[32])
{
    unsigned n = 32;
    EVP_Digest(buf, len, out, &n, EVP_sha256(), NULL);
}

/* ---- SHA-256 beside the cipher ----
 * For big objects the plaintext hash runs on a helper thread ("seal-sha"),
 * overlapping AES-GCM and the file I/O on the caller's thread; SHA-256 is
 * the slowest of the three per byte. The caller cycles through RING
 * buffers: it hands buffer n to the hasher (hasher_submit) and, before
 * refilling the buffer of submission n, waits until the hasher is done
 * with submission n - RING (hasher_wait). Small objects hash inline. */
#define RING 3
#define THREADED_HASH_MIN (8u << 20)

/* A thread's spare buffer for unsealing small objects (see the top): the
 * biggest one-chunk input and output, so any small object fits. */
#define SPARE_MAX (2 * (size_t)CHUNK + 2 * (CHUNK / SEAL_MIN_SEGMENT + 1) * SEAL_TAG_LEN)
static pthread_key_t spare_key;
static pthread_once_t spare_once = PTHREAD_ONCE_INIT;

static void spare_key_init(void)
{
    if (pthread_key_create(&spare_key, free) != 0)
        abort(); /* only when the process is out of keys at start */
}

/* A buffer of len bytes: the thread's spare when len fits it (it is the
 * caller's until spare_give), else a new one. */
static uint8_t *spare_take(size_t len)
{
    if (len > SPARE_MAX)
        return xmalloc(len);
    pthread_once(&spare_once, spare_key_init);
    uint8_t *p = pthread_getspecific(spare_key);
    if (p == NULL)
        return xmalloc(SPARE_MAX);
    pthread_setspecific(spare_key, NULL);
    return p;
}

/* Back from spare_take(len): kept as the thread's spare, or freed. */
static void spare_give(uint8_t *p, size_t len)
{
    if (p == NULL)
        return;
    if (len > SPARE_MAX || pthread_getspecific(spare_key) != NULL ||
        pthread_setspecific(spare_key, p) != 0)
        free(p);
}

struct hasher {
    EVP_MD_CTX *md;
    bool threaded, stop;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const uint8_t *buf[RING];
    size_t len[RING];
    uint64_t posted, done;
};

static void *hasher_main(void *arg)
{
    struct hasher *h = arg;
    pthread_setname_np(pthread_self(), "seal-sha");
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->done == h->posted && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->done == h->posted)
            break;
        unsigned slot = (unsigned)(h->done % RING);
        const uint8_t *b = h->buf[slot];
        size_t n = h->len[slot];
        pthread_mutex_unlock(&h->mu);
        EVP_DigestUpdate(h->md, b, n);
        pthread_mutex_lock(&h->mu);
        h->done++;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static int hasher_init(struct hasher *h, bool threaded)
{
    memset(h, 0, sizeof *h);
    h->md = EVP_MD_CTX_new();
    if (h->md == NULL || EVP_DigestInit_ex(h->md, EVP_sha256(), NULL) != 1)
        return -EIO;
    if (!threaded)
        return 0;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->threaded = dr_thread_start(&h->tid, hasher_main, h) == 0;
    if (!h->threaded) {
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
    }
    return 0;
}

/* Wait until submissions [0, upto) are hashed. */
static void hasher_wait(struct hasher *h, uint64_t upto)
{
    if (!h->threaded)
        return;
    pthread_mutex_lock(&h->mu);
    while (h->done < upto && h->done < h->posted)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

/* Submission number h->posted: buf stays untouched until hasher_wait(n + 1). */
static void hasher_submit(struct hasher *h, const uint8_t *buf, size_t len)
{
    if (!h->threaded) {
        EVP_DigestUpdate(h->md, buf, len);
        h->posted++;
        h->done++;
        return;
    }
    pthread_mutex_lock(&h->mu);
    while (h->posted - h->done >= RING)
        pthread_cond_wait(&h->cv, &h->mu);
    h->buf[h->posted % RING] = buf;
    h->len[h->posted % RING] = len;
    h->posted++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Stop the helper (after finishing what was submitted); out may be NULL. */
static void hasher_finish(struct hasher *h, uint8_t out[32])
{
    if (h->threaded) {
        pthread_mutex_lock(&h->mu);
        h->stop = true;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->tid, NULL);
        pthread_mutex_destroy(&h->mu);
        pthread_cond_destroy(&h->cv);
        h->threaded = false;
    }
    if (h->md && out) {
        unsigned n = 32;
        EVP_DigestFinal_ex(h->md, out, &n);
    }
    EVP_MD_CTX_free(h->md);
    h->md = NULL;
}

/* ---- header ---- */

/* A v2 header being written: the header bytes (the meta block and its
 * tag zeroed until the end) and the meta plaintext (its SHA-256 zeroed). */
struct v2_header {
    uint8_t *hdr;
    size_t hl;
    uint8_t *meta;
    size_t meta_len;
};

static uint8_t *put_text(uint8_t *q, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put16(q, (uint16_t)n);
    if (n)
        memcpy(q + 2, s, n);
    return q + 2 + n;
}

static void build_header(const struct seal_params *p, uint64_t size, const uint8_t prefix[8],
                         struct v2_header *v)
{
    size_t lo = strlen(p->owner), lp = strlen(p->path);
    size_t lc = p->content_type ? strlen(p->content_type) : 0;
    size_t used = V2_META_FIXED + 2 + lo + 2 + lp + 2 + lc + 32;
    v->meta_len = (used + V2_META_ALIGN - 1) / V2_META_ALIGN * V2_META_ALIGN;
    v->hl = V2_CLEAR_LEN + v->meta_len + SEAL_TAG_LEN;
    uint8_t *h = xcalloc(1, v->hl), *m = xcalloc(1, v->meta_len);
    memcpy(h, SEAL_MAGIC, 6);
    put16(h + 6, SEAL_VERSION);
    put32(h + 8, (uint32_t)v->hl);
    put32(h + 12, p->segment_size);
    put16(h + 16, DR_WRAPPED_KEY_LEN);
    memcpy(h + 18, p->wrapped_key, DR_WRAPPED_KEY_LEN);
    memcpy(h + 78, prefix, SEAL_NONCE_PREFIX_LEN);
    put32(h + 86, (uint32_t)v->meta_len);
    memcpy(m, p->media_id, DR_ID_LEN);
    put64(m + 26, (uint64_t)p->created_at);
    put64(m + 34, size);
    uint8_t *q = put_text(m + V2_META_FIXED, p->owner);
    q = put_text(q, p->path);
    (void)put_text(q, p->content_type);
    v->hdr = h;
    v->meta = m;
}

/* H of a v2 object: the clear part and the meta block up to its SHA-256. */
static void v2_hbind(const uint8_t *clear, const uint8_t *meta, size_t meta_len, uint8_t out[32])
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned n = 32;
    if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(md, clear, V2_CLEAR_LEN) != 1 ||
        EVP_DigestUpdate(md, meta, meta_len - 32) != 1 || EVP_DigestFinal_ex(md, out, &n) != 1)
        memset(out, 0, 32); /* fails every segment: never silently wrong */
    EVP_MD_CTX_free(md);
}

/* Seal (enc) or open the meta block of a v2 header in place: AES-256-GCM
 * under the data key, nonce prefix || 0xffffffff, aad = the clear part.
 * Opening checks the tag: -EBADMSG when it does not match. */
static int v2_meta_crypt(const uint8_t key[DR_KEY_LEN], const uint8_t *clear,
                         const uint8_t prefix[SEAL_NONCE_PREFIX_LEN], const uint8_t *in,
                         uint8_t *out, size_t len, uint8_t tag[SEAL_TAG_LEN], bool enc)
{
    uint8_t nonce[12], fin[16];
    make_nonce(nonce, prefix, HEADER_NONCE_CTR);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, ok = c != NULL;
    if (enc) {
        ok = ok && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1;
        ok = ok && EVP_EncryptUpdate(c, NULL, &n, clear, V2_CLEAR_LEN) == 1;
        ok = ok && EVP_EncryptUpdate(c, out, &n, in, (int)len) == 1;
        ok = ok && EVP_EncryptFinal_ex(c, fin, &n) == 1;
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, tag) == 1;
        EVP_CIPHER_CTX_free(c);
        return ok ? 0 : -EIO;
    }
    ok = ok && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce) == 1;
    ok = ok && EVP_DecryptUpdate(c, NULL, &n, clear, V2_CLEAR_LEN) == 1;
    ok = ok && EVP_DecryptUpdate(c, out, &n, in, (int)len) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) == 1;
    bool set_up = ok;
    ok = ok && EVP_DecryptFinal_ex(c, fin, &n) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : set_up ? -EBADMSG : -EIO;
}

static bool text_ok(const uint8_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == 0)
            return false;
    return true;
}

/* The three length-prefixed texts (owner, path, content type) in
 * [off, end), followed by zero bytes up to end when padded (v2):
 * str/slen get them; -EBADMSG when they overrun or are bad. */
static int parse_texts(const uint8_t *b, size_t off, size_t end, bool padded, const uint8_t *str[3],
                       size_t slen[3], char *err, size_t errlen)
{
    for (int i = 0; i < 3; i++) {
        if (off + 2 > end)
            return fail(err, errlen, -EBADMSG, "object corrupt: header fields overrun");
        slen[i] = get16(b + off);
        str[i] = b + off + 2;
        off += 2 + slen[i];
        if (off > end || !text_ok(str[i], slen[i]))
            return fail(err, errlen, -EBADMSG, "object corrupt: header fields overrun");
    }
    for (; padded && off < end && b[off] == 0; off++)
        ;
    if (off != end || slen[0] == 0 || slen[1] == 0)
        return fail(err, errlen, -EBADMSG, "object corrupt: bad header fields");
    return 0;
}

/* Segment size and plaintext size as a header gives them. */
static int check_sizes(struct seal_header *h, char *err, size_t errlen)
{
    if (h->segment_size < SEAL_MIN_SEGMENT || h->segment_size > SEAL_MAX_SEGMENT)
        return fail(err, errlen, -EBADMSG, "object corrupt: bad segment size %" PRIu32,
                    h->segment_size);
    if (h->size > (UINT64_C(1) << 60) ||
        seal_segments(h->size, h->segment_size) >= HEADER_NONCE_CTR)
        return fail(err, errlen, -EBADMSG, "object corrupt: bad plaintext size %" PRIu64, h->size);
    return 0;
}

/* Version 2: clear part, then the sealed meta block (see the top). */
static int parse_v2(const uint8_t *b, size_t len, const uint8_t master[DR_KEY_LEN],
                    struct seal_header *h, uint8_t data_key[DR_KEY_LEN], uint8_t hbind[32],
                    char *err, size_t errlen)
{
    uint8_t key[DR_KEY_LEN];
    uint8_t *m = NULL;
    int rc;
    uint32_t hl = get32(b + 8);
    if (hl < V2_CLEAR_LEN + V2_META_MIN + SEAL_TAG_LEN || hl > SEAL_HEADER_MAX)
        return fail(err, errlen, -EBADMSG, "object corrupt: bad header length %" PRIu32, hl);
    h->header_len = hl;
    if (len < hl)
        return fail(err, errlen, -EMSGSIZE, "object header: need %" PRIu32 " bytes", hl);
    h->segment_size = get32(b + 12);
    if (h->segment_size < SEAL_MIN_SEGMENT || h->segment_size > SEAL_MAX_SEGMENT)
        return fail(err, errlen, -EBADMSG, "object corrupt: bad segment size %" PRIu32,
                    h->segment_size);
    if (get16(b + 16) != DR_WRAPPED_KEY_LEN)
        return fail(err, errlen, -EBADMSG, "object corrupt: bad wrapped key length");
    memcpy(h->wrapped_key, b + 18, DR_WRAPPED_KEY_LEN);
    memcpy(h->nonce_prefix, b + 78, SEAL_NONCE_PREFIX_LEN);
    size_t ml = get32(b + 86);
    if (ml < V2_META_MIN || V2_CLEAR_LEN + ml + SEAL_TAG_LEN != hl)
        return fail(err, errlen, -EBADMSG, "object corrupt: bad header length %" PRIu32, hl);
    if (keys_unwrap(master, h->wrapped_key, DR_WRAPPED_KEY_LEN, key) != 0)
        return fail(err, errlen, -EBADMSG,
                    "object corrupt or wrong master key: the data key does not unwrap");
    m = xmalloc(ml);
    uint8_t tag[SEAL_TAG_LEN];
    memcpy(tag, b + V2_CLEAR_LEN + ml, SEAL_TAG_LEN);
    rc = v2_meta_crypt(key, b, h->nonce_prefix, b + V2_CLEAR_LEN, m, ml, tag, false);
    if (rc != 0) {
        rc = rc == -EBADMSG ? fail(err, errlen, rc, "object corrupt: header tag mismatch")
                            : fail(err, errlen, rc, "libcrypto: AES-256-GCM failed");
        goto out;
    }
    /* authenticated from here: a bad field is a writer's bug, still refused */
    memcpy(h->media_id, m, DR_ID_LEN);
    h->media_id[DR_ID_LEN] = '\0';
    h->created_at = (int64_t)get64(m + 26);
    h->size = get64(m + 34);
    const uint8_t *str[3] = {NULL, NULL, NULL};
    size_t slen[3] = {0, 0, 0};
    if (!text_ok(m, DR_ID_LEN)) {
        rc = fail(err, errlen, -EBADMSG, "object corrupt: bad media id");
        goto out;
    }
    rc = check_sizes(h, err, errlen);
    if (rc == 0)
        rc = parse_texts(m, V2_META_FIXED, ml - 32, true, str, slen, err, errlen);
    if (rc != 0)
        goto out;
    memcpy(h->sha256, m + ml - 32, 32);
    dr_hex(h->sha256, 32, h->sha256_hex);
    h->object_size = seal_object_size(hl, h->size, h->segment_size);
    h->owner = xstrndup((const char *)str[0], slen[0]);
    h->path = xstrndup((const char *)str[1], slen[1]);
    h->content_type = slen[2] ? xstrndup((const char *)str[2], slen[2]) : NULL;
    if (hbind)
        v2_hbind(b, m, ml, hbind);
    if (data_key)
        memcpy(data_key, key, DR_KEY_LEN);
out:
    if (m != NULL) {
        OPENSSL_cleanse(m, ml);
        free(m);
    }
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* Version 1 (read only): every field in clear, a GMAC header tag. */
static int parse_v1(const uint8_t *b, size_t len, const uint8_t master[DR_KEY_LEN],
                    struct seal_header *h, uint8_t data_key[DR_KEY_LEN], uint8_t hbind[32],
                    char *err, size_t errlen)
{
    uint8_t key[DR_KEY_LEN];
    int rc;
    uint32_t hl = get32(b + 8);
    if (hl < FIXED_LEN + 6 + TRAILER_LEN || hl > SEAL_HEADER_MAX)
        return fail(err, errlen, -EBADMSG, "object corrupt: bad header length %" PRIu32, hl);
    h->header_len = hl;
    if (len < hl)
        return fail(err, errlen, -EMSGSIZE, "object header: need %" PRIu32 " bytes", hl);
    h->segment_size = get32(b + 12);
    h->size = get64(b + 16);
    h->created_at = (int64_t)get64(b + 24);
    rc = check_sizes(h, err, errlen);
    if (rc != 0)
        return rc;
    memcpy(h->media_id, b + 32, DR_ID_LEN);
    h->media_id[DR_ID_LEN] = '\0';
    if (!text_ok(b + 32, DR_ID_LEN))
        return fail(err, errlen, -EBADMSG, "object corrupt: bad media id");
    if (get16(b + 58) != DR_WRAPPED_KEY_LEN)
        return fail(err, errlen, -EBADMSG, "object corrupt: bad wrapped key length");
    memcpy(h->wrapped_key, b + 60, DR_WRAPPED_KEY_LEN);
    memcpy(h->nonce_prefix, b + 120, SEAL_NONCE_PREFIX_LEN);
    size_t end = hl - TRAILER_LEN;
    const uint8_t *str[3] = {NULL, NULL, NULL};
    size_t slen[3] = {0, 0, 0};
    rc = parse_texts(b, FIXED_LEN, end, false, str, slen, err, errlen);
    if (rc != 0)
        return rc;
    memcpy(h->sha256, b + end, 32);
    dr_hex(h->sha256, 32, h->sha256_hex);
    h->object_size = seal_object_size(hl, h->size, h->segment_size);

    if (keys_unwrap(master, h->wrapped_key, DR_WRAPPED_KEY_LEN, key) != 0) {
        rc = fail(err, errlen, -EBADMSG,
                  "object corrupt or wrong master key: the data key does not unwrap");
        goto bad;
    }
    uint8_t tag[SEAL_TAG_LEN];
    if (header_tag(key, b, hl - SEAL_TAG_LEN, h->nonce_prefix, tag) != 0) {
        rc = fail(err, errlen, -EIO, "libcrypto: AES-256-GCM failed");
        goto bad;
    }
    if (!dr_consttime_eq(tag, sizeof tag, b + hl - SEAL_TAG_LEN, SEAL_TAG_LEN)) {
        rc = fail(err, errlen, -EBADMSG, "object corrupt: header tag mismatch");
        goto bad;
    }
    h->owner = xstrndup((const char *)str[0], slen[0]);
    h->path = xstrndup((const char *)str[1], slen[1]);
    h->content_type = slen[2] ? xstrndup((const char *)str[2], slen[2]) : NULL;
    if (hbind)
        sha256(b, end, hbind);
    if (data_key)
        memcpy(data_key, key, DR_KEY_LEN);
    OPENSSL_cleanse(key, sizeof key);
    return 0;
bad:
    OPENSSL_cleanse(key, sizeof key);
    return rc;
}

/* Parse + authenticate either version. data_key and hbind (may be NULL)
 * receive the data key and the header digest bound into every segment. */
static int parse_header(const uint8_t *b, size_t len, const uint8_t master[DR_KEY_LEN],
                        struct seal_header *h, uint8_t data_key[DR_KEY_LEN], uint8_t hbind[32],
                        char *err, size_t errlen)
{
    memset(h, 0, sizeof *h);
    if (len < 6 && memcmp(b, SEAL_MAGIC, len) == 0)
        return fail(err, errlen, -EMSGSIZE, "object header: need more bytes");
    if (len < 6 || memcmp(b, SEAL_MAGIC, 6) != 0)
        return fail(err, errlen, -EBADMSG, "object corrupt: not a dripd object (bad magic)");
    if (len < 12)
        return fail(err, errlen, -EMSGSIZE, "object header: need more bytes");
    h->version = get16(b + 6);
    if (h->version == 2)
        return parse_v2(b, len, master, h, data_key, hbind, err, errlen);
    if (h->version == 1)
        return parse_v1(b, len, master, h, data_key, hbind, err, errlen);
    return fail(err, errlen, -EBADMSG, "object corrupt: unsupported format version %u", h->version);
}

int seal_read_header(const void *buf, size_t len, const uint8_t master[DR_KEY_LEN],
                     struct seal_header *out, char *err, size_t errlen)
{
    int rc = parse_header(buf, len, master, out, NULL, NULL, err, errlen);
    if (rc != 0) {
        uint32_t need = rc == -EMSGSIZE ? out->header_len : 0;
        seal_header_clear(out);
        out->header_len = need;
    }
    return rc;
}

/* ---- streaming big files through a small page-cache window ----
 * On the virtual machines dripd runs on, filling fresh page-cache pages is
 * several times slower than reusing recently freed ones, and a 1 GiB
 * object would otherwise leave 1 GiB of cache behind (the upload path
 * drops the spool file the same way). So for big objects: ask for the
 * windows ahead of the reader (WILLNEED); on the output, start writeback
 * of each window, then wait for the one two windows back and drop it.
 * Dirty memory stays bounded and the final fsync has little left to do.
 * Sealing keeps its input in the page cache: the spool file becomes the
 * media's cache entry in notify, and the first GET would otherwise read
 * it back from disk (500 vs 2,800 MB/s here). Unsealing drops its input
 * (an object nobody reads again soon) behind the reader and keeps its
 * output (a cache entry about to be served).
 *
 * That page-cache work (allocating and reading ahead, evicting, submitting
 * writeback) costs as much CPU as AES-GCM itself: a third of the caller's
 * time in a profile of a 1 GiB seal. So it runs on a helper thread, the
 * pager ("seal-pager"), beside the hasher: the caller only posts how far
 * it has read and written (pager_post). It waits only when its output is
 * more than PAGER_MAX_DIRTY ahead of what the pager has seen written back,
 * which bounds the dirty memory of one call. Measured on this VM (1 GiB,
 * spool not cached, bench/pipeline.sh): accepted -> available 620 -> 790
 * MB/s with the window, then ~750 -> ~880 MB/s with the pager; stored ->
 * cached ~780 -> ~900 MB/s. */
#define PAGER_AHEAD 3 /* windows of input asked for ahead of the reader */
#define PAGER_MAX_DIRTY (64u << 20)

struct pager {
    bool on, stop, drop_in, drop_out;
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t work, room;
    int in_fd, out_fd;
    uint64_t in_size;                 /* input bytes in all (from in_base) */
    uint64_t in_base, out_base;       /* file offsets of byte 0 */
    uint64_t in_pos, out_written;     /* posted by the caller */
    uint64_t in_ahead, in_dropped;    /* the pager's progress */
    uint64_t out_kicked, out_dropped; /* (relative to the bases) */
};

#define W ((uint64_t)KICK_WRITEBACK)

/* One step of work under p->mu, done with the lock released. Returns false
 * when there is nothing to do. */
static bool pager_step(struct pager *p)
{
    if (p->in_fd >= 0 && p->in_ahead < p->in_size && p->in_ahead < p->in_pos + PAGER_AHEAD * W) {
        uint64_t off = p->in_ahead;
        p->in_ahead += W;
        pthread_mutex_unlock(&p->mu);
        posix_fadvise(p->in_fd, (off_t)(p->in_base + off), (off_t)W, POSIX_FADV_WILLNEED);
        pthread_mutex_lock(&p->mu);
        return true;
    }
    if (p->out_fd >= 0 && p->out_written - p->out_kicked >= W) {
        uint64_t from = p->out_kicked, to = p->out_written;
        p->out_kicked = to;
        pthread_mutex_unlock(&p->mu);
        sync_file_range(p->out_fd, (off64_t)(p->out_base + from), (off64_t)(to - from),
                        SYNC_FILE_RANGE_WRITE);
        pthread_mutex_lock(&p->mu);
        return true;
    }
    if (p->out_fd >= 0 && p->out_kicked >= p->out_dropped + 2 * W) {
        uint64_t off = p->out_dropped;
        pthread_mutex_unlock(&p->mu);
        /* wait for the window's writeback (the disk's pace, not the CPU's) */
        sync_file_range(p->out_fd, (off64_t)(p->out_base + off), (off64_t)W,
                        SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                            SYNC_FILE_RANGE_WAIT_AFTER);
        if (p->drop_out)
            posix_fadvise(p->out_fd, (off_t)(p->out_base + off), (off_t)W, POSIX_FADV_DONTNEED);
        pthread_mutex_lock(&p->mu);
        p->out_dropped = off + W;
        pthread_cond_broadcast(&p->room);
        return true;
    }
    if (p->in_fd >= 0 && p->drop_in && p->in_pos >= p->in_dropped + 2 * W) {
        uint64_t off = p->in_dropped;
        p->in_dropped += W;
        pthread_mutex_unlock(&p->mu);
        posix_fadvise(p->in_fd, (off_t)(p->in_base + off), (off_t)W, POSIX_FADV_DONTNEED);
        pthread_mutex_lock(&p->mu);
        return true;
    }
    return false;
}

static void *pager_main(void *arg)
{
    struct pager *p = arg;
    pthread_setname_np(pthread_self(), "seal-pager");
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        if (!pager_step(p))
            pthread_cond_wait(&p->work, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* in_fd / out_fd may be -1 (no such side). Without a thread (it could not
 * be created) the caller simply goes without the window. */
static void pager_start(struct pager *p, int in_fd, uint64_t in_base, uint64_t in_size,
                        bool drop_in, int out_fd, uint64_t out_base, bool drop_out)
{
    memset(p, 0, sizeof *p);
    p->drop_in = drop_in;
    p->in_fd = in_fd;
    p->in_base = in_base;
    p->in_size = in_size;
    p->out_fd = out_fd;
    p->out_base = out_base;
    p->drop_out = drop_out;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->room, NULL);
    p->on = dr_thread_start(&p->tid, pager_main, p) == 0;
    if (!p->on) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->work);
        pthread_cond_destroy(&p->room);
    }
}

/* The caller has read input up to in_pos and written out_written output
 * bytes (both relative to the bases). Waits while the output is too far
 * ahead of the disk. */
static void pager_post(struct pager *p, uint64_t in_pos, uint64_t out_written)
{
    if (!p->on)
        return;
    pthread_mutex_lock(&p->mu);
    p->in_pos = in_pos;
    p->out_written = out_written;
    pthread_cond_signal(&p->work);
    while (p->out_fd >= 0 && p->out_written > p->out_dropped + PAGER_MAX_DIRTY)
        pthread_cond_wait(&p->room, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static void pager_stop(struct pager *p)
{
    if (!p->on)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->tid, NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->room);
    p->on = false;
}

#undef W

/* ---- sealing ---- */

/* Segments per chunk: CHUNK worth, but no more than the object has. */
static uint32_t chunk_segs(uint32_t seg, uint64_t nseg)
{
    uint32_t k = seg ? CHUNK / seg : 1;
    if (k == 0)
        k = 1;
    return nseg < k ? (uint32_t)(nseg ? nseg : 1) : k;
}

/* seal_file, seal_fd_at, seal_mem_at and seal_mem_buf: in is open (the
 * caller closes it), or, with mem, -1 and the plaintext is mem's mem_len
 * bytes; in_path names it in messages; out_path is relative to out_dirfd
 * (AT_FDCWD: as is). With out_fd, a sealed scratch file is handed over
 * open instead of closed. With out_buf (and out_path NULL), no file: the
 * sealed object is handed over in memory, one chunk at most. */
static int seal_core(int in, const uint8_t *mem, uint64_t mem_len, const char *in_path,
                     int out_dirfd, const char *out_path, const struct seal_params *p,
                     struct seal_result *res, int *out_fd, uint8_t **out_buf, char *err,
                     size_t errlen)
{
    int rc = 0, out = -1;
    uint8_t *hdr = NULL, *ibufs = NULL, *obuf = NULL;
    struct v2_header vh = {0};
    EVP_CIPHER_CTX *c = NULL;
    struct hasher hs;
    struct pager pg = {.on = false};
    bool hs_on = false;
    /* scratch: written in place, no temporary name (one directory entry
     * made instead of two); see seal.h */
    char *tmp = out_buf != NULL ? NULL
                : p->scratch    ? xstrdup(out_path)
                                : xasprintf("%s.tmp", out_path);
    uint32_t seg = p->segment_size;
    struct seal_result unused;
    if (res == NULL)
        res = &unused;

    if (seg < SEAL_MIN_SEGMENT || seg > SEAL_MAX_SEGMENT) {
        rc = fail(err, errlen, -EINVAL, "seal: segment size %" PRIu32 " out of range", seg);
        goto out;
    }
    if (p->media_id == NULL || strlen(p->media_id) != DR_ID_LEN || p->owner == NULL ||
        p->path == NULL || !*p->owner || !*p->path || strlen(p->owner) > 4096 ||
        strlen(p->path) > 4096 || (p->content_type && strlen(p->content_type) > 1024)) {
        rc = fail(err, errlen, -EINVAL, "seal: bad header fields");
        goto out;
    }
    struct stat st;
    if (mem == NULL && fstat(in, &st) != 0) {
        rc = fail(err, errlen, -errno, "stat %s: %s", in_path, strerror(errno));
        goto out;
    }
    uint64_t size = mem != NULL ? mem_len : (uint64_t)st.st_size;
    uint64_t nseg = seal_segments(size, seg);
    if (nseg >= HEADER_NONCE_CTR) {
        rc =
            fail(err, errlen, -EFBIG, "seal: %s too large for segment size %" PRIu32, in_path, seg);
        goto out;
    }
    uint32_t k = chunk_segs(seg, nseg);
    size_t ichunk = (size_t)k * seg;
    /* An object of one chunk (up to CHUNK, 256 KiB: most small files)
     * goes out in one write, its header in front of its segments, once
     * the header's meta block is sealed; a bigger one writes the header
     * first and its meta block again at the end (3 syscalls -> 1 for a
     * 4 KiB upload, issue 15). */
    bool single = (uint64_t)k >= nseg;
    if (out_buf != NULL && !single) {
        rc = fail(err, errlen, -EFBIG, "seal: %s too large to seal in memory", in_path);
        goto out;
    }
    if (!single && mem == NULL)
        posix_fadvise(in, 0, 0, POSIX_FADV_SEQUENTIAL);

    uint8_t prefix[SEAL_NONCE_PREFIX_LEN];
    dr_random(prefix, sizeof prefix);
    build_header(p, size, prefix, &vh);
    hdr = vh.hdr;
    size_t hl = vh.hl;
    uint8_t hbind[32];
    v2_hbind(hdr, vh.meta, vh.meta_len, hbind);

    /* scratch: a new inode, never the old one (the store may have taken
     * it); an old file is rare, so create first and unlink only then */
    int oflags = O_WRONLY | O_CREAT | (p->scratch ? O_EXCL : O_TRUNC) | O_CLOEXEC;
    out = out_buf != NULL ? -1 : openat(out_dirfd, tmp, oflags, 0600);
    if (out < 0 && out_buf == NULL && errno == EEXIST && p->scratch) {
        if (unlinkat(out_dirfd, tmp, 0) != 0 && errno != ENOENT) {
            rc = fail(err, errlen, -errno, "unlink %s: %s", tmp, strerror(errno));
            goto out;
        }
        out = openat(out_dirfd, tmp, oflags, 0600);
    }
    if (out < 0 && out_buf == NULL) {
        rc = fail(err, errlen, -errno, "create %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (!single) {
        rc = dr_write_all(out, hdr, hl);
        if (rc != 0) {
            fail(err, errlen, rc, "write %s: %s", tmp, strerror(-rc));
            goto out;
        }
    }

    bool threaded = size >= THREADED_HASH_MIN;
    unsigned nbufs = threaded ? RING : 1; /* inline hashing is done with a buffer at once */
    ibufs = mem == NULL ? xmalloc(ichunk * nbufs) : NULL; /* mem is read where it lies */
    size_t pre = single ? hl : 0;                         /* room for the header in front */
    /* one chunk: exactly the object (a small one kept in memory by the
     * caller holds no more than its own bytes) */
    obuf = xmalloc(single ? pre + (size_t)size + (size_t)(nseg ? nseg : 1) * SEAL_TAG_LEN
                          : pre + ichunk + (size_t)k * SEAL_TAG_LEN);
    c = EVP_CIPHER_CTX_new();
    int hrc = hasher_init(&hs, threaded);
    hs_on = true;
    if (c == NULL || hrc != 0 ||
        EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, p->data_key, NULL) != 1) {
        rc = fail(err, errlen, -EIO, "libcrypto: cannot set up AES-256-GCM/SHA-256");
        goto out;
    }

    if (size >= THREADED_HASH_MIN && mem == NULL)
        pager_start(&pg, in, 0, size, false, out, 0, true); /* input stays cached: see above */
    uint64_t left = size, idx = 0, written = hl, chunk_no = 0;
    size_t body = 0; /* single: the segments' bytes in obuf, after the header */
    do {
        size_t want = (size_t)DR_MIN((uint64_t)ichunk, left);
        uint64_t roff = size - left;
        uint8_t *ibuf = mem != NULL ? (uint8_t *)mem + roff : ibufs + (chunk_no % nbufs) * ichunk;
        if (chunk_no >= RING)
            hasher_wait(&hs, chunk_no - RING + 1); /* the hasher is done with it */
        ssize_t n = mem != NULL ? (ssize_t)want : want ? dr_pread_full(in, ibuf, want, roff) : 0;
        if (n < 0) {
            rc = fail(err, errlen, (int)n, "read %s: %s", in_path, strerror((int)-n));
            goto out;
        }
        if ((size_t)n != want) {
            rc = fail(err, errlen, -EIO, "read %s: file shrank while sealing", in_path);
            goto out;
        }
        hasher_submit(&hs, ibuf, want);
        chunk_no++;
        size_t ooff = pre;
        for (size_t off = 0; off < want || (want == 0 && idx == 0);) {
            size_t sl = DR_MIN((size_t)seg, want - off);
            bool final = idx == nseg - 1;
            uint8_t nonce[12], aad[41];
            int len = 0, ok;
            make_nonce(nonce, prefix, (uint32_t)idx);
            make_aad(aad, hbind, idx, final);
            ok = EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) == 1;
            ok = ok && EVP_EncryptUpdate(c, NULL, &len, aad, sizeof aad) == 1;
            ok = ok &&
                 (sl == 0 || EVP_EncryptUpdate(c, obuf + ooff, &len, ibuf + off, (int)sl) == 1);
            ok = ok && EVP_EncryptFinal_ex(c, obuf + ooff + sl, &len) == 1;
            ok = ok &&
                 EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, obuf + ooff + sl) == 1;
            if (!ok) {
                rc = fail(err, errlen, -EIO, "libcrypto: AES-256-GCM failed");
                goto out;
            }
            ooff += sl + SEAL_TAG_LEN;
            off += sl;
            idx++;
            if (want == 0)
                break;
        }
        ooff -= pre;
        rc = single ? 0 : dr_write_all(out, obuf, ooff);
        if (rc != 0) {
            fail(err, errlen, rc, "write %s: %s", tmp, strerror(-rc));
            goto out;
        }
        body = ooff;
        written += ooff;
        pager_post(&pg, roff + want, written); /* writeback starts now, fsync later */
        left -= want;
    } while (left > 0);
    if (idx != nseg) {
        rc = fail(err, errlen, -EIO, "seal: internal error: %" PRIu64 " of %" PRIu64 " segments",
                  idx, nseg);
        goto out;
    }

    pager_stop(&pg);
    hasher_finish(&hs, res->sha256);
    hs_on = false;
    /* the meta block, now with the plaintext SHA-256, sealed in place */
    memcpy(vh.meta + vh.meta_len - 32, res->sha256, 32);
    if (v2_meta_crypt(p->data_key, hdr, prefix, vh.meta, hdr + V2_CLEAR_LEN, vh.meta_len,
                      hdr + V2_CLEAR_LEN + vh.meta_len, true) != 0) {
        rc = fail(err, errlen, -EIO, "libcrypto: AES-256-GCM failed");
        goto out;
    }
    if (single) {
        memcpy(obuf, hdr, hl);
        rc = out_buf != NULL ? 0 : dr_write_all(out, obuf, hl + body);
    } else {
        rc = dr_pwrite_all(out, hdr + V2_CLEAR_LEN, vh.meta_len + SEAL_TAG_LEN, V2_CLEAR_LEN);
    }
    if (rc == 0 && out_buf == NULL && !p->scratch && fsync(out) != 0)
        rc = -errno;
    if (rc != 0) {
        fail(err, errlen, rc, "write %s: %s", tmp, strerror(-rc));
        goto out;
    }
    if (out_buf != NULL) {
        *out_buf = obuf; /* the caller's now (a store keeps it) */
        obuf = NULL;
    } else if (p->scratch && out_fd != NULL) {
        *out_fd = out; /* the caller's now (a store syncs it) */
    } else {
        close(out);
    }
    out = -1;
    if (out_buf == NULL && !p->scratch && renameat(out_dirfd, tmp, out_dirfd, out_path) != 0) {
        rc = fail(err, errlen, -errno, "rename %s: %s", tmp, strerror(errno));
        goto out;
    }
    if (out_buf == NULL && !p->scratch && out_dirfd == AT_FDCWD)
        dr_fsync_parent(out_path);
    else if (out_buf == NULL && !p->scratch)
        fsync(out_dirfd);
    res->size = size;
    dr_hex(res->sha256, 32, res->sha256_hex);
    res->object_size = written;
out:
    pager_stop(&pg);
    if (out >= 0)
        close(out);
    if (rc != 0 && tmp != NULL)
        unlinkat(out_dirfd, tmp, 0);
    if (hs_on)
        hasher_finish(&hs, NULL);
    EVP_CIPHER_CTX_free(c);
    free(hdr);
    if (vh.meta != NULL) {
        OPENSSL_cleanse(vh.meta, vh.meta_len);
        free(vh.meta);
    }
    free(ibufs);
    free(obuf);
    free(tmp);
    return rc;
}

int seal_file(const char *in_path, const char *out_path, const struct seal_params *p,
              struct seal_result *res, char *err, size_t errlen)
{
    int in = open(in_path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return fail(err, errlen, -errno, "open %s: %s", in_path, strerror(errno));
    int rc = seal_core(in, NULL, 0, in_path, AT_FDCWD, out_path, p, res, NULL, NULL, err, errlen);
    close(in);
    return rc;
}

int seal_fd_at(int in, const char *in_path, int out_dirfd, const char *out_name,
               const struct seal_params *p, struct seal_result *res, int *out_fd, char *err,
               size_t errlen)
{
    *out_fd = -1;
    if (!p->scratch)
        return fail(err, errlen, -EINVAL, "seal: seal_fd_at makes scratch files only");
    return seal_core(in, NULL, 0, in_path, out_dirfd, out_name, p, res, out_fd, NULL, err, errlen);
}

int seal_mem_at(const void *mem, size_t len, const char *what, int out_dirfd, const char *out_name,
                const struct seal_params *p, struct seal_result *res, int *out_fd, char *err,
                size_t errlen)
{
    *out_fd = -1;
    if (!p->scratch || mem == NULL)
        return fail(err, errlen, -EINVAL, "seal: seal_mem_at makes scratch files of bytes");
    return seal_core(-1, mem, len, what, out_dirfd, out_name, p, res, out_fd, NULL, err, errlen);
}

int seal_mem_buf(const void *mem, size_t len, const char *what, const struct seal_params *p,
                 struct seal_result *res, uint8_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (mem == NULL || len > SEAL_MEM_MAX)
        return fail(err, errlen, -EINVAL, "seal: seal_mem_buf seals at most %u bytes of memory",
                    (unsigned)SEAL_MEM_MAX);
    return seal_core(-1, mem, len, what, AT_FDCWD, NULL, p, res, NULL, out, err, errlen);
}

/* ---- unsealing ---- */

/* unseal_fd, and without the plaintext's SHA-256 when !hash (seal.h). */
static int unseal_impl(int in_fd, int out_fd, const uint8_t master[DR_KEY_LEN],
                       const char *expected_sha_hex, bool hash, struct seal_header *hdr_out,
                       char *err, size_t errlen)
{
    int rc = 0;
    uint8_t *hb = xmalloc(SEAL_HEADER_READ), *ibuf = NULL, *obufs = NULL;
    uint8_t key[DR_KEY_LEN], hbind[32];
    struct seal_header h;
    EVP_CIPHER_CTX *c = NULL;
    struct hasher hs;
    struct pager pg = {.on = false};
    bool hs_on = false, threaded = false;
    size_t buflen = 0;
    memset(&h, 0, sizeof h);

    ssize_t n = dr_pread_full(in_fd, hb, SEAL_HEADER_READ, 0);
    if (n < 0) {
        rc = fail(err, errlen, (int)n, "read object: %s", strerror((int)-n));
        goto out;
    }
    rc = parse_header(hb, (size_t)n, master, &h, key, hbind, err, errlen);
    if (rc == -EMSGSIZE && h.header_len > (size_t)n) {
        uint32_t need = h.header_len;
        hb = xrealloc(hb, need);
        n = dr_pread_full(in_fd, hb, need, 0);
        if (n < 0) {
            rc = fail(err, errlen, (int)n, "read object: %s", strerror((int)-n));
            goto out;
        }
        rc = parse_header(hb, (size_t)n, master, &h, key, hbind, err, errlen);
    }
    if (rc == -EMSGSIZE)
        rc = fail(err, errlen, -EBADMSG, "object truncated: %zd bytes, shorter than its header", n);
    if (rc != 0)
        goto out;
    struct stat st;
    if (fstat(in_fd, &st) != 0) {
        rc = fail(err, errlen, -errno, "stat object: %s", strerror(errno));
        goto out;
    }
    if ((uint64_t)st.st_size != h.object_size) {
        rc = fail(err, errlen, -EBADMSG, "object %s: %" PRIu64 " bytes, its header says %" PRIu64,
                  (uint64_t)st.st_size < h.object_size ? "truncated" : "corrupt (trailing bytes)",
                  (uint64_t)st.st_size, h.object_size);
        goto out;
    }
    if (expected_sha_hex && *expected_sha_hex && strcmp(expected_sha_hex, h.sha256_hex) != 0) {
        rc = fail(err, errlen, -EBADMSG, "object corrupt: its sha256 is not the catalog's");
        goto out;
    }

    uint64_t nseg = seal_segments(h.size, h.segment_size);
    uint32_t seg = h.segment_size, k = chunk_segs(seg, nseg);
    size_t ichunk = (size_t)k * (seg + SEAL_TAG_LEN);
    size_t ochunk = (size_t)k * seg;
    threaded = hash && h.size >= THREADED_HASH_MIN;
    unsigned nbufs = threaded ? RING : 1;
    buflen = ichunk + ochunk * nbufs; /* small objects: the thread's spare */
    ibuf = threaded ? xmalloc(buflen) : spare_take(buflen);
    obufs = ibuf + ichunk;
    c = EVP_CIPHER_CTX_new();
    int hrc = hash ? hasher_init(&hs, threaded) : 0;
    hs_on = hash;
    if (c == NULL || hrc != 0 || EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, NULL) != 1) {
        rc = fail(err, errlen, -EIO, "libcrypto: cannot set up AES-256-GCM/SHA-256");
        goto out;
    }
    posix_fadvise(in_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint64_t idx = 0, left = h.size, pos = h.header_len;
    uint64_t chunk_no = 0;
    /* Start writeback of the plaintext as it is written (as seal_file does),
     * when out_fd is a regular file: the caller's fsync then has little left. */
    off_t out_start = out_fd >= 0 ? lseek(out_fd, 0, SEEK_CUR) : -1;
    uint64_t out_written = 0;
    if (h.size >= THREADED_HASH_MIN) /* the plaintext is about to be served: keep it */
        pager_start(&pg, in_fd, 0, h.object_size, true, out_start >= 0 ? out_fd : -1,
                    out_start >= 0 ? (uint64_t)out_start : 0, false);
    while (idx < nseg) {
        uint8_t *obuf = obufs + (chunk_no % nbufs) * ochunk;
        if (hash && chunk_no >= RING)
            hasher_wait(&hs, chunk_no - RING + 1);
        uint64_t segs = DR_MIN((uint64_t)k, nseg - idx);
        uint64_t plain = DR_MIN(segs * seg, left);
        size_t want = (size_t)(plain + segs * SEAL_TAG_LEN);
        n = dr_pread_full(in_fd, ibuf, want, pos);
        if (n < 0) {
            rc = fail(err, errlen, (int)n, "read object: %s", strerror((int)-n));
            goto out;
        }
        if ((size_t)n != want) {
            rc = fail(err, errlen, -EBADMSG, "object truncated at segment %" PRIu64, idx);
            goto out;
        }
        size_t ioff = 0, ooff = 0;
        for (uint64_t s = 0; s < segs; s++, idx++) {
            size_t sl = (size_t)DR_MIN((uint64_t)seg, left - ooff);
            uint8_t nonce[12], aad[41];
            int len = 0, ok;
            make_nonce(nonce, h.nonce_prefix, (uint32_t)idx);
            make_aad(aad, hbind, idx, idx == nseg - 1);
            ok = EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) == 1;
            ok = ok && EVP_DecryptUpdate(c, NULL, &len, aad, sizeof aad) == 1;
            ok = ok &&
                 (sl == 0 || EVP_DecryptUpdate(c, obuf + ooff, &len, ibuf + ioff, (int)sl) == 1);
            ok = ok &&
                 EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, ibuf + ioff + sl) == 1;
            ok = ok && EVP_DecryptFinal_ex(c, obuf + ooff + sl, &len) == 1;
            if (!ok) {
                rc = fail(err, errlen, -EBADMSG, "object corrupt: segment %" PRIu64 " tag mismatch",
                          idx);
                goto out;
            }
            ioff += sl + SEAL_TAG_LEN;
            ooff += sl;
        }
        if (hash)
            hasher_submit(&hs, obuf, ooff);
        chunk_no++;
        if (out_fd >= 0 && ooff > 0) {
            rc = dr_write_all(out_fd, obuf, ooff);
            if (rc != 0) {
                fail(err, errlen, rc, "write plaintext: %s", strerror(-rc));
                goto out;
            }
            out_written += ooff;
        }
        pos += (uint64_t)want;
        left -= ooff;
        pager_post(&pg, pos, out_written);
    }
    pager_stop(&pg);
    uint8_t got[32];
    if (hash)
        hasher_finish(&hs, got);
    hs_on = false;
    if (hash && !dr_consttime_eq(got, 32, h.sha256, 32)) {
        rc = fail(err, errlen, -EBADMSG, "object corrupt: plaintext sha256 mismatch");
        goto out;
    }
    if (hdr_out) {
        *hdr_out = h;
        memset(&h, 0, sizeof h);
    }
out:
    pager_stop(&pg);
    OPENSSL_cleanse(key, sizeof key);
    seal_header_clear(&h);
    if (hs_on)
        hasher_finish(&hs, NULL);
    EVP_CIPHER_CTX_free(c);
    free(hb);
    if (ibuf != NULL && threaded)
        free(ibuf);
    else
        spare_give(ibuf, buflen);
    return rc;
}

int unseal_fd(int in_fd, int out_fd, const uint8_t master[DR_KEY_LEN], const char *expected_sha_hex,
              struct seal_header *hdr, char *err, size_t errlen)
{
    return unseal_impl(in_fd, out_fd, master, expected_sha_hex, true, hdr, err, errlen);
}

int unseal_fd_tags(int in_fd, int out_fd, const uint8_t master[DR_KEY_LEN],
                   const char *expected_sha_hex, struct seal_header *hdr, char *err, size_t errlen)
{
    return unseal_impl(in_fd, out_fd, master, expected_sha_hex, false, hdr, err, errlen);
}

int unseal_file(const char *in_path, const char *out_path, const uint8_t master[DR_KEY_LEN],
                const char *expected_sha_hex, struct seal_header *hdr, char *err, size_t errlen)
{
    int rc, out = -1;
    int in = open(in_path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return fail(err, errlen, -errno, "open %s: %s", in_path, strerror(errno));
    if (out_path) {
        out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (out < 0) {
            rc = fail(err, errlen, -errno, "create %s: %s", out_path, strerror(errno));
            close(in);
            return rc;
        }
    }
    rc = unseal_fd(in, out, master, expected_sha_hex, hdr, err, errlen);
    if (rc == 0 && out >= 0 && fsync(out) != 0)
        rc = fail(err, errlen, -errno, "fsync %s: %s", out_path, strerror(errno));
    if (out >= 0) {
        close(out);
        if (rc != 0)
            unlink(out_path);
    }
    close(in);
    if (rc != 0 && hdr)
        seal_header_clear(hdr);
    return rc;
}

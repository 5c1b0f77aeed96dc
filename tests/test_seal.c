/* test_seal.c - the sealed object format (seal.c) and envelope keys (keys.c):
 * round trips at segment edges, every kind of tampering detected, version 2
 * headers that show nothing about the media, and version 1 objects (the
 * fixtures in tests/fixtures/seal/, written by the version-1 sealer) still
 * read and verified. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/keys.h"
#include "dripd/seal.h"
#include "dripd/util.h"

static char dir[256];
static uint8_t master[DR_KEY_LEN];

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/dripd-test-seal-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    memset(master, 0x42, sizeof master);
}

static void teardown(void)
{
    char *cmd = xasprintf("rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

static char *pth(const char *name)
{
    return xasprintf("%s/%s", dir, name);
}

static uint8_t *read_all(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    struct stat st;
    fstat(fd, &st);
    uint8_t *b = xmalloc((size_t)st.st_size + 1);
    ck_assert_int_eq(dr_read_full(fd, b, (size_t)st.st_size), st.st_size);
    close(fd);
    *len = (size_t)st.st_size;
    return b;
}

static void write_all(const char *path, const void *b, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(dr_write_all(fd, b, len), 0);
    close(fd);
}

/* Seal a random plaintext of size bytes with segment seg; returns its bytes. */
static uint8_t *make_sealed(size_t size, uint32_t seg, const char *plain, const char *obj,
                            struct seal_result *res)
{
    uint8_t *p = xmalloc(size + 1);
    dr_random(p, size);
    write_all(plain, p, size);
    uint8_t dk[DR_KEY_LEN], wk[DR_WRAPPED_KEY_LEN];
    keys_new_data_key(master, dk, wk);
    struct seal_params sp = {.media_id = "01JABCDEFGHJKMNPQRSTVWXYZ0",
                             .owner = "alice",
                             .path = "/photos/cat.jpg",
                             .content_type = "image/jpeg",
                             .created_at = 1764000000123,
                             .segment_size = seg,
                             .data_key = dk,
                             .wrapped_key = wk};
    char err[256] = "";
    int rc = seal_file(plain, obj, &sp, res, err, sizeof err);
    ck_assert_msg(rc == 0, "seal: %s", err);
    ck_assert_uint_eq(res->size, size);
    return p;
}

static void round_trip(size_t size, uint32_t seg)
{
    char *plain = pth("plain"), *obj = pth("obj"), *back = pth("back");
    struct seal_result res;
    uint8_t *p = make_sealed(size, seg, plain, obj, &res);
    struct stat st;
    ck_assert_int_eq(stat(obj, &st), 0);
    ck_assert_uint_eq((uint64_t)st.st_size, res.object_size);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", obj);
    ck_assert_int_ne(access(tmp, F_OK), 0); /* no temp file left */
    struct seal_header h;
    memset(&h, 0, sizeof h);
    char err[256] = "";
    int rc = unseal_file(obj, back, master, res.sha256_hex, &h, err, sizeof err);
    ck_assert_msg(rc == 0, "unseal %zu/%u: %s", size, seg, err);
    size_t blen;
    uint8_t *b = read_all(back, &blen);
    ck_assert_uint_eq(blen, size);
    ck_assert(memcmp(b, p, size) == 0);
    ck_assert_str_eq(h.owner, "alice");
    ck_assert_str_eq(h.path, "/photos/cat.jpg");
    ck_assert_str_eq(h.content_type, "image/jpeg");
    ck_assert_str_eq(h.media_id, "01JABCDEFGHJKMNPQRSTVWXYZ0");
    ck_assert_int_eq(h.created_at, 1764000000123);
    ck_assert_uint_eq(h.size, size);
    ck_assert_uint_eq(h.segment_size, seg);
    ck_assert_str_eq(h.sha256_hex, res.sha256_hex);
    ck_assert_uint_eq(h.object_size, res.object_size);
    ck_assert_uint_eq(res.object_size, seal_object_size(h.header_len, size, seg));
    seal_header_clear(&h);
    free(b);
    free(p);
    free(plain);
    free(obj);
    free(back);
}

START_TEST(test_round_trip_edges)
{
    const uint32_t seg = 65536;
    size_t sizes[] = {0, 1, seg - 1, seg, seg + 1, 3 * seg, 3 * seg + 17};
    for (size_t i = 0; i < DR_ARRAY_LEN(sizes); i++)
        round_trip(sizes[i], seg);
    /* several read chunks (256 KiB each, seal.c CHUNK) and small segments */
    round_trip((3u << 20) + 7, seg);
    round_trip(10000, 1024);
    round_trip(256 * 1024, 1024);  /* exactly one chunk of minimum-size segments */
    round_trip(1024 * 1024, 1024); /* exactly four */
    /* big enough for the SHA-256 helper thread (seal and unseal) */
    round_trip((20u << 20) + 3, seg);
    round_trip(9u << 20, 1024);
}
END_TEST

/* Params to seal the test file again as a scratch file, under a new
 * data key (dk and wk, the caller's, are filled in). */
static struct seal_params rescratch_params(uint8_t dk[DR_KEY_LEN], uint8_t wk[DR_WRAPPED_KEY_LEN])
{
    keys_new_data_key(master, dk, wk);
    return (struct seal_params){.media_id = "01JABCDEFGHJKMNPQRSTVWXYZ0",
                                .owner = "alice",
                                .path = "/photos/cat.jpg",
                                .created_at = 1764000000123,
                                .segment_size = 65536,
                                .data_key = dk,
                                .wrapped_key = wk,
                                .scratch = true};
}

START_TEST(test_scratch_is_written_anew)
{
    /* A scratch seal writes out_path in place (no temporary name), but as
     * a new inode: a link the store took to the old one keeps its bytes
     * (the pipeline's store moves or links the sealed file; a re-run of
     * encrypt must never change an object in the store). */
    char *plain = pth("plain"), *obj = pth("obj"), *kept = pth("kept");
    struct seal_result res;
    uint8_t *p = make_sealed(5000, 65536, plain, obj, &res);
    ck_assert_int_eq(link(obj, kept), 0);
    size_t n0;
    uint8_t *before = read_all(kept, &n0);
    uint8_t dk[DR_KEY_LEN], wk[DR_WRAPPED_KEY_LEN];
    struct seal_params sp = rescratch_params(dk, wk);
    char err[256] = "";
    struct seal_result res2;
    ck_assert_msg(seal_file(plain, obj, &sp, &res2, err, sizeof err) == 0, "%s", err);
    struct stat a, b;
    ck_assert_int_eq(stat(obj, &a), 0);
    ck_assert_int_eq(stat(kept, &b), 0);
    ck_assert(a.st_ino != b.st_ino);
    ck_assert_int_eq((int)b.st_nlink, 1);
    size_t n1;
    uint8_t *after = read_all(kept, &n1);
    ck_assert_uint_eq(n0, n1);
    ck_assert(memcmp(before, after, n0) == 0);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", obj);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    ck_assert_str_eq(res2.sha256_hex, res.sha256_hex);
    free(before);
    free(after);
    free(p);
    free(plain);
    free(obj);
    free(kept);
}
END_TEST

START_TEST(test_seal_fd_at)
{
    /* seal_fd_at: from an open fd into a name relative to a directory fd,
     * the sealed file handed over open (the very inode named), a new inode
     * like seal_file's scratch; it makes scratch files only */
    char *plain = pth("plain"), *obj = pth("obj");
    struct seal_result res;
    uint8_t *p = make_sealed(70000, 65536, plain, obj, &res);
    char *kept = pth("kept"); /* keeps the old inode's number from being reused */
    ck_assert_int_eq(link(obj, kept), 0);
    struct stat old;
    ck_assert_int_eq(stat(obj, &old), 0);
    uint8_t dk[DR_KEY_LEN], wk[DR_WRAPPED_KEY_LEN];
    struct seal_params sp = rescratch_params(dk, wk);
    char err[256] = "";
    int in = open(plain, O_RDONLY | O_CLOEXEC), dfd = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(in, 0);
    ck_assert_int_ge(dfd, 0);
    int out = -1;
    struct seal_result res2;
    ck_assert_msg(seal_fd_at(in, plain, dfd, "obj", &sp, &res2, &out, err, sizeof err) == 0, "%s",
                  err);
    ck_assert_int_ge(out, 0);
    struct stat a, b;
    ck_assert_int_eq(fstat(out, &a), 0);
    ck_assert_int_eq(stat(obj, &b), 0);
    ck_assert(a.st_ino == b.st_ino && a.st_ino != old.st_ino);
    ck_assert_uint_eq((uint64_t)a.st_size, res2.object_size);
    ck_assert_str_eq(res2.sha256_hex, res.sha256_hex);
    ck_assert_uint_eq(res2.size, 70000);
    close(out);
    ck_assert_int_ge(fcntl(in, F_GETFD), 0); /* the caller's */
    char *back = pth("back");
    ck_assert_msg(unseal_file(obj, back, master, res2.sha256_hex, NULL, err, sizeof err) == 0, "%s",
                  err);
    size_t n;
    uint8_t *got = read_all(back, &n);
    ck_assert_uint_eq(n, 70000);
    ck_assert(memcmp(got, p, n) == 0);
    sp.scratch = false;
    ck_assert_int_eq(seal_fd_at(in, plain, dfd, "obj2", &sp, &res2, &out, err, sizeof err),
                     -EINVAL);
    ck_assert_int_eq(out, -1);
    close(in);
    close(dfd);
    free(got);
    free(back);
    free(kept);
    free(p);
    free(plain);
    free(obj);
}
END_TEST

START_TEST(test_seal_mem_at)
{
    /* seal_mem_at: the same object from bytes in memory (an inline body)
     * as seal_fd_at makes from a file of them, for a small body, one of
     * several segments, the most seal_mem_buf takes, and one past the
     * single-write size; scratch only */
    static const size_t sizes[] = {1, 4096, 16384, SEAL_MEM_MAX, 70000, 300000};
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    ck_assert_int_ge(dfd, 0);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        char *plain = pth("mplain"), *obj = pth("mobj"), *back = pth("mback");
        struct seal_result want, got;
        uint8_t *p = make_sealed(sizes[k], 65536, plain, obj, &want);
        uint8_t dk[DR_KEY_LEN], wk[DR_WRAPPED_KEY_LEN];
        struct seal_params sp = rescratch_params(dk, wk);
        sp.segment_size = 65536;
        char err[256] = "";
        int out = -1;
        ck_assert_msg(seal_mem_at(p, sizes[k], "(inline body)", dfd, "mobj", &sp, &got, &out, err,
                                  sizeof err) == 0,
                      "%zu: %s", sizes[k], err);
        ck_assert_int_ge(out, 0);
        struct stat a;
        ck_assert_int_eq(fstat(out, &a), 0);
        ck_assert_uint_eq((uint64_t)a.st_size, got.object_size);
        close(out);
        ck_assert_str_eq(got.sha256_hex, want.sha256_hex);
        ck_assert_uint_eq(got.size, sizes[k]);
        ck_assert_msg(unseal_file(obj, back, master, got.sha256_hex, NULL, err, sizeof err) == 0,
                      "%s", err);
        size_t n;
        uint8_t *b = read_all(back, &n);
        ck_assert_uint_eq(n, sizes[k]);
        ck_assert(memcmp(b, p, n) == 0);
        free(b);
        /* seal_mem_buf: the same object in memory, made nowhere else
         * (up to SEAL_MEM_MAX bytes of plaintext; beyond, refused) */
        uint8_t *mem = (uint8_t *)"x";
        int mrc = seal_mem_buf(p, sizes[k], "(inline body)", &sp, &got, &mem, err, sizeof err);
        if (sizes[k] > SEAL_MEM_MAX) {
            ck_assert_int_eq(mrc, -EINVAL);
            ck_assert_ptr_null(mem);
        } else {
            ck_assert_msg(mrc == 0, "%zu: %s", sizes[k], err);
            ck_assert_uint_eq(got.object_size, (uint64_t)a.st_size); /* the same layout */
            write_all(obj, mem, got.object_size);
            free(mem);
            ck_assert_str_eq(got.sha256_hex, want.sha256_hex);
            ck_assert_msg(unseal_file(obj, back, master, got.sha256_hex, NULL, err, sizeof err) ==
                              0,
                          "%s", err);
            b = read_all(back, &n);
            ck_assert_uint_eq(n, sizes[k]);
            ck_assert(memcmp(b, p, n) == 0);
            free(b);
        }
        sp.scratch = false;
        ck_assert_int_eq(
            seal_mem_at(p, sizes[k], "x", dfd, "mobj2", &sp, &got, &out, err, sizeof err), -EINVAL);
        ck_assert_int_eq(out, -1);
        free(p);
        free(plain);
        free(obj);
        free(back);
    }
    close(dfd);
}
END_TEST

START_TEST(test_segments_math)
{
    ck_assert_uint_eq(seal_segments(0, 1024), 1);
    ck_assert_uint_eq(seal_segments(1, 1024), 1);
    ck_assert_uint_eq(seal_segments(1024, 1024), 1);
    ck_assert_uint_eq(seal_segments(1025, 1024), 2);
    ck_assert_uint_eq(seal_object_size(200, 1025, 1024), 200 + 1025 + 32);
}
END_TEST

static int try_unseal(const char *obj, const char *sha, char *err, size_t errlen)
{
    return unseal_file(obj, NULL, master, sha, NULL, err, errlen);
}

/* unseal_fd_tags (cache fills): the same checks but the plaintext hash. */
static int try_tags(const char *obj, const char *sha, const char *out, char *err, size_t errlen)
{
    int in = open(obj, O_RDONLY | O_CLOEXEC);
    ck_assert_int_ge(in, 0);
    int fd = out ? open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    int rc = unseal_fd_tags(in, fd, master, sha, NULL, err, errlen);
    close(in);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int try_tags_only(const char *obj, const char *sha, char *err, size_t errlen)
{
    return try_tags(obj, sha, NULL, err, errlen);
}

/* Flip each bit 0 of the object o (len bytes) in turn into bad: unseal
 * must refuse every one with a clear error. */
static void every_flip_fails(const char *bad, uint8_t *o, size_t len,
                             int (*unseal)(const char *, const char *, char *, size_t))
{
    char err[256];
    for (size_t i = 0; i < len; i++) {
        o[i] ^= 0x01;
        write_all(bad, o, len);
        err[0] = 0;
        int rc = unseal(bad, NULL, err, sizeof err);
        ck_assert_msg(rc == -EBADMSG, "flip of byte %zu not detected (rc %d)", i, rc);
        ck_assert_msg(strstr(err, "object") != NULL, "unclear error: %s", err);
        o[i] ^= 0x01;
    }
}

START_TEST(test_every_byte_flip_detected)
{
    char *plain = pth("plain"), *obj = pth("obj"), *bad = pth("bad");
    struct seal_result res;
    uint8_t *p = make_sealed(2500, 1024, plain, obj, &res); /* 3 segments */
    size_t len;
    uint8_t *o = read_all(obj, &len);
    char err[256];
    every_flip_fails(bad, o, len, try_unseal);
    /* untouched it still verifies */
    write_all(bad, o, len);
    ck_assert_int_eq(try_unseal(bad, res.sha256_hex, err, sizeof err), 0);
    free(o);
    free(p);
    free(plain);
    free(obj);
    free(bad);
}
END_TEST

START_TEST(test_tags_only_detects_every_flip_and_cut)
{
    char *plain = pth("plain"), *obj = pth("obj"), *bad = pth("bad"), *back = pth("back");
    struct seal_result res;
    uint8_t *p = make_sealed(2500, 1024, plain, obj, &res); /* 3 segments */
    size_t len, blen;
    uint8_t *o = read_all(obj, &len);
    char err[256];
    every_flip_fails(bad, o, len, try_tags_only);
    write_all(bad, o, len - SEAL_TAG_LEN - 1); /* cut inside the last segment */
    ck_assert_int_eq(try_tags(bad, NULL, NULL, err, sizeof err), -EBADMSG);
    /* another media's hash: not this object */
    ck_assert_int_eq(try_tags(obj,
                              "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                              NULL, err, sizeof err),
                     -EBADMSG);
    ck_assert_str_eq(err, "object corrupt: its sha256 is not the catalog's");
    ck_assert_int_eq(try_tags(obj, res.sha256_hex, back, err, sizeof err), 0);
    uint8_t *b = read_all(back, &blen);
    ck_assert_uint_eq(blen, 2500);
    ck_assert(memcmp(b, p, blen) == 0);
    free(b);
    free(o);
    free(p);
    free(plain);
    free(obj);
    free(bad);
    free(back);
}
END_TEST

START_TEST(test_error_names_segment)
{
    char *plain = pth("plain"), *obj = pth("obj"), *back = pth("back");
    struct seal_result res;
    uint8_t *p = make_sealed(5000, 1024, plain, obj, &res);
    size_t len;
    uint8_t *o = read_all(obj, &len);
    struct seal_header h;
    char err[256];
    ck_assert_int_eq(seal_read_header(o, len, master, &h, err, sizeof err), 0);
    size_t seg3 = h.header_len + 3 * (1024 + 16) + 10;
    o[seg3] ^= 0x80;
    write_all(obj, o, len);
    ck_assert_int_eq(unseal_file(obj, back, master, NULL, NULL, err, sizeof err), -EBADMSG);
    ck_assert_str_eq(err, "object corrupt: segment 3 tag mismatch");
    ck_assert_int_ne(access(back, F_OK), 0); /* no partial plaintext left behind */
    seal_header_clear(&h);
    free(o);
    free(p);
    free(plain);
    free(obj);
    free(back);
}
END_TEST

START_TEST(test_truncation_and_reorder)
{
    char *plain = pth("plain"), *obj = pth("obj"), *bad = pth("bad");
    struct seal_result res;
    uint8_t *p = make_sealed(4096, 1024, plain, obj, &res); /* 4 full segments */
    size_t len;
    uint8_t *o = read_all(obj, &len);
    struct seal_header h;
    char err[256];
    ck_assert_int_eq(seal_read_header(o, len, master, &h, err, sizeof err), 0);
    size_t sl = 1024 + 16;
    /* truncation at every segment boundary, including "header only" */
    for (size_t k = 0; k < 4; k++) {
        write_all(bad, o, h.header_len + k * sl);
        ck_assert_int_eq(try_unseal(bad, NULL, err, sizeof err), -EBADMSG);
        ck_assert_msg(strstr(err, "truncated") != NULL, "%s", err);
    }
    /* a trailing extra segment (copy of the last) */
    uint8_t *ext = xmalloc(len + sl);
    memcpy(ext, o, len);
    memcpy(ext + len, o + len - sl, sl);
    write_all(bad, ext, len + sl);
    ck_assert_int_eq(try_unseal(bad, NULL, err, sizeof err), -EBADMSG);
    /* swap segments 1 and 2 (same length): wrong place */
    memcpy(ext, o, len);
    memcpy(ext + h.header_len + 1 * sl, o + h.header_len + 2 * sl, sl);
    memcpy(ext + h.header_len + 2 * sl, o + h.header_len + 1 * sl, sl);
    write_all(bad, ext, len);
    ck_assert_int_eq(try_unseal(bad, NULL, err, sizeof err), -EBADMSG);
    ck_assert_str_eq(err, "object corrupt: segment 1 tag mismatch");
    /* the last segment moved before its place: final flag and index differ */
    memcpy(ext, o, len);
    memcpy(ext + h.header_len + 2 * sl, o + h.header_len + 3 * sl, sl);
    memcpy(ext + h.header_len + 3 * sl, o + h.header_len + 2 * sl, sl);
    write_all(bad, ext, len);
    ck_assert_int_eq(try_unseal(bad, NULL, err, sizeof err), -EBADMSG);
    /* a segment from another sealing of the same plaintext (other key) */
    char *obj2 = pth("obj2");
    struct seal_result res2;
    uint8_t dk[DR_KEY_LEN], wk[DR_WRAPPED_KEY_LEN];
    keys_new_data_key(master, dk, wk);
    struct seal_params sp = {.media_id = "01JABCDEFGHJKMNPQRSTVWXYZ0",
                             .owner = "alice",
                             .path = "/photos/cat.jpg",
                             .created_at = 1,
                             .segment_size = 1024,
                             .data_key = dk,
                             .wrapped_key = wk};
    ck_assert_int_eq(seal_file(plain, obj2, &sp, &res2, err, sizeof err), 0);
    size_t len2;
    uint8_t *o2 = read_all(obj2, &len2);
    struct seal_header h2;
    ck_assert_int_eq(seal_read_header(o2, len2, master, &h2, err, sizeof err), 0);
    memcpy(ext, o, len);
    memcpy(ext + h.header_len, o2 + h2.header_len, sl);
    write_all(bad, ext, len);
    ck_assert_int_eq(try_unseal(bad, NULL, err, sizeof err), -EBADMSG);
    /* expected sha from the catalog differs */
    ck_assert_int_eq(try_unseal(obj,
                                res2.sha256_hex[0] == res.sha256_hex[0] ? "00" : res2.sha256_hex,
                                err, sizeof err),
                     -EBADMSG);
    seal_header_clear(&h);
    seal_header_clear(&h2);
    free(o2);
    free(obj2);
    free(ext);
    free(o);
    free(p);
    free(plain);
    free(obj);
    free(bad);
}
END_TEST

START_TEST(test_wrong_master_key)
{
    char *plain = pth("plain"), *obj = pth("obj");
    struct seal_result res;
    uint8_t *p = make_sealed(3000, 1024, plain, obj, &res);
    uint8_t other[DR_KEY_LEN];
    memset(other, 0x43, sizeof other);
    char err[256];
    ck_assert_int_eq(unseal_file(obj, NULL, other, NULL, NULL, err, sizeof err), -EBADMSG);
    ck_assert_msg(strstr(err, "master key") != NULL, "%s", err);
    size_t len;
    uint8_t *o = read_all(obj, &len);
    struct seal_header h;
    ck_assert_int_eq(seal_read_header(o, len, other, &h, err, sizeof err), -EBADMSG);
    free(o);
    free(p);
    free(plain);
    free(obj);
}
END_TEST

START_TEST(test_read_header)
{
    char *plain = pth("plain"), *obj = pth("obj");
    struct seal_result res;
    uint8_t *p = make_sealed(100, 65536, plain, obj, &res);
    size_t len;
    uint8_t *o = read_all(obj, &len);
    struct seal_header h;
    char err[256];
    ck_assert_int_eq(seal_read_header(o, len, master, &h, err, sizeof err), 0);
    ck_assert_uint_eq(h.version, SEAL_VERSION);
    ck_assert_uint_eq(h.size, 100);
    ck_assert_str_eq(h.sha256_hex, res.sha256_hex);
    uint32_t hl = h.header_len;
    seal_header_clear(&h);
    /* short buffers: need more */
    ck_assert_int_eq(seal_read_header(o, 3, master, &h, err, sizeof err), -EMSGSIZE);
    ck_assert_int_eq(seal_read_header(o, 20, master, &h, err, sizeof err), -EMSGSIZE);
    ck_assert_uint_eq(h.header_len, hl);
    ck_assert_int_eq(seal_read_header(o, hl - 1, master, &h, err, sizeof err), -EMSGSIZE);
    ck_assert_int_eq(seal_read_header(o, hl, master, &h, err, sizeof err), 0);
    seal_header_clear(&h);
    /* not an object */
    ck_assert_int_eq(seal_read_header("hello world, plain text", 23, master, &h, err, sizeof err),
                     -EBADMSG);
    ck_assert_msg(strstr(err, "magic") != NULL, "%s", err);
    /* any header byte flipped */
    for (uint32_t i = 0; i < hl; i++) {
        o[i] ^= 0x20;
        int rc = seal_read_header(o, len, master, &h, err, sizeof err);
        ck_assert_msg(rc == -EBADMSG || rc == -EMSGSIZE, "header byte %u flip: rc %d", i, rc);
        seal_header_clear(&h);
        o[i] ^= 0x20;
    }
    free(o);
    free(p);
    free(plain);
    free(obj);
}
END_TEST

START_TEST(test_plaintext_not_in_object)
{
    char *plain = pth("plain"), *obj = pth("obj");
    struct seal_result res;
    uint8_t *p = make_sealed(200000, 65536, plain, obj, &res);
    size_t len;
    uint8_t *o = read_all(obj, &len);
    ck_assert_ptr_null(memmem(o, len, p + 1000, 64));
    ck_assert_ptr_null(memmem(o, len, p + 150000, 64));
    free(o);
    free(p);
    free(plain);
    free(obj);
}
END_TEST

/* Version 2 (issue 17): whoever reads the bucket learns nothing about the
 * media from the header: no owner, path, content type, media id, size or
 * plaintext hash in clear; all of them come back with the master key. */
START_TEST(test_v2_header_shows_nothing)
{
    char *plain = pth("plain"), *obj = pth("obj");
    uint8_t data[5000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 13);
    write_all(plain, data, sizeof data);
    uint8_t dk[DR_KEY_LEN], wk[DR_WRAPPED_KEY_LEN];
    keys_new_data_key(master, dk, wk);
    struct seal_params sp = {.media_id = "01JSECRETMEDIA0000000000ID",
                             .owner = "owner-who-must-not-show",
                             .path = "/private/diary/2024-secret.jpg",
                             .content_type = "image/x-secret-type",
                             .created_at = 0x0102030405060708,
                             .segment_size = 1024,
                             .data_key = dk,
                             .wrapped_key = wk};
    struct seal_result res;
    char err[256] = "";
    ck_assert_msg(seal_file(plain, obj, &sp, &res, err, sizeof err) == 0, "%s", err);
    size_t len;
    uint8_t *o = read_all(obj, &len);
    ck_assert_int_eq(o[6] << 8 | o[7], 2);
    static const char *const secrets[] = {"owner-who-must-not-show", "diary", "secret",
                                          "image/x-secret-type", "01JSECRETMEDIA"};
    for (size_t i = 0; i < DR_ARRAY_LEN(secrets); i++)
        ck_assert_msg(memmem(o, len, secrets[i], strlen(secrets[i])) == NULL, "'%s' in clear",
                      secrets[i]);
    ck_assert_ptr_null(memmem(o, len, res.sha256, 32));
    ck_assert_ptr_null(memmem(o, len, res.sha256_hex, 64));
    uint8_t be_size[8] = {0, 0, 0, 0, 0, 0, 5000 >> 8, 5000 & 0xff};
    ck_assert_ptr_null(memmem(o, len, be_size, sizeof be_size));
    uint8_t be_created[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_ptr_null(memmem(o, len, be_created, sizeof be_created));
    struct seal_header h;
    ck_assert_int_eq(seal_read_header(o, len, master, &h, err, sizeof err), 0);
    ck_assert_uint_eq(h.version, 2);
    ck_assert_str_eq(h.owner, sp.owner);
    ck_assert_str_eq(h.path, sp.path);
    ck_assert_str_eq(h.content_type, sp.content_type);
    ck_assert_str_eq(h.media_id, sp.media_id);
    ck_assert_int_eq(h.created_at, sp.created_at);
    ck_assert_uint_eq(h.size, sizeof data);
    ck_assert_str_eq(h.sha256_hex, res.sha256_hex);
    /* the meta block is padded: a path 20 bytes longer makes the same
     * header length, so the length does not tell the path's */
    uint32_t hl = h.header_len;
    ck_assert_uint_eq((hl - 90 - SEAL_TAG_LEN) % 256, 0);
    seal_header_clear(&h);
    sp.path = "/private/diary/2024-secret-but-twenty-more.jpg";
    ck_assert_msg(seal_file(plain, obj, &sp, &res, err, sizeof err) == 0, "%s", err);
    free(o);
    o = read_all(obj, &len);
    ck_assert_int_eq(seal_read_header(o, len, master, &h, err, sizeof err), 0);
    ck_assert_str_eq(h.path, sp.path);
    ck_assert_uint_eq(h.header_len, hl);
    seal_header_clear(&h);
    free(o);
    free(plain);
    free(obj);
}
END_TEST

/* The version-1 fixtures (tests/fixtures/seal/README.md) read and verify,
 * and tampering with them is still caught. */
static char *fixture(const char *name)
{
    const char *d = getenv("DRIPD_SEAL_FIXTURES");
    return xasprintf("%s/%s", d ? d : "tests/fixtures/seal", name);
}

START_TEST(test_v1_fixtures_still_read)
{
    uint8_t k1[DR_KEY_LEN];
    for (int i = 0; i < DR_KEY_LEN; i++)
        k1[i] = (uint8_t)(0xa0 + i);
    char err[256] = "";
    struct seal_header h;
    /* 3000 bytes, byte i = (7i + 3) mod 256 */
    char *f = fixture("v1-3000.sealed"), *back = pth("back"), *bad = pth("bad");
    size_t len;
    uint8_t *o = read_all(f, &len);
    ck_assert_int_eq(seal_read_header(o, len, k1, &h, err, sizeof err), 0);
    ck_assert_uint_eq(h.version, 1);
    ck_assert_str_eq(h.media_id, "01JD2Z8Q7W5N3K4M6P8R0T2V4X");
    ck_assert_str_eq(h.owner, "alice");
    ck_assert_str_eq(h.path, "/photos/cat.jpg");
    ck_assert_str_eq(h.content_type, "image/jpeg");
    ck_assert_int_eq(h.created_at, 1733000000123);
    ck_assert_uint_eq(h.size, 3000);
    ck_assert_uint_eq(h.segment_size, 1024);
    ck_assert_uint_eq(h.object_size, len);
    seal_header_clear(&h);
    const char *sha = "f541874101876255b4baf3a739778d04cb9cba25ffa38b30bc1fb8b0701f2a45";
    int rc = unseal_file(f, back, k1, sha, &h, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    size_t blen;
    uint8_t *b = read_all(back, &blen);
    ck_assert_uint_eq(blen, 3000);
    for (size_t i = 0; i < blen; i++)
        ck_assert_uint_eq(b[i], (uint8_t)((i * 7 + 3) & 0xff));
    seal_header_clear(&h);
    /* a flipped byte anywhere is caught, as before */
    for (size_t i = 0; i < len; i += 7) {
        o[i] ^= 0x04;
        write_all(bad, o, len);
        rc = unseal_file(bad, NULL, k1, NULL, NULL, err, sizeof err);
        ck_assert_msg(rc == -EBADMSG, "v1 flip of byte %zu not detected (rc %d)", i, rc);
        o[i] ^= 0x04;
    }
    free(b);
    free(o);
    free(f);
    /* the empty one */
    f = fixture("v1-empty.sealed");
    rc =
        unseal_file(f, back, k1, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                    &h, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    ck_assert_uint_eq(h.size, 0);
    ck_assert_ptr_null(h.content_type);
    ck_assert_str_eq(h.path, "/empty.txt");
    seal_header_clear(&h);
    /* and the wrong master key is still named */
    ck_assert_int_eq(unseal_file(f, NULL, master, NULL, NULL, err, sizeof err), -EBADMSG);
    ck_assert_msg(strstr(err, "master key") != NULL, "%s", err);
    free(f);
    free(back);
    free(bad);
}
END_TEST

START_TEST(test_keys)
{
    char *kf = pth("master.key");
    uint8_t k1[DR_KEY_LEN], k2[DR_KEY_LEN];
    char err[256];
    ck_assert_int_eq(keys_load_master(kf, false, k1, err, sizeof err), -ENOENT);
    ck_assert_int_eq(keys_load_master(kf, true, k1, err, sizeof err), 0);
    struct stat st;
    ck_assert_int_eq(stat(kf, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(st.st_size, 65);
    ck_assert_int_eq(keys_load_master(kf, true, k2, err, sizeof err), 0);
    ck_assert(memcmp(k1, k2, DR_KEY_LEN) == 0);
    write_all(kf, "abcd\n", 5);
    ck_assert_int_eq(keys_load_master(kf, true, k2, err, sizeof err), -EINVAL);
    ck_assert_msg(strstr(err, "bad length") != NULL, "%s", err);

    uint8_t dk[DR_KEY_LEN], wk[DR_WRAPPED_KEY_LEN], back[DR_KEY_LEN];
    keys_new_data_key(k1, dk, wk);
    ck_assert_int_eq(keys_unwrap(k1, wk, sizeof wk, back), 0);
    ck_assert(memcmp(dk, back, DR_KEY_LEN) == 0);
    uint8_t dk2[DR_KEY_LEN], wk2[DR_WRAPPED_KEY_LEN];
    keys_new_data_key(k1, dk2, wk2);
    ck_assert(memcmp(dk, dk2, DR_KEY_LEN) != 0); /* a fresh key each time */
    memset(k2, 0, sizeof k2);
    ck_assert_int_eq(keys_unwrap(k2, wk, sizeof wk, back), -EBADMSG);
    wk[20] ^= 1;
    ck_assert_int_eq(keys_unwrap(k1, wk, sizeof wk, back), -EBADMSG);
    ck_assert_int_eq(keys_unwrap(k1, wk, 10, back), -EINVAL);
    free(kf);
}
END_TEST

static Suite *seal_suite(void)
{
    Suite *s = suite_create("seal");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_segments_math);
    tcase_add_test(tc, test_scratch_is_written_anew);
    tcase_add_test(tc, test_seal_fd_at);
    tcase_add_test(tc, test_seal_mem_at);
    tcase_add_test(tc, test_round_trip_edges);
    tcase_add_test(tc, test_every_byte_flip_detected);
    tcase_add_test(tc, test_tags_only_detects_every_flip_and_cut);
    tcase_add_test(tc, test_error_names_segment);
    tcase_add_test(tc, test_truncation_and_reorder);
    tcase_add_test(tc, test_wrong_master_key);
    tcase_add_test(tc, test_read_header);
    tcase_add_test(tc, test_plaintext_not_in_object);
    tcase_add_test(tc, test_keys);
    tcase_add_test(tc, test_v2_header_shows_nothing);
    tcase_add_test(tc, test_v1_fixtures_still_read);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(seal_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/* bench/fill_floor.c - the least CPU a cold cache fill can cost here
 * (issue 15): what any server that keeps objects encrypted and serves
 * plaintext from a cache must do for a cold GET, with nothing of dripd
 * around it. bench/download.sh runs it beside the cold GETs so that its
 * figure sits next to dripd's and nginx's CPU per GET of the same run.
 *
 *   fill_floor prepare DIR N SIZE   N objects of SIZE random bytes, sealed
 *                                   the way dripd seals them: AES-256-GCM
 *                                   in 64 KiB segments, a 16-byte tag after
 *                                   each (no header)
 *   fill_floor run DIR N SIZE       for each object: open it, read it in
 *                                   256 KiB preads, decrypt and check every
 *                                   tag, write the plaintext to a new file
 *                                   (O_CREAT | O_EXCL) and rename it in;
 *                                   prints "FLOOR cpu_ms=<per object>
 *                                   wall_ms=<per object>"
 *
 * Drop the page cache before "run" to read from the disk, as a cold GET
 * does (download.sh does). One thread: the figure is CPU per object, not
 * a rate. What it leaves out is all dripd adds: HTTP, the catalog, the
 * stage hand-offs, the sendfile of the response; so dripd's CPU per cold
 * GET can approach (nginx's + this), never go under it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_NAME "fill_floor"
#include "floor.h"

#define SEG (64u << 10) /* dripd's default pipeline.segment_size */
#define TAG 16u
#define CHUNK (4u * (SEG + TAG)) /* about 256 KiB of plaintext per read, as seal.c */

static const unsigned char key[32] = {1, 2, 3};

static void nonce_of(unsigned char iv[12], unsigned idx)
{
    memset(iv, 0, 12);
    iv[8] = (unsigned char)(idx >> 24), iv[9] = (unsigned char)(idx >> 16);
    iv[10] = (unsigned char)(idx >> 8), iv[11] = (unsigned char)idx;
}

static void prepare(const char *dir, int n, size_t size)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    unsigned char *plain = malloc(SEG), *out = malloc(SEG + TAG);
    char path[4096];
    mkdir(dir, 0700);
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/obj.%d", dir, i);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            die(path);
        for (size_t off = 0, idx = 0; off < size; off += SEG, idx++) {
            size_t len = size - off < SEG ? size - off : SEG;
            unsigned char iv[12];
            int l = 0;
            RAND_bytes(plain, (int)len);
            nonce_of(iv, (unsigned)idx);
            EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv);
            EVP_EncryptUpdate(c, out, &l, plain, (int)len);
            EVP_EncryptFinal_ex(c, out + len, &l);
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG, out + len);
            write_all(fd, out, len + TAG);
        }
        if (fsync(fd) != 0)
            die("fsync");
        close(fd);
    }
    EVP_CIPHER_CTX_free(c);
    free(plain);
    free(out);
}

static void run(const char *dir, int n, size_t size)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, NULL);
    unsigned char *in = malloc(CHUNK), *out = malloc(CHUNK);
    char path[4096], tmp[4096], dst[4096];
    double c0 = cpu_s(), w0 = wall_s();
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/obj.%d", dir, i);
        snprintf(tmp, sizeof tmp, "%s/plain.%d.tmp", dir, i);
        snprintf(dst, sizeof dst, "%s/plain.%d", dir, i);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int of = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
        if (fd < 0 || of < 0)
            die(fd < 0 ? path : tmp);
        size_t nseg = (size + SEG - 1) / SEG, idx = 0;
        off_t pos = 0;
        while (idx < nseg) {
            ssize_t got = pread(fd, in, CHUNK, pos);
            if (got <= 0)
                die("pread");
            size_t ioff = 0, ooff = 0;
            while (ioff < (size_t)got) {
                size_t len = (size_t)got - ioff - TAG < SEG ? (size_t)got - ioff - TAG : SEG;
                unsigned char iv[12];
                int l = 0;
                nonce_of(iv, (unsigned)idx);
                int ok = EVP_DecryptInit_ex(c, NULL, NULL, NULL, iv) == 1 &&
                         EVP_DecryptUpdate(c, out + ooff, &l, in + ioff, (int)len) == 1 &&
                         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG, in + ioff + len) == 1 &&
                         EVP_DecryptFinal_ex(c, out + ooff + len, &l) == 1;
                if (!ok) {
                    fprintf(stderr, "fill_floor: %s: segment %zu tag mismatch\n", path, idx);
                    exit(1);
                }
                ioff += len + TAG, ooff += len, idx++;
            }
            write_all(of, out, ooff);
            pos += got;
        }
        close(fd);
        close(of);
        if (rename(tmp, dst) != 0)
            die("rename");
    }
    double cpu = cpu_s() - c0, wall = wall_s() - w0;
    printf("FLOOR cpu_ms=%.3f wall_ms=%.3f\n", cpu * 1000 / n, wall * 1000 / n);
    for (int i = 0; i < n; i++) { /* the next run creates them again */
        snprintf(dst, sizeof dst, "%s/plain.%d", dir, i);
        unlink(dst);
    }
    EVP_CIPHER_CTX_free(c);
    free(in);
    free(out);
}

int main(int argc, char **argv)
{
    if (argc != 5 || (strcmp(argv[1], "prepare") != 0 && strcmp(argv[1], "run") != 0)) {
        fprintf(stderr, "usage: fill_floor prepare|run DIR N SIZE\n");
        return 2;
    }
    int n = atoi(argv[3]);
    size_t size = (size_t)strtoull(argv[4], NULL, 10);
    if (n <= 0 || size == 0) {
        fprintf(stderr, "fill_floor: N and SIZE must be positive\n");
        return 2;
    }
    if (strcmp(argv[1], "prepare") == 0)
        prepare(argv[2], n, size);
    else
        run(argv[2], n, size);
    return 0;
}

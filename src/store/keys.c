/* keys.c - the master key file and envelope encryption of data keys.
 *
 * The master key is 32 random bytes kept hex-encoded (64 characters and a
 * newline) in encryption.key_file, mode 0600. On first start it is created
 * as a temporary file, fsynced, and published with link(2), so two
 * processes racing to create it agree on one key (the loser reads the
 * winner's) and a crash never leaves a half-written key file.
 *
 * A data key (one per media) is wrapped with AES-256-GCM under the master
 * key: wrapped = nonce(12) || ciphertext(32) || tag(16), with the fixed
 * associated data "dripd data key v1" so a wrapped key cannot be confused
 * with any other GCM output of the same master key.
 *
 * Threads: any; no global state (each call makes its own EVP context).
 * Never logs key material.
 */
#include "dripd/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dripd/log.h"
#include "dripd/util.h"

static const char wrap_aad[] = "dripd data key v1";

static int parse_key(const char *buf, size_t len, uint8_t key[DR_KEY_LEN])
{
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
        len--;
    if (len != 2 * DR_KEY_LEN)
        return -EINVAL;
    for (size_t i = 0; i < DR_KEY_LEN; i++) {
        int b = dr_hex_byte(buf + 2 * i);
        if (b < 0)
            return -EINVAL;
        key[i] = (uint8_t)b;
    }
    return 0;
}

static int read_key(const char *key_file, uint8_t key[DR_KEY_LEN], char *err, size_t errlen)
{
    char buf[256];
    int fd = open(key_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) == 0 && (st.st_mode & 077) != 0)
        log_warn("key_file %s is readable by other users (mode %03o); chmod 600 it", key_file,
                 (unsigned)(st.st_mode & 0777));
    ssize_t n = dr_read_full(fd, buf, sizeof buf);
    close(fd);
    if (n < 0) {
        snprintf(err, errlen, "key_file %s: %s", key_file, strerror((int)-n));
        return (int)n;
    }
    int rc = parse_key(buf, (size_t)n, key);
    OPENSSL_cleanse(buf, sizeof buf);
    if (rc != 0)
        snprintf(err, errlen, "key_file %s: bad length or not hex (want %d hex characters)",
                 key_file, 2 * DR_KEY_LEN);
    return rc;
}

static int create_key(const char *key_file, uint8_t key[DR_KEY_LEN], char *err, size_t errlen)
{
    uint8_t k[DR_KEY_LEN];
    char hex[2 * DR_KEY_LEN + 2];
    char *tmp = xasprintf("%s.tmp.%ld", key_file, (long)getpid());
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "key_file %s: cannot create: %s", key_file, strerror(errno));
        goto out;
    }
    dr_random(k, sizeof k);
    dr_hex(k, sizeof k, hex);
    hex[2 * DR_KEY_LEN] = '\n';
    rc = dr_write_all(fd, hex, 2 * DR_KEY_LEN + 1);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    close(fd);
    if (rc != 0) {
        snprintf(err, errlen, "key_file %s: cannot write: %s", key_file, strerror(-rc));
        unlink(tmp);
        goto out;
    }
    if (link(tmp, key_file) != 0) {
        rc = -errno;
        unlink(tmp);
        if (rc == -EEXIST) /* somebody else created it first: use theirs */
            rc = read_key(key_file, key, err, errlen);
        else
            snprintf(err, errlen, "key_file %s: cannot create: %s", key_file, strerror(-rc));
        goto out;
    }
    unlink(tmp);
    dr_fsync_parent(key_file);
    memcpy(key, k, DR_KEY_LEN);
    log_info("created a new master key in %s", key_file);
out:
    OPENSSL_cleanse(k, sizeof k);
    OPENSSL_cleanse(hex, sizeof hex);
    free(tmp);
    return rc;
}

int keys_load_master(const char *key_file, bool create, uint8_t key[DR_KEY_LEN], char *err,
                     size_t errlen)
{
    if (key_file == NULL || *key_file == '\0') {
        snprintf(err, errlen, "encryption.key_file is not set");
        return -EINVAL;
    }
    if (errlen > 0)
        err[0] = '\0';
    int rc = read_key(key_file, key, err, errlen);
    if (rc == -ENOENT && create)
        return create_key(key_file, key, err, errlen);
    if (rc < 0 && errlen > 0 && err[0] == '\0')
        snprintf(err, errlen, "key_file %s: %s", key_file, strerror(-rc));
    return rc;
}

void keys_new_data_key(const uint8_t master[DR_KEY_LEN], uint8_t data_key[DR_KEY_LEN],
                       uint8_t wrapped[DR_WRAPPED_KEY_LEN])
{
    dr_random(data_key, DR_KEY_LEN);
    dr_random(wrapped, 12);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = c != NULL;
    ok = ok && EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, master, wrapped) == 1;
    ok =
        ok && EVP_EncryptUpdate(c, NULL, &len, (const uint8_t *)wrap_aad, sizeof wrap_aad - 1) == 1;
    ok = ok && EVP_EncryptUpdate(c, wrapped + 12, &len, data_key, DR_KEY_LEN) == 1;
    ok = ok && EVP_EncryptFinal_ex(c, wrapped + 12 + len, &len) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, wrapped + 12 + DR_KEY_LEN) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) { /* only on a broken libcrypto: never hand out an unwrapped key */
        log_error("keys: AES-256-GCM unavailable in libcrypto");
        abort();
    }
}

int keys_unwrap(const uint8_t master[DR_KEY_LEN], const uint8_t *wrapped, size_t wrapped_len,
                uint8_t data_key[DR_KEY_LEN])
{
    if (wrapped == NULL || wrapped_len != DR_WRAPPED_KEY_LEN)
        return -EINVAL;
    uint8_t tag[16], out[DR_KEY_LEN + 16];
    memcpy(tag, wrapped + 12 + DR_KEY_LEN, 16);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = c != NULL;
    ok = ok && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, master, wrapped) == 1;
    ok =
        ok && EVP_DecryptUpdate(c, NULL, &len, (const uint8_t *)wrap_aad, sizeof wrap_aad - 1) == 1;
    ok = ok && EVP_DecryptUpdate(c, out, &len, wrapped + 12, DR_KEY_LEN) == 1;
    ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
    int fin = ok ? EVP_DecryptFinal_ex(c, out + len, &len) : 0;
    EVP_CIPHER_CTX_free(c);
    if (!ok || fin != 1) {
        OPENSSL_cleanse(out, sizeof out);
        return -EBADMSG;
    }
    memcpy(data_key, out, DR_KEY_LEN);
    OPENSSL_cleanse(out, sizeof out);
    return 0;
}

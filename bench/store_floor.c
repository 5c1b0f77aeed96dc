/* bench/store_floor.c - what storing a small object durably costs here at
 * the least (issue 15), one file per object (what dripd's local store
 * does for all but small uploads) against one pack file that objects are
 * appended to and against rows of an SQLite table (what it does for
 * small uploads: .small.db), with nothing of dripd around any.
 *
 *   store_floor files DIR N SIZE BATCH
 *       as the pipeline's encrypt and store steps do for a small upload:
 *       each object is written to a new file in DIR/work (O_CREAT |
 *       O_EXCL), renamed into DIR/objects under its key; after every
 *       BATCH objects one syncfs of the file system and one fsync of
 *       DIR/objects (store_local.c: put_nosync, then sync)
 *   store_floor tmpfile DIR N SIZE BATCH
 *       the same without the work file: each object is an O_TMPFILE in
 *       DIR/objects, linked in under its key (linkat of /proc/self/fd/N);
 *       the same syncs per batch
 *   store_floor sqlite DIR N SIZE BATCH
 *       each object a row (key, blob) of one SQLite table in DIR/objects.db
 *       (WAL, synchronous=FULL, the default autocheckpoint), a transaction
 *       per BATCH objects: what keeping small objects in a database of the
 *       store's own would cost
 *   store_floor pack DIR N SIZE BATCH
 *       each object appended to DIR/pack (a 64-byte record header with
 *       its key and length, then its bytes; O_APPEND); after every BATCH
 *       objects one fdatasync of the pack
 *
 * Prints "FLOOR mode=<mode> cpu_us=<per object> wall_us=<per object>".
 * One thread, random bytes (the objects are sealed: incompressible).
 * DIR must not exist (files: its directories are made fresh, so no run
 * meets another's deleted inodes). What it leaves out is everything but
 * the file system: the catalog, the cipher, the stages.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#define FLOOR_NAME "store_floor"
#include "floor.h"

/* dripd's key shape: "<26-char ULID>_<yyyymmddThhmmssZ>.bin" */
static void key_of(unsigned i, char *out, size_t len)
{
    snprintf(out, len, "01JEXAMPLE%016u_20261207T060000Z.bin", i);
}

static void run_files(const char *dir, unsigned n, size_t size, unsigned batch, const char *buf,
                      bool tmpfile)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/work", dir);
    if (mkdir(path, 0700) != 0)
        die("mkdir work");
    int work = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    snprintf(path, sizeof path, "%s/objects", dir);
    if (mkdir(path, 0700) != 0)
        die("mkdir objects");
    int objs = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (work < 0 || objs < 0)
        die("open dirs");
    int *fds = calloc(batch, sizeof *fds);
    unsigned pending = 0;
    for (unsigned i = 0; i < n; i++) {
        char name[64], key[64];
        snprintf(name, sizeof name, "job%u.sealed", i);
        key_of(i, key, sizeof key);
        int fd = tmpfile ? openat(objs, ".", O_WRONLY | O_TMPFILE | O_CLOEXEC, 0600)
                         : openat(work, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            die("create");
        write_all(fd, buf + (i % 64), size);
        if (tmpfile) {
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
            if (linkat(AT_FDCWD, proc, objs, key, AT_SYMLINK_FOLLOW) != 0)
                die("linkat");
        } else if (renameat(work, name, objs, key) != 0) {
            die("rename");
        }
        fds[pending++] = fd;
        if (pending == batch || i + 1 == n) {
            if (syncfs(fds[0]) != 0 || fsync(objs) != 0)
                die("sync");
            for (unsigned k = 0; k < pending; k++)
                close(fds[k]);
            pending = 0;
        }
    }
    free(fds);
    close(work);
    close(objs);
}

static void run_pack(const char *dir, unsigned n, size_t size, unsigned batch, const char *buf)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/pack", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0)
        die("create pack");
    if (fsync(fd) != 0) /* its name, once: the pack exists before the first batch */
        die("fsync pack");
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0 || fsync(d) != 0)
        die("fsync dir");
    close(d);
    for (unsigned i = 0; i < n; i++) {
        char hdr[64] = {0};
        key_of(i, hdr, 56);
        uint64_t len = size;
        memcpy(hdr + 56, &len, sizeof len);
        write_all(fd, hdr, sizeof hdr);
        write_all(fd, buf + (i % 64), size);
        if ((i + 1) % batch == 0 || i + 1 == n)
            if (fdatasync(fd) != 0)
                die("fdatasync");
    }
    close(fd);
}

static void sql(sqlite3 *db, const char *q)
{
    char *msg = NULL;
    if (sqlite3_exec(db, q, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, FLOOR_NAME ": %s: %s\n", q, msg ? msg : "?");
        exit(1);
    }
}

static void run_sqlite(const char *dir, unsigned n, size_t size, unsigned batch, const char *buf)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/objects.db", dir);
    sqlite3 *db;
    sqlite3_stmt *ins;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die("sqlite3_open");
    sql(db, "PRAGMA journal_mode=WAL");
    sql(db, "PRAGMA synchronous=FULL");
    sql(db, "CREATE TABLE o(key TEXT PRIMARY KEY, data BLOB NOT NULL)");
    if (sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO o VALUES(?1, ?2)", -1, &ins, NULL) !=
        SQLITE_OK)
        die("prepare");
    for (unsigned i = 0; i < n; i++) {
        char key[64];
        key_of(i, key, sizeof key);
        if (i % batch == 0)
            sql(db, "BEGIN");
        sqlite3_bind_text(ins, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_blob(ins, 2, buf + (i % 64), (int)size, SQLITE_STATIC);
        if (sqlite3_step(ins) != SQLITE_DONE)
            die("insert");
        sqlite3_reset(ins);
        if ((i + 1) % batch == 0 || i + 1 == n)
            sql(db, "COMMIT");
    }
    sqlite3_finalize(ins);
    sqlite3_close(db);
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: store_floor files|tmpfile|sqlite|pack DIR N SIZE BATCH\n");
        return 2;
    }
    const char *mode = argv[1], *dir = argv[2];
    unsigned n = (unsigned)strtoul(argv[3], NULL, 10);
    size_t size = strtoul(argv[4], NULL, 10);
    unsigned batch = (unsigned)strtoul(argv[5], NULL, 10);
    if (n == 0 || size == 0 || batch == 0)
        return 2;
    char *buf = malloc(size + 64);
    int r = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (buf == NULL || r < 0 || read(r, buf, size + 64) != (ssize_t)(size + 64))
        die("random");
    close(r);
    if (mkdir(dir, 0700) != 0)
        die("mkdir DIR");
    double c0 = cpu_s(), w0 = wall_s();
    if (strcmp(mode, "files") == 0 || strcmp(mode, "tmpfile") == 0)
        run_files(dir, n, size, batch, buf, strcmp(mode, "tmpfile") == 0);
    else if (strcmp(mode, "sqlite") == 0)
        run_sqlite(dir, n, size, batch, buf);
    else if (strcmp(mode, "pack") == 0)
        run_pack(dir, n, size, batch, buf);
    else
        return 2;
    printf("FLOOR mode=%s cpu_us=%.1f wall_us=%.1f\n", mode, (cpu_s() - c0) * 1e6 / n,
           (wall_s() - w0) * 1e6 / n);
    free(buf);
    return 0;
}

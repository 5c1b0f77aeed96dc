/* test_spool.c - spool files: creation (directory made on demand, O_EXCL),
 * the batch sync used by the group commit (per-file results, both the
 * syncfs path and the per-file fallback), and the orphan sweep. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "api/spool.h"
#include "dripd/util.h"

static char *tmp_dir(void)
{
    char tmpl[] = "/tmp/test_spool.XXXXXX";
    char *d = mkdtemp(tmpl);
    ck_assert_ptr_nonnull(d);
    return xstrdup(d);
}

static void rm_tree(const char *dir)
{
    char *cmd = xasprintf("rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
}

START_TEST(test_create_makes_dir_once)
{
    char *d = tmp_dir();
    int fd = -1;
    char *path = NULL;
    /* no spool/ yet: created on demand */
    ck_assert_int_eq(spool_create(d, "01ARZ3NDEKTSV4RRFFQ69G5FAV", &fd, &path), 0);
    ck_assert_int_ge(fd, 0);
    char *want = xasprintf("%s/spool/01ARZ3NDEKTSV4RRFFQ69G5FAV.part", d);
    ck_assert_str_eq(path, want);
    struct stat st;
    ck_assert_int_eq(stat(path, &st), 0);
    ck_assert_int_eq(st.st_mode & 0777, 0600);
    ck_assert_int_eq(spool_write(fd, "abc", 3), 0);
    close(fd);
    /* the same id again: exclusive */
    int fd2 = -1;
    char *path2 = NULL;
    ck_assert_int_eq(spool_create(d, "01ARZ3NDEKTSV4RRFFQ69G5FAV", &fd2, &path2), -EEXIST);
    ck_assert_ptr_null(path2);
    /* another id in the existing directory */
    ck_assert_int_eq(spool_create(d, "01ARZ3NDEKTSV4RRFFQ69G5FAW", &fd2, &path2), 0);
    close(fd2);
    /* spool/ removed behind our back: made again */
    spool_remove(path);
    spool_remove(path2);
    char *sd = xasprintf("%s/spool", d);
    ck_assert_int_eq(rmdir(sd), 0);
    free(path2);
    path2 = NULL;
    ck_assert_int_eq(spool_create(d, "01ARZ3NDEKTSV4RRFFQ69G5FAX", &fd2, &path2), 0);
    close(fd2);
    /* a data_dir that cannot hold a directory: an error, nothing returned */
    char *file = xasprintf("%s/plain", d);
    int pf = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ck_assert_int_ge(pf, 0);
    close(pf);
    char *p3 = NULL;
    int fd3 = -1;
    ck_assert_int_lt(spool_create(file, "01ARZ3NDEKTSV4RRFFQ69G5FAY", &fd3, &p3), 0);
    ck_assert_ptr_null(p3);
    free(file);
    free(sd);
    free(want);
    free(path);
    free(path2);
    rm_tree(d);
    free(d);
}
END_TEST

/* n spool files with a few bytes each; fds[i] open for writing */
static void make_files(const char *d, int *fds, char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char id[48];
        snprintf(id, sizeof id, "01ARZ3NDEKTSV4RRFFQ69G5F%02zu", i);
        ck_assert_int_eq(spool_create(d, id, &fds[i], &paths[i]), 0);
        ck_assert_int_eq(spool_write(fds[i], id, strlen(id)), 0);
    }
}

static void close_files(int *fds, char **paths, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (fds[i] >= 0)
            close(fds[i]);
        free(paths[i]);
    }
}

START_TEST(test_sync_batch)
{
    char *d = tmp_dir();
    enum { N = 5 };
    int fds[N], rcs[N];
    char *paths[N];
    ck_assert_uint_eq(spool_sync_batch(NULL, NULL, 0), 0);
    make_files(d, fds, paths, N);
    /* one file (fdatasync path) */
    rcs[0] = 1;
    ck_assert_uint_eq(spool_sync_batch(fds, rcs, 1), 0);
    ck_assert_int_eq(rcs[0], 0);
    /* several (syncfs path) */
    for (int i = 0; i < N; i++)
        rcs[i] = 1;
    ck_assert_uint_eq(spool_sync_batch(fds, rcs, N), 0);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(rcs[i], 0);
    close_files(fds, paths, N);
    rm_tree(d);
    free(d);
}
END_TEST

START_TEST(test_sync_batch_reports_each_file)
{
    char *d = tmp_dir();
    enum { N = 4 };
    int fds[N], rcs[N];
    char *paths[N];
    make_files(d, fds, paths, N);
    /* a bad fd after the first: syncfs succeeds, that file's check fails */
    int saved = fds[2];
    fds[2] = -1;
    ck_assert_uint_eq(spool_sync_batch(fds, rcs, N), 1);
    ck_assert_int_eq(rcs[0], 0);
    ck_assert_int_eq(rcs[1], 0);
    ck_assert_int_eq(rcs[2], -EBADF);
    ck_assert_int_eq(rcs[3], 0);
    fds[2] = saved;
    /* a bad first fd: syncfs itself fails, each file is synced alone */
    saved = fds[0];
    fds[0] = -1;
    ck_assert_uint_eq(spool_sync_batch(fds, rcs, N), 1);
    ck_assert_int_eq(rcs[0], -EBADF);
    for (int i = 1; i < N; i++)
        ck_assert_int_eq(rcs[i], 0);
    fds[0] = saved;
    close_files(fds, paths, N);
    rm_tree(d);
    free(d);
}
END_TEST

static const char *ref_name;

static int refs_one(void *arg, char ***paths, size_t *n)
{
    (void)arg;
    *paths = xcalloc(1, sizeof **paths);
    (*paths)[0] = xasprintf("/anywhere/spool/%s", ref_name);
    *n = 1;
    return 0;
}

static int refs_fail(void *arg, char ***paths, size_t *n)
{
    (void)arg;
    *paths = NULL;
    *n = 0;
    return -EIO;
}

static void touch(const char *dir, const char *name, size_t size)
{
    char *p = xasprintf("%s/spool/%s", dir, name);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    for (size_t i = 0; i < size; i++)
        ck_assert_int_eq(write(fd, "x", 1), 1);
    close(fd);
    free(p);
}

static bool there(const char *dir, const char *name)
{
    char *p = xasprintf("%s/spool/%s", dir, name);
    bool ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

/* Orphans go; a file a live process holds, a referenced file and anything
 * not named *.part stay; a failing reference lookup removes nothing. */
START_TEST(test_sweep)
{
    char *d = tmp_dir();
    size_t removed = 9;
    uint64_t bytes = 9;
    /* no spool directory yet: nothing to do */
    ck_assert_int_eq(spool_sweep(d, refs_one, NULL, &removed, &bytes), 0);
    ck_assert_uint_eq(removed, 0);
    int live = -1;
    char *live_path = NULL;
    ck_assert_int_eq(spool_create(d, "01ARZ3NDEKTSV4RRFFQ69G5FA1", &live, &live_path), 0);
    /* held by another process (a worker of the other generation) */
    int child_fd = -1;
    char *child_path = NULL;
    int pipefd[2];
    ck_assert_int_eq(pipe(pipefd), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        if (spool_create(d, "01ARZ3NDEKTSV4RRFFQ69G5FA2", &child_fd, &child_path) != 0)
            _exit(1);
        if (write(pipefd[1], "k", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    close(pipefd[1]);
    char k;
    ck_assert_int_eq(read(pipefd[0], &k, 1), 1);
    touch(d, "01ARZ3NDEKTSV4RRFFQ69G5FA3.part", 100); /* orphan */
    touch(d, "01ARZ3NDEKTSV4RRFFQ69G5FA4.part", 10);  /* a tus session's */
    touch(d, "notes.txt", 5);                         /* not ours */
    ref_name = "01ARZ3NDEKTSV4RRFFQ69G5FA4.part";
    ck_assert_int_eq(spool_sweep(d, refs_fail, NULL, &removed, &bytes), -EIO);
    ck_assert(there(d, "01ARZ3NDEKTSV4RRFFQ69G5FA3.part"));
    ck_assert_int_eq(spool_sweep(d, refs_one, NULL, &removed, &bytes), 0);
    ck_assert_uint_eq(removed, 1);
    ck_assert_uint_eq(bytes, 100);
    ck_assert(!there(d, "01ARZ3NDEKTSV4RRFFQ69G5FA3.part"));
    ck_assert(there(d, "01ARZ3NDEKTSV4RRFFQ69G5FA1.part"));
    ck_assert(there(d, "01ARZ3NDEKTSV4RRFFQ69G5FA2.part"));
    ck_assert(there(d, "01ARZ3NDEKTSV4RRFFQ69G5FA4.part"));
    ck_assert(there(d, "notes.txt"));
    /* the holders are gone (a process killed mid-upload): their files go */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(live);
    ck_assert_int_eq(spool_sweep(d, refs_one, NULL, &removed, &bytes), 0);
    ck_assert_uint_eq(removed, 2);
    ck_assert(!there(d, "01ARZ3NDEKTSV4RRFFQ69G5FA1.part"));
    ck_assert(!there(d, "01ARZ3NDEKTSV4RRFFQ69G5FA2.part"));
    ck_assert(there(d, "01ARZ3NDEKTSV4RRFFQ69G5FA4.part"));
    free(live_path);
    close(pipefd[0]);
    rm_tree(d);
    free(d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spool");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_create_makes_dir_once);
    tcase_add_test(tc, test_sync_batch);
    tcase_add_test(tc, test_sync_batch_reports_each_file);
    tcase_add_test(tc, test_sweep);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/* bench/catalog_loop.c - the catalog's part of a small upload, alone
 * (issue 15): the SQL a 4 KiB PUT costs the catalog, from its intake to
 * its last step, with no HTTP, no pipeline and no other process around.
 *
 * Each round, on a fresh SQLite catalog: catalog_intake_uploads_deferred
 * of BATCH 4 KiB inline uploads (the intake's group commit, stage
 * "encrypt", as a small PUT's), catalog_jobs_claim_media of them (the
 * upload starter's claim) and catalog_jobs_step_deferred of their last
 * steps (done, with a hash, wrapped key and storage key, available: a
 * small job's one step commit). Each of the three runs on a connection
 * of its own, as in dripd (dripd-http's commit thread, the starter and
 * the step leader share one in dripd-pipeline, but the intake always
 * comes between them), so every transaction begins with a page cache
 * another connection's commit made stale. No fsync: the deferred syncs
 * are never made (CPU, not the disk, is measured).
 *
 * Prints the CPU time of this thread per upload in each of the three
 * (after the first fifth of the rounds, a warm-up), and with TRACE=1 the
 * time SQLite reports for each statement (sqlite3_trace_v2's PROFILE:
 * wall time, per upload and per call), most first. glibc's allocator is
 * set as dripd-pipeline sets it (pipeline_worker.c): with glibc's
 * defaults, a single-threaded loop like this one spends most of its time
 * growing and trimming the heap for SQLite's ephemeral tables instead.
 *
 * Built by bench/catalog_loop.sh against a tree's build/libdripd.a:
 *   catalog_loop DIR ROUNDS BATCH
 */
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dripd/catalog.h"
#include "dripd/config.h"

/* ---- TRACE=1: SQLite's time per statement ----------------------------- */

#define MAX_SQL 256
struct sql_time {
    char *sql;
    unsigned long long ns;
    unsigned long calls;
};
static struct sql_time g_sql[MAX_SQL];
static int g_nsql;
static int g_tracing; /* only after the warm-up */

static int on_profile(unsigned type, void *ctx, void *stmt, void *ns)
{
    (void)ctx;
    if (type != SQLITE_TRACE_PROFILE || !g_tracing)
        return 0;
    const char *sql = sqlite3_sql(stmt);
    int i = 0;
    while (i < g_nsql && strcmp(g_sql[i].sql, sql) != 0)
        i++;
    if (i == g_nsql) {
        if (g_nsql == MAX_SQL)
            return 0;
        g_sql[g_nsql++].sql = strdup(sql);
    }
    g_sql[i].ns += (unsigned long long)*(sqlite3_int64 *)ns;
    g_sql[i].calls++;
    return 0;
}

/* The catalog's connections open through here (the link's --wrap). */
int __real_sqlite3_open_v2(const char *file, sqlite3 **db, int flags, const char *vfs);
int __wrap_sqlite3_open_v2(const char *file, sqlite3 **db, int flags, const char *vfs);
int __wrap_sqlite3_open_v2(const char *file, sqlite3 **db, int flags, const char *vfs)
{
    int rc = __real_sqlite3_open_v2(file, db, flags, vfs);
    if (rc == SQLITE_OK && getenv("TRACE") != NULL && strcmp(getenv("TRACE"), "1") == 0)
        sqlite3_trace_v2(*db, SQLITE_TRACE_PROFILE, on_profile, NULL);
    return rc;
}

static int by_time(const void *a, const void *b)
{
    unsigned long long x = ((const struct sql_time *)a)->ns;
    unsigned long long y = ((const struct sql_time *)b)->ns;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* ---- the loop ----------------------------------------------------------- */

static double cpu_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void fail(const char *what, int rc)
{
    fprintf(stderr, "catalog_loop: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: catalog_loop DIR ROUNDS BATCH\n");
        return 2;
    }
    mallopt(M_ARENA_MAX, 2);
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 2 << 20);
    int rounds = atoi(argv[2]), batch = atoi(argv[3]);
    if (rounds < 5 || batch < 1 || batch > 1000)
        fail("ROUNDS >= 5, BATCH 1..1000", EINVAL);
    struct dr_user user = {.name = (char *)"bench", .token = (char *)"t", .admin = true};
    struct dr_config cfg = {.data_dir = argv[1], .users = &user, .n_users = 1};
    int rc = catalog_migrate(&cfg);
    struct catalog *in = NULL, *claim = NULL, *step = NULL;
    if (rc == 0)
        rc = catalog_open(&cfg, &in);
    if (rc == 0)
        rc = catalog_open(&cfg, &claim);
    if (rc == 0)
        rc = catalog_open(&cfg, &step);
    if (rc == 0)
        rc = catalog_sync_users(in, &cfg);
    if (rc != 0)
        fail("open the catalog", rc);

    static char body[4096];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)(i * 131 + 7);
    uint8_t wrapped[60];
    memset(wrapped, 7, sizeof wrapped);
    struct dr_intake *it = calloc((size_t)batch, sizeof *it);
    char(*paths)[64] = calloc((size_t)batch, 64);
    char(*keys)[128] = calloc((size_t)batch, 128);
    struct dr_job *jobs = calloc((size_t)batch, sizeof *jobs);
    struct dr_media **media = calloc((size_t)batch, sizeof *media);
    struct dr_job_step *steps = calloc((size_t)batch, sizeof *steps);
    double t_in = 0, t_claim = 0, t_step = 0;
    long n = 0, k = 0;
    for (int r = 0; r < rounds; r++) {
        bool counted = r >= rounds / 5;
        g_tracing = counted;
        for (int i = 0; i < batch; i++) {
            snprintf(paths[i], sizeof paths[i], "/loop/f%ld.bin", k++);
            it[i] = (struct dr_intake){.owner = "bench",
                                       .path = paths[i],
                                       .size = sizeof body,
                                       .content_type = "application/octet-stream",
                                       .body = body,
                                       .body_len = sizeof body,
                                       .stage = "encrypt"};
        }
        double t0 = cpu_us();
        if ((rc = catalog_intake_uploads_deferred(in, it, (size_t)batch)) != 0)
            fail("intake", rc);
        double t1 = cpu_us();
        int got = 0;
        rc = catalog_jobs_claim_media(claim, "upload", batch, "loop", jobs, media, &got);
        if (rc != 0 || got != batch)
            fail("claim", rc != 0 ? rc : EAGAIN);
        double t2 = cpu_us();
        for (int i = 0; i < batch; i++) {
            snprintf(keys[i], sizeof keys[i], "%s_20261208T000000Z.bin", jobs[i].media_id);
            steps[i] = (struct dr_job_step){
                .job_id = jobs[i].id,
                .media_id = jobs[i].media_id,
                .sha256_hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                .wrapped_key = wrapped,
                .wrapped_key_len = sizeof wrapped,
                .storage_key = keys[i],
                .available = true};
        }
        int64_t seq = 0;
        double t3 = cpu_us();
        if ((rc = catalog_jobs_step_deferred(step, steps, (size_t)batch, &seq)) != 0)
            fail("step", rc);
        double t4 = cpu_us();
        for (int i = 0; i < batch; i++) {
            if (steps[i].result != 0)
                fail("a step", steps[i].result);
            dr_job_clear(&jobs[i]);
            if (media[i] != NULL) {
                dr_media_clear(media[i]);
                free(media[i]);
            }
            free(it[i].renamed);
        }
        if (counted) {
            t_in += t1 - t0, t_claim += t2 - t1, t_step += t4 - t3;
            n += batch;
        }
    }
    printf("intake_us %.1f claim_us %.1f step_us %.1f total_us %.1f\n", t_in / n, t_claim / n,
           t_step / n, (t_in + t_claim + t_step) / n);
    if (g_nsql > 0) {
        qsort(g_sql, (size_t)g_nsql, sizeof g_sql[0], by_time);
        for (int i = 0; i < g_nsql; i++)
            fprintf(stderr, "%7.2f us/upload %7lu calls %7.2f us/call  %.100s\n",
                    (double)g_sql[i].ns / 1e3 / (double)n, g_sql[i].calls,
                    (double)g_sql[i].ns / 1e3 / (double)g_sql[i].calls, g_sql[i].sql);
    }
    catalog_close(in);
    catalog_close(claim);
    catalog_close(step);
    return 0;
}

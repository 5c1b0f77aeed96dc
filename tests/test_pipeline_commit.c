/* test_pipeline_commit.c - the pipeline's group commit of job steps, on
 * SQLite and on PostgreSQL (tests/pgtest.h). */
#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dripd/catalog.h"
#include "pipeline/pipeline_commit.h"
#include "dripd/config.h"
#include "dripd/metrics.h"
#include "dripd/util.h"
#include "pgtest.h"

#define THREADS 6
#define PER_THREAD 25

static char tmpdir[256];
static struct dr_config tcfg;
static bool use_pg;
static char pgdsn[320];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_pipeline_commit.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    memset(&tcfg, 0, sizeof tcfg);
    tcfg.data_dir = tmpdir;
    if (use_pg) {
        ck_assert_int_eq(pgtest_createdb(pgdsn, sizeof pgdsn), 0);
        tcfg.catalog.backend = DR_CATALOG_POSTGRES;
        tcfg.catalog.postgres.dsn = pgdsn;
        tcfg.catalog.postgres.pool = 8;
    }
    ck_assert_int_eq(catalog_migrate(&tcfg), 0);
}

static void setup_sqlite(void)
{
    use_pg = false;
    setup();
}

static void setup_pg(void)
{
    use_pg = true;
    setup();
}

static void teardown(void)
{
    if (use_pg)
        pgtest_dropdb(pgdsn);
    nftw(tmpdir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
}

/* n upload jobs, claimed (running); ids into jid/mid. */
static void make_running(struct catalog *cat, int n, char (*jid)[DR_ID_LEN + 1],
                         char (*mid)[DR_ID_LEN + 1])
{
    for (int i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof path, "/c/%d.bin", i);
        struct dr_intake it = {.owner = "alice", .path = path, .size = 1, .spool_path = "/s"};
        ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
        ck_assert_int_eq(it.result, 0);
        memcpy(jid[i], it.job_id, sizeof jid[i]);
        memcpy(mid[i], it.media_id, sizeof mid[i]);
    }
    struct dr_job *got = xcalloc((size_t)n, sizeof *got);
    int k = 0;
    ck_assert_int_eq(catalog_jobs_claim(cat, "upload", n, "node:1", got, &k), 0);
    ck_assert_int_eq(k, n);
    for (int i = 0; i < k; i++)
        dr_job_clear(&got[i]);
    free(got);
}

static char jids[THREADS * PER_THREAD][DR_ID_LEN + 1];
static char mids[THREADS * PER_THREAD][DR_ID_LEN + 1];

struct cb_count {
    pthread_mutex_t mu;
    int calls, done;
    int64_t max_seq;
};

static void on_commit(void *arg, struct catalog *cat, int64_t last_seq, int done)
{
    struct cb_count *c = arg;
    ck_assert_ptr_nonnull(cat);
    pthread_mutex_lock(&c->mu);
    c->calls++;
    c->done += done;
    if (last_seq > c->max_seq)
        c->max_seq = last_seq;
    pthread_mutex_unlock(&c->mu);
}

struct worker_arg {
    struct pl_committer *c;
    int index;
    int failures;
};

/* Each job: encrypt -> store (sealed), store -> notify (stored), done
 * (available): three steps, each through the committer. */
static void *worker(void *arg)
{
    struct worker_arg *w = arg;
    struct catalog *cat = NULL;
    if (catalog_open(&tcfg, &cat) != 0) {
        w->failures++;
        return NULL;
    }
    uint8_t wk[40];
    memset(wk, 7, sizeof wk);
    for (int k = 0; k < PER_THREAD; k++) {
        int i = w->index * PER_THREAD + k;
        struct dr_job_step a = {.job_id = jids[i],
                                .next_stage = "store",
                                .work_path = "/w",
                                .media_id = mids[i],
                                .sha256_hex = "ab",
                                .wrapped_key = wk,
                                .wrapped_key_len = sizeof wk};
        struct dr_job_step b = {
            .job_id = jids[i], .next_stage = "notify", .media_id = mids[i], .storage_key = "K"};
        struct dr_job_step c = {.job_id = jids[i], .media_id = mids[i], .available = true};
        if (pl_commit_steps(w->c, cat, &a, 1) != 0 || a.result != 0 ||
            pl_commit_steps(w->c, cat, &b, 1) != 0 || b.result != 0 ||
            pl_commit_steps(w->c, cat, &c, 1) != 0 || c.result != 0)
            w->failures++;
        /* done twice: refused, nothing changes */
        if (pl_commit_steps(w->c, cat, &c, 1) != 0 || c.result != -ENOENT)
            w->failures++;
    }
    catalog_close(cat);
    return NULL;
}

/* THREADS workers on c, joined; none may have failed. */
static void run_workers(struct pl_committer *c)
{
    pthread_t tid[THREADS];
    struct worker_arg wa[THREADS];
    for (int t = 0; t < THREADS; t++) {
        wa[t] = (struct worker_arg){.c = c, .index = t};
        ck_assert_int_eq(pthread_create(&tid[t], NULL, worker, &wa[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(tid[t], NULL);
        ck_assert_int_eq(wa[t].failures, 0);
    }
}

START_TEST(test_threads_share_commits)
{
    struct catalog *cat;
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    make_running(cat, THREADS * PER_THREAD, jids, mids);
    struct cb_count cc = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct pl_committer *c = pl_committer_create(8, on_commit, &cc);
    run_workers(c);
    uint64_t txs = 0, steps = 0;
    pl_committer_stats(c, &txs, &steps);
    int total = THREADS * PER_THREAD;
    ck_assert_int_eq((int)steps, total * 4);
    ck_assert_int_le((int)txs, total * 4);
    ck_assert_int_eq((int)txs, cc.calls);
    ck_assert_int_eq(cc.done, total);
    int64_t last = 0;
    ck_assert_int_eq(catalog_events_last_seq(cat, &last), 0);
    ck_assert_int_le(cc.max_seq, last); /* PostgreSQL's sequence may have skipped seqs */
    uint64_t depth = 1;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, 0);
    for (int i = 0; i < total; i++) {
        struct dr_media m;
        ck_assert_int_eq(catalog_media_get(cat, mids[i], NULL, &m), 0);
        ck_assert_str_eq(m.state, "available");
        ck_assert_str_eq(m.storage_key, "K");
        ck_assert_str_eq(m.sha256, "ab");
        dr_media_clear(&m);
    }
    /* every job: created, stage store, stage notify, done */
    struct dr_event *ev;
    size_t ne;
    ck_assert_int_eq(catalog_events_since(cat, NULL, 0, 10000, &ev, &ne), 0);
    ck_assert_int_eq((int)ne, total * 4);
    catalog_events_free(ev, ne);
    pl_committer_destroy(c);
    catalog_close(cat);
    printf("group commit: %d steps in %llu transactions\n", total * 4, (unsigned long long)txs);
}
END_TEST

/* pl_committer_share_conn: the steps of many threads and a claimer's
 * transactions (pl_committer_run) all go through the committer's one
 * connection, one at a time: every step commits, every job is claimed
 * exactly once, and fn is handed that connection, not the fallback. */
struct claim_loop {
    struct pl_committer *c;
    struct catalog *own, *seen;
    int want, claimed, failures;
};

static int claim_some(struct catalog *cat, void *arg)
{
    struct claim_loop *l = arg;
    l->seen = cat;
    struct dr_job got[4];
    int k = 0;
    int rc = catalog_jobs_claim(cat, "upload", 4, "node:2", got, &k);
    for (int i = 0; i < k; i++)
        dr_job_clear(&got[i]);
    l->claimed += k;
    return rc;
}

static void *claimer(void *arg)
{
    struct claim_loop *l = arg;
    if (catalog_open(&tcfg, &l->own) != 0) {
        l->failures++;
        return NULL;
    }
    for (int tries = 0; l->claimed < l->want && tries < 10000; tries++)
        if (pl_committer_run(l->c, l->own, claim_some, l) != 0)
            l->failures++;
    return NULL;
}

START_TEST(test_shared_connection)
{
    struct catalog *cat;
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    make_running(cat, THREADS * PER_THREAD, jids, mids);
    enum { EXTRA = 40 };
    for (int i = 0; i < EXTRA; i++) { /* queued, for the claimer */
        char path[64];
        snprintf(path, sizeof path, "/q/%d.bin", i);
        struct dr_intake it = {.owner = "alice", .path = path, .size = 1, .spool_path = "/s"};
        ck_assert_int_eq(catalog_intake_uploads(cat, &it, 1), 0);
        ck_assert_int_eq(it.result, 0);
    }
    struct cb_count cc = {.mu = PTHREAD_MUTEX_INITIALIZER};
    struct pl_committer *c = pl_committer_create(8, on_commit, &cc);
    pl_committer_share_conn(c, &tcfg);
    struct claim_loop cl = {.c = c, .want = EXTRA};
    pthread_t ct;
    ck_assert_int_eq(pthread_create(&ct, NULL, claimer, &cl), 0);
    run_workers(c);
    pthread_join(ct, NULL);
    ck_assert_int_eq(cl.failures, 0);
    ck_assert_int_eq(cl.claimed, EXTRA);
    ck_assert_ptr_nonnull(cl.seen);
    ck_assert_ptr_ne(cl.seen, cl.own);
    catalog_close(cl.own);
    int total = THREADS * PER_THREAD;
    ck_assert_int_eq(cc.done, total);
    uint64_t depth = 1;
    ck_assert_int_eq(catalog_queue_depth(cat, &depth), 0);
    ck_assert_int_eq((int)depth, EXTRA); /* claimed (running), not done */
    for (int i = 0; i < total; i++) {
        struct dr_media m;
        ck_assert_int_eq(catalog_media_get(cat, mids[i], NULL, &m), 0);
        ck_assert_str_eq(m.state, "available");
        dr_media_clear(&m);
    }
    pl_committer_destroy(c);
    catalog_close(cat);
}
END_TEST

START_TEST(test_batches_commit_whole)
{
    /* A stage thread's batch is one request: all of it in one transaction
     * (even when bigger than max_batch), each step with its own result; a
     * small job's last step carries every media field at once. */
    enum { N = 20 };
    struct catalog *cat;
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    make_running(cat, N, jids, mids);
    struct pl_committer *c = pl_committer_create(8, NULL, NULL);
    uint8_t wk[40];
    memset(wk, 3, sizeof wk);
    struct dr_job_step steps[N];
    for (int i = 0; i < N; i++)
        steps[i] = (struct dr_job_step){.job_id = jids[i],
                                        .media_id = mids[i],
                                        .sha256_hex = "cd",
                                        .wrapped_key = wk,
                                        .wrapped_key_len = sizeof wk,
                                        .storage_key = "S",
                                        .available = true};
    steps[7].job_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV"; /* not running: refused alone */
    ck_assert_int_eq(pl_commit_steps(c, cat, steps, N), 0);
    uint64_t txs = 0, n = 0;
    pl_committer_stats(c, &txs, &n);
    ck_assert_int_eq((int)txs, 1);
    ck_assert_int_eq((int)n, N);
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(steps[i].result, i == 7 ? -ENOENT : 0);
        struct dr_media m;
        ck_assert_int_eq(catalog_media_get(cat, mids[i], NULL, &m), 0);
        ck_assert_str_eq(m.state, i == 7 ? "queued" : "available");
        if (i != 7) {
            ck_assert_str_eq(m.sha256, "cd");
            ck_assert_str_eq(m.storage_key, "S");
            ck_assert_uint_eq(m.wrapped_key_len, sizeof wk);
        }
        dr_media_clear(&m);
    }
    ck_assert_int_eq(pl_commit_steps(c, cat, steps, 0), 0); /* nothing: no transaction */
    pl_committer_stats(c, &txs, &n);
    ck_assert_int_eq((int)txs, 1);
    pl_committer_destroy(c);
    catalog_close(cat);
}
END_TEST

START_TEST(test_alone_commits_at_once)
{
    struct catalog *cat;
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    make_running(cat, 1, jids, mids);
    struct pl_committer *c = pl_committer_create(0, NULL, NULL); /* batch clamped to 1 */
    struct dr_job_step s = {.job_id = jids[0], .next_stage = "store"};
    ck_assert_int_eq(pl_commit_steps(c, cat, &s, 1), 0);
    ck_assert_int_eq(s.result, 0);
    struct dr_job j;
    ck_assert_int_eq(catalog_job_get(cat, jids[0], NULL, &j), 0);
    ck_assert_str_eq(j.stage, "store");
    dr_job_clear(&j);
    /* a step the catalog refuses as a whole: the transaction's error */
    struct dr_job_step bad = {.job_id = jids[0], .available = true}; /* no media id */
    ck_assert_int_eq(pl_commit_steps(c, cat, &bad, 1), -EINVAL);
    ck_assert_int_eq(bad.result, -EINVAL);
    uint64_t txs = 0, steps = 0;
    pl_committer_stats(c, &txs, &steps);
    ck_assert_int_eq((int)txs, 2);
    ck_assert_int_eq((int)steps, 2);
    pl_committer_destroy(c);
    pl_committer_destroy(NULL);
    catalog_close(cat);
}
END_TEST

struct commit_arg {
    struct pl_committer *c;
    struct dr_job_step *step;
    int rc;
};

static void *commit_one(void *arg)
{
    struct commit_arg *a = arg;
    struct catalog *cat = NULL;
    a->rc = catalog_open(&tcfg, &cat);
    if (a->rc == 0)
        a->rc = pl_commit_steps(a->c, cat, a->step, 1);
    catalog_close(cat);
    return NULL;
}

START_TEST(test_commit_is_a_priority_write)
{
    /* From before its BEGIN to its end, the leader's transaction counts as
     * a priority commit (metrics.h), which the intake lets go first: seen
     * here while another process's writer (a raw connection) holds
     * SQLite's write lock. */
    struct catalog *cat;
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    make_running(cat, 1, jids, mids);
    struct dr_proc_gauges g = {0};
    struct pl_committer *c = pl_committer_create(8, NULL, NULL);
    pl_committer_set_gauges(c, &g);
    char path[300];
    snprintf(path, sizeof path, "%s/catalog.db", tmpdir);
    sqlite3 *other;
    ck_assert_int_eq(sqlite3_open(path, &other), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    struct dr_job_step s = {.job_id = jids[0], .next_stage = "store"};
    struct commit_arg a = {.c = c, .step = &s, .rc = 1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, commit_one, &a), 0);
    while (__atomic_load_n(&g.writers_pending, __ATOMIC_RELAXED) == 0)
        sched_yield(); /* the committer is waiting for the lock, counted */
    ck_assert_uint_eq(__atomic_load_n(&g.writes_done, __ATOMIC_RELAXED), 0);
    ck_assert_int_eq(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    pthread_join(th, NULL);
    ck_assert_int_eq(a.rc, 0);
    ck_assert_int_eq(s.result, 0);
    ck_assert_int_eq(g.writers_pending, 0);
    ck_assert_uint_eq(g.writes_done, 1);
    sqlite3_close(other);
    pl_committer_destroy(c);
    catalog_close(cat);
}
END_TEST

/* The first commit's callback is held until the test opens the gate
 * (and with it every later callback: they never overlap). */
struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    bool open;
};

static void on_commit_gated(void *arg, struct catalog *cat, int64_t last_seq, int done)
{
    (void)cat;
    (void)last_seq;
    (void)done;
    struct gate *g = arg;
    pthread_mutex_lock(&g->mu);
    g->calls++;
    pthread_cond_broadcast(&g->cv);
    while (g->calls == 1 && !g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

START_TEST(test_lead_passes_on)
{
    /* Requests queued behind a leader, one per transaction (max_batch 1):
     * each leader, done, wakes the oldest waiting to lead the next, so all
     * of them commit (nobody is woken by a broadcast any more). */
    enum { K = 5 };
    struct catalog *cat;
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    make_running(cat, K + 1, jids, mids);
    struct gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct pl_committer *c = pl_committer_create(1, on_commit_gated, &g);
    struct dr_job_step s[K + 1];
    struct commit_arg a[K + 1];
    pthread_t th[K + 1];
    for (int i = 0; i <= K; i++) {
        s[i] = (struct dr_job_step){.job_id = jids[i], .next_stage = "store"};
        a[i] = (struct commit_arg){.c = c, .step = &s[i], .rc = 1};
    }
    ck_assert_int_eq(pthread_create(&th[0], NULL, commit_one, &a[0]), 0);
    pthread_mutex_lock(&g.mu);
    while (g.calls == 0) /* the first leader is in its callback, leading */
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    for (int i = 1; i <= K; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, commit_one, &a[i]), 0);
    usleep(300 * 1000); /* they queue up behind it */
    pthread_mutex_lock(&g.mu);
    g.open = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    for (int i = 0; i <= K; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(a[i].rc, 0);
        ck_assert_int_eq(s[i].result, 0);
    }
    uint64_t txs = 0, steps = 0;
    pl_committer_stats(c, &txs, &steps);
    ck_assert_int_eq((int)txs, K + 1);
    ck_assert_int_eq((int)steps, K + 1);
    ck_assert_int_eq(g.calls, K + 1);
    pl_committer_destroy(c);
    catalog_close(cat);
}
END_TEST

static uint64_t steps_sync_ns(void)
{
    struct dr_writer_stats st[DR_WRITER_KINDS];
    catalog_writer_stats(st);
    return st[DR_WRITER_STEPS].sync_ns;
}

START_TEST(test_next_commit_overlaps_the_last_ones_end)
{
    /* A leader gives the lead up as soon as its transaction committed,
     * then makes it durable (SQLite: the WAL's fsync, counted before its
     * callback runs) and runs its callback: a request that comes while
     * that callback is held commits meanwhile (issue 15: the next
     * transaction overlaps the last one's fsync). */
    struct catalog *cat;
    ck_assert_int_eq(catalog_open(&tcfg, &cat), 0);
    make_running(cat, 2, jids, mids);
    struct gate g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    struct pl_committer *c = pl_committer_create(8, on_commit_gated, &g);
    struct dr_job_step s[2];
    struct commit_arg a[2];
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        s[i] = (struct dr_job_step){.job_id = jids[i], .next_stage = "store"};
        a[i] = (struct commit_arg){.c = c, .step = &s[i], .rc = 1};
    }
    uint64_t sync0 = steps_sync_ns();
    ck_assert_int_eq(pthread_create(&th[0], NULL, commit_one, &a[0]), 0);
    pthread_mutex_lock(&g.mu);
    while (g.calls == 0) /* the first leader is in its callback */
        pthread_cond_wait(&g.cv, &g.mu);
    pthread_mutex_unlock(&g.mu);
    if (!use_pg) /* PostgreSQL's commits are durable when they return */
        ck_assert_uint_gt(steps_sync_ns(), sync0);
    ck_assert_int_eq(pthread_create(&th[1], NULL, commit_one, &a[1]), 0);
    for (;;) { /* the second commits, the first callback still held */
        struct dr_job j;
        ck_assert_int_eq(catalog_job_get(cat, jids[1], NULL, &j), 0);
        bool moved = strcmp(j.stage, "store") == 0;
        dr_job_clear(&j);
        if (moved)
            break;
        sched_yield();
    }
    pthread_mutex_lock(&g.mu);
    ck_assert_int_eq(g.calls, 1);
    g.open = true;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(a[i].rc, 0);
        ck_assert_int_eq(s[i].result, 0);
    }
    ck_assert_int_eq(g.calls, 2);
    pl_committer_destroy(c);
    catalog_close(cat);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("pipeline_commit");
    struct {
        const char *name;
        void (*fixture)(void);
    } backends[] = {{"sqlite", setup_sqlite}, {"postgres", setup_pg}};
    for (size_t i = 0; i < DR_ARRAY_LEN(backends); i++) {
        TCase *tc = tcase_create(backends[i].name);
        tcase_add_checked_fixture(tc, backends[i].fixture, teardown);
        tcase_set_timeout(tc, 60);
        tcase_add_test(tc, test_threads_share_commits);
        tcase_add_test(tc, test_shared_connection);
        tcase_add_test(tc, test_alone_commits_at_once);
        tcase_add_test(tc, test_batches_commit_whole);
        tcase_add_test(tc, test_lead_passes_on);
        tcase_add_test(tc, test_next_commit_overlaps_the_last_ones_end);
        if (i == 0) /* SQLite's one writer: the lock held by a raw connection */
            tcase_add_test(tc, test_commit_is_a_priority_write);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    pgtest_server();
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* test_ingest.c - the intake's commit thread yields the catalog's writer
 * to the pipeline's priority commits (ingest_yield, metrics.h) when the
 * job queue is behind (its threshold), bounded, and never waits for a
 * dead process's commits; an upload's first stage is probed through the
 * spool file's own descriptor, or its path when that one is not
 * readable; the 202 body written by hand is the JSON jansson made. */
#include <check.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/ingest.h"
#include "api/spool.h"
#include "dripd/config.h"
#include "dripd/metrics.h"
#include "dripd/path.h"
#include "dripd/util.h"

struct yield_arg {
    struct dr_metrics *m;
    int64_t max_ms;
    int64_t waited_us; /* ingest_yield's answer */
    int64_t wall_ms;   /* as measured here */
};

static void *yielder(void *arg)
{
    struct yield_arg *a = arg;
    uint64_t t0 = dr_mono_ns();
    a->waited_us = ingest_yield(a->m, 0, a->max_ms);
    a->wall_ms = (int64_t)((dr_mono_ns() - t0) / 1000000);
    return NULL;
}

/* Yield (bound 60 s) on a thread while this one runs release(m); the
 * yield must end well before its bound. */
static void yield_while(struct dr_metrics *m, void (*release)(struct dr_metrics *))
{
    struct yield_arg a = {.m = m, .max_ms = 60000};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, yielder, &a), 0);
    release(m);
    pthread_join(th, NULL);
    ck_assert_int_lt(a.wall_ms, 30000); /* did not run into the bound */
}

static void leave_5(struct dr_metrics *m)
{
    metrics_writer_leave(metrics_proc(m, 5));
}

static void reset_7(struct dr_metrics *m)
{
    metrics_proc_reset(m, 7);
}

START_TEST(test_nothing_pending_no_wait)
{
    ck_assert_int_eq(ingest_yield(NULL, 0, 1000), 0);
    struct dr_metrics *m = metrics_create_shared();
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(ingest_yield(m, 0, 1000), 0);
    /* a commit that came and went: nothing pending any more */
    struct dr_proc_gauges *g = metrics_proc(m, 3);
    metrics_writer_enter(g);
    metrics_writer_leave(g);
    ck_assert_int_eq(ingest_yield(m, 0, 1000), 0);
    int64_t pending;
    uint64_t done;
    metrics_writers(m, &pending, &done);
    ck_assert_int_eq(pending, 0);
    ck_assert_uint_eq(done, 1);
    metrics_destroy_shared(m);
}
END_TEST

START_TEST(test_waits_for_the_pending_commit)
{
    /* The pipeline's commit is pending: the intake waits until it is done,
     * however long it takes within the bound (here far more than it needs). */
    struct dr_metrics *m = metrics_create_shared();
    metrics_writer_enter(metrics_proc(m, 5));
    yield_while(m, leave_5);
    metrics_destroy_shared(m);
}
END_TEST

START_TEST(test_wait_is_bounded)
{
    /* A commit that never ends (a stuck pipeline) holds the intake back for
     * max_ms at most. */
    struct dr_metrics *m = metrics_create_shared();
    metrics_writer_enter(metrics_proc(m, 1));
    struct yield_arg a = {.m = m, .max_ms = 30};
    yielder(&a);
    ck_assert_int_ge(a.waited_us, 30 * 1000);
    ck_assert_int_ge(a.wall_ms, 30);
    ck_assert_int_lt(a.wall_ms, 30000);
    metrics_destroy_shared(m);
}
END_TEST

START_TEST(test_dead_writer_is_forgotten)
{
    /* The pipeline died inside its commit: the supervisor zeroes its block
     * (metrics_proc_reset) and the intake goes on at once. */
    struct dr_metrics *m = metrics_create_shared();
    struct dr_proc_gauges *g = metrics_proc(m, 7);
    metrics_writer_enter(g);
    metrics_writer_enter(g);
    yield_while(m, reset_7);
    int64_t pending;
    uint64_t done;
    metrics_writers(m, &pending, &done);
    ck_assert_int_eq(pending, 0);
    ck_assert_int_eq(ingest_yield(m, 0, 60000), 0);
    metrics_destroy_shared(m);
}
END_TEST

START_TEST(test_no_wait_below_the_backlog)
{
    /* A commit of the pipeline's is pending (one nearly always is), but
     * its queue is short: it keeps up, and the intake goes on at once. A
     * stuck writer would hold the yield for max_ms (test_wait_is_bounded). */
    struct dr_metrics *m = metrics_create_shared();
    metrics_writer_enter(metrics_proc(m, 1));
    int64_t min = ingest_yield_backlog(10000000);
    ck_assert_int_eq(min, 512);
    metrics_gauge_set(&m->jobs_queue_depth, min - 1);
    ck_assert_int_eq(ingest_yield(m, min, 2000), 0); /* a wait would be >= 2 s */
    /* behind: from the threshold on it waits (here for the bound) */
    metrics_gauge_set(&m->jobs_queue_depth, min);
    ck_assert_int_ge(ingest_yield(m, min, 30), 30 * 1000);
    metrics_destroy_shared(m);
}
END_TEST

START_TEST(test_backlog_follows_a_small_queue_limit)
{
    /* at most half of pipeline.queue_limit: with a limit of 100 the
     * admission holds the queue at 100, and the yield must still happen */
    ck_assert_int_eq(ingest_yield_backlog(100), 50);
    ck_assert_int_eq(ingest_yield_backlog(1024), 512);
    ck_assert_int_eq(ingest_yield_backlog(1), 0);
    struct dr_metrics *m = metrics_create_shared();
    metrics_writer_enter(metrics_proc(m, 2));
    metrics_gauge_set(&m->jobs_queue_depth, 60);
    ck_assert_int_ge(ingest_yield(m, ingest_yield_backlog(100), 30), 30 * 1000);
    metrics_destroy_shared(m);
}
END_TEST

/* A JPEG's first bytes go to process, other bytes to encrypt, read
 * through spool_create's descriptor, through the path when the descriptor
 * is write-only, and "process" (when in doubt) when neither can be read. */
START_TEST(test_first_stage_probe)
{
    char tmpl[] = "/tmp/test_ingest.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(tmpl));
    struct dr_config *cfg = config_defaults();
    cfg->processing.enabled = true;
    static const unsigned char jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 0x10, 'J', 'F', 'I', 'F', 0};
    int fd = -1, other = -1;
    char *path = NULL, *other_path = NULL;
    ck_assert_int_eq(spool_create(tmpl, "jpeg", &fd, &path), 0);
    ck_assert_int_eq(dr_write_all(fd, jpeg, sizeof jpeg), 0);
    ck_assert_int_eq(spool_create(tmpl, "text", &other, &other_path), 0);
    ck_assert_int_eq(dr_write_all(other, "hello, world\n", 13), 0);
    ck_assert_str_eq(ingest_first_stage(cfg, fd, NULL), "process");
    ck_assert_str_eq(ingest_first_stage(cfg, other, NULL), "encrypt");
    int wronly = open(other_path, O_WRONLY | O_CLOEXEC);
    ck_assert_int_ge(wronly, 0);
    ck_assert_str_eq(ingest_first_stage(cfg, wronly, other_path), "encrypt");
    ck_assert_str_eq(ingest_first_stage(cfg, -1, path), "process");
    ck_assert_str_eq(ingest_first_stage(cfg, -1, NULL), "process");
    cfg->processing.enabled = false;
    ck_assert_str_eq(ingest_first_stage(cfg, fd, NULL), "encrypt");
    /* an inline body is probed where it lies */
    ck_assert_str_eq(ingest_first_stage_mem(cfg, jpeg, sizeof jpeg), "encrypt");
    cfg->processing.enabled = true;
    ck_assert_str_eq(ingest_first_stage_mem(cfg, jpeg, sizeof jpeg), "process");
    ck_assert_str_eq(ingest_first_stage_mem(cfg, "hello, world\n", 13), "encrypt");
    close(wronly);
    close(fd);
    close(other);
    unlink(path);
    unlink(other_path);
    free(path);
    free(other_path);
    char *spool = xasprintf("%s/spool", tmpl);
    rmdir(spool);
    free(spool);
    rmdir(tmpl);
    config_destroy(cfg);
}
END_TEST

/* The inline budget (ingest.h): 1..INGEST_INLINE_MAX bytes a body, at
 * most INGEST_INLINE_BUDGET bytes held at once, SQLite catalogs only. */
START_TEST(test_inline_budget)
{
    struct dr_config *cfg = config_defaults();
    ck_assert(!ingest_inline_take(cfg, 0));
    ck_assert(!ingest_inline_take(cfg, INGEST_INLINE_MAX + 1));
    unsigned n = INGEST_INLINE_BUDGET / INGEST_INLINE_MAX;
    for (unsigned i = 0; i < n; i++)
        ck_assert(ingest_inline_take(cfg, INGEST_INLINE_MAX));
    ck_assert(!ingest_inline_take(cfg, 1)); /* full: the route spools it */
    ingest_inline_release(INGEST_INLINE_MAX);
    ck_assert(!ingest_inline_take(cfg, INGEST_INLINE_MAX + 1));
    ck_assert(ingest_inline_take(cfg, INGEST_INLINE_MAX));
    for (unsigned i = 0; i < n; i++)
        ingest_inline_release(INGEST_INLINE_MAX);
    ck_assert(ingest_inline_take(cfg, 1));
    ingest_inline_release(1);
    cfg->catalog.backend = DR_CATALOG_POSTGRES; /* a cluster stages its bodies */
    ck_assert(!ingest_inline_take(cfg, 1));
    config_destroy(cfg);
}
END_TEST

/* The 202 body as jansson made it before ingest_item_json wrote it by
 * hand: the same bytes are expected. */
static char *reference_json(const struct dr_intake *item, const char *state)
{
    char *folder, *name;
    const char *path = item->renamed ? item->renamed : item->path;
    path_split(path, &folder, &name);
    char ts[32];
    dr_fmt_time(item->created_at > 0 ? item->created_at : dr_now_ms(), ts, sizeof ts);
    json_t *media = json_pack("{s:s, s:s, s:s, s:s, s:I, s:n, s:s?, s:s, s:s, s:s, s:I}", "id",
                              item->media_id, "path", path, "name", name, "folder", folder, "size",
                              (json_int_t)item->size, "sha256", "content_type", item->content_type,
                              "state", state ? state : "queued", "owner", item->owner, "created_at",
                              ts, "version", (json_int_t)(item->version > 0 ? item->version : 1));
    if (media != NULL && item->replaced[0])
        json_object_set_new(media, "replaces", json_string(item->replaced));
    json_t *job =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:n}", "id", item->job_id, "kind", "upload",
                  "state", "queued", "stage", item->stage ? item->stage : "process", "media_id",
                  item->media_id, "attempts", 0, "error");
    json_t *o = json_pack("{s:o, s:o}", "media", media, "job", job);
    ck_assert_ptr_nonnull(o);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    free(folder);
    free(name);
    return s;
}

START_TEST(test_item_json)
{
    /* escapes of every kind, UTF-8 passed through, a rename, If-Match */
    const char *paths[] = {
        "/photos/cat.jpg", "/a \"quoted\"/back\\slash.txt", "/ctl/\x01\x1f\b\f\n\r\t.bin",
        "/caf\xc3\xa9/\xe2\x82\xac \xf0\x9f\x90\x88.png", "/del/\x7f and /slash"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        for (int variant = 0; variant < 4; variant++) {
            struct dr_intake it = {0};
            it.owner = variant == 3 ? "o\"wn\\er" : "alice";
            it.path = paths[i];
            it.size = variant == 2 ? INT64_MAX : 4096 * (uint64_t)i;
            it.content_type = variant == 1 ? NULL : "image/jpeg; name=\"x\"";
            it.stage = variant == 0 ? NULL : "encrypt";
            it.created_at = variant == 2 ? 0 : 1796000000123;
            it.version = variant;
            memcpy(it.media_id, "01M976CSVKR4B1J31JSXRRXT5W", DR_ID_LEN + 1);
            memcpy(it.job_id, "01M976CSVKR4B1J31JSXRRXT5X", DR_ID_LEN + 1);
            if (variant == 1)
                memcpy(it.replaced, "01M976CSVKR4B1J31JSXRRXT5Y", DR_ID_LEN + 1);
            char renamed[] = "/photos/cat (1).jpg";
            if (variant == 3)
                it.renamed = renamed;
            const char *state = variant == 2 ? NULL : "queued";
            char *want = reference_json(&it, state);
            char *got = ingest_item_json(&it, state);
            if (variant == 2) { /* "now": the two clocks may straddle a millisecond */
                char *a = strstr(want, "\"created_at\":"), *b = strstr(got, "\"created_at\":");
                ck_assert(a != NULL && b != NULL);
                memcpy(b, a, strlen("\"created_at\":\"2026-12-07T02:47:43.731Z\""));
            }
            ck_assert_str_eq(got, want);
            free(want);
            free(got);
        }
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ingest");
    TCase *tc = tcase_create("yield");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_nothing_pending_no_wait);
    tcase_add_test(tc, test_waits_for_the_pending_commit);
    tcase_add_test(tc, test_wait_is_bounded);
    tcase_add_test(tc, test_dead_writer_is_forgotten);
    tcase_add_test(tc, test_no_wait_below_the_backlog);
    tcase_add_test(tc, test_backlog_follows_a_small_queue_limit);
    suite_add_tcase(s, tc);
    TCase *probe = tcase_create("probe");
    tcase_add_test(probe, test_first_stage_probe);
    tcase_add_test(probe, test_inline_budget);
    tcase_add_test(probe, test_item_json);
    suite_add_tcase(s, probe);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

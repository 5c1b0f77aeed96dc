/* test_pipeview.c - the pipeline view's snapshot: rates from the history
 * ring, latency quantiles, and which stage is marked the bottleneck. */
#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "api/pipeview.h"
#include "dripd/config.h"
#include "dripd/metrics.h"

static struct dr_metrics m;

static json_t *stage(json_t *snap, int pl, const char *name)
{
    json_t *stages =
        json_object_get(json_array_get(json_object_get(snap, "pipelines"), pl), "stages");
    size_t i;
    json_t *s;
    json_array_foreach(stages, i, s) if (strcmp(json_string_value(json_object_get(s, "name")),
                                                name) == 0) return s;
    ck_abort_msg("no stage %s", name);
    return NULL;
}

/* store slowed: its one thread is busy all the time and jobs wait in its
 * inbox; encrypt's inbox is full too (back-pressure) but its threads idle */
START_TEST(test_bottleneck_is_the_busy_stage_with_work)
{
    memset(&m, 0, sizeof m);
    struct dr_config *cfg = config_defaults();
    cfg->pipeline.upload.store.concurrency = 1;
    metrics_history_record(&m, 100000);
    m.procs[1].stages[DR_PL_UPLOAD][2].queued = 10; /* encrypt */
    m.procs[1].stages[DR_PL_UPLOAD][3].queued = 7;  /* store */
    m.procs[1].stages[DR_PL_UPLOAD][3].in_flight = 1;
    m.stages[DR_PL_UPLOAD][3].busy_us = 4900000; /* 4.9 s of the 5 s */
    m.stages[DR_PL_UPLOAD][3].processed = 5;
    m.stages[DR_PL_UPLOAD][3].duration.buckets[10] = 5; /* (1 s, 2.5 s] */
    m.stages[DR_PL_UPLOAD][2].busy_us = 10000;
    m.stages[DR_PL_UPLOAD][2].processed = 20;
    json_t *snap = pipeview_snapshot(&m, cfg, 3, 105000);
    json_t *b = json_object_get(snap, "bottleneck");
    ck_assert_str_eq(json_string_value(json_object_get(b, "stage")), "store");
    ck_assert_str_eq(json_string_value(json_object_get(b, "pipeline")), "upload");
    json_t *st = stage(snap, 0, "store");
    ck_assert(json_is_true(json_object_get(st, "bottleneck")));
    ck_assert(json_is_false(json_object_get(stage(snap, 0, "encrypt"), "bottleneck")));
    ck_assert_int_eq(json_integer_value(json_object_get(st, "queued")), 7);
    ck_assert_int_eq(json_integer_value(json_object_get(st, "threads")), 1);
    ck_assert_double_eq_tol(json_real_value(json_object_get(st, "jobs_per_s")), 1.0, 1e-9);
    ck_assert_double_eq_tol(json_real_value(json_object_get(st, "busy")), 0.98, 1e-9);
    ck_assert_double_eq_tol(json_real_value(json_object_get(st, "p50_ms")), 1750, 1e-9);
    ck_assert_double_eq_tol(
        json_real_value(json_object_get(stage(snap, 0, "encrypt"), "jobs_per_s")), 4.0, 1e-9);
    /* history: the one ring point, then now */
    json_t *hq = json_object_get(json_object_get(st, "history"), "queued");
    ck_assert_uint_eq(json_array_size(hq), 2);
    ck_assert_int_eq(json_integer_value(json_array_get(hq, 1)), 7);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(snap, "front"), "uploads_in_progress")),
        3);
    ck_assert_uint_eq(json_array_size(json_object_get(snap, "pipelines")), 2); /* not scrub */
    json_decref(snap);

    /* idle: nothing holds work, no bottleneck */
    memset(&m, 0, sizeof m);
    snap = pipeview_snapshot(&m, cfg, 0, 105000);
    ck_assert(json_is_null(json_object_get(snap, "bottleneck")));
    ck_assert(json_is_null(json_object_get(stage(snap, 1, "fetch"), "p99_ms")));
    json_decref(snap);
    config_destroy(cfg);
}
END_TEST

START_TEST(test_errors_and_render_cache)
{
    memset(&m, 0, sizeof m);
    struct dr_config *cfg = config_defaults();
    metrics_note_error(&m, DR_PL_DOWNLOAD, 1, "01JD2Z8Q7W5N3K4M6P8R0T2V4X", 2, true,
                       "s3: 503 SlowDown");
    json_t *snap = pipeview_snapshot(&m, cfg, 0, 1000);
    json_t *e = json_array_get(json_object_get(snap, "errors"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(e, "job_id")), "01JD2Z8Q7W5N3K4M6P8R0T2V4X");
    ck_assert_str_eq(json_string_value(json_object_get(e, "stage")), "fetch");
    ck_assert_str_eq(json_string_value(json_object_get(e, "pipeline")), "download");
    ck_assert_str_eq(json_string_value(json_object_get(e, "error")), "s3: 503 SlowDown");
    ck_assert(json_is_true(json_object_get(e, "final")));
    json_decref(snap);
    size_t l1 = 0, l2 = 0;
    char *a = pipeview_render(&m, cfg, 0, &l1);
    ck_assert_ptr_nonnull(a);
    m.jobs_queue_depth = 42; /* within PIPEVIEW_REUSE_MS: the same rendering */
    char *b = pipeview_render(&m, cfg, 0, &l2);
    ck_assert_str_eq(a, b);
    ck_assert_uint_eq(l1, l2);
    ck_assert_ptr_null(strstr(b, "\"depth\":42"));
    free(a);
    free(b);
    config_destroy(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pipeview");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_bottleneck_is_the_busy_stage_with_work);
    tcase_add_test(tc, test_errors_and_render_cache);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

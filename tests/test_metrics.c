/* test_metrics.c - the shared counters and their Prometheus text format. */
#include <check.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dripd/metrics.h"

/* Every line is a comment (# HELP/# TYPE) or `name{labels} value`, and
 * every sample's family was announced by a TYPE line before it. */
static void assert_exposition(const char *text)
{
    regex_t sample, help, type;
    ck_assert_int_eq(
        regcomp(&sample,
                "^([a-zA-Z_:][a-zA-Z0-9_:]*)(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"[^\"]*\",?)*\\})? "
                "[-+]?([0-9]+(\\.[0-9]+)?([eE][-+]?[0-9]+)?|\\+Inf|NaN)$",
                REG_EXTENDED),
        0);
    ck_assert_int_eq(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$", REG_EXTENDED), 0);
    ck_assert_int_eq(regcomp(&type, "^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$",
                             REG_EXTENDED),
                     0);
    char *copy = strdup(text), *save = NULL;
    char family[128] = "";
    for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        regmatch_t mt[2];
        if (strncmp(line, "# HELP", 6) == 0) {
            ck_assert_msg(regexec(&help, line, 0, NULL, 0) == 0, "bad HELP: %s", line);
        } else if (strncmp(line, "# TYPE", 6) == 0) {
            ck_assert_msg(regexec(&type, line, 2, mt, 0) == 0, "bad TYPE: %s", line);
            snprintf(family, sizeof family, "%.*s", (int)(mt[1].rm_eo - mt[1].rm_so),
                     line + mt[1].rm_so);
        } else {
            ck_assert_msg(regexec(&sample, line, 2, mt, 0) == 0, "bad sample: %s", line);
            ck_assert_msg(family[0] && strncmp(line, family, strlen(family)) == 0,
                          "sample outside its family %s: %s", family, line);
        }
    }
    free(copy);
    regfree(&sample);
    regfree(&help);
    regfree(&type);
}

START_TEST(test_render_format)
{
    struct dr_metrics *m = metrics_create_shared();
    ck_assert_ptr_nonnull(m);
    metrics_add(&m->http_requests[DR_RC_UPLOAD][metrics_status_slot(202)], 3);
    metrics_observe(&m->http_duration[DR_RC_UPLOAD], 1500);
    metrics_observe(&m->stages[DR_PL_UPLOAD][2].duration, 2000000); /* slot 2: encrypt */
    metrics_gauge_set(&m->jobs_queue_depth, 7);
    char *text;
    size_t len;
    ck_assert_int_eq(metrics_render(m, &text, &len), 0);
    ck_assert_uint_eq(strlen(text), len);
    assert_exposition(text);
    ck_assert_ptr_nonnull(
        strstr(text, "dripd_http_requests_total{route=\"upload\",status=\"202\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(text, "dripd_jobs_queue_depth 7\n"));
    ck_assert_ptr_nonnull(strstr(text, "dripd_stage_duration_seconds_bucket{pipeline=\"upload\","
                                       "stage=\"encrypt\",le=\"+Inf\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(
        text,
        "dripd_stage_duration_seconds_bucket{pipeline=\"upload\",stage=\"encrypt\",le=\"1\"} 0\n"));
    ck_assert_ptr_nonnull(strstr(text, "dripd_stage_duration_seconds_bucket{pipeline=\"upload\","
                                       "stage=\"encrypt\",le=\"2.5\"} 1\n"));
    free(text);
    metrics_destroy_shared(m);
}
END_TEST

START_TEST(test_histogram_buckets)
{
    struct dr_metrics *m = metrics_create_shared();
    metrics_observe(&m->http_duration[0], 1000);      /* exactly 1 ms: le=0.001 */
    metrics_observe(&m->http_duration[0], 1001);      /* just over */
    metrics_observe(&m->http_duration[0], 999999999); /* beyond 60 s: +Inf only */
    ck_assert_uint_eq(m->http_duration[0].buckets[0], 1);
    ck_assert_uint_eq(m->http_duration[0].buckets[1], 1);
    ck_assert_uint_eq(m->http_duration[0].buckets[DR_HIST_BUCKETS - 1], 1);
    ck_assert_uint_eq(m->http_duration[0].count, 3);
    metrics_destroy_shared(m);
}
END_TEST

START_TEST(test_status_slots)
{
    for (int s = 0; s < DR_STATUS_SLOTS - 1; s++)
        ck_assert_int_eq(metrics_status_slot(metrics_slot_status(s)), s);
    ck_assert_int_eq(metrics_status_slot(299), DR_STATUS_SLOTS - 1);
    ck_assert_int_eq(metrics_route_class("tus"), DR_RC_TUS);
    ck_assert_int_eq(metrics_route_class("nope"), DR_RC_OTHER);
}
END_TEST

/* The pipeline view's history ring: oldest first, bounded, wraps. */
START_TEST(test_history_ring)
{
    static struct dr_metrics m;
    memset(&m, 0, sizeof m);
    struct dr_history_point *out = calloc(DR_HISTORY_POINTS, sizeof *out);
    ck_assert_uint_eq(metrics_history_read(&m, out, DR_HISTORY_POINTS), 0);
    for (int i = 0; i < DR_HISTORY_POINTS + 7; i++) {
        m.stages[DR_PL_UPLOAD][3].processed = (uint64_t)i;
        m.procs[2].stages[DR_PL_UPLOAD][3].queued = 5;
        m.procs[3].stages[DR_PL_UPLOAD][3].queued = -9; /* a sum below 0 reads 0 */
        m.procs[4].stages[DR_PL_UPLOAD][2].queued = 4;
        metrics_history_record(&m, 1000 + (uint64_t)i);
    }
    size_t n = metrics_history_read(&m, out, DR_HISTORY_POINTS);
    ck_assert_uint_eq(n, DR_HISTORY_POINTS);
    ck_assert_uint_eq(out[0].t_ms, 1007);
    ck_assert_uint_eq(out[n - 1].t_ms, 1000 + DR_HISTORY_POINTS + 6);
    ck_assert_uint_eq(out[n - 1].stages[DR_PL_UPLOAD][3].processed, DR_HISTORY_POINTS + 6);
    ck_assert_uint_eq(out[n - 1].stages[DR_PL_UPLOAD][3].queued, 0);
    ck_assert_uint_eq(out[n - 1].stages[DR_PL_UPLOAD][2].queued, 4);
    /* fewer than asked for: the newest */
    ck_assert_uint_eq(metrics_history_read(&m, out, 3), 3);
    ck_assert_uint_eq(out[2].t_ms, 1000 + DR_HISTORY_POINTS + 6);
    /* a point being written (odd seq) is skipped, not read torn */
    uint64_t h = m.history.head;
    m.history.pts[(h - 1) % DR_HISTORY_POINTS].seq |= 1;
    ck_assert_uint_eq(metrics_history_read(&m, out, DR_HISTORY_POINTS), DR_HISTORY_POINTS - 1);
    free(out);
}
END_TEST

/* The SSE streams the pipeline asks about before it relays an event:
 * summed over the process blocks, gone with a restarted process's block;
 * without shared metrics the answer is "send". */
START_TEST(test_event_streams)
{
    static struct dr_metrics m;
    memset(&m, 0, sizeof m);
    ck_assert_int_eq(metrics_event_streams(&m), 0);
    metrics_event_streams_add(metrics_proc(&m, 3), 1);
    metrics_event_streams_add(metrics_proc(&m, 5), 2);
    metrics_event_streams_add(metrics_proc(&m, 5), -1);
    ck_assert_int_eq(metrics_event_streams(&m), 2);
    metrics_proc_reset(&m, 3); /* that http worker died with its stream */
    ck_assert_int_eq(metrics_event_streams(&m), 1);
    ck_assert_int_eq(metrics_event_streams(NULL), 1);
}
END_TEST

START_TEST(test_error_notes)
{
    static struct dr_metrics m;
    memset(&m, 0, sizeof m);
    struct dr_error_note out[DR_ERROR_NOTES];
    ck_assert_uint_eq(metrics_errors_read(&m, out, DR_ERROR_NOTES), 0);
    char big[1000];
    memset(big, 'e', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    for (int i = 0; i < DR_ERROR_NOTES + 3; i++) {
        char id[32];
        snprintf(id, sizeof id, "JOB%02d", i);
        metrics_note_error(&m, DR_PL_UPLOAD, 3, id, i, i % 2,
                           i == DR_ERROR_NOTES + 2 ? big : "boom");
    }
    size_t n = metrics_errors_read(&m, out, DR_ERROR_NOTES);
    ck_assert_uint_eq(n, DR_ERROR_NOTES);
    ck_assert_str_eq(metrics_error_job(&out[0]), "JOB18");                     /* newest first */
    ck_assert_uint_eq(strlen(metrics_error_text(&out[0])), DR_ERROR_TEXT - 7); /* truncated */
    ck_assert_str_eq(metrics_error_job(&out[1]), "JOB17");
    ck_assert_str_eq(metrics_error_text(&out[1]), "boom");
    ck_assert_uint_eq(out[1].final, 1);
    ck_assert_uint_eq(out[1].attempt, 17);
    ck_assert_str_eq(metrics_error_job(&out[n - 1]), "JOB03");
    ck_assert_uint_eq(metrics_errors_read(&m, out, 2), 2);
    ck_assert_ptr_null(metrics_stage_name(DR_PL_DOWNLOAD, 4));
    ck_assert_str_eq(metrics_stage_name(DR_PL_UPLOAD, 3), "store");
}
END_TEST

/* Quantiles interpolate within a bucket, as Prometheus's histogram_quantile. */
START_TEST(test_quantile)
{
    uint64_t b[DR_HIST_BUCKETS] = {0};
    ck_assert(metrics_quantile(b, 0.5) < 0);
    b[10] = 10; /* ten in (1, 2.5] */
    ck_assert_double_eq_tol(metrics_quantile(b, 0.5), 1.75, 1e-9);
    ck_assert_double_eq_tol(metrics_quantile(b, 0.99), 2.485, 1e-9);
    b[0] = 90; /* ninety in [0, 1ms] */
    ck_assert_double_eq_tol(metrics_quantile(b, 0.5), 0.0005 * 50 / 45, 1e-9);
    b[DR_HIST_BUCKETS - 1] = 1000; /* most above 60 s: the top finite bound */
    ck_assert_double_eq_tol(metrics_quantile(b, 0.99), 60, 1e-9);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_render_format);
    tcase_add_test(tc, test_histogram_buckets);
    tcase_add_test(tc, test_status_slots);
    tcase_add_test(tc, test_history_ring);
    tcase_add_test(tc, test_error_notes);
    tcase_add_test(tc, test_event_streams);
    tcase_add_test(tc, test_quantile);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

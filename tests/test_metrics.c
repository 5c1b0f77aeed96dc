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

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_render_format);
    tcase_add_test(tc, test_histogram_buckets);
    tcase_add_test(tc, test_status_slots);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The Prometheus text builder: HELP and TYPE once per family, samples after their family,
 * escaping, refusal of a repeated family; and promtool accepts what it writes. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "metrics.h"

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static int write_two(char *buf, size_t cap, void *ud)
{
    (void)ud;
    return snprintf(buf, cap, "# HELP x_info build\n# TYPE x_info gauge\nx_info{v=\"1\"} 1\n");
}

START_TEST(families_and_samples)
{
    ms_metrics_t m;
    ms_metrics_init(&m);
    ms_metrics_counter(&m, "x_requests_total", "requests handled", 42);
    ck_assert_int_eq(ms_metrics_family(&m, "x_dropped_total", MS_METRIC_COUNTER, "dropped"), MS_OK);
    ms_metrics_u64(&m, "reason", "bad_request", 3);
    ms_metrics_u64(&m, "reason", "not_owner", 0);
    ms_metrics_gauge(&m, "x_peers", "peers", 7);
    ms_metrics_gauge(&m, "x_ratio", "a ratio", 0.5);
    ck_assert_int_eq(m.err, MS_OK);
    ck_assert_str_eq(m.buf, "# HELP x_requests_total requests handled\n"
                            "# TYPE x_requests_total counter\n"
                            "x_requests_total 42\n"
                            "# HELP x_dropped_total dropped\n"
                            "# TYPE x_dropped_total counter\n"
                            "x_dropped_total{reason=\"bad_request\"} 3\n"
                            "x_dropped_total{reason=\"not_owner\"} 0\n"
                            "# HELP x_peers peers\n"
                            "# TYPE x_peers gauge\n"
                            "x_peers 7\n"
                            "# HELP x_ratio a ratio\n"
                            "# TYPE x_ratio gauge\n"
                            "x_ratio 0.5\n");
    ck_assert_uint_eq(m.len, strlen(m.buf));
    ms_metrics_cleanup(&m);
}
END_TEST

START_TEST(repeat_refused)
{
    ms_metrics_t m;
    ms_metrics_init(&m);
    ms_metrics_gauge(&m, "x_shards_owned", "owned", 3);
    /* The bug this module exists for: a second TYPE line drops the whole scrape. */
    ck_assert_int_eq(ms_metrics_family(&m, "x_shards_owned", MS_METRIC_GAUGE, "again"),
                     MS_ERR_EXISTS);
    ms_metrics_f64(&m, NULL, NULL, 64); /* its samples go nowhere */
    ms_metrics_gauge(&m, "x_shards_owned", "again", 64);
    ck_assert_int_eq(count(m.buf, "# TYPE x_shards_owned"), 1);
    ck_assert_int_eq(count(m.buf, "x_shards_owned 3\n"), 1);
    ck_assert_int_eq(count(m.buf, " 64"), 0);
    ck_assert_int_eq(m.err, MS_ERR_EXISTS);
    /* Invalid names are refused too. */
    ms_metrics_t n;
    ms_metrics_init(&n);
    ck_assert_int_eq(ms_metrics_family(&n, "1bad", MS_METRIC_GAUGE, ""), MS_ERR_INVAL);
    ck_assert_int_eq(ms_metrics_family(&n, "bad-name", MS_METRIC_GAUGE, ""), MS_ERR_INVAL);
    ck_assert_int_eq(ms_metrics_family(&n, "", MS_METRIC_GAUGE, ""), MS_ERR_INVAL);
    ck_assert_ptr_null(n.buf);
    ms_metrics_cleanup(&n);
    ms_metrics_cleanup(&m);
}
END_TEST

START_TEST(escaping_and_values)
{
    ms_metrics_t m;
    ms_metrics_init(&m);
    ms_metrics_family(&m, "x_odd", MS_METRIC_GAUGE, "back\\slash\nnewline \"quotes\" stay");
    ms_metrics_f64(&m, "v", "a\"b\\c\nd", INFINITY);
    ms_metrics_f64(&m, "v", "neg", -INFINITY);
    ms_metrics_f64(&m, "v", "nan", NAN);
    ms_metrics_u64(&m, "v", "max", UINT64_MAX);
    ck_assert_int_eq(m.err, MS_OK);
    ck_assert_ptr_nonnull(strstr(m.buf, "# HELP x_odd back\\\\slash\\nnewline \"quotes\" stay\n"));
    ck_assert_ptr_nonnull(strstr(m.buf, "x_odd{v=\"a\\\"b\\\\c\\nd\"} +Inf\n"));
    ck_assert_ptr_nonnull(strstr(m.buf, "x_odd{v=\"neg\"} -Inf\n"));
    ck_assert_ptr_nonnull(strstr(m.buf, "x_odd{v=\"nan\"} NaN\n"));
    ck_assert_ptr_nonnull(strstr(m.buf, "x_odd{v=\"max\"} 18446744073709551615\n"));
    ms_metrics_u64_2(&m, "topology", "tree", "state", "q\"x", 4);
    ck_assert_ptr_nonnull(strstr(m.buf, "x_odd{topology=\"tree\",state=\"q\\\"x\"} 4\n"));
    ms_metrics_cleanup(&m);
}
END_TEST

START_TEST(histogram)
{
    ms_metrics_t m;
    ms_metrics_init(&m);
    static const double le[] = {0.0001, 0.25, 1};
    static const uint64_t cum[] = {2, 5, 7};
    ms_metrics_histogram(&m, "x_latency_seconds", "relay time", le, cum, 3, 0.5, 8);
    ck_assert_int_eq(m.err, MS_OK);
    ck_assert_str_eq(m.buf, "# HELP x_latency_seconds relay time\n"
                            "# TYPE x_latency_seconds histogram\n"
                            "x_latency_seconds_bucket{le=\"0.0001\"} 2\n"
                            "x_latency_seconds_bucket{le=\"0.25\"} 5\n"
                            "x_latency_seconds_bucket{le=\"1\"} 7\n"
                            "x_latency_seconds_bucket{le=\"+Inf\"} 8\n"
                            "x_latency_seconds_sum 0.5\n"
                            "x_latency_seconds_count 8\n");
    ms_metrics_cleanup(&m);
}
END_TEST

START_TEST(append_and_growth)
{
    ms_metrics_t m;
    ms_metrics_init(&m);
    char name[64];
    for (int i = 0; i < 500; i++) { /* well past the first buffer */
        snprintf(name, sizeof(name), "x_family_%03d_total", i);
        ms_metrics_counter(&m, name, "one of many", (uint64_t)i);
    }
    ms_metrics_append(&m, write_two, NULL);
    ck_assert_int_eq(m.err, MS_OK);
    ck_assert_int_eq(count(m.buf, "# TYPE "), 501);
    ck_assert_ptr_nonnull(strstr(m.buf, "x_family_499_total 499\n# HELP x_info build\n"));
    ck_assert_uint_eq(m.len, strlen(m.buf));
    ms_metrics_cleanup(&m);
}
END_TEST

/* What the builder writes passes promtool, the checker Prometheus ships. */
START_TEST(promtool_accepts)
{
    if (access("/usr/bin/promtool", X_OK) != 0 && system("command -v promtool >/dev/null 2>&1")) {
        /* CI installs it (deploy/install-deps.sh); a bare machine may not have it. */
        ck_abort_msg("promtool not installed (deploy/install-deps.sh installs prometheus)");
    }
    ms_metrics_t m;
    ms_metrics_init(&m);
    ms_metrics_counter(&m, "meshsig_x_requests_total", "requests handled", 42);
    ms_metrics_family(&m, "meshsig_x_dropped_total", MS_METRIC_COUNTER, "dropped, by reason");
    ms_metrics_u64(&m, "reason", "bad_request", 3);
    ms_metrics_u64(&m, "reason", "quote\"d", 1);
    ms_metrics_family(&m, "meshsig_x_edges", MS_METRIC_GAUGE, "edges, by topology and state");
    ms_metrics_u64_2(&m, "topology", "delaunay", "state", "up", 5);
    ms_metrics_u64_2(&m, "topology", "delaunay", "state", "failed", 1);
    ms_metrics_gauge(&m, "meshsig_x_peers", "peers in owned shards", 7);
    ms_metrics_gauge(&m, "meshsig_x_peers", "repeated: refused", 8);
    static const double le[] = {0.0001, 0.001, 0.5};
    static const uint64_t cum[] = {1, 4, 9};
    ms_metrics_histogram(&m, "meshsig_x_latency_seconds", "relay time", le, cum, 3, 1.25, 10);
    ms_metrics_append(&m, write_two, NULL);
    char path[] = "/tmp/ms-metrics-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, m.buf, m.len), (ssize_t)m.len);
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char out[1024] = "";
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int rc = pclose(p);
    unlink(path);
    ck_assert_msg(rc == 0 && n == 0, "promtool: %s", out);
    ms_metrics_cleanup(&m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics_text");
    TCase *tc = tcase_create("text");
    tcase_add_test(tc, families_and_samples);
    tcase_add_test(tc, repeat_refused);
    tcase_add_test(tc, escaping_and_values);
    tcase_add_test(tc, histogram);
    tcase_add_test(tc, append_and_growth);
    tcase_add_test(tc, promtool_accepts);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

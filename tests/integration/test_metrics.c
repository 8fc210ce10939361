/* SPDX-License-Identifier: Apache-2.0 */
/* Both binaries' /metrics, scraped from a running cluster with traffic, pass `promtool check
 * metrics`. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define ADMIN_TOKEN "metrics-admin-token"

static cluster_t cl;
static int g1, g2;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, ADMIN_TOKEN), 0);
    const char *dev[] = {"--insecure-dev", NULL};
    g1 = cluster_add_gateway(&cl, "gw-m1", dev);
    g2 = cluster_add_gateway(&cl, "gw-m2", dev);
    ck_assert_int_ge(g1, 0);
    ck_assert_int_ge(g2, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Runs promtool check metrics on text; fails the test on any complaint. */
static void promtool_ok(const char *who, const char *text)
{
    char path[] = "/tmp/meshsig-metrics-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    size_t n = strlen(text);
    ck_assert_int_eq(write(fd, text, n), (ssize_t)n);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char out[4096] = "";
    size_t got = fread(out, 1, sizeof(out) - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    unlink(path);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) != 127, "promtool is not installed");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0 && got == 0,
                  "promtool check metrics rejects the %s's /metrics (exit %d):\n%s", who,
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
}

/* The sample value of a series (exact name with labels), or -1. */
static double sample(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return atof(p + n + 1);
    return -1;
}

START_TEST(promtool_accepts_both)
{
    /* traffic, so that labelled series and the latency histogram have counts */
    wsc_t *a = join_as(cl.gw_port[g1], "metrics", "alice");
    wsc_t *b = join_as(cl.gw_port[g2], "metrics", "bob");
    expect_connect(a, "bob", 1);
    expect_connect(b, "alice", 0);
    send_json(a, "{\"signal\":{\"to\":\"bob\",\"payload\":{\"type\":\"offer\"}}}");
    expect_signal_from(b, "alice");
    send_json(b, "{\"signal\":{\"to\":\"nobody\"}}");
    expect_error(b, "PEER_NOT_FOUND", NULL);

    char *body = NULL;
    ck_assert_int_eq(http_request(cl.admin_port, "GET", "/metrics", ADMIN_TOKEN, NULL, &body), 200);
    ck_assert_ptr_nonnull(body);
    /* Present; alice's signal went gateway to gateway (gateway/direct.c), not through it. */
    ck_assert_double_ge(sample(body, "meshsig_coordinator_signals_total"), 0);
    ck_assert_double_eq(sample(body, "meshsig_coordinator_shards"), 64);
    promtool_ok("coordinator", body);
    free(body);
    for (int g = 0; g < 2; g++) {
        ck_assert_int_eq(http_request(cl.gw_port[g], "GET", "/metrics", NULL, NULL, &body), 200);
        ck_assert_ptr_nonnull(body);
        ck_assert_double_ge(sample(body, "meshsig_gateway_sessions"), 1);
        promtool_ok("gateway", body);
        free(body);
    }
    ck_assert_int_eq(http_request(cl.gw_port[g2], "GET", "/metrics", NULL, NULL, &body), 200);
    double count = sample(body, "meshsig_gateway_relay_latency_seconds_count");
    ck_assert_double_ge(count, 1);
    /* The buckets are cumulative (le: at most), up to the count: one host's signals take
     * less than a second. */
    static const char *const le[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025",
                                     "0.005",  "0.01",    "0.025",  "0.05",  "0.1",
                                     "0.25",   "1",       "+Inf"};
    double prev = 0;
    for (size_t i = 0; i < sizeof(le) / sizeof(le[0]); i++) {
        char series[96];
        snprintf(series, sizeof(series), "meshsig_gateway_relay_latency_seconds_bucket{le=\"%s\"}",
                 le[i]);
        double v = sample(body, series);
        ck_assert_msg(v >= prev, "%s: %g after %g", series, v, prev);
        prev = v;
    }
    ck_assert_double_eq(sample(body, "meshsig_gateway_relay_latency_seconds_bucket{le=\"1\"}"),
                        count);
    ck_assert_double_ge(sample(body, "meshsig_gateway_signals_direct_total{dir=\"in\"}"), 1);
    free(body);
    wsc_free(a);
    wsc_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, promtool_accepts_both);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

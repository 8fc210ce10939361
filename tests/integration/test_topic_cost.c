/* SPDX-License-Identifier: Apache-2.0 */
/* What a topic publish costs the coordinator with 1,000, 10,000 and 100,000 subscriptions in the
 * namespace (coordinator/topictrie.c): the subscriptions that cannot match its topic must cost it
 * nothing (before the index, each publish pattern-matched every subscription: 0.3 ms each at
 * 10,000, 3 ms at 100,000). Subscriptions are a mix of literal, '*' and '>' patterns held by H
 * peers; every publish reaches the watcher's one. A measurement: CPU time of the coordinator,
 * not wall time, and a bound loose enough for a loaded machine. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

static cluster_t cl;
static int g1, g2;

#define H 20       /* holders */
#define PER 4999   /* each at the last level: with the watcher's, 99,981 of 100,000 */
#define XP 400     /* publishes per level */
#define BATCH 1000 /* requests in flight per session (the gateway answers 1,024 waiting) */

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    const char *args[] = {"--insecure-dev",      "--rate-msgs", "1000000",
                          "--max-subscriptions", "5000",        NULL};
    g1 = cluster_add_gateway(&cl, "gw-a", args);
    g2 = cluster_add_gateway(&cl, "gw-b", args);
    ck_assert_int_ge(g1, 0);
    ck_assert_int_ge(g2, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Holder i's subscriptions from..to-1: 70% literal, 15% '*', 10% '>', 5% a leading '*'; none
 * matches the published topic a.b. */
static void subscribe(wsc_t *c, int i, int from, int to)
{
    for (int k = from; k < to;) {
        int n = 0;
        for (; k < to && n < BATCH; k++, n++) {
            int kind = k % 20;
            char pat[64];
            if (kind < 14)
                snprintf(pat, sizeof(pat), "h%d.n%d.x", i, k);
            else if (kind < 17)
                snprintf(pat, sizeof(pat), "h%d.*.y%d", i, k);
            else if (kind < 19)
                snprintf(pat, sizeof(pat), "h%d.m%d.>", i, k);
            else
                snprintf(pat, sizeof(pat), "*.q%d.z%d", k, i);
            send_json(c, "{\"id\":\"s%d\",\"topic\":{\"subscribe\":{\"pattern\":\"%s\"}}}", k, pat);
        }
        expect_oks(c, n, "subscribe");
    }
}

/* XP publishes on a.b from p, each after the last one's ok; w hears each. CPU ms. */
static long publishes(wsc_t *p, wsc_t *w, int level)
{
    long cpu0 = proc_cpu_ms(cl.coord);
    for (int i = 0; i < XP; i++) {
        send_json(p, "{\"id\":\"p%d-%d\",\"topic\":{\"publish\":{\"topic\":\"a.b\",\"data\":%d}}}",
                  level, i, i);
        expect_oks(p, 1, "publish");
    }
    long cpu = proc_cpu_ms(cl.coord) - cpu0;
    for (int i = 0; i < XP; i++) {
        json_t *j = skip_to(w, "topic");
        ck_assert_int_eq(json_integer_value(json_object_get(
                             json_object_get(json_object_get(j, "topic"), "publish"), "data")),
                         i);
        json_decref(j);
    }
    return cpu;
}

START_TEST(publish_cost_by_subscriptions)
{
    const char *ns = "tcost";
    ck_assert_int_eq(cluster_set_policy(&cl, ns, "{\"topology\":\"none\"}"), 0);
    wsc_t *p = join_as(cl.gw_port[g1], ns, "pub");
    wsc_t *w = join_as(cl.gw_port[g2], ns, "watch");
    send_json(w, "{\"id\":\"w\",\"topic\":{\"subscribe\":{\"pattern\":\"a.b\"}}}");
    expect_oks(w, 1, "subscribe");
    static wsc_t *h[H];
    char peer[32];
    for (int i = 0; i < H; i++) {
        snprintf(peer, sizeof(peer), "h%d", i);
        h[i] = join_as(cl.gw_port[i % 2 ? g1 : g2], ns, peer);
    }
    long base = publishes(p, w, 0);
    const int level[] = {1000, 10000, H * PER};
    long cpu[3], sub_cpu[3];
    int have = 0;
    for (int l = 0; l < 3; l++) {
        int each = level[l] / H;
        long c0 = proc_cpu_ms(cl.coord);
        for (int i = 0; i < H; i++)
            subscribe(h[i], i, have, each);
        sub_cpu[l] = proc_cpu_ms(cl.coord) - c0;
        have = each;
        cpu[l] = publishes(p, w, l + 1);
    }
    printf("topic publish cost, coordinator CPU ms for %d publishes (one delivery each): "
           "%ld with 1 subscription, %ld with %d, %ld with %d, %ld with %d; subscribing them: "
           "%ld, %ld, %ld ms\n",
           XP, base, cpu[0], level[0], cpu[1], level[1], cpu[2], level[2], sub_cpu[0], sub_cpu[1],
           sub_cpu[2]);
    fflush(stdout);
    /* Before the index: 3 ms a publish at 100,000, 1,200 ms for these. */
    ck_assert_msg(cpu[2] < 2 * cpu[0] + 150,
                  "%d publishes cost %ld ms at %d subscriptions, %ld at %d", XP, cpu[2], level[2],
                  cpu[0], level[0]);
    for (int i = 0; i < H; i++)
        wsc_free(h[i]);
    wsc_free(p);
    wsc_free(w);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("topic_cost");
    TCase *tc = tcase_create("cost");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, publish_cost_by_subscriptions);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

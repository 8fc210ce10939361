/* SPDX-License-Identifier: Apache-2.0 */
/* A single NATS node (JetStream on a file store) killed for longer than a lease and started
 * again: the coordinators stop serving while it is gone, and once it is back every shard is
 * served again within a bound, at epochs the gateways accept (a new peer's join is answered
 * and its neighbour hears of it). */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define SHARDS 64
#define N_COORD 2
#define SERVED_BOUND_MS 5000 /* every shard served again this long after NATS is back */

static cluster_t cl;
static const char *const coord_args[] = {"--lease-ttl-ms",
                                         "1500",
                                         "--coord-timeout-ms",
                                         "900",
                                         "--coord-heartbeat-ms",
                                         "200",
                                         "--resync-timeout-ms",
                                         "400",
                                         NULL};

/* Shards some coordinator serves (each counted once), and the most any one serves. */
static int served(int *max_one)
{
    int seen[SHARDS] = {0}, n = 0;
    *max_one = 0;
    for (int i = 0; i < N_COORD; i++) {
        char *body = NULL;
        int st = http_request(cluster_coord_admin(&cl, i), "GET", "/v1/cluster", NULL, NULL, &body);
        json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;
        free(body);
        json_t *sh = json_object_get(j, "shards");
        int mine = 0;
        for (size_t k = 0; k < json_array_size(sh); k++) {
            json_t *s = json_array_get(sh, k);
            if (strcmp(json_string_value(json_object_get(s, "here")), "serving"))
                continue;
            int n_sh = (int)json_integer_value(json_object_get(s, "shard"));
            mine++;
            if (n_sh >= 0 && n_sh < SHARDS && !seen[n_sh]++)
                n++;
        }
        if (mine > *max_one)
            *max_one = mine;
        json_decref(j);
    }
    return n;
}

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_args), 0);
    ck_assert_int_eq(cluster_add_coordinator(&cl), 1);
    const char *gw_args[] = {"--insecure-dev", NULL};
    ck_assert_int_eq(cluster_add_gateway(&cl, "gw-1", gw_args), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Joins nr-ns as peer, retrying while the join is refused or unanswered (the gateway's join
 * timeout is 5 s), within 20 s of since. */
static wsc_t *join_after(int gw, long long since, const char *peer)
{
    char last[256] = "nothing";
    for (;;) {
        wsc_t *c = wsc_connect(cl.gw_port[gw], NULL, T_MS);
        ck_assert_ptr_nonnull(c);
        send_json(c, "{\"id\":\"j\",\"hello\":{\"namespace\":\"nr-ns\",\"peerId\":\"%s\"}}", peer);
        json_t *j = wsc_recv_json(c, 6000);
        int ok = j && json_object_get(j, "welcome");
        if (j && !ok) {
            char *d = json_dumps(j, JSON_COMPACT);
            snprintf(last, sizeof(last), "%s", d ? d : "?");
            free(d);
        }
        json_decref(j);
        if (ok)
            return c;
        wsc_free(c);
        ck_assert_msg(cluster_now_ms() - since < 20000,
                      "%s's join never answered after the restart: %s", peer, last);
    }
}

START_TEST(every_shard_served_after_nats_restart)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    int max_one = 0;
    long long t0 = cluster_now_ms();
    while (served(&max_one) < SHARDS || max_one == SHARDS) {
        ck_assert_msg(cluster_now_ms() - t0 < 20000, "shards not served and spread at the start");
        usleep(50000);
    }
    wsc_t *a = join_as(cl.gw_port[0], "nr-ns", "A");

    /* Gone for longer than a lease: every coordinator stops serving. */
    cluster_kill_nats(&cl, 0);
    long long t_kill = cluster_now_ms();
    while (served(&max_one) > 0) {
        ck_assert_msg(cluster_now_ms() - t_kill < 15000, "shards still served without NATS");
        usleep(50000);
    }
    fprintf(stderr, "every shard dropped %lld ms after NATS died\n", cluster_now_ms() - t_kill);
    ck_assert_int_eq(cluster_restart_nats(&cl, 0, 0), 0);
    long long t_back = cluster_now_ms();
    int n;
    while ((n = served(&max_one)) < SHARDS) {
        ck_assert_msg(cluster_now_ms() - t_back < SERVED_BOUND_MS,
                      "%d of %d shards served %d ms after NATS came back", n, SHARDS,
                      SERVED_BOUND_MS);
        usleep(50000);
    }
    fprintf(stderr, "every shard served again %lld ms after NATS came back\n",
            cluster_now_ms() - t_back);

    /* At epochs the gateway accepts (it drops batches older than the epochs it saw before):
     * peers join after the restart (A was sent elsewhere while NATS was gone) and hear of
     * each other. */
    /* B through the gateway that lived through the restart (it must have renewed its NATS
     * connection: a renewal whose new connection closed while it was being made once stopped
     * renewing for good, 1 run in about 25), C through one started now. */
    const char *gw_args[] = {"--insecure-dev", NULL};
    int g2 = cluster_add_gateway(&cl, "gw-2", gw_args);
    ck_assert_int_eq(g2, 1);
    wsc_t *b = join_after(0, t_back, "B");
    wsc_t *c = join_after(g2, t_back, "C");
    /* A may be there still: its gateway can reconnect before it sends its clients away. */
    int told = 0;
    for (int k = 0; k < 50 && !told; k++) {
        json_t *m = skip_to(b, "topology");
        const char *to = str_at(m, "topology", "connect", "peer", NULL);
        told = to && !strcmp(to, "C");
        json_decref(m);
    }
    ck_assert_msg(told, "B never heard of C");
    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
    wsc_global_cleanup();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nats_restart");
    TCase *tc = tcase_create("restart");
    tcase_add_checked_fixture(tc, cluster_up, cluster_down);
    tcase_add_test(tc, every_shard_served_after_nats_restart);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

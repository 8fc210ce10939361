/* SPDX-License-Identifier: Apache-2.0 */
/* Fault test: what the coordinator's offline connection ("meshsig-offline", the JetStream worker
 * of coordinator/offline.c) sends once it is back after a cut. A persistent emit stored while it
 * is cut is retried by the worker (every 200 ms, for up to a minute) and published once after
 * the link is back: the tries made during the cut are not kept and sent on reconnecting. cnats'
 * reconnect buffer did keep them: each try waited out its 2 s bound and the next one was buffered
 * too, all sent on reconnecting (and one made past the worker's minute, after the sender was
 * told "not stored", would still have landed).
 *
 * The coordinator's NATS connections go through a proxy (cutproxy.h) that cuts only the offline
 * one; the gateway's go straight to NATS. A tap connection hears every publish to the offline
 * stream's subjects, acknowledged or not. */
#include <check.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "cutproxy.h"
#include "testutil.h"
#include "wsclient.h"

#define OFFLINE_CONN "meshsig-offline"
#define OUTAGE_MS 5000

static cluster_t cl;
static cutproxy_t *px;
static char px_nats[64];
static int gw;
static const char *const coord_args[] = {"--nats", px_nats, NULL};
static const char *const dev[] = {"--insecure-dev", NULL};

static void cluster_up(void)
{
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(cluster_start_nats_only(&cl, NULL), 0);
    ck_assert_ptr_nonnull(px = cutproxy_start(cl.nats_port));
    snprintf(px_nats, sizeof(px_nats), "nats://127.0.0.1:%d", cutproxy_port(px));
    cl.coord_extra = coord_args;                              /* the last --nats counts */
    ck_assert_int_eq(cluster_restart_coordinator(&cl, 1), 0); /* none yet: starts it */
    ck_assert_int_ge(gw = cluster_add_gateway(&cl, "gw-1", dev), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
    cutproxy_stop(px);
}

/* Publishes to the offline subjects the tap heard since the last call: it waits up to 2 s for
 * `want` of them, then 10 ms for more. Under load the tap heard nothing of the first store by
 * the time its sender's ok had come and a flush had returned (2 runs in 12, never reproduced
 * alone; the tap was not flushed then, see bus_tap): a copy queued late to the tap, or a tap
 * subscribed late, fails now only if it never comes. */
static int tap_drain(natsConnection *nc, natsSubscription *tap, int want)
{
    ck_assert_int_eq(natsConnection_FlushTimeout(nc, 5000), NATS_OK);
    int n = 0;
    natsMsg *m = NULL;
    long long t0 = cluster_now_ms();
    while (natsSubscription_NextMsg(&m, tap, n < want ? 2000 : 10) == NATS_OK) {
        const char *id = NULL;
        natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
        fprintf(stderr, "offline replay: heard %s (msg id %s)\n", natsMsg_GetSubject(m),
                id ? id : "-");
        n++;
        natsMsg_Destroy(m);
        if (n == want && cluster_now_ms() - t0 > 10)
            fprintf(stderr, "offline replay: the tap heard it %lld ms after the flush\n",
                    cluster_now_ms() - t0);
    }
    return n;
}

START_TEST(no_store_of_the_cut_sent_twice)
{
    natsConnection *nc = NULL;
    natsSubscription *tap = NULL;
    nc = bus_connect(&cl);
    tap = bus_tap(nc, "meshsig.offline.>");

    wsc_t *a = join_as(cl.gw_port[gw], "offrep", "alice");
    /* One store with the link up: heard once. */
    send_json(a, "{\"id\":\"p1\",\"emit\":{\"to\":\"zoe\",\"event\":\"note\",\"data\":1,"
                 "\"persistent\":true}}");
    json_decref(expect_key(a, "ok"));
    ck_assert_int_eq(tap_drain(nc, tap, 1), 1);

    cutproxy_cut_named(px, OFFLINE_CONN, 1);
    long long t0 = cluster_now_ms();
    send_json(a, "{\"id\":\"p2\",\"emit\":{\"to\":\"zoe\",\"event\":\"note\",\"data\":2,"
                 "\"persistent\":true}}");
    /* The cut: nothing reaches NATS, and the sender has no answer yet (the worker retries). */
    expect_quiet(a, OUTAGE_MS);
    int during = tap_drain(nc, tap, 0);
    cutproxy_cut_named(px, OFFLINE_CONN, 0);
    json_t *ok = expect_key(a, "ok");
    ck_assert_str_eq(str_at(ok, "id", NULL), "p2");
    json_decref(ok);
    long long t_ok = cluster_now_ms() - t0 - OUTAGE_MS;
    /* Whatever cnats kept is sent on reconnecting, before the try that was answered. */
    int after = tap_drain(nc, tap, 1);
    fprintf(stderr,
            "offline replay: a store made %d ms into a cut: %d publishes heard during it, %d "
            "after; stored %lld ms after the link was back\n",
            OUTAGE_MS, during, after, t_ok);
    ck_assert_int_eq(during, 0);
    ck_assert_msg(after == 1, "the store was published %d times after the cut", after);

    /* zoe gets it once. */
    wsc_free(a);
    wsc_t *z = join_as(cl.gw_port[gw], "offrep", "zoe");
    for (int i = 1; i <= 2; i++) {
        json_t *j = skip_to(z, "emit");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "emit"), "data")),
                         i);
        json_decref(j);
    }
    expect_quiet(z, 500);
    wsc_free(z);
    natsSubscription_Destroy(tap);
    natsConnection_Destroy(nc);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("offline_replay");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_unchecked_fixture(tc, client_up, client_down);
    tcase_add_test(tc, no_store_of_the_cut_sent_twice);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nats_Close();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

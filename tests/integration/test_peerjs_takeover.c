/* SPDX-License-Identifier: Apache-2.0 */
/* Ad-hoc pairs survive a change of owner: two PeerJS peers on two gateways are paired by the
 * owner of their key's namespace, the owner is killed (SIGKILL), and the other coordinator,
 * rebuilt from the gateways' reports (SessionReport.pairs), knows the pair: the signals stay
 * gateway to gateway without it, and when one peer leaves it unpairs the other's gateway. The
 * same when one gateway is silent through the takeover and its report is merged late.
 *
 * Real processes: nats-server, coordinators coord-1 and coord-2, gateways gw-1 and gw-2 in
 * insecure dev mode; clients speak the PeerJS server protocol over raw WebSockets as peerjs
 * 1.x does.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "pjclient.h"
#include "testutil.h"
#include "wsclient.h"

#define N_KEYS 16
#define BURST 100

static cluster_t cl;
static const char *const coord_args[] = {"--lease-ttl-ms",
                                         "1200",
                                         "--coord-timeout-ms",
                                         "800",
                                         "--coord-heartbeat-ms",
                                         "200",
                                         "--resync-timeout-ms",
                                         "1000",
                                         NULL};

static long long gw_metric(int gw, const char *series)
{
    return metric_at(cl.gw_port[gw], NULL, series);
}

static long long gw_direct(int gw, const char *dir)
{
    char s[128];
    snprintf(s, sizeof(s), "meshsig_gateway_signals_direct_total{dir=\"%s\"}", dir);
    return gw_metric(gw, s);
}

static long long coord_metric(int i, const char *series)
{
    return metric_at(cluster_coord_admin(&cl, i), NULL, series);
}

/* Polls until the gateway's pair records number want (within T_MS). */
static void await_gw_pairs(int gw, long long want)
{
    long long have = -1;
    for (long long end = cluster_now_ms() + T_MS; cluster_now_ms() < end; usleep(20000))
        if ((have = gw_metric(gw, "meshsig_gateway_direct_pairs")) == want)
            return;
    ck_abort_msg("gw-%d holds %lld pair records, want %lld", gw + 1, have, want);
}

static wsc_t *pj_open(int gw, const char *key, const char *id)
{
    char token[64];
    snprintf(token, sizeof(token), "t-%s", id);
    return pjc_open(cl.gw_port[gw], key, id, token, T_MS);
}

/* The next PeerJS message, of the type expected, from src. */
static json_t *pj_expect(wsc_t *c, const char *type, const char *src)
{
    return pjc_expect(c, type, src, T_MS);
}

/* n CANDIDATEs from `from` to `to`, each received in order. */
static void burst(wsc_t *from, const char *from_id, wsc_t *to, const char *to_id, int n)
{
    for (int i = 0; i < n; i++)
        pjc_send_numbered(from, "CANDIDATE", to_id, i);
    for (int i = 0; i < n; i++) {
        json_t *j = pj_expect(to, "CANDIDATE", from_id);
        json_t *got = json_object_get(json_object_get(j, "payload"), "n");
        ck_assert_msg(json_is_integer(got) && json_integer_value(got) == i,
                      "signal %d of %s out of order", i, from_id);
        json_decref(j);
    }
}

static void cluster_up(void)
{
    /* Sixteen keys, so that one lands on each coordinator whatever the spread. */
    static char keys[N_KEYS * 8];
    size_t off = 0;
    for (int k = 0; k < N_KEYS; k++)
        off += (size_t)snprintf(keys + off, sizeof(keys) - off, "%spt%d", k ? "," : "", k);
    const char *gw_args[] = {"--insecure-dev", "--peerjs-keys", keys, NULL};
    ck_assert_int_eq(cluster_start_coords(&cl, 2, coord_args, gw_args), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Once the shards are spread over both coordinators: a PeerJS key whose namespace coord-2 owns. */
static void key_on_coord2(char *key, size_t key_cap, char *ns, size_t ns_cap)
{
    uint64_t s0 = 0, s1 = 0;
    for (long long end = cluster_now_ms() + 15000;; usleep(50000)) {
        ck_assert_msg(cluster_now_ms() < end, "the shards never spread over both coordinators");
        if (cluster_served_by(&cl, 0, &s0) == 0 && cluster_served_by(&cl, 1, &s1) == 0 && s0 &&
            s1 && !(s0 & s1) && (s0 | s1) == ~0ULL)
            break;
    }
    *key = 0;
    for (int k = 0; k < N_KEYS && !*key; k++) {
        char name[32];
        snprintf(name, sizeof(name), "peerjs.pt%d", k);
        if (s1 >> cluster_shard_of(name) & 1) {
            snprintf(key, key_cap, "pt%d", k);
            snprintf(ns, ns_cap, "%s", name);
        }
    }
    ck_assert_msg(*key, "no PeerJS key's namespace on coord-2");
}

/* Polls until coordinator i owns ns with n peers (within 20 s). */
static void await_rebuilt(int i, const char *ns, size_t n)
{
    for (long long end = cluster_now_ms() + 20000;; usleep(50000)) {
        ck_assert_msg(cluster_now_ms() < end, "coord-%d never held %s with %zu peers", i + 1, ns,
                      n);
        json_t *d = cluster_admin_ns(&cl, i, ns);
        int done = d && !strcmp(str_at(d, "owner", NULL), i ? "coord-2" : "coord-1") &&
                   json_array_size(json_object_get(d, "peers")) == n;
        json_decref(d);
        if (done)
            return;
    }
}

/* a on gw-1 and b on gw-2 exchange an OFFER and an ANSWER. */
static void exchange(wsc_t *a, wsc_t *b)
{
    pjc_send_numbered(a, "OFFER", "b", -1);
    json_decref(pj_expect(b, "OFFER", "a"));
    pjc_send_numbered(b, "ANSWER", "a", -1);
    json_decref(pj_expect(a, "ANSWER", "b"));
}

/* 100 signals each way, all gateway to gateway: coordinator i routes none. */
static void bursts_go_direct(int i, wsc_t *a, wsc_t *b)
{
    long long routed0 = coord_metric(i, "meshsig_coordinator_signals_total");
    long long out1 = gw_direct(0, "out"), in2 = gw_direct(1, "in");
    long long out2 = gw_direct(1, "out"), in1 = gw_direct(0, "in");
    burst(a, "a", b, "b", BURST);
    burst(b, "b", a, "a", BURST);
    ck_assert_int_eq(gw_direct(0, "out") - out1, BURST);
    ck_assert_int_eq(gw_direct(1, "in") - in2, BURST);
    ck_assert_int_eq(gw_direct(1, "out") - out2, BURST);
    ck_assert_int_eq(gw_direct(0, "in") - in1, BURST);
    ck_assert_int_eq(coord_metric(i, "meshsig_coordinator_signals_total") - routed0, 0);
}

/* b leaves as a PeerJS client does: LEAVE to a, then LEAVE without dst. a hears it, and the
 * owner (coordinator i) unpairs a's gateway. */
static void b_leaves(int i, wsc_t *a, wsc_t *b)
{
    ck_assert_int_eq(wsc_send_text(b, "{\"type\":\"LEAVE\",\"dst\":\"a\"}"), 0);
    json_decref(pj_expect(a, "LEAVE", "b"));
    ck_assert_int_eq(wsc_send_text(b, "{\"type\":\"LEAVE\"}"), 0);
    ck_assert(wsc_wait_closed(b, T_MS));
    await_gw_pairs(1, 0);
    await_gw_pairs(0, 0);
    ck_assert_int_eq(coord_metric(i, "meshsig_coordinator_pairs"), 0);
}

START_TEST(pairs_survive_takeover)
{
    char key[16], ns[32];
    key_on_coord2(key, sizeof(key), ns, sizeof(ns));

    /* a on gw-1 and b on gw-2: their first OFFER and ANSWER go through coord-2, which pairs
     * them and tells both gateways. */
    wsc_t *a = pj_open(0, key, "a");
    wsc_t *b = pj_open(1, key, "b");
    exchange(a, b);
    await_gw_pairs(0, 1);
    await_gw_pairs(1, 1);
    ck_assert_int_eq(coord_metric(1, "meshsig_coordinator_pairs"), 1);

    /* The owner dies; coord-1 claims its shards once the leases run out and rebuilds. */
    long long t0 = cluster_now_ms();
    cluster_kill_coordinator(&cl, 1, SIGKILL);
    await_rebuilt(0, ns, 2);
    fprintf(stderr, "pairs takeover: %s rebuilt on coord-1 %lld ms after the kill\n", ns,
            cluster_now_ms() - t0);
    /* The new owner knows the pair, from both gateways' reports. */
    ck_assert_int_eq(coord_metric(0, "meshsig_coordinator_pairs"), 1);

    /* Signals still go gateway to gateway, both ways, without the new owner, on the records
     * of the old epoch. */
    bursts_go_direct(0, a, b);
    await_gw_pairs(0, 1);
    await_gw_pairs(1, 1);

    /* b leaves: the new owner unpairs a's gateway (on the old code it knew no pair: gw-1
     * kept the record). */
    b_leaves(0, a, b);

    /* b's next session on gw-2 pairs with a again through coord-1, and its signals go
     * direct from then on. */
    wsc_t *b2 = pj_open(1, key, "b");
    exchange(a, b2);
    await_gw_pairs(0, 1);
    await_gw_pairs(1, 1);
    ck_assert_int_eq(coord_metric(0, "meshsig_coordinator_pairs"), 1);
    long long routed0 = coord_metric(0, "meshsig_coordinator_signals_total");
    long long out1 = gw_direct(0, "out");
    burst(a, "a", b2, "b", BURST);
    ck_assert_int_eq(gw_direct(0, "out") - out1, BURST);
    ck_assert_int_eq(coord_metric(0, "meshsig_coordinator_signals_total") - routed0, 0);
    ck_assert_ptr_null(wsc_recv_json(a, 300));
    ck_assert_ptr_null(wsc_recv_json(b2, 10));

    wsc_free(a);
    wsc_free(b);
    wsc_free(b2);
}
END_TEST

/* gw-2 is stopped (SIGSTOP) while the owner is killed: coord-1 rebuilds from gw-1's report
 * alone, where a's partner b is missing, and unpairs gw-1. Heard again, gw-2's report is merged:
 * b's pair with a is restored from its end and told to both gateways again, and the signals go
 * gateway to gateway from then on. */
START_TEST(pairs_merged_from_a_late_gateway)
{
    char key[16], ns[32];
    key_on_coord2(key, sizeof(key), ns, sizeof(ns));
    wsc_t *a = pj_open(0, key, "a");
    wsc_t *b = pj_open(1, key, "b");
    exchange(a, b);
    await_gw_pairs(0, 1);
    await_gw_pairs(1, 1);

    ck_assert_int_eq(kill(cl.gw[1], SIGSTOP), 0);
    cluster_kill_coordinator(&cl, 1, SIGKILL);
    await_rebuilt(0, ns, 1);
    await_gw_pairs(0, 0); /* b is not here: a's record goes */
    ck_assert_int_eq(coord_metric(0, "meshsig_coordinator_pairs"), 0);
    ck_assert_int_eq(kill(cl.gw[1], SIGCONT), 0);
    await_rebuilt(0, ns, 2);
    ck_assert_int_eq(coord_metric(0, "meshsig_coordinator_pairs"), 1);
    await_gw_pairs(0, 1);
    await_gw_pairs(1, 1);

    /* The first exchange after the merge waits for gw-1's barrier behind what took the owner's
     * path; then everything goes direct. */
    exchange(a, b);
    bursts_go_direct(0, a, b);
    b_leaves(0, a, b);
    ck_assert_ptr_null(wsc_recv_json(a, 300));
    wsc_free(a);
    wsc_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("peerjs_takeover");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 90);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_add_test(tc, pairs_survive_takeover);
    suite_add_tcase(s, tc);
    /* A cluster of its own: the first case killed coord-2. */
    TCase *late = tcase_create("late gateway");
    tcase_set_timeout(late, 90);
    tcase_add_unchecked_fixture(late, cluster_up, cluster_down);
    tcase_add_checked_fixture(late, client_up, client_down);
    tcase_add_test(late, pairs_merged_from_a_late_gateway);
    suite_add_tcase(s, late);
    return run_suite(s);
}

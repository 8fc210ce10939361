/* SPDX-License-Identifier: Apache-2.0 */
/* Fault tests: a coordinator stopped (SIGSTOP, as under CPU starvation) past its lease deadline.
 * Back before the lease can expire, a late renewal keeps its shards with no second owner; back
 * after it expired and the other coordinator took over, it gives them up and nothing it made
 * while in doubt reaches a peer. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define SHARDS CLUSTER_SHARDS
#define TTL_MS 6000

static cluster_t cl;
/* The gateways' heartbeats go silent for the coordinator that is stopped too: a long gateway
 * timeout keeps that out of these tests (they are about the lease). */
static const char *const coord_args[] = {"--lease-ttl-ms",
                                         "6000",
                                         "--coord-timeout-ms",
                                         "1000",
                                         "--coord-heartbeat-ms",
                                         "200",
                                         "--resync-timeout-ms",
                                         "300",
                                         "--gateway-timeout-ms",
                                         "30000",
                                         "--resume-grace-ms",
                                         "30000",
                                         NULL};

typedef struct {
    int serving[SHARDS]; /* "here": "serving" */
    long long epoch[SHARDS];
    long long valid_ms[SHARDS]; /* leaseValidMs, -1 when absent */
} view_t;

/* Coordinator i's own shards; 0 when it did not answer. */
static int view(int i, view_t *v)
{
    memset(v, 0, sizeof(*v));
    char *body = NULL;
    int st = http_request(cluster_coord_admin(&cl, i), "GET", "/v1/cluster", NULL, NULL, &body);
    json_t *j = st == 200 && body ? json_loads(body, 0, NULL) : NULL;
    free(body);
    if (!j)
        return 0;
    json_t *sh = json_object_get(j, "shards");
    for (size_t k = 0; k < json_array_size(sh); k++) {
        json_t *s = json_array_get(sh, k);
        int n = (int)json_integer_value(json_object_get(s, "shard"));
        if (n < 0 || n >= SHARDS)
            continue;
        v->serving[n] = !strcmp(str_at(s, "here", NULL), "serving");
        v->epoch[n] = json_integer_value(json_object_get(s, "epoch"));
        json_t *vm = json_object_get(s, "leaseValidMs");
        v->valid_ms[n] = vm ? json_integer_value(vm) : -1;
    }
    json_decref(j);
    return 1;
}

static long long coord_event(int i, const char *event)
{
    char series[160];
    snprintf(series, sizeof(series), "meshsig_coordinator_shard_events_total{event=\"%s\"}", event);
    return metric_at(cluster_coord_admin(&cl, i), NULL, series);
}

static long long gw_epoch(int g, uint32_t shard)
{
    char series[160];
    snprintf(series, sizeof(series), "meshsig_gateway_shard_epoch{shard=\"%u\"}", shard);
    return metric_at(cl.gw_port[g], NULL, series);
}

static long long gw_stale(int g)
{
    return metric_at(cl.gw_port[g], NULL, "meshsig_gateway_dropped_total{reason=\"stale_epoch\"}");
}

/* No shard "serving" on both coordinators in these two views. */
static void one_owner(const view_t *a, const view_t *b)
{
    for (int n = 0; n < SHARDS; n++)
        ck_assert_msg(!(a->serving[n] && b->serving[n]), "shard %d served by both coordinators", n);
}

/* Waits until both coordinators serve shards, each its own share, and returns their views. */
static void settled(view_t *v0, view_t *v1)
{
    long long end = cluster_now_ms() + 20000;
    for (;;) {
        ck_assert(view(0, v0) && view(1, v1));
        one_owner(v0, v1);
        int n0 = 0, n1 = 0;
        for (int n = 0; n < SHARDS; n++) {
            n0 += v0->serving[n];
            n1 += v1->serving[n];
        }
        if (n0 && n1 && n0 + n1 == SHARDS)
            return;
        ck_assert_msg(cluster_now_ms() < end, "shards never settled (%d + %d)", n0, n1);
        usleep(50000);
    }
}

static void ns_on(uint32_t shard, const char *prefix, char *out, size_t cap)
{
    for (int k = 0; k < 100000; k++) {
        snprintf(out, cap, "%s-%d", prefix, k);
        if (cluster_shard_of(out) == shard)
            return;
    }
    ck_abort_msg("no namespace for shard %u", shard);
}

/* Reads until quiet_ms pass with nothing; fails on any topology change. */
static void expect_no_topology(wsc_t *c, int quiet_ms)
{
    json_t *j;
    while ((j = wsc_recv_json(c, quiet_ms))) {
        ck_assert_msg(!json_object_get(j, "topology") && !json_object_get(j, "peerLeft"),
                      "unexpected %s", json_dumps(j, JSON_COMPACT));
        json_decref(j);
    }
}

/* An emit, which always goes through the namespace's owner (signals between neighbours may
 * go from gateway to gateway directly). */
static void emit(wsc_t *c, const char *to, const char *data)
{
    send_json(c, "{\"emit\":{\"to\":\"%s\",\"event\":\"e\",\"data\":\"%s\"}}", to, data);
}

/* Exactly one emit from `from` with this data within ms, and no topology change. */
static void expect_one_emit(wsc_t *c, const char *from, const char *data, int ms)
{
    int got = 0;
    json_t *j;
    while ((j = wsc_recv_json(c, got ? 1500 : ms))) {
        if (json_object_get(j, "emit")) {
            ck_assert_str_eq(str_at(j, "emit", "from", NULL), from);
            ck_assert_str_eq(str_at(j, "emit", "data", NULL), data);
            got++;
        } else {
            ck_assert_msg(!json_object_get(j, "topology") && !json_object_get(j, "peerLeft"),
                          "unexpected %s", json_dumps(j, JSON_COMPACT));
        }
        json_decref(j);
    }
    ck_assert_msg(got == 1, "emit %s from %s arrived %d times", data, from, got);
}

static void cluster_up(void)
{
    static const char *const gw_args[] = {"--insecure-dev", NULL};
    ck_assert_int_eq(cluster_start_coords(&cl, 2, coord_args, gw_args), 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Stopped longer than a third of the lease and past its deadline, but back before the lease
 * expires: the renewal it sends on waking succeeds, it keeps every shard at the same epoch,
 * the other coordinator never claims one, and what it did in doubt reaches the peers. */
START_TEST(late_renewal_keeps_the_shards)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    view_t v0, v1;
    settled(&v0, &v1);
    const int V = 1; /* the victim: coord-2 */
    uint32_t x = SHARDS;
    for (uint32_t n = 0; n < SHARDS && x == SHARDS; n++)
        if (v1.serving[n])
            x = n;
    char ns[64];
    ns_on(x, "keep", ns, sizeof(ns));
    wsc_t *p1 = join_as(cl.gw_port[0], ns, "p1");
    wsc_t *p2 = join_as(cl.gw_port[1], ns, "p2");
    expect_connect(p1, "p2", 1);
    expect_connect(p2, "p1", 0);
    emit(p1, "p2", "before");
    expect_one_emit(p2, "p1", "before", 5000);

    long long lost0 = coord_event(V, "lost"), kept0 = coord_event(V, "kept_late");
    long long claimed_other = coord_event(0, "claimed");
    /* Stop when shard x is the next to renew, for 500 ms past its deadline: x is sure to be in
     * doubt on waking, and every shard's key still has at least TTL/3 - 500 ms to live then (a
     * key lives TTL from its write; the deadline is 2/3 TTL after the write was sent). */
    long long d = 0;
    for (long long end = cluster_now_ms() + 10000; !d;) {
        ck_assert(view(V, &v1));
        long long min = -1;
        for (int n = 0; n < SHARDS; n++)
            if (v1.serving[n] && v1.valid_ms[n] >= 0 && (min < 0 || v1.valid_ms[n] < min))
                min = v1.valid_ms[n];
        if (v1.serving[x] && v1.valid_ms[x] <= min + 100)
            d = v1.valid_ms[x] + 500;
        ck_assert_msg(cluster_now_ms() < end, "shard %u never the next to renew", x);
        if (!d)
            usleep(20000);
    }
    ck_assert_msg(d > TTL_MS / 3 && d < TTL_MS, "stop of %lld ms", d);
    ck_assert_int_eq(kill(cluster_coord_pid(&cl, V), SIGSTOP), 0);
    long long t0 = cluster_now_ms();
    int signalled = 0;
    /* Meanwhile coord-1 thinks coord-2 is dead and tries to claim its shards: it must not
     * get one. A emit sent now waits in NATS for the stopped owner. */
    while (cluster_now_ms() - t0 < d) {
        ck_assert(view(0, &v0));
        for (int n = 0; n < SHARDS; n++)
            ck_assert_msg(!(v1.serving[n] && v0.serving[n]), "shard %d claimed while held", n);
        if (!signalled && cluster_now_ms() - t0 > 200) {
            emit(p1, "p2", "during");
            signalled = 1;
        }
        usleep(20000);
    }
    ck_assert_int_eq(kill(cluster_coord_pid(&cl, V), SIGCONT), 0);
    long long t_cont = cluster_now_ms();
    fprintf(stderr, "lease doubt: coord-2 stopped %lld ms (shard %u had %lld ms of lease left)\n",
            t_cont - t0, x, d - 500);
    view_t w0, w1;
    for (long long end = cluster_now_ms() + 10000;;) {
        ck_assert(view(0, &w0) && view(V, &w1));
        one_owner(&w0, &w1);
        int all = 1;
        for (int n = 0; n < SHARDS; n++)
            all &= !v1.serving[n] || w1.serving[n];
        if (all && coord_event(V, "kept_late") > kept0)
            break;
        ck_assert_msg(cluster_now_ms() < end, "coord-2 did not settle its lease after waking");
        usleep(50000);
    }
    fprintf(stderr, "lease doubt: shards kept %lld ms after waking; %lld kept by a late renewal\n",
            cluster_now_ms() - t_cont, coord_event(V, "kept_late") - kept0);
    ck_assert_int_eq(coord_event(V, "lost"), lost0);
    ck_assert_int_eq(coord_event(0, "claimed"), claimed_other);
    for (int n = 0; n < SHARDS; n++)
        if (v1.serving[n]) {
            ck_assert_msg(w1.serving[n], "shard %d no longer served by coord-2", n);
            ck_assert_msg(w1.epoch[n] == v1.epoch[n], "shard %d: epoch %lld -> %lld", n,
                          v1.epoch[n], w1.epoch[n]);
        }
    /* The emit handled in doubt was held, then sent: once. */
    expect_one_emit(p2, "p1", "during", 5000);
    emit(p2, "p1", "after");
    expect_one_emit(p1, "p2", "after", 5000);
    /* Every gateway saw only coord-2's epoch for shard x: no second owner. */
    for (int g = 0; g < 2; g++)
        ck_assert_int_eq(gw_epoch(g, x), v1.epoch[x]);
    expect_no_topology(p1, 300);
    expect_no_topology(p2, 10);
    wsc_free(p1);
    wsc_free(p2);
    wsc_global_cleanup();
}
END_TEST

/* Stopped past the lease: the other coordinator claims its shards at new epochs. On waking its
 * renewals are refused: it gives the shards up and what it made in doubt is discarded (the
 * peer gets the other owner's delivery only, no gateway drops a stale one). */
START_TEST(expired_lease_is_given_up)
{
    ck_assert_int_eq(wsc_global_init(), 0);
    view_t v0, v1;
    settled(&v0, &v1);
    const int V = 1;
    uint32_t x = SHARDS;
    int n_v = 0;
    for (uint32_t n = 0; n < SHARDS; n++)
        if (v1.serving[n]) {
            n_v++;
            if (x == SHARDS)
                x = n;
        }
    char ns[64];
    ns_on(x, "lose", ns, sizeof(ns));
    wsc_t *p1 = join_as(cl.gw_port[0], ns, "q1");
    wsc_t *p2 = join_as(cl.gw_port[1], ns, "q2");
    expect_connect(p1, "q2", 1);
    expect_connect(p2, "q1", 0);
    emit(p1, "q2", "before");
    expect_one_emit(p2, "q1", "before", 5000);
    long long lost0 = coord_event(V, "lost");

    ck_assert_int_eq(kill(cluster_coord_pid(&cl, V), SIGSTOP), 0);
    long long t0 = cluster_now_ms();
    /* coord-1 takes every shard of coord-2 once its leases expire. */
    view_t w0;
    for (long long end = t0 + 30000;;) {
        ck_assert(view(0, &w0));
        int all = 1;
        for (int n = 0; n < SHARDS; n++)
            all &= !v1.serving[n] || (w0.serving[n] && w0.epoch[n] > v1.epoch[n]);
        if (all)
            break;
        ck_assert_msg(cluster_now_ms() < end, "coord-1 never took coord-2's shards over");
        usleep(50000);
    }
    long long t_taken = cluster_now_ms() - t0;
    /* Through the new owner: both gateways learn its epoch for shard x. The stopped one
     * will read the same request on waking. */
    emit(p1, "q2", "moved");
    expect_one_emit(p2, "q1", "moved", 5000);
    emit(p2, "q1", "back");
    expect_one_emit(p1, "q2", "back", 5000);
    long long e_new = w0.epoch[x];
    long long stale0 = gw_stale(0) + gw_stale(1);
    ck_assert_int_eq(kill(cluster_coord_pid(&cl, V), SIGCONT), 0);
    long long t_cont = cluster_now_ms();
    view_t w1;
    for (long long end = cluster_now_ms() + 10000;;) {
        ck_assert(view(0, &w0) && view(V, &w1));
        one_owner(&w0, &w1);
        if (coord_event(V, "lost") - lost0 >= n_v)
            break;
        ck_assert_msg(cluster_now_ms() < end,
                      "coord-2 kept shards it had lost (%lld of %d given up)",
                      coord_event(V, "lost") - lost0, n_v);
        usleep(20000);
    }
    fprintf(stderr,
            "lease doubt: coord-2 stopped %lld ms, its %d shards taken over after %lld ms; "
            "given up %lld ms after waking\n",
            t_cont - t0, n_v, t_taken, cluster_now_ms() - t_cont);
    /* Nothing coord-2 handled in doubt (the two emits it read on waking) went out. */
    expect_no_topology(p1, 1000);
    expect_no_topology(p2, 10);
    ck_assert_int_eq(gw_stale(0) + gw_stale(1), stale0);
    for (int g = 0; g < 2; g++)
        ck_assert_msg(gw_epoch(g, x) >= e_new, "gw %d: shard %u epoch went back", g, x);
    /* The cluster settles again (coord-2 gets its share back by hand-off) and serves. */
    settled(&v0, &v1);
    emit(p1, "q2", "settled");
    expect_one_emit(p2, "q1", "settled", 10000);
    wsc_free(p1);
    wsc_free(p2);
    wsc_global_cleanup();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lease_doubt");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_test(tc, late_renewal_keeps_the_shards);
    tcase_add_test(tc, expired_lease_is_given_up);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Fault tests: a coordinator whose lease connection (its KV calls) is cut while its heartbeats
 * still arrive. The other coordinator takes its shards and keeps them, with no hand-off back,
 * until its heartbeats say its lease store answers again; then the shards are spread again. And
 * a coordinator stopped with its lease link cut stops in bounded time (releases after a
 * timed-out one are not sent).
 *
 * coord-2's NATS connections all go through a proxy (cutproxy.h) that cuts either all of them
 * or only the one its lease worker opened ("meshsig-lease"), so that its bus, and with it its
 * heartbeats, keep working. No gateways: the shards' leases are what is under test. */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h"
#include "cutproxy.h"
#include "testutil.h"

#define SHARDS CLUSTER_SHARDS
#define TTL_MS 3000
#define LEASE_CONN "meshsig-lease"

static cluster_t cl;
static cutproxy_t *px;
static char px_nats[64];
#define COORD_ARGS                                                                                 \
    "--lease-ttl-ms", "3000", "--coord-timeout-ms", "1000", "--coord-heartbeat-ms", "200",         \
        "--resync-timeout-ms", "300"
static const char *const coord1_args[] = {COORD_ARGS, NULL};
static const char *const coord2_args[] = {COORD_ARGS, "--nats", px_nats, NULL};

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start_nats_only(&cl, NULL), 0);
    ck_assert_ptr_nonnull(px = cutproxy_start(cl.nats_port));
    snprintf(px_nats, sizeof(px_nats), "nats://127.0.0.1:%d", cutproxy_port(px));
    cl.coord_extra = coord1_args;
    ck_assert_int_eq(cluster_restart_coordinator(&cl, 1), 0); /* none yet: starts coord-1 */
    cl.coord_extra = coord2_args;                             /* the last --nats counts */
    ck_assert_int_eq(cluster_add_coordinator(&cl), 1);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
    cutproxy_stop(px);
}

/* Shards coordinator i serves; -1 when its admin does not answer. */
static int n_served(int i, uint64_t *set)
{
    uint64_t s = 0;
    if (cluster_served_by(&cl, i, &s) < 0)
        return -1;
    if (set)
        *set = s;
    return __builtin_popcountll(s);
}

/* Both coordinators' shards: never one shard on both. */
static void both(int *n0, int *n1)
{
    uint64_t s0 = 0, s1 = 0;
    *n0 = n_served(0, &s0);
    *n1 = n_served(1, &s1);
    ck_assert_msg(*n0 >= 0 && *n1 >= 0, "a coordinator's admin did not answer");
    ck_assert_msg(!(s0 & s1), "shards %llx served by both", (unsigned long long)(s0 & s1));
}

/* Until both serve a share and all 64 are served; returns how long it took. */
static long long wait_spread(long long timeout_ms, const char *what)
{
    long long t0 = cluster_now_ms();
    for (;;) {
        int n0, n1;
        both(&n0, &n1);
        if (n0 > 0 && n1 > 0 && n0 + n1 == SHARDS)
            return cluster_now_ms() - t0;
        ck_assert_msg(cluster_now_ms() - t0 < timeout_ms, "%s: %d + %d shards after %lld ms", what,
                      n0, n1, timeout_ms);
        usleep(50000);
    }
}

/* Every connection let through again (a test that failed may have left a cut), and both
 * coordinators serving their share. */
static void start_spread(void)
{
    cutproxy_cut(px, 0);
    cutproxy_cut_named(px, LEASE_CONN, 0);
    wait_spread(20000, "start");
}

/* Until coord-1 serves every shard; returns how long it took. */
static long long wait_all_on_coord1(long long timeout_ms, const char *what)
{
    long long t0 = cluster_now_ms();
    for (;;) {
        int n0, n1;
        both(&n0, &n1);
        if (n0 == SHARDS)
            return cluster_now_ms() - t0;
        ck_assert_msg(cluster_now_ms() - t0 < timeout_ms,
                      "%s: coord-1 serves %d, coord-2 %d "
                      "after %lld ms",
                      what, n0, n1, timeout_ms);
        usleep(50000);
    }
}

static long long coord_event(int i, const char *event)
{
    char series[160];
    snprintf(series, sizeof(series), "meshsig_coordinator_shard_events_total{event=\"%s\"}", event);
    return metric_at(cluster_coord_admin(&cl, i), NULL, series);
}

/* For hold_ms: coord-1 keeps every shard, hands none off, coord-2 claims none. */
static void holds_all(long long hold_ms)
{
    long long h0 = coord_event(0, "handed_off"), c1 = coord_event(1, "claimed");
    for (long long end = cluster_now_ms() + hold_ms; cluster_now_ms() < end; usleep(50000)) {
        int n0, n1;
        both(&n0, &n1);
        ck_assert_msg(n0 == SHARDS && n1 == 0, "shards moved: coord-1 %d, coord-2 %d", n0, n1);
    }
    ck_assert_int_eq(coord_event(0, "handed_off"), h0);
    ck_assert_int_eq(coord_event(1, "claimed"), c1);
}

/* coord-2 cut off from NATS entirely (heartbeats too): coord-1 takes its shards. Its bus comes
 * back first, its lease connection not: coord-1 hears it alive again but keeps the shards (the
 * old code handed them back at once, and nobody could serve them). When the lease connection
 * is back, the shards are spread again. */
START_TEST(bus_back_before_the_lease)
{
    start_spread();
    cutproxy_cut(px, 1);
    long long t_all = wait_all_on_coord1(4 * TTL_MS, "coord-2 cut off");
    wait_coord_seen(&cl, 0, 1, 0, -1, 2 * TTL_MS, "coord-2 silent");
    cutproxy_cut_named(px, LEASE_CONN, 1);
    cutproxy_cut(px, 0); /* every connection but the lease's goes through again */
    long long t0 = cluster_now_ms();
    wait_coord_seen(&cl, 0, 1, 1, 0, 10000, "coord-2's heartbeats back, its lease store not");
    long long t_alive = cluster_now_ms() - t0;
    holds_all(2 * TTL_MS);
    cutproxy_cut_named(px, LEASE_CONN, 0);
    t0 = cluster_now_ms();
    wait_coord_seen(&cl, 0, 1, 1, 1, 4 * TTL_MS, "coord-2's lease store back");
    long long t_ok = cluster_now_ms() - t0;
    long long t_spread = wait_spread(4 * TTL_MS, "after the lease connection came back") + t_ok;
    fprintf(stderr,
            "lease health: coord-1 served all %lld ms after the cut; coord-2 heard again after "
            "%lld ms and kept out for %d ms; its store answered %lld ms after the lease link "
            "was back, shards spread %lld ms after\n",
            t_all, t_alive, 2 * TTL_MS, t_ok, t_spread);
}
END_TEST

/* Only coord-2's lease connection cut, its heartbeats never stop: coord-1 takes its shards once
 * their leases run out (the old code never did: coord-2 was alive, so the shards stayed its,
 * unserved), and keeps them until the lease connection is back. */
START_TEST(lease_cut_heartbeats_on)
{
    start_spread();
    cutproxy_cut_named(px, LEASE_CONN, 1);
    long long t0 = cluster_now_ms();
    wait_coord_seen(&cl, 0, 1, 1, 0, 2 * TTL_MS, "coord-2's lease store silent");
    long long t_seen = cluster_now_ms() - t0;
    /* Its leases run out a lease after its last write at the latest; claims and rebuilds
     * follow within a few hundred ms. */
    long long t_all = wait_all_on_coord1(2 * TTL_MS, "coord-2's lease link cut") + t_seen;
    holds_all(TTL_MS);
    int alive, ok;
    coord_seen(&cl, 0, 1, &alive, &ok);
    ck_assert_msg(alive == 1 && ok == 0, "coord-2 alive %d, lease %d", alive, ok);
    cutproxy_cut_named(px, LEASE_CONN, 0);
    long long t_spread = wait_spread(4 * TTL_MS, "after the lease connection came back");
    fprintf(stderr,
            "lease health: coord-2's store seen silent %lld ms after its lease link was cut, "
            "all shards on coord-1 %lld ms after the cut; spread again %lld ms after the link "
            "was back\n",
            t_seen, t_all, t_spread);
}
END_TEST

static long long kv_calls(int i)
{
    return metric_at(cluster_coord_admin(&cl, i), NULL, "meshsig_coordinator_lease_kv_calls_total");
}

/* coord-2's lease link cut for OUTAGE_MS, its heartbeats on: while KV does not answer, its
 * claims and renewals are retried at a growing interval (cluster.c, "Retries while KV is
 * silent"), not every 50-150 ms per shard, and the link itself is tried again at a growing
 * interval too (jsworker.h, reconnect_max_ms), not every 100 ms; once the link is back the
 * shards are spread again as fast as before. KV calls counted by coord-2 over the outage: at
 * most KV_CALLS_BOUND; connection attempts (each refused by the proxy at its CONNECT): at most
 * CONNECTS_BOUND (66 before: a TCP connect, INFO and CONNECT every 100-200 ms; 31 now). */
#define OUTAGE_MS 10000
#define KV_CALLS_BOUND 250
#define CONNECTS_BOUND 40
START_TEST(lease_cut_retries_back_off)
{
    start_spread();
    long long calls0 = kv_calls(1);
    cutproxy_cut_named(px, LEASE_CONN, 1);
    long connects0 = cutproxy_named_closed(px);
    long long t0 = cluster_now_ms();
    /* The outage: coord-2 keeps answering its admin throughout. */
    for (int alive = 1, ok; cluster_now_ms() - t0 < OUTAGE_MS; usleep(100000)) {
        coord_seen(&cl, 0, 1, &alive, &ok);
        ck_assert_msg(alive == 1, "coord-2 not seen alive %lld ms into the outage",
                      cluster_now_ms() - t0);
    }
    long long calls = kv_calls(1) - calls0;
    long connects = cutproxy_named_closed(px) - connects0;
    cutproxy_cut_named(px, LEASE_CONN, 0);
    long long t_spread = wait_spread(4 * TTL_MS, "after the lease connection came back");
    fprintf(stderr,
            "lease health: coord-2 made %lld KV calls and %ld connection attempts in a %d ms "
            "lease-link outage; shards spread again %lld ms after the link was back\n",
            calls, connects, OUTAGE_MS, t_spread);
    ck_assert_msg(connects <= CONNECTS_BOUND,
                  "%ld connection attempts in %d ms without a lease "
                  "link",
                  connects, OUTAGE_MS);
    ck_assert_msg(calls <= KV_CALLS_BOUND, "%lld KV calls in %d ms without a lease link", calls,
                  OUTAGE_MS);
}
END_TEST

/* SIGTERM while coord-2 holds its shards and its lease link is cut: each release would wait
 * out the KV bound (TTL/3 = 1 s here, 32 shards: 30 s or more); after the first one that
 * times out the rest are not sent, and the process exits within STOP_BOUND_MS. */
#define STOP_BOUND_MS 6000
START_TEST(stop_with_the_lease_cut)
{
    start_spread();
    int held = n_served(1, NULL);
    ck_assert_int_gt(held, 1);
    cutproxy_cut_named(px, LEASE_CONN, 1);
    pid_t pid = cluster_coord_pid(&cl, 1);
    long long t0 = cluster_now_ms();
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0) {
        ck_assert_msg(cluster_now_ms() - t0 < 60000, "coord-2 still running after 60 s");
        usleep(20000);
    }
    long long took = cluster_now_ms() - t0;
    cl.xcoord[1] = -1;
    fprintf(stderr, "lease health: coord-2 (%d shards, lease link cut) stopped in %lld ms\n", held,
            took);
    ck_assert_int_eq(r, pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "coord-2 exit status %d", status);
    ck_assert_msg(took < STOP_BOUND_MS, "coord-2 took %lld ms to stop (bound %d ms)", took,
                  STOP_BOUND_MS);
    cutproxy_cut_named(px, LEASE_CONN, 0);
    /* Its leases ran out unreleased: coord-1 takes them then. */
    for (long long end = cluster_now_ms() + 4 * TTL_MS; n_served(0, NULL) != SHARDS; usleep(50000))
        ck_assert_msg(cluster_now_ms() < end, "coord-1 serves %d shards after coord-2 stopped",
                      n_served(0, NULL));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lease_health");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 150);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_test(tc, bus_back_before_the_lease);
    tcase_add_test(tc, lease_cut_heartbeats_on);
    tcase_add_test(tc, lease_cut_retries_back_off);
    tcase_add_test(tc, stop_with_the_lease_cut); /* last: coord-2 is gone after it */
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

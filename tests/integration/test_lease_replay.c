/* SPDX-License-Identifier: Apache-2.0 */
/* Fault tests: what a coordinator's lease connection ("meshsig-lease") does while it is cut and
 * its bus is not. No KV write made during the cut reaches NATS once the link is back (cnats
 * kept them in its reconnect buffer and sent them on reconnecting, seconds late: a renewal or
 * claim that then succeeded kept our id on a key we no longer served). And a coordinator
 * stopped with its lease link cut is seen leaving at once, not at --coord-timeout-ms (its
 * "leaving" heartbeat went only through the lease connection).
 *
 * coord-2's NATS connections go through a proxy (cutproxy.h) that cuts only its lease
 * connection. A tap connection straight to NATS hears every write to the shard bucket's keys,
 * accepted or not. No gateways: the leases are what is under test. */
#include <check.h>
#include <nats/nats.h>
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
#define COORD_TIMEOUT_MS 8000
#define LEASE_CONN "meshsig-lease"
#define KV_SUBJECTS "$KV.meshsig_shards.>"

static cluster_t cl;
static cutproxy_t *px;
static char px_nats[64];
/* A long --coord-timeout-ms: a departure seen sooner came from a "leaving" heartbeat. Lease
 * health (who gets shards) follows the heartbeats' lease_silent_ms, not this timeout. */
#define COORD_ARGS                                                                                 \
    "--lease-ttl-ms", "3000", "--coord-timeout-ms", "8000", "--coord-heartbeat-ms", "200",         \
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
static int n_served(int i)
{
    uint64_t s = 0;
    return cluster_served_by(&cl, i, &s) < 0 ? -1 : __builtin_popcountll(s);
}

/* Until coord-1 serves n0 and coord-2 n1 (-1: any share above 0, together all). */
static void wait_served(int want0, int want1, long long timeout_ms, const char *what)
{
    for (long long end = cluster_now_ms() + timeout_ms;; usleep(50000)) {
        int n0 = n_served(0), n1 = n_served(1);
        if (want1 < 0 ? n0 > 0 && n1 > 0 && n0 + n1 == SHARDS : n0 == want0 && n1 == want1)
            return;
        ck_assert_msg(cluster_now_ms() < end, "%s: coord-1 serves %d, coord-2 %d after %lld ms",
                      what, n0, n1, timeout_ms);
    }
}

static long long coord_lost(int i)
{
    return metric_at(cluster_coord_admin(&cl, i), NULL,
                     "meshsig_coordinator_shard_events_total{event=\"lost\"}");
}

/* The shard bucket's last revision (its stream's last sequence). */
static uint64_t kv_last_rev(natsConnection *nc)
{
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    ck_assert_int_eq(js_GetStreamInfo(&si, js, "KV_meshsig_shards", NULL, NULL), NATS_OK);
    uint64_t rev = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    return rev;
}

/* Writes of coord-2's id (claims and renewals) the tap heard since the last call, and of those
 * how many expected a revision in 1..old_rev (made before the cut: the key moved on since) and
 * how many were creates (expected no value); each printed. */
static int tap_drain(natsConnection *nc, natsSubscription *tap, uint64_t old_rev, int *stale,
                     int *creates)
{
    ck_assert_int_eq(natsConnection_FlushTimeout(nc, 5000), NATS_OK);
    const char *id = cluster_coord_id(&cl, 1);
    int n = 0;
    *stale = *creates = 0;
    natsMsg *m = NULL;
    while (natsSubscription_NextMsg(&m, tap, 10) == NATS_OK) {
        const char *exp = NULL;
        int own = natsMsg_GetDataLength(m) == (int)strlen(id) &&
                  !memcmp(natsMsg_GetData(m), id, strlen(id));
        if (own) {
            n++;
            natsMsgHeader_Get(m, "Nats-Expected-Last-Subject-Sequence", &exp);
            unsigned long long e = exp ? strtoull(exp, NULL, 10) : 0;
            if (e > 0 && e <= old_rev) {
                (*stale)++;
                if (*stale <= 5)
                    fprintf(stderr, "lease replay: %s from revision %llu (cut at %llu)\n",
                            natsMsg_GetSubject(m), e, (unsigned long long)old_rev);
            } else if (!exp || e == 0) {
                (*creates)++;
            }
        }
        natsMsg_Destroy(m);
    }
    return n;
}

/* coord-2's lease link cut while it holds half the shards and renews them (some shard is due
 * every tick): its renewals fail, coord-1 takes the shards once the leases run out. Then the
 * link is back. Every write of coord-2's heard after that must be one made after it: none may
 * expect a revision from before the cut. The old code sent the renewals (and claims) of the
 * cut then, from cnats' reconnect buffer. */
START_TEST(no_write_of_the_cut_after_it)
{
    natsConnection *nc = NULL;
    natsSubscription *tap = NULL;
    nc = bus_connect(&cl);
    tap = bus_tap(nc, KV_SUBJECTS);
    cutproxy_cut_named(px, LEASE_CONN, 0);
    wait_served(-1, -1, 20000, "start");
    int stale = 0, creates = 0;
    int before = tap_drain(nc, tap, 0, &stale, &creates);
    ck_assert_msg(before > 0, "the tap heard no renewal of coord-2's before the cut");

    int held = n_served(1);
    long long lost0 = coord_lost(1);
    cutproxy_cut_named(px, LEASE_CONN, 1);
    long long t0 = cluster_now_ms();
    wait_coord_seen(&cl, 0, 1, 1, 0, 2 * TTL_MS, "coord-2's lease store silent");
    wait_served(SHARDS, 0, 3 * TTL_MS, "coord-2's lease link cut");
    long long t_all = cluster_now_ms() - t0;
    /* Until coord-2 gave up every shard it held (a lease in doubt after its deadline): after
     * that no renewal of its may expect a revision from before the cut; before, one settling
     * the doubt would, once the link is back. */
    for (long long end = cluster_now_ms() + 3 * TTL_MS; coord_lost(1) < lost0 + held; usleep(50000))
        ck_assert_msg(cluster_now_ms() < end, "coord-2 lost %lld of its %d shards",
                      coord_lost(1) - lost0, held);
    long long t_lost = cluster_now_ms() - t0;
    /* Past here coord-2 has written nothing that landed: every revision up to now is of before
     * the link is back (coord-1's claims included). */
    uint64_t cut_rev = kv_last_rev(nc);
    int during = tap_drain(nc, tap, 0, &stale, &creates);

    cutproxy_cut_named(px, LEASE_CONN, 0);
    t0 = cluster_now_ms();
    /* A replay is sent on reconnecting, before anything the worker writes after it, and that
     * comes before the heartbeat saying its store answers: heard by now if sent at all. */
    wait_coord_seen(&cl, 0, 1, 1, 1, 4 * TTL_MS, "coord-2's lease store back");
    wait_served(-1, -1, 4 * TTL_MS, "after the lease link came back");
    long long t_spread = cluster_now_ms() - t0;
    int after = tap_drain(nc, tap, cut_rev, &stale, &creates);
    fprintf(stderr,
            "lease replay: all shards on coord-1 %lld ms after the cut, coord-2 gave up its %d "
            "after %lld ms; coord-2's writes heard: "
            "%d before, %d during, %d after the link was back (%d of them from before the cut, "
            "%d creates); spread again %lld ms after\n",
            t_all, held, t_lost, before, during, after, stale, creates, t_spread);
    ck_assert_msg(stale == 0, "%d writes of coord-2's from before the cut sent after it", stale);
    ck_assert_int_gt(after, 0); /* its claims and renewals of its share again */
    natsSubscription_Destroy(tap);
    natsConnection_Destroy(nc);
}
END_TEST

/* SIGTERM while coord-2's lease link is cut and its bus works: coord-1 sees it leaving within
 * LEAVE_BOUND_MS, well under --coord-timeout-ms (the old code: at the timeout, 8 s). */
#define LEAVE_BOUND_MS 3000
START_TEST(leaving_seen_with_the_lease_cut)
{
    cutproxy_cut_named(px, LEASE_CONN, 0);
    wait_served(-1, -1, 20000, "start");
    cutproxy_cut_named(px, LEASE_CONN, 1);
    pid_t pid = cluster_coord_pid(&cl, 1);
    long long t0 = cluster_now_ms();
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    wait_coord_seen(&cl, 0, 1, 0, -1, COORD_TIMEOUT_MS + 2000, "coord-2 stopped");
    long long seen = cluster_now_ms() - t0;
    int status = 0;
    pid_t r;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0) {
        ck_assert_msg(cluster_now_ms() - t0 < 60000, "coord-2 still running after 60 s");
        usleep(20000);
    }
    long long took = cluster_now_ms() - t0;
    cl.xcoord[1] = -1;
    fprintf(stderr,
            "lease replay: coord-2 stopped with its lease link cut seen leaving after %lld ms "
            "(--coord-timeout-ms %d), exited after %lld ms\n",
            seen, COORD_TIMEOUT_MS, took);
    ck_assert_msg(seen < LEAVE_BOUND_MS, "coord-2 seen leaving after %lld ms (bound %d ms)", seen,
                  LEAVE_BOUND_MS);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "coord-2 exit status %d", status);
    cutproxy_cut_named(px, LEASE_CONN, 0);
    /* Its leases ran out unreleased: coord-1 takes them then. */
    for (long long end = cluster_now_ms() + 4 * TTL_MS; n_served(0) != SHARDS; usleep(50000))
        ck_assert_msg(cluster_now_ms() < end, "coord-1 serves %d shards after coord-2 left",
                      n_served(0));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lease_replay");
    TCase *tc = tcase_create("cluster");
    tcase_set_timeout(tc, 150);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_test(tc, no_write_of_the_cut_after_it);
    tcase_add_test(tc, leaving_seen_with_the_lease_cut); /* last: coord-2 is gone after it */
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    nats_Close();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

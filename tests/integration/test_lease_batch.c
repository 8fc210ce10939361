/* SPDX-License-Identifier: Apache-2.0 */
/* A coordinator renews its shard leases in small pipelined batches spread over the renewal
 * interval (coordinator/renewal.c), and keeps them all. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cluster.h"
#include "testutil.h"

static cluster_t cl;

static long long coord_metric(const char *series)
{
    return metric_at(cluster_coord_admin(&cl, 0), NULL, series);
}

static long long coord_event(const char *event)
{
    char series[160];
    snprintf(series, sizeof(series), "meshsig_coordinator_shard_events_total{event=\"%s\"}", event);
    return coord_metric(series);
}

#define RENEWALS "meshsig_coordinator_lease_renewals_total"
#define BATCHES "meshsig_coordinator_lease_renewal_batches_total"

/* One renewal at a time used to cost about a dozen thread wake-ups on both cores per shard every
 * third of a lease; every shard in one batch, a ~2 ms burst of the coordinator and nats-server
 * every third of a lease: the signals that met either were the slowest. The shards of one
 * coordinator now renew in phases, about an eighth of them per batch, each batch pipelined. */
START_TEST(renewals_go_out_in_small_batches)
{
    /* The harness's lease (3000 ms: a renewal every second, in 8 phases 125 ms apart). */
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    long long shards = coord_metric("meshsig_coordinator_shards");
    ck_assert_int_gt(shards, 0);
    long long deadline = cluster_now_ms() + 20000;
    while (coord_metric("meshsig_coordinator_shards_owned") < shards && cluster_now_ms() < deadline)
        usleep(50000);
    ck_assert_int_eq(coord_metric("meshsig_coordinator_shards_owned"), shards);
    long long claimed = coord_event("claimed");
    long long r0 = coord_metric(RENEWALS), b0 = coord_metric(BATCHES);
    ck_assert_int_ge(r0, 0);
    ck_assert_int_ge(b0, 0);
    /* Three rounds of every shard: about 3 s. */
    long long r1 = r0, b1 = b0;
    deadline = cluster_now_ms() + 20000;
    while ((r1 = coord_metric(RENEWALS)) < r0 + 3 * shards && cluster_now_ms() < deadline)
        usleep(50000);
    b1 = coord_metric(BATCHES);
    fprintf(stderr, "lease_batch: %lld renewals of %lld shards in %lld batches\n", r1 - r0, shards,
            b1 - b0);
    ck_assert_msg(r1 >= r0 + 3 * shards, "only %lld renewals of %lld shards in 20 s", r1 - r0,
                  shards);
    /* Spread: a round is eight batches of about an eighth of the shards each (a tick late by
     * more than the half tick between phases may take two phases at once). Every shard in one
     * batch, as before, would be shards per batch. Still batched: more than one per batch. */
    ck_assert_msg((r1 - r0) * 4 <= (b1 - b0) * shards,
                  "%lld renewals went out in %lld batches (%lld shards): not spread", r1 - r0,
                  b1 - b0, shards);
    ck_assert_msg((r1 - r0) >= 2 * (b1 - b0), "%lld renewals went out in %lld batches: not batched",
                  r1 - r0, b1 - b0);
    /* Every lease kept: nothing lost, nothing claimed again. */
    ck_assert_int_eq(coord_event("lost"), 0);
    ck_assert_int_eq(coord_event("claimed"), claimed);
    ck_assert_int_eq(coord_metric("meshsig_coordinator_shards_owned"), shards);
}
END_TEST

static void teardown(void)
{
    cluster_stop(&cl);
}

int main(void)
{
    Suite *s = suite_create("lease_batch");
    TCase *tc = tcase_create("batch");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, renewals_go_out_in_small_batches);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

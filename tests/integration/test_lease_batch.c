/* SPDX-License-Identifier: Apache-2.0 */
/* A coordinator renews its shard leases in pipelined batches: by default every shard in one
 * batch per renewal interval, with --lease-renew-phases 8 in small batches spread over it
 * (coordinator/renewal.c); either way it keeps them all. */
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

/* Three rounds of renewals of every shard by a coordinator started with coord_extra:
 * *renewals and *batches over them, every lease kept. */
static void three_rounds(const char *const *coord_extra, long long *shards, long long *renewals,
                         long long *batches)
{
    /* The harness's lease (3000 ms: a renewal every second). */
    ck_assert_int_eq(cluster_start_args(&cl, NULL, coord_extra), 0);
    *shards = coord_metric("meshsig_coordinator_shards");
    ck_assert_int_gt(*shards, 0);
    long long deadline = cluster_now_ms() + 20000;
    while (coord_metric("meshsig_coordinator_shards_owned") < *shards &&
           cluster_now_ms() < deadline)
        usleep(50000);
    ck_assert_int_eq(coord_metric("meshsig_coordinator_shards_owned"), *shards);
    long long claimed = coord_event("claimed");
    long long r0 = coord_metric(RENEWALS), b0 = coord_metric(BATCHES);
    ck_assert_int_ge(r0, 0);
    ck_assert_int_ge(b0, 0);
    /* Three rounds of every shard: about 3 s. */
    long long r1 = r0;
    deadline = cluster_now_ms() + 20000;
    while ((r1 = coord_metric(RENEWALS)) < r0 + 3 * *shards && cluster_now_ms() < deadline)
        usleep(50000);
    long long b1 = coord_metric(BATCHES);
    fprintf(stderr, "lease_batch: %lld renewals of %lld shards in %lld batches\n", r1 - r0, *shards,
            b1 - b0);
    ck_assert_msg(r1 >= r0 + 3 * *shards, "only %lld renewals of %lld shards in 20 s", r1 - r0,
                  *shards);
    /* Every lease kept: nothing lost, nothing claimed again. */
    ck_assert_int_eq(coord_event("lost"), 0);
    ck_assert_int_eq(coord_event("claimed"), claimed);
    ck_assert_int_eq(coord_metric("meshsig_coordinator_shards_owned"), *shards);
    *renewals = r1 - r0;
    *batches = b1 - b0;
}

/* Spread: a round is eight batches of about an eighth of the shards each (a tick late by more
 * than the half tick between phases may take two phases at once). Every shard in one batch
 * would be shards per batch. Still batched: more than one per batch. */
START_TEST(renewals_spread_in_small_batches)
{
    const char *const extra[] = {"--lease-renew-phases", "8", NULL};
    long long shards, r, b;
    three_rounds(extra, &shards, &r, &b);
    ck_assert_msg(r * 4 <= b * shards,
                  "%lld renewals went out in %lld batches (%lld shards): not spread", r, b, shards);
    ck_assert_msg(r >= 2 * b, "%lld renewals went out in %lld batches: not batched", r, b);
}
END_TEST

/* The default: one batch per round (a round that straddles a late tick may take two). */
START_TEST(renewals_go_out_in_one_batch_by_default)
{
    long long shards, r, b;
    three_rounds(NULL, &shards, &r, &b);
    ck_assert_msg(r * 2 > b * shards,
                  "%lld renewals went out in %lld batches (%lld shards): not one batch a round", r,
                  b, shards);
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
    tcase_add_test(tc, renewals_spread_in_small_batches);
    tcase_add_test(tc, renewals_go_out_in_one_batch_by_default);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

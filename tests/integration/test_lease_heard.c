/* SPDX-License-Identifier: Apache-2.0 */
/* The lease worker (coordinator/lease.c) against a real nats-server: which answers count as
 * hearing from the lease store (ms_lease_silent_ms, what the heartbeats' lease_silent_ms and
 * the others' leaseOk follow). The rule: any answer JetStream sends back, a refusal too. A
 * release refused by its compare-and-set and a stored policy are answers; before, only a
 * release that succeeded counted, and a policy never did, unlike a refused claim or renewal. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "lease.h"
#include "testutil.h"

static cluster_t cl;
static ms_lease_t *lease;
static char url[64];

static void up(void)
{
    ck_assert_int_eq(cluster_start_nats_only(&cl, NULL), 0);
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", cl.nats_port);
    ms_lease_config_t lc = {
        .nats_urls = url, .owner_id = "coord-heard", .ttl_ms = 3000, .replicas = 1, .shards = 64};
    ck_assert_int_eq(ms_lease_create(&lc, NULL, NULL, &lease), MS_OK);
    for (long long end = cluster_now_ms() + 10000; !ms_lease_ready(lease); usleep(10000))
        ck_assert_msg(cluster_now_ms() < end, "the lease buckets not ready after 10 s");
}

static void down(void)
{
    ms_lease_destroy(lease);
    cluster_stop(&cl);
}

static uint64_t silent(void)
{
    return ms_lease_silent_ms(lease, (uint64_t)cluster_now_ms());
}

/* Until the store has been silent for at least ms: an answer after this is told apart. */
static void quiet_for(uint64_t ms)
{
    for (long long end = cluster_now_ms() + 5000; silent() < ms; usleep(10000))
        ck_assert_msg(cluster_now_ms() < end, "the lease store answered something unasked");
}

/* Whether the store is heard (silent under 100 ms) within 2 s. */
static int heard_within_2s(void)
{
    for (long long end = cluster_now_ms() + 2000; cluster_now_ms() < end; usleep(10000))
        if (silent() < 100)
            return 1;
    return 0;
}

START_TEST(refused_release_is_heard)
{
    quiet_for(300);
    ms_lease_release(lease, 7, 999999); /* no such revision: the compare-and-set is refused */
    ck_assert_msg(heard_within_2s(), "a refused release did not count (silent %llu ms)",
                  (unsigned long long)silent());
}
END_TEST

START_TEST(policy_put_is_heard)
{
    quiet_for(300);
    ms_lease_policy_put(lease, "heard-ns", "{\"topology\":\"mesh\"}");
    ck_assert_msg(heard_within_2s(), "a stored policy did not count (silent %llu ms)",
                  (unsigned long long)silent());
    /* Stored where a coordinator starting later reads it (its worker loads every policy). */
    ms_lease_config_t lc = {
        .nats_urls = url, .owner_id = "coord-heard-2", .ttl_ms = 3000, .replicas = 1, .shards = 64};
    ms_lease_t *later = NULL;
    ck_assert_int_eq(ms_lease_create(&lc, NULL, NULL, &later), MS_OK);
    int found = 0;
    for (long long end = cluster_now_ms() + 10000; !found; usleep(10000)) {
        ck_assert_msg(cluster_now_ms() < end, "the policy was not loaded by a new lease worker");
        for (ms_lease_result_t *r = ms_lease_take(later), *next; r; r = next) {
            next = r->next;
            if (r->kind == MS_LEASE_POLICY && !strcmp(r->key, "heard-ns")) {
                ck_assert_str_eq(r->value, "{\"topology\":\"mesh\"}");
                found = 1;
            }
            ms_lease_result_free(r);
        }
    }
    ms_lease_destroy(later);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lease_heard");
    TCase *tc = tcase_create("answers");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, up, down);
    tcase_add_test(tc, refused_release_is_heard);
    tcase_add_test(tc, policy_put_is_heard);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the lease renewal schedule (coordinator/renewal.c): the shards of a coordinator
 * renew in small batches spread over the renewal interval, never later than a third of a lease
 * after their last write was sent, so never past the two thirds they may serve. A simulation of
 * the cluster tick (cluster.c's rule: renew once the shard's next point has passed) with late
 * ticks and slow answers; no clock, no NATS. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "renewal.h"

#define SHARDS 64

START_TEST(next_is_within_a_third_and_on_the_phase)
{
    ms_renewal_t r;
    ms_renewal_init(&r, 1200, MS_CLUSTER_TICK_MS, 0, 1000007);
    ck_assert_uint_eq(r.interval_ms, 400);
    ck_assert_uint_eq(r.phases, 8);
    ck_assert_uint_eq(r.slot_ms, 50);
    for (uint32_t shard = 0; shard < SHARDS; shard++)
        for (uint64_t sent = 1000000; sent < 1003000; sent += 7) {
            uint64_t next = ms_renewal_next(&r, shard, sent);
            /* Half a tick after a tick, in the shard's phase. */
            uint64_t off =
                (next + r.interval_ms * 100 - r.origin_ms - r.tick_ms / 2) % r.interval_ms;
            if (next <= sent || next > sent + r.interval_ms ||
                off != ms_renewal_phase(&r, shard) * r.slot_ms)
                ck_abort_msg("shard %u sent at %llu: next %llu", shard, (unsigned long long)sent,
                             (unsigned long long)next);
        }
    /* A long lease: at most MS_RENEWAL_MAX_PHASES phases; a short one: one per tick. */
    ms_renewal_init(&r, 30000, MS_CLUSTER_TICK_MS, 0, 0);
    ck_assert_uint_eq(r.phases, MS_RENEWAL_MAX_PHASES);
    ms_renewal_init(&r, 300, MS_CLUSTER_TICK_MS, 0, 0);
    ck_assert_uint_eq(r.phases, 2);
    ms_renewal_init(&r, 1200, MS_CLUSTER_TICK_MS, 4, 0);
    ck_assert_uint_eq(r.phases, 4);
    ck_assert_uint_eq(r.slot_ms, 100);
    ms_renewal_init(&r, 1200, MS_CLUSTER_TICK_MS, 1, 0);
    ck_assert_uint_eq(r.phases, 1);
}
END_TEST

typedef struct {
    uint64_t sent, next, valid_until, answer_at;
    int renewing;
} sim_shard_t;

/* Every shard claimed at about the same time (as after a start), then ticks with up to
 * max_late_ms of lateness each and answers taking up to max_answer_ms. Returns the largest
 * batch from the second round on. */
static unsigned simulate(uint64_t ttl, uint64_t max_late_ms, uint64_t max_answer_ms, unsigned seed)
{
    srand(seed);
    const uint64_t origin = 5000 + (uint64_t)(rand() % 1000);
    ms_renewal_t r;
    ms_renewal_init(&r, ttl, MS_CLUSTER_TICK_MS, 0, origin);
    sim_shard_t s[SHARDS];
    for (uint32_t n = 0; n < SHARDS; n++) {
        uint64_t sent = origin + (uint64_t)(rand() % 20); /* the claims of the first tick */
        s[n] = (sim_shard_t){
            .sent = sent, .next = ms_renewal_next(&r, n, sent), .valid_until = sent + ttl * 2 / 3};
    }
    unsigned worst = 0;
    for (uint64_t m = 1; m < 2000; m++) {
        uint64_t now = origin + m * MS_CLUSTER_TICK_MS +
                       (max_late_ms ? (uint64_t)rand() % (max_late_ms + 1) : 0);
        /* Answers that came back before this tick (on_lease runs between ticks). */
        for (uint32_t n = 0; n < SHARDS; n++)
            if (s[n].renewing && s[n].answer_at <= now) {
                s[n].renewing = 0;
                s[n].valid_until = s[n].sent + ttl * 2 / 3;
                s[n].next = ms_renewal_next(&r, n, s[n].sent);
            }
        unsigned batch = 0;
        for (uint32_t n = 0; n < SHARDS; n++) {
            /* Never past the deadline: the shard would be in doubt (cluster.c). */
            if (now >= s[n].valid_until)
                ck_abort_msg("shard %u past its deadline at tick %llu", n, (unsigned long long)m);
            if (s[n].renewing || now < s[n].next)
                continue;
            /* Never later than a third of a lease (and a late tick) after the last write. */
            if (now > s[n].sent + r.interval_ms + MS_CLUSTER_TICK_MS + max_late_ms)
                ck_abort_msg("shard %u renewed %llu ms after its last write", n,
                             (unsigned long long)(now - s[n].sent));
            s[n].renewing = 1;
            s[n].sent = now;
            s[n].answer_at = now + (max_answer_ms ? (uint64_t)rand() % (max_answer_ms + 1) : 0);
            batch++;
        }
        if (now > origin + ttl && batch > worst)
            worst = batch;
    }
    return worst;
}

START_TEST(small_batches_in_time)
{
    /* The default lease, 64 shards: 8 phases of 8. Ticks up to 20 ms late, answers within a
     * tick: one phase per tick. */
    for (unsigned seed = 1; seed <= 20; seed++)
        ck_assert_uint_le(simulate(1200, 20, 40, seed), SHARDS / 8);
    /* The harness's lease (3000 ms): phases every 125 ms. */
    for (unsigned seed = 1; seed <= 20; seed++)
        ck_assert_uint_le(simulate(3000, 20, 40, seed), SHARDS / 8);
    /* Answers slower than a tick (up to 300 ms): the shards still renew in time, and a renewal
     * still out does not pile its shard onto a later phase. */
    for (unsigned seed = 1; seed <= 20; seed++)
        ck_assert_uint_le(simulate(1200, 20, 300, seed), SHARDS / 8);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("renewal");
    TCase *tc = tcase_create("schedule");
    tcase_add_test(tc, next_is_within_a_third_and_on_the_phase);
    tcase_add_test(tc, small_batches_in_time);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

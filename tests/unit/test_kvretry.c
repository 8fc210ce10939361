/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the lease store's retry slots (coordinator/kvretry.c): while it answers, every
 * tick may try; once a try went unanswered, tries go in slots 50 ms apart doubling to 1 s with
 * +-25% jitter; an answer, or the lease connection reconnecting, ends the wait at once. A
 * simulation of cluster.c's tick (50 ms: try when open, use the slot) over a 10 s outage; no
 * clock, no NATS. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "kvretry.h"
#include "renewal.h"

START_TEST(answering_always_open)
{
    ms_kvretry_t r = {0};
    for (uint64_t t = 1000; t < 2000; t += MS_CLUSTER_TICK_MS) {
        ck_assert(ms_kvretry_open(&r, t));
        ms_kvretry_used(&r, t, (uint32_t)rand()); /* not silent: no slot taken */
        ms_kvretry_result(&r, 1, t);
    }
    ck_assert_uint_eq(r.n_slots_used, 0);
}
END_TEST

/* One tick's tries (a claim, the renewals due) per open slot, every try unanswered, for 10 s. */
static unsigned outage_tries(ms_kvretry_t *r, uint64_t t0, uint64_t ms, uint32_t seed)
{
    srand(seed);
    unsigned tries = 0;
    uint64_t last = 0;
    for (uint64_t t = t0; t < t0 + ms; t += MS_CLUSTER_TICK_MS) {
        if (!ms_kvretry_open(r, t))
            continue;
        if (r->silent && last) {
            /* Within +-25% of the interval, which grows to 1 s at most (and a tick late). */
            ck_assert_uint_le(t - last, MS_KVRETRY_MAX_MS * 5 / 4 + MS_CLUSTER_TICK_MS);
        }
        tries++;
        last = t;
        ms_kvretry_used(r, t, (uint32_t)rand());
        ms_kvretry_result(r, 0, t); /* the link is down: failed at once */
    }
    return tries;
}

START_TEST(silent_backs_off_to_a_second)
{
    for (uint32_t seed = 1; seed <= 20; seed++) {
        ms_kvretry_t r = {0};
        unsigned tries = outage_tries(&r, 100000, 10000, seed);
        /* 50, 100, 200, 400, 800, then ~1 s: 13-17 tries in 10 s (every tick: 200). */
        ck_assert_msg(tries >= 10 && tries <= 20, "seed %u: %u tries", seed, tries);
        ck_assert(r.silent);
        ck_assert_uint_eq(r.interval_ms, MS_KVRETRY_MAX_MS);
    }
}
END_TEST

START_TEST(answer_ends_it_at_once)
{
    ms_kvretry_t r = {0};
    outage_tries(&r, 100000, 10000, 7);
    ck_assert(!ms_kvretry_open(&r, r.next_ms - 1));
    ms_kvretry_result(&r, 1, r.next_ms - 400); /* a late answer (a refusal counts too) */
    ck_assert(ms_kvretry_open(&r, r.next_ms - 399));
    /* Silent again: starts over from the base. */
    uint64_t t = r.next_ms;
    ms_kvretry_result(&r, 0, t);
    ck_assert(!ms_kvretry_open(&r, t + MS_KVRETRY_BASE_MS - 1));
    ck_assert(ms_kvretry_open(&r, t + MS_KVRETRY_BASE_MS));
}
END_TEST

START_TEST(reconnect_opens_a_slot)
{
    ms_kvretry_t r = {0};
    outage_tries(&r, 100000, 10000, 3);
    uint64_t t = r.next_ms - 900;
    ck_assert(!ms_kvretry_open(&r, t));
    ms_kvretry_reconnects(&r, 0, t); /* not moved: nothing */
    ck_assert(!ms_kvretry_open(&r, t));
    ms_kvretry_reconnects(&r, 1, t);
    ck_assert(ms_kvretry_open(&r, t));
    ms_kvretry_used(&r, t, 0);
    ck_assert_uint_le(r.next_ms - t, MS_KVRETRY_BASE_MS); /* back at the base */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kvretry");
    TCase *tc = tcase_create("slots");
    tcase_add_test(tc, answering_always_open);
    tcase_add_test(tc, silent_backs_off_to_a_second);
    tcase_add_test(tc, answer_ends_it_at_once);
    tcase_add_test(tc, reconnect_opens_a_slot);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

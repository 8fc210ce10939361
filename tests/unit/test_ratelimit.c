/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the token bucket: burst, refill, cost above burst, long idle, no drift. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "ratelimit.h"

#define SEC 1000000ull

START_TEST(burst_then_refused)
{
    ms_ratelimit_t b;
    ck_assert_int_eq(ms_ratelimit_init(&b, 10, 5, 1000), MS_OK);
    for (int i = 0; i < 5; i++)
        ck_assert(ms_ratelimit_take(&b, 1, 1000));
    ck_assert(!ms_ratelimit_take(&b, 1, 1000));
    /* a refused take costs nothing: after 100 ms exactly one token is back */
    ck_assert(!ms_ratelimit_take(&b, 1, 1000 + 99999));
    ck_assert(ms_ratelimit_take(&b, 1, 1000 + 100000));
    ck_assert(!ms_ratelimit_take(&b, 1, 1000 + 100000));
}
END_TEST

START_TEST(refill_rate_and_cap)
{
    ms_ratelimit_t b;
    uint64_t t = 5 * SEC;
    ck_assert_int_eq(ms_ratelimit_init(&b, 100, 10, t), MS_OK);
    ck_assert(ms_ratelimit_take(&b, 10, t));
    t += SEC / 20; /* 5 tokens */
    ck_assert(!ms_ratelimit_take(&b, 6, t));
    ck_assert(ms_ratelimit_take(&b, 5, t));
    /* an hour idle refills to burst, never beyond */
    t += 3600 * SEC;
    ck_assert(ms_ratelimit_take(&b, 10, t));
    ck_assert(!ms_ratelimit_take(&b, 1, t));
}
END_TEST

START_TEST(cost_above_burst_never_allowed)
{
    ms_ratelimit_t b;
    ck_assert_int_eq(ms_ratelimit_init(&b, 1000, 64, 0), MS_OK);
    ck_assert(!ms_ratelimit_take(&b, 65, 0));
    ck_assert(!ms_ratelimit_take(&b, 65, 1000 * SEC));
    ck_assert(ms_ratelimit_take(&b, 64, 1000 * SEC));
    ck_assert(ms_ratelimit_take(&b, 0, 1000 * SEC));
}
END_TEST

START_TEST(fractional_refill_no_drift)
{
    /* 3 tokens/s polled every 7 µs for 10 s: every micro-token is accounted for. */
    ms_ratelimit_t b;
    uint64_t t = 0, taken = 0;
    ck_assert_int_eq(ms_ratelimit_init(&b, 3, 2, t), MS_OK);
    ck_assert(ms_ratelimit_take(&b, 2, t)); /* drain; burst 2 so the cap never clips */
    for (t = 7; t <= 10 * SEC; t += 7)
        taken += ms_ratelimit_take(&b, 1, t);
    /* the last poll is at 9999997 µs: floor(3 * 9999997 / 1e6) = 29 */
    ck_assert_uint_eq(taken, 29);
    ck_assert(ms_ratelimit_take(&b, 1, 10 * SEC + 1000000));
}
END_TEST

START_TEST(long_idle_and_huge_rates_do_not_overflow)
{
    ms_ratelimit_t b;
    uint64_t t = 1;
    ck_assert_int_eq(ms_ratelimit_init(&b, UINT64_MAX / 2, MS_RATELIMIT_BURST_MAX, t), MS_OK);
    ck_assert(ms_ratelimit_take(&b, MS_RATELIMIT_BURST_MAX, t));
    t += 365ull * 86400 * SEC;
    ck_assert(ms_ratelimit_take(&b, MS_RATELIMIT_BURST_MAX, t));
    ck_assert(!ms_ratelimit_take(&b, 1, t));

    /* a byte budget of 1 MB/s idle for 100 days */
    ck_assert_int_eq(ms_ratelimit_init(&b, 1000000, 4000000, 0), MS_OK);
    ck_assert(ms_ratelimit_take(&b, 4000000, 0));
    ck_assert(ms_ratelimit_take(&b, 4000000, 100ull * 86400 * SEC));
    ck_assert(!ms_ratelimit_take(&b, 1, 100ull * 86400 * SEC));
    ck_assert(ms_ratelimit_take(&b, 1, 100ull * 86400 * SEC + 1));
}
END_TEST

START_TEST(clock_going_back_is_no_time)
{
    ms_ratelimit_t b;
    ck_assert_int_eq(ms_ratelimit_init(&b, 1, 1, 10 * SEC), MS_OK);
    ck_assert(ms_ratelimit_take(&b, 1, 10 * SEC));
    ck_assert(!ms_ratelimit_take(&b, 1, 5 * SEC));
    ck_assert(!ms_ratelimit_take(&b, 1, 10 * SEC + SEC - 1));
    ck_assert(ms_ratelimit_take(&b, 1, 11 * SEC));
}
END_TEST

START_TEST(init_validation_and_unlimited)
{
    ms_ratelimit_t b;
    ck_assert_int_eq(ms_ratelimit_init(NULL, 1, 1, 0), MS_ERR_INVAL);
    ck_assert_int_eq(ms_ratelimit_init(&b, 1, 0, 0), MS_ERR_INVAL);
    ck_assert_int_eq(ms_ratelimit_init(&b, 1, MS_RATELIMIT_BURST_MAX + 1, 0), MS_ERR_INVAL);
    ck_assert_int_eq(ms_ratelimit_init(&b, 0, 0, 0), MS_OK);
    for (int i = 0; i < 1000; i++)
        ck_assert(ms_ratelimit_take(&b, UINT64_MAX, 0));
}
END_TEST

/* The gateway's pair (messages, bytes) answers exactly as two separate states
 * spent at the same times would, through refills, refusals and a clock that
 * goes back. */
START_TEST(pair_is_two_buckets_with_one_clock)
{
    ms_ratelimit_rule_t rm, rb;
    ck_assert_int_eq(ms_ratelimit_rule(&rm, 200, 400), MS_OK);
    ck_assert_int_eq(ms_ratelimit_rule(&rb, 1 << 20, 2 << 20), MS_OK);
    ms_ratelimit_state_t m, b;
    ms_ratelimit_pair_t p;
    uint64_t now = 1000000;
    ms_ratelimit_start(&m, &rm, now);
    ms_ratelimit_start(&b, &rb, now);
    ms_ratelimit_pair_start(&p, &rm, &rb, now);
    uint64_t st = 88172645463325252ULL;
    unsigned refused = 0;
    for (int i = 0; i < 200000; i++) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        uint64_t step = st % 16 == 0 ? 0 : st % 5000; /* µs; sometimes none */
        if (st % 997 == 0 && now > 3000)
            now -= 3000; /* back: no time passes */
        else
            now += step;
        uint64_t len = (st >> 20) % 70000;
        unsigned want = (ms_ratelimit_spend(&m, &rm, 1, now) ? 0u : 1u) |
                        (ms_ratelimit_spend(&b, &rb, len, now) ? 0u : 2u);
        ck_assert_uint_eq(ms_ratelimit_pair_spend(&p, &rm, 1, &rb, len, now), want);
        ck_assert_uint_eq(p.level_u[0], m.level_u);
        ck_assert_uint_eq(p.level_u[1], b.level_u);
        refused |= want;
    }
    ck_assert_uint_eq(refused, 3u); /* both buckets ran dry at times */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, burst_then_refused);
    tcase_add_test(tc, refill_rate_and_cap);
    tcase_add_test(tc, cost_above_burst_never_allowed);
    tcase_add_test(tc, fractional_refill_no_drift);
    tcase_add_test(tc, long_idle_and_huge_rates_do_not_overflow);
    tcase_add_test(tc, clock_going_back_is_no_time);
    tcase_add_test(tc, init_validation_and_unlimited);
    tcase_add_test(tc, pair_is_two_buckets_with_one_clock);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

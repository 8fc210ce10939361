/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the owner's re-fetch bookkeeping: when a peer's unreceipted stored emits are
 * fetched again, the backoff, the last try, receipts and peers that left. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "redeliver.h"

typedef struct {
    int calls;
    int here; /* what refetch answers: the peer is a member */
    char last[64];
} probe_t;

static int refetch(const char *ns, const char *peer, void *ud)
{
    probe_t *p = ud;
    p->calls++;
    snprintf(p->last, sizeof(p->last), "%s/%s", ns, peer);
    return p->here;
}

/* Ticks every 100 ms from `from` to `to` (inclusive), as the coordinator's loop would. */
static void run(ms_redeliver_t *r, uint64_t from, uint64_t to, probe_t *p)
{
    for (uint64_t t = from; t <= to; t += 100)
        ms_redeliver_tick(r, t, refetch, p);
}

START_TEST(receipted_in_time_is_never_fetched)
{
    ms_redeliver_t r;
    ms_redeliver_init(&r);
    probe_t p = {.here = 1};
    ms_redeliver_sent(&r, "ns", "zoe", 7, 1000);
    ms_redeliver_sent(&r, "ns", "zoe", 8, 1000);
    run(&r, 1000, 3900, &p);
    ms_redeliver_receipted(&r, 7);
    ms_redeliver_receipted(&r, 8);
    ms_redeliver_receipted(&r, 99); /* another owner's: ignored */
    run(&r, 4000, 120000, &p);
    ck_assert_int_eq(p.calls, 0);
    ck_assert_uint_eq(r.n_seqs, 0);
    ms_redeliver_cleanup(&r);
}
END_TEST

START_TEST(missing_receipt_fetched_with_backoff_then_given_up)
{
    ms_redeliver_t r;
    ms_redeliver_init(&r);
    probe_t p = {.here = 1};
    ms_redeliver_sent(&r, "ns", "zoe", 7, 0);
    run(&r, 0, 2900, &p);
    ck_assert_int_eq(p.calls, 0); /* not before 3 s */
    run(&r, 3000, 3500, &p);
    ck_assert_int_eq(p.calls, 1);
    ck_assert_str_eq(p.last, "ns/zoe");
    /* The re-fetch hands it out again: the backoff goes on, not from zero. */
    ms_redeliver_sent(&r, "ns", "zoe", 7, 3600);
    run(&r, 3600, 8900, &p);
    ck_assert_int_eq(p.calls, 1); /* next after 6 s more */
    run(&r, 9000, 9500, &p);
    ck_assert_int_eq(p.calls, 2);
    /* 12, 24, 48, then 60 s steps: ten tries in all, then it waits for a session. */
    run(&r, 9600, 1000000, &p);
    ck_assert_int_eq(p.calls, (int)MS_REDELIVER_MAX_TRIES);
    ck_assert_uint_eq(r.n_given_up, 1);
    ck_assert_uint_eq(r.n_seqs, 0);
    ms_redeliver_cleanup(&r);
}
END_TEST

START_TEST(one_fetch_per_peer_and_left_peers_forgotten)
{
    ms_redeliver_t r;
    ms_redeliver_init(&r);
    probe_t p = {.here = 0};
    for (uint64_t s = 1; s <= 5; s++)
        ms_redeliver_sent(&r, "ns", "yan", s, 0);
    run(&r, 0, 3500, &p);
    ck_assert_int_eq(p.calls, 1);   /* one fetch covers all of a peer's */
    ck_assert_uint_eq(r.n_seqs, 0); /* not a member: left to its next join */
    run(&r, 3600, 200000, &p);
    ck_assert_int_eq(p.calls, 1);
    ms_redeliver_cleanup(&r);
}
END_TEST

START_TEST(a_fetch_of_its_own_restarts_the_wait)
{
    ms_redeliver_t r;
    ms_redeliver_init(&r);
    probe_t p = {.here = 1};
    ms_redeliver_sent(&r, "ns", "zoe", 7, 0);
    ms_redeliver_fetched(&r, "ns", "zoe", 2500); /* zoe resumed: her join fetched */
    run(&r, 0, 5400, &p);
    ck_assert_int_eq(p.calls, 0);
    run(&r, 5500, 6000, &p);
    ck_assert_int_eq(p.calls, 1);
    ms_redeliver_fetched(&r, "ns", "nobody", 6000); /* no entry: nothing happens */
    ms_redeliver_cleanup(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redeliver");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, receipted_in_time_is_never_fetched);
    tcase_add_test(tc, missing_receipt_fetched_with_backoff_then_given_up);
    tcase_add_test(tc, one_fetch_per_peer_and_left_peers_forgotten);
    tcase_add_test(tc, a_fetch_of_its_own_restarts_the_wait);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

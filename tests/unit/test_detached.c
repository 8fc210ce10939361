/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the queue of detached peers (coordinator/detached.c): random pushes (times
 * never decreasing, bursts of one time as a gateway loss makes) and pops of what is due, against
 * a brute-force array; the queue must hand back exactly the entries due, oldest first, with
 * their names, across its growth and its slides. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detached.h"

#define NOPS 20000
#define MAXQ 4096

typedef struct {
    uint64_t at;
    char ns[16], id[24];
} model_t;

static model_t model[NOPS];

START_TEST(random_against_model)
{
    ms_detq_t q = {0};
    size_t mhead = 0, mtail = 0; /* model[mhead..mtail): queued, oldest first */
    uint64_t now = 100000;
    srand(7);
    for (int op = 0; op < NOPS; op++) {
        int r = rand() % 10;
        if (r < 6 && mtail - mhead < MAXQ) {
            /* A burst at one time (a gateway lost), or the clock moves on. */
            if (rand() % 4 == 0)
                now += (uint64_t)(rand() % 500);
            model_t *e = &model[mtail++];
            e->at = now;
            snprintf(e->ns, sizeof(e->ns), "ns%d", rand() % 50);
            snprintf(e->id, sizeof(e->id), "peer-%d", op);
            ck_assert_int_eq(ms_detq_push(&q, e->at, e->ns, e->id), 0);
        } else {
            /* What is due until some time around the oldest. */
            uint64_t until = now - (uint64_t)(rand() % 2000);
            ms_detached_t *d;
            while ((d = ms_detq_pop_due(&q, until)) != NULL) {
                ck_assert_uint_lt(mhead, mtail);
                const model_t *e = &model[mhead++];
                ck_assert_uint_le(e->at, until);
                ck_assert_uint_eq(d->at_ms, e->at);
                ck_assert_str_eq(d->ns, e->ns);
                ck_assert_str_eq(d->id, e->id);
                free(d);
            }
            /* Nothing due is left behind. */
            ck_assert(mhead == mtail || model[mhead].at > until);
        }
        ck_assert_uint_eq(ms_detq_len(&q), mtail - mhead);
        if (ms_detq_len(&q)) {
            ck_assert_uint_eq(ms_detq_at(&q, 0)->at_ms, model[mhead].at);
            size_t last = ms_detq_len(&q) - 1;
            ck_assert_str_eq(ms_detq_at(&q, last)->id, model[mtail - 1].id);
        }
    }
    ms_detq_cleanup(&q); /* frees what is left (ASan: no leak) */
    ck_assert_uint_eq(ms_detq_len(&q), 0);
    ck_assert_ptr_null(ms_detq_pop_due(&q, UINT64_MAX));
}
END_TEST

START_TEST(empty_and_not_due)
{
    ms_detq_t q = {0};
    ck_assert_ptr_null(ms_detq_pop_due(&q, UINT64_MAX));
    ck_assert_int_eq(ms_detq_push(&q, 100, "ns", "a"), 0);
    ck_assert_ptr_null(ms_detq_pop_due(&q, 99));
    ms_detached_t *d = ms_detq_pop_due(&q, 100);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d->id, "a");
    ck_assert_str_eq(d->ns, "ns");
    free(d);
    ck_assert_uint_eq(ms_detq_len(&q), 0);
    ms_detq_cleanup(&q);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("detached");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, empty_and_not_due);
    tcase_add_test(tc, random_against_model);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

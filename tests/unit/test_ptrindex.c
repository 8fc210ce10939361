/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the open-addressing index (common/ptrindex.c): against a brute-force list under
 * churn, with consecutive keys (the gateway's session ids), random keys, and a run of keys that
 * share their home slot and wrap around the end of the table. */
#include <check.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "ptrindex.h"

#define NR 5000

typedef struct {
    uint64_t key;
} rec_t;

static rec_t recs[NR];
static int indexed[NR];

static uint64_t rec_hash(const void *r)
{
    return ((const rec_t *)r)->key;
}

static int rec_is(const void *r, const void *key)
{
    return ((const rec_t *)r)->key == *(const uint64_t *)key;
}

static rec_t *find(const ms_pidx_t *x, uint64_t key)
{
    return ms_pidx_find(x, key, rec_is, &key);
}

/* xorshift64: the churn is the same on every run. */
static uint64_t rnd(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return *st;
}

/* Every record is found under its key exactly when indexed, and iteration visits each indexed
 * one once. */
static void check_against_list(const ms_pidx_t *x)
{
    size_t n = 0;
    for (size_t i = 0; i < NR; i++) {
        rec_t *f = find(x, recs[i].key);
        if (indexed[i])
            ck_assert_ptr_eq(f, &recs[i]);
        else
            ck_assert_ptr_null(f);
        n += (size_t)indexed[i];
    }
    ck_assert_uint_eq(x->n, n);
    static int seen[NR];
    for (size_t i = 0; i < NR; i++)
        seen[i] = 0;
    size_t visited = 0;
    rec_t *r;
    MS_PIDX_FOREACH(x, i, r)
    {
        size_t k = (size_t)(r - recs);
        ck_assert(k < NR && indexed[k] && !seen[k]);
        seen[k] = 1;
        visited++;
    }
    ck_assert_uint_eq(visited, n);
}

static void churn(uint64_t seed)
{
    ms_pidx_t x;
    ms_pidx_init(&x, rec_hash);
    for (size_t i = 0; i < NR; i++)
        indexed[i] = 0;
    uint64_t st = seed;
    /* Grow to all, churn at random, empty (the table shrinks), grow again. */
    for (size_t i = 0; i < NR; i++) {
        ck_assert_int_eq(ms_pidx_add(&x, &recs[i]), 0);
        indexed[i] = 1;
    }
    check_against_list(&x);
    ck_assert_uint_le((uint64_t)x.n * 4, (uint64_t)x.cap * 3);
    for (int round = 0; round < 20000; round++) {
        size_t i = (size_t)(rnd(&st) % NR);
        if (indexed[i])
            ms_pidx_remove(&x, &recs[i]);
        else
            ck_assert_int_eq(ms_pidx_add(&x, &recs[i]), 0);
        indexed[i] = !indexed[i];
        if (round % 2500 == 0)
            check_against_list(&x);
    }
    check_against_list(&x);
    uint32_t big = x.cap;
    for (size_t i = 0; i < NR; i++)
        if (indexed[i]) {
            ms_pidx_remove(&x, &recs[i]);
            indexed[i] = 0;
            if (i % 500 == 0)
                check_against_list(&x);
        }
    check_against_list(&x);
    ck_assert_uint_lt(x.cap, big); /* an emptied table gives its slots back */
    for (size_t i = 0; i < NR; i += 3) {
        ck_assert_int_eq(ms_pidx_add(&x, &recs[i]), 0);
        indexed[i] = 1;
    }
    check_against_list(&x);
    ms_pidx_cleanup(&x);
    ck_assert_ptr_null(find(&x, recs[0].key));
}

START_TEST(consecutive_keys)
{
    for (size_t i = 0; i < NR; i++)
        recs[i].key = 1 + i; /* as the gateway numbers its sessions */
    churn(0x9e3779b97f4a7c15ULL);
}
END_TEST

START_TEST(random_keys)
{
    uint64_t st = 42;
    for (size_t i = 0; i < NR; i++)
        recs[i].key = rnd(&st);
    churn(7);
}
END_TEST

/* The key whose Fibonacci product is h: its home slot is h's top bits. */
static uint64_t key_with_product(uint64_t h)
{
    const uint64_t phi = 0x9e3779b97f4a7c15ULL;
    uint64_t inv = phi; /* Newton: the inverse of phi modulo 2^64 */
    for (int i = 0; i < 6; i++)
        inv *= 2 - phi * inv;
    return h * inv;
}

/* One key in 16 has its home in the last slot at every table size (the product's top bits are
 * all set): their run wraps around the end of the table and crosses the other keys' homes, so
 * removal must keep every later record of a run reachable (the backward shift across the
 * wrap-around). */
START_TEST(colliding_keys)
{
    uint64_t st = 99;
    for (size_t i = 0; i < NR; i++)
        recs[i].key = i % 16 == 0 ? key_with_product(~(uint64_t)0 << 40 | (uint64_t)i) : rnd(&st);
    ms_pidx_t x;
    ms_pidx_init(&x, rec_hash);
    ck_assert_int_eq(ms_pidx_add(&x, &recs[0]), 0);
    ck_assert_ptr_eq(x.slot[x.cap - 1], &recs[0]); /* its home is the last slot */
    ms_pidx_cleanup(&x);
    churn(12345);
}
END_TEST

START_TEST(empty_index)
{
    ms_pidx_t x;
    ms_pidx_init(&x, rec_hash);
    ck_assert_ptr_null(find(&x, 1));
    rec_t r = {.key = 1};
    ms_pidx_remove(&x, &r); /* not indexed: nothing happens */
    rec_t *it;
    size_t n = 0;
    MS_PIDX_FOREACH(&x, i, it)
    n++;
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(ms_pidx_add(&x, &r), 0);
    ck_assert_ptr_eq(find(&x, 1), &r);
    ck_assert_ptr_null(find(&x, 2));
    ms_pidx_remove(&x, &r);
    ck_assert_ptr_null(find(&x, 1));
    ms_pidx_cleanup(&x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ptrindex");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, empty_index);
    tcase_add_test(tc, consecutive_keys);
    tcase_add_test(tc, random_keys);
    tcase_add_test(tc, colliding_keys);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

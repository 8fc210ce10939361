/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the gateway's small string set (gateway/strset.c): one entry inside the struct
 * or by its copy, more in an array; tags kept through every change of form; against a
 * brute-force list under churn. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strset.h"

static int count_has(const ms_strset_t *s, const char *str)
{
    int k = 0;
    for (uint32_t i = 0; i < s->n; i++)
        k += !strcmp(ms_strset_at(s, i), str);
    return k;
}

START_TEST(one_entry_inline_or_copied)
{
    ms_strset_t s = {0};
    ck_assert_int_eq(ms_strset_add(&s, "p12345678"), 0); /* MS_STRSET_SMALL_MAX characters */
    ck_assert_uint_eq(s.n, 1);
    /* inline: the entry lives inside the struct */
    const char *e = ms_strset_at(&s, 0);
    ck_assert(e >= (const char *)&s && e < (const char *)(&s + 1));
    ck_assert_str_eq(e, "p12345678");
    ck_assert_int_eq(ms_strset_add(&s, "p12345678"), 0); /* already there */
    ck_assert_uint_eq(s.n, 1);
    *ms_strset_tag(&s, "p12345678") = 7;
    ck_assert_uint_eq(ms_strset_tag_at(&s, 0), 7);
    ck_assert_int_eq(ms_strset_remove(&s, "p12345678"), 1);
    ck_assert_uint_eq(s.n, 0);
    ck_assert_int_eq(ms_strset_has(&s, "p12345678"), 0);

    const char *uuid = "0b6c1f0e-3f4e-4a52-9a3e-6d1f6b1c2a77";
    ck_assert_int_eq(ms_strset_add(&s, uuid), 0);
    e = ms_strset_at(&s, 0);
    ck_assert(e < (const char *)&s || e >= (const char *)(&s + 1));
    ck_assert_str_eq(e, uuid);
    ck_assert_int_eq(ms_strset_has(&s, uuid), 1);
    ck_assert_ptr_null(ms_strset_tag(&s, "p1"));
    ms_strset_clear(&s);
    ck_assert_uint_eq(s.n, 0);
    ms_strset_clear(&s); /* twice is fine */
}
END_TEST

/* Tags survive the moves between forms: inline -> array -> inline, copy -> array -> copy. */
START_TEST(tags_survive_changes_of_form)
{
    const char *shorts[] = {"a", "bb"},
               *longs[] = {"a-long-peer-identifier", "another-long-one-too"};
    const char **sets[] = {shorts, longs};
    for (int k = 0; k < 2; k++) {
        const char **w = sets[k];
        ms_strset_t s = {0};
        ck_assert_int_eq(ms_strset_add(&s, w[0]), 0);
        *ms_strset_tag(&s, w[0]) = 3;
        ck_assert_int_eq(ms_strset_add(&s, w[1]), 0);
        ck_assert_uint_eq(s.n, 2);
        ck_assert_uint_eq(*ms_strset_tag(&s, w[0]), 3);
        ck_assert_uint_eq(*ms_strset_tag(&s, w[1]), 0);
        *ms_strset_tag(&s, w[1]) = 9;
        ck_assert_int_eq(ms_strset_remove(&s, w[0]), 1);
        ck_assert_uint_eq(s.n, 1);
        ck_assert_str_eq(ms_strset_at(&s, 0), w[1]);
        ck_assert_uint_eq(ms_strset_tag_at(&s, 0), 9);
        ck_assert_int_eq(ms_strset_remove(&s, w[0]), 0);
        ck_assert_int_eq(ms_strset_add(&s, w[0]), 0);
        ck_assert_uint_eq(*ms_strset_tag(&s, w[1]), 9);
        ms_strset_clear(&s);
    }
}
END_TEST

START_TEST(list_for_a_report)
{
    ms_strset_t s = {0};
    ck_assert_ptr_null(ms_strset_list(&s));
    char name[32];
    for (int n = 1; n <= 5; n++) {
        snprintf(name, sizeof(name), n % 2 ? "p%d" : "peer-with-a-long-name-%d", n);
        ck_assert_int_eq(ms_strset_add(&s, name), 0);
        char **v = ms_strset_list(&s);
        ck_assert_ptr_nonnull(v);
        for (uint32_t i = 0; i < s.n; i++)
            ck_assert_str_eq(v[i], ms_strset_at(&s, i));
        free(v);
    }
    ms_strset_clear(&s);
}
END_TEST

/* xorshift64: the churn is the same on every run. */
static uint64_t rnd(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return *st;
}

START_TEST(churn_against_a_list)
{
    enum { NAMES = 12 };
    char names[NAMES][40];
    for (int i = 0; i < NAMES; i++)
        snprintf(names[i], sizeof(names[i]), i % 3 ? "p%d" : "peer-%d-with-a-longer-name", i);
    int in[NAMES] = {0};
    uint8_t tag[NAMES] = {0};
    ms_strset_t s = {0};
    uint64_t st = 0x9e3779b97f4a7c15ULL;
    for (int step = 0; step < 20000; step++) {
        int i = (int)(rnd(&st) % NAMES), op = (int)(rnd(&st) % 3);
        if (op == 0) {
            ck_assert_int_eq(ms_strset_add(&s, names[i]), 0);
            if (!in[i])
                tag[i] = 0;
            in[i] = 1;
        } else if (op == 1) {
            ck_assert_int_eq(ms_strset_remove(&s, names[i]), in[i]);
            in[i] = 0;
        } else if (in[i]) {
            tag[i] = (uint8_t)(rnd(&st) | 1);
            *ms_strset_tag(&s, names[i]) = tag[i];
        }
        uint32_t n = 0;
        for (int j = 0; j < NAMES; j++) {
            n += (uint32_t)in[j];
            ck_assert_int_eq(ms_strset_has(&s, names[j]), in[j]);
            ck_assert_int_eq(count_has(&s, names[j]), in[j]);
            if (in[j])
                ck_assert_uint_eq(*ms_strset_tag(&s, names[j]), tag[j]);
        }
        ck_assert_uint_eq(s.n, n);
    }
    ms_strset_clear(&s);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("strset");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, one_entry_inline_or_copied);
    tcase_add_test(tc, tags_survive_changes_of_form);
    tcase_add_test(tc, list_for_a_report);
    tcase_add_test(tc, churn_against_a_list);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

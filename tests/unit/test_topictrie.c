/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the topic index (coordinator/topictrie.c) against a brute-force matcher: random
 * patterns with '*' and '>' from few tokens (so that they overlap and repeat per owner), random
 * topics, subscribes, unsubscribes (also of patterns never valid) and whole owners leaving; each
 * match must report exactly the owners one of whose patterns matches, once each. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topicref.h"
#include "topictrie.h"

#define NO 24   /* owners */
#define NP 4096 /* (owner, pattern) pairs the brute force keeps */

static char owners[NO]; /* their addresses are the owners */

static struct {
    int owner;
    char pat[64];
} bf[NP];
static int n_bf;

static uint64_t st = 0x9e3779b97f4a7c15ULL;
static uint32_t rnd(uint32_t n)
{
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    return (uint32_t)(st % n);
}

/* 1 to 4 tokens; with wildcards '*' anywhere and '>' last. */
static void random_pattern(char *out, int wildcards)
{
    static const char *lit[] = {"a", "b", "c", "dd"};
    int n = 1 + (int)rnd(4);
    out[0] = 0;
    for (int i = 0; i < n; i++) {
        const char *tok = lit[rnd(4)];
        if (wildcards && rnd(4) == 0)
            tok = "*";
        if (wildcards && i == n - 1 && rnd(5) == 0)
            tok = ">";
        if (i)
            strcat(out, ".");
        strcat(out, tok);
    }
}

static int bf_find(int owner, const char *pat)
{
    for (int i = 0; i < n_bf; i++)
        if (bf[i].owner == owner && !strcmp(bf[i].pat, pat))
            return i;
    return -1;
}

static int reported[NO];

static void on_match(const void *owner, void *arg)
{
    (void)arg;
    int k = (int)((const char *)owner - owners);
    ck_assert(k >= 0 && k < NO);
    reported[k]++;
}

static void check_match(ms_ttrie_t *t, const char *topic)
{
    int want[NO] = {0}, n_want = 0;
    for (int i = 0; i < n_bf; i++)
        if (topicref_match(bf[i].pat, topic) && !want[bf[i].owner]) {
            want[bf[i].owner] = 1;
            n_want++;
        }
    memset(reported, 0, sizeof(reported));
    size_t n = ms_ttrie_match(t, topic, on_match, NULL);
    ck_assert_uint_eq(n, (size_t)n_want);
    for (int k = 0; k < NO; k++)
        ck_assert_msg(reported[k] == want[k], "topic %s owner %d: reported %d times, wanted %d",
                      topic, k, reported[k], want[k]);
}

static void check_counts(const ms_ttrie_t *t)
{
    ck_assert_uint_eq(t->n, (size_t)n_bf);
    for (int k = 0; k < NO; k++) {
        size_t n = 0;
        for (int i = 0; i < n_bf; i++)
            n += bf[i].owner == k;
        ck_assert_uint_eq(ms_ttrie_owner_count(t, &owners[k]), n);
    }
}

START_TEST(against_brute_force)
{
    ms_ttrie_t t;
    ms_ttrie_init(&t);
    char pat[64];
    for (int step = 0; step < 20000; step++) {
        int op = (int)rnd(100), k = (int)rnd(NO);
        if (op < 45) {
            random_pattern(pat, 1);
            ck_assert(ms_ttrie_valid(pat, 1));
            int had = bf_find(k, pat) >= 0;
            ck_assert_int_eq(ms_ttrie_has(&t, &owners[k], pat), had);
            if (!had && n_bf == NP)
                continue;
            ck_assert_int_eq(ms_ttrie_add(&t, &owners[k], pat), !had);
            if (!had) {
                bf[n_bf].owner = k;
                strcpy(bf[n_bf++].pat, pat);
            }
        } else if (op < 70) {
            /* Mostly one it has; else any, also never valid ones. */
            int i = -1;
            for (int j = 0; j < n_bf && rnd(3); j++)
                if (bf[j].owner == k)
                    i = j;
            if (i >= 0)
                strcpy(pat, bf[i].pat);
            else if (rnd(4) == 0)
                strcpy(pat, (const char *[]){"a..b", "a.>.b", ">.a", "", "a*", "*.", "."}[rnd(7)]);
            else
                random_pattern(pat, 1);
            i = bf_find(k, pat);
            ck_assert_int_eq(ms_ttrie_remove(&t, &owners[k], pat), i >= 0);
            if (i >= 0)
                bf[i] = bf[--n_bf];
        } else if (op < 73) {
            size_t n = 0;
            for (int i = 0; i < n_bf;)
                if (bf[i].owner == k) {
                    bf[i] = bf[--n_bf];
                    n++;
                } else {
                    i++;
                }
            ck_assert_uint_eq(ms_ttrie_remove_owner(&t, &owners[k]), n);
        } else {
            /* Topics: valid ones, and what the old matcher also took (an empty token). */
            random_pattern(pat, 0);
            if (rnd(20) == 0)
                strcpy(pat, (const char *[]){"", "a..b", "*", ">", "a.>"}[rnd(5)]);
            check_match(&t, pat);
        }
        if (step % 500 == 0)
            check_counts(&t);
    }
    check_counts(&t);
    /* Everything gone by leaves: no node, owner or subscription left behind. */
    for (int k = 0; k < NO; k++)
        ms_ttrie_remove_owner(&t, &owners[k]);
    ck_assert_uint_eq(t.n, 0);
    ck_assert_uint_eq(t.lits.n + t.subs.n + t.owners.n, 0);
    ms_ttrie_cleanup(&t);
}
END_TEST

/* Every owner leaving empties every table; cleanup frees a full index (ASan: no leak). */
START_TEST(leaves_empty_it)
{
    ms_ttrie_t t;
    ms_ttrie_init(&t);
    char pat[64];
    for (int i = 0; i < 3000; i++) {
        random_pattern(pat, 1);
        ck_assert_int_ge(ms_ttrie_add(&t, &owners[rnd(NO)], pat), 0);
    }
    ck_assert_uint_gt(t.lits.n, 0);
    size_t n = t.n;
    for (int k = 0; k < NO; k++)
        n -= ms_ttrie_remove_owner(&t, &owners[k]);
    ck_assert_uint_eq(n, 0);
    ck_assert_uint_eq(t.n, 0);
    ck_assert_uint_eq(t.lits.n, 0);
    ck_assert_uint_eq(t.subs.n, 0);
    ck_assert_uint_eq(t.owners.n, 0);
    ck_assert_uint_eq(ms_ttrie_match(&t, "a.b", on_match, NULL), 0);
    for (int i = 0; i < 3000; i++) {
        random_pattern(pat, 1);
        ck_assert_int_ge(ms_ttrie_add(&t, &owners[rnd(NO)], pat), 0);
    }
    ms_ttrie_cleanup(&t);
    ck_assert_uint_eq(t.n, 0);
}
END_TEST

START_TEST(syntax)
{
    ck_assert(ms_ttrie_valid("a.*.>", 1));
    ck_assert(!ms_ttrie_valid("a.*.>", 0));
    ck_assert(!ms_ttrie_valid("a.>.b", 1));
    ck_assert(!ms_ttrie_valid("a..b", 1));
    ck_assert(!ms_ttrie_valid("a*", 1));
    ck_assert(!ms_ttrie_valid("", 1));
    ck_assert(!ms_ttrie_valid("a b", 1));
    char big[MS_TTRIE_MAX_PATTERN + 2];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    ck_assert(!ms_ttrie_valid(big, 1));
    big[MS_TTRIE_MAX_PATTERN] = 0;
    ck_assert(ms_ttrie_valid(big, 1));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("topictrie");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, against_brute_force);
    tcase_add_test(tc, leaves_empty_it);
    tcase_add_test(tc, syntax);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

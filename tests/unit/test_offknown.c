/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the list of offline-stream subjects known to hold stored emits: a reload
 * asked for while a load runs, notes that come before their store, and joins that skipped
 * their fetch just before a note or load showed their subject. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "offknown.h"

static size_t count(ms_offknown_skip_t *s)
{
    size_t n = 0;
    for (; s; s = s->next)
        n++;
    return n;
}

static void free_all(ms_offknown_skip_t *s)
{
    while (s) {
        ms_offknown_skip_t *n = s->next;
        ms_offknown_skip_free(s);
        s = n;
    }
}

START_TEST(not_loaded_every_join_looks)
{
    ms_offknown_t k;
    ms_offknown_init(&k);
    ck_assert(ms_offknown_look(&k, "a"));
    const char *subjects[] = {"a"};
    free_all(ms_offknown_load_end(&k, ms_offknown_load_begin(&k), subjects, 1, 0, NULL));
    ck_assert(ms_offknown_look(&k, "a"));
    ck_assert(!ms_offknown_look(&k, "b"));
    ms_offknown_cleanup(&k);
}
END_TEST

/* A takeover's refresh while a load reads the stream: that load's list may predate the
 * previous owner's stores, so the list stays not loaded until a load begun after it ends. */
START_TEST(reload_asked_during_a_load_keeps_it_unloaded)
{
    ms_offknown_t k;
    ms_offknown_init(&k);
    uint64_t first = ms_offknown_load_begin(&k);
    ms_offknown_invalidate(&k); /* the refresh, while the first load runs */
    int loaded = -1;
    free_all(ms_offknown_load_end(&k, first, NULL, 0, 0, &loaded));
    ck_assert_int_eq(loaded, 0);
    ck_assert(!ms_offknown_is_loaded(&k));
    ck_assert(ms_offknown_look(&k, "stored-by-the-old-owner"));
    /* The queued reload: now it is loaded. */
    const char *subjects[] = {"stored-by-the-old-owner"};
    free_all(ms_offknown_load_end(&k, ms_offknown_load_begin(&k), subjects, 1, 0, &loaded));
    ck_assert_int_eq(loaded, 1);
    ck_assert(ms_offknown_look(&k, "stored-by-the-old-owner"));
    ck_assert(!ms_offknown_look(&k, "other"));
    /* Asked for again after it was loaded: not loaded until the next. */
    ms_offknown_invalidate(&k);
    ck_assert(ms_offknown_look(&k, "other"));
    ms_offknown_cleanup(&k);
}
END_TEST

/* A store made elsewhere after the load is learnt from its note. */
START_TEST(a_note_makes_a_subject_known)
{
    ms_offknown_t k;
    ms_offknown_init(&k);
    free_all(ms_offknown_load_end(&k, ms_offknown_load_begin(&k), NULL, 0, 0, NULL));
    ck_assert(!ms_offknown_look(&k, "s"));
    ck_assert_ptr_null(ms_offknown_note(&k, "s", 1000));
    ck_assert(ms_offknown_look(&k, "s"));
    ms_offknown_cleanup(&k);
}
END_TEST

/* A fetch that finds a subject empty right after its note may have read before the store
 * landed: the subject stays known for the hold, then a fetch finding it empty drops it. */
START_TEST(a_noted_subject_is_not_dropped_at_once)
{
    ms_offknown_t k;
    ms_offknown_init(&k);
    free_all(ms_offknown_load_end(&k, ms_offknown_load_begin(&k), NULL, 0, 0, NULL));
    ms_offknown_note(&k, "s", 1000);
    ck_assert_int_eq(ms_offknown_drop(&k, "s", 1500), 0);
    ck_assert(ms_offknown_look(&k, "s"));
    ck_assert_int_eq(ms_offknown_drop(&k, "s", 1000 + MS_OFFKNOWN_HOLD_MS), 1);
    ck_assert(!ms_offknown_look(&k, "s"));
    /* Known by a store of its own (no note): dropped when found empty. */
    ms_offknown_add(&k, "t");
    ck_assert_int_eq(ms_offknown_drop(&k, "t", 2000), 1);
    ck_assert_int_eq(ms_offknown_drop(&k, "t", 2000), 0);
    ms_offknown_cleanup(&k);
}
END_TEST

/* A join skipped its fetch, then heard of a store acknowledged before it: the skip comes
 * back, once, with who it was for. */
START_TEST(a_skip_comes_back_with_the_note)
{
    ms_offknown_t k;
    ms_offknown_init(&k);
    free_all(ms_offknown_load_end(&k, ms_offknown_load_begin(&k), NULL, 0, 0, NULL));
    ck_assert(!ms_offknown_look(&k, "s"));
    ms_offknown_skipped(&k, "s", "ns", "zoe", 1000);
    ms_offknown_skipped(&k, "u", "ns", "yan", 1000);
    ck_assert_ptr_null(ms_offknown_note(&k, "t", 1100));
    ms_offknown_skip_t *s = ms_offknown_note(&k, "s", 1200);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s->ns, "ns");
    ck_assert_str_eq(s->peer, "zoe");
    ms_offknown_skip_free(s);
    ck_assert_ptr_null(ms_offknown_note(&k, "s", 1300));
    /* Remembered for MS_OFFKNOWN_SKIP_MS only. */
    ck_assert_ptr_null(ms_offknown_note(&k, "u", 1000 + MS_OFFKNOWN_SKIP_MS));
    ck_assert_uint_eq(k.n_skips, 0);
    ms_offknown_cleanup(&k);
}
END_TEST

/* A peer joined (nothing stored: skipped), then this coordinator stores for it: the store's
 * outcome delivers it to her, and its note must not fetch it a second time. */
START_TEST(an_own_store_forgets_the_skip)
{
    ms_offknown_t k;
    ms_offknown_init(&k);
    free_all(ms_offknown_load_end(&k, ms_offknown_load_begin(&k), NULL, 0, 0, NULL));
    ms_offknown_skipped(&k, "s", "ns", "zoe", 1000);
    ms_offknown_own_store(&k, "s");
    ck_assert(ms_offknown_look(&k, "s"));
    ck_assert_ptr_null(ms_offknown_note(&k, "s", 1100));
    ck_assert_uint_eq(k.n_skips, 0);
    ms_offknown_cleanup(&k);
}
END_TEST

/* Notes lost (a reconnect): the reload that follows hands back the skips whose subjects it
 * found, whatever generation it ends in. */
START_TEST(a_reload_hands_back_skips_it_shows)
{
    ms_offknown_t k;
    ms_offknown_init(&k);
    free_all(ms_offknown_load_end(&k, ms_offknown_load_begin(&k), NULL, 0, 0, NULL));
    ms_offknown_skipped(&k, "s", "ns", "zoe", 1000);
    ms_offknown_skipped(&k, "u", "ns", "yan", 1000);
    ms_offknown_invalidate(&k);
    uint64_t gen = ms_offknown_load_begin(&k);
    const char *subjects[] = {"s", "v"};
    int loaded = 0;
    ms_offknown_skip_t *due = ms_offknown_load_end(&k, gen, subjects, 2, 2000, &loaded);
    ck_assert_int_eq(loaded, 1);
    ck_assert_uint_eq(count(due), 1);
    ck_assert_str_eq(due->peer, "zoe");
    free_all(due);
    ck_assert_uint_eq(k.n_skips, 1); /* yan's: nothing stored for it */
    ms_offknown_cleanup(&k);
}
END_TEST

START_TEST(skips_are_bounded)
{
    ms_offknown_t k;
    ms_offknown_init(&k);
    char subject[32];
    for (unsigned i = 0; i < MS_OFFKNOWN_MAX_SKIPS + 10; i++) {
        snprintf(subject, sizeof(subject), "s%u", i);
        ms_offknown_skipped(&k, subject, "ns", "p", 1000);
    }
    ck_assert_uint_le(k.n_skips, MS_OFFKNOWN_MAX_SKIPS);
    /* The oldest went first. */
    ck_assert_ptr_null(ms_offknown_note(&k, "s0", 1001));
    ms_offknown_skip_t *s = ms_offknown_note(&k, "s100", 1001);
    ck_assert_ptr_nonnull(s);
    ms_offknown_skip_free(s);
    ms_offknown_cleanup(&k);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("offknown");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, not_loaded_every_join_looks);
    tcase_add_test(tc, reload_asked_during_a_load_keeps_it_unloaded);
    tcase_add_test(tc, a_note_makes_a_subject_known);
    tcase_add_test(tc, a_noted_subject_is_not_dropped_at_once);
    tcase_add_test(tc, a_skip_comes_back_with_the_note);
    tcase_add_test(tc, an_own_store_forgets_the_skip);
    tcase_add_test(tc, a_reload_hands_back_skips_it_shows);
    tcase_add_test(tc, skips_are_bounded);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the header-table slots (gateway/ahslab.c): lws's "ah struct" and "ah data"
 * come from the slots while there are free ones and from malloc after; a freed data slot
 * comes back zeroed (its pages were handed back); every other allocation passes to
 * malloc/realloc/free. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ahslab.h"

#define SLOTS 4

START_TEST(tables_from_slots_then_the_heap)
{
    ck_assert_int_eq(ms_gw_ahslab_init(SLOTS, 1024, 4096), MS_OK);
    ck_assert_int_eq(ms_gw_ahslab_init(SLOTS, 1024, 4096), MS_ERR_INVAL); /* once */
    void *data[SLOTS + 1], *st[SLOTS];
    for (int i = 0; i < SLOTS; i++) {
        st[i] = ms_gw_ahslab_realloc(NULL, 976, "ah struct");
        data[i] = ms_gw_ahslab_realloc(NULL, 4096, "ah data");
        ck_assert_ptr_nonnull(st[i]);
        ck_assert_ptr_nonnull(data[i]);
        memset(st[i], 0x5a, 976);
        memset(data[i], 0xa5, 4096);
    }
    ck_assert_uint_eq(ms_gw_ahslab_in_use(), 2 * SLOTS);
    data[SLOTS] = ms_gw_ahslab_realloc(NULL, 4096, "ah data"); /* no slot left: malloc */
    ck_assert_ptr_nonnull(data[SLOTS]);
    ck_assert_uint_eq(ms_gw_ahslab_in_use(), 2 * SLOTS);
    memset(data[SLOTS], 1, 4096);
    ms_gw_ahslab_realloc(data[SLOTS], 0, "lws_free"); /* ASan: freed by free() */
    for (int i = 0; i < SLOTS; i++) {
        ck_assert_uint_eq(((unsigned char *)st[i])[975], 0x5a); /* slots do not overlap */
        ck_assert_uint_eq(((unsigned char *)data[i])[4095], 0xa5);
    }
    /* a freed data slot is taken again first, its pages handed back: zeroed */
    ms_gw_ahslab_realloc(data[2], 0, "lws_free");
    ck_assert_uint_eq(ms_gw_ahslab_in_use(), 2 * SLOTS - 1);
    unsigned char *again = ms_gw_ahslab_realloc(NULL, 4096, "ah data");
    ck_assert_ptr_eq(again, data[2]);
    for (int i = 0; i < 4096; i++)
        ck_assert_uint_eq(again[i], 0);
    /* larger than a slot: the heap */
    void *big = ms_gw_ahslab_realloc(NULL, 8192, "ah data");
    ck_assert_ptr_nonnull(big);
    ms_gw_ahslab_realloc(big, 0, "lws_free");
    for (int i = 0; i < SLOTS; i++) {
        ms_gw_ahslab_realloc(st[i], 0, "lws_free");
        ms_gw_ahslab_realloc(data[i], 0, "lws_free");
    }
    ck_assert_uint_eq(ms_gw_ahslab_in_use(), 0);
}
END_TEST

START_TEST(other_allocations_pass_through)
{
    char *p = ms_gw_ahslab_realloc(NULL, 10, "new server wsi");
    ck_assert_ptr_nonnull(p);
    memcpy(p, "123456789", 10);
    p = ms_gw_ahslab_realloc(p, 100000, "grow");
    ck_assert_ptr_nonnull(p);
    ck_assert_str_eq(p, "123456789");
    ms_gw_ahslab_realloc(p, 0, "lws_free");
    ck_assert_ptr_null(ms_gw_ahslab_realloc(NULL, 0, "nothing"));
    void *q = ms_gw_ahslab_realloc(NULL, 16, NULL);
    ck_assert_ptr_nonnull(q);
    ms_gw_ahslab_realloc(q, 0, NULL);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("ahslab");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, tables_from_slots_then_the_heap);
    tcase_add_test(tc, other_allocations_pass_through);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_set_fork_status(sr, CK_NOFORK); /* one slab per process: the tests share it */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the receive-buffer slots (gateway/rxslab.c): slots are taken in order and
 * reused last-freed first; a page goes back to the kernel (mincore says so, its bytes read 0)
 * only once it has been quiet long enough and no slot on it is busy or taken but unbound. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rxslab.h"

#define SLOTS 16
#define SIZE 1072 /* lws's 1024 + LWS_PRE + 4, rounded: slots straddle pages */
#define AFTER 1000

static int owners[SLOTS];
static int busy_owner = -1;

static int busy(void *owner)
{
    return *(int *)owner == busy_owner;
}

static int resident(const void *p)
{
    long page = sysconf(_SC_PAGESIZE);
    unsigned char v = 0;
    void *start = (void *)((uintptr_t)p & ~(uintptr_t)(page - 1));
    ck_assert_int_eq(mincore(start, (size_t)page, &v), 0);
    return v & 1;
}

static unsigned char *slot[SLOTS];

/* n slots taken and bound to fds 10.., filled with 0x5a, touched at time 0. */
static void fill(int n)
{
    for (int i = 0; i < n; i++) {
        owners[i] = i;
        slot[i] = ms_gw_rxslab_take(SIZE);
        ck_assert_ptr_nonnull(slot[i]);
        ms_gw_rxslab_bind(10 + i, &owners[i], 0);
        memset(slot[i], 0x5a, SIZE);
    }
}

START_TEST(slots_in_order_and_reused)
{
    ck_assert_int_eq(ms_gw_rxslab_init(SLOTS, SIZE - 8, 64, AFTER), MS_OK);
    ck_assert_int_eq(ms_gw_rxslab_init(SLOTS, SIZE, 64, AFTER), MS_ERR_INVAL); /* once */
    ck_assert_ptr_null(ms_gw_rxslab_take(SIZE + 1)); /* larger than a slot */
    fill(SLOTS);
    for (int i = 1; i < SLOTS; i++)
        ck_assert_ptr_eq(slot[i], slot[i - 1] + SIZE); /* packed, in order */
    ck_assert_ptr_null(ms_gw_rxslab_take(SIZE));       /* none left */
    ck_assert(ms_gw_rxslab_owns(slot[3]));
    int local;
    ck_assert(!ms_gw_rxslab_owns(&local));
    ms_gw_rxslab_put(slot[3]);
    ms_gw_rxslab_put(slot[7]);
    ck_assert_ptr_eq(ms_gw_rxslab_take(SIZE), slot[7]); /* last freed first */
    ck_assert_ptr_eq(ms_gw_rxslab_take(SIZE), slot[3]);
    ms_gw_rxslab_stats_t st;
    ms_gw_rxslab_stats(&st);
    ck_assert_uint_eq(st.slots_in_use, SLOTS);
    ck_assert_uint_eq(st.slot_size, SIZE);
}
END_TEST

START_TEST(quiet_pages_released_busy_ones_kept)
{
    ck_assert_int_eq(ms_gw_rxslab_init(SLOTS, SIZE, 64, AFTER), MS_OK);
    fill(SLOTS); /* 16 x 1072 B: pages 0-4 */
    ms_gw_rxslab_stats_t st;
    ms_gw_rxslab_stats(&st);
    ck_assert_uint_eq(st.pages_resident, 5);
    for (int i = 0; i < SLOTS; i++)
        ck_assert(resident(slot[i]));
    /* not quiet long enough */
    ck_assert_uint_eq(ms_gw_rxslab_sweep(AFTER - 1, busy, 100), 0);
    /* slot 5 (bytes 5360-6431: page 1) is inside a frame; slot 9 (9648-10719: page 2)
     * touched later */
    busy_owner = 5;
    ms_gw_rxslab_touch(10 + 9, 2 * AFTER, 2 * AFTER - 1);
    ck_assert_uint_eq(ms_gw_rxslab_sweep(AFTER, busy, 100), 3); /* pages 0, 3 and 4 */
    ck_assert(!resident(slot[0]) && !resident(slot[15]));
    ck_assert_uint_eq(slot[0][0], 0); /* handed back: zero when read again */
    ck_assert_uint_eq(slot[5][0], 0x5a);
    ck_assert_uint_eq(slot[9][SIZE - 1], 0x5a);
    ck_assert(resident(slot[5]) && resident(slot[9]));
    /* the frame ended; the sweep goes round and finds the rest quiet */
    busy_owner = -1;
    ck_assert_uint_eq(ms_gw_rxslab_sweep(3 * AFTER, busy, 100), 2);
    ms_gw_rxslab_stats(&st);
    ck_assert_uint_eq(st.pages_resident, 0);
    ck_assert_uint_eq(st.pages_released, 5);
    ck_assert_uint_eq(slot[9][SIZE - 1], 0);
    /* written again: a touch brings the page back into the sweep's view */
    memset(slot[0], 1, SIZE);
    ms_gw_rxslab_touch(10, 4 * AFTER, 4 * AFTER - 10);
    ms_gw_rxslab_stats(&st);
    ck_assert_uint_eq(st.pages_resident, 1);
    ck_assert_uint_eq(ms_gw_rxslab_sweep(4 * AFTER, busy, 100), 0);
    ck_assert_uint_eq(slot[0][SIZE - 1], 1);
    /* a keepalive after a quiet spell (slot 13, page 3): its page may go at the next sweep,
     * while page 0, written by a connection that speaks often, stays */
    memset(slot[13], 2, SIZE);
    ms_gw_rxslab_touch(10 + 13, 4 * AFTER + 100, AFTER);
    ms_gw_rxslab_stats(&st);
    ck_assert_uint_eq(st.pages_resident, 2);
    ck_assert_uint_eq(ms_gw_rxslab_sweep(4 * AFTER + 500, busy, 100), 1);
    ck_assert_uint_eq(slot[13][0], 0);
    ck_assert_uint_eq(slot[0][SIZE - 1], 1);
}
END_TEST

START_TEST(unbound_slot_keeps_its_page)
{
    ck_assert_int_eq(ms_gw_rxslab_init(SLOTS, SIZE, 64, AFTER), MS_OK);
    fill(2);
    unsigned char *loose = ms_gw_rxslab_take(SIZE); /* lws wrote it; not bound yet */
    memset(loose, 0x77, SIZE);
    ck_assert_uint_eq(ms_gw_rxslab_sweep(10 * AFTER, busy, 100), 0);
    ck_assert_uint_eq(loose[0], 0x77);
    ms_gw_rxslab_bind(30, &owners[2], 0);
    ck_assert_uint_eq(ms_gw_rxslab_sweep(10 * AFTER, busy, 100), 1);
    ck_assert_uint_eq(loose[0], 0);
    /* freed: its descriptor no longer touches it, and its page may go */
    ms_gw_rxslab_put(slot[1]);
    ms_gw_rxslab_touch(11, 20 * AFTER, 20 * AFTER - 1);
    ms_gw_rxslab_stats_t st;
    ms_gw_rxslab_stats(&st);
    ck_assert_uint_eq(st.pages_resident, 0);
    ck_assert_uint_eq(st.slots_in_use, 2);
}
END_TEST

START_TEST(never_released_when_off)
{
    ck_assert_int_eq(ms_gw_rxslab_init(SLOTS, SIZE, 64, 0), MS_OK);
    fill(4);
    ck_assert_uint_eq(ms_gw_rxslab_sweep(UINT64_MAX / 2, busy, 100), 0);
    ck_assert_uint_eq(slot[0][0], 0x5a);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("rxslab");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, slots_in_order_and_reused);
    tcase_add_test(tc, quiet_pages_released_busy_ones_kept);
    tcase_add_test(tc, unbound_slot_keeps_its_page);
    tcase_add_test(tc, never_released_when_off);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_set_fork_status(sr, CK_FORK); /* each test its own process: one slab each */
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

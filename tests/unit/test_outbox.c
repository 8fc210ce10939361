/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the owner's outbox: one batch per (shard, gateway) per flush, held shards kept
 * and sent after the hold, discarded when dropped while held; a flush with nothing queued sends
 * nothing (it skips the walk over the entries: outbox.c). No bus: batches are counted. */
#include <check.h>
#include <stdint.h>

#include "outbox.h"

static void put(ms_outbox_t *o, uint32_t shard, const char *gw)
{
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    d.session = 7;
    ms_outbox_deliver_full(o, shard, gw, &d);
}

START_TEST(one_batch_per_shard_and_gateway)
{
    ms_outbox_t o;
    ck_assert_int_eq(ms_outbox_init(&o, NULL, "ms", "c1", 4), MS_OK);
    ms_outbox_flush(&o);
    ck_assert_uint_eq(o.n_batches, 0);
    put(&o, 0, "gw-a");
    put(&o, 0, "gw-a");
    put(&o, 0, "gw-b");
    put(&o, 3, "gw-a");
    ck_assert_uint_eq(o.n_filled, 3);
    ms_outbox_flush(&o);
    ck_assert_uint_eq(o.n_batches, 3);
    ck_assert_uint_eq(o.n_filled, 0);
    ms_outbox_flush(&o);
    ck_assert_uint_eq(o.n_batches, 3);
    put(&o, 3, "gw-a");
    ms_outbox_flush(&o);
    ck_assert_uint_eq(o.n_batches, 4);
    ms_outbox_cleanup(&o);
}
END_TEST

START_TEST(held_shards_wait_and_go)
{
    ms_outbox_t o;
    ck_assert_int_eq(ms_outbox_init(&o, NULL, "ms", "c1", 4), MS_OK);
    ms_outbox_hold(&o, 1, 1);
    put(&o, 1, "gw-a");
    put(&o, 2, "gw-a");
    ms_outbox_flush(&o);
    ck_assert_uint_eq(o.n_batches, 1); /* shard 2's */
    ms_outbox_flush(&o);
    ck_assert_uint_eq(o.n_batches, 1);
    ck_assert_uint_eq(o.n_filled, 1);
    /* The hold lifted: the next flush sends what was kept. */
    ms_outbox_hold(&o, 1, 0);
    ms_outbox_flush(&o);
    ck_assert_uint_eq(o.n_batches, 2);
    ck_assert_uint_eq(o.n_filled, 0);
    /* Dropped while held: discarded, and nothing is left to walk for. */
    ms_outbox_hold(&o, 1, 1);
    put(&o, 1, "gw-a");
    put(&o, 1, "gw-b");
    ms_outbox_forget_shard(&o, 1);
    ck_assert_uint_eq(o.n_discarded, 2);
    ck_assert_uint_eq(o.n_filled, 0);
    /* Dropped while not held: sent first. */
    put(&o, 2, "gw-a");
    put(&o, 2, "gw-b");
    ms_outbox_forget_shard(&o, 2);
    ck_assert_uint_eq(o.n_batches, 4);
    ck_assert_uint_eq(o.n_filled, 0);
    ms_outbox_flush(&o);
    ck_assert_uint_eq(o.n_batches, 4);
    ms_outbox_cleanup(&o);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("outbox");
    TCase *tc = tcase_create("outbox");
    tcase_add_test(tc, one_batch_per_shard_and_gateway);
    tcase_add_test(tc, held_shards_wait_and_go);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

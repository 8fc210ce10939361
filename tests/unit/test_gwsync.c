/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for gwsync's tick (coordinator/gwsync.c): it walks a shard's gateways only when
 * something may have changed (a gateway added, dead, back or restarted; a report; a held
 * request; an ask timing out or a back-off ending) and still asks each gateway when it
 * should. No bus: asks are counted by the walks and the states they leave. */
#include <check.h>
#include <stdlib.h>

#include "clock.h"
#include "internal.h"

static ms_coord_config_t cfg = {
    .prefix = "meshsig", .shards = 4, .resync_timeout_ms = 300, .gateway_timeout_ms = 3000};

static ms_coord_t *new_coord(void)
{
    ms_coord_t *c = calloc(1, sizeof(*c));
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(ms_coord_core_init(c, &cfg, "c1"), MS_OK);
    return c;
}

static void heartbeat(ms_coord_t *c, const char *gw, uint64_t started)
{
    Meshsig__Bus__Heartbeat hb = MESHSIG__BUS__HEARTBEAT__INIT;
    hb.gateway_id = (char *)gw;
    hb.started_ms = started;
    hb.release = "";
    ms_gw_heartbeat(c, &hb);
}

static void died(ms_coord_t *c, const char *gw, uint64_t now)
{
    (void)c;
    (void)gw;
    (void)now;
}

static void back(ms_coord_t *c, const char *gw)
{
    (void)c;
    (void)gw;
}

static void free_list(ms_queued_t *q)
{
    while (q) {
        ms_queued_t *n = q->next;
        free(q);
        q = n;
    }
}

/* Ticks every 50 ms from *now for ms; returns the walks they made. */
static uint64_t ticks(ms_coord_t *c, ms_gwsync_t **s, uint64_t *now, uint64_t ms)
{
    uint64_t w0 = ms_gwsync_walks(*s);
    for (uint64_t end = *now + ms; *now < end; *now += 50)
        free_list(ms_gwsync_tick(c, s, 0, 7, *now));
    return ms_gwsync_walks(*s) - w0;
}

START_TEST(walks_only_when_something_changed)
{
    ms_coord_t *c = new_coord();
    ms_gwsync_t *s = NULL;
    uint64_t now = 1000000;
    heartbeat(c, "gw-1", 11);
    heartbeat(c, "gw-2", 22);
    /* The first tick asks both; their asks time out after 2 x 300 ms = 600 ms. */
    ck_assert_uint_eq(ticks(c, &s, &now, 50), 1);
    free_list(ms_gwsync_reported(c, &s, "gw-1"));
    /* gw-1 reported: one walk for that; gw-2's ask times out at 600 ms (a walk) and it is asked
     * again after the 1 s back-off (a walk). Not a walk per tick: 40 ticks. */
    ck_assert_uint_eq(ticks(c, &s, &now, 2000), 3);
    free_list(ms_gwsync_reported(c, &s, "gw-2"));
    ck_assert_uint_eq(ticks(c, &s, &now, 50), 1);
    /* Both reported, nothing changes: no walk for ten seconds of ticks. */
    ck_assert_uint_eq(ticks(c, &s, &now, 10000), 0);
    /* A heartbeat from a live gateway changes nothing either. */
    heartbeat(c, "gw-1", 11);
    ck_assert_uint_eq(ticks(c, &s, &now, 1000), 0);
    /* gw-2 restarts: a walk, and it is asked again (its report was of the old process). */
    heartbeat(c, "gw-2", 23);
    ck_assert_uint_eq(ticks(c, &s, &now, 50), 1);
    free_list(ms_gwsync_reported(c, &s, "gw-2"));
    ck_assert_uint_eq(ticks(c, &s, &now, 1000), 1);
    /* A new gateway: a walk that asks it. */
    heartbeat(c, "gw-3", 33);
    ck_assert_uint_eq(ticks(c, &s, &now, 50), 1);
    free_list(ms_gwsync_reported(c, &s, "gw-3"));
    ck_assert_uint_eq(ticks(c, &s, &now, 1000), 1);
    /* gw-1 dies (the sweep, past the gateway timeout): a walk; not asked while dead. Back from
     * the same process: a walk, and it is asked (it may have missed what its peers did). */
    ms_gw_sweep(c, ms_clock_mono_ms() + 10000, died, back);
    ck_assert_uint_eq(ticks(c, &s, &now, 1000), 1);
    heartbeat(c, "gw-1", 11);
    ck_assert_uint_eq(ticks(c, &s, &now, 50), 1);
    free_list(ms_gwsync_reported(c, &s, "gw-1"));
    ck_assert_uint_eq(ticks(c, &s, &now, 1000), 1);
    ms_gwsync_free(s);
    ms_coord_core_cleanup(c);
    free(c);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("gwsync");
    TCase *tc = tcase_create("tick");
    tcase_add_test(tc, walks_only_when_something_changed);
    suite_add_tcase(su, tc);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's copies of unanswered requests (gateway/inflight.c) go only to an owner that
 * applies them once: a coordinator of bus 1.1 or later (common/busver.h). To a 1.0 owner, or
 * one the gateway has not heard from, the request goes once and its client gets the same
 * UNAVAILABLE at the same time. No bus here: a copy that is sent fails to publish and is not
 * counted as retried, one that is withheld is counted as withheld. */
#include <check.h>
#include <stdlib.h>

#include "bus.pb-c.h"
#include "busver.h"
#include "clock.h"
#include "internal.h"

#define BUS_1_0 (1u << 16)
#define BUS_1_1 ((1u << 16) | 1u)
#define BUS_1_7 ((1u << 16) | 7u)
#define BUS_2_1 ((2u << 16) | 1u)

START_TEST(copies_once_from_bus_1_1)
{
    ck_assert_int_eq(MS_BUS_COPIES_ONCE, BUS_1_1);
    ck_assert(!ms_busver_copies_once(0)); /* not heard from, or older than versioning */
    ck_assert(!ms_busver_copies_once(BUS_1_0));
    ck_assert(ms_busver_copies_once(BUS_1_1));
    ck_assert(ms_busver_copies_once(BUS_1_7));
    ck_assert(ms_busver_copies_once(MS_BUS_VERSION));
    ck_assert(!ms_busver_copies_once(BUS_2_1)); /* another major: refused anyway */
}
END_TEST

static ms_gw_config_t cfg = {.prefix = "meshsig", .shards = 4};
static ms_gateway_t *gw;
static ms_session_t sess = {.id = 7, .shard = 1};

static void setup(void)
{
    gw = calloc(1, sizeof(*gw));
    ck_assert_ptr_nonnull(gw);
    gw->cfg = &cfg;
    ck_assert_int_eq(ms_gw_inflight_init(gw), MS_OK);
}

static void teardown(void)
{
    ms_gw_inflight_cleanup(gw);
    free(gw);
}

/* A kept request of sess, as dispatch.c keeps it; returns when it was added (monotonic us). */
static uint64_t keep(const char *cid)
{
    ++gw->next_req; /* "gw/<next_req>", as ms_gw_publish_request names it */
    Meshsig__Bus__ShardRequest rq = MESHSIG__BUS__SHARD_REQUEST__INIT;
    rq.session = sess.id;
    rq.client_id = (char *)cid;
    rq.resend = 1;
    rq.epoch = ms_gw_inflight_epoch(gw, sess.shard);
    uint8_t buf[128];
    size_t len = meshsig__bus__shard_request__pack(&rq, buf);
    ck_assert_int_eq(ms_gw_inflight_room(gw, &sess, cid), 1);
    uint64_t t = ms_clock_mono_us();
    ms_gw_inflight_add(gw, &sess, cid, buf, len, rq.epoch, gw->next_req);
    return t;
}

/* Sweeps at t0 + each copy's time (0.5, 1.5, 3.5, 7.5 s), then past the give-up (11.5 s). */
static void sweep_through(uint64_t t0)
{
    static const uint64_t at_ms[] = {600, 1600, 3600, 7600};
    uint64_t gave_up = gw->n_inflight_gave_up;
    for (size_t i = 0; i < 4; i++) {
        ms_gw_inflight_sweep(gw, t0 + at_ms[i] * 1000u);
        ck_assert_uint_eq(gw->n_inflight_gave_up, gave_up);
    }
    ms_gw_inflight_sweep(gw, t0 + 11700u * 1000u);
}

START_TEST(owner_of_bus_1_0_gets_no_copies)
{
    ms_gw_inflight_new_epoch(gw, sess.shard, 5, BUS_1_0);
    sweep_through(keep("e1"));
    ck_assert_uint_eq(gw->n_inflight_withheld, 4);
    ck_assert_uint_eq(gw->n_inflight_gave_up, 1); /* UNAVAILABLE, at the same time */
    ck_assert_int_eq(ms_gw_inflight_answered(gw, &sess, "e1", NULL), 0);
}
END_TEST

START_TEST(owner_not_heard_from_gets_no_copies)
{
    sweep_through(keep("e1"));
    ck_assert_uint_eq(gw->n_inflight_withheld, 4);
    ck_assert_uint_eq(gw->n_inflight_gave_up, 1);
}
END_TEST

START_TEST(owner_of_bus_1_1_gets_copies)
{
    ms_gw_inflight_new_epoch(gw, sess.shard, 5, BUS_1_1);
    sweep_through(keep("e1"));
    ck_assert_uint_eq(gw->n_inflight_withheld, 0); /* each one tried (no bus: not published) */
    ck_assert_uint_eq(gw->n_inflight_gave_up, 1);
}
END_TEST

START_TEST(version_follows_the_newest_epoch)
{
    /* A 1.1 owner, then a takeover by a 1.0 coordinator: no more copies; then a 1.1 owner
     * again. An older epoch's message (fenced off) changes nothing. */
    ms_gw_inflight_new_epoch(gw, sess.shard, 5, BUS_1_1);
    ms_gw_inflight_new_epoch(gw, sess.shard, 6, BUS_1_0);
    ms_gw_inflight_new_epoch(gw, sess.shard, 5, BUS_1_1);
    ck_assert_uint_eq(ms_gw_inflight_epoch(gw, sess.shard), 6);
    sweep_through(keep("e1"));
    ck_assert_uint_eq(gw->n_inflight_withheld, 4);
    ms_gw_inflight_new_epoch(gw, sess.shard, 7, BUS_1_1);
    sweep_through(keep("e2"));
    ck_assert_uint_eq(gw->n_inflight_withheld, 4);
    ck_assert_uint_eq(gw->n_inflight_gave_up, 2);
}
END_TEST

START_TEST(withheld_once_withheld_for_good)
{
    /* Kept under a 1.1 owner, then the shard goes to a 1.0 owner (which may have applied the
     * request as it came) and on to a 1.1 one: no copy, at the takeovers or later. */
    ms_gw_inflight_new_epoch(gw, sess.shard, 5, BUS_1_1);
    uint64_t t0 = keep("e1");
    ms_gw_inflight_new_epoch(gw, sess.shard, 6, BUS_1_0);
    ms_gw_inflight_new_epoch(gw, sess.shard, 7, BUS_1_1);
    sweep_through(t0);
    ck_assert_uint_eq(gw->n_inflight_withheld, 4);
    ck_assert_uint_eq(gw->n_inflight_gave_up, 1);
}
END_TEST

START_TEST(same_epoch_names_its_owner)
{
    /* The version comes with every message of the epoch: a later one at the same epoch. */
    ms_gw_inflight_new_epoch(gw, sess.shard, 5, 0);
    ms_gw_inflight_new_epoch(gw, sess.shard, 5, BUS_1_1);
    sweep_through(keep("e1"));
    ck_assert_uint_eq(gw->n_inflight_withheld, 0);
}
END_TEST

/* An id used again once answered (the JS SDK does for signals): a join r1 (gw/1) got copies
 * before its answer; the client had the answer and sent a leave r1 (gw/2). The owner's answer
 * to a copy of the join (again, req_id gw/1) comes after that: it does not answer the leave
 * (the gateway drops it), and the leave stays kept until its own answer (before, the join's
 * answer went to the client as the leave's and the leave was forgotten: no copies, no resend
 * at a new owner). The same for "received". */
START_TEST(answer_to_an_old_copy_is_not_the_new_request_s)
{
    ms_gw_inflight_new_epoch(gw, sess.shard, 5, BUS_1_1);
    keep("r1");
    ck_assert_int_eq(ms_gw_inflight_answered(gw, &sess, "r1", NULL), 1);   /* the join's answer */
    keep("r1");                                                            /* the leave */
    ck_assert_int_eq(ms_gw_inflight_answered(gw, &sess, "r1", "gw/1"), 0); /* join's again */
    ms_gw_inflight_received(gw, &sess, "r1", "gw/1");
    ck_assert_int_eq(ms_gw_inflight_answered(gw, &sess, "r1", "gw/2"), 1); /* still kept */
    ck_assert_int_eq(ms_gw_inflight_answered(gw, &sess, "r1", "gw/2"), 0);
    /* A copy's answer for the kept request itself answers it; so does one that names none
     * (an owner that does not say) and the first answer (no req_id). */
    keep("r2");
    ck_assert_int_eq(ms_gw_inflight_answered(gw, &sess, "r2", ""), 1);
    keep("r3");
    ck_assert_int_eq(ms_gw_inflight_answered(gw, &sess, "r3", "gw-other-form"), 1);
    /* "received" for an old copy leaves the new request's copies going (to UNAVAILABLE at
     * 11.5 s here, with no owner); its own stops them. */
    uint64_t gave_up = gw->n_inflight_gave_up;
    uint64_t t0 = keep("r4"); /* gw/5 */
    ms_gw_inflight_received(gw, &sess, "r4", "gw/1");
    sweep_through(t0);
    ck_assert_uint_eq(gw->n_inflight_gave_up, gave_up + 1);
    t0 = keep("r5"); /* gw/6 */
    ms_gw_inflight_received(gw, &sess, "r5", "gw/6");
    sweep_through(t0);
    ck_assert_uint_eq(gw->n_inflight_gave_up, gave_up + 1);
    ck_assert_int_eq(ms_gw_inflight_answered(gw, &sess, "r5", "gw/6"), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("inflight");
    TCase *tc = tcase_create("busver");
    tcase_add_test(tc, copies_once_from_bus_1_1);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, owner_of_bus_1_0_gets_no_copies);
    tcase_add_test(tc, owner_not_heard_from_gets_no_copies);
    tcase_add_test(tc, owner_of_bus_1_1_gets_copies);
    tcase_add_test(tc, version_follows_the_newest_epoch);
    tcase_add_test(tc, withheld_once_withheld_for_good);
    tcase_add_test(tc, same_epoch_names_its_owner);
    tcase_add_test(tc, answer_to_an_old_copy_is_not_the_new_request_s);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

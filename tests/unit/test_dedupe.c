/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the owner's record of requests a gateway may send again: a copy gets the first
 * answer (or "received" while none), never a second handling; expiry, eviction and shards. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dedupe.h"
#include "servermsg.h"

/* Request req (a gateway's req_id) from (gw, session) with client id cid. */
static ms_dedupe_seen_t seen_req(ms_dedupe_t *d, uint32_t shard, const char *req, const char *gw,
                                 uint64_t session, const char *cid, uint64_t now)
{
    const uint8_t *answer = NULL;
    size_t len = 0;
    ms_dedupe_seen_t r = ms_dedupe_seen(d, shard, req, gw, session, cid, now, &answer, &len);
    ck_assert_int_eq(r == MS_DEDUPE_ANSWERED, answer != NULL);
    return r;
}

/* The same with a req_id made of the rest: one request per (gw, session, cid). */
static ms_dedupe_seen_t seen(ms_dedupe_t *d, uint32_t shard, const char *gw, uint64_t session,
                             const char *cid, uint64_t now)
{
    char req[128];
    snprintf(req, sizeof(req), "%s/%llu/%s", gw, (unsigned long long)session, cid);
    return seen_req(d, shard, req, gw, session, cid, now);
}

static void answer_ok(ms_dedupe_t *d, const char *gw, uint64_t session, const char *id,
                      uint64_t now)
{
    ms_sm_ok_t ok;
    ms_dedupe_answer(d, gw, session, ms_sm_ok(&ok, id), now);
}

START_TEST(copy_gets_the_first_answer)
{
    ms_dedupe_t d;
    ms_dedupe_init(&d);
    ck_assert_int_eq(seen(&d, 3, "gw-1", 7, "e1", 1000), MS_DEDUPE_NEW);
    /* Still working on it: a copy is told so, not handled. */
    ck_assert_int_eq(seen(&d, 3, "gw-1", 7, "e1", 1100), MS_DEDUPE_PENDING);
    ck_assert_uint_eq(d.n_received, 1);
    /* Another session, another gateway, another id: other requests. */
    ck_assert_int_eq(seen(&d, 3, "gw-1", 8, "e1", 1100), MS_DEDUPE_NEW);
    ck_assert_int_eq(seen(&d, 3, "gw-2", 7, "e1", 1100), MS_DEDUPE_NEW);
    ck_assert_int_eq(seen(&d, 3, "gw-1", 7, "e2", 1100), MS_DEDUPE_NEW);
    /* The first message with the id to that session is the answer, kept as sent. */
    ms_sm_error_t e;
    ms_dedupe_answer(
        &d, "gw-1", 7,
        ms_sm_error(&e, "e1", MESHSIG__V1__ERROR_CODE__PEER_NOT_FOUND, "zoe is not in namespace n"),
        1200);
    answer_ok(&d, "gw-1", 7, "e1", 1300); /* a later message with the id: not the answer */
    const uint8_t *answer = NULL;
    size_t len = 0;
    ck_assert_int_eq(ms_dedupe_seen(&d, 3, "gw-1/7/e1", "gw-1", 7, "e1", 1400, &answer, &len),
                     MS_DEDUPE_ANSWERED);
    Meshsig__V1__ServerMessage *sm = meshsig__v1__server_message__unpack(NULL, len, answer);
    ck_assert_ptr_nonnull(sm);
    ck_assert_int_eq(sm->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR);
    ck_assert_str_eq(sm->id, "e1");
    ck_assert_int_eq(sm->error->code, MESHSIG__V1__ERROR_CODE__PEER_NOT_FOUND);
    meshsig__v1__server_message__free_unpacked(sm, NULL);
    ck_assert_uint_eq(d.n_again, 1);
    ck_assert_uint_eq(d.n, 4);
    ck_assert_uint_eq(d.n_pending, 3);
    ms_dedupe_cleanup(&d);
    ck_assert_uint_eq(d.n, 0);
}
END_TEST

/* A client may use an id again once it is answered (the JS SDK's signals do): a new request
 * (a new req_id) with it is handled, and its own answer recorded. */
START_TEST(id_used_again_is_a_new_request)
{
    ms_dedupe_t d;
    ms_dedupe_init(&d);
    ck_assert_int_eq(seen_req(&d, 0, "gw/1", "gw", 1, "s:bob", 0), MS_DEDUPE_NEW);
    answer_ok(&d, "gw", 1, "s:bob", 1);
    ck_assert_int_eq(seen_req(&d, 0, "gw/2", "gw", 1, "s:bob", 2), MS_DEDUPE_NEW);
    ck_assert_int_eq(seen_req(&d, 0, "gw/2", "gw", 1, "s:bob", 3), MS_DEDUPE_PENDING);
    answer_ok(&d, "gw", 1, "s:bob", 4);
    ck_assert_int_eq(seen_req(&d, 0, "gw/1", "gw", 1, "s:bob", 5), MS_DEDUPE_ANSWERED);
    ck_assert_int_eq(seen_req(&d, 0, "gw/2", "gw", 1, "s:bob", 5), MS_DEDUPE_ANSWERED);
    ck_assert_uint_eq(d.n_pending, 0);
    /* Two waiting with the same id (the first one given up by its gateway): the answer is the
     * newest one's. */
    ck_assert_int_eq(seen_req(&d, 0, "gw/3", "gw", 1, "x", 6), MS_DEDUPE_NEW);
    ck_assert_int_eq(seen_req(&d, 0, "gw/4", "gw", 1, "x", 6), MS_DEDUPE_NEW);
    answer_ok(&d, "gw", 1, "x", 7);
    ck_assert_int_eq(seen_req(&d, 0, "gw/4", "gw", 1, "x", 8), MS_DEDUPE_ANSWERED);
    ck_assert_int_eq(seen_req(&d, 0, "gw/3", "gw", 1, "x", 8), MS_DEDUPE_PENDING);
    ms_dedupe_cleanup(&d);
}
END_TEST

START_TEST(records_expire)
{
    ms_dedupe_t d;
    ms_dedupe_init(&d);
    ck_assert_int_eq(seen(&d, 0, "gw", 1, "a", 0), MS_DEDUPE_NEW);
    ck_assert_int_eq(seen(&d, 0, "gw", 1, "p", 0), MS_DEDUPE_NEW);
    answer_ok(&d, "gw", 1, "a", 10);
    ms_dedupe_expire(&d, 10 + MS_DEDUPE_ANSWERED_TTL_MS);
    ck_assert_uint_eq(d.n, 2); /* not past its time yet */
    ms_dedupe_expire(&d, 11 + MS_DEDUPE_ANSWERED_TTL_MS);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_int_eq(seen(&d, 0, "gw", 1, "p", 12 + MS_DEDUPE_ANSWERED_TTL_MS), MS_DEDUPE_PENDING);
    /* An answer that never comes: kept longer than a gateway keeps the request. */
    ms_dedupe_expire(&d, 1 + MS_DEDUPE_PENDING_TTL_MS);
    ck_assert_uint_eq(d.n, 0);
    ck_assert_uint_eq(d.n_pending, 0);
    ck_assert_uint_eq(d.n_evicted, 0);
    ms_dedupe_cleanup(&d);
}
END_TEST

START_TEST(bounded_oldest_answered_first)
{
    ms_dedupe_t d;
    ms_dedupe_init(&d);
    char id[32];
    ck_assert_int_eq(seen(&d, 0, "gw", 1, "pending", 0), MS_DEDUPE_NEW);
    for (int i = 0; i < MS_DEDUPE_MAX - 1; i++) {
        snprintf(id, sizeof(id), "r%d", i);
        ck_assert_int_eq(seen(&d, 0, "gw", 1, id, 1), MS_DEDUPE_NEW);
        answer_ok(&d, "gw", 1, id, 2);
    }
    ck_assert_uint_eq(d.n, MS_DEDUPE_MAX);
    ck_assert_int_eq(seen(&d, 0, "gw", 1, "new", 3), MS_DEDUPE_NEW);
    ck_assert_uint_eq(d.n, MS_DEDUPE_MAX);
    ck_assert_uint_eq(d.n_evicted, 1);
    /* The oldest answered one went, not the one still being worked on. */
    ck_assert_int_eq(seen(&d, 0, "gw", 1, "pending", 4), MS_DEDUPE_PENDING);
    ck_assert_int_eq(seen(&d, 0, "gw", 1, "r1", 4), MS_DEDUPE_ANSWERED);
    ck_assert_uint_eq(d.n_evicted, 1);
    ck_assert_int_eq(seen(&d, 0, "gw", 1, "r0", 4), MS_DEDUPE_NEW); /* evicted: handled again */
    ms_dedupe_cleanup(&d);
}
END_TEST

START_TEST(shard_records_go_with_the_shard)
{
    ms_dedupe_t d;
    ms_dedupe_init(&d);
    ck_assert_int_eq(seen(&d, 1, "gw", 1, "a", 0), MS_DEDUPE_NEW);
    ck_assert_int_eq(seen(&d, 2, "gw", 2, "b", 0), MS_DEDUPE_NEW);
    answer_ok(&d, "gw", 1, "a", 1);
    ms_dedupe_forget_shard(&d, 1);
    ck_assert_uint_eq(d.n, 1);
    ck_assert_int_eq(seen(&d, 2, "gw", 2, "b", 2), MS_DEDUPE_PENDING);
    /* A new owner of shard 1 handles the copies sent to it. */
    ck_assert_int_eq(seen(&d, 1, "gw", 1, "a", 2), MS_DEDUPE_NEW);
    ms_dedupe_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dedupe");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, copy_gets_the_first_answer);
    tcase_add_test(tc, id_used_again_is_a_new_request);
    tcase_add_test(tc, records_expire);
    tcase_add_test(tc, bounded_oldest_answered_first);
    tcase_add_test(tc, shard_records_go_with_the_shard);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

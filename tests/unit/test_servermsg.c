/* SPDX-License-Identifier: Apache-2.0 */
/* The shared ServerMessage builders: each packs and unpacks to the message a client expects
 * (the request id on replies, the server's `from`, nothing left unset that a client reads). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "servermsg.h"

/* Packs m and unpacks it again: what a client receives on the binary protocol. */
static Meshsig__V1__ServerMessage *wire(const Meshsig__V1__ServerMessage *m)
{
    size_t n = meshsig__v1__server_message__get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(meshsig__v1__server_message__pack(m, buf), n);
    Meshsig__V1__ServerMessage *u = meshsig__v1__server_message__unpack(NULL, n, buf);
    free(buf);
    ck_assert_ptr_nonnull(u);
    return u;
}

START_TEST(error_ok)
{
    ms_sm_error_t e;
    Meshsig__V1__ServerMessage *u =
        wire(ms_sm_error(&e, "r7", MESHSIG__V1__ERROR_CODE__NOT_JOINED, "say hello first"));
    ck_assert_int_eq(u->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR);
    ck_assert_str_eq(u->id, "r7");
    ck_assert_int_eq(u->error->code, MESHSIG__V1__ERROR_CODE__NOT_JOINED);
    ck_assert_str_eq(u->error->message, "say hello first");
    meshsig__v1__server_message__free_unpacked(u, NULL);
    u = wire(ms_sm_error(&e, NULL, MESHSIG__V1__ERROR_CODE__REPLACED, NULL));
    ck_assert_str_eq(u->id, "");
    ck_assert_str_eq(u->error->message, "");
    meshsig__v1__server_message__free_unpacked(u, NULL);
    ms_sm_ok_t ok;
    u = wire(ms_sm_ok(&ok, "r8"));
    ck_assert_int_eq(u->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_OK);
    ck_assert_str_eq(u->id, "r8");
    meshsig__v1__server_message__free_unpacked(u, NULL);
}
END_TEST

START_TEST(signal_emit_disconnect)
{
    Meshsig__V1__Value v = MESHSIG__V1__VALUE__INIT;
    v.kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
    v.string_value = "sdp";
    ms_sm_signal_t s;
    Meshsig__V1__ServerMessage *u = wire(ms_sm_signal(&s, "alice", &v));
    ck_assert_int_eq(u->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL);
    ck_assert_str_eq(u->signal->from, "alice");
    ck_assert_str_eq(u->signal->payload->string_value, "sdp");
    ck_assert_str_eq(u->signal->to, ""); /* a client never learns more than who sent it */
    meshsig__v1__server_message__free_unpacked(u, NULL);

    Meshsig__V1__Emit in = MESHSIG__V1__EMIT__INIT;
    in.from = "bob";
    in.event = "chat";
    in.ack_id = "a1";
    in.msg_id = "m1";
    ms_sm_emit_t em;
    u = wire(ms_sm_emit(&em, &in));
    ck_assert_int_eq(u->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_EMIT);
    ck_assert_str_eq(u->emit->from, "bob");
    ck_assert_str_eq(u->emit->event, "chat");
    ck_assert_str_eq(u->emit->ack_id, "a1");
    ck_assert_str_eq(u->emit->msg_id, "m1");
    meshsig__v1__server_message__free_unpacked(u, NULL);

    ms_sm_disconnect_t d;
    u = wire(ms_sm_disconnect(&d, "carol"));
    ck_assert_int_eq(u->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY);
    ck_assert_int_eq(u->topology->event_case, MESHSIG__V1__TOPOLOGY__EVENT_DISCONNECT);
    ck_assert_str_eq(u->topology->disconnect->peer, "carol");
    meshsig__v1__server_message__free_unpacked(u, NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("servermsg");
    TCase *tc = tcase_create("builders");
    tcase_add_test(tc, error_ok);
    tcase_add_test(tc, signal_emit_disconnect);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

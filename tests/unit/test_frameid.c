/* SPDX-License-Identifier: Apache-2.0 */
/* ms_frame_id: the request id of a frame the gateway does not decode, in JSON and protobuf. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client.pb-c.h"
#include "frameid.h"

static const char *json_id(const char *text)
{
    static char out[128];
    ms_frame_id((const unsigned char *)text, strlen(text), 0, out, sizeof(out));
    return out;
}

START_TEST(json_frames)
{
    ck_assert_str_eq(json_id("{\"id\":\"7\",\"ping\":{}}"), "7");
    ck_assert_str_eq(json_id(" { \"ping\" : {\"x\":[1,{\"id\":\"no\"}]}, \"id\" : \"late\" } "),
                     "late");
    ck_assert_str_eq(json_id("{\"ping\":{}}"), "");
    ck_assert_str_eq(json_id("{\"id\":7}"), "");                  /* not a string */
    ck_assert_str_eq(json_id("{\"id\":\"a\\\"b\"}"), "");         /* escaped: not read */
    ck_assert_str_eq(json_id("{\"ping\":{"), "");                 /* broken before the id */
    ck_assert_str_eq(json_id("{\"id\":\"ok\",\"ping\":{"), "ok"); /* broken after it */
    ck_assert_str_eq(json_id("[\"id\"]"), "");
    ck_assert_str_eq(json_id(""), "");
    char big[300] = "{\"id\":\"";
    memset(big + 7, 'x', 200);
    strcpy(big + 207, "\"}");
    ck_assert_str_eq(json_id(big), ""); /* longer than the buffer */
}
END_TEST

START_TEST(protobuf_frames)
{
    Meshsig__V1__Ping ping = MESHSIG__V1__PING__INIT;
    Meshsig__V1__Emit em = MESHSIG__V1__EMIT__INIT;
    em.to = "bob";
    em.event = "e";
    em.timeout_ms = 300;
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_EMIT;
    cm.emit = &em;
    cm.id = "req-1";
    uint8_t buf[256];
    size_t n = meshsig__v1__client_message__pack(&cm, buf);
    char out[64];
    ms_frame_id(buf, n, 1, out, sizeof(out));
    ck_assert_str_eq(out, "req-1");
    /* The id after the message (fields may come in any order). */
    size_t m = meshsig__v1__emit__pack(&em, buf + 2);
    buf[0] = (4 << 3) | 2;
    buf[1] = (uint8_t)m;
    buf[2 + m] = (1 << 3) | 2;
    buf[3 + m] = 2;
    memcpy(buf + 4 + m, "zz", 2);
    ms_frame_id(buf, 6 + m, 1, out, sizeof(out));
    ck_assert_str_eq(out, "zz");
    /* None, truncated, and not printable. */
    cm.id = "";
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_PING;
    cm.ping = &ping;
    n = meshsig__v1__client_message__pack(&cm, buf);
    ms_frame_id(buf, n, 1, out, sizeof(out));
    ck_assert_str_eq(out, "");
    const uint8_t cut[] = {(1 << 3) | 2, 10, 'a', 'b'};
    ms_frame_id(cut, sizeof(cut), 1, out, sizeof(out));
    ck_assert_str_eq(out, "");
    const uint8_t bin[] = {(1 << 3) | 2, 2, 'a', 0xff};
    ms_frame_id(bin, sizeof(bin), 1, out, sizeof(out));
    ck_assert_str_eq(out, "");
    const uint8_t bad_wire[] = {(1 << 3) | 7, 1};
    ms_frame_id(bad_wire, sizeof(bad_wire), 1, out, sizeof(out));
    ck_assert_str_eq(out, "");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("frameid");
    TCase *tc = tcase_create("frameid");
    tcase_add_test(tc, json_frames);
    tcase_add_test(tc, protobuf_frames);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* RFC 6455 at the edge: raw bytes a broken or hostile client sends, the close code each gets.
 *
 * Each case opens its own connection with tests/integration/rawws (which
 * writes frames bit by bit), checks the gateway's answer, and then checks
 * that a well-behaved pair on the same gateway is still connected and
 * served.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cluster.h"
#include "rawws.h"
#include "testutil.h"
#include "wsclient.h"

#define MAX_FRAME 4096

static cluster_t cl;
static int g1;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    char mf[16];
    snprintf(mf, sizeof(mf), "%d", MAX_FRAME);
    const char *args[] = {"--insecure-dev", "--max-frame", mf, NULL};
    g1 = cluster_add_gateway(&cl, "gw-rfc", args);
    ck_assert_int_ge(g1, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

static rws_t *open_ws(void)
{
    rws_t *r = rws_connect(cl.gw_port[g1], "13", "meshsig.v1.json", NULL, T_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 101);
    return r;
}

/* The next frame is a close with this code (no data frame answered first). */
static void expect_close(rws_t *r, int code, const char *what)
{
    uint8_t *p = NULL, b0 = 0;
    size_t n = 0;
    int op = rws_recv_frame(r, T_MS, &p, &n, &b0);
    ck_assert_msg(op == 8, "%s: expected a close frame, got opcode %d (%.*s)", what, op,
                  (int)(n < 80 ? n : 80), p ? (const char *)p : "");
    ck_assert_msg(n >= 2, "%s: close frame without a code", what);
    int got = p[0] << 8 | p[1];
    ck_assert_msg(got == code, "%s: close code %d, expected %d", what, got, code);
    /* the closing handshake: echo the close; the server then ends the TCP
     * connection, well before lws's 5 s close timeout */
    rws_send_frame(r, RWS_FIN | 8, 1, p, 2);
    free(p);
    ck_assert_msg(rws_wait_eof(r, 3000), "%s: the connection stays open", what);
}

/* The next data frame is text JSON with top-level key `key`. */
static void expect_text_key(rws_t *r, const char *key, const char *what)
{
    for (int i = 0; i < 4; i++) {
        uint8_t *p = NULL, b0 = 0;
        size_t n = 0;
        int op = rws_recv_frame(r, T_MS, &p, &n, &b0);
        ck_assert_msg(op >= 0, "%s: no answer", what);
        if (op == 10 || op == 9) { /* pong to our ping, or a ping: not the answer */
            free(p);
            continue;
        }
        ck_assert_msg(op == 1, "%s: opcode %d", what, op);
        json_t *j = json_loadb((const char *)p, n, 0, NULL);
        ck_assert_msg(j && json_object_get(j, key), "%s: expected %s, got %.*s", what, key, (int)n,
                      p);
        json_decref(j);
        free(p);
        return;
    }
    ck_abort_msg("%s: no %s", what, key);
}

/* A pair joined once and checked after every case. */
static wsc_t *alice, *bob;

static void pair_serves(const char *after)
{
    static int n;
    if (!alice) {
        alice = join_as(cl.gw_port[g1], "rfc", "alice");
        bob = join_as(cl.gw_port[g1], "rfc", "bob");
        expect_connect(alice, "bob", 1);
        expect_connect(bob, "alice", 0);
    }
    ck_assert_msg(kill(cl.gw[g1], 0) == 0, "gateway gone after %s", after);
    send_json(alice, "{\"signal\":{\"to\":\"bob\",\"payload\":%d}}", ++n);
    json_t *j = expect_key(bob, "signal");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "signal"), "payload")),
                     n);
    json_decref(j);
}

static const char PING[] = "{\"ping\":{}}";

START_TEST(well_formed_baseline)
{
    rws_t *r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 1, 1, PING, strlen(PING)), 0);
    expect_text_key(r, "pong", "masked ping");
    rws_free(r);
    pair_serves("baseline");
}
END_TEST

/* §5.1: a server MUST close the connection on an unmasked client frame. */
START_TEST(unmasked_frame_closes_1002)
{
    rws_t *r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 1, 0, PING, strlen(PING)), 0);
    expect_close(r, 1002, "unmasked text frame");
    rws_free(r);
    /* an unmasked ping (a control frame, which never reaches the callback) */
    r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 9, 0, "hi", 2), 0);
    expect_close(r, 1002, "unmasked ping");
    rws_free(r);
    /* sent with the upgrade request, before the 101 */
    static const uint8_t unmasked_ping[] = {RWS_FIN | 9, 2, 'h', 'i'};
    r = rws_connect_with(cl.gw_port[g1], "13", "meshsig.v1.json", NULL, unmasked_ping,
                         sizeof(unmasked_ping), T_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 101);
    expect_close(r, 1002, "unmasked ping sent with the request");
    rws_free(r);
    pair_serves("unmasked frames");
}
END_TEST

/* §4.2.2 / §4.4: another version gets 426 with the version we speak, no 101. */
START_TEST(version_other_than_13_refused)
{
    const char *versions[] = {"99", "14", "abc", "8", "", NULL};
    for (int i = 0; i < 6; i++) {
        rws_t *r = rws_connect(cl.gw_port[g1], versions[i], "meshsig.v1.json", NULL, T_MS);
        ck_assert_msg(r != NULL, "no answer to version %s", versions[i] ? versions[i] : "(none)");
        ck_assert_msg(r->status == 426, "version %s: status %d",
                      versions[i] ? versions[i] : "(none)", r->status);
        ck_assert_msg(strcasestr(r->head, "\r\nSec-WebSocket-Version: 13\r\n") != NULL,
                      "no Sec-WebSocket-Version: 13 in %s", r->head);
        rws_free(r);
    }
    pair_serves("bad versions");
}
END_TEST

/* §8.1: invalid UTF-8 in a text message fails the connection with 1007. */
START_TEST(invalid_utf8_closes_1007)
{
    static const char bad[] = "{\"ping\":{},\"x\":\"\xc3\x28\"}";
    rws_t *r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 1, 1, bad, strlen(bad)), 0);
    expect_close(r, 1007, "invalid UTF-8");
    rws_free(r);
    /* a sequence cut at the end of the message, over two fragments */
    r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, 1, 1, "\"\xe2\x82", 3), 0);
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 0, 1, "", 0), 0);
    expect_close(r, 1007, "truncated UTF-8");
    rws_free(r);
    /* overlong encoding and a surrogate */
    static const char *more[] = {"\"\xc0\xaf\"", "\"\xed\xa0\x80\""};
    for (int i = 0; i < 2; i++) {
        r = open_ws();
        ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 1, 1, more[i], strlen(more[i])), 0);
        expect_close(r, 1007, "overlong or surrogate UTF-8");
        rws_free(r);
    }
    /* a bad byte in a middle fragment of a message whose other fragments are fine */
    r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, 1, 1, "{\"ping\":{},", 10), 0);
    ck_assert_int_eq(rws_send_frame(r, 0, 1, "\"x\":\"\xff", 6), 0);
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 0, 1, "\"}", 2), 0);
    expect_close(r, 1007, "invalid UTF-8 in a middle fragment");
    rws_free(r);
    /* a close frame whose reason is not UTF-8: the connection ends without the echo */
    r = open_ws();
    static const uint8_t bad_reason[] = {0x03, 0xe8, 0xc3, 0x28};
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 8, 1, bad_reason, sizeof(bad_reason)), 0);
    uint8_t *p = NULL, b0 = 0;
    size_t n = 0;
    int op = rws_recv_frame(r, T_MS, &p, &n, &b0);
    ck_assert_msg(op != 8 || n < 4 || memcmp(p, bad_reason, 4), "the bad close reason echoed");
    free(p);
    ck_assert_msg(op < 0 || rws_wait_eof(r, 3000), "the connection stays open after a bad reason");
    rws_free(r);
    pair_serves("invalid UTF-8");
}
END_TEST

/* Valid UTF-8 is served, also a sequence split between two fragments (the message is
 * checked whole). */
START_TEST(valid_utf8_across_fragments_served)
{
    static const char whole[] = "{\"id\":\"\xe2\x82\xac \xf0\x9f\x98\x80\",\"ping\":{}}";
    rws_t *r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 1, 1, whole, strlen(whole)), 0);
    expect_text_key(r, "pong", "valid UTF-8");
    size_t cut = strlen("{\"id\":\"\xe2");
    ck_assert_int_eq(rws_send_frame(r, 1, 1, whole, cut), 0);
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 0, 1, whole + cut, strlen(whole) - cut), 0);
    expect_text_key(r, "pong", "valid UTF-8 split between fragments");
    rws_free(r);
    pair_serves("valid UTF-8");
}
END_TEST

/* §5.2: reserved opcodes, and RSV bits without an extension that defines them. */
START_TEST(reserved_opcodes_and_bits_close_1002)
{
    static const uint8_t b0s[] = {RWS_FIN | 3,
                                  RWS_FIN | 7,
                                  RWS_FIN | 0xb,
                                  RWS_FIN | 0xf,
                                  RWS_FIN | RWS_RSV1 | 1,
                                  RWS_FIN | RWS_RSV2 | 1,
                                  RWS_FIN | RWS_RSV3 | 2,
                                  RWS_FIN | RWS_RSV1 | 9};
    for (size_t i = 0; i < sizeof(b0s); i++) {
        rws_t *r = open_ws();
        ck_assert_int_eq(rws_send_frame(r, b0s[i], 1, PING, strlen(PING)), 0);
        char what[48];
        snprintf(what, sizeof(what), "first byte 0x%02x", b0s[i]);
        expect_close(r, 1002, what);
        rws_free(r);
    }
    pair_serves("reserved opcodes and bits");
}
END_TEST

/* §5.5: control frames carry at most 125 bytes and are never fragmented. */
START_TEST(oversize_control_frames_close_1002)
{
    char big[200];
    memset(big, 'p', sizeof(big));
    uint8_t ops[] = {RWS_FIN | 9, RWS_FIN | 10, RWS_FIN | 8};
    for (size_t i = 0; i < sizeof(ops); i++) {
        rws_t *r = open_ws();
        ck_assert_int_eq(rws_send_frame(r, ops[i], 1, big, 126), 0);
        expect_close(r, 1002, "control frame of 126 bytes");
        rws_free(r);
    }
    rws_t *r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, 9, 1, "x", 1), 0); /* ping without FIN */
    expect_close(r, 1002, "fragmented ping");
    rws_free(r);
    /* 125 bytes is fine: answered with a pong */
    r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 9, 1, big, 125), 0);
    uint8_t *p = NULL, b0;
    size_t n;
    ck_assert_int_eq(rws_recv_frame(r, T_MS, &p, &n, &b0), 10);
    ck_assert_uint_eq(n, 125);
    free(p);
    rws_free(r);
    pair_serves("oversize control frames");
}
END_TEST

/* §5.4: fragments are reassembled (control frames may come between them) up
 * to --max-frame; past it, 1009. Continuations out of place are 1002. */
START_TEST(fragmented_messages)
{
    rws_t *r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, 1, 1, "{\"pi", 4), 0);
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 9, 1, "mid", 3), 0);
    ck_assert_int_eq(rws_send_frame(r, 0, 1, "ng\":", 4), 0);
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 0, 1, "{}}", 3), 0);
    expect_text_key(r, "pong", "three fragments with a ping between");
    /* exactly --max-frame bytes over many fragments */
    char *msg = malloc(MAX_FRAME);
    ck_assert_ptr_nonnull(msg);
    memset(msg, ' ', MAX_FRAME);
    memcpy(msg, PING, strlen(PING));
    for (int off = 0; off < MAX_FRAME; off += 1000) {
        int last = off + 1000 >= MAX_FRAME;
        ck_assert_int_eq(rws_send_frame(r, (last ? RWS_FIN : 0) | (off ? 0 : 1), 1, msg + off,
                                        last ? (size_t)(MAX_FRAME - off) : 1000),
                         0);
    }
    expect_text_key(r, "pong", "a message of exactly --max-frame bytes in fragments");
    /* one byte more: 1009 */
    for (int off = 0; off <= MAX_FRAME; off += 1000) {
        int last = off + 1000 > MAX_FRAME;
        ck_assert_int_eq(rws_send_frame(r, (last ? RWS_FIN : 0) | (off ? 0 : 1), 1, msg,
                                        last ? (size_t)(MAX_FRAME + 1 - off) : 1000),
                         0);
    }
    expect_close(r, 1009, "fragments past --max-frame");
    rws_free(r);
    /* one frame past --max-frame */
    r = open_ws();
    char *big = malloc(MAX_FRAME + 1);
    ck_assert_ptr_nonnull(big);
    memset(big, ' ', MAX_FRAME + 1);
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 1, 1, big, MAX_FRAME + 1), 0);
    expect_close(r, 1009, "one frame past --max-frame");
    rws_free(r);
    free(big);
    free(msg);
    /* a continuation with nothing to continue; a new message inside one */
    r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 0, 1, "x", 1), 0);
    expect_close(r, 1002, "continuation without a start");
    rws_free(r);
    r = open_ws();
    ck_assert_int_eq(rws_send_frame(r, 1, 1, "{", 1), 0);
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 1, 1, PING, strlen(PING)), 0);
    expect_close(r, 1002, "a new message inside a fragmented one");
    rws_free(r);
    pair_serves("fragmented messages");
}
END_TEST

/* permessage-deflate is not enabled: a client that offers it gets no
 * extension in the 101, so compressed frames (RSV1) are 1002 above and no
 * frame can inflate past --max-frame. */
START_TEST(no_compression_negotiated)
{
    rws_t *r = rws_connect(cl.gw_port[g1], "13", "meshsig.v1.json",
                           "Sec-WebSocket-Extensions: permessage-deflate; "
                           "client_max_window_bits\r\n",
                           T_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 101);
    ck_assert_msg(!strcasestr(r->head, "Sec-WebSocket-Extensions"), "extension accepted: %s",
                  r->head);
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | RWS_RSV1 | 1, 1, PING, strlen(PING)), 0);
    expect_close(r, 1002, "a compressed frame without the extension");
    rws_free(r);
    pair_serves("compression offered");
}
END_TEST

START_TEST(pair_still_there)
{
    pair_serves("everything");
    wsc_free(alice);
    wsc_free(bob);
    alice = bob = NULL;
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rfc6455");
    TCase *tc = tcase_create("edge");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_unchecked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, well_formed_baseline);
    tcase_add_test(tc, unmasked_frame_closes_1002);
    tcase_add_test(tc, version_other_than_13_refused);
    tcase_add_test(tc, invalid_utf8_closes_1007);
    tcase_add_test(tc, valid_utf8_across_fragments_served);
    tcase_add_test(tc, reserved_opcodes_and_bits_close_1002);
    tcase_add_test(tc, oversize_control_frames_close_1002);
    tcase_add_test(tc, fragmented_messages);
    tcase_add_test(tc, no_compression_negotiated);
    tcase_add_test(tc, pair_still_there);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    /* one process: the pair lives across the cases */
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The PeerJS server protocol across two gateways, spoken by a raw WebSocket client as peerjs 1.x
 * does.
 *
 * One cluster (nats-server, a coordinator, gateways gw-1 and gw-2 in insecure
 * dev mode) for all cases; each case uses its own ids so none sees another's
 * traffic.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "pjclient.h"
#include "testjwt.h"
#include "testutil.h"
#include "wsclient.h"

#define JWT_SECRET "peerjs-test-secret-0123456789abcdef"

static cluster_t cl;
static int gw1, gw2, gw_auth;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    const char *dev[] = {"--insecure-dev", NULL};
    gw1 = cluster_add_gateway(&cl, "gw-1", dev);
    gw2 = cluster_add_gateway(&cl, "gw-2", dev);
    const char *secure[] = {"--jwt-secret", JWT_SECRET, NULL};
    gw_auth = cluster_add_gateway(&cl, "gw-auth", secure);
    ck_assert_int_ge(gw_auth, 0);
    ck_assert_int_ge(gw1, 0);
    ck_assert_int_ge(gw2, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A PeerJS socket as the client opens it; NULL when not established. */
static wsc_t *pj_connect(int gw, const char *key, const char *id, const char *token)
{
    return pjc_connect(cl.gw_port[gw], key, id, token, T_MS);
}

/* The next PeerJS message, of the type expected. Caller decrefs. */
static json_t *pj_expect(wsc_t *c, const char *type)
{
    return pjc_expect(c, type, NULL, T_MS + 2000);
}

static wsc_t *pj_open(int gw, const char *id, const char *token)
{
    wsc_t *c = pj_connect(gw, "peerjs", id, token);
    ck_assert_ptr_nonnull(c);
    json_decref(pj_expect(c, "OPEN"));
    return c;
}

static void pj_send(wsc_t *c, const char *type, const char *dst, const char *payload_json)
{
    char buf[1024];
    if (dst)
        snprintf(buf, sizeof(buf), "{\"type\":\"%s\",\"dst\":\"%s\",\"payload\":%s}", type, dst,
                 payload_json ? payload_json : "null");
    else
        snprintf(buf, sizeof(buf), "{\"type\":\"%s\"}", type);
    ck_assert_int_eq(wsc_send_text(c, buf), 0);
}

static void expect_from(json_t *j, const char *src, const char *dst)
{
    ck_assert_str_eq(json_string_value(json_object_get(j, "src")), src);
    ck_assert_str_eq(json_string_value(json_object_get(j, "dst")), dst);
}

START_TEST(test_open_and_signal_across_gateways)
{
    wsc_t *a = pj_open(gw1, "sig-a", "tok-a");
    wsc_t *b = pj_open(gw2, "sig-b", "tok-b");
    pj_send(a, "OFFER", "sig-b",
            "{\"sdp\":{\"type\":\"offer\",\"sdp\":\"v=0\"},\"type\":\"data\","
            "\"connectionId\":\"dc_1\"}");
    json_t *j = pj_expect(b, "OFFER");
    expect_from(j, "sig-a", "sig-b");
    json_t *p = json_object_get(j, "payload");
    ck_assert_str_eq(json_string_value(json_object_get(p, "connectionId")), "dc_1");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(p, "sdp"), "sdp")), "v=0");
    json_decref(j);

    pj_send(b, "ANSWER", "sig-a", "{\"sdp\":{\"type\":\"answer\",\"sdp\":\"v=0\"}}");
    j = pj_expect(a, "ANSWER");
    expect_from(j, "sig-b", "sig-a");
    json_decref(j);
    pj_send(b, "CANDIDATE", "sig-a", "{\"candidate\":{\"candidate\":\"candidate:1\"}}");
    json_decref(pj_expect(a, "CANDIDATE"));

    /* HEARTBEAT is liveness only: no answer, and the session goes on. */
    pj_send(a, "HEARTBEAT", NULL, NULL);
    pj_send(a, "LEAVE", "sig-b", NULL);
    j = pj_expect(b, "LEAVE");
    expect_from(j, "sig-a", "sig-b");
    json_decref(j);
    ck_assert_int_eq((int)wsc_pending(a), 0);
    wsc_free(a);
    wsc_free(b);
}
END_TEST

START_TEST(test_id_taken_and_same_token_reclaims)
{
    wsc_t *a = pj_open(gw1, "own-a", "secret-1");
    wsc_t *b = pj_open(gw1, "own-b", "secret-b");
    /* Another token, another gateway: the id is taken cluster-wide. */
    wsc_t *thief = pj_connect(gw2, "peerjs", "own-a", "secret-2");
    ck_assert_ptr_nonnull(thief);
    json_t *j = pj_expect(thief, "ID-TAKEN");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "payload"), "msg")),
                     "ID is taken");
    json_decref(j);
    ck_assert(wsc_wait_closed(thief, T_MS));
    wsc_free(thief);

    /* The same token (a reconnecting client) takes its id back, on any gateway. */
    wsc_t *again = pj_open(gw2, "own-a", "secret-1");
    ck_assert(wsc_wait_closed(a, T_MS));
    pj_send(b, "OFFER", "own-a", "{\"n\":1}");
    j = pj_expect(again, "OFFER");
    expect_from(j, "own-b", "own-a");
    json_decref(j);
    wsc_free(a);
    wsc_free(again);
    wsc_free(b);
}
END_TEST

START_TEST(test_message_kept_for_a_peer_that_connects_later)
{
    wsc_t *a = pj_open(gw1, "early", "t-early");
    pj_send(a, "OFFER", "late", "{\"connectionId\":\"dc_late\"}");
    pj_send(a, "CANDIDATE", "late", "{\"candidate\":{\"candidate\":\"c1\"}}");
    wsc_pump(2000); /* the other peer connects 2 s later */
    wsc_t *late = pj_open(gw2, "late", "t-late");
    json_t *j = pj_expect(late, "OFFER");
    expect_from(j, "early", "late");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(j, "payload"), "connectionId")),
        "dc_late");
    json_decref(j);
    json_decref(pj_expect(late, "CANDIDATE"));
    /* Delivered, so never expired. */
    ck_assert_ptr_null(wsc_recv_json(a, 4000));
    wsc_free(a);
    wsc_free(late);
}
END_TEST

/* Two PeerJS peers on one gateway: their signals go session to session on the
 * gateway (the owner lets any peer signal any other in peerjs.* namespaces and
 * says so with the welcome), not through the owner; a peer signalled while
 * absent (held by the owner) gets what was held first, then the rest, in order,
 * although it joined the sender's gateway. */
START_TEST(test_same_gateway_signals_stay_on_the_gateway_and_in_order)
{
    long long local0 = metric_at(cl.gw_port[gw1], NULL, "meshsig_gateway_signals_local_total");
    wsc_t *a = pj_open(gw1, "loc-a", "t-loc-a");
    wsc_t *b = pj_open(gw1, "loc-b", "t-loc-b");
    for (int i = 0; i < 5; i++) {
        char pl[64];
        snprintf(pl, sizeof(pl), "{\"n\":%d}", i);
        pj_send(a, "CANDIDATE", "loc-b", pl);
    }
    for (int i = 0; i < 5; i++) {
        json_t *j = pj_expect(b, "CANDIDATE");
        expect_from(j, "loc-a", "loc-b");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "payload"), "n")),
                         i);
        json_decref(j);
    }
    ck_assert_int_ge(
        metric_at(cl.gw_port[gw1], NULL, "meshsig_gateway_signals_local_total") - local0, 5);

    /* Held for an absent peer, which then joins this gateway. */
    pj_send(a, "OFFER", "loc-late", "{\"n\":0}");
    pj_send(a, "CANDIDATE", "loc-late", "{\"n\":1}");
    wsc_t *late = pj_open(gw1, "loc-late", "t-loc-late");
    pj_send(a, "CANDIDATE", "loc-late", "{\"n\":2}");
    pj_send(a, "CANDIDATE", "loc-late", "{\"n\":3}");
    const char *types[] = {"OFFER", "CANDIDATE", "CANDIDATE", "CANDIDATE"};
    for (int i = 0; i < 4; i++) {
        json_t *j = pj_expect(late, types[i]);
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "payload"), "n")),
                         i);
        json_decref(j);
    }
    /* And back: the late peer's own signals to a peer here go on the gateway. */
    long long local1 = metric_at(cl.gw_port[gw1], NULL, "meshsig_gateway_signals_local_total");
    pj_send(late, "ANSWER", "loc-a", "{\"n\":9}");
    json_decref(pj_expect(a, "ANSWER"));
    ck_assert_int_eq(
        metric_at(cl.gw_port[gw1], NULL, "meshsig_gateway_signals_local_total") - local1, 1);
    wsc_free(a);
    wsc_free(b);
    wsc_free(late);
}
END_TEST

/* The same frames on the fast path (spliced on one gateway; only the payload
 * parsed across two) and on the full decoder's (a frame the scan leaves to it:
 * another key, an escape): the receiver gets the same message, with the
 * sender's true id whatever the frame says. */
START_TEST(test_fast_and_full_paths_deliver_alike)
{
    static const char *const frames[] = {
        "{\"type\":\"OFFER\",\"dst\":\"%s\",\"payload\":{\"s\":\"v=0\\r\\n\",\"n\":[1,2.5,null]}}",
        "{\"type\":\"OFFER\",\"src\":\"evil\",\"dst\":\"%s\",\"payload\":{\"s\":\"v=0\\r\\n\","
        "\"n\":[1,2.5,null]}}",
        "{\"type\":\"OFF\\u0045R\",\"dst\":\"%s\",\"payload\":{\"s\":\"v=0\\r\\n\",\"n\":[1,2.5,"
        "null]}}",
    };
    wsc_t *a = pj_open(gw1, "alike-a", "t-alike-a");
    wsc_t *b = pj_open(gw1, "alike-b", "t-alike-b");
    wsc_t *c = pj_open(gw2, "alike-c", "t-alike-c");
    json_t *want = json_loads("{\"s\":\"v=0\\r\\n\",\"n\":[1,2.5,null]}", 0, NULL);
    ck_assert_ptr_nonnull(want);
    for (size_t i = 0; i < sizeof(frames) / sizeof(frames[0]); i++) {
        wsc_t *to[2] = {b, c};
        const char *ids[2] = {"alike-b", "alike-c"};
        for (int k = 0; k < 2; k++) {
            char buf[512];
            snprintf(buf, sizeof(buf), frames[i], ids[k]);
            ck_assert_int_eq(wsc_send_text(a, buf), 0);
            json_t *j = pj_expect(to[k], "OFFER");
            expect_from(j, "alike-a", ids[k]);
            ck_assert_msg(json_equal(json_object_get(j, "payload"), want), "frame %zu to %s", i,
                          ids[k]);
            ck_assert_int_eq((int)json_object_size(j), 4);
            json_decref(j);
        }
    }
    json_decref(want);
    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
}
END_TEST

START_TEST(test_expire_after_the_timeout)
{
    wsc_t *a = pj_open(gw1, "lonely", "t-lonely");
    long long t0 = mono_ms();
    pj_send(a, "OFFER", "nobody", "{\"connectionId\":\"dc_x\"}");
    pj_send(a, "CANDIDATE", "nobody", "{\"candidate\":{}}");
    json_t *j = pj_expect(a, "EXPIRE");
    long long waited = mono_ms() - t0;
    expect_from(j, "nobody", "lonely");
    json_decref(j);
    /* Held for the 5 s PeerJS keeps messages, and answered once per peer. */
    ck_assert_msg(waited >= 4900, "EXPIRE after %lld ms", waited);
    ck_assert_ptr_null(wsc_recv_json(a, 1000));
    /* LEAVE to an absent peer is dropped, as PeerJS server does: no EXPIRE. */
    pj_send(a, "LEAVE", "nobody-else", NULL);
    ck_assert_ptr_null(wsc_recv_json(a, 6000));
    wsc_free(a);
}
END_TEST

START_TEST(test_leave_without_dst_frees_the_id)
{
    wsc_t *a = pj_open(gw1, "goer", "t-1");
    pj_send(a, "LEAVE", NULL, NULL);
    ck_assert(wsc_wait_closed(a, T_MS));
    wsc_free(a);
    /* The id is free again, for any token, once the owner has the leave: it
     * travels from gw-1 while this join goes from gw-2, so the first tries may
     * still find the id taken. */
    long long deadline = mono_ms() + T_MS;
    for (;;) {
        wsc_t *b = pj_connect(gw2, "peerjs", "goer", "t-2");
        ck_assert_ptr_nonnull(b);
        json_t *j = wsc_recv_json(b, T_MS);
        ck_assert_ptr_nonnull(j);
        const char *t = json_string_value(json_object_get(j, "type"));
        int open = t && !strcmp(t, "OPEN");
        ck_assert_msg(open || (t && !strcmp(t, "ID-TAKEN")), "got %s", t ? t : "?");
        json_decref(j);
        wsc_free(b);
        if (open)
            break;
        ck_assert_msg(mono_ms() < deadline, "the id is still taken %d ms after LEAVE", T_MS);
    }
}
END_TEST

START_TEST(test_invalid_key_and_missing_parameters)
{
    wsc_t *c = pj_connect(gw1, "not-a-key", "k1", "t");
    ck_assert_ptr_nonnull(c);
    json_t *j = pj_expect(c, "ERROR");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "payload"), "msg")),
                     "Invalid key provided");
    json_decref(j);
    ck_assert(wsc_wait_closed(c, T_MS));
    wsc_free(c);

    c = wsc_connect_path(cl.gw_port[gw1], "/peerjs?key=peerjs&id=k2", NULL, T_MS);
    ck_assert_ptr_nonnull(c);
    json_decref(pj_expect(c, "ERROR"));
    ck_assert(wsc_wait_closed(c, T_MS));
    wsc_free(c);
}
END_TEST

START_TEST(test_http_id_and_peers)
{
    char *body1 = NULL, *body2 = NULL, *body3 = NULL;
    ck_assert_int_eq(
        http_request(cl.gw_port[gw1], "GET", "/peerjs/id?ts=1&version=1.5.4", NULL, NULL, &body1),
        200);
    ck_assert_int_eq(http_request(cl.gw_port[gw2], "GET", "/peerjs/id", NULL, NULL, &body2), 200);
    ck_assert_ptr_nonnull(body1);
    ck_assert_ptr_nonnull(body2);
    ck_assert_int_eq((int)strlen(body1), 36); /* a UUID, as PeerJS server gives */
    ck_assert_str_ne(body1, body2);
    /* The id works as a peer id. */
    wsc_t *c = pj_open(gw1, body1, "t");
    wsc_free(c);
    /* Discovery is off, as PeerJS server's default. */
    ck_assert_int_eq(http_request(cl.gw_port[gw1], "GET", "/peerjs/peers", NULL, NULL, &body3),
                     401);
    free(body1);
    free(body2);
    free(body3);
    /* Keys not configured have no endpoint. */
    ck_assert_int_eq(http_request(cl.gw_port[gw1], "GET", "/other/id", NULL, NULL, NULL), 404);
}
END_TEST

START_TEST(test_gateway_killed_client_reconnects_and_keeps_its_id)
{
    const char *dev[] = {"--insecure-dev", NULL};
    int gw3 = cluster_add_gateway(&cl, "gw-3", dev);
    ck_assert_int_ge(gw3, 0);
    wsc_t *a = pj_open(gw3, "survivor", "t-survivor");
    wsc_t *b = pj_open(gw1, "witness", "t-witness");
    cluster_kill_gateway(&cl, gw3);
    ck_assert(wsc_wait_closed(a, T_MS));
    wsc_free(a);
    /* The id stays taken for anybody else while its owner may come back... */
    wsc_t *thief = pj_connect(gw2, "peerjs", "survivor", "t-other");
    ck_assert_ptr_nonnull(thief);
    json_decref(pj_expect(thief, "ID-TAKEN"));
    wsc_free(thief);
    /* ...and the client, reconnecting to another gateway with its token, keeps it. */
    wsc_t *again = pj_open(gw2, "survivor", "t-survivor");
    pj_send(b, "OFFER", "survivor", "{\"n\":2}");
    json_t *j = pj_expect(again, "OFFER");
    expect_from(j, "witness", "survivor");
    json_decref(j);
    wsc_free(again);
    wsc_free(b);
}
END_TEST

static char *mint(const char *sub, const char *ns)
{
    return test_jwt_mint(JWT_SECRET, sub, ns, 600, NULL);
}

START_TEST(test_jwt_as_the_peerjs_token)
{
    /* A gateway that verifies tokens: the PeerJS token is a meshsig JWT for the id. */
    char *tok = mint("jwt-peer", "peerjs.peerjs");
    wsc_t *a = pj_connect(gw_auth, "peerjs", "jwt-peer", tok);
    ck_assert_ptr_nonnull(a);
    json_decref(pj_expect(a, "OPEN"));
    /* It reaches peers on dev gateways of the same cluster. */
    wsc_t *b = pj_open(gw1, "jwt-friend", "t-friend");
    pj_send(a, "OFFER", "jwt-friend", "{\"n\":3}");
    json_t *j = pj_expect(b, "OFFER");
    expect_from(j, "jwt-peer", "jwt-friend");
    json_decref(j);
    /* Another id than the token's sub, or no JWT at all: ERROR, closed. */
    wsc_t *c = pj_connect(gw_auth, "peerjs", "someone-else", tok);
    ck_assert_ptr_nonnull(c);
    json_decref(pj_expect(c, "ERROR"));
    ck_assert(wsc_wait_closed(c, T_MS));
    wsc_free(c);
    c = pj_connect(gw_auth, "peerjs", "no-jwt", "random-token");
    ck_assert_ptr_nonnull(c);
    json_decref(pj_expect(c, "ERROR"));
    ck_assert(wsc_wait_closed(c, T_MS));
    wsc_free(c);
    wsc_free(a);
    wsc_free(b);
    free(tok);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("peerjs");
    TCase *tc = tcase_create("protocol");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_open_and_signal_across_gateways);
    tcase_add_test(tc, test_id_taken_and_same_token_reclaims);
    tcase_add_test(tc, test_message_kept_for_a_peer_that_connects_later);
    tcase_add_test(tc, test_same_gateway_signals_stay_on_the_gateway_and_in_order);
    tcase_add_test(tc, test_fast_and_full_paths_deliver_alike);
    tcase_add_test(tc, test_expire_after_the_timeout);
    tcase_add_test(tc, test_leave_without_dst_frees_the_id);
    tcase_add_test(tc, test_invalid_key_and_missing_parameters);
    tcase_add_test(tc, test_http_id_and_peers);
    tcase_add_test(tc, test_jwt_as_the_peerjs_token);
    tcase_add_test(tc, test_gateway_killed_client_reconnects_and_keeps_its_id);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (wsc_global_init() != 0)
        return EXIT_FAILURE;
    SRunner *sr = srunner_create(suite());
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    wsc_global_cleanup();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

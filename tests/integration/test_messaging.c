/* SPDX-License-Identifier: Apache-2.0 */
/* Peer messaging end to end, peers on different gateways: emit/ack, rooms, services, topics,
 * streams with credit, notices when the target leaves, duplicate-id policies. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

static cluster_t cl;
static int g1, g2;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    const char *dev[] = {"--insecure-dev", NULL};
    g1 = cluster_add_gateway(&cl, "gw-a", dev);
    g2 = cluster_add_gateway(&cl, "gw-b", dev);
    ck_assert_int_ge(g1, 0);
    ck_assert_int_ge(g2, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* Two peers in ns on different gateways, topology events consumed. */
static void pair(const char *ns, wsc_t **a, wsc_t **b)
{
    *a = join_as(cl.gw_port[g1], ns, "alice");
    *b = join_as(cl.gw_port[g2], ns, "bob");
    expect_connect(*a, "bob", 1);
    expect_connect(*b, "alice", 0);
}

START_TEST(emit_with_ack)
{
    wsc_t *a, *b;
    pair("emit", &a, &b);
    send_json(a, "{\"id\":\"e1\",\"emit\":{\"to\":\"bob\",\"event\":\"hi\",\"data\":{\"n\":1},"
                 "\"ackId\":\"k1\"}}");
    /* The request's reply, then the ack as its own message (README "Wire protocol"). */
    json_t *j = expect_key(a, "ok");
    ck_assert_str_eq(str_at(j, "id", NULL), "e1");
    ck_assert(json_is_true(json_object_get(json_object_get(j, "ok"), "delivered")));
    json_decref(j);
    j = expect_key(b, "emit");
    ck_assert_str_eq(str_at(j, "emit", "from", NULL), "alice");
    ck_assert_str_eq(str_at(j, "emit", "event", NULL), "hi");
    ck_assert_str_eq(str_at(j, "emit", "ackId", NULL), "k1");
    ck_assert_int_eq(json_integer_value(
                         json_object_get(json_object_get(json_object_get(j, "emit"), "data"), "n")),
                     1);
    json_decref(j);
    send_json(b, "{\"ack\":{\"ackId\":\"k1\",\"to\":\"alice\",\"data\":\"got it\"}}");
    j = expect_key(a, "ack");
    ck_assert_str_eq(str_at(j, "ack", "ackId", NULL), "k1");
    ck_assert_str_eq(str_at(j, "ack", "from", NULL), "bob");
    ck_assert_str_eq(str_at(j, "ack", "data", NULL), "got it");
    json_decref(j);
    /* A second ack for the same emit is refused, not delivered. */
    send_json(b, "{\"id\":\"dup\",\"ack\":{\"ackId\":\"k1\",\"to\":\"alice\"}}");
    expect_error(b, "BAD_REQUEST", "dup");
    expect_quiet(a, 200);
    /* An error ack reaches the sender as an error. */
    send_json(a, "{\"emit\":{\"to\":\"bob\",\"event\":\"x\",\"ackId\":\"k2\"}}");
    json_decref(expect_key(b, "emit"));
    send_json(b, "{\"ack\":{\"ackId\":\"k2\",\"to\":\"alice\",\"error\":{\"code\":\"FORBIDDEN\","
                 "\"message\":\"no\"}}}");
    j = expect_key(a, "ack");
    ck_assert_str_eq(str_at(j, "ack", "error", "code", NULL), "FORBIDDEN");
    json_decref(j);
    /* Absent target: at once. */
    send_json(a, "{\"id\":\"e3\",\"emit\":{\"to\":\"nobody\",\"event\":\"x\"}}");
    expect_error(a, "PEER_NOT_FOUND", "e3");
    wsc_free(a);
    wsc_free(b);
}
END_TEST

START_TEST(ack_timeout_and_peer_left)
{
    wsc_t *a, *b;
    pair("acktime", &a, &b);
    send_json(a,
              "{\"emit\":{\"to\":\"bob\",\"event\":\"slow\",\"ackId\":\"t1\",\"timeoutMs\":300}}");
    json_decref(expect_key(b, "emit"));
    json_t *j = expect_key(a, "ack");
    ck_assert_str_eq(str_at(j, "ack", "error", "code", NULL), "ACK_TIMEOUT");
    ck_assert_str_eq(str_at(j, "ack", "ackId", NULL), "t1");
    json_decref(j);
    /* The target leaves while an ack is pending: PEER_LEFT at once, not after 10 s. */
    send_json(a, "{\"emit\":{\"to\":\"bob\",\"event\":\"x\",\"ackId\":\"t2\"}}");
    json_decref(expect_key(b, "emit"));
    wsc_free(b);
    j = skip_to(a, "ack");
    ck_assert_str_eq(str_at(j, "ack", "error", "code", NULL), "PEER_LEFT");
    ck_assert_str_eq(str_at(j, "ack", "ackId", NULL), "t2");
    json_decref(j);
    wsc_free(a);
}
END_TEST

START_TEST(rooms)
{
    wsc_t *a, *b;
    pair("rooms", &a, &b);
    wsc_t *c = join_as(cl.gw_port[g2], "rooms", "carol");
    expect_connect(a, "carol", 1);
    expect_connect(b, "carol", 1);
    expect_connect(c, "alice", 0);
    expect_connect(c, "bob", 0);
    send_json(a, "{\"id\":\"r1\",\"room\":{\"join\":{\"room\":\"lobby\"}}}");
    json_t *j = expect_key(a, "room");
    ck_assert_str_eq(str_at(j, "id", NULL), "r1");
    ck_assert_uint_eq(json_array_size(json_object_get(
                          json_object_get(json_object_get(j, "room"), "members"), "peers")),
                      1);
    json_decref(j);
    send_json(b, "{\"id\":\"r2\",\"room\":{\"join\":{\"room\":\"lobby\"}}}");
    json_decref(expect_key(b, "room"));
    j = expect_key(a, "room");
    ck_assert_str_eq(str_at(j, "room", "peerJoined", "peer", NULL), "bob");
    json_decref(j);
    /* Not echoed to the sender, not sent to non-members. */
    send_json(a, "{\"room\":{\"emit\":{\"room\":\"lobby\",\"event\":\"m\",\"data\":\"hello\"}}}");
    j = expect_key(b, "room");
    ck_assert_str_eq(str_at(j, "room", "emit", "from", NULL), "alice");
    ck_assert_str_eq(str_at(j, "room", "emit", "data", NULL), "hello");
    json_decref(j);
    expect_quiet(a, 200);
    expect_quiet(c, 10);
    /* With echo the sender gets it too. */
    send_json(a, "{\"room\":{\"emit\":{\"room\":\"lobby\",\"event\":\"m\",\"echo\":true}}}");
    json_decref(expect_key(a, "room"));
    json_decref(expect_key(b, "room"));
    /* Non-members may not emit; anyone may list. */
    send_json(c, "{\"id\":\"x\",\"room\":{\"emit\":{\"room\":\"lobby\",\"event\":\"m\"}}}");
    expect_error(c, "FORBIDDEN", "x");
    send_json(c, "{\"id\":\"l\",\"room\":{\"list\":{\"room\":\"lobby\"}}}");
    j = expect_key(c, "room");
    ck_assert_uint_eq(json_array_size(json_object_get(
                          json_object_get(json_object_get(j, "room"), "members"), "peers")),
                      2);
    json_decref(j);
    /* Leave: the others are told. */
    send_json(b, "{\"id\":\"bl\",\"room\":{\"leave\":{\"room\":\"lobby\"}}}");
    json_decref(expect_key(b, "ok"));
    j = expect_key(a, "room");
    ck_assert_str_eq(str_at(j, "room", "peerLeft", "peer", NULL), "bob");
    json_decref(j);
    wsc_free(a);
    wsc_free(b);
    wsc_free(c);
}
END_TEST

START_TEST(services)
{
    wsc_t *a, *b;
    pair("svc", &a, &b);
    wsc_t *c = join_as(cl.gw_port[g1], "svc", "carol");
    expect_connect(a, "carol", 1);
    expect_connect(b, "carol", 1);
    expect_connect(c, "alice", 0);
    expect_connect(c, "bob", 0);
    /* No provider: the request is answered, and the call's outcome is its reply, keyed by
     * callId, as when a provider leaves mid-call. */
    send_json(a, "{\"id\":\"c0\",\"service\":{\"call\":{\"service\":\"echo\",\"callId\":\"0\"}}}");
    json_decref(expect_key(a, "ok"));
    json_t *r0 = expect_key(a, "service");
    ck_assert_str_eq(str_at(r0, "service", "reply", "callId", NULL), "0");
    ck_assert_str_eq(str_at(r0, "service", "reply", "error", "code", NULL), "SERVICE_UNAVAILABLE");
    json_decref(r0);
    send_json(b, "{\"id\":\"reg\",\"service\":{\"register\":{\"service\":\"echo\"}}}");
    json_decref(expect_key(b, "ok"));
    send_json(c, "{\"id\":\"reg\",\"service\":{\"register\":{\"service\":\"echo\"}}}");
    json_decref(expect_key(c, "ok"));
    /* Two calls are spread over the two providers. */
    send_json(a, "{\"service\":{\"call\":{\"service\":\"echo\",\"callId\":\"1\",\"args\":[1]}}}");
    send_json(a, "{\"service\":{\"call\":{\"service\":\"echo\",\"callId\":\"2\",\"args\":[2]}}}");
    json_t *cb = expect_key(b, "service"), *cc = expect_key(c, "service");
    ck_assert_str_eq(str_at(cb, "service", "call", "from", NULL), "alice");
    ck_assert_str_eq(str_at(cc, "service", "call", "from", NULL), "alice");
    char idb[64], idc[64];
    snprintf(idb, sizeof(idb), "%s", str_at(cb, "service", "call", "callId", NULL));
    snprintf(idc, sizeof(idc), "%s", str_at(cc, "service", "call", "callId", NULL));
    json_decref(cb);
    json_decref(cc);
    /* A provider may only answer its own call. */
    send_json(c, "{\"id\":\"bad\",\"service\":{\"reply\":{\"callId\":\"%s\",\"result\":0}}}", idb);
    expect_error(c, "BAD_REQUEST", "bad");
    send_json(b, "{\"service\":{\"reply\":{\"callId\":\"%s\",\"result\":\"from bob\"}}}", idb);
    json_t *r = expect_key(a, "service");
    ck_assert_str_eq(str_at(r, "service", "reply", "result", NULL), "from bob");
    const char *first = str_at(r, "service", "reply", "callId", NULL);
    ck_assert(!strcmp(first, "1") || !strcmp(first, "2"));
    json_decref(r);
    /* The other provider leaves mid-call: SERVICE_UNAVAILABLE at once. */
    wsc_free(c);
    r = skip_to(a, "service");
    ck_assert_str_eq(str_at(r, "service", "reply", "error", "code", NULL), "SERVICE_UNAVAILABLE");
    json_decref(r);
    (void)idc;
    /* Timeout. */
    send_json(a,
              "{\"service\":{\"call\":{\"service\":\"echo\",\"callId\":\"3\",\"timeoutMs\":300}}}");
    json_decref(skip_to(b, "service"));
    r = skip_to(a, "service");
    ck_assert_str_eq(str_at(r, "service", "reply", "error", "code", NULL), "TIMEOUT");
    ck_assert_str_eq(str_at(r, "service", "reply", "callId", NULL), "3");
    json_decref(r);
    wsc_free(a);
    wsc_free(b);
}
END_TEST

START_TEST(topics)
{
    wsc_t *a, *b;
    pair("topics", &a, &b);
    send_json(b, "{\"id\":\"s1\",\"topic\":{\"subscribe\":{\"pattern\":\"news.*\"}}}");
    json_decref(expect_key(b, "ok"));
    send_json(b, "{\"id\":\"s2\",\"topic\":{\"subscribe\":{\"pattern\":\"sport.>\"}}}");
    json_decref(expect_key(b, "ok"));
    send_json(b, "{\"id\":\"s3\",\"topic\":{\"subscribe\":{\"pattern\":\"a.>.b\"}}}");
    expect_error(b, "BAD_REQUEST", "s3");
    send_json(a, "{\"topic\":{\"publish\":{\"topic\":\"news.world\",\"data\":1}}}");
    json_t *j = expect_key(b, "topic");
    ck_assert_str_eq(str_at(j, "topic", "publish", "topic", NULL), "news.world");
    ck_assert_str_eq(str_at(j, "topic", "publish", "from", NULL), "alice");
    json_decref(j);
    /* Two of b's patterns match the next one: delivered once. */
    send_json(b, "{\"id\":\"s4\",\"topic\":{\"subscribe\":{\"pattern\":\"sport.*.final\"}}}");
    json_decref(expect_key(b, "ok"));
    send_json(a, "{\"topic\":{\"publish\":{\"topic\":\"news.world.eu\",\"data\":2}}}");
    send_json(a, "{\"topic\":{\"publish\":{\"topic\":\"sport.tennis.final\",\"data\":3}}}");
    j = expect_key(b, "topic");
    ck_assert_str_eq(str_at(j, "topic", "publish", "topic", NULL), "sport.tennis.final");
    json_decref(j);
    expect_quiet(b, 300);
    send_json(b, "{\"id\":\"u\",\"topic\":{\"unsubscribe\":{\"pattern\":\"news.*\"}}}");
    json_decref(expect_key(b, "ok"));
    send_json(a, "{\"topic\":{\"publish\":{\"topic\":\"news.world\",\"data\":4}}}");
    expect_quiet(b, 300);
    send_json(a, "{\"id\":\"p\",\"topic\":{\"publish\":{\"topic\":\"bad.*\"}}}");
    expect_error(a, "BAD_REQUEST", "p");
    wsc_free(a);
    wsc_free(b);
}
END_TEST

START_TEST(streams_with_credit)
{
    wsc_t *a, *b;
    pair("streams", &a, &b);
    send_json(a, "{\"id\":\"o\",\"stream\":{\"streamId\":\"s1\",\"open\":{\"to\":\"bob\","
                 "\"label\":\"file\"}}}");
    json_t *j = expect_key(b, "stream");
    ck_assert_str_eq(str_at(j, "stream", "open", "from", NULL), "alice");
    ck_assert_str_eq(str_at(j, "stream", "streamId", NULL), "alice/s1");
    json_decref(j);
    json_decref(expect_key(a, "ok"));
    /* No credit yet: the sender is refused, nothing is buffered. */
    send_json(a,
              "{\"id\":\"d0\",\"stream\":{\"streamId\":\"s1\",\"data\":{\"data\":\"aGVsbG8=\"}}}");
    expect_error(a, "NO_CREDIT", "d0");
    expect_quiet(b, 200);
    /* The receiver grants 5 bytes: the sender learns it; 5 pass, the 6th does not. */
    send_json(b, "{\"stream\":{\"streamId\":\"alice/s1\",\"credit\":{\"bytes\":5}}}");
    j = expect_key(a, "stream");
    ck_assert_str_eq(str_at(j, "stream", "streamId", NULL), "s1");
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(json_object_get(j, "stream"), "credit"), "bytes")),
                     5);
    json_decref(j);
    send_json(a, "{\"stream\":{\"streamId\":\"s1\",\"data\":{\"data\":\"aGVsbG8=\"}}}");
    j = expect_key(b, "stream");
    ck_assert_str_eq(str_at(j, "stream", "data", "data", NULL), "aGVsbG8=");
    json_decref(j);
    send_json(a, "{\"id\":\"d2\",\"stream\":{\"streamId\":\"s1\",\"data\":{\"data\":\"eA==\"}}}");
    expect_error(a, "NO_CREDIT", "d2");
    /* Close from the receiver reaches the opener. */
    send_json(b, "{\"stream\":{\"streamId\":\"alice/s1\",\"close\":{}}}");
    j = expect_key(a, "stream");
    ck_assert_ptr_nonnull(json_object_get(json_object_get(j, "stream"), "close"));
    json_decref(j);
    send_json(a, "{\"id\":\"d3\",\"stream\":{\"streamId\":\"s1\",\"data\":{\"data\":\"eA==\"}}}");
    expect_error(a, "STREAM_NOT_FOUND", "d3");
    /* A stream whose other end disconnects is aborted with PEER_LEFT. */
    send_json(a, "{\"stream\":{\"streamId\":\"s2\",\"open\":{\"to\":\"bob\"}}}");
    json_decref(expect_key(b, "stream"));
    wsc_free(b);
    j = skip_to(a, "stream");
    ck_assert_str_eq(str_at(j, "stream", "close", "error", "code", NULL), "PEER_LEFT");
    json_decref(j);
    wsc_free(a);
}
END_TEST

START_TEST(duplicate_id_replace)
{
    ck_assert_int_eq(http_request(cl.admin_port, "PUT", "/v1/namespaces/dup/policy", NULL,
                                  "{\"duplicateIds\":\"replace\"}", NULL),
                     200);
    wsc_t *a, *b;
    pair("dup", &a, &b);
    send_json(a, "{\"id\":\"r\",\"room\":{\"join\":{\"room\":\"r\"}}}");
    json_decref(expect_key(a, "room"));
    /* A second alice on the other gateway replaces the first. */
    wsc_t *a2 = join_as(cl.gw_port[g2], "dup", "alice");
    expect_error(a, "REPLACED", NULL);
    ck_assert(wsc_wait_closed(a, T_MS));
    ck_assert_int_eq(wsc_close_code(a), 4001);
    expect_connect(a2, "bob", 1);
    json_t *j = recv_json(b);
    ck_assert_str_eq(str_at(j, "topology", "disconnect", "peer", NULL), "alice");
    json_decref(j);
    expect_connect(b, "alice", 0);
    /* It keeps its rooms and relays as alice. */
    send_json(a2, "{\"id\":\"l\",\"room\":{\"list\":{\"room\":\"r\"}}}");
    j = expect_key(a2, "room");
    ck_assert_str_eq(
        json_string_value(json_array_get(
            json_object_get(json_object_get(json_object_get(j, "room"), "members"), "peers"), 0)),
        "alice");
    json_decref(j);
    send_json(a2, "{\"signal\":{\"to\":\"bob\",\"payload\":1}}");
    j = expect_key(b, "signal");
    ck_assert_str_eq(str_at(j, "signal", "from", NULL), "alice");
    json_decref(j);
    /* The old session's close does not remove the new one. */
    expect_quiet(b, 300);
    wsc_free(a);
    wsc_free(a2);
    wsc_free(b);
}
END_TEST

/* An emit to an absent peer is kept (in JetStream) across a coordinator
 * restart and delivered, in order and with a message id, when it joins. */
START_TEST(persistent_emit_survives_restart)
{
    wsc_t *a = join_as(cl.gw_port[g1], "offline", "alice");
    send_json(a, "{\"id\":\"p0\",\"emit\":{\"to\":\"zoe\",\"event\":\"x\"}}");
    expect_error(a, "PEER_NOT_FOUND", "p0");
    for (int i = 1; i <= 3; i++) {
        send_json(a,
                  "{\"id\":\"p%d\",\"emit\":{\"to\":\"zoe\",\"event\":\"note\","
                  "\"data\":%d,\"persistent\":true}}",
                  i, i);
        json_decref(expect_key(a, "ok"));
    }
    wsc_free(a);
    wsc_pump(300); /* the stores are asynchronous */
    ck_assert_int_eq(cluster_restart_coordinator(&cl, 0), 0);
    wsc_t *z = join_as(cl.gw_port[g2], "offline", "zoe");
    char ids[3][64];
    for (int i = 1; i <= 3; i++) {
        json_t *j = expect_key(z, "emit");
        ck_assert_str_eq(str_at(j, "emit", "from", NULL), "alice");
        ck_assert_str_eq(str_at(j, "emit", "event", NULL), "note");
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "emit"), "data")),
                         i);
        snprintf(ids[i - 1], sizeof(ids[0]), "%s", str_at(j, "emit", "msgId", NULL));
        ck_assert_uint_gt(strlen(ids[i - 1]), 0);
        json_decref(j);
    }
    ck_assert_str_ne(ids[0], ids[1]);
    ck_assert_str_ne(ids[1], ids[2]);
    expect_quiet(z, 300);
    /* Delivered once: a second join gets nothing. */
    wsc_free(z);
    ck_assert_int_eq(cluster_wait_peer_gone(&cl, "offline", "zoe", 10000), 0);
    z = join_as(cl.gw_port[g1], "offline", "zoe");
    expect_quiet(z, 1000);
    wsc_free(z);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("messaging");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, emit_with_ack);
    tcase_add_test(tc, ack_timeout_and_peer_left);
    tcase_add_test(tc, rooms);
    tcase_add_test(tc, services);
    tcase_add_test(tc, topics);
    tcase_add_test(tc, streams_with_credit);
    tcase_add_test(tc, duplicate_id_replace);
    /* Last: it restarts the coordinator. */
    tcase_add_test(tc, persistent_emit_survives_restart);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

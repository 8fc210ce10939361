/* SPDX-License-Identifier: Apache-2.0 */
/* Input limits through real gateways: deep, long and wide payloads on the protobuf and JSON paths.
 */
#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

#include "bus.pb-c.h"
#include "busver.h"
#include "client.pb-c.h"
#include "cluster.h"
#include "rawws.h"
#include "testutil.h"
#include "wsclient.h"

static cluster_t cl;
static int g1, g2;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    /* Frames up to 256 KiB, so the string limit (64 KiB) is reachable. */
    const char *args[] = {"--insecure-dev", "--max-frame", "262144", NULL};
    g1 = cluster_add_gateway(&cl, "gw-l1", args);
    g2 = cluster_add_gateway(&cl, "gw-l2", args);
    ck_assert_int_ge(g1, 0);
    ck_assert_int_ge(g2, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* ---- hand-made protobuf: what a hostile binary client can send ---------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

/* Puts n bytes in front of what b holds (messages are built inside out). */
static void prepend(buf_t *b, const void *d, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2 + 64;
        uint8_t *np = malloc(cap);
        ck_assert_ptr_nonnull(np);
        if (b->len)
            memcpy(np + cap - b->len, b->p + b->cap - b->len, b->len);
        free(b->p);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->cap - b->len - n, d, n);
    b->len += n;
}

/* Wraps what b holds as field `field` (length-delimited). */
static void wrap(buf_t *b, unsigned field)
{
    uint8_t v[12];
    size_t n = 0;
    v[n++] = (uint8_t)(field << 3 | 2);
    uint8_t l[10];
    size_t ln = 0;
    for (size_t x = b->len;; x >>= 7) {
        l[ln++] = (uint8_t)((x & 0x7f) | (x > 0x7f ? 0x80 : 0));
        if (x <= 0x7f)
            break;
    }
    memcpy(v + n, l, ln);
    prepend(b, v, n + ln);
}

static const uint8_t *data_of(const buf_t *b)
{
    return b->p + b->cap - b->len;
}

/* A Value of `levels` nested lists, [[[...null...]]]. */
static void deep_value(buf_t *b, int levels)
{
    for (int i = 0; i < levels; i++) {
        wrap(b, 1); /* ListValue.values */
        wrap(b, 6); /* Value.list_value */
    }
}

/* A ClientMessage signal to `to` whose payload is the Value in b. */
static void as_signal(buf_t *b, const char *to)
{
    wrap(b, 3); /* Signal.payload */
    uint8_t head[64];
    size_t tl = strlen(to);
    head[0] = 1 << 3 | 2; /* Signal.to */
    head[1] = (uint8_t)tl;
    memcpy(head + 2, to, tl);
    prepend(b, head, tl + 2);
    wrap(b, 3); /* ClientMessage.signal */
}

static Meshsig__V1__ServerMessage *recv_binary(wsc_t *c)
{
    size_t len;
    int bin = 0;
    char *raw = wsc_recv(c, T_MS, &len, &bin);
    ck_assert_msg(raw != NULL, "no binary message within %d ms", T_MS);
    ck_assert(bin);
    Meshsig__V1__ServerMessage *sm =
        meshsig__v1__server_message__unpack(NULL, len, (const uint8_t *)raw);
    free(raw);
    ck_assert_ptr_nonnull(sm);
    return sm;
}

static void expect_binary_error(wsc_t *c, Meshsig__V1__ErrorCode code, const char *text)
{
    Meshsig__V1__ServerMessage *sm = recv_binary(c);
    ck_assert_int_eq(sm->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR);
    ck_assert_int_eq(sm->error->code, code);
    ck_assert_msg(strstr(sm->error->message, text), "error \"%s\" does not say \"%s\"",
                  sm->error->message, text);
    meshsig__v1__server_message__free_unpacked(sm, NULL);
}

static wsc_t *binary_join(int gw, const char *ns, const char *peer)
{
    wsc_t *c = wsc_connect(cl.gw_port[gw], "meshsig.v1.proto", T_MS);
    ck_assert_ptr_nonnull(c);
    Meshsig__V1__Hello h = MESHSIG__V1__HELLO__INIT;
    h.namespace_ = (char *)ns;
    h.peer_id = (char *)peer;
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_HELLO;
    cm.hello = &h;
    uint8_t buf[512];
    size_t n = meshsig__v1__client_message__pack(&cm, buf);
    ck_assert_int_eq(wsc_send(c, buf, n, 1), 0);
    Meshsig__V1__ServerMessage *sm = recv_binary(c);
    ck_assert_int_eq(sm->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_WELCOME);
    meshsig__v1__server_message__free_unpacked(sm, NULL);
    return c;
}

/* Skips binary messages until a topology connect. */
static void binary_expect_connect(wsc_t *c)
{
    for (int i = 0; i < 10; i++) {
        Meshsig__V1__ServerMessage *sm = recv_binary(c);
        int is = sm->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY;
        meshsig__v1__server_message__free_unpacked(sm, NULL);
        if (is)
            return;
    }
    ck_abort_msg("no topology connect");
}

static void gateways_alive(void)
{
    for (int i = 0; i < cl.n_gw; i++)
        ck_assert_msg(kill(cl.gw[i], 0) == 0, "gateway %d is gone", i);
}

/* A frame of 5,000 nested lists before hello: protobuf-c's recursive unpack
 * used to overflow the stack. Now it is BAD_REQUEST naming the limit, the
 * connection stays usable and the gateway serves everyone else. */
START_TEST(deep_protobuf_before_hello)
{
    buf_t b = {0};
    deep_value(&b, 5000);
    as_signal(&b, "bob");
    ck_assert_uint_lt(b.len, 65536);
    rws_t *r = rws_connect(cl.gw_port[g1], "13", "meshsig.v1.proto", NULL, T_MS);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->status, 101);
    ck_assert_int_eq(rws_send_frame(r, RWS_FIN | 2, 1, data_of(&b), b.len), 0);
    uint8_t *p = NULL, b0;
    size_t n;
    ck_assert_int_eq(rws_recv_frame(r, T_MS, &p, &n, &b0), 2);
    Meshsig__V1__ServerMessage *sm = meshsig__v1__server_message__unpack(NULL, n, p);
    ck_assert_ptr_nonnull(sm);
    ck_assert_int_eq(sm->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR);
    ck_assert_int_eq(sm->error->code, MESHSIG__V1__ERROR_CODE__BAD_REQUEST);
    ck_assert_msg(strstr(sm->error->message, "nested deeper than 64 levels"), "%s",
                  sm->error->message);
    meshsig__v1__server_message__free_unpacked(sm, NULL);
    free(p);
    rws_free(r);
    free(b.p);
    gateways_alive();
    /* and everyone else is still served */
    wsc_t *a = join_as(cl.gw_port[g1], "after-deep", "alice");
    wsc_t *c = join_as(cl.gw_port[g2], "after-deep", "carol");
    expect_connect(a, "carol", 1);
    expect_connect(c, "alice", 0);
    send_json(a, "{\"signal\":{\"to\":\"carol\",\"payload\":1}}");
    expect_signal_from(c, "alice");
    wsc_free(a);
    wsc_free(c);
}
END_TEST

/* A logged-in binary client signals a JSON peer, on the same gateway (local
 * relay) and across gateways (through the owner): too deep, too many
 * elements, too long are each refused at the sender's gateway with
 * BAD_REQUEST naming the limit, and nothing reaches the receiver; at the
 * limits everything arrives. */
static void binary_to_json(int gw_sender, const char *ns)
{
    wsc_t *alice = join_as(cl.gw_port[g1], ns, "alice");
    wsc_t *bob = binary_join(gw_sender, ns, "bob");
    expect_connect(alice, "bob", 1);
    binary_expect_connect(bob);

    buf_t b = {0};
    deep_value(&b, 100);
    as_signal(&b, "alice");
    ck_assert_int_eq(wsc_send(bob, data_of(&b), b.len, 1), 0);
    expect_binary_error(bob, MESHSIG__V1__ERROR_CODE__BAD_REQUEST, "nested deeper than 64 levels");
    free(b.p);

    /* 16,385 nulls in one list */
    b = (buf_t){0};
    for (int i = 0; i < 16385; i++) {
        static const uint8_t empty[2] = {0x0a, 0x00};
        prepend(&b, empty, 2);
    }
    wrap(&b, 6);
    as_signal(&b, "alice");
    ck_assert_int_eq(wsc_send(bob, data_of(&b), b.len, 1), 0);
    expect_binary_error(bob, MESHSIG__V1__ERROR_CODE__BAD_REQUEST,
                        "more than 16384 elements in one array or object");
    free(b.p);

    /* a string of 65,537 bytes */
    char *big = malloc(65538);
    ck_assert_ptr_nonnull(big);
    memset(big, 'x', 65537);
    big[65537] = '\0';
    Meshsig__V1__Value sv = MESHSIG__V1__VALUE__INIT;
    sv.kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
    sv.string_value = big;
    Meshsig__V1__Signal sg = MESHSIG__V1__SIGNAL__INIT;
    sg.to = "alice";
    sg.payload = &sv;
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_SIGNAL;
    cm.signal = &sg;
    size_t n = meshsig__v1__client_message__get_packed_size(&cm);
    uint8_t *out = malloc(n);
    ck_assert_ptr_nonnull(out);
    meshsig__v1__client_message__pack(&cm, out);
    ck_assert_int_eq(wsc_send(bob, out, n, 1), 0);
    expect_binary_error(bob, MESHSIG__V1__ERROR_CODE__BAD_REQUEST,
                        "a string longer than 65536 bytes");

    /* At the limits: 62 lists in the payload (the 64th level), then a
     * string of exactly 65,536 bytes: both arrive, and first, so nothing
     * refused above reached alice. */
    b = (buf_t){0};
    deep_value(&b, 62);
    as_signal(&b, "alice");
    ck_assert_int_eq(wsc_send(bob, data_of(&b), b.len, 1), 0);
    free(b.p);
    json_t *j = expect_key(alice, "signal");
    ck_assert_str_eq(str_at(j, "signal", "from", NULL), "bob");
    json_t *v = json_object_get(json_object_get(j, "signal"), "payload");
    int depth = 0;
    while (json_is_array(v) && depth < 100) {
        depth++;
        v = json_array_get(v, 0);
    }
    ck_assert_int_eq(depth, 62);
    json_decref(j);
    big[65536] = '\0';
    n = meshsig__v1__client_message__get_packed_size(&cm);
    meshsig__v1__client_message__pack(&cm, out);
    ck_assert_int_eq(wsc_send(bob, out, n, 1), 0);
    j = expect_key(alice, "signal");
    ck_assert_uint_eq(strlen(str_at(j, "signal", "payload", NULL)), 65536);
    json_decref(j);
    free(out);
    free(big);
    gateways_alive();
    wsc_free(alice);
    wsc_free(bob);
}

START_TEST(binary_limits_same_gateway)
{
    binary_to_json(g1, "lim-local");
}
END_TEST

START_TEST(binary_limits_across_gateways)
{
    binary_to_json(g2, "lim-remote");
}
END_TEST

/* The JSON path refuses the same input with the same words: through the
 * owner, and on the gateway's own JSON-to-JSON relay (which passes payloads
 * through without decoding them). */
static void json_limits(int gw_sender, const char *ns)
{
    wsc_t *alice = join_as(cl.gw_port[g1], ns, "alice");
    wsc_t *bob = join_as(cl.gw_port[gw_sender], ns, "bob");
    expect_connect(alice, "bob", 1);
    expect_connect(bob, "alice", 0);
    size_t cap = 70000 * 2 + 256;
    char *m = malloc(cap);
    ck_assert_ptr_nonnull(m);
    size_t o = (size_t)snprintf(m, cap, "{\"signal\":{\"to\":\"alice\",\"payload\":");
    for (int i = 0; i < 100; i++)
        m[o++] = '[';
    for (int i = 0; i < 100; i++)
        m[o++] = ']';
    snprintf(m + o, cap - o, "}}");
    send_json(bob, "%s", m);
    json_t *j = expect_key(bob, "error");
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "BAD_REQUEST");
    ck_assert_ptr_nonnull(strstr(str_at(j, "error", "message", NULL), "nested deeper than 64"));
    json_decref(j);

    o = (size_t)snprintf(m, cap, "{\"signal\":{\"to\":\"alice\",\"payload\":[");
    for (int i = 0; i < 16385; i++) {
        memcpy(m + o, i ? ",0" : "0", i ? 2 : 1);
        o += i ? 2 : 1;
    }
    snprintf(m + o, cap - o, "]}}");
    ck_assert_int_eq(wsc_send_text(bob, m), 0);
    j = expect_key(bob, "error");
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "BAD_REQUEST");
    ck_assert_ptr_nonnull(
        strstr(str_at(j, "error", "message", NULL), "more than 16384 elements in one array"));
    json_decref(j);

    o = (size_t)snprintf(m, cap, "{\"signal\":{\"to\":\"alice\",\"payload\":\"");
    memset(m + o, 'y', 65537);
    o += 65537;
    snprintf(m + o, cap - o, "\"}}");
    ck_assert_int_eq(wsc_send_text(bob, m), 0);
    j = expect_key(bob, "error");
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "BAD_REQUEST");
    ck_assert_ptr_nonnull(
        strstr(str_at(j, "error", "message", NULL), "a string longer than 65536 bytes"));
    json_decref(j);
    free(m);
    send_json(bob, "{\"signal\":{\"to\":\"alice\",\"payload\":\"after\"}}");
    j = expect_key(alice, "signal");
    ck_assert_str_eq(str_at(j, "signal", "payload", NULL), "after");
    json_decref(j);
    wsc_free(alice);
    wsc_free(bob);
}

START_TEST(json_limits_same_gateway)
{
    json_limits(g1, "lim-json-local");
}
END_TEST

START_TEST(json_limits_across_gateways)
{
    json_limits(g2, "lim-json-remote");
}
END_TEST

/* A buggy or compromised process on the bus delivers a signal nested deeper
 * than the receiver's JSON can carry (the sender's gateway would have refused
 * it): the receiving gateway cannot encode it, and instead of dropping it
 * silently tells the sender, directly when the sender is its own session,
 * through the shard owner otherwise. */
static void undeliverable(int gw_sender, const char *ns)
{
    natsConnection *nc = NULL;
    natsSubscription *sub = NULL;
    nc = bus_connect(&cl);
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, "meshsig.shard.*"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);

    wsc_t *alice = join_as(cl.gw_port[g1], ns, "alice");
    /* alice's session id, from her join on the bus */
    uint64_t session = 0;
    for (int i = 0; i < 50 && !session; i++) {
        natsMsg *m = NULL;
        ck_assert_int_eq(natsSubscription_NextMsg(&m, sub, T_MS), NATS_OK);
        Meshsig__Bus__ShardRequest *rq = meshsig__bus__shard_request__unpack(
            NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
        if (rq && rq->op_case == MESHSIG__BUS__SHARD_REQUEST__OP_JOIN &&
            !strcmp(rq->namespace_, ns) && !strcmp(rq->join->peer_id, "alice"))
            session = rq->session;
        if (rq)
            meshsig__bus__shard_request__free_unpacked(rq, NULL);
        natsMsg_Destroy(m);
    }
    ck_assert_uint_ne(session, 0);
    natsSubscription_Destroy(sub);
    wsc_t *bob = join_as(cl.gw_port[gw_sender], ns, "bob");
    expect_connect(alice, "bob", 1);
    expect_connect(bob, "alice", 0);

    /* ServerMessage(1) > signal(2) > payload: 67 lists reach level 69, past
     * what JSON output allows (64 + 4) yet within the bus limit. */
    enum { LEVELS = 67 };
    Meshsig__V1__Value vals[LEVELS + 1];
    Meshsig__V1__ListValue lists[LEVELS];
    Meshsig__V1__Value *ptrs[LEVELS];
    for (int i = 0; i <= LEVELS; i++)
        meshsig__v1__value__init(&vals[i]);
    for (int i = 0; i < LEVELS; i++) {
        meshsig__v1__list_value__init(&lists[i]);
        vals[i].kind_case = MESHSIG__V1__VALUE__KIND_LIST_VALUE;
        vals[i].list_value = &lists[i];
        ptrs[i] = &vals[i + 1];
        lists[i].n_values = 1;
        lists[i].values = &ptrs[i];
    }
    Meshsig__V1__Signal sg = MESHSIG__V1__SIGNAL__INIT;
    sg.from = "bob";
    sg.payload = &vals[0];
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL;
    sm.signal = &sg;
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    d.session = session;
    d.peer_id = "alice";
    d.msg = &sm;
    Meshsig__Bus__Delivery *dp = &d;
    Meshsig__Bus__GatewayBatch b = MESHSIG__BUS__GATEWAY_BATCH__INIT;
    b.shard = 65535; /* no shard of this cluster: no epoch to fence against */
    b.coordinator_id = "rogue";
    b.bus_version = MS_BUS_VERSION; /* a peer of this bus version, only buggy */
    b.n_deliveries = 1;
    b.deliveries = &dp;
    size_t n = meshsig__bus__gateway_batch__get_packed_size(&b);
    uint8_t *out = malloc(n);
    ck_assert_ptr_nonnull(out);
    meshsig__bus__gateway_batch__pack(&b, out);
    ck_assert_int_eq(natsConnection_Publish(nc, "meshsig.gw.gw-l1", out, (int)n), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(nc), NATS_OK);
    free(out);

    json_t *j = expect_key(bob, "error");
    ck_assert_str_eq(str_at(j, "error", "code", NULL), "BAD_REQUEST");
    ck_assert_msg(strstr(str_at(j, "error", "message", NULL), "signal to alice not delivered"),
                  "%s", str_at(j, "error", "message", NULL));
    json_decref(j);
    /* alice got nothing before the next good signal */
    send_json(bob, "{\"signal\":{\"to\":\"alice\",\"payload\":\"next\"}}");
    j = expect_key(alice, "signal");
    ck_assert_str_eq(str_at(j, "signal", "payload", NULL), "next");
    json_decref(j);
    gateways_alive();
    natsConnection_Destroy(nc);
    wsc_free(alice);
    wsc_free(bob);
}

START_TEST(undeliverable_same_gateway)
{
    undeliverable(g1, "undeliverable-local");
}
END_TEST

START_TEST(undeliverable_across_gateways)
{
    undeliverable(g2, "undeliverable-remote");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("limits");
    TCase *tc = tcase_create("cluster");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, deep_protobuf_before_hello);
    tcase_add_test(tc, binary_limits_same_gateway);
    tcase_add_test(tc, binary_limits_across_gateways);
    tcase_add_test(tc, json_limits_same_gateway);
    tcase_add_test(tc, json_limits_across_gateways);
    tcase_add_test(tc, undeliverable_same_gateway);
    tcase_add_test(tc, undeliverable_across_gateways);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The reply rule (README "Wire protocol"), driven from one table: a request with an id gets
 * exactly one reply echoing it, within a bound, in both encodings; outcomes that come later
 * arrive keyed by ackId/callId/streamId; and the order of every message kind between two
 * peers, on one gateway and across two.
 *
 * The table must have a row for every request a client can send: the test walks the
 * ClientMessage oneof in the generated descriptor (and the oneofs of room, stream, service and
 * topic) and fails for a field without a row, so a new message type cannot be added without
 * saying what it answers. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client.pb-c.h"
#include "cluster.h"
#include "codec.h"
#include "testutil.h"
#include "wsclient.h"

#define REPLY_BOUND_MS 5000 /* a reply later than this fails the row */
#define MAX_PEERS 4

static cluster_t cl;
static int g1, g2, g_slow;

static void cluster_up(void)
{
    ck_assert_int_eq(cluster_start(&cl, NULL), 0);
    /* The order test sends bursts far over the default rate limit. */
    const char *dev[] = {"--insecure-dev", "--rate-msgs", "100000", NULL};
    g1 = cluster_add_gateway(&cl, "gw-a", dev);
    g2 = cluster_add_gateway(&cl, "gw-b", dev);
    /* One message a second (a burst of 2): the third quick request is over the rate. */
    const char *slow[] = {"--insecure-dev", "--rate-msgs", "1", NULL};
    g_slow = cluster_add_gateway(&cl, "gw-slow", slow);
    ck_assert_int_ge(g1, 0);
    ck_assert_int_ge(g2, 0);
    ck_assert_int_ge(g_slow, 0);
}

static void cluster_down(void)
{
    cluster_stop(&cl);
}

/* ---- a peer in either encoding, with everything it received kept ----------------------- */

typedef struct {
    const char *name;
    wsc_t *ws;
    int binary;
    json_t *log;   /* every message received, in order */
    size_t cursor; /* messages before it were looked at by a wait */
} peer_t;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void p_send(peer_t *p, const char *json)
{
    if (!p->binary) {
        ck_assert_int_eq(wsc_send_text(p->ws, json), 0);
        return;
    }
    ProtobufCMessage *m = NULL;
    ms_codec_error_t cerr = {0};
    ck_assert_msg(ms_codec_from_json(&meshsig__v1__client_message__descriptor, json, strlen(json),
                                     &m, &cerr) == MS_OK,
                  "test request not encodable: %s (%s)", json, cerr.message);
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n ? n : 1);
    ck_assert_ptr_nonnull(buf);
    protobuf_c_message_pack(m, buf);
    ck_assert_int_eq(wsc_send(p->ws, buf, n, 1), 0);
    free(buf);
    ms_codec_free(m);
}

/* One more message into the log (NULL when none came within timeout_ms). */
static json_t *p_pump(peer_t *p, int timeout_ms)
{
    json_t *j = NULL;
    if (!p->binary) {
        j = wsc_recv_json(p->ws, timeout_ms);
    } else {
        size_t len = 0;
        int bin = 0;
        char *data = wsc_recv(p->ws, timeout_ms, &len, &bin);
        if (!data)
            return NULL;
        ck_assert_msg(bin, "%s: a text frame on meshsig.v1.proto", p->name);
        Meshsig__V1__ServerMessage *m =
            meshsig__v1__server_message__unpack(NULL, len, (const uint8_t *)data);
        free(data);
        ck_assert_msg(m != NULL, "%s: undecodable binary frame", p->name);
        j = ms_codec_to_jansson(&m->base);
        meshsig__v1__server_message__free_unpacked(m, NULL);
    }
    if (j)
        json_array_append_new(p->log, j);
    return j;
}

typedef int (*match_fn)(json_t *m, const char *a, const char *b);

/* The first message at or after the cursor that matches, waiting up to bound_ms for it. */
static json_t *p_wait(peer_t *p, match_fn f, const char *a, const char *b, int bound_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)bound_ms;
    for (size_t i = p->cursor;; i++) {
        while (i >= json_array_size(p->log)) {
            uint64_t t = now_ms();
            if (t >= deadline || !p_pump(p, (int)(deadline - t)))
                return NULL;
        }
        json_t *m = json_array_get(p->log, i);
        if (f(m, a, b))
            return m;
    }
}

static int has_id(json_t *m, const char *id, const char *unused)
{
    (void)unused;
    return !strcmp(str_at(m, "id", NULL), id);
}

/* A keyed outcome: kind "ack" (ackId), "service" (reply.callId), "stream" (close, streamId),
 * "emit" / "signal" / "room" / "topic" / "service.call" at a receiver (any). */
static int is_outcome(json_t *m, const char *kind, const char *key)
{
    if (!strcmp(kind, "ack"))
        return json_object_get(m, "ack") && !strcmp(str_at(m, "ack", "ackId", NULL), key);
    if (!strcmp(kind, "service"))
        return !strcmp(str_at(m, "service", "reply", "callId", NULL), key);
    if (!strcmp(kind, "stream") && *key)
        return json_object_get(json_object_get(m, "stream"), "close") &&
               !strcmp(str_at(m, "stream", "streamId", NULL), key);
    if (!strcmp(kind, "service.call"))
        return json_object_get(json_object_get(m, "service"), "call") != NULL;
    return json_object_get(m, kind) != NULL;
}

static char *dump(json_t *j)
{
    return j ? json_dumps(j, JSON_COMPACT) : strdup("(nothing)");
}

static peer_t *p_open(peer_t *p, const char *name, int port, int binary)
{
    p->name = name;
    p->binary = binary;
    p->log = json_array();
    p->cursor = 0;
    p->ws = wsc_connect(port, binary ? "meshsig.v1.proto" : "meshsig.v1.json", T_MS);
    ck_assert_ptr_nonnull(p->ws);
    return p;
}

static void p_join(peer_t *p, const char *name, int port, int binary, const char *ns)
{
    p_open(p, name, port, binary);
    char req[256];
    snprintf(req, sizeof(req),
             "{\"id\":\"hello-%s\",\"hello\":{\"namespace\":\"%s\",\"peerId\":\"%s\"}}", name, ns,
             name);
    p_send(p, req);
    char id[64];
    snprintf(id, sizeof(id), "hello-%s", name);
    json_t *w = p_wait(p, has_id, id, NULL, REPLY_BOUND_MS);
    char *d = dump(w);
    ck_assert_msg(w && json_object_get(w, "welcome"), "%s: no welcome: %s", name, d);
    free(d);
}

static void p_close(peer_t *p)
{
    wsc_free(p->ws);
    json_decref(p->log);
    memset(p, 0, sizeof(*p));
}

/* Waits until p has heard topology.connect for each of the named peers. */
static void p_wait_connects(peer_t *p, const char *const *peers)
{
    for (size_t i = 0; peers[i]; i++) {
        uint64_t deadline = now_ms() + REPLY_BOUND_MS;
        int seen = 0;
        for (size_t k = 0; !seen; k++) {
            while (!seen && k >= json_array_size(p->log)) {
                uint64_t t = now_ms();
                ck_assert_msg(t < deadline && p_pump(p, (int)(deadline - t)),
                              "%s: no topology.connect for %s", p->name, peers[i]);
            }
            json_t *m = json_array_get(p->log, k);
            seen = !strcmp(str_at(m, "topology", "connect", "peer", NULL), peers[i]);
        }
    }
}

/* ---- the table ---------------------------------------------------------------------------- */

enum { ALICE, BOB, CAROL, DAVE }; /* alice, carol on gw-a; bob, dave on gw-b */

typedef struct ctx {
    peer_t p[MAX_PEERS];
    const char *ns;
    int binary;
    char var[128]; /* a value one row captures for a later one (a server-made call id) */
} ctx_t;

typedef struct row {
    const char *leaf;  /* ClientMessage oneof field, "room.join" for a nested one */
    int who;           /* the sender */
    const char *req;   /* JSON; %1$s is the request id, %2$s ctx->var */
    const char *reply; /* the reply's key: ok, pong, welcome, room or error */
    const char *code;  /* error: its code; ok: a result field that must be true (or NULL) */
    /* A later message the row expects: kind (is_outcome) and key, at peer `at`, with error
     * code outcome_code (NULL: no error). */
    const char *outcome, *outcome_key, *outcome_code;
    int at;
    /* Runs before the request (a fresh connection for hello) and after the reply. */
    void (*before)(ctx_t *);
    void (*after)(ctx_t *, json_t *outcome);
} row_t;

static void dave_connects(ctx_t *x)
{
    p_open(&x->p[DAVE], "dave", cl.gw_port[g2], x->binary);
}

static void dave_joined(ctx_t *x, json_t *o)
{
    (void)o;
    static const char *const others[] = {"alice", "bob", "carol", NULL};
    static const char *const dave[] = {"dave", NULL};
    p_wait_connects(&x->p[DAVE], others);
    p_wait_connects(&x->p[ALICE], dave);
    p_wait_connects(&x->p[BOB], dave);
    p_wait_connects(&x->p[CAROL], dave);
}

/* The server-made call id the provider was handed. */
static void keep_call_id(ctx_t *x, json_t *o)
{
    snprintf(x->var, sizeof(x->var), "%s", str_at(o, "service", "call", "callId", NULL));
    ck_assert_msg(*x->var, "the provider got no callId");
}

#define NO_OUTCOME NULL, NULL, NULL, 0
static const row_t rows[] = {
    /* hello on a fresh connection; a second one on a joined connection */
    {"hello", DAVE, "{\"id\":\"%1$s\",\"hello\":{\"namespace\":\"NS\",\"peerId\":\"dave\"}}",
     "welcome", NULL, NO_OUTCOME, dave_connects, dave_joined},
    {"hello", ALICE, "{\"id\":\"%1$s\",\"hello\":{\"namespace\":\"NS\",\"peerId\":\"alice\"}}",
     "error", "ALREADY_JOINED", NO_OUTCOME, NULL, NULL},
    {"ping", ALICE, "{\"id\":\"%1$s\",\"ping\":{}}", "pong", NULL, NO_OUTCOME, NULL, NULL},
    /* signal: relayed by the gateway (alice, carol on gw-a), gateway to gateway (alice on gw-a,
     * bob on gw-b), through the owner (to no one) */
    {"signal", ALICE, "{\"id\":\"%1$s\",\"signal\":{\"to\":\"carol\",\"payload\":{\"n\":1}}}", "ok",
     NULL, "signal", NULL, NULL, CAROL, NULL, NULL},
    {"signal", ALICE, "{\"id\":\"%1$s\",\"signal\":{\"to\":\"bob\",\"payload\":{\"n\":2}}}", "ok",
     NULL, "signal", NULL, NULL, BOB, NULL, NULL},
    {"signal", ALICE, "{\"id\":\"%1$s\",\"signal\":{\"to\":\"nobody\",\"payload\":1}}", "error",
     "PEER_NOT_FOUND", NO_OUTCOME, NULL, NULL},
    /* emit */
    {"emit", ALICE, "{\"id\":\"%1$s\",\"emit\":{\"to\":\"bob\",\"event\":\"e\",\"data\":1}}", "ok",
     "delivered", "emit", NULL, NULL, BOB, NULL, NULL},
    {"emit", ALICE, "{\"id\":\"%1$s\",\"emit\":{\"to\":\"nobody\",\"event\":\"e\"}}", "error",
     "PEER_NOT_FOUND", NO_OUTCOME, NULL, NULL},
    {"emit", ALICE,
     "{\"id\":\"%1$s\",\"emit\":{\"to\":\"nobody\",\"event\":\"e\",\"ackId\":\"k0\"}}", "ok", NULL,
     "ack", "k0", "PEER_NOT_FOUND", ALICE, NULL, NULL},
    {"emit", ALICE,
     "{\"id\":\"%1$s\",\"emit\":{\"to\":\"zoe\",\"event\":\"e\",\"persistent\":true}}", "ok",
     "stored", NO_OUTCOME, NULL, NULL},
    {"emit", ALICE,
     "{\"id\":\"%1$s\",\"emit\":{\"to\":\"bob\",\"event\":\"e\",\"persistent\":true}}", "ok",
     "delivered", "emit", NULL, NULL, BOB, NULL, NULL},
    {"emit", ALICE,
     "{\"id\":\"%1$s\",\"emit\":{\"to\":\"bob\",\"event\":\"e\",\"ackId\":\"k9\",\"timeoutMs\":"
     "120001}}",
     "error", "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    {"emit", ALICE, "{\"id\":\"%1$s\",\"emit\":{\"to\":\"bob\",\"event\":\"e\",\"ackId\":\"k1\"}}",
     "ok", "delivered", "emit", NULL, NULL, BOB, NULL, NULL},
    /* ack: bob answers k1; alice gets the ack */
    {"ack", BOB, "{\"id\":\"%1$s\",\"ack\":{\"ackId\":\"k1\",\"to\":\"alice\",\"data\":2}}", "ok",
     NULL, "ack", "k1", NULL, ALICE, NULL, NULL},
    {"ack", BOB, "{\"id\":\"%1$s\",\"ack\":{\"ackId\":\"k1\",\"to\":\"alice\"}}", "error",
     "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    /* rooms */
    {"room.join", ALICE, "{\"id\":\"%1$s\",\"room\":{\"join\":{\"room\":\"r\"}}}", "room", NULL,
     NO_OUTCOME, NULL, NULL},
    {"room.join", BOB, "{\"id\":\"%1$s\",\"room\":{\"join\":{\"room\":\"r\"}}}", "room", NULL,
     "room", NULL, NULL, ALICE, NULL, NULL},
    {"room.join", BOB, "{\"id\":\"%1$s\",\"room\":{\"join\":{\"room\":\"\"}}}", "error",
     "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    {"room.emit", ALICE, "{\"id\":\"%1$s\",\"room\":{\"emit\":{\"room\":\"r\",\"event\":\"x\"}}}",
     "ok", NULL, "room", NULL, NULL, BOB, NULL, NULL},
    {"room.emit", CAROL, "{\"id\":\"%1$s\",\"room\":{\"emit\":{\"room\":\"r\",\"event\":\"x\"}}}",
     "error", "FORBIDDEN", NO_OUTCOME, NULL, NULL},
    {"room.list", CAROL, "{\"id\":\"%1$s\",\"room\":{\"list\":{\"room\":\"r\"}}}", "room", NULL,
     NO_OUTCOME, NULL, NULL},
    {"room.leave", BOB, "{\"id\":\"%1$s\",\"room\":{\"leave\":{\"room\":\"r\"}}}", "ok", NULL,
     NO_OUTCOME, NULL, NULL},
    {"room.leave", BOB, "{\"id\":\"%1$s\",\"room\":{\"leave\":{\"room\":\"r\"}}}", "error",
     "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    /* server-to-client ops of room, sent by a client */
    {"room.members", ALICE, "{\"id\":\"%1$s\",\"room\":{\"members\":{\"room\":\"r\"}}}", "error",
     "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    {"room.peer_joined", ALICE, "{\"id\":\"%1$s\",\"room\":{\"peerJoined\":{\"room\":\"r\"}}}",
     "error", "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    {"room.peer_left", ALICE, "{\"id\":\"%1$s\",\"room\":{\"peerLeft\":{\"room\":\"r\"}}}", "error",
     "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    /* streams: open, credit from the receiver, data within and beyond it, close */
    {"stream.open", ALICE,
     "{\"id\":\"%1$s\",\"stream\":{\"streamId\":\"s1\",\"open\":{\"to\":\"bob\"}}}", "ok",
     "delivered", "stream", NULL, NULL, BOB, NULL, NULL},
    {"stream.open", ALICE,
     "{\"id\":\"%1$s\",\"stream\":{\"streamId\":\"s2\",\"open\":{\"to\":\"nobody\"}}}", "ok", NULL,
     "stream", "s2", "PEER_NOT_FOUND", ALICE, NULL, NULL},
    {"stream.credit", BOB,
     "{\"id\":\"%1$s\",\"stream\":{\"streamId\":\"alice/s1\",\"credit\":{\"bytes\":4}}}", "ok",
     NULL, NO_OUTCOME, NULL, NULL},
    {"stream.credit", BOB,
     "{\"id\":\"%1$s\",\"stream\":{\"streamId\":\"nope\",\"credit\":{\"bytes\":4}}}", "error",
     "STREAM_NOT_FOUND", NO_OUTCOME, NULL, NULL},
    {"stream.data", ALICE,
     "{\"id\":\"%1$s\",\"stream\":{\"streamId\":\"s1\",\"data\":{\"data\":\"AAAA\"}}}", "ok", NULL,
     "stream", NULL, NULL, BOB, NULL, NULL},
    {"stream.data", ALICE,
     "{\"id\":\"%1$s\",\"stream\":{\"streamId\":\"s1\",\"data\":{\"data\":\"AAAAAAAA\"}}}", "error",
     "NO_CREDIT", NO_OUTCOME, NULL, NULL},
    {"stream.close", ALICE, "{\"id\":\"%1$s\",\"stream\":{\"streamId\":\"s1\",\"close\":{}}}", "ok",
     NULL, "stream", "alice/s1", NULL, BOB, NULL, NULL},
    /* services */
    {"service.register", BOB, "{\"id\":\"%1$s\",\"service\":{\"register\":{\"service\":\"echo\"}}}",
     "ok", NULL, NO_OUTCOME, NULL, NULL},
    {"service.call", ALICE,
     "{\"id\":\"%1$s\",\"service\":{\"call\":{\"service\":\"echo\",\"callId\":\"c1\",\"args\":3}}}",
     "ok", "delivered", "service.call", NULL, NULL, BOB, NULL, keep_call_id},
    {"service.reply", BOB,
     "{\"id\":\"%1$s\",\"service\":{\"reply\":{\"callId\":\"%2$s\",\"result\":4}}}", "ok", NULL,
     "service", "c1", NULL, ALICE, NULL, NULL},
    {"service.reply", BOB,
     "{\"id\":\"%1$s\",\"service\":{\"reply\":{\"callId\":\"%2$s\",\"result\":4}}}", "error",
     "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    {"service.call", ALICE,
     "{\"id\":\"%1$s\",\"service\":{\"call\":{\"service\":\"none\",\"callId\":\"c2\"}}}", "ok",
     NULL, "service", "c2", "SERVICE_UNAVAILABLE", ALICE, NULL, NULL},
    {"service.call", ALICE,
     "{\"id\":\"%1$s\",\"service\":{\"call\":{\"service\":\"echo\",\"callId\":\"c3\",\"timeoutMs\":"
     "120001}}}",
     "error", "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    {"service.unregister", BOB,
     "{\"id\":\"%1$s\",\"service\":{\"unregister\":{\"service\":\"echo\"}}}", "ok", NULL,
     NO_OUTCOME, NULL, NULL},
    {"service.unregister", BOB,
     "{\"id\":\"%1$s\",\"service\":{\"unregister\":{\"service\":\"echo\"}}}", "error",
     "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    /* topics */
    {"topic.subscribe", BOB, "{\"id\":\"%1$s\",\"topic\":{\"subscribe\":{\"pattern\":\"t.>\"}}}",
     "ok", NULL, NO_OUTCOME, NULL, NULL},
    {"topic.subscribe", BOB, "{\"id\":\"%1$s\",\"topic\":{\"subscribe\":{\"pattern\":\"t.>.x\"}}}",
     "error", "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    {"topic.publish", ALICE,
     "{\"id\":\"%1$s\",\"topic\":{\"publish\":{\"topic\":\"t.a\",\"data\":1}}}", "ok", NULL,
     "topic", NULL, NULL, BOB, NULL, NULL},
    {"topic.unsubscribe", BOB,
     "{\"id\":\"%1$s\",\"topic\":{\"unsubscribe\":{\"pattern\":\"t.>\"}}}", "ok", NULL, NO_OUTCOME,
     NULL, NULL},
    {"topic.unsubscribe", BOB,
     "{\"id\":\"%1$s\",\"topic\":{\"unsubscribe\":{\"pattern\":\"t.>\"}}}", "error", "BAD_REQUEST",
     NO_OUTCOME, NULL, NULL},
    /* reports and topology requests (a full-mesh namespace with random positions) */
    {"position", ALICE, "{\"id\":\"%1$s\",\"position\":{\"x\":1,\"y\":2}}", "error", "BAD_REQUEST",
     NO_OUTCOME, NULL, NULL},
    {"rtt", ALICE, "{\"id\":\"%1$s\",\"rtt\":{\"peer\":\"bob\",\"ms\":20}}", "ok", NULL, NO_OUTCOME,
     NULL, NULL},
    {"rtt", ALICE, "{\"id\":\"%1$s\",\"rtt\":{\"peer\":\"bob\",\"ms\":60001}}", "error",
     "BAD_REQUEST", NO_OUTCOME, NULL, NULL},
    {"edge", ALICE, "{\"id\":\"%1$s\",\"edge\":{\"peer\":\"bob\",\"state\":\"UP\"}}", "ok", NULL,
     NO_OUTCOME, NULL, NULL},
    {"reparent", ALICE, "{\"id\":\"%1$s\",\"reparent\":{}}", "error", "BAD_REQUEST", NO_OUTCOME,
     NULL, NULL},
    {"p2p_target", ALICE, "{\"id\":\"%1$s\",\"p2pTarget\":{\"peer\":\"bob\"}}", "error",
     "FORBIDDEN", NO_OUTCOME, NULL, NULL},
    /* received: an ack of persistent emits, ended by the gateway (ids it does not hold are
     * ignored) */
    {"received", BOB, "{\"id\":\"%1$s\",\"received\":{\"msgIds\":[\"0000000000000000\"]}}", "ok",
     NULL, NO_OUTCOME, NULL, NULL},
    {"leave", DAVE, "{\"id\":\"%1$s\",\"leave\":{}}", "ok", NULL, NO_OUTCOME, NULL, NULL},
};
#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

static int row_for(const char *leaf)
{
    for (size_t i = 0; i < N_ROWS; i++)
        if (!strcmp(rows[i].leaf, leaf))
            return 1;
    return 0;
}

/* Every field of a message's oneofs (the nested oneof of room, stream, service, topic as
 * "room.join"), from the generated descriptor: each needs a row. */
static void check_coverage(const ProtobufCMessageDescriptor *d, const char *prefix)
{
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        if (!(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
            continue;
        char leaf[128];
        snprintf(leaf, sizeof(leaf), "%s%s", prefix, f->name);
        const ProtobufCMessageDescriptor *sub =
            f->type == PROTOBUF_C_TYPE_MESSAGE ? f->descriptor : NULL;
        int nested = 0;
        for (unsigned k = 0; sub && !*prefix && k < sub->n_fields; k++)
            nested |= (sub->fields[k].flags & PROTOBUF_C_FIELD_FLAG_ONEOF) != 0;
        if (nested) {
            char pre[128];
            snprintf(pre, sizeof(pre), "%s.", f->name);
            check_coverage(sub, pre);
            continue;
        }
        ck_assert_msg(row_for(leaf),
                      "ClientMessage %s has no row in the reply table: say what it answers", leaf);
    }
}

START_TEST(every_request_has_a_row)
{
    check_coverage(&meshsig__v1__client_message__descriptor, "");
}
END_TEST

/* Fills in the namespace placeholder NS and the ids. */
static void build(const ctx_t *x, const row_t *r, const char *id, char *out, size_t cap)
{
    char fmt[1024];
    const char *ns = strstr(r->req, "\"NS\"");
    if (ns)
        snprintf(fmt, sizeof(fmt), "%.*s\"%s\"%s", (int)(ns - r->req), r->req, x->ns, ns + 4);
    else
        snprintf(fmt, sizeof(fmt), "%s", r->req);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
    snprintf(out, cap, fmt, id, x->var);
#pragma GCC diagnostic pop
}

static void run_table(int binary)
{
    ctx_t x;
    memset(&x, 0, sizeof(x));
    x.binary = binary;
    x.ns = binary ? "reply-proto" : "reply-json";
    p_join(&x.p[ALICE], "alice", cl.gw_port[g1], binary, x.ns);
    p_join(&x.p[BOB], "bob", cl.gw_port[g2], binary, x.ns);
    p_join(&x.p[CAROL], "carol", cl.gw_port[g1], binary, x.ns);
    static const char *const a[] = {"bob", "carol", NULL}, *const b[] = {"alice", "carol", NULL},
                             *const c[] = {"alice", "bob", NULL};
    p_wait_connects(&x.p[ALICE], a);
    p_wait_connects(&x.p[BOB], b);
    p_wait_connects(&x.p[CAROL], c);
    uint64_t worst = 0;
    for (size_t i = 0; i < N_ROWS; i++) {
        const row_t *r = &rows[i];
        if (r->before)
            r->before(&x);
        peer_t *p = &x.p[r->who];
        char id[32], req[1024];
        snprintf(id, sizeof(id), "r%zu", i);
        build(&x, r, id, req, sizeof(req));
        /* What arrives from here on is this row's. */
        for (int k = 0; k < MAX_PEERS; k++)
            if (x.p[k].ws)
                x.p[k].cursor = json_array_size(x.p[k].log);
        uint64_t t0 = now_ms();
        p_send(p, req);
        json_t *rep = p_wait(p, has_id, id, NULL, REPLY_BOUND_MS);
        uint64_t took = now_ms() - t0;
        worst = took > worst ? took : worst;
        char *d = dump(rep);
        ck_assert_msg(rep, "row %zu (%s, %s): no reply within %d ms to %s", i, r->leaf,
                      binary ? "proto" : "json", REPLY_BOUND_MS, req);
        ck_assert_msg(json_object_get(rep, r->reply), "row %zu (%s): expected %s, got %s for %s", i,
                      r->leaf, r->reply, d, req);
        if (!strcmp(r->reply, "error") && r->code)
            ck_assert_msg(!strcmp(str_at(rep, "error", "code", NULL), r->code),
                          "row %zu (%s): expected %s, got %s", i, r->leaf, r->code, d);
        if (!strcmp(r->reply, "ok") && r->code)
            ck_assert_msg(json_is_true(json_object_get(json_object_get(rep, "ok"), r->code)),
                          "row %zu (%s): expected ok.%s, got %s", i, r->leaf, r->code, d);
        free(d);
        json_t *o = NULL;
        if (r->outcome) {
            peer_t *at = &x.p[r->at];
            o = p_wait(at, is_outcome, r->outcome, r->outcome_key ? r->outcome_key : "",
                       REPLY_BOUND_MS);
            ck_assert_msg(o, "row %zu (%s): %s got no %s %s", i, r->leaf, at->name, r->outcome,
                          r->outcome_key ? r->outcome_key : "");
            const char *code = "";
            if (!strcmp(r->outcome, "ack"))
                code = str_at(o, "ack", "error", "code", NULL);
            else if (!strcmp(r->outcome, "service"))
                code = str_at(o, "service", "reply", "error", "code", NULL);
            else if (!strcmp(r->outcome, "stream"))
                code = str_at(o, "stream", "close", "error", "code", NULL);
            d = dump(o);
            ck_assert_msg(!strcmp(code, r->outcome_code ? r->outcome_code : ""),
                          "row %zu (%s): outcome %s, expected error %s", i, r->leaf, d,
                          r->outcome_code ? r->outcome_code : "none");
            free(d);
            ck_assert_msg(!*str_at(o, "id", NULL), "row %zu (%s): the outcome carries an id", i,
                          r->leaf);
        }
        if (r->after)
            r->after(&x, o);
    }
    /* No second reply: a ping through each gateway and a request through the owner on every
     * connection, answered after anything the rows caused; then every id was answered once. */
    for (int k = 0; k < MAX_PEERS; k++) {
        peer_t *p = &x.p[k];
        if (!p->ws || k == DAVE)
            continue;
        char req[128];
        snprintf(req, sizeof(req),
                 "{\"id\":\"end-%d\",\"topic\":{\"publish\":{\"topic\":\"end\"}}}", k);
        p_send(p, req);
        char id[16];
        snprintf(id, sizeof(id), "end-%d", k);
        p->cursor = 0;
        ck_assert_msg(p_wait(p, has_id, id, NULL, REPLY_BOUND_MS), "%s: no end reply", p->name);
        for (size_t i = 0; i < N_ROWS; i++) {
            char rid[32];
            snprintf(rid, sizeof(rid), "r%zu", i);
            int n = 0;
            for (size_t m = 0; m < json_array_size(p->log); m++)
                n += has_id(json_array_get(p->log, m), rid, NULL);
            int mine = rows[i].who == k;
            ck_assert_msg(n == mine, "%s got %d replies to row %zu (%s), expected %d", p->name, n,
                          i, rows[i].leaf, mine);
        }
    }
    fprintf(stderr, "reply table (%s): %zu rows, slowest reply %llu ms\n",
            binary ? "proto" : "json", N_ROWS, (unsigned long long)worst);
    for (int k = 0; k < MAX_PEERS; k++)
        if (x.p[k].ws)
            p_close(&x.p[k]);
}

START_TEST(reply_rule_json)
{
    run_table(0);
}
END_TEST

START_TEST(reply_rule_proto)
{
    run_table(1);
}
END_TEST

/* ---- order between two peers ---------------------------------------------------------- */

#define ORDER_N 60

/* The stream data of message i: 4 bytes, i big-endian, in base64. */
static void seq_b64(int i, char out[9])
{
    static const char a64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char b[4] = {0, 0, (unsigned char)(i >> 8), (unsigned char)i};
    out[0] = a64[b[0] >> 2];
    out[1] = a64[((b[0] & 3) << 4) | (b[1] >> 4)];
    out[2] = a64[((b[1] & 15) << 2) | (b[2] >> 6)];
    out[3] = a64[b[2] & 63];
    out[4] = a64[b[3] >> 2];
    out[5] = a64[(b[3] & 3) << 4];
    out[6] = '=';
    out[7] = '=';
    out[8] = '\0';
}

/* alice sends, interleaved, ORDER_N each of signals, emits, room emits, topic publishes and
 * stream data to `to`; `to` must see each kind in the order sent, and everything that takes
 * the owner's path (all but signals) in one order. */
static void check_order(peer_t *from, peer_t *to, const char *to_name)
{
    char req[512];
    snprintf(req, sizeof(req), "{\"id\":\"oj\",\"room\":{\"join\":{\"room\":\"o-%s\"}}}", to_name);
    p_send(from, req);
    ck_assert_ptr_nonnull(p_wait(from, has_id, "oj", NULL, REPLY_BOUND_MS));
    p_send(to, req);
    ck_assert_ptr_nonnull(p_wait(to, has_id, "oj", NULL, REPLY_BOUND_MS));
    snprintf(req, sizeof(req), "{\"id\":\"os\",\"topic\":{\"subscribe\":{\"pattern\":\"o.%s\"}}}",
             to_name);
    p_send(to, req);
    ck_assert_ptr_nonnull(p_wait(to, has_id, "os", NULL, REPLY_BOUND_MS));
    snprintf(req, sizeof(req),
             "{\"id\":\"oo\",\"stream\":{\"streamId\":\"o-%s\",\"open\":{\"to\":\"%s\"}}}", to_name,
             to_name);
    p_send(from, req);
    ck_assert_ptr_nonnull(p_wait(from, has_id, "oo", NULL, REPLY_BOUND_MS));
    snprintf(req, sizeof(req),
             "{\"id\":\"oc\",\"stream\":{\"streamId\":\"alice/o-%s\",\"credit\":{\"bytes\":%d}}}",
             to_name, ORDER_N * 4);
    p_send(to, req);
    ck_assert_ptr_nonnull(p_wait(to, has_id, "oc", NULL, REPLY_BOUND_MS));
    from->cursor = json_array_size(from->log);
    to->cursor = json_array_size(to->log);
    for (int i = 0; i < ORDER_N; i++) {
        snprintf(req, sizeof(req), "{\"signal\":{\"to\":\"%s\",\"payload\":{\"seq\":%d}}}", to_name,
                 i);
        p_send(from, req);
        snprintf(req, sizeof(req), "{\"emit\":{\"to\":\"%s\",\"event\":\"o\",\"data\":%d}}",
                 to_name, 5 * i);
        p_send(from, req);
        snprintf(req, sizeof(req),
                 "{\"room\":{\"emit\":{\"room\":\"o-%s\",\"event\":\"o\",\"data\":%d}}}", to_name,
                 5 * i + 1);
        p_send(from, req);
        snprintf(req, sizeof(req), "{\"topic\":{\"publish\":{\"topic\":\"o.%s\",\"data\":%d}}}",
                 to_name, 5 * i + 2);
        p_send(from, req);
        char enc[9];
        seq_b64(i, enc);
        snprintf(req, sizeof(req),
                 "{\"stream\":{\"streamId\":\"o-%s\",\"data\":{\"data\":\"%s\"}}}", to_name, enc);
        p_send(from, req);
    }
    /* Everything from alice's owner path ends before the reply to this. */
    snprintf(req, sizeof(req), "{\"id\":\"oe\",\"emit\":{\"to\":\"%s\",\"event\":\"end\"}}",
             to_name);
    p_send(from, req);
    ck_assert_ptr_nonnull(p_wait(from, has_id, "oe", NULL, REPLY_BOUND_MS));
    int next_sig = 0, next_owner = 0, n_stream = 0;
    uint64_t deadline = now_ms() + REPLY_BOUND_MS;
    for (size_t k = to->cursor; next_sig < ORDER_N || next_owner < 4 * ORDER_N; k++) {
        while (k >= json_array_size(to->log)) {
            uint64_t t = now_ms();
            ck_assert_msg(t < deadline && p_pump(to, (int)(deadline - t)),
                          "%s: %d of %d signals, %d of %d owner-path messages in order", to_name,
                          next_sig, ORDER_N, next_owner, 4 * ORDER_N);
        }
        json_t *m = json_array_get(to->log, k);
        char *d = dump(m);
        json_t *v;
        if ((v = json_object_get(m, "signal"))) {
            int seq =
                (int)json_integer_value(json_object_get(json_object_get(v, "payload"), "seq"));
            ck_assert_msg(seq == next_sig, "%s: signal %d arrived when %d was next", to_name, seq,
                          next_sig);
            next_sig++;
        } else if ((v = json_object_get(m, "emit")) && strcmp(str_at(v, "event", NULL), "end")) {
            int seq = (int)json_integer_value(json_object_get(v, "data"));
            ck_assert_msg(seq == (next_owner / 4) * 5, "%s: emit %s out of order", to_name, d);
            next_owner++;
        } else if ((v = json_object_get(json_object_get(m, "room"), "emit"))) {
            int seq = (int)json_integer_value(json_object_get(v, "data"));
            ck_assert_msg(seq == (next_owner / 4) * 5 + 1 && next_owner % 4 == 1,
                          "%s: room emit %s out of order", to_name, d);
            next_owner++;
        } else if ((v = json_object_get(json_object_get(m, "topic"), "publish"))) {
            int seq = (int)json_integer_value(json_object_get(v, "data"));
            ck_assert_msg(seq == (next_owner / 4) * 5 + 2 && next_owner % 4 == 2,
                          "%s: topic publish %s out of order", to_name, d);
            next_owner++;
        } else if ((v = json_object_get(json_object_get(m, "stream"), "data"))) {
            const char *s = str_at(v, "data", NULL);
            char want[9];
            seq_b64(next_owner / 4, want);
            ck_assert_msg(next_owner % 4 == 3 && !strcmp(s, want),
                          "%s: stream data %s out of order (expected %s)", to_name, d, want);
            next_owner++;
            n_stream++;
        }
        free(d);
    }
    ck_assert_int_eq(n_stream, ORDER_N);
}

START_TEST(order_between_two_peers)
{
    /* alice on gw-a; carol on gw-a (signals relayed by the gateway), bob on gw-b (signals
     * gateway to gateway); everything else through the owner. */
    peer_t a, b, c;
    p_join(&a, "alice", cl.gw_port[g1], 0, "order");
    p_join(&b, "bob", cl.gw_port[g2], 0, "order");
    p_join(&c, "carol", cl.gw_port[g1], 0, "order");
    static const char *const pa[] = {"bob", "carol", NULL}, *const pb[] = {"alice", NULL},
                             *const pc[] = {"alice", NULL};
    p_wait_connects(&a, pa);
    p_wait_connects(&b, pb);
    p_wait_connects(&c, pc);
    check_order(&a, &b, "bob");
    check_order(&a, &c, "carol");
    p_close(&a);
    p_close(&b);
    p_close(&c);
}
END_TEST

/* A request over the rate is dropped undecoded, and still answered once, with its id. */
static void over_the_rate(int binary)
{
    peer_t p;
    p_open(&p, "rl", cl.gw_port[g_slow], binary);
    /* The burst of 2 first, then one over it: the gateway reads the id without decoding. */
    p_send(&p, "{\"id\":\"a\",\"ping\":{}}");
    p_send(&p, "{\"id\":\"b\",\"ping\":{}}");
    p_send(&p, "{\"id\":\"c\",\"ping\":{}}");
    json_t *c = p_wait(&p, has_id, "c", NULL, REPLY_BOUND_MS);
    char *d = dump(c);
    ck_assert_msg(c && !strcmp(str_at(c, "error", "code", NULL), "RATE_LIMITED"),
                  "expected RATE_LIMITED for c, got %s", d);
    free(d);
    ck_assert_ptr_nonnull(p_wait(&p, has_id, "a", NULL, REPLY_BOUND_MS));
    ck_assert_ptr_nonnull(p_wait(&p, has_id, "b", NULL, REPLY_BOUND_MS));
    p_close(&p);
}

START_TEST(over_the_rate_json)
{
    over_the_rate(0);
}
END_TEST

START_TEST(over_the_rate_proto)
{
    over_the_rate(1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reply");
    TCase *tc = tcase_create("reply");
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, every_request_has_a_row);
    tcase_add_test(tc, reply_rule_json);
    tcase_add_test(tc, reply_rule_proto);
    tcase_add_test(tc, order_between_two_peers);
    tcase_add_test(tc, over_the_rate_json);
    tcase_add_test(tc, over_the_rate_proto);
    suite_add_tcase(s, tc);
    return run_suite(s);
}

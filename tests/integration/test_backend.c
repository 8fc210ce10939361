/* SPDX-License-Identifier: Apache-2.0 */
/* Backends over NATS end to end (proto/backend.proto): this test is the backend, with plain
 * cnats and protobuf-c as any backend would be, and talks to peers on real gateways through a
 * real coordinator: services shared with peer providers, topics both ways, emits with acks
 * both ways, join/leave events, retried requests, ids, and withdrawal after silence. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <nats/nats.h>

#include "backend.pb-c.h"
#include "cluster.h"
#include "testutil.h"
#include "wsclient.h"

#define SHARDS CLUSTER_SHARDS
#define TIMEOUT_MS 1200 /* --backend-timeout-ms: the coordinator asks for a heartbeat every 400 */

static cluster_t cl;
static int g1, g2;

/* The contract's shard: 64-bit FNV-1a of the namespace's bytes, mod Info.shards. Written here
 * from the README, not taken from the coordinator's code. */
/* ---- a backend ------------------------------------------------------------------------------ */

typedef struct {
    natsConnection *nc;
    natsSubscription *sub; /* <prefix>.backend.v1.to.<id> */
    char id[64];
    pthread_mutex_t mu; /* the fields below: the heartbeat thread reads them */
    unsigned long n_req;
    char ns[64];
    const char *services[4], *subs[4];
    size_t n_services, n_subs;
    int events;
    int beating, stop;
    pthread_t beat;
    /* Deliveries read from batches but not yet taken. */
    Meshsig__Backend__V1__Batch *batch;
    size_t next;
} be_t;

static be_t *be_new(const char *id)
{
    be_t *b = calloc(1, sizeof(*b));
    ck_assert_ptr_nonnull(b);
    snprintf(b->id, sizeof(b->id), "%s", id);
    pthread_mutex_init(&b->mu, NULL);
    char url[64], subj[128];
    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", cl.nats_port);
    ck_assert_int_eq(natsConnection_ConnectTo(&b->nc, url), NATS_OK);
    snprintf(subj, sizeof(subj), "meshsig.backend.v1.to.%s", id);
    ck_assert_int_eq(natsConnection_SubscribeSync(&b->sub, b->nc, subj), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(b->nc), NATS_OK);
    return b;
}

static void be_stop_beating(be_t *b)
{
    pthread_mutex_lock(&b->mu);
    int was = b->beating;
    b->stop = 1;
    pthread_mutex_unlock(&b->mu);
    if (was)
        pthread_join(b->beat, NULL);
    b->beating = 0;
}

static void be_free(be_t *b)
{
    be_stop_beating(b);
    if (b->batch)
        meshsig__backend__v1__batch__free_unpacked(b->batch, NULL);
    natsSubscription_Destroy(b->sub);
    natsConnection_Destroy(b->nc);
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* Sends rq (instance, version and namespace filled in here; req_id too unless set) as a NATS
 * request to the namespace's shard, retrying the same bytes while nobody answers (an owner is
 * being chosen). The Response, or NULL when none came within the bounded retries. */
static Meshsig__Backend__V1__Response *be_send(be_t *b, const char *ns,
                                               Meshsig__Backend__V1__Request *rq)
{
    char req_id[32], subj[128];
    pthread_mutex_lock(&b->mu);
    snprintf(req_id, sizeof(req_id), "r%lu", ++b->n_req);
    pthread_mutex_unlock(&b->mu);
    rq->instance = b->id;
    rq->namespace_ = (char *)ns;
    rq->version = 1;
    if (!rq->req_id || !*rq->req_id)
        rq->req_id = req_id;
    snprintf(subj, sizeof(subj), "meshsig.backend.v1.shard.%u", cluster_shard_of(ns));
    size_t len = meshsig__backend__v1__request__get_packed_size(rq);
    uint8_t *buf = malloc(len + 1);
    meshsig__backend__v1__request__pack(rq, buf);
    Meshsig__Backend__V1__Response *r = NULL;
    for (int attempt = 0; attempt < 20 && !r; attempt++) {
        natsMsg *reply = NULL;
        if (natsConnection_Request(&reply, b->nc, subj, buf, (int)len, 1000) != NATS_OK)
            continue;
        r = meshsig__backend__v1__response__unpack(NULL, (size_t)natsMsg_GetDataLength(reply),
                                                   (const uint8_t *)natsMsg_GetData(reply));
        natsMsg_Destroy(reply);
        if (r && r->reply && r->reply->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR &&
            r->reply->error->code == MESHSIG__V1__ERROR_CODE__UNAVAILABLE) {
            meshsig__backend__v1__response__free_unpacked(r, NULL);
            r = NULL; /* a takeover in progress: the same request again */
        }
    }
    free(buf);
    return r;
}

static int resp_ok(const Meshsig__Backend__V1__Response *r)
{
    return r && r->reply && r->reply->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_OK;
}

static const char *resp_error(const Meshsig__Backend__V1__Response *r)
{
    if (!r || !r->reply || r->reply->msg_case != MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR)
        return "";
    return protobuf_c_enum_descriptor_get_value(&meshsig__v1__error_code__descriptor,
                                                (int)r->reply->error->code)
        ->name;
}

static Meshsig__Backend__V1__Response *be_attach_now(be_t *b)
{
    Meshsig__Backend__V1__Attach a = MESHSIG__BACKEND__V1__ATTACH__INIT;
    Meshsig__Backend__V1__Request rq = MESHSIG__BACKEND__V1__REQUEST__INIT;
    char ns[64];
    pthread_mutex_lock(&b->mu);
    snprintf(ns, sizeof(ns), "%s", b->ns);
    a.services = (char **)b->services;
    a.n_services = b->n_services;
    a.subscriptions = (char **)b->subs;
    a.n_subscriptions = b->n_subs;
    a.events = b->events;
    pthread_mutex_unlock(&b->mu);
    rq.op_case = MESHSIG__BACKEND__V1__REQUEST__OP_ATTACH;
    rq.attach = &a;
    return be_send(b, ns, &rq);
}

/* The heartbeat: the whole state again, every 300 ms (the coordinator asks for 400). */
static void *beat_main(void *arg)
{
    be_t *b = arg;
    for (;;) {
        for (int i = 0; i < 6; i++) {
            pthread_mutex_lock(&b->mu);
            int stop = b->stop;
            pthread_mutex_unlock(&b->mu);
            if (stop)
                return NULL;
            usleep(50 * 1000);
        }
        Meshsig__Backend__V1__Response *r = be_attach_now(b);
        if (r)
            meshsig__backend__v1__response__free_unpacked(r, NULL);
    }
}

/* Attaches b to ns with that state and keeps it attached (heartbeat thread). */
static void be_attach(be_t *b, const char *ns, const char *svc, const char *sub, int events)
{
    pthread_mutex_lock(&b->mu);
    snprintf(b->ns, sizeof(b->ns), "%s", ns);
    b->n_services = b->n_subs = 0;
    if (svc)
        b->services[b->n_services++] = svc;
    if (sub)
        b->subs[b->n_subs++] = sub;
    b->events = events;
    pthread_mutex_unlock(&b->mu);
    Meshsig__Backend__V1__Response *r = be_attach_now(b);
    ck_assert_msg(resp_ok(r), "attach of %s to %s: %s", b->id, ns, resp_error(r));
    ck_assert_uint_eq(r->heartbeat_ms, TIMEOUT_MS / 3);
    ck_assert_uint_eq(r->timeout_ms, TIMEOUT_MS);
    ck_assert_uint_eq(r->shard, cluster_shard_of(ns));
    ck_assert_uint_gt(r->epoch, 0);
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    if (!b->beating) {
        b->stop = 0;
        ck_assert_int_eq(pthread_create(&b->beat, NULL, beat_main, b), 0);
        b->beating = 1;
    }
}

/* The next delivery (borrowed until the next call), or NULL after timeout_ms. */
static Meshsig__Backend__V1__Delivery *be_next(be_t *b, int timeout_ms)
{
    if (b->batch && b->next < b->batch->n_deliveries)
        return b->batch->deliveries[b->next++];
    if (b->batch)
        meshsig__backend__v1__batch__free_unpacked(b->batch, NULL);
    b->batch = NULL;
    natsMsg *m = NULL;
    if (natsSubscription_NextMsg(&m, b->sub, timeout_ms) != NATS_OK)
        return NULL;
    b->batch = meshsig__backend__v1__batch__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                                   (const uint8_t *)natsMsg_GetData(m));
    natsMsg_Destroy(m);
    ck_assert_ptr_nonnull(b->batch);
    ck_assert_uint_eq(b->batch->version, 1);
    ck_assert_uint_gt(b->batch->n_deliveries, 0);
    b->next = 1;
    return b->batch->deliveries[0];
}

/* The next server message for b, skipping peer events. */
static Meshsig__V1__ServerMessage *be_next_server(be_t *b)
{
    for (int i = 0; i < 50; i++) {
        Meshsig__Backend__V1__Delivery *d = be_next(b, T_MS);
        ck_assert_msg(d != NULL, "backend %s: no delivery within %d ms", b->id, T_MS);
        if (d->msg_case == MESHSIG__BACKEND__V1__DELIVERY__MSG_SERVER)
            return d->server;
    }
    ck_abort_msg("backend %s: only events", b->id);
    return NULL;
}

static Meshsig__Backend__V1__PeerEvent *be_next_event(be_t *b)
{
    Meshsig__Backend__V1__Delivery *d = be_next(b, T_MS);
    ck_assert_msg(d != NULL, "backend %s: no event within %d ms", b->id, T_MS);
    ck_assert_int_eq(d->msg_case, MESHSIG__BACKEND__V1__DELIVERY__MSG_EVENT);
    return d->event;
}

static Meshsig__Backend__V1__Response *be_client(be_t *b, const char *ns,
                                                 Meshsig__V1__ClientMessage *cm)
{
    Meshsig__Backend__V1__Request rq = MESHSIG__BACKEND__V1__REQUEST__INIT;
    rq.op_case = MESHSIG__BACKEND__V1__REQUEST__OP_CLIENT;
    rq.client = cm;
    return be_send(b, ns, &rq);
}

static void be_reply(be_t *b, const char *ns, const char *call_id, double result)
{
    Meshsig__V1__Value v = MESHSIG__V1__VALUE__INIT;
    v.kind_case = MESHSIG__V1__VALUE__KIND_NUMBER_VALUE;
    v.number_value = result;
    Meshsig__V1__ServiceReply rep = MESHSIG__V1__SERVICE_REPLY__INIT;
    rep.call_id = (char *)call_id;
    rep.result = &v;
    Meshsig__V1__Service s = MESHSIG__V1__SERVICE__INIT;
    s.op_case = MESHSIG__V1__SERVICE__OP_REPLY;
    s.reply = &rep;
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_SERVICE;
    cm.service = &s;
    Meshsig__Backend__V1__Response *r = be_client(b, ns, &cm);
    ck_assert_msg(resp_ok(r), "service.reply: %s", resp_error(r));
    meshsig__backend__v1__response__free_unpacked(r, NULL);
}

/* ---- the cluster ---------------------------------------------------------------------------- */

static void cluster_up(void)
{
    static const char *const args[] = {"--backend-timeout-ms", "1200", NULL};
    ck_assert_int_eq(cluster_start_args(&cl, NULL, args), 0);
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

START_TEST(info)
{
    be_t *b = be_new("info-1");
    natsMsg *reply = NULL;
    ck_assert_int_eq(natsConnection_Request(&reply, b->nc, "meshsig.backend.v1.info", "", 0, 3000),
                     NATS_OK);
    Meshsig__Backend__V1__Info *in = meshsig__backend__v1__info__unpack(
        NULL, (size_t)natsMsg_GetDataLength(reply), (const uint8_t *)natsMsg_GetData(reply));
    ck_assert_ptr_nonnull(in);
    ck_assert_uint_eq(in->version, 1);
    ck_assert_uint_eq(in->shards, SHARDS);
    ck_assert_uint_eq(in->heartbeat_ms, TIMEOUT_MS / 3);
    ck_assert_uint_eq(in->timeout_ms, TIMEOUT_MS);
    ck_assert_str_ne(in->coordinator_id, "");
    meshsig__backend__v1__info__free_unpacked(in, NULL);
    natsMsg_Destroy(reply);
    be_free(b);
}
END_TEST

/* A backend provider and a peer provider share the calls; replies, errors and
 * SERVICE_UNAVAILABLE reach the caller as from a peer. */
START_TEST(service_with_peers)
{
    be_t *b = be_new("sum-1");
    be_attach(b, "bsvc", "sum", NULL, 0);
    wsc_t *a = join_as(cl.gw_port[g1], "bsvc", "alice");
    wsc_t *p = join_as(cl.gw_port[g2], "bsvc", "bob");
    json_decref(skip_to(a, "topology"));
    json_decref(skip_to(p, "topology"));
    send_json(p, "{\"id\":\"reg\",\"service\":{\"register\":{\"service\":\"sum\"}}}");
    json_decref(expect_key(p, "ok"));
    /* Four calls: round robin over two providers gives each two. */
    for (int i = 0; i < 4; i++)
        send_json(
            a, "{\"service\":{\"call\":{\"service\":\"sum\",\"callId\":\"c%d\",\"args\":[%d,1]}}}",
            i, i);
    for (int i = 0; i < 2; i++) {
        Meshsig__V1__ServerMessage *sm = be_next_server(b);
        ck_assert_int_eq(sm->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE);
        ck_assert_int_eq(sm->service->op_case, MESHSIG__V1__SERVICE__OP_CALL);
        Meshsig__V1__ServiceCall *call = sm->service->call;
        ck_assert_str_eq(call->service, "sum");
        ck_assert_str_eq(call->from, "alice");
        ck_assert_int_eq(call->args->kind_case, MESHSIG__V1__VALUE__KIND_LIST_VALUE);
        ck_assert_uint_eq(call->args->list_value->n_values, 2);
        double s = call->args->list_value->values[0]->number_value +
                   call->args->list_value->values[1]->number_value;
        char id[128];
        snprintf(id, sizeof(id), "%s", call->call_id);
        be_reply(b, "bsvc", id, s);
    }
    for (int i = 0; i < 2; i++) {
        json_t *j = expect_key(p, "service");
        const char *cid = str_at(j, "service", "call", "callId", NULL);
        send_json(p, "{\"service\":{\"reply\":{\"callId\":\"%s\",\"result\":\"peer\"}}}", cid);
        json_decref(j);
    }
    int from_backend = 0, from_peer = 0;
    for (int i = 0; i < 4; i++) {
        json_t *j = expect_key(a, "service");
        json_t *res =
            json_object_get(json_object_get(json_object_get(j, "service"), "reply"), "result");
        if (json_is_string(res)) {
            from_peer++;
        } else {
            /* The backend's sum of [i, 1] for the call it got. */
            const char *cid = str_at(j, "service", "reply", "callId", NULL);
            ck_assert_int_eq((int)json_number_value(res), atoi(cid + 1) + 1);
            from_backend++;
        }
        json_decref(j);
    }
    ck_assert_int_eq(from_backend, 2);
    ck_assert_int_eq(from_peer, 2);
    /* A reply to a call that is not waiting for the backend: refused as for a peer. */
    Meshsig__V1__ServiceReply rep = MESHSIG__V1__SERVICE_REPLY__INIT;
    rep.call_id = "nope";
    Meshsig__V1__Service s = MESHSIG__V1__SERVICE__INIT;
    s.op_case = MESHSIG__V1__SERVICE__OP_REPLY;
    s.reply = &rep;
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_SERVICE;
    cm.service = &s;
    Meshsig__Backend__V1__Response *r = be_client(b, "bsvc", &cm);
    ck_assert_str_eq(resp_error(r), "BAD_REQUEST");
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    /* The backend's error reply reaches the caller as the error. */
    send_json(a, "{\"service\":{\"call\":{\"service\":\"sum\",\"callId\":\"e1\"}}}");
    send_json(a, "{\"service\":{\"call\":{\"service\":\"sum\",\"callId\":\"e2\"}}}");
    Meshsig__V1__ServerMessage *sm = be_next_server(b);
    char id[128];
    snprintf(id, sizeof(id), "%s", sm->service->call->call_id);
    Meshsig__V1__Error e = MESHSIG__V1__ERROR__INIT;
    e.code = MESHSIG__V1__ERROR_CODE__BAD_REQUEST;
    e.message = "args must be numbers";
    Meshsig__V1__ServiceReply erep = MESHSIG__V1__SERVICE_REPLY__INIT;
    erep.call_id = id;
    erep.error = &e;
    s.reply = &erep;
    r = be_client(b, "bsvc", &cm);
    ck_assert(resp_ok(r));
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    json_t *pc = expect_key(p, "service"); /* e2 went to bob: let it time out unanswered */
    json_decref(pc);
    json_t *j = expect_key(a, "service");
    ck_assert_str_eq(str_at(j, "service", "reply", "error", "code", NULL), "BAD_REQUEST");
    ck_assert_str_eq(str_at(j, "service", "reply", "callId", NULL), "e1");
    json_decref(j);
    wsc_free(p); /* bob leaves with e2 pending: SERVICE_UNAVAILABLE for it */
    j = skip_to(a, "service");
    ck_assert_str_eq(str_at(j, "service", "reply", "callId", NULL), "e2");
    ck_assert_str_eq(str_at(j, "service", "reply", "error", "code", NULL), "SERVICE_UNAVAILABLE");
    json_decref(j);
    /* Detached: no provider is left. */
    Meshsig__Backend__V1__Detach dt = MESHSIG__BACKEND__V1__DETACH__INIT;
    Meshsig__Backend__V1__Request rq = MESHSIG__BACKEND__V1__REQUEST__INIT;
    rq.op_case = MESHSIG__BACKEND__V1__REQUEST__OP_DETACH;
    rq.detach = &dt;
    be_stop_beating(b);
    r = be_send(b, "bsvc", &rq);
    ck_assert(resp_ok(r));
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    send_json(a, "{\"id\":\"x\",\"service\":{\"call\":{\"service\":\"sum\",\"callId\":\"x\"}}}");
    /* The reply rule: ok, then the keyed outcome (after bob's disconnect and peerLeft). */
    j = skip_to(a, "service");
    ck_assert_str_eq(str_at(j, "service", "reply", "callId", NULL), "x");
    ck_assert_str_eq(str_at(j, "service", "reply", "error", "code", NULL), "SERVICE_UNAVAILABLE");
    json_decref(j);
    wsc_free(a);
    be_free(b);
}
END_TEST

/* Topics both ways: the backend publishes to peers' subscriptions and receives what peers
 * publish on its own. */
START_TEST(topics_both_ways)
{
    be_t *b = be_new("clock-1");
    be_attach(b, "btopic", NULL, "chat.*", 0);
    wsc_t *a = join_as(cl.gw_port[g1], "btopic", "alice");
    send_json(a, "{\"id\":\"s\",\"topic\":{\"subscribe\":{\"pattern\":\"clock\"}}}");
    json_decref(expect_key(a, "ok"));
    Meshsig__V1__Value v = MESHSIG__V1__VALUE__INIT;
    v.kind_case = MESHSIG__V1__VALUE__KIND_STRING_VALUE;
    v.string_value = "12:00";
    Meshsig__V1__TopicPublish pub = MESHSIG__V1__TOPIC_PUBLISH__INIT;
    pub.topic = "clock";
    pub.data = &v;
    Meshsig__V1__Topic t = MESHSIG__V1__TOPIC__INIT;
    t.op_case = MESHSIG__V1__TOPIC__OP_PUBLISH;
    t.publish = &pub;
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_TOPIC;
    cm.topic = &t;
    Meshsig__Backend__V1__Response *r = be_client(b, "btopic", &cm);
    ck_assert_msg(resp_ok(r), "publish: %s", resp_error(r));
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    json_t *j = expect_key(a, "topic");
    ck_assert_str_eq(str_at(j, "topic", "publish", "topic", NULL), "clock");
    ck_assert_str_eq(str_at(j, "topic", "publish", "from", NULL), "clock-1");
    ck_assert_str_eq(str_at(j, "topic", "publish", "data", NULL), "12:00");
    json_decref(j);
    /* A publish with a wildcard is refused as a peer's would be. */
    pub.topic = "clock.*";
    r = be_client(b, "btopic", &cm);
    ck_assert_str_eq(resp_error(r), "BAD_REQUEST");
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    send_json(a, "{\"topic\":{\"publish\":{\"topic\":\"chat.lobby\",\"data\":{\"t\":\"hi\"}}}}");
    send_json(a, "{\"topic\":{\"publish\":{\"topic\":\"other\",\"data\":1}}}");
    Meshsig__V1__ServerMessage *sm = be_next_server(b);
    ck_assert_int_eq(sm->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_TOPIC);
    ck_assert_str_eq(sm->topic->publish->topic, "chat.lobby");
    ck_assert_str_eq(sm->topic->publish->from, "alice");
    ck_assert_int_eq(sm->topic->publish->data->kind_case, MESHSIG__V1__VALUE__KIND_STRUCT_VALUE);
    ck_assert_ptr_null(be_next(b, 300)); /* "other" is not its topic */
    /* The admin API shows it with its registrations. */
    char *body = NULL;
    ck_assert_int_eq(http_request(cl.admin_port, "GET", "/v1/namespaces/btopic", NULL, NULL, &body),
                     200);
    json_t *nsj = json_loads(body, 0, NULL);
    free(body);
    json_t *be0 = json_array_get(json_object_get(nsj, "backends"), 0);
    ck_assert_str_eq(str_at(be0, "id", NULL), "clock-1");
    ck_assert_str_eq(json_string_value(json_array_get(json_object_get(be0, "subscriptions"), 0)),
                     "chat.*");
    json_decref(nsj);
    /* A new attach without the pattern drops it. */
    be_attach(b, "btopic", NULL, NULL, 0);
    send_json(a, "{\"topic\":{\"publish\":{\"topic\":\"chat.lobby\",\"data\":2}}}");
    ck_assert_ptr_null(be_next(b, 300));
    wsc_free(a);
    be_free(b);
}
END_TEST

/* Emits with acks both ways, and the backend as an emit target by its instance id. */
START_TEST(emits_both_ways)
{
    be_t *b = be_new("notifier");
    be_attach(b, "bemit", NULL, NULL, 0);
    wsc_t *a = join_as(cl.gw_port[g2], "bemit", "alice");
    Meshsig__V1__Emit em = MESHSIG__V1__EMIT__INIT;
    em.to = "alice";
    em.event = "welcome";
    em.ack_id = "k1";
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_EMIT;
    cm.emit = &em;
    Meshsig__Backend__V1__Response *r = be_client(b, "bemit", &cm);
    ck_assert_msg(resp_ok(r), "emit: %s", resp_error(r));
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    json_t *j = expect_key(a, "emit");
    ck_assert_str_eq(str_at(j, "emit", "from", NULL), "notifier");
    ck_assert_str_eq(str_at(j, "emit", "event", NULL), "welcome");
    ck_assert_str_eq(str_at(j, "emit", "ackId", NULL), "k1");
    json_decref(j);
    send_json(a, "{\"ack\":{\"ackId\":\"k1\",\"to\":\"notifier\",\"data\":\"thanks\"}}");
    Meshsig__V1__ServerMessage *sm = be_next_server(b);
    ck_assert_int_eq(sm->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_ACK);
    ck_assert_str_eq(sm->ack->ack_id, "k1");
    ck_assert_str_eq(sm->ack->from, "alice");
    ck_assert_str_eq(sm->ack->data->string_value, "thanks");
    /* An emit to nobody: the error a peer would get. */
    em.to = "nobody";
    em.ack_id = "";
    r = be_client(b, "bemit", &cm);
    ck_assert_str_eq(resp_error(r), "PEER_NOT_FOUND");
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    /* A peer emits to the backend, which acks. */
    send_json(a, "{\"emit\":{\"to\":\"notifier\",\"event\":\"ping\",\"data\":7,\"ackId\":\"p1\"}}");
    sm = be_next_server(b);
    ck_assert_int_eq(sm->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_EMIT);
    ck_assert_str_eq(sm->emit->from, "alice");
    ck_assert_str_eq(sm->emit->event, "ping");
    ck_assert_str_eq(sm->emit->ack_id, "p1");
    Meshsig__V1__Ack ack = MESHSIG__V1__ACK__INIT;
    ack.ack_id = "p1";
    ack.to = "alice";
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_ACK;
    cm.ack = &ack;
    r = be_client(b, "bemit", &cm);
    ck_assert_msg(resp_ok(r), "ack: %s", resp_error(r));
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    j = expect_key(a, "ack");
    ck_assert_str_eq(str_at(j, "ack", "ackId", NULL), "p1");
    ck_assert_str_eq(str_at(j, "ack", "from", NULL), "notifier");
    json_decref(j);
    /* A persistent emit to an absent peer: ok once stored, delivered when it joins. */
    em.to = "ghost";
    em.event = "later";
    em.ack_id = "";
    em.persistent = 1;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_EMIT;
    cm.emit = &em; /* a oneof: cm.ack shared its storage */
    r = be_client(b, "bemit", &cm);
    ck_assert_msg(resp_ok(r), "persistent emit: %s", resp_error(r));
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    wsc_t *g = join_as(cl.gw_port[g1], "bemit", "ghost");
    j = skip_to(g, "emit");
    ck_assert_str_eq(str_at(j, "emit", "from", NULL), "notifier");
    ck_assert_str_eq(str_at(j, "emit", "event", NULL), "later");
    json_decref(j);
    wsc_free(g);
    em.persistent = 0;
    /* A backend that is not attached sends nothing. */
    be_t *x = be_new("stranger");
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_EMIT;
    cm.emit = &em;
    em.to = "alice";
    r = be_client(x, "bemit", &cm);
    ck_assert_str_eq(resp_error(r), "NOT_JOINED");
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    be_free(x);
    wsc_free(a);
    be_free(b);
}
END_TEST

/* The event stream: a snapshot, then joins and leaves in order. */
START_TEST(events)
{
    wsc_t *a = join_as(cl.gw_port[g1], "bev", "alice");
    be_t *b = be_new("watcher");
    be_attach(b, "bev", NULL, NULL, 1);
    Meshsig__Backend__V1__PeerEvent *ev = be_next_event(b);
    ck_assert_int_eq(ev->kind, MESHSIG__BACKEND__V1__PEER_EVENT__KIND__SNAPSHOT);
    ck_assert_uint_eq(ev->n_peers, 1);
    ck_assert_str_eq(ev->peers[0], "alice");
    ck_assert(!ev->more);
    wsc_t *c = join_as(cl.gw_port[g2], "bev", "carol");
    ev = be_next_event(b);
    ck_assert_int_eq(ev->kind, MESHSIG__BACKEND__V1__PEER_EVENT__KIND__JOINED);
    ck_assert_str_eq(ev->peer_id, "carol");
    wsc_free(a);
    ev = be_next_event(b);
    ck_assert_int_eq(ev->kind, MESHSIG__BACKEND__V1__PEER_EVENT__KIND__LEFT);
    ck_assert_str_eq(ev->peer_id, "alice");
    /* Heartbeats with the same state start nothing again. */
    ck_assert_ptr_null(be_next(b, 1000));
    wsc_free(c);
    ev = be_next_event(b);
    ck_assert_int_eq(ev->kind, MESHSIG__BACKEND__V1__PEER_EVENT__KIND__LEFT);
    be_free(b);
}
END_TEST

/* A retried request (same req_id) is answered again and not applied twice; ids are unique
 * between peers and backends; malformed requests are refused. */
START_TEST(retries_and_ids)
{
    be_t *b = be_new("once");
    be_attach(b, "bretry", NULL, NULL, 0);
    wsc_t *a = join_as(cl.gw_port[g1], "bretry", "alice");
    Meshsig__V1__Emit em = MESHSIG__V1__EMIT__INIT;
    em.to = "alice";
    em.event = "once";
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_EMIT;
    cm.emit = &em;
    Meshsig__Backend__V1__Request rq = MESHSIG__BACKEND__V1__REQUEST__INIT;
    rq.op_case = MESHSIG__BACKEND__V1__REQUEST__OP_CLIENT;
    rq.client = &cm;
    rq.req_id = "same";
    for (int i = 0; i < 3; i++) {
        Meshsig__Backend__V1__Response *r = be_send(b, "bretry", &rq);
        ck_assert(resp_ok(r));
        ck_assert_str_eq(r->req_id, "same");
        meshsig__backend__v1__response__free_unpacked(r, NULL);
    }
    json_decref(expect_key(a, "emit"));
    expect_quiet(a, 300);
    /* A peer cannot take a backend's id, nor a backend a peer's. */
    wsc_t *x = wsc_connect(cl.gw_port[g2], "meshsig.v1.json", T_MS);
    send_json(x, "{\"id\":\"h\",\"hello\":{\"namespace\":\"bretry\",\"peerId\":\"once\"}}");
    expect_error(x, "ID_TAKEN", "h");
    wsc_free(x);
    be_t *y = be_new("alice");
    Meshsig__Backend__V1__Attach at = MESHSIG__BACKEND__V1__ATTACH__INIT;
    Meshsig__Backend__V1__Request arq = MESHSIG__BACKEND__V1__REQUEST__INIT;
    arq.op_case = MESHSIG__BACKEND__V1__REQUEST__OP_ATTACH;
    arq.attach = &at;
    Meshsig__Backend__V1__Response *r = be_send(y, "bretry", &arq);
    ck_assert_str_eq(resp_error(r), "ID_TAKEN");
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    /* Another version, a namespace sent to the wrong shard, an invalid instance. */
    arq.req_id = NULL;
    Meshsig__Backend__V1__Request bad = arq;
    bad.instance = "y";
    bad.namespace_ = "bretry";
    bad.req_id = "v2";
    bad.version = 2;
    size_t len = meshsig__backend__v1__request__get_packed_size(&bad);
    uint8_t buf[256];
    ck_assert_uint_le(len, sizeof(buf));
    meshsig__backend__v1__request__pack(&bad, buf);
    char subj[128];
    snprintf(subj, sizeof(subj), "meshsig.backend.v1.shard.%u", cluster_shard_of("bretry"));
    natsMsg *m = NULL;
    ck_assert_int_eq(natsConnection_Request(&m, y->nc, subj, buf, (int)len, 3000), NATS_OK);
    r = meshsig__backend__v1__response__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                               (const uint8_t *)natsMsg_GetData(m));
    ck_assert_str_eq(resp_error(r), "BAD_REQUEST");
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    natsMsg_Destroy(m);
    snprintf(subj, sizeof(subj), "meshsig.backend.v1.shard.%u",
             (cluster_shard_of("bretry") + 1) % SHARDS);
    bad.version = 1;
    meshsig__backend__v1__request__pack(&bad, buf);
    /* The other shard's owner (the one coordinator here) answers: wrong shard. */
    ck_assert_int_eq(natsConnection_Request(&m, y->nc, subj, buf, (int)len, 3000), NATS_OK);
    r = meshsig__backend__v1__response__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                               (const uint8_t *)natsMsg_GetData(m));
    ck_assert_str_eq(resp_error(r), "BAD_REQUEST");
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    natsMsg_Destroy(m);
    be_free(y);
    wsc_free(a);
    be_free(b);
}
END_TEST

/* A backend that stops sending heartbeats is withdrawn after the timeout: a call waiting on it
 * fails SERVICE_UNAVAILABLE then, not before, and later calls fail at once. */
START_TEST(dead_backend_withdrawn)
{
    be_t *b = be_new("mortal");
    be_attach(b, "bdead", "sum", NULL, 0);
    wsc_t *a = join_as(cl.gw_port[g1], "bdead", "alice");
    be_stop_beating(b); /* it hangs: connected, silent */
    long long t0 = cluster_now_ms();
    send_json(
        a, "{\"service\":{\"call\":{\"service\":\"sum\",\"callId\":\"w\",\"timeoutMs\":60000}}}");
    ck_assert_int_eq(be_next_server(b)->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE);
    json_t *j = NULL;
    for (int i = 0; i < 20 && !j; i++)
        j = wsc_recv_json(a, 1000);
    ck_assert_ptr_nonnull(j);
    long long waited = cluster_now_ms() - t0;
    ck_assert_str_eq(str_at(j, "service", "reply", "callId", NULL), "w");
    ck_assert_str_eq(str_at(j, "service", "reply", "error", "code", NULL), "SERVICE_UNAVAILABLE");
    json_decref(j);
    /* The last attach was at most one heartbeat period (300 ms) before t0. */
    ck_assert_int_ge(waited, TIMEOUT_MS - 300);
    send_json(a, "{\"id\":\"n\",\"service\":{\"call\":{\"service\":\"sum\",\"callId\":\"n\"}}}");
    json_decref(expect_key(a, "ok"));
    j = expect_key(a, "service");
    ck_assert_str_eq(str_at(j, "service", "reply", "callId", NULL), "n");
    ck_assert_str_eq(str_at(j, "service", "reply", "error", "code", NULL), "SERVICE_UNAVAILABLE");
    json_decref(j);
    /* Its next attach makes it a provider again (created: the owner had forgotten it). */
    Meshsig__Backend__V1__Response *r = be_attach_now(b);
    ck_assert(resp_ok(r));
    ck_assert(r->created);
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    send_json(a, "{\"service\":{\"call\":{\"service\":\"sum\",\"callId\":\"z\"}}}");
    ck_assert_int_eq(be_next_server(b)->msg_case, MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE);
    wsc_free(a);
    be_free(b);
}
END_TEST

/* ---- owner change ------------------------------------------------------------------------- */

static void failover_up(void)
{
    static const char *const args[] = {"--backend-timeout-ms",
                                       "1200",
                                       "--lease-ttl-ms",
                                       "1200",
                                       "--coord-timeout-ms",
                                       "800",
                                       "--coord-heartbeat-ms",
                                       "200",
                                       "--resync-timeout-ms",
                                       "300",
                                       NULL};
    ck_assert_int_eq(cluster_start_args(&cl, NULL, args), 0);
    ck_assert_int_eq(cluster_add_coordinator(&cl), 1);
    /* Both serve their rendezvous share before the test, so that the owner it kills is
     * not one about to hand the shard over anyway. */
    for (int i = 0; i < 2; i++) {
        int ready = 0;
        for (long long end = cluster_now_ms() + 30000; !ready && cluster_now_ms() < end;) {
            ready = http_request(cluster_coord_admin(&cl, i), "GET", "/readyz", NULL, NULL, NULL) ==
                    200;
            if (!ready)
                usleep(50 * 1000);
        }
        ck_assert_msg(ready, "coordinator %d never ready", i);
    }
    const char *dev[] = {"--insecure-dev", NULL};
    g1 = cluster_add_gateway(&cl, "gw-a", dev);
    ck_assert_int_ge(g1, 0);
}

/* The namespace's owner is killed (SIGKILL): the next owner announces itself (Owner), the
 * backend's attach reaches it, and peers' calls reach the backend again; the peer stays. */
START_TEST(owner_killed)
{
    /* Both coordinators serve shards before the test: a namespace whose owner is the
     * second one is then as likely as one whose owner is the first. */
    be_t *b = be_new("survivor");
    natsSubscription *owners = NULL;
    ck_assert_int_eq(natsConnection_SubscribeSync(&owners, b->nc, "meshsig.backend.v1.owner"),
                     NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(b->nc), NATS_OK);
    be_attach(b, "bfail", "sum", NULL, 0);
    Meshsig__Backend__V1__Response *r = be_attach_now(b);
    ck_assert(resp_ok(r));
    char owner[64];
    snprintf(owner, sizeof(owner), "%s", r->coordinator_id);
    uint64_t epoch = r->epoch;
    meshsig__backend__v1__response__free_unpacked(r, NULL);
    wsc_t *a = join_as(cl.gw_port[g1], "bfail", "alice");
    int victim = !strcmp(owner, cluster_coord_id(&cl, 0)) ? 0 : 1;
    ck_assert_str_eq(cluster_coord_id(&cl, victim), owner);
    cluster_kill_coordinator(&cl, victim, SIGKILL);
    /* Owner for our shard from the survivor, with a newer epoch. */
    int announced = 0;
    for (int i = 0; i < 200 && !announced; i++) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, owners, 100) != NATS_OK)
            continue;
        Meshsig__Backend__V1__Owner *o = meshsig__backend__v1__owner__unpack(
            NULL, (size_t)natsMsg_GetDataLength(m), (const uint8_t *)natsMsg_GetData(m));
        ck_assert_ptr_nonnull(o);
        if (o->shard == cluster_shard_of("bfail")) {
            ck_assert_str_ne(o->coordinator_id, owner);
            ck_assert_uint_gt(o->epoch, epoch);
            announced = 1;
        }
        meshsig__backend__v1__owner__free_unpacked(o, NULL);
        natsMsg_Destroy(m);
    }
    ck_assert_msg(announced, "no Owner for shard %u", cluster_shard_of("bfail"));
    /* The heartbeat re-attaches within a period; a call then reaches the backend. */
    int served = 0;
    for (int i = 0; i < 40 && !served; i++) {
        send_json(a,
                  "{\"id\":\"q%d\",\"service\":{\"call\":{\"service\":\"sum\","
                  "\"callId\":\"q%d\",\"args\":[1,2]}}}",
                  i, i);
        Meshsig__Backend__V1__Delivery *d = be_next(b, 250);
        if (d && d->msg_case == MESHSIG__BACKEND__V1__DELIVERY__MSG_SERVER &&
            d->server->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE) {
            ck_assert_str_eq(d->server->service->call->from, "alice");
            char id[128];
            snprintf(id, sizeof(id), "%s", d->server->service->call->call_id);
            be_reply(b, "bfail", id, 3);
            served = 1;
        }
    }
    ck_assert(served);
    json_t *j = NULL;
    for (int i = 0; i < 100; i++) {
        j = recv_json(a);
        json_t *rep = json_object_get(json_object_get(j, "service"), "reply");
        if (json_object_get(rep, "result"))
            break;
        json_decref(j); /* oks and errors of the calls made while the shard moved */
        j = NULL;
    }
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq((int)json_number_value(json_object_get(
                         json_object_get(json_object_get(j, "service"), "reply"), "result")),
                     3);
    json_decref(j);
    natsSubscription_Destroy(owners);
    wsc_free(a);
    be_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("backend");
    TCase *tc = tcase_create("backend");
    tcase_add_unchecked_fixture(tc, cluster_up, cluster_down);
    tcase_add_checked_fixture(tc, client_up, client_down);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, info);
    tcase_add_test(tc, service_with_peers);
    tcase_add_test(tc, topics_both_ways);
    tcase_add_test(tc, emits_both_ways);
    tcase_add_test(tc, events);
    tcase_add_test(tc, retries_and_ids);
    tcase_add_test(tc, dead_backend_withdrawn);
    suite_add_tcase(s, tc);
    TCase *fo = tcase_create("failover");
    tcase_add_unchecked_fixture(fo, failover_up, cluster_down);
    tcase_add_checked_fixture(fo, client_up, client_down);
    tcase_set_timeout(fo, 120);
    tcase_add_test(fo, owner_killed);
    suite_add_tcase(s, fo);
    return run_suite(s);
}

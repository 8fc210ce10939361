/* SPDX-License-Identifier: Apache-2.0 */
/* Backends over NATS: attach and detach, their requests handled as a peer's, deliveries to them,
 * join/leave events, retries answered again, and withdrawal after silence (backend.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "backend.pb-c.h"
#include "clock.h"
#include "internal.h"
#include "log.h"
#include "pblimit.h"
#include "servermsg.h"
#include "subject.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code
#define VERSION 1u
#define MAX_ID 64          /* bytes of an instance id and of a req_id */
#define MAX_NS 255         /* bytes of a namespace name, as a resume token carries it */
#define MAX_NAMES 64       /* services, and subscriptions, in one Attach */
#define MAX_PER_NS 64      /* backends attached to one namespace */
#define RING 64            /* answers kept per backend for retries */
#define MAX_LATER 64       /* requests whose reply comes later (a stored persistent emit) */
#define LATER_MS 60000     /* how long such a reply keeps its reply subject */
#define SWEEP_MS 100       /* expiry resolution */
#define SNAPSHOT_PART 4096 /* peer ids per SNAPSHOT event, well inside a NATS payload */

typedef struct {
    char *req_id;
    uint8_t *resp; /* the packed Response */
    size_t len;
} answer_t;

typedef struct {
    char *req_id;
    char *reply; /* NATS reply subject, or NULL */
    uint64_t until;
} later_t;

/* ns->mods->backends: one per instance attached to the namespace. */
typedef struct ms_backend {
    ms_member_t *face; /* its peer face: id = instance, handle MS_PEER_NONE, backend = this */
    char **services, **subs;
    size_t n_services, n_subs;
    int events;
    uint64_t last_ms; /* monotonic, of its last Attach */
    answer_t ring[RING];
    size_t ring_next;
    later_t later[MAX_LATER];
    size_t n_later;
    UT_hash_handle hh; /* by face->id */
} ms_backend_t;

static uint32_t timeout_ms(const ms_coord_t *c)
{
    /* 0: a config built without it (unit tests, fuzz targets) gets the default. */
    return c->cfg->backend_timeout_ms > 0 ? (uint32_t)c->cfg->backend_timeout_ms : 3000;
}

static uint32_t heartbeat_ms(const ms_coord_t *c)
{
    return timeout_ms(c) / 3 ? timeout_ms(c) / 3 : 1;
}

static uint64_t epoch_of(const ms_coord_t *c, uint32_t shard)
{
    return c->outbox.epochs && shard < c->outbox.n_shards ? c->outbox.epochs[shard] : 0;
}

static int id_ok(const char *id)
{
    return id && strlen(id) <= MAX_ID && ms_auth_peer_id_valid(id) && ms_subject_id_ok(id);
}

static void names_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int names_has(char *const *v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(v[i], s))
            return 1;
    return 0;
}

static char **names_dup(char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof(*out));
    for (size_t i = 0; out && i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            names_free(out, i);
            return NULL;
        }
    }
    return out;
}

static void backend_free(ms_backend_t *b)
{
    names_free(b->services, b->n_services);
    names_free(b->subs, b->n_subs);
    for (size_t i = 0; i < RING; i++) {
        free(b->ring[i].req_id);
        free(b->ring[i].resp);
    }
    for (size_t i = 0; i < b->n_later; i++) {
        free(b->later[i].req_id);
        free(b->later[i].reply);
    }
    ms_member_free(b->face);
    free(b);
}

static ms_backend_t *backend_get(ms_ns_t *ns, const char *id)
{
    ms_backend_t *b;
    HASH_FIND_STR(ms_ns_mods(ns)->backends, id, b);
    return b;
}

size_t ms_backend_count(const ms_ns_t *ns)
{
    return HASH_COUNT(ms_ns_mods(ns)->backends);
}

static json_t *names_json(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

json_t *ms_backend_json(const ms_ns_t *ns)
{
    json_t *arr = json_array();
    for (const ms_backend_t *b = ms_ns_mods(ns)->backends; arr && b; b = b->hh.next)
        json_array_append_new(arr,
                              json_pack("{s:s, s:o, s:o, s:b}", "id", b->face->id, "services",
                                        names_json(b->services, b->n_services), "subscriptions",
                                        names_json(b->subs, b->n_subs), "events", b->events));
    return arr;
}

/* Takes the backend out as a peer leaves: its calls fail over, waits on it fail, etc. */
static void backend_remove(ms_coord_t *c, ms_ns_t *ns, ms_backend_t *b)
{
    ms_ns_member_gone(c, ns, b->face);
    ms_ns_face_remove(ns, b->face);
    HASH_DEL(ns->mods->backends, b);
    backend_free(b);
}

static void publish(ms_coord_t *c, const char *subject, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        ms_warn("backend message to %s dropped: out of memory", subject);
        return;
    }
    protobuf_c_message_pack(m, buf);
    ms_bus_publish(c->bus, subject, NULL, buf, len);
    free(buf);
}

static void send_delivery(ms_coord_t *c, uint32_t shard, const char *instance,
                          Meshsig__Backend__V1__Delivery *d)
{
    char subj[256];
    if (!ms_subject(subj, sizeof(subj), c->cfg->prefix, MS_SUBJ_BACKEND_TO, instance))
        return;
    Meshsig__Backend__V1__Batch bt = MESHSIG__BACKEND__V1__BATCH__INIT;
    bt.shard = shard;
    bt.epoch = epoch_of(c, shard);
    bt.coordinator_id = c->id;
    bt.n_deliveries = 1;
    bt.deliveries = &d;
    bt.version = VERSION;
    publish(c, subj, &bt.base);
}

/* Keeps a packed answer for a retry of req_id (the oldest goes). Takes resp. */
static void remember(ms_backend_t *b, const char *req_id, uint8_t *resp, size_t len)
{
    answer_t *a = &b->ring[b->ring_next];
    char *id = strdup(req_id);
    if (!id) {
        free(resp);
        return;
    }
    free(a->req_id);
    free(a->resp);
    *a = (answer_t){.req_id = id, .resp = resp, .len = len};
    b->ring_next = (b->ring_next + 1) % RING;
}

static const answer_t *recall(const ms_backend_t *b, const char *req_id)
{
    for (size_t i = 0; i < RING; i++)
        if (b->ring[i].req_id && !strcmp(b->ring[i].req_id, req_id))
            return &b->ring[i];
    return NULL;
}

/* Answers request req_id with sm (ok or error): a Response on the reply subject, kept for
 * retries when b is known. Without a reply subject only an error is said, as a delivery (a
 * request without a reply subject is like a peer's request without an id). */
static void respond(ms_coord_t *c, uint32_t shard, const char *ns_name, const char *instance,
                    ms_backend_t *b, const char *req_id, const char *reply,
                    const Meshsig__V1__ServerMessage *sm, int created)
{
    Meshsig__Backend__V1__Response r = MESHSIG__BACKEND__V1__RESPONSE__INIT;
    r.req_id = (char *)req_id;
    r.reply = (Meshsig__V1__ServerMessage *)sm;
    r.shard = shard;
    r.epoch = epoch_of(c, shard);
    r.created = created;
    r.heartbeat_ms = heartbeat_ms(c);
    r.timeout_ms = timeout_ms(c);
    r.coordinator_id = c->id;
    r.version = VERSION;
    size_t len = meshsig__backend__v1__response__get_packed_size(&r);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return;
    meshsig__backend__v1__response__pack(&r, buf);
    if (reply && *reply)
        ms_bus_publish(c->bus, reply, NULL, buf, len);
    else if (sm->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR && id_ok(instance)) {
        Meshsig__Backend__V1__Delivery d = MESHSIG__BACKEND__V1__DELIVERY__INIT;
        d.namespace_ = (char *)ns_name;
        d.msg_case = MESHSIG__BACKEND__V1__DELIVERY__MSG_SERVER;
        d.server = (Meshsig__V1__ServerMessage *)sm;
        send_delivery(c, shard, instance, &d);
    }
    if (b)
        remember(b, req_id, buf, len);
    else
        free(buf);
}

static void refuse(ms_coord_t *c, uint32_t shard, const Meshsig__Backend__V1__Request *rq,
                   ms_backend_t *b, const char *reply, Meshsig__V1__ErrorCode code, const char *fmt,
                   ...) __attribute__((format(printf, 7, 8)));
static void refuse(ms_coord_t *c, uint32_t shard, const Meshsig__Backend__V1__Request *rq,
                   ms_backend_t *b, const char *reply, Meshsig__V1__ErrorCode code, const char *fmt,
                   ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    const char *req_id = rq && rq->req_id ? rq->req_id : "";
    ms_sm_error_t e;
    respond(c, shard, rq ? rq->namespace_ : "", rq ? rq->instance : NULL, b, req_id, reply,
            ms_sm_error(&e, req_id, code, text), 0);
}

static void respond_ok(ms_coord_t *c, ms_ns_t *ns, ms_backend_t *b, const char *req_id,
                       const char *reply, int created)
{
    ms_sm_ok_t ok;
    respond(c, ns->shard, ns->name, b->face->id, b, req_id, reply, ms_sm_ok(&ok, req_id), created);
}

/* ---- requests whose reply comes later ---------------------------------------------------- */

static later_t *later_find(ms_backend_t *b, const char *req_id)
{
    for (size_t i = 0; i < b->n_later; i++)
        if (!strcmp(b->later[i].req_id, req_id))
            return &b->later[i];
    return NULL;
}

static void later_drop(ms_backend_t *b, later_t *l)
{
    free(l->req_id);
    free(l->reply);
    *l = b->later[--b->n_later];
}

/* Full or out of memory: the reply then comes as a delivery, as without a reply subject. */
static void later_add(ms_backend_t *b, const char *req_id, const char *reply, uint64_t now)
{
    if (b->n_later == MAX_LATER)
        return;
    later_t l = {
        .req_id = strdup(req_id), .reply = reply ? strdup(reply) : NULL, .until = now + LATER_MS};
    if (!l.req_id || (reply && !l.reply)) {
        free(l.req_id);
        free(l.reply);
        return;
    }
    b->later[b->n_later++] = l;
}

/* The face's deliver (ms_deliver, ms_member_error). */
static void deliver(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                    const Meshsig__V1__ServerMessage *msg)
{
    ms_backend_t *b = ms_member_rare(to)->backend;
    int reply = msg->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_OK ||
                msg->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR;
    later_t *l = reply && msg->id && *msg->id ? later_find(b, msg->id) : NULL;
    if (l) {
        char *req_id = l->req_id, *rs = l->reply;
        l->req_id = l->reply = NULL;
        later_drop(b, l);
        respond(c, ns->shard, ns->name, to->id, b, req_id, rs, msg, 0);
        free(req_id);
        free(rs);
        return;
    }
    Meshsig__Backend__V1__Delivery d = MESHSIG__BACKEND__V1__DELIVERY__INIT;
    d.namespace_ = ns->name;
    d.msg_case = MESHSIG__BACKEND__V1__DELIVERY__MSG_SERVER;
    d.server = (Meshsig__V1__ServerMessage *)msg;
    send_delivery(c, ns->shard, to->id, &d);
}

/* ---- events -------------------------------------------------------------------------------- */

static void send_event(ms_coord_t *c, ms_ns_t *ns, ms_backend_t *b,
                       Meshsig__Backend__V1__PeerEvent *ev)
{
    Meshsig__Backend__V1__Delivery d = MESHSIG__BACKEND__V1__DELIVERY__INIT;
    d.namespace_ = ns->name;
    d.msg_case = MESHSIG__BACKEND__V1__DELIVERY__MSG_EVENT;
    d.event = ev;
    send_delivery(c, ns->shard, b->face->id, &d);
}

/* The peers now, in parts of SNAPSHOT_PART ids: the start of b's event stream. */
static void send_snapshot(ms_coord_t *c, ms_ns_t *ns, ms_backend_t *b)
{
    size_t n = ns->members.n, sent = 0;
    char **ids = malloc((n < SNAPSHOT_PART ? n : SNAPSHOT_PART) * sizeof(*ids) + 1);
    if (!ids)
        return;
    Meshsig__Backend__V1__PeerEvent ev = MESHSIG__BACKEND__V1__PEER_EVENT__INIT;
    ev.kind = MESHSIG__BACKEND__V1__PEER_EVENT__KIND__SNAPSHOT;
    ev.peers = ids;
    uint32_t i = 0; /* the index's next slot: nothing joins or leaves between the parts */
    do {
        for (ev.n_peers = 0; i < ns->members.cap && ev.n_peers < SNAPSHOT_PART; i++)
            if (ns->members.slot[i])
                ids[ev.n_peers++] = (char *)((const ms_member_t *)ns->members.slot[i])->id;
        sent += ev.n_peers;
        ev.more = sent < n;
        send_event(c, ns, b, &ev);
    } while (ev.more);
    free(ids);
}

static void notify(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *m,
                   Meshsig__Backend__V1__PeerEvent__Kind kind)
{
    if (ms_member_rare(m)->backend)
        return; /* events are about peers */
    Meshsig__Backend__V1__PeerEvent ev = MESHSIG__BACKEND__V1__PEER_EVENT__INIT;
    ev.kind = kind;
    ev.peer_id = (char *)m->id;
    ms_backend_t *b, *tmp;
    HASH_ITER(hh, ms_ns_mods(ns)->backends, b, tmp)
    if (b->events)
        send_event(c, ns, b, &ev);
}

static void member_joined(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    notify(c, ns, m, MESHSIG__BACKEND__V1__PEER_EVENT__KIND__JOINED);
}

static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    notify(c, ns, m, MESHSIG__BACKEND__V1__PEER_EVENT__KIND__LEFT);
}

static void cleanup(ms_ns_t *ns)
{
    ms_backend_t *b, *tmp;
    HASH_ITER(hh, ms_ns_mods(ns)->backends, b, tmp)
    {
        ms_ns_face_remove(ns, b->face);
        HASH_DEL(ns->mods->backends, b);
        backend_free(b);
    }
}

const ms_ns_hooks_t ms_backend_hooks = {.name = "backend",
                                        .cleanup = cleanup,
                                        .member_joined = member_joined,
                                        .member_gone = member_gone};

/* ---- attach and detach ---------------------------------------------------------------------- */

static ms_backend_t *backend_new(const char *id)
{
    ms_backend_t *b = calloc(1, sizeof(*b));
    if (!b || !(b->face = ms_member_new(id)) || !(b->services = calloc(1, sizeof(char *))) ||
        !(b->subs = calloc(1, sizeof(char *))) || !ms_member_rare_get(b->face)) {
        if (b) {
            free(b->services);
            ms_member_free(b->face);
        }
        free(b);
        return NULL;
    }
    b->face->handle = MS_PEER_NONE;
    b->face->rare->deliver = deliver;
    b->face->rare->backend = b;
    return b;
}

/* Brings b's registrations to what a declares; MS_OK or why not (b is then half-way and the
 * caller withdraws it). */
static ms_err_t apply(ms_ns_t *ns, ms_backend_t *b, const Meshsig__Backend__V1__Attach *a)
{
    for (size_t i = 0; i < b->n_services; i++)
        if (!names_has(a->services, a->n_services, b->services[i]))
            ms_service_withdraw(ns, b->services[i], b->face);
    for (size_t i = 0; i < a->n_services; i++)
        if (!names_has(b->services, b->n_services, a->services[i]) &&
            ms_service_provide(ns, a->services[i], b->face) != MS_OK)
            return MS_ERR_NOMEM;
    for (size_t i = 0; i < b->n_subs; i++)
        if (!names_has(a->subscriptions, a->n_subscriptions, b->subs[i]))
            ms_topic_unsubscribe(ns, b->face, b->subs[i]);
    for (size_t i = 0; i < a->n_subscriptions; i++) {
        if (names_has(b->subs, b->n_subs, a->subscriptions[i]))
            continue;
        ms_err_t err = ms_topic_subscribe(ns, b->face, a->subscriptions[i]);
        if (err != MS_OK)
            return err;
    }
    char **sv = names_dup(a->services, a->n_services),
         **sb = names_dup(a->subscriptions, a->n_subscriptions);
    if (!sv || !sb) {
        names_free(sv, sv ? a->n_services : 0);
        names_free(sb, sb ? a->n_subscriptions : 0);
        return MS_ERR_NOMEM;
    }
    names_free(b->services, b->n_services);
    names_free(b->subs, b->n_subs);
    b->services = sv;
    b->n_services = a->n_services;
    b->subs = sb;
    b->n_subs = a->n_subscriptions;
    return MS_OK;
}

static void attach(ms_coord_t *c, uint32_t shard, const char *reply,
                   const Meshsig__Backend__V1__Request *rq, ms_ns_t *ns, ms_backend_t *b)
{
    const Meshsig__Backend__V1__Attach *a = rq->attach;
    if (a->n_services > MAX_NAMES || a->n_subscriptions > MAX_NAMES) {
        refuse(c, shard, rq, b, reply, ERR(BAD_REQUEST),
               "an attach names at most %d services and %d subscriptions", MAX_NAMES, MAX_NAMES);
        return;
    }
    for (size_t i = 0; i < a->n_services; i++)
        if (!ms_msg_name_ok(a->services[i])) {
            refuse(c, shard, rq, b, reply, ERR(BAD_REQUEST), "service names are 1 to %d bytes",
                   MS_MSG_MAX_NAME);
            return;
        }
    for (size_t i = 0; i < a->n_subscriptions; i++)
        if (!ms_topic_pattern_ok(a->subscriptions[i])) {
            refuse(c, shard, rq, b, reply, ERR(BAD_REQUEST),
                   "bad pattern %s: dot-separated tokens, '*' for one token, '>' last",
                   a->subscriptions[i]);
            return;
        }
    int created = 0;
    if (!b) {
        if (!ns && ms_ns_get(c, rq->namespace_, &ns) != MS_OK) {
            refuse(c, shard, rq, NULL, reply, ERR(INTERNAL), "out of memory");
            return;
        }
        if (ms_ns_member(ns, rq->instance)) {
            refuse(c, shard, rq, NULL, reply, ERR(ID_TAKEN), "peer id %s is taken in namespace %s",
                   rq->instance, ns->name);
            ms_ns_destroy_if_empty(c, ns);
            return;
        }
        if (HASH_COUNT(ms_ns_mods(ns)->backends) >= MAX_PER_NS ||
            !(b = backend_new(rq->instance)) || ms_ns_face_add(ns, b->face) != MS_OK) {
            if (b)
                backend_free(b);
            refuse(c, shard, rq, NULL, reply, ERR(NAMESPACE_FULL),
                   "namespace %s has %d backends attached, or memory ran out", ns->name,
                   MAX_PER_NS);
            ms_ns_destroy_if_empty(c, ns);
            return;
        }
        HASH_ADD_KEYPTR(hh, ns->mods->backends, b->face->id, strlen(b->face->id), b);
        created = 1;
        c->backends.n_attached++;
        ms_info("backend %s attached to namespace %s", b->face->id, ns->name);
    }
    ms_err_t err = apply(ns, b, a);
    if (err != MS_OK) {
        refuse(c, shard, rq, NULL, reply, err == MS_ERR_FULL ? ERR(RATE_LIMITED) : ERR(INTERNAL),
               "%s", err == MS_ERR_FULL ? "too many subscriptions" : "out of memory");
        backend_remove(c, ns, b);
        ms_ns_destroy_if_empty(c, ns);
        return;
    }
    int start_events = a->events && (created || !b->events);
    b->events = a->events;
    b->last_ms = ms_clock_mono_ms();
    respond_ok(c, ns, b, rq->req_id, reply, created);
    if (start_events)
        send_snapshot(c, ns, b);
}

static void detach(ms_coord_t *c, uint32_t shard, const char *reply,
                   const Meshsig__Backend__V1__Request *rq, ms_ns_t *ns, ms_backend_t *b)
{
    if (b) {
        ms_info("backend %s detached from namespace %s", b->face->id, ns->name);
        backend_remove(c, ns, b);
        ms_ns_destroy_if_empty(c, ns);
    }
    /* Nothing is left to keep the answer in: a retry finds nothing and is ok again. */
    ms_sm_ok_t ok;
    respond(c, shard, rq->namespace_, rq->instance, NULL, rq->req_id, reply,
            ms_sm_ok(&ok, rq->req_id), 0);
}

/* A peer's request with the backend as sender (backend.proto lists what it may send). */
static void client_op(ms_coord_t *c, uint32_t shard, const char *reply,
                      const Meshsig__Backend__V1__Request *rq, ms_ns_t *ns, ms_backend_t *b)
{
    Meshsig__V1__ClientMessage *cm = rq->client;
    int allowed = 0, later = 0;
    switch (cm->msg_case) {
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_EMIT:
        allowed = 1;
        /* Stored for an absent peer: ok once JetStream has it (emit.c). */
        later = cm->emit->persistent && !ms_ns_party(ns, cm->emit->to);
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_ACK:
        allowed = 1;
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_TOPIC:
        allowed = cm->topic->op_case == MESHSIG__V1__TOPIC__OP_PUBLISH;
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_SERVICE:
        allowed = cm->service->op_case == MESHSIG__V1__SERVICE__OP_REPLY ||
                  cm->service->op_case == MESHSIG__V1__SERVICE__OP_CALL;
        break;
    default:
        break;
    }
    if (!allowed) {
        refuse(c, shard, rq, b, reply, ERR(BAD_REQUEST),
               "a backend sends emit, ack, topic.publish, service.reply or service.call; "
               "registrations go in its attach");
        return;
    }
    /* The module answers through ms_deliver (ms_backend_deliver), which finds the reply
     * subject here. Anything it does not answer at once (no reply yet for that request
     * type) is ok: it was done. */
    uint64_t now = ms_clock_mono_ms();
    later_add(b, rq->req_id, reply, now);
    ms_msg_handle(c, ns, b->face, rq->req_id, cm);
    later_t *l = later_find(b, rq->req_id);
    if (l && !later) {
        later_drop(b, l);
        respond_ok(c, ns, b, rq->req_id, reply, 0);
    }
}

void ms_backend_info(ms_coord_t *c, const char *reply)
{
    if (!reply || !*reply)
        return;
    Meshsig__Backend__V1__Info in = MESHSIG__BACKEND__V1__INFO__INIT;
    in.shards = (uint32_t)c->cfg->shards;
    in.heartbeat_ms = heartbeat_ms(c);
    in.timeout_ms = timeout_ms(c);
    in.coordinator_id = c->id;
    in.version = VERSION;
    publish(c, reply, &in.base);
}

static Meshsig__Backend__V1__Request *decode(ms_coord_t *c, uint32_t shard, const char *reply,
                                             const uint8_t *data, size_t len)
{
    char why[128] = "";
    c->backends.n_requests++;
    Meshsig__Backend__V1__Request *rq = (Meshsig__Backend__V1__Request *)ms_pblimit_unpack(
        &meshsig__backend__v1__request__descriptor, data, len, &ms_pblimit_bus, why, sizeof(why));
    if (!rq) {
        c->backends.n_bad++;
        refuse(c, shard, NULL, NULL, reply, ERR(BAD_REQUEST), "not a backend Request: %s", why);
        return NULL;
    }
    const char *bad = NULL;
    if (rq->version != VERSION)
        bad = "this coordinator speaks backend contract version 1";
    else if (!id_ok(rq->instance))
        bad = "instance ids are 1 to 64 bytes of A-Z a-z 0-9 _ : @ -";
    else if (!*rq->req_id || strlen(rq->req_id) > MAX_ID)
        bad = "req_id is 1 to 64 bytes";
    else if (!*rq->namespace_ || strlen(rq->namespace_) > MAX_NS)
        bad = "namespace names are 1 to 255 bytes";
    else if (ms_bus_shard_of(rq->namespace_, (uint32_t)c->cfg->shards) != shard)
        bad = "the namespace is in another shard: fnv1a64(namespace) mod Info.shards";
    if (bad) {
        c->backends.n_bad++;
        refuse(c, shard, rq, NULL, reply, ERR(BAD_REQUEST), "%s", bad);
        meshsig__backend__v1__request__free_unpacked(rq, NULL);
        return NULL;
    }
    return rq;
}

void ms_backend_request(ms_coord_t *c, uint32_t shard, const char *reply, const uint8_t *data,
                        size_t len)
{
    Meshsig__Backend__V1__Request *rq = decode(c, shard, reply, data, len);
    if (!rq)
        return;
    ms_ns_t *ns = ms_ns_find(c, rq->namespace_);
    ms_backend_t *b = ns ? backend_get(ns, rq->instance) : NULL;
    if (b) {
        /* A retry: the same answer, or (still waiting) the answer to the newest asker. */
        const answer_t *a = recall(b, rq->req_id);
        later_t *l = a ? NULL : later_find(b, rq->req_id);
        if (a || l)
            c->backends.n_retries++;
        if (a && reply && *reply)
            ms_bus_publish(c->bus, reply, NULL, a->resp, a->len);
        if (l) {
            char *r = reply ? strdup(reply) : NULL;
            if (r || !reply) {
                free(l->reply);
                l->reply = r;
            }
        }
        if (a || l)
            goto done;
    }
    switch (rq->op_case) {
    case MESHSIG__BACKEND__V1__REQUEST__OP_ATTACH:
        attach(c, shard, reply, rq, ns, b);
        break;
    case MESHSIG__BACKEND__V1__REQUEST__OP_DETACH:
        detach(c, shard, reply, rq, ns, b);
        break;
    case MESHSIG__BACKEND__V1__REQUEST__OP_CLIENT:
        if (!b) {
            refuse(c, shard, rq, NULL, reply, ERR(NOT_JOINED),
                   "backend %s is not attached to namespace %s: attach first", rq->instance,
                   rq->namespace_);
            break;
        }
        client_op(c, shard, reply, rq, ns, b);
        break;
    default:
        c->backends.n_bad++;
        refuse(c, shard, rq, b, reply, ERR(BAD_REQUEST), "a request needs an op");
        break;
    }
done:
    meshsig__backend__v1__request__free_unpacked(rq, NULL);
}

void ms_backend_request_later(ms_coord_t *c, uint32_t shard, const char *reply, const uint8_t *data,
                              size_t len)
{
    Meshsig__Backend__V1__Request *rq = decode(c, shard, reply, data, len);
    if (!rq)
        return;
    refuse(c, shard, rq, NULL, reply, ERR(UNAVAILABLE),
           "shard %u is being taken over by this coordinator; retry", shard);
    meshsig__backend__v1__request__free_unpacked(rq, NULL);
}

void ms_backend_tick(ms_coord_t *c, uint64_t now)
{
    if (now < c->backends.next_sweep_ms)
        return;
    c->backends.next_sweep_ms = now + SWEEP_MS;
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        if (!ms_ns_mods(ns)->backends)
            continue;
        ms_backend_t *b, *btmp;
        HASH_ITER(hh, ms_ns_mods(ns)->backends, b, btmp)
        {
            for (size_t i = 0; i < b->n_later;)
                if (b->later[i].until <= now)
                    later_drop(b, &b->later[i]);
                else
                    i++;
            if (now - b->last_ms <= (uint64_t)timeout_ms(c))
                continue;
            ms_warn("backend %s: no attach in namespace %s for %u ms; withdrawn", b->face->id,
                    ns->name, timeout_ms(c));
            c->backends.n_expired++;
            backend_remove(c, ns, b);
        }
        ms_ns_destroy_if_empty(c, ns);
    }
}

void ms_backend_announce_owner(ms_coord_t *c, uint32_t shard, uint64_t epoch)
{
    char subj[256];
    if (!ms_subject(subj, sizeof(subj), c->cfg->prefix, MS_SUBJ_BACKEND_OWNER, NULL))
        return;
    Meshsig__Backend__V1__Owner o = MESHSIG__BACKEND__V1__OWNER__INIT;
    o.shard = shard;
    o.epoch = epoch;
    o.coordinator_id = c->id;
    o.version = VERSION;
    publish(c, subj, &o.base);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Example backend in C (README "Backends"): provides the `sum` service in one namespace, with
 * cnats and protobuf-c and nothing of meshsig's own code but the generated backend.proto.
 *
 *   meshsig-example-sum [--nats URL] [--prefix P] [--namespace NS] [--id INSTANCE]
 *
 * A peer's client.call('sum', [1, 2, 3]) resolves with 6; anything but a list of numbers is
 * answered with the error BAD_REQUEST. The main thread attaches and sends the heartbeat (the
 * same attach every Info.heartbeat_ms, and at once when an Owner names our shard); cnats's
 * threads deliver calls, answered from the callback.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nats/nats.h>

#include "backend.pb-c.h"

typedef struct {
    natsConnection *nc;
    const char *prefix, *ns, *id;
    char shard_subject[256];
    uint32_t shard;
    atomic_ulong seq;
    atomic_int reattach;
    atomic_ullong epoch; /* highest batch epoch seen for our shard */
} backend_t;

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

/* The contract's shard: 64-bit FNV-1a over the namespace's bytes, mod Info.shards. */
static uint32_t shard_of(const char *ns, uint32_t shards)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)ns; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return (uint32_t)(h % shards);
}

/* Sends rq (instance, namespace, version and a fresh req_id filled in) to the owner and waits
 * for the answer, sending the same bytes again while nobody answers or the owner is rebuilding
 * (at most about 30 s). The Response (free it), or NULL. */
static Meshsig__Backend__V1__Response *send_request(backend_t *b, Meshsig__Backend__V1__Request *rq)
{
    char req_id[32];
    snprintf(req_id, sizeof(req_id), "%lu", (unsigned long)atomic_fetch_add(&b->seq, 1) + 1);
    rq->instance = (char *)b->id;
    rq->namespace_ = (char *)b->ns;
    rq->req_id = req_id;
    rq->version = 1;
    size_t len = meshsig__backend__v1__request__get_packed_size(rq);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf)
        return NULL;
    meshsig__backend__v1__request__pack(rq, buf);
    Meshsig__Backend__V1__Response *r = NULL;
    for (int attempt = 0; attempt < 30 && !r && !stopping; attempt++) {
        natsMsg *m = NULL;
        if (natsConnection_Request(&m, b->nc, b->shard_subject, buf, (int)len, 1000) != NATS_OK)
            continue; /* no owner right now: the same request again */
        r = meshsig__backend__v1__response__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                                   (const uint8_t *)natsMsg_GetData(m));
        natsMsg_Destroy(m);
        if (r && r->reply && r->reply->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR &&
            r->reply->error->code == MESHSIG__V1__ERROR_CODE__UNAVAILABLE) {
            meshsig__backend__v1__response__free_unpacked(r, NULL);
            r = NULL;
            nats_Sleep(100);
        }
    }
    free(buf);
    return r;
}

/* 0 when rq was answered ok; otherwise says why on stderr. */
static int request_ok(backend_t *b, Meshsig__Backend__V1__Request *rq, const char *what)
{
    Meshsig__Backend__V1__Response *r = send_request(b, rq);
    int ok = r && r->reply && r->reply->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_OK;
    if (!ok)
        fprintf(stderr, "sum: %s: %s\n", what,
                !r ? "no answer"
                   : (r->reply && r->reply->error ? r->reply->error->message : "no reply"));
    if (r)
        meshsig__backend__v1__response__free_unpacked(r, NULL);
    return ok ? 0 : -1;
}

static int attach(backend_t *b)
{
    static char *services[] = {"sum"};
    Meshsig__Backend__V1__Attach a = MESHSIG__BACKEND__V1__ATTACH__INIT;
    a.services = services;
    a.n_services = 1;
    Meshsig__Backend__V1__Request rq = MESHSIG__BACKEND__V1__REQUEST__INIT;
    rq.op_case = MESHSIG__BACKEND__V1__REQUEST__OP_ATTACH;
    rq.attach = &a;
    return request_ok(b, &rq, "attach");
}

static void reply_to_call(backend_t *b, const Meshsig__V1__ServiceCall *call)
{
    Meshsig__V1__Value result = MESHSIG__V1__VALUE__INIT;
    Meshsig__V1__Error err = MESHSIG__V1__ERROR__INIT;
    Meshsig__V1__ServiceReply rep = MESHSIG__V1__SERVICE_REPLY__INIT;
    rep.call_id = call->call_id;
    const Meshsig__V1__Value *args = call->args;
    int ok = args && args->kind_case == MESHSIG__V1__VALUE__KIND_LIST_VALUE;
    double sum = 0;
    for (size_t i = 0; ok && i < args->list_value->n_values; i++) {
        const Meshsig__V1__Value *v = args->list_value->values[i];
        ok = v->kind_case == MESHSIG__V1__VALUE__KIND_NUMBER_VALUE;
        if (ok)
            sum += v->number_value;
    }
    if (ok) {
        result.kind_case = MESHSIG__V1__VALUE__KIND_NUMBER_VALUE;
        result.number_value = sum;
        rep.result = &result;
    } else {
        err.code = MESHSIG__V1__ERROR_CODE__BAD_REQUEST;
        err.message = "sum takes a list of numbers";
        rep.error = &err;
    }
    Meshsig__V1__Service svc = MESHSIG__V1__SERVICE__INIT;
    svc.op_case = MESHSIG__V1__SERVICE__OP_REPLY;
    svc.reply = &rep;
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_SERVICE;
    cm.service = &svc;
    Meshsig__Backend__V1__Request rq = MESHSIG__BACKEND__V1__REQUEST__INIT;
    rq.op_case = MESHSIG__BACKEND__V1__REQUEST__OP_CLIENT;
    rq.client = &cm;
    request_ok(b, &rq, "service.reply");
}

/* cnats thread: a batch of deliveries. */
static void on_batch(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
    (void)nc;
    (void)sub;
    backend_t *b = ud;
    Meshsig__Backend__V1__Batch *bt = meshsig__backend__v1__batch__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    natsMsg_Destroy(msg);
    if (!bt)
        return;
    /* From an owner that has lost the shard: dropped (proto/backend.proto, Batch.epoch). */
    unsigned long long seen = atomic_load(&b->epoch);
    if (bt->version != 1 || bt->epoch < seen) {
        meshsig__backend__v1__batch__free_unpacked(bt, NULL);
        return;
    }
    atomic_store(&b->epoch, bt->epoch);
    for (size_t i = 0; i < bt->n_deliveries; i++) {
        const Meshsig__Backend__V1__Delivery *d = bt->deliveries[i];
        if (d->msg_case != MESHSIG__BACKEND__V1__DELIVERY__MSG_SERVER)
            continue;
        const Meshsig__V1__ServerMessage *sm = d->server;
        if (sm->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE &&
            sm->service->op_case == MESHSIG__V1__SERVICE__OP_CALL)
            reply_to_call(b, sm->service->call);
        else if (sm->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR)
            fprintf(stderr, "sum: error for request %s: %s\n", sm->id, sm->error->message);
    }
    meshsig__backend__v1__batch__free_unpacked(bt, NULL);
}

/* cnats thread: a coordinator took a shard over; ours means attach now. */
static void on_owner(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *ud)
{
    (void)nc;
    (void)sub;
    backend_t *b = ud;
    Meshsig__Backend__V1__Owner *o = meshsig__backend__v1__owner__unpack(
        NULL, (size_t)natsMsg_GetDataLength(msg), (const uint8_t *)natsMsg_GetData(msg));
    natsMsg_Destroy(msg);
    if (o && o->shard == b->shard)
        atomic_store(&b->reattach, 1);
    if (o)
        meshsig__backend__v1__owner__free_unpacked(o, NULL);
}

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], name))
            return argv[i + 1];
    return def;
}

int main(int argc, char **argv)
{
    backend_t b = {.prefix = arg(argc, argv, "--prefix", "meshsig"),
                   .ns = arg(argc, argv, "--namespace", "demo"),
                   .id = arg(argc, argv, "--id", "sum-1")};
    const char *url = arg(argc, argv, "--nats", "nats://127.0.0.1:4222");
    natsSubscription *to = NULL, *owners = NULL;
    natsMsg *m = NULL;
    Meshsig__Backend__V1__Info *info = NULL;
    int status = 1;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    natsOptions *opts = NULL;
    if (natsOptions_Create(&opts) != NATS_OK ||
        natsOptions_SetServers(opts, (const char *[]){url}, 1) != NATS_OK ||
        natsOptions_SetMaxReconnect(opts, -1) != NATS_OK ||
        natsConnection_Connect(&b.nc, opts) != NATS_OK) {
        fprintf(stderr, "sum: cannot connect to %s\n", url);
        goto done;
    }
    char subj[256];
    snprintf(subj, sizeof(subj), "%s.backend.v1.info", b.prefix);
    for (int i = 0; i < 30 && !info && !stopping; i++) {
        if (natsConnection_Request(&m, b.nc, subj, "", 0, 1000) != NATS_OK)
            continue;
        info = meshsig__backend__v1__info__unpack(NULL, (size_t)natsMsg_GetDataLength(m),
                                                  (const uint8_t *)natsMsg_GetData(m));
        natsMsg_Destroy(m);
    }
    if (!info || info->version != 1 || info->shards == 0) {
        fprintf(stderr, "sum: no coordinator answered %s\n", subj);
        goto done;
    }
    b.shard = shard_of(b.ns, info->shards);
    snprintf(b.shard_subject, sizeof(b.shard_subject), "%s.backend.v1.shard.%u", b.prefix, b.shard);
    snprintf(subj, sizeof(subj), "%s.backend.v1.to.%s", b.prefix, b.id);
    if (natsConnection_Subscribe(&to, b.nc, subj, on_batch, &b) != NATS_OK)
        goto done;
    snprintf(subj, sizeof(subj), "%s.backend.v1.owner", b.prefix);
    if (natsConnection_Subscribe(&owners, b.nc, subj, on_owner, &b) != NATS_OK ||
        natsConnection_Flush(b.nc) != NATS_OK)
        goto done;
    if (attach(&b) != 0)
        goto done;
    printf("backend %s attached to %s: service sum\n", b.id, b.ns);
    fflush(stdout);
    /* The heartbeat, in 50 ms steps so that a signal or an Owner is acted on at once. */
    int64_t next = nats_Now() + info->heartbeat_ms;
    while (!stopping) {
        nats_Sleep(50);
        if (nats_Now() >= next || atomic_exchange(&b.reattach, 0)) {
            attach(&b);
            next = nats_Now() + info->heartbeat_ms;
        }
    }
    Meshsig__Backend__V1__Detach dt = MESHSIG__BACKEND__V1__DETACH__INIT;
    Meshsig__Backend__V1__Request rq = MESHSIG__BACKEND__V1__REQUEST__INIT;
    rq.op_case = MESHSIG__BACKEND__V1__REQUEST__OP_DETACH;
    rq.detach = &dt;
    stopping = 0; /* one bounded try to leave at once (else the owner withdraws it) */
    request_ok(&b, &rq, "detach");
    status = 0;
done:
    natsSubscription_Destroy(to);
    natsSubscription_Destroy(owners);
    if (info)
        meshsig__backend__v1__info__free_unpacked(info, NULL);
    natsConnection_Destroy(b.nc);
    natsOptions_Destroy(opts);
    nats_Close();
    return status;
}

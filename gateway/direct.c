/* SPDX-License-Identifier: Apache-2.0 */
/* The direct path: signals between neighbours on two gateways, gateway -> NATS -> gateway.
 *
 * The owner of a namespace still decides every edge. When it announces one
 * (topology connect, a resume, a takeover, a peer moving), it tells each
 * side's gateway where the other end lives (bus.proto PeerLocation): that is
 * the edge record kept here, per (local session, neighbour). A signal to a
 * neighbour with a record on another gateway is appended to that gateway's
 * batch (dout.c: one NATS message per destination per loop turn) instead of
 * going to the owner.
 *
 * The receiving gateway delivers only what it can vouch for: its own record
 * for the target session names the sender at that gateway and session, from
 * the same owner epoch. Its records come only from batches that passed epoch
 * fencing (intake.c), so a deposed owner cannot open a path. Anything else is
 * held briefly (the owner's announcement to this gateway may be a few
 * messages behind the sender's) and then forwarded to the owner as the
 * sender's own request, which answers it (delivers it, NOT_NEIGHBOUR,
 * PEER_NOT_FOUND, ...). Nothing is dropped.
 *
 * Order (README "Wire protocol"): one sending gateway to one receiving
 * gateway is one NATS publisher and one subscription, so a pair's signals
 * stay in order. When the target moves (resume on another session or
 * gateway), signals sent to the old place may still be in flight there; the
 * sender then holds the pair's new signals, sends a DRAIN marker after the
 * old ones, and the old gateway passes the marker to the owner behind any
 * signals it forwards (a Barrier request). The owner delivers the barrier to
 * the target's current session behind those signals; that gateway answers
 * OPEN, and only then are the held signals sent to the new place. If the
 * barrier does not come back (the old gateway died), the held signals go to
 * the owner after DRAIN_TIMEOUT_US and the pair stays on the owner path until
 * the next announcement.
 *
 * When the sender moves instead (it resumed on another session or gateway),
 * what its old session sent may still be on the way to the target's gateway
 * when the owner's announcement of the new place gets there. That gateway
 * keeps the old place as "retiring": it still vouches for signals from there
 * and holds those from the new place (or from a session of its own, when the
 * sender moved here) until the old gateway's END for the old session, which
 * that gateway sends behind everything the session sent when it closes (the
 * owner's REPLACED closes it; a closing session sends nothing more). When
 * some of the old session's signals took the owner's path, the END says so
 * and the gateway also waits for the owner's `retired` for the session,
 * which the owner sends behind those. Without either within RETIRE_US (the
 * old gateway died, and what it had in flight with it), the new place's
 * signals go on.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dsig.h"
#include "hash.h"
#include "internal.h"
#include "log.h"
#include "pjframe.h"
#include "uthash_keyed.h"

#define DRAIN_TIMEOUT_US (2 * 1000000u) /* sender: held signals go to the owner after this */
#define HOLD_US (1000000u)              /* receiver: an unvouched signal waits this long */
#define RETIRE_US                                                                                  \
    (2 * 1000000u)    /* receiver: a moved sender's old place is vouched for this long             \
                       */
#define MAX_HELD 4096 /* per edge (sender) and per gateway (receiver) */
#define PAIR_BARRIER_TRIES                                                                         \
    3 /* an ad-hoc pair asks this often before it stays on the owner's path */

/* A packed DirectSignal waiting in a queue. */
typedef struct held {
    struct held *next;
    uint64_t until_us; /* receiver: forward to the owner after this */
    struct rx_pair *pair;
    char *from_gw; /* receiver: the sending gateway */
    size_t len;
    uint8_t data[];
} held_t;

/* One edge of a local session to a neighbour, as the owner announced it. */
typedef struct edge {
    struct {
        uint64_t session; /* ours */
        uint64_t peer;    /* ms_hash_keyed of the neighbour's id (clients pick ids) */
    } key;
    char *peer;
    char *gw;        /* the neighbour's gateway */
    uint64_t remote; /* its session there */
    uint64_t epoch;  /* of the announcement */
    uint32_t shard;
    uint8_t sent;          /* signals went direct to gw/remote */
    uint8_t draining;      /* the neighbour moved: held until the barrier passes */
    uint8_t via_owner;     /* the barrier timed out: owner path until re-announced */
    uint8_t unpaired;      /* an ad-hoc pair that ended: freed once its barrier is back */
    uint8_t barrier_tries; /* an ad-hoc pair's barriers that timed out */
    uint64_t drain_until_us;
    held_t *held, *held_tail;
    size_t n_held;
    /* The neighbour's previous place while it retires (the neighbour moved):
     * its signals from there are still vouched for, those from the new place
     * wait, until the old place's END (and the owner's retired when the END
     * asks for it) or retire_until_us. */
    char *old_gw;
    uint64_t old_remote, old_epoch, retire_until_us;
    uint8_t retiring;
    uint8_t old_end, old_owner_wait, old_owner_done;
    /* The same for the current place, when its END comes before the owner's
     * announcement of the move: then there is nothing to wait for. */
    uint8_t cur_end, cur_owner_wait, cur_owner_done;
    UT_hash_handle hh;
} edge_t;

/* Receiver: signals from one (gateway, session) to one of our sessions that
 * are held or were forwarded, so that later ones stay behind them. */
typedef struct rx_pair {
    char *key; /* "<to_session>/<from_session>/<from_gw>" */
    uint64_t to_session;
    size_t n_held;
    uint8_t forwarding; /* gave up vouching: the rest go to the owner too */
    uint8_t blocked;    /* scratch for one recheck walk */
    UT_hash_handle hh;
} rx_pair_t;

struct ms_gw_direct {
    edge_t *edges;
    rx_pair_t *pairs;
    held_t *rx_held, *rx_held_tail;
    size_t n_rx_held;
    size_t n_retiring; /* edges with a retiring old place */
    int retire_ended;  /* a retire ended during a recheck walk: walk again */
};

/* ---- records ---------------------------------------------------------------- */

/* The table's hash of a key, which already holds a hash of the peer: a mix of
 * 16 bytes instead of uthash's Jenkins hash over them (each signal finds its
 * edge on the sending and on the receiving gateway). */
static unsigned edge_hash(uint64_t session, uint64_t peer)
{
    uint64_t h = peer ^ session * 0x9E3779B97F4A7C15ull;
    return (unsigned)(h ^ h >> 32);
}

static edge_t *edge_find(ms_gw_direct_t *d, uint64_t session, const char *peer)
{
    edge_t probe, *e;
    memset(&probe.key, 0, sizeof(probe.key));
    probe.key.session = session;
    probe.key.peer = ms_hash_keyed(peer, strlen(peer));
    HASH_FIND_BYHASHVALUE(hh, d->edges, &probe.key, sizeof(probe.key),
                          edge_hash(session, probe.key.peer), e);
    return e && !strcmp(e->peer, peer) ? e : NULL;
}

/* Whether session t holds an edge to peer as the owner told it: a topology
 * neighbour, or an ad-hoc pair of a signals:any namespace (bus Delivery.pair). */
static int linked(const ms_session_t *t, const char *peer)
{
    return ms_strset_has(&t->neighbours, peer) || (t->pairs.n && ms_strset_has(&t->pairs, peer));
}

static void held_free_list(held_t *h)
{
    while (h) {
        held_t *n = h->next;
        free(h->from_gw);
        free(h);
        h = n;
    }
}

/* A marker from s to the other end of its edge e (DRAIN, END), in e's
 * shard and epoch: what the receiving gateway matches against its record. */
static Meshsig__Bus__DirectSignal edge_marker(const ms_session_t *s, const edge_t *e,
                                              Meshsig__Bus__DirectSignal__Kind kind)
{
    Meshsig__Bus__DirectSignal ds = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
    ds.kind = kind;
    ds.shard = e->shard;
    ds.epoch = e->epoch;
    ds.namespace_ = s->ns;
    ds.from_peer = s->peer_id;
    ds.from_session = s->id;
    ds.to_peer = e->peer;
    ds.to_session = e->remote;
    ds.client_id = (char *)"";
    return ds;
}

static void edge_free(ms_gw_direct_t *d, edge_t *e)
{
    HASH_DELETE(hh, d->edges, e);
    held_free_list(e->held);
    if (e->retiring)
        d->n_retiring--;
    free(e->old_gw);
    free(e->peer);
    free(e->gw);
    free(e);
}

static held_t *held_new(const Meshsig__Bus__DirectSignal *ds)
{
    size_t len = meshsig__bus__direct_signal__get_packed_size(ds);
    held_t *h = calloc(1, sizeof(*h) + len);
    if (!h)
        return NULL;
    h->len = meshsig__bus__direct_signal__pack(ds, h->data);
    return h;
}

/* The neighbour's old place has nothing more in flight (or is given up on):
 * what its new place sent and was held behind it may go on (the next recheck
 * walk). May free e. */
static void retire_end(ms_gateway_t *gw, edge_t *e)
{
    ms_gw_direct_t *d = gw->direct;
    if (!e->retiring)
        return;
    e->retiring = 0;
    d->n_retiring--;
    d->retire_ended = 1;
    free(e->old_gw);
    e->old_gw = NULL;
    if (!e->draining && !strcmp(e->gw, gw->id))
        edge_free(d, e); /* the neighbour is on this gateway now: relay.c's path */
}

static void retire_maybe_end(ms_gateway_t *gw, edge_t *e)
{
    if (e->retiring && e->old_end && (!e->old_owner_wait || e->old_owner_done))
        retire_end(gw, e);
}

/* e's neighbour moved away from e->gw/e->remote (which this gateway vouched
 * for): keep vouching for what is still on the way from there. */
static void retire_start(ms_gateway_t *gw, edge_t *e)
{
    ms_gw_direct_t *d = gw->direct;
    int done = e->cur_end && (!e->cur_owner_wait || e->cur_owner_done);
    if (e->retiring) {
        /* Moved again before its first old place ended: that one is given up on. */
        ms_warn("%s moved again within %u ms of its last move; signals still on the way from "
                "its first place take the owner's path",
                e->peer, RETIRE_US / 1000);
        e->retiring = 0;
        d->n_retiring--;
        free(e->old_gw);
        e->old_gw = NULL;
    }
    if (!done && !strcmp(e->gw, gw->id))
        done = 1; /* it was here: its signals were relayed when they were sent */
    if (!done && (e->old_gw = strdup(e->gw)) != NULL) {
        e->old_remote = e->remote;
        e->old_epoch = e->epoch;
        e->old_end = e->cur_end;
        e->old_owner_wait = e->cur_owner_wait;
        e->old_owner_done = e->cur_owner_done;
        e->retire_until_us = ms_clock_mono_us() + RETIRE_US;
        e->retiring = 1;
        d->n_retiring++;
    }
    e->cur_end = e->cur_owner_wait = e->cur_owner_done = 0;
}

/* ---- payloads and answers ------------------------------------------------------ */

/* The payload of ds as a Value: ds's own, parsed from its JSON when it came
 * that way, or built around a PeerJS payload's text (peerjs_type). */
typedef struct {
    Meshsig__V1__Value *v; /* NULL: no payload */
    int owned;             /* v was parsed here */
    int pj;                /* v is pjv.body */
    ms_pjframe_value_t pjv;
} payload_t;

/* 0, or -1 when it cannot be decoded (the sender's scan vouched for the text:
 * only memory, or a sender that is not a meshsig gateway). */
static int payload_get(const Meshsig__Bus__DirectSignal *ds, payload_t *p)
{
    memset(p, 0, sizeof(*p));
    if (*ds->peerjs_type) {
        ms_pjframe_t f;
        memset(&f, 0, sizeof(f));
        f.op = MS_PJFRAME_SIGNAL;
        f.type = ms_pjframe_type(ds->peerjs_type);
        f.payload = ds->payload_json.len ? (const char *)ds->payload_json.data : NULL;
        f.payload_len = ds->payload_json.len;
        if (!f.type || ms_pjframe_value_init(&p->pjv, &f) != MS_OK)
            return -1;
        p->pj = 1;
        p->v = &p->pjv.body;
        return 0;
    }
    if (ds->payload || !ds->payload_json.len) {
        p->v = ds->payload;
        return 0;
    }
    ProtobufCMessage *v = NULL;
    ms_codec_error_t cerr = {0};
    if (ms_codec_from_json(&meshsig__v1__value__descriptor, (const char *)ds->payload_json.data,
                           ds->payload_json.len, &v, &cerr) != MS_OK)
        return -1;
    p->owned = 1;
    p->v = (Meshsig__V1__Value *)v;
    return 0;
}

static void payload_done(payload_t *p)
{
    if (p->pj)
        ms_pjframe_value_cleanup(&p->pjv);
    if (p->owned)
        meshsig__v1__value__free_unpacked(p->v, NULL);
}

/* The owner's path for ds, as a request of its sender (on from_gw): a signal
 * is routed or answered there; a DRAIN becomes a Barrier. */
static void to_owner(ms_gateway_t *gw, const char *from_gw, const Meshsig__Bus__DirectSignal *ds)
{
    payload_t pl = {0};
    Meshsig__V1__Signal sig = MESHSIG__V1__SIGNAL__INIT;
    Meshsig__V1__ClientMessage cm = MESHSIG__V1__CLIENT_MESSAGE__INIT;
    Meshsig__Bus__Barrier br = MESHSIG__BUS__BARRIER__INIT;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    if (ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__DRAIN) {
        br.to = ds->to_peer;
        req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_BARRIER;
        req.barrier = &br;
    } else if (ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__SIGNAL) {
        sig.to = ds->to_peer;
        if (payload_get(ds, &pl) != 0) {
            /* The sender's scan vouched for this JSON: only memory can fail here. */
            ms_error("direct signal from %s/%s: payload not decodable; not forwarded",
                     ds->namespace_, ds->from_peer);
            return;
        }
        sig.payload = pl.v;
        cm.id = ds->client_id;
        cm.msg_case = MESHSIG__V1__CLIENT_MESSAGE__MSG_SIGNAL;
        cm.signal = &sig;
        req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_CLIENT;
        req.client = &cm;
    } else {
        return; /* OPEN is between gateways only */
    }
    req.gateway_id = (char *)from_gw;
    req.session = ds->from_session;
    req.namespace_ = ds->namespace_;
    req.peer_id = ds->from_peer;
    req.client_id = ds->client_id;
    req.received_us = ds->origin_us;
    if (ms_gw_publish_shard(gw, ds->shard, &req, 0) != 0)
        ms_warn("signal from %s/%s to the owner not published", ds->namespace_, ds->from_peer);
    gw->n_direct_to_owner++;
    payload_done(&pl);
}

static void held_to_owner(ms_gateway_t *gw, const char *from_gw, const held_t *h)
{
    Meshsig__Bus__DirectSignal *ds = meshsig__bus__direct_signal__unpack(NULL, h->len, h->data);
    if (!ds) {
        ms_error("held signal not decodable");
        return;
    }
    to_owner(gw, from_gw, ds);
    meshsig__bus__direct_signal__free_unpacked(ds, NULL);
}

/* A REPLY from the target's gateway: the ok for our session's signal. */
static void on_reply(ms_gateway_t *gw, const Meshsig__Bus__DirectSignal *ds)
{
    ms_session_t *s = ms_gw_session_find(gw, ds->to_session);
    if (s && s->state == MS_SESSION_JOINED && s->peer_id && !strcmp(s->peer_id, ds->to_peer))
        ms_gw_send_ok(gw, s, ds->client_id);
}

/* The sender's gateway: the ok for a signal with a request id that was delivered. */
static void reply_ok(ms_gateway_t *gw, const char *from_gw, const Meshsig__Bus__DirectSignal *ds)
{
    if (!*ds->client_id || *ds->peerjs_type)
        return; /* a PeerJS sender hears no ok: its request id is for EXPIRE only */
    Meshsig__Bus__DirectSignal r = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
    r.kind = MESHSIG__BUS__DIRECT_SIGNAL__KIND__REPLY;
    r.shard = ds->shard;
    r.namespace_ = ds->namespace_;
    r.from_peer = ds->to_peer;
    r.from_session = ds->to_session;
    r.to_peer = ds->from_peer;
    r.to_session = ds->from_session;
    r.client_id = ds->client_id;
    if (!strcmp(from_gw, gw->id))
        on_reply(gw, &r); /* the sender is here too (a neighbour that moved to this gateway) */
    else if (ms_gw_dout_append(gw, from_gw, &r) != 0)
        ms_warn("the ok for signal %s of %s/%s not queued", ds->client_id, ds->namespace_,
                ds->from_peer);
}

static void count_in(ms_gateway_t *gw, const char *from_gw)
{
    if (!strcmp(from_gw, gw->id))
        gw->n_signals_local++; /* two sessions of this gateway: it waited for its turn here */
    else
        gw->n_direct_in++;
}

/* The signal ds (from a neighbour, vouched for) to the client of session t, and the ok for
 * its sender on from_gw when it has a request id. 0: t is closing, nothing was delivered. */
static int deliver_signal(ms_gateway_t *gw, ms_session_t *t, const char *from_gw,
                          const Meshsig__Bus__DirectSignal *ds)
{
    if (t->closing)
        return 0; /* as ms_gw_send: nothing more for a closing session */
    size_t tl = 0;
    const char *pjtype = *ds->peerjs_type ? ms_pjframe_type_n(ds->peerjs_type, &tl) : NULL;
    if (pjtype && t->peerjs && !t->binary && t->peer_id) {
        /* PeerJS to PeerJS: spliced as on one gateway (peerjs.c relay_local). */
        const char *pl = ds->payload_json.len ? (const char *)ds->payload_json.data : NULL;
        size_t fl = strlen(ds->from_peer), dl = strlen(t->peer_id);
        if (ms_gw_out_reserve(gw, ms_pjframe_size_n(tl, fl, dl, ds->payload_json.len)) != 0)
            goto slow;
        size_t len = ms_pjframe_write_n(gw->out, pjtype, tl, ds->from_peer, fl, t->peer_id, dl, pl,
                                        ds->payload_json.len);
        count_in(gw, from_gw);
        ms_gw_record_latency(gw, ds->origin_us);
        ms_gw_queue_frame(gw, t, gw->out, len);
        return 1;
    }
    if (!t->binary && !t->peerjs && !*ds->peerjs_type && ds->payload_json.len) {
        /* JSON to JSON: the payload as the sender wrote it (relay.c). */
        size_t len = ms_gw_signal_json(gw, ds->from_peer, (const char *)ds->payload_json.data,
                                       ds->payload_json.len);
        if (!len)
            goto slow;
        count_in(gw, from_gw);
        ms_gw_record_latency(gw, ds->origin_us);
        ms_gw_queue_frame(gw, t, gw->out, len);
        reply_ok(gw, from_gw, ds);
        return 1;
    }
slow:;
    payload_t pl;
    Meshsig__V1__Signal out = MESHSIG__V1__SIGNAL__INIT;
    out.from = ds->from_peer;
    if (payload_get(ds, &pl) != 0) {
        /* The sender's scan vouched for this JSON: only memory can fail here. */
        ms_error("direct signal from %s/%s: payload not decodable", ds->namespace_, ds->from_peer);
        return 1;
    }
    out.payload = pl.v;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL;
    sm.signal = &out;
    count_in(gw, from_gw);
    ms_gw_record_latency(gw, ds->origin_us);
    ms_gw_send(gw, t, &sm);
    reply_ok(gw, from_gw, ds);
    payload_done(&pl);
    return 1;
}

/* Sends what e held, now that its path is known: direct to e's gateway, or
 * here when the neighbour is now on this gateway, or (to_owner) the owner's. */
static void edge_release(ms_gateway_t *gw, edge_t *e, int to_owner_path)
{
    held_t *list = e->held;
    e->held = e->held_tail = NULL;
    e->n_held = 0;
    e->draining = 0;
    int local = !strcmp(e->gw, gw->id);
    for (held_t *h = list; h; h = h->next) {
        if (to_owner_path) {
            held_to_owner(gw, gw->id, h);
            continue;
        }
        Meshsig__Bus__DirectSignal *ds = meshsig__bus__direct_signal__unpack(NULL, h->len, h->data);
        if (!ds)
            continue;
        ds->to_session = e->remote;
        ds->epoch = e->epoch;
        ms_session_t *s = local ? ms_gw_session_find(gw, ds->from_session) : NULL;
        ms_session_t *t =
            local ? ms_gw_peer_index_find_name(gw, ds->namespace_, ds->to_peer) : NULL;
        if (local && s && t && t->id == e->remote && linked(t, s->peer_id) && !t->closing) {
            deliver_signal(gw, t, gw->id, ds); /* counted as local */
        } else if (local) {
            to_owner(gw, gw->id, ds);
        } else if (ms_gw_dout_append(gw, e->gw, ds) == 0) {
            e->sent = 1;
            gw->n_direct_out++;
        } else {
            to_owner(gw, gw->id, ds);
        }
        meshsig__bus__direct_signal__free_unpacked(ds, NULL);
    }
    held_free_list(list);
}

static void receive_one(ms_gateway_t *gw, const char *from_gw,
                        const Meshsig__Bus__DirectSignal *ds);
static rx_pair_t *pair_get(ms_gw_direct_t *d, const char *from_gw,
                           const Meshsig__Bus__DirectSignal *ds, int create);

static void direct_signal_init(Meshsig__Bus__DirectSignal *ds, ms_gateway_t *gw, ms_session_t *s,
                               const char *to, const char *json, size_t json_len,
                               const Meshsig__V1__Value *payload, const char *cid)
{
    meshsig__bus__direct_signal__init(ds);
    ds->kind = MESHSIG__BUS__DIRECT_SIGNAL__KIND__SIGNAL;
    ds->shard = s->shard;
    ds->namespace_ = s->ns;
    ds->from_peer = s->peer_id;
    ds->from_session = s->id;
    ds->to_peer = (char *)to;
    if (json) {
        ds->payload_json.data = (uint8_t *)json;
        ds->payload_json.len = json_len;
    }
    ds->payload = (Meshsig__V1__Value *)payload;
    ds->client_id = (char *)(cid ? cid : "");
    ds->origin_us = gw->frame_received_us;
}

/* A signal to a neighbour on this gateway whose edge to s's peer is retiring
 * (s's peer just moved here: signals of its old session may still be on the
 * way from its old gateway), or behind ones held for that: it waits in the
 * receiver's queue as if it had come from another gateway. 1: taken. */
static int local_wait(ms_gateway_t *gw, ms_session_t *s, Meshsig__Bus__DirectSignal *ds)
{
    ms_gw_direct_t *d = gw->direct;
    ms_session_t *t = ms_gw_peer_index_find(gw, s->ns, ds->to_peer);
    if (!t || t == s)
        return 0;
    edge_t *te = edge_find(d, t->id, s->peer_id);
    ds->to_session = t->id;
    rx_pair_t *p = d->n_rx_held ? pair_get(d, gw->id, ds, 0) : NULL;
    if (!(te && te->retiring) && !(p && p->n_held))
        return 0;
    receive_one(gw, gw->id, ds);
    return 1;
}

/* ds (from s) direct, held, or waiting behind a retiring place: 1 when taken. */
static int send_ds(ms_gateway_t *gw, ms_session_t *s, Meshsig__Bus__DirectSignal *ds)
{
    ms_gw_direct_t *d = gw->direct;
    if ((d->n_retiring || d->n_rx_held) && local_wait(gw, s, ds))
        return 1;
    if (!d->edges)
        return 0;
    const char *to = ds->to_peer;
    edge_t *e = edge_find(d, s->id, to);
    if (!e || e->via_owner)
        return 0;
    if (!e->draining && !strcmp(e->gw, gw->id))
        return 0; /* here: relay.c's local path, or the owner's */
    ds->epoch = e->epoch;
    ds->to_session = e->remote;
    if (e->draining) {
        held_t *h = e->n_held < MAX_HELD ? held_new(ds) : NULL;
        if (!h)
            return 0; /* the owner's path answers it */
        if (e->held_tail)
            e->held_tail->next = h;
        else
            e->held = h;
        e->held_tail = h;
        e->n_held++;
        return 1;
    }
    if (ms_gw_dout_append(gw, e->gw, ds) != 0)
        return 0;
    e->sent = 1;
    gw->n_direct_out++;
    return 1;
}

int ms_gw_direct_send(ms_gateway_t *gw, ms_session_t *s, const char *to, const char *json,
                      size_t json_len, const Meshsig__V1__Value *payload, const char *cid)
{
    ms_gw_direct_t *d = gw->direct;
    if (!s->peer_id || (!d->edges && !d->n_retiring && !d->n_rx_held))
        return 0;
    Meshsig__Bus__DirectSignal ds;
    direct_signal_init(&ds, gw, s, to, json, json_len, payload, cid);
    return send_ds(gw, s, &ds);
}

int ms_gw_direct_send_pj(ms_gateway_t *gw, ms_session_t *s, const ms_pjframe_t *f)
{
    ms_gw_direct_t *d = gw->direct;
    if (!s->peer_id || (!d->edges && !d->n_retiring && !d->n_rx_held))
        return 0;
    Meshsig__Bus__DirectSignal ds;
    /* The request id names dst so that the owner's PEER_NOT_FOUND becomes an EXPIRE
     * (peerjs.c); LEAVE and EXPIRE to an absent peer are dropped, without one. */
    direct_signal_init(&ds, gw, s, f->dst, f->payload, f->payload ? f->payload_len : 0, NULL,
                       f->expires ? f->dst : "");
    ds.peerjs_type = (char *)f->type;
    return send_ds(gw, s, &ds);
}

/* ---- what the owner says ------------------------------------------------------ */

static void pairs_reset(ms_gw_direct_t *d, uint64_t to_session)
{
    rx_pair_t *p, *tmp;
    HASH_ITER(hh, d->pairs, p, tmp)
    {
        if (p->to_session != to_session)
            continue;
        p->forwarding = 0;
        if (!p->n_held) {
            HASH_DEL(d->pairs, p);
            free(p->key);
            free(p);
        }
    }
}

void ms_gw_direct_location(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *loc,
                           uint32_t shard, uint64_t epoch)
{
    ms_gw_direct_t *d = gw->direct;
    if (!loc || !*loc->peer_id)
        return;
    pairs_reset(d, s->id); /* the owner spoke about this session: vouch again */
    int here = !*loc->gateway_id || !strcmp(loc->gateway_id, gw->id);
    edge_t *e = edge_find(d, s->id, loc->peer_id);
    if (!e) {
        if (here)
            return; /* neighbours on this gateway: relay.c */
        if (!(e = calloc(1, sizeof(*e))) || !(e->peer = strdup(loc->peer_id)) ||
            !(e->gw = strdup(loc->gateway_id))) {
            if (e) {
                free(e->peer);
                free(e);
            }
            return; /* no record: the owner's path */
        }
        e->key.session = s->id;
        e->key.peer = ms_hash_keyed(loc->peer_id, strlen(loc->peer_id));
        HASH_ADD_BYHASHVALUE(hh, d->edges, key, sizeof(e->key),
                             edge_hash(e->key.session, e->key.peer), e);
    } else if (strcmp(e->gw, loc->gateway_id) || e->remote != loc->session) {
        /* The neighbour moved. Signals sent to its old place may still be on
         * the way there: hold the next ones until the barrier passes. */
        if (e->sent && !e->draining && strcmp(e->gw, gw->id)) {
            Meshsig__Bus__DirectSignal ds =
                edge_marker(s, e, MESHSIG__BUS__DIRECT_SIGNAL__KIND__DRAIN);
            if (ms_gw_dout_append(gw, e->gw, &ds) == 0) {
                e->draining = 1;
                e->drain_until_us = ms_clock_mono_us() + DRAIN_TIMEOUT_US;
            }
        }
        char *ngw = strdup(here ? gw->id : loc->gateway_id);
        if (!ngw) {
            edge_release(gw, e, 1);
            edge_free(d, e);
            return;
        }
        retire_start(gw, e);
        free(e->gw);
        e->gw = ngw;
        e->sent = 0;
    }
    e->remote = loc->session;
    e->epoch = epoch;
    e->shard = shard;
    e->via_owner = 0;
    if (here && !e->draining && !e->retiring)
        edge_free(d, e);
}

/* The owner's path may still carry s's signals to e's peer (ad-hoc pair: they
 * took it until now): hold the next ones and send a Barrier behind those; the
 * peer's gateway answers OPEN when it has delivered them (README "The direct
 * path between gateways"). */
static void pair_barrier(ms_gateway_t *gw, ms_session_t *s, edge_t *e)
{
    Meshsig__Bus__Barrier br = MESHSIG__BUS__BARRIER__INIT;
    br.to = e->peer;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_BARRIER;
    req.barrier = &br;
    req.gateway_id = gw->id;
    req.session = s->id;
    req.namespace_ = s->ns;
    req.peer_id = s->peer_id;
    req.client_id = (char *)"";
    if (ms_gw_publish_shard(gw, e->shard, &req, 0) != 0) {
        e->via_owner = 1; /* no barrier: the owner's path, which is in order */
        return;
    }
    e->draining = 1;
    e->drain_until_us = ms_clock_mono_us() + DRAIN_TIMEOUT_US;
}

/* Most pairs one session keeps records of; the owner makes at most
 * MS_PAIRS_MAX (coordinator/pairs.h) per peer, this bounds a gateway's table
 * whatever an owner says. Past it: the owner's path. */
#define MAX_PAIRS 64

void ms_gw_direct_pair(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *loc,
                       uint32_t shard, uint64_t epoch)
{
    ms_gw_direct_t *d = gw->direct;
    if (!*loc->peer_id || !strcmp(loc->peer_id, s->peer_id))
        return;
    if (!ms_strset_has(&s->pairs, loc->peer_id) &&
        (s->pairs.n >= MAX_PAIRS || ms_strset_add(&s->pairs, loc->peer_id) != 0))
        return;
    edge_t *e = edge_find(d, s->id, loc->peer_id);
    /* New, or back from the owner's path: s's signals to the peer went there
     * until now, and may still be on the way. */
    int fresh = !e || e->via_owner || e->unpaired;
    if (e)
        e->unpaired = 0;
    ms_gw_direct_location(gw, s, loc, shard, epoch);
    e = edge_find(d, s->id, loc->peer_id);
    if (fresh && e && !e->draining && !e->via_owner && strcmp(e->gw, gw->id))
        pair_barrier(gw, s, e);
}

void ms_gw_direct_unpair(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *u)
{
    ms_gw_direct_t *d = gw->direct;
    ms_strset_remove(&s->pairs, u->peer_id);
    if (ms_strset_has(&s->neighbours, u->peer_id))
        return; /* a topology edge too (the policy changed): that decides */
    edge_t *e = d->edges ? edge_find(d, s->id, u->peer_id) : NULL;
    if (!e)
        return;
    if (e->sent && !e->draining && strcmp(e->gw, gw->id)) {
        /* Signals sent to the peer's gateway may still be on the way: they go to
         * the owner from there (the peer left), and so do the next ones, but only
         * behind them: held until the barrier (DRAIN) comes back. */
        Meshsig__Bus__DirectSignal ds = edge_marker(s, e, MESHSIG__BUS__DIRECT_SIGNAL__KIND__DRAIN);
        if (ms_gw_dout_append(gw, e->gw, &ds) == 0) {
            e->draining = 1;
            e->drain_until_us = ms_clock_mono_us() + DRAIN_TIMEOUT_US;
        }
    }
    if (e->draining) {
        e->unpaired = 1; /* the barrier's answer (or its timeout) frees it */
        return;
    }
    edge_release(gw, e, 1);
    edge_free(d, e);
}

void ms_gw_direct_barrier(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *b)
{
    ms_gw_direct_t *d = gw->direct;
    if (!*b->gateway_id) {
        /* To the sender: the target is gone or no longer a neighbour. */
        edge_t *e = edge_find(d, s->id, b->peer_id);
        if (e) {
            edge_release(gw, e, 1);
            edge_free(d, e);
        }
        return;
    }
    if (!strcmp(b->gateway_id, gw->id)) {
        /* The sender is on this gateway too (the target moved here). */
        edge_t *e = edge_find(d, b->session, s->peer_id);
        if (e && e->draining && !strcmp(e->gw, gw->id) && e->remote == s->id) {
            edge_release(gw, e, 0);
            edge_free(d, e);
            /* Everything the sender sent this peer before has been delivered, also
             * what took the owner's path: relay.c may relay the next ones here. */
            ms_session_t *from = ms_gw_session_find(gw, b->session);
            if (from && from->signal_any)
                ms_strset_remove(&from->owner_routed, s->peer_id);
        }
        return;
    }
    /* To the target's session: everything routed before the barrier is
     * delivered; the sender's gateway may go direct now. */
    Meshsig__Bus__DirectSignal ds = MESHSIG__BUS__DIRECT_SIGNAL__INIT;
    ds.kind = MESHSIG__BUS__DIRECT_SIGNAL__KIND__OPEN;
    ds.shard = s->shard;
    ds.namespace_ = s->ns;
    ds.from_peer = s->peer_id;
    ds.from_session = s->id;
    ds.to_peer = b->peer_id;
    ds.to_session = b->session;
    ds.client_id = (char *)"";
    if (ms_gw_dout_append(gw, b->gateway_id, &ds) != 0)
        ms_warn("OPEN to %s not queued; its held signals take the owner's path after %u ms",
                b->gateway_id, DRAIN_TIMEOUT_US / 1000);
}

/* s ends: its edges go, and each neighbour's gateway on another gateway gets
 * an END behind every signal s sent there (its peer may have resumed
 * elsewhere, and that gateway waits for this before it delivers what the new
 * session sends). Signals s held for a moving neighbour go to the owner
 * first, and the END says so. */
static void end_edge(ms_gateway_t *gw, ms_session_t *s, const char *peer);

static void end_edges(ms_gateway_t *gw, ms_session_t *s)
{
    ms_gw_direct_t *d = gw->direct;
    for (uint32_t i = 0; d->edges && i < s->neighbours.n; i++)
        end_edge(gw, s, ms_strset_at(&s->neighbours, i));
    for (uint32_t i = 0; d->edges && i < s->pairs.n; i++)
        end_edge(gw, s, ms_strset_at(&s->pairs, i));
}

static void end_edge(ms_gateway_t *gw, ms_session_t *s, const char *peer)
{
    ms_gw_direct_t *d = gw->direct;
    edge_t *e = edge_find(d, s->id, peer);
    if (!e)
        return;
    if (s->peer_id && strcmp(e->gw, gw->id)) {
        Meshsig__Bus__DirectSignal ds = edge_marker(s, e, MESHSIG__BUS__DIRECT_SIGNAL__KIND__END);
        ds.owner_too = s->owner_signalled || e->n_held || e->via_owner;
        if (ms_gw_dout_append(gw, e->gw, &ds) != 0)
            ms_warn("END for %s/%s to %s not queued; its new place's signals wait %u ms", s->ns,
                    s->peer_id, e->gw, RETIRE_US / 1000);
    }
    edge_release(gw, e, 1);
    edge_free(d, e);
}

void ms_gw_direct_closing(ms_gateway_t *gw, ms_session_t *s)
{
    if (gw->direct && gw->direct->edges)
        end_edges(gw, s);
}

void ms_gw_direct_retired(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__PeerLocation *r,
                          int gone)
{
    ms_gw_direct_t *d = gw->direct;
    edge_t *e = d->edges ? edge_find(d, s->id, r->peer_id) : NULL;
    if (!e)
        return;
    if (e->retiring && !strcmp(e->old_gw, r->gateway_id) && e->old_remote == r->session) {
        e->old_owner_done = 1;
        e->old_end |= gone;
        retire_maybe_end(gw, e); /* intake.c rechecks the held signals after the batch */
    } else if (!strcmp(e->gw, r->gateway_id) && e->remote == r->session) {
        e->cur_owner_done = 1;
        e->cur_end |= gone;
    }
}

void ms_gw_direct_forget(ms_gateway_t *gw, ms_session_t *s, const char *peer)
{
    ms_gw_direct_t *d = gw->direct;
    if (!d)
        return;
    if (peer) {
        if (s->pairs.n && ms_strset_has(&s->pairs, peer))
            return; /* also an ad-hoc pair: the record stays until the owner's unpair */
        edge_t *e = d->edges ? edge_find(d, s->id, peer) : NULL;
        if (e) {
            edge_release(gw, e, 1);
            edge_free(d, e);
        }
        return;
    }
    end_edges(gw, s);
    /* Signals held for this session: the owner routes them to wherever the
     * peer is now, or answers. */
    if (d->n_rx_held) {
        held_t **pp = &d->rx_held, *prev = NULL;
        while (*pp) {
            held_t *h = *pp;
            if (h->pair->to_session != s->id) {
                prev = h;
                pp = &h->next;
                continue;
            }
            *pp = h->next;
            if (d->rx_held_tail == h)
                d->rx_held_tail = prev;
            d->n_rx_held--;
            h->pair->n_held--;
            held_to_owner(gw, h->from_gw, h);
            free(h->from_gw);
            free(h);
        }
    }
    pairs_reset(d, s->id);
}

/* ---- receiving ---------------------------------------------------------------- */

enum { VOUCH_NO = 0, VOUCH_WAIT, VOUCH_RETIRING, VOUCH_OK };

/* Whether this gateway can vouch for ds now (*t: the session it is for), may
 * once the owner's announcement arrives (the session is here and joined), or
 * cannot (the session is gone, closing or holds another peer: the owner knows
 * where the peer is now). */
static int vouch(ms_gateway_t *gw, const char *from_gw, const Meshsig__Bus__DirectSignal *ds,
                 ms_session_t **out)
{
    ms_session_t *t = ms_gw_session_find(gw, ds->to_session);
    *out = NULL;
    if (!t || t->closing || t->state != MS_SESSION_JOINED || !t->peer_id ||
        strcmp(t->peer_id, ds->to_peer) || strcmp(t->ns, ds->namespace_))
        return VOUCH_NO;
    edge_t *e = edge_find(gw->direct, t->id, ds->from_peer);
    if (e && e->retiring) {
        /* The sender moved: its old place first, the new one after its END. */
        if (strcmp(e->old_gw, from_gw) || e->old_remote != ds->from_session ||
            e->old_epoch != ds->epoch || !linked(t, ds->from_peer))
            return VOUCH_RETIRING;
        *out = t;
        return VOUCH_OK;
    }
    if (!strcmp(from_gw, gw->id)) {
        /* A session of this gateway that waited behind a retiring place
         * (local_wait): relay.c's rule, both hold the edge. */
        ms_session_t *s = ms_gw_session_find(gw, ds->from_session);
        if (!s || s->closing || s->state != MS_SESSION_JOINED || !s->peer_id ||
            strcmp(s->peer_id, ds->from_peer) || !linked(s, t->peer_id) || !linked(t, s->peer_id))
            return VOUCH_NO;
        *out = t;
        return VOUCH_OK;
    }
    if (!e || strcmp(e->gw, from_gw) || e->remote != ds->from_session || e->epoch != ds->epoch ||
        !linked(t, ds->from_peer))
        return VOUCH_WAIT;
    *out = t;
    return VOUCH_OK;
}

static rx_pair_t *pair_get(ms_gw_direct_t *d, const char *from_gw,
                           const Meshsig__Bus__DirectSignal *ds, int create)
{
    char key[256];
    snprintf(key, sizeof(key), "%llu/%llu/%s", (unsigned long long)ds->to_session,
             (unsigned long long)ds->from_session, from_gw);
    rx_pair_t *p;
    HASH_FIND_STR(d->pairs, key, p);
    if (p || !create)
        return p;
    if (!(p = calloc(1, sizeof(*p))) || !(p->key = strdup(key))) {
        free(p);
        return NULL;
    }
    p->to_session = ds->to_session;
    HASH_ADD_KEYPTR(hh, d->pairs, p->key, strlen(p->key), p);
    return p;
}

static void pair_maybe_free(ms_gw_direct_t *d, rx_pair_t *p)
{
    if (p->n_held || p->forwarding)
        return;
    HASH_DEL(d->pairs, p);
    free(p->key);
    free(p);
}

/* An OPEN for one of our edges that was draining: the barrier passed. */
static void on_open(ms_gateway_t *gw, const char *from_gw, const Meshsig__Bus__DirectSignal *ds)
{
    edge_t *e = edge_find(gw->direct, ds->to_session, ds->from_peer);
    if (!e || !e->draining || strcmp(e->gw, from_gw) || e->remote != ds->from_session)
        return; /* moved again meanwhile: the drain deadline decides */
    if (e->unpaired) {
        /* The pair ended meanwhile: everything before the barrier has reached the
         * owner or the peer, so the held ones take the owner's path behind it. */
        edge_release(gw, e, 1);
        edge_free(gw->direct, e);
        return;
    }
    edge_release(gw, e, 0);
}

/* END: the sender's session from_session closed and sent nothing more after
 * this; forwarding: some of its signals went to the owner from here. */
static void on_end(ms_gateway_t *gw, const char *from_gw, const Meshsig__Bus__DirectSignal *ds,
                   int forwarding)
{
    edge_t *e = edge_find(gw->direct, ds->to_session, ds->from_peer);
    if (!e)
        return;
    int owner_too = ds->owner_too || forwarding;
    if (e->retiring && !strcmp(e->old_gw, from_gw) && e->old_remote == ds->from_session) {
        e->old_end = 1;
        e->old_owner_wait = (uint8_t)owner_too;
        retire_maybe_end(gw, e);
    } else if (!strcmp(e->gw, from_gw) && e->remote == ds->from_session) {
        e->cur_end = 1; /* before the owner's announcement that the peer moved */
        e->cur_owner_wait = (uint8_t)owner_too;
    }
}

static void receive_one(ms_gateway_t *gw, const char *from_gw, const Meshsig__Bus__DirectSignal *ds)
{
    ms_gw_direct_t *d = gw->direct;
    if (ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__OPEN) {
        on_open(gw, from_gw, ds);
        return;
    }
    if (ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__REPLY) {
        on_reply(gw, ds);
        return;
    }
    rx_pair_t *p = d->pairs ? pair_get(d, from_gw, ds, 0) : NULL;
    if (ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__END && (!p || !p->n_held)) {
        on_end(gw, from_gw, ds, p && p->forwarding);
        return;
    }
    if (!p || !p->n_held) {
        ms_session_t *t = NULL;
        int v = p && p->forwarding                                      ? VOUCH_NO
                : ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__SIGNAL ? vouch(gw, from_gw, ds, &t)
                                                                        : VOUCH_NO;
        if (v == VOUCH_OK) {
            deliver_signal(gw, t, from_gw, ds);
            return;
        }
        if (v == VOUCH_NO) {
            /* The owner's path answers it; a DRAIN becomes the Barrier,
             * behind everything forwarded before it. */
            to_owner(gw, from_gw, ds);
            return;
        }
    }
    /* Not (yet) vouched for, or behind one that is held: wait for the owner's
     * announcement to catch up, in order. */
    if (!p)
        p = pair_get(d, from_gw, ds, 1);
    /* Packed again only here: most signals are delivered above. */
    size_t len = meshsig__bus__direct_signal__get_packed_size(ds);
    held_t *h = p && d->n_rx_held < MAX_HELD ? calloc(1, sizeof(*h) + len) : NULL;
    if (h && !(h->from_gw = strdup(from_gw))) {
        free(h);
        h = NULL;
    }
    if (!h) {
        if (p)
            p->forwarding = 1;
        if (ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__END)
            on_end(gw, from_gw, ds, 1); /* those held before it go to the owner in time */
        else
            to_owner(gw, from_gw, ds);
        return;
    }
    h->len = meshsig__bus__direct_signal__pack(ds, h->data);
    h->pair = p;
    h->until_us = ms_clock_mono_us() + HOLD_US;
    if (d->rx_held_tail)
        d->rx_held_tail->next = h;
    else
        d->rx_held = h;
    d->rx_held_tail = h;
    d->n_rx_held++;
    p->n_held++;
    gw->n_direct_held++;
}

void ms_gw_direct_receive(ms_gateway_t *gw, const Meshsig__Bus__GatewayBatch *b)
{
    ms_gw_direct_t *d = gw->direct;
    d->retire_ended = 0;
    for (size_t i = 0; i < b->n_direct; i++)
        receive_one(gw, b->gateway_id, b->direct[i]);
    /* An END may have let signals held behind a retiring place go on. */
    if (d->retire_ended && d->n_rx_held)
        ms_gw_direct_recheck(gw, ms_clock_mono_us());
}

/* Held signals, oldest first: delivered once vouched for, forwarded to the
 * owner when their time is up; a pair's later ones stay behind its first. */
static void recheck_walk(ms_gateway_t *gw, uint64_t now);

void ms_gw_direct_recheck(ms_gateway_t *gw, uint64_t now)
{
    ms_gw_direct_t *d = gw->direct;
    /* An END in the walk may let pairs that the same walk already passed go on. */
    for (int i = 0; d && d->n_rx_held && i < 4; i++) {
        d->retire_ended = 0;
        recheck_walk(gw, now);
        if (!d->retire_ended)
            break;
    }
}

static void recheck_walk(ms_gateway_t *gw, uint64_t now)
{
    ms_gw_direct_t *d = gw->direct;
    for (held_t *h = d->rx_held; h; h = h->next)
        h->pair->blocked = 0;
    held_t **pp = &d->rx_held, *prev = NULL;
    while (*pp) {
        held_t *h = *pp;
        rx_pair_t *p = h->pair;
        if (p->blocked) {
            prev = h;
            pp = &h->next;
            continue;
        }
        Meshsig__Bus__DirectSignal *ds = meshsig__bus__direct_signal__unpack(NULL, h->len, h->data);
        ms_session_t *t = NULL;
        int done = 1, v = VOUCH_NO;
        if (ds && ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__SIGNAL && !p->forwarding)
            v = vouch(gw, h->from_gw, ds, &t);
        if (!ds) {
            ms_error("held direct signal not decodable");
        } else if (ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__DRAIN) {
            to_owner(gw, h->from_gw, ds);
        } else if (ds->kind == MESHSIG__BUS__DIRECT_SIGNAL__KIND__END) {
            on_end(gw, h->from_gw, ds, p->forwarding);
        } else if (v == VOUCH_OK) {
            deliver_signal(gw, t, h->from_gw, ds);
        } else if (v == VOUCH_NO || (v == VOUCH_WAIT && now >= h->until_us)) {
            p->forwarding = 1;
            to_owner(gw, h->from_gw, ds);
        } else {
            done = 0;
            p->blocked = 1;
        }
        if (ds)
            meshsig__bus__direct_signal__free_unpacked(ds, NULL);
        if (!done) {
            prev = h;
            pp = &h->next;
            continue;
        }
        *pp = h->next;
        if (d->rx_held_tail == h)
            d->rx_held_tail = prev;
        d->n_rx_held--;
        p->n_held--;
        free(h->from_gw);
        free(h);
        pair_maybe_free(d, p);
    }
}

void ms_gw_direct_sweep(ms_gateway_t *gw, uint64_t now)
{
    ms_gw_direct_t *d = gw->direct;
    if (!d)
        return;
    edge_t *e, *tmp;
    if (d->n_retiring) {
        HASH_ITER(hh, d->edges, e, tmp)
        {
            if (!e->retiring || now < e->retire_until_us)
                continue;
            ms_warn("no END from %s's old place (%s) within %u ms; its new place's signals go on",
                    e->peer, e->old_gw, RETIRE_US / 1000);
            gw->n_direct_retire_timeouts++;
            retire_end(gw, e);
        }
    }
    ms_gw_direct_recheck(gw, now);
    HASH_ITER(hh, d->edges, e, tmp)
    {
        if (!e->draining || now < e->drain_until_us)
            continue;
        ms_warn("no barrier back for the edge to %s within %u ms; its signals take the owner's "
                "path",
                e->peer, DRAIN_TIMEOUT_US / 1000);
        edge_release(gw, e, 1);
        e->via_owner = 1;
        if (e->unpaired || !strcmp(e->gw, gw->id)) {
            edge_free(d, e);
            continue;
        }
        /* An ad-hoc pair is announced once (no edge event will come again): ask
         * again, behind what just went to the owner, a few times. A barrier
         * that is late rather than lost (an owner busy routing a burst) then
         * still opens the direct path. */
        ms_session_t *s = ms_gw_session_find(gw, e->key.session);
        if (s && s->peer_id && !s->closing && e->barrier_tries < PAIR_BARRIER_TRIES && s->pairs.n &&
            ms_strset_has(&s->pairs, e->peer) && !ms_strset_has(&s->neighbours, e->peer)) {
            e->barrier_tries++;
            e->via_owner = 0;
            pair_barrier(gw, s, e);
        }
    }
}

ms_err_t ms_gw_direct_init(ms_gateway_t *gw)
{
    gw->direct = calloc(1, sizeof(*gw->direct));
    if (!gw->direct)
        return MS_ERR_NOMEM;
    return ms_gw_dout_init(gw);
}

void ms_gw_direct_cleanup(ms_gateway_t *gw)
{
    ms_gw_direct_t *d = gw->direct;
    if (!d)
        return;
    edge_t *e, *etmp;
    HASH_ITER(hh, d->edges, e, etmp)
    edge_free(d, e);
    rx_pair_t *p, *ptmp;
    HASH_ITER(hh, d->pairs, p, ptmp)
    {
        HASH_DEL(d->pairs, p);
        free(p->key);
        free(p);
    }
    held_free_list(d->rx_held);
    free(d);
    gw->direct = NULL;
    ms_gw_dout_cleanup(gw);
}

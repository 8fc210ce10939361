/* SPDX-License-Identifier: Apache-2.0 */
/* The one place a shard's requests are handled: join and leave go to member.c; signals,
 * the direct path's barriers, position and RTT reports and PeerJS discovery are handled
 * here; the rest goes to the messaging modules. */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "internal.h"
#include "log.h"
#include "pblimit.h"
#include "servermsg.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

/* The sender of a routed message, or NULL after answering with an error. */
static ms_member_t *sender(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req,
                           ms_ns_t **ns_out)
{
    ms_ns_t *ns = ms_ns_find(c, req->namespace_);
    ms_member_t *m = ns ? ms_ns_member(ns, req->peer_id) : NULL;
    if (!m || strcmp(m->gateway, req->gateway_id) || m->session != req->session) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, req->client_id,
                        ERR(NOT_JOINED), "this session has not joined %s", req->namespace_);
        return NULL;
    }
    *ns_out = ns;
    return m;
}

/* A signal of a peer's previous session (it resumed on another) that was sent
 * before its gateway closed that session: the peer's, as its new session's
 * are (README "The direct path between gateways"). NULL: not one. */
static ms_member_t *prev_sender(ms_coord_t *c, const Meshsig__Bus__ShardRequest *req,
                                ms_ns_t **ns_out)
{
    ms_ns_t *ns = ms_ns_find(c, req->namespace_);
    ms_member_t *m = ns ? ms_ns_member(ns, req->peer_id) : NULL;
    if (!m || !ms_member_is_prev(m, req->gateway_id, req->session, ms_clock_mono_ms()))
        return NULL;
    *ns_out = ns;
    return m;
}

static void handle_signal(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req,
                          Meshsig__V1__Signal *sig)
{
    ms_ns_t *ns;
    ms_member_t *from = prev_sender(c, req, &ns);
    int prev = from != NULL;
    if (!from && !(from = sender(c, shard, req, &ns)))
        return;
    ms_member_t *to = ms_ns_member(ns, sig->to);
    if (prev && (!to || (!ns->engine->ops->adjacent(ns->engine, from->handle, to->handle) &&
                         !ms_pairs_linked(from, to)))) {
        /* Only to a neighbour, whose gateway keeps it before the new
         * session's (gateway/direct.c): to anyone else it could overtake. */
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, req->client_id,
                        ERR(NOT_JOINED), "this session has not joined %s", req->namespace_);
        return;
    }
    if (!to && ns->policy->hold_ms) {
        ms_hold_signal(c, ns, from, req->client_id, sig);
        return;
    }
    if (!to) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, req->client_id,
                        ERR(PEER_NOT_FOUND), "%s is not in namespace %s", sig->to, ns->name);
        return;
    }
    if (!ns->policy->signal_any &&
        !ns->engine->ops->adjacent(ns->engine, from->handle, to->handle) &&
        !ms_p2p_linked(from, to)) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, req->client_id,
                        ERR(NOT_NEIGHBOUR), "%s is not a neighbour of %s", to->id, from->id);
        return;
    }
    /* `from` is ours, never the client's. */
    ms_sm_signal_t out;
    c->route.n_signals++;
    ms_outbox_deliver(&c->outbox, shard, to->gateway, to->session, to->id,
                      ms_sm_signal(&out, from->id, sig->payload), 0);
    if (!prev) { /* the previous session is closed: no one to tell */
        ms_send_ok(c, ns, from, req->client_id);
        /* After the signal: the next ones may go gateway to gateway (pairs.c). */
        ms_pairs_routed(c, ns, from, to);
    }
}

/* A gateway's barrier on a signal path (gateway/direct.c): after the signals
 * routed before it, tell the target's gateway (which then lets the sender's
 * gateway go direct), or the sender's when there is no direct path to open. */
static void handle_barrier(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req)
{
    ms_ns_t *ns = ms_ns_find(c, req->namespace_);
    ms_member_t *from = ns ? ms_ns_member(ns, req->peer_id) : NULL;
    if (!from || strcmp(from->gateway, req->gateway_id) || from->session != req->session)
        return; /* the sender's session is gone: it had nothing left to send */
    ms_member_t *to = ms_ns_member(ns, req->barrier->to);
    Meshsig__Bus__PeerLocation b = MESHSIG__BUS__PEER_LOCATION__INIT;
    if (to && to != from && !to->detached_ms &&
        (ns->engine->ops->adjacent(ns->engine, from->handle, to->handle) ||
         ms_pairs_linked(from, to))) {
        b.peer_id = from->id;
        b.gateway_id = (char *)from->gateway;
        b.session = from->session;
        ms_outbox_deliver_path(&c->outbox, shard, to->gateway, to->session, to->id, NULL, NULL, &b);
    } else {
        b.peer_id = req->barrier->to;
        b.gateway_id = (char *)"";
        ms_outbox_deliver_path(&c->outbox, shard, from->gateway, from->session, from->id, NULL,
                               NULL, &b);
    }
}

static void handle_position(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid,
                            Meshsig__V1__Position *pos)
{
    if (ns->policy->positioning != MS_POS_CLIENT && ns->policy->positioning != MS_POS_GEO) {
        ms_member_error(c, ns, m, cid, ERR(BAD_REQUEST),
                        "namespace %s does not place peers by client position", ns->name);
        return;
    }
    char why[128];
    if (!ms_ns_position_valid(ns, pos, why, sizeof(why))) {
        ms_member_error(c, ns, m, cid, ERR(BAD_REQUEST), "%s", why);
        return;
    }
    Meshsig__V1__Position *copy = ms_ns_position_dup(pos);
    if (!copy) {
        ms_member_error(c, ns, m, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    if (ms_member_set_client_pos(m, copy) != MS_OK) {
        ms_member_error(c, ns, m, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    ms_topo_pos_t np = ms_ns_position(ns, m->id, ms_member_rare(m)->client_pos);
    ms_topo_diff_t *diff = ms_ns_diff(c);
    ms_err_t err = MS_OK;
    if (ns->engine->ops->move) {
        err = ns->engine->ops->move(ns->engine, m->handle, np, diff);
    } else {
        /* Position does not matter to this engine: nothing moves. */
    }
    if (err != MS_OK) {
        ms_member_error(c, ns, m, cid, ERR(INTERNAL), "move failed: %s", ms_err_str(err));
        return;
    }
    m->pos = np;
    ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
    ms_send_ok(c, ns, m, cid);
}

/* How far (ms) a Vivaldi coordinate may drift before the peer is moved. */
#define VIVALDI_MOVE_MS 5.0

static void handle_rtt(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid,
                       Meshsig__V1__RttReport *rtt)
{
    ms_member_t *o = ms_ns_member(ns, rtt->peer);
    if (!o || o == m) {
        ms_member_error(c, ns, m, cid, ERR(PEER_NOT_FOUND), "%s is not in namespace %s", rtt->peer,
                        ns->name);
        return;
    }
    if (!(rtt->ms > 0 && rtt->ms < 60000)) {
        ms_member_error(c, ns, m, cid, ERR(BAD_REQUEST), "rtt.ms must be in (0, 60000)");
        return;
    }
    ms_vivaldi_t *mv = ms_member_viv(m), *ov = ms_member_viv(o);
    if (!mv || !ov) {
        ms_member_error(c, ns, m, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    if (ms_vivaldi_update(mv, ov, rtt->ms) != MS_OK) {
        ms_member_error(c, ns, m, cid, ERR(BAD_REQUEST), "rtt report rejected");
        return;
    }
    /* Only a coordinate that drifted past the threshold moves the peer, and a
     * move announces only the edges that changed. */
    if (ms_ns_policy_network(ns) && ns->engine->ops->move &&
        ms_vivaldi_drifted(mv, VIVALDI_MOVE_MS)) {
        ms_topo_pos_t np = ms_vivaldi_position(mv, m->pos.key);
        ms_topo_diff_t *diff = ms_ns_diff(c);
        if (ns->engine->ops->move(ns->engine, m->handle, np, diff) == MS_OK) {
            m->pos = np;
            ms_vivaldi_mark_placed(mv);
            ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
        }
    }
    ms_send_ok(c, ns, m, cid);
}

static void handle_client(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req)
{
    Meshsig__V1__ClientMessage *cm = req->client;
    if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_SIGNAL) {
        handle_signal(c, shard, req, cm->signal);
        return;
    }
    ms_ns_t *ns;
    ms_member_t *m = sender(c, shard, req, &ns);
    if (!m)
        return;
    switch (cm->msg_case) {
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_POSITION:
        handle_position(c, ns, m, req->client_id, cm->position);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_RTT:
        handle_rtt(c, ns, m, req->client_id, cm->rtt);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_EDGE:
        ms_edges_report(c, ns, m, req->client_id, cm->edge);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_REPARENT:
        ms_edges_reparent(c, ns, m, req->client_id);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_P2P_TARGET:
        ms_p2p_handle(c, ns, m, req->client_id, cm->p2p_target);
        return;
    default:
        ms_msg_handle(c, ns, m, req->client_id, cm);
        return;
    }
}

void ms_shard_count_bad(ms_coord_t *c)
{
    c->route.n_bad_requests++;
}

Meshsig__Bus__ShardRequest *ms_shard_decode(ms_coord_t *c, uint32_t shard, const uint8_t *data,
                                            size_t len)
{
    Meshsig__Bus__ShardRequest *req = (Meshsig__Bus__ShardRequest *)ms_pblimit_unpack(
        &meshsig__bus__shard_request__descriptor, data, len, &ms_pblimit_bus, NULL, 0);
    if (!req) {
        c->route.n_bad_requests++;
        ms_warn("undecodable request for shard %u", shard);
    }
    return req;
}

/* A gateway could not write a delivery for its receiver (the reporting
 * session): the message's sender is told, so nothing is dropped silently. */
static void handle_undeliverable(ms_coord_t *c, const Meshsig__Bus__ShardRequest *req)
{
    const Meshsig__Bus__Undeliverable *u = req->undeliverable;
    ms_ns_t *ns = ms_ns_find(c, req->namespace_);
    ms_member_t *receiver = ns ? ms_ns_member(ns, req->peer_id) : NULL;
    if (!receiver || strcmp(receiver->gateway, req->gateway_id) ||
        receiver->session != req->session) {
        c->route.n_bad_requests++;
        return; /* only a member's own gateway speaks for it */
    }
    ms_member_t *to = ms_ns_member(ns, u->to);
    if (!to || to == receiver)
        return; /* the sender left meanwhile: nobody to tell */
    Meshsig__V1__ErrorCode code =
        u->error && u->error->code == ERR(BAD_REQUEST) ? ERR(BAD_REQUEST) : ERR(INTERNAL);
    ms_member_error(c, ns, to, "", code, "%s",
                    u->error && *u->error->message ? u->error->message
                                                   : "a message was not delivered");
}

/* PeerJS discovery: the ids of the namespace's peers, at most DISCOVER_MAX (a
 * PeerJS client gets them as one JSON array over HTTP). Read only. */
#define DISCOVER_MAX 10000
static void handle_discover(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req)
{
    ms_ns_t *ns = ms_ns_find(c, req->namespace_);
    size_t limit = req->discover->limit && req->discover->limit < DISCOVER_MAX
                       ? req->discover->limit
                       : DISCOVER_MAX;
    size_t n = ns ? ns->members.n : 0;
    Meshsig__Bus__PeerList pl = MESHSIG__BUS__PEER_LIST__INIT;
    pl.ids = n ? calloc(n < limit ? n : limit, sizeof(char *)) : NULL;
    if (n && !pl.ids) {
        ms_error("out of memory answering a discovery of %s", req->namespace_);
        return; /* the gateway times out and says so */
    }
    ms_member_t *m;
    if (ns) {
        MS_NS_MEMBERS_FOREACH(ns, i, m)
        {
            if (pl.n_ids == limit) {
                pl.truncated = 1;
                break;
            }
            pl.ids[pl.n_ids++] = m->id;
        }
    }
    ms_outbox_deliver_peers(&c->outbox, shard, req->gateway_id, req->session, &pl);
    free(pl.ids);
}

/* A request its gateway keeps and may send again (gateway/inflight.c): 1 when this is a copy of
 * one already handled here, answered as the first was (dedupe.h) and not handled again. */
static int copy_answered(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req)
{
    const uint8_t *answer = NULL;
    size_t len = 0;
    switch (ms_dedupe_seen(&c->dedupe, shard, req->req_id, req->gateway_id, req->session,
                           req->client_id, ms_clock_mono_ms(), &answer, &len)) {
    case MS_DEDUPE_NEW:
        return 0;
    case MS_DEDUPE_PENDING: {
        Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
        d.session = req->session;
        d.peer_id = req->peer_id;
        d.received = req->client_id;
        d.req_id = req->req_id;
        ms_outbox_deliver_full(&c->outbox, shard, req->gateway_id, &d);
        return 1;
    }
    case MS_DEDUPE_ANSWERED: {
        Meshsig__V1__ServerMessage *sm = meshsig__v1__server_message__unpack(NULL, len, answer);
        if (sm) { /* packed here from a message that was valid: unpacks */
            Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
            d.session = req->session;
            d.peer_id = req->peer_id;
            d.msg = sm;
            d.again = 1;
            d.req_id = req->req_id; /* the id may be in use by a newer request by now */
            ms_outbox_deliver_full(&c->outbox, shard, req->gateway_id, &d);
            meshsig__v1__server_message__free_unpacked(sm, NULL);
        }
        return 1;
    }
    }
    return 0;
}

void ms_shard_handle(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req)
{
    c->route.n_requests++;
    ms_outbox_set_origin(&c->outbox, req->received_us);
    if (!*req->gateway_id || !*req->namespace_) {
        c->route.n_bad_requests++;
        ms_outbox_set_origin(&c->outbox, 0);
        return; /* nobody to answer */
    }
    switch (req->op_case) {
    case MESHSIG__BUS__SHARD_REQUEST__OP_JOIN:
        ms_member_join(c, shard, req);
        break;
    case MESHSIG__BUS__SHARD_REQUEST__OP_LEAVE:
        ms_member_leave_request(c, req);
        break;
    case MESHSIG__BUS__SHARD_REQUEST__OP_CLIENT:
        if (!req->resend || !*req->client_id || !copy_answered(c, shard, req))
            handle_client(c, shard, req);
        break;
    case MESHSIG__BUS__SHARD_REQUEST__OP_UNDELIVERABLE:
        handle_undeliverable(c, req);
        break;
    case MESHSIG__BUS__SHARD_REQUEST__OP_BARRIER:
        handle_barrier(c, shard, req);
        break;
    case MESHSIG__BUS__SHARD_REQUEST__OP_DISCOVER:
        handle_discover(c, shard, req);
        break;
    case MESHSIG__BUS__SHARD_REQUEST__OP_RECEIPT:
        ms_emit_receipt(c, req->receipt);
        break;
    default:
        c->route.n_bad_requests++;
        break;
    }
    ms_outbox_set_origin(&c->outbox, 0); /* timers and admin calls cause deliveries of their own */
}

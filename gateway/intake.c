/* SPDX-License-Identifier: Apache-2.0 */
/* Deliveries from the bus: NATS messages on the service thread, epoch fencing, delivery to
 * sessions.
 *
 * On libev the bus reads the NATS socket on the service thread's own loop and
 * calls on_bus_msg right after each read (common/busloop.h). On lws's poll
 * loop cnats calls back on its own threads: those only push into the mailbox
 * and wake the lws loop (lws_cancel_service, its one thread-safe call); the
 * service thread drains the mailbox in LWS_CALLBACK_EVENT_WAIT_CANCELLED. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "subject.h"
#include "log.h"
#include "resume.h"
#include "pblimit.h"
#include "pbarena.h"
#include "dbatch.h"

static uint32_t clamp_u32(long v)
{
    return v <= 0 ? 0 : (unsigned long)v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

/* Where a neighbour lives, or a barrier (direct.c), with no message for the client. */
static void deliver_path(ms_gateway_t *gw, ms_session_t *s, const Meshsig__Bus__Delivery *d,
                         const Meshsig__Bus__GatewayBatch *b)
{
    if (!s || s->state != MS_SESSION_JOINED || !s->peer_id ||
        (*d->peer_id && strcmp(d->peer_id, s->peer_id))) {
        gw->n_dropped_session++;
        return;
    }
    if (d->unpair)
        ms_gw_direct_unpair(gw, s, d->unpair);
    if (d->location && d->pair)
        ms_gw_direct_pair(gw, s, d->location, b->shard, b->epoch);
    else if (d->location)
        ms_gw_direct_location(gw, s, d->location, b->shard, b->epoch);
    if (d->barrier)
        ms_gw_direct_barrier(gw, s, d->barrier);
    if (d->retired)
        ms_gw_direct_retired(gw, s, d->retired, d->retired_gone);
}

static void deliver(ms_gateway_t *gw, const Meshsig__Bus__Delivery *d,
                    const Meshsig__Bus__GatewayBatch *b)
{
    if (d->peers) {
        /* Not for a session: a PeerJS discovery's answer (session = its number). */
        ms_gw_peerjs_discovered(gw, d->session, d->peers);
        return;
    }
    ms_session_t *s = ms_gw_session_find(gw, d->session);
    /* Whom the peer may signal: with its welcome, or alone on a policy change. */
    if (d->signal_scope && s &&
        ((s->state == MS_SESSION_JOINING && d->msg &&
          d->msg->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_WELCOME) ||
         (s->state == MS_SESSION_JOINED && s->peer_id && !strcmp(d->peer_id, s->peer_id))))
        s->signal_any = d->signal_scope == 2;
    if (!d->msg && (d->location || d->barrier || d->retired || d->unpair)) {
        deliver_path(gw, s, d, b);
        return;
    }
    if (!d->msg && d->signal_scope)
        return;
    if (!d->msg && *d->received) {
        /* A copy of a request the owner is still working on (inflight.c). */
        if (s && s->state == MS_SESSION_JOINED && s->peer_id &&
            (!*d->peer_id || !strcmp(d->peer_id, s->peer_id)))
            ms_gw_inflight_received(gw, s, d->received, d->req_id);
        return;
    }
    if (!s || !d->msg) {
        gw->n_dropped_session++;
        return;
    }
    const Meshsig__V1__ServerMessage *m = d->msg;
    if (s->state == MS_SESSION_JOINING) {
        /* While joining, only the join's answer can arrive. */
        if (m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_WELCOME) {
            ms_gw_deadline_cancel(s);
            ms_session_join_done(s);
            ms_session_set_peer(s, m->welcome->peer_id);
            s->state = MS_SESSION_JOINED;
            ms_gw_peer_index_add(gw, s);
            Meshsig__V1__Welcome w = *m->welcome;
            w.gateway_id = gw->id;
            /* The limits are this gateway's, so it states them. A client pings
             * every heartbeat_ms and gives up after three silent intervals: the
             * same time after which this gateway drops a silent client. */
            Meshsig__V1__Limits limits = MESHSIG__V1__LIMITS__INIT;
            limits.max_frame_bytes = clamp_u32(gw->cfg->max_frame);
            limits.msgs_per_sec = clamp_u32(gw->cfg->rate_msgs);
            limits.bytes_per_sec = clamp_u32(gw->cfg->rate_bytes);
            limits.max_queue_bytes = clamp_u32(gw->cfg->max_queue);
            limits.max_rooms = clamp_u32(gw->cfg->max_rooms);
            limits.max_services = clamp_u32(gw->cfg->max_services);
            limits.max_subscriptions = clamp_u32(gw->cfg->max_subscriptions);
            /* The stream cap is the owner's (--max-streams on the coordinators). */
            if (m->welcome->limits)
                limits.max_streams = m->welcome->limits->max_streams;
            w.limits = &limits;
            w.heartbeat_ms = clamp_u32(gw->cfg->idle_timeout_ms / 3);
            ms_gw_ice_buf_t ice;
            ms_gw_ice_welcome(gw, s, &w, &ice);
            char token[MS_RESUME_TOKEN_MAX] = "";
            if (gw->resume && s->peer_id &&
                ms_resume_issue_with(gw->resume, s->peer_id, s->ns, gw->started_ms, s->grants,
                                     ms_clock_wall_s(), gw->cfg->resume_ttl_s, token,
                                     sizeof(token)) == MS_OK)
                w.resume_token = token;
            Meshsig__V1__ServerMessage copy = *m;
            copy.welcome = &w;
            ms_gw_send(gw, s, &copy);
            return;
        }
        if (m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_WAITING) {
            /* In line for a full namespace: no join deadline while waiting. */
            ms_gw_deadline_cancel(s);
        }
        if (m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_ERROR) {
            ms_gw_deadline_cancel(s);
            ms_gw_session_reset(gw, s);
        }
    } else if (s->state == MS_SESSION_JOINED &&
               m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_WELCOME) {
        /* The owner answers every copy of a join that was re-sent while its
         * first answer was on the way (e.g. held during a shard rebuild):
         * the client gets one welcome. */
        gw->n_dropped_session++;
        return;
    } else if (s->state != MS_SESSION_JOINED ||
               (*d->peer_id && (!s->peer_id || strcmp(d->peer_id, s->peer_id)))) {
        /* For a peer this session no longer holds. */
        gw->n_dropped_session++;
        return;
    }
    if (m->id && *m->id && !ms_gw_inflight_answered(gw, s, m->id, d->again ? d->req_id : NULL) &&
        d->again) {
        /* The answer to a copy, and the first answer came: the client has it (and may have
         * sent a new request with the same id, which this does not answer). */
        gw->n_dropped_again++;
        return;
    }
    ms_gw_track_delivery(s, m);
    if (d->location)
        ms_gw_direct_location(gw, s, d->location, b->shard, b->epoch);
    else if (m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY &&
             m->topology->event_case == MESHSIG__V1__TOPOLOGY__EVENT_DISCONNECT)
        ms_gw_direct_forget(gw, s, m->topology->disconnect->peer);
    if (m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL)
        ms_gw_record_latency(gw, d->origin_us);
    const ms_outmsg_t *before = s->tail;
    ms_err_t err = ms_gw_send(gw, s, m);
    if (err != MS_OK)
        ms_gw_bounce(gw, s, m, err);
    /* A stored emit this client's encoding cannot carry never will: its
     * sender was told (bounce), and it is done rather than sent again at
     * every join. Out of memory it stays stored. */
    if (d->receipt_seq && (err == MS_OK || err == MS_ERR_INVAL))
        ms_gw_receipt_expect(gw, s, err == MS_OK ? before : s->tail, d->receipt_seq,
                             m->msg_case == MESHSIG__V1__SERVER_MESSAGE__MSG_EMIT ? m->emit->msg_id
                                                                                  : NULL);
    if (d->close_code) {
        ms_gw_direct_closing(gw, s);
        ms_gw_session_close(s, (uint16_t)d->close_code);
    }
}

static void on_bus_msg(natsMsg *msg, void *ud)
{
    ms_gateway_t *gw = ud;
    if (natsMsg_GetDataLength(msg) == 0 && natsMsg_IsNoResponders(msg)) {
        /* nats-server's answer to a join published while no coordinator's subscription had
         * reached its node: the join's own deadline sends it again (hello.c). */
        gw->n_no_responders++;
        return;
    }
    /* A coordinator of another bus major may mean something else by the same fields. */
    if (!ms_busver_accept(&gw->busver, "coordinator", 0, (const uint8_t *)natsMsg_GetData(msg),
                          (size_t)natsMsg_GetDataLength(msg), ms_clock_mono_ms()))
        return;
    if (!strcmp(natsMsg_GetSubject(msg), gw->resync_subject)) {
        Meshsig__Bus__ResyncRequest *rq = (Meshsig__Bus__ResyncRequest *)ms_pblimit_unpack(
            &meshsig__bus__resync_request__descriptor, (const uint8_t *)natsMsg_GetData(msg),
            (size_t)natsMsg_GetDataLength(msg), &ms_pblimit_bus, NULL, 0);
        if (rq) {
            ms_gw_resync_report(gw, rq);
            /* After the report: the new owner then knows the sessions they come from. */
            ms_gw_inflight_new_epoch(gw, rq->shard, rq->epoch, rq->bus_version);
            meshsig__bus__resync_request__free_unpacked(rq, NULL);
        }
        return;
    }
    char why[96];
    const uint8_t *data = (const uint8_t *)natsMsg_GetData(msg);
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    /* Unpacked into the arena: no malloc/free per field of every signal.
     * Nothing keeps a pointer into the batch past this call. */
    ms_pbarena_t *arena = gw->batch_arena.in_use ? NULL : &gw->batch_arena;
    /* Another gateway's direct signals in one bounded pass (dbatch.h);
     * anything else the general path takes or refuses. */
    Meshsig__Bus__GatewayBatch *b = arena ? ms_dbatch_decode(data, len, arena) : NULL;
    if (!b) {
        if (arena)
            ms_pbarena_reset(arena);
        if (ms_pblimit_check(&meshsig__bus__gateway_batch__descriptor, data, len, &ms_pblimit_bus,
                             why, sizeof(why)) != MS_OK) {
            ms_warn("undecodable batch on %s: %s", natsMsg_GetSubject(msg), why);
            return;
        }
        b = meshsig__bus__gateway_batch__unpack(arena ? &arena->alloc : NULL, len, data);
    }
    if (!b) {
        ms_warn("undecodable batch on %s: not a GatewayBatch", natsMsg_GetSubject(msg));
        if (arena)
            ms_pbarena_reset(arena);
        return;
    }
    if (arena)
        arena->in_use = 1;
    if (*b->gateway_id) {
        /* From another gateway: signals of neighbours (direct.c vouches). */
        ms_gw_direct_receive(gw, b);
        goto out;
    }
    if (b->shard < (uint32_t)gw->cfg->shards) {
        /* Fencing: a batch from an older owner of the shard is dropped. */
        if (b->epoch < gw->epochs[b->shard]) {
            gw->n_dropped_epoch += b->n_deliveries;
            goto out;
        }
        gw->epochs[b->shard] = b->epoch;
        ms_gw_inflight_new_epoch(gw, b->shard, b->epoch, b->bus_version);
    }
    for (size_t i = 0; i < b->n_deliveries; i++)
        deliver(gw, b->deliveries[i], b);
    /* Signals from other gateways held for an announcement this may have brought. */
    ms_gw_direct_recheck(gw, ms_clock_mono_us());
out:
    if (arena) {
        arena->in_use = 0;
        ms_pbarena_reset(arena);
    } else {
        meshsig__bus__gateway_batch__free_unpacked(b, NULL);
    }
}

static void wake(void *ud)
{
    ms_gateway_t *gw = ud;
    lws_cancel_service(gw->ctx);
}

ms_err_t ms_gw_intake_start(ms_gateway_t *gw)
{
    ms_err_t err;
    /* Up to 4 MiB kept for batches; bigger ones spill to malloc. */
    ms_pbarena_init(&gw->batch_arena, 4u << 20);
    ms_subject(gw->resync_subject, sizeof(gw->resync_subject), gw->cfg->prefix, MS_SUBJ_GW_RESYNC,
               NULL);
    /* On libev, the NATS socket is one more watcher of the service thread's
     * loop and messages arrive on this thread right after each read; on lws's
     * poll loop, cnats's threads read and hand messages over through the
     * mailbox (ms_gw_intake_drain). */
    /* fail_fast: the service thread publishes, and must not stall while cnats
     * reconnects; a client request then gets UNAVAILABLE and retries. */
    ms_bus_opts_t bo = {.urls = gw->cfg->nats_urls,
                        .auth = &gw->cfg->nats_auth,
                        .name = gw->id,
                        .on_msg = on_bus_msg,
                        .ud = gw,
                        .fail_fast = 1};
    if (ms_evloop_libev(gw->loop))
        err = ms_busloop_libev_create(ms_evloop_libev(gw->loop), &bo.loop);
    else
        err = ms_mailbox_create(wake, gw, &gw->inbox);
    if (err != MS_OK)
        return err;
    if ((err = ms_bus_connect(&bo, &gw->bus)) != MS_OK)
        return err;
    if ((err = ms_bus_subscribe(gw->bus, gw->subject, NULL, gw->inbox)) != MS_OK ||
        (err = ms_bus_subscribe(gw->bus, gw->resync_subject, NULL, gw->inbox)) != MS_OK) {
        ms_error("cannot subscribe %s", gw->subject);
        return err;
    }
    return MS_OK;
}

void ms_gw_intake_drain(ms_gateway_t *gw)
{
    if (gw->inbox)
        ms_mailbox_drain(gw->inbox, on_bus_msg, gw);
}

/* ---- deliveries that cannot be written for their receiver -------------- */

const char *ms_gw_undeliverable_why(const ms_session_t *t, ms_err_t err)
{
    if (err != MS_ERR_INVAL)
        return "the receiver's gateway is out of memory";
    return t->binary ? "it cannot be encoded for the receiver"
                     : "it cannot be encoded as JSON for the receiver (nested too deep)";
}

/* The peer that sent m (set by the owner) and what m is, or NULL when m has
 * no sender to tell (e.g. a topology event). */
static const char *sender_of(const Meshsig__V1__ServerMessage *m, const char **what)
{
    switch (m->msg_case) {
    case MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL:
        *what = "signal";
        return m->signal->from;
    case MESHSIG__V1__SERVER_MESSAGE__MSG_EMIT:
        *what = "emit";
        return m->emit->from;
    case MESHSIG__V1__SERVER_MESSAGE__MSG_ACK:
        *what = "ack";
        return m->ack->from;
    case MESHSIG__V1__SERVER_MESSAGE__MSG_ROOM:
        *what = "room emit";
        return m->room->op_case == MESHSIG__V1__ROOM__OP_EMIT ? m->room->emit->from : NULL;
    case MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE:
        *what = "service call";
        return m->service->op_case == MESHSIG__V1__SERVICE__OP_CALL ? m->service->call->from : NULL;
    case MESHSIG__V1__SERVER_MESSAGE__MSG_TOPIC:
        *what = "topic message";
        return m->topic->op_case == MESHSIG__V1__TOPIC__OP_PUBLISH ? m->topic->publish->from : NULL;
    case MESHSIG__V1__SERVER_MESSAGE__MSG_STREAM:
        *what = "stream open";
        return m->stream->op_case == MESHSIG__V1__STREAM__OP_OPEN ? m->stream->open->from : NULL;
    default:
        return NULL;
    }
}

void ms_gw_bounce(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__ServerMessage *m,
                  ms_err_t err)
{
    const char *what = "message";
    const char *from = sender_of(m, &what);
    if (!from || !*from || !s->peer_id)
        return;
    Meshsig__V1__ErrorCode code = err == MS_ERR_INVAL ? ERR(BAD_REQUEST) : ERR(INTERNAL);
    ms_session_t *o = ms_gw_peer_index_find(gw, s->ns, from);
    if (o) {
        ms_gw_send_error(gw, o, NULL, code, "%s to %s not delivered: %s", what, s->peer_id,
                         ms_gw_undeliverable_why(s, err));
        return;
    }
    char text[256];
    snprintf(text, sizeof(text), "%s to %s not delivered: %s", what, s->peer_id,
             ms_gw_undeliverable_why(s, err));
    Meshsig__V1__Error e = MESHSIG__V1__ERROR__INIT;
    e.code = code;
    e.message = text;
    Meshsig__Bus__Undeliverable u = MESHSIG__BUS__UNDELIVERABLE__INIT;
    u.to = (char *)from;
    u.error = &e;
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_UNDELIVERABLE;
    req.undeliverable = &u;
    req.client_id = (char *)"";
    if (ms_gw_publish_request(gw, s, &req, 0) != 0)
        ms_warn("the sender %s of an undeliverable %s was not told", from, what);
}

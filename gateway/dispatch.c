/* SPDX-License-Identifier: Apache-2.0 */
/* One client frame: rate limits, decoding (JSON or protobuf), routing to the
 * local relay, the hello or the shard's owner, and the memberships a resync reports. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "codec.h"
#include "edgehealth.h"
#include "internal.h"
#include "frameid.h"
#include "log.h"
#include "pblimit.h"

/* Memberships as the client asked for them. The owner may refuse one (a bad
 * name); a resync then offers it again and the owner refuses it again. */
static void track_request(ms_session_t *s, const Meshsig__V1__ClientMessage *cm)
{
    /* A join allocates s->ext (out of memory: not tracked, as when the set's add fails);
     * a leave needs it only when it is there. */
    ms_session_ext_t *x = s->ext;
    switch (cm->msg_case) {
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_ROOM:
        if (cm->room->op_case == MESHSIG__V1__ROOM__OP_JOIN && (x = ms_session_ext(s)))
            ms_strset_add(&x->rooms, cm->room->join->room);
        else if (cm->room->op_case == MESHSIG__V1__ROOM__OP_LEAVE && x)
            ms_strset_remove(&x->rooms, cm->room->leave->room);
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_SERVICE:
        if (cm->service->op_case == MESHSIG__V1__SERVICE__OP_REGISTER && (x = ms_session_ext(s)))
            ms_strset_add(&x->services, cm->service->register_->service);
        else if (cm->service->op_case == MESHSIG__V1__SERVICE__OP_UNREGISTER && x)
            ms_strset_remove(&x->services, cm->service->unregister->service);
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_TOPIC:
        if (cm->topic->op_case == MESHSIG__V1__TOPIC__OP_SUBSCRIBE && (x = ms_session_ext(s)))
            ms_strset_add(&x->subscriptions, cm->topic->subscribe->pattern);
        else if (cm->topic->op_case == MESHSIG__V1__TOPIC__OP_UNSUBSCRIBE && x)
            ms_strset_remove(&x->subscriptions, cm->topic->unsubscribe->pattern);
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_POSITION:
        ms_gw_keep_position(s, cm->position);
        break;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_EDGE: {
        /* Kept with the neighbour (gone with it): a new owner cannot ask the
         * client again, which reports each attempt once. */
        uint8_t *h = ms_strset_tag(&s->neighbours, cm->edge->peer);
        if (h && (cm->edge->state == MESHSIG__V1__EDGE_STATE__UP ||
                  cm->edge->state == MESHSIG__V1__EDGE_STATE__FAILED))
            *h = ms_edgeh_next(*h, cm->edge->state == MESHSIG__V1__EDGE_STATE__UP,
                               cm->edge->relayed);
        break;
    }
    default:
        break;
    }
}

/* 1 when cm would put the session into one more room, service or topic
 * pattern than its cap (--max-rooms, --max-services, --max-subscriptions):
 * the sender gets LIMIT_REACHED and nothing goes to the owner. The gateway
 * keeps these sets for a takeover's resync, so the cap also bounds its
 * memory per session and the size of its resync reports. */
static int over_cap(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__ClientMessage *cm)
{
    static const ms_strset_t none;
    const ms_session_ext_t *x = s->ext;
    const ms_strset_t *set;
    const char *name, *what, *flag;
    long cap;
    ms_gw_cap_t which;
    if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_ROOM &&
        cm->room->op_case == MESHSIG__V1__ROOM__OP_JOIN) {
        set = x ? &x->rooms : &none, name = cm->room->join->room, cap = gw->cfg->max_rooms;
        what = "rooms", flag = "--max-rooms", which = MS_GW_CAP_ROOMS;
    } else if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_SERVICE &&
               cm->service->op_case == MESHSIG__V1__SERVICE__OP_REGISTER) {
        set = x ? &x->services : &none, name = cm->service->register_->service,
        cap = gw->cfg->max_services;
        what = "services", flag = "--max-services", which = MS_GW_CAP_SERVICES;
    } else if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_TOPIC &&
               cm->topic->op_case == MESHSIG__V1__TOPIC__OP_SUBSCRIBE) {
        set = x ? &x->subscriptions : &none, name = cm->topic->subscribe->pattern,
        cap = gw->cfg->max_subscriptions;
        what = "topic subscriptions", flag = "--max-subscriptions", which = MS_GW_CAP_SUBSCRIPTIONS;
    } else {
        return 0;
    }
    if (cap <= 0 || set->n < (uint64_t)cap || ms_strset_has(set, name ? name : ""))
        return 0;
    gw->n_cap_refused[which]++;
    ms_gw_send_error(gw, s, cm->id, ERR(LIMIT_REACHED),
                     "at most %ld %s per session (%s); leave one first", cap, what, flag);
    return 1;
}

/* The client's view of its edges, from the topology events it is sent. */
void ms_gw_track_delivery(ms_session_t *s, const Meshsig__V1__ServerMessage *m)
{
    if (m->msg_case != MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY)
        return;
    const Meshsig__V1__Topology *t = m->topology;
    if (t->event_case == MESHSIG__V1__TOPOLOGY__EVENT_CONNECT) {
        ms_strset_add(&s->neighbours, t->connect->peer);
        ms_session_ext_t *x;
        if (t->connect->role == MESHSIG__V1__ROLE__PARENT && (x = ms_session_ext(s))) {
            free(x->parent);
            x->parent = strdup(t->connect->peer);
        }
    } else if (t->event_case == MESHSIG__V1__TOPOLOGY__EVENT_DISCONNECT) {
        ms_strset_remove(&s->neighbours, t->disconnect->peer);
        ms_session_ext_t *x = s->ext;
        if (x && x->parent && !strcmp(x->parent, t->disconnect->peer)) {
            free(x->parent);
            x->parent = NULL;
        }
    }
}

void ms_gw_handle_message(ms_gateway_t *gw, ms_session_t *s, Meshsig__V1__ClientMessage *cm)
{
    const char *cid = cm->id;
    switch (cm->msg_case) {
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_HELLO:
        ms_gw_hello(gw, s, cid, cm->hello);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_PING: {
        Meshsig__V1__Pong p = MESHSIG__V1__PONG__INIT;
        Meshsig__V1__ServerMessage m = MESHSIG__V1__SERVER_MESSAGE__INIT;
        m.id = (char *)cid;
        m.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_PONG;
        m.pong = &p;
        ms_gw_send(gw, s, &m);
        return;
    }
    case MESHSIG__V1__CLIENT_MESSAGE__MSG__NOT_SET:
        ms_gw_send_error(gw, s, cid, ERR(BAD_REQUEST), "the message names no type");
        return;
    default:
        break;
    }
    if (s->state != MS_SESSION_JOINED) {
        ms_gw_send_error(gw, s, cid, ERR(NOT_JOINED),
                         s->state == MS_SESSION_JOINING ? "hello is still being answered"
                                                        : "say hello first");
        return;
    }
    if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_RECEIVED) {
        /* The client has these stored emits: the gateway holds their
         * sequences, so the ack ends here as the owner's receipt. */
        ms_gw_receipt_received(gw, s, cm->received);
        ms_gw_send_ok(gw, s, cid);
        return;
    }
    if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_LEAVE) {
        ms_gw_publish_leave(gw, s, "left");
        ms_gw_session_reset(gw, s);
        ms_gw_send_ok(gw, s, cid);
        return;
    }
    if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_SIGNAL &&
        ms_gw_relay_signal(gw, s, cm->signal, cid))
        return;
    if (over_cap(gw, s, cm))
        return;
    /* Kept until answered, and sent again if the shard changes hands first (inflight.c). */
    int keep = ms_gw_inflight_room(gw, s, cid);
    if (keep < 0) {
        ms_gw_send_error(gw, s, cid, ERR(UNAVAILABLE),
                         "too many requests wait for the namespace's owner; retry");
        return;
    }
    track_request(s, cm);
    if (cm->msg_case == MESHSIG__V1__CLIENT_MESSAGE__MSG_SIGNAL)
        s->owner_signalled = 1; /* its END tells the receivers' gateways (direct.c) */
    Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
    req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_CLIENT;
    req.client = cm;
    req.client_id = (char *)cid;
    req.resend = keep;
    if (ms_gw_publish_request(gw, s, &req, 0) != 0)
        ms_gw_send_error(gw, s, cid, ERR(UNAVAILABLE), "the message bus is unavailable; retry");
    else if (req.resend)
        ms_gw_inflight_add(gw, s, cid, gw->pub, gw->pub_len, req.epoch, gw->next_req);
}

/* A client over its rate is not read from for a while (lws stops polling its
 * socket): what it sends meanwhile waits in its own socket buffers, then TCP
 * pushes back on it, and the gateway spends nothing on it. Answering every
 * message of a flood with RATE_LIMITED instead cost as much as serving it,
 * and took the loop from everyone else. The pause lets the bucket refill by
 * about 100 ms of its rate (20 messages at 200/s), or long enough for one
 * more message at a slow rate or for the message that did not fit the byte
 * rate, at most a second. */
void ms_gw_throttle(ms_gateway_t *gw, ms_session_t *s, int need_msg, size_t need_bytes)
{
    if (s->throttled)
        return;
    uint64_t pause_us = 100 * 1000;
    if (need_msg && gw->cfg->rate_msgs > 0 && 1000000u / (uint64_t)gw->cfg->rate_msgs > pause_us)
        pause_us = 1000000u / (uint64_t)gw->cfg->rate_msgs; /* a slow rate: until one more fits */
    if (need_bytes && gw->cfg->rate_bytes > 0) {
        uint64_t us = (uint64_t)need_bytes * 1000000u / (uint64_t)gw->cfg->rate_bytes;
        pause_us = us > pause_us ? us : pause_us;
    }
    if (pause_us > 1000 * 1000)
        pause_us = 1000 * 1000;
    s->throttled = 1;
    gw->n_throttled++;
    lws_rx_flow_control(s->wsi, 0);
    lws_set_timer_usecs(s->wsi, (lws_usec_t)pause_us);
}

void ms_gw_handle_frame(ms_gateway_t *gw, ms_session_t *s, const unsigned char *data, size_t len,
                        int binary)
{
    gw->n_in++;
    gw->frame_received_us = ms_clock_wall_us();
    uint64_t now = ms_clock_mono_us();
    unsigned over = ms_ratelimit_pair_spend(&s->rate, &gw->rule_msgs, 1, &gw->rule_bytes, len, now);
    int over_msgs = (over & 1u) != 0, over_bytes = (over & 2u) != 0;
    if (over_msgs || over_bytes) {
        gw->n_rate_limited++;
        char id[128];
        ms_frame_id(data, len, binary, id, sizeof(id));
        ms_gw_send_error(gw, s, id, ERR(RATE_LIMITED), "over %s per second (%ld); message dropped",
                         over_msgs ? "the message rate" : "the byte rate",
                         over_msgs ? gw->cfg->rate_msgs : gw->cfg->rate_bytes);
        ms_gw_throttle(gw, s, over_msgs, over_bytes ? len : 0);
        return;
    }
    if (s->peerjs) {
        ms_gw_peerjs_frame(gw, s, data, len);
        return;
    }
    Meshsig__V1__ClientMessage *cm = NULL;
    if (s->binary) {
        if (!binary) {
            char id[128];
            ms_frame_id(data, len, 0, id, sizeof(id));
            ms_gw_send_error(gw, s, id, ERR(BAD_REQUEST),
                             "meshsig.v1.proto takes binary frames only");
            return;
        }
        /* Checked before protobuf-c sees it: its unpack recurses without a
         * depth limit, and what a binary client sends must fit what a JSON
         * receiver can be sent. */
        char why[96];
        cm = (Meshsig__V1__ClientMessage *)ms_pblimit_unpack(
            &meshsig__v1__client_message__descriptor, data, len, &ms_pblimit_client, why,
            sizeof(why));
        if (!cm) {
            char id[128];
            ms_frame_id(data, len, 1, id, sizeof(id));
            ms_gw_send_error(gw, s, id, ERR(BAD_REQUEST), "%s", why);
            return;
        }
    } else {
        if (binary) {
            char id[128];
            ms_frame_id(data, len, 1, id, sizeof(id));
            ms_gw_send_error(gw, s, id, ERR(BAD_REQUEST), "meshsig.v1.json takes text frames only");
            return;
        }
        if (s->state == MS_SESSION_JOINED && ms_gw_relay_json(gw, s, (const char *)data, len))
            return;
        json_error_t jerr;
        json_t *j = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j) {
            ms_gw_send_error(gw, s, NULL, ERR(BAD_REQUEST), "malformed JSON at %d:%d: %s",
                             jerr.line, jerr.column, jerr.text);
            return;
        }
        /* Echo the id even when the rest of the message is wrong. */
        json_t *jid = json_is_object(j) ? json_object_get(j, "id") : NULL;
        char idbuf[128] = "";
        if (json_is_string(jid))
            snprintf(idbuf, sizeof(idbuf), "%s", json_string_value(jid));
        ms_codec_error_t cerr = {0};
        ms_err_t err = ms_codec_from_jansson(&meshsig__v1__client_message__descriptor, j,
                                             (ProtobufCMessage **)&cm, &cerr);
        json_decref(j);
        if (err != MS_OK) {
            ms_gw_send_error(gw, s, idbuf,
                             cerr.unknown_top_level ? ERR(UNKNOWN_MESSAGE) : ERR(BAD_REQUEST), "%s",
                             *cerr.message ? cerr.message : ms_err_str(err));
            return;
        }
    }
    ms_gw_handle_message(gw, s, cm);
    meshsig__v1__client_message__free_unpacked(cm, NULL);
}

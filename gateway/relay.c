/* SPDX-License-Identifier: Apache-2.0 */
/* Signals between neighbours without the owner: relayed here when both are on
 * this gateway, handed to direct.c when the other is on another gateway; JSON
 * to JSON with a scan that copies the payload through. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "servermsg.h"
#include "sigframe.h"

/* A signal between two neighbours that are both on this gateway goes straight
 * to the receiver; everything else goes through the shard's owner. Both
 * sessions must hold the edge as the owner told them: the two sides of an
 * edge change in one batch from the owner (one namespace, one shard, one
 * gateway), so they agree whenever a frame is handled. The owner is still
 * the authority: a signal this gateway cannot vouch for (another gateway, an
 * edge not yet or no longer known on both sides) takes the owner's path and
 * gets its answer, so nothing is dropped here. A namespace whose policy lets
 * any peer signal any other says so with each welcome (bus signal_scope):
 * see local_any. */
/* In a namespace whose policy lets a peer signal any other (signal_any, e.g.
 * PeerJS keys), the receiver need not be a neighbour: any joined session of
 * the namespace on this gateway. Signals to a peer that is not here (on
 * another gateway, or absent: the owner holds them for it) take the owner's
 * path, and so do all later ones from this sender to that peer, so that they
 * stay in order behind the held ones even when the peer then joins here. */
#define OWNER_ROUTED_MAX 64

static ms_session_t *local_any(ms_gateway_t *gw, ms_session_t *s, const char *to)
{
    if (s->owner_routed_all || ms_strset_has(&s->owner_routed, to))
        return NULL;
    ms_session_t *t = ms_gw_peer_index_find(gw, s->ns, to);
    if (t && t != s && t->state == MS_SESSION_JOINED && t->signal_any && !t->closing)
        return t;
    /* Past OWNER_ROUTED_MAX peers (or out of memory): the owner's path for all. */
    if (s->owner_routed.n >= OWNER_ROUTED_MAX || ms_strset_add(&s->owner_routed, to) != 0)
        s->owner_routed_all = 1;
    return NULL;
}

ms_session_t *ms_gw_relay_local(ms_gateway_t *gw, ms_session_t *s, const char *to)
{
    if (!*to || !s->peer_id)
        return NULL;
    if (s->signal_any)
        return local_any(gw, s, to);
    if (!ms_strset_has(&s->neighbours, to))
        return NULL;
    ms_session_t *t = ms_gw_peer_index_find(gw, s->ns, to);
    if (!t || t == s || !ms_strset_has(&t->neighbours, s->peer_id))
        return NULL;
    return t;
}

int ms_gw_relay_signal(ms_gateway_t *gw, ms_session_t *s, const Meshsig__V1__Signal *sig,
                       const char *cid)
{
    /* First: an edge whose other end is on another gateway (or is moving). */
    if (ms_gw_direct_send(gw, s, sig->to, NULL, 0, sig->payload, cid))
        return 1;
    ms_session_t *t = ms_gw_relay_local(gw, s, sig->to);
    if (!t)
        return 0;
    ms_sm_signal_t out; /* `from` is the sender's session, never the client's word */
    gw->n_signals_local++;
    ms_gw_record_latency(gw, gw->frame_received_us);
    ms_err_t err = ms_gw_send(gw, t, ms_sm_signal(&out, s->peer_id, sig->payload));
    if (err != MS_OK)
        ms_gw_send_error(gw, s, cid, err == MS_ERR_INVAL ? ERR(BAD_REQUEST) : ERR(INTERNAL),
                         "signal to %s not delivered: %s", t->peer_id,
                         ms_gw_undeliverable_why(t, err));
    else
        ms_gw_send_ok(gw, s, cid);
    return 1;
}

/* The same for JSON to JSON, without decoding the payload: a text frame that
 * is exactly {"id"?, "signal": {"to", "from"?, "payload"?}} (any order) has its
 * payload checked by the scanner and copied through (sigframe.h). Anything the
 * scanner does not vouch for takes the full decoder, which answers errors. */
size_t ms_gw_signal_json(ms_gateway_t *gw, const char *from, const char *payload, size_t len)
{
    /* Peer ids are A-Z a-z 0-9 . _ : @ - (the owner checks): no escaping. */
    static const char head[] = "{\"signal\":{\"from\":\"", mid[] = "\",\"payload\":";
    size_t idl = strlen(from);
    if (ms_gw_out_reserve(gw, sizeof(head) + idl + sizeof(mid) + len + 4) != 0)
        return 0;
    char *o = gw->out;
    memcpy(o, head, sizeof(head) - 1);
    o += sizeof(head) - 1;
    memcpy(o, from, idl);
    o += idl;
    if (payload) {
        memcpy(o, mid, sizeof(mid) - 1);
        o += sizeof(mid) - 1;
        memcpy(o, payload, len);
        o += len;
    } else {
        *o++ = '"';
    }
    *o++ = '}';
    *o++ = '}';
    return (size_t)(o - gw->out);
}

int ms_gw_relay_json(ms_gateway_t *gw, ms_session_t *s, const char *data, size_t len)
{
    ms_sigframe_t fs;
    if (!ms_sigframe_scan(data, len, &fs))
        return 0;
    if (ms_gw_direct_send(gw, s, fs.to, fs.payload, fs.payload ? fs.payload_len : 0, NULL, fs.id))
        return 1;
    ms_session_t *t = ms_gw_relay_local(gw, s, fs.to);
    if (!t || t->binary || t->peerjs)
        return 0; /* the full path (ms_gw_send translates), or the owner's, which answers */
    if (t->closing) {
        /* As ms_gw_send: nothing more for a closing session; the request is answered as on
         * the decoded path. */
        ms_gw_send_ok(gw, s, fs.id);
        return 1;
    }
    size_t n = ms_gw_signal_json(gw, s->peer_id, fs.payload, fs.payload_len);
    if (!n)
        return 0;
    gw->n_signals_local++;
    ms_gw_record_latency(gw, gw->frame_received_us);
    ms_gw_queue_frame(gw, t, gw->out, n);
    ms_gw_send_ok(gw, s, fs.id);
    return 1;
}

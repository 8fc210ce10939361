/* SPDX-License-Identifier: Apache-2.0 */
/* Direct emit between two peers, with an optional ack, and persistent emits kept (offline.c)
 * until the receiver's gateway has written them to the client. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "auth.h"
#include "clock.h"
#include "internal.h"
#include "log.h"
#include "servermsg.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

static void ack_key(char *buf, size_t cap, const char *sender, const char *ack_id)
{
    snprintf(buf, cap, "%s\x1f%s", sender, ack_id);
}

/* A persistent emit, kept until the receiver's gateway has written it (for an
 * absent receiver: until it joins). The sender gets ok once JetStream has it
 * (offline_stored below); a present receiver gets it then. */
static void store_persistent(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                             Meshsig__V1__Emit *em, int present)
{
    if (!ms_auth_peer_id_valid(em->to)) {
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "emit.to is not a valid peer id");
        return;
    }
    unsigned char r[8];
    char msg_id[40];
    if (RAND_bytes(r, sizeof(r)) != 1) {
        ms_member_error(c, ns, from, cid, ERR(INTERNAL), "no randomness for a message id");
        return;
    }
    snprintf(msg_id, sizeof(msg_id), "%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3],
             r[4], r[5], r[6], r[7]);
    Meshsig__V1__Emit out = MESHSIG__V1__EMIT__INIT;
    out.to = em->to;
    out.from = from->id;
    out.event = em->event;
    out.data = em->data;
    out.persistent = 1;
    out.msg_id = msg_id;
    /* The stream's subject is a hash of namespace and peer: the stored copy
     * names both in full, and only that peer gets it (deliver_offline). */
    out.stored_ns = ns->name;
    /* No store: a coordinator built without JetStream (unit tests, fuzz targets). */
    if (!c->offline) {
        ms_member_error(c, ns, from, cid, ERR(UNAVAILABLE), "persistent emits are unavailable");
        return;
    }
    if (ms_offline_store(c->offline, ns->name, em->to, &out, cid, present) != MS_OK) {
        ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    c->msg.n_emits++;
}

/* A peer joined: deliver what was kept for it (offline.c answers through the loop). */
static void member_joined(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    if (!c->offline)
        return;
    ms_offline_fetch(c->offline, ns->name, m->id);
    ms_redeliver_fetched(&c->redeliver, ns->name, m->id, ms_clock_mono_ms());
}

void ms_emit_member_restored(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    member_joined(c, ns, m);
}

/* A resume: what was handed to the old session without a receipt (its
 * gateway died or was draining) is still stored and goes to the new one. */
void ms_emit_member_resumed(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    member_joined(c, ns, m);
}

/* A stored emit to m, with its stream sequence for the gateway's receipt. */
static void deliver_stored(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *m,
                           const Meshsig__V1__Emit *emit, uint64_t seq)
{
    /* The store keys on `to`; the receiver knows who it is, as for any other emit. */
    Meshsig__V1__Emit out = *emit;
    out.to = (char *)"";
    out.stored_ns = (char *)"";
    ms_sm_emit_t sm;
    if (ms_member_rare(m)->deliver || !seq) {
        /* A backend's face takes it at once (no gateway to write it). */
        ms_deliver(c, ns, m, ms_sm_emit(&sm, &out));
        if (seq)
            ms_offline_delete(c->offline, seq);
        return;
    }
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    d.session = m->session;
    d.peer_id = (char *)m->id;
    d.msg = ms_sm_emit(&sm, &out);
    d.receipt_seq = seq;
    ms_outbox_deliver_full(&c->outbox, ns->shard, m->gateway, &d);
    c->msg.n_stored_sent++;
    /* Fetched again if no receipt comes while the peer stays (redeliver.h). */
    ms_redeliver_sent(&c->redeliver, ns->name, m->id, seq, ms_clock_mono_ms());
}

/* The receiver's gateway wrote these stored emits to its client. Any
 * gateway may say so for its own sessions; the sequences are the stream's,
 * not the namespace's, so nothing here depends on who owns what now. */
void ms_emit_receipt(ms_coord_t *c, const Meshsig__Bus__Receipt *r)
{
    if (!c->offline)
        return;
    for (size_t i = 0; i < r->n_seqs; i++) {
        ms_offline_delete(c->offline, r->seqs[i]);
        ms_redeliver_receipted(&c->redeliver, r->seqs[i]);
    }
    c->msg.n_stored_receipts += r->n_seqs;
}

/* A peer whose stored emits were handed out without a receipt: fetched
 * again while it is a member here (a gateway-held face only: a backend's
 * took them at once). */
static int refetch(const char *name, const char *peer, void *ud)
{
    ms_coord_t *c = ud;
    ms_ns_t *ns = ms_ns_find(c, name);
    ms_member_t *m = ns ? ms_ns_member(ns, peer) : NULL;
    if (!m || !c->offline)
        return 0;
    ms_offline_fetch(c->offline, ns->name, m->id);
    return 1;
}

void ms_emit_tick(ms_coord_t *c, uint64_t now)
{
    if (c->offline)
        ms_offline_tick(c->offline);
    ms_redeliver_tick(&c->redeliver, now, refetch, c);
}

void ms_emit_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                    Meshsig__V1__Emit *em)
{
    uint32_t timeout_ms = 0;
    if (!ms_pending_timeout(em->timeout_ms, &timeout_ms)) {
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                        "emit.timeoutMs %u is over the %u ms limit", em->timeout_ms,
                        MS_PENDING_MAX_TIMEOUT_MS);
        return;
    }
    if (!*em->to) {
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "emit.to is required");
        return;
    }
    char key[512];
    if (*em->ack_id) {
        ack_key(key, sizeof(key), from->id, em->ack_id);
        if (ms_pending_find(ns, key)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "ackId %s is already waiting for an ack", em->ack_id);
            return;
        }
    }
    ms_member_t *to = ms_ns_party(ns, em->to);
    /* Persistent to a present peer goes through the store too, so that a
     * gateway that dies before writing it loses nothing. With an ackId the
     * receiver's ack is the sender's receipt (ACK_TIMEOUT tells it to retry). */
    if (to && em->persistent && !*em->ack_id && c->offline) {
        store_persistent(c, ns, from, cid, em, 1);
        return;
    }
    if (!to) {
        if (em->persistent) {
            store_persistent(c, ns, from, cid, em, 0);
            return;
        }
        if (!*em->ack_id) {
            ms_member_error(c, ns, from, cid, ERR(PEER_NOT_FOUND), "%s is not in namespace %s",
                            em->to, ns->name);
            return;
        }
        /* With an ackId every outcome about the receiver is the ack (one shape whatever the
         * cause): the request is answered, then the ack says the peer is not there. */
        ms_send_ok(c, ns, from, cid);
        char text[256];
        snprintf(text, sizeof(text), "%s is not in namespace %s", em->to, ns->name);
        ms_pending_outcome_error(c, ns, from, MS_PENDING_ACK, em->ack_id, em->to,
                                 ERR(PEER_NOT_FOUND), text);
        return;
    }
    if (*em->ack_id && !ms_pending_add_ack(c, ns, key, from->id, to->id, em->ack_id, timeout_ms)) {
        ms_member_error(c, ns, from, cid, ERR(RATE_LIMITED),
                        "too many pending acks and calls (at most %u per peer, %u per namespace)",
                        MS_PENDING_MAX_PER_PEER, MS_PENDING_MAX_PER_NS);
        return;
    }
    Meshsig__V1__Emit out = MESHSIG__V1__EMIT__INIT;
    out.from = from->id;
    out.event = em->event;
    out.data = em->data;
    out.ack_id = em->ack_id;
    ms_sm_emit_t sm;
    c->msg.n_emits++;
    ms_deliver(c, ns, to, ms_sm_emit(&sm, &out));
    ms_send_ok_result(c, ns, from, cid, 1, 0);
}

void ms_emit_ack(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                 Meshsig__V1__Ack *ack)
{
    char key[512];
    ack_key(key, sizeof(key), ack->to, ack->ack_id);
    ms_pending_t *p = ms_pending_find(ns, key);
    if (!p || p->kind != MS_PENDING_ACK || strcmp(p->to->id, from->id)) {
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                        "no emit from %s with ackId %s is waiting for you (it may have timed out)",
                        ack->to, ack->ack_id);
        return;
    }
    ms_member_t *sender = ms_ns_party(ns, p->from->id);
    if (sender) {
        Meshsig__V1__Ack out = MESHSIG__V1__ACK__INIT;
        out.ack_id = p->orig_id;
        out.from = from->id;
        out.data = ack->data;
        out.error = ack->error;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ACK;
        sm.ack = &out;
        c->msg.n_acks++;
        ms_deliver(c, ns, sender, &sm);
    }
    ms_pending_done(ns, p);
    ms_send_ok(c, ns, from, cid);
}

/* Whether a stored emit read from the subject of peer in namespace name is
 * for that peer. The subject is FNV-1a 64 of the namespace and of namespace
 * and peer, and such collisions can be computed: a client that chooses its
 * peer id (or namespace) could otherwise join on another peer's subject and be
 * handed, and receipt away, that peer's stored emits. So the emit's own `to`
 * and namespace decide; one for somebody else is left in the stream untouched
 * (no delivery, no receipt asked, no delete) for its addressee, whose own join
 * reads the same subject. Emits stored before stored_ns existed carry `to`
 * only: they are checked on it alone until they age out (--offline-max-age-s). */
static int stored_for(ms_coord_t *c, const char *name, const char *peer,
                      const Meshsig__V1__Emit *emit, uint64_t seq)
{
    const char *to = emit->to ? emit->to : "";
    const char *sns = emit->stored_ns ? emit->stored_ns : "";
    if (!strcmp(to, peer) && (!*sns || !strcmp(sns, name)))
        return 1;
    c->msg.n_stored_misaddressed++;
    uint64_t now = ms_clock_mono_ms();
    if (!c->msg.misaddressed_logged_ms || now - c->msg.misaddressed_logged_ms >= 5000) {
        c->msg.misaddressed_logged_ms = now;
        ms_warn("stored emit #%llu read for %s/%s is for %s/%s: left in the stream (a subject "
                "hash collision or a bug; %llu so far, logged at most every 5 s)",
                (unsigned long long)seq, name, peer, *sns ? sns : "?", to,
                (unsigned long long)c->msg.n_stored_misaddressed);
    }
    return 0;
}

static int deliver_offline(const char *name, const char *peer, const Meshsig__V1__Emit *emit,
                           uint64_t seq, void *ud)
{
    ms_coord_t *c = ud;
    if (!stored_for(c, name, peer, emit, seq))
        return 0; /* not this peer's: kept, unreceipted, for its addressee */
    ms_ns_t *ns = ms_ns_find(c, name);
    ms_member_t *m = ns ? ms_ns_member(ns, peer) : NULL;
    if (!m)
        return 0; /* gone again before delivery: kept for the next join */
    deliver_stored(c, ns, m, emit, seq);
    return 1;
}

/* The outcome of storing a persistent emit: a receiver that was present gets
 * it now (if still here), and the sender, if still here, its answer. */
static void offline_stored(const char *name, const char *sender, const char *cid, int ok,
                           const char *peer, const Meshsig__V1__Emit *emit, uint64_t seq, void *ud)
{
    ms_coord_t *c = ud;
    ms_ns_t *ns = ms_ns_find(c, name);
    int delivered = 0;
    if (emit && ns) {
        ms_member_t *to = ms_ns_party(ns, peer);
        if (to) {
            /* Not stored (JetStream down): still delivered, without the
             * store's guarantee, as an emit to a present peer always was. */
            deliver_stored(c, ns, to, emit, ok ? seq : 0);
            delivered = 1;
        }
        /* Gone meanwhile: stored for its next join (or lost with the store). */
    } else if (ok && seq && ns) {
        /* Stored for an absent receiver that may have joined meanwhile: its
         * join's fetch, queued after this store, delivers it; should that
         * hand-off go missing, the re-fetch below catches it. */
        ms_member_t *to = ms_ns_member(ns, peer);
        if (to && !ms_member_rare(to)->deliver)
            ms_redeliver_sent(&c->redeliver, ns->name, to->id, seq, ms_clock_mono_ms());
    }
    ms_member_t *from = ns && sender ? ms_ns_party(ns, sender) : NULL;
    if (!from)
        return; /* left, or its shard moved: the message is kept all the same */
    if (ok || delivered)
        ms_send_ok_result(c, ns, from, cid, delivered, ok);
    else
        ms_member_error(c, ns, from, cid, ERR(UNAVAILABLE),
                        "persistent emit not stored: JetStream is unavailable");
}

void ms_emit_offline_drain(ms_coord_t *c)
{
    ms_offline_drain(c->offline, deliver_offline, offline_stored, c);
}

const ms_ns_hooks_t ms_emit_hooks = {.name = "emit", .member_joined = member_joined};

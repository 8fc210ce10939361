/* SPDX-License-Identifier: Apache-2.0 */
/* Peer messaging inside a namespace: emit with ack, rooms, services, topics and streams.
 *
 * Everything here runs on the coordinator's loop for the namespace's owner, so
 * the state needs no locks. Requests that wait for an answer (an emit's ack, a
 * service call's reply) are kept in ns->pending with a deadline; ms_msg_tick
 * expires them and ms_msg_member_gone fails them when the peer who must answer
 * leaves. Ids chosen by clients are never trusted across peers: a service call
 * is forwarded under a server-made id, an ack is matched on (sender, ackId) and
 * checked against the peer that received the emit, and a stream is named
 * "<opener>/<streamId>" towards its receiver.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "auth.h"
#include "internal.h"
#include "log.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code
#define DEFAULT_TIMEOUT_MS 10000u
#define MAX_TIMEOUT_MS 120000u
#define MAX_NAME 128
#define MAX_PATTERN 256
#define MAX_PENDING_PER_NS 100000u
#define MAX_SUBS_PER_NS 100000u

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= MAX_NAME;
}

static uint32_t clamp_timeout(uint32_t t)
{
    if (t == 0)
        return DEFAULT_TIMEOUT_MS;
    return t > MAX_TIMEOUT_MS ? MAX_TIMEOUT_MS : t;
}

/* ---- pending requests ---------------------------------------------------- */

static void pending_free(ms_pending_t *p)
{
    free(p->key);
    free(p->from);
    free(p->to);
    free(p->orig_id);
    free(p);
}

static ms_pending_t *pending_add(ms_coord_t *c, ms_ns_t *ns, uint8_t kind, const char *key,
                                 const char *from, const char *to, const char *orig,
                                 uint32_t timeout_ms)
{
    if (HASH_COUNT(ns->pending) >= MAX_PENDING_PER_NS)
        return NULL;
    ms_pending_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->kind = kind;
    p->key = strdup(key);
    p->from = strdup(from);
    p->to = strdup(to);
    p->orig_id = strdup(orig);
    p->deadline_ms = ms_now_ms() + timeout_ms;
    if (!p->key || !p->from || !p->to || !p->orig_id) {
        pending_free(p);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, ns->pending, p->key, strlen(p->key), p);
    if (!c->next_deadline_ms || p->deadline_ms < c->next_deadline_ms)
        c->next_deadline_ms = p->deadline_ms;
    return p;
}

static void ack_key(char *buf, size_t cap, const char *sender, const char *ack_id)
{
    snprintf(buf, cap, "%s\x1f%s", sender, ack_id);
}

/* Tells the waiting side of p that it failed with code. */
static void pending_fail(ms_coord_t *c, ms_ns_t *ns, ms_pending_t *p, Meshsig__V1__ErrorCode code,
                         const char *text)
{
    ms_member_t *w = ms_ns_member(ns, p->from);
    if (!w)
        return;
    Meshsig__V1__Error e = MESHSIG__V1__ERROR__INIT;
    e.code = code;
    e.message = (char *)text;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    if (p->kind == MS_PENDING_ACK) {
        Meshsig__V1__Ack a = MESHSIG__V1__ACK__INIT;
        a.ack_id = p->orig_id;
        a.from = p->to;
        a.error = &e;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ACK;
        sm.ack = &a;
        ms_deliver(c, ns, w, &sm);
    } else {
        Meshsig__V1__ServiceReply r = MESHSIG__V1__SERVICE_REPLY__INIT;
        r.call_id = p->orig_id;
        r.error = &e;
        Meshsig__V1__Service sv = MESHSIG__V1__SERVICE__INIT;
        sv.op_case = MESHSIG__V1__SERVICE__OP_REPLY;
        sv.reply = &r;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE;
        sm.service = &sv;
        ms_deliver(c, ns, w, &sm);
    }
}

void ms_msg_tick(ms_coord_t *c, uint64_t now)
{
    /* Nothing is due before the earliest deadline: skip the scan. */
    if (!c->next_deadline_ms || now < c->next_deadline_ms)
        return;
    uint64_t next = 0;
    ms_ns_t *ns, *ntmp;
    HASH_ITER(hh, c->namespaces, ns, ntmp)
    {
        ms_pending_t *p, *tmp;
        HASH_ITER(hh, ns->pending, p, tmp)
        {
            if (p->deadline_ms > now) {
                if (!next || p->deadline_ms < next)
                    next = p->deadline_ms;
                continue;
            }
            HASH_DEL(ns->pending, p);
            c->n_timeouts++;
            if (p->kind == MS_PENDING_ACK)
                pending_fail(c, ns, p, ERR(ACK_TIMEOUT), "no ack in time");
            else
                pending_fail(c, ns, p, ERR(TIMEOUT), "no reply in time");
            pending_free(p);
        }
    }
    c->next_deadline_ms = next;
}

/* ---- emit and ack -------------------------------------------------------- */

/* An emit for an absent peer, kept until it joins; the sender gets ok. */
static void store_persistent(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                             Meshsig__V1__Emit *em)
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
    if (ms_offline_store(c->offline, ns->name, em->to, &out, 0) != MS_OK) {
        ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    c->n_emits++;
    ms_send_ok(c, ns, from, cid);
}

void ms_msg_member_joined(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    if (c->offline)
        ms_offline_fetch(c->offline, ns->name, m->id);
}

static void handle_emit(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                        Meshsig__V1__Emit *em)
{
    ms_member_t *to = ms_ns_member(ns, em->to);
    if (!to) {
        if (em->persistent) {
            store_persistent(c, ns, from, cid, em);
            return;
        }
        ms_member_error(c, ns, from, cid, ERR(PEER_NOT_FOUND), "%s is not in namespace %s", em->to,
                        ns->name);
        return;
    }
    if (*em->ack_id) {
        char key[512];
        ack_key(key, sizeof(key), from->id, em->ack_id);
        ms_pending_t *old;
        HASH_FIND_STR(ns->pending, key, old);
        if (old) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "ackId %s is already waiting for an ack", em->ack_id);
            return;
        }
        if (!pending_add(c, ns, MS_PENDING_ACK, key, from->id, to->id, em->ack_id,
                         clamp_timeout(em->timeout_ms))) {
            ms_member_error(c, ns, from, cid, ERR(RATE_LIMITED), "too many pending acks");
            return;
        }
    }
    Meshsig__V1__Emit out = MESHSIG__V1__EMIT__INIT;
    out.from = from->id;
    out.event = em->event;
    out.data = em->data;
    out.ack_id = em->ack_id;
    out.msg_id = em->msg_id;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_EMIT;
    sm.emit = &out;
    c->n_emits++;
    ms_deliver(c, ns, to, &sm);
}

static void handle_ack(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                       Meshsig__V1__Ack *ack)
{
    char key[512];
    ack_key(key, sizeof(key), ack->to, ack->ack_id);
    ms_pending_t *p;
    HASH_FIND_STR(ns->pending, key, p);
    if (!p || p->kind != MS_PENDING_ACK || strcmp(p->to, from->id)) {
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                        "no emit from %s with ackId %s is waiting for you (it may have timed out)",
                        ack->to, ack->ack_id);
        return;
    }
    HASH_DEL(ns->pending, p);
    ms_member_t *sender = ms_ns_member(ns, p->from);
    if (sender) {
        Meshsig__V1__Ack out = MESHSIG__V1__ACK__INIT;
        out.ack_id = p->orig_id;
        out.from = from->id;
        out.data = ack->data;
        out.error = ack->error;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ACK;
        sm.ack = &out;
        c->n_acks++;
        ms_deliver(c, ns, sender, &sm);
    }
    pending_free(p);
}

/* ---- rooms ----------------------------------------------------------------- */

static ms_room_t *room_find(ms_ns_t *ns, const char *name)
{
    ms_room_t *r;
    HASH_FIND_STR(ns->rooms, name, r);
    return r;
}

static int room_has(const ms_room_t *r, const ms_member_t *m)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->members[i] == m)
            return 1;
    return 0;
}

static void room_free(ms_ns_t *ns, ms_room_t *r)
{
    HASH_DEL(ns->rooms, r);
    free(r->name);
    free(r->members);
    free(r);
}

static void room_notify(ms_coord_t *c, ms_ns_t *ns, ms_room_t *r, const ms_member_t *who,
                        int joined)
{
    Meshsig__V1__RoomPeer rp = MESHSIG__V1__ROOM_PEER__INIT;
    rp.room = r->name;
    rp.peer = who->id;
    Meshsig__V1__Room room = MESHSIG__V1__ROOM__INIT;
    if (joined) {
        room.op_case = MESHSIG__V1__ROOM__OP_PEER_JOINED;
        room.peer_joined = &rp;
    } else {
        room.op_case = MESHSIG__V1__ROOM__OP_PEER_LEFT;
        room.peer_left = &rp;
    }
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ROOM;
    sm.room = &room;
    for (size_t i = 0; i < r->n; i++)
        if (r->members[i] != who)
            ms_deliver(c, ns, r->members[i], &sm);
}

static void room_members_reply(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *cid,
                               const char *name, ms_room_t *r)
{
    size_t n = r ? r->n : 0;
    char **ids = n ? calloc(n, sizeof(*ids)) : NULL;
    if (n && !ids) {
        ms_member_error(c, ns, to, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        ids[i] = r->members[i]->id;
    Meshsig__V1__RoomMembers rm = MESHSIG__V1__ROOM_MEMBERS__INIT;
    rm.room = (char *)name;
    rm.n_peers = n;
    rm.peers = ids;
    Meshsig__V1__Room room = MESHSIG__V1__ROOM__INIT;
    room.op_case = MESHSIG__V1__ROOM__OP_MEMBERS;
    room.members = &rm;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.id = (char *)cid;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ROOM;
    sm.room = &room;
    ms_deliver(c, ns, to, &sm);
    free(ids);
}

static int room_remove(ms_coord_t *c, ms_ns_t *ns, ms_room_t *r, ms_member_t *m)
{
    for (size_t i = 0; i < r->n; i++) {
        if (r->members[i] != m)
            continue;
        r->members[i] = r->members[--r->n];
        room_notify(c, ns, r, m, 0);
        if (r->n == 0)
            room_free(ns, r);
        return 1;
    }
    return 0;
}

static void handle_room(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                        Meshsig__V1__Room *room)
{
    switch (room->op_case) {
    case MESHSIG__V1__ROOM__OP_JOIN: {
        const char *name = room->join->room;
        if (!name_ok(name)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "room names are 1 to 128 bytes");
            return;
        }
        ms_room_t *r = room_find(ns, name);
        if (!r) {
            r = calloc(1, sizeof(*r));
            if (!r || !(r->name = strdup(name))) {
                free(r);
                ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
                return;
            }
            HASH_ADD_KEYPTR(hh, ns->rooms, r->name, strlen(r->name), r);
        }
        if (!room_has(r, from)) {
            if (r->n == r->cap) {
                size_t ncap = r->cap ? r->cap * 2 : 8;
                ms_member_t **nv = realloc(r->members, ncap * sizeof(*nv));
                if (!nv) {
                    ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
                    return;
                }
                r->members = nv;
                r->cap = ncap;
            }
            r->members[r->n++] = from;
            room_notify(c, ns, r, from, 1);
        }
        room_members_reply(c, ns, from, cid, name, r);
        return;
    }
    case MESHSIG__V1__ROOM__OP_LEAVE: {
        ms_room_t *r = room_find(ns, room->leave->room);
        if (!r || !room_remove(c, ns, r, from)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "you are not in room %s",
                            room->leave->room);
            return;
        }
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__ROOM__OP_LIST: {
        const char *name = room->list->room;
        room_members_reply(c, ns, from, cid, name, room_find(ns, name));
        return;
    }
    case MESHSIG__V1__ROOM__OP_EMIT: {
        ms_room_t *r = room_find(ns, room->emit->room);
        if (!r || !room_has(r, from)) {
            ms_member_error(c, ns, from, cid, ERR(FORBIDDEN), "join room %s before emitting to it",
                            room->emit->room);
            return;
        }
        Meshsig__V1__RoomEmit out = *room->emit;
        out.from = from->id;
        out.echo = 0;
        Meshsig__V1__Room ro = MESHSIG__V1__ROOM__INIT;
        ro.op_case = MESHSIG__V1__ROOM__OP_EMIT;
        ro.emit = &out;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ROOM;
        sm.room = &ro;
        for (size_t i = 0; i < r->n; i++)
            if (r->members[i] != from || room->emit->echo)
                ms_deliver(c, ns, r->members[i], &sm);
        c->n_room_emits++;
        return;
    }
    default:
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "room takes join, leave, list or emit");
        return;
    }
}

/* ---- services ------------------------------------------------------------ */

static ms_service_t *service_find(ms_ns_t *ns, const char *name)
{
    ms_service_t *s;
    HASH_FIND_STR(ns->services, name, s);
    return s;
}

static int service_remove(ms_ns_t *ns, ms_service_t *s, const ms_member_t *m)
{
    for (size_t i = 0; i < s->n; i++) {
        if (s->providers[i] != m)
            continue;
        memmove(&s->providers[i], &s->providers[i + 1], (s->n - i - 1) * sizeof(*s->providers));
        s->n--;
        if (s->n == 0) {
            HASH_DEL(ns->services, s);
            free(s->name);
            free(s->providers);
            free(s);
        }
        return 1;
    }
    return 0;
}

static void handle_service(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                           Meshsig__V1__Service *svc)
{
    switch (svc->op_case) {
    case MESHSIG__V1__SERVICE__OP_REGISTER: {
        const char *name = svc->register_->service;
        if (!name_ok(name)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "service names are 1 to 128 bytes");
            return;
        }
        ms_service_t *s = service_find(ns, name);
        if (!s) {
            s = calloc(1, sizeof(*s));
            if (!s || !(s->name = strdup(name))) {
                free(s);
                ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
                return;
            }
            HASH_ADD_KEYPTR(hh, ns->services, s->name, strlen(s->name), s);
        }
        for (size_t i = 0; i < s->n; i++)
            if (s->providers[i] == from) {
                ms_send_ok(c, ns, from, cid);
                return;
            }
        if (s->n == s->cap) {
            size_t ncap = s->cap ? s->cap * 2 : 4;
            ms_member_t **nv = realloc(s->providers, ncap * sizeof(*nv));
            if (!nv) {
                ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
                return;
            }
            s->providers = nv;
            s->cap = ncap;
        }
        s->providers[s->n++] = from;
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__SERVICE__OP_UNREGISTER: {
        ms_service_t *s = service_find(ns, svc->unregister->service);
        if (!s || !service_remove(ns, s, from)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "you do not provide %s",
                            svc->unregister->service);
            return;
        }
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__SERVICE__OP_CALL: {
        Meshsig__V1__ServiceCall *call = svc->call;
        ms_service_t *s = service_find(ns, call->service);
        if (!s || s->n == 0) {
            ms_member_error(c, ns, from, cid, ERR(SERVICE_UNAVAILABLE),
                            "no provider for service %s", call->service);
            return;
        }
        if (!*call->call_id) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "service.call needs a callId");
            return;
        }
        /* Round robin over the providers. */
        ms_member_t *prov = s->providers[s->next++ % s->n];
        char key[64];
        snprintf(key, sizeof(key), "call-%llu", (unsigned long long)++ns->next_call);
        if (!pending_add(c, ns, MS_PENDING_CALL, key, from->id, prov->id, call->call_id,
                         clamp_timeout(call->timeout_ms))) {
            ms_member_error(c, ns, from, cid, ERR(RATE_LIMITED), "too many pending calls");
            return;
        }
        Meshsig__V1__ServiceCall out = *call;
        out.call_id = key;
        out.from = from->id;
        Meshsig__V1__Service so = MESHSIG__V1__SERVICE__INIT;
        so.op_case = MESHSIG__V1__SERVICE__OP_CALL;
        so.call = &out;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE;
        sm.service = &so;
        c->n_calls++;
        ms_deliver(c, ns, prov, &sm);
        return;
    }
    case MESHSIG__V1__SERVICE__OP_REPLY: {
        Meshsig__V1__ServiceReply *rep = svc->reply;
        ms_pending_t *p;
        HASH_FIND_STR(ns->pending, rep->call_id, p);
        if (!p || p->kind != MS_PENDING_CALL || strcmp(p->to, from->id)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "no call %s is waiting for your reply (it may have timed out)",
                            rep->call_id);
            return;
        }
        HASH_DEL(ns->pending, p);
        ms_member_t *caller = ms_ns_member(ns, p->from);
        if (caller) {
            Meshsig__V1__ServiceReply out = *rep;
            out.call_id = p->orig_id;
            Meshsig__V1__Service so = MESHSIG__V1__SERVICE__INIT;
            so.op_case = MESHSIG__V1__SERVICE__OP_REPLY;
            so.reply = &out;
            Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
            sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE;
            sm.service = &so;
            ms_deliver(c, ns, caller, &sm);
        }
        pending_free(p);
        return;
    }
    default:
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                        "service takes register, unregister, call or reply");
        return;
    }
}

/* ---- topics -------------------------------------------------------------- */

/* NATS-style subject tokens: '*' matches one token, '>' (last) one or more. */
static int pattern_valid(const char *p, int wildcards)
{
    size_t n = strlen(p);
    if (n == 0 || n > MAX_PATTERN)
        return 0;
    const char *tok = p;
    for (;;) {
        const char *dot = strchr(tok, '.');
        size_t tl = dot ? (size_t)(dot - tok) : strlen(tok);
        if (tl == 0)
            return 0;
        for (size_t i = 0; i < tl; i++) {
            if (tok[i] == '*' || tok[i] == '>') {
                if (!wildcards || tl != 1)
                    return 0;
                if (tok[i] == '>' && dot)
                    return 0;
            }
            if ((unsigned char)tok[i] <= ' ')
                return 0;
        }
        if (!dot)
            return 1;
        tok = dot + 1;
    }
}

static int pattern_match(const char *pat, const char *subj)
{
    for (;;) {
        const char *pd = strchr(pat, '.'), *sd = strchr(subj, '.');
        size_t pl = pd ? (size_t)(pd - pat) : strlen(pat);
        size_t sl = sd ? (size_t)(sd - subj) : strlen(subj);
        if (pl == 1 && pat[0] == '>')
            return 1;
        if (!(pl == 1 && pat[0] == '*') && (pl != sl || strncmp(pat, subj, pl)))
            return 0;
        if (!pd || !sd)
            return !pd && !sd;
        pat = pd + 1;
        subj = sd + 1;
    }
}

static void handle_topic(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                         Meshsig__V1__Topic *t)
{
    switch (t->op_case) {
    case MESHSIG__V1__TOPIC__OP_SUBSCRIBE: {
        const char *pat = t->subscribe->pattern;
        if (!pattern_valid(pat, 1)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "bad pattern: dot-separated tokens, '*' for one token, '>' last");
            return;
        }
        for (size_t i = 0; i < ns->n_subs; i++)
            if (ns->subs[i].member == from && !strcmp(ns->subs[i].pattern, pat)) {
                ms_send_ok(c, ns, from, cid);
                return;
            }
        if (ns->n_subs >= MAX_SUBS_PER_NS) {
            ms_member_error(c, ns, from, cid, ERR(RATE_LIMITED), "too many subscriptions");
            return;
        }
        if (ns->n_subs == ns->cap_subs) {
            size_t ncap = ns->cap_subs ? ns->cap_subs * 2 : 16;
            ms_sub_t *nv = realloc(ns->subs, ncap * sizeof(*nv));
            if (!nv) {
                ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
                return;
            }
            ns->subs = nv;
            ns->cap_subs = ncap;
        }
        char *copy = strdup(pat);
        if (!copy) {
            ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
            return;
        }
        ns->subs[ns->n_subs++] = (ms_sub_t){.member = from, .pattern = copy};
        ms_send_ok(c, ns, from, cid);
        return;
    }
    case MESHSIG__V1__TOPIC__OP_UNSUBSCRIBE: {
        for (size_t i = 0; i < ns->n_subs; i++) {
            if (ns->subs[i].member == from &&
                !strcmp(ns->subs[i].pattern, t->unsubscribe->pattern)) {
                free(ns->subs[i].pattern);
                ns->subs[i] = ns->subs[--ns->n_subs];
                ms_send_ok(c, ns, from, cid);
                return;
            }
        }
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "not subscribed to %s",
                        t->unsubscribe->pattern);
        return;
    }
    case MESHSIG__V1__TOPIC__OP_PUBLISH: {
        if (!pattern_valid(t->publish->topic, 0)) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                            "bad topic: dot-separated tokens, no wildcards");
            return;
        }
        Meshsig__V1__TopicPublish out = *t->publish;
        out.from = from->id;
        Meshsig__V1__Topic to = MESHSIG__V1__TOPIC__INIT;
        to.op_case = MESHSIG__V1__TOPIC__OP_PUBLISH;
        to.publish = &out;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_TOPIC;
        sm.topic = &to;
        /* One delivery per subscriber even when several of its patterns match. */
        for (size_t i = 0; i < ns->n_subs; i++) {
            if (!pattern_match(ns->subs[i].pattern, t->publish->topic))
                continue;
            int dup = 0;
            for (size_t k = 0; k < i && !dup; k++)
                dup = ns->subs[k].member == ns->subs[i].member &&
                      pattern_match(ns->subs[k].pattern, t->publish->topic);
            if (!dup)
                ms_deliver(c, ns, ns->subs[i].member, &sm);
        }
        c->n_publishes++;
        if (*cid)
            ms_send_ok(c, ns, from, cid);
        return;
    }
    default:
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                        "topic takes subscribe, unsubscribe or publish");
        return;
    }
}

/* ---- streams ------------------------------------------------------------- */

static void stream_free(ms_ns_t *ns, ms_stream_t *s)
{
    HASH_DEL(ns->streams, s);
    free(s->key);
    free(s->opener);
    free(s->receiver);
    free(s);
}

/* The stream sid names for member m, and whether m opened it. */
static ms_stream_t *stream_resolve(ms_ns_t *ns, const ms_member_t *m, const char *sid,
                                   int *is_opener)
{
    char key[512];
    snprintf(key, sizeof(key), "%s/%s", m->id, sid);
    ms_stream_t *s;
    HASH_FIND_STR(ns->streams, key, s);
    if (s && !strcmp(s->opener, m->id)) {
        *is_opener = 1;
        return s;
    }
    HASH_FIND_STR(ns->streams, sid, s);
    if (s && !strcmp(s->receiver, m->id)) {
        *is_opener = 0;
        return s;
    }
    return NULL;
}

/* Sends st to the other end of s (the one that is not `opener_side` ? ...). */
static void stream_send(ms_coord_t *c, ms_ns_t *ns, ms_stream_t *s, int to_opener,
                        Meshsig__V1__Stream *st)
{
    ms_member_t *to = ms_ns_member(ns, to_opener ? s->opener : s->receiver);
    if (!to)
        return;
    /* The opener knows its own id; the receiver knows "<opener>/<id>". */
    st->stream_id = to_opener ? s->key + strlen(s->opener) + 1 : s->key;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_STREAM;
    sm.stream = st;
    ms_deliver(c, ns, to, &sm);
}

static void handle_stream(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                          Meshsig__V1__Stream *st)
{
    if (!name_ok(st->stream_id)) {
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "streamId is 1 to 128 bytes");
        return;
    }
    if (st->op_case == MESHSIG__V1__STREAM__OP_OPEN) {
        ms_member_t *to = ms_ns_member(ns, st->open->to);
        if (!to || to == from) {
            ms_member_error(c, ns, from, cid, ERR(PEER_NOT_FOUND), "%s is not in namespace %s",
                            st->open->to, ns->name);
            return;
        }
        char key[512];
        snprintf(key, sizeof(key), "%s/%s", from->id, st->stream_id);
        ms_stream_t *s;
        HASH_FIND_STR(ns->streams, key, s);
        if (s) {
            ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST), "stream %s is already open",
                            st->stream_id);
            return;
        }
        s = calloc(1, sizeof(*s));
        if (!s || !(s->key = strdup(key)) || !(s->opener = strdup(from->id)) ||
            !(s->receiver = strdup(to->id))) {
            if (s) {
                free(s->key);
                free(s->opener);
            }
            free(s);
            ms_member_error(c, ns, from, cid, ERR(INTERNAL), "out of memory");
            return;
        }
        HASH_ADD_KEYPTR(hh, ns->streams, s->key, strlen(s->key), s);
        Meshsig__V1__StreamOpen op = *st->open;
        op.from = from->id;
        op.to = to->id;
        Meshsig__V1__Stream out = MESHSIG__V1__STREAM__INIT;
        out.op_case = MESHSIG__V1__STREAM__OP_OPEN;
        out.open = &op;
        stream_send(c, ns, s, 0, &out);
        ms_send_ok(c, ns, from, cid);
        return;
    }
    int is_opener = 0;
    ms_stream_t *s = stream_resolve(ns, from, st->stream_id, &is_opener);
    if (!s) {
        ms_member_error(c, ns, from, cid, ERR(STREAM_NOT_FOUND), "no open stream %s",
                        st->stream_id);
        return;
    }
    Meshsig__V1__Stream out = *st;
    switch (st->op_case) {
    case MESHSIG__V1__STREAM__OP_DATA: {
        uint64_t *credit = is_opener ? &s->credit_to_receiver : &s->credit_to_opener;
        size_t len = st->data->data.len;
        if (len > *credit) {
            /* The sender ignored flow control: nothing is buffered on its behalf. */
            ms_member_error(c, ns, from, cid, ERR(NO_CREDIT),
                            "%zu bytes sent with %llu bytes of credit on stream %s", len,
                            (unsigned long long)*credit, st->stream_id);
            return;
        }
        *credit -= len;
        c->n_stream_bytes += len;
        stream_send(c, ns, s, !is_opener, &out);
        return;
    }
    case MESHSIG__V1__STREAM__OP_CREDIT: {
        /* from grants the other side more bytes towards itself. */
        uint64_t *credit = is_opener ? &s->credit_to_opener : &s->credit_to_receiver;
        *credit += st->credit->bytes;
        if (*credit > (1ull << 40))
            *credit = 1ull << 40;
        stream_send(c, ns, s, !is_opener, &out);
        return;
    }
    case MESHSIG__V1__STREAM__OP_CLOSE:
        stream_send(c, ns, s, !is_opener, &out);
        stream_free(ns, s);
        if (*cid)
            ms_send_ok(c, ns, from, cid);
        return;
    default:
        ms_member_error(c, ns, from, cid, ERR(BAD_REQUEST),
                        "stream takes open, data, credit or close");
        return;
    }
}

/* ---- entry points ---------------------------------------------------------- */

void ms_msg_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                   Meshsig__V1__ClientMessage *cm)
{
    switch (cm->msg_case) {
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_EMIT:
        handle_emit(c, ns, from, cid, cm->emit);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_ACK:
        handle_ack(c, ns, from, cid, cm->ack);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_ROOM:
        handle_room(c, ns, from, cid, cm->room);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_SERVICE:
        handle_service(c, ns, from, cid, cm->service);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_TOPIC:
        handle_topic(c, ns, from, cid, cm->topic);
        return;
    case MESHSIG__V1__CLIENT_MESSAGE__MSG_STREAM:
        handle_stream(c, ns, from, cid, cm->stream);
        return;
    default:
        ms_member_error(c, ns, from, cid, ERR(UNKNOWN_MESSAGE), "unsupported request");
        return;
    }
}

void ms_msg_member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    ms_room_t *r, *rtmp;
    HASH_ITER(hh, ns->rooms, r, rtmp)
    room_remove(c, ns, r, m);
    ms_service_t *s, *stmp;
    HASH_ITER(hh, ns->services, s, stmp)
    service_remove(ns, s, m);
    for (size_t i = 0; i < ns->n_subs;) {
        if (ns->subs[i].member == m) {
            free(ns->subs[i].pattern);
            ns->subs[i] = ns->subs[--ns->n_subs];
        } else {
            i++;
        }
    }
    ms_pending_t *p, *ptmp;
    HASH_ITER(hh, ns->pending, p, ptmp)
    {
        int waits_on_m = !strcmp(p->to, m->id), m_waits = !strcmp(p->from, m->id);
        if (!waits_on_m && !m_waits)
            continue;
        HASH_DEL(ns->pending, p);
        if (waits_on_m && !m_waits) {
            if (p->kind == MS_PENDING_ACK)
                pending_fail(c, ns, p, ERR(PEER_LEFT), "the peer left before it acked");
            else
                pending_fail(c, ns, p, ERR(SERVICE_UNAVAILABLE),
                             "the provider left before it replied");
        }
        pending_free(p);
    }
    ms_stream_t *st, *sttmp;
    HASH_ITER(hh, ns->streams, st, sttmp)
    {
        int opener = !strcmp(st->opener, m->id), receiver = !strcmp(st->receiver, m->id);
        if (!opener && !receiver)
            continue;
        Meshsig__V1__Error e = MESHSIG__V1__ERROR__INIT;
        e.code = ERR(PEER_LEFT);
        e.message = "the other end left";
        Meshsig__V1__StreamClose cl = MESHSIG__V1__STREAM_CLOSE__INIT;
        cl.abort = 1;
        cl.error = &e;
        Meshsig__V1__Stream out = MESHSIG__V1__STREAM__INIT;
        out.op_case = MESHSIG__V1__STREAM__OP_CLOSE;
        out.close = &cl;
        stream_send(c, ns, st, receiver, &out);
        stream_free(ns, st);
    }
}

void ms_msg_ns_cleanup(ms_ns_t *ns)
{
    ms_room_t *r, *rtmp;
    HASH_ITER(hh, ns->rooms, r, rtmp)
    room_free(ns, r);
    ms_service_t *s, *stmp;
    HASH_ITER(hh, ns->services, s, stmp)
    {
        HASH_DEL(ns->services, s);
        free(s->name);
        free(s->providers);
        free(s);
    }
    for (size_t i = 0; i < ns->n_subs; i++)
        free(ns->subs[i].pattern);
    free(ns->subs);
    ns->subs = NULL;
    ns->n_subs = ns->cap_subs = 0;
    ms_pending_t *p, *ptmp;
    HASH_ITER(hh, ns->pending, p, ptmp)
    {
        HASH_DEL(ns->pending, p);
        pending_free(p);
    }
    ms_stream_t *st, *sttmp;
    HASH_ITER(hh, ns->streams, st, sttmp)
    stream_free(ns, st);
}

/* Takeover rebuild: puts m back into the rooms, services and topics its
 * gateway reported, without notices (nothing changed for anyone). */
ms_err_t ms_msg_restore(ms_ns_t *ns, ms_member_t *m, char **rooms, size_t n_rooms, char **services,
                        size_t n_services, char **subs, size_t n_subs)
{
    for (size_t i = 0; i < n_rooms; i++) {
        if (!name_ok(rooms[i]))
            continue;
        ms_room_t *r = room_find(ns, rooms[i]);
        if (!r) {
            if (!(r = calloc(1, sizeof(*r))) || !(r->name = strdup(rooms[i]))) {
                free(r);
                return MS_ERR_NOMEM;
            }
            HASH_ADD_KEYPTR(hh, ns->rooms, r->name, strlen(r->name), r);
        }
        if (room_has(r, m))
            continue;
        if (r->n == r->cap) {
            size_t ncap = r->cap ? r->cap * 2 : 8;
            ms_member_t **nv = realloc(r->members, ncap * sizeof(*nv));
            if (!nv)
                return MS_ERR_NOMEM;
            r->members = nv;
            r->cap = ncap;
        }
        r->members[r->n++] = m;
    }
    for (size_t i = 0; i < n_services; i++) {
        if (!name_ok(services[i]))
            continue;
        ms_service_t *s = service_find(ns, services[i]);
        if (!s) {
            if (!(s = calloc(1, sizeof(*s))) || !(s->name = strdup(services[i]))) {
                free(s);
                return MS_ERR_NOMEM;
            }
            HASH_ADD_KEYPTR(hh, ns->services, s->name, strlen(s->name), s);
        }
        int has = 0;
        for (size_t k = 0; k < s->n; k++)
            has |= s->providers[k] == m;
        if (has)
            continue;
        if (s->n == s->cap) {
            size_t ncap = s->cap ? s->cap * 2 : 4;
            ms_member_t **nv = realloc(s->providers, ncap * sizeof(*nv));
            if (!nv)
                return MS_ERR_NOMEM;
            s->providers = nv;
            s->cap = ncap;
        }
        s->providers[s->n++] = m;
    }
    for (size_t i = 0; i < n_subs; i++) {
        if (!pattern_valid(subs[i], 1) || ns->n_subs >= MAX_SUBS_PER_NS)
            continue;
        if (ns->n_subs == ns->cap_subs) {
            size_t ncap = ns->cap_subs ? ns->cap_subs * 2 : 16;
            ms_sub_t *nv = realloc(ns->subs, ncap * sizeof(*nv));
            if (!nv)
                return MS_ERR_NOMEM;
            ns->subs = nv;
            ns->cap_subs = ncap;
        }
        char *copy = strdup(subs[i]);
        if (!copy)
            return MS_ERR_NOMEM;
        ns->subs[ns->n_subs++] = (ms_sub_t){.member = m, .pattern = copy};
    }
    return MS_OK;
}

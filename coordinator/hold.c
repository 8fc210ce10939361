/* SPDX-License-Identifier: Apache-2.0 */
/* Signals held for a peer that has not joined yet, delivered on its join or expired. */
#include <stdlib.h>
#include <string.h>

#include "hold.h"
#include "internal.h"
#include "clock.h"
#include "servermsg.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code
/* A bound on what one coordinator holds, so that clients signalling ids that
 * never come cannot grow its memory without limit (an expiry scans the list). */
#define HOLD_MAX 4096

typedef struct ms_held {
    struct ms_held *next;
    char *ns, *to, *from, *gateway, *cid;
    uint64_t session;
    uint64_t deadline_ms; /* monotonic */
    uint32_t shard;
    size_t payload_len;
    uint8_t has_payload;
    uint8_t payload[]; /* packed meshsig.v1.Value */
} held_t;

static void held_free(held_t *e)
{
    if (!e)
        return;
    free(e->ns);
    free(e->to);
    free(e->from);
    free(e->gateway);
    free(e->cid);
    free(e);
}

void ms_hold_init(ms_hold_t *h)
{
    memset(h, 0, sizeof(*h));
}

void ms_hold_cleanup(ms_hold_t *h)
{
    while (h->head) {
        held_t *e = h->head;
        h->head = e->next;
        held_free(e);
    }
    memset(h, 0, sizeof(*h));
}

/* One list in deadline order: namespaces may hold for different times, but
 * nearly always for the same, so an insert is at the tail. */
static void insert(ms_hold_t *h, held_t *e)
{
    if (!h->tail || h->tail->deadline_ms <= e->deadline_ms) {
        if (h->tail)
            h->tail->next = e;
        else
            h->head = e;
        h->tail = e;
    } else if (h->head->deadline_ms > e->deadline_ms) {
        e->next = h->head;
        h->head = e;
    } else {
        held_t *p = h->head;
        while (p->next && p->next->deadline_ms <= e->deadline_ms)
            p = p->next;
        e->next = p->next;
        p->next = e;
    }
    h->n++;
}

void ms_hold_signal(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *from, const char *cid,
                    const Meshsig__V1__Signal *sig)
{
    ms_hold_t *h = &c->hold;
    size_t plen = sig->payload ? meshsig__v1__value__get_packed_size(sig->payload) : 0;
    held_t *e = NULL;
    if (h->n >= HOLD_MAX)
        goto refuse;
    if (!(e = calloc(1, sizeof(*e) + plen)))
        goto refuse;
    if (!(e->ns = strdup(ns->name)) || !(e->to = strdup(sig->to)) ||
        !(e->from = strdup(from->id)) || !(e->gateway = strdup(from->gateway)) ||
        !(e->cid = strdup(cid ? cid : "")))
        goto refuse;
    e->session = from->session;
    e->shard = ns->shard;
    e->deadline_ms = ms_clock_mono_ms() + ns->policy->hold_ms;
    if (sig->payload) {
        e->has_payload = 1;
        e->payload_len = meshsig__v1__value__pack(sig->payload, e->payload);
    }
    insert(h, e);
    return;
refuse:
    held_free(e);
    ms_outbox_error(&c->outbox, ns->shard, from->gateway, from->session, cid, ERR(PEER_NOT_FOUND),
                    "%s is not in namespace %s (and too many signals are held)", sig->to, ns->name);
}

static void release(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    ms_hold_t *h = &c->hold;
    held_t **pp = &h->head, *prev = NULL;
    while (*pp) {
        held_t *e = *pp;
        if (strcmp(e->to, m->id) || strcmp(e->ns, ns->name)) {
            prev = e;
            pp = &e->next;
            continue;
        }
        *pp = e->next;
        if (h->tail == e)
            h->tail = prev;
        h->n--;
        Meshsig__V1__Value *payload =
            e->has_payload ? meshsig__v1__value__unpack(NULL, e->payload_len, e->payload) : NULL;
        Meshsig__V1__Signal out = MESHSIG__V1__SIGNAL__INIT;
        out.from = e->from;
        out.payload = payload;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SIGNAL;
        sm.signal = &out;
        c->route.n_signals++;
        ms_outbox_deliver(&c->outbox, ns->shard, m->gateway, m->session, m->id, &sm, 0);
        if (*e->cid) {
            /* The held signal's reply: it was delivered after all. */
            ms_sm_ok_t ok;
            ms_outbox_deliver(&c->outbox, e->shard, e->gateway, e->session, NULL,
                              ms_sm_ok(&ok, e->cid), 0);
        }
        if (payload)
            meshsig__v1__value__free_unpacked(payload, NULL);
        held_free(e);
    }
}

void ms_hold_tick(ms_coord_t *c, uint64_t mono_ms)
{
    ms_hold_t *h = &c->hold;
    while (h->head && h->head->deadline_ms <= mono_ms) {
        held_t *e = h->head;
        h->head = e->next;
        if (!h->head)
            h->tail = NULL;
        h->n--;
        /* Only a sender still in place hears of it: a namespace this
         * coordinator no longer serves, or a sender gone, is not ours to answer. */
        /* PeerJS expires a peer's whole queue at once and tells each sender
         * once: the sender's other signals to the same peer go with this one.
         * One that carries a request id of its own still gets its own reply (the
         * error); PeerJS sessions name every signal by its target, so theirs is one. */
        ms_ns_t *ns = ms_ns_find(c, e->ns);
        ms_member_t *from = ns ? ms_ns_member(ns, e->from) : NULL;
        int sender_here = from && from->session == e->session && !strcmp(from->gateway, e->gateway);
        if (sender_here)
            ms_outbox_error(&c->outbox, e->shard, e->gateway, e->session, e->cid,
                            ERR(PEER_NOT_FOUND), "%s did not join %s within %u ms", e->to, e->ns,
                            ns->policy->hold_ms);
        held_t **pp = &h->head, *prev = NULL;
        while (*pp) {
            held_t *o = *pp;
            if (o->session != e->session || strcmp(o->to, e->to) || strcmp(o->from, e->from) ||
                strcmp(o->ns, e->ns) || strcmp(o->gateway, e->gateway)) {
                prev = o;
                pp = &o->next;
                continue;
            }
            *pp = o->next;
            if (h->tail == o)
                h->tail = prev;
            h->n--;
            if (sender_here && *o->cid && strcmp(o->cid, e->cid))
                ms_outbox_error(&c->outbox, o->shard, o->gateway, o->session, o->cid,
                                ERR(PEER_NOT_FOUND), "%s did not join %s within %u ms", o->to,
                                o->ns, ns->policy->hold_ms);
            held_free(o);
        }
        held_free(e);
    }
}

const ms_ns_hooks_t ms_hold_hooks = {.name = "held signals", .member_joined = release};

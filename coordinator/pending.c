/* SPDX-License-Identifier: Apache-2.0 */
/* Requests that wait for an answer (acks and service replies), their deadlines and failures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "internal.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code
#define DEFAULT_TIMEOUT_MS 10000u

/* A namespace's waits (ms_ns_mods(ns)->pending), allocated with the first one. Each is in
 * by_key and in two lists, its waiting peer's and its answering peer's (ms_pending_party_t):
 * a leave, resume or move of one peer touches its own waits, not the namespace's. */
struct ms_pendings {
    ms_pending_clock_t *clock;   /* the coordinator's deadlines */
    ms_pending_t *by_key;        /* uthash */
    ms_pending_party_t *parties; /* uthash by id, while it has a wait on either side */
    uint64_t next_call;          /* server-made call ids: "call-<n>" */
};

static ms_pending_party_t *party_find(struct ms_pendings *ps, const char *id)
{
    ms_pending_party_t *pp = NULL;
    HASH_FIND_STR(ps->parties, id, pp);
    return pp;
}

static ms_pending_party_t *party_get(ms_ns_t *ns, struct ms_pendings *ps, const char *id)
{
    ms_pending_party_t *pp = party_find(ps, id);
    if (pp)
        return pp;
    size_t len = strlen(id);
    if (!(pp = calloc(1, sizeof(*pp) + len + 1)))
        return NULL;
    memcpy(pp->id, id, len + 1);
    pp->ns = ns;
    HASH_ADD_KEYPTR(hh, ps->parties, pp->id, len, pp);
    return pp;
}

/* Frees pp when it has no wait left on either side (unless it is keep). */
static void party_put(struct ms_pendings *ps, ms_pending_party_t *pp,
                      const ms_pending_party_t *keep)
{
    if (pp != keep && !pp->head[MS_PENDING_FROM] && !pp->head[MS_PENDING_TO]) {
        HASH_DEL(ps->parties, pp);
        free(pp);
    }
}

/* Appends p to pp's list on side s (utlist's DL_APPEND: head->prev is the tail). */
static void link_append(ms_pending_party_t *pp, int s, ms_pending_t *p)
{
    ms_pending_t *head = pp->head[s];
    p->link[s].next = NULL;
    if (!head) {
        p->link[s].prev = p;
        pp->head[s] = p;
        return;
    }
    p->link[s].prev = head->link[s].prev;
    head->link[s].prev->link[s].next = p;
    head->link[s].prev = p;
}

static void link_remove(ms_pending_party_t *pp, int s, ms_pending_t *p)
{
    ms_pending_t *head = pp->head[s];
    if (p == head)
        pp->head[s] = p->link[s].next;
    else
        p->link[s].prev->link[s].next = p->link[s].next;
    if (p->link[s].next)
        p->link[s].next->link[s].prev = p->link[s].prev;
    else if (pp->head[s])
        pp->head[s]->link[s].prev = p->link[s].prev; /* p was the tail */
}

/* ---- deadlines: a binary min-heap of the coordinator's waits ---- */

static int due_less(const ms_pending_due_t *a, const ms_pending_due_t *b)
{
    return a->key < b->key;
}

static void due_set(ms_pending_clock_t *k, uint32_t i, ms_pending_due_t d)
{
    k->due[i] = d;
    d.p->due = i;
}

static void due_up(ms_pending_clock_t *k, uint32_t i)
{
    ms_pending_due_t d = k->due[i];
    while (i > 0 && due_less(&d, &k->due[(i - 1) / 2])) {
        due_set(k, i, k->due[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    due_set(k, i, d);
}

static void due_down(ms_pending_clock_t *k, uint32_t i)
{
    ms_pending_due_t d = k->due[i];
    for (;;) {
        uint32_t l = 2 * i + 1, m = l;
        if (l >= k->n_due)
            break;
        if (l + 1 < k->n_due && due_less(&k->due[l + 1], &k->due[l]))
            m = l + 1;
        if (!due_less(&k->due[m], &d))
            break;
        due_set(k, i, k->due[m]);
        i = m;
    }
    due_set(k, i, d);
}

static int due_add(ms_pending_clock_t *k, ms_pending_t *p, uint64_t due_ms)
{
    if (k->n_due == k->cap_due) {
        uint32_t ncap = k->cap_due ? k->cap_due * 2 : 64;
        ms_pending_due_t *nv = realloc(k->due, ncap * sizeof(*nv));
        if (!nv)
            return 0;
        k->due = nv;
        k->cap_due = ncap;
    }
    uint64_t seq = k->seq++ & ((1u << MS_PENDING_SEQ_BITS) - 1);
    k->due[k->n_due] = (ms_pending_due_t){.key = due_ms << MS_PENDING_SEQ_BITS | seq, .p = p};
    p->due = k->n_due++;
    due_up(k, p->due);
    return 1;
}

/* A quarter full, the heap's array halves (not below DUE_MIN): a spike's memory comes back. */
#define DUE_MIN 1024u

static void due_remove(ms_pending_clock_t *k, ms_pending_t *p)
{
    uint32_t i = p->due;
    if (i != --k->n_due) {
        due_set(k, i, k->due[k->n_due]);
        if (i > 0 && due_less(&k->due[i], &k->due[(i - 1) / 2]))
            due_up(k, i);
        else
            due_down(k, i);
    }
    if (k->cap_due > DUE_MIN && k->n_due < k->cap_due / 4) {
        ms_pending_due_t *nv = realloc(k->due, k->cap_due / 2 * sizeof(*nv));
        if (nv) { /* else it stays as it is */
            k->due = nv;
            k->cap_due /= 2;
        }
    }
}

int ms_pending_timeout(uint32_t t, uint32_t *out)
{
    if (t > MS_PENDING_MAX_TIMEOUT_MS)
        return 0;
    *out = t ? t : DEFAULT_TIMEOUT_MS;
    return 1;
}

static void pending_free(ms_pending_t *p)
{
    free(p->key);
    free(p->orig_id);
    free(p);
}

static struct ms_pendings *pendings(ms_coord_t *c, ms_ns_t *ns)
{
    ms_ns_mods_t *mods = ms_ns_mods_get(ns);
    if (mods && !mods->pending && (mods->pending = calloc(1, sizeof(*mods->pending))))
        mods->pending->clock = &c->pending;
    return mods ? mods->pending : NULL;
}

static ms_pending_t *add(ms_coord_t *c, ms_ns_t *ns, uint8_t kind, const char *key,
                         const char *from, const char *to, const char *orig, uint32_t timeout_ms)
{
    struct ms_pendings *ps = pendings(c, ns);
    if (!ps || HASH_COUNT(ps->by_key) >= MS_PENDING_MAX_PER_NS)
        return NULL;
    ms_pending_party_t *pf = party_get(ns, ps, from);
    if (!pf)
        return NULL;
    if (pf->n_from >= MS_PENDING_MAX_PER_PEER) {
        party_put(ps, pf, NULL);
        return NULL;
    }
    ms_pending_party_t *pt = party_get(ns, ps, to);
    ms_pending_t *p = pt ? calloc(1, sizeof(*p)) : NULL;
    if (p) {
        p->key = strdup(key);
        p->orig_id = strdup(orig);
    }
    if (!p || !p->key || !p->orig_id) {
        if (p)
            pending_free(p);
        if (pt)
            party_put(ps, pt, NULL);
        party_put(ps, pf, NULL);
        return NULL;
    }
    p->kind = kind;
    p->from = pf;
    p->to = pt;
    if (!due_add(&c->pending, p, ms_clock_mono_ms() + timeout_ms)) {
        pending_free(p);
        party_put(ps, pt, NULL);
        party_put(ps, pf, NULL);
        return NULL;
    }
    pf->n_from++;
    link_append(pf, MS_PENDING_FROM, p);
    link_append(pt, MS_PENDING_TO, p);
    HASH_ADD_KEYPTR(hh, ps->by_key, p->key, strlen(p->key), p);
    return p;
}

ms_pending_t *ms_pending_add_ack(ms_coord_t *c, ms_ns_t *ns, const char *key, const char *from,
                                 const char *to, const char *ack_id, uint32_t timeout_ms)
{
    return add(c, ns, MS_PENDING_ACK, key, from, to, ack_id, timeout_ms);
}

ms_pending_t *ms_pending_add_call(ms_coord_t *c, ms_ns_t *ns, const char *from, const char *to,
                                  const char *call_id, uint32_t timeout_ms)
{
    struct ms_pendings *ps = pendings(c, ns);
    if (!ps)
        return NULL;
    char key[64];
    snprintf(key, sizeof(key), "call-%llu", (unsigned long long)++ps->next_call);
    return add(c, ns, MS_PENDING_CALL, key, from, to, call_id, timeout_ms);
}

ms_pending_t *ms_pending_find(ms_ns_t *ns, const char *key)
{
    ms_pending_t *p = NULL;
    if (ms_ns_mods(ns)->pending)
        HASH_FIND_STR(ms_ns_mods(ns)->pending->by_key, key, p);
    return p;
}

const ms_pending_party_t *ms_pending_party(ms_ns_t *ns, const char *id)
{
    return ms_ns_mods(ns)->pending ? party_find(ms_ns_mods(ns)->pending, id) : NULL;
}

size_t ms_pending_count(ms_ns_t *ns)
{
    return ms_ns_mods(ns)->pending ? HASH_COUNT(ms_ns_mods(ns)->pending->by_key) : 0;
}

/* Takes p out of ns's waits and its parties' lists (a party left without waits is freed,
 * unless it is keep); the caller frees p. */
static void pending_remove(ms_ns_t *ns, ms_pending_t *p, const ms_pending_party_t *keep)
{
    struct ms_pendings *ps = ms_ns_mods(ns)->pending;
    HASH_DEL(ps->by_key, p);
    due_remove(ps->clock, p);
    p->from->n_from--;
    link_remove(p->from, MS_PENDING_FROM, p);
    link_remove(p->to, MS_PENDING_TO, p);
    party_put(ps, p->from, keep);
    if (p->to != p->from)
        party_put(ps, p->to, keep);
}

void ms_pending_done(ms_ns_t *ns, ms_pending_t *p)
{
    pending_remove(ns, p, NULL);
    pending_free(p);
}

void ms_pending_outcome_error(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *w, int kind,
                              const char *orig_id, const char *peer, Meshsig__V1__ErrorCode code,
                              const char *text)
{
    Meshsig__V1__Error e = MESHSIG__V1__ERROR__INIT;
    e.code = code;
    e.message = (char *)text;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    Meshsig__V1__Ack a = MESHSIG__V1__ACK__INIT;
    Meshsig__V1__ServiceReply r = MESHSIG__V1__SERVICE_REPLY__INIT;
    Meshsig__V1__Service sv = MESHSIG__V1__SERVICE__INIT;
    if (kind == MS_PENDING_ACK) {
        a.ack_id = (char *)orig_id;
        a.from = (char *)(peer ? peer : "");
        a.error = &e;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_ACK;
        sm.ack = &a;
    } else {
        r.call_id = (char *)orig_id;
        r.error = &e;
        sv.op_case = MESHSIG__V1__SERVICE__OP_REPLY;
        sv.reply = &r;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_SERVICE;
        sm.service = &sv;
    }
    ms_deliver(c, ns, w, &sm);
}

/* Tells the waiting side of p that it failed with code (before pending_remove, which may
 * free its parties). */
static void pending_fail(ms_coord_t *c, ms_ns_t *ns, ms_pending_t *p, Meshsig__V1__ErrorCode code,
                         const char *text)
{
    ms_member_t *w = ms_ns_party(ns, p->from->id);
    if (w)
        ms_pending_outcome_error(c, ns, w, p->kind, p->orig_id, p->to->id, code, text);
}

void ms_pending_tick(ms_coord_t *c, uint64_t now)
{
    ms_pending_clock_t *k = &c->pending;
    while (k->n_due && k->due[0].key >> MS_PENDING_SEQ_BITS <= now) {
        ms_pending_t *p = k->due[0].p;
        ms_ns_t *ns = p->from->ns;
        k->n_timeouts++;
        if (p->kind == MS_PENDING_ACK)
            pending_fail(c, ns, p, ERR(ACK_TIMEOUT), "no ack in time");
        else
            pending_fail(c, ns, p, ERR(TIMEOUT), "no reply in time");
        pending_remove(ns, p, NULL);
        pending_free(p);
    }
}

/* m's waits only (its party's two lists). Those that wait on m fail, in the order they were
 * made, unless m waits on itself; those m waits for go without a word. */
static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    struct ms_pendings *ps = ms_ns_mods(ns)->pending;
    ms_pending_party_t *pp = ps ? party_find(ps, m->id) : NULL;
    if (!pp)
        return;
    ms_pending_t *p;
    while ((p = pp->head[MS_PENDING_TO])) {
        if (p->from != pp) {
            c->pending.n_left++;
            if (p->kind == MS_PENDING_ACK)
                pending_fail(c, ns, p, ERR(PEER_LEFT), "the peer left before it acked");
            else
                pending_fail(c, ns, p, ERR(SERVICE_UNAVAILABLE),
                             "the provider left before it replied");
        }
        pending_remove(ns, p, pp); /* after: it may free p->from */
        pending_free(p);
    }
    while ((p = pp->head[MS_PENDING_FROM])) {
        pending_remove(ns, p, pp);
        pending_free(p);
    }
    party_put(ps, pp, NULL);
}

static void cleanup(ms_ns_t *ns)
{
    struct ms_pendings *ps = ms_ns_mods(ns)->pending;
    if (!ps)
        return;
    ms_pending_t *p, *ptmp;
    HASH_ITER(hh, ps->by_key, p, ptmp)
    {
        pending_remove(ns, p, NULL);
        pending_free(p);
    }
    if (!ps->clock->n_due) { /* the coordinator has none left (its last namespace goes) */
        free(ps->clock->due);
        ps->clock->due = NULL;
        ps->clock->cap_due = 0;
    }
    free(ps); /* every party went with its last wait */
    ns->mods->pending = NULL;
}

const ms_ns_hooks_t ms_pending_hooks = {
    .name = "pending", .cleanup = cleanup, .member_gone = member_gone};

/* SPDX-License-Identifier: Apache-2.0 */
/* Requests that wait for an answer (acks and service replies), their deadlines and failures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "internal.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code
#define DEFAULT_TIMEOUT_MS 10000u

/* How many waits one peer has (MS_PENDING_MAX_PER_PEER): without a bound per peer, one
 * session at its message rate could hold ~24,000 acks for 120 s each (about 0.5 kB apiece
 * here), up to the namespace's 100,000. */
typedef struct waiter {
    char *id; /* the waiting peer */
    unsigned n;
    UT_hash_handle hh;
} waiter_t;

/* A namespace's waits (ms_ns_mods(ns)->pending), allocated with the first one. */
struct ms_pendings {
    ms_pending_t *by_key; /* uthash */
    waiter_t *waiters;    /* uthash by id, while it waits for something */
    uint64_t next_call;   /* server-made call ids: "call-<n>" */
};

/* One more wait for peer id; 0 when it has its maximum (or out of memory). */
static int waiter_take(struct ms_pendings *ps, const char *id)
{
    waiter_t *w = NULL;
    HASH_FIND_STR(ps->waiters, id, w);
    if (!w) {
        if (!(w = calloc(1, sizeof(*w))) || !(w->id = strdup(id))) {
            free(w);
            return 0;
        }
        HASH_ADD_KEYPTR(hh, ps->waiters, w->id, strlen(w->id), w);
    }
    if (w->n >= MS_PENDING_MAX_PER_PEER)
        return 0;
    w->n++;
    return 1;
}

static void waiter_put(struct ms_pendings *ps, const char *id)
{
    waiter_t *w = NULL;
    HASH_FIND_STR(ps->waiters, id, w);
    if (w && --w->n == 0) {
        HASH_DEL(ps->waiters, w);
        free(w->id);
        free(w);
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
    free(p->from);
    free(p->to);
    free(p->orig_id);
    free(p);
}

static struct ms_pendings *pendings(ms_ns_t *ns)
{
    ms_ns_mods_t *mods = ms_ns_mods_get(ns);
    if (mods && !mods->pending)
        mods->pending = calloc(1, sizeof(*mods->pending));
    return mods ? mods->pending : NULL;
}

static ms_pending_t *add(ms_coord_t *c, ms_ns_t *ns, uint8_t kind, const char *key,
                         const char *from, const char *to, const char *orig, uint32_t timeout_ms)
{
    struct ms_pendings *ps = pendings(ns);
    if (!ps || HASH_COUNT(ps->by_key) >= MS_PENDING_MAX_PER_NS || !waiter_take(ps, from))
        return NULL;
    ms_pending_t *p = calloc(1, sizeof(*p));
    if (!p) {
        waiter_put(ps, from);
        return NULL;
    }
    p->kind = kind;
    p->key = strdup(key);
    p->from = strdup(from);
    p->to = strdup(to);
    p->orig_id = strdup(orig);
    p->deadline_ms = ms_clock_mono_ms() + timeout_ms;
    if (!p->key || !p->from || !p->to || !p->orig_id) {
        waiter_put(ps, from);
        pending_free(p);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, ps->by_key, p->key, strlen(p->key), p);
    if (!c->pending.next_deadline_ms || p->deadline_ms < c->pending.next_deadline_ms)
        c->pending.next_deadline_ms = p->deadline_ms;
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
    struct ms_pendings *ps = pendings(ns);
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

/* Takes p out of ns's waits (its waiter counted down); the caller frees it. */
static void pending_remove(ms_ns_t *ns, ms_pending_t *p)
{
    HASH_DEL(ms_ns_mods(ns)->pending->by_key, p);
    waiter_put(ms_ns_mods(ns)->pending, p->from);
}

void ms_pending_done(ms_ns_t *ns, ms_pending_t *p)
{
    pending_remove(ns, p);
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

/* Tells the waiting side of p that it failed with code. */
static void pending_fail(ms_coord_t *c, ms_ns_t *ns, ms_pending_t *p, Meshsig__V1__ErrorCode code,
                         const char *text)
{
    ms_member_t *w = ms_ns_party(ns, p->from);
    if (w)
        ms_pending_outcome_error(c, ns, w, p->kind, p->orig_id, p->to, code, text);
}

void ms_pending_tick(ms_coord_t *c, uint64_t now)
{
    /* Nothing is due before the earliest deadline: skip the scan. */
    if (!c->pending.next_deadline_ms || now < c->pending.next_deadline_ms)
        return;
    uint64_t next = 0;
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        if (!ms_ns_mods(ns)->pending)
            continue;
        ms_pending_t *p, *tmp;
        HASH_ITER(hh, ms_ns_mods(ns)->pending->by_key, p, tmp)
        {
            if (p->deadline_ms > now) {
                if (!next || p->deadline_ms < next)
                    next = p->deadline_ms;
                continue;
            }
            pending_remove(ns, p);
            c->pending.n_timeouts++;
            if (p->kind == MS_PENDING_ACK)
                pending_fail(c, ns, p, ERR(ACK_TIMEOUT), "no ack in time");
            else
                pending_fail(c, ns, p, ERR(TIMEOUT), "no reply in time");
            pending_free(p);
        }
    }
    c->pending.next_deadline_ms = next;
}

static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    if (!ms_ns_mods(ns)->pending)
        return;
    ms_pending_t *p, *ptmp;
    HASH_ITER(hh, ms_ns_mods(ns)->pending->by_key, p, ptmp)
    {
        int waits_on_m = !strcmp(p->to, m->id), m_waits = !strcmp(p->from, m->id);
        if (!waits_on_m && !m_waits)
            continue;
        pending_remove(ns, p);
        if (waits_on_m && !m_waits) {
            if (p->kind == MS_PENDING_ACK)
                pending_fail(c, ns, p, ERR(PEER_LEFT), "the peer left before it acked");
            else
                pending_fail(c, ns, p, ERR(SERVICE_UNAVAILABLE),
                             "the provider left before it replied");
        }
        pending_free(p);
    }
}

static void cleanup(ms_ns_t *ns)
{
    if (!ms_ns_mods(ns)->pending)
        return;
    ms_pending_t *p, *ptmp;
    HASH_ITER(hh, ms_ns_mods(ns)->pending->by_key, p, ptmp)
    {
        pending_remove(ns, p);
        pending_free(p);
    }
    waiter_t *w, *wtmp;
    HASH_ITER(hh, ms_ns_mods(ns)->pending->waiters, w, wtmp)
    {
        HASH_DEL(ms_ns_mods(ns)->pending->waiters, w);
        free(w->id);
        free(w);
    }
    free(ns->mods->pending); /* there: pending was */
    ns->mods->pending = NULL;
}

const ms_ns_hooks_t ms_pending_hooks = {
    .name = "pending", .cleanup = cleanup, .member_gone = member_gone};

/* SPDX-License-Identifier: Apache-2.0 */
/* Which gateways have told the owner what they hold of a shard it serves; the others are asked,
 * and the requests of sessions it does not know wait for the answer.
 *
 * A takeover rebuild hears only the gateways that answer within
 * --resync-timeout-ms. One that was silent then (its NATS node on the
 * minority side of a partition, a stalled link, a SIGSTOP) keeps its
 * sessions, and nothing else would ever tell the new owner about them: their
 * requests would get NOT_JOINED until the clients joined again. So per shard
 * and epoch the owner keeps which gateways have reported (their last part
 * arrived) and asks every live gateway that has not, with a ResyncRequest
 * naming it; its answer is merged (merge.c). A gateway that went silent
 * since it reported (ms_gw_info_t.deaths moved: the owner may have let its
 * peers go when their resume grace ran out) or that restarted (a new
 * started_ms) is asked again. A gateway that joined the cluster after the
 * takeover is asked once too: its report holds only sessions the owner
 * knows, and costs one message per shard.
 *
 * The ask is not waited for by the heartbeat alone: a request from a session
 * the owner does not know, sent by a gateway that has not reported, is held
 * (a copy) and an ask goes out at once; the answer's last part releases the
 * held requests behind the merge, so the first request after a silence is
 * served. When no answer comes within twice --resync-timeout-ms they are
 * handled as before (NOT_JOINED), and asks back off up to ASK_BACKOFF_MAX_MS.
 * Loop thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "intern.h"
#include "internal.h"
#include "log.h"

#define MAX_HELD 4096 /* requests held per gateway and shard */
#define ASK_BACKOFF_MIN_MS 1000
#define ASK_BACKOFF_MAX_MS 8000

typedef struct {
    const char *gw;      /* ms_intern'd gateway id */
    uint64_t started_ms; /* of the gateway process whose report was taken in */
    uint32_t deaths;     /* its ms_gw_info_t.deaths then */
    uint8_t synced;      /* its last part for this epoch arrived */
    uint64_t asked_ms;   /* when the ask out now was sent; 0: none */
    uint64_t next_ask_ms;
    uint32_t backoff_ms;
    ms_queued_t *held, *held_tail; /* requests waiting for its answer */
    size_t n_held;
} gw_state_t;

struct ms_gwsync {
    gw_state_t *v;
    size_t n, cap;
    /* The tick walks the gateways only when something may have changed: the gateway table
     * (c->gws.gen), a report or a held request here (due_ms 0), or the clock reached an ask's
     * timeout or back-off (due_ms). A walk was 64 shards x gateways of strcmp and hash lookups
     * every 50 ms tick, ~24 us (bench/RESULTS.md, "tail2"). */
    uint64_t gws_gen, due_ms;
    uint64_t n_walks;
};

void ms_gwsync_free(ms_gwsync_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n; i++) {
        for (ms_queued_t *q = s->v[i].held, *next; q; q = next) {
            next = q->next;
            free(q);
        }
        ms_intern_release(s->v[i].gw);
    }
    free(s->v);
    free(s);
}

static gw_state_t *state_of(ms_gwsync_t **sp, const char *gw)
{
    ms_gwsync_t *s = *sp;
    if (!s && !(s = *sp = calloc(1, sizeof(*s))))
        return NULL;
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i].gw, gw))
            return &s->v[i];
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 4;
        gw_state_t *nv = realloc(s->v, ncap * sizeof(*nv));
        if (!nv)
            return NULL;
        s->v = nv;
        s->cap = ncap;
    }
    gw_state_t *st = &s->v[s->n];
    memset(st, 0, sizeof(*st));
    if (!(st->gw = ms_intern(gw)))
        return NULL;
    s->n++;
    return st;
}

static ms_gw_info_t *info_of(ms_coord_t *c, const char *gw)
{
    ms_gw_info_t *g;
    HASH_FIND_STR(c->gws.by_id, gw, g);
    return g;
}

/* Its report still stands: taken in from the same process, with no silence since. */
static int synced(ms_coord_t *c, gw_state_t *st)
{
    if (!st->synced)
        return 0;
    const ms_gw_info_t *g = info_of(c, st->gw);
    if (g && (g->deaths != st->deaths || g->started_ms != st->started_ms)) {
        st->synced = 0;
        st->backoff_ms = 0;
        st->next_ask_ms = 0;
        return 0;
    }
    return 1;
}

static ms_queued_t *take_held(gw_state_t *st)
{
    ms_queued_t *q = st->held;
    st->held = st->held_tail = NULL;
    st->n_held = 0;
    return q;
}

/* Appends list b to list a; returns the head. */
static ms_queued_t *append(ms_queued_t *a, ms_queued_t *b)
{
    if (!a)
        return b;
    ms_queued_t *t = a;
    while (t->next)
        t = t->next;
    t->next = b;
    return a;
}

ms_queued_t *ms_gwsync_reported(ms_coord_t *c, ms_gwsync_t **s, const char *gateway)
{
    gw_state_t *st = state_of(s, gateway);
    if (!st)
        return NULL;
    const ms_gw_info_t *g = info_of(c, gateway);
    st->synced = 1;
    st->deaths = g ? g->deaths : 0;
    st->started_ms = g ? g->started_ms : 0;
    st->asked_ms = 0;
    st->backoff_ms = 0;
    (*s)->due_ms = 0;
    return take_held(st);
}

static void ask(ms_coord_t *c, gw_state_t *st, uint32_t shard, uint64_t epoch, uint64_t now)
{
    st->asked_ms = now ? now : 1;
    ms_resync_ask(c, shard, epoch, st->gw);
    ms_debug("shard %u: asked %s what it holds (epoch %llu)", shard, st->gw,
             (unsigned long long)epoch);
}

int ms_gwsync_hold(ms_coord_t *c, ms_gwsync_t **s, uint32_t shard, uint64_t epoch,
                   const Meshsig__Bus__ShardRequest *req, const uint8_t *data, size_t len)
{
    switch (req->op_case) {
    case MESHSIG__BUS__SHARD_REQUEST__OP_CLIENT:
    case MESHSIG__BUS__SHARD_REQUEST__OP_LEAVE:
    case MESHSIG__BUS__SHARD_REQUEST__OP_BARRIER:
    case MESHSIG__BUS__SHARD_REQUEST__OP_UNDELIVERABLE:
        break;
    default:
        return 0; /* a join or a discovery needs no session here */
    }
    if (!*req->gateway_id || !*req->peer_id)
        return 0;
    ms_ns_t *ns = ms_ns_find(c, req->namespace_);
    ms_member_t *m = ns ? ms_ns_member(ns, req->peer_id) : NULL;
    if (m && !strcmp(m->gateway, req->gateway_id) && m->session == req->session)
        return 0;
    gw_state_t *st = state_of(s, req->gateway_id);
    if (!st || synced(c, st) || st->n_held >= MAX_HELD)
        return 0;
    (*s)->due_ms = 0;
    uint64_t now = ms_clock_mono_ms();
    if (!st->asked_ms) {
        if (now < st->next_ask_ms)
            return 0; /* it did not answer lately: no wait for each request */
        ask(c, st, shard, epoch, now);
    }
    ms_queued_t *q = malloc(sizeof(*q) + len);
    if (!q)
        return 0;
    q->next = NULL;
    q->len = len;
    memcpy(q->data, data, len);
    if (st->held_tail)
        st->held_tail->next = q;
    else
        st->held = q;
    st->held_tail = q;
    st->n_held++;
    return 1;
}

ms_queued_t *ms_gwsync_tick(ms_coord_t *c, ms_gwsync_t **s, uint32_t shard, uint64_t epoch,
                            uint64_t now)
{
    if (*s && (*s)->gws_gen == c->gws.gen && now < (*s)->due_ms)
        return NULL; /* nothing to ask, nothing timed out since the last walk */
    ms_gw_info_t *g, *gtmp;
    MS_GW_FOREACH(c, g, gtmp)
    {
        if (!g->dead)
            state_of(s, g->id); /* every live gateway is asked until it reports */
    }
    if (!*s)
        return NULL;
    (*s)->n_walks++;
    uint64_t timeout = (uint64_t)c->cfg->resync_timeout_ms * 2;
    if (timeout < 500)
        timeout = 500;
    uint64_t due = UINT64_MAX;
    ms_queued_t *released = NULL;
    for (size_t i = 0; i < (*s)->n; i++) {
        gw_state_t *st = &(*s)->v[i];
        if (synced(c, st))
            continue;
        if (st->asked_ms && now - st->asked_ms >= timeout) {
            st->asked_ms = 0;
            st->backoff_ms = st->backoff_ms ? st->backoff_ms * 2 : ASK_BACKOFF_MIN_MS;
            if (st->backoff_ms > ASK_BACKOFF_MAX_MS)
                st->backoff_ms = ASK_BACKOFF_MAX_MS;
            st->next_ask_ms = now + st->backoff_ms;
            if (st->n_held)
                ms_warn("shard %u: %s did not answer within %llu ms; %zu requests go on", shard,
                        st->gw, (unsigned long long)timeout, st->n_held);
            released = append(released, take_held(st));
        }
        g = info_of(c, st->gw);
        if (!st->asked_ms && now >= st->next_ask_ms && g && !g->dead)
            ask(c, st, shard, epoch, now);
        /* When this one needs the tick again: its ask times out, or its back-off ends (a
         * gateway dead or unknown waits for the table to move). */
        uint64_t at = st->asked_ms ? st->asked_ms + timeout : st->next_ask_ms;
        if (at < due && (st->asked_ms || (g && !g->dead)))
            due = at;
    }
    (*s)->gws_gen = c->gws.gen;
    (*s)->due_ms = due;
    return released;
}

uint64_t ms_gwsync_walks(const ms_gwsync_t *s)
{
    return s ? s->n_walks : 0;
}

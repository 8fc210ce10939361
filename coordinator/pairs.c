/* SPDX-License-Identifier: Apache-2.0 */
/* Ad-hoc pairs of signals:any namespaces: the direct path for peers without a topology edge.
 *
 * In a namespace whose policy lets any peer signal any other (PeerJS keys) there are no edges,
 * so the direct path between gateways (gateway/direct.c) had nothing to go on and every signal
 * between two gateways took the owner's path. When the owner routes a signal between two
 * peers on different gateways, it now makes them a pair and tells both gateways where the
 * other end lives (Delivery.location with Delivery.pair), as it does when it announces an
 * edge; the gateways treat the pair as an edge of the session from then on (vouching, moves,
 * END and retired, barriers). The pair lasts until one of them leaves (the other's gateway
 * gets Delivery.unpair) and follows a peer that moves (resume, PeerJS reconnect) like an
 * edge. At most MS_PAIRS_MAX pairs per peer: past that, signals stay on the owner's path,
 * which is always correct. A new owner after a takeover learns the pairs from the gateways'
 * resync reports (SessionReport.pairs, ms_pairs_restore): a pair both gateways still hold
 * keeps their records from the old epoch, which keep working (both sides hold the same
 * epoch), so the signals stay direct and the owner can unpair when one end leaves. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"
#include "pairs.h"

static int pair_index(const ms_member_t *m, const char *id)
{
    for (size_t i = 0; i < m->n_pairs; i++)
        if (!strcmp(m->pairs[i], id))
            return (int)i;
    return -1;
}

int ms_pairs_linked(const ms_member_t *a, const ms_member_t *b)
{
    return a->n_pairs && pair_index(a, b->id) >= 0;
}

size_t ms_pairs_of(const ms_member_t *m, const char *const **ids)
{
    *ids = (const char *const *)m->pairs;
    return m->n_pairs;
}

static ms_err_t pair_add(ms_member_t *m, const char *id)
{
    char **v = realloc(m->pairs, (m->n_pairs + 1) * sizeof(*v));
    if (!v)
        return MS_ERR_NOMEM;
    m->pairs = v;
    if (!(v[m->n_pairs] = strdup(id)))
        return MS_ERR_NOMEM;
    m->n_pairs++;
    return MS_OK;
}

static void pair_remove(ms_member_t *m, const char *id)
{
    int i = pair_index(m, id);
    if (i < 0)
        return;
    free(m->pairs[i]);
    memmove(&m->pairs[i], &m->pairs[i + 1], (m->n_pairs - (size_t)i - 1) * sizeof(*m->pairs));
    m->n_pairs--;
}

/* Tells to's gateway where `where` lives, as the other end of to's pair. */
static void locate(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const ms_member_t *where)
{
    Meshsig__Bus__PeerLocation loc = MESHSIG__BUS__PEER_LOCATION__INIT;
    loc.peer_id = (char *)where->id;
    loc.gateway_id = (char *)where->gateway;
    loc.session = where->session;
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    d.session = to->session;
    d.peer_id = (char *)to->id;
    d.location = &loc;
    d.pair = 1;
    ms_outbox_deliver_full(&c->outbox, ns->shard, to->gateway, &d);
}

void ms_pairs_routed(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, ms_member_t *to)
{
    if (!ns->policy->signal_any || from == to || ms_member_rare(from)->deliver ||
        ms_member_rare(to)->deliver || from->detached_ms || to->detached_ms ||
        !strcmp(from->gateway, to->gateway) || from->n_pairs >= MS_PAIRS_MAX ||
        to->n_pairs >= MS_PAIRS_MAX || ms_pairs_linked(from, to) ||
        ns->engine->ops->adjacent(ns->engine, from->handle, to->handle))
        return;
    if (pair_add(from, to->id) != MS_OK) {
        pair_remove(from, to->id);
        return; /* out of memory: the owner's path, which needs nothing */
    }
    if (pair_add(to, from->id) != MS_OK) {
        pair_remove(to, from->id);
        pair_remove(from, to->id);
        return;
    }
    locate(c, ns, from, to);
    locate(c, ns, to, from);
}

void ms_pairs_moved(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *m)
{
    for (size_t i = 0; i < m->n_pairs; i++) {
        ms_member_t *o = ms_ns_member(ns, m->pairs[i]);
        if (!o || ms_member_rare(o)->deliver)
            continue;
        locate(c, ns, o, m);
        locate(c, ns, m, o);
    }
}

/* Tells m's gateway that m's pair with `id` is over (the owner does not hold it). */
static void unpair_at(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *m, const char *id,
                      const ms_member_t *o)
{
    Meshsig__Bus__PeerLocation u = MESHSIG__BUS__PEER_LOCATION__INIT;
    u.peer_id = (char *)id;
    u.gateway_id = o ? (char *)o->gateway : (char *)"";
    u.session = o ? o->session : 0;
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    d.session = m->session;
    d.peer_id = (char *)m->id;
    d.unpair = &u;
    ms_outbox_deliver_full(&c->outbox, ns->shard, m->gateway, &d);
}

static int reports_pair(const Meshsig__Bus__SessionReport *sr, const char *id)
{
    for (size_t i = 0; i < sr->n_pairs; i++)
        if (!strcmp(sr->pairs[i], id))
            return 1;
    return 0;
}

void ms_pairs_restore(ms_coord_t *c, ms_ns_t *ns, ms_member_t *const *placed,
                      const Meshsig__Bus__SessionReport *const *srs, size_t n)
{
    size_t reported = 0;
    for (size_t i = 0; i < n; i++)
        reported += srs[i]->n_pairs;
    if (!reported)
        return; /* older gateways, or no pairs: nothing to learn */
    /* The report of each member placed now, by handle (the others were placed before). */
    const Meshsig__Bus__SessionReport **by = calloc(ns->n_handles ? ns->n_handles : 1, sizeof(*by));
    if (!by) {
        ms_error("%s: out of memory restoring ad-hoc pairs; they are made again as signals come",
                 ns->name);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (placed[i]->handle < ns->n_handles)
            by[placed[i]->handle] = srs[i];
    /* Each reported pair whose ends are both here, once. */
    for (size_t i = 0; i < n; i++) {
        ms_member_t *m = placed[i];
        for (size_t k = 0; k < srs[i]->n_pairs && ns->policy->signal_any; k++) {
            ms_member_t *o = ms_ns_member(ns, srs[i]->pairs[k]);
            if (!o || o == m || ms_member_rare(o)->deliver || ms_pairs_linked(m, o) ||
                m->n_pairs >= MS_PAIRS_MAX || o->n_pairs >= MS_PAIRS_MAX)
                continue;
            if (pair_add(m, o->id) != MS_OK) {
                pair_remove(m, o->id);
                continue;
            }
            if (pair_add(o, m->id) != MS_OK) {
                pair_remove(o, m->id);
                pair_remove(m, o->id);
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        ms_member_t *m = placed[i];
        /* What m's gateway holds and the owner does not: over. */
        for (size_t k = 0; k < srs[i]->n_pairs; k++) {
            const char *id = srs[i]->pairs[k];
            ms_member_t *o = *id ? ms_ns_member(ns, id) : NULL;
            if (!o || !ms_pairs_linked(m, o))
                unpair_at(c, ns, m, id, o);
        }
        /* What only one end's gateway holds (the other end's report did not name it, or that
         * end was placed before, when m was not here, and was unpaired): both are told
         * again. Once per pair: from the end with the lower handle when both were placed now. */
        for (size_t k = 0; k < m->n_pairs; k++) {
            ms_member_t *o = ms_ns_member(ns, m->pairs[k]);
            if (!o)
                continue;
            const Meshsig__Bus__SessionReport *osr =
                o->handle < ns->n_handles ? by[o->handle] : NULL;
            if (osr && o->handle < m->handle)
                continue;
            if (osr && reports_pair(srs[i], o->id) && reports_pair(osr, m->id))
                continue; /* both records stand */
            if (o->detached_ms || m->detached_ms)
                continue; /* a resume announces it (ms_pairs_moved) */
            locate(c, ns, m, o);
            locate(c, ns, o, m);
        }
    }
    free(by);
}

size_t ms_pairs_count(ms_coord_t *c)
{
    size_t n = 0;
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        if (!ns->policy->signal_any)
            continue;
        ms_member_t *m;
        MS_NS_MEMBERS_FOREACH(ns, i, m)
        n += m->n_pairs;
    }
    return n / 2;
}

static void member_free(ms_member_t *m)
{
    for (size_t i = 0; i < m->n_pairs; i++)
        free(m->pairs[i]);
    free(m->pairs);
    m->pairs = NULL;
    m->n_pairs = 0;
}

static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    for (size_t i = 0; i < m->n_pairs; i++) {
        ms_member_t *o = ms_ns_member(ns, m->pairs[i]);
        if (!o)
            continue;
        pair_remove(o, m->id);
        if (ms_member_rare(o)->deliver || o->detached_ms)
            continue;
        Meshsig__Bus__PeerLocation u = MESHSIG__BUS__PEER_LOCATION__INIT;
        u.peer_id = m->id;
        u.gateway_id = (char *)m->gateway;
        u.session = m->session;
        Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
        d.session = o->session;
        d.peer_id = o->id;
        d.unpair = &u;
        ms_outbox_deliver_full(&c->outbox, ns->shard, o->gateway, &d);
    }
    member_free(m);
}

/* The namespace goes (its shard was dropped, or it emptied). */
static void cleanup(ms_ns_t *ns)
{
    ms_member_t *m;
    MS_NS_MEMBERS_FOREACH(ns, i, m)
    member_free(m);
}

const ms_ns_hooks_t ms_pairs_hooks = {
    .name = "ad-hoc pairs", .cleanup = cleanup, .member_gone = member_gone};

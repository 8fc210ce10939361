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
 * which is always correct. Like p2p links, the pairs are the owner's state only: a new owner
 * after a takeover starts with none and makes them again as it routes signals; the gateways'
 * records from the old epoch keep working meanwhile (both sides hold the same epoch). */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
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
    loc.peer_id = where->id;
    loc.gateway_id = (char *)where->gateway;
    loc.session = where->session;
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    d.session = to->session;
    d.peer_id = to->id;
    d.location = &loc;
    d.pair = 1;
    ms_outbox_deliver_full(&c->outbox, ns->shard, to->gateway, &d);
}

void ms_pairs_routed(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, ms_member_t *to)
{
    if (!ns->policy.signal_any || from == to || from->deliver || to->deliver || from->detached_ms ||
        to->detached_ms || !strcmp(from->gateway, to->gateway) || from->n_pairs >= MS_PAIRS_MAX ||
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
        if (!o || o->deliver)
            continue;
        locate(c, ns, o, m);
        locate(c, ns, m, o);
    }
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
        if (o->deliver || o->detached_ms)
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
    ms_member_t *m, *tmp;
    HASH_ITER(hh, ns->members, m, tmp)
    member_free(m);
}

const ms_ns_hooks_t ms_pairs_hooks = {
    .name = "ad-hoc pairs", .cleanup = cleanup, .member_gone = member_gone};

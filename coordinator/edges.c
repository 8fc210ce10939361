/* SPDX-License-Identifier: Apache-2.0 */
/* Edge health and tree control: clients' edge reports, repair around failed edges, re-parent
 * requests, and the tree source's comings and goings.
 *
 * The coordinator decides edges but cannot see whether a WebRTC connection
 * came up; clients report it (EdgeReport UP or FAILED, the SDK after its
 * connect timeout), both ends, once per attempt each. Each namespace keeps the
 * state of the edges reported, keyed by handle pair, until the topology drops
 * the edge, so the admin view and /metrics show edges up, pending and failed.
 *
 * Repair (the rules themselves are the engines', ops->fail_edge):
 *   tree, spray  at the first FAILED report the engine repairs: the child
 *                moves to another parent; the failed arcs are replaced.
 *   others       the first FAILED report of an attempt tells both ends to
 *                restart ICE once (topology.retry). A second report from the
 *                same end (its retry failed too) marks the edge failed and
 *                the engine repairs if it can: delaunay links each end to its
 *                nearest peer not yet linked; the full mesh keeps the edge.
 *   Counting reports per end, not per edge, matters: both ends of a dead
 *   connection report it, and the second of those reports is the same
 *   attempt, not a failed retry. An UP report starts the count again.
 */
#include <stdlib.h>
#include <string.h>

#include "adaptive.h"
#include "edgehealth.h"
#include "edges.h"
#include "internal.h"
#include "log.h"
#include "tree.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

enum { EDGE_PENDING = 0, EDGE_UP = 1, EDGE_FAILED = 2 };

typedef struct ms_edge_state {
    uint64_t key; /* smaller handle << 32 | larger */
    uint8_t state;
    uint8_t fails[2]; /* FAILED reports since the last UP: [0] the smaller handle's end */
    uint8_t retried;  /* a retry was sent since the last UP */
    uint8_t relayed;  /* the last UP report said relayed */
    UT_hash_handle hh;
} ms_edge_state_t;

struct ms_edge_health {
    ms_edge_state_t *by_key;
    /* How many states have each handle at one end (n_of): a leave looks up the states of
     * its topology edges (the only ones it can have: edge_dropped) and walks the rest of the
     * namespace's only if some are left, never for a peer with none. */
    uint32_t *of_handle;
    size_t n_of;
};

static int of_handle_grow(struct ms_edge_health *h, ms_peer_t top)
{
    if (top < h->n_of)
        return 1;
    size_t n = h->n_of ? h->n_of : 16;
    while (n <= top)
        n *= 2;
    uint32_t *nv = realloc(h->of_handle, n * sizeof(*nv));
    if (!nv)
        return 0;
    memset(nv + h->n_of, 0, (n - h->n_of) * sizeof(*nv));
    h->of_handle = nv;
    h->n_of = n;
    return 1;
}

static void edge_free(struct ms_edge_health *h, ms_edge_state_t *e)
{
    HASH_DEL(h->by_key, e);
    h->of_handle[e->key >> 32]--;
    h->of_handle[e->key & 0xffffffffu]--;
    free(e);
}

static uint64_t edge_key(ms_peer_t a, ms_peer_t b)
{
    return a < b ? (uint64_t)a << 32 | b : (uint64_t)b << 32 | a;
}

static void send_topology(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                          Meshsig__V1__Topology *t)
{
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY;
    sm.topology = t;
    ms_deliver(c, ns, to, &sm);
}

void ms_tree_source_notify(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                           const ms_member_t *source)
{
    Meshsig__V1__SourceState st = MESHSIG__V1__SOURCE_STATE__INIT;
    st.present = source != NULL;
    st.peer = source ? (char *)source->id : (char *)"";
    Meshsig__V1__Topology t = MESHSIG__V1__TOPOLOGY__INIT;
    t.event_case = MESHSIG__V1__TOPOLOGY__EVENT_SOURCE;
    t.source = &st;
    if (to) {
        send_topology(c, ns, to, &t);
        return;
    }
    ms_member_t *m;
    MS_NS_MEMBERS_FOREACH(ns, i, m)
    {
        if (m != source)
            send_topology(c, ns, m, &t);
    }
}

static ms_edge_state_t *edge_get(ms_ns_t *ns, ms_peer_t a, ms_peer_t b)
{
    ms_ns_mods_t *mods = ms_ns_mods_get(ns);
    if (!mods || (!mods->health && !(mods->health = calloc(1, sizeof(*mods->health)))))
        return NULL;
    uint64_t key = edge_key(a, b);
    ms_edge_state_t *e;
    struct ms_edge_health *h = ms_ns_mods(ns)->health;
    HASH_FIND(hh, h->by_key, &key, sizeof(key), e);
    if (!e && of_handle_grow(h, a > b ? a : b) && (e = calloc(1, sizeof(*e)))) {
        e->key = key;
        HASH_ADD(hh, h->by_key, key, sizeof(e->key), e);
        h->of_handle[a]++;
        h->of_handle[b]++;
    }
    return e;
}

static void send_retry(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *peer)
{
    Meshsig__V1__Retry r = MESHSIG__V1__RETRY__INIT;
    r.peer = (char *)peer;
    r.ice_restart = 1;
    Meshsig__V1__Topology t = MESHSIG__V1__TOPOLOGY__INIT;
    t.event_case = MESHSIG__V1__TOPOLOGY__EVENT_RETRY;
    t.retry = &r;
    send_topology(c, ns, to, &t);
}

/* The engine a namespace runs now ("auto" runs one of two). */
static const ms_topo_t *engine_in_use(const ms_ns_t *ns)
{
    if (ns->engine->ops != &ms_topo_adaptive_ops)
        return ns->engine;
    ms_adaptive_stats_t st;
    ms_adaptive_stats(ns->engine, &st);
    return st.inner;
}

/* The engine repairs a failed a-b; the diff goes out. Returns whether anything changed. */
static int repair(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *a, const ms_member_t *b)
{
    const char *kind = engine_in_use(ns)->ops->name;
    if (!ns->engine->ops->fail_edge) {
        c->edges.n_unrepaired++; /* the full mesh keeps the edge: there is no other */
        return 0;
    }
    ms_topo_diff_t *diff = ms_ns_diff(c);
    ms_err_t err = ns->engine->ops->fail_edge(ns->engine, a->handle, b->handle, diff);
    int changed = diff->n_connect + diff->n_disconnect > 0;
    /* Whatever the outcome, the diff says what the engine changed. */
    if (changed)
        ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
    if (err != MS_OK && err != MS_ERR_FULL && err != MS_ERR_UNSUPPORTED)
        ms_warn("namespace %s: repair of %s-%s: %s", ns->name, a->id, b->id, ms_err_str(err));
    if (err != MS_OK || !changed) {
        c->edges.n_unrepaired++;
        return changed;
    }
    if (!strcmp(kind, "tree"))
        c->edges.n_tree_moves++;
    else if (!strcmp(kind, "spray"))
        c->edges.n_spray_replaced++;
    else
        c->edges.n_delaunay_links++;
    ms_info("namespace %s: %s repaired around the failed edge %s-%s", ns->name, kind, a->id, b->id);
    return 1;
}

void ms_edges_report(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid,
                     const Meshsig__V1__EdgeReport *er)
{
    ms_member_t *o = *er->peer ? ms_ns_member(ns, er->peer) : NULL;
    /* Without an id a report is fire-and-forget: one about an edge the
     * topology has dropped since (churn, or the other end's report of an edge
     * already repaired) is stale, not an error to show. */
    if (!*cid && (!o || !ns->engine->ops->adjacent(ns->engine, m->handle, o->handle)))
        return;
    if (er->state != MESHSIG__V1__EDGE_STATE__UP && er->state != MESHSIG__V1__EDGE_STATE__FAILED) {
        ms_member_error(c, ns, m, cid, ERR(BAD_REQUEST), "edge.state must be UP or FAILED");
        return;
    }
    if (!o) {
        ms_member_error(c, ns, m, cid, ERR(PEER_NOT_FOUND), "peer %s is not in namespace %s",
                        er->peer, ns->name);
        return;
    }
    if (!ns->engine->ops->adjacent(ns->engine, m->handle, o->handle)) {
        /* A late report for an edge the topology has dropped since. */
        ms_member_error(c, ns, m, cid, ERR(NOT_NEIGHBOUR), "%s is not a neighbour of %s", o->id,
                        m->id);
        return;
    }
    ms_edge_state_t *e = edge_get(ns, m->handle, o->handle);
    if (!e) {
        ms_member_error(c, ns, m, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    if (er->state == MESHSIG__V1__EDGE_STATE__UP) {
        c->edges.n_up++;
        c->edges.n_up_relayed += er->relayed;
        e->state = EDGE_UP;
        e->relayed = er->relayed ? 1 : 0;
        e->fails[0] = e->fails[1] = 0;
        e->retried = 0;
        ms_send_ok(c, ns, m, cid);
        return;
    }
    c->edges.n_failed++;
    uint8_t *mine = &e->fails[m->handle > o->handle];
    *mine = *mine < 255 ? (uint8_t)(*mine + 1) : 255;
    const char *kind = engine_in_use(ns)->ops->name;
    int at_once = !strcmp(kind, "tree") || !strcmp(kind, "spray");
    if (e->state == EDGE_FAILED) {
        /* Failed already (the other end's report of the last attempt). */
    } else if (!at_once && *mine == 1) {
        /* This end's first attempt: both ends restart ICE, once. */
        e->state = EDGE_PENDING;
        if (!e->retried) {
            e->retried = 1;
            c->edges.n_retries++;
            send_retry(c, ns, m, o->id);
            send_retry(c, ns, o, m->id);
        }
    } else {
        e->state = EDGE_FAILED;
        /* e may go with the diff (an edge the engine drops is forgotten). */
        repair(c, ns, m, o);
    }
    ms_send_ok(c, ns, m, cid);
}

/* The engine repairs at the first FAILED report (tree, spray), or after the retry failed. */
static unsigned fails_for_good(const ms_ns_t *ns)
{
    const char *kind = engine_in_use(ns)->ops->name;
    return !strcmp(kind, "tree") || !strcmp(kind, "spray") ? 1 : 2;
}

void ms_edges_restore(ms_ns_t *ns, const ms_member_t *m, const Meshsig__Bus__SessionReport *sr)
{
    if (sr->n_edge_health != sr->n_neighbours)
        return; /* a 1.0 gateway, or nothing reported */
    unsigned need = fails_for_good(ns);
    for (size_t i = 0; i < sr->n_neighbours; i++) {
        uint32_t h = sr->edge_health[i];
        ms_member_t *o = *sr->neighbours[i] ? ms_ns_member(ns, sr->neighbours[i]) : NULL;
        unsigned st = MS_EDGEH_STATE(h);
        if ((st != MS_EDGEH_UP && st != MS_EDGEH_FAILED) || !o || o == m ||
            !ns->engine->ops->adjacent(ns->engine, m->handle, o->handle))
            continue;
        ms_edge_state_t *e = edge_get(ns, m->handle, o->handle);
        if (!e) {
            ms_error("namespace %s: out of memory restoring edge health", ns->name);
            return;
        }
        uint8_t *mine = &e->fails[m->handle > o->handle];
        unsigned fails = st == MS_EDGEH_FAILED ? MS_EDGEH_FAILS(h) : 0;
        /* The same outcome whichever end comes first (ms_edges_report's rules). */
        if (fails >= need) {
            e->state = EDGE_FAILED;
            *mine = (uint8_t)fails;
            e->retried = need > 1;
        } else if (e->state == EDGE_FAILED) {
            *mine = (uint8_t)fails;
        } else if (st == MS_EDGEH_UP) {
            e->state = EDGE_UP;
            e->relayed |= (uint8_t)MS_EDGEH_RELAYED(h);
            e->fails[0] = e->fails[1] = 0;
            e->retried = 0;
        } else if (e->state != EDGE_UP) {
            e->state = EDGE_PENDING; /* its retry is under way */
            *mine = (uint8_t)fails;
            e->retried = 1;
        }
    }
}

void ms_edges_restore_repairs(ms_ns_t *ns, ms_topo_diff_t *diff)
{
    if (!ms_ns_mods(ns)->health || !ns->engine->ops->fail_edge)
        return;
    ms_edge_state_t *e, *tmp;
    HASH_ITER(hh, ms_ns_mods(ns)->health->by_key, e, tmp)
    {
        if (e->state != EDGE_FAILED)
            continue;
        ms_peer_t a = (ms_peer_t)(e->key >> 32), b = (ms_peer_t)(e->key & 0xffffffffu);
        ms_err_t err = ns->engine->ops->fail_edge(ns->engine, a, b, diff);
        if (err != MS_OK && err != MS_ERR_FULL && err != MS_ERR_UNSUPPORTED)
            ms_warn("namespace %s: repair of a failed edge after the rebuild: %s", ns->name,
                    ms_err_str(err));
    }
}

void ms_edges_reparent(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid)
{
    if (strcmp(ns->policy->topology, "tree")) {
        ms_member_error(c, ns, m, cid, ERR(BAD_REQUEST),
                        "reparent is for tree namespaces; %s is a %s", ns->name,
                        ns->policy->topology);
        return;
    }
    ms_topo_diff_t *diff = ms_ns_diff(c);
    ms_err_t err = ms_tree_reparent(ns->engine, m->handle, MS_PEER_NONE, diff);
    /* Even when m stays, other leaves may have moved to keep the depth bound. */
    if (err != MS_OK && diff->n_connect + diff->n_disconnect > 0)
        ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
    if (err == MS_ERR_INVAL) {
        ms_member_error(c, ns, m, cid, ERR(BAD_REQUEST),
                        "%s is the root of the tree: it has no parent to change", m->id);
        return;
    }
    if (err == MS_ERR_FULL) {
        ms_member_error(c, ns, m, cid, ERR(NAMESPACE_FULL), "no other parent has a free slot in %s",
                        ns->name);
        return;
    }
    if (err != MS_OK) {
        ms_member_error(c, ns, m, cid, ERR(INTERNAL), "reparent failed: %s", ms_err_str(err));
        return;
    }
    c->edges.n_reparents++;
    ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
    ms_send_ok(c, ns, m, cid);
}

typedef struct {
    uint64_t edges, up, failed, relayed;
} edge_counts_t;

static void count_edge(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    (void)a;
    (void)b;
    (void)kind;
    ((edge_counts_t *)ud)->edges++;
}

/* ns's topology edges and the states reported for them (reported edges the
 * topology dropped are forgotten, so every state counted is of a live edge). */
static void counts(const ms_ns_t *ns, edge_counts_t *out)
{
    memset(out, 0, sizeof(*out));
    ns->engine->ops->edges(ns->engine, count_edge, out);
    if (!ms_ns_mods(ns)->health)
        return;
    ms_edge_state_t *e, *tmp;
    HASH_ITER(hh, ms_ns_mods(ns)->health->by_key, e, tmp)
    {
        out->up += e->state == EDGE_UP;
        out->failed += e->state == EDGE_FAILED;
        out->relayed += e->state == EDGE_UP && e->relayed;
    }
}

static uint64_t pending(const edge_counts_t *k)
{
    return k->edges > k->up + k->failed ? k->edges - k->up - k->failed : 0;
}

json_t *ms_edges_json(const ms_ns_t *ns)
{
    edge_counts_t k;
    counts(ns, &k);
    return json_pack("{s:I, s:I, s:I, s:I}", "up", (json_int_t)k.up, "failed", (json_int_t)k.failed,
                     "relayed", (json_int_t)k.relayed, "pending", (json_int_t)pending(&k));
}

/* The topology dropped the edge a-b: its reported state goes. */
static void edge_dropped(ms_ns_t *ns, ms_peer_t a, ms_peer_t b)
{
    if (!ms_ns_mods(ns)->health)
        return;
    uint64_t key = edge_key(a, b);
    ms_edge_state_t *e;
    HASH_FIND(hh, ms_ns_mods(ns)->health->by_key, &key, sizeof(key), e);
    if (e)
        edge_free(ms_ns_mods(ns)->health, e);
}

void ms_edges_metrics(ms_coord_t *c, ms_metrics_t *m)
{
    /* Per topology name (the policy's: fullmesh, tree, spray, delaunay, auto, none). */
    struct {
        const char *name;
        edge_counts_t k;
    } by[8];
    size_t n_by = 0;
    edge_counts_t all = {0};
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        edge_counts_t k;
        counts(ns, &k);
        all.relayed += k.relayed;
        all.up += k.up;
        size_t i = 0;
        while (i < n_by && strcmp(by[i].name, ns->policy->topology))
            i++;
        if (i == n_by) {
            if (n_by == sizeof(by) / sizeof(by[0]))
                continue; /* more names than engines: cannot happen */
            by[n_by].name = ns->policy->topology;
            memset(&by[n_by].k, 0, sizeof(by[n_by].k));
            n_by++;
        }
        by[i].k.edges += k.edges;
        by[i].k.up += k.up;
        by[i].k.failed += k.failed;
    }
    ms_metrics_family(m, "meshsig_coordinator_edges", MS_METRIC_GAUGE,
                      "topology edges in the shards this coordinator owns, by topology and the "
                      "state their peers reported (pending: not reported yet, or retrying)");
    for (size_t i = 0; i < n_by; i++) {
        ms_metrics_u64_2(m, "topology", by[i].name, "state", "up", by[i].k.up);
        ms_metrics_u64_2(m, "topology", by[i].name, "state", "pending", pending(&by[i].k));
        ms_metrics_u64_2(m, "topology", by[i].name, "state", "failed", by[i].k.failed);
    }
    ms_metrics_family(m, "meshsig_coordinator_edges_up", MS_METRIC_GAUGE,
                      "edges reported up, by path: direct, or relayed through TURN (the selected "
                      "ICE candidate pair)");
    ms_metrics_u64(m, "path", "direct", all.up - all.relayed);
    ms_metrics_u64(m, "path", "relayed", all.relayed);
    ms_metrics_family(m, "meshsig_coordinator_edge_reports_total", MS_METRIC_COUNTER,
                      "edge reports from clients, by outcome");
    ms_metrics_u64(m, "outcome", "up_direct", c->edges.n_up - c->edges.n_up_relayed);
    ms_metrics_u64(m, "outcome", "up_relayed", c->edges.n_up_relayed);
    ms_metrics_u64(m, "outcome", "failed", c->edges.n_failed);
    ms_metrics_family(m, "meshsig_coordinator_edge_repairs_total", MS_METRIC_COUNTER,
                      "repairs around failed edges, by kind (ice_restart: both ends asked to "
                      "retry; none: failed for good with no way around)");
    ms_metrics_u64(m, "kind", "ice_restart", c->edges.n_retries);
    ms_metrics_u64(m, "kind", "tree_reparent", c->edges.n_tree_moves);
    ms_metrics_u64(m, "kind", "spray_replace", c->edges.n_spray_replaced);
    ms_metrics_u64(m, "kind", "delaunay_link", c->edges.n_delaunay_links);
    ms_metrics_u64(m, "kind", "none", c->edges.n_unrepaired);
    ms_metrics_counter(m, "meshsig_coordinator_reparents_total",
                       "reparent requests from tree peers carried out", c->edges.n_reparents);
}

/* Edges of a departed member: their state goes with them (handles are reused). Called
 * before the engine's leave: its topology edges are there to look up. */
static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    (void)c;
    struct ms_edge_health *h = ms_ns_mods(ns)->health;
    ms_peer_t me = m->handle;
    if (!h || me >= h->n_of || !h->of_handle[me])
        return;
    ms_peer_t buf[64], *nb = buf;
    size_t n = ns->engine->ops->neighbours(ns->engine, me, buf, 64);
    if (n > 64 && !(nb = malloc(n * sizeof(*nb)))) {
        nb = buf;
        n = 64; /* out of memory: the walk below takes the rest */
    } else if (n > 64) {
        n = ns->engine->ops->neighbours(ns->engine, me, nb, n);
    }
    for (size_t i = 0; i < n && h->of_handle[me]; i++) {
        uint64_t key = edge_key(me, nb[i]);
        ms_edge_state_t *e;
        HASH_FIND(hh, h->by_key, &key, sizeof(key), e);
        if (e)
            edge_free(h, e);
    }
    if (nb != buf)
        free(nb);
    ms_edge_state_t *e, *tmp;
    HASH_ITER(hh, h->by_key, e, tmp)
    {
        if (!h->of_handle[me])
            break;
        if ((e->key >> 32) == me || (e->key & 0xffffffffu) == me)
            edge_free(h, e);
    }
}

static void cleanup(ms_ns_t *ns)
{
    if (!ms_ns_mods(ns)->health)
        return;
    ms_edge_state_t *e, *tmp;
    HASH_ITER(hh, ms_ns_mods(ns)->health->by_key, e, tmp)
    {
        HASH_DEL(ms_ns_mods(ns)->health->by_key, e);
        free(e);
    }
    free(ns->mods->health->of_handle);
    free(ns->mods->health); /* there: health was */
    ns->mods->health = NULL;
}

const ms_ns_hooks_t ms_edges_hooks = {.name = "edge health",
                                      .cleanup = cleanup,
                                      .member_gone = member_gone,
                                      .edge_dropped = edge_dropped};

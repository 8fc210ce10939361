/* SPDX-License-Identifier: Apache-2.0 */
/* Edge health and tree control: clients' edge reports, repair around failed edges, re-parent
 * requests, and the tree source's comings and goings.
 *
 * The coordinator decides edges but cannot see whether a WebRTC connection
 * came up; clients report it (EdgeReport UP or FAILED, the SDK after its
 * connect timeout). Each namespace keeps the state of the edges reported, keyed
 * by handle pair, so the admin view shows edges up, pending and failed. Repair:
 *   tree      the child of a failed parent link moves (with its subtree) under
 *             another parent (ms_tree_reparent, avoiding that parent);
 *   others    the first failure of an edge tells both ends to restart ICE once
 *             (topology.retry); a second marks it failed, and it stays
 *             reported (the engines do not route around it yet).
 */
#include <stdlib.h>
#include <string.h>

#include "edges.h"
#include "internal.h"
#include "log.h"
#include "tree.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

enum { EDGE_PENDING = 0, EDGE_UP = 1, EDGE_FAILED = 2 };

typedef struct ms_edge_state {
    uint64_t key; /* smaller handle << 32 | larger */
    uint8_t state;
    uint8_t failures; /* FAILED reports so far */
    uint8_t relayed;
    UT_hash_handle hh;
} ms_edge_state_t;

struct ms_edge_health {
    ms_edge_state_t *by_key;
};

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
    st.peer = source ? source->id : (char *)"";
    Meshsig__V1__Topology t = MESHSIG__V1__TOPOLOGY__INIT;
    t.event_case = MESHSIG__V1__TOPOLOGY__EVENT_SOURCE;
    t.source = &st;
    if (to) {
        send_topology(c, ns, to, &t);
        return;
    }
    ms_member_t *m, *tmp;
    HASH_ITER(hh, ns->members, m, tmp)
    {
        if (m != source)
            send_topology(c, ns, m, &t);
    }
}

static ms_edge_state_t *edge_get(ms_ns_t *ns, ms_peer_t a, ms_peer_t b)
{
    if (!ns->health && !(ns->health = calloc(1, sizeof(*ns->health))))
        return NULL;
    uint64_t key = edge_key(a, b);
    ms_edge_state_t *e;
    HASH_FIND(hh, ns->health->by_key, &key, sizeof(key), e);
    if (!e && (e = calloc(1, sizeof(*e)))) {
        e->key = key;
        HASH_ADD(hh, ns->health->by_key, key, sizeof(e->key), e);
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

void ms_edges_report(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid,
                     const Meshsig__V1__EdgeReport *er)
{
    ms_member_t *o = *er->peer ? ms_ns_member(ns, er->peer) : NULL;
    /* Without an id a report is fire-and-forget: one about an edge the
     * topology has dropped since (churn) is stale, not an error to show. */
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
        if (e->state != EDGE_UP)
            c->edges.n_up++;
        e->state = EDGE_UP;
        e->relayed |= (uint8_t)er->relayed;
        c->edges.n_relayed += er->relayed;
        ms_send_ok(c, ns, m, cid);
        return;
    }
    c->edges.n_failed++;
    e->failures = e->failures < 255 ? (uint8_t)(e->failures + 1) : 255;
    ms_topo_diff_t *diff = ms_ns_diff(c);
    if (!strcmp(ns->policy.topology, "tree")) {
        /* The child moves away from the parent it cannot reach. */
        ms_peer_t parent = ms_tree_parent(ns->engine, m->handle);
        ms_member_t *child = parent == o->handle ? m : o;
        ms_member_t *par = child == m ? o : m;
        ms_err_t err = ms_tree_reparent(ns->engine, child->handle, par->handle, diff);
        if (err == MS_OK) {
            c->edges.n_repairs++;
            HASH_DEL(ns->health->by_key, e);
            free(e);
            ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
            ms_info("namespace %s: %s re-parented away from %s after a failed edge", ns->name,
                    child->id, par->id);
        } else {
            e->state = EDGE_FAILED;
        }
    } else if (e->failures == 1) {
        /* Once: both ends restart ICE. */
        e->state = EDGE_PENDING;
        c->edges.n_retries++;
        send_retry(c, ns, m, o->id);
        send_retry(c, ns, o, m->id);
    } else {
        e->state = EDGE_FAILED;
    }
    ms_send_ok(c, ns, m, cid);
}

void ms_edges_reparent(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid)
{
    if (strcmp(ns->policy.topology, "tree")) {
        ms_member_error(c, ns, m, cid, ERR(BAD_REQUEST),
                        "reparent is for tree namespaces; %s is a %s", ns->name,
                        ns->policy.topology);
        return;
    }
    ms_topo_diff_t *diff = ms_ns_diff(c);
    ms_err_t err = ms_tree_reparent(ns->engine, m->handle, MS_PEER_NONE, diff);
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

json_t *ms_edges_json(const ms_ns_t *ns)
{
    json_int_t up = 0, failed = 0, relayed = 0, reported = 0;
    if (ns->health) {
        ms_edge_state_t *e, *tmp;
        HASH_ITER(hh, ns->health->by_key, e, tmp)
        {
            reported++;
            up += e->state == EDGE_UP;
            failed += e->state == EDGE_FAILED;
            relayed += e->relayed;
        }
    }
    return json_pack("{s:I, s:I, s:I, s:I}", "up", up, "failed", failed, "relayed", relayed,
                     "pending", reported - up - failed);
}

/* Edges of a departed member: their state goes with them (handles are reused). */
static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    if (!ns->health)
        return;
    ms_edge_state_t *e, *tmp;
    HASH_ITER(hh, ns->health->by_key, e, tmp)
    {
        if ((e->key >> 32) == m->handle || (e->key & 0xffffffffu) == m->handle) {
            HASH_DEL(ns->health->by_key, e);
            free(e);
        }
    }
}

static void cleanup(ms_ns_t *ns)
{
    if (!ns->health)
        return;
    ms_edge_state_t *e, *tmp;
    HASH_ITER(hh, ns->health->by_key, e, tmp)
    {
        HASH_DEL(ns->health->by_key, e);
        free(e);
    }
    free(ns->health);
    ns->health = NULL;
}

const ms_ns_hooks_t ms_edges_hooks = {
    .name = "edge health", .cleanup = cleanup, .member_gone = member_gone};

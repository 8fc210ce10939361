// SPDX-License-Identifier: Apache-2.0
/* Requested extra edges (socket.io-p2p-plugin's addP2pTarget): a peer asks the
 * owner for an edge to another peer outside the topology; the owner hands the
 * request to that peer, which accepts or refuses. On accept both get a
 * topology.connect (role PEER, the smaller id initiates) and signals between
 * them pass the neighbours-only check. Only when the namespace policy says
 * p2pTargets: true. The edge lasts until one of them leaves. It is the
 * owner's state only and not in the engine, so a shard takeover does not
 * restore it: the rebuild's diff against the gateways' reports removes it. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

/* A request waiting for the target's answer (ms_member_t.p2p_asks). */
typedef struct ms_p2p_ask {
    char *peer; /* the asker */
    char *cid;  /* the asker's request id, for its ok or error */
} ms_p2p_ask_t;

#define P2P_MAX_LINKS 64 /* extra edges per peer */
#define P2P_MAX_ASKS 16  /* unanswered requests per target; the oldest goes first */

static int link_index(const ms_member_t *m, const char *id)
{
    const ms_member_rare_t *r = ms_member_rare(m);
    for (size_t i = 0; i < r->n_p2p_links; i++)
        if (!strcmp(r->p2p_links[i], id))
            return (int)i;
    return -1;
}

int ms_p2p_linked(const ms_member_t *a, const ms_member_t *b)
{
    return ms_member_rare(a)->n_p2p_links && link_index(a, b->id) >= 0;
}

static ms_err_t link_add(ms_member_t *m, const char *id)
{
    ms_member_rare_t *r = ms_member_rare_get(m);
    if (!r)
        return MS_ERR_NOMEM;
    char **v = realloc(r->p2p_links, (r->n_p2p_links + 1) * sizeof(*v));
    if (!v)
        return MS_ERR_NOMEM;
    r->p2p_links = v;
    if (!(v[r->n_p2p_links] = strdup(id)))
        return MS_ERR_NOMEM;
    r->n_p2p_links++;
    return MS_OK;
}

static void link_remove(ms_member_t *m, const char *id)
{
    int i = link_index(m, id);
    if (i < 0)
        return;
    ms_member_rare_t *r = m->rare; /* there: it holds a link */
    free(r->p2p_links[i]);
    memmove(&r->p2p_links[i], &r->p2p_links[i + 1],
            (r->n_p2p_links - (size_t)i - 1) * sizeof(*r->p2p_links));
    r->n_p2p_links--;
}

static void ask_free(ms_p2p_ask_t *a)
{
    free(a->peer);
    free(a->cid);
}

/* Removes ask i (there is one) from m; the caller owns what it held. */
static ms_p2p_ask_t ask_take(ms_member_t *m, size_t i)
{
    ms_member_rare_t *r = m->rare;
    ms_p2p_ask_t a = r->p2p_asks[i];
    memmove(&r->p2p_asks[i], &r->p2p_asks[i + 1], (r->n_p2p_asks - i - 1) * sizeof(*r->p2p_asks));
    r->n_p2p_asks--;
    return a;
}

/* Every ask gets one reply: one that is superseded or pushed out is answered now. */
static ms_err_t ask_add(ms_coord_t *c, ms_ns_t *ns, ms_member_t *to, const char *peer,
                        const char *cid)
{
    ms_member_rare_t *r = ms_member_rare_get(to);
    if (!r)
        return MS_ERR_NOMEM;
    for (size_t i = 0; i < r->n_p2p_asks; i++) {
        if (!strcmp(r->p2p_asks[i].peer, peer)) { /* asked again: the newest id answers */
            char *nc = strdup(cid);
            if (!nc)
                return MS_ERR_NOMEM;
            ms_member_t *asker = ms_ns_member(ns, peer);
            if (asker && *r->p2p_asks[i].cid && strcmp(r->p2p_asks[i].cid, cid))
                ms_member_error(c, ns, asker, r->p2p_asks[i].cid, ERR(BAD_REQUEST),
                                "superseded by a newer p2pTarget request to %s", to->id);
            free(r->p2p_asks[i].cid);
            r->p2p_asks[i].cid = nc;
            return MS_OK;
        }
    }
    if (r->n_p2p_asks >= P2P_MAX_ASKS) {
        ms_p2p_ask_t old = ask_take(to, 0);
        ms_member_t *asker = ms_ns_member(ns, old.peer);
        if (asker)
            ms_member_error(
                c, ns, asker, old.cid, ERR(RATE_LIMITED),
                "%s has %d unanswered p2pTarget requests, the most it keeps; yours was the oldest",
                to->id, P2P_MAX_ASKS);
        ask_free(&old);
    }
    ms_p2p_ask_t *v = realloc(r->p2p_asks, (r->n_p2p_asks + 1) * sizeof(*v));
    if (!v)
        return MS_ERR_NOMEM;
    r->p2p_asks = v;
    ms_p2p_ask_t a = {strdup(peer), strdup(cid)};
    if (!a.peer || !a.cid) {
        ask_free(&a);
        return MS_ERR_NOMEM;
    }
    v[r->n_p2p_asks++] = a;
    return MS_OK;
}

static void deliver_request(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                            const ms_member_t *from)
{
    Meshsig__V1__P2pTarget t = MESHSIG__V1__P2P_TARGET__INIT;
    t.peer = (char *)from->id;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_P2P_TARGET;
    sm.p2p_target = &t;
    ms_deliver(c, ns, to, &sm);
}

static int adjacent(ms_ns_t *ns, const ms_member_t *a, const ms_member_t *b)
{
    return ns->engine->ops->adjacent(ns->engine, a->handle, b->handle) || ms_p2p_linked(a, b);
}

static void ask(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid,
                const Meshsig__V1__P2pTarget *t)
{
    if (!ns->policy->p2p_targets) {
        ms_member_error(c, ns, m, cid, ERR(FORBIDDEN), "namespace %s does not allow p2p targets",
                        ns->name);
        return;
    }
    ms_member_t *o = ms_ns_member(ns, t->peer);
    if (!o || o == m) {
        ms_member_error(c, ns, m, cid, ERR(PEER_NOT_FOUND), "%s is not in namespace %s", t->peer,
                        ns->name);
        return;
    }
    if (adjacent(ns, m, o)) {
        ms_send_ok(c, ns, m, cid);
        return;
    }
    if (ms_member_rare(m)->n_p2p_links >= P2P_MAX_LINKS ||
        ms_member_rare(o)->n_p2p_links >= P2P_MAX_LINKS) {
        ms_member_error(c, ns, m, cid, ERR(RATE_LIMITED), "at most %d p2p targets per peer",
                        P2P_MAX_LINKS);
        return;
    }
    if (ask_add(c, ns, o, m->id, cid) != MS_OK) {
        ms_member_error(c, ns, m, cid, ERR(INTERNAL), "out of memory");
        return;
    }
    deliver_request(c, ns, o, m);
}

static void answer(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid,
                   const Meshsig__V1__P2pTarget *t)
{
    const ms_member_rare_t *r = ms_member_rare(m);
    size_t i = 0;
    while (i < r->n_p2p_asks && strcmp(r->p2p_asks[i].peer, t->peer))
        i++;
    if (i == r->n_p2p_asks) {
        ms_member_error(c, ns, m, cid, ERR(BAD_REQUEST), "no p2p target request from %s", t->peer);
        return;
    }
    ms_p2p_ask_t a = ask_take(m, i);
    ms_member_t *asker = ms_ns_member(ns, a.peer);
    if (!asker) {
        ms_member_error(c, ns, m, cid, ERR(PEER_NOT_FOUND), "%s left", a.peer);
    } else if (!t->accept) {
        const char *why = t->reason ? t->reason : "";
        ms_member_error(c, ns, asker, a.cid, ERR(FORBIDDEN), "%s refused%s%s", m->id,
                        *why ? ": " : "", why);
        ms_send_ok(c, ns, m, cid);
    } else if (adjacent(ns, asker, m)) {
        ms_send_ok(c, ns, asker, a.cid);
        ms_send_ok(c, ns, m, cid);
    } else if (link_add(asker, m->id) != MS_OK || link_add(m, asker->id) != MS_OK) {
        link_remove(asker, m->id);
        ms_member_error(c, ns, asker, a.cid, ERR(INTERNAL), "out of memory");
        ms_member_error(c, ns, m, cid, ERR(INTERNAL), "out of memory");
    } else {
        int asker_first = strcmp(asker->id, m->id) < 0; /* the smaller id initiates */
        ms_ns_send_connect(c, ns, asker, m, asker_first, MESHSIG__V1__ROLE__PEER);
        ms_ns_send_connect(c, ns, m, asker, !asker_first, MESHSIG__V1__ROLE__PEER);
        ms_send_ok(c, ns, asker, a.cid);
        ms_send_ok(c, ns, m, cid);
    }
    ask_free(&a);
}

void ms_p2p_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *client_id,
                   const Meshsig__V1__P2pTarget *t)
{
    if (!t->peer || !*t->peer) {
        ms_member_error(c, ns, m, client_id, ERR(BAD_REQUEST), "p2pTarget.peer is required");
        return;
    }
    if (t->answer)
        answer(c, ns, m, client_id, t);
    else
        ask(c, ns, m, client_id, t);
}

static void member_free(ms_member_t *m);

static void member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    const ms_member_rare_t *r = ms_member_rare(m);
    for (size_t i = 0; i < r->n_p2p_links; i++) {
        ms_member_t *o = ms_ns_member(ns, r->p2p_links[i]);
        if (!o)
            continue;
        link_remove(o, m->id);
        ms_ns_send_disconnect(c, ns, o, m);
    }
    for (size_t i = 0; i < r->n_p2p_asks; i++) {
        ms_member_t *a = ms_ns_member(ns, r->p2p_asks[i].peer);
        if (a)
            ms_member_error(c, ns, a, r->p2p_asks[i].cid, ERR(PEER_LEFT),
                            "%s left before it answered", m->id);
    }
    member_free(m);
}

static void member_free(ms_member_t *m)
{
    ms_member_rare_t *r = m->rare;
    if (!r)
        return;
    for (size_t i = 0; i < r->n_p2p_links; i++)
        free(r->p2p_links[i]);
    free(r->p2p_links);
    r->p2p_links = NULL;
    r->n_p2p_links = 0;
    for (size_t i = 0; i < r->n_p2p_asks; i++)
        ask_free(&r->p2p_asks[i]);
    free(r->p2p_asks);
    r->p2p_asks = NULL;
    r->n_p2p_asks = 0;
}

/* The namespace goes (its shard was dropped, or it emptied): members keep no p2p state. */
static void cleanup(ms_ns_t *ns)
{
    ms_member_t *m;
    MS_NS_MEMBERS_FOREACH(ns, i, m)
    member_free(m);
}

const ms_ns_hooks_t ms_p2p_hooks = {
    .name = "p2p targets", .cleanup = cleanup, .member_gone = member_gone};

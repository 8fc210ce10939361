/* SPDX-License-Identifier: Apache-2.0 */
/* A gateway's late report merged into a shard this coordinator serves: the sessions of a gateway
 * that could not answer the takeover resync join the live namespaces.
 *
 * A gateway silent during a takeover (its NATS node cut off, say) keeps its
 * sessions, but the new owner rebuilt the shard from the other gateways'
 * reports only. gwsync.c asks such a gateway once it is heard again; its
 * report lands here. Per reported session:
 *   - the owner has that very session (gateway and session id): nothing to do,
 *     except that a peer waiting out its resume grace is attached again;
 *   - the owner has the peer id on another session: that one is newer (it
 *     joined or resumed through this owner, which orders everything of the
 *     shard, while the reported one could not reach it), so the reported
 *     session is told REPLACED and closed;
 *   - the owner does not know the peer: it joins the engine as a join would,
 *     but the edge diff is relative to what the clients hold, as in a
 *     takeover rebuild: an edge that the new peer reported and its neighbour
 *     still holds (reported, or kept as dangling by the rebuild) produces no
 *     event, so no working WebRTC connection moves; a held edge that the
 *     engine no longer has is dropped at the ends that hold it.
 * Its rooms, services and subscriptions come back silently (restore hooks) and
 * stored emits are delivered. Namespaces the owner does not hold at all are
 * rebuilt from the report (resync.c). Merging a report twice changes nothing.
 * Loop thread only.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

static int reports_neighbour(const Meshsig__Bus__SessionReport *sr, const char *id)
{
    for (size_t i = 0; i < sr->n_neighbours; i++)
        if (!strcmp(sr->neighbours[i], id))
            return 1;
    return 0;
}

typedef struct {
    ms_coord_t *c;
    ms_ns_t *ns;
    const char *gw;
    /* By handle: the report of a member merged now, NULL for the others. */
    const Meshsig__Bus__SessionReport **fresh;
    size_t n_fresh_slots;
    long events;
} merge_t;

static const Meshsig__Bus__SessionReport *fresh_of(const merge_t *mg, const ms_member_t *m)
{
    return m->handle < mg->n_fresh_slots ? mg->fresh[m->handle] : NULL;
}

/* Whether m's client holds `other` as a neighbour. */
static int holds(const merge_t *mg, const ms_member_t *m, const ms_member_t *other)
{
    const Meshsig__Bus__SessionReport *sr = fresh_of(mg, m);
    return sr ? reports_neighbour(sr, other->id) : ms_member_dangling_has(m, other->id);
}

/* Whether both ends of a connect already hold it as the engine made it. A tree edge counts
 * only with the child's reported parent being that parent (the roles must not flip). */
static int held_by_both(const merge_t *mg, const ms_edge_t *e, ms_member_t *a, ms_member_t *b)
{
    if (!holds(mg, a, b) || !holds(mg, b, a))
        return 0;
    if (e->kind != MS_EDGE_TREE)
        return 1;
    const Meshsig__Bus__SessionReport *child = fresh_of(mg, b);
    return child && !strcmp(child->parent, a->id);
}

/* Adds the reported session sr as a new member of mg->ns, joined into the engine (its edges
 * into diff). NULL when it was not placed (its session is told why and closed). */
static ms_member_t *place(merge_t *mg, const Meshsig__Bus__SessionReport *sr, ms_topo_diff_t *diff)
{
    ms_coord_t *c = mg->c;
    ms_ns_t *ns = mg->ns;
    Meshsig__V1__ErrorCode code = ERR(INTERNAL);
    const char *why = "out of memory";
    ms_member_t *m = ms_resync_member_from(ns, mg->gw, sr);
    if (!m)
        goto fail;
    m->source = (uint8_t)sr->source;
    ms_err_t err = ms_ns_alloc_handle(ns, m);
    if (err == MS_ERR_EXISTS) {
        code = ERR(SOURCE_TAKEN);
        why = "the tree has another source now";
        goto fail;
    }
    if (err != MS_OK)
        goto fail;
    if (ms_ns_member_add(c, ns, m) != MS_OK) {
        ms_ns_free_handle(ns, m);
        goto fail;
    }
    err = ms_ns_full(c, ns) ? MS_ERR_FULL
                            : ns->engine->ops->join(ns->engine, m->handle, m->pos, diff);
    if (err != MS_OK) {
        ms_ns_member_remove(c, ns, m);
        ms_ns_free_handle(ns, m);
        if (err == MS_ERR_FULL) {
            code = ERR(NAMESPACE_FULL);
            why = "the namespace filled up while this gateway was cut off";
        } else {
            why = "topology join failed";
        }
        goto fail;
    }
    ms_gw_seen(c, m->gateway);
    return m;
fail:
    ms_warn("%s/%s on %s not merged: %s", ns->name, sr->peer_id, mg->gw, why);
    ms_member_end_session(c, ns->shard, mg->gw, sr->session, sr->peer_id, code, why);
    ms_member_free(m);
    return NULL;
}

/* Connects both ends hold already are dropped from diff (and end the dangling entries). */
static void drop_held_connects(merge_t *mg, ms_topo_diff_t *diff)
{
    size_t w = 0;
    for (size_t i = 0; i < diff->n_connect; i++) {
        const ms_edge_t *e = &diff->connect[i];
        ms_member_t *a = ms_ns_by_handle(mg->ns, e->a), *b = ms_ns_by_handle(mg->ns, e->b);
        if (a && b && (fresh_of(mg, a) || fresh_of(mg, b)) && held_by_both(mg, e, a, b)) {
            ms_member_dangling_drop(a, b->id);
            ms_member_dangling_drop(b, a->id);
            continue;
        }
        diff->connect[w++] = *e;
    }
    diff->n_connect = w;
}

/* One end holds an edge the engine does not have: it drops it. */
static void drop_stale(merge_t *mg, ms_member_t *holder, ms_member_t *other)
{
    ms_member_dangling_drop(holder, other->id);
    ms_ns_send_disconnect(mg->c, mg->ns, holder, other);
    mg->events++;
}

/* After the engine placed the new members: each end that holds an edge to a member merged now
 * which the engine did not make hears a disconnect; a reported neighbour this owner does not
 * know either stays dangling. */
static void settle_held(merge_t *mg, ms_member_t **placed, size_t n)
{
    ms_ns_t *ns = mg->ns;
    const ms_topo_t *t = ns->engine;
    for (size_t i = 0; i < n; i++) {
        ms_member_t *u = placed[i];
        const Meshsig__Bus__SessionReport *sr = fresh_of(mg, u);
        for (size_t k = 0; k < sr->n_neighbours; k++) {
            const char *id = sr->neighbours[k];
            ms_member_t *x = *id ? ms_ns_member(ns, id) : NULL;
            if (!x) {
                if (*id && ms_member_dangling_add(u, id) != MS_OK)
                    ms_error("%s/%s: out of memory keeping a neighbour", ns->name, u->id);
                continue;
            }
            if (x == u || t->ops->adjacent(t, u->handle, x->handle))
                continue;
            drop_stale(mg, u, x);
            if (!fresh_of(mg, x) && ms_member_dangling_has(x, u->id))
                drop_stale(mg, x, u);
        }
    }
    /* Members known before that hold a merged member the merged one did not report. */
    ms_member_t *x;
    MS_NS_MEMBERS_FOREACH(ns, i, x)
    {
        if (!ms_member_rare(x)->n_dangling || fresh_of(mg, x))
            continue;
        for (size_t k = ms_member_rare(x)->n_dangling; k-- > 0;) {
            ms_member_t *u = ms_ns_member(ns, ms_member_rare(x)->dangling[k]);
            if (!u || !fresh_of(mg, u))
                continue;
            if (t->ops->adjacent(t, u->handle, x->handle))
                ms_member_dangling_drop(x, u->id); /* connected just now */
            else
                drop_stale(mg, x, u);
        }
    }
}

/* Merges the sessions srs (all of namespace ns, on gateway mg->gw). */
static void merge_ns(merge_t *mg, const Meshsig__Bus__SessionReport **srs, size_t n)
{
    ms_coord_t *c = mg->c;
    ms_ns_t *ns = mg->ns;
    ms_topo_diff_t diff;
    ms_topo_diff_init(&diff);
    ms_member_t **placed = calloc(n ? n : 1, sizeof(*placed));
    const Meshsig__Bus__SessionReport **placed_sr = calloc(n ? n : 1, sizeof(*placed_sr));
    size_t n_placed = 0;
    if (!placed || !placed_sr) {
        ms_error("%s: out of memory merging %zu sessions of %s", ns->name, n, mg->gw);
        free(placed);
        free(placed_sr);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const Meshsig__Bus__SessionReport *sr = srs[i];
        ms_member_t *m = ms_ns_member(ns, sr->peer_id);
        if (m && !strcmp(m->gateway, mg->gw) && m->session == sr->session) {
            ms_member_reattach(m); /* its grace would have run out otherwise */
            continue;
        }
        if (m || ms_ns_face(ns, sr->peer_id)) {
            ms_info("%s/%s: the session on %s is stale (the peer is on %s now): replaced", ns->name,
                    sr->peer_id, mg->gw, m ? m->gateway : "a backend");
            ms_member_end_session(c, ns->shard, mg->gw, sr->session, sr->peer_id, ERR(REPLACED),
                                  "this peer id lives on in another session");
            continue;
        }
        if ((m = place(mg, sr, &diff))) {
            placed_sr[n_placed] = sr;
            placed[n_placed++] = m;
        }
    }
    if (!n_placed)
        goto done;
    mg->n_fresh_slots = ns->n_handles;
    if (!(mg->fresh = calloc(mg->n_fresh_slots, sizeof(*mg->fresh)))) {
        ms_error("%s: out of memory merging; sending every edge", ns->name);
        mg->n_fresh_slots = 0;
    }
    for (size_t i = 0; i < n_placed && mg->fresh; i++)
        mg->fresh[placed[i]->handle] = placed_sr[i];
    ms_topo_diff_normalize(&diff);
    if (mg->fresh)
        drop_held_connects(mg, &diff);
    mg->events += (long)(diff.n_connect + diff.n_disconnect);
    ms_ns_apply_diff(c, ns, &diff, NULL, NULL, 0);
    if (mg->fresh)
        settle_held(mg, placed, n_placed);
    for (size_t i = 0; i < n_placed; i++)
        ms_edges_restore(ns, placed[i], placed_sr[i]); /* the edges the engine kept */
    /* The ad-hoc pairs their gateways hold (signals:any namespaces). */
    ms_pairs_restore(c, ns, placed, placed_sr, n_placed);
    for (size_t i = 0; i < n_placed; i++) {
        if (ms_ns_restore_member(c, ns, placed[i], placed_sr[i]) != MS_OK)
            ms_error("%s/%s: out of memory restoring rooms and services", ns->name, placed[i]->id);
        ms_emit_member_restored(c, ns, placed[i]);
    }
    ms_info("%s: %zu peers of %s merged (%zu edges added, %zu dropped)", ns->name, n_placed, mg->gw,
            diff.n_connect, diff.n_disconnect);
done:
    free(mg->fresh);
    mg->fresh = NULL;
    mg->n_fresh_slots = 0;
    free(placed);
    free(placed_sr);
    ms_topo_diff_cleanup(&diff);
}

long ms_merge_report(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ResyncReport *rr)
{
    if (!*rr->gateway_id || !rr->n_sessions)
        return 0;
    /* Namespaces not held here at all: a rebuild from this report, as at a takeover. */
    Meshsig__Bus__ResyncReport *one = (Meshsig__Bus__ResyncReport *)rr;
    long rebuilt = ms_resync_rebuild(c, shard, &one, 1);
    merge_t mg = {.c = c, .gw = rr->gateway_id, .events = rebuilt > 0 ? rebuilt : 0};
    const Meshsig__Bus__SessionReport **srs = calloc(rr->n_sessions, sizeof(*srs));
    uint8_t *done = calloc(rr->n_sessions, 1);
    if (!srs || !done) {
        ms_error("shard %u: out of memory merging the report of %s", shard, rr->gateway_id);
        free(srs);
        free(done);
        return -1;
    }
    /* One pass per namespace, in the order the report names them. */
    for (size_t i = 0; i < rr->n_sessions; i++) {
        const char *name = rr->sessions[i]->namespace_;
        if (done[i] || !*rr->sessions[i]->peer_id ||
            ms_bus_shard_of(name, (uint32_t)c->cfg->shards) != shard)
            continue;
        size_t n = 0;
        for (size_t k = i; k < rr->n_sessions; k++)
            if (!done[k] && *rr->sessions[k]->peer_id &&
                !strcmp(rr->sessions[k]->namespace_, name)) {
                done[k] = 1;
                srs[n++] = rr->sessions[k];
            }
        if (!(mg.ns = ms_ns_find(c, name)))
            continue; /* the rebuild above failed and said so */
        merge_ns(&mg, srs, n);
        ms_ns_destroy_if_empty(c, mg.ns);
    }
    free(srs);
    free(done);
    return mg.events;
}

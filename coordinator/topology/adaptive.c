/* SPDX-License-Identifier: Apache-2.0 */
/* "auto": a full mesh while the namespace is small, another engine once it grows.
 *
 * A full mesh is the best topology for a handful of peers (one hop between any
 * two, nothing to repair) and the worst for many (N-1 connections each). This
 * engine runs a full mesh up to params.up_to peers and params.then (delaunay,
 * tree or spray, with the other params) above; it switches back when the count
 * falls to up_to - hysteresis, so a namespace that hovers at the bound does not
 * flap. A switch rebuilds the other engine from every peer (in handle order,
 * with its last position) and reports only the difference between the two edge
 * sets: every edge the new topology also has stays up. Both inner engines are
 * pure, so this one is too.
 */
#include <stdlib.h>
#include <string.h>

#include "adaptive.h"
#include "topology.h"

typedef struct {
    ms_topo_t base;
    ms_topo_params_t params; /* for the `then` engine */
    const ms_topo_ops_t *then;
    uint32_t up_to, down_at;
    ms_topo_t *inner;   /* the engine in use */
    int large;          /* inner is `then` */
    ms_topo_pos_t *pos; /* last position, by handle */
    uint8_t *present;
    size_t n_slots, count;
    uint64_t switches, last_switch_edges, max_switch_edges;
} adaptive_t;

static const ms_topo_params_t fullmesh_params = {0};

static ms_err_t ad_create(const ms_topo_params_t *params, ms_topo_t **out)
{
    if (!params || !params->then || params->then == &ms_topo_adaptive_ops || params->up_to < 1 ||
        params->hysteresis >= params->up_to)
        return MS_ERR_INVAL;
    adaptive_t *a = calloc(1, sizeof(*a));
    if (!a)
        return MS_ERR_NOMEM;
    a->base.ops = &ms_topo_adaptive_ops;
    a->params = *params;
    a->then = params->then;
    a->up_to = params->up_to;
    a->down_at = params->up_to - params->hysteresis;
    ms_err_t err = ms_topo_fullmesh_ops.create(&fullmesh_params, &a->inner);
    if (err != MS_OK) {
        free(a);
        return err;
    }
    *out = &a->base;
    return MS_OK;
}

static void ad_destroy(ms_topo_t *t)
{
    adaptive_t *a = (adaptive_t *)t;
    if (!a)
        return;
    if (a->inner)
        a->inner->ops->destroy(a->inner);
    free(a->pos);
    free(a->present);
    free(a);
}

static int ad_has(const adaptive_t *a, ms_peer_t p)
{
    return p < a->n_slots && a->present[p];
}

static ms_err_t ad_grow(adaptive_t *a, ms_peer_t p)
{
    if (p < a->n_slots)
        return MS_OK;
    size_t n = a->n_slots ? a->n_slots : 16;
    while (n <= p)
        n *= 2;
    ms_topo_pos_t *np = realloc(a->pos, n * sizeof(*np));
    if (!np)
        return MS_ERR_NOMEM;
    a->pos = np;
    uint8_t *pr = realloc(a->present, n);
    if (!pr)
        return MS_ERR_NOMEM;
    memset(pr + a->n_slots, 0, n - a->n_slots);
    a->present = pr;
    a->n_slots = n;
    return MS_OK;
}

typedef struct {
    ms_topo_diff_t *diff;
    int connect;
    ms_err_t err;
} collect_t;

static void collect(ms_peer_t x, ms_peer_t y, uint8_t kind, void *ud)
{
    collect_t *c = ud;
    ms_err_t e = c->connect ? ms_topo_diff_connect(c->diff, x, y, kind)
                            : ms_topo_diff_disconnect(c->diff, x, y, kind);
    if (c->err == MS_OK)
        c->err = e;
}

/* Rebuilds the other engine from every peer and appends (new - old) to diff. */
static ms_err_t switch_engine(adaptive_t *a, ms_topo_diff_t *diff)
{
    const ms_topo_ops_t *ops = a->large ? &ms_topo_fullmesh_ops : a->then;
    const ms_topo_params_t *params = a->large ? &fullmesh_params : &a->params;
    ms_topo_t *fresh = NULL;
    ms_topo_diff_t scratch, change;
    ms_topo_diff_init(&scratch);
    ms_topo_diff_init(&change);
    /* Through the registry: it picks the sphere for delaunay with geo positions. */
    ms_err_t err = ms_topo_create(ops->name, params, &fresh);
    for (size_t p = 0; p < a->n_slots && err == MS_OK; p++) {
        if (!a->present[p])
            continue;
        ms_topo_diff_clear(&scratch);
        err = fresh->ops->join(fresh, (ms_peer_t)p, a->pos[p], &scratch);
    }
    collect_t c = {.diff = &change, .connect = 0, .err = err};
    if (err == MS_OK) {
        a->inner->ops->edges(a->inner, collect, &c);
        c.connect = 1;
        fresh->ops->edges(fresh, collect, &c);
        err = c.err;
    }
    if (err == MS_OK) {
        ms_topo_diff_normalize(&change);
        for (size_t i = 0; i < change.n_connect && err == MS_OK; i++)
            err = ms_topo_diff_connect(diff, change.connect[i].a, change.connect[i].b,
                                       change.connect[i].kind);
        for (size_t i = 0; i < change.n_disconnect && err == MS_OK; i++)
            err = ms_topo_diff_disconnect(diff, change.disconnect[i].a, change.disconnect[i].b,
                                          change.disconnect[i].kind);
    }
    if (err == MS_OK) {
        a->inner->ops->destroy(a->inner);
        a->inner = fresh;
        fresh = NULL;
        a->large = !a->large;
        a->switches++;
        a->last_switch_edges = change.n_connect + change.n_disconnect;
        if (a->last_switch_edges > a->max_switch_edges)
            a->max_switch_edges = a->last_switch_edges;
    }
    if (fresh)
        fresh->ops->destroy(fresh);
    ms_topo_diff_cleanup(&scratch);
    ms_topo_diff_cleanup(&change);
    return err;
}

/* After a join or leave: switch when the count crossed a bound. A switch that
 * fails (out of memory) keeps the engine in use, which is still consistent. */
static ms_err_t maybe_switch(adaptive_t *a, ms_topo_diff_t *diff)
{
    int want_large = a->large ? a->count > a->down_at : a->count > a->up_to;
    if (want_large == a->large)
        return MS_OK;
    ms_err_t err = switch_engine(a, diff);
    ms_topo_diff_normalize(diff);
    return err;
}

static ms_err_t ad_join(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    adaptive_t *a = (adaptive_t *)t;
    if (p >= MS_PEER_MAX)
        return MS_ERR_INVAL;
    if (ad_has(a, p))
        return MS_ERR_EXISTS;
    ms_err_t err = ad_grow(a, p);
    if (err != MS_OK)
        return err;
    if ((err = a->inner->ops->join(a->inner, p, pos, diff)) != MS_OK)
        return err;
    a->present[p] = 1;
    a->pos[p] = pos;
    a->count++;
    return maybe_switch(a, diff);
}

static ms_err_t ad_leave(ms_topo_t *t, ms_peer_t p, ms_topo_diff_t *diff)
{
    adaptive_t *a = (adaptive_t *)t;
    if (!ad_has(a, p))
        return MS_ERR_NOTFOUND;
    ms_err_t err = a->inner->ops->leave(a->inner, p, diff);
    if (err != MS_OK && err != MS_ERR_NOMEM)
        return err;
    a->present[p] = 0;
    a->count--;
    ms_err_t e2 = maybe_switch(a, diff);
    return err != MS_OK ? err : e2;
}

static ms_err_t ad_move(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    adaptive_t *a = (adaptive_t *)t;
    if (!ad_has(a, p))
        return MS_ERR_NOTFOUND;
    a->pos[p] = pos; /* kept for the next switch even while the full mesh ignores it */
    if (!a->inner->ops->move)
        return MS_OK;
    return a->inner->ops->move(a->inner, p, pos, diff);
}

static size_t ad_neighbours(const ms_topo_t *t, ms_peer_t p, ms_peer_t *out, size_t max)
{
    const adaptive_t *a = (const adaptive_t *)t;
    return a->inner->ops->neighbours(a->inner, p, out, max);
}

static int ad_adjacent(const ms_topo_t *t, ms_peer_t x, ms_peer_t y)
{
    const adaptive_t *a = (const adaptive_t *)t;
    return a->inner->ops->adjacent(a->inner, x, y);
}

static void ad_edges(const ms_topo_t *t, ms_topo_edge_fn fn, void *ud)
{
    const adaptive_t *a = (const adaptive_t *)t;
    a->inner->ops->edges(a->inner, fn, ud);
}

static size_t ad_count(const ms_topo_t *t)
{
    return ((const adaptive_t *)t)->count;
}

static ms_err_t ad_restore(ms_topo_t *t, const ms_topo_report_t *reports, size_t n,
                           ms_topo_diff_t *diff)
{
    adaptive_t *a = (adaptive_t *)t;
    if (a->count != 0)
        return MS_ERR_STATE;
    ms_err_t err;
    for (size_t i = 0; i < n; i++) {
        ms_peer_t p = reports[i].peer;
        if (p >= MS_PEER_MAX)
            return MS_ERR_INVAL;
        if ((err = ad_grow(a, p)) != MS_OK)
            return err;
        if (a->present[p])
            continue;
        a->present[p] = 1;
        a->pos[p] = reports[i].pos;
        a->count++;
    }
    /* The side of the hysteresis band is not known after a takeover: the count
     * decides, with the band counted as small. */
    if (a->count > a->up_to) {
        ms_topo_t *fresh = NULL;
        if ((err = ms_topo_create(a->then->name, &a->params, &fresh)) != MS_OK)
            return err;
        a->inner->ops->destroy(a->inner);
        a->inner = fresh;
        a->large = 1;
    }
    if (a->inner->ops->restore)
        return a->inner->ops->restore(a->inner, reports, n, diff);
    return ms_topo_restore_generic(a->inner, reports, n, diff);
}

static ms_err_t ad_fail(ms_topo_t *t, ms_peer_t x, ms_peer_t y, ms_topo_diff_t *diff)
{
    adaptive_t *a = (adaptive_t *)t;
    if (!a->inner->ops->fail_edge)
        return MS_ERR_UNSUPPORTED; /* the full mesh keeps the edge */
    return a->inner->ops->fail_edge(a->inner, x, y, diff);
}

static ms_err_t ad_tick(ms_topo_t *t, uint64_t now_ms, ms_topo_diff_t *diff)
{
    adaptive_t *a = (adaptive_t *)t;
    return a->inner->ops->tick ? a->inner->ops->tick(a->inner, now_ms, diff) : MS_OK;
}

static ms_err_t ad_write_json(const ms_topo_t *t, json_t *obj)
{
    const adaptive_t *a = (const adaptive_t *)t;
    /* The engine in use writes its own statistics; the switching state goes
     * under "auto" so that no name collides. */
    if (a->inner->ops->write_json) {
        ms_err_t err = a->inner->ops->write_json(a->inner, obj);
        if (err != MS_OK)
            return err;
    }
    json_t *au =
        json_pack("{s:s, s:i, s:i, s:I, s:I, s:I}", "mode", a->inner->ops->name, "fullmeshUpTo",
                  (int)a->up_to, "backAt", (int)a->down_at, "switches", (json_int_t)a->switches,
                  "edgesChangedLastSwitch", (json_int_t)a->last_switch_edges,
                  "edgesChangedMaxSwitch", (json_int_t)a->max_switch_edges);
    return au && !json_object_set_new(obj, "auto", au) ? MS_OK : MS_ERR_NOMEM;
}

void ms_adaptive_stats(const ms_topo_t *t, ms_adaptive_stats_t *out)
{
    const adaptive_t *a = (const adaptive_t *)t;
    out->large = a->large;
    out->inner = a->inner;
    out->switches = a->switches;
    out->last_switch_edges = a->last_switch_edges;
}

const ms_topo_ops_t ms_topo_adaptive_ops = {
    .name = "auto",
    .create = ad_create,
    .destroy = ad_destroy,
    .join = ad_join,
    .leave = ad_leave,
    .move = ad_move,
    .neighbours = ad_neighbours,
    .adjacent = ad_adjacent,
    .edges = ad_edges,
    .count = ad_count,
    .restore = ad_restore,
    .fail_edge = ad_fail,
    .tick = ad_tick,
    .write_json = ad_write_json,
};

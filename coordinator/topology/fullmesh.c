/* SPDX-License-Identifier: Apache-2.0 */
/* Full mesh: every pair of peers is an edge, up to an optional cap. */
#include <stdlib.h>
#include <string.h>

#include "topology.h"

/* 40 bytes (a 48-byte malloc chunk) with the presence of handles below FM_SMALL inside:
 * most full meshes are small (the native protocol's pairs of peers), and a separate array
 * would be another 32-byte chunk each. */
#define FM_SMALL 12

typedef struct {
    ms_topo_t base;
    uint32_t cap;
    uint32_t count;
    uint8_t *present; /* indexed by handle: small, or an array of n_slots */
    uint32_t n_slots;
    uint8_t small[FM_SMALL];
} fullmesh_t;

static ms_err_t fm_create(const ms_topo_params_t *params, ms_topo_t **out)
{
    fullmesh_t *f = calloc(1, sizeof(*f));
    if (!f)
        return MS_ERR_NOMEM;
    f->base.ops = &ms_topo_fullmesh_ops;
    f->cap = params ? params->cap : 0;
    f->present = f->small;
    f->n_slots = FM_SMALL;
    *out = &f->base;
    return MS_OK;
}

static void fm_destroy(ms_topo_t *t)
{
    fullmesh_t *f = (fullmesh_t *)t;
    if (!f)
        return;
    if (f->present != f->small)
        free(f->present);
    free(f);
}

static int fm_has(const fullmesh_t *f, ms_peer_t p)
{
    return p < f->n_slots && f->present[p];
}

static ms_err_t fm_join(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    fullmesh_t *f = (fullmesh_t *)t;
    (void)pos;
    if (p >= MS_PEER_MAX)
        return MS_ERR_INVAL;
    if (fm_has(f, p))
        return MS_ERR_EXISTS;
    if (f->cap && f->count >= f->cap)
        return MS_ERR_FULL;
    if (p >= f->n_slots) {
        size_t n = 32;
        while (n <= p)
            n *= 2;
        uint8_t *np = realloc(f->present == f->small ? NULL : f->present, n);
        if (!np)
            return MS_ERR_NOMEM;
        if (f->present == f->small)
            memcpy(np, f->small, FM_SMALL);
        memset(np + f->n_slots, 0, n - f->n_slots);
        f->present = np;
        f->n_slots = (uint32_t)n;
    }
    for (size_t q = 0; q < f->n_slots; q++) {
        if (!f->present[q])
            continue;
        ms_err_t err = ms_topo_diff_connect(diff, (ms_peer_t)q, p, MS_EDGE_PEER);
        if (err != MS_OK)
            return err;
    }
    f->present[p] = 1;
    f->count++;
    return MS_OK;
}

static ms_err_t fm_leave(ms_topo_t *t, ms_peer_t p, ms_topo_diff_t *diff)
{
    fullmesh_t *f = (fullmesh_t *)t;
    if (!fm_has(f, p))
        return MS_ERR_NOTFOUND;
    f->present[p] = 0;
    f->count--;
    for (size_t q = 0; q < f->n_slots; q++) {
        if (!f->present[q])
            continue;
        ms_err_t err = ms_topo_diff_disconnect(diff, (ms_peer_t)q, p, MS_EDGE_PEER);
        if (err != MS_OK)
            return err;
    }
    return MS_OK;
}

static size_t fm_neighbours(const ms_topo_t *t, ms_peer_t p, ms_peer_t *out, size_t max)
{
    const fullmesh_t *f = (const fullmesh_t *)t;
    if (!fm_has(f, p))
        return 0;
    size_t n = 0;
    for (size_t q = 0; q < f->n_slots; q++) {
        if (!f->present[q] || q == p)
            continue;
        if (n < max)
            out[n] = (ms_peer_t)q;
        n++;
    }
    return n;
}

static int fm_adjacent(const ms_topo_t *t, ms_peer_t a, ms_peer_t b)
{
    const fullmesh_t *f = (const fullmesh_t *)t;
    return a != b && fm_has(f, a) && fm_has(f, b);
}

static void fm_edges(const ms_topo_t *t, ms_topo_edge_fn fn, void *ud)
{
    const fullmesh_t *f = (const fullmesh_t *)t;
    for (size_t a = 0; a < f->n_slots; a++) {
        if (!f->present[a])
            continue;
        for (size_t b = a + 1; b < f->n_slots; b++)
            if (f->present[b])
                fn((ms_peer_t)a, (ms_peer_t)b, MS_EDGE_PEER, ud);
    }
}

static size_t fm_count(const ms_topo_t *t)
{
    return ((const fullmesh_t *)t)->count;
}

static ms_err_t fm_write_json(const ms_topo_t *t, json_t *obj)
{
    const fullmesh_t *f = (const fullmesh_t *)t;
    if (json_object_set_new(obj, "cap", json_integer(f->cap)) != 0)
        return MS_ERR_NOMEM;
    return MS_OK;
}

const ms_topo_ops_t ms_topo_fullmesh_ops = {
    .name = "fullmesh",
    .create = fm_create,
    .destroy = fm_destroy,
    .join = fm_join,
    .leave = fm_leave,
    .move = NULL,
    .neighbours = fm_neighbours,
    .adjacent = fm_adjacent,
    .edges = fm_edges,
    .count = fm_count,
    .restore = NULL,
    .tick = NULL,
    .write_json = fm_write_json,
};

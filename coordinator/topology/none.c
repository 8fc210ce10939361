/* SPDX-License-Identifier: Apache-2.0 */
/* The "none" engine: membership without edges, for namespaces whose peers pick their own partners.
 *
 * PeerJS apps (and any app that only needs "signal any peer by id") want the
 * registry and signal routing of a namespace but no topology events: with
 * `signals: any` a peer reaches every other by id, and nobody is told to
 * connect to anybody. The engine only counts its members.
 */
#include <stdlib.h>

#include "topology.h"

typedef struct {
    ms_topo_t base;
    size_t n;
} none_t;

static ms_err_t none_create(const ms_topo_params_t *params, ms_topo_t **out)
{
    (void)params;
    none_t *t = calloc(1, sizeof(*t));
    if (!t)
        return MS_ERR_NOMEM;
    t->base.ops = &ms_topo_none_ops;
    *out = &t->base;
    return MS_OK;
}

static void none_destroy(ms_topo_t *t)
{
    free(t);
}

static ms_err_t none_join(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    (void)p, (void)pos, (void)diff;
    ((none_t *)t)->n++;
    return MS_OK;
}

static ms_err_t none_leave(ms_topo_t *t, ms_peer_t p, ms_topo_diff_t *diff)
{
    (void)p, (void)diff;
    none_t *n = (none_t *)t;
    if (n->n)
        n->n--;
    return MS_OK;
}

static size_t none_neighbours(const ms_topo_t *t, ms_peer_t p, ms_peer_t *out, size_t max)
{
    (void)t, (void)p, (void)out, (void)max;
    return 0;
}

static int none_adjacent(const ms_topo_t *t, ms_peer_t a, ms_peer_t b)
{
    (void)t, (void)a, (void)b;
    return 0;
}

static void none_edges(const ms_topo_t *t, ms_topo_edge_fn fn, void *ud)
{
    (void)t, (void)fn, (void)ud;
}

static size_t none_count(const ms_topo_t *t)
{
    return ((const none_t *)t)->n;
}

const ms_topo_ops_t ms_topo_none_ops = {
    .name = "none",
    .create = none_create,
    .destroy = none_destroy,
    .join = none_join,
    .leave = none_leave,
    .move = NULL,
    .neighbours = none_neighbours,
    .adjacent = none_adjacent,
    .edges = none_edges,
    .count = none_count,
    .restore = NULL,
    .tick = NULL,
    .write_json = NULL,
};

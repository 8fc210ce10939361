/* SPDX-License-Identifier: Apache-2.0 */
/* Edge diffs, the engine registry (which also picks plane or sphere for "delaunay") and the
 * generic takeover restore. */
#include <stdlib.h>
#include <string.h>

#include "adaptive.h"
#include "relink.h"
#include "topology.h"
#include "tree.h"

static const ms_topo_ops_t *const engines[] = {
    &ms_topo_fullmesh_ops, &ms_topo_tree_ops,     &ms_topo_spray_ops,
    &ms_topo_delaunay_ops, &ms_topo_adaptive_ops, &ms_topo_none_ops,
};

const ms_topo_ops_t *ms_topo_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof(engines) / sizeof(engines[0]); i++)
        if (strcmp(engines[i]->name, name) == 0)
            return engines[i];
    return NULL;
}

ms_err_t ms_topo_create(const char *name, const ms_topo_params_t *params, ms_topo_t **out)
{
    const ms_topo_ops_t *ops = ms_topo_find(name);
    if (!ops)
        return MS_ERR_INVAL;
    /* One name, two spaces: geo.c builds the sphere on the plane engine, and
     * the plane engine knows nothing of it. */
    int geo = ops == &ms_topo_delaunay_ops && params && params->geo;
    if (geo)
        ops = &ms_topo_geo_ops;
    ms_err_t err = ops->create(params, out);
    /* A Delaunay engine cannot drop a failed edge: relink.c adds links around it. */
    if (err == MS_OK && ops != &ms_topo_delaunay_ops && ops != &ms_topo_geo_ops)
        return MS_OK;
    return err == MS_OK ? ms_relink_wrap(*out, geo, out) : err;
}

ms_err_t ms_topo_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return MS_OK;
    size_t n = *cap ? *cap : 16;
    while (n < need)
        n *= 2;
    void *np = realloc(*p, n * elem);
    if (!np)
        return MS_ERR_NOMEM;
    *p = np;
    *cap = n;
    return MS_OK;
}

void ms_topo_diff_init(ms_topo_diff_t *d)
{
    memset(d, 0, sizeof(*d));
}

void ms_topo_diff_cleanup(ms_topo_diff_t *d)
{
    free(d->connect);
    free(d->disconnect);
    memset(d, 0, sizeof(*d));
}

void ms_topo_diff_clear(ms_topo_diff_t *d)
{
    d->n_connect = 0;
    d->n_disconnect = 0;
}

static ms_err_t edge_push(ms_edge_t **v, size_t *n, size_t *cap, ms_peer_t a, ms_peer_t b,
                          uint8_t kind)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        ms_edge_t *nv = realloc(*v, ncap * sizeof(**v));
        if (!nv)
            return MS_ERR_NOMEM;
        *v = nv;
        *cap = ncap;
    }
    if (kind == MS_EDGE_PEER && a > b) {
        ms_peer_t t = a;
        a = b;
        b = t;
    }
    (*v)[(*n)++] = (ms_edge_t){.a = a, .b = b, .kind = kind};
    return MS_OK;
}

ms_err_t ms_topo_diff_connect(ms_topo_diff_t *d, ms_peer_t a, ms_peer_t b, uint8_t kind)
{
    return edge_push(&d->connect, &d->n_connect, &d->cap_connect, a, b, kind);
}

ms_err_t ms_topo_diff_disconnect(ms_topo_diff_t *d, ms_peer_t a, ms_peer_t b, uint8_t kind)
{
    return edge_push(&d->disconnect, &d->n_disconnect, &d->cap_disconnect, a, b, kind);
}

int ms_edge_cmp(const void *x, const void *y)
{
    const ms_edge_t *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    if (p->b != q->b)
        return p->b < q->b ? -1 : 1;
    return (int)p->kind - (int)q->kind;
}

static size_t edge_unique(ms_edge_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), ms_edge_cmp);
    size_t w = 1;
    for (size_t i = 1; i < n; i++)
        if (ms_edge_cmp(&v[i], &v[w - 1]) != 0)
            v[w++] = v[i];
    return w;
}

void ms_topo_diff_normalize(ms_topo_diff_t *d)
{
    d->n_connect = edge_unique(d->connect, d->n_connect);
    d->n_disconnect = edge_unique(d->disconnect, d->n_disconnect);
    /* Merge-walk the two sorted lists, dropping what appears in both. */
    size_t i = 0, j = 0, wc = 0, wd = 0;
    while (i < d->n_connect || j < d->n_disconnect) {
        int c;
        if (i == d->n_connect)
            c = 1;
        else if (j == d->n_disconnect)
            c = -1;
        else
            c = ms_edge_cmp(&d->connect[i], &d->disconnect[j]);
        if (c == 0) {
            i++;
            j++;
        } else if (c < 0) {
            d->connect[wc++] = d->connect[i++];
        } else {
            d->disconnect[wd++] = d->disconnect[j++];
        }
    }
    d->n_connect = wc;
    d->n_disconnect = wd;
}

typedef struct {
    ms_topo_diff_t *diff;
    ms_err_t err;
} collect_ctx_t;

static void collect_edge(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    collect_ctx_t *c = ud;
    if (c->err == MS_OK)
        c->err = ms_topo_diff_connect(c->diff, a, b, kind);
}

ms_err_t ms_topo_restore_generic(ms_topo_t *t, const ms_topo_report_t *reports, size_t n,
                                 ms_topo_diff_t *diff)
{
    ms_topo_diff_t scratch;
    ms_topo_diff_init(&scratch);
    ms_err_t err = MS_OK;
    for (size_t i = 0; i < n; i++) {
        ms_topo_diff_clear(&scratch);
        err = t->ops->join(t, reports[i].peer, reports[i].pos, &scratch);
        if (err != MS_OK)
            goto fail;
    }
    /* diff = (edges now) - (edges reported), as connects and disconnects. */
    collect_ctx_t ctx = {.diff = diff, .err = MS_OK};
    t->ops->edges(t, collect_edge, &ctx);
    if ((err = ctx.err) != MS_OK)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        const ms_topo_report_t *r = &reports[i];
        for (size_t k = 0; k < r->n_neighbours; k++) {
            /* Reported by either end counts; normalize drops the duplicate. */
            ms_peer_t o = r->neighbours[k];
            if ((err = ms_topo_diff_disconnect(diff, r->peer, o, MS_EDGE_PEER)) != MS_OK)
                goto fail;
        }
        if (r->parent != MS_PEER_NONE &&
            (err = ms_topo_diff_disconnect(diff, r->parent, r->peer, MS_EDGE_TREE)) != MS_OK)
            goto fail;
    }
    ms_topo_diff_normalize(diff);
fail:
    ms_topo_diff_cleanup(&scratch);
    return err;
}

typedef struct {
    ms_peer_t peer;
    uint32_t key; /* where ops->edges gives the edge: the end below p, else p */
    size_t at;    /* its place among the neighbours: ties keep it */
} edge_of_t;

static int edge_of_cmp(const void *a, const void *b)
{
    const edge_of_t *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

ms_err_t ms_topo_edges_of(const ms_topo_t *t, ms_peer_t p, ms_topo_diff_t *diff)
{
    const ms_topo_t *in_use = t;
    if (t->ops == &ms_topo_adaptive_ops) {
        ms_adaptive_stats_t st;
        ms_adaptive_stats(t, &st);
        in_use = st.inner;
    }
    int tree = in_use->ops == &ms_topo_tree_ops;
    ms_peer_t parent = tree ? ms_tree_parent(in_use, p) : MS_PEER_NONE;
    ms_peer_t buf[64], *nb = buf;
    size_t n = t->ops->neighbours(t, p, buf, 64);
    if (n > 64) {
        if (!(nb = malloc(n * sizeof(*nb))))
            return MS_ERR_NOMEM;
        n = t->ops->neighbours(t, p, nb, n);
    }
    edge_of_t small[64], *e = n <= 64 ? small : malloc(n * sizeof(*e));
    ms_err_t err = e ? MS_OK : MS_ERR_NOMEM;
    for (size_t i = 0; e && i < n; i++) {
        ms_peer_t q = nb[i];
        /* A tree's edges come at the child's handle; others' at the smaller end's. */
        uint32_t key = tree ? (q == parent ? p : q) : (q < p ? q : p);
        e[i] = (edge_of_t){.peer = q, .key = key, .at = i};
    }
    if (e)
        qsort(e, n, sizeof(*e), edge_of_cmp);
    for (size_t i = 0; e && i < n && err == MS_OK; i++) {
        ms_peer_t q = e[i].peer;
        if (!tree)
            err = ms_topo_diff_connect(diff, p, q, MS_EDGE_PEER);
        else if (q == parent)
            err = ms_topo_diff_connect(diff, q, p, MS_EDGE_TREE);
        else
            err = ms_topo_diff_connect(diff, p, q, MS_EDGE_TREE);
    }
    if (e != small)
        free(e);
    if (nb != buf)
        free(nb);
    return err;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Failed-edge repair for the Delaunay engines: extra links to the nearest peers not yet linked.
 *
 * Why a wrapper. The Delaunay edges are a function of the positions, so the
 * engine cannot drop one that fails; what it can do is add links. This file
 * keeps those additions apart from the triangulation (plane or sphere alike):
 * the inner engine stays exact and pure, and its tests stay brute-force
 * comparisons.
 *
 * State per peer: its position (the quantised plane point, or the unit vector
 * on the sphere), its extra links (symmetric lists, never an inner edge too)
 * and its failed partners (symmetric lists).
 *
 * Rules
 *   fail(a, b)  a-b is remembered as failed; if it was an extra link it goes
 *               (it is ours), an inner edge stays. Each end gains an extra link
 *               to its nearest peer neither linked nor failed with it (ties by
 *               key, then handle), so a failure costs neither end a link.
 *   any change  the inner engine's diff passes through, except that an inner
 *               edge that appears where an extra link was takes its place (the
 *               extra record goes, nothing is announced), and an inner edge that
 *               appears between a failed pair clears the mark (the peers are
 *               told to connect again: a new attempt). Then every end of a
 *               removed edge that has a failed partner and fewer than 2 working
 *               links (links to peers it has not failed with) gains extra links
 *               to its nearest candidates until it has 2 or there is none left.
 *   leave(q)    q's extra links and failed pairs go with it.
 * Hence the invariant the tests check: a peer p with a failed partner has at
 * least min(2, N - 1 - failed(p)) working links; a peer without one has at
 * least its inner links.
 *
 * Cost. With no failed pair and no extra link every call goes straight to the
 * inner engine. Otherwise a diff is copied once, and a nearest-peer search is
 * O(N) (a scan; failures are rare and the scan is exact on the sphere too).
 * Extra links live until an end leaves or the link fails: a working WebRTC
 * connection is not torn down because the triangulation moved.
 *
 * Across a coordinator takeover: the restore is the generic one (inner edges
 * only), then the rebuild fails again, in the same diff, each edge the
 * gateways report failed for good (edges.c, ms_edges_restore_repairs), so the
 * failed marks and the extra links come back and cancel their disconnects.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "delaunay.h"
#include "relink.h"
#include "topology.h"

typedef struct {
    double x, y, z; /* plane (x, y, 0) or a unit vector: squared distances compare alike */
    uint64_t key;
    ms_peer_t *extra; /* links outside the inner engine */
    uint32_t n_extra, cap_extra;
    ms_peer_t *failed; /* partners of failed edges */
    uint32_t n_failed, cap_failed;
    uint8_t present;
} rl_peer_t;

typedef struct {
    ms_topo_t base;
    ms_topo_t *in;
    int geo;
    rl_peer_t *peer; /* by handle */
    size_t n_slots;
    uint64_t failed_pairs, extra_links, links_added;
    ms_topo_diff_t scratch; /* the inner engine's diff of the current call */
    ms_peer_t *nb;          /* neighbour lists */
    size_t cap_nb;
    uint32_t *stamp; /* by handle: marks p's links during a search */
    uint32_t gen;
    ms_peer_t *touched; /* peers to check after the current call */
    size_t n_touched, cap_touched;
    /* Peers below 2 working links with nobody left to link: a newcomer may be. */
    ms_peer_t *starved;
    size_t n_starved, cap_starved;
} rl_t;

/* ---- symmetric lists ---- */

static int list_has(const ms_peer_t *v, uint32_t n, ms_peer_t x)
{
    for (uint32_t i = 0; i < n; i++)
        if (v[i] == x)
            return 1;
    return 0;
}

static void list_del(ms_peer_t *v, uint32_t *n, ms_peer_t x)
{
    for (uint32_t i = 0; i < *n; i++)
        if (v[i] == x) {
            v[i] = v[--*n];
            return;
        }
}

static ms_err_t list_reserve(ms_peer_t **v, uint32_t *cap, uint32_t need)
{
    if (need <= *cap)
        return MS_OK;
    size_t c = *cap;
    if (ms_topo_grow((void **)v, &c, need, sizeof(**v)) != MS_OK)
        return MS_ERR_NOMEM;
    *cap = (uint32_t)c;
    return MS_OK;
}

static int extra_has(const rl_t *t, ms_peer_t a, ms_peer_t b)
{
    const rl_peer_t *pa = &t->peer[a], *pb = &t->peer[b];
    return pa->n_extra <= pb->n_extra ? list_has(pa->extra, pa->n_extra, b)
                                      : list_has(pb->extra, pb->n_extra, a);
}

static int failed_has(const rl_t *t, ms_peer_t a, ms_peer_t b)
{
    const rl_peer_t *pa = &t->peer[a], *pb = &t->peer[b];
    return pa->n_failed <= pb->n_failed ? list_has(pa->failed, pa->n_failed, b)
                                        : list_has(pb->failed, pb->n_failed, a);
}

static void extra_del(rl_t *t, ms_peer_t a, ms_peer_t b)
{
    list_del(t->peer[a].extra, &t->peer[a].n_extra, b);
    list_del(t->peer[b].extra, &t->peer[b].n_extra, a);
    t->extra_links--;
}

static void failed_del(rl_t *t, ms_peer_t a, ms_peer_t b)
{
    list_del(t->peer[a].failed, &t->peer[a].n_failed, b);
    list_del(t->peer[b].failed, &t->peer[b].n_failed, a);
    t->failed_pairs--;
}

static int present(const rl_t *t, ms_peer_t p)
{
    return p < t->n_slots && t->peer[p].present;
}

static int linked(const rl_t *t, ms_peer_t a, ms_peer_t b)
{
    return extra_has(t, a, b) || t->in->ops->adjacent(t->in, a, b);
}

static size_t working(const rl_t *t, ms_peer_t p)
{
    const rl_peer_t *pp = &t->peer[p];
    size_t n = t->in->ops->neighbours(t->in, p, NULL, 0) + pp->n_extra;
    for (uint32_t i = 0; i < pp->n_failed; i++)
        n -= (size_t)linked(t, p, pp->failed[i]);
    return n;
}

static ms_err_t touch(rl_t *t, ms_peer_t p)
{
    if (t->n_touched == t->cap_touched &&
        ms_topo_grow((void **)&t->touched, &t->cap_touched, t->n_touched + 1,
                     sizeof(*t->touched)) != MS_OK)
        return MS_ERR_NOMEM;
    t->touched[t->n_touched++] = p;
    return MS_OK;
}

/* ---- the nearest candidate ---- */

static double dist2(const rl_peer_t *a, const rl_peer_t *b)
{
    double dx = a->x - b->x, dy = a->y - b->y, dz = a->z - b->z;
    return dx * dx + dy * dy + dz * dz;
}

static void new_gen(rl_t *t)
{
    if (++t->gen == 0) {
        memset(t->stamp, 0, t->n_slots * sizeof(*t->stamp));
        t->gen = 1;
    }
}

/* p's nearest peer that is neither p, nor linked, nor failed with it; NONE if there is none. */
static ms_err_t nearest(rl_t *t, ms_peer_t p, ms_peer_t *out)
{
    *out = MS_PEER_NONE;
    size_t n = t->in->ops->neighbours(t->in, p, t->nb, t->cap_nb);
    if (n > t->cap_nb) {
        if (ms_topo_grow((void **)&t->nb, &t->cap_nb, n, sizeof(*t->nb)) != MS_OK)
            return MS_ERR_NOMEM;
        n = t->in->ops->neighbours(t->in, p, t->nb, t->cap_nb);
    }
    new_gen(t);
    const rl_peer_t *pp = &t->peer[p];
    t->stamp[p] = t->gen;
    for (size_t i = 0; i < n; i++)
        t->stamp[t->nb[i]] = t->gen;
    for (uint32_t i = 0; i < pp->n_extra; i++)
        t->stamp[pp->extra[i]] = t->gen;
    for (uint32_t i = 0; i < pp->n_failed; i++)
        t->stamp[pp->failed[i]] = t->gen;
    ms_peer_t best = MS_PEER_NONE;
    double bd = 0;
    for (size_t q = 0; q < t->n_slots; q++) {
        const rl_peer_t *qq = &t->peer[q];
        if (!qq->present || t->stamp[q] == t->gen)
            continue;
        double d = dist2(pp, qq);
        if (best == MS_PEER_NONE || d < bd ||
            (d == bd &&
             (qq->key < t->peer[best].key || (qq->key == t->peer[best].key && q < best)))) {
            best = (ms_peer_t)q;
            bd = d;
        }
    }
    *out = best;
    return MS_OK;
}

/* Links p and z outside the inner engine. `from` is where this call's part of
 * out begins: a disconnect of the same pair there (an inner edge that went) is
 * cancelled instead of announcing a connect. */
static ms_err_t extra_add(rl_t *t, ms_peer_t p, ms_peer_t z, ms_topo_diff_t *out, size_t from)
{
    rl_peer_t *pp = &t->peer[p], *zz = &t->peer[z];
    if (list_reserve(&pp->extra, &pp->cap_extra, pp->n_extra + 1) != MS_OK ||
        list_reserve(&zz->extra, &zz->cap_extra, zz->n_extra + 1) != MS_OK)
        return MS_ERR_NOMEM;
    ms_peer_t a = p < z ? p : z, b = p < z ? z : p;
    int cancelled = 0;
    for (size_t i = from; i < out->n_disconnect; i++)
        if (out->disconnect[i].a == a && out->disconnect[i].b == b) {
            out->disconnect[i] = out->disconnect[--out->n_disconnect];
            cancelled = 1;
            break;
        }
    if (!cancelled) {
        ms_err_t err = ms_topo_diff_connect(out, a, b, MS_EDGE_PEER);
        if (err != MS_OK)
            return err;
    }
    pp->extra[pp->n_extra++] = z;
    zz->extra[zz->n_extra++] = p;
    t->extra_links++;
    t->links_added++;
    return MS_OK;
}

static void starve(rl_t *t, ms_peer_t p)
{
    for (size_t i = 0; i < t->n_starved; i++)
        if (t->starved[i] == p)
            return;
    /* Out of memory: p waits for its next change instead of the next join. */
    if (ms_topo_grow((void **)&t->starved, &t->cap_starved, t->n_starved + 1,
                     sizeof(*t->starved)) == MS_OK)
        t->starved[t->n_starved++] = p;
}

/* Peers left with a failed partner and fewer than 2 working links gain links. */
static ms_err_t mend(rl_t *t, ms_topo_diff_t *out, size_t from)
{
    ms_err_t err = MS_OK;
    for (size_t i = 0; i < t->n_touched && err == MS_OK; i++) {
        ms_peer_t p = t->touched[i];
        if (!present(t, p) || t->peer[p].n_failed == 0)
            continue;
        /* Bounded: each round links p to one more peer, or stops. */
        for (size_t w = working(t, p); w < 2 && err == MS_OK; w++) {
            ms_peer_t z;
            if ((err = nearest(t, p, &z)) != MS_OK)
                break;
            if (z == MS_PEER_NONE) {
                starve(t, p);
                break;
            }
            err = extra_add(t, p, z, out, from);
        }
    }
    t->n_touched = 0;
    return err;
}

/* Passes the inner engine's diff (in scratch) to out; see the top comment. */
static ms_err_t absorb(rl_t *t, ms_topo_diff_t *out)
{
    const ms_topo_diff_t *d = &t->scratch;
    ms_err_t err = MS_OK;
    for (size_t i = 0; i < d->n_connect && err == MS_OK; i++) {
        ms_peer_t a = d->connect[i].a, b = d->connect[i].b;
        if (extra_has(t, a, b)) {
            extra_del(t, a, b);
            continue;
        }
        if (failed_has(t, a, b))
            failed_del(t, a, b);
        err = ms_topo_diff_connect(out, a, b, d->connect[i].kind);
    }
    for (size_t i = 0; i < d->n_disconnect && err == MS_OK; i++) {
        ms_peer_t a = d->disconnect[i].a, b = d->disconnect[i].b;
        if ((err = ms_topo_diff_disconnect(out, a, b, d->disconnect[i].kind)) == MS_OK &&
            (err = touch(t, a)) == MS_OK)
            err = touch(t, b);
    }
    return err;
}

static int quiet(const rl_t *t)
{
    return t->failed_pairs == 0 && t->extra_links == 0;
}

/* ---- ops ---- */

static void set_pos(rl_t *t, ms_peer_t p, ms_topo_pos_t pos)
{
    rl_peer_t *pp = &t->peer[p];
    if (t->geo) {
        const double r = 3.14159265358979323846 / 180.0;
        double lo = pos.x * r, la = pos.y * r;
        pp->x = cos(la) * cos(lo);
        pp->y = cos(la) * sin(lo);
        pp->z = sin(la);
    } else {
        pp->x = (double)ms_delaunay_quantize(pos.x);
        pp->y = (double)ms_delaunay_quantize(pos.y);
        pp->z = 0;
    }
    pp->key = pos.key;
}

static ms_err_t grow_slots(rl_t *t, ms_peer_t p)
{
    if (p < t->n_slots)
        return MS_OK;
    size_t n = t->n_slots ? t->n_slots : 16;
    while (n <= p)
        n *= 2;
    rl_peer_t *np = realloc(t->peer, n * sizeof(*np));
    if (!np)
        return MS_ERR_NOMEM;
    memset(np + t->n_slots, 0, (n - t->n_slots) * sizeof(*np));
    t->peer = np;
    uint32_t *st = realloc(t->stamp, n * sizeof(*st));
    if (!st)
        return MS_ERR_NOMEM; /* n_slots stays: the next join retries */
    memset(st, 0, n * sizeof(*st));
    t->stamp = st;
    t->gen = 0;
    t->n_slots = n;
    return MS_OK;
}

static ms_err_t rl_join(ms_topo_t *base, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    rl_t *t = (rl_t *)base;
    if (p >= MS_PEER_MAX || !isfinite(pos.x) || !isfinite(pos.y))
        return MS_ERR_INVAL;
    if (present(t, p))
        return MS_ERR_EXISTS;
    ms_err_t err = grow_slots(t, p);
    if (err != MS_OK)
        return err;
    size_t before = t->in->ops->count(t->in);
    if (quiet(t)) {
        err = t->in->ops->join(t->in, p, pos, diff);
    } else {
        size_t from = diff->n_disconnect;
        ms_topo_diff_clear(&t->scratch);
        err = t->in->ops->join(t->in, p, pos, &t->scratch);
        if (t->in->ops->count(t->in) > before) {
            set_pos(t, p, pos);
            t->peer[p].present = 1;
        }
        /* The newcomer may be the link a starved peer waits for. */
        ms_err_t e2 = MS_OK;
        for (size_t i = 0; i < t->n_starved && e2 == MS_OK; i++)
            e2 = touch(t, t->starved[i]);
        t->n_starved = 0;
        if (e2 == MS_OK)
            e2 = absorb(t, diff);
        if (e2 == MS_OK)
            e2 = mend(t, diff, from);
        if (err == MS_OK)
            err = e2;
    }
    if (t->in->ops->count(t->in) > before) {
        set_pos(t, p, pos);
        t->peer[p].present = 1;
    }
    t->n_touched = 0;
    return err;
}

static ms_err_t rl_leave(ms_topo_t *base, ms_peer_t p, ms_topo_diff_t *diff)
{
    rl_t *t = (rl_t *)base;
    if (!present(t, p))
        return MS_ERR_NOTFOUND;
    if (quiet(t)) {
        t->peer[p].present = 0;
        return t->in->ops->leave(t->in, p, diff);
    }
    size_t from = diff->n_disconnect;
    rl_peer_t *pp = &t->peer[p];
    ms_err_t err = MS_OK;
    while (pp->n_extra && err == MS_OK) {
        ms_peer_t x = pp->extra[pp->n_extra - 1];
        extra_del(t, p, x);
        if ((err = ms_topo_diff_disconnect(diff, p, x, MS_EDGE_PEER)) == MS_OK)
            err = touch(t, x);
    }
    while (pp->n_failed)
        failed_del(t, p, pp->failed[pp->n_failed - 1]);
    pp->present = 0;
    for (size_t i = 0; i < t->n_starved; i++)
        if (t->starved[i] == p) {
            t->starved[i] = t->starved[--t->n_starved];
            break;
        }
    ms_topo_diff_clear(&t->scratch);
    ms_err_t e2 = t->in->ops->leave(t->in, p, &t->scratch);
    if (err == MS_OK)
        err = absorb(t, diff);
    if (err == MS_OK)
        err = mend(t, diff, from);
    t->n_touched = 0;
    return e2 != MS_OK ? e2 : err;
}

static ms_err_t rl_move(ms_topo_t *base, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    rl_t *t = (rl_t *)base;
    if (!present(t, p))
        return MS_ERR_NOTFOUND;
    if (!isfinite(pos.x) || !isfinite(pos.y))
        return MS_ERR_INVAL;
    set_pos(t, p, pos);
    if (quiet(t))
        return t->in->ops->move(t->in, p, pos, diff);
    size_t from = diff->n_disconnect;
    ms_topo_diff_clear(&t->scratch);
    ms_err_t err = t->in->ops->move(t->in, p, pos, &t->scratch);
    ms_err_t e2 = absorb(t, diff);
    if (e2 == MS_OK)
        e2 = mend(t, diff, from);
    t->n_touched = 0;
    return err != MS_OK ? err : e2;
}

static ms_err_t rl_fail(ms_topo_t *base, ms_peer_t a, ms_peer_t b, ms_topo_diff_t *diff)
{
    rl_t *t = (rl_t *)base;
    if (a == b || !present(t, a) || !present(t, b))
        return MS_ERR_NOTFOUND;
    if (failed_has(t, a, b))
        return MS_OK;
    if (!linked(t, a, b))
        return MS_ERR_NOTFOUND;
    rl_peer_t *pa = &t->peer[a], *pb = &t->peer[b];
    if (list_reserve(&pa->failed, &pa->cap_failed, pa->n_failed + 1) != MS_OK ||
        list_reserve(&pb->failed, &pb->cap_failed, pb->n_failed + 1) != MS_OK)
        return MS_ERR_NOMEM;
    pa->failed[pa->n_failed++] = b;
    pb->failed[pb->n_failed++] = a;
    t->failed_pairs++;
    size_t from = diff->n_disconnect;
    ms_err_t err = MS_OK;
    if (extra_has(t, a, b)) {
        extra_del(t, a, b);
        err = ms_topo_diff_disconnect(diff, a, b, MS_EDGE_PEER);
    }
    /* Each end replaces the link it lost, then both are checked against the bound. */
    ms_peer_t ends[2] = {a, b};
    for (int i = 0; i < 2 && err == MS_OK; i++) {
        ms_peer_t z;
        if ((err = nearest(t, ends[i], &z)) == MS_OK && z != MS_PEER_NONE)
            err = extra_add(t, ends[i], z, diff, from);
    }
    if (err == MS_OK && (err = touch(t, a)) == MS_OK && (err = touch(t, b)) == MS_OK)
        err = mend(t, diff, from);
    t->n_touched = 0;
    return err;
}

static size_t rl_neighbours(const ms_topo_t *base, ms_peer_t p, ms_peer_t *out, size_t max)
{
    const rl_t *t = (const rl_t *)base;
    if (!present(t, p))
        return 0;
    size_t n = t->in->ops->neighbours(t->in, p, out, max);
    const rl_peer_t *pp = &t->peer[p];
    for (uint32_t i = 0; i < pp->n_extra; i++, n++)
        if (n < max)
            out[n] = pp->extra[i];
    return n;
}

static int rl_adjacent(const ms_topo_t *base, ms_peer_t a, ms_peer_t b)
{
    const rl_t *t = (const rl_t *)base;
    return a != b && present(t, a) && present(t, b) && linked(t, a, b);
}

static void rl_edges(const ms_topo_t *base, ms_topo_edge_fn fn, void *ud)
{
    const rl_t *t = (const rl_t *)base;
    t->in->ops->edges(t->in, fn, ud);
    for (size_t p = 0; p < t->n_slots && t->extra_links; p++) {
        const rl_peer_t *pp = &t->peer[p];
        for (uint32_t i = 0; pp->present && i < pp->n_extra; i++)
            if (pp->extra[i] > p)
                fn((ms_peer_t)p, pp->extra[i], MS_EDGE_PEER, ud);
    }
}

static size_t rl_count(const ms_topo_t *base)
{
    const rl_t *t = (const rl_t *)base;
    return t->in->ops->count(t->in);
}

static ms_err_t rl_write_json(const ms_topo_t *base, json_t *obj)
{
    const rl_t *t = (const rl_t *)base;
    if (t->in->ops->write_json) {
        ms_err_t err = t->in->ops->write_json(t->in, obj);
        if (err != MS_OK)
            return err;
    }
    json_t *r =
        json_pack("{s:I, s:I, s:I}", "failedPairs", (json_int_t)t->failed_pairs, "extraLinks",
                  (json_int_t)t->extra_links, "linksAdded", (json_int_t)t->links_added);
    return r && !json_object_set_new(obj, "repair", r) ? MS_OK : MS_ERR_NOMEM;
}

static void rl_destroy(ms_topo_t *base)
{
    rl_t *t = (rl_t *)base;
    if (!t)
        return;
    for (size_t i = 0; i < t->n_slots; i++) {
        free(t->peer[i].extra);
        free(t->peer[i].failed);
    }
    free(t->peer);
    free(t->stamp);
    free(t->nb);
    free(t->touched);
    free(t->starved);
    ms_topo_diff_cleanup(&t->scratch);
    if (t->in)
        t->in->ops->destroy(t->in);
    free(t);
}

/* Created through ms_relink_wrap (ms_topo_create), never by name. */
static ms_err_t rl_create(const ms_topo_params_t *params, ms_topo_t **out)
{
    (void)params;
    (void)out;
    return MS_ERR_UNSUPPORTED;
}

ms_err_t ms_relink_wrap(ms_topo_t *inner, int geo, ms_topo_t **out)
{
    rl_t *t = calloc(1, sizeof(*t));
    if (!t) {
        inner->ops->destroy(inner);
        return MS_ERR_NOMEM;
    }
    t->base.ops = &ms_topo_relink_ops;
    t->in = inner;
    t->geo = geo;
    ms_topo_diff_init(&t->scratch);
    *out = &t->base;
    return MS_OK;
}

const ms_topo_t *ms_relink_inner(const ms_topo_t *t)
{
    return t && t->ops == &ms_topo_relink_ops ? ((const rl_t *)t)->in : t;
}

void ms_relink_stats(const ms_topo_t *base, ms_relink_stats_t *out)
{
    const rl_t *t = (const rl_t *)base;
    out->failed_pairs = t->failed_pairs;
    out->extra_links = t->extra_links;
    out->links_added = t->links_added;
}

int ms_relink_failed(const ms_topo_t *base, ms_peer_t a, ms_peer_t b)
{
    const rl_t *t = (const rl_t *)base;
    return a != b && present(t, a) && present(t, b) && failed_has(t, a, b);
}

size_t ms_relink_working(const ms_topo_t *base, ms_peer_t p)
{
    const rl_t *t = (const rl_t *)base;
    return present(t, p) ? working(t, p) : 0;
}

const ms_topo_ops_t ms_topo_relink_ops = {
    .name = "delaunay",
    .create = rl_create,
    .destroy = rl_destroy,
    .join = rl_join,
    .leave = rl_leave,
    .move = rl_move,
    .neighbours = rl_neighbours,
    .adjacent = rl_adjacent,
    .edges = rl_edges,
    .count = rl_count,
    .restore = NULL,
    .fail_edge = rl_fail,
    .tick = NULL,
    .write_json = rl_write_json,
};

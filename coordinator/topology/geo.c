/* SPDX-License-Identifier: Apache-2.0 */
/* Spherical Delaunay engine: a plane Delaunay engine on a stereographic projection, plus the faces
 * around the pole.
 *
 * Why a plane engine suffices. Rotate the sphere so that a fixed pole P (Point
 * Nemo, where no peer is expected) is on top and project stereographically from
 * P onto the plane. The spherical Delaunay triangulation of the points is the
 * convex hull of the points on the sphere: a face is a triangle whose circumcap
 * (the cap beyond its plane) holds no other point. Stereographic projection maps
 * circles on the sphere that avoid P to circles in the plane, a cap without P to
 * the disc inside its image circle and a cap containing P to the outside. So
 *  - a face whose empty cap avoids P is a triangle whose circumcircle holds no
 *    projected point: a triangle of the plane Delaunay triangulation (DT), and
 *  - a face whose empty cap contains P is a triangle whose circumcircle holds all
 *    the other projected points: a triangle of the farthest-point Delaunay
 *    triangulation (FDT), whose corners are corners of the plane convex hull.
 * The spherical edges are therefore the DT edges (kept incrementally by the
 * plane engine) together with the FDT edges of the hull polygon. Lifting the
 * plane to the paraboloid z = x^2 + y^2 makes this exact on the quantised
 * points: the DT is the lower hull of the lifted points, the FDT the upper hull,
 * and both use the plane engine's predicates and symbolic tie-break, so together
 * they are the convex hull of one perturbed point set (the projective map from
 * sphere to paraboloid sends only P to infinity and keeps the hull).
 *
 * Degenerate cases, all decided by exact predicates so that edges depend only on
 * the set of (position, key):
 *  - Hull vertices inside a straight stretch of the plane hull lie on a circle
 *    through P. They belong to a face whose plane passes through P; the DT links
 *    them as a path and the FDT, built on the strict corners only, adds the chord
 *    between the stretch's ends. That face is left as a polygon (not split into
 *    triangles): connected, deterministic, and needs four points on one circle
 *    through P.
 *  - Line mode of the plane engine (all points on one circle through P, or fewer
 *    than three): the path plus the edge closing it into a cycle (from 3 points).
 *  - All points on one circle avoiding P (e.g. a great circle): both the DT and
 *    the FDT triangulate its polygon, one per side, by the symbolic tie-break.
 *  - Duplicates: the plane engine's chains.
 *
 * Cost. Each operation costs the plane engine's incremental update, a walk to
 * the plane hull (expected O(sqrt(n)) triangles) and a fresh FDT of the h hull
 * corners by gift wrapping, O(h^2) in the worst case. h is the number of peers
 * next to P in the spherical triangulation: about 6 for points spread over the
 * whole sphere and a handful for peers on land (test_geo measures it at 10,000
 * points). Only a ring of many peers around Point Nemo would make h large.
 * The union is diffed exactly: an edge is connected or disconnected only when
 * its presence in DT or FDT changes, so an edge in both never flickers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "delaunay.h"
#include "geo.h"
#include "relink.h"
#include "topology.h"

typedef struct {
    ms_topo_t base;
    ms_topo_t *in;    /* plane engine on the projected positions; owned */
    double rot[3][3]; /* rows: an orthonormal frame with the pole as third axis */
    ms_edge_t *outer; /* FDT edges not on the plane hull cycle, sorted, a < b */
    size_t n_outer, cap_outer;
    ms_edge_t *next; /* the outer edges being computed */
    size_t n_next, cap_next;
    ms_peer_t *hull; /* the plane hull cycle, then its corners */
    size_t cap_hull;
    size_t *corner; /* index into hull of each corner */
    size_t cap_corner;
    size_t n_corners;
    size_t *stk; /* gift-wrapping work list of (i, j) corner ranges */
    size_t cap_stk;
    ms_topo_diff_t scratch; /* the plane engine's diff */
    ms_edge_t *cand;        /* edges whose presence may have changed */
    size_t cap_cand;
    size_t n_slots;  /* one past the largest handle ever joined */
    ms_peer_t start; /* a hull corner before the current operation, or MS_PEER_NONE */
} geo_t;

extern const ms_topo_ops_t ms_topo_geo_ops;

/* ---- projection ---------------------------------------------------------- */

static void unit_vec(double lon, double lat, double v[3])
{
    const double r = 3.14159265358979323846 / 180.0;
    v[0] = cos(lat * r) * cos(lon * r);
    v[1] = cos(lat * r) * sin(lon * r);
    v[2] = sin(lat * r);
}

static void make_frame(double rot[3][3])
{
    double p[3];
    unit_vec(MS_GEO_POLE_LON, MS_GEO_POLE_LAT, p);
    /* e1 = normalise(z x p), e2 = p x e1, e3 = p: a right-handed frame. */
    double e1[3] = {-p[1], p[0], 0};
    double l = sqrt(e1[0] * e1[0] + e1[1] * e1[1]);
    e1[0] /= l;
    e1[1] /= l;
    double e2[3] = {p[1] * e1[2] - p[2] * e1[1], p[2] * e1[0] - p[0] * e1[2],
                    p[0] * e1[1] - p[1] * e1[0]};
    for (int i = 0; i < 3; i++) {
        rot[0][i] = e1[i];
        rot[1][i] = e2[i];
        rot[2][i] = p[i];
    }
}

static void project(double rot[3][3], double lon, double lat, double *x, double *y)
{
    double q[3], r[3];
    unit_vec(lon, lat, q);
    for (int i = 0; i < 3; i++)
        r[i] = rot[i][0] * q[0] + rot[i][1] * q[1] + rot[i][2] * q[2];
    /* 1 - z loses precision only near the pole, where positions are clamped anyway. */
    double d = 1 - r[2];
    if (d < 1e-12)
        d = 1e-12;
    *x = MS_GEO_SCALE * r[0] / d;
    *y = MS_GEO_SCALE * r[1] / d;
}

void ms_geo_project(double lon, double lat, double *x, double *y)
{
    double rot[3][3];
    make_frame(rot);
    project(rot, lon, lat, x, y);
}

static ms_topo_pos_t plane_pos(const geo_t *g, ms_topo_pos_t pos)
{
    ms_topo_pos_t q = {0, 0, pos.key};
    double rot[3][3];
    memcpy(rot, g->rot, sizeof(rot));
    project(rot, pos.x, pos.y, &q.x, &q.y);
    return q;
}

/* ---- the farthest-point Delaunay triangulation of the hull --------------- */

static int has_edge(const ms_edge_t *v, size_t n, ms_peer_t a, ms_peer_t b)
{
    ms_edge_t k = {a < b ? a : b, a < b ? b : a, MS_EDGE_PEER};
    return n > 0 && bsearch(&k, v, n, sizeof(*v), ms_edge_cmp) != NULL;
}

static ms_err_t push_next(geo_t *g, ms_peer_t a, ms_peer_t b)
{
    if (ms_topo_grow((void **)&g->next, &g->cap_next, g->n_next + 1, sizeof(*g->next)) != MS_OK)
        return MS_ERR_NOMEM;
    g->next[g->n_next++] = (ms_edge_t){a < b ? a : b, a < b ? b : a, MS_EDGE_PEER};
    return MS_OK;
}

/* An FDT edge between corners ci and cj joins the diagonals unless it is an
 * edge of the hull cycle itself (which the plane engine already has). */
static ms_err_t push_fdt(geo_t *g, size_t ci, size_t cj, size_t n_hull)
{
    size_t hi = g->corner[ci], hj = g->corner[cj];
    if ((hi + 1) % n_hull == hj || (hj + 1) % n_hull == hi)
        return MS_OK;
    return push_next(g, g->hull[hi], g->hull[hj]);
}

/* Recomputes the outer edges into g->next (sorted). */
static ms_err_t compute_outer(geo_t *g)
{
    ms_err_t err;
    int line = 0;
    size_t n;
    g->n_next = 0;
    for (;;) {
        n = ms_delaunay_hull(g->in, g->start, g->hull, g->cap_hull, &line);
        if (n <= g->cap_hull)
            break;
        if ((err = ms_topo_grow((void **)&g->hull, &g->cap_hull, n, sizeof(*g->hull))) != MS_OK)
            return err;
    }
    g->n_corners = 0;
    if ((err = ms_topo_grow((void **)&g->corner, &g->cap_corner, n, sizeof(*g->corner))) != MS_OK ||
        (err = ms_topo_grow((void **)&g->stk, &g->cap_stk, 2 * n + 2, sizeof(*g->stk))) != MS_OK)
        return err;
    if (line) {
        /* All on one circle through the pole: close the path into a cycle. */
        for (size_t i = 0; i < n; i++)
            g->corner[i] = i;
        g->n_corners = n;
        return n >= 3 ? push_next(g, g->hull[0], g->hull[n - 1]) : MS_OK;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (ms_delaunay_orient(g->in, g->hull[(i + n - 1) % n], g->hull[i], g->hull[(i + 1) % n]))
            g->corner[m++] = i;
    g->n_corners = m;
    /* Corner polygon C[0..m-1], counter-clockwise. Gift wrapping: the FDT
     * triangle on the inner side of the edge C[j] -> C[i] has as third corner the
     * c in C[i+1..j-1] whose circle through C[j], C[i] holds all the others; the
     * circles through two points are ordered, so one pass finds it. */
#define C(k) g->hull[g->corner[k]]
    size_t sp = 0;
    if (m >= 3) {
        if ((err = push_fdt(g, m - 1, 0, n)) != MS_OK)
            return err;
        g->stk[sp++] = 0;
        g->stk[sp++] = m - 1;
    }
    while (sp > 0) {
        size_t j = g->stk[--sp], i = g->stk[--sp];
        size_t c = i + 1;
        for (size_t d = i + 2; d < j; d++)
            if (ms_delaunay_incircle(g->in, C(j), C(i), C(c), C(d)) < 0)
                c = d;
        if ((err = push_fdt(g, i, c, n)) != MS_OK || (err = push_fdt(g, c, j, n)) != MS_OK)
            return err;
        if (c > i + 1) {
            g->stk[sp++] = i;
            g->stk[sp++] = c;
        }
        if (j > c + 1) {
            g->stk[sp++] = c;
            g->stk[sp++] = j;
        }
    }
#undef C
    if (g->n_next > 1)
        qsort(g->next, g->n_next, sizeof(*g->next), ms_edge_cmp);
    return MS_OK;
}

/* Remembers a hull corner other than p for the next hull walk: a hull vertex
 * stays one when points leave, and a join moves the hull only near the pole. */
static void note_start(geo_t *g, ms_peer_t p)
{
    g->start = MS_PEER_NONE;
    for (size_t i = 0; i < g->n_corners; i++)
        if (g->hull[g->corner[i]] != p) {
            g->start = g->hull[g->corner[i]];
            return;
        }
}

/* ---- diffs of the union --------------------------------------------------- */

/* After the plane engine changed by g->scratch: recompute the outer edges and
 * write into diff every edge whose presence in (plane edges or outer edges) changed. */
static ms_err_t finish(geo_t *g, ms_topo_diff_t *diff)
{
    ms_err_t err;
    if ((err = compute_outer(g)) != MS_OK)
        return err;
    ms_topo_diff_t *s = &g->scratch;
    ms_topo_diff_normalize(s);
    size_t n = s->n_connect + s->n_disconnect + g->n_outer + g->n_next, k = 0;
    if ((err = ms_topo_grow((void **)&g->cand, &g->cap_cand, n, sizeof(*g->cand))) != MS_OK)
        return err;
    const ms_edge_t *src[4] = {s->connect, s->disconnect, g->outer, g->next};
    size_t len[4] = {s->n_connect, s->n_disconnect, g->n_outer, g->n_next};
    for (int i = 0; i < 4; i++)
        if (len[i] > 0) {
            memcpy(g->cand + k, src[i], len[i] * sizeof(*g->cand));
            k += len[i];
        }
    if (k > 1)
        qsort(g->cand, k, sizeof(*g->cand), ms_edge_cmp);
    for (size_t i = 0; i < k; i++) {
        const ms_edge_t *c = &g->cand[i];
        if (i > 0 && ms_edge_cmp(c, &g->cand[i - 1]) == 0)
            continue;
        int plane_now = g->in->ops->adjacent(g->in, c->a, c->b);
        int plane_was = plane_now ? !has_edge(s->connect, s->n_connect, c->a, c->b)
                                  : has_edge(s->disconnect, s->n_disconnect, c->a, c->b);
        int was = plane_was || has_edge(g->outer, g->n_outer, c->a, c->b);
        int now = plane_now || has_edge(g->next, g->n_next, c->a, c->b);
        if (now && !was)
            err = ms_topo_diff_connect(diff, c->a, c->b, MS_EDGE_PEER);
        else if (was && !now)
            err = ms_topo_diff_disconnect(diff, c->a, c->b, MS_EDGE_PEER);
        if (err != MS_OK)
            return err;
    }
    ms_edge_t *t = g->outer;
    size_t tc = g->cap_outer;
    g->outer = g->next;
    g->cap_outer = g->cap_next;
    g->n_outer = g->n_next;
    g->next = t;
    g->cap_next = tc;
    g->n_next = 0;
    return MS_OK;
}

/* ---- ops ------------------------------------------------------------------ */

static ms_err_t geo_join(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    geo_t *g = (geo_t *)t;
    ms_err_t err;
    if (!isfinite(pos.x) || !isfinite(pos.y))
        return MS_ERR_INVAL;
    ms_topo_diff_clear(&g->scratch);
    note_start(g, p);
    if ((err = g->in->ops->join(g->in, p, plane_pos(g, pos), &g->scratch)) != MS_OK)
        return err;
    if (p >= g->n_slots)
        g->n_slots = (size_t)p + 1;
    return finish(g, diff);
}

static ms_err_t geo_leave(ms_topo_t *t, ms_peer_t p, ms_topo_diff_t *diff)
{
    geo_t *g = (geo_t *)t;
    ms_err_t err;
    ms_topo_diff_clear(&g->scratch);
    note_start(g, p);
    if ((err = g->in->ops->leave(g->in, p, &g->scratch)) != MS_OK)
        return err;
    return finish(g, diff);
}

static ms_err_t geo_move(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    geo_t *g = (geo_t *)t;
    ms_err_t err;
    if (!isfinite(pos.x) || !isfinite(pos.y))
        return MS_ERR_INVAL;
    ms_topo_diff_clear(&g->scratch);
    note_start(g, p);
    if ((err = g->in->ops->move(g->in, p, plane_pos(g, pos), &g->scratch)) != MS_OK)
        return err;
    return finish(g, diff);
}

static size_t geo_neighbours(const ms_topo_t *t, ms_peer_t p, ms_peer_t *out, size_t max)
{
    const geo_t *g = (const geo_t *)t;
    size_t n = g->in->ops->neighbours(g->in, p, out, max);
    for (size_t i = 0; i < g->n_outer; i++) {
        const ms_edge_t *e = &g->outer[i];
        ms_peer_t o = e->a == p ? e->b : e->b == p ? e->a : MS_PEER_NONE;
        if (o == MS_PEER_NONE || g->in->ops->adjacent(g->in, p, o))
            continue;
        if (n < max)
            out[n] = o;
        n++;
    }
    return n;
}

static int geo_adjacent(const ms_topo_t *t, ms_peer_t a, ms_peer_t b)
{
    const geo_t *g = (const geo_t *)t;
    return g->in->ops->adjacent(g->in, a, b) || has_edge(g->outer, g->n_outer, a, b);
}

static void geo_edges(const ms_topo_t *t, ms_topo_edge_fn fn, void *ud)
{
    const geo_t *g = (const geo_t *)t;
    g->in->ops->edges(g->in, fn, ud);
    for (size_t i = 0; i < g->n_outer; i++)
        if (!g->in->ops->adjacent(g->in, g->outer[i].a, g->outer[i].b))
            fn(g->outer[i].a, g->outer[i].b, MS_EDGE_PEER, ud);
}

static size_t geo_count(const ms_topo_t *t)
{
    const geo_t *g = (const geo_t *)t;
    return g->in->ops->count(g->in);
}

static ms_err_t geo_write_json(const ms_topo_t *t, json_t *obj)
{
    const geo_t *g = (const geo_t *)t;
    ms_err_t err = g->in->ops->write_json(g->in, obj);
    if (err != MS_OK)
        return err;
    size_t max_deg = 0, sum_deg = 0, peers = geo_count(t);
    for (size_t i = 0; i < g->n_slots; i++) {
        size_t d = geo_neighbours(t, (ms_peer_t)i, NULL, 0);
        sum_deg += d;
        if (d > max_deg)
            max_deg = d;
    }
    int bad = 0;
    bad |= json_object_set_new(obj, "mode", json_string("geo"));
    bad |= json_object_set_new(obj, "edges", json_integer((json_int_t)(sum_deg / 2)));
    bad |= json_object_set_new(obj, "hull", json_integer((json_int_t)g->n_corners));
    bad |= json_object_set_new(obj, "pole_edges", json_integer((json_int_t)g->n_outer));
    bad |= json_object_set_new(obj, "mean_degree",
                               json_real(peers ? (double)sum_deg / (double)peers : 0.0));
    bad |= json_object_set_new(obj, "max_degree", json_integer((json_int_t)max_deg));
    return bad ? MS_ERR_NOMEM : MS_OK;
}

static void geo_destroy(ms_topo_t *t)
{
    geo_t *g = (geo_t *)t;
    if (!g)
        return;
    if (g->in)
        g->in->ops->destroy(g->in);
    free(g->outer);
    free(g->next);
    free(g->hull);
    free(g->corner);
    free(g->stk);
    free(g->cand);
    ms_topo_diff_cleanup(&g->scratch);
    free(g);
}

ms_err_t ms_geo_create(const ms_topo_params_t *params, ms_topo_t **out)
{
    ms_err_t err;
    ms_topo_params_t plane = params ? *params : (ms_topo_params_t){0};
    plane.geo = 0;
    geo_t *g = calloc(1, sizeof(*g));
    if (!g)
        return MS_ERR_NOMEM;
    g->base.ops = &ms_topo_geo_ops;
    ms_topo_diff_init(&g->scratch);
    make_frame(g->rot);
    g->start = MS_PEER_NONE;
    if ((err = ms_topo_delaunay_ops.create(&plane, &g->in)) != MS_OK)
        goto fail;
    *out = &g->base;
    return MS_OK;
fail:
    geo_destroy(&g->base);
    return err;
}

size_t ms_geo_hull_size(const ms_topo_t *t)
{
    return ((const geo_t *)ms_relink_inner(t))->n_corners;
}

const ms_topo_t *ms_geo_plane(const ms_topo_t *t)
{
    return ((const geo_t *)ms_relink_inner(t))->in;
}

/* Shares the name "delaunay": the policy names the engine, params->geo the space. */
const ms_topo_ops_t ms_topo_geo_ops = {
    .name = "delaunay",
    .create = ms_geo_create,
    .destroy = geo_destroy,
    .join = geo_join,
    .leave = geo_leave,
    .move = geo_move,
    .neighbours = geo_neighbours,
    .adjacent = geo_adjacent,
    .edges = geo_edges,
    .count = geo_count,
    .restore = NULL,
    .tick = NULL,
    .write_json = geo_write_json,
};

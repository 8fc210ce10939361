/* SPDX-License-Identifier: Apache-2.0 */
/* Delaunay mesh engine: each peer links to its Delaunay neighbours, maintained incrementally.
 *
 * Data structure. Vertices are indexed by peer handle (the caller keeps handles
 * dense). Each holds its quantised position, its key and one incident triangle.
 * Triangles live in one array with a free list: three corners counter-clockwise
 * and, for each corner i, the triangle across the edge opposite corner i (NONE
 * on the convex hull). No ghost triangles: points outside the hull are added by
 * walking the hull edges they see. About 32 bytes per vertex and 2 triangles of
 * 24 bytes per vertex, plus array slack and a coarse bucket grid of start hints.
 *
 * Join: locate the point by a visibility walk that starts at the vertex last
 * recorded in the point's bucket (or the nearest of a few random vertices drawn
 * from a PRNG seeded with params->seed), split the triangle or edge that holds
 * it (or fan to the hull edges it sees), then restore the Delaunay property
 * with Lawson flips of the edges opposite the new vertex.
 * Leave: flip edges away from the vertex (only flips that keep the
 * triangulation valid) until it has degree 3, or on the hull until its remaining
 * neighbours are convex from outside; remove it, then Lawson-flip the diagonals
 * the flips created. Only the hole is touched; nothing is rebuilt.
 *
 * Exactness and degeneracies. Coordinates are integers below 2^30, so orient2d
 * fits in 64 bits and in-circle in 128. The edge set must depend only on the set
 * of (position, key) pairs, never on the order of operations, so every tie is
 * broken symbolically:
 *  - Cocircular points: the in-circle test is the sign of the lifted 4x4
 *    determinant with each point's height z = x^2 + y^2 perturbed by eps^rank
 *    (Simulation of Simplicity), rank by lexicographic (x, y), larger points
 *    perturbed more. The perturbation is a consistent lifting, so the
 *    triangulation with all edges locally Delaunay is unique, and it contains
 *    every point as a vertex (the paraboloid is strictly convex).
 *  - Collinear points: orientation is never perturbed. Triangles are never
 *    degenerate; points on a hull edge become hull vertices. While all
 *    representatives are collinear (or fewer than 3), there are no triangles:
 *    the peers form a path sorted along the line ("line mode").
 *  - Duplicate positions: only the peer with the smallest (key, handle) at a
 *    grid point (its representative) is in the triangulation; the others hang
 *    off it as a chain sorted by (key, handle). Peers with equal keys and equal
 *    positions are ordered by handle, the only order-dependent case.
 * Diffs are logged as +1/-1 per edge while the structure changes and summed at
 * the end, so an edge flipped away and back cancels exactly.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delaunay.h"
#include "relink.h"
#include "topology.h"

__extension__ typedef __int128 i128;

#define NONE UINT32_MAX

enum { V_ABSENT = 0, V_REP = 1, V_DUP = 2 };

typedef struct {
    int32_t x, y;
    uint64_t key;
    /* V_REP: an incident triangle (NONE in line mode). V_DUP: the representative. */
    uint32_t tri;
    uint32_t dnext; /* next peer at the same grid point, by (key, handle) */
    uint8_t state;
} dvert_t;

typedef struct {
    uint32_t v[3]; /* counter-clockwise; v[0] == NONE marks a free slot */
    uint32_t n[3]; /* across the edge opposite v[i]; the free list uses n[0] */
} dtri_t;

typedef struct {
    uint32_t a, b;
    int32_t d;
} devent_t;

typedef struct {
    uint32_t t, a, b; /* edge a-b, t a triangle that probably has it */
} dedge_t;

typedef struct {
    ms_topo_t base;
    dvert_t *v; /* indexed by handle */
    size_t n_v;
    dtri_t *t;
    size_t n_t, cap_t, live_t;
    uint32_t free_t;
    uint32_t *line; /* line mode: representatives sorted lexicographically */
    size_t n_line, cap_line;
    uint32_t *grid; /* start hints: a representative per bucket, or NONE */
    unsigned grid_bits;
    size_t n_rep, n_peer;
    uint32_t hint_tri;
    uint64_t rng;
    devent_t *ev; /* the current operation's edge changes */
    size_t n_ev, cap_ev;
    dedge_t *stk; /* edges to check for the Delaunay property */
    size_t n_stk, cap_stk;
    uint32_t *scr; /* stars, chains, neighbour lists */
    size_t cap_scr;
} dl_t;

/* ---- small helpers ------------------------------------------------------ */

static uint64_t rng_next(dl_t *e)
{
    /* splitmix64: tiny state, good enough to pick walk starts */
    uint64_t z = (e->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

int32_t ms_delaunay_quantize(double v)
{
    const double max = (double)(MS_DELAUNAY_GRID - 1);
    double u = (v + MS_DELAUNAY_RANGE) * (max / (2 * MS_DELAUNAY_RANGE));
    if (!(u > 0))
        return 0;
    if (u >= max)
        return MS_DELAUNAY_GRID - 1;
    return (int32_t)(u + 0.5);
}

static int same_pos(const dl_t *e, uint32_t a, uint32_t b)
{
    return e->v[a].x == e->v[b].x && e->v[a].y == e->v[b].y;
}

/* Lexicographic (x, y): the symbolic perturbation's rank and the line order. */
static int lex_cmp(const dl_t *e, uint32_t a, uint32_t b)
{
    const dvert_t *p = &e->v[a], *q = &e->v[b];
    if (p->x != q->x)
        return p->x < q->x ? -1 : 1;
    if (p->y != q->y)
        return p->y < q->y ? -1 : 1;
    return 0;
}

/* Order of peers at one grid point: (key, handle). */
static int dup_less(const dl_t *e, uint32_t a, uint32_t b)
{
    if (e->v[a].key != e->v[b].key)
        return e->v[a].key < e->v[b].key;
    return a < b;
}

/* ---- exact predicates --------------------------------------------------- */

/* > 0 when a, b, c turn counter-clockwise. Differences < 2^30, products < 2^60. */
static int orient(const dl_t *e, uint32_t a, uint32_t b, uint32_t c)
{
    const dvert_t *p = &e->v[a], *q = &e->v[b], *r = &e->v[c];
    int64_t d = ((int64_t)q->x - p->x) * ((int64_t)r->y - p->y) -
                ((int64_t)q->y - p->y) * ((int64_t)r->x - p->x);
    return (d > 0) - (d < 0);
}

/* > 0 when d is inside the circle through the counter-clockwise a, b, c; never 0.
 * Lifts < 2^61, each term < 2^122, the sum < 2^124: exact in 128 bits. */
static int incircle(const dl_t *e, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
    const dvert_t *A = &e->v[a], *B = &e->v[b], *C = &e->v[c], *D = &e->v[d];
    int64_t adx = (int64_t)A->x - D->x, ady = (int64_t)A->y - D->y;
    int64_t bdx = (int64_t)B->x - D->x, bdy = (int64_t)B->y - D->y;
    int64_t cdx = (int64_t)C->x - D->x, cdy = (int64_t)C->y - D->y;
    int64_t al = adx * adx + ady * ady, bl = bdx * bdx + bdy * bdy, cl = cdx * cdx + cdy * cdy;
    i128 det = (i128)al * (bdx * cdy - cdx * bdy) - (i128)bl * (adx * cdy - cdx * ady) +
               (i128)cl * (adx * bdy - bdx * ady);
    if (det != 0)
        return det > 0 ? 1 : -1;
    /* Cocircular. The determinant of rows (x, y, z, 1) gains, per unit of height
     * added to a point, the cofactor of that point's z entry; the point with the
     * largest perturbation and a non-zero cofactor decides. d's cofactor is
     * -orient(a, b, c) != 0, so this always ends. */
    uint32_t p[4] = {a, b, c, d};
    int co[4] = {orient(e, b, c, d), -orient(e, a, c, d), orient(e, a, b, d), -orient(e, a, b, c)};
    int idx[4] = {0, 1, 2, 3};
    for (int i = 1; i < 4; i++)
        for (int j = i; j > 0 && lex_cmp(e, p[idx[j]], p[idx[j - 1]]) > 0; j--) {
            int t = idx[j];
            idx[j] = idx[j - 1];
            idx[j - 1] = t;
        }
    for (int i = 0; i < 4; i++)
        if (co[idx[i]] != 0)
            return co[idx[i]];
    return -1; /* not reached: a, b, c are never collinear here */
}

/* ---- edge-change log ---------------------------------------------------- */

static ms_err_t ev_push(dl_t *e, uint32_t a, uint32_t b, int d)
{
    if (e->n_ev == e->cap_ev &&
        ms_topo_grow((void **)&e->ev, &e->cap_ev, e->n_ev + 1, sizeof(*e->ev)) != MS_OK)
        return MS_ERR_NOMEM;
    if (a > b) {
        uint32_t t = a;
        a = b;
        b = t;
    }
    e->ev[e->n_ev++] = (devent_t){a, b, d};
    return MS_OK;
}

static int ev_cmp(const void *x, const void *y)
{
    const devent_t *p = x, *q = y;
    if (p->a != q->a)
        return p->a < q->a ? -1 : 1;
    if (p->b != q->b)
        return p->b < q->b ? -1 : 1;
    return 0;
}

static ms_err_t ev_flush(dl_t *e, ms_topo_diff_t *diff)
{
    ms_err_t err = MS_OK;
    if (e->n_ev > 1)
        qsort(e->ev, e->n_ev, sizeof(*e->ev), ev_cmp);
    for (size_t i = 0; i < e->n_ev && err == MS_OK;) {
        size_t j = i;
        int sum = 0;
        while (j < e->n_ev && e->ev[j].a == e->ev[i].a && e->ev[j].b == e->ev[i].b)
            sum += e->ev[j++].d;
        if (sum > 0)
            err = ms_topo_diff_connect(diff, e->ev[i].a, e->ev[i].b, MS_EDGE_PEER);
        else if (sum < 0)
            err = ms_topo_diff_disconnect(diff, e->ev[i].a, e->ev[i].b, MS_EDGE_PEER);
        i = j;
    }
    e->n_ev = 0;
    return err;
}

/* ---- triangles ---------------------------------------------------------- */

static ms_err_t tri_reserve(dl_t *e, size_t k)
{
    size_t nfree = e->n_t - e->live_t; /* slots on the free list */
    if (nfree + (e->cap_t - e->n_t) >= k)
        return MS_OK;
    return ms_topo_grow((void **)&e->t, &e->cap_t, e->n_t + k, sizeof(*e->t));
}

/* Callers reserve first, so this cannot fail. */
static uint32_t tri_new(dl_t *e, uint32_t a, uint32_t b, uint32_t c)
{
    uint32_t id;
    if (e->free_t != NONE) {
        id = e->free_t;
        e->free_t = e->t[id].n[0];
    } else {
        id = (uint32_t)e->n_t++;
    }
    e->t[id] = (dtri_t){{a, b, c}, {NONE, NONE, NONE}};
    e->live_t++;
    return id;
}

static void tri_free(dl_t *e, uint32_t id)
{
    e->t[id].v[0] = e->t[id].v[1] = e->t[id].v[2] = NONE;
    e->t[id].n[0] = e->free_t;
    e->free_t = id;
    e->live_t--;
}

static int tri_idx(const dl_t *e, uint32_t t, uint32_t v)
{
    const dtri_t *T = &e->t[t];
    return T->v[0] == v ? 0 : T->v[1] == v ? 1 : 2;
}

static int nbr_idx(const dl_t *e, uint32_t t, uint32_t u)
{
    const dtri_t *T = &e->t[t];
    return T->n[0] == u ? 0 : T->n[1] == u ? 1 : 2;
}

/* Points t's neighbour, which pointed at old, at nw. */
static void relink(dl_t *e, uint32_t t, uint32_t old, uint32_t nw)
{
    if (t != NONE)
        e->t[t].n[nbr_idx(e, t, old)] = nw;
}

/* ---- bucket grid of walk starts ----------------------------------------- */

static size_t cell_of(const dl_t *e, uint32_t v)
{
    unsigned s = MS_DELAUNAY_BITS - e->grid_bits;
    return ((size_t)((uint32_t)e->v[v].y >> s) << e->grid_bits) | ((uint32_t)e->v[v].x >> s);
}

/* Keeps about 1-4 representatives per bucket (4M buckets at most); an
 * allocation failure only keeps the old, coarser grid. */
static void grid_note(dl_t *e, uint32_t v)
{
    if (e->grid && e->n_rep > ((size_t)4 << (2 * e->grid_bits)) && e->grid_bits < 11) {
        unsigned nb = e->grid_bits + 1;
        uint32_t *g = malloc(((size_t)1 << (2 * nb)) * sizeof(*g));
        if (g) {
            free(e->grid);
            e->grid = g;
            e->grid_bits = nb;
            memset(g, 0xff, ((size_t)1 << (2 * nb)) * sizeof(*g));
            for (size_t i = 0; i < e->n_v; i++)
                if (e->v[i].state == V_REP)
                    g[cell_of(e, (uint32_t)i)] = (uint32_t)i;
        }
    }
    if (e->grid)
        e->grid[cell_of(e, v)] = v;
}

static void grid_replace(dl_t *e, uint32_t old, uint32_t nw)
{
    if (e->grid && e->grid[cell_of(e, old)] == old)
        e->grid[cell_of(e, old)] = nw;
}

/* p becomes a vertex of the triangulation (or of the line). */
static void new_rep(dl_t *e, uint32_t p)
{
    e->v[p].state = V_REP;
    e->n_rep++;
    grid_note(e, p);
}

/* ---- walking the structure ---------------------------------------------- */

/* Calls fn on each Delaunay neighbour of the representative v (not its duplicates). */
typedef void (*nb_fn)(uint32_t u, void *ud);

static void mesh_neighbours(const dl_t *e, uint32_t v, nb_fn fn, void *ud)
{
    if (e->live_t == 0) {
        /* line mode: binary search for v's slot */
        size_t lo = 0, hi = e->n_line;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (lex_cmp(e, e->line[mid], v) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < e->n_line && e->line[lo] == v) {
            if (lo > 0)
                fn(e->line[lo - 1], ud);
            if (lo + 1 < e->n_line)
                fn(e->line[lo + 1], ud);
        }
        return;
    }
    uint32_t t0 = e->v[v].tri, t = t0;
    /* Counter-clockwise, emitting each triangle's first corner after v. */
    for (;;) {
        int k = tri_idx(e, t, v);
        fn(e->t[t].v[(k + 1) % 3], ud);
        uint32_t nx = e->t[t].n[(k + 1) % 3];
        if (nx == t0)
            return;
        if (nx == NONE) {
            fn(e->t[t].v[(k + 2) % 3], ud);
            break;
        }
        t = nx;
    }
    /* On the hull: the rest lies clockwise of the start. */
    t = t0;
    for (;;) {
        int k = tri_idx(e, t, v);
        uint32_t pv = e->t[t].n[(k + 2) % 3];
        if (pv == NONE)
            return;
        t = pv;
        k = tri_idx(e, t, v);
        fn(e->t[t].v[(k + 1) % 3], ud);
    }
}

typedef struct {
    dl_t *e;
    size_t n;
    ms_err_t err;
} collect_t;

static void collect_fn(uint32_t u, void *ud)
{
    collect_t *c = ud;
    if (c->err != MS_OK)
        return;
    if (ms_topo_grow((void **)&c->e->scr, &c->e->cap_scr, c->n + 1, sizeof(uint32_t)) != MS_OK) {
        c->err = MS_ERR_NOMEM;
        return;
    }
    c->e->scr[c->n++] = u;
}

/* v's Delaunay neighbours into e->scr. */
static ms_err_t collect_neighbours(dl_t *e, uint32_t v, size_t *n)
{
    collect_t c = {e, 0, MS_OK};
    mesh_neighbours(e, v, collect_fn, &c);
    *n = c.n;
    return c.err;
}

/* Triangles around v counter-clockwise into e->scr; on the hull the first one has
 * the hull edge leaving v and the last the hull edge entering it. */
static ms_err_t collect_star(dl_t *e, uint32_t v, size_t *n, int *hull)
{
    uint32_t t0 = e->v[v].tri, s = t0;
    *hull = 0;
    for (;;) {
        uint32_t pv = e->t[s].n[(tri_idx(e, s, v) + 2) % 3];
        if (pv == NONE) {
            *hull = 1;
            break;
        }
        s = pv;
        if (s == t0)
            break;
    }
    size_t m = 0;
    uint32_t t = s;
    do {
        if (ms_topo_grow((void **)&e->scr, &e->cap_scr, m + 1, sizeof(uint32_t)) != MS_OK)
            return MS_ERR_NOMEM;
        e->scr[m++] = t;
        t = e->t[t].n[(tri_idx(e, t, v) + 1) % 3];
    } while (t != NONE && t != s);
    *n = m;
    return MS_OK;
}

/* Finds the triangle with edge a-b whose third corner is not `not`; 0 if none. */
static int find_edge(const dl_t *e, const dedge_t *s, uint32_t *ot, int *oi)
{
    uint32_t a = s->a, b = s->b;
    if (s->t < e->n_t) {
        const dtri_t *T = &e->t[s->t];
        for (int i = 0; i < 3; i++)
            if (T->v[i] != NONE && T->v[(i + 1) % 3] == a && T->v[(i + 2) % 3] == b) {
                *ot = s->t;
                *oi = i;
                return 1;
            }
    }
    if (e->v[a].state != V_REP || e->v[a].tri == NONE)
        return 0;
    /* Rotate around a both ways looking for the directed edge a->b. */
    uint32_t t0 = e->v[a].tri, t = t0;
    for (int dir = 0; dir < 2; dir++) {
        t = t0;
        for (;;) {
            int k = tri_idx(e, t, a);
            if (e->t[t].v[(k + 1) % 3] == b) {
                *ot = t;
                *oi = (k + 2) % 3;
                return 1;
            }
            if (e->t[t].v[(k + 2) % 3] == b) {
                /* b->a here; the other side carries a->b */
                uint32_t u = e->t[t].n[(k + 1) % 3];
                if (u == NONE)
                    return 0;
                *ot = u;
                *oi = nbr_idx(e, u, t);
                return 1;
            }
            t = e->t[t].n[(k + (dir ? 2 : 1)) % 3];
            if (t == NONE || t == t0)
                break;
        }
        if (t == t0)
            break;
    }
    return 0;
}

static ms_err_t push_edge(dl_t *e, uint32_t t, uint32_t a, uint32_t b)
{
    if (e->n_stk == e->cap_stk &&
        ms_topo_grow((void **)&e->stk, &e->cap_stk, e->n_stk + 1, sizeof(*e->stk)) != MS_OK)
        return MS_ERR_NOMEM;
    e->stk[e->n_stk++] = (dedge_t){t, a, b};
    return MS_OK;
}

/* Flips the edge opposite corner i of t. With P = t.v[i], A, B the edge and Q
 * the far corner, t becomes (P, A, Q) and its neighbour (P, Q, B). */
static ms_err_t flip(dl_t *e, uint32_t t, int i)
{
    dtri_t *T = &e->t[t];
    uint32_t u = T->n[i];
    dtri_t *U = &e->t[u];
    int j = nbr_idx(e, u, t);
    uint32_t P = T->v[i], A = T->v[(i + 1) % 3], B = T->v[(i + 2) % 3], Q = U->v[j];
    uint32_t tA = T->n[(i + 1) % 3], tB = T->n[(i + 2) % 3];
    uint32_t uA = U->n[(j + 2) % 3], uB = U->n[(j + 1) % 3];
    *T = (dtri_t){{P, A, Q}, {uB, u, tB}};
    *U = (dtri_t){{P, Q, B}, {uA, tA, t}};
    relink(e, uB, u, t);
    relink(e, tA, t, u);
    e->v[P].tri = t;
    e->v[A].tri = t;
    e->v[Q].tri = u;
    e->v[B].tri = u;
    ms_err_t err = ev_push(e, A, B, -1);
    if (err == MS_OK)
        err = ev_push(e, P, Q, +1);
    return err;
}

/* Lawson's flip algorithm over the stacked edges. With focus != NONE (a new
 * vertex) only edges opposite focus can become illegal, so only those are
 * stacked after a flip. */
static ms_err_t lawson(dl_t *e, uint32_t focus)
{
    ms_err_t err = MS_OK;
    while (e->n_stk > 0) {
        dedge_t s = e->stk[--e->n_stk];
        uint32_t t;
        int i;
        if (!find_edge(e, &s, &t, &i))
            continue;
        uint32_t u = e->t[t].n[i];
        if (u == NONE)
            continue;
        if (focus != NONE && e->t[t].v[i] != focus) {
            int j = nbr_idx(e, u, t);
            if (e->t[u].v[j] != focus)
                continue;
            i = j;
            uint32_t x = t;
            t = u;
            u = x;
        }
        const dtri_t *T = &e->t[t];
        uint32_t q = e->t[u].v[nbr_idx(e, u, t)];
        if (incircle(e, T->v[0], T->v[1], T->v[2], q) <= 0)
            continue;
        if ((err = flip(e, t, i)) != MS_OK)
            return err;
        const dtri_t *nT = &e->t[t], *nU = &e->t[u];
        if ((err = push_edge(e, t, nT->v[1], nT->v[2])) != MS_OK ||
            (err = push_edge(e, u, nU->v[1], nU->v[2])) != MS_OK)
            return err;
        if (focus == NONE && ((err = push_edge(e, t, nT->v[0], nT->v[1])) != MS_OK ||
                              (err = push_edge(e, u, nU->v[2], nU->v[0])) != MS_OK))
            return err;
    }
    return MS_OK;
}

/* ---- point location ----------------------------------------------------- */

enum { LOC_IN, LOC_EDGE, LOC_VERTEX, LOC_OUT };

static int usable_start(const dl_t *e, uint32_t s)
{
    return s != NONE && s < e->n_v && e->v[s].state == V_REP && e->v[s].tri != NONE;
}

static uint32_t start_triangle(dl_t *e, uint32_t p)
{
    if (e->grid) {
        /* p's bucket, else the nearest rings around it (a bucket holds 1-4 on average) */
        unsigned s = MS_DELAUNAY_BITS - e->grid_bits;
        long side = 1L << e->grid_bits;
        long cx = (long)((uint32_t)e->v[p].x >> s), cy = (long)((uint32_t)e->v[p].y >> s);
        for (long r = 0; r <= 2; r++)
            for (long dy = -r; dy <= r; dy++)
                for (long dx = -r; dx <= r; dx++) {
                    if (labs(dx) != r && labs(dy) != r)
                        continue;
                    long x = cx + dx, y = cy + dy;
                    if (x < 0 || y < 0 || x >= side || y >= side)
                        continue;
                    uint32_t c = e->grid[(size_t)y * (size_t)side + (size_t)x];
                    if (usable_start(e, c))
                        return e->v[c].tri;
                }
    }
    /* An empty bucket: the nearest of a few random representatives. */
    uint32_t best = NONE;
    uint64_t bd = UINT64_MAX;
    for (int k = 0; k < 8 && e->n_v > 0; k++) {
        uint32_t s = (uint32_t)(rng_next(e) % e->n_v);
        if (!usable_start(e, s) || s == p)
            continue;
        int64_t dx = (int64_t)e->v[s].x - e->v[p].x, dy = (int64_t)e->v[s].y - e->v[p].y;
        uint64_t d = (uint64_t)(dx * dx) + (uint64_t)(dy * dy);
        if (d < bd) {
            bd = d;
            best = s;
        }
    }
    if (best != NONE)
        return e->v[best].tri;
    if (e->hint_tri < e->n_t && e->t[e->hint_tri].v[0] != NONE)
        return e->hint_tri;
    for (size_t k = 0;; k++)
        if (e->t[k].v[0] != NONE)
            return (uint32_t)k;
}

/* Walks towards p; returns the triangle holding p, the edge it lies on, the
 * vertex at its position (in *ot), or a hull edge that sees it. */
static int locate(dl_t *e, uint32_t p, uint32_t *ot, int *oi)
{
    uint32_t t = start_triangle(e, p), prev = NONE;
    unsigned r = (unsigned)rng_next(e);
    for (;;) {
        const dtri_t *T = &e->t[t];
        int moved = 0;
        r = r * 1103515245u + 12345u;
        int k = (int)((r >> 16) % 3);
        for (int s = 0; s < 3; s++) {
            int i = (k + s) % 3;
            if (T->n[i] == prev && prev != NONE)
                continue;
            if (orient(e, T->v[(i + 1) % 3], T->v[(i + 2) % 3], p) < 0) {
                if (T->n[i] == NONE) {
                    *ot = t;
                    *oi = i;
                    return LOC_OUT;
                }
                prev = t;
                t = T->n[i];
                moved = 1;
                break;
            }
        }
        if (!moved)
            break;
    }
    const dtri_t *T = &e->t[t];
    for (int i = 0; i < 3; i++)
        if (same_pos(e, T->v[i], p)) {
            *ot = T->v[i];
            return LOC_VERTEX;
        }
    for (int i = 0; i < 3; i++)
        if (orient(e, T->v[(i + 1) % 3], T->v[(i + 2) % 3], p) == 0) {
            *ot = t;
            *oi = i;
            return LOC_EDGE;
        }
    *ot = t;
    return LOC_IN;
}

/* ---- insertion ---------------------------------------------------------- */

static ms_err_t insert_in(dl_t *e, uint32_t t, uint32_t p)
{
    dtri_t T = e->t[t];
    uint32_t a = T.v[0], b = T.v[1], c = T.v[2];
    uint32_t t1 = tri_new(e, p, c, a), t2 = tri_new(e, p, a, b);
    e->t[t] = (dtri_t){{p, b, c}, {T.n[0], t1, t2}};
    e->t[t1].n[0] = T.n[1];
    e->t[t1].n[1] = t2;
    e->t[t1].n[2] = t;
    e->t[t2].n[0] = T.n[2];
    e->t[t2].n[1] = t;
    e->t[t2].n[2] = t1;
    relink(e, T.n[1], t, t1);
    relink(e, T.n[2], t, t2);
    e->v[a].tri = t1;
    e->v[b].tri = t;
    e->v[c].tri = t;
    e->v[p].tri = t;
    ms_err_t err;
    if ((err = ev_push(e, p, a, 1)) != MS_OK || (err = ev_push(e, p, b, 1)) != MS_OK ||
        (err = ev_push(e, p, c, 1)) != MS_OK || (err = push_edge(e, t, b, c)) != MS_OK ||
        (err = push_edge(e, t1, c, a)) != MS_OK || (err = push_edge(e, t2, a, b)) != MS_OK)
        return err;
    return MS_OK;
}

/* p on the edge opposite corner i of t. */
static ms_err_t insert_on_edge(dl_t *e, uint32_t t, int i, uint32_t p)
{
    dtri_t T = e->t[t];
    uint32_t c = T.v[i], a = T.v[(i + 1) % 3], b = T.v[(i + 2) % 3];
    uint32_t t_bc = T.n[(i + 1) % 3], t_ca = T.n[(i + 2) % 3];
    uint32_t u = T.n[i];
    ms_err_t err;
    uint32_t x1 = t, x4 = tri_new(e, p, b, c);
    e->t[x1] = (dtri_t){{p, c, a}, {t_ca, NONE, x4}};
    e->t[x4].n[0] = t_bc;
    e->t[x4].n[1] = x1;
    relink(e, t_bc, t, x4);
    e->v[a].tri = x1;
    e->v[b].tri = x4;
    e->v[c].tri = x1;
    e->v[p].tri = x1;
    if ((err = ev_push(e, a, b, -1)) != MS_OK || (err = ev_push(e, p, a, 1)) != MS_OK ||
        (err = ev_push(e, p, b, 1)) != MS_OK || (err = ev_push(e, p, c, 1)) != MS_OK ||
        (err = push_edge(e, x1, c, a)) != MS_OK || (err = push_edge(e, x4, b, c)) != MS_OK)
        return err;
    if (u == NONE)
        return MS_OK;
    dtri_t U = e->t[u];
    int j = nbr_idx(e, u, t);
    uint32_t d = U.v[j];
    uint32_t u_ad = U.n[(j + 1) % 3], u_db = U.n[(j + 2) % 3];
    uint32_t x2 = u, x3 = tri_new(e, p, d, b);
    e->t[x2] = (dtri_t){{p, a, d}, {u_ad, x3, x1}};
    e->t[x3].n[0] = u_db;
    e->t[x3].n[1] = x4;
    e->t[x3].n[2] = x2;
    e->t[x1].n[1] = x2;
    e->t[x4].n[2] = x3;
    relink(e, u_db, u, x3);
    e->v[d].tri = x2;
    if ((err = ev_push(e, p, d, 1)) != MS_OK || (err = push_edge(e, x2, a, d)) != MS_OK ||
        (err = push_edge(e, x3, d, b)) != MS_OK)
        return err;
    return MS_OK;
}

/* The hull edge after (dir 0) or before (dir 1) the hull edge opposite corner
 * *i of *t, walking counter-clockwise along the hull. */
static void hull_step(const dl_t *e, uint32_t *t, int *i, int dir)
{
    uint32_t tt = *t;
    uint32_t pivot = e->t[tt].v[(*i + (dir ? 1 : 2)) % 3];
    int j = (*i + (dir ? 2 : 1)) % 3;
    for (;;) {
        uint32_t u = e->t[tt].n[j];
        if (u == NONE) {
            *t = tt;
            *i = j;
            return;
        }
        tt = u;
        j = (tri_idx(e, tt, pivot) + (dir ? 1 : 2)) % 3;
    }
}

typedef struct {
    uint32_t t;
    int i;
} hedge_t;

/* p outside the hull; the hull edge opposite corner i of t sees it. */
static ms_err_t insert_out(dl_t *e, uint32_t t, int i, uint32_t p)
{
    ms_err_t err;
    /* Gather the visible hull edges in counter-clockwise order; scr holds pairs. */
    size_t nb = 0, n = 0;
    hedge_t *h;
    uint32_t ct = t;
    int ci = i;
    for (;;) {
        hull_step(e, &ct, &ci, 1);
        if (orient(e, e->t[ct].v[(ci + 1) % 3], e->t[ct].v[(ci + 2) % 3], p) >= 0)
            break;
        if ((err = ms_topo_grow((void **)&e->scr, &e->cap_scr, 2 * (nb + 1), sizeof(uint32_t))) !=
            MS_OK)
            return err;
        h = (hedge_t *)e->scr;
        h[nb++] = (hedge_t){ct, ci};
    }
    /* reverse the backward run, then append the seed and the forward run */
    h = (hedge_t *)e->scr;
    for (size_t a = 0, b = nb ? nb - 1 : 0; a < b; a++, b--) {
        hedge_t x = h[a];
        h[a] = h[b];
        h[b] = x;
    }
    n = nb;
    ct = t;
    ci = i;
    for (;;) {
        if ((err = ms_topo_grow((void **)&e->scr, &e->cap_scr, 2 * (n + 1), sizeof(uint32_t))) !=
            MS_OK)
            return err;
        h = (hedge_t *)e->scr;
        h[n++] = (hedge_t){ct, ci};
        hull_step(e, &ct, &ci, 0);
        if (orient(e, e->t[ct].v[(ci + 1) % 3], e->t[ct].v[(ci + 2) % 3], p) >= 0)
            break;
    }
    if ((err = tri_reserve(e, n)) != MS_OK)
        return err;
    h = (hedge_t *)e->scr;
    uint32_t prev = NONE;
    for (size_t k = 0; k < n; k++) {
        uint32_t ht = h[k].t;
        int hi = h[k].i;
        uint32_t a = e->t[ht].v[(hi + 1) % 3], b = e->t[ht].v[(hi + 2) % 3];
        uint32_t nt = tri_new(e, p, b, a);
        e->t[nt].n[0] = ht;
        e->t[nt].n[1] = prev;
        if (prev != NONE)
            e->t[prev].n[2] = nt;
        e->t[ht].n[hi] = nt;
        if (k == 0) {
            e->v[p].tri = nt;
            if ((err = ev_push(e, p, a, 1)) != MS_OK)
                return err;
        }
        if ((err = ev_push(e, p, b, 1)) != MS_OK || (err = push_edge(e, nt, b, a)) != MS_OK)
            return err;
        prev = nt;
    }
    return MS_OK;
}

/* The first representative off the line: fan p to the sorted line, then flip. */
static ms_err_t leave_line_mode(dl_t *e, uint32_t p)
{
    ms_err_t err;
    size_t n = e->n_line;
    if ((err = tri_reserve(e, n - 1)) != MS_OK)
        return err;
    int s = orient(e, e->line[0], e->line[n - 1], p);
    uint32_t first = NONE, prev = NONE;
    for (size_t j = 0; j + 1 < n; j++) {
        uint32_t l0 = e->line[j], l1 = e->line[j + 1], nt;
        if (s > 0) {
            nt = tri_new(e, l0, l1, p);
            e->t[nt].n[1] = prev;
            if (prev != NONE)
                e->t[prev].n[0] = nt;
        } else {
            nt = tri_new(e, l1, l0, p);
            e->t[nt].n[0] = prev;
            if (prev != NONE)
                e->t[prev].n[1] = nt;
        }
        if (first == NONE)
            first = nt;
        e->v[l0].tri = nt;
        e->v[l1].tri = nt;
        prev = nt;
    }
    e->v[p].tri = first;
    e->hint_tri = first;
    for (size_t j = 0; j < n; j++) {
        if ((err = ev_push(e, p, e->line[j], 1)) != MS_OK)
            return err;
        if (j > 0 && j + 1 < n && (err = push_edge(e, NONE, p, e->line[j])) != MS_OK)
            return err;
    }
    e->n_line = 0;
    return lawson(e, NONE);
}

/* ---- duplicates ---------------------------------------------------------- */

/* Puts nw where the representative old is, in triangles, line and grid. */
static void replace_rep(dl_t *e, uint32_t old, uint32_t nw)
{
    e->v[nw].tri = e->v[old].tri;
    if (e->live_t == 0) {
        for (size_t i = 0; i < e->n_line; i++)
            if (e->line[i] == old)
                e->line[i] = nw;
    } else {
        size_t n;
        int hull;
        /* collect_star only fails allocating; fall back to a full scan */
        if (collect_star(e, old, &n, &hull) == MS_OK) {
            for (size_t k = 0; k < n; k++)
                e->t[e->scr[k]].v[tri_idx(e, e->scr[k], old)] = nw;
        } else {
            for (size_t t = 0; t < e->n_t; t++)
                for (int i = 0; i < 3; i++)
                    if (e->t[t].v[i] == old)
                        e->t[t].v[i] = nw;
        }
    }
    grid_replace(e, old, nw);
}

/* Hands old's Delaunay edges to nw (which takes old's place). */
static ms_err_t swap_rep(dl_t *e, uint32_t old, uint32_t nw)
{
    size_t n;
    ms_err_t err = collect_neighbours(e, old, &n);
    if (err != MS_OK)
        return err;
    for (size_t k = 0; k < n; k++)
        if ((err = ev_push(e, old, e->scr[k], -1)) != MS_OK ||
            (err = ev_push(e, nw, e->scr[k], 1)) != MS_OK)
            return err;
    replace_rep(e, old, nw);
    e->v[nw].state = V_REP;
    e->v[old].state = V_DUP;
    for (uint32_t m = e->v[nw].dnext; m != NONE; m = e->v[m].dnext)
        e->v[m].tri = nw;
    return MS_OK;
}

static ms_err_t join_dup(dl_t *e, uint32_t p, uint32_t w)
{
    ms_err_t err;
    if (dup_less(e, p, w)) {
        e->v[p].dnext = w;
        if ((err = swap_rep(e, w, p)) != MS_OK)
            return err;
        return ev_push(e, p, w, 1);
    }
    uint32_t prev = w;
    while (e->v[prev].dnext != NONE && dup_less(e, e->v[prev].dnext, p))
        prev = e->v[prev].dnext;
    uint32_t next = e->v[prev].dnext;
    e->v[p].dnext = next;
    e->v[prev].dnext = p;
    e->v[p].state = V_DUP;
    e->v[p].tri = w;
    if (next != NONE &&
        ((err = ev_push(e, prev, next, -1)) != MS_OK || (err = ev_push(e, p, next, 1)) != MS_OK))
        return err;
    return ev_push(e, prev, p, 1);
}

/* ---- line mode ------------------------------------------------------------ */

static size_t line_find(const dl_t *e, uint32_t p)
{
    size_t lo = 0, hi = e->n_line;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (lex_cmp(e, e->line[mid], p) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static ms_err_t join_line(dl_t *e, uint32_t p)
{
    ms_err_t err;
    size_t at = line_find(e, p);
    if (at < e->n_line && same_pos(e, e->line[at], p))
        return join_dup(e, p, e->line[at]);
    new_rep(e, p);
    e->v[p].tri = NONE;
    if (e->n_line >= 2 && orient(e, e->line[0], e->line[e->n_line - 1], p) != 0)
        return leave_line_mode(e, p);
    if ((err = ms_topo_grow((void **)&e->line, &e->cap_line, e->n_line + 1, sizeof(uint32_t))) !=
        MS_OK)
        return err;
    memmove(e->line + at + 1, e->line + at, (e->n_line - at) * sizeof(uint32_t));
    e->line[at] = p;
    e->n_line++;
    uint32_t l = at > 0 ? e->line[at - 1] : NONE;
    uint32_t r = at + 1 < e->n_line ? e->line[at + 1] : NONE;
    if (l != NONE && r != NONE && (err = ev_push(e, l, r, -1)) != MS_OK)
        return err;
    if (l != NONE && (err = ev_push(e, l, p, 1)) != MS_OK)
        return err;
    if (r != NONE && (err = ev_push(e, p, r, 1)) != MS_OK)
        return err;
    return MS_OK;
}

static ms_err_t leave_line(dl_t *e, uint32_t p)
{
    ms_err_t err;
    size_t at = line_find(e, p);
    if (at >= e->n_line || e->line[at] != p)
        return MS_ERR_STATE;
    uint32_t l = at > 0 ? e->line[at - 1] : NONE;
    uint32_t r = at + 1 < e->n_line ? e->line[at + 1] : NONE;
    memmove(e->line + at, e->line + at + 1, (e->n_line - at - 1) * sizeof(uint32_t));
    e->n_line--;
    if (l != NONE && (err = ev_push(e, l, p, -1)) != MS_OK)
        return err;
    if (r != NONE && (err = ev_push(e, p, r, -1)) != MS_OK)
        return err;
    if (l != NONE && r != NONE && (err = ev_push(e, l, r, 1)) != MS_OK)
        return err;
    return MS_OK;
}

/* ---- removal --------------------------------------------------------------- */

/* Back to line mode: the remaining representatives are the collinear chain. */
static ms_err_t enter_line_mode(dl_t *e, const uint32_t *chain, size_t m)
{
    ms_err_t err = ms_topo_grow((void **)&e->line, &e->cap_line, m, sizeof(uint32_t));
    if (err != MS_OK)
        return err;
    int rev = m > 1 && lex_cmp(e, chain[0], chain[m - 1]) > 0;
    for (size_t k = 0; k < m; k++) {
        e->line[k] = rev ? chain[m - 1 - k] : chain[k];
        e->v[e->line[k]].tri = NONE;
    }
    e->n_line = m;
    /* a fresh line mode may follow many flips; restart the free list */
    e->n_t = 0;
    e->free_t = NONE;
    return MS_OK;
}

/* Removes the inner vertex v whose n star triangles are in e->scr and fills the
 * hole by ear clipping. Needed when no edge at v can be flipped away because v
 * lies exactly on a segment between two of its neighbours (lattices do that). */
static ms_err_t fill_hole(dl_t *e, uint32_t v, size_t n)
{
    ms_err_t err = ms_topo_grow((void **)&e->scr, &e->cap_scr, 4 * n, sizeof(uint32_t));
    if (err != MS_OK)
        return err;
    uint32_t *st = e->scr, *poly = st + n, *st_t = st + 2 * n, *st_i = st + 3 * n;
    /* polygon edge k runs poly[k] -> poly[k+1]; (st_t, st_i) is what lies beyond it */
    for (size_t k = 0; k < n; k++) {
        uint32_t t = st[k];
        int kv = tri_idx(e, t, v);
        poly[k] = e->t[t].v[(kv + 1) % 3];
        st_t[k] = e->t[t].n[kv];
        st_i[k] = st_t[k] == NONE ? 0 : (uint32_t)nbr_idx(e, st_t[k], t);
        if ((err = ev_push(e, v, poly[k], -1)) != MS_OK)
            return err;
    }
    for (size_t k = 0; k < n; k++)
        tri_free(e, st[k]);
    size_t m = n;
    while (m >= 3) {
        size_t i = 0;
        if (m > 3) {
            for (i = 0; i < m; i++) {
                uint32_t p = poly[(i + m - 1) % m], q = poly[i], r = poly[(i + 1) % m];
                if (orient(e, p, q, r) <= 0)
                    continue;
                size_t k;
                for (k = 0; k < m; k++) {
                    uint32_t x = poly[k];
                    if (x == p || x == q || x == r)
                        continue;
                    if (orient(e, p, q, x) >= 0 && orient(e, q, r, x) >= 0 &&
                        orient(e, r, p, x) >= 0)
                        break;
                }
                if (k == m)
                    break;
            }
            if (i == m)
                return MS_ERR_STATE; /* a simple polygon always has an ear */
        }
        size_t ip = (i + m - 1) % m, in = (i + 1) % m;
        uint32_t p = poly[ip], q = poly[i], r = poly[in];
        uint32_t t = tri_new(e, p, q, r);
        e->t[t].n[2] = st_t[ip];
        if (st_t[ip] != NONE)
            e->t[st_t[ip]].n[st_i[ip]] = t;
        e->t[t].n[0] = st_t[i];
        if (st_t[i] != NONE)
            e->t[st_t[i]].n[st_i[i]] = t;
        e->v[p].tri = e->v[q].tri = e->v[r].tri = t;
        e->hint_tri = t;
        if (m == 3) {
            e->t[t].n[1] = st_t[in];
            if (st_t[in] != NONE)
                e->t[st_t[in]].n[st_i[in]] = t;
            break;
        }
        if ((err = ev_push(e, p, r, 1)) != MS_OK || (err = push_edge(e, t, r, p)) != MS_OK)
            return err;
        /* the diagonal r -> p replaces edges ip and i; beyond it lies t */
        st_t[ip] = t;
        st_i[ip] = 1;
        memmove(poly + i, poly + i + 1, (m - i - 1) * sizeof(uint32_t));
        memmove(st_t + i, st_t + i + 1, (m - i - 1) * sizeof(uint32_t));
        memmove(st_i + i, st_i + i + 1, (m - i - 1) * sizeof(uint32_t));
        m--;
    }
    grid_replace(e, v, poly[0]);
    return lawson(e, NONE);
}

static ms_err_t remove_2d(dl_t *e, uint32_t v)
{
    ms_err_t err;
    size_t n;
    int hull;
    /* Degree reduction: flip v-b when the quad (v, a, b, c) is strictly convex. */
    for (;;) {
        if ((err = collect_star(e, v, &n, &hull)) != MS_OK)
            return err;
        if (!hull && n <= 3)
            break;
        size_t pairs = hull ? n - 1 : n;
        int flipped = 0;
        for (size_t j = 0; j < pairs && !flipped; j++) {
            uint32_t t = e->scr[j], u = e->scr[(j + 1) % n];
            int k = tri_idx(e, t, v);
            uint32_t a = e->t[t].v[(k + 1) % 3], b = e->t[t].v[(k + 2) % 3];
            uint32_t c = e->t[u].v[(tri_idx(e, u, v) + 2) % 3];
            if (orient(e, a, b, c) > 0 && orient(e, v, a, c) > 0) {
                if ((err = flip(e, t, (k + 1) % 3)) != MS_OK ||
                    (err = push_edge(e, t, a, c)) != MS_OK)
                    return err;
                flipped = 1;
            }
        }
        if (!flipped) {
            if (!hull)
                return fill_hole(e, v, n); /* v on a segment between two neighbours */
            break;
        }
    }
    uint32_t *st = e->scr;
    if (!hull) {
        uint32_t t0 = st[0], t1 = st[1], t2 = st[2];
        int k0 = tri_idx(e, t0, v), k1 = tri_idx(e, t1, v), k2 = tri_idx(e, t2, v);
        uint32_t a = e->t[t0].v[(k0 + 1) % 3], b = e->t[t0].v[(k0 + 2) % 3];
        uint32_t c = e->t[t1].v[(k1 + 2) % 3];
        uint32_t o0 = e->t[t0].n[k0], o1 = e->t[t1].n[k1], o2 = e->t[t2].n[k2];
        e->t[t0] = (dtri_t){{a, b, c}, {o1, o2, o0}};
        relink(e, o1, t1, t0);
        relink(e, o2, t2, t0);
        tri_free(e, t1);
        tri_free(e, t2);
        e->v[a].tri = e->v[b].tri = e->v[c].tri = t0;
        e->hint_tri = t0;
        if ((err = ev_push(e, v, a, -1)) != MS_OK || (err = ev_push(e, v, b, -1)) != MS_OK ||
            (err = ev_push(e, v, c, -1)) != MS_OK)
            return err;
        grid_replace(e, v, a);
        return lawson(e, NONE);
    }
    /* On the hull: chain h[0..n] with st[j] = (v, h[j], h[j+1]). */
    if ((err = ms_topo_grow((void **)&e->scr, &e->cap_scr, 2 * n + 1, sizeof(uint32_t))) != MS_OK)
        return err;
    st = e->scr;
    uint32_t *h = st + n;
    for (size_t j = 0; j < n; j++) {
        int k = tri_idx(e, st[j], v);
        h[j] = e->t[st[j]].v[(k + 1) % 3];
        h[j + 1] = e->t[st[j]].v[(k + 2) % 3];
    }
    for (size_t j = 0; j <= n; j++)
        if ((err = ev_push(e, v, h[j], -1)) != MS_OK)
            return err;
    grid_replace(e, v, h[0]);
    if (orient(e, h[n], v, h[0]) == 0) {
        /* v sat on a straight stretch of hull: its last two triangles merge. */
        if (n != 2)
            return MS_ERR_STATE;
        uint32_t t0 = st[0], t1 = st[1];
        uint32_t o0 = e->t[t0].n[tri_idx(e, t0, v)], o1 = e->t[t1].n[tri_idx(e, t1, v)];
        e->t[t0] = (dtri_t){{h[0], h[1], h[2]}, {o1, NONE, o0}};
        relink(e, o1, t1, t0);
        tri_free(e, t1);
        e->v[h[0]].tri = e->v[h[1]].tri = e->v[h[2]].tri = t0;
        e->hint_tri = t0;
        if ((err = ev_push(e, h[0], h[2], 1)) != MS_OK)
            return err;
        return lawson(e, NONE);
    }
    /* v was a corner: its neighbours now form hull. */
    for (size_t j = 0; j < n; j++) {
        uint32_t t = st[j];
        uint32_t o = e->t[t].n[tri_idx(e, t, v)];
        relink(e, o, t, NONE);
        tri_free(e, t);
        if (o != NONE) {
            e->v[h[j]].tri = o;
            e->v[h[j + 1]].tri = o;
            e->hint_tri = o;
        }
    }
    if (e->live_t == 0) {
        e->n_stk = 0;
        return enter_line_mode(e, h, n + 1);
    }
    return lawson(e, NONE);
}

/* ---- ops ------------------------------------------------------------------- */

static int present(const dl_t *e, ms_peer_t p)
{
    return p < e->n_v && e->v[p].state != V_ABSENT;
}

static ms_err_t place(dl_t *e, uint32_t p)
{
    ms_err_t err;
    if (e->live_t == 0)
        return join_line(e, p);
    uint32_t t;
    int i = 0;
    int loc = locate(e, p, &t, &i);
    if (loc == LOC_VERTEX)
        return join_dup(e, p, t);
    if ((err = tri_reserve(e, 2)) != MS_OK)
        return err;
    new_rep(e, p);
    if (loc == LOC_IN)
        err = insert_in(e, t, p);
    else if (loc == LOC_EDGE)
        err = insert_on_edge(e, t, i, p);
    else
        err = insert_out(e, t, i, p);
    if (err != MS_OK)
        return err;
    e->hint_tri = e->v[p].tri;
    return lawson(e, p);
}

static ms_err_t unplace(dl_t *e, uint32_t p)
{
    ms_err_t err;
    dvert_t *P = &e->v[p];
    if (P->state == V_DUP) {
        uint32_t prev = P->tri;
        while (e->v[prev].dnext != p)
            prev = e->v[prev].dnext;
        uint32_t next = P->dnext;
        e->v[prev].dnext = next;
        if ((err = ev_push(e, prev, p, -1)) != MS_OK)
            return err;
        if (next != NONE && ((err = ev_push(e, p, next, -1)) != MS_OK ||
                             (err = ev_push(e, prev, next, 1)) != MS_OK))
            return err;
        return MS_OK;
    }
    if (P->dnext != NONE) {
        uint32_t s = P->dnext;
        if ((err = swap_rep(e, p, s)) != MS_OK)
            return err;
        return ev_push(e, p, s, -1);
    }
    e->n_rep--;
    if (e->live_t == 0) {
        grid_replace(e, p, NONE);
        return leave_line(e, p);
    }
    return remove_2d(e, p);
}

static void clear_vert(dl_t *e, uint32_t p)
{
    e->v[p] = (dvert_t){0, 0, 0, NONE, NONE, V_ABSENT};
}

static ms_err_t dl_join(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    dl_t *e = (dl_t *)t;
    ms_err_t err;
    if (p >= MS_PEER_MAX || !isfinite(pos.x) || !isfinite(pos.y))
        return MS_ERR_INVAL;
    if (present(e, p))
        return MS_ERR_EXISTS;
    if (p >= e->n_v) {
        size_t old = e->n_v;
        if ((err = ms_topo_grow((void **)&e->v, &e->n_v, (size_t)p + 1, sizeof(*e->v))) != MS_OK)
            return err;
        for (size_t i = old; i < e->n_v; i++)
            clear_vert(e, (uint32_t)i);
    }
    e->v[p] = (dvert_t){
        ms_delaunay_quantize(pos.x), ms_delaunay_quantize(pos.y), pos.key, NONE, NONE, V_ABSENT};
    e->n_ev = 0;
    e->n_stk = 0;
    err = place(e, p);
    if (e->v[p].state != V_ABSENT)
        e->n_peer++; /* on a late failure p is in, but flips may be missing */
    if (err != MS_OK) {
        e->n_ev = 0;
        return err;
    }
    return ev_flush(e, diff);
}

static ms_err_t dl_leave(ms_topo_t *t, ms_peer_t p, ms_topo_diff_t *diff)
{
    dl_t *e = (dl_t *)t;
    if (!present(e, p))
        return MS_ERR_NOTFOUND;
    e->n_ev = 0;
    e->n_stk = 0;
    ms_err_t err = unplace(e, p);
    e->n_peer--;
    clear_vert(e, p);
    if (err != MS_OK) {
        e->n_ev = 0;
        return err;
    }
    return ev_flush(e, diff);
}

static ms_err_t dl_move(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff)
{
    dl_t *e = (dl_t *)t;
    ms_err_t err;
    if (!present(e, p))
        return MS_ERR_NOTFOUND;
    if (!isfinite(pos.x) || !isfinite(pos.y))
        return MS_ERR_INVAL;
    int32_t x = ms_delaunay_quantize(pos.x), y = ms_delaunay_quantize(pos.y);
    if (x == e->v[p].x && y == e->v[p].y && pos.key == e->v[p].key)
        return MS_OK;
    /* Leave and join under one log, so edges that survive the move cancel. */
    e->n_ev = 0;
    e->n_stk = 0;
    err = unplace(e, p);
    e->n_peer--;
    clear_vert(e, p);
    if (err != MS_OK)
        goto fail;
    e->v[p] = (dvert_t){x, y, pos.key, NONE, NONE, V_ABSENT};
    e->n_stk = 0;
    err = place(e, p);
    if (e->v[p].state != V_ABSENT)
        e->n_peer++;
    if (err != MS_OK)
        goto fail;
    return ev_flush(e, diff);
fail:
    e->n_ev = 0;
    return err;
}

static ms_err_t dl_create(const ms_topo_params_t *params, ms_topo_t **out)
{
    dl_t *e = calloc(1, sizeof(*e));
    if (!e)
        return MS_ERR_NOMEM;
    e->base.ops = &ms_topo_delaunay_ops;
    e->free_t = NONE;
    e->hint_tri = NONE;
    e->rng = params ? params->seed : 0;
    e->grid_bits = 2;
    e->grid = malloc(((size_t)1 << (2 * e->grid_bits)) * sizeof(uint32_t));
    if (!e->grid) {
        free(e);
        return MS_ERR_NOMEM;
    }
    memset(e->grid, 0xff, ((size_t)1 << (2 * e->grid_bits)) * sizeof(uint32_t));
    *out = &e->base;
    return MS_OK;
}

static void dl_destroy(ms_topo_t *t)
{
    dl_t *e = (dl_t *)t;
    if (!e)
        return;
    free(e->v);
    free(e->t);
    free(e->line);
    free(e->grid);
    free(e->ev);
    free(e->stk);
    free(e->scr);
    free(e);
}

typedef struct {
    ms_peer_t *out;
    size_t max, n;
} nbout_t;

static void nbout_fn(uint32_t u, void *ud)
{
    nbout_t *o = ud;
    if (o->n < o->max)
        o->out[o->n] = u;
    o->n++;
}

static void all_neighbours(const dl_t *e, ms_peer_t p, nb_fn fn, void *ud)
{
    const dvert_t *P = &e->v[p];
    if (P->state == V_DUP) {
        uint32_t prev = P->tri;
        while (e->v[prev].dnext != p)
            prev = e->v[prev].dnext;
        fn(prev, ud);
    } else {
        mesh_neighbours(e, p, fn, ud);
    }
    if (P->dnext != NONE)
        fn(P->dnext, ud);
}

static size_t dl_neighbours(const ms_topo_t *t, ms_peer_t p, ms_peer_t *out, size_t max)
{
    const dl_t *e = (const dl_t *)t;
    if (!present(e, p))
        return 0;
    nbout_t o = {out, max, 0};
    all_neighbours(e, p, nbout_fn, &o);
    return o.n;
}

typedef struct {
    uint32_t want;
    int found;
} adj_t;

static void adj_fn(uint32_t u, void *ud)
{
    adj_t *a = ud;
    if (u == a->want)
        a->found = 1;
}

static int dl_adjacent(const ms_topo_t *t, ms_peer_t a, ms_peer_t b)
{
    const dl_t *e = (const dl_t *)t;
    if (a == b || !present(e, a) || !present(e, b))
        return 0;
    adj_t x = {b, 0};
    all_neighbours(e, a, adj_fn, &x);
    return x.found;
}

static void dl_edges(const ms_topo_t *t, ms_topo_edge_fn fn, void *ud)
{
    const dl_t *e = (const dl_t *)t;
    if (e->live_t == 0) {
        for (size_t i = 0; i + 1 < e->n_line; i++) {
            uint32_t a = e->line[i], b = e->line[i + 1];
            fn(a < b ? a : b, a < b ? b : a, MS_EDGE_PEER, ud);
        }
    }
    for (size_t k = 0; k < e->n_t && e->live_t > 0; k++) {
        const dtri_t *T = &e->t[k];
        if (T->v[0] == NONE)
            continue;
        for (int i = 0; i < 3; i++) {
            if (T->n[i] != NONE && T->n[i] < k)
                continue;
            uint32_t a = T->v[(i + 1) % 3], b = T->v[(i + 2) % 3];
            fn(a < b ? a : b, a < b ? b : a, MS_EDGE_PEER, ud);
        }
    }
    for (size_t i = 0; i < e->n_v; i++) {
        uint32_t b = e->v[i].dnext;
        if (e->v[i].state != V_ABSENT && b != NONE)
            fn((uint32_t)i < b ? (uint32_t)i : b, (uint32_t)i < b ? b : (uint32_t)i, MS_EDGE_PEER,
               ud);
    }
}

static size_t dl_count(const ms_topo_t *t)
{
    return ((const dl_t *)t)->n_peer;
}

size_t ms_delaunay_bytes(const ms_topo_t *t)
{
    const dl_t *e = (const dl_t *)ms_relink_inner(t);
    return sizeof(*e) + e->n_v * sizeof(*e->v) + e->cap_t * sizeof(*e->t) +
           e->cap_line * sizeof(uint32_t) + ((size_t)1 << (2 * e->grid_bits)) * sizeof(uint32_t) +
           e->cap_ev * sizeof(*e->ev) + e->cap_stk * sizeof(*e->stk) +
           e->cap_scr * sizeof(uint32_t);
}

typedef struct {
    size_t n;
} count_t;

static void count_fn(uint32_t u, void *ud)
{
    (void)u;
    ((count_t *)ud)->n++;
}

static ms_err_t dl_write_json(const ms_topo_t *t, json_t *obj)
{
    const dl_t *e = (const dl_t *)t;
    size_t max_deg = 0, sum_deg = 0, hull = 0;
    for (size_t i = 0; i < e->n_v; i++) {
        if (e->v[i].state == V_ABSENT)
            continue;
        count_t c = {0};
        all_neighbours(e, (ms_peer_t)i, count_fn, &c);
        sum_deg += c.n;
        if (c.n > max_deg)
            max_deg = c.n;
    }
    for (size_t k = 0; k < e->n_t && e->live_t > 0; k++)
        for (int i = 0; i < 3; i++)
            if (e->t[k].v[0] != NONE && e->t[k].n[i] == NONE)
                hull++;
    int bad = 0;
    bad |= json_object_set_new(obj, "mode", json_string(e->live_t ? "plane" : "line"));
    bad |= json_object_set_new(obj, "peers", json_integer((json_int_t)e->n_peer));
    bad |= json_object_set_new(obj, "vertices", json_integer((json_int_t)e->n_rep));
    bad |= json_object_set_new(obj, "edges", json_integer((json_int_t)(sum_deg / 2)));
    bad |= json_object_set_new(obj, "triangles", json_integer((json_int_t)e->live_t));
    bad |= json_object_set_new(obj, "hull_edges", json_integer((json_int_t)hull));
    bad |= json_object_set_new(obj, "mean_degree",
                               json_real(e->n_peer ? (double)sum_deg / (double)e->n_peer : 0.0));
    bad |= json_object_set_new(obj, "max_degree", json_integer((json_int_t)max_deg));
    bad |= json_object_set_new(obj, "bytes", json_integer((json_int_t)ms_delaunay_bytes(t)));
    return bad ? MS_ERR_NOMEM : MS_OK;
}

void ms_delaunay_triangles(const ms_topo_t *t, ms_delaunay_tri_fn fn, void *ud)
{
    const dl_t *e = (const dl_t *)ms_relink_inner(t);
    for (size_t k = 0; k < e->n_t && e->live_t > 0; k++)
        if (e->t[k].v[0] != NONE)
            fn(e->t[k].v[0], e->t[k].v[1], e->t[k].v[2], ud);
}

int ms_delaunay_orient(const ms_topo_t *t, ms_peer_t a, ms_peer_t b, ms_peer_t c)
{
    return orient((const dl_t *)ms_relink_inner(t), a, b, c);
}

int ms_delaunay_incircle(const ms_topo_t *t, ms_peer_t a, ms_peer_t b, ms_peer_t c, ms_peer_t d)
{
    return incircle((const dl_t *)ms_relink_inner(t), a, b, c, d);
}

/* orient(a, b, q) for q = (-1, -1), a point outside the grid and so outside the hull. */
static int orient_out(const dl_t *e, uint32_t a, uint32_t b)
{
    const dvert_t *p = &e->v[a], *q = &e->v[b];
    int64_t d = ((int64_t)q->x - p->x) * (-1 - (int64_t)p->y) -
                ((int64_t)q->y - p->y) * (-1 - (int64_t)p->x);
    return (d > 0) - (d < 0);
}

/* A triangle with a hull edge opposite corner *oi: a visibility walk towards
 * (-1, -1) from the last triangle an operation touched. Walks in a Delaunay
 * triangulation never cycle; the step bound only guards against a broken one. */
static uint32_t hull_triangle(const dl_t *e, int *oi)
{
    uint32_t t = e->hint_tri;
    if (t >= e->n_t || e->t[t].v[0] == NONE)
        for (t = 0; t < e->n_t && e->t[t].v[0] == NONE; t++)
            ;
    for (size_t steps = 0; steps <= e->live_t; steps++) {
        const dtri_t *T = &e->t[t];
        int moved = 0;
        for (int i = 0; i < 3 && !moved; i++) {
            if (orient_out(e, T->v[(i + 1) % 3], T->v[(i + 2) % 3]) >= 0)
                continue;
            if (T->n[i] == NONE) {
                *oi = i;
                return t;
            }
            t = T->n[i];
            moved = 1;
        }
        if (!moved)
            break;
    }
    for (t = 0; t < e->n_t; t++)
        for (int i = 0; i < 3; i++)
            if (e->t[t].v[0] != NONE && e->t[t].n[i] == NONE) {
                *oi = i;
                return t;
            }
    return NONE;
}

size_t ms_delaunay_hull(const ms_topo_t *t, ms_peer_t start, ms_peer_t *out, size_t max, int *line)
{
    const dl_t *e = (const dl_t *)ms_relink_inner(t);
    if (e->live_t == 0) {
        *line = 1;
        for (size_t i = 0; i < e->n_line && i < max; i++)
            out[i] = e->line[i];
        return e->n_line;
    }
    *line = 0;
    uint32_t tr = NONE, a = NONE, b = NONE;
    if (start < e->n_v && e->v[start].state == V_REP) {
        /* Around start, across edges start -> v[k+1], until the hull or back. */
        uint32_t t0 = e->v[start].tri, u = t0;
        for (;;) {
            int k = tri_idx(e, u, start);
            uint32_t nx = e->t[u].n[(k + 2) % 3];
            if (nx == NONE) {
                tr = u;
                a = start;
                b = e->t[u].v[(k + 1) % 3];
                break;
            }
            if ((u = nx) == t0)
                break;
        }
    }
    if (tr == NONE) {
        int i = 0;
        if ((tr = hull_triangle(e, &i)) == NONE)
            return 0;
        a = e->t[tr].v[(i + 1) % 3];
        b = e->t[tr].v[(i + 2) % 3];
    }
    /* The hull edge a->b of a counter-clockwise triangle runs counter-clockwise
     * around the hull; the next one leaves b across the last triangle around b. */
    size_t n = 0;
    if (max > 0)
        out[n] = a;
    n++;
    while (b != a && n <= e->n_rep) {
        if (n < max)
            out[n] = b;
        n++;
        int k = tri_idx(e, tr, b);
        while (e->t[tr].n[(k + 2) % 3] != NONE) {
            tr = e->t[tr].n[(k + 2) % 3];
            k = tri_idx(e, tr, b);
        }
        b = e->t[tr].v[(k + 1) % 3];
    }
    return n;
}

int ms_delaunay_check(const ms_topo_t *t, char *why, size_t why_len)
{
    const dl_t *e = (const dl_t *)ms_relink_inner(t);
#define BAD(...)                                                                                   \
    do {                                                                                           \
        snprintf(why, why_len, __VA_ARGS__);                                                       \
        return -1;                                                                                 \
    } while (0)
    size_t live = 0, peers = 0, reps = 0;
    for (size_t k = 0; k < e->n_t && e->live_t > 0; k++) {
        const dtri_t *T = &e->t[k];
        if (T->v[0] == NONE)
            continue;
        live++;
        for (int i = 0; i < 3; i++)
            if (T->v[i] >= e->n_v || e->v[T->v[i]].state != V_REP)
                BAD("triangle %zu corner %u is not a representative", k, T->v[i]);
        if (orient(e, T->v[0], T->v[1], T->v[2]) <= 0)
            BAD("triangle %zu is not counter-clockwise", k);
        for (int i = 0; i < 3; i++) {
            uint32_t u = T->n[i];
            if (u == NONE)
                continue;
            if (u >= e->n_t || e->t[u].v[0] == NONE)
                BAD("triangle %zu links a free slot", k);
            int j = nbr_idx(e, u, (uint32_t)k);
            if (e->t[u].n[j] != k)
                BAD("triangle %zu: neighbour %u does not link back", k, u);
            if (e->t[u].v[(j + 1) % 3] != T->v[(i + 2) % 3] ||
                e->t[u].v[(j + 2) % 3] != T->v[(i + 1) % 3])
                BAD("triangle %zu: neighbour %u does not share the edge", k, u);
        }
    }
    if (live != e->live_t)
        BAD("live triangle count %zu != %zu", live, e->live_t);
    for (size_t i = 0; i < e->n_v; i++) {
        const dvert_t *V = &e->v[i];
        if (V->state == V_ABSENT)
            continue;
        peers++;
        if (V->state == V_REP) {
            reps++;
            if (e->live_t > 0) {
                const dtri_t *T = V->tri < e->n_t ? &e->t[V->tri] : NULL;
                if (!T || (T->v[0] != i && T->v[1] != i && T->v[2] != i))
                    BAD("vertex %zu: bad triangle pointer", i);
            }
        } else {
            if (V->tri >= e->n_v || e->v[V->tri].state != V_REP ||
                !same_pos(e, V->tri, (uint32_t)i))
                BAD("duplicate %zu: bad representative", i);
        }
        uint32_t prev = (uint32_t)i;
        for (uint32_t m = V->dnext; m != NONE; m = e->v[m].dnext) {
            if (m >= e->n_v || e->v[m].state != V_DUP || !same_pos(e, m, prev) ||
                !dup_less(e, prev, m))
                BAD("duplicate chain at %zu broken", i);
            prev = m;
        }
    }
    if (peers != e->n_peer || reps != e->n_rep)
        BAD("counts: %zu peers (%zu), %zu representatives (%zu)", peers, e->n_peer, reps, e->n_rep);
    if (e->live_t == 0 && e->n_line != e->n_rep)
        BAD("line mode holds %zu of %zu representatives", e->n_line, e->n_rep);
    for (size_t i = 1; i < e->n_line && e->live_t == 0; i++)
        if (lex_cmp(e, e->line[i - 1], e->line[i]) >= 0)
            BAD("line not sorted at %zu", i);
    return 0;
#undef BAD
}

const ms_topo_ops_t ms_topo_delaunay_ops = {
    .name = "delaunay",
    .create = dl_create,
    .destroy = dl_destroy,
    .join = dl_join,
    .leave = dl_leave,
    .move = dl_move,
    .neighbours = dl_neighbours,
    .adjacent = dl_adjacent,
    .edges = dl_edges,
    .count = dl_count,
    .restore = NULL,
    .tick = NULL,
    .write_json = dl_write_json,
};

/* SPDX-License-Identifier: Apache-2.0 */
/* Property tests of the Delaunay engine against brute force: empty circles, hull, diffs, order. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delaunay.h"
#include "topology.h"

__extension__ typedef __int128 i128;

#define MAXP 4096

/* ck_assert reports every passing check to the runner; the brute-force loops run
 * millions of checks, so they only call into Check on failure. */
#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #c);                                     \
    } while (0)

/* ---- helpers ------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The plane coordinate that quantises exactly to grid point k. */
static double qpos(int64_t k)
{
    return -MS_DELAUNAY_RANGE +
           (double)k * (2 * MS_DELAUNAY_RANGE / (double)(MS_DELAUNAY_GRID - 1));
}

static ms_topo_pos_t gridpos(int64_t kx, int64_t ky, uint64_t key)
{
    ms_topo_pos_t p = {qpos(kx), qpos(ky), key};
    REQUIRE((ms_delaunay_quantize(p.x)) == (kx));
    REQUIRE((ms_delaunay_quantize(p.y)) == (ky));
    return p;
}

static ms_topo_pos_t randpos(uint64_t *s)
{
    ms_topo_pos_t p;
    p.x = ((double)(rnd(s) >> 11) / 9007199254740992.0) * 2e6 - 1e6;
    p.y = ((double)(rnd(s) >> 11) / 9007199254740992.0) * 2e6 - 1e6;
    p.key = rnd(s);
    return p;
}

typedef struct {
    uint64_t *v;
    size_t n, cap;
} eset_t;

static void eset_add(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    eset_t *s = ud;
    REQUIRE((kind) == (MS_EDGE_PEER));
    REQUIRE((a) < (b));
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        REQUIRE((s->v) != NULL);
    }
    s->v[s->n++] = ((uint64_t)a << 32) | b;
}

static int u64cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

static void eset_of(const ms_topo_t *t, eset_t *s)
{
    s->n = 0;
    t->ops->edges(t, eset_add, s);
    if (s->n > 1)
        qsort(s->v, s->n, sizeof(*s->v), u64cmp);
    for (size_t i = 1; i < s->n; i++)
        if (!(s->v[i] != s->v[i - 1]))
            ck_abort_msg("edge listed twice");
}

static int eset_eq(const eset_t *a, const eset_t *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0);
}

/* ---- harness: an engine plus the model of who is where --------------------- */

typedef struct {
    ms_topo_t *t;
    ms_topo_pos_t pos[MAXP];
    int in[MAXP];
    size_t n;
    int brute;      /* brute-force geometry after every operation */
    int check_diff; /* diff == difference of edge sets, every operation */
    eset_t before, after;
    ms_topo_diff_t d;
} h_t;

static h_t *h_new(uint64_t seed)
{
    h_t *h = calloc(1, sizeof(*h));
    REQUIRE((h) != NULL);
    const ms_topo_ops_t *ops = ms_topo_find("delaunay");
    REQUIRE((ops) != NULL);
    ms_topo_params_t params = {.seed = seed};
    REQUIRE((ops->create(&params, &h->t)) == (MS_OK));
    h->brute = 1;
    h->check_diff = 1;
    ms_topo_diff_init(&h->d);
    return h;
}

static void h_free(h_t *h)
{
    h->t->ops->destroy(h->t);
    free(h->before.v);
    free(h->after.v);
    ms_topo_diff_cleanup(&h->d);
    free(h);
}

typedef struct {
    int64_t x, y;
} qp_t;

static qp_t qof(const ms_topo_pos_t *p)
{
    return (qp_t){ms_delaunay_quantize(p->x), ms_delaunay_quantize(p->y)};
}

static int orient_q(qp_t a, qp_t b, qp_t c)
{
    int64_t d = (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
    return (d > 0) - (d < 0);
}

/* Exact, unperturbed: > 0 strictly inside the circle of ccw a, b, c. */
static int incircle_q(qp_t a, qp_t b, qp_t c, qp_t d)
{
    int64_t adx = a.x - d.x, ady = a.y - d.y, bdx = b.x - d.x, bdy = b.y - d.y;
    int64_t cdx = c.x - d.x, cdy = c.y - d.y;
    i128 al = (i128)adx * adx + (i128)ady * ady, bl = (i128)bdx * bdx + (i128)bdy * bdy;
    i128 cl = (i128)cdx * cdx + (i128)cdy * cdy;
    i128 det = al * (i128)(bdx * cdy - cdx * bdy) - bl * (i128)(adx * cdy - cdx * ady) +
               cl * (i128)(adx * bdy - bdx * ady);
    return (det > 0) - (det < 0);
}

static int qp_cmp(const void *x, const void *y)
{
    const qp_t *a = x, *b = y;
    if (a->x != b->x)
        return a->x < b->x ? -1 : 1;
    return (a->y > b->y) - (a->y < b->y);
}

typedef struct {
    h_t *h;
    ms_peer_t (*tri)[3];
    size_t n, cap;
} tris_t;

static void tri_add(ms_peer_t a, ms_peer_t b, ms_peer_t c, void *ud)
{
    tris_t *s = ud;
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->tri = realloc(s->tri, s->cap * sizeof(*s->tri));
        REQUIRE((s->tri) != NULL);
    }
    s->tri[s->n][0] = a;
    s->tri[s->n][1] = b;
    s->tri[s->n][2] = c;
    s->n++;
}

/* Everything checkable from outside, by brute force. */
static void h_brute(h_t *h)
{
    char why[256];
    if (!(ms_delaunay_check(h->t, why, sizeof(why)) == 0))
        ck_abort_msg("%s", why);
    REQUIRE((h->t->ops->count(h->t)) == (h->n));
    /* distinct positions */
    qp_t *pts = malloc((h->n + 1) * sizeof(*pts));
    size_t np = 0;
    for (size_t i = 0; i < MAXP; i++)
        if (h->in[i])
            pts[np++] = qof(&h->pos[i]);
    qsort(pts, np, sizeof(*pts), qp_cmp);
    size_t nd = 0;
    for (size_t i = 0; i < np; i++)
        if (nd == 0 || qp_cmp(&pts[i], &pts[nd - 1]) != 0)
            pts[nd++] = pts[i];
    tris_t ts = {h, NULL, 0, 0};
    ms_delaunay_triangles(h->t, tri_add, &ts);
    eset_of(h->t, &h->after);
    int collinear = 1;
    for (size_t i = 2; i < nd && collinear; i++)
        if (orient_q(pts[0], pts[1], pts[i]) != 0)
            collinear = 0;
    if (collinear) {
        REQUIRE((ts.n) == (0));
        /* a path through the distinct positions plus the duplicate chains */
        REQUIRE((h->after.n) == (h->n ? h->n - 1 : 0));
    } else {
        /* every triangle ccw with an empty circumcircle; every boundary edge a hull edge */
        i128 area2 = 0;
        size_t boundary = 0;
        for (size_t k = 0; k < ts.n; k++) {
            qp_t a = qof(&h->pos[ts.tri[k][0]]), b = qof(&h->pos[ts.tri[k][1]]);
            qp_t c = qof(&h->pos[ts.tri[k][2]]);
            REQUIRE((orient_q(a, b, c)) > (0));
            area2 += (i128)(b.x - a.x) * (c.y - a.y) - (i128)(b.y - a.y) * (c.x - a.x);
            for (size_t i = 0; i < nd; i++)
                if (!(incircle_q(a, b, c, pts[i]) <= 0))
                    ck_abort_msg("circle of triangle %zu not empty", k);
        }
        /* boundary edges: directed edges whose reverse no triangle has */
        for (size_t k = 0; k < ts.n; k++)
            for (int i = 0; i < 3; i++) {
                ms_peer_t a = ts.tri[k][i], b = ts.tri[k][(i + 1) % 3];
                int twin = 0;
                for (size_t m = 0; m < ts.n && !twin; m++)
                    for (int j = 0; j < 3; j++)
                        if (ts.tri[m][j] == b && ts.tri[m][(j + 1) % 3] == a)
                            twin = 1;
                if (twin)
                    continue;
                boundary++;
                qp_t qa = qof(&h->pos[a]), qb = qof(&h->pos[b]);
                for (size_t i2 = 0; i2 < nd; i2++) {
                    int o = orient_q(qa, qb, pts[i2]);
                    if (!(o >= 0))
                        ck_abort_msg("boundary edge with a point outside");
                    if (o == 0 && qp_cmp(&pts[i2], &qa) != 0 && qp_cmp(&pts[i2], &qb) != 0) {
                        /* collinear points on a hull edge must split it */
                        int between = (pts[i2].x - qa.x) * (pts[i2].x - qb.x) <= 0 &&
                                      (pts[i2].y - qa.y) * (pts[i2].y - qb.y) <= 0;
                        if (!(!between))
                            ck_abort_msg("hull edge jumps over a point");
                    }
                }
            }
        /* the triangles tile the convex hull: areas add up (monotone chain hull) */
        qp_t *hull = malloc(2 * (nd + 1) * sizeof(*hull));
        size_t m = 0;
        for (size_t i = 0; i < nd; i++) {
            while (m >= 2 && orient_q(hull[m - 2], hull[m - 1], pts[i]) <= 0)
                m--;
            hull[m++] = pts[i];
        }
        for (size_t i = nd - 1, lo = m + 1; i-- > 0;) {
            while (m >= lo && orient_q(hull[m - 2], hull[m - 1], pts[i]) <= 0)
                m--;
            hull[m++] = pts[i];
        }
        i128 harea2 = 0;
        for (size_t i = 0; i + 1 < m; i++)
            harea2 += (i128)hull[i].x * hull[i + 1].y - (i128)hull[i + 1].x * hull[i].y;
        free(hull);
        if (!(area2 == harea2))
            ck_abort_msg("triangles do not tile the hull");
        /* Euler for a triangulated disc: T = 2V - h - 2, E = 3V - h - 3 */
        REQUIRE((ts.n) == (2 * nd - boundary - 2));
        size_t dups = h->n - nd;
        REQUIRE((h->after.n) == (3 * nd - boundary - 3 + dups));
    }
    /* connected: union-find over the edges */
    uint32_t *uf = malloc(MAXP * sizeof(*uf));
    for (uint32_t i = 0; i < MAXP; i++)
        uf[i] = i;
    size_t comps = h->n;
    for (size_t k = 0; k < h->after.n; k++) {
        uint32_t a = (uint32_t)(h->after.v[k] >> 32), b = (uint32_t)h->after.v[k];
        REQUIRE(h->in[a] && h->in[b]);
        while (uf[a] != a)
            a = uf[a] = uf[uf[a]];
        while (uf[b] != b)
            b = uf[b] = uf[uf[b]];
        if (a != b) {
            uf[a] = b;
            comps--;
        }
    }
    REQUIRE((comps) <= (1));
    /* neighbours() and adjacent() agree with edges() */
    ms_peer_t nb[64];
    for (size_t k = 0; k < h->after.n && k < 200; k++) {
        uint32_t a = (uint32_t)(h->after.v[k] >> 32), b = (uint32_t)h->after.v[k];
        REQUIRE(h->t->ops->adjacent(h->t, a, b));
        REQUIRE(h->t->ops->adjacent(h->t, b, a));
        size_t n = h->t->ops->neighbours(h->t, a, nb, 64);
        int found = 0;
        for (size_t i = 0; i < n && i < 64; i++)
            found |= nb[i] == b;
        REQUIRE(found);
    }
    free(ts.tri);
    free(pts);
    free(uf);
}

static void h_after_op(h_t *h)
{
    if (h->check_diff) {
        eset_of(h->t, &h->after);
        /* expected: after \ before connected, before \ after disconnected */
        size_t nc = 0, nd = 0, i = 0, j = 0;
        ms_topo_diff_t *d = &h->d;
        size_t n_conn = d->n_connect, n_disc = d->n_disconnect;
        ms_topo_diff_normalize(d);
        REQUIRE((d->n_connect) == (n_conn)); /* already exact */
        REQUIRE((d->n_disconnect) == (n_disc));
        while (i < h->before.n || j < h->after.n) {
            uint64_t b = i < h->before.n ? h->before.v[i] : UINT64_MAX;
            uint64_t a = j < h->after.n ? h->after.v[j] : UINT64_MAX;
            if (a == b) {
                i++;
                j++;
            } else if (a < b) {
                REQUIRE((nc) < (d->n_connect));
                REQUIRE((d->connect[nc].a) == ((uint32_t)(a >> 32)));
                REQUIRE((d->connect[nc].b) == ((uint32_t)a));
                nc++;
                j++;
            } else {
                REQUIRE((nd) < (d->n_disconnect));
                REQUIRE((d->disconnect[nd].a) == ((uint32_t)(b >> 32)));
                REQUIRE((d->disconnect[nd].b) == ((uint32_t)b));
                nd++;
                i++;
            }
        }
        REQUIRE((nc) == (d->n_connect));
        REQUIRE((nd) == (d->n_disconnect));
    }
    if (h->brute)
        h_brute(h);
}

static void h_before_op(h_t *h)
{
    ms_topo_diff_clear(&h->d);
    if (h->check_diff)
        eset_of(h->t, &h->before);
}

static void h_join(h_t *h, ms_peer_t p, ms_topo_pos_t pos)
{
    h_before_op(h);
    REQUIRE((h->t->ops->join(h->t, p, pos, &h->d)) == (MS_OK));
    h->pos[p] = pos;
    h->in[p] = 1;
    h->n++;
    h_after_op(h);
}

static void h_leave(h_t *h, ms_peer_t p)
{
    h_before_op(h);
    REQUIRE((h->t->ops->leave(h->t, p, &h->d)) == (MS_OK));
    h->in[p] = 0;
    h->n--;
    h_after_op(h);
}

static void h_move(h_t *h, ms_peer_t p, ms_topo_pos_t pos)
{
    h_before_op(h);
    REQUIRE((h->t->ops->move(h->t, p, pos, &h->d)) == (MS_OK));
    h->pos[p] = pos;
    h_after_op(h);
}

static ms_peer_t pick_in(h_t *h, uint64_t *s)
{
    for (;;) {
        ms_peer_t p = (ms_peer_t)(rnd(s) % MAXP);
        if (h->in[p])
            return p;
    }
}

static ms_peer_t pick_free(h_t *h, uint64_t *s, size_t range)
{
    for (;;) {
        ms_peer_t p = (ms_peer_t)(rnd(s) % range);
        if (!h->in[p])
            return p;
    }
}

/* Edges of a fresh engine fed pos[order[i]] for i < n. */
static void edges_in_order(const ms_topo_pos_t *pos, const ms_peer_t *order, size_t n,
                           uint64_t seed, eset_t *out)
{
    h_t *h = h_new(seed);
    h->brute = 0;
    h->check_diff = 0;
    for (size_t i = 0; i < n; i++)
        h_join(h, order[i], pos[order[i]]);
    h_brute(h);
    eset_of(h->t, out);
    h_free(h);
}

static void shuffle(ms_peer_t *v, size_t n, uint64_t *s)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = rnd(s) % i;
        ms_peer_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* The same set joined in several orders, and reached through extra joins and
 * leaves, gives one edge set. */
static void check_order_independence(const ms_topo_pos_t *pos, size_t n, uint64_t seed)
{
    ms_peer_t *order = malloc(n * sizeof(*order));
    for (size_t i = 0; i < n; i++)
        order[i] = (ms_peer_t)i;
    eset_t ref = {0}, got = {0};
    edges_in_order(pos, order, n, seed, &ref);
    uint64_t s = seed;
    for (int r = 0; r < 4; r++) {
        shuffle(order, n, &s);
        edges_in_order(pos, order, n, seed + (uint64_t)r + 1, &got);
        if (!(eset_eq(&ref, &got)))
            ck_abort_msg("order %d gives other edges", r);
    }
    /* with detours: extra peers at random spots (and on existing spots) come and go */
    h_t *h = h_new(seed ^ 77);
    h->brute = 0;
    for (size_t i = 0; i < n; i++) {
        h_join(h, order[i], pos[order[i]]);
        if (rnd(&s) % 3 == 0) {
            ms_peer_t x = (ms_peer_t)(n + i);
            ms_topo_pos_t px = rnd(&s) % 2 ? randpos(&s) : pos[order[rnd(&s) % (i + 1)]];
            px.key = rnd(&s);
            h_join(h, x, px);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (h->in[n + i])
            h_leave(h, (ms_peer_t)(n + i));
    h_brute(h);
    eset_of(h->t, &got);
    if (!(eset_eq(&ref, &got)))
        ck_abort_msg("joins and leaves give other edges");
    h_free(h);
    free(ref.v);
    free(got.v);
    free(order);
}

/* ---- tests ----------------------------------------------------------------- */

START_TEST(small_cases_and_errors)
{
    h_t *h = h_new(1);
    ms_topo_t *t = h->t;
    ck_assert_str_eq(t->ops->name, "delaunay");
    ms_topo_t *geo = NULL;
    /* geo positions get the spherical engine (test_geo), under the same name */
    ck_assert_int_eq(ms_topo_create("delaunay", &(ms_topo_params_t){.geo = 1}, &geo), MS_OK);
    ck_assert_str_eq(geo->ops->name, "delaunay");
    ck_assert_ptr_ne(geo->ops, t->ops);
    geo->ops->destroy(geo);
    ms_peer_t nb[8];
    h_join(h, 5, gridpos(100, 100, 1));
    ck_assert_uint_eq(t->ops->neighbours(t, 5, nb, 8), 0);
    h_join(h, 2, gridpos(300, 100, 2));
    ck_assert(t->ops->adjacent(t, 2, 5));
    h_join(h, 9, gridpos(200, 300, 3));
    ck_assert_uint_eq(t->ops->neighbours(t, 9, nb, 8), 2);
    ck_assert_int_eq(t->ops->join(t, 9, gridpos(1, 1, 3), &h->d), MS_ERR_EXISTS);
    ck_assert_int_eq(t->ops->join(t, 10, (ms_topo_pos_t){NAN, 0, 0}, &h->d), MS_ERR_INVAL);
    ck_assert_int_eq(t->ops->join(t, MS_PEER_MAX, gridpos(1, 1, 3), &h->d), MS_ERR_INVAL);
    ck_assert_int_eq(t->ops->leave(t, 10, &h->d), MS_ERR_NOTFOUND);
    ck_assert_int_eq(t->ops->move(t, 10, gridpos(1, 1, 3), &h->d), MS_ERR_NOTFOUND);
    /* out-of-range positions clamp to the border */
    h_join(h, 11, (ms_topo_pos_t){5e9, -5e9, 4});
    ck_assert_int_eq(ms_delaunay_quantize(5e9), MS_DELAUNAY_GRID - 1);
    ck_assert_int_eq(ms_delaunay_quantize(-5e9), 0);
    json_t *j = json_object();
    ck_assert_int_eq(t->ops->write_json(t, j), MS_OK);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "peers")), 4);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "triangles")), 3);
    json_decref(j);
    h_leave(h, 5);
    h_leave(h, 9);
    h_leave(h, 11);
    h_leave(h, 2);
    ck_assert_uint_eq(t->ops->count(t), 0);
    h_free(h);
}
END_TEST

START_TEST(random_sequences_brute_force)
{
    for (uint64_t seed = 1; seed <= 6; seed++) {
        uint64_t s = seed * 1000;
        h_t *h = h_new(seed);
        for (int i = 0; i < 120; i++)
            h_join(h, pick_free(h, &s, 300), randpos(&s));
        for (int step = 0; step < 700; step++) {
            unsigned r = (unsigned)(rnd(&s) % 10);
            if (r < 4 && h->n > 0)
                h_leave(h, pick_in(h, &s));
            else if (r < 7 && h->n > 0)
                h_move(h, pick_in(h, &s), randpos(&s));
            else if (h->n < 250)
                h_join(h, pick_free(h, &s, 300), randpos(&s));
        }
        while (h->n > 0)
            h_leave(h, pick_in(h, &s));
        h_free(h);
    }
}
END_TEST

START_TEST(clustered_and_small_moves)
{
    /* tight clusters far apart: walks from random starts, many near-degenerate triangles */
    uint64_t s = 99;
    h_t *h = h_new(5);
    for (ms_peer_t p = 0; p < 150; p++) {
        int64_t cx = (int64_t)(p % 3) * 300000000 + 100000, cy = (int64_t)(p % 3) * 7 + 1000;
        h_join(h, p, gridpos(cx + (int64_t)(rnd(&s) % 40), cy + (int64_t)(rnd(&s) % 40), rnd(&s)));
    }
    for (int i = 0; i < 300; i++) {
        ms_peer_t p = pick_in(h, &s);
        ms_topo_pos_t q = h->pos[p];
        h_move(h, p,
               gridpos(ms_delaunay_quantize(q.x) + (int64_t)(rnd(&s) % 5) - 2,
                       ms_delaunay_quantize(q.y) + (int64_t)(rnd(&s) % 5) - 2, q.key));
    }
    h_free(h);
}
END_TEST

START_TEST(grid_cocircular)
{
    /* a 12x12 lattice: every unit square is cocircular */
    ms_topo_pos_t pos[144];
    uint64_t s = 7;
    for (int i = 0; i < 144; i++)
        pos[i] = gridpos(1000 + (i % 12) * 64, 5000 + (i / 12) * 64, rnd(&s));
    check_order_independence(pos, 144, 11);
    /* leaves and re-joins on the lattice, brute force after each */
    h_t *h = h_new(3);
    for (ms_peer_t p = 0; p < 144; p++)
        h_join(h, p, pos[p]);
    for (int i = 0; i < 200; i++) {
        ms_peer_t p = (ms_peer_t)(rnd(&s) % 144);
        if (h->in[p])
            h_leave(h, p);
        else
            h_join(h, p, pos[p]);
    }
    h_free(h);
}
END_TEST

START_TEST(circle_lattice_points)
{
    /* all lattice points on x^2 + y^2 = 65^2, plus the centre and a few inside */
    ms_topo_pos_t pos[64];
    size_t n = 0;
    uint64_t s = 5;
    for (int x = -65; x <= 65; x++)
        for (int y = -65; y <= 65; y++)
            if (x * x + y * y == 65 * 65)
                pos[n++] = gridpos((1 << 29) + x + 100, (1 << 29) + y + 100, rnd(&s));
    ck_assert_uint_ge(n, 30);
    check_order_independence(pos, n, 21);
    pos[n++] = gridpos((1 << 29) + 100, (1 << 29) + 100, 1);
    pos[n++] = gridpos((1 << 29) + 110, (1 << 29) + 95, 2);
    check_order_independence(pos, n, 22);
}
END_TEST

START_TEST(duplicates)
{
    /* 25 spots, 1-4 peers each with random keys, random spots on a lattice */
    ms_topo_pos_t pos[100];
    uint64_t s = 13;
    size_t n = 0;
    for (int spot = 0; spot < 25 && n < 96; spot++) {
        int mult = 1 + (int)(rnd(&s) % 4);
        int64_t x = 20000 + (spot % 5) * 100, y = 30000 + (spot / 5) * 100;
        for (int k = 0; k < mult; k++)
            pos[n++] = gridpos(x, y, rnd(&s));
    }
    check_order_independence(pos, n, 31);
    /* leave representatives first, then the others; brute force each step */
    h_t *h = h_new(9);
    for (ms_peer_t p = 0; p < n; p++)
        h_join(h, p, pos[p]);
    for (int i = 0; i < 150; i++) {
        ms_peer_t p = (ms_peer_t)(rnd(&s) % n);
        if (h->in[p])
            h_leave(h, p);
        else
            h_join(h, p, pos[p]);
    }
    /* everyone on one spot: a chain sorted by key */
    h_t *g = h_new(2);
    for (ms_peer_t p = 0; p < 10; p++)
        h_join(g, p, gridpos(7, 7, 100 - p));
    ck_assert(g->t->ops->adjacent(g->t, 9, 8));
    ck_assert(!g->t->ops->adjacent(g->t, 9, 7));
    h_leave(g, 9);
    h_leave(g, 4);
    ck_assert(g->t->ops->adjacent(g->t, 5, 3));
    h_free(g);
    h_free(h);
}
END_TEST

START_TEST(collinear)
{
    /* on a line: a path; one point off it: triangles; remove it: a path again */
    ms_topo_pos_t pos[64];
    uint64_t s = 17;
    for (int i = 0; i < 40; i++) {
        int64_t k = (int64_t)(rnd(&s) % 100000);
        pos[i] = gridpos(1000 + 3 * k, 2000 + 2 * k, rnd(&s));
    }
    check_order_independence(pos, 40, 41);
    h_t *h = h_new(4);
    for (ms_peer_t p = 0; p < 40; p++)
        h_join(h, p, pos[p]);
    ck_assert_uint_eq(h->after.n, 39);
    h_join(h, 50, gridpos(500000, 100, 1));
    h_join(h, 51, gridpos(1000 + 3 * 50000, 2000 + 2 * 50000 + 1, 2)); /* just off the line */
    h_leave(h, 50);
    h_leave(h, 51);
    h_move(h, 3, gridpos(9, 99999, 3));
    h_move(h, 3, pos[3]);
    for (int i = 0; i < 60; i++) {
        ms_peer_t p = (ms_peer_t)(rnd(&s) % 40);
        if (h->in[p])
            h_leave(h, p);
        else
            h_join(h, p, pos[p]);
        if (i % 7 == 0) {
            h_join(h, 60, gridpos((int64_t)(rnd(&s) % 400000), (int64_t)(rnd(&s) % 400000), 5));
            h_leave(h, 60);
        }
    }
    /* collinear hull stretches: points on the sides of a square */
    h_t *q = h_new(6);
    ms_peer_t p = 0;
    for (int i = 0; i < 10; i++) {
        h_join(q, p++, gridpos(100 + i * 10, 100, rnd(&s)));
        h_join(q, p++, gridpos(200, 100 + i * 10, rnd(&s)));
        h_join(q, p++, gridpos(200 - i * 10, 200, rnd(&s)));
        h_join(q, p++, gridpos(100, 200 - i * 10, rnd(&s)));
    }
    for (int i = 0; i < 40; i++)
        h_leave(q, (ms_peer_t)((i * 7) % 40));
    h_free(q);
    h_free(h);
}
END_TEST

START_TEST(restore_from_reports)
{
    uint64_t s = 23;
    h_t *h = h_new(8);
    h->brute = 0;
    for (ms_peer_t p = 0; p < 300; p++)
        h_join(h, p, randpos(&s));
    for (ms_peer_t p = 0; p < 300; p += 7)
        h_leave(h, p);
    ms_topo_report_t *r = calloc(300, sizeof(*r));
    ms_peer_t(*nb)[64] = calloc(300, sizeof(*nb));
    size_t n = 0;
    for (ms_peer_t p = 0; p < 300; p++) {
        if (!h->in[p])
            continue;
        r[n].peer = p;
        r[n].pos = h->pos[p];
        r[n].parent = MS_PEER_NONE;
        r[n].neighbours = nb[n];
        r[n].n_neighbours = h->t->ops->neighbours(h->t, p, nb[n], 64);
        ck_assert_uint_le(r[n].n_neighbours, 64);
        n++;
    }
    /* in reverse order, to a fresh engine */
    for (size_t i = 0; i < n / 2; i++) {
        ms_topo_report_t x = r[i];
        r[i] = r[n - 1 - i];
        r[n - 1 - i] = x;
    }
    const ms_topo_ops_t *ops = ms_topo_find("delaunay");
    ms_topo_t *t2 = NULL;
    ck_assert_int_eq(ops->create(&(ms_topo_params_t){.seed = 99}, &t2), MS_OK);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    if (ops->restore)
        ck_assert_int_eq(ops->restore(t2, r, n, &d), MS_OK);
    else
        ck_assert_int_eq(ms_topo_restore_generic(t2, r, n, &d), MS_OK);
    ck_assert_uint_eq(d.n_connect, 0);
    ck_assert_uint_eq(d.n_disconnect, 0);
    eset_t a = {0}, b = {0};
    eset_of(h->t, &a);
    eset_of(t2, &b);
    ck_assert(eset_eq(&a, &b));
    free(a.v);
    free(b.v);
    ms_topo_diff_cleanup(&d);
    ops->destroy(t2);
    free(r);
    free(nb);
    h_free(h);
}
END_TEST

START_TEST(large_random_cheap_invariants)
{
    /* 3000 peers; diffs checked every step, internal links every 250, brute force at the end */
    uint64_t s = 31;
    h_t *h = h_new(12);
    h->brute = 0;
    h->check_diff = 0;
    eset_t tracked = {0};
    for (ms_peer_t p = 0; p < 3000; p++)
        h_join(h, p, randpos(&s));
    eset_of(h->t, &tracked);
    char why[256];
    for (int step = 0; step < 3000; step++) {
        h_before_op(h);
        unsigned r = (unsigned)(rnd(&s) % 3);
        if (r == 0) {
            ms_peer_t p = pick_in(h, &s);
            ck_assert_int_eq(h->t->ops->leave(h->t, p, &h->d), MS_OK);
            h->in[p] = 0;
            h->n--;
        } else if (r == 1) {
            ms_peer_t p = pick_free(h, &s, MAXP);
            h->pos[p] = randpos(&s);
            ck_assert_int_eq(h->t->ops->join(h->t, p, h->pos[p], &h->d), MS_OK);
            h->in[p] = 1;
            h->n++;
        } else {
            ms_peer_t p = pick_in(h, &s);
            h->pos[p] = randpos(&s);
            ck_assert_int_eq(h->t->ops->move(h->t, p, h->pos[p], &h->d), MS_OK);
        }
        /* apply the diff to the tracked set: check first, then change */
        for (size_t i = 0; i < h->d.n_disconnect; i++) {
            uint64_t k = ((uint64_t)h->d.disconnect[i].a << 32) | h->d.disconnect[i].b;
            ck_assert_ptr_nonnull(bsearch(&k, tracked.v, tracked.n, sizeof(k), u64cmp));
        }
        for (size_t i = 0; i < h->d.n_connect; i++) {
            uint64_t k = ((uint64_t)h->d.connect[i].a << 32) | h->d.connect[i].b;
            ck_assert_ptr_null(bsearch(&k, tracked.v, tracked.n, sizeof(k), u64cmp));
        }
        uint64_t *gone = malloc((h->d.n_disconnect + 1) * sizeof(*gone));
        for (size_t i = 0; i < h->d.n_disconnect; i++)
            gone[i] = ((uint64_t)h->d.disconnect[i].a << 32) | h->d.disconnect[i].b;
        size_t w = 0;
        for (size_t i = 0; i < tracked.n; i++)
            if (!bsearch(&tracked.v[i], gone, h->d.n_disconnect, sizeof(*gone), u64cmp))
                tracked.v[w++] = tracked.v[i];
        tracked.n = w;
        free(gone);
        for (size_t i = 0; i < h->d.n_connect; i++)
            eset_add(h->d.connect[i].a, h->d.connect[i].b, MS_EDGE_PEER, &tracked);
        qsort(tracked.v, tracked.n, sizeof(uint64_t), u64cmp);
        if (step % 250 == 0) {
            ck_assert_msg(ms_delaunay_check(h->t, why, sizeof(why)) == 0, "%s", why);
            eset_of(h->t, &h->after);
            ck_assert(eset_eq(&tracked, &h->after));
        }
    }
    eset_of(h->t, &h->after);
    ck_assert(eset_eq(&tracked, &h->after));
    /* mean degree of a planar Delaunay graph is just under 6 */
    ck_assert_uint_lt(h->after.n, 3 * h->n);
    ck_assert_uint_gt(h->after.n, 2 * h->n);
    h_brute(h);
    free(tracked.v);
    h_free(h);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("delaunay");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, small_cases_and_errors);
    tcase_add_test(tc, random_sequences_brute_force);
    tcase_add_test(tc, clustered_and_small_moves);
    tcase_add_test(tc, grid_cocircular);
    tcase_add_test(tc, circle_lattice_points);
    tcase_add_test(tc, duplicates);
    tcase_add_test(tc, collinear);
    tcase_add_test(tc, restore_from_reports);
    tcase_add_test(tc, large_random_cheap_invariants);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

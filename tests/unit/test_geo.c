/* SPDX-License-Identifier: Apache-2.0 */
/* Property tests of the geo engine against brute force on the sphere: hull faces, Euler, diffs,
 * order. */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delaunay.h"
#include "geo.h"
#include "topology.h"

#define MAXP 256

/* Brute-force loops only call into Check on failure. */
#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #c);                                     \
    } while (0)

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double unif(uint64_t *s)
{
    return (double)(rnd(s) >> 11) / 9007199254740992.0;
}

static void unit_vec(long double lon, long double lat, long double v[3])
{
    const long double r = 3.14159265358979323846264338327950288L / 180;
    v[0] = cosl(lat * r) * cosl(lon * r);
    v[1] = cosl(lat * r) * sinl(lon * r);
    v[2] = sinl(lat * r);
}

/* Angular distance in degrees. */
static double angle(double lon1, double lat1, double lon2, double lat2)
{
    long double a[3], b[3];
    unit_vec(lon1, lat1, a);
    unit_vec(lon2, lat2, b);
    long double d = a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
    return (double)(acosl(d > 1    ? 1
                          : d < -1 ? -1
                                   : d) *
                    180 / 3.14159265358979323846264338327950288L);
}

/* Uniform on the sphere, at least 3 degrees from the projection pole (clamping). */
static ms_topo_pos_t randpos(uint64_t *s)
{
    for (;;) {
        double lon = unif(s) * 360 - 180,
               lat = asin(2 * unif(s) - 1) * 180 / 3.14159265358979323846;
        if (angle(lon, lat, MS_GEO_POLE_LON, MS_GEO_POLE_LAT) > 3)
            return (ms_topo_pos_t){lon, lat, rnd(s)};
    }
}

/* ---- edge sets ------------------------------------------------------------ */

typedef struct {
    uint64_t *v;
    size_t n, cap;
} eset_t;

static void eset_add(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    eset_t *s = ud;
    REQUIRE(kind == MS_EDGE_PEER && a < b);
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->v = realloc(s->v, s->cap * sizeof(*s->v));
        REQUIRE(s->v);
    }
    s->v[s->n++] = ((uint64_t)a << 32) | b;
}

static int u64cmp(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static void eset_of(const ms_topo_t *t, eset_t *s)
{
    s->n = 0;
    t->ops->edges(t, eset_add, s);
    if (s->n > 1)
        qsort(s->v, s->n, sizeof(*s->v), u64cmp);
    for (size_t i = 1; i < s->n; i++)
        REQUIRE(s->v[i] != s->v[i - 1]); /* each edge once */
}

static int eset_has(const eset_t *s, uint64_t e)
{
    return s->n && bsearch(&e, s->v, s->n, sizeof(e), u64cmp) != NULL;
}

static int eset_eq(const eset_t *a, const eset_t *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, a->n * sizeof(*a->v)) == 0);
}

/* ---- a harness: an engine, its peers and the edge set its diffs describe -- */

typedef struct {
    ms_topo_t *t;
    ms_topo_pos_t pos[MAXP];
    int in[MAXP];
    size_t n;
    eset_t tracked, now;
    ms_topo_diff_t d;
} h_t;

static h_t *h_new(uint64_t seed)
{
    h_t *h = calloc(1, sizeof(*h));
    REQUIRE(h);
    ms_topo_params_t p = {.geo = 1, .seed = seed};
    REQUIRE(ms_topo_create("delaunay", &p, &h->t) == MS_OK);
    ms_topo_diff_init(&h->d);
    return h;
}

static void h_free(h_t *h)
{
    h->t->ops->destroy(h->t);
    ms_topo_diff_cleanup(&h->d);
    free(h->tracked.v);
    free(h->now.v);
    free(h);
}

/* Applies the last diff to the tracked set: only 0 <-> 1 transitions allowed. */
static void h_apply(h_t *h)
{
    eset_t gone = {0};
    for (size_t i = 0; i < h->d.n_disconnect; i++) {
        uint64_t e = ((uint64_t)h->d.disconnect[i].a << 32) | h->d.disconnect[i].b;
        REQUIRE(eset_has(&h->tracked, e));
        eset_add(h->d.disconnect[i].a, h->d.disconnect[i].b, MS_EDGE_PEER, &gone);
    }
    if (gone.n > 1)
        qsort(gone.v, gone.n, sizeof(uint64_t), u64cmp);
    size_t w = 0;
    for (size_t i = 0; i < h->tracked.n; i++)
        if (!eset_has(&gone, h->tracked.v[i]))
            h->tracked.v[w++] = h->tracked.v[i];
    h->tracked.n = w;
    for (size_t i = 0; i < h->d.n_connect; i++) {
        uint64_t e = ((uint64_t)h->d.connect[i].a << 32) | h->d.connect[i].b;
        REQUIRE(!eset_has(&h->tracked, e));
        eset_add(h->d.connect[i].a, h->d.connect[i].b, MS_EDGE_PEER, &h->tracked);
    }
    if (h->tracked.n > 1)
        qsort(h->tracked.v, h->tracked.n, sizeof(uint64_t), u64cmp);
    free(gone.v);
    eset_of(h->t, &h->now);
    REQUIRE(eset_eq(&h->tracked, &h->now));
}

static void h_join(h_t *h, ms_peer_t p, ms_topo_pos_t pos)
{
    ms_topo_diff_clear(&h->d);
    REQUIRE(h->t->ops->join(h->t, p, pos, &h->d) == MS_OK);
    h->pos[p] = pos;
    h->in[p] = 1;
    h->n++;
    h_apply(h);
}

static void h_leave(h_t *h, ms_peer_t p)
{
    ms_topo_diff_clear(&h->d);
    REQUIRE(h->t->ops->leave(h->t, p, &h->d) == MS_OK);
    h->in[p] = 0;
    h->n--;
    h_apply(h);
}

static void h_move(h_t *h, ms_peer_t p, ms_topo_pos_t pos)
{
    ms_topo_diff_clear(&h->d);
    REQUIRE(h->t->ops->move(h->t, p, pos, &h->d) == MS_OK);
    h->pos[p] = pos;
    h_apply(h);
}

/* ---- brute force on the sphere ------------------------------------------- */

static long double P[MAXP][3];

/* a, b, c span a hull face: every other point on one side of their plane, up to
 * tol (quantisation moves points by about 2e-7 radians). */
static int face_ok(const h_t *h, int a, int b, int c)
{
    const long double tol = 1e-5L;
    long double u[3], v[3], n[3];
    for (int i = 0; i < 3; i++) {
        u[i] = P[b][i] - P[a][i];
        v[i] = P[c][i] - P[a][i];
    }
    n[0] = u[1] * v[2] - u[2] * v[1];
    n[1] = u[2] * v[0] - u[0] * v[2];
    n[2] = u[0] * v[1] - u[1] * v[0];
    long double l = sqrtl(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
    if (l < 1e-15L)
        return 0;
    int pos = 0, neg = 0;
    for (int d = 0; d < MAXP; d++) {
        if (!h->in[d] || d == a || d == b || d == c)
            continue;
        long double s =
            (n[0] * (P[d][0] - P[a][0]) + n[1] * (P[d][1] - P[a][1]) + n[2] * (P[d][2] - P[a][2])) /
            l;
        pos |= s > tol;
        neg |= s < -tol;
    }
    return !(pos && neg);
}

static int adj[MAXP][MAXP];

/* In general position the hull of V >= 4 points on the sphere has exactly
 * 3V - 6 edges, each on two faces. So: every reported edge lies on two reported
 * triangles that are hull faces, and there are 3V - 6 edges. Then the reported
 * edges are all hull edges and, by the count, every hull edge is reported. */
static void h_brute(const h_t *h)
{
    memset(adj, 0, sizeof(adj));
    for (int i = 0; i < MAXP; i++)
        if (h->in[i])
            unit_vec(h->pos[i].x, h->pos[i].y, P[i]);
    eset_t s = {0};
    eset_of(h->t, &s);
    for (size_t i = 0; i < s.n; i++) {
        int a = (int)(s.v[i] >> 32), b = (int)(s.v[i] & 0xffffffff);
        REQUIRE(h->in[a] && h->in[b]);
        adj[a][b] = adj[b][a] = 1;
    }
    if (h->n >= 4)
        ck_assert_uint_eq(s.n, 3 * h->n - 6);
    for (size_t i = 0; i < s.n; i++) {
        int a = (int)(s.v[i] >> 32), b = (int)(s.v[i] & 0xffffffff), faces = 0;
        for (int c = 0; c < MAXP && h->n >= 3; c++)
            if (adj[a][c] && adj[b][c] && face_ok(h, a, b, c))
                faces++;
        if (faces < 2 && h->n >= 4)
            ck_abort_msg("edge %d-%d (%.4f,%.4f)-(%.4f,%.4f) lies on %d hull faces", a, b,
                         h->pos[a].x, h->pos[a].y, h->pos[b].x, h->pos[b].y, faces);
    }
    char why[200];
    ck_assert_msg(ms_delaunay_check(ms_geo_plane(h->t), why, sizeof(why)) == 0, "%s", why);
    free(s.v);
}

/* Every present peer reachable from the first one. */
static int h_connected(const h_t *h)
{
    int seen[MAXP] = {0}, q[MAXP], nq = 0, first = -1;
    for (int i = 0; i < MAXP && first < 0; i++)
        if (h->in[i])
            first = i;
    if (first < 0)
        return 1;
    seen[first] = 1;
    q[nq++] = first;
    for (int k = 0; k < nq; k++) {
        ms_peer_t nb[MAXP];
        size_t n = h->t->ops->neighbours(h->t, (ms_peer_t)q[k], nb, MAXP);
        for (size_t j = 0; j < n && j < MAXP; j++)
            if (!seen[nb[j]]) {
                seen[nb[j]] = 1;
                q[nq++] = (int)nb[j];
            }
    }
    return (size_t)nq == h->n;
}

/* ---- tests ----------------------------------------------------------------- */

START_TEST(random_sequences_brute_force)
{
    uint64_t s = 42 + (uint64_t)_i;
    h_t *h = h_new(7);
    for (ms_peer_t p = 0; p < 200; p++) {
        h_join(h, p, randpos(&s));
        if (p < 12 || p % 25 == 0)
            h_brute(h);
    }
    h_brute(h);
    for (int step = 0; step < 1500; step++) {
        ms_peer_t p = (ms_peer_t)(rnd(&s) % MAXP);
        uint64_t r = rnd(&s) % 3;
        if (!h->in[p] && h->n < 200)
            h_join(h, p, randpos(&s));
        else if (h->in[p] && r == 0 && h->n > 100)
            h_leave(h, p);
        else if (h->in[p])
            h_move(h, p,
                   r == 1 ? randpos(&s)
                          : (ms_topo_pos_t){h->pos[p].x + unif(&s) - 0.5,
                                            fmax(-89.9, fmin(89.9, h->pos[p].y + unif(&s) - 0.5)),
                                            h->pos[p].key});
        if (step % 100 == 0)
            h_brute(h);
    }
    h_brute(h);
    /* leave down to nothing, checking the small cases on the way */
    for (ms_peer_t p = 0; p < MAXP; p++)
        if (h->in[p]) {
            h_leave(h, p);
            if (h->n < 8)
                h_brute(h);
        }
    ck_assert_uint_eq(h->now.n, 0);
    h_free(h);
}
END_TEST

START_TEST(order_independence)
{
    uint64_t s = 99;
    ms_topo_pos_t pts[150];
    for (int i = 0; i < 150; i++)
        pts[i] = randpos(&s);
    /* a few duplicates and points on one meridian */
    pts[10] = pts[11] = pts[12];
    pts[11].key = 5;
    for (int i = 20; i < 26; i++)
        pts[i] = (ms_topo_pos_t){30.0, -60.0 + 20 * (i - 20), rnd(&s)};
    h_t *a = h_new(1), *b = h_new(2);
    for (ms_peer_t p = 0; p < 150; p++)
        h_join(a, p, pts[p]);
    /* b: reverse order, with detours through other positions and leaves */
    for (int i = 149; i >= 0; i--) {
        h_join(b, (ms_peer_t)i, randpos(&s));
        if (i % 3 == 0)
            h_move(b, (ms_peer_t)i, pts[i]);
        else {
            h_leave(b, (ms_peer_t)i);
            h_join(b, (ms_peer_t)i, pts[i]);
        }
    }
    ck_assert(eset_eq(&a->now, &b->now));
    ck_assert(h_connected(a));
    h_free(a);
    h_free(b);
}
END_TEST

START_TEST(antimeridian)
{
    uint64_t s = 5;
    h_t *h = h_new(3);
    h_join(h, 0, (ms_topo_pos_t){179.9, 20, 1});
    h_join(h, 1, (ms_topo_pos_t){-179.9, 20, 2});
    for (ms_peer_t p = 2; p < 80; p++) {
        ms_topo_pos_t q;
        do
            q = randpos(&s);
        while (angle(q.x, q.y, 180, 20) < 5);
        h_join(h, p, q);
    }
    ck_assert(h->t->ops->adjacent(h->t, 0, 1));
    h_brute(h);
    /* and across the antimeridian near the equator */
    h_join(h, 100, (ms_topo_pos_t){179.99, -0.5, 3});
    h_join(h, 101, (ms_topo_pos_t){-179.99, 0.5, 4});
    ck_assert(h->t->ops->adjacent(h->t, 100, 101));
    h_brute(h);
    h_free(h);
}
END_TEST

/* A ring of 12 peers at latitude lat around a pole with nobody closer to it:
 * a cycle, and the cap inside triangulated by 9 ring diagonals. */
static void ring_case(double lat, double jitter)
{
    uint64_t s = 11;
    h_t *h = h_new(4);
    for (ms_peer_t p = 0; p < 12; p++)
        h_join(h, p, (ms_topo_pos_t){-180 + 30.0 * p + jitter * (unif(&s) - 0.5), lat, rnd(&s)});
    for (ms_peer_t p = 12; p < 100; p++) {
        ms_topo_pos_t q;
        do
            q = randpos(&s);
        while (fabs(q.y) > fabs(lat) - 5);
        h_join(h, p, q);
    }
    int ring_edges = 0;
    for (ms_peer_t a = 0; a < 12; a++) {
        ck_assert(h->t->ops->adjacent(h->t, a, (a + 1) % 12));
        for (ms_peer_t b = a + 1; b < 12; b++)
            ring_edges += h->t->ops->adjacent(h->t, a, b);
    }
    ck_assert_int_eq(ring_edges, 12 + 9);
    h_brute(h);
    h_free(h);
}

START_TEST(poles)
{
    ring_case(89, 0);
    ring_case(-89, 0);
    ring_case(89, 5);
    ring_case(-89, 5);
    ring_case(-60, 3); /* around the south pole, 11 degrees from Point Nemo */
}
END_TEST

START_TEST(equator)
{
    uint64_t s = 17;
    h_t *h = h_new(5);
    /* a band across the equator all around the globe */
    for (ms_peer_t p = 0; p < 120; p++)
        h_join(h, p, (ms_topo_pos_t){unif(&s) * 360 - 180, unif(&s) * 20 - 10, rnd(&s)});
    h_brute(h);
    h_free(h);
    /* all on the equator, a great circle: degenerate, still connected and a cycle */
    h = h_new(6);
    for (ms_peer_t p = 0; p < 40; p++)
        h_join(h, p, (ms_topo_pos_t){-180 + 9.0 * p, 0, rnd(&s)});
    ck_assert(h_connected(h));
    for (ms_peer_t p = 0; p < 40; p++)
        ck_assert(h->t->ops->adjacent(h->t, p, (p + 1) % 40));
    h_free(h);
}
END_TEST

/* Peers on one continent: the hull face towards the pole is most of the sphere. */
START_TEST(clustered)
{
    uint64_t s = 23;
    h_t *h = h_new(10);
    for (ms_peer_t p = 0; p < 150; p++) {
        h_join(h, p, (ms_topo_pos_t){unif(&s) * 40 - 10, unif(&s) * 25 + 35, rnd(&s)});
        if (p % 30 == 0)
            h_brute(h);
    }
    h_brute(h);
    for (ms_peer_t p = 0; p < 150; p += 2)
        h_leave(h, p);
    h_brute(h);
    h_free(h);
}
END_TEST

START_TEST(small_and_degenerate)
{
    h_t *h = h_new(8);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ck_assert_int_eq(h->t->ops->join(h->t, 0, (ms_topo_pos_t){NAN, 0, 1}, &d), MS_ERR_INVAL);
    h_join(h, 0, (ms_topo_pos_t){10, 10, 1});
    ck_assert_int_eq(h->t->ops->join(h->t, 0, (ms_topo_pos_t){0, 0, 1}, &d), MS_ERR_EXISTS);
    ck_assert_int_eq(h->t->ops->leave(h->t, 5, &d), MS_ERR_NOTFOUND);
    ck_assert_uint_eq(h->now.n, 0);
    h_join(h, 1, (ms_topo_pos_t){-170, -20, 2});
    ck_assert_uint_eq(h->now.n, 1);
    h_join(h, 2, (ms_topo_pos_t){100, 60, 3});
    ck_assert_uint_eq(h->now.n, 3);
    h_join(h, 3, (ms_topo_pos_t){40, -70, 4});
    ck_assert_uint_eq(h->now.n, 6); /* a tetrahedron */
    h_brute(h);
    /* duplicates: chained to each other, still connected */
    h_join(h, 4, (ms_topo_pos_t){10, 10, 0});
    h_join(h, 5, (ms_topo_pos_t){10, 10, 9});
    ck_assert(h_connected(h));
    h_leave(h, 4);
    h_leave(h, 0);
    ck_assert(h_connected(h));
    h_free(h);
    /* three or more on the great circle through Point Nemo: the plane engine's
     * line mode, closed into a cycle */
    h = h_new(9);
    double lon = MS_GEO_POLE_LON + 180;
    for (ms_peer_t p = 0; p < 5; p++)
        h_join(h, p, (ms_topo_pos_t){lon, -40.0 + 20 * p, p + 1});
    ck_assert(h_connected(h));
    ck_assert_uint_ge(h->now.n, 5);
    json_t *o = json_object();
    ck_assert_int_eq(h->t->ops->write_json(h->t, o), MS_OK);
    ck_assert_str_eq(json_string_value(json_object_get(o, "mode")), "geo");
    json_decref(o);
    ms_topo_diff_cleanup(&d);
    h_free(h);
}
END_TEST

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* 10,000 random points: Euler's count, the hull size h the FDT works on, and
 * (printed, never asserted) the cost per join and leave. */
START_TEST(ten_thousand)
{
    enum { N = 10000 };
    uint64_t s = 123;
    ms_topo_params_t prm = {.geo = 1, .seed = 1};
    ms_topo_t *t;
    ck_assert_int_eq(ms_topo_create("delaunay", &prm, &t), MS_OK);
    ms_topo_pos_t *pts = malloc(N * sizeof(*pts));
    ck_assert_ptr_nonnull(pts);
    for (int i = 0; i < N; i++)
        pts[i] = randpos(&s);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t t0 = now_ns();
    for (ms_peer_t p = 0; p < N; p++) {
        ms_topo_diff_clear(&d);
        ck_assert_int_eq(t->ops->join(t, p, pts[p], &d), MS_OK);
    }
    uint64_t t1 = now_ns();
    eset_t e = {0};
    eset_of(t, &e);
    ck_assert_uint_eq(e.n, 3 * N - 6);
    size_t h = ms_geo_hull_size(t), hmax = h;
    /* churn at full size: leave and rejoin elsewhere */
    uint64_t tl = 0, tj = 0;
    for (int i = 0; i < 2000; i++) {
        ms_peer_t p = (ms_peer_t)(rnd(&s) % N);
        ms_topo_diff_clear(&d);
        uint64_t a = now_ns();
        ck_assert_int_eq(t->ops->leave(t, p, &d), MS_OK);
        uint64_t b = now_ns();
        ck_assert_int_eq(t->ops->join(t, p, randpos(&s), &d), MS_OK);
        uint64_t c = now_ns();
        tl += b - a;
        tj += c - b;
        if (ms_geo_hull_size(t) > hmax)
            hmax = ms_geo_hull_size(t);
    }
    eset_of(t, &e);
    ck_assert_uint_eq(e.n, 3 * N - 6);
    printf("geo 10k: hull h = %zu (max %zu during churn); build %.0f ns/join; churn %.0f ns/leave, "
           "%.0f ns/join\n",
           h, hmax, (double)(t1 - t0) / N, (double)tl / 2000, (double)tj / 2000);
    ck_assert_uint_ge(h, 3);
    ck_assert_uint_lt(hmax, 40);
    free(e.v);
    free(pts);
    ms_topo_diff_cleanup(&d);
    t->ops->destroy(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("geo");
    TCase *tc = tcase_create("core");
    tcase_add_loop_test(tc, random_sequences_brute_force, 0, 3);
    tcase_add_test(tc, order_independence);
    tcase_add_test(tc, antimeridian);
    tcase_add_test(tc, poles);
    tcase_add_test(tc, equator);
    tcase_add_test(tc, clustered);
    tcase_add_test(tc, small_and_degenerate);
    tcase_add_test(tc, ten_thousand);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

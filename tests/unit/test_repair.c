/* SPDX-License-Identifier: Apache-2.0 */
/* Property tests of the engines' failed-edge repair (ops->fail_edge): tree, spray and Delaunay,
 * over random joins, leaves, moves, shuffles and failures from fixed seeds. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "delaunay.h"
#include "relink.h"
#include "spray.h"
#include "topology.h"
#include "tree.h"

/* ck_assert records its location on every call; in hot loops only failures reach Check. */
#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #c);                                     \
    } while (0)

enum { SLOTS = 256 };

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(rnd(s) % n);
}

static double unit(uint64_t *s)
{
    return (double)(rnd(s) >> 11) * 0x1.0p-53;
}

/* ---- edge sets and diffs ---- */

typedef struct {
    ms_edge_t *e;
    size_t n, cap;
} eset_t;

static void eset_add(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    eset_t *s = ud;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->e = realloc(s->e, s->cap * sizeof(*s->e));
        REQUIRE(s->e != NULL);
    }
    s->e[s->n++] = (ms_edge_t){a, b, kind};
}

static void eset_take(const ms_topo_t *t, eset_t *s)
{
    s->n = 0;
    t->ops->edges(t, eset_add, s);
    if (s->n > 1)
        qsort(s->e, s->n, sizeof(*s->e), ms_edge_cmp);
    for (size_t i = 1; i < s->n; i++)
        REQUIRE(ms_edge_cmp(&s->e[i - 1], &s->e[i]) < 0);
}

static int eset_has(const eset_t *s, ms_peer_t a, ms_peer_t b, uint8_t kind)
{
    ms_edge_t k = {a, b, kind};
    return s->n && bsearch(&k, s->e, s->n, sizeof(k), ms_edge_cmp) != NULL;
}

/* d (any order, no duplicates) is exactly after - before and before - after. */
static void check_diff(const eset_t *before, const eset_t *after, ms_topo_diff_t *d)
{
    ms_topo_diff_normalize(d);
    size_t nc = 0, nd = 0;
    for (size_t i = 0; i < after->n; i++)
        if (!eset_has(before, after->e[i].a, after->e[i].b, after->e[i].kind)) {
            REQUIRE(nc < d->n_connect);
            REQUIRE(ms_edge_cmp(&d->connect[nc++], &after->e[i]) == 0);
        }
    for (size_t i = 0; i < before->n; i++)
        if (!eset_has(after, before->e[i].a, before->e[i].b, before->e[i].kind)) {
            REQUIRE(nd < d->n_disconnect);
            REQUIRE(ms_edge_cmp(&d->disconnect[nd++], &before->e[i]) == 0);
        }
    REQUIRE(nc == d->n_connect && nd == d->n_disconnect);
}

static ms_peer_t free_handle(const uint8_t *present, ms_peer_t from)
{
    ms_peer_t p = from;
    while (present[p])
        p++;
    return p;
}

static ms_peer_t random_present(uint64_t *rs, const uint8_t *present, ms_peer_t from)
{
    ms_peer_t p;
    do
        p = from + below(rs, SLOTS - from);
    while (!present[p]);
    return p;
}

/* A random edge of s (MS_PEER_NONE ends when s is empty). */
static ms_edge_t random_edge(uint64_t *rs, const eset_t *s)
{
    if (s->n == 0)
        return (ms_edge_t){MS_PEER_NONE, MS_PEER_NONE, 0};
    return s->e[below(rs, (uint32_t)s->n)];
}

/* Every present peer reachable from the first over neighbours(). */
static int connected(const ms_topo_t *t, const uint8_t *present)
{
    size_t n = t->ops->count(t);
    if (n <= 1)
        return 1;
    uint8_t seen[SLOTS] = {0};
    ms_peer_t queue[SLOTS], nb[SLOTS];
    size_t head = 0, tail = 0;
    for (ms_peer_t p = 0; p < SLOTS && !tail; p++)
        if (present[p]) {
            queue[tail++] = p;
            seen[p] = 1;
        }
    while (head < tail) {
        ms_peer_t u = queue[head++];
        size_t m = t->ops->neighbours(t, u, nb, SLOTS);
        REQUIRE(m <= SLOTS);
        for (size_t i = 0; i < m; i++)
            if (!seen[nb[i]]) {
                seen[nb[i]] = 1;
                queue[tail++] = nb[i];
            }
    }
    return tail == n;
}

/* ---- tree: the child of a failed link moves, never below itself, within k / k1 ---- */

/* 1 when d is p or below p. */
static int in_subtree(const ms_topo_t *t, ms_peer_t p, ms_peer_t d)
{
    for (size_t steps = 0; d != MS_PEER_NONE && steps <= SLOTS; steps++) {
        if (d == p)
            return 1;
        d = ms_tree_parent(t, d);
    }
    return 0;
}

static void check_tree(const ms_topo_t *t, const uint8_t *present, uint32_t k, uint32_t k1,
                       int source)
{
    uint32_t kids[SLOTS] = {0};
    size_t roots = 0;
    for (ms_peer_t p = 0; p < SLOTS; p++) {
        if (!present[p])
            continue;
        ms_peer_t par = ms_tree_parent(t, p);
        if (par == MS_PEER_NONE) {
            roots++;
            continue;
        }
        REQUIRE(par < SLOTS && present[par]);
        kids[par]++;
        /* No cycle: the walk up ends at a root. */
        ms_peer_t a = p;
        size_t steps = 0;
        while (a != MS_PEER_NONE && steps++ <= SLOTS)
            a = ms_tree_parent(t, a);
        REQUIRE(a == MS_PEER_NONE);
    }
    REQUIRE(roots <= 1 || !source);
    for (ms_peer_t p = 0; p < SLOTS; p++)
        REQUIRE(kids[p] <= (source && p == 0 ? k1 : k));
}

static void tree_run(uint32_t k, uint32_t k1, int source, uint64_t seed, int steps)
{
    ms_topo_params_t params = {.k = k, .k1 = k1, .source = source ? MS_TREE_SOURCE : 0};
    ms_topo_t *t = NULL;
    REQUIRE(ms_topo_create("tree", &params, &t) == MS_OK);
    REQUIRE(t->ops->fail_edge != NULL);
    uint8_t present[SLOTS] = {0};
    eset_t before = {0}, after = {0};
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t rs = seed;
    size_t n = 0, moved = 0, full = 0;
    ms_peer_t first = source ? 1 : 0; /* handle 0 is the source's */
    if (source) {
        REQUIRE(t->ops->join(t, 0, (ms_topo_pos_t){0}, &d) == MS_OK);
        present[0] = 1;
    }
    for (int i = 0; i < steps; i++) {
        eset_take(t, &before);
        ms_topo_diff_clear(&d);
        uint32_t r = below(&rs, 100);
        if (n < 3 || (r < 45 && n < SLOTS - 2)) {
            ms_peer_t p = free_handle(present, first);
            REQUIRE(t->ops->join(t, p, (ms_topo_pos_t){0}, &d) == MS_OK);
            present[p] = 1;
            n++;
        } else if (r < 70) {
            ms_peer_t p = random_present(&rs, present, first);
            REQUIRE(t->ops->leave(t, p, &d) == MS_OK);
            present[p] = 0;
            n--;
        } else {
            ms_edge_t e = random_edge(&rs, &before);
            REQUIRE(e.kind == MS_EDGE_TREE);
            ms_peer_t child = e.b, old = e.a;
            uint8_t sub[SLOTS] = {0};
            for (ms_peer_t q = 0; q < SLOTS; q++)
                sub[q] = present[q] && in_subtree(t, child, q);
            /* Either end may report it. */
            ms_err_t err =
                r & 1 ? t->ops->fail_edge(t, old, child, &d) : t->ops->fail_edge(t, child, old, &d);
            if (err == MS_ERR_FULL) {
                /* Stayed: no other slot, or only the old parent keeps the
                 * depth bound (other leaves may have moved; the diff says). */
                REQUIRE(ms_tree_parent(t, child) == old);
                full++;
            } else {
                REQUIRE(err == MS_OK);
                ms_peer_t np = ms_tree_parent(t, child);
                REQUIRE(np != MS_PEER_NONE && np != old);
                REQUIRE(!sub[np]); /* never a descendant (nor itself) */
                moved++;
            }
        }
        eset_take(t, &after);
        check_diff(&before, &after, &d);
        check_tree(t, present, k, k1, source);
        REQUIRE(t->ops->fail_edge(t, 0, 0, &d) == MS_ERR_NOTFOUND);
    }
    printf("tree k=%u k1=%u source=%d seed=%llu: %zu moved, %zu full\n", k, k1, source,
           (unsigned long long)seed, moved, full);
    REQUIRE(moved > 0);
    free(before.e);
    free(after.e);
    ms_topo_diff_cleanup(&d);
    t->ops->destroy(t);
}

START_TEST(tree_fail_reparents_outside_subtree_within_fanout)
{
    tree_run(2 + (uint32_t)_i % 3, 3 + (uint32_t)_i % 5, _i % 2, 1000 + (uint64_t)_i, 1500);
}
END_TEST

/* ---- spray: view sizes kept, a failed pair not linked again ---- */

typedef struct {
    ms_peer_t a, b;
} pair_t;

typedef struct {
    pair_t v[SLOTS * 4];
    size_t n;
} pairs_t;

static void pairs_forget(pairs_t *f, ms_peer_t p)
{
    for (size_t i = 0; i < f->n;)
        if (f->v[i].a == p || f->v[i].b == p)
            f->v[i] = f->v[--f->n];
        else
            i++;
}

static void spray_run(uint64_t seed, int steps)
{
    ms_topo_t *t = NULL;
    REQUIRE(ms_topo_create("spray", &(ms_topo_params_t){.seed = seed}, &t) == MS_OK);
    uint8_t present[SLOTS] = {0};
    static pairs_t failed;
    failed.n = 0;
    eset_t before = {0}, after = {0};
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t rs = seed * 31 + 7;
    size_t n = 0, fails = 0;
    for (int i = 0; i < steps; i++) {
        eset_take(t, &before);
        ms_topo_diff_clear(&d);
        uint32_t r = below(&rs, 100);
        if (n < 4 || (r < 40 && n < 120)) {
            ms_peer_t p = free_handle(present, 0);
            REQUIRE(t->ops->join(t, p, (ms_topo_pos_t){0}, &d) == MS_OK);
            present[p] = 1;
            n++;
        } else if (r < 60) {
            ms_peer_t p = random_present(&rs, present, 0);
            REQUIRE(t->ops->leave(t, p, &d) == MS_OK);
            present[p] = 0;
            pairs_forget(&failed, p);
            n--;
        } else if (r < 90 || n < 16) {
            /* Failures from 16 peers on: below, a peer may have failed with
             * everyone on the other side and only a forced link keeps the
             * overlay connected (spray_fail_two_peers). */
            REQUIRE(t->ops->tick(t, (uint64_t)i, &d) == MS_OK);
        } else {
            ms_edge_t e = random_edge(&rs, &before);
            uint32_t va = ms_spray_view_size(t, e.a), vb = ms_spray_view_size(t, e.b);
            REQUIRE(t->ops->fail_edge(t, e.a, e.b, &d) == MS_OK);
            REQUIRE(ms_spray_view_size(t, e.a) == va && ms_spray_view_size(t, e.b) == vb);
            REQUIRE(ms_spray_failed(t, e.a, e.b) && ms_spray_failed(t, e.b, e.a));
            REQUIRE(failed.n < sizeof(failed.v) / sizeof(failed.v[0]));
            failed.v[failed.n++] = (pair_t){e.a, e.b};
            fails++;
            /* Told again: nothing more happens. */
            eset_take(t, &after);
            ms_topo_diff_t again;
            ms_topo_diff_init(&again);
            REQUIRE(t->ops->fail_edge(t, e.b, e.a, &again) == MS_OK);
            REQUIRE(again.n_connect == 0 && again.n_disconnect == 0);
            ms_topo_diff_cleanup(&again);
        }
        eset_take(t, &after);
        check_diff(&before, &after, &d);
        REQUIRE(connected(t, present));
        /* No failed pair is linked again while both are here: not by the
         * replacement, a shuffle, a join or a leave's repair. */
        ms_spray_stats_t st;
        ms_spray_stats(t, &st);
        REQUIRE(st.failed_pairs == failed.n);
        REQUIRE(st.forced_arcs == 0);
        for (size_t j = 0; j < failed.n; j++) {
            REQUIRE(ms_spray_failed(t, failed.v[j].a, failed.v[j].b));
            REQUIRE(!t->ops->adjacent(t, failed.v[j].a, failed.v[j].b));
        }
    }
    printf("spray seed=%llu: %zu failures, %zu pairs failed at the end, %zu peers\n",
           (unsigned long long)seed, fails, failed.n, n);
    REQUIRE(fails > 0);
    free(before.e);
    free(after.e);
    ms_topo_diff_cleanup(&d);
    t->ops->destroy(t);
}

START_TEST(spray_fail_keeps_views_and_never_relinks)
{
    spray_run(2000 + (uint64_t)_i, 2500);
}
END_TEST

/* With two peers there is no one else: the arc stays (forced), the views too. */
START_TEST(spray_fail_two_peers)
{
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ms_topo_create("spray", &(ms_topo_params_t){.seed = 5}, &t), MS_OK);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ck_assert_int_eq(t->ops->join(t, 0, (ms_topo_pos_t){0}, &d), MS_OK);
    ck_assert_int_eq(t->ops->join(t, 1, (ms_topo_pos_t){0}, &d), MS_OK);
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(t->ops->fail_edge(t, 0, 2, &d), MS_ERR_NOTFOUND);
    ck_assert_int_eq(t->ops->fail_edge(t, 0, 1, &d), MS_OK);
    ck_assert(t->ops->adjacent(t, 0, 1));
    ck_assert_uint_eq(d.n_connect + d.n_disconnect, 0);
    ms_spray_stats_t st;
    ms_spray_stats(t, &st);
    ck_assert_uint_gt(st.forced_arcs, 0);
    /* A third peer: the next failure report finds the pair failed already. */
    ck_assert_int_eq(t->ops->join(t, 2, (ms_topo_pos_t){0}, &d), MS_OK);
    ck_assert_int_eq(t->ops->leave(t, 1, &d), MS_OK);
    ms_spray_stats(t, &st);
    ck_assert_uint_eq(st.failed_pairs, 0);
    ms_topo_diff_cleanup(&d);
    t->ops->destroy(t);
}
END_TEST

/* ---- delaunay: each end gains its nearest unlinked peer; >= 2 working links ---- */

typedef struct {
    double x, y;
} pt_t;

static ms_topo_pos_t random_pos(uint64_t *rs, int geo, pt_t *keep)
{
    ms_topo_pos_t p = {.key = rnd(rs)};
    if (geo) {
        p.x = unit(rs) * 360 - 180;
        p.y = asin(unit(rs) * 2 - 1) * (180 / 3.14159265358979323846);
    } else {
        p.x = unit(rs) * 2000 - 1000;
        p.y = unit(rs) * 2000 - 1000;
    }
    *keep = (pt_t){p.x, p.y};
    return p;
}

static int pairs_has(const pairs_t *f, ms_peer_t a, ms_peer_t b)
{
    for (size_t i = 0; i < f->n; i++)
        if ((f->v[i].a == a && f->v[i].b == b) || (f->v[i].a == b && f->v[i].b == a))
            return 1;
    return 0;
}

static size_t pairs_count(const pairs_t *f, ms_peer_t p)
{
    size_t c = 0;
    for (size_t i = 0; i < f->n; i++)
        c += f->v[i].a == p || f->v[i].b == p;
    return c;
}

/* The plane peer nearest p, not p, not linked (in `links`) and not failed with it. */
static ms_peer_t brute_nearest(const eset_t *links, const pairs_t *failed, const uint8_t *present,
                               const pt_t *pos, ms_peer_t p)
{
    ms_peer_t best = MS_PEER_NONE;
    double bd = 0;
    int64_t px = ms_delaunay_quantize(pos[p].x), py = ms_delaunay_quantize(pos[p].y);
    for (ms_peer_t q = 0; q < SLOTS; q++) {
        if (!present[q] || q == p || pairs_has(failed, p, q) ||
            eset_has(links, p < q ? p : q, p < q ? q : p, MS_EDGE_PEER))
            continue;
        double dx = (double)(ms_delaunay_quantize(pos[q].x) - px);
        double dy = (double)(ms_delaunay_quantize(pos[q].y) - py);
        double dd = dx * dx + dy * dy;
        if (best == MS_PEER_NONE || dd < bd) {
            best = q;
            bd = dd;
        }
    }
    return best;
}

static void delaunay_run(int geo, uint64_t seed, int steps)
{
    ms_topo_t *t = NULL;
    REQUIRE(ms_topo_create("delaunay", &(ms_topo_params_t){.geo = geo, .seed = seed}, &t) == MS_OK);
    REQUIRE(t->ops->fail_edge != NULL && ms_relink_inner(t) != t);
    const ms_topo_t *in = ms_relink_inner(t);
    uint8_t present[SLOTS] = {0};
    static pt_t pos[SLOTS];
    static pairs_t failed;
    failed.n = 0;
    eset_t before = {0}, after = {0}, inner = {0};
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t rs = seed * 17 + 3;
    size_t n = 0, fails = 0, replaced = 0;
    ms_peer_t nb[SLOTS];
    for (int i = 0; i < steps; i++) {
        eset_take(t, &before);
        ms_topo_diff_clear(&d);
        uint32_t r = below(&rs, 100);
        if (n < 4 || (r < 35 && n < 80)) {
            ms_peer_t p = free_handle(present, 0);
            REQUIRE(t->ops->join(t, p, random_pos(&rs, geo, &pos[p]), &d) == MS_OK);
            present[p] = 1;
            n++;
        } else if (r < 55) {
            ms_peer_t p = random_present(&rs, present, 0);
            REQUIRE(t->ops->leave(t, p, &d) == MS_OK);
            present[p] = 0;
            pairs_forget(&failed, p);
            n--;
        } else if (r < 65) {
            ms_peer_t p = random_present(&rs, present, 0);
            REQUIRE(t->ops->move(t, p, random_pos(&rs, geo, &pos[p]), &d) == MS_OK);
        } else {
            ms_edge_t e = random_edge(&rs, &before);
            int was_inner = in->ops->adjacent(in, e.a, e.b);
            ms_peer_t na = geo ? MS_PEER_NONE : brute_nearest(&before, &failed, present, pos, e.a);
            ms_peer_t nbp = geo ? MS_PEER_NONE : brute_nearest(&before, &failed, present, pos, e.b);
            int again = pairs_has(&failed, e.a, e.b);
            REQUIRE(t->ops->fail_edge(t, e.a, e.b, &d) == MS_OK);
            if (!again) {
                failed.v[failed.n++] = (pair_t){e.a, e.b};
                fails++;
            }
            REQUIRE(ms_relink_failed(t, e.a, e.b));
            /* The triangulation's edge stays; an extra link that failed goes. */
            REQUIRE(t->ops->adjacent(t, e.a, e.b) == was_inner);
            if (!again && na != MS_PEER_NONE) {
                REQUIRE(t->ops->adjacent(t, e.a, na));
                replaced++;
            }
            if (!again && nbp != MS_PEER_NONE)
                REQUIRE(t->ops->adjacent(t, e.b, nbp));
        }
        eset_take(t, &after);
        check_diff(&before, &after, &d);
        /* An edge the triangulation makes again between a failed pair is a new
         * attempt: the mark goes. */
        for (size_t j = 0; j < failed.n;)
            if (!ms_relink_failed(t, failed.v[j].a, failed.v[j].b)) {
                REQUIRE(in->ops->adjacent(in, failed.v[j].a, failed.v[j].b));
                failed.v[j] = failed.v[--failed.n];
            } else {
                j++;
            }
        eset_take(in, &inner);
        for (size_t j = 0; j < inner.n; j++)
            REQUIRE(t->ops->adjacent(t, inner.e[j].a, inner.e[j].b));
        ms_relink_stats_t st;
        ms_relink_stats(t, &st);
        REQUIRE(st.failed_pairs == failed.n);
        for (ms_peer_t p = 0; p < SLOTS; p++) {
            if (!present[p])
                continue;
            size_t m = t->ops->neighbours(t, p, nb, SLOTS), work = 0;
            for (size_t j = 0; j < m; j++)
                work += !pairs_has(&failed, p, nb[j]);
            REQUIRE(work == ms_relink_working(t, p));
            size_t f = pairs_count(&failed, p);
            if (f == 0)
                continue;
            /* The bound: 2 working links, or every other peer linked or failed. */
            size_t want = n - 1 - f < 2 ? n - 1 - f : 2;
            if (work < want)
                ck_abort_msg("seed %llu step %d: peer %u has %zu working links, %zu failed, "
                             "N=%zu",
                             (unsigned long long)seed, i, p, work, f, n);
        }
    }
    printf("delaunay geo=%d seed=%llu: %zu failures, %zu nearest checked, %zu pairs failed at "
           "the end, %zu peers\n",
           geo, (unsigned long long)seed, fails, replaced, failed.n, n);
    REQUIRE(fails > 0 && (geo || replaced > 0));
    free(before.e);
    free(after.e);
    free(inner.e);
    ms_topo_diff_cleanup(&d);
    t->ops->destroy(t);
}

START_TEST(delaunay_fail_keeps_two_working_links)
{
    delaunay_run(0, 3000 + (uint64_t)_i, 1500);
}
END_TEST

START_TEST(geo_fail_keeps_two_working_links)
{
    delaunay_run(1, 4000 + (uint64_t)_i, 1000);
}
END_TEST

/* A peer whose every link fails, one after another: it keeps 2 working links
 * while there are peers left to try, then has tried them all. */
START_TEST(delaunay_peer_behind_a_bad_nat)
{
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ms_topo_create("delaunay", &(ms_topo_params_t){.seed = 9}, &t), MS_OK);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t rs = 12345;
    pt_t keep;
    enum { N = 12 };
    for (ms_peer_t p = 0; p < N; p++)
        ck_assert_int_eq(t->ops->join(t, p, random_pos(&rs, 0, &keep), &d), MS_OK);
    ms_peer_t nb[N];
    for (int round = 0; round < N; round++) {
        size_t m = t->ops->neighbours(t, 0, nb, N);
        ms_peer_t target = MS_PEER_NONE;
        for (size_t j = 0; j < m && target == MS_PEER_NONE; j++)
            if (!ms_relink_failed(t, 0, nb[j]))
                target = nb[j];
        if (target == MS_PEER_NONE)
            break;
        ms_topo_diff_clear(&d);
        ck_assert_int_eq(t->ops->fail_edge(t, 0, target, &d), MS_OK);
        size_t failed = 0;
        for (ms_peer_t q = 1; q < N; q++)
            failed += (size_t)ms_relink_failed(t, 0, q);
        size_t want = N - 1 - failed < 2 ? N - 1 - failed : 2;
        ck_assert_uint_ge(ms_relink_working(t, 0), want);
    }
    for (ms_peer_t q = 1; q < N; q++)
        ck_assert(ms_relink_failed(t, 0, q));
    ck_assert_uint_eq(ms_relink_working(t, 0), 0);
    json_t *obj = json_object();
    ck_assert_int_eq(t->ops->write_json(t, obj), MS_OK);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(obj, "repair"), "failedPairs")), N - 1);
    json_decref(obj);
    ms_topo_diff_cleanup(&d);
    t->ops->destroy(t);
}
END_TEST

/* auto: the engine in use repairs; the full mesh has nothing to do. */
START_TEST(auto_delegates_fail)
{
    ms_topo_t *t = NULL;
    ms_topo_params_t p = {.then = &ms_topo_delaunay_ops, .up_to = 3, .hysteresis = 1};
    ck_assert_int_eq(ms_topo_create("auto", &p, &t), MS_OK);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t rs = 77;
    pt_t keep;
    for (ms_peer_t q = 0; q < 3; q++)
        ck_assert_int_eq(t->ops->join(t, q, random_pos(&rs, 0, &keep), &d), MS_OK);
    ck_assert_int_eq(t->ops->fail_edge(t, 0, 1, &d), MS_ERR_UNSUPPORTED);
    for (ms_peer_t q = 3; q < 8; q++)
        ck_assert_int_eq(t->ops->join(t, q, random_pos(&rs, 0, &keep), &d), MS_OK);
    eset_t e = {0};
    eset_take(t, &e);
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(t->ops->fail_edge(t, e.e[0].a, e.e[0].b, &d), MS_OK);
    ck_assert_uint_gt(d.n_connect, 0);
    free(e.e);
    ms_topo_diff_cleanup(&d);
    t->ops->destroy(t);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("repair");
    TCase *tc = tcase_create("repair");
    tcase_add_loop_test(tc, tree_fail_reparents_outside_subtree_within_fanout, 0, 6);
    tcase_add_loop_test(tc, spray_fail_keeps_views_and_never_relinks, 0, 4);
    tcase_add_test(tc, spray_fail_two_peers);
    tcase_add_loop_test(tc, delaunay_fail_keeps_two_working_links, 0, 4);
    tcase_add_loop_test(tc, geo_fail_keeps_two_working_links, 0, 2);
    tcase_add_test(tc, delaunay_peer_behind_a_bad_nat);
    tcase_add_test(tc, auto_delegates_fail);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

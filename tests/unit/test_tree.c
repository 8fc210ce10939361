/* SPDX-License-Identifier: Apache-2.0 */
/* Property tests for the k-ary tree engine: invariants after every join and leave, restore. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "topology.h"
#include "tree.h"

/* ck_assert records its location on every call, which costs more than the
 * engine itself in these loops; this only reaches Check when it fails. */
#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c))                                                                                  \
            ck_abort_msg("%s:%d: %s", __FILE__, __LINE__, #c);                                     \
    } while (0)
#define REQUIRE_NONNULL(p) REQUIRE((p) != NULL)

/* splitmix64: the tests' only randomness, seeded per case. */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint32_t rnd_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(rnd(s) % n);
}

/* The fewest levels that hold n peers: ceil(log_k((k-1)n+1)), in integers. */
static uint32_t levels_for(size_t n, uint32_t k)
{
    uint64_t cap = 0, pw = 1;
    uint32_t l = 0;
    while (cap < n) {
        cap += pw;
        pw *= k;
        l++;
    }
    return l;
}

/* A snapshot of the tree read through the public ops only. */
typedef struct {
    size_t n_slots;
    ms_peer_t *parent; /* MS_PEER_NONE: root or absent */
    uint32_t *nparents;
} snap_t;

static void snap_edge(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    snap_t *s = ud;
    REQUIRE((kind) == (MS_EDGE_TREE));
    REQUIRE((a) < (s->n_slots));
    REQUIRE((b) < (s->n_slots));
    s->parent[b] = a;
    s->nparents[b]++;
}

static void snap_take(const ms_topo_t *t, snap_t *s, size_t n_slots)
{
    s->n_slots = n_slots;
    s->parent = realloc(s->parent, n_slots * sizeof(*s->parent));
    s->nparents = realloc(s->nparents, n_slots * sizeof(*s->nparents));
    REQUIRE_NONNULL(s->parent);
    REQUIRE_NONNULL(s->nparents);
    for (size_t i = 0; i < n_slots; i++) {
        s->parent[i] = MS_PEER_NONE;
        s->nparents[i] = 0;
    }
    t->ops->edges(t, snap_edge, s);
}

static void snap_free(snap_t *s)
{
    free(s->parent);
    free(s->nparents);
}

/* Checks every tree invariant; present[p] says who is in. Returns the levels. */
static uint32_t check_tree(const ms_topo_t *t, const snap_t *s, const uint8_t *present, uint32_t k)
{
    size_t n = 0, roots = 0;
    ms_peer_t root = MS_PEER_NONE;
    uint32_t *fan = calloc(s->n_slots, sizeof(*fan));
    uint32_t *depth = calloc(s->n_slots, sizeof(*depth));
    REQUIRE_NONNULL(fan);
    REQUIRE_NONNULL(depth);
    for (size_t p = 0; p < s->n_slots; p++) {
        if (!present[p]) {
            REQUIRE((s->nparents[p]) == (0));
            REQUIRE(s->parent[p] == MS_PEER_NONE);
            continue;
        }
        n++;
        REQUIRE((s->nparents[p]) <= (1));
        if (s->parent[p] == MS_PEER_NONE) {
            roots++;
            root = (ms_peer_t)p;
        } else {
            REQUIRE(present[s->parent[p]]);
            fan[s->parent[p]]++;
        }
    }
    REQUIRE((t->ops->count(t)) == (n));
    if (n == 0) {
        free(fan);
        free(depth);
        return 0;
    }
    REQUIRE((roots) == (1));
    /* Walking up from every peer reaches the root within n steps: no cycle, all reachable. */
    uint32_t levels = 0;
    for (size_t p = 0; p < s->n_slots; p++) {
        if (!present[p])
            continue;
        REQUIRE((fan[p]) <= (k));
        uint32_t d = 0;
        ms_peer_t u = (ms_peer_t)p;
        while (s->parent[u] != MS_PEER_NONE) {
            u = s->parent[u];
            d++;
            REQUIRE((d) <= (n));
        }
        REQUIRE((u) == (root));
        depth[p] = d;
        if (d + 1 > levels)
            levels = d + 1;
        /* neighbours = parent + children, and adjacency agrees */
        ms_peer_t nb[64];
        size_t nn = t->ops->neighbours(t, (ms_peer_t)p, nb, 64);
        REQUIRE((nn) == (fan[p] + (s->parent[p] != MS_PEER_NONE)));
        for (size_t i = 0; i < nn && i < 64; i++) {
            REQUIRE(t->ops->adjacent(t, (ms_peer_t)p, nb[i]));
            REQUIRE(s->parent[nb[i]] == p || s->parent[p] == nb[i]);
        }
    }
    REQUIRE((levels) <= (levels_for(n, k) + 1));
    ms_tree_stats_t st;
    ms_tree_stats(t, &st);
    REQUIRE((st.depth) == (levels));
    REQUIRE((st.bound) == (levels_for(n, k)));
    free(fan);
    free(depth);
    return levels;
}

/* The diff must be exactly (after - before) as connects and (before - after) as disconnects. */
static void check_diff(const snap_t *before, const snap_t *after, ms_topo_diff_t *d)
{
    size_t n = after->n_slots > before->n_slots ? after->n_slots : before->n_slots;
    ms_edge_t *con = malloc((n + 1) * sizeof(*con)), *dis = malloc((n + 1) * sizeof(*dis));
    REQUIRE_NONNULL(con);
    REQUIRE_NONNULL(dis);
    size_t nc = 0, nd = 0;
    for (size_t p = 0; p < n; p++) {
        ms_peer_t pb = p < before->n_slots ? before->parent[p] : MS_PEER_NONE;
        ms_peer_t pa = p < after->n_slots ? after->parent[p] : MS_PEER_NONE;
        if (pb == pa)
            continue;
        if (pa != MS_PEER_NONE)
            con[nc++] = (ms_edge_t){pa, (ms_peer_t)p, MS_EDGE_TREE};
        if (pb != MS_PEER_NONE)
            dis[nd++] = (ms_edge_t){pb, (ms_peer_t)p, MS_EDGE_TREE};
    }
    ms_topo_diff_normalize(d); /* idempotent; sorts a join's single edge too */
    qsort(con, nc, sizeof(*con), ms_edge_cmp);
    qsort(dis, nd, sizeof(*dis), ms_edge_cmp);
    REQUIRE((d->n_connect) == (nc));
    REQUIRE((d->n_disconnect) == (nd));
    for (size_t i = 0; i < nc; i++)
        REQUIRE((ms_edge_cmp(&d->connect[i], &con[i])) == (0));
    for (size_t i = 0; i < nd; i++)
        REQUIRE((ms_edge_cmp(&d->disconnect[i], &dis[i])) == (0));
    free(con);
    free(dis);
}

#define MAX_PEERS 1024

/* A random join/leave run with every invariant checked after every operation. */
static void churn_run(uint32_t k, uint64_t seed, int ops, uint32_t target)
{
    ms_topo_t *t = NULL;
    ms_topo_params_t params = {.k = k};
    REQUIRE((ms_topo_tree_ops.create(&params, &t)) == (MS_OK));
    uint8_t *present = calloc(MAX_PEERS, 1);
    REQUIRE_NONNULL(present);
    snap_t a = {0}, b = {0};
    snap_take(t, &a, MAX_PEERS);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t rs = seed;
    size_t n = 0;
    uint64_t leaves = 0, moved = 0, worst = 0, root_leaves = 0;
    for (int i = 0; i < ops; i++) {
        /* Grow to target, then churn; every 1000 ops shrink hard for a while
         * (which is what makes repairs pile up depth). */
        int shrink = (i / 500) % 4 == 3;
        uint32_t r = rnd_below(&rs, 100);
        int join =
            n == 0 || (n < MAX_PEERS - 1 && (shrink ? r < 25 : (n < target ? r < 70 : r < 50)));
        ms_tree_stats_t s0, s1;
        ms_tree_stats(t, &s0);
        ms_topo_diff_clear(&d);
        if (join) {
            ms_peer_t p = 0;
            while (present[p]) /* the caller reuses the smallest free handle */
                p++;
            REQUIRE((ms_topo_tree_ops.join(t, p, (ms_topo_pos_t){0}, &d)) == (MS_OK));
            present[p] = 1;
            n++;
        } else {
            ms_peer_t p;
            if (rnd_below(&rs, 50) == 0) {
                p = 0; /* now and then, the root */
                while (!present[p] || ms_tree_parent(t, p) != MS_PEER_NONE)
                    p++;
                root_leaves++;
            } else {
                do
                    p = rnd_below(&rs, MAX_PEERS);
                while (!present[p]);
            }
            REQUIRE((ms_topo_tree_ops.leave(t, p, &d)) == (MS_OK));
            present[p] = 0;
            n--;
        }
        snap_take(t, &b, MAX_PEERS);
        check_tree(t, &b, present, k);
        check_diff(&a, &b, &d);
        ms_tree_stats(t, &s1);
        uint64_t m =
            (s1.moved_repair + s1.moved_rebalance) - (s0.moved_repair + s0.moved_rebalance);
        if (join) {
            REQUIRE((m) == (0));
        } else {
            /* Repair re-parents the departed peer's children and, when the
             * promoted child is full, one spill per level below it. */
            REQUIRE((s1.moved_repair - s0.moved_repair) <= (uint64_t)k * s0.depth);
            /* Every moved peer shows up as one connect (or is the new root). */
            REQUIRE(d.n_connect <= m);
            leaves++;
            moved += m;
            if (m > worst)
                worst = m;
        }
        snap_t tmp = a;
        a = b;
        b = tmp;
    }
    ms_tree_stats_t st;
    ms_tree_stats(t, &st);
    double mean = leaves ? (double)moved / (double)leaves : 0;
    printf("tree k=%u seed=%llu ops=%d leaves=%llu (root %llu): moved/leave mean %.3f max %llu "
           "(repair %llu, rebalance %llu)\n",
           k, (unsigned long long)seed, ops, (unsigned long long)leaves,
           (unsigned long long)root_leaves, mean, (unsigned long long)worst,
           (unsigned long long)st.moved_repair, (unsigned long long)st.moved_rebalance);
    /* Sane: about one child per departed peer on average, a few more for rebalancing. */
    REQUIRE(mean <= 3.0);
    json_t *obj = json_object();
    REQUIRE((ms_topo_tree_ops.write_json(t, obj)) == (MS_OK));
    REQUIRE((json_integer_value(json_object_get(obj, "depth"))) == (st.depth));
    json_decref(obj);
    ms_topo_diff_cleanup(&d);
    snap_free(&a);
    snap_free(&b);
    free(present);
    ms_topo_tree_ops.destroy(t);
}

START_TEST(tree_churn_properties)
{
    static const uint32_t ks[] = {2, 3, 4, 8};
    uint32_t k = ks[_i % 4];
    uint64_t seed = 1000 + (uint64_t)_i;
    churn_run(k, seed, 4000, 600);
}
END_TEST

START_TEST(tree_basics)
{
    const ms_topo_ops_t *ops = ms_topo_find("tree");
    ck_assert_ptr_eq(ops, &ms_topo_tree_ops);
    ms_topo_t *t = NULL;
    REQUIRE((ops->create(&(ms_topo_params_t){.k = 1}, &t)) == (MS_ERR_INVAL));
    REQUIRE((ops->create(&(ms_topo_params_t){0}, &t)) == (MS_OK)); /* k = 4 */
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    for (ms_peer_t p = 0; p < 6; p++) {
        ms_topo_diff_clear(&d);
        REQUIRE((ops->join(t, p, (ms_topo_pos_t){0}, &d)) == (MS_OK));
    }
    /* 0 is root with children 1..4; 5 goes under 1 (the oldest free slot at depth 1). */
    REQUIRE((d.n_connect) == (1));
    REQUIRE((d.connect[0].a) == (1));
    REQUIRE((d.connect[0].b) == (5));
    REQUIRE((ops->join(t, 3, (ms_topo_pos_t){0}, &d)) == (MS_ERR_EXISTS));
    REQUIRE((ops->leave(t, 9, &d)) == (MS_ERR_NOTFOUND));
    REQUIRE(ops->adjacent(t, 0, 1) && ops->adjacent(t, 1, 5) && !ops->adjacent(t, 0, 5));
    /* The root leaves: the leaf child 2 (fewest children, smallest) is promoted
     * and adopts 1, 3, 4; only 0's children change parent. */
    ms_topo_diff_clear(&d);
    REQUIRE((ops->leave(t, 0, &d)) == (MS_OK));
    REQUIRE((ms_tree_parent(t, 2)) == (MS_PEER_NONE));
    REQUIRE((ms_tree_parent(t, 1)) == (2));
    REQUIRE((ms_tree_parent(t, 5)) == (1));
    REQUIRE((d.n_disconnect) == (4));
    REQUIRE((d.n_connect) == (3));
    ms_tree_stats_t st;
    ms_tree_stats(t, &st);
    REQUIRE((st.moved_repair) == (4));
    REQUIRE((st.depth) == (3));
    ms_topo_diff_cleanup(&d);
    ops->destroy(t);
}
END_TEST

typedef struct {
    ms_topo_report_t *r;
    ms_peer_t *nb; /* storage for the neighbour lists */
    size_t n;
} reports_t;

static void reports_from(const ms_topo_t *t, const uint8_t *present, size_t n_slots, reports_t *out)
{
    out->r = calloc(n_slots, sizeof(*out->r));
    out->nb = calloc(n_slots * 16, sizeof(*out->nb));
    REQUIRE_NONNULL(out->r);
    REQUIRE_NONNULL(out->nb);
    out->n = 0;
    for (size_t p = 0; p < n_slots; p++) {
        if (!present[p])
            continue;
        ms_topo_report_t *r = &out->r[out->n++];
        r->peer = (ms_peer_t)p;
        r->parent = ms_tree_parent(t, (ms_peer_t)p);
        r->neighbours = out->nb + p * 16;
        r->n_neighbours = t->ops->neighbours(t, (ms_peer_t)p, out->nb + p * 16, 16);
    }
}

START_TEST(tree_restore_intact_is_empty_diff)
{
    ms_topo_t *t = NULL, *t2 = NULL;
    ms_topo_params_t params = {.k = 3};
    REQUIRE((ms_topo_tree_ops.create(&params, &t)) == (MS_OK));
    uint8_t present[300] = {0};
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t rs = 7;
    for (int i = 0; i < 2000; i++) {
        ms_topo_diff_clear(&d);
        ms_peer_t p = rnd_below(&rs, 300);
        if (present[p])
            REQUIRE((ms_topo_tree_ops.leave(t, p, &d)) == (MS_OK));
        else
            REQUIRE((ms_topo_tree_ops.join(t, p, (ms_topo_pos_t){0}, &d)) == (MS_OK));
        present[p] ^= 1;
    }
    reports_t rep;
    reports_from(t, present, 300, &rep);
    /* Report order must not matter: reverse it. */
    for (size_t i = 0; i < rep.n / 2; i++) {
        ms_topo_report_t x = rep.r[i];
        rep.r[i] = rep.r[rep.n - 1 - i];
        rep.r[rep.n - 1 - i] = x;
    }
    REQUIRE((ms_topo_tree_ops.create(&params, &t2)) == (MS_OK));
    ms_topo_diff_clear(&d);
    REQUIRE((ms_topo_tree_ops.restore(t2, rep.r, rep.n, &d)) == (MS_OK));
    REQUIRE((d.n_connect) == (0));
    REQUIRE((d.n_disconnect) == (0));
    for (ms_peer_t p = 0; p < 300; p++)
        REQUIRE((ms_tree_parent(t2, p)) == (ms_tree_parent(t, p)));
    snap_t s = {0};
    snap_take(t2, &s, 300);
    check_tree(t2, &s, present, 3);
    /* The restored engine keeps working. */
    for (ms_peer_t p = 0; p < 300; p++) {
        ms_topo_diff_clear(&d);
        if (present[p])
            REQUIRE((ms_topo_tree_ops.leave(t2, p, &d)) == (MS_OK));
        present[p] = 0;
        snap_take(t2, &s, 300);
        check_tree(t2, &s, present, 3);
    }
    snap_free(&s);
    free(rep.r);
    free(rep.nb);
    ms_topo_diff_cleanup(&d);
    ms_topo_tree_ops.destroy(t);
    ms_topo_tree_ops.destroy(t2);
}
END_TEST

START_TEST(tree_restore_damaged)
{
    /* k = 2. Reported parent links (child <- parent):
     *   0 root; 1 <- 0; 2 <- 0; 3 <- 0 (over-full: 0 already has two);
     *   4 <- 5, 5 <- 6, 6 <- 4 (a cycle); 7 <- 42 (parent not reported);
     *   8 <- 8 (self); 9 <- 1; 10 root too (a second root); 11 <- 10. */
    ms_peer_t parents[12] = {MS_PEER_NONE, 0, 0, 0, 5, 6, 4, 42, 8, 1, MS_PEER_NONE, 10};
    ms_topo_report_t r[12];
    for (ms_peer_t p = 0; p < 12; p++)
        r[p] = (ms_topo_report_t){.peer = p, .parent = parents[p]};
    ms_topo_t *t = NULL;
    REQUIRE((ms_topo_tree_ops.create(&(ms_topo_params_t){.k = 2}, &t)) == (MS_OK));
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    REQUIRE((ms_topo_tree_ops.restore(t, r, 12, &d)) == (MS_OK));
    uint8_t present[12];
    memset(present, 1, sizeof(present));
    snap_t s = {0};
    snap_take(t, &s, 12);
    check_tree(t, &s, present, 2);
    /* Valid links survive: 0's first two children, 9 under 1, 11 under 10,
     * and two of the three cycle links. */
    REQUIRE((s.parent[1]) == (0));
    REQUIRE((s.parent[2]) == (0));
    REQUIRE((s.parent[9]) == (1));
    REQUIRE((s.parent[11]) == (10));
    int cycle_kept = (s.parent[4] == 5) + (s.parent[5] == 6) + (s.parent[6] == 4);
    REQUIRE((cycle_kept) == (2));
    /* The diff is (edges now) - (edges reported). */
    snap_t rep = {0};
    rep.n_slots = 43;
    rep.parent = malloc(43 * sizeof(ms_peer_t));
    rep.nparents = calloc(43, sizeof(uint32_t));
    for (size_t p = 0; p < 43; p++)
        rep.parent[p] = p < 12 ? parents[p] : MS_PEER_NONE;
    snap_t now = {0};
    snap_take(t, &now, 43);
    check_diff(&rep, &now, &d);
    snap_free(&s);
    snap_free(&rep);
    snap_free(&now);
    s = (snap_t){0};

    /* A reported chain of 64 with k = 2 is far deeper than 7 + 1 levels: restore rebalances. */
    ms_topo_report_t chain[64];
    for (ms_peer_t p = 0; p < 64; p++)
        chain[p] = (ms_topo_report_t){.peer = p, .parent = p ? p - 1 : MS_PEER_NONE};
    ms_topo_t *t2 = NULL;
    REQUIRE((ms_topo_tree_ops.create(&(ms_topo_params_t){.k = 2}, &t2)) == (MS_OK));
    ms_topo_diff_clear(&d);
    REQUIRE((ms_topo_tree_ops.restore(t2, chain, 64, &d)) == (MS_OK));
    uint8_t present64[64];
    memset(present64, 1, sizeof(present64));
    snap_take(t2, &s, 64);
    REQUIRE((check_tree(t2, &s, present64, 2)) <= (8));
    snap_free(&s);
    ms_topo_diff_cleanup(&d);
    ms_topo_tree_ops.destroy(t);
    ms_topo_tree_ops.destroy(t2);
}
END_TEST

/* Invariants of a tree with a source slot (handle 0). present[] holds the real peers. */
static void check_source_tree(const ms_topo_t *t, const snap_t *s, const uint8_t *present,
                              uint32_t k, uint32_t k1)
{
    size_t n = 0, roots = 0;
    uint32_t *fan = calloc(s->n_slots, sizeof(*fan));
    REQUIRE_NONNULL(fan);
    for (size_t p = 0; p < s->n_slots; p++) {
        if (!present[p]) {
            REQUIRE(s->nparents[p] == 0 && s->parent[p] == MS_PEER_NONE);
            continue;
        }
        n++;
        REQUIRE(s->nparents[p] <= 1);
        REQUIRE(ms_tree_parent(t, (ms_peer_t)p) == s->parent[p]);
        if (s->parent[p] == MS_PEER_NONE)
            roots++;
        else
            fan[s->parent[p]]++;
    }
    REQUIRE(t->ops->count(t) == n);
    ms_tree_stats_t st;
    ms_tree_stats(t, &st);
    int waiting = ms_tree_waiting(t);
    REQUIRE(st.waiting == waiting);
    if (present[0]) {
        /* The source is the one root and nobody waits. */
        REQUIRE(!waiting && st.source);
        REQUIRE(s->parent[0] == MS_PEER_NONE && roots == 1);
        REQUIRE(fan[0] <= k1);
    } else if (waiting) {
        /* Everyone hangs (through the held place) from up to k1 waiting roots. */
        REQUIRE(n > 0 && roots >= 1 && roots <= k1);
    } else {
        REQUIRE(n == 0 ? roots == 0 : roots == 1);
    }
    uint32_t levels = 0;
    for (size_t p = 1; p < s->n_slots; p++) {
        if (!present[p])
            continue;
        REQUIRE(fan[p] <= k);
        uint32_t d = 0;
        ms_peer_t u = (ms_peer_t)p;
        while (s->parent[u] != MS_PEER_NONE) {
            u = s->parent[u];
            REQUIRE(++d <= n); /* no cycle */
        }
        if (present[0])
            REQUIRE(u == 0);
        /* A waiting peer sits one level below the held place. */
        d += waiting;
        if (d + 1 > levels)
            levels = d + 1;
        ms_peer_t nb[64];
        size_t nn = t->ops->neighbours(t, (ms_peer_t)p, nb, 64);
        REQUIRE(nn == fan[p] + (s->parent[p] != MS_PEER_NONE));
        for (size_t i = 0; i < nn && i < 64; i++)
            REQUIRE(t->ops->adjacent(t, (ms_peer_t)p, nb[i]));
    }
    if (n > 0) {
        REQUIRE(levels <= st.bound + 1);
        REQUIRE(st.depth >= levels);
    }
    free(fan);
}

/* Joins, leaves, source arrivals and departures and re-parent requests with every
 * invariant and the exact diff checked after each. */
static void source_run(uint32_t k, uint32_t k1, uint32_t flags, uint64_t seed, int ops)
{
    ms_topo_t *t = NULL;
    ms_topo_params_t params = {.k = k, .k1 = k1, .source = flags};
    REQUIRE(ms_topo_tree_ops.create(&params, &t) == MS_OK);
    enum { N = 256 };
    uint8_t present[N] = {0};
    snap_t a = {0}, b = {0};
    snap_take(t, &a, N);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t rs = seed;
    size_t n = 0, source_joins = 0, reparents = 0, waits = 0;
    for (int i = 0; i < ops; i++) {
        uint32_t r = rnd_below(&rs, 100);
        ms_topo_diff_clear(&d);
        if (r < 4 && !present[0]) {
            REQUIRE(ms_topo_tree_ops.join(t, 0, (ms_topo_pos_t){0}, &d) == MS_OK);
            present[0] = 1;
            n++;
            source_joins++;
        } else if (r < 7 && present[0]) {
            int had_children = ms_topo_tree_ops.neighbours(t, 0, NULL, 0) > 0;
            REQUIRE(ms_topo_tree_ops.leave(t, 0, &d) == MS_OK);
            present[0] = 0;
            n--;
            if ((flags & MS_TREE_HOLD_AFTER) && had_children) {
                /* Held: only the source's own links go. */
                REQUIRE(ms_tree_waiting(t));
                REQUIRE(d.n_connect == 0);
            }
        } else if (r < 20 && n > 1) {
            ms_peer_t p;
            do
                p = 1 + rnd_below(&rs, N - 1);
            while (!present[p]);
            ms_peer_t old = ms_tree_parent(t, p);
            ms_err_t e = ms_tree_reparent(t, p, MS_PEER_NONE, &d);
            REQUIRE(e == MS_OK || e == MS_ERR_FULL || (e == MS_ERR_INVAL && old == MS_PEER_NONE));
            if (e == MS_OK)
                reparents++;
        } else if ((r < 62 && n < N - 1) || n == 0) {
            ms_peer_t p = 1;
            while (present[p])
                p++;
            REQUIRE(ms_topo_tree_ops.join(t, p, (ms_topo_pos_t){0}, &d) == MS_OK);
            present[p] = 1;
            n++;
        } else {
            ms_peer_t p;
            do
                p = 1 + rnd_below(&rs, N - 1);
            while (!present[p] && n > present[0]);
            if (!present[p])
                continue;
            REQUIRE(ms_topo_tree_ops.leave(t, p, &d) == MS_OK);
            present[p] = 0;
            n--;
        }
        waits += ms_tree_waiting(t);
        snap_take(t, &b, N);
        check_source_tree(t, &b, present, k, k1);
        check_diff(&a, &b, &d);
        snap_t tmp = a;
        a = b;
        b = tmp;
    }
    printf("tree source k=%u k1=%u flags=%u seed=%llu: %zu source joins, %zu reparents, "
           "%zu ops waiting\n",
           k, k1, flags, (unsigned long long)seed, source_joins, reparents, waits);
    REQUIRE(source_joins > 0 && reparents > 0);
    if (flags & (MS_TREE_HOLD_BEFORE | MS_TREE_HOLD_AFTER))
        REQUIRE(waits > 0);
    ms_topo_diff_cleanup(&d);
    snap_free(&a);
    snap_free(&b);
    ms_topo_tree_ops.destroy(t);
}

START_TEST(tree_source_properties)
{
    static const uint32_t flags[] = {MS_TREE_SOURCE, MS_TREE_SOURCE | MS_TREE_HOLD_BEFORE,
                                     MS_TREE_SOURCE | MS_TREE_HOLD_AFTER,
                                     MS_TREE_SOURCE | MS_TREE_HOLD_BEFORE | MS_TREE_HOLD_AFTER};
    source_run(2 + (uint32_t)_i % 3, 10 - (uint32_t)_i % 3, flags[_i % 4], 77 + (uint64_t)_i, 1500);
}
END_TEST

START_TEST(tree_source_scenarios)
{
    ms_topo_t *t = NULL;
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    /* Viewers first, no hold: they form a tree; the source re-roots above it
     * with one new link and takes the next joiners directly (k1 = 3). */
    ms_topo_params_t pf = {.k = 2, .k1 = 3, .source = MS_TREE_SOURCE};
    REQUIRE(ms_topo_tree_ops.create(&pf, &t) == MS_OK);
    for (ms_peer_t p = 1; p <= 3; p++)
        REQUIRE(ms_topo_tree_ops.join(t, p, (ms_topo_pos_t){0}, &d) == MS_OK);
    ms_topo_diff_clear(&d);
    REQUIRE(ms_topo_tree_ops.join(t, 0, (ms_topo_pos_t){0}, &d) == MS_OK);
    REQUIRE(d.n_connect == 1 && d.connect[0].a == 0 && d.connect[0].b == 1);
    REQUIRE(d.n_disconnect == 0);
    ms_topo_diff_clear(&d);
    REQUIRE(ms_topo_tree_ops.join(t, 4, (ms_topo_pos_t){0}, &d) == MS_OK);
    REQUIRE(ms_tree_parent(t, 4) == 0);
    REQUIRE(ms_topo_tree_ops.join(t, 0, (ms_topo_pos_t){0}, &d) == MS_ERR_EXISTS);
    /* A re-parent never picks a descendant nor the current parent. */
    ms_topo_diff_clear(&d);
    REQUIRE(ms_tree_reparent(t, 2, MS_PEER_NONE, &d) == MS_OK);
    REQUIRE(ms_tree_parent(t, 2) == 0); /* the source still had a free slot */
    REQUIRE(ms_tree_reparent(t, 0, MS_PEER_NONE, &d) == MS_ERR_INVAL);
    ms_topo_tree_ops.destroy(t);

    /* Hold before and after: viewers wait below the empty place, the source
     * takes it with one link per waiting child, and its departure leaves them
     * in place. */
    ms_topo_params_t ph = {
        .k = 2, .k1 = 2, .source = MS_TREE_SOURCE | MS_TREE_HOLD_BEFORE | MS_TREE_HOLD_AFTER};
    REQUIRE(ms_topo_tree_ops.create(&ph, &t) == MS_OK);
    ms_topo_diff_clear(&d);
    for (ms_peer_t p = 1; p <= 4; p++)
        REQUIRE(ms_topo_tree_ops.join(t, p, (ms_topo_pos_t){0}, &d) == MS_OK);
    REQUIRE(ms_tree_waiting(t));
    REQUIRE(ms_tree_parent(t, 1) == MS_PEER_NONE && ms_tree_parent(t, 2) == MS_PEER_NONE);
    REQUIRE(ms_tree_parent(t, 3) == 1 && ms_tree_parent(t, 4) == 1); /* oldest free slot */
    REQUIRE(d.n_connect == 2); /* 1-3 and 1-4; nothing to the empty place */
    ms_topo_diff_clear(&d);
    REQUIRE(ms_topo_tree_ops.join(t, 0, (ms_topo_pos_t){0}, &d) == MS_OK);
    REQUIRE(!ms_tree_waiting(t));
    REQUIRE(d.n_connect == 2 && d.n_disconnect == 0);
    ms_topo_diff_clear(&d);
    REQUIRE(ms_topo_tree_ops.leave(t, 0, &d) == MS_OK);
    REQUIRE(ms_tree_waiting(t));
    REQUIRE(d.n_connect == 0 && d.n_disconnect == 2);
    REQUIRE(ms_tree_parent(t, 3) == 1);
    /* Everyone leaves: the held place goes too, and a lone viewer waits again. */
    for (ms_peer_t p = 1; p <= 4; p++)
        REQUIRE(ms_topo_tree_ops.leave(t, p, &d) == MS_OK);
    REQUIRE(!ms_tree_waiting(t) && ms_topo_tree_ops.count(t) == 0);
    REQUIRE(ms_topo_tree_ops.join(t, 1, (ms_topo_pos_t){0}, &d) == MS_OK);
    REQUIRE(ms_tree_waiting(t));
    ms_topo_tree_ops.destroy(t);

    /* Restore without the source: the held place is rebuilt and every fragment
     * hangs below it; with the source reported, it is the root. */
    REQUIRE(ms_topo_tree_ops.create(&ph, &t) == MS_OK);
    ms_topo_report_t rep[3] = {{.peer = 1, .parent = MS_PEER_NONE},
                               {.peer = 2, .parent = MS_PEER_NONE},
                               {.peer = 3, .parent = 1}};
    ms_peer_t nb1[] = {3};
    rep[0].neighbours = nb1;
    rep[0].n_neighbours = 1;
    ms_topo_diff_clear(&d);
    REQUIRE(ms_topo_tree_ops.restore(t, rep, 3, &d) == MS_OK);
    REQUIRE(ms_tree_waiting(t));
    REQUIRE(d.n_connect == 0 && d.n_disconnect == 0);
    ms_topo_tree_ops.destroy(t);
    REQUIRE(ms_topo_tree_ops.create(&ph, &t) == MS_OK);
    ms_topo_report_t rep2[3] = {{.peer = 5, .parent = MS_PEER_NONE},
                                {.peer = 6, .parent = 5},
                                {.peer = 0, .parent = MS_PEER_NONE}};
    ms_topo_diff_clear(&d);
    REQUIRE(ms_topo_tree_ops.restore(t, rep2, 3, &d) == MS_OK);
    REQUIRE(ms_tree_parent(t, 5) == 0 && ms_tree_parent(t, 0) == MS_PEER_NONE);
    ms_topo_tree_ops.destroy(t);
    ms_topo_diff_cleanup(&d);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tree");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, tree_basics);
    tcase_add_loop_test(tc, tree_churn_properties, 0, 12); /* k = 2,3,4,8 x 3 seeds */
    tcase_add_test(tc, tree_restore_intact_is_empty_diff);
    tcase_add_test(tc, tree_restore_damaged);
    tcase_add_loop_test(tc, tree_source_properties, 0, 8);
    tcase_add_test(tc, tree_source_scenarios);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Tests for the Spray engine: diffs against edge sets, connectivity and view sizes under churn. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spray.h"
#include "topology.h"

/* ck_assert records its location on every call; in hot loops only failures reach Check. */
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

static uint32_t rnd_below(uint64_t *s, uint32_t n)
{
    return (uint32_t)(rnd(s) % n);
}

/* ---- edge sets ---- */

typedef struct {
    ms_edge_t *e;
    size_t n, cap;
} eset_t;

static void eset_add(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    eset_t *s = ud;
    REQUIRE(kind == MS_EDGE_PEER);
    REQUIRE(a < b);
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 1024;
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
        REQUIRE(ms_edge_cmp(&s->e[i - 1], &s->e[i]) < 0); /* each edge once */
}

/* d must be exactly after - before (connects) and before - after (disconnects). */
static void check_diff(const eset_t *before, const eset_t *after, const ms_topo_diff_t *d)
{
    size_t i = 0, j = 0, nc = 0, nd = 0;
    while (i < before->n || j < after->n) {
        int c = i == before->n ? 1 : j == after->n ? -1 : ms_edge_cmp(&before->e[i], &after->e[j]);
        if (c == 0) {
            i++;
            j++;
        } else if (c < 0) {
            REQUIRE(nd < d->n_disconnect);
            REQUIRE(ms_edge_cmp(&d->disconnect[nd], &before->e[i]) == 0);
            nd++;
            i++;
        } else {
            REQUIRE(nc < d->n_connect);
            REQUIRE(ms_edge_cmp(&d->connect[nc], &after->e[j]) == 0);
            nc++;
            j++;
        }
    }
    REQUIRE(nc == d->n_connect);
    REQUIRE(nd == d->n_disconnect);
}

/* Breadth-first search from any peer over neighbours(): reaches all of them? */
static int connected(const ms_topo_t *t, const uint8_t *present, size_t n_slots)
{
    size_t n = t->ops->count(t);
    if (n <= 1)
        return 1;
    uint8_t *seen = calloc(n_slots, 1);
    ms_peer_t *queue = malloc(n_slots * sizeof(*queue));
    ms_peer_t *nb = malloc(4096 * sizeof(*nb));
    REQUIRE(seen && queue && nb);
    size_t head = 0, tail = 0;
    for (ms_peer_t p = 0; p < n_slots; p++)
        if (present[p]) {
            queue[tail++] = p;
            seen[p] = 1;
            break;
        }
    while (head < tail) {
        ms_peer_t u = queue[head++];
        size_t m = t->ops->neighbours(t, u, nb, 4096);
        REQUIRE(m <= 4096);
        for (size_t i = 0; i < m; i++) {
            REQUIRE(nb[i] != u);
            REQUIRE(nb[i] < n_slots && present[nb[i]]);
            REQUIRE(t->ops->adjacent(t, u, nb[i]) && t->ops->adjacent(t, nb[i], u));
            if (!seen[nb[i]]) {
                seen[nb[i]] = 1;
                queue[tail++] = nb[i];
            }
        }
    }
    free(seen);
    free(queue);
    free(nb);
    return tail == n;
}

/* The smallest handle not in use, as the caller assigns them. */
static ms_peer_t free_handle(const uint8_t *present)
{
    ms_peer_t p = 0;
    while (present[p])
        p++;
    return p;
}

static ms_peer_t random_present(uint64_t *rs, const uint8_t *present, size_t n_slots)
{
    ms_peer_t p;
    do
        p = rnd_below(rs, (uint32_t)n_slots);
    while (!present[p]);
    return p;
}

START_TEST(spray_basics)
{
    const ms_topo_ops_t *ops = ms_topo_find("spray");
    ck_assert_ptr_eq(ops, &ms_topo_spray_ops);
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ops->create(&(ms_topo_params_t){.a = -1, .b = 2}, &t), MS_ERR_INVAL);
    ck_assert_int_eq(ops->create(&(ms_topo_params_t){.seed = 1}, &t), MS_OK);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ck_assert_int_eq(ops->join(t, 0, (ms_topo_pos_t){0}, &d), MS_OK);
    ck_assert_uint_eq(d.n_connect, 0);
    ck_assert_int_eq(ops->join(t, 1, (ms_topo_pos_t){0}, &d), MS_OK);
    ck_assert_uint_eq(d.n_connect, 1);
    ck_assert(ops->adjacent(t, 0, 1));
    ck_assert_int_eq(ops->join(t, 1, (ms_topo_pos_t){0}, &d), MS_ERR_EXISTS);
    ck_assert_int_eq(ops->leave(t, 7, &d), MS_ERR_NOTFOUND);
    ck_assert_int_eq(ops->leave(t, 0, &d), MS_OK);
    ck_assert_uint_eq(ops->count(t), 1);
    ck_assert(!ops->adjacent(t, 0, 1));
    ms_spray_stats_t st;
    ms_spray_stats(t, &st);
    ck_assert_uint_eq(st.arcs, 0);
    json_t *obj = json_object();
    ck_assert_int_eq(ops->write_json(t, obj), MS_OK);
    ck_assert_ptr_nonnull(json_object_get(obj, "view_target"));
    json_decref(obj);
    ms_topo_diff_cleanup(&d);
    ops->destroy(t);
}
END_TEST

/* Small overlay, every operation checked: diff = edge-set difference, connected. */
START_TEST(spray_diffs_and_connectivity)
{
    enum { SLOTS = 1024 };
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ms_topo_spray_ops.create(&(ms_topo_params_t){.seed = 42 + (uint64_t)_i}, &t),
                     MS_OK);
    uint8_t *present = calloc(SLOTS, 1);
    eset_t a = {0}, b = {0};
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t rs = 99 + (uint64_t)_i;
    size_t n = 0;
    eset_take(t, &a);
    for (int i = 0; i < 3000; i++) {
        uint32_t r = rnd_below(&rs, 100);
        ms_topo_diff_clear(&d);
        if (r < 5) {
            ck_assert_int_eq(ms_topo_spray_ops.tick(t, (uint64_t)i * 1000, &d), MS_OK);
        } else if (n < 2 || (n < 600 && r < 55) || (n >= 600 && r < 50)) {
            ms_peer_t p = free_handle(present);
            REQUIRE(ms_topo_spray_ops.join(t, p, (ms_topo_pos_t){0}, &d) == MS_OK);
            present[p] = 1;
            n++;
        } else {
            ms_peer_t p = random_present(&rs, present, SLOTS);
            REQUIRE(ms_topo_spray_ops.leave(t, p, &d) == MS_OK);
            present[p] = 0;
            n--;
        }
        eset_take(t, &b);
        check_diff(&a, &b, &d);
        REQUIRE(ms_topo_spray_ops.count(t) == n);
        if (i % 10 == 0)
            REQUIRE(connected(t, present, SLOTS));
        eset_t tmp = a;
        a = b;
        b = tmp;
    }
    REQUIRE(connected(t, present, SLOTS));
    free(a.e);
    free(b.e);
    free(present);
    ms_topo_diff_cleanup(&d);
    ms_topo_spray_ops.destroy(t);
}
END_TEST

/* 10,000 peers, 30% of them replaced over ROUNDS shuffle rounds. After every
 * round (churn, then one tick) we assert:
 *   - the overlay is connected (BFS from one peer reaches all);
 *   - the mean view size is within +-15% of a*ln N + b;
 *   - at least 90% of peers have a view size within +-50% of a*ln N + b;
 *   - the mean |in-degree - out-degree| is at most half of a*ln N + b;
 *   - the tick's diff equals the edge-set difference. */
START_TEST(spray_10k_churn)
{
    enum { N0 = 10000, SLOTS = 16384 };
    const int rounds = 30;                                     /* about 15 s under ASan */
    const uint32_t per_round = (uint32_t)(N0 * 0.30 / rounds); /* leaves, and as many joins */
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ms_topo_spray_ops.create(&(ms_topo_params_t){.a = 1, .b = 5, .seed = 7}, &t),
                     MS_OK);
    uint8_t *present = calloc(SLOTS, 1);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    eset_t a = {0}, b = {0};
    uint64_t rs = 12345;
    for (ms_peer_t p = 0; p < N0; p++) {
        ms_topo_diff_clear(&d);
        REQUIRE(ms_topo_spray_ops.join(t, p, (ms_topo_pos_t){0}, &d) == MS_OK);
        present[p] = 1;
    }
    /* Let the joins settle: two rounds of shuffles before the churn starts. */
    for (int i = 0; i < 2; i++) {
        ms_topo_diff_clear(&d);
        REQUIRE(ms_topo_spray_ops.tick(t, 0, &d) == MS_OK);
    }
    double worst_mean = 0, worst_gap = 0, worst_out = 0;
    for (int r = 0; r < rounds; r++) {
        for (uint32_t i = 0; i < per_round; i++) {
            ms_topo_diff_clear(&d);
            ms_peer_t p = random_present(&rs, present, SLOTS);
            REQUIRE(ms_topo_spray_ops.leave(t, p, &d) == MS_OK);
            present[p] = 0;
        }
        for (uint32_t i = 0; i < per_round; i++) {
            ms_topo_diff_clear(&d);
            ms_peer_t p = free_handle(present);
            REQUIRE(ms_topo_spray_ops.join(t, p, (ms_topo_pos_t){0}, &d) == MS_OK);
            present[p] = 1;
        }
        eset_take(t, &a);
        ms_topo_diff_clear(&d);
        REQUIRE(ms_topo_spray_ops.tick(t, (uint64_t)r * 1000, &d) == MS_OK);
        eset_take(t, &b);
        check_diff(&a, &b, &d);
        REQUIRE(connected(t, present, SLOTS));
        ms_spray_stats_t st;
        ms_spray_stats(t, &st);
        REQUIRE(st.count == N0);
        size_t out = 0;
        for (ms_peer_t p = 0; p < SLOTS; p++) {
            if (!present[p])
                continue;
            double v = ms_spray_view_size(t, p);
            if (v < 0.5 * st.target || v > 1.5 * st.target)
                out++;
        }
        double mean_dev = fabs(st.view_mean - st.target) / st.target;
        double out_frac = (double)out / (double)N0;
        double gap = st.mean_abs_in_out / st.target;
        if (mean_dev > worst_mean)
            worst_mean = mean_dev;
        if (out_frac > worst_out)
            worst_out = out_frac;
        if (gap > worst_gap)
            worst_gap = gap;
        if (r == rounds - 1 || r % 5 == 0)
            printf("spray 10k round %d: target %.2f view mean %.2f min %u max %u, outside +-50%%: "
                   "%.2f%%, mean |in-out| %.2f, edges %llu, repair arcs %llu\n",
                   r, st.target, st.view_mean, st.view_min, st.view_max, 100 * out_frac,
                   st.mean_abs_in_out, (unsigned long long)st.edges,
                   (unsigned long long)st.repair_arcs);
        REQUIRE(mean_dev <= 0.15);
        REQUIRE(out_frac <= 0.10);
        REQUIRE(gap <= 0.5);
    }
    printf("spray 10k worst over %d rounds: |mean-target|/target %.3f, outside +-50%% %.2f%%, "
           "mean|in-out|/target %.3f\n",
           rounds, worst_mean, 100 * worst_out, worst_gap);
    free(a.e);
    free(b.e);
    free(present);
    ms_topo_diff_cleanup(&d);
    ms_topo_spray_ops.destroy(t);
}
END_TEST

/* Same seed, same calls: same overlay. */
START_TEST(spray_deterministic)
{
    eset_t e[2] = {{0}, {0}};
    for (int k = 0; k < 2; k++) {
        ms_topo_t *t = NULL;
        ck_assert_int_eq(ms_topo_spray_ops.create(&(ms_topo_params_t){.seed = 5}, &t), MS_OK);
        ms_topo_diff_t d;
        ms_topo_diff_init(&d);
        for (ms_peer_t p = 0; p < 300; p++)
            ck_assert_int_eq(ms_topo_spray_ops.join(t, p, (ms_topo_pos_t){0}, &d), MS_OK);
        for (ms_peer_t p = 0; p < 300; p += 3)
            ck_assert_int_eq(ms_topo_spray_ops.leave(t, p, &d), MS_OK);
        ck_assert_int_eq(ms_topo_spray_ops.tick(t, 0, &d), MS_OK);
        eset_take(t, &e[k]);
        ms_topo_diff_cleanup(&d);
        ms_topo_spray_ops.destroy(t);
    }
    ck_assert_uint_eq(e[0].n, e[1].n);
    for (size_t i = 0; i < e[0].n; i++)
        REQUIRE(ms_edge_cmp(&e[0].e[i], &e[1].e[i]) == 0);
    free(e[0].e);
    free(e[1].e);
}
END_TEST

START_TEST(spray_restore)
{
    enum { N = 400 };
    ms_topo_t *t = NULL, *t2 = NULL;
    ck_assert_int_eq(ms_topo_spray_ops.create(&(ms_topo_params_t){.seed = 3}, &t), MS_OK);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    for (ms_peer_t p = 0; p < N; p++)
        ck_assert_int_eq(ms_topo_spray_ops.join(t, p, (ms_topo_pos_t){0}, &d), MS_OK);
    ck_assert_int_eq(ms_topo_spray_ops.tick(t, 0, &d), MS_OK);
    /* Reports of the intact overlay, plus one stale neighbour (handle 999). */
    ms_topo_report_t r[N];
    ms_peer_t *nb = calloc((size_t)N * 512, sizeof(*nb));
    for (ms_peer_t p = 0; p < N; p++) {
        size_t m = ms_topo_spray_ops.neighbours(t, p, nb + (size_t)p * 512, 511);
        ck_assert_uint_lt(m, 511);
        if (p == 0)
            nb[m++] = 999;
        r[p] = (ms_topo_report_t){.peer = p,
                                  .parent = MS_PEER_NONE,
                                  .neighbours = nb + (size_t)p * 512,
                                  .n_neighbours = m};
    }
    ck_assert_int_eq(ms_topo_spray_ops.create(&(ms_topo_params_t){.seed = 4}, &t2), MS_OK);
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(ms_topo_spray_ops.restore(t2, r, N, &d), MS_OK);
    ck_assert_uint_eq(d.n_connect, 0);
    ck_assert_uint_eq(d.n_disconnect, 1);
    ck_assert_uint_eq(d.disconnect[0].b, 999);
    eset_t e1 = {0}, e2 = {0};
    eset_take(t, &e1);
    eset_take(t2, &e2);
    ck_assert_uint_eq(e1.n, e2.n);
    for (size_t i = 0; i < e1.n; i++)
        REQUIRE(ms_edge_cmp(&e1.e[i], &e2.e[i]) == 0);
    /* A fragmented report (peers 0..9 report no one) is joined back together. */
    ms_topo_t *t3 = NULL;
    for (int i = 0; i < N; i++) {
        ms_peer_t *l = nb + (size_t)i * 512;
        size_t w = 0;
        for (size_t j = 0; i >= 10 && j < r[i].n_neighbours; j++)
            if (l[j] >= 10)
                l[w++] = l[j];
        r[i].n_neighbours = w;
    }
    ck_assert_int_eq(ms_topo_spray_ops.create(&(ms_topo_params_t){.seed = 4}, &t3), MS_OK);
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(ms_topo_spray_ops.restore(t3, r, N, &d), MS_OK);
    uint8_t present[N];
    memset(present, 1, sizeof(present));
    ck_assert(connected(t3, present, N));
    free(e1.e);
    free(e2.e);
    free(nb);
    ms_topo_diff_cleanup(&d);
    ms_topo_spray_ops.destroy(t);
    ms_topo_spray_ops.destroy(t2);
    ms_topo_spray_ops.destroy(t3);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("spray");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, spray_basics);
    tcase_add_loop_test(tc, spray_diffs_and_connectivity, 0, 3);
    tcase_add_test(tc, spray_deterministic);
    tcase_add_test(tc, spray_restore);
    tcase_add_test(tc, spray_10k_churn);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

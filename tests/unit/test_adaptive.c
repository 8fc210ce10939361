/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the "auto" engine: full mesh while small, the other engine when large, exact
 * diffs across switches, hysteresis, and the number of edges a switch changes. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adaptive.h"
#include "topology.h"

#define N 64

/* The edges the caller believes in, built only from diffs: m[a][b] = kind + 1. */
typedef struct {
    uint8_t m[N][N];
} mirror_t;

static void apply(mirror_t *mi, const ms_topo_diff_t *d)
{
    for (size_t i = 0; i < d->n_disconnect; i++) {
        const ms_edge_t *e = &d->disconnect[i];
        ck_assert_msg(mi->m[e->a][e->b] == e->kind + 1, "disconnect of unknown %u-%u", e->a, e->b);
        mi->m[e->a][e->b] = 0;
    }
    for (size_t i = 0; i < d->n_connect; i++) {
        const ms_edge_t *e = &d->connect[i];
        ck_assert_msg(mi->m[e->a][e->b] == 0, "connect of known %u-%u", e->a, e->b);
        mi->m[e->a][e->b] = (uint8_t)(e->kind + 1);
    }
}

static void count_edge(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    mirror_t *mi = ud;
    ck_assert_int_lt(a, N);
    ck_assert_int_lt(b, N);
    mi->m[a][b] = (uint8_t)(kind + 1);
}

static void check_mirror(const ms_topo_t *t, const mirror_t *mi)
{
    mirror_t now;
    memset(&now, 0, sizeof(now));
    t->ops->edges(t, count_edge, &now);
    ck_assert_msg(memcmp(&now, mi, sizeof(now)) == 0, "diffs do not add up to the edges");
}

static ms_topo_pos_t pos_of(ms_peer_t p)
{
    return (ms_topo_pos_t){.x = (double)((p * 37) % 101),
                           .y = (double)((p * 61) % 97),
                           .key = 0x9e3779b97f4a7c15ULL * (p + 1)};
}

static size_t edge_total(const ms_topo_t *t)
{
    mirror_t mi;
    memset(&mi, 0, sizeof(mi));
    t->ops->edges(t, count_edge, &mi);
    size_t n = 0;
    for (int a = 0; a < N; a++)
        for (int b = 0; b < N; b++)
            n += mi.m[a][b] != 0;
    return n;
}

START_TEST(switches_at_the_bounds_with_exact_diffs)
{
    const ms_topo_ops_t *ops = ms_topo_find("auto");
    ck_assert_ptr_eq(ops, &ms_topo_adaptive_ops);
    ms_topo_params_t p = {.then = &ms_topo_delaunay_ops, .up_to = 8, .hysteresis = 2};
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ops->create(&p, &t), MS_OK);
    mirror_t mi;
    memset(&mi, 0, sizeof(mi));
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ms_adaptive_stats_t st;
    for (ms_peer_t i = 0; i < 8; i++) {
        ms_topo_diff_clear(&d);
        ck_assert_int_eq(ops->join(t, i, pos_of(i), &d), MS_OK);
        apply(&mi, &d);
    }
    ms_adaptive_stats(t, &st);
    ck_assert(!st.large);
    ck_assert_uint_eq(edge_total(t), 28); /* 8 peers, every pair */
    /* The ninth peer tips it: Delaunay of 9 peers, announced as a difference. */
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(ops->join(t, 8, pos_of(8), &d), MS_OK);
    apply(&mi, &d);
    check_mirror(t, &mi);
    ms_adaptive_stats(t, &st);
    ck_assert(st.large);
    ck_assert_uint_eq(st.switches, 1);
    ck_assert_str_eq(st.inner->ops->name, "delaunay");
    /* Every Delaunay edge among the first 8 was already up: the switch only
     * disconnects (full mesh edges Delaunay lacks) and connects the newcomer. */
    size_t kept_connects = 0;
    for (size_t i = 0; i < d.n_connect; i++)
        kept_connects += d.connect[i].a != 8 && d.connect[i].b != 8;
    ck_assert_uint_eq(kept_connects, 0);
    size_t deg8 = ops->neighbours(t, 8, NULL, 0);
    ck_assert_uint_eq(d.n_connect, deg8);
    ck_assert_uint_eq(d.n_disconnect, 28 - (edge_total(t) - deg8));
    ck_assert_uint_gt(st.last_switch_edges, 0);
    /* Leaving down to 7 stays Delaunay (hysteresis), 6 goes back. */
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(ops->leave(t, 8, &d), MS_OK);
    apply(&mi, &d);
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(ops->leave(t, 7, &d), MS_OK);
    apply(&mi, &d);
    ms_adaptive_stats(t, &st);
    ck_assert(st.large);
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(ops->leave(t, 6, &d), MS_OK);
    apply(&mi, &d);
    check_mirror(t, &mi);
    ms_adaptive_stats(t, &st);
    ck_assert(!st.large);
    ck_assert_uint_eq(st.switches, 2);
    ck_assert_uint_eq(edge_total(t), 15);
    /* Back to full mesh: the only disconnects are the leaver's own edges (every
     * Delaunay edge is a full-mesh edge and stays). */
    for (size_t i = 0; i < d.n_disconnect; i++)
        ck_assert(d.disconnect[i].a == 6 || d.disconnect[i].b == 6);
    json_t *j = json_object();
    ck_assert_int_eq(ops->write_json(t, j), MS_OK);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "auto"), "mode")),
                     "fullmesh");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "auto"), "switches")),
                     2);
    json_decref(j);
    ms_topo_diff_cleanup(&d);
    ops->destroy(t);
}
END_TEST

START_TEST(bad_params)
{
    ms_topo_t *t = NULL;
    ms_topo_params_t p = {.then = NULL, .up_to = 8};
    ck_assert_int_eq(ms_topo_adaptive_ops.create(&p, &t), MS_ERR_INVAL);
    p.then = &ms_topo_adaptive_ops;
    ck_assert_int_eq(ms_topo_adaptive_ops.create(&p, &t), MS_ERR_INVAL);
    p.then = &ms_topo_tree_ops;
    p.hysteresis = 8;
    ck_assert_int_eq(ms_topo_adaptive_ops.create(&p, &t), MS_ERR_INVAL);
    p.up_to = 0;
    p.hysteresis = 0;
    ck_assert_int_eq(ms_topo_adaptive_ops.create(&p, &t), MS_ERR_INVAL);
}
END_TEST

/* Random joins, leaves and moves around the bound, for each `then` engine: the
 * diffs always add up to the edges, each switch happens exactly at its bound,
 * and switches are counted. */
START_TEST(churn_around_the_bound)
{
    static const ms_topo_ops_t *const thens[] = {&ms_topo_delaunay_ops, &ms_topo_tree_ops,
                                                 &ms_topo_spray_ops};
    const ms_topo_ops_t *then = thens[_i % 3];
    ms_topo_params_t p = {.then = then,
                          .up_to = 10,
                          .hysteresis = 3,
                          .k = 3,
                          .a = 1,
                          .b = 3,
                          .seed = 42 + (uint64_t)_i};
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ms_topo_adaptive_ops.create(&p, &t), MS_OK);
    mirror_t mi;
    memset(&mi, 0, sizeof(mi));
    uint8_t present[N] = {0};
    size_t n = 0, switches = 0, edges_changed = 0;
    uint64_t rs = 7 + (uint64_t)_i;
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    for (int op = 0; op < 1000; op++) {
        rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
        uint32_t r = (uint32_t)(rs >> 33);
        ms_topo_diff_clear(&d);
        ms_adaptive_stats_t before, after;
        ms_adaptive_stats(t, &before);
        ms_peer_t q = r % N;
        if (r % 10 == 0 && present[q]) {
            ck_assert_int_eq(ms_topo_adaptive_ops.move(t, q, pos_of(q + (ms_peer_t)op), &d), MS_OK);
        } else if ((r % 100 < 52 || n < 3) && n < 20) {
            while (present[q])
                q = (q + 1) % N;
            ck_assert_int_eq(ms_topo_adaptive_ops.join(t, q, pos_of(q), &d), MS_OK);
            present[q] = 1;
            n++;
        } else {
            while (!present[q])
                q = (q + 1) % N;
            ck_assert_int_eq(ms_topo_adaptive_ops.leave(t, q, &d), MS_OK);
            present[q] = 0;
            n--;
        }
        apply(&mi, &d);
        check_mirror(t, &mi);
        ck_assert_uint_eq(ms_topo_adaptive_ops.count(t), n);
        ms_adaptive_stats(t, &after);
        if (after.switches != before.switches) {
            switches++;
            edges_changed += after.last_switch_edges;
            /* Exactly at the bounds: up past 10, down at 7. */
            ck_assert_uint_eq(n, after.large ? 11 : 7);
        } else {
            ck_assert_int_eq(after.large, before.large);
            ck_assert(after.large ? n > 7 : n <= 10);
        }
    }
    printf("auto then=%s: %zu switches, %.1f edges changed per switch\n", then->name, switches,
           switches ? (double)edges_changed / (double)switches : 0.0);
    ck_assert_uint_gt(switches, 2);
    ms_topo_diff_cleanup(&d);
    ms_topo_adaptive_ops.destroy(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("adaptive");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, switches_at_the_bounds_with_exact_diffs);
    tcase_add_test(tc, bad_params);
    tcase_add_loop_test(tc, churn_around_the_bound, 0, 6);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

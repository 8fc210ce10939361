/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for the engine interface helpers and the full-mesh engine. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "topology.h"
#include "tree.h"

START_TEST(diff_normalize_cancels_and_dedups)
{
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ck_assert_int_eq(ms_topo_diff_connect(&d, 5, 2, MS_EDGE_PEER), MS_OK);
    ck_assert_int_eq(ms_topo_diff_connect(&d, 2, 5, MS_EDGE_PEER), MS_OK);
    ck_assert_int_eq(ms_topo_diff_connect(&d, 1, 3, MS_EDGE_PEER), MS_OK);
    ck_assert_int_eq(ms_topo_diff_disconnect(&d, 3, 1, MS_EDGE_PEER), MS_OK);
    ck_assert_int_eq(ms_topo_diff_disconnect(&d, 7, 4, MS_EDGE_TREE), MS_OK);
    ms_topo_diff_normalize(&d);
    ck_assert_uint_eq(d.n_connect, 1);
    ck_assert_uint_eq(d.connect[0].a, 2);
    ck_assert_uint_eq(d.connect[0].b, 5);
    ck_assert_uint_eq(d.n_disconnect, 1);
    /* tree edges keep their direction: parent first */
    ck_assert_uint_eq(d.disconnect[0].a, 7);
    ck_assert_uint_eq(d.disconnect[0].b, 4);
    ms_topo_diff_cleanup(&d);
}
END_TEST

START_TEST(fullmesh_join_leave_cap)
{
    const ms_topo_ops_t *ops = ms_topo_find("fullmesh");
    ck_assert_ptr_nonnull(ops);
    ck_assert_ptr_null(ms_topo_find("nope"));
    ms_topo_params_t params = {.cap = 3};
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ops->create(&params, &t), MS_OK);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ms_topo_pos_t pos = {0, 0, 0};
    for (ms_peer_t p = 0; p < 3; p++) {
        ms_topo_diff_clear(&d);
        ck_assert_int_eq(ops->join(t, p, pos, &d), MS_OK);
        ck_assert_uint_eq(d.n_connect, p); /* one edge to each earlier peer */
    }
    ck_assert_int_eq(ops->join(t, 1, pos, &d), MS_ERR_EXISTS);
    ck_assert_int_eq(ops->join(t, 3, pos, &d), MS_ERR_FULL);
    ck_assert(ops->adjacent(t, 0, 2));
    ms_peer_t nb[8];
    ck_assert_uint_eq(ops->neighbours(t, 1, nb, 8), 2);
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(ops->leave(t, 1, &d), MS_OK);
    ck_assert_uint_eq(d.n_disconnect, 2);
    ck_assert(!ops->adjacent(t, 0, 1));
    ck_assert_uint_eq(ops->count(t), 2);
    ck_assert_int_eq(ops->leave(t, 1, &d), MS_ERR_NOTFOUND);
    ms_topo_diff_cleanup(&d);
    ops->destroy(t);
}
END_TEST

static void count_edge(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    (void)a;
    (void)b;
    (void)kind;
    (*(size_t *)ud)++;
}

/* Handles below a dozen are kept inside the engine and larger ones in an array: peers joined
 * on both sides of that line, and the move between them, keep every edge. */
START_TEST(fullmesh_small_and_large_handles)
{
    const ms_topo_ops_t *ops = ms_topo_find("fullmesh");
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ops->create(&(ms_topo_params_t){0}, &t), MS_OK);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ms_topo_pos_t pos = {0, 0, 0};
    const ms_peer_t hs[] = {0, 5, 11, 12, 40, 1000, 3};
    const size_t n = sizeof(hs) / sizeof(hs[0]);
    for (size_t i = 0; i < n; i++) {
        ms_topo_diff_clear(&d);
        ck_assert_int_eq(ops->join(t, hs[i], pos, &d), MS_OK);
        ck_assert_uint_eq(d.n_connect, i); /* one edge to each earlier peer, whatever its handle */
    }
    ck_assert_uint_eq(ops->count(t), n);
    size_t edges = 0;
    ops->edges(t, count_edge, &edges);
    ck_assert_uint_eq(edges, n * (n - 1) / 2);
    ms_peer_t nb[16];
    ck_assert_uint_eq(ops->neighbours(t, 1000, nb, 16), n - 1);
    ck_assert(ops->adjacent(t, 5, 1000) && ops->adjacent(t, 3, 11) && !ops->adjacent(t, 4, 5));
    ms_topo_diff_clear(&d);
    ck_assert_int_eq(ops->leave(t, 11, &d), MS_OK);
    ck_assert_uint_eq(d.n_disconnect, n - 1);
    ck_assert_int_eq(ops->join(t, 5, pos, &d), MS_ERR_EXISTS);
    ck_assert_int_eq(ops->leave(t, 11, &d), MS_ERR_NOTFOUND);
    ms_topo_diff_cleanup(&d);
    ops->destroy(t);
}
END_TEST

START_TEST(none_has_members_and_no_edges)
{
    const ms_topo_ops_t *ops = ms_topo_find("none");
    ck_assert_ptr_nonnull(ops);
    ms_topo_params_t params = {0};
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ops->create(&params, &t), MS_OK);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ms_topo_pos_t pos = {0, 0, 0};
    for (ms_peer_t p = 0; p < 5; p++) {
        ms_topo_diff_clear(&d);
        ck_assert_int_eq(ops->join(t, p, pos, &d), MS_OK);
        ck_assert_uint_eq(d.n_connect + d.n_disconnect, 0);
    }
    ck_assert_uint_eq(ops->count(t), 5);
    ck_assert(!ops->adjacent(t, 0, 1));
    ms_peer_t nb[4];
    ck_assert_uint_eq(ops->neighbours(t, 2, nb, 4), 0);
    ck_assert_int_eq(ops->leave(t, 2, &d), MS_OK);
    ck_assert_uint_eq(d.n_connect + d.n_disconnect, 0);
    ck_assert_uint_eq(ops->count(t), 4);
    ms_topo_diff_cleanup(&d);
    ops->destroy(t);
}
END_TEST

START_TEST(generic_restore_diffs_against_reports)
{
    const ms_topo_ops_t *ops = ms_topo_find("fullmesh");
    ms_topo_t *t = NULL;
    ck_assert_int_eq(ops->create(&(ms_topo_params_t){0}, &t), MS_OK);
    /* Peers 0,1,2 in a full mesh; 0 reports 1 only, 1 reports 0 and a stale 9. */
    ms_peer_t n0[] = {1}, n1[] = {0, 9}, n2[] = {0, 1};
    ms_topo_report_t r[] = {
        {.peer = 0, .parent = MS_PEER_NONE, .neighbours = n0, .n_neighbours = 1},
        {.peer = 1, .parent = MS_PEER_NONE, .neighbours = n1, .n_neighbours = 2},
        {.peer = 2, .parent = MS_PEER_NONE, .neighbours = n2, .n_neighbours = 2},
    };
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ck_assert_int_eq(ms_topo_restore_generic(t, r, 3, &d), MS_OK);
    ck_assert_uint_eq(d.n_connect, 0);
    ck_assert_uint_eq(d.n_disconnect, 1);
    ck_assert_uint_eq(d.disconnect[0].a, 1);
    ck_assert_uint_eq(d.disconnect[0].b, 9);
    ms_topo_diff_cleanup(&d);
    ops->destroy(t);
}
END_TEST

/* ---- ms_topo_edges_of against a filter over ops->edges ---- */

typedef struct {
    ms_peer_t who;
    ms_topo_diff_t *d;
} filter_t;

static void filter_edge(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud)
{
    filter_t *f = ud;
    if (a == f->who || b == f->who)
        ck_assert_int_eq(ms_topo_diff_connect(f->d, a, b, kind), MS_OK);
}

static int edge_cmp(const void *x, const void *y)
{
    const ms_edge_t *a = x, *b = y;
    if (a->a != b->a)
        return a->a < b->a ? -1 : 1;
    if (a->b != b->b)
        return a->b < b->b ? -1 : 1;
    return (int)a->kind - (int)b->kind;
}

/* Each engine, grown to 300 peers with some leaving on the way: for every peer, the edges
 * ms_topo_edges_of finds are those of the walk, each with the same ends and kind; in the
 * same order for the engines whose walk order it follows (the full mesh, a tree, spray, and
 * auto over the first two). */
START_TEST(edges_of_matches_the_walk)
{
    static const struct {
        const char *name;
        ms_topo_params_t params;
        int same_order;
    } engines[] = {
        {"fullmesh", {0}, 1},
        {"tree", {.k = 3}, 1},
        {"tree", {.k = 4, .k1 = 6, .source = MS_TREE_SOURCE}, 1},
        {"spray", {.seed = 3}, 1},
        {"delaunay", {.seed = 4}, 0},
        {"delaunay", {.seed = 5, .geo = 1}, 0},
        {"auto", {.up_to = 8, .hysteresis = 2}, 0}, /* then: set below */
        {"none", {0}, 1},
    };
    for (size_t k = 0; k < sizeof(engines) / sizeof(engines[0]); k++) {
        ms_topo_params_t params = engines[k].params;
        int same_order = engines[k].same_order;
        if (!strcmp(engines[k].name, "auto")) {
            params.then = ms_topo_find("tree");
            same_order = 1; /* a full mesh, then a tree */
        }
        ms_topo_t *t = NULL;
        ck_assert_int_eq(ms_topo_create(engines[k].name, &params, &t), MS_OK);
        ms_topo_diff_t d, mine, walk;
        ms_topo_diff_init(&d);
        ms_topo_diff_init(&mine);
        ms_topo_diff_init(&walk);
        uint8_t present[400] = {0};
        uint64_t rs = 0x1234567u + k;
        ms_peer_t first = params.source ? 1 : 0;
        for (int step = 0; step < 500; step++) {
            rs = rs * 6364136223846793005ull + 1442695040888963407ull;
            ms_peer_t p = first + (ms_peer_t)((rs >> 33) % (400 - first));
            ms_topo_pos_t pos = {.x = (double)((rs >> 11) % 1000) / 10 - 50,
                                 .y = (double)((rs >> 21) % 1000) / 20 - 25,
                                 .key = rs};
            ms_topo_diff_clear(&d);
            if (!present[p] || step % 5) {
                if (!present[p] && t->ops->join(t, p, pos, &d) == MS_OK)
                    present[p] = 1;
            } else if (t->ops->leave(t, p, &d) == MS_OK) {
                present[p] = 0;
            }
            if (step % 50 != 49)
                continue;
            for (ms_peer_t q = 0; q < 400; q++) {
                if (!present[q])
                    continue;
                ms_topo_diff_clear(&mine);
                ms_topo_diff_clear(&walk);
                ck_assert_int_eq(ms_topo_edges_of(t, q, &mine), MS_OK);
                filter_t f = {.who = q, .d = &walk};
                t->ops->edges(t, filter_edge, &f);
                ck_assert_uint_eq(mine.n_connect, walk.n_connect);
                if (!same_order) {
                    qsort(mine.connect, mine.n_connect, sizeof(ms_edge_t), edge_cmp);
                    qsort(walk.connect, walk.n_connect, sizeof(ms_edge_t), edge_cmp);
                }
                for (size_t i = 0; i < mine.n_connect; i++)
                    if (edge_cmp(&mine.connect[i], &walk.connect[i]))
                        ck_abort_msg("%s: peer %u, edge %zu: %u-%u/%u, the walk %u-%u/%u",
                                     engines[k].name, q, i, mine.connect[i].a, mine.connect[i].b,
                                     mine.connect[i].kind, walk.connect[i].a, walk.connect[i].b,
                                     walk.connect[i].kind);
            }
        }
        ms_topo_diff_cleanup(&d);
        ms_topo_diff_cleanup(&mine);
        ms_topo_diff_cleanup(&walk);
        t->ops->destroy(t);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("topology");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, diff_normalize_cancels_and_dedups);
    tcase_add_test(tc, fullmesh_join_leave_cap);
    tcase_add_test(tc, fullmesh_small_and_large_handles);
    tcase_add_test(tc, none_has_members_and_no_edges);
    tcase_add_test(tc, generic_restore_diffs_against_reports);
    tcase_add_test(tc, edges_of_matches_the_walk);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

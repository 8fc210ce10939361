/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests for deterministic peer positions and Vivaldi network coordinates. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "delaunay.h"
#include "position.h"
#include "vivaldi.h"

START_TEST(position_is_deterministic_and_uniform)
{
    ms_topo_pos_t a = ms_position_random("ns", "peer-1"), b = ms_position_random("ns", "peer-1");
    ck_assert(a.x == b.x && a.y == b.y && a.key == b.key);
    ck_assert_uint_eq(a.key, ms_position_key("ns", "peer-1"));
    ms_topo_pos_t c = ms_position_random("ns", "peer-2"), d = ms_position_random("ns2", "peer-1");
    ck_assert(c.x != a.x && c.key != a.key && d.x != a.x && d.key != a.key);
    /* the separator keeps "ab"+"c" apart from "a"+"bc" */
    ck_assert_uint_ne(ms_position_key("ab", "c"), ms_position_key("a", "bc"));
    /* in range, and spread evenly over the quadrants */
    int quad[4] = {0};
    double sx = 0;
    char id[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(id, sizeof(id), "peer-%d", i);
        ms_topo_pos_t p = ms_position_random("room", id);
        ck_assert(p.x >= -MS_DELAUNAY_RANGE && p.x < MS_DELAUNAY_RANGE);
        ck_assert(p.y >= -MS_DELAUNAY_RANGE && p.y < MS_DELAUNAY_RANGE);
        quad[(p.x >= 0) + 2 * (p.y >= 0)]++;
        sx += p.x;
    }
    for (int q = 0; q < 4; q++)
        ck_assert_msg(quad[q] > 4700 && quad[q] < 5300, "quadrant %d: %d", q, quad[q]);
    ck_assert(fabs(sx / 20000) < 0.02 * MS_DELAUNAY_RANGE);
}
END_TEST

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define NODES 50

static double median_rel_error(const ms_vivaldi_t *c, double (*w)[2])
{
    static double e[NODES * NODES];
    size_t n = 0;
    for (int i = 0; i < NODES; i++)
        for (int j = i + 1; j < NODES; j++) {
            double real = hypot(w[i][0] - w[j][0], w[i][1] - w[j][1]);
            e[n++] = fabs(ms_vivaldi_distance(&c[i], &c[j]) - real) / real;
        }
    for (size_t i = 1; i < n; i++)
        for (size_t k = i; k > 0 && e[k] < e[k - 1]; k--) {
            double t = e[k];
            e[k] = e[k - 1];
            e[k - 1] = t;
        }
    return e[n / 2];
}

START_TEST(vivaldi_converges_on_a_plane)
{
    /* 50 nodes in a 300 ms x 300 ms world, RTT = distance (at least 1 ms) */
    double w[NODES][2];
    ms_vivaldi_t c[NODES];
    uint64_t s = 4242;
    for (int i = 0; i < NODES; i++) {
        w[i][0] = (double)(rnd(&s) % 300000) / 1000.0;
        w[i][1] = (double)(rnd(&s) % 300000) / 1000.0;
        ms_vivaldi_init(&c[i], rnd(&s));
    }
    double start = median_rel_error(c, w);
    double err_avg0 = 0, err_avg = 0;
    for (int i = 0; i < NODES; i++)
        err_avg0 += c[i].err / NODES;
    /* each round every node measures one random other node */
    for (int round = 0; round < 300; round++)
        for (int i = 0; i < NODES; i++) {
            int j = (int)(rnd(&s) % (NODES - 1));
            j += j >= i;
            double rtt = hypot(w[i][0] - w[j][0], w[i][1] - w[j][1]);
            ck_assert_int_eq(ms_vivaldi_update(&c[i], &c[j], rtt < 1 ? 1 : rtt), MS_OK);
        }
    double end = median_rel_error(c, w);
    for (int i = 0; i < NODES; i++)
        err_avg += c[i].err / NODES;
    ck_assert_msg(end < 0.05, "median relative error %.3f (from %.3f)", end, start);
    ck_assert(err_avg < err_avg0 / 5);
    ck_assert_int_eq(ms_vivaldi_update(&c[0], &c[1], 0), MS_ERR_INVAL);
    ck_assert_int_eq(ms_vivaldi_update(&c[0], &c[1], NAN), MS_ERR_INVAL);
}
END_TEST

START_TEST(vivaldi_coincident_and_drift)
{
    ms_vivaldi_t a, b;
    ms_vivaldi_init(&a, 1);
    ms_vivaldi_init(&b, 2);
    ms_vivaldi_mark_placed(&a);
    ck_assert(!ms_vivaldi_drifted(&a, 1.0));
    /* both at the origin: the update still pushes a away */
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(ms_vivaldi_update(&a, &b, 100), MS_OK);
        ck_assert_int_eq(ms_vivaldi_update(&b, &a, 100), MS_OK);
    }
    ck_assert(fabs(ms_vivaldi_distance(&a, &b) - 100) < 20);
    ck_assert(ms_vivaldi_drifted(&a, 10.0));
    ck_assert(!ms_vivaldi_drifted(&a, 1000.0));
    ms_vivaldi_mark_placed(&a);
    ck_assert(!ms_vivaldi_drifted(&a, 0.001));
    ms_topo_pos_t p = ms_vivaldi_position(&a, 77);
    ck_assert(p.x == a.x && p.y == a.y && p.key == 77);
    ck_assert(a.h >= MS_VIVALDI_MIN_HEIGHT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("position");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, position_is_deterministic_and_uniform);
    tcase_add_test(tc, vivaldi_converges_on_a_plane);
    tcase_add_test(tc, vivaldi_coincident_and_drift);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

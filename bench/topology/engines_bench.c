/* SPDX-License-Identifier: Apache-2.0 */
/* Per-operation cost of the tree, spray and full-mesh engines (amortised ns per join, leave, tick).
 *
 * For each engine and size N: build by N joins (handles 0..N-1, timed as
 * "build join"), then C churn steps at steady size (a random peer leaves and a
 * new one joins with the freed handle; leaves and joins timed separately),
 * then for spray T ticks (one shuffle round of all N peers each). Diffs are
 * cleared between calls, as the coordinator does. Each case runs 3 times with
 * different seeds; we print the median and the min..max spread.
 *
 * Usage: bench_engines [engine ...]   (default: tree spray fullmesh)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topology.h"

#define REPS 3

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static void die(const char *what, ms_err_t err)
{
    fprintf(stderr, "bench_engines: %s failed (%d)\n", what, (int)err);
    exit(1);
}

typedef struct {
    double build_join, join, leave, tick, tick_per_peer;
} result_t;

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static void run_once(const ms_topo_ops_t *ops, uint32_t n, uint32_t churn, uint32_t ticks,
                     uint64_t seed, result_t *r)
{
    ms_topo_params_t params = {.seed = seed};
    ms_topo_t *t = NULL;
    ms_err_t err = ops->create(&params, &t);
    if (err != MS_OK)
        die("create", err);
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    ms_topo_pos_t pos = {0};
    double t0 = now_ns();
    for (uint32_t p = 0; p < n; p++) {
        ms_topo_diff_clear(&d);
        if ((err = ops->join(t, p, pos, &d)) != MS_OK)
            die("join", err);
    }
    r->build_join = (now_ns() - t0) / n;
    uint64_t rs = seed * 7919 + 1;
    double tl = 0, tj = 0;
    for (uint32_t i = 0; i < churn; i++) {
        ms_peer_t p = (ms_peer_t)(rnd(&rs) % n);
        ms_topo_diff_clear(&d);
        double a = now_ns();
        if ((err = ops->leave(t, p, &d)) != MS_OK)
            die("leave", err);
        double b = now_ns();
        ms_topo_diff_clear(&d);
        if ((err = ops->join(t, p, pos, &d)) != MS_OK)
            die("join", err);
        double c = now_ns();
        tl += b - a;
        tj += c - b;
    }
    r->leave = churn ? tl / churn : 0;
    r->join = churn ? tj / churn : 0;
    r->tick = r->tick_per_peer = 0;
    if (ops->tick && ticks) {
        double a = now_ns();
        for (uint32_t i = 0; i < ticks; i++) {
            ms_topo_diff_clear(&d);
            if ((err = ops->tick(t, (uint64_t)i * 1000, &d)) != MS_OK)
                die("tick", err);
        }
        r->tick = (now_ns() - a) / ticks;
        r->tick_per_peer = r->tick / n;
    }
    ms_topo_diff_cleanup(&d);
    ops->destroy(t);
}

static void report(const char *what, double *v)
{
    qsort(v, REPS, sizeof(*v), cmp_double);
    if (v[REPS - 1] >= 1e6)
        printf(" | %s %.2f ms [%.2f..%.2f]", what, v[REPS / 2] / 1e6, v[0] / 1e6,
               v[REPS - 1] / 1e6);
    else
        printf(" | %s %.0f ns [%.0f..%.0f]", what, v[REPS / 2], v[0], v[REPS - 1]);
}

static void bench(const char *name, uint32_t n)
{
    const ms_topo_ops_t *ops = ms_topo_find(name);
    if (!ops) {
        fprintf(stderr, "bench_engines: no engine %s\n", name);
        exit(1);
    }
    uint32_t churn = n < 10000 ? n : 10000;
    /* A full-mesh join or leave emits N-1 edges: fewer steps keep it short. */
    if (strcmp(name, "fullmesh") == 0)
        churn = n < 2000 ? n : 2000;
    uint32_t ticks = n <= 10000 ? 10 : 3;
    result_t r[REPS];
    for (int i = 0; i < REPS; i++)
        run_once(ops, n, churn, ticks, 1000 + (uint64_t)i, &r[i]);
    double v[REPS];
    printf("%-8s N=%-6u", name, n);
    for (int i = 0; i < REPS; i++)
        v[i] = r[i].build_join;
    report("build join", v);
    for (int i = 0; i < REPS; i++)
        v[i] = r[i].join;
    report("join", v);
    for (int i = 0; i < REPS; i++)
        v[i] = r[i].leave;
    report("leave", v);
    if (ops->tick) {
        for (int i = 0; i < REPS; i++)
            v[i] = r[i].tick;
        report("tick", v);
        for (int i = 0; i < REPS; i++)
            v[i] = r[i].tick_per_peer;
        report("tick/peer", v);
    }
    printf("  (churn steps %u%s)\n", churn, ops->tick ? ", ticks 10 (3 at 100k)" : "");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    static const char *def[] = {"tree", "spray", "fullmesh"};
    const char **names = argc > 1 ? (const char **)(argv + 1) : def;
    int nn = argc > 1 ? argc - 1 : 3;
    for (int i = 0; i < nn; i++) {
        /* Full mesh: N(N-1)/2 edges; at 100k that is 5e9 edges (and WebRTC
         * connections), so it stops at 10k. */
        int mesh = strcmp(names[i], "fullmesh") == 0;
        bench(names[i], mesh ? 1000 : 10000);
        bench(names[i], mesh ? 10000 : 100000);
    }
    return 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Benchmark of the Delaunay engine: per-join and per-leave cost against a full recomputation.
 *
 * For each size N: build N uniform random peers into an empty engine (the cost of
 * recomputing the whole triangulation, which socket.io-p2pmesh pays on every
 * join and leave: a lower bound on its per-operation cost, since our build is
 * incremental and exact), then remove a random 10% (timed: per leave) and join
 * them again at new random positions (timed: per join). Memory per peer is the
 * heap growth (mallinfo2) over the build, divided by N.
 *
 *   bench_delaunay [--quick] [--reps R] [--seed S]
 */

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "delaunay.h"
#include "topology.h"

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static ms_topo_pos_t randpos(uint64_t *s)
{
    ms_topo_pos_t p;
    p.x = ((double)(rnd(s) >> 11) / 9007199254740992.0) * 2e6 - 1e6;
    p.y = ((double)(rnd(s) >> 11) / 9007199254740992.0) * 2e6 - 1e6;
    p.key = rnd(s);
    return p;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

typedef struct {
    double build_ns;  /* whole build, N joins from empty */
    double join_ns;   /* per join at size ~N */
    double leave_ns;  /* per leave at size ~N */
    double bytes_per; /* heap growth / N */
    double engine_per;
    double mean_deg;
} run_t;

static int run_one(size_t n, uint64_t seed, run_t *out)
{
    const ms_topo_ops_t *ops = ms_topo_find("delaunay");
    ms_topo_t *t = NULL;
    ms_topo_diff_t d;
    ms_topo_diff_init(&d);
    uint64_t s = seed;
    ms_topo_pos_t *pos = malloc(n * sizeof(*pos));
    uint32_t *victims = malloc((n / 10 + 1) * sizeof(*victims));
    uint8_t *gone = calloc(n, 1);
    if (!pos || !victims || !gone)
        return -1;
    for (size_t i = 0; i < n; i++)
        pos[i] = randpos(&s);
    malloc_trim(0);
    struct mallinfo2 mi0 = mallinfo2();
    size_t heap0 = mi0.uordblks + mi0.hblkhd; /* small blocks plus mmap-ed large ones */
    if (ops->create(&(ms_topo_params_t){.seed = seed}, &t) != MS_OK)
        return -1;
    double t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        ms_topo_diff_clear(&d);
        if (ops->join(t, (ms_peer_t)i, pos[i], &d) != MS_OK)
            return -1;
    }
    double t1 = now_ns();
    struct mallinfo2 mi1 = mallinfo2();
    size_t heap1 = mi1.uordblks + mi1.hblkhd;
    size_t nv = n / 10;
    for (size_t k = 0; k < nv;) {
        uint32_t p = (uint32_t)(rnd(&s) % n);
        if (!gone[p]) {
            gone[p] = 1;
            victims[k++] = p;
        }
    }
    double t2 = now_ns();
    for (size_t k = 0; k < nv; k++) {
        ms_topo_diff_clear(&d);
        if (ops->leave(t, victims[k], &d) != MS_OK)
            return -1;
    }
    double t3 = now_ns();
    for (size_t k = 0; k < nv; k++)
        pos[victims[k]] = randpos(&s);
    double t4 = now_ns();
    for (size_t k = 0; k < nv; k++) {
        ms_topo_diff_clear(&d);
        if (ops->join(t, victims[k], pos[victims[k]], &d) != MS_OK)
            return -1;
    }
    double t5 = now_ns();
    json_t *j = json_object();
    ops->write_json(t, j);
    out->mean_deg = json_real_value(json_object_get(j, "mean_degree"));
    json_decref(j);
    out->build_ns = t1 - t0;
    out->leave_ns = (t3 - t2) / (double)nv;
    out->join_ns = (t5 - t4) / (double)nv;
    out->bytes_per = (double)(heap1 - heap0) / (double)n;
    out->engine_per = (double)ms_delaunay_bytes(t) / (double)n;
    ops->destroy(t);
    ms_topo_diff_cleanup(&d);
    free(pos);
    free(victims);
    free(gone);
    return 0;
}

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median, min, max of v[0..n) (sorts v) */
static void stats(double *v, int n, double *med, double *lo, double *hi)
{
    qsort(v, (size_t)n, sizeof(*v), dcmp);
    *med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    *lo = v[0];
    *hi = v[n - 1];
}

int main(int argc, char **argv)
{
    int quick = 0, reps = 3;
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
            seed = strtoull(argv[++i], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--quick] [--reps R] [--seed S]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1 || reps > 100)
        reps = 3;
    size_t sizes[] = {1000, 10000, 100000, 1000000};
    int nsizes = quick ? 3 : 4;
    printf("# delaunay engine, %d repetitions per size; median [min - max]\n", reps);
    printf("| N | join ns/op | leave ns/op | full recomputation ms | recompute / join | "
           "recompute / leave | heap B/peer | engine B/peer | mean degree |\n");
    printf("|---|---|---|---|---|---|---|---|---|\n");
    for (int si = 0; si < nsizes; si++) {
        size_t n = sizes[si];
        double join[100], leave[100], build[100], rj[100], rl[100], mem[100], emem[100];
        double deg = 0;
        for (int r = 0; r < reps; r++) {
            run_t x;
            if (run_one(n, seed + (uint64_t)r * 7919, &x) != 0) {
                fprintf(stderr, "run failed at N=%zu\n", n);
                return 1;
            }
            join[r] = x.join_ns;
            leave[r] = x.leave_ns;
            build[r] = x.build_ns / 1e6;
            rj[r] = x.build_ns / x.join_ns;
            rl[r] = x.build_ns / x.leave_ns;
            mem[r] = x.bytes_per;
            emem[r] = x.engine_per;
            deg = x.mean_deg;
        }
        double m[7], lo[7], hi[7];
        stats(join, reps, &m[0], &lo[0], &hi[0]);
        stats(leave, reps, &m[1], &lo[1], &hi[1]);
        stats(build, reps, &m[2], &lo[2], &hi[2]);
        stats(rj, reps, &m[3], &lo[3], &hi[3]);
        stats(rl, reps, &m[4], &lo[4], &hi[4]);
        stats(mem, reps, &m[5], &lo[5], &hi[5]);
        stats(emem, reps, &m[6], &lo[6], &hi[6]);
        printf("| %zu | %.0f [%.0f - %.0f] | %.0f [%.0f - %.0f] | %.2f [%.2f - %.2f] | "
               "%.0fx [%.0f - %.0f] | %.0fx [%.0f - %.0f] | %.0f [%.0f - %.0f] | %.0f | %.2f |\n",
               n, m[0], lo[0], hi[0], m[1], lo[1], hi[1], m[2], lo[2], hi[2], m[3], lo[3], hi[3],
               m[4], lo[4], hi[4], m[5], lo[5], hi[5], m[6], deg);
        fflush(stdout);
    }
    return 0;
}

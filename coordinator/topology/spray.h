/* SPDX-License-Identifier: Apache-2.0 */
/* The Spray random peer-sampling engine's per-peer views and statistics. */
#ifndef MS_SPRAY_H
#define MS_SPRAY_H

#include <stddef.h>
#include <stdint.h>

#include "topology.h"

typedef struct {
    size_t count;     /* peers */
    uint64_t arcs;    /* out-arcs in all views (duplicates count) */
    uint64_t edges;   /* edges of the undirected signalling graph */
    double target;    /* a*ln(N) + b */
    double view_mean; /* arcs / N: also the mean in- and out-degree */
    uint32_t view_min, view_max;
    double mean_abs_in_out; /* mean over peers of |in-degree - out-degree| */
    uint64_t exchanges;     /* shuffles done by tick() */
    uint64_t repair_arcs;   /* arcs added only to keep the graph connected (leave, fail) */
    uint64_t failed_pairs;  /* pairs fail() was told of, both still present */
    uint64_t replaced_arcs; /* arcs fail() replaced */
    uint64_t forced_arcs;   /* links kept or made between a failed pair: nothing else would do */
} ms_spray_stats_t;

/* Fills out for t, which must be a "spray" engine. O(N). */
void ms_spray_stats(const ms_topo_t *t, ms_spray_stats_t *out);

/* p's view size (its out-arcs, duplicates included); 0 for an unknown peer. */
uint32_t ms_spray_view_size(const ms_topo_t *t, ms_peer_t p);

/* How many arcs point at p (its in-degree); 0 for an unknown peer. */
uint32_t ms_spray_in_degree(const ms_topo_t *t, ms_peer_t p);

/* 1 when fail() was told that the edge p-q failed (both present). */
int ms_spray_failed(const ms_topo_t *t, ms_peer_t p, ms_peer_t q);

#endif

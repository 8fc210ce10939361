/* SPDX-License-Identifier: Apache-2.0 */
/* The k-ary tree engine's statistics, for tests, benchmarks and the admin endpoint. */
#ifndef MS_TREE_H
#define MS_TREE_H

#include <stddef.h>
#include <stdint.h>

#include "topology.h"

typedef struct {
    size_t count;        /* peers in the tree */
    uint32_t k;          /* fan-out limit */
    uint32_t depth;      /* levels: 0 when empty, 1 for a lone root */
    uint32_t bound;      /* ceil(log_k((k-1)N+1)): the fewest levels that hold N peers */
    uint32_t max_fanout; /* most children of any peer */
    uint64_t leaves;     /* leave() calls that succeeded */
    /* Peers whose parent changed for a reason other than their own join or
     * leave: a child of a departed peer or a spill below the promoted child
     * (repair), or a leaf moved up to keep the depth within bound + 1 (rebalance). */
    uint64_t moved_repair;
    uint64_t moved_rebalance;
    uint64_t max_moved_leave; /* most peers moved by one leave() */
} ms_tree_stats_t;

/* Fills out for t, which must be a "tree" engine. O(N) (max_fanout scans). */
void ms_tree_stats(const ms_topo_t *t, ms_tree_stats_t *out);

/* The parent of p, or MS_PEER_NONE for the root or an unknown peer. */
ms_peer_t ms_tree_parent(const ms_topo_t *t, ms_peer_t p);

#endif

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
    uint32_t k1;         /* the source's fan-out (k without a source slot) */
    int source;          /* the source (handle 0) is in the tree, at its root */
    int waiting;         /* the source's place is held empty: viewers wait below it */
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

/* The parent of p, or MS_PEER_NONE for the root, a peer waiting for the
 * source, or an unknown peer. */
ms_peer_t ms_tree_parent(const ms_topo_t *t, ms_peer_t p);

/* params.source flags for a tree with a broadcast source. With any of them,
 * handle 0 is the source's (the caller gives it to no one else) and has fan-out
 * params.k1 (default 10); a source that joins a tree that formed without it
 * becomes its root, one link above the old root. HOLD_BEFORE: before the first
 * source, viewers hang below an empty place and wait for it. HOLD_AFTER: when
 * the source leaves its place is held empty (its children stay where they are,
 * told only that the link is gone) instead of a child being promoted. */
#define MS_TREE_SOURCE 1u
#define MS_TREE_HOLD_BEFORE 2u
#define MS_TREE_HOLD_AFTER 4u

/* 1 while the source's place is held empty. */
int ms_tree_waiting(const ms_topo_t *t);

/* Moves p (with its subtree) under another parent with a free slot: the one
 * nearest the root that is neither p's current parent, nor `avoid` (e.g. the
 * end of a failed link; MS_PEER_NONE for none), nor in p's subtree. Then
 * rebalances, never moving p back to the parent it left unless that is the
 * only way to keep the depth bound. MS_ERR_FULL when p stays under its parent:
 * there is no such slot (nothing changes), or only the old parent keeps the
 * bound (diff then holds the rebalancing of other leaves: apply it).
 * MS_ERR_INVAL for the root, MS_ERR_NOTFOUND for an unknown peer. */
ms_err_t ms_tree_reparent(ms_topo_t *t, ms_peer_t p, ms_peer_t avoid, ms_topo_diff_t *diff);

#endif

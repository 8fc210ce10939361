/* SPDX-License-Identifier: Apache-2.0 */
/* Failed-edge repair for the Delaunay engines: links to the nearest peers not yet linked.
 *
 * ms_topo_create("delaunay") returns the plane or sphere engine wrapped in
 * this one; it answers to the same name, passes joins, leaves and moves
 * through, and adds what a geometric engine cannot: when an edge fails
 * (fail()), the pair is remembered as failed and each end gains a link to
 * its nearest peer that is neither linked nor failed with it (an "extra"
 * link, outside the triangulation); and after every change, any peer with a
 * failed pair that is left with fewer than 2 working links (links not failed)
 * gains such links until it has 2 or no peer is left to link. The failed edge
 * itself stays: the triangulation has it. How it works is on top of relink.c.
 */
#ifndef MS_RELINK_H
#define MS_RELINK_H

#include <stddef.h>
#include <stdint.h>

#include "topology.h"

/* Wraps inner (takes ownership: destroyed with the wrapper, or on failure).
 * geo: inner's positions are longitude and latitude in degrees. */
ms_err_t ms_relink_wrap(ms_topo_t *inner, int geo, ms_topo_t **out);

/* The engine inside t when t is a relink engine, otherwise t itself. */
const ms_topo_t *ms_relink_inner(const ms_topo_t *t);

typedef struct {
    uint64_t failed_pairs; /* pairs reported failed, both still present */
    uint64_t extra_links;  /* links outside the triangulation now */
    uint64_t links_added;  /* extra links made so far */
} ms_relink_stats_t;

/* t must be a relink engine. */
void ms_relink_stats(const ms_topo_t *t, ms_relink_stats_t *out);
/* 1 when the edge a-b was reported failed (and neither has left since). */
int ms_relink_failed(const ms_topo_t *t, ms_peer_t a, ms_peer_t b);
/* p's links that are not failed; 0 for an unknown peer. */
size_t ms_relink_working(const ms_topo_t *t, ms_peer_t p);

extern const ms_topo_ops_t ms_topo_relink_ops;

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Edge health and tree control: edge reports, repair around failed edges, re-parent, source
 * notices. */
#ifndef MS_COORD_EDGES_H
#define MS_COORD_EDGES_H

#include <stdint.h>
#include <jansson.h>

#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "metrics.h"
#include "namespace.h"

/* edges.c's counters (all namespaces), for the admin view and /metrics. */
typedef struct {
    uint64_t n_up, n_up_relayed, n_failed; /* reports (UP: n_up counts both paths) */
    uint64_t n_retries;                    /* ICE restarts asked of both ends */
    uint64_t n_tree_moves;     /* tree: children moved away from a parent they cannot reach */
    uint64_t n_spray_replaced; /* spray: failed pairs whose arcs were replaced */
    uint64_t n_delaunay_links; /* delaunay: failed edges that got links around them */
    uint64_t n_unrepaired;     /* failed for good with no repair (full mesh, nowhere to go) */
    uint64_t n_reparents;      /* reparent requests done */
} ms_edges_t;

/* A client's EdgeReport: recorded, and the topology repaired around a failure. */
void ms_edges_report(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid,
                     const Meshsig__V1__EdgeReport *er);
/* After a rebuild or merge placed m (from its session report sr): the edge health its gateway
 * kept for m's reported neighbours, for the edges ns's engine has now. Both ends may report
 * one edge, in any order: a retry that failed for good wins, then UP, then a first FAILED
 * (the edge is retrying: no second retry). Reports without edge_health change nothing. */
void ms_edges_restore(ms_ns_t *ns, const ms_member_t *m, const Meshsig__Bus__SessionReport *sr);
/* After the edges are restored in a rebuild: the engine's repair around each edge failed for
 * good again, into diff (the rebuild's: links the old owner made around it, which the clients
 * hold, cancel out), so the rebuilt topology is the one the old owner had. Counts nothing. */
void ms_edges_restore_repairs(ms_ns_t *ns, ms_topo_diff_t *diff);
/* A client's reparent request (tree namespaces). */
void ms_edges_reparent(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *cid);
/* topology.source: to `to` only, or (to NULL) to every member but the source. */
void ms_tree_source_notify(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                           const ms_member_t *source);
/* {"up", "failed", "pending", "relayed"}: ns's topology edges by reported state
 * (pending: not reported yet, or retrying). New reference. */
json_t *ms_edges_json(const ms_ns_t *ns);
/* The edge families of /metrics: edges by topology and state, up edges by path,
 * reports and repairs. */
void ms_edges_metrics(ms_coord_t *c, ms_metrics_t *m);

extern const ms_ns_hooks_t ms_edges_hooks;

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* The topology engine interface: one ops table per engine, pure functions of their inputs.
 *
 * An engine decides who connects to whom inside one namespace. It does no I/O,
 * reads no clock and draws no randomness of its own: time comes in as `now_ms`,
 * randomness as the seed in the params (an engine may run its own PRNG seeded
 * from it, which keeps every run reproducible). Each state change returns an
 * edge diff, which the coordinator turns into topology.connect/disconnect events.
 *
 * Peers are named by dense handles (ms_peer_t) that the caller assigns: the
 * smallest free handle is reused first, so an engine may index arrays by handle.
 * Handles are below MS_PEER_MAX. The caller maps handles to peer ids and decides
 * the initiator of each edge; the engine only says which edges exist and, for
 * trees, which end is the parent.
 *
 * Thread safety: none; the caller serialises all calls on one engine.
 */
#ifndef MS_TOPOLOGY_H
#define MS_TOPOLOGY_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "err.h"

typedef uint32_t ms_peer_t;
#define MS_PEER_NONE UINT32_MAX
#define MS_PEER_MAX (UINT32_MAX / 2)

typedef enum {
    MS_EDGE_PEER = 0, /* undirected; stored with a < b */
    MS_EDGE_TREE = 1, /* a is the parent of b */
} ms_edge_kind_t;

typedef struct {
    ms_peer_t a, b;
    uint8_t kind; /* ms_edge_kind_t */
} ms_edge_t;

/* What an operation changed. An edge whose kind or direction changes appears
 * as a disconnect of the old edge and a connect of the new one. */
typedef struct {
    ms_edge_t *connect;
    size_t n_connect, cap_connect;
    ms_edge_t *disconnect;
    size_t n_disconnect, cap_disconnect;
} ms_topo_diff_t;

void ms_topo_diff_init(ms_topo_diff_t *d);
void ms_topo_diff_cleanup(ms_topo_diff_t *d);
/* Empties d but keeps its storage for reuse. */
void ms_topo_diff_clear(ms_topo_diff_t *d);
/* Orders edges by (a, b, kind): for qsort and bsearch over ms_edge_t arrays. */
int ms_edge_cmp(const void *x, const void *y);

/* Append an edge. For MS_EDGE_PEER the ends are put in order (a < b). */
ms_err_t ms_topo_diff_connect(ms_topo_diff_t *d, ms_peer_t a, ms_peer_t b, uint8_t kind);
ms_err_t ms_topo_diff_disconnect(ms_topo_diff_t *d, ms_peer_t a, ms_peer_t b, uint8_t kind);
/* Sort both lists, drop duplicates, and cancel an edge that is both connected
 * and disconnected, so that d is exactly the difference between two edge sets. */
void ms_topo_diff_normalize(ms_topo_diff_t *d);

/* A planar or spherical position. Meaning by positioning mode:
 * client/random/network: x, y in the plane; geo: x = longitude, y = latitude (degrees). */
typedef struct {
    double x, y;
    /* A stable per-peer key (a hash of namespace and peer id, the same on every
     * coordinator). Engines break ties between equal positions with it, never
     * with handles or join order, so that a rebuild gives the same edges. */
    uint64_t key;
} ms_topo_pos_t;

struct ms_topo_ops;

/* Engine parameters, parsed from the namespace policy. Unused fields are ignored. */
typedef struct {
    uint32_t k;      /* tree: fan-out (>= 2, default 4) */
    uint32_t k1;     /* tree with a source: the source's fan-out (default 10) */
    uint32_t source; /* tree: MS_TREE_* flags (tree.h); 0: no source slot */
    uint32_t cap;    /* fullmesh: most peers (0: no cap) */
    double a, b;     /* spray: view size a*ln(N) + b (defaults 1, 5) */
    int geo;         /* delaunay: positions are on the sphere (lon, lat degrees) */
    uint64_t seed;   /* engines that randomise seed their PRNG with this */
    /* auto: a full mesh up to `up_to` peers, `then` (with the fields above)
     * beyond; back to the full mesh at up_to - hysteresis peers. */
    const struct ms_topo_ops *then;
    uint32_t up_to, hysteresis;
} ms_topo_params_t;

/* What a gateway reports of a peer after a coordinator takeover. */
typedef struct {
    ms_peer_t peer;
    ms_topo_pos_t pos;
    ms_peer_t parent;            /* tree: MS_PEER_NONE for the root or unknown */
    const ms_peer_t *neighbours; /* the peer's current neighbours */
    size_t n_neighbours;
} ms_topo_report_t;

typedef struct ms_topo ms_topo_t;
typedef void (*ms_topo_edge_fn)(ms_peer_t a, ms_peer_t b, uint8_t kind, void *ud);

typedef struct ms_topo_ops {
    const char *name; /* "fullmesh", "delaunay", "tree", "spray", "auto", "none" */
    ms_err_t (*create)(const ms_topo_params_t *params, ms_topo_t **out);
    void (*destroy)(ms_topo_t *t);
    /* MS_ERR_FULL when the engine's cap is reached, MS_ERR_EXISTS for a handle in use. */
    ms_err_t (*join)(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff);
    ms_err_t (*leave)(ms_topo_t *t, ms_peer_t p, ms_topo_diff_t *diff);
    /* NULL when position does not matter to the engine. */
    ms_err_t (*move)(ms_topo_t *t, ms_peer_t p, ms_topo_pos_t pos, ms_topo_diff_t *diff);
    /* Writes up to max neighbours into out; returns how many there are in all. */
    size_t (*neighbours)(const ms_topo_t *t, ms_peer_t p, ms_peer_t *out, size_t max);
    int (*adjacent)(const ms_topo_t *t, ms_peer_t a, ms_peer_t b);
    /* Calls fn once per edge (MS_EDGE_PEER with a < b; MS_EDGE_TREE parent first). */
    void (*edges)(const ms_topo_t *t, ms_topo_edge_fn fn, void *ud);
    size_t (*count)(const ms_topo_t *t);
    /* On a fresh engine: rebuild from reports; diff is what must change
     * relative to the edges the peers reported. NULL: use ms_topo_restore_generic. */
    ms_err_t (*restore)(ms_topo_t *t, const ms_topo_report_t *reports, size_t n,
                        ms_topo_diff_t *diff);
    /* The WebRTC edge a-b failed for good (the coordinator has given up on it):
     * the engine repairs around it and writes what changes into diff. Each
     * engine's rule is in its file (tree: the child moves to another parent;
     * spray: the arcs are replaced by arcs to peers not yet linked; delaunay:
     * each end gains its nearest peer not yet linked, the edge itself stays).
     * A pair already failed is MS_OK with no change. MS_ERR_NOTFOUND when a-b
     * is not an edge, MS_ERR_FULL when there is nowhere to go. NULL: the
     * engine keeps the edge and does nothing (full mesh). */
    ms_err_t (*fail_edge)(ms_topo_t *t, ms_peer_t a, ms_peer_t b, ms_topo_diff_t *diff);
    /* Periodic work (spray shuffles). NULL when the engine has none. */
    ms_err_t (*tick)(ms_topo_t *t, uint64_t now_ms, ms_topo_diff_t *diff);
    /* Adds engine-specific statistics to obj (depth, degrees, ...). May be NULL. */
    ms_err_t (*write_json)(const ms_topo_t *t, json_t *obj);
} ms_topo_ops_t;

/* Every engine's instance struct starts with this, so callers can reach the ops. */
struct ms_topo {
    const ms_topo_ops_t *ops;
};

/* Grows the array *p (of elem-size items, *cap of them) to hold need items,
 * doubling from 16. Shared by the engines. */
ms_err_t ms_topo_grow(void **p, size_t *cap, size_t need, size_t elem);

/* The engine registered under name, or NULL. */
const ms_topo_ops_t *ms_topo_find(const char *name);
/* Creates the engine named for params: the registry picks the space too
 * ("delaunay" is the plane engine, or the spherical one when params->geo,
 * either inside the failed-edge repair of relink.h).
 * MS_ERR_INVAL for an unknown name. */
ms_err_t ms_topo_create(const char *name, const ms_topo_params_t *params, ms_topo_t **out);

/* Joins every reported peer into the fresh engine t (in report order) and
 * writes into diff the difference between the resulting edges and the
 * reported ones. */
ms_err_t ms_topo_restore_generic(ms_topo_t *t, const ms_topo_report_t *reports, size_t n,
                                 ms_topo_diff_t *diff);

/* Appends a connect to diff for each edge of p, as ops->edges gives it (MS_EDGE_PEER with
 * a < b; a tree's MS_EDGE_TREE parent first) and in the order it gives them for the full
 * mesh, a tree and spray (by the other end below p, then p's own list): found through
 * ops->neighbours, O(degree), where a filter over ops->edges walks every edge of the
 * namespace. MS_ERR_NOMEM or diff's error. */
ms_err_t ms_topo_edges_of(const ms_topo_t *t, ms_peer_t p, ms_topo_diff_t *diff);

extern const ms_topo_ops_t ms_topo_fullmesh_ops;
extern const ms_topo_ops_t ms_topo_tree_ops;
extern const ms_topo_ops_t ms_topo_spray_ops;
extern const ms_topo_ops_t ms_topo_delaunay_ops; /* the plane */
extern const ms_topo_ops_t ms_topo_geo_ops;      /* "delaunay" on the sphere (geo.h) */
extern const ms_topo_ops_t ms_topo_adaptive_ops;
extern const ms_topo_ops_t ms_topo_none_ops;

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Vivaldi network coordinates (2-D plus height), pure: peers' RTTs in, coordinates out.
 *
 * After Dabek, Cox, Kaashoek and Morris, "Vivaldi: A Decentralized Network
 * Coordinate System" (SIGCOMM 2004): each peer keeps a coordinate and an error
 * estimate; each RTT sample to a remote peer moves the coordinate along the
 * spring between them by an adaptive timestep c_c * w, where w = e_i / (e_i + e_j)
 * weighs the local error against the remote one. Height vectors model access
 * links: distance = |x_i - x_j| + h_i + h_j. Units are milliseconds, so a
 * coordinate is usable directly as a Delaunay plane position (delaunay.h range).
 *
 * The coordinator keeps one ms_vivaldi_t per peer, feeds it RTTs reported by the
 * peers, and re-places a peer in the Delaunay engine when
 * ms_vivaldi_drifted() says it moved far enough since the last placement.
 */
#ifndef MS_VIVALDI_H
#define MS_VIVALDI_H

#include <stdint.h>

#include "err.h"
#include "topology.h"

#define MS_VIVALDI_CC 0.25        /* timestep constant c_c */
#define MS_VIVALDI_CE 0.25        /* error smoothing constant c_e */
#define MS_VIVALDI_ERR_MAX 1.5    /* error estimate of a fresh coordinate (relative) */
#define MS_VIVALDI_MIN_HEIGHT 0.1 /* ms; keeps the height vector's direction defined */

typedef struct {
    double x, y, h;    /* ms */
    double err;        /* relative error estimate, in (0, MS_VIVALDI_ERR_MAX] */
    double px, py, ph; /* where the peer was last placed (ms_vivaldi_mark_placed) */
    uint64_t rng;      /* picks a direction when two coordinates coincide */
    uint64_t samples;
} ms_vivaldi_t;

/* A fresh coordinate at the origin; seed the tie-breaking direction (e.g. with
 * the peer's position key). */
void ms_vivaldi_init(ms_vivaldi_t *c, uint64_t seed);

/* The RTT the coordinates predict between a and b, in ms. */
double ms_vivaldi_distance(const ms_vivaldi_t *a, const ms_vivaldi_t *b);

/* One sample: self measured rtt_ms to remote. MS_ERR_INVAL (nothing changes)
 * for a non-positive or non-finite RTT. */
ms_err_t ms_vivaldi_update(ms_vivaldi_t *self, const ms_vivaldi_t *remote, double rtt_ms);

/* Records the current coordinate as the placed one. */
void ms_vivaldi_mark_placed(ms_vivaldi_t *c);

/* 1 when the coordinate moved more than threshold_ms (height-vector distance)
 * since it was last placed. */
int ms_vivaldi_drifted(const ms_vivaldi_t *c, double threshold_ms);

/* The coordinate as a plane position for the Delaunay engine (height dropped). */
ms_topo_pos_t ms_vivaldi_position(const ms_vivaldi_t *c, uint64_t key);

#endif

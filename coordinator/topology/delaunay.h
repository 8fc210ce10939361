/* SPDX-License-Identifier: Apache-2.0 */
/* The Delaunay mesh engine's extras: coordinate range, quantisation and introspection.
 *
 * The engine itself is reached through ms_topo_delaunay_ops (topology.h, name
 * "delaunay"). Plane positions (client, random and network modes) are quantised
 * to an integer grid of MS_DELAUNAY_GRID points per axis: x and y in
 * [-MS_DELAUNAY_RANGE, MS_DELAUNAY_RANGE] map linearly onto [0, MS_DELAUNAY_GRID - 1]
 * (a step of about 0.0019 units), values outside are clamped to the border and
 * non-finite values are rejected with MS_ERR_INVAL. Two positions that quantise to
 * the same grid point are the same position; such peers are linked as a chain
 * ordered by ms_topo_pos_t.key (see delaunay.c).
 *
 * Spherical positions (params->geo: longitude, latitude) are handled by the
 * geo engine (geo.h), which create() returns for them; it wraps a plane engine.
 */
#ifndef MS_DELAUNAY_H
#define MS_DELAUNAY_H

#include <stddef.h>
#include <stdint.h>

#include "topology.h"

#define MS_DELAUNAY_RANGE 1e6
#define MS_DELAUNAY_BITS 30
#define MS_DELAUNAY_GRID (INT32_C(1) << MS_DELAUNAY_BITS)

/* The grid point a plane coordinate maps to (clamped; NaN maps to 0). */
int32_t ms_delaunay_quantize(double v);

/* Bytes of heap the engine t holds (its arrays' capacities), for statistics. */
size_t ms_delaunay_bytes(const ms_topo_t *t);

/* Calls fn(a, b, c, ud) once per triangle of the plane triangulation, corners
 * counter-clockwise, as peer handles of the representatives. For tests. */
typedef void (*ms_delaunay_tri_fn)(ms_peer_t a, ms_peer_t b, ms_peer_t c, void *ud);
void ms_delaunay_triangles(const ms_topo_t *t, ms_delaunay_tri_fn fn, void *ud);

/* The boundary of the plane triangulation: writes up to max representatives into
 * out, counter-clockwise, every representative on the hull (also those inside a
 * straight stretch), and returns how many there are. While there are no triangles
 * (line mode: fewer than 3 representatives, or all collinear) it writes the
 * representatives in line order instead and sets *line. start is a hint, a
 * peer that is probably on the hull (MS_PEER_NONE: none): the walk starts there
 * in O(degree) when it is, otherwise it walks O(sqrt(n)) triangles to the hull
 * from the last change. Then O(h) plus the triangles around each hull vertex. */
size_t ms_delaunay_hull(const ms_topo_t *t, ms_peer_t start, ms_peer_t *out, size_t max, int *line);

/* The engine's exact predicates on the quantised positions of present peers:
 * orient > 0 when a, b, c turn counter-clockwise (0 when collinear); incircle > 0
 * when d is inside the circle through the counter-clockwise a, b, c, with the
 * engine's symbolic tie-break (never 0 for a non-collinear a, b, c). */
int ms_delaunay_orient(const ms_topo_t *t, ms_peer_t a, ms_peer_t b, ms_peer_t c);
int ms_delaunay_incircle(const ms_topo_t *t, ms_peer_t a, ms_peer_t b, ms_peer_t c, ms_peer_t d);

/* Checks the internal links (neighbour symmetry, orientation, vertex-to-triangle
 * pointers, duplicate chains). Returns 0 when sound, otherwise -1 and a reason in
 * why. Linear time; for tests. */
int ms_delaunay_check(const ms_topo_t *t, char *why, size_t why_len);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* The spherical Delaunay engine (positioning "geo"): neighbours on the sphere from longitude and
 * latitude.
 *
 * The registry (ms_topo_create) picks it for "delaunay" with params->geo
 * set; it is built on the plane engine (ms_topo_delaunay_ops), which knows
 * nothing of it; positions are x = longitude, y = latitude in degrees. Peers
 * are linked along the edges of the convex hull of their points on the unit
 * sphere (the spherical Delaunay triangulation), so the antimeridian and the
 * poles are not boundaries. How it works is in the comment on top of geo.c.
 *
 * Precision. Each point is projected stereographically from Point Nemo
 * (MS_GEO_POLE_LAT, MS_GEO_POLE_LON) and the plane engine's 2^30 grid
 * quantises the projection: the resulting edges are the exact spherical
 * Delaunay edges of points moved by at most about 1.2 m (half a grid step at
 * the antipode of the pole, where the projection shrinks most; finer elsewhere).
 * Points within about 1.2 degrees of Point Nemo (open ocean) project outside the
 * grid and are clamped to its border; they are still linked, but their edges
 * are those of the clamped position. Two points that quantise to the same grid
 * point are duplicates and form a chain ordered by key, as in the plane engine.
 */
#ifndef MS_GEO_H
#define MS_GEO_H

#include <stddef.h>

#include "topology.h"

/* The projection pole: Point Nemo, the ocean point farthest from land. */
#define MS_GEO_POLE_LAT (-48.8767)
#define MS_GEO_POLE_LON (-123.3933)
/* The unit circle of the projection (90 degrees from the pole) maps to this radius. */
#define MS_GEO_SCALE 1e4

/* Creates a geo engine (params->geo is not read; params->seed seeds the plane
 * engine's walk starts). Reached through ms_topo_create or ms_topo_geo_ops. */
ms_err_t ms_geo_create(const ms_topo_params_t *params, ms_topo_t **out);

/* The plane position the engine gives to (lon, lat) in degrees, before
 * quantisation: the stereographic projection from the pole, times MS_GEO_SCALE. */
void ms_geo_project(double lon, double lat, double *x, double *y);

/* How many corners the plane hull of the projected points has (h in geo.c):
 * the peers next to the pole. For statistics and tests. */
size_t ms_geo_hull_size(const ms_topo_t *t);

/* The plane engine inside t, for ms_delaunay_check and ms_delaunay_triangles in tests. */
const ms_topo_t *ms_geo_plane(const ms_topo_t *t);

#endif

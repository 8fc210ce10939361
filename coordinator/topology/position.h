/* SPDX-License-Identifier: Apache-2.0 */
/* Deterministic random positions and tie-break keys for peers, from namespace and peer id.
 *
 * Every coordinator computes the same values for the same (namespace, peer id),
 * so a rebuilt engine places peers exactly where the old one did. The hash is
 * 64-bit FNV-1a over the namespace, a zero byte and the peer id, finished with
 * the splitmix64 mixer (FNV alone is weak in the high bits for short inputs).
 */
#ifndef MS_POSITION_H
#define MS_POSITION_H

#include <stdint.h>

#include "topology.h"

/* The stable per-peer key engines break ties with (ms_topo_pos_t.key). */
uint64_t ms_position_key(const char *ns, const char *peer_id);

/* A position uniform in the Delaunay engine's plane range, [-MS_DELAUNAY_RANGE,
 * MS_DELAUNAY_RANGE) on each axis, independent of the key, with .key filled. */
ms_topo_pos_t ms_position_random(const char *ns, const char *peer_id);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* The "auto" engine's state, for tests and the admin endpoint. */
#ifndef MS_ADAPTIVE_H
#define MS_ADAPTIVE_H

#include <stdint.h>

#include "topology.h"

typedef struct {
    int large;                  /* the `then` engine is in use (else the full mesh) */
    const ms_topo_t *inner;     /* the engine in use */
    uint64_t switches;          /* switches so far, either way */
    uint64_t last_switch_edges; /* connects + disconnects the last switch announced */
} ms_adaptive_stats_t;

void ms_adaptive_stats(const ms_topo_t *t, ms_adaptive_stats_t *out);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Gateways as seen through their heartbeats: which are alive, which went silent.
 *
 * What happens to a silent gateway's peers is member.c's business: the sweep
 * only says which gateway died. Loop thread only.
 */
#ifndef MS_COORD_GATEWAYS_H
#define MS_COORD_GATEWAYS_H

#include <stdint.h>

#include "bus.pb-c.h"
#include "table.h"

typedef struct ms_coord ms_coord_t;

typedef struct ms_gw_info {
    char *id;
    uint64_t last_seen_ms, started_ms;
    uint32_t sessions;
    int dead;
    /* Back after it was dead, the same process (same started_ms): its
     * sessions lived on, and the sweep says so (back) once. */
    int returned;
    /* Times it was marked dead: what it reported before its last silence may be out of date
     * (gwsync.c asks it again). */
    uint32_t deaths;
    char release[32];     /* its meshsig release, from the heartbeat */
    uint32_t bus_version; /* its bus protocol version (busver.h) */
    uint64_t bus_refused; /* messages it refused from nodes of another bus major */
    UT_hash_handle hh;
} ms_gw_info_t;

typedef struct {
    ms_gw_info_t *by_id; /* uthash by id */
    /* Moves when a gateway is added, dies, comes back or restarts: what gwsync.c's tick
     * depends on (it skips its walk while this and the clock have not moved it). */
    uint64_t gen;
} ms_gws_t;

void ms_gw_cleanup(ms_coord_t *c);
void ms_gw_heartbeat(ms_coord_t *c, const Meshsig__Bus__Heartbeat *hb);
/* A member joined through gateway: known (and timed) from now on, before its first heartbeat. */
void ms_gw_seen(ms_coord_t *c, const char *gateway);
/* Marks gateways silent for longer than the timeout dead and calls died for each; calls
 * back for each that was dead and is heard again from the same process (its sessions are
 * still there: a NATS link cut, not a restart). */
void ms_gw_sweep(ms_coord_t *c, uint64_t now_ms,
                 void (*died)(ms_coord_t *c, const char *gateway, uint64_t now_ms),
                 void (*back)(ms_coord_t *c, const char *gateway));
/* Read-only iteration over the gateways known. */
#define MS_GW_FOREACH(c, g, tmp) HASH_ITER(hh, (c)->gws.by_id, g, tmp)

#endif

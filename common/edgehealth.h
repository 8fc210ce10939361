/* SPDX-License-Identifier: Apache-2.0 */
/* An edge's health as one end reported it, packed in a byte: kept by the gateway per (session,
 * neighbour) and sent in SessionReport.edge_health, so that a new owner keeps it.
 *
 * The SDK reports an edge once per attempt (UP, or FAILED after its timeout), so a rebuilt
 * owner cannot ask again: what the gateway saw its session report is all there is. Bits 0-1
 * the last state reported (MS_EDGEH_UP, MS_EDGEH_FAILED; 0 none), bit 2 that UP was relayed,
 * bits 3-4 the FAILED reports since the last UP (capped at 3: the owner's rules look at 1
 * and 2).
 */
#ifndef MS_EDGEHEALTH_H
#define MS_EDGEHEALTH_H

#include <stdint.h>

#define MS_EDGEH_UP 1u
#define MS_EDGEH_FAILED 2u
#define MS_EDGEH_STATE(b) ((unsigned)(b)&3u)
#define MS_EDGEH_RELAYED(b) (((unsigned)(b) >> 2) & 1u)
#define MS_EDGEH_FAILS(b) (((unsigned)(b) >> 3) & 3u)

/* b after one more report: UP (relayed or not) or FAILED. */
static inline uint8_t ms_edgeh_next(uint8_t b, int up, int relayed)
{
    if (up)
        return (uint8_t)(MS_EDGEH_UP | (relayed ? 4u : 0u));
    unsigned fails = MS_EDGEH_FAILS(b) < 3 ? MS_EDGEH_FAILS(b) + 1 : 3;
    return (uint8_t)(MS_EDGEH_FAILED | fails << 3);
}

#endif

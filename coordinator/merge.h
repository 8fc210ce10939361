/* SPDX-License-Identifier: Apache-2.0 */
/* A gateway's late report merged into a shard this coordinator serves (merge.c has the
 * reasoning). Loop thread only. */
#ifndef MS_COORD_MERGE_H
#define MS_COORD_MERGE_H

#include <stdint.h>

#include "bus.pb-c.h"

typedef struct ms_coord ms_coord_t;

/* Merges rr (borrowed; one part of a gateway's answer for shard at the current epoch) into the
 * shard's namespaces. Returns the number of topology events sent, or -1 when out of memory. */
long ms_merge_report(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ResyncReport *rr);

#endif

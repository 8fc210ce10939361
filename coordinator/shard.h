/* SPDX-License-Identifier: Apache-2.0 */
/* The one place a shard's requests are handled (cluster.c decides they are ours). */
#ifndef MS_COORD_SHARD_H
#define MS_COORD_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "bus.pb-c.h"

typedef struct ms_coord ms_coord_t;

typedef struct {
    uint64_t n_requests, n_signals, n_bad_requests;
} ms_route_t;

void ms_shard_handle(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req);
/* Decodes a request (counted as bad when it does not decode: NULL); free it with
 * meshsig__bus__shard_request__free_unpacked. */
Meshsig__Bus__ShardRequest *ms_shard_decode(ms_coord_t *c, uint32_t shard, const uint8_t *data,
                                            size_t len);
/* Counts a message that was not a request of ours (metrics: dropped, bad_request). */
void ms_shard_count_bad(ms_coord_t *c);

#endif

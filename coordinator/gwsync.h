/* SPDX-License-Identifier: Apache-2.0 */
/* Which gateways have told the owner what they hold of a shard it serves; the others are asked
 * (gwsync.c has the reasoning). Loop thread only. */
#ifndef MS_COORD_GWSYNC_H
#define MS_COORD_GWSYNC_H

#include <stddef.h>
#include <stdint.h>

#include "bus.pb-c.h"

typedef struct ms_coord ms_coord_t;
typedef struct ms_gwsync ms_gwsync_t;
struct ms_queued;

/* Per shard, in ms_shard_t; NULL until first used. Freed (with what it holds) when the shard
 * is dropped: its state is for one epoch. */
void ms_gwsync_free(ms_gwsync_t *s);
/* gateway's last part for this epoch was taken in (takeover rebuild or merge). Returns the
 * requests held for its answer, in arrival order, for the caller to handle (it frees them). */
struct ms_queued *ms_gwsync_reported(ms_coord_t *c, ms_gwsync_t **s, const char *gateway);
/* A request of a session this owner does not know, from a gateway that has not reported at
 * this epoch: 1 when it is kept (a copy of data) until the gateway answers the ask sent now. */
int ms_gwsync_hold(ms_coord_t *c, ms_gwsync_t **s, uint32_t shard, uint64_t epoch,
                   const Meshsig__Bus__ShardRequest *req, const uint8_t *data, size_t len);
/* Asks the live gateways that have not reported (or went silent since); returns the requests
 * whose ask went unanswered, for the caller to handle (they get NOT_JOINED as before). */
struct ms_queued *ms_gwsync_tick(ms_coord_t *c, ms_gwsync_t **s, uint32_t shard, uint64_t epoch,
                                 uint64_t now_ms);
/* How often ms_gwsync_tick walked the gateways (it skips the walk while nothing changed). */
uint64_t ms_gwsync_walks(const ms_gwsync_t *s);
#endif

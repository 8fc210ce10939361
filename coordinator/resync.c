/* SPDX-License-Identifier: Apache-2.0 */
/* Takeover rebuild of a shard from the gateways' session reports (stage 1: none). */
#include "internal.h"

void ms_resync_begin(ms_coord_t *c, uint32_t shard)
{
    (void)c;
    (void)shard;
}

int ms_resync_poll(ms_coord_t *c, uint32_t shard, uint64_t now)
{
    (void)c;
    (void)shard;
    (void)now;
    return 1;
}

void ms_resync_free(ms_coord_t *c, uint32_t shard)
{
    (void)c;
    (void)shard;
}

void ms_resync_report(ms_coord_t *c, const Meshsig__Bus__ResyncReport *rr)
{
    (void)c;
    (void)rr;
}

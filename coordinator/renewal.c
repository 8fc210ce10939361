/* SPDX-License-Identifier: Apache-2.0 */
/* When each shard's lease renewal goes out.
 *
 * A shard is served until two thirds of the lease after its last renewal was sent (cluster.c),
 * and renewed every third: one third of slack for an answer (the lease worker's bound on a KV
 * call is a third too). Renewing earlier is always safe: validity counts from when a renewal is
 * sent, so a shard renewed early is simply valid from earlier on.
 *
 * Renewed one at a time, each renewal was a dozen thread wake-ups on both cores; renewed all in
 * one pipelined batch every third of a lease, each batch was a ~2 ms burst of the lease worker,
 * the client's threads and nats-server (64 JetStream stores), and the signals that met it were
 * among the slowest (bench/RESULTS.md, "p99 across gateways"). So the renewal interval is cut
 * into phases, at most one per tick and at most MS_RENEWAL_MAX_PHASES: shard n belongs to phase
 * n % phases, and renews at its phase's points, which sit half a tick after a tick of the
 * coordinator that set them, so that a tick a little late still takes one phase only. Each tick
 * then sends about 1/phases of the shards, in one pipelined batch.
 *
 * A renewal is never later than before: the next point of a shard's phase is at most a third of
 * a lease after its last write was sent (ms_renewal_next). After a claim, the first renewal of a
 * shard may come early; after a stall (a late tick), the phases that passed go together once
 * and are back on their points after that.
 */
#include "renewal.h"

void ms_renewal_init(ms_renewal_t *r, uint64_t ttl_ms, uint64_t tick_ms, uint32_t max_phases,
                     uint64_t origin_ms)
{
    if (!max_phases)
        max_phases = MS_RENEWAL_MAX_PHASES;
    r->interval_ms = ttl_ms / 3 ? ttl_ms / 3 : 1;
    r->tick_ms = tick_ms ? tick_ms : 1;
    uint64_t phases = r->interval_ms / r->tick_ms;
    if (phases > max_phases)
        phases = max_phases;
    if (phases < 1)
        phases = 1;
    r->phases = (uint32_t)phases;
    r->slot_ms = r->interval_ms / r->phases;
    r->origin_ms = origin_ms;
}

uint32_t ms_renewal_phase(const ms_renewal_t *r, uint32_t shard)
{
    return shard % r->phases;
}

uint64_t ms_renewal_next(const ms_renewal_t *r, uint32_t shard, uint64_t sent_ms)
{
    uint64_t i = r->interval_ms;
    uint64_t off = (r->origin_ms + r->tick_ms / 2 + ms_renewal_phase(r, shard) * r->slot_ms) % i;
    uint64_t x = sent_ms + i; /* >= i > off */
    return x - (x - off) % i;
}

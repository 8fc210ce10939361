/* SPDX-License-Identifier: Apache-2.0 */
/* When each shard's lease renewal goes out: every shard every third of a lease, the shards
 * spread over phases so that each cluster tick sends a small batch (renewal.c has the
 * reasoning). Pure: no clock, no I/O; cluster.c drives it. */
#ifndef MS_COORD_RENEWAL_H
#define MS_COORD_RENEWAL_H

#include <stdint.h>

/* The cluster tick (coordinator.c's timer). */
#define MS_CLUSTER_TICK_MS 50
/* At most this many phases per renewal interval when none is given (max_phases 0). The
 * coordinator's default (--lease-renew-phases) is 1, every shard in one batch: on a quiet 2-CPU
 * machine, 8 phases made the longest idle burst of coordinator and nats-server 1 ms instead of
 * 2-3 ms but cost 8 ms/s more CPU (each batch is a dozen thread wake-ups), and p99 was no better:
 * a 2-3 ms burst every 400 ms meets fewer than 1% of signals, eight ~0.5 ms bursts meet more
 * (bench/RESULTS.md, "Quiet machine at the end of the third 2026-12-07 session"). Spreading
 * still shortens the longest stall, for whom p99.9 and the maximum matter more. */
#define MS_RENEWAL_MAX_PHASES 8

typedef struct {
    uint64_t interval_ms; /* a third of the lease: the longest time between two renewals */
    uint64_t tick_ms;
    uint64_t slot_ms;   /* between two phases */
    uint64_t origin_ms; /* the first tick: phases sit half a tick after a tick */
    uint32_t phases;
} ms_renewal_t;

/* ttl_ms: the lease; tick_ms: the period of the tick that sends renewals; max_phases: at most
 * this many phases (0: MS_RENEWAL_MAX_PHASES); origin_ms: the time of one tick (the first). */
void ms_renewal_init(ms_renewal_t *r, uint64_t ttl_ms, uint64_t tick_ms, uint32_t max_phases,
                     uint64_t origin_ms);
/* The phase of a shard, in [0, phases). */
uint32_t ms_renewal_phase(const ms_renewal_t *r, uint32_t shard);
/* When the shard renews next after a write (claim or renewal) sent at sent_ms: its phase's last
 * point at or before sent_ms + interval_ms, so in (sent_ms, sent_ms + interval_ms]. The tick
 * renews a shard once this has passed. */
uint64_t ms_renewal_next(const ms_renewal_t *r, uint32_t shard, uint64_t sent_ms);

#endif

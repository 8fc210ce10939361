/* SPDX-License-Identifier: Apache-2.0 */
/* How often the loop tries the lease store again while it does not answer (cluster.c, "Retries
 * while KV is silent"). Pure: no clock, no I/O; the caller gives the time and the randomness.
 *
 * While the store answers (a write, a refusal, a read: lease.h's "answered"), claims and renewals
 * go as the shards' own schedules say. After a try that went unanswered (the lease connection
 * down, or a call that ran out its bound), the store is "silent": every shard would retry every
 * 50-150 ms (64 shards: several hundred jobs a second, each failing at once), though any one
 * answer tells them all that it is back. So while silent, tries go in slots: one claim or renewal
 * (a probe) per slot, the slots MS_KVRETRY_BASE_MS apart at first, twice as far after each slot
 * used, up to MS_KVRETRY_MAX_MS, each with +-25% jitter (coordinators cut off together do not come
 * back in step). An answer ends the silence, and the lease connection reconnecting opens a slot at
 * once with the interval back at its base: the link's return is not waited out for up to a second.
 */
#ifndef MS_COORD_KVRETRY_H
#define MS_COORD_KVRETRY_H

#include <stdint.h>

#define MS_KVRETRY_BASE_MS 50
#define MS_KVRETRY_MAX_MS 1000

typedef struct {
    int silent;            /* the last try went unanswered */
    uint64_t next_ms;      /* silent: the next slot opens then */
    uint32_t interval_ms;  /* silent: the gap after the next slot used */
    uint64_t reconnects;   /* the lease connection's reconnections seen */
    uint64_t n_slots_used; /* tries made while silent (for tests) */
} ms_kvretry_t;

/* Whether a claim or renewal may go now: the store answers, or a slot is open. */
int ms_kvretry_open(const ms_kvretry_t *r, uint64_t now_ms);
/* Tries went while silent (the slot is used): the next opens interval_ms later, jittered by
 * rnd (any 32-bit random value), and the interval doubles up to MS_KVRETRY_MAX_MS. */
void ms_kvretry_used(ms_kvretry_t *r, uint64_t now_ms, uint32_t rnd);
/* A result: answered (the store answered, whatever it said) ends the silence; unanswered
 * begins it (the first slot opens MS_KVRETRY_BASE_MS after now_ms) or continues it. */
void ms_kvretry_result(ms_kvretry_t *r, int answered, uint64_t now_ms);
/* The lease connection's reconnection count (lease.h): when it moved, a slot opens now and the
 * interval is back at its base. */
void ms_kvretry_reconnects(ms_kvretry_t *r, uint64_t reconnects, uint64_t now_ms);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* A token bucket for per-session message and byte rate limits; pure, time passed in.
 *
 * The level is kept in micro-tokens (1e-6 token) and refilled with exact
 * integer arithmetic, so there is no drift however often it is polled and no
 * overflow however long it sits idle. The bucket lives in the caller's storage
 * (e.g. inside the session) and is not locked: one thread per bucket.
 */
#ifndef MS_RATELIMIT_H
#define MS_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

#define MS_RATELIMIT_BURST_MAX (UINT64_MAX / 1000000u)

/* The rule (rate and burst) and the state (level) of a bucket can be kept
 * apart: many buckets sharing one rule (every session of a gateway) then hold
 * only the 16-byte state. ms_ratelimit_t keeps both. */
typedef struct {
    uint64_t rate;  /* tokens per second; 0 means unlimited */
    uint64_t cap_u; /* burst, in micro-tokens */
} ms_ratelimit_rule_t;

typedef struct {
    uint64_t level_u; /* tokens available now, in micro-tokens */
    uint64_t last_us; /* time of the last refill */
} ms_ratelimit_state_t;

typedef struct {
    ms_ratelimit_rule_t rule;
    ms_ratelimit_state_t st;
} ms_ratelimit_t;

/* As ms_ratelimit_init and ms_ratelimit_take, for a rule shared by many states. */
ms_err_t ms_ratelimit_rule(ms_ratelimit_rule_t *r, uint64_t rate, uint64_t burst);
void ms_ratelimit_start(ms_ratelimit_state_t *st, const ms_ratelimit_rule_t *r, uint64_t now_us);
bool ms_ratelimit_spend(ms_ratelimit_state_t *st, const ms_ratelimit_rule_t *r, uint64_t cost,
                        uint64_t now_us);

/* Two buckets always spent together (a gateway session's messages and bytes):
 * one refill time for both, 24 bytes instead of two 16-byte states. */
typedef struct {
    uint64_t level_u[2];
    uint64_t last_us;
} ms_ratelimit_pair_t;

/* Both full at now_us. */
void ms_ratelimit_pair_start(ms_ratelimit_pair_t *p, const ms_ratelimit_rule_t *r0,
                             const ms_ratelimit_rule_t *r1, uint64_t now_us);
/* As ms_ratelimit_spend on each bucket at now_us: cost0 from the first under r0,
 * cost1 from the second under r1, each paid only if it can be. Returns the
 * buckets that could not pay: bit 0 the first, bit 1 the second. */
unsigned ms_ratelimit_pair_spend(ms_ratelimit_pair_t *p, const ms_ratelimit_rule_t *r0,
                                 uint64_t cost0, const ms_ratelimit_rule_t *r1, uint64_t cost1,
                                 uint64_t now_us);

/* Initialises b full (burst tokens available) at now_us, a monotonic time in
 * microseconds. rate is in tokens per second; rate 0 makes a bucket that allows
 * everything. Returns MS_ERR_INVAL if b is NULL, or rate > 0 with burst 0 or
 * burst > MS_RATELIMIT_BURST_MAX. No _cleanup needed. */
ms_err_t ms_ratelimit_init(ms_ratelimit_t *b, uint64_t rate, uint64_t burst, uint64_t now_us);

/* Refills b up to now_us and takes cost tokens if that many are available.
 * Returns true if allowed (tokens taken), false if not (nothing taken: a
 * refused message costs nothing). A cost above the burst is never allowed.
 * A now_us earlier than a previous call's is treated as no time passing. */
bool ms_ratelimit_take(ms_ratelimit_t *b, uint64_t cost, uint64_t now_us);

#endif

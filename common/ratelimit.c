/* SPDX-License-Identifier: Apache-2.0 */
/* Token bucket in integer micro-tokens: rate tokens/s adds exactly rate micro-tokens per µs. */
#include "ratelimit.h"

#include <stddef.h>

#define MICRO 1000000u

ms_err_t ms_ratelimit_init(ms_ratelimit_t *b, uint64_t rate, uint64_t burst, uint64_t now_us)
{
    if (!b || (rate > 0 && (burst == 0 || burst > MS_RATELIMIT_BURST_MAX)))
        return MS_ERR_INVAL;
    b->rate = rate;
    b->cap_u = rate > 0 ? burst * MICRO : 0;
    b->level_u = b->cap_u;
    b->last_us = now_us;
    return MS_OK;
}

static void refill(ms_ratelimit_t *b, uint64_t now_us)
{
    uint64_t elapsed, deficit;
    if (now_us <= b->last_us)
        return;
    elapsed = now_us - b->last_us;
    b->last_us = now_us;
    deficit = b->cap_u - b->level_u;
    /* elapsed * rate may overflow after a long idle, so compare with the time
     * to fill first: if elapsed < ceil(deficit / rate), elapsed * rate < deficit. */
    if (elapsed >= deficit / b->rate + (deficit % b->rate != 0))
        b->level_u = b->cap_u;
    else
        b->level_u += elapsed * b->rate;
}

bool ms_ratelimit_take(ms_ratelimit_t *b, uint64_t cost, uint64_t now_us)
{
    uint64_t cost_u;
    if (b->rate == 0)
        return true;
    refill(b, now_us);
    if (cost > b->cap_u / MICRO)
        return false;
    cost_u = cost * MICRO;
    if (b->level_u < cost_u)
        return false;
    b->level_u -= cost_u;
    return true;
}

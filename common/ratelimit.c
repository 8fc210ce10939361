/* SPDX-License-Identifier: Apache-2.0 */
/* Token bucket in integer micro-tokens: rate tokens/s adds exactly rate micro-tokens per µs. */
#include "ratelimit.h"

#include <stddef.h>

#define MICRO 1000000u

ms_err_t ms_ratelimit_rule(ms_ratelimit_rule_t *r, uint64_t rate, uint64_t burst)
{
    if (!r || (rate > 0 && (burst == 0 || burst > MS_RATELIMIT_BURST_MAX)))
        return MS_ERR_INVAL;
    r->rate = rate;
    r->cap_u = rate > 0 ? burst * MICRO : 0;
    return MS_OK;
}

void ms_ratelimit_start(ms_ratelimit_state_t *st, const ms_ratelimit_rule_t *r, uint64_t now_us)
{
    st->level_u = r->cap_u;
    st->last_us = now_us;
}

static void refill(ms_ratelimit_state_t *st, const ms_ratelimit_rule_t *r, uint64_t now_us)
{
    uint64_t elapsed, deficit;
    if (now_us <= st->last_us)
        return;
    elapsed = now_us - st->last_us;
    st->last_us = now_us;
    deficit = r->cap_u - st->level_u;
    /* elapsed * rate may overflow after a long idle, so compare with the time
     * to fill first: if elapsed < ceil(deficit / rate), elapsed * rate < deficit. */
    if (elapsed >= deficit / r->rate + (deficit % r->rate != 0))
        st->level_u = r->cap_u;
    else
        st->level_u += elapsed * r->rate;
}

bool ms_ratelimit_spend(ms_ratelimit_state_t *st, const ms_ratelimit_rule_t *r, uint64_t cost,
                        uint64_t now_us)
{
    uint64_t cost_u;
    if (r->rate == 0)
        return true;
    refill(st, r, now_us);
    if (cost > r->cap_u / MICRO)
        return false;
    cost_u = cost * MICRO;
    if (st->level_u < cost_u)
        return false;
    st->level_u -= cost_u;
    return true;
}

void ms_ratelimit_pair_start(ms_ratelimit_pair_t *p, const ms_ratelimit_rule_t *r0,
                             const ms_ratelimit_rule_t *r1, uint64_t now_us)
{
    p->level_u[0] = r0->cap_u;
    p->level_u[1] = r1->cap_u;
    p->last_us = now_us;
}

unsigned ms_ratelimit_pair_spend(ms_ratelimit_pair_t *p, const ms_ratelimit_rule_t *r0,
                                 uint64_t cost0, const ms_ratelimit_rule_t *r1, uint64_t cost1,
                                 uint64_t now_us)
{
    /* Two states with one refill time: each bucket as if it were alone,
     * then the time they were both refilled to. */
    ms_ratelimit_state_t a = {p->level_u[0], p->last_us}, b = {p->level_u[1], p->last_us};
    unsigned over = (ms_ratelimit_spend(&a, r0, cost0, now_us) ? 0u : 1u) |
                    (ms_ratelimit_spend(&b, r1, cost1, now_us) ? 0u : 2u);
    p->level_u[0] = a.level_u;
    p->level_u[1] = b.level_u;
    if (now_us > p->last_us)
        p->last_us = now_us;
    return over;
}

ms_err_t ms_ratelimit_init(ms_ratelimit_t *b, uint64_t rate, uint64_t burst, uint64_t now_us)
{
    if (!b)
        return MS_ERR_INVAL;
    ms_err_t err = ms_ratelimit_rule(&b->rule, rate, burst);
    if (err == MS_OK)
        ms_ratelimit_start(&b->st, &b->rule, now_us);
    return err;
}

bool ms_ratelimit_take(ms_ratelimit_t *b, uint64_t cost, uint64_t now_us)
{
    return ms_ratelimit_spend(&b->st, &b->rule, cost, now_us);
}

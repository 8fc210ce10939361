/* SPDX-License-Identifier: Apache-2.0 */
/* Slots for lease store tries while it does not answer (kvretry.h). */
#include "kvretry.h"

int ms_kvretry_open(const ms_kvretry_t *r, uint64_t now_ms)
{
    return !r->silent || now_ms >= r->next_ms;
}

void ms_kvretry_used(ms_kvretry_t *r, uint64_t now_ms, uint32_t rnd)
{
    if (!r->silent)
        return;
    uint32_t d = r->interval_ms ? r->interval_ms : MS_KVRETRY_BASE_MS;
    r->next_ms = now_ms + d * 3 / 4 + rnd % (d / 2 + 1); /* d +- 25% */
    r->interval_ms = d * 2 < MS_KVRETRY_MAX_MS ? d * 2 : MS_KVRETRY_MAX_MS;
    r->n_slots_used++;
}

void ms_kvretry_result(ms_kvretry_t *r, int answered, uint64_t now_ms)
{
    if (answered) {
        r->silent = 0;
        return;
    }
    if (r->silent)
        return;
    r->silent = 1;
    r->next_ms = now_ms + MS_KVRETRY_BASE_MS;
    r->interval_ms = MS_KVRETRY_BASE_MS * 2;
}

void ms_kvretry_reconnects(ms_kvretry_t *r, uint64_t reconnects, uint64_t now_ms)
{
    if (reconnects == r->reconnects)
        return;
    r->reconnects = reconnects;
    if (r->silent) {
        r->next_ms = now_ms;
        r->interval_ms = MS_KVRETRY_BASE_MS;
    }
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The hand decoder of direct batches (gateway/dbatch.c) against protobuf-c: the same batch or none.
 *
 * Shared by tests/unit/test_dbatch.c and fuzz_gw_bus.c. Whatever
 * ms_dbatch_decode takes, the general path (ms_pblimit_check, then protobuf-c)
 * must take too, field for field the same; what it leaves, the general path
 * decides alone, as before it existed.
 */
#ifndef MS_DBATCHREF_H
#define MS_DBATCHREF_H

#include <stdint.h>
#include <string.h>

#include "bus.pb-c.h"
#include "dbatch.h"
#include "pbarena.h"
#include "pblimit.h"

static int dbatchref_str_eq(const char *a, const char *b)
{
    return !strcmp(a ? a : "", b ? b : "");
}

static int dbatchref_signal_eq(const Meshsig__Bus__DirectSignal *a,
                               const Meshsig__Bus__DirectSignal *b)
{
    return a->kind == b->kind && a->shard == b->shard && a->epoch == b->epoch &&
           dbatchref_str_eq(a->namespace_, b->namespace_) &&
           dbatchref_str_eq(a->from_peer, b->from_peer) && a->from_session == b->from_session &&
           dbatchref_str_eq(a->to_peer, b->to_peer) && a->to_session == b->to_session &&
           a->payload_json.len == b->payload_json.len &&
           (!a->payload_json.len ||
            !memcmp(a->payload_json.data, b->payload_json.data, a->payload_json.len)) &&
           !a->payload && !b->payload && dbatchref_str_eq(a->client_id, b->client_id) &&
           a->origin_us == b->origin_us && !a->owner_too == !b->owner_too &&
           dbatchref_str_eq(a->peerjs_type, b->peerjs_type) && a->base.n_unknown_fields == 0 &&
           b->base.n_unknown_fields == 0;
}

static int dbatchref_batch_eq(const Meshsig__Bus__GatewayBatch *a,
                              const Meshsig__Bus__GatewayBatch *b)
{
    if (a->shard != b->shard || a->epoch != b->epoch ||
        !dbatchref_str_eq(a->coordinator_id, b->coordinator_id) || a->n_deliveries ||
        b->n_deliveries || !dbatchref_str_eq(a->gateway_id, b->gateway_id) ||
        a->n_direct != b->n_direct || a->bus_version != b->bus_version ||
        a->base.n_unknown_fields || b->base.n_unknown_fields)
        return 0;
    for (size_t i = 0; i < a->n_direct; i++)
        if (!dbatchref_signal_eq(a->direct[i], b->direct[i]))
            return 0;
    return 1;
}

/* 1: the hand decoder took data and protobuf-c reads the same; 0: the hand
 * decoder left it to the general path; -1: they disagree (a bug). */
static int dbatchref_check(const uint8_t *data, size_t len)
{
    ms_pbarena_t arena;
    ms_pbarena_init(&arena, 1u << 20);
    int rc = 0;
    Meshsig__Bus__GatewayBatch *mine = ms_dbatch_decode(data, len, &arena);
    if (mine) {
        Meshsig__Bus__GatewayBatch *ref = (Meshsig__Bus__GatewayBatch *)ms_pblimit_unpack(
            &meshsig__bus__gateway_batch__descriptor, data, len, &ms_pblimit_bus, NULL, 0);
        rc = ref && dbatchref_batch_eq(mine, ref) ? 1 : -1;
        if (ref)
            meshsig__bus__gateway_batch__free_unpacked(ref, NULL);
    }
    ms_pbarena_cleanup(&arena);
    return rc;
}

#endif

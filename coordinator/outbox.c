/* SPDX-License-Identifier: Apache-2.0 */
/* Deliveries to gateways, batched per (gateway, shard) and flushed once per loop turn.
 *
 * A batch is a meshsig.bus.GatewayBatch built incrementally: its header fields
 * are packed once, then each Delivery is appended as field 4 (length-delimited),
 * which is exactly how protobuf encodes a repeated message field. Nothing is
 * kept but the bytes, so a burst of events costs one NATS message per gateway.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bus.pb-c.h"
#include "busver.h"
#include "clock.h"
#include "log.h"
#include "outbox.h"
#include "servermsg.h"
#include "subject.h"
#include "table.h"

#define BATCH_FLUSH_BYTES (256 * 1024)

typedef struct ob_entry {
    char *key; /* "<shard>:<gateway>" */
    uint32_t shard;
    char subject[160];
    uint8_t *buf;
    size_t len, cap, header_len;
    size_t n;
    UT_hash_handle hh;
} ob_entry_t;

ms_err_t ms_outbox_init(ms_outbox_t *o, ms_bus_t *bus, const char *prefix,
                        const char *coordinator_id, uint32_t n_shards)
{
    memset(o, 0, sizeof(*o));
    o->bus = bus;
    o->prefix = prefix;
    o->coordinator_id = coordinator_id;
    o->n_shards = n_shards;
    o->epochs = calloc(n_shards ? n_shards : 1, sizeof(*o->epochs));
    o->held = calloc(n_shards ? n_shards : 1, sizeof(*o->held));
    return o->epochs && o->held ? MS_OK : MS_ERR_NOMEM;
}

static void entry_free(ob_entry_t *e)
{
    free(e->key);
    free(e->buf);
    free(e);
}

void ms_outbox_cleanup(ms_outbox_t *o)
{
    ob_entry_t *e, *tmp;
    HASH_ITER(hh, o->entries, e, tmp)
    {
        HASH_DEL(o->entries, e);
        entry_free(e);
    }
    o->n_filled = 0;
    free(o->epochs);
    o->epochs = NULL;
    free(o->held);
    o->held = NULL;
}

void ms_outbox_set_bus(ms_outbox_t *o, ms_bus_t *bus)
{
    o->bus = bus;
}

void ms_outbox_set_epoch(ms_outbox_t *o, uint32_t shard, uint64_t epoch)
{
    if (shard < o->n_shards)
        o->epochs[shard] = epoch;
}

void ms_outbox_set_origin(ms_outbox_t *o, uint64_t received_us)
{
    o->origin_us = received_us;
}

static int reserve(ob_entry_t *e, size_t more)
{
    if (e->len + more <= e->cap)
        return 0;
    size_t ncap = e->cap ? e->cap : 4096;
    while (ncap < e->len + more)
        ncap *= 2;
    uint8_t *nb = realloc(e->buf, ncap);
    if (!nb)
        return -1;
    e->buf = nb;
    e->cap = ncap;
    return 0;
}

static ob_entry_t *entry_get(ms_outbox_t *o, uint32_t shard, const char *gateway)
{
    char key[256];
    snprintf(key, sizeof(key), "%u:%s", shard, gateway);
    ob_entry_t *e;
    HASH_FIND_STR(o->entries, key, e);
    if (e)
        return e;
    e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key)))
        goto fail;
    e->shard = shard;
    if (!ms_subject_gw(e->subject, sizeof(e->subject), o->prefix, gateway))
        goto fail;
    Meshsig__Bus__GatewayBatch hdr = MESHSIG__BUS__GATEWAY_BATCH__INIT;
    hdr.shard = shard;
    hdr.epoch = shard < o->n_shards ? o->epochs[shard] : 0; /* gateways fence older owners */
    hdr.coordinator_id = (char *)o->coordinator_id;
    hdr.bus_version = MS_BUS_VERSION;
    size_t hl = meshsig__bus__gateway_batch__get_packed_size(&hdr);
    if (reserve(e, hl))
        goto fail;
    e->len = e->header_len = meshsig__bus__gateway_batch__pack(&hdr, e->buf);
    HASH_ADD_KEYPTR(hh, o->entries, e->key, strlen(e->key), e);
    return e;
fail:
    if (e)
        entry_free(e);
    return NULL;
}

static void entry_flush(ms_outbox_t *o, ob_entry_t *e)
{
    if (e->n == 0 || (e->shard < o->n_shards && o->held[e->shard]))
        return;
    o->n_batches++;
    if (!o->bus || ms_bus_publish(o->bus, e->subject, NULL, e->buf, e->len) != MS_OK)
        ms_warn("publish to %s failed; %zu deliveries lost", e->subject, e->n);
    e->len = e->header_len;
    e->n = 0;
    o->n_filled--;
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static void put_delivery(ms_outbox_t *o, ob_entry_t *e, const Meshsig__Bus__Delivery *d,
                         const char *gateway)
{
    size_t sz = meshsig__bus__delivery__get_packed_size(d);
    if (reserve(e, sz + 11)) {
        ms_error("out of memory queueing a delivery to %s", gateway);
        return;
    }
    e->buf[e->len++] = (4 << 3) | 2; /* field 4, length-delimited */
    e->len += put_varint(e->buf + e->len, sz);
    e->len += meshsig__bus__delivery__pack(d, e->buf + e->len);
    if (e->n++ == 0)
        o->n_filled++;
    if (e->len >= BATCH_FLUSH_BYTES)
        entry_flush(o, e);
}

void ms_outbox_deliver_full(ms_outbox_t *o, uint32_t shard, const char *gateway,
                            Meshsig__Bus__Delivery *d)
{
    ob_entry_t *e = entry_get(o, shard, gateway);
    if (!e) {
        ms_error("out of memory queueing a delivery to %s", gateway);
        return;
    }
    d->origin_us = o->origin_us;
    if (!d->peer_id)
        d->peer_id = (char *)"";
    /* The first message with a recorded request's id to its session is its answer. */
    if (o->dedupe && o->dedupe->n_pending && d->msg && d->msg->id && *d->msg->id)
        ms_dedupe_answer(o->dedupe, gateway, d->session, d->msg, ms_clock_mono_ms());
    put_delivery(o, e, d, gateway);
}

static void deliver_one(ms_outbox_t *o, uint32_t shard, const char *gateway, uint64_t session,
                        const char *peer_id, const Meshsig__V1__ServerMessage *msg,
                        uint32_t close_code, const Meshsig__Bus__PeerLocation *location,
                        const Meshsig__Bus__PeerLocation *barrier,
                        const Meshsig__Bus__PeerList *peers)
{
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    d.session = session;
    d.msg = (Meshsig__V1__ServerMessage *)msg;
    d.close_code = close_code;
    d.peer_id = (char *)peer_id;
    d.location = (Meshsig__Bus__PeerLocation *)location; /* protobuf-c fields are not const */
    d.barrier = (Meshsig__Bus__PeerLocation *)barrier;
    d.peers = (Meshsig__Bus__PeerList *)peers;
    ms_outbox_deliver_full(o, shard, gateway, &d);
}

void ms_outbox_deliver(ms_outbox_t *o, uint32_t shard, const char *gateway, uint64_t session,
                       const char *peer_id, const Meshsig__V1__ServerMessage *msg,
                       uint32_t close_code)
{
    deliver_one(o, shard, gateway, session, peer_id, msg, close_code, NULL, NULL, NULL);
}

void ms_outbox_deliver_path(ms_outbox_t *o, uint32_t shard, const char *gateway, uint64_t session,
                            const char *peer_id, const Meshsig__V1__ServerMessage *msg,
                            const Meshsig__Bus__PeerLocation *location,
                            const Meshsig__Bus__PeerLocation *barrier)
{
    deliver_one(o, shard, gateway, session, peer_id, msg, 0, location, barrier, NULL);
}

void ms_outbox_deliver_peers(ms_outbox_t *o, uint32_t shard, const char *gateway, uint64_t number,
                             const Meshsig__Bus__PeerList *peers)
{
    deliver_one(o, shard, gateway, number, NULL, NULL, 0, NULL, NULL, peers);
}

/* Every loop turn and tick: with one entry per (shard, gateway), the walk over all of them
 * cost the coordinator's 50 ms tick ~30 of its ~70 µs across two gateways while the signals
 * went direct and nothing was queued (perf, latency load). */
void ms_outbox_flush(ms_outbox_t *o)
{
    if (!o->n_filled)
        return;
    ob_entry_t *e, *tmp;
    HASH_ITER(hh, o->entries, e, tmp)
    entry_flush(o, e);
}

void ms_outbox_hold(ms_outbox_t *o, uint32_t shard, int hold)
{
    if (shard < o->n_shards)
        o->held[shard] = hold != 0;
}

void ms_outbox_forget_shard(ms_outbox_t *o, uint32_t shard)
{
    char prefix[24];
    int pl = snprintf(prefix, sizeof(prefix), "%u:", shard);
    int held = shard < o->n_shards && o->held[shard];
    ob_entry_t *e, *tmp;
    HASH_ITER(hh, o->entries, e, tmp)
    {
        if (strncmp(e->key, prefix, (size_t)pl))
            continue;
        /* Their header carries this ownership's epoch; the next one gets a fresh header.
         * What was held was made while the lease was in doubt: never sent once it is lost. */
        if (held)
            o->n_discarded += e->n;
        else
            entry_flush(o, e);
        if (e->n)
            o->n_filled--;
        HASH_DEL(o->entries, e);
        entry_free(e);
    }
    if (shard < o->n_shards)
        o->held[shard] = 0;
    ms_outbox_set_epoch(o, shard, 0);
}

void ms_outbox_error(ms_outbox_t *o, uint32_t shard, const char *gateway, uint64_t session,
                     const char *client_id, Meshsig__V1__ErrorCode code, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    ms_sm_error_t e;
    o->n_errors++;
    ms_outbox_deliver(o, shard, gateway, session, NULL, ms_sm_error(&e, client_id, code, text), 0);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Deliveries to gateways, batched per (gateway, shard) and flushed once per loop turn.
 *
 * Every batch header carries the shard's epoch (the lease revision) so that
 * gateways drop what an older owner sends: cluster.c sets it when a claim
 * succeeds and forgets it when the shard is dropped. Loop thread only.
 */
#ifndef MS_COORD_OUTBOX_H
#define MS_COORD_OUTBOX_H

#include <stdint.h>

#include "bus.h"
#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "dedupe.h"
#include "err.h"

struct ob_entry;

typedef struct {
    /* Borrowed for the outbox's life. bus may be NULL (unit tests): batches are then dropped. */
    ms_bus_t *bus;
    const char *prefix, *coordinator_id;
    uint32_t n_shards;
    uint64_t *epochs;         /* per shard; 0 while not ours */
    uint8_t *held;            /* per shard; 1: batches are kept, not sent (ms_outbox_hold) */
    struct ob_entry *entries; /* uthash by "<shard>:<gateway>" */
    uint64_t origin_us;       /* received_us of the request being handled, stamped on deliveries */
    uint64_t n_errors;        /* error messages sent (metrics) */
    uint64_t n_discarded;     /* deliveries held and then dropped with their shard */
    uint64_t n_batches;       /* batches handed to the bus (or dropped without one) */
    size_t n_filled;          /* entries holding deliveries: ms_outbox_flush skips the walk at 0 */
    ms_dedupe_t *dedupe;      /* borrowed, may be NULL: told of every message with an id */
} ms_outbox_t;

ms_err_t ms_outbox_init(ms_outbox_t *o, ms_bus_t *bus, const char *prefix,
                        const char *coordinator_id, uint32_t n_shards);
void ms_outbox_cleanup(ms_outbox_t *o);
/* The bus to publish on, once connected (the outbox is set up before it). */
void ms_outbox_set_bus(ms_outbox_t *o, ms_bus_t *bus);
/* The epoch stamped on the shard's batches from now on. */
void ms_outbox_set_epoch(ms_outbox_t *o, uint32_t shard, uint64_t epoch);
/* Deliveries made until the next call are answers to a request received at us (0: none). */
void ms_outbox_set_origin(ms_outbox_t *o, uint64_t received_us);
void ms_outbox_deliver(ms_outbox_t *o, uint32_t shard, const char *gateway, uint64_t session,
                       const char *peer_id, const Meshsig__V1__ServerMessage *msg,
                       uint32_t close_code);
/* The same, with the bus envelope's path fields for the direct path between
 * gateways (gateway/direct.c): where the other end of one of the session's
 * edges lives (location), or an owner path barrier; msg may be NULL with either. */
void ms_outbox_deliver_path(ms_outbox_t *o, uint32_t shard, const char *gateway, uint64_t session,
                            const char *peer_id, const Meshsig__V1__ServerMessage *msg,
                            const Meshsig__Bus__PeerLocation *location,
                            const Meshsig__Bus__PeerLocation *barrier);
/* Any delivery the caller filled in (its origin_us is set here). */
void ms_outbox_deliver_full(ms_outbox_t *o, uint32_t shard, const char *gateway,
                            Meshsig__Bus__Delivery *d);
/* The answer to a gateway's Discover: the namespace's peer ids for its request number. */
void ms_outbox_deliver_peers(ms_outbox_t *o, uint32_t shard, const char *gateway, uint64_t number,
                             const Meshsig__Bus__PeerList *peers);
void ms_outbox_flush(ms_outbox_t *o);
/* While hold is set, the shard's batches are kept instead of sent (its lease is in doubt:
 * cluster.c); clearing it lets the next flush send them. */
void ms_outbox_hold(ms_outbox_t *o, uint32_t shard, int hold);
/* Flushes the shard's batches (or, while held, discards them), forgets them and its epoch
 * and clears the hold (the shard is dropped). */
void ms_outbox_forget_shard(ms_outbox_t *o, uint32_t shard);
/* Builds and delivers an error to a session (client_id: the request's id, or NULL). */
void ms_outbox_error(ms_outbox_t *o, uint32_t shard, const char *gateway, uint64_t session,
                     const char *client_id, Meshsig__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

#endif

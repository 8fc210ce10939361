/* SPDX-License-Identifier: Apache-2.0 */
/* The bus protocol version: stamped on every bus message, checked before one is decoded.
 *
 * Every envelope in proto/bus.proto carries the sender's bus_version (field 15) as
 * (major << 16) | minor. Within a major, messages only gain fields, which older readers
 * ignore (protobuf skips unknown fields), so nodes of different releases run side by side
 * during a rolling upgrade. A different major may have changed what a field means: such a
 * message is refused before it is decoded, counted, and its sender reported (/v1/cluster,
 * meshsig_bus_refused_total), never misread.
 *
 * Frozen in every major version, so that a refused sender can still be named: field 15 of
 * every envelope (bus_version), and in Heartbeat and CoordinatorHeartbeat field 1 (the
 * sender's id) and field 14 (its release, e.g. "0.1.0").
 */
#ifndef MS_BUSVER_H
#define MS_BUSVER_H

#include <stddef.h>
#include <stdint.h>

#define MS_BUS_MAJOR 1u
/* The minor goes up by one in a release whose bus.proto gained anything (a field, a message,
 * an enum value) since the last release, so that /v1/cluster shows which nodes may send what.
 * 1.0: release 0.1.0. 1.1: the direct path (PeerLocation, DirectSignal and its REPLY,
 * Barrier), Undeliverable, Discover/PeerList, Join's grants and claim, Delivery.signal_scope,
 * ResyncReport's tree source, per-shard namespace counts, admin actions, ResyncRequest's
 * gateway_id (an ask of one gateway; a 1.0 gateway answers it as if asked with the others),
 * a moved sender's DirectSignal END (owner_too) and Delivery.retired (retired_gone), delivery
 * receipts of stored emits (Delivery.receipt_seq, Receipt), ad-hoc pairs of signals:any
 * namespaces (Delivery.pair, Delivery.unpair, DirectSignal.peerjs_type),
 * SessionReport.edge_health (a 1.0 gateway's sessions come back with their edges pending),
 * SessionReport.pairs (without them a new owner knows no ad-hoc pairs until it routes a signal),
 * ShardRequest.epoch and resend (client requests kept by their gateway until answered and sent
 * again to a shard's new owner; a 1.0 owner ignores both and applies a copy sent again),
 * ShardRequest.attempt with Delivery.received and Delivery.again (copies of a kept request
 * that got no answer, applied once by the owner; a 1.0 owner applies each copy: hence
 * coordinators are upgraded before gateways, README "Upgrading"), CoordinatorHeartbeat's
 * lease_silent_ms (shards handed only to a coordinator whose lease store answers; a 1.0
 * coordinator's heartbeats count as a working store). */
#define MS_BUS_MINOR 1u
#define MS_BUS_VERSION ((MS_BUS_MAJOR << 16) | MS_BUS_MINOR)
#define MS_BUS_VERSION_FIELD 15u

/* The first bus version whose owners apply a request once however many copies of it arrive
 * (ShardRequest.attempt, coordinator/dedupe.c) and drop a kept request stamped with an older
 * epoch than theirs (ShardRequest.epoch and resend): 1.1. A 1.0 owner applies every copy. */
#define MS_BUS_COPIES_ONCE ((1u << 16) | 1u)

/* Whether a node that stamps its messages with version (0: unknown, or older than versioning)
 * applies copies of a request once: the same major as ours, at MS_BUS_COPIES_ONCE or later. A
 * gateway sends copies of an unanswered request only to an owner of which this holds. */
static inline int ms_busver_copies_once(uint32_t version)
{
    return version >> 16 == MS_BUS_MAJOR && version >= MS_BUS_COPIES_ONCE;
}

/* A peer whose messages were refused. */
typedef struct {
    char id[64];   /* its id when it sent a heartbeat, else "" */
    char role[16]; /* "gateway" or "coordinator", from the subject */
    char release[32];
    uint32_t version; /* its bus_version; 0: absent (a node older than versioning) */
    uint64_t refused; /* messages refused from it */
    uint64_t last_ms; /* monotonic, of the last refused message */
} ms_busver_peer_t;

#define MS_BUSVER_PEERS 16

/* What a node refused; zero-initialised storage is ready. Owner thread only (the thread that
 * decodes bus messages: the coordinator's loop, the gateway's lws service thread). */
typedef struct {
    uint64_t refused;
    uint64_t last_log_ms;
    ms_busver_peer_t peers[MS_BUSVER_PEERS]; /* the most recent senders; oldest replaced */
    size_t n_peers;
} ms_busver_t;

/* Reads bus_version, and (with named) fields 1 and 14 as id and release, from the top
 * level of an encoded bus message without decoding the rest. Returns 0 if the message is
 * not well-formed protobuf at the top level. id and release are NUL-terminated, truncated
 * to their caps, and left empty when absent. */
int ms_busver_peek(const uint8_t *data, size_t len, int named, uint32_t *version, char *id,
                   size_t id_cap, char *release, size_t release_cap);

/* The check before decoding a bus message: returns 1 when its major is ours. Otherwise the
 * message is counted against its sender and logged (at most every 10 s), and 0 returned:
 * the caller drops it. role names what sent it ("gateway", "coordinator"); named: the
 * message is a heartbeat, whose fields 1 and 14 name the sender. now_ms is monotonic. */
int ms_busver_accept(ms_busver_t *bv, const char *role, int named, const uint8_t *data, size_t len,
                     uint64_t now_ms);

/* "1.0" for a bus_version. */
void ms_busver_str(uint32_t version, char *out, size_t cap);

/* The meshsig_bus_refused_total counter as Prometheus text (HELP, TYPE, sample). */
int ms_busver_metrics(const ms_busver_t *bv, char *buf, size_t cap);

#endif

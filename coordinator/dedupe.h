/* SPDX-License-Identifier: Apache-2.0 */
/* Client requests a gateway may send again: applied once, and a copy answered as the first was.
 *
 * A gateway keeps each client request with an id until its answer arrives and
 * sends a copy when none comes for a while (gateway/inflight.c): the request or
 * its answer may have been dropped by NATS (after a node loss, until a route
 * carries the subscriptions again). The owner records every such request (the
 * ShardRequest has resend set) by "<gateway> <session> <client id>" when it
 * first handles it, and the first message with that id it delivers to that
 * session (the gateway takes the same message as the answer). A copy is then
 * not handled again: it gets that answer again, or, while there is none yet
 * (an answer that waits for another peer), a Delivery.received that stops the
 * gateway's copies.
 *
 * Bounded: an answered record is kept ANSWERED_TTL_MS (longer than a gateway
 * sends copies), an unanswered one PENDING_TTL_MS (longer than a gateway keeps
 * the request), MS_DEDUPE_MAX records in all (the oldest answered, else the
 * oldest pending, go first, counted in n_evicted: a copy of an evicted request
 * would be applied again). A shard's records go with the shard: a new owner
 * applies the copies the gateways send it at its epoch (inflight.c).
 *
 * Pure: time comes in as an argument, no I/O. Loop thread only.
 */
#ifndef MS_DEDUPE_H
#define MS_DEDUPE_H

#include <stddef.h>
#include <stdint.h>

#include "client.pb-c.h"

#define MS_DEDUPE_MAX 65536
#define MS_DEDUPE_ANSWERED_TTL_MS 15000u /* a gateway's last copy goes 7.5 s after the first */
#define MS_DEDUPE_PENDING_TTL_MS 140000u

struct ms_dedupe_rec;

typedef struct {
    struct ms_dedupe_rec *by_key;     /* uthash by req_id */
    struct ms_dedupe_rec *by_pending; /* uthash by gateway, session and client id, while pending */
    struct ms_dedupe_rec *pending, *p_tail;  /* creation order */
    struct ms_dedupe_rec *answered, *a_tail; /* answer order */
    size_t n, n_pending;
    uint64_t n_again;    /* copies answered with the recorded answer */
    uint64_t n_received; /* copies answered "received": the answer was still to come */
    uint64_t n_evicted;  /* records dropped before their time (MS_DEDUPE_MAX) */
} ms_dedupe_t;

typedef enum {
    MS_DEDUPE_NEW,      /* first seen: handle it (it is recorded as pending) */
    MS_DEDUPE_PENDING,  /* a copy; the answer is still to come */
    MS_DEDUPE_ANSWERED, /* a copy; *answer is the ServerMessage given, packed */
} ms_dedupe_seen_t;

void ms_dedupe_init(ms_dedupe_t *d);
void ms_dedupe_cleanup(ms_dedupe_t *d);
/* A request req_id of (gateway, session) with client id cid, for shard, at now_ms. With
 * MS_DEDUPE_ANSWERED, *answer and *len point into the record (valid until the next call). Out of
 * memory it says MS_DEDUPE_NEW without recording: handled, at least once. */
ms_dedupe_seen_t ms_dedupe_seen(ms_dedupe_t *d, uint32_t shard, const char *req_id,
                                const char *gateway, uint64_t session, const char *cid,
                                uint64_t now_ms, const uint8_t **answer, size_t *len);
/* msg (its id set) is being delivered to (gateway, session): the answer, if that id is pending. */
void ms_dedupe_answer(ms_dedupe_t *d, const char *gateway, uint64_t session,
                      const Meshsig__V1__ServerMessage *msg, uint64_t now_ms);
/* Drops the records past their time. */
void ms_dedupe_expire(ms_dedupe_t *d, uint64_t now_ms);
/* Drops the shard's records (it is no longer ours). */
void ms_dedupe_forget_shard(ms_dedupe_t *d, uint32_t shard);

#endif

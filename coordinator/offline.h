/* SPDX-License-Identifier: Apache-2.0 */
/* Persistent emits, kept in a JetStream stream until the receiver's gateway has written them.
 *
 * JetStream calls are request/reply and would block the loop: they run on this
 * module's own instance of the JetStream worker (common/jsworker.h), on its own
 * NATS connection "meshsig-offline"; the loop queues jobs and gets fetched
 * messages back through ms_offline_drain. Jobs run in order, so a store queued
 * before a peer's join is visible to the fetch that join triggers.
 *
 * Delivery is at least once: a stored emit is handed to the receiver's
 * gateway with its stream sequence and deleted only when that gateway's
 * receipt (it wrote the frame to the client's socket) comes back
 * (ms_offline_delete). Until then it is delivered again at the peer's next
 * join, resume or takeover rebuild; clients drop a msgId seen twice.
 */
#ifndef MS_OFFLINE_H
#define MS_OFFLINE_H

#include <stddef.h>
#include <stdint.h>

#include "client.pb-c.h"
#include "err.h"
#include "natsauth.h"

typedef struct ms_offline ms_offline_t;
struct ms_coord;

typedef struct {
    const char *nats_urls;
    const ms_nats_auth_t *auth; /* NULL: none */
    const char *prefix;
    long max_msgs; /* per peer; older ones are dropped first */
    long max_age_s;
    long replicas; /* JetStream replicas of the stream; 0 means 1 */
} ms_offline_config_t;

/* wake is called from the worker thread when results are ready (thread-safe). */
ms_err_t ms_offline_create(const ms_offline_config_t *cfg, void (*wake)(void *), void *ud,
                           ms_offline_t **out);
void ms_offline_destroy(ms_offline_t *o);
/* Loop thread. Stores emit (with from, to, event, data, msgId set) for peer in ns;
 * retried (deduplicated by msgId) while JetStream elects leaders. Once
 * JetStream has acknowledged it (or the retries ran out), ms_offline_drain
 * reports the outcome for emit->from and cid (the sender's request id, may
 * be NULL): that is when the sender may be told it is kept. present: the
 * receiver is a member now; the outcome brings the emit back to deliver. */
ms_err_t ms_offline_store(ms_offline_t *o, const char *ns, const char *peer,
                          const Meshsig__V1__Emit *emit, const char *cid, int present);
/* Loop thread. Queues a fetch of everything stored for peer in ns (nothing
 * when no message is known to wait for it). */
void ms_offline_fetch(ms_offline_t *o, const char *ns, const char *peer);
/* Loop thread. The receiver's gateway wrote the stored emit with stream
 * sequence seq (bus Receipt): it is deleted from the stream. */
void ms_offline_delete(ms_offline_t *o, uint64_t seq);
/* Loop thread. Reloads which peers have messages waiting, stored by any
 * coordinator: call it when this coordinator takes a shard over. Until the
 * worker has reloaded the list, every join looks. */
void ms_offline_refresh(ms_offline_t *o);
/* A fetched emit for peer in ns, with its stream sequence: returns 0 when
 * the peer is not (any longer) a member here (the emit stays for its next
 * join, or the next owner's rebuild), or when the emit's own `to` and
 * stored_ns name somebody else (a subject is a hash: it stays, untouched,
 * for its addressee). Whoever delivers it asks the gateway
 * for a receipt of seq and calls ms_offline_delete when it comes. */
typedef int (*ms_offline_deliver_fn)(const char *ns, const char *peer,
                                     const Meshsig__V1__Emit *emit, uint64_t seq, void *ud);
/* The outcome of a store: ok when JetStream has it, for sender and cid.
 * For a store made with present, emit (else NULL) is the emit to deliver to
 * peer, and seq its stream sequence (0 when it was not stored). */
typedef void (*ms_offline_stored_fn)(const char *ns, const char *sender, const char *cid, int ok,
                                     const char *peer, const Meshsig__V1__Emit *emit, uint64_t seq,
                                     void *ud);
/* Loop thread. Calls deliver for each fetched emit, in order, and stored for
 * each finished store, in the worker's order. */
void ms_offline_drain(ms_offline_t *o, ms_offline_deliver_fn deliver, ms_offline_stored_fn stored,
                      void *ud);
/* Loop thread, every tick: takes the notes of stores made anywhere (offline.c), and makes
 * the fetches joins skipped just before they came. */
void ms_offline_tick(ms_offline_t *o);
/* Whether the stream is available (NATS up and the stream created). */
int ms_offline_ready(ms_offline_t *o);

#endif

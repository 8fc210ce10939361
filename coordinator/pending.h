/* SPDX-License-Identifier: Apache-2.0 */
/* Requests that wait for an answer: an emit's ack (emit.c) and a service call's reply
 * (service.c), each with a deadline.
 *
 * ms_pending_tick expires them; when the peer who must answer leaves, the one
 * who waits is told at once. Loop thread only.
 */
#ifndef MS_COORD_PENDING_H
#define MS_COORD_PENDING_H

#include <stdint.h>

#include "namespace.h"

typedef enum { MS_PENDING_ACK = 0, MS_PENDING_CALL } ms_pending_kind_t;

/* A peer with waits in one namespace, as the one who waits or the one who must answer: its
 * own waits are all a leave of it touches (two lists), never the namespace's. */
typedef struct ms_pending_party {
    struct ms_pending *head[2]; /* MS_PENDING_FROM / _TO: oldest first, head->link.prev: tail */
    /* Waits it has, at most MS_PENDING_MAX_PER_PEER: without a bound per peer, one session at
     * its message rate could hold ~24,000 acks for 120 s each, up to the namespace's 100,000. */
    unsigned n_from;
    ms_ns_t *ns;
    UT_hash_handle hh;
    char id[]; /* the peer id */
} ms_pending_party_t;

enum { MS_PENDING_FROM = 0, MS_PENDING_TO = 1 };

typedef struct ms_pending {
    char *key; /* ack: "<sender>\x1f<ackId>"; call: the server's call id */
    uint8_t kind;
    uint32_t due;                  /* its place in the coordinator's deadlines (due[]) */
    ms_pending_party_t *from, *to; /* who waits, who must answer (->id) */
    char *orig_id;                 /* the requester's ackId / callId */
    struct {
        struct ms_pending *prev, *next;
    } link[2]; /* in from's and to's list (MS_PENDING_FROM / _TO) */
    UT_hash_handle hh;
} ms_pending_t;

/* A deadline: (due_ms << MS_PENDING_SEQ_BITS) | the low bits of the order the waits were made
 * in, so that waits due in the same ms expire in that order (but for two that straddle a wrap
 * of those bits, every 2^20 waits). Monotonic ms fit in the other 44 bits (557 years). */
#define MS_PENDING_SEQ_BITS 20
typedef struct {
    uint64_t key;
    ms_pending_t *p;
} ms_pending_due_t;

/* Coordinator-wide: every wait's deadline in a binary min-heap, so that the 50 ms tick takes
 * what is due (O(log n) each) and never scans namespaces. */
typedef struct {
    ms_pending_due_t *due;
    uint32_t n_due, cap_due;
    uint32_t seq;
    uint64_t n_timeouts;
    uint64_t n_left; /* waits failed because the one who must answer left */
} ms_pending_clock_t;

#define MS_PENDING_MAX_TIMEOUT_MS 120000u /* a client's timeoutMs above it is BAD_REQUEST */
#define MS_PENDING_MAX_PER_NS 100000u     /* acks and calls waiting in one namespace */
#define MS_PENDING_MAX_PER_PEER 1024u     /* acks and calls one peer waits for at once */

/* A client's timeout in ms (0: the default) into *out; 0 when it is over the maximum (the
 * caller refuses the request, naming MS_PENDING_MAX_TIMEOUT_MS: nothing is clamped). */
int ms_pending_timeout(uint32_t requested_ms, uint32_t *out);
/* The outcome message of an ack (kind MS_PENDING_ACK: `ack` from peer) or a call (`service.reply`)
 * that failed, keyed by the requester's orig_id, to w: the same shape whatever the cause. */
void ms_pending_outcome_error(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *w, int kind,
                              const char *orig_id, const char *peer, Meshsig__V1__ErrorCode code,
                              const char *text);
/* Adds an ack wait under key. NULL when out of memory or over the namespace's or the
 * waiting peer's limit. */
ms_pending_t *ms_pending_add_ack(ms_coord_t *c, ms_ns_t *ns, const char *key, const char *from,
                                 const char *to, const char *ack_id, uint32_t timeout_ms);
/* Adds a call wait under a fresh server-made id (its key). NULL as above. */
ms_pending_t *ms_pending_add_call(ms_coord_t *c, ms_ns_t *ns, const char *from, const char *to,
                                  const char *call_id, uint32_t timeout_ms);
ms_pending_t *ms_pending_find(ms_ns_t *ns, const char *key);
/* The waits of peer id in ns (NULL: none), and how many ns has in all. */
const ms_pending_party_t *ms_pending_party(ms_ns_t *ns, const char *id);
size_t ms_pending_count(ms_ns_t *ns);
/* Removes p from its namespace and frees it: it was answered. */
void ms_pending_done(ms_ns_t *ns, ms_pending_t *p);
/* Expires what is past its deadline. */
void ms_pending_tick(ms_coord_t *c, uint64_t now_ms);

#endif

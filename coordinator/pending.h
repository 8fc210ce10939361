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

typedef struct ms_pending {
    char *key; /* ack: "<sender>\x1f<ackId>"; call: the server's call id */
    uint8_t kind;
    char *from;    /* who waits */
    char *to;      /* who must answer */
    char *orig_id; /* the requester's ackId / callId */
    uint64_t deadline_ms;
    UT_hash_handle hh;
} ms_pending_t;

/* Coordinator-wide: so that the 50 ms tick scans namespaces only when something is due. */
typedef struct {
    uint64_t next_deadline_ms; /* earliest deadline (0: none) */
    uint64_t n_timeouts;
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
/* Removes p from its namespace and frees it: it was answered. */
void ms_pending_done(ms_ns_t *ns, ms_pending_t *p);
/* Expires what is past its deadline. */
void ms_pending_tick(ms_coord_t *c, uint64_t now_ms);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Signals held for a peer that has not joined yet (policy holdMs: PeerJS's queue and EXPIRE).
 *
 * A PeerJS client may send an offer to an id before that peer connects; PeerJS
 * server keeps such messages and either hands them over when the peer arrives
 * or answers the sender EXPIRE after its timeout. The owner of the namespace is
 * the one place that sees both the signal and the join, so it holds them here:
 * in memory, in arrival order, bounded in count. A takeover of the shard loses
 * what was held (the senders then get nothing, as for a lost signal).
 *
 * Loop thread only.
 */
#ifndef MS_HOLD_H
#define MS_HOLD_H

#include <stddef.h>
#include <stdint.h>

#include "client.pb-c.h"
#include "namespace.h"

struct ms_held;

/* In struct ms_coord. */
typedef struct {
    struct ms_held *head, *tail; /* deadline order */
    size_t n;
} ms_hold_t;

void ms_hold_init(ms_hold_t *h);
void ms_hold_cleanup(ms_hold_t *h);
/* Keeps sig (sig->to is absent from ns) from member `from` until ns's holdMs
 * passes; cid is the client's request id, echoed on the PEER_NOT_FOUND that
 * answers it then. Full or out of memory: answers PEER_NOT_FOUND at once. */
void ms_hold_signal(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *from, const char *cid,
                    const Meshsig__V1__Signal *sig);
/* Its member_joined delivers what was held for the new member, in order. */
extern const ms_ns_hooks_t ms_hold_hooks;
/* Answers PEER_NOT_FOUND for every held signal past its deadline (monotonic ms). */
void ms_hold_tick(ms_coord_t *c, uint64_t mono_ms);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* The member lifecycle: join (resume, replace, the waiting line), leave, and the resume grace
 * period of peers whose gateway went silent. Loop thread only. */
#ifndef MS_COORD_MEMBER_H
#define MS_COORD_MEMBER_H

#include <stddef.h>
#include <stdint.h>

#include "bus.pb-c.h"
#include "detached.h"
#include "gwmembers.h"
#include "namespace.h"

typedef struct {
    /* Peers detached (waiting out a resume grace period), oldest first; entries of peers that
     * resumed or left meanwhile are dropped when they come due (detached.h). */
    ms_detq_t detached;
    /* A detached peer could not be queued (out of memory): the liveness tick walks every
     * member until none is detached. */
    uint8_t detached_unqueued;
    ms_gwm_t by_gw;          /* every member, by its gateway (gwmembers.h) */
    uint64_t n_lost_visited; /* members looked at by gateway losses (tests: only their own) */
    uint64_t next_liveness_ms;
    uint64_t n_joins, n_leaves;
    uint64_t n_cap_ns, n_cap_peers; /* joins refused at --max-namespaces, a namespace's cap */
} ms_members_t;

/* A join request for shard (checked to be the namespace's shard). */
void ms_member_join(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req);
/* How long a peer's previous session (it resumed on another) may still have
 * signals routed as the peer's when its leave does not come (its gateway died). */
#define MS_MEMBER_PREV_MS 10000u
/* Whether gateway/session is m's previous session (bus Delivery.retired), and
 * (now_ms not 0) still within MS_MEMBER_PREV_MS. */
int ms_member_is_prev(const ms_member_t *m, const char *gateway, uint64_t session, uint64_t now_ms);
/* A leave request: only the session holding the id may end it; the leave of
 * a peer's previous session tells its neighbours' gateways (Delivery.retired). */
void ms_member_leave_request(ms_coord_t *c, const Meshsig__Bus__ShardRequest *req);
/* Removes m from ns: repair events to the others, peerLeft to its former neighbours; frees m,
 * admits a waiting join, and destroys ns when it empties. */
void ms_member_leave(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *reason);
/* An operator removes m: its session is told KICKED with reason and closed (4002), then it
 * leaves as above (its neighbours see peerLeft "kicked"). */
void ms_member_kick(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *reason);
/* An operator closes ns: every member and waiting join is told NAMESPACE_CLOSED with reason
 * and closed (4003), and ns is destroyed. Returns how many were told. */
size_t ms_member_close_ns(ms_coord_t *c, ms_ns_t *ns, const char *reason);
/* A peer of a silent gateway that is heard again: it no longer waits to leave. */
void ms_member_reattach(ms_member_t *m);
/* Ends a gateway's session that holds no member here (a stale copy of a peer that lives on
 * elsewhere: REPLACED, closed 4001; or one that cannot be placed: code, closed 1013 so that the
 * client joins again). */
void ms_member_end_session(ms_coord_t *c, uint32_t shard, const char *gateway, uint64_t session,
                           const char *peer_id, Meshsig__V1__ErrorCode code, const char *why);
/* Detaches the peers of gateways gone silent; peers whose grace ran out leave. */
void ms_member_liveness(ms_coord_t *c, uint64_t now_ms);
/* Frees c->members (at shutdown). */
void ms_member_cleanup(ms_coord_t *c);
/* The namespace's waiting line (ns->mods->waiting). */
extern const ms_ns_hooks_t ms_member_hooks;

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Backends over NATS (proto/backend.proto, README "Backends"): server processes that take part
 * in a namespace as a peer does, without a WebSocket.
 *
 * A backend instance attached to a namespace has a peer face, an ms_member_t
 * whose id is the instance id and whose `backend` field points back here. It
 * is not in ns->members and has no topology handle (MS_PEER_NONE): nobody
 * connects to it and no signal reaches it. It is in ns->mods->faces (namespace.h), and the
 * messaging modules take it as they take any member: a service provider
 * among the peers (round robin), a topic subscriber, the target or sender of
 * an emit and its ack, a caller. What they deliver to it goes out on
 * <prefix>.backend.v1.to.<instance> instead of to a gateway (ms_deliver calls
 * the face's deliver, set here: namespace.c does not call this module).
 *
 * State lives with the shard's owner only, in memory. The backend re-sends
 * its whole state (Attach) every heartbeat, so a new owner learns it within
 * one heartbeat (at once when the backend reacts to Owner); an owner that
 * hears nothing for the timeout withdraws the backend as if it had left.
 * Loop thread only.
 */
#ifndef MS_COORD_BACKEND_H
#define MS_COORD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "client.pb-c.h"
#include "namespace.h"

typedef struct {
    uint64_t n_requests, n_bad, n_retries; /* requests; undecodable or refused; answered again */
    uint64_t n_attached, n_expired;        /* backends that attached anew; withdrawn for silence */
    uint64_t next_sweep_ms;                /* monotonic */
} ms_backends_t;

/* <prefix>.backend.v1.info: answers Info on reply (nothing without one). */
void ms_backend_info(ms_coord_t *c, const char *reply);
/* <prefix>.backend.v1.shard.<n>: a Request for shard (cluster.c has checked that we serve
 * it). reply: the NATS reply subject, or NULL. */
void ms_backend_request(ms_coord_t *c, uint32_t shard, const char *reply, const uint8_t *data,
                        size_t len);
/* The same request for a shard being rebuilt: refused UNAVAILABLE so the backend retries. */
void ms_backend_request_later(ms_coord_t *c, uint32_t shard, const char *reply, const uint8_t *data,
                              size_t len);
/* Backends attached to ns, and as the admin API shows them:
 * [{"id", "services": [...], "subscriptions": [...], "events"}]. */
size_t ms_backend_count(const ms_ns_t *ns);
json_t *ms_backend_json(const ms_ns_t *ns);
/* Withdraws backends silent for longer than the timeout (monotonic ms). */
void ms_backend_tick(ms_coord_t *c, uint64_t now_ms);
/* Tells the backends that this coordinator now serves shard (Owner). */
void ms_backend_announce_owner(ms_coord_t *c, uint32_t shard, uint64_t epoch);
/* Events to backends when peers join and leave; frees ns->mods->backends. */
extern const ms_ns_hooks_t ms_backend_hooks;

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Peer messaging inside a namespace: the client requests that are not signals, routed to the
 * module that owns each (emit.c, room.c, service.c, topic.c, stream.c; pending.c keeps what
 * waits for an answer).
 *
 * Everything runs on the coordinator's loop for the namespace's owner, so the
 * state needs no locks. Ids chosen by clients are never trusted across peers:
 * a service call is forwarded under a server-made id, an ack is matched on
 * (sender, ackId) and checked against the peer that received the emit, and a
 * stream is named "<opener>/<streamId>" towards its receiver.
 */
#ifndef MS_COORD_MESSAGING_H
#define MS_COORD_MESSAGING_H

#include <stdint.h>
#include <string.h>

#include "client.pb-c.h"
#include "namespace.h"

#define MS_MSG_MAX_NAME 128 /* room, service and stream names */

/* Counters (not on /metrics yet); each module writes only its own field. */
typedef struct {
    uint64_t n_emits, n_acks; /* emit.c */
    /* emit.c: stored emits handed to a gateway with a receipt asked for, and
     * receipts (written stored emits, deleted from the stream) */
    uint64_t n_stored_sent, n_stored_receipts;
    /* emit.c: fetched stored emits left in the stream because their own `to` or
     * namespace is not the peer whose subject they were read from (a hash
     * collision, chosen or not, or a bug), and when that was last logged */
    uint64_t n_stored_misaddressed;
    uint64_t misaddressed_logged_ms;
    uint64_t n_room_emits;   /* room.c */
    uint64_t n_calls;        /* service.c */
    uint64_t n_publishes;    /* topic.c */
    uint64_t n_stream_bytes; /* stream.c */
    uint64_t n_cap_streams;  /* stream.c: opens refused at --max-streams */
} ms_msg_stats_t;

/* Routes a client request of member `from` (any but signal, position, rtt). */
void ms_msg_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *client_id,
                   Meshsig__V1__ClientMessage *cm);

static inline int ms_msg_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= MS_MSG_MAX_NAME;
}

/* The modules: each handles its requests and keeps its state through its hooks. */
void ms_emit_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                    Meshsig__V1__Emit *em);
/* Delivers the persistent emits offline.c fetched for peers that joined. */
void ms_emit_offline_drain(ms_coord_t *c);
/* A member restored by a takeover rebuild: fetch what was stored for it. */
void ms_emit_member_restored(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);
/* A member resumed or replaced on another session: what its old one may not have
 * written (stored emits without a receipt) is fetched again. */
void ms_emit_member_resumed(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);
/* bus Receipt: a gateway wrote these stored emits (or its client acked them);
 * they leave the stream. */
void ms_emit_receipt(ms_coord_t *c, const Meshsig__Bus__Receipt *r);
/* Loop tick (monotonic ms): stored emits handed out without a receipt for a
 * while are fetched again for their peer (redeliver.h). */
void ms_emit_tick(ms_coord_t *c, uint64_t now);
void ms_emit_ack(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                 Meshsig__V1__Ack *ack);
void ms_room_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                    Meshsig__V1__Room *room);
void ms_service_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                       Meshsig__V1__Service *svc);
void ms_topic_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                     Meshsig__V1__Topic *t);
void ms_stream_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *cid,
                      Meshsig__V1__Stream *st);
extern const ms_ns_hooks_t ms_emit_hooks, ms_room_hooks, ms_service_hooks, ms_topic_hooks,
    ms_pending_hooks, ms_stream_hooks;

/* For members that declare their registrations at once (backend.c): service.c and topic.c
 * keep them exactly as a peer's register and subscribe do. Each is a no-op when it is
 * already so; ms_topic_subscribe takes a pattern ms_topic_pattern_ok accepted. */
ms_err_t ms_service_provide(ms_ns_t *ns, const char *name, ms_member_t *m);
void ms_service_withdraw(ms_ns_t *ns, const char *name, ms_member_t *m);
int ms_topic_pattern_ok(const char *pattern);
ms_err_t ms_topic_subscribe(ms_ns_t *ns, ms_member_t *m, const char *pattern);
void ms_topic_unsubscribe(ms_ns_t *ns, const ms_member_t *m, const char *pattern);

/* topic.c: whether topic is a topic one may publish on (dot-separated tokens, no wildcards). */
int ms_topic_name_ok(const char *topic);
/* topic.c: delivers data (borrowed) on topic to every subscriber of ns once, from `from` (a
 * peer id; "" or NULL: the server, e.g. an operator). Returns the number of subscribers. */
size_t ms_topic_publish(ms_coord_t *c, ms_ns_t *ns, const char *from, const char *topic,
                        Meshsig__V1__Value *data);
/* room.c: how many members room `name` has (0 when there is no such room). */
size_t ms_room_size(const ms_ns_t *ns, const char *name);

#endif

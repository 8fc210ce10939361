/* SPDX-License-Identifier: Apache-2.0 */
/* The coordinator object: one sub-struct per module, each written only by the module named
 * next to it (the others read it or call the module). All of it belongs to the loop thread.
 *
 * Modules, each above the ones it calls (no cycles):
 *   coordinator.c   loop, subscriptions, dispatch by subject (subject.h)
 *   admin.c         HTTP routes, /metrics  -> admin_cluster.c -> admin_action.c (operator
 *                   actions, -> member.c, topic.c, ban.c), admin_view.c
 *   cluster.c       coordinators, shard leases (lease.c)  -> resync.c, gwsync.c (gateways
 *                   that have not reported, asked; merge.c merges their answers -> resync.c)
 *   shard.c         a shard's requests     -> member.c, messaging.c
 *   messaging.c     routes to emit.c room.c service.c topic.c stream.c (-> pending.c)
 *   member.c        join, leave, resume, waiting line, silent gateways -> gateways.c
 *   backend.c       backends over NATS: attach, their requests -> messaging.c
 *   edges.c         edge reports and repair, reparent, tree source notices
 *   namespace.c     namespaces, handles, diffs as events, applying policies, hooks
 *   policies.c      which policy a namespace gets (overrides, --policy-file)
 *   outbox.c        batched deliveries to gateways
 * A namespace's messaging state is reached only through the hooks its modules
 * register (namespace.h), listed once in coordinator.c.
 */
#ifndef MS_COORD_INTERNAL_H
#define MS_COORD_INTERNAL_H

#include <stdint.h>
#include <event2/event.h>

#include "admin.h"
#include "backend.h"
#include "ban.h"
#include "bus.h"
#include "busver.h"
#include "cluster.h"
#include "coordinator.h"
#include "dedupe.h"
#include "edges.h"
#include "gateways.h"
#include "gwsync.h"
#include "hold.h"
#include "mailbox.h"
#include "member.h"
#include "merge.h"
#include "messaging.h"
#include "namespace.h"
#include "pairs.h"
#include "offline.h"
#include "p2p.h"
#include "outbox.h"
#include "pending.h"
#include "redeliver.h"
#include "policies.h"
#include "resync.h"
#include "shard.h"
#include "version.h"

/* coordinator.c: the event loop and what wakes it. */
typedef struct {
    struct event_base *base;
    struct event *sigint_ev, *sigterm_ev, *sighup_ev;
    struct event *tick_ev;
    struct event *offline_ev, *lease_ev;
    ms_mailbox_t *inbox; /* NULL: the bus delivers on the loop (ms_bus_opts_t.on_msg) */
    char probe_subject[200];
    int ready;          /* a probe came back through our subscriptions: the server has them */
    ms_busver_t busver; /* nodes of another bus major whose messages were refused */
} ms_loop_t;

struct ms_coord {
    /* Set at creation, read-only after. */
    const ms_coord_config_t *cfg;
    char id[96];
    uint64_t started_ms;   /* wall clock, shown to the other coordinators */
    ms_bus_t *bus;         /* coordinator.c connects it; anyone publishes */
    ms_offline_t *offline; /* coordinator.c creates it; emit.c uses it */
    /* One per module. */
    ms_loop_t loop;             /* coordinator.c */
    ms_outbox_t outbox;         /* outbox.c */
    ms_ns_reg_t ns;             /* namespace.c */
    ms_policies_t policies;     /* policies.c */
    ms_members_t members;       /* member.c */
    ms_edges_t edges;           /* edges.c */
    ms_gws_t gws;               /* gateways.c */
    ms_route_t route;           /* shard.c */
    ms_pending_clock_t pending; /* pending.c */
    ms_msg_stats_t msg;         /* messaging modules, a field each */
    ms_redeliver_t redeliver;   /* emit.c: stored emits handed out without a receipt yet */
    ms_cluster_t cluster;       /* cluster.c */
    ms_admin_t admin;           /* admin.c, admin_cluster.c */
    ms_hold_t hold;             /* hold.c */
    ms_dedupe_t dedupe;         /* dedupe.c: requests a gateway may send again (shard.c) */
    ms_backends_t backends;     /* backend.c */
    ms_bans_t bans;             /* ban.c: written by admin_action.c, read by member.c */
};

/* The state every module needs, without a loop, NATS or HTTP: what unit tests
 * build a coordinator from (bus, offline and lease stay NULL). id is copied. */
ms_err_t ms_coord_core_init(ms_coord_t *c, const ms_coord_config_t *cfg, const char *id);
void ms_coord_core_cleanup(ms_coord_t *c);
/* Loop thread: one bus message (subject, reply subject or NULL, payload) into its handler, as the
 * subscriptions deliver it. The cnats callback is a wrapper; the fuzz target
 * (tests/fuzz/fuzz_coord_bus.c) calls it on a core-only coordinator. */
void ms_coord_bus_in(ms_coord_t *c, const char *subject, const char *reply, const uint8_t *data,
                     size_t len);

/* Wall-clock milliseconds (ack and call deadlines, gateway and member liveness). */

#endif

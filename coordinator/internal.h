/* SPDX-License-Identifier: Apache-2.0 */
/* The coordinator's internal types, shared by its modules. All of it belongs to the loop thread. */
#ifndef MS_COORD_INTERNAL_H
#define MS_COORD_INTERNAL_H

#include <stdint.h>
#include <event2/event.h>
#include <event2/http.h>
#include <uthash.h>

/* Most namespaces are small (a call of 2 peers), and each has its own member
 * table: uthash's first bucket array of 32 (512 B) was a third of the
 * coordinator's memory per peer. Tables still double as chains pass
 * HASH_BKT_CAPACITY_THRESH, so large namespaces only pay a few more expansions. */
#undef HASH_INITIAL_NUM_BUCKETS
#undef HASH_INITIAL_NUM_BUCKETS_LOG2
#define HASH_INITIAL_NUM_BUCKETS 4U
#define HASH_INITIAL_NUM_BUCKETS_LOG2 2U

#include "bus.h"
#include "busver.h"
#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "coordinator.h"
#include "mailbox.h"
#include "lease.h"
#include "offline.h"
#include "policy.h"
#include "topology.h"
#include "version.h"
#include "vivaldi.h"

/* A peer in a namespace. */
typedef struct ms_member {
    char *id;
    ms_peer_t handle;
    const char *gateway; /* gateway id (ms_intern: one copy per gateway) */
    uint64_t session;    /* the gateway's session id */
    ms_topo_pos_t pos;
    Meshsig__V1__Position *client_pos; /* as the client gave it (owned), or NULL */
    uint8_t *metadata;                 /* packed meshsig.v1.Struct handed to neighbours, or NULL */
    size_t metadata_len;
    uint64_t detached_ms; /* its gateway died at this time; 0 while attached */
    /* Network coordinate from reported RTTs (ms_member_viv). NULL until the
     * first report that involves this peer: until then it is the fresh
     * coordinate ms_vivaldi_init(pos.key) gives, at the origin. */
    ms_vivaldi_t *viv;
    UT_hash_handle hh; /* by id */
} ms_member_t;

/* Messaging state (messaging.c). */
typedef struct ms_room {
    char *name;
    struct ms_member **members;
    size_t n, cap;
    UT_hash_handle hh;
} ms_room_t;

typedef struct ms_service {
    char *name;
    struct ms_member **providers;
    size_t n, cap, next; /* next: round-robin cursor */
    UT_hash_handle hh;
} ms_service_t;

typedef struct ms_sub {
    struct ms_member *member;
    char *pattern;
} ms_sub_t;

typedef enum { MS_PENDING_ACK = 0, MS_PENDING_CALL } ms_pending_kind_t;

/* An emit waiting for its ack, or a service call waiting for its reply. */
typedef struct ms_pending {
    char *key; /* ack: "<sender>\x1f<ackId>"; call: the server's call id */
    uint8_t kind;
    char *from;    /* who waits */
    char *to;      /* who must answer */
    char *orig_id; /* the requester's ackId / callId */
    uint64_t deadline_ms;
    UT_hash_handle hh;
} ms_pending_t;

typedef struct ms_stream {
    char *key; /* "<opener>/<streamId>" */
    char *opener, *receiver;
    uint64_t credit_to_receiver; /* bytes the opener may still send */
    uint64_t credit_to_opener;   /* bytes the receiver may still send */
    UT_hash_handle hh;
} ms_stream_t;

/* A join waiting for a place in a full namespace ("overflow":"wait"). */
typedef struct ms_waiter {
    struct ms_waiter *next;
    char *id, *gateway, *client_id;
    uint64_t session;
    uint8_t *hello; /* packed meshsig.v1.Hello */
    size_t hello_len;
} ms_waiter_t;

typedef struct ms_ns {
    char *name;
    uint32_t shard;
    ms_policy_t policy;
    ms_topo_t *engine;
    ms_member_t *members; /* uthash by id */
    ms_member_t **by_handle;
    size_t n_handles;       /* slots in by_handle */
    uint32_t *free_handles; /* min-heap */
    size_t n_free, cap_free;
    uint32_t next_handle;
    ms_room_t *rooms;
    ms_service_t *services;
    ms_sub_t *subs;
    size_t n_subs, cap_subs;
    ms_pending_t *pending;
    ms_stream_t *streams;
    uint64_t next_call;
    ms_waiter_t *waiting, *waiting_tail;
    size_t n_waiting;
    uint64_t next_tick_ms; /* engines with periodic work (spray shuffles) */
    UT_hash_handle hh;
} ms_ns_t;

/* Policies set through the admin API, kept when a namespace empties. */
typedef struct ms_policy_entry {
    char *ns;
    ms_policy_t policy;
    UT_hash_handle hh;
} ms_policy_entry_t;

/* A gateway as seen through its heartbeats. */
typedef struct ms_gw_info {
    char *id;
    uint64_t last_seen_ms, started_ms;
    uint32_t sessions;
    int dead;
    char release[32];     /* its meshsig release, from the heartbeat */
    uint32_t bus_version; /* its bus protocol version (busver.h) */
    uint64_t bus_refused; /* messages it refused from nodes of another bus major */
    UT_hash_handle hh;
} ms_gw_info_t;

typedef struct ms_outbox ms_outbox_t;

/* Another coordinator as seen through its heartbeats (cluster.c). */
typedef struct ms_coord_peer {
    char *id;
    char *admin;
    uint64_t last_seen_ms; /* monotonic */
    uint64_t started_ms;
    uint32_t *shards; /* what it said it serves, with epochs */
    uint64_t *epochs;
    size_t n_shards;
    int alive;
    char release[32];     /* its meshsig release */
    uint32_t bus_version; /* its bus protocol version (busver.h) */
    UT_hash_handle hh;
} ms_coord_peer_t;

typedef enum {
    MS_SHARD_FREE = 0,   /* not ours */
    MS_SHARD_CLAIMING,   /* a claim is with the lease worker */
    MS_SHARD_REBUILDING, /* lease held, takeover resync running; requests wait */
    MS_SHARD_OWNED,      /* lease held, serving */
} ms_shard_state_t;

/* A request that arrived while its shard was being rebuilt (a copy of the bytes). */
typedef struct ms_queued {
    struct ms_queued *next;
    size_t len;
    uint8_t data[];
} ms_queued_t;

typedef struct ms_resync ms_resync_t;

/* An admin request waiting for the other coordinators' views (admin_cluster.c). */
typedef struct ms_admin_pending ms_admin_pending_t;

/* This coordinator's view of one shard. Times are monotonic (ms_lease_now_ms). */
typedef struct ms_shard {
    uint8_t state;        /* ms_shard_state_t */
    uint8_t renewing;     /* a renewal is with the worker */
    uint8_t mine;         /* rendezvous hashing picks this coordinator */
    uint64_t gen;         /* bumped when the shard is dropped: late worker results are ignored */
    uint64_t epoch;       /* the revision of the claim: stamped on every batch */
    uint64_t rev;         /* the last revision written, for compare-and-set */
    uint64_t valid_until; /* serve until then: 2/3 of the lease after the last write was sent */
    uint64_t next_renew;
    uint64_t next_claim;
    ms_queued_t *queue, *queue_tail; /* requests held during the rebuild */
    size_t n_queued;
    ms_resync_t *resync;
} ms_shard_t;

struct ms_coord {
    const ms_coord_config_t *cfg;
    char id[96];
    struct event_base *base;
    struct event *wake_ev;
    struct event *again_ev; /* re-runs the drain in the next loop turn */
    struct event *sigint_ev, *sigterm_ev;
    struct event *tick_ev;
    struct evhttp *http;
    ms_bus_t *bus;
    ms_mailbox_t *inbox;
    ms_ns_t *namespaces;         /* uthash by name */
    ms_policy_entry_t *policies; /* uthash by ns */
    struct ms_policy_rules *rules; /* --policy-file, or NULL (policies.c) */
    struct event *sighup_ev;       /* reloads the policy file */
    uint64_t n_policy_reloads, n_policy_reload_failures;
    char policy_error[512]; /* why the last load failed, "" after a good one */
    ms_gw_info_t *gateways;      /* uthash by id */
    uint64_t next_liveness_ms;
    ms_outbox_t *outbox;
    ms_offline_t *offline; /* persistent emits (JetStream) */
    struct event *offline_ev;
    ms_topo_diff_t diff; /* scratch */
    uint64_t origin_us;  /* received_us of the request being handled */
    /* So that the 50 ms tick touches namespaces only when there is work. */
    uint64_t next_deadline_ms; /* earliest pending ack/call deadline (0: none) */
    size_t n_tick_ns;          /* namespaces whose engine has periodic work */
    size_t n_detached;         /* peers waiting out a resume grace period */
    uint64_t started_ms;
    /* Cluster membership and shard ownership (cluster.c, lease.c, resync.c). */
    ms_lease_t *lease;
    struct event *lease_ev;
    ms_shard_t *shards;      /* cfg->shards entries */
    ms_coord_peer_t *coords; /* other coordinators, uthash by id */
    uint64_t mono_started_ms;
    uint64_t next_heartbeat_ms;
    uint64_t settle_until_ms; /* no claims before: first learn who else is alive */
    int live_changed;
    int stopping;
    uint64_t n_not_owner, n_queued_dropped, n_claims, n_losses, n_handoffs;
    char probe_subject[200];
    int ready;          /* a probe came back through our subscriptions: the server has them */
    ms_busver_t busver; /* nodes of another bus major whose messages were refused */
    /* Admin queries to the other coordinators (admin_cluster.c). */
    ms_admin_pending_t *admin_pending; /* uthash by query id */
    uint64_t admin_next_query;
    char admin_reply_subject[200];
    /* counters for /metrics */
    uint64_t n_requests, n_joins, n_leaves, n_signals, n_errors, n_bad_requests;
    uint64_t n_emits, n_acks, n_timeouts, n_room_emits, n_calls, n_publishes, n_stream_bytes;
};

/* shard.c: the one place a shard's requests are handled. */
void ms_shard_handle(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req);

void ms_ns_waiting_cleanup(ms_ns_t *ns);
/* Runs engines' periodic work that is due and sends its diffs. */
void ms_ns_tick_all(ms_coord_t *c, uint64_t now_ms);

/* namespace.c */
ms_ns_t *ms_ns_find(ms_coord_t *c, const char *name);
ms_err_t ms_ns_get(ms_coord_t *c, const char *name, ms_ns_t **out);
void ms_ns_destroy(ms_coord_t *c, ms_ns_t *ns);
void ms_ns_destroy_all(ms_coord_t *c);
ms_member_t *ms_ns_member(ms_ns_t *ns, const char *id);
ms_err_t ms_ns_alloc_handle(ms_ns_t *ns, ms_member_t *m);
void ms_ns_free_handle(ms_ns_t *ns, ms_member_t *m);
void ms_member_free(ms_member_t *m);
/* m's network coordinate, created fresh on first use; NULL when out of memory. */
ms_vivaldi_t *ms_member_viv(ms_member_t *m);
/* The position of a peer that has no RTT reports yet under network positioning. */
ms_topo_pos_t ms_member_network_origin(const ms_member_t *m);
/* Sends the connect/disconnect events of diff to both ends of each edge.
 * offers: hello.offers of the joining peer `joiner` (may be NULL). */
void ms_ns_apply_diff(ms_coord_t *c, ms_ns_t *ns, const ms_topo_diff_t *diff,
                      const ms_member_t *joiner, Meshsig__V1__Value **offers, size_t n_offers);
/* Replaces the namespace's policy, rebuilding the topology and sending the difference. */
ms_err_t ms_ns_set_policy(ms_coord_t *c, ms_ns_t *ns, const ms_policy_t *p);
const ms_policy_t *ms_coord_policy_for(ms_coord_t *c, const char *ns);
static inline int ms_ns_policy_network(const ms_ns_t *ns)
{
    return ns->policy.positioning == MS_POS_NETWORK;
}
/* A malloc'd copy of a client position, freed like an unpacked message. */
Meshsig__V1__Position *ms_ns_position_dup(const Meshsig__V1__Position *p);
/* Position of a peer under the namespace's positioning mode. */
ms_topo_pos_t ms_ns_position(const ms_ns_t *ns, const char *peer_id,
                             const Meshsig__V1__Position *given);

/* outbox.c: deliveries batched per (gateway, shard), flushed once per loop turn. */
ms_err_t ms_outbox_create(ms_outbox_t **out);
void ms_outbox_destroy(ms_outbox_t *o);
void ms_outbox_deliver(ms_coord_t *c, uint32_t shard, const char *gateway, uint64_t session,
                       const char *peer_id, const Meshsig__V1__ServerMessage *msg,
                       uint32_t close_code);
void ms_outbox_flush(ms_coord_t *c);
/* Helpers that build and deliver one ServerMessage. */
void ms_send_error(ms_coord_t *c, uint32_t shard, const char *gateway, uint64_t session,
                   const char *client_id, Meshsig__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* messaging.c: emit/ack, rooms, services, topics, streams. */
void ms_msg_handle(ms_coord_t *c, ms_ns_t *ns, ms_member_t *from, const char *client_id,
                   Meshsig__V1__ClientMessage *cm);
/* m is leaving: fail what waits on it, drop what it waited on, leave rooms and services. */
void ms_msg_member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);
/* Expires pending acks and calls. */
void ms_msg_tick(ms_coord_t *c, uint64_t now_ms);
void ms_msg_ns_cleanup(ms_ns_t *ns);

/* Delivery to a member, an ok and an error to a member. */
void ms_send_ok(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *client_id);
void ms_deliver(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                const Meshsig__V1__ServerMessage *msg);
void ms_member_error(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *client_id,
                     Meshsig__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* A peer joined: deliver what was kept for it. */
void ms_msg_member_joined(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);

/* gateways.c: heartbeats, dead gateways, the resume grace period. */
void ms_gw_heartbeat(ms_coord_t *c, const Meshsig__Bus__Heartbeat *hb);
void ms_gw_seen(ms_coord_t *c, const char *gateway);
void ms_gw_liveness(ms_coord_t *c, uint64_t now_ms);
void ms_gw_cleanup(ms_coord_t *c);
/* Removes a peer from its namespace with repair events and notices (shard.c). */
void ms_member_leave(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *reason);

/* cluster.c: coordinator heartbeats, the live set, rendezvous hashing, and
 * the per-shard lease state machine driven from the tick. */
ms_err_t ms_cluster_init(ms_coord_t *c);
void ms_cluster_cleanup(ms_coord_t *c);
void ms_cluster_heartbeat_in(ms_coord_t *c, const Meshsig__Bus__CoordinatorHeartbeat *hb);
void ms_cluster_tick(ms_coord_t *c, uint64_t mono_ms);
/* Lease worker results (claims, renewals, stored policies). */
void ms_cluster_lease_results(ms_coord_t *c);
/* A shard request from the bus: handled, held for the rebuild, or ignored
 * when another coordinator owns the shard. Takes the raw bytes. */
void ms_cluster_request(ms_coord_t *c, uint32_t shard, const uint8_t *data, size_t len);
/* SIGTERM: stop serving and release every lease; then announce leaving. */
void ms_cluster_shutdown(ms_coord_t *c);
/* Whether every shard that rendezvous hashing gives this coordinator is served. */
int ms_cluster_ready(ms_coord_t *c);
/* Stop serving a shard now: flush, forget its namespaces and held requests. */
void ms_cluster_drop_shard(ms_coord_t *c, uint32_t shard);
/* The desired owner of shard n among the live coordinators (ids). */
const char *ms_cluster_desired_owner(ms_coord_t *c, uint32_t shard);
json_t *ms_cluster_json(ms_coord_t *c);
/* A policy from the admin API: keep it, apply it, tell the others, store it. */
ms_err_t ms_cluster_policy_set(ms_coord_t *c, const char *ns, const ms_policy_t *p, int announce);
void ms_cluster_policy_in(ms_coord_t *c, const Meshsig__Bus__PolicyUpdate *pu);

/* resync.c: takeover rebuild from the gateways' session reports. */
void ms_resync_begin(ms_coord_t *c, uint32_t shard);
/* 1 once the shard is rebuilt (reports complete or the wait is over). */
int ms_resync_poll(ms_coord_t *c, uint32_t shard, uint64_t now);
void ms_resync_free(ms_coord_t *c, uint32_t shard);
void ms_resync_report(ms_coord_t *c, const Meshsig__Bus__ResyncReport *rr);
/* Rebuilds every namespace of shard named in reports (borrowed) and sends the
 * difference. Returns the number of topology events sent, or -1. */
long ms_resync_rebuild(ms_coord_t *c, uint32_t shard, Meshsig__Bus__ResyncReport **reports,
                       size_t n_reports);
/* messaging.c: rooms, services and topics of a rebuilt member, without notices. */
ms_err_t ms_msg_restore(ms_ns_t *ns, ms_member_t *m, char **rooms, size_t n_rooms, char **services,
                        size_t n_services, char **subs, size_t n_subs);

/* outbox.c: forget a dropped shard's batches (after flushing them). */
void ms_outbox_forget_shard(ms_coord_t *c, uint32_t shard);

/* admin.c */
ms_err_t ms_admin_start(ms_coord_t *c);
/* Sends j (its reference is taken) as the JSON answer to r, with the admin headers. */
void ms_admin_reply_json(ms_coord_t *c, struct evhttp_request *r, int code, json_t *j);
/* This coordinator's namespaces, {"namespaces":[{name, peers, topology, shard, owner}]}. */
json_t *ms_admin_ns_list(ms_coord_t *c);
/* One namespace as GET /v1/namespaces/{ns} shows it, with "owner": this coordinator. */
json_t *ms_admin_ns_detail(ms_coord_t *c, const ms_ns_t *ns);

/* admin_cluster.c: GET /v1/namespaces[/{ns}] answered for the whole cluster by
 * scatter/gather over <prefix>.admin.*. Loop thread only. */
/* Subscribes the query subject and this coordinator's reply subject. */
ms_err_t ms_admin_cluster_init(ms_coord_t *c);
/* Answers r later, once the live coordinators replied or the deadline passed.
 * name: NULL for the list, else the namespace asked for. */
void ms_admin_cluster_get(ms_coord_t *c, struct evhttp_request *r, const char *name);
void ms_admin_cluster_query_in(ms_coord_t *c, const Meshsig__Bus__AdminQuery *q);
void ms_admin_cluster_reply_in(ms_coord_t *c, const Meshsig__Bus__AdminReply *ar);
/* Answers what is past its deadline. */
void ms_admin_cluster_tick(ms_coord_t *c, uint64_t mono_ms);
/* Forgets every waiting request (shutdown): before evhttp_free, which frees them. */
void ms_admin_cluster_cleanup(ms_coord_t *c);
/* cluster.c: the coordinator serving shard n as far as heartbeats tell, or NULL. */
const char *ms_cluster_owner(ms_coord_t *c, uint32_t shard);

uint64_t ms_now_ms(void);

/* policies.c: the --policy-file rules. Load fails on a bad file; reload keeps
 * the old rules then, and re-applies new ones to live namespaces without an
 * admin override. */
ms_err_t ms_coord_policies_load(ms_coord_t *c);
void ms_coord_policies_reload(ms_coord_t *c);
/* {"file", "default", "rules", "overrides"}: GET /v1/policies. New reference. */
json_t *ms_coord_policies_json(ms_coord_t *c);

#endif

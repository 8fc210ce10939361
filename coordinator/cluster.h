/* SPDX-License-Identifier: Apache-2.0 */
/* Many coordinators: heartbeats and the live set, rendezvous hashing of shards, and each
 * shard's lease state machine (cluster.c has the reasoning). Loop thread only. */
#ifndef MS_COORD_CLUSTER_H
#define MS_COORD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#include "bus.pb-c.h"
#include "kvretry.h"
#include "lease.h"
#include "policy.h"
#include "renewal.h"
#include "table.h"

typedef struct ms_coord ms_coord_t;
typedef struct ms_resync ms_resync_t;
typedef struct ms_gwsync ms_gwsync_t;

/* Another coordinator as seen through its heartbeats. */
typedef struct ms_coord_peer {
    char *id;
    char *admin;
    uint64_t last_seen_ms; /* monotonic */
    uint64_t started_ms;
    uint32_t *shards; /* what it said it serves, with epochs */
    uint64_t *epochs;
    uint32_t *ns_counts; /* namespaces it holds per shard, same order; NULL: not said */
    size_t n_shards;
    int alive;
    /* Its lease store answered within 2/3 of a lease, as its last heartbeat said
     * (lease_silent_ms): only then may it be given shards (cluster.c, "Lease health"). */
    int lease_ok;
    uint64_t lease_silent_ms;
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

/* This coordinator's view of one shard. Times are monotonic (ms_clock_mono_ms). */
typedef struct ms_shard {
    uint8_t state;        /* ms_shard_state_t */
    uint8_t renewing;     /* a renewal is with the worker */
    uint8_t mine;         /* rendezvous hashing picks this coordinator */
    uint64_t gen;         /* bumped when the shard is dropped: late worker results are ignored */
    uint64_t epoch;       /* the revision of the claim: stamped on every batch */
    uint64_t rev;         /* the last revision written, for compare-and-set */
    uint64_t valid_until; /* serve until then: 2/3 of the lease after the last write was sent */
    /* Nonzero: valid_until passed before a renewal was confirmed. The shard is
     * in doubt until a renewal settles it or this passes: its output is held
     * (ms_outbox_hold), sent if a renewal succeeds, discarded if the lease is
     * lost (cluster.c, "Late renewals"). */
    uint64_t doubt_until;
    uint64_t first_try_ms; /* sent_ms of the first failed renewal from rev; 0: none */
    uint64_t next_renew;
    uint64_t next_claim;
    ms_queued_t *queue, *queue_tail; /* requests held during the rebuild */
    size_t n_queued;
    ms_resync_t *resync;
    ms_gwsync_t *sync; /* which gateways have reported at this epoch (gwsync.c) */
} ms_shard_t;

typedef struct {
    ms_lease_t *lease;       /* coordinator.c creates it; cluster.c drives it */
    ms_shard_t *shards;      /* cfg->shards entries */
    ms_coord_peer_t *coords; /* other coordinators, uthash by id */
    uint64_t mono_started_ms;
    uint64_t next_heartbeat_ms;
    uint64_t settle_until_ms; /* no claims before: first learn who else is alive */
    int live_changed;
    int stopping;
    uint64_t n_not_owner, n_queued_dropped, n_claims, n_losses, n_handoffs;
    uint64_t n_renewals, n_renewal_batches; /* renewals sent, and the batches they went in */
    ms_renewal_t renewal;                   /* when each shard renews (renewal.c) */
    ms_kvretry_t kvretry;    /* claims and renewals while the lease store is silent (kvretry.h) */
    uint64_t bus_reconnects; /* ms_bus_reconnects last seen: one more kicks the lease link */
    int renewal_origin_set;  /* renewal's phases follow the first tick */
    uint64_t
        n_resend_dropped; /* requests stamped with an older epoch, sent again by their gateway */
    uint64_t n_doubts, n_kept_late; /* deadlines passed in doubt; of them, kept by a renewal */
    /* Namespaces in the shards other coordinators serve, from their
     * heartbeats; refreshed every tick. member.c reads it (--max-namespaces)
     * without calling in here. */
    uint64_t ns_elsewhere;
} ms_cluster_t;

ms_err_t ms_cluster_init(ms_coord_t *c);
void ms_cluster_cleanup(ms_coord_t *c);
void ms_cluster_heartbeat_in(ms_coord_t *c, const Meshsig__Bus__CoordinatorHeartbeat *hb);
void ms_cluster_tick(ms_coord_t *c, uint64_t mono_ms);
/* Lease worker results (claims, renewals, stored policies). */
void ms_cluster_lease_results(ms_coord_t *c);
/* A shard request from the bus: handled, held for the rebuild, or ignored
 * when another coordinator owns the shard. Takes the raw bytes. */
void ms_cluster_request(ms_coord_t *c, uint32_t shard, const uint8_t *data, size_t len);
/* A backend's request (backend.h) for shard: handled when we serve the shard, refused
 * UNAVAILABLE while we rebuild it, ignored when another coordinator owns it. */
void ms_cluster_backend_request(ms_coord_t *c, uint32_t shard, const char *reply,
                                const uint8_t *data, size_t len);
/* A gateway's report: kept for a takeover in progress (resync.c), merged into a shard served
 * at that epoch (merge.c). */
void ms_cluster_resync_report(ms_coord_t *c, const Meshsig__Bus__ResyncReport *rr);
/* SIGTERM: stop serving and release every lease; then announce leaving. */
void ms_cluster_shutdown(ms_coord_t *c);
/* After SIGTERM, once the lease worker is gone (its releases done or given up, cluster.lease
 * NULL): the leaving heartbeat again, on the bus, for when the lease connection was down. */
void ms_cluster_left(ms_coord_t *c);
/* Whether every shard that rendezvous hashing gives this coordinator is served. */
int ms_cluster_ready(ms_coord_t *c);
/* Stop serving a shard now: flush, forget its namespaces and held requests. */
void ms_cluster_drop_shard(ms_coord_t *c, uint32_t shard);
/* The desired owner of shard n among the live coordinators (ids). */
const char *ms_cluster_desired_owner(ms_coord_t *c, uint32_t shard);
/* The coordinator serving shard n as far as heartbeats tell, or NULL. */
const char *ms_cluster_owner(ms_coord_t *c, uint32_t shard);
/* Namespaces in the whole cluster: this coordinator's own, and for every
 * shard it does not serve, the count its owner (the highest epoch among the
 * live coordinators) gave in its last heartbeat. Up to one heartbeat old.
 * Also refreshes cluster.ns_elsewhere. */
uint64_t ms_cluster_namespaces(ms_coord_t *c);
/* Shards this coordinator serves now. */
size_t ms_cluster_n_owned(ms_coord_t *c);
/* Whether another coordinator is alive; and whether every live one is in `seen`
 * (a JSON object keyed by coordinator id). */
int ms_cluster_has_live_peer(ms_coord_t *c);
int ms_cluster_all_live_in(ms_coord_t *c, const json_t *seen);
/* The live coordinators missing from `seen`, as a new JSON array, or NULL when none. */
json_t *ms_cluster_live_missing(ms_coord_t *c, const json_t *seen);
json_t *ms_cluster_json(ms_coord_t *c);
/* A policy from the admin API: keep it, apply it, tell the others, store it. */
ms_err_t ms_cluster_policy_set(ms_coord_t *c, const char *ns, const ms_policy_t *p, int announce);
void ms_cluster_policy_in(ms_coord_t *c, const Meshsig__Bus__PolicyUpdate *pu);

#endif

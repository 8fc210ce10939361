/* SPDX-License-Identifier: Apache-2.0 */
/* Namespaces: members and their dense peer handles, the engine and policy, diffs sent as events.
 *
 * The registry (ms_ns_reg_t, in struct ms_coord) holds this coordinator's
 * namespaces and the policies set through the admin API. A namespace's
 * messaging state (rooms, services, topics, waiting requests, streams) and
 * its queue of waiting joins belong to the modules named next to their
 * fields: namespace.c never looks inside them. It calls each module's hooks
 * (ms_ns_hooks_t, listed once in coordinator.c) when a namespace goes away,
 * a member joins or leaves, or a takeover restores a member.
 * Loop thread only.
 */
#ifndef MS_COORD_NAMESPACE_H
#define MS_COORD_NAMESPACE_H

#include <stdint.h>

#include "bus.pb-c.h"
#include "client.pb-c.h"
#include "policy.h"
#include "policyshare.h"
#include "ptrindex.h"
#include "table.h"
#include "topology.h"
#include "vivaldi.h"

typedef struct ms_coord ms_coord_t;
struct ms_ns;
struct ms_member;

/* What few members use (p2p links, a takeover's dangling neighbours, a resume's previous
 * session, network coordinates, a backend's face, a client position, metadata), behind one
 * pointer: allocated when first
 * set (ms_member_rare_get), freed with the member. */
typedef struct ms_member_rare {
    /* The session this peer resumed from, while it may still have signals on
     * the way (member.c resume): signals from it are routed as the peer's
     * until that session's leave comes from its gateway (which sends nothing
     * for it after that), or prev_until_ms (monotonic). prev_gateway: NULL
     * when there is none (ms_intern). */
    const char *prev_gateway;
    uint64_t prev_session, prev_until_ms;
    /* Network coordinate from reported RTTs (ms_member_viv). NULL until the
     * first report that involves this peer: until then it is the fresh
     * coordinate ms_vivaldi_init(pos.key) gives, at the origin. */
    ms_vivaldi_t *viv;
    /* p2p.c: peers linked outside the topology (n_p2p_links), and the requests waiting for
     * this peer's answer (n_p2p_asks). */
    char **p2p_links;
    struct ms_p2p_ask *p2p_asks;
    /* Peers this member's client still holds as neighbours although this owner does not know
     * them: a takeover rebuilt without their gateway (silent then). A late report of that
     * gateway (merge.c) connects them without an event when both ends still hold the edge.
     * An event about one of them (ms_ns_apply_diff) ends the entry (n_dangling). */
    char **dangling;
    /* A peer face (a backend's, backend.h): not in ns->members but in ns->mods->faces,
     * without a topology handle, and delivered to through `deliver` instead of a
     * gateway (set by its module, which namespace.c does not call). NULL for a peer. */
    void (*deliver)(struct ms_coord *c, struct ms_ns *ns, const struct ms_member *to,
                    const Meshsig__V1__ServerMessage *msg);
    struct ms_backend *backend; /* backend.c's record of the face */
    /* The position as the client gave it (owned; ms_member_set_client_pos), and the packed
     * meshsig.v1.Struct handed to neighbours (metadata_len bytes; ms_member_set_metadata). */
    Meshsig__V1__Position *client_pos;
    uint8_t *metadata;
    /* room.c: the rooms it is in (n_rooms): its leave touches these, not every room of the
     * namespace. */
    struct ms_room **rooms;
    uint32_t n_rooms, cap_rooms;
    /* service.c: the services it provides (n_services), for the same reason. */
    struct ms_service **services;
    uint32_t n_services, cap_services;
    uint32_t n_subs;       /* topic.c: its subscriptions (a leave without any scans none) */
    uint32_t n_streams_in; /* stream.c: open streams it receives (n_streams: it opened) */
    uint32_t n_p2p_links, n_p2p_asks, n_dangling;
    uint16_t metadata_len; /* at most 4096 (member.c) */
} ms_member_rare_t;

/* A peer in a namespace. One per joined peer: ordered so that it has no holes
 * (counts are bounded far below their types), 92 bytes and its id in one allocation
 * (ms_member_new: a 112-byte malloc chunk for ids of up to 11 characters, 128 up to 27).
 * Indexed by id in ns->members (or ns->mods->faces), which keeps nothing inside it. */
typedef struct ms_member {
    ms_peer_t handle;
    uint32_t n_streams;  /* stream.c: streams it opened that are open (--max-streams) */
    const char *gateway; /* gateway id (ms_intern: one copy per gateway) */
    uint64_t session;    /* the gateway's session id */
    ms_topo_pos_t pos;
    uint64_t detached_ms; /* its gateway died at this time; 0 while attached (member.c) */
    /* pairs.c: peers of a signals:any namespace whose gateways were told where this one
     * lives (ad-hoc pairs, the direct path without a topology edge; n_pairs). */
    char **pairs;
    ms_member_rare_t *rare; /* NULL until one of its fields is set: ms_member_rare, _get */
    /* bus Join.claim (a hash of the PeerJS token): a join of the same id with
     * the same claim takes the id over, as PeerJS lets its client reconnect. */
    uint8_t claim[16];
    uint16_t n_pairs; /* at most MS_PAIRS_MAX (pairs.h) */
    uint8_t claim_len;
    uint8_t source;   /* joined as the tree's source: handle 0 (ms_ns_has_source_slot) */
    uint32_t gw_slot; /* its place in its gateway's list (gwmembers.h) */
    char id[];        /* NUL-terminated; allocated with the record */
} ms_member_t;

/* What few members use, to read: all empty while m->rare is NULL. */
extern const ms_member_rare_t ms_member_rare_none;
static inline const ms_member_rare_t *ms_member_rare(const ms_member_t *m)
{
    return m->rare ? m->rare : &ms_member_rare_none;
}
/* The same, to change: allocated on first use (freed by ms_member_free). NULL when out of
 * memory. */
ms_member_rare_t *ms_member_rare_get(ms_member_t *m);

/* What the modules keep in a namespace, each field owned by the module named. Allocated
 * when one first keeps something there (ms_ns_mods_get): the many namespaces that use none
 * (the native protocol's pairs of peers) carry one pointer instead of these 104 bytes. */
typedef struct ms_ns_mods {
    struct ms_waiter *waiting, *waiting_tail; /* member.c: joins waiting for a place */
    size_t n_waiting;                         /* member.c */
    struct ms_room *rooms;                    /* room.c */
    struct ms_service *services;              /* service.c */
    struct ms_topics *topics;                 /* topic.c */
    struct ms_pendings *pending;              /* pending.c: acks and calls waiting */
    struct ms_stream *streams;                /* stream.c */
    struct ms_edge_health *health;            /* edges.c: reported edge states */
    struct ms_backend *backends;              /* backend.c: attached backends, by instance */
    ms_pidx_t faces; /* their peer faces by id (ms_ns_face_add; backend.c) */
} ms_ns_mods_t;

/* One per namespace held here: 109 bytes and its name in one allocation (a 128-byte malloc
 * chunk for names of up to 10 characters, 144 up to 26), nothing of the registry's inside. */
typedef struct ms_ns {
    const ms_policy_t *policy; /* a shared copy (c->ns.policies): never changed through it */
    /* The engine; once the namespace is destroyed during a walk (MS_NS_FOREACH), the next
     * of the destroyed namespaces that wait for the walks to end (namespace.c). */
    union {
        ms_topo_t *engine;
        struct ms_ns *next_dead;
    };
    ms_pidx_t members; /* ms_member_t by id: ms_ns_member, MS_NS_MEMBERS_FOREACH */
    ms_member_t **by_handle;
    uint32_t *free_handles; /* min-heap */
    uint32_t n_handles;     /* slots in by_handle (handles are below MS_PEER_MAX) */
    uint32_t n_free, cap_free;
    uint32_t next_handle;
    uint64_t next_tick_ms; /* engines with periodic work (spray shuffles) */
    ms_ns_mods_t *mods;    /* NULL until a module keeps something here: ms_ns_mods, _get */
    /* by_handle's first two slots, inside the record: a pair of peers (the native
     * protocol's namespaces) needs no separate 32-byte chunk. */
    ms_member_t *by_handle_small[2];
    uint32_t shard;
    uint8_t dead; /* destroyed during a walk: MS_NS_FOREACH skips it, nothing else sees it */
    char name[];  /* NUL-terminated; allocated with the record */
} ms_ns_t;

/* What a module does when its namespace or one of its members changes. Any may be NULL. */
typedef struct {
    const char *name;
    /* The namespace is destroyed: free what the module keeps in it. */
    void (*cleanup)(ms_ns_t *ns);
    /* m joined (not when a takeover restores it). */
    void (*member_joined)(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);
    /* m is leaving, still a member: fail what waits on it, drop what it holds. */
    void (*member_gone)(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);
    /* The topology dropped the edge a-b (its ends are told next). */
    void (*edge_dropped)(ms_ns_t *ns, ms_peer_t a, ms_peer_t b);
    /* Takeover: m is back with what its gateway reported; nobody is told. */
    ms_err_t (*restore)(ms_ns_t *ns, ms_member_t *m, const Meshsig__Bus__SessionReport *sr);
} ms_ns_hooks_t;

typedef struct {
    ms_pidx_t by_name; /* ms_ns_t by name */
    /* Walks under way (MS_NS_FOREACH) and the namespaces destroyed during them, freed when
     * the last walk ends (linked by next_dead). */
    uint32_t walking;
    ms_ns_t *dead;
    /* What the walks under way visit: the namespaces held when the first began, then those
     * created since, appended (each walk visits those listed when it began). Its room is
     * reserved when a namespace is created (ms_ns_get fails then, MS_ERR_NOMEM), so a walk
     * allocates nothing and visits every namespace: a walk that found no memory for its
     * list once skipped them all, and the caller never knew (a gateway loss detached nobody,
     * a shard given away kept its namespaces). */
    ms_ns_t **walk_list;
    size_t walk_len, walk_cap;
    uint32_t n_shards;
    size_t n_tick;       /* namespaces whose engine has periodic work */
    ms_topo_diff_t diff; /* scratch: lent by ms_ns_diff to one operation at a time */
    const ms_ns_hooks_t *const *hooks;
    size_t n_hooks;
    uint32_t *n_by_shard;      /* namespaces held per shard (heartbeats carry them); lazily made */
    ms_policyshare_t policies; /* the policies the namespaces run (ms_ns_t.policy) */
} ms_ns_reg_t;

/* What the modules keep in ns, to read: all empty while ns->mods is NULL. */
extern const ms_ns_mods_t ms_ns_mods_none;
static inline const ms_ns_mods_t *ms_ns_mods(const ms_ns_t *ns)
{
    return ns->mods ? ns->mods : &ms_ns_mods_none;
}
/* The same, to change: allocated on first use (freed with ns). NULL when out of memory. */
ms_ns_mods_t *ms_ns_mods_get(ms_ns_t *ns);

/* hooks: borrowed, in the order they run. */
void ms_ns_reg_init(ms_ns_reg_t *r, uint32_t n_shards, const ms_ns_hooks_t *const *hooks,
                    size_t n_hooks);
/* Destroys every namespace. */
void ms_ns_reg_cleanup(ms_coord_t *c);

/* A walk over the namespaces held when it began (ms_ns_walk_begin/_next; MS_NS_FOREACH):
 * those of c->ns.walk_list below n, collected when the first walk under way began (the body
 * may destroy or create namespaces). Allocates nothing: it cannot fail. */
typedef struct {
    size_t n, i;
} ms_ns_walk_t;
ms_ns_walk_t ms_ns_walk_begin(ms_coord_t *c);
/* The next namespace of w not destroyed since w began; NULL at the end, which ends w. */
ms_ns_t *ms_ns_walk_next(ms_coord_t *c, ms_ns_walk_t *w);
/* Visits the namespaces (ms_ns_t *ns) held when the walk began, in no particular order,
 * skipping those destroyed meanwhile (a destroyed namespace stays allocated until every walk
 * has ended, so the body may destroy ns or any other); namespaces created by the body are
 * not visited. The walk ends when the loop does: the body must not break out or return. */
#define MS_NS_FOREACH(c, ns, w)                                                                    \
    for (ms_ns_walk_t w = ms_ns_walk_begin(c); ((ns) = ms_ns_walk_next((c), &w)) != NULL;)
size_t ms_ns_count(ms_coord_t *c);
/* Namespaces held in one shard. */
uint32_t ms_ns_count_shard(ms_coord_t *c, uint32_t shard);
/* The most peers ns takes: its policy's cap or --max-peers, the lower; 0: no cap. */
uint32_t ms_ns_cap(const ms_coord_t *c, const ms_ns_t *ns);
/* 1 when ns holds as many peers as ms_ns_cap allows. */
int ms_ns_full(const ms_coord_t *c, const ms_ns_t *ns);

ms_ns_t *ms_ns_find(ms_coord_t *c, const char *name);
/* The namespace, created with its stored (or the default) policy when absent. */
ms_err_t ms_ns_get(ms_coord_t *c, const char *name, ms_ns_t **out);
void ms_ns_destroy(ms_coord_t *c, ms_ns_t *ns);
/* Destroys ns when it has neither members nor waiting joins. Returns 1 if it did. */
int ms_ns_destroy_if_empty(ms_coord_t *c, ms_ns_t *ns);
void ms_ns_destroy_shard(ms_coord_t *c, uint32_t shard);
/* The scratch diff, cleared. Valid until the next call. */
ms_topo_diff_t *ms_ns_diff(ms_coord_t *c);

/* A member record for peer id, zeroed but for its id; NULL when out of memory. */
ms_member_t *ms_member_new(const char *id);
/* m's client position becomes p (owned from here, NULL: none; the old one is freed).
 * MS_ERR_NOMEM: unchanged, and p is freed. */
ms_err_t ms_member_set_client_pos(ms_member_t *m, Meshsig__V1__Position *p);
/* m's metadata becomes md packed (len bytes, its packed size: at most 4096). MS_ERR_NOMEM:
 * none. */
ms_err_t ms_member_set_metadata(ms_member_t *m, const Meshsig__V1__Struct *md, size_t len);
/* A member record: free with ms_member_free (NULL is ignored). */
void ms_member_free(ms_member_t *m);
/* m's dangling neighbours (ms_member_t.dangling): add (MS_ERR_NOMEM), ask, drop (1 if it was
 * there). */
ms_err_t ms_member_dangling_add(ms_member_t *m, const char *id);
int ms_member_dangling_has(const ms_member_t *m, const char *id);
int ms_member_dangling_drop(ms_member_t *m, const char *id);
/* m's network coordinate, created fresh on first use; NULL when out of memory. */
ms_vivaldi_t *ms_member_viv(ms_member_t *m);
/* The position of a peer that has no RTT reports yet under network positioning. */
ms_topo_pos_t ms_member_network_origin(const ms_member_t *m);

ms_member_t *ms_ns_member(ms_ns_t *ns, const char *id);
/* Indexes m (a new member, its id not taken) in ns->members. MS_ERR_NOMEM: not added. */
ms_err_t ms_ns_member_add(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);
void ms_ns_member_remove(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);
/* Visits ns's members (ms_member_t *m) in no particular order. The body must not add or
 * remove members (collect them first: ptrindex.h). */
#define MS_NS_MEMBERS_FOREACH(ns, i, m) MS_PIDX_FOREACH(&(ns)->members, i, m)
/* A member, or else a peer face (a backend attached to ns, backend.h): whoever can send or
 * receive an emit, an ack, a call or its reply under that id. */
ms_member_t *ms_ns_party(ms_ns_t *ns, const char *id);
/* Peer faces: m (with m->deliver set) joins ns->mods->faces, which keeps ns alive; the caller
 * owns m and removes it before freeing it. */
ms_err_t ms_ns_face_add(ms_ns_t *ns, ms_member_t *m);
void ms_ns_face_remove(ms_ns_t *ns, ms_member_t *m);
ms_member_t *ms_ns_face(ms_ns_t *ns, const char *id);
/* The member holding handle h, or NULL. */
ms_member_t *ms_ns_by_handle(const ms_ns_t *ns, ms_peer_t h);
/* A tree namespace keeps handle 0 for its source (tree.h): nobody else gets it. */
int ms_ns_has_source_slot(const ms_ns_t *ns);
/* The source member, or NULL. */
ms_member_t *ms_ns_source(const ms_ns_t *ns);
ms_err_t ms_ns_alloc_handle(ms_ns_t *ns, ms_member_t *m);
void ms_ns_free_handle(ms_ns_t *ns, ms_member_t *m);

/* Hooks (see ms_ns_hooks_t). restore stops at the first module that fails. */
void ms_ns_member_joined(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);
void ms_ns_member_gone(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m);
ms_err_t ms_ns_restore_member(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m,
                              const Meshsig__Bus__SessionReport *sr);

/* Sends the connect/disconnect events of diff to both ends of each edge.
 * offers: hello.offers of the joining peer `joiner` (may be NULL). */
void ms_ns_apply_diff(ms_coord_t *c, ms_ns_t *ns, const ms_topo_diff_t *diff,
                      const ms_member_t *joiner, Meshsig__V1__Value **offers, size_t n_offers);
/* Runs engines' periodic work that is due and sends its diffs. */
void ms_ns_tick_all(ms_coord_t *c, uint64_t now_ms);

/* Keeps p as the override of namespace name (policies.c) and applies it if the
 * namespace exists here (rebuilding its topology and sending the difference). */
ms_err_t ms_ns_policy_set(ms_coord_t *c, const char *name, const ms_policy_t *p);
/* hello.policy: the namespace (empty, no admin override) runs p for as long as
 * it lives; nothing is stored. */
ms_err_t ms_ns_policy_from_hello(ms_coord_t *c, ms_ns_t *ns, const ms_policy_t *p);
/* After the policy file changed: live namespaces without an override take their new policy. */
void ms_ns_policies_reapply(ms_coord_t *c);
static inline int ms_ns_policy_network(const ms_ns_t *ns)
{
    return ns->policy->positioning == MS_POS_NETWORK;
}
/* A malloc'd copy of a client position, freed like an unpacked message. */
Meshsig__V1__Position *ms_ns_position_dup(const Meshsig__V1__Position *p);
/* Whether a client's position is in range for the namespace's positioning mode (client: x and y
 * finite within +-MS_POS_CLIENT_RANGE; geo: lat in [-90, 90], lon in [-180, 180]; other modes
 * ignore it). 0: why says which value and its limit (a BAD_REQUEST; nothing is clamped). */
#define MS_POS_CLIENT_RANGE MS_DELAUNAY_RANGE /* the Delaunay plane: namespace.c */
int ms_ns_position_valid(const ms_ns_t *ns, const Meshsig__V1__Position *p, char *why, size_t cap);
/* Position of a peer under the namespace's positioning mode. */
ms_topo_pos_t ms_ns_position(const ms_ns_t *ns, const char *peer_id,
                             const Meshsig__V1__Position *given);

/* topology.connect / disconnect to `to` about `other`, outside any diff (p2p.c). */
void ms_ns_send_connect(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const ms_member_t *other,
                        int initiator, Meshsig__V1__Role role);
void ms_ns_send_disconnect(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                           const ms_member_t *other);

/* Delivery to a member: a message, an ok, an error. */
void ms_deliver(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                const Meshsig__V1__ServerMessage *msg);
/* The same, telling to's gateway where `where` (a neighbour of to) lives, so
 * that the two gateways may pass the pair's signals directly; msg may be NULL. */
void ms_deliver_located(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to,
                        const Meshsig__V1__ServerMessage *msg, const ms_member_t *where);
/* ok answering request client_id; nothing when the request had no id (README "Wire
 * protocol": a request without an id hears back only when it fails). */
void ms_send_ok(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *client_id);
/* The same with an emit's result (Ok.delivered, Ok.stored). */
void ms_send_ok_result(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *client_id,
                       int delivered, int stored);
void ms_member_error(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *client_id,
                     Meshsig__V1__ErrorCode code, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* The member lifecycle: join (with resume, replace and the waiting line), leave, and peers of
 * a silent gateway that wait out the resume grace period before they leave.
 *
 * Below shard.c (which routes requests here), above namespace.c and
 * gateways.c; messaging modules hear of joins and leaves through their
 * namespace hooks, so nothing here knows them.
 */
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "codec.h"
#include "intern.h"
#include "internal.h"
#include "log.h"
#include "servermsg.h"
#include "tree.h"

#define ERR(code) MESHSIG__V1__ERROR_CODE__##code

/* A join waiting for a place in a full namespace ("overflow":"wait"): ms_ns_mods(ns)->waiting. */
typedef struct ms_waiter {
    struct ms_waiter *next;
    char *id, *gateway, *client_id;
    uint64_t session;
    uint8_t *hello; /* packed meshsig.v1.Hello */
    size_t hello_len;
} ms_waiter_t;

static int peer_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '.' || ch == '_' || ch == ':' || ch == '@' || ch == '-'))
            return 0;
    }
    return 1;
}

static int ns_name_valid(const char *ns)
{
    size_t n = strlen(ns);
    if (n == 0 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)ns[i];
        /* '.', '*' and '>' would break NATS subjects and URLs; control bytes are never names. */
        if (ch < 0x21 || ch == '*' || ch == '>' || ch == '/' || ch == 0x7f)
            return 0;
    }
    return 1;
}

static void generate_id(ms_ns_t *ns, char *out, size_t cap)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        unsigned char r[6];
        if (RAND_bytes(r, sizeof(r)) != 1)
            memset(r, attempt, sizeof(r));
        snprintf(out, cap, "p-%02x%02x%02x%02x%02x%02x", r[0], r[1], r[2], r[3], r[4], r[5]);
        if (!ms_ns_party(ns, out))
            return;
    }
}

/* hello.policy: 1 when the join may go on (the namespace runs that policy now),
 * 0 when an error was sent. The first such hello of an empty namespace without
 * an admin override sets it; a later different one is refused. */
static int hello_policy(ms_coord_t *c, ms_ns_t *ns, const Meshsig__Bus__ShardRequest *req,
                        const char *cid)
{
    const Meshsig__Bus__Join *j = req->join;
    if (!j->may_set_policy) {
        ms_outbox_error(&c->outbox, ns->shard, req->gateway_id, req->session, cid, ERR(FORBIDDEN),
                        "the token does not allow hello.policy (claim \"policy\")");
        return 0;
    }
    char why[200];
    ms_policy_t p;
    json_t *pj = ms_codec_to_jansson(&j->hello->policy->base);
    ms_err_t err = pj ? ms_policy_parse(pj, &p, why, sizeof(why)) : MS_ERR_NOMEM;
    json_decref(pj);
    if (err != MS_OK) {
        ms_outbox_error(&c->outbox, ns->shard, req->gateway_id, req->session, cid, ERR(BAD_REQUEST),
                        "hello.policy: %s", err == MS_ERR_INVAL ? why : ms_err_str(err));
        return 0;
    }
    if (ms_policy_same(ns->policy, &p))
        return 1;
    if (ns->members.n || ms_ns_mods(ns)->n_waiting || ms_policies_has_override(c, ns->name)) {
        ms_outbox_error(&c->outbox, ns->shard, req->gateway_id, req->session, cid, ERR(BAD_REQUEST),
                        "hello.policy: namespace %s already runs another policy (topology %s); "
                        "join without hello.policy or with the same one",
                        ns->name, ns->policy->topology);
        return 0;
    }
    if ((err = ms_ns_policy_from_hello(c, ns, &p)) != MS_OK) {
        ms_outbox_error(&c->outbox, ns->shard, req->gateway_id, req->session, cid, ERR(INTERNAL),
                        "hello.policy: %s", ms_err_str(err));
        return 0;
    }
    return 1;
}

static void send_welcome(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *m, const char *client_id)
{
    Meshsig__V1__Welcome w = MESHSIG__V1__WELCOME__INIT;
    w.peer_id = (char *)m->id;
    w.gateway_id = (char *)m->gateway; /* protobuf-c fields are not const */
    w.namespace_ = ns->name;
    w.topology = (char *)ns->policy->topology; /* protobuf-c fields are not const; only read */
    /* The gateway fills in its own limits and keeps this one, the owner's. */
    Meshsig__V1__Limits lim = MESHSIG__V1__LIMITS__INIT;
    lim.max_streams = c->cfg->max_streams > 0 && c->cfg->max_streams <= UINT32_MAX
                          ? (uint32_t)c->cfg->max_streams
                          : 0;
    w.limits = &lim;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.id = (char *)client_id;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_WELCOME;
    sm.welcome = &w;
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    d.session = m->session;
    d.peer_id = (char *)m->id;
    d.msg = &sm;
    d.signal_scope = ns->policy->signal_any ? 2 : 1; /* bus.proto Delivery.signal_scope */
    ms_outbox_deliver_full(&c->outbox, ns->shard, m->gateway, &d);
}

/* The "replace" duplicate-id policy: the new session takes the peer's place,
 * rooms, services and edges; the old one is told REPLACED and closed. Its
 * neighbours get a disconnect and a connect for the peer, because their
 * WebRTC connections went to the old client and must be made again. */
#define CLOSE_REPLACED 4001

/* A session the owner does not keep (merge.c): told why, then closed. */
#define CLOSE_TRY_LATER 1013

void ms_member_end_session(ms_coord_t *c, uint32_t shard, const char *gateway, uint64_t session,
                           const char *peer_id, Meshsig__V1__ErrorCode code, const char *why)
{
    ms_sm_error_t e;
    ms_outbox_deliver(&c->outbox, shard, gateway, session, peer_id,
                      ms_sm_error(&e, NULL, code, why),
                      code == ERR(REPLACED) ? CLOSE_REPLACED : CLOSE_TRY_LATER);
}

void ms_member_reattach(ms_member_t *m)
{
    m->detached_ms = 0; /* its entry in c->members.detached no longer matches: dropped when due */
}

/* Tells m's current session it lost the peer id, and closes it (4001). */
/* m's previous session (ms_member_is_prev) is over: nothing more of it is routed. */
static void prev_clear(ms_member_t *m)
{
    if (m->rare) {
        ms_intern_release(m->rare->prev_gateway);
        m->rare->prev_gateway = NULL;
    }
}

/* m's current session becomes its previous one for MS_MEMBER_PREV_MS; m->rare is there
 * (the caller made it before changing anything). */
static void prev_keep(ms_member_t *m)
{
    m->rare->prev_gateway = m->gateway;
    m->rare->prev_session = m->session;
    m->rare->prev_until_ms = ms_clock_mono_ms() + MS_MEMBER_PREV_MS;
}

static void send_replaced(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *m, const char *why)
{
    ms_sm_error_t e;
    ms_outbox_deliver(&c->outbox, ns->shard, m->gateway, m->session, m->id,
                      ms_sm_error(&e, NULL, ERR(REPLACED), why), CLOSE_REPLACED);
}

static void replace_session(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m,
                            const Meshsig__Bus__ShardRequest *req, const char *cid)
{
    const char *gw = ms_intern(req->gateway_id);
    if (!gw || (!m->detached_ms && !ms_member_rare_get(m)) ||
        ms_gwm_reserve(&c->members.by_gw, gw) != MS_OK) {
        ms_intern_release(gw);
        ms_outbox_error(&c->outbox, ns->shard, req->gateway_id, req->session, cid, ERR(INTERNAL),
                        "out of memory");
        return;
    }
    send_replaced(c, ns, m, "another session took this peer id");
    prev_clear(m);
    ms_gwm_move(&c->members.by_gw, ns, m, gw); /* before its old gateway's reference may go */
    if (!m->detached_ms) {
        /* As for a resume: what the old session sent before its gateway closes
         * it is still the peer's (a PeerJS client that reconnects loses none of
         * it), and its leave tells the neighbours' gateways (send_retired). */
        prev_keep(m);
    } else {
        ms_intern_release(m->gateway);
    }
    m->gateway = gw;
    m->session = req->session;
    send_welcome(c, ns, m, cid);
    /* Re-announce every edge of m: the neighbours drop the old connection
     * (disconnect), then both ends connect afresh. */
    ms_topo_diff_t *diff = ms_ns_diff(c);
    /* m's edges only (O(its degree)); out of memory, those found so far (as before). */
    (void)ms_topo_edges_of(ns->engine, m->handle, diff);
    for (size_t i = 0; i < diff->n_connect; i++) {
        const ms_edge_t *ed = &diff->connect[i];
        ms_peer_t other = ed->a == m->handle ? ed->b : ed->a;
        if (other < ns->n_handles && ns->by_handle[other]) {
            ms_sm_disconnect_t d;
            ms_deliver(c, ns, ns->by_handle[other], ms_sm_disconnect(&d, m->id));
        }
    }
    ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
    ms_pairs_moved(c, ns, m); /* PeerJS's reconnect: its pairs follow it */
    /* As a join and a resume: what is stored for the peer (handed to the old session without
     * a receipt, or stored while nobody fetched) goes to the new session now, not at the
     * re-fetch seconds later. */
    ms_emit_member_resumed(c, ns, m);
    ms_info("%s/%s replaced by a session on %s", ns->name, m->id, gw);
}

static void waiter_free(ms_waiter_t *w)
{
    free(w->id);
    free(w->gateway);
    free(w->client_id);
    free(w->hello);
    free(w);
}

/* Tells every waiter its place in line (1 = next). */
static void announce_waiting(ms_coord_t *c, ms_ns_t *ns)
{
    uint32_t pos = 1;
    for (ms_waiter_t *w = ms_ns_mods(ns)->waiting; w; w = w->next, pos++) {
        Meshsig__V1__Waiting wt = MESHSIG__V1__WAITING__INIT;
        wt.position = pos;
        /* A notice, not the hello's reply (that is the welcome or an error, later): it
         * carries no id, so a request id is answered exactly once. */
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_WAITING;
        sm.waiting = &wt;
        ms_outbox_deliver(&c->outbox, ns->shard, w->gateway, w->session, NULL, &sm, 0);
    }
}

static void enqueue_waiter(ms_coord_t *c, ms_ns_t *ns, const Meshsig__Bus__ShardRequest *req)
{
    for (ms_waiter_t *w = ms_ns_mods(ns)->waiting; w; w = w->next) {
        if (!strcmp(w->gateway, req->gateway_id) && w->session == req->session)
            return; /* a retried join: already in line */
        if (*req->join->peer_id && !strcmp(w->id, req->join->peer_id)) {
            ms_outbox_error(&c->outbox, ns->shard, req->gateway_id, req->session, req->client_id,
                            ERR(ID_TAKEN), "peer id %s is already waiting in %s", w->id, ns->name);
            return;
        }
    }
    ms_ns_mods_t *mods = ms_ns_mods_get(ns);
    ms_waiter_t *w = mods ? calloc(1, sizeof(*w)) : NULL;
    if (!w || !(w->id = strdup(req->join->peer_id)) || !(w->gateway = strdup(req->gateway_id)) ||
        !(w->client_id = strdup(req->client_id)))
        goto nomem;
    w->session = req->session;
    if (req->join->hello) {
        w->hello_len = meshsig__v1__hello__get_packed_size(req->join->hello);
        if (!(w->hello = malloc(w->hello_len ? w->hello_len : 1)))
            goto nomem;
        meshsig__v1__hello__pack(req->join->hello, w->hello);
    }
    if (mods->waiting_tail)
        mods->waiting_tail->next = w;
    else
        mods->waiting = w;
    mods->waiting_tail = w;
    mods->n_waiting++;
    announce_waiting(c, ns);
    return;
nomem:
    if (w)
        waiter_free(w);
    ms_outbox_error(&c->outbox, ns->shard, req->gateway_id, req->session, req->client_id,
                    ERR(INTERNAL), "out of memory");
}

/* Sends m's session a connect for each of its current edges (a snapshot after
 * resume), and each neighbour's gateway where m lives now. */
static void send_edges_to(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m)
{
    ms_topo_diff_t *diff = ms_ns_diff(c);
    /* m's edges only (O(its degree)); out of memory, those found so far (as before). */
    (void)ms_topo_edges_of(ns->engine, m->handle, diff);
    for (size_t i = 0; i < diff->n_connect; i++) {
        const ms_edge_t *e = &diff->connect[i];
        ms_peer_t other = e->a == m->handle ? e->b : e->a;
        if (other >= ns->n_handles || !ns->by_handle[other])
            continue;
        ms_member_t *o = ns->by_handle[other];
        Meshsig__V1__Role role = MESHSIG__V1__ROLE__PEER;
        if (e->kind == MS_EDGE_TREE)
            role = e->a == m->handle ? MESHSIG__V1__ROLE__CHILD : MESHSIG__V1__ROLE__PARENT;
        Meshsig__V1__Connect cn = MESHSIG__V1__CONNECT__INIT;
        cn.peer = o->id;
        cn.initiator = strcmp(m->id, o->id) < 0;
        cn.role = role;
        Meshsig__V1__Topology t = MESHSIG__V1__TOPOLOGY__INIT;
        t.event_case = MESHSIG__V1__TOPOLOGY__EVENT_CONNECT;
        t.connect = &cn;
        Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
        sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_TOPOLOGY;
        sm.topology = &t;
        ms_deliver_located(c, ns, m, &sm, o);
        ms_deliver_located(c, ns, o, NULL, m);
    }
}

/* One neighbour's (or pair's) gateway hears that r has retired (send_retired). */
static void retire_to(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *o,
                      Meshsig__Bus__PeerLocation *r, int gone)
{
    if (!o || o->detached_ms || ms_member_rare(o)->deliver)
        return;
    Meshsig__Bus__Delivery d = MESHSIG__BUS__DELIVERY__INIT;
    d.session = o->session;
    d.peer_id = (char *)o->id;
    d.retired = r;
    d.retired_gone = gone;
    ms_outbox_deliver_full(&c->outbox, ns->shard, o->gateway, &d);
}

/* Tells m's neighbours (bus Delivery.retired) that its session gateway/session,
 * which it resumed from, has closed and every signal it sent through the owner
 * has been routed: their gateways may deliver what m's new session sent them
 * directly (gateway/direct.c). gone: that gateway is gone, so it sends no END
 * for the session either. */
static void send_retired(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *m, const char *gateway,
                         uint64_t session, int gone)
{
    Meshsig__Bus__PeerLocation r = MESHSIG__BUS__PEER_LOCATION__INIT;
    r.peer_id = (char *)m->id;
    r.gateway_id = (char *)gateway;
    r.session = session;
    ms_topo_diff_t *diff = ms_ns_diff(c);
    /* m's edges only (O(its degree)); out of memory, those found so far (as before). */
    (void)ms_topo_edges_of(ns->engine, m->handle, diff);
    for (size_t i = 0; i < diff->n_connect; i++) {
        const ms_edge_t *e = &diff->connect[i];
        ms_member_t *o = ms_ns_by_handle(ns, e->a == m->handle ? e->b : e->a);
        retire_to(c, ns, o, &r, gone);
    }
    const char *const *pairs;
    size_t n = ms_pairs_of(m, &pairs);
    for (size_t i = 0; i < n; i++) {
        ms_member_t *o = ms_ns_member(ns, pairs[i]);
        retire_to(c, ns, o, &r, gone);
    }
}

/* A peer comes back through another session with a valid resume token: it
 * keeps its id, edges, rooms and services; its neighbours see nothing. Its
 * new session gets the welcome and a connect per current edge, which a
 * client that still holds those WebRTC connections simply keeps. */
static void resume_session(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m,
                           const Meshsig__Bus__ShardRequest *req, const char *cid)
{
    const char *gw = ms_intern(req->gateway_id);
    if (!gw || (!m->detached_ms && !ms_member_rare_get(m)) ||
        ms_gwm_reserve(&c->members.by_gw, gw) != MS_OK) {
        ms_intern_release(gw);
        ms_outbox_error(&c->outbox, ns->shard, req->gateway_id, req->session, cid, ERR(INTERNAL),
                        "out of memory");
        return;
    }
    prev_clear(m);
    ms_gwm_move(&c->members.by_gw, ns, m, gw);
    const char *old_gw = m->gateway;
    uint64_t old_session = m->session;
    int gone = m->detached_ms != 0;
    if (!m->detached_ms) {
        /* The old session may still be open (a half-dead connection): end it.
         * What it sent before its gateway closes it is still the peer's:
         * signals from it that reach the owner after this are routed, until
         * its leave (shard.c, ms_member_leave_request). */
        send_replaced(c, ns, m, "this peer resumed on another connection");
        prev_keep(m);
    }
    m->gateway = gw;
    m->session = req->session;
    m->detached_ms = 0;
    ms_gw_seen(c, gw);
    send_welcome(c, ns, m, cid);
    send_edges_to(c, ns, m);
    ms_pairs_moved(c, ns, m);
    if (gone) {
        /* Its old gateway went silent: nothing more comes from there, and
         * the neighbours' gateways need not wait for it. */
        send_retired(c, ns, m, old_gw, old_session, 1);
        ms_intern_release(old_gw);
    }
    ms_emit_member_resumed(c, ns, m);
    ms_info("%s/%s resumed on %s", ns->name, m->id, gw);
}

/* A place freed: admit waiters in order while the engine takes them. */
static void admit_waiting(ms_coord_t *c, ms_ns_t *ns)
{
    while (ms_ns_mods(ns)->waiting && !ms_ns_full(c, ns)) {
        ms_ns_mods_t *mods = ns->mods; /* there: someone waits */
        ms_waiter_t *w = mods->waiting;
        mods->waiting = w->next;
        if (!mods->waiting)
            mods->waiting_tail = NULL;
        mods->n_waiting--;
        Meshsig__V1__Hello *hello =
            w->hello ? meshsig__v1__hello__unpack(NULL, w->hello_len, w->hello) : NULL;
        Meshsig__Bus__Join j = MESHSIG__BUS__JOIN__INIT;
        j.peer_id = w->id;
        j.hello = hello;
        Meshsig__Bus__ShardRequest req = MESHSIG__BUS__SHARD_REQUEST__INIT;
        req.gateway_id = w->gateway;
        req.session = w->session;
        req.namespace_ = ns->name;
        req.client_id = w->client_id;
        req.op_case = MESHSIG__BUS__SHARD_REQUEST__OP_JOIN;
        req.join = &j;
        ms_member_join(c, ns->shard, &req);
        if (hello)
            meshsig__v1__hello__free_unpacked(hello, NULL);
        waiter_free(w);
    }
    if (ms_ns_mods(ns)->waiting)
        announce_waiting(c, ns);
}

/* A waiting session left or closed. */
static int remove_waiter(ms_coord_t *c, ms_ns_t *ns, const char *gateway, uint64_t session)
{
    ms_ns_mods_t *mods = ns->mods;
    if (!mods)
        return 0;
    ms_waiter_t **pp = &mods->waiting, *prev = NULL;
    for (ms_waiter_t *w = mods->waiting; w; prev = w, pp = &w->next, w = w->next) {
        if (strcmp(w->gateway, gateway) || w->session != session)
            continue;
        *pp = w->next;
        if (mods->waiting_tail == w)
            mods->waiting_tail = prev;
        mods->n_waiting--;
        waiter_free(w);
        announce_waiting(c, ns);
        return 1;
    }
    return 0;
}

static void waiting_cleanup(ms_ns_t *ns)
{
    ms_ns_mods_t *mods = ns->mods;
    if (!mods)
        return;
    while (mods->waiting) {
        ms_waiter_t *w = mods->waiting;
        mods->waiting = w->next;
        waiter_free(w);
    }
    mods->waiting_tail = NULL;
    mods->n_waiting = 0;
}

void ms_member_join(ms_coord_t *c, uint32_t shard, const Meshsig__Bus__ShardRequest *req)
{
    const Meshsig__Bus__Join *j = req->join;
    const Meshsig__V1__Hello *hello = j->hello;
    const char *cid = req->client_id;
    ms_member_t *m = NULL;
    ms_ns_t *ns = NULL;
    char idbuf[64];
    const char *id = j->peer_id;

    if (!ns_name_valid(req->namespace_)) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(BAD_REQUEST),
                        "namespace must be 1 to 128 printable characters without '*', '>' or '/'");
        return;
    }
    if (ms_bus_shard_of(req->namespace_, c->ns.n_shards) != shard) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(BAD_REQUEST),
                        "namespace %s does not belong to shard %u", req->namespace_, shard);
        return;
    }
    /* Cluster-wide: ours, and the other owners' from their heartbeats (cluster.c). */
    if (!ms_ns_find(c, req->namespace_) && c->cfg->max_namespaces > 0 &&
        ms_ns_count(c) + c->cluster.ns_elsewhere >= (uint64_t)c->cfg->max_namespaces) {
        c->members.n_cap_ns++;
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(LIMIT_REACHED),
                        "the cluster holds its maximum of %ld namespaces (--max-namespaces); "
                        "join an existing one or retry later",
                        c->cfg->max_namespaces);
        return;
    }
    if (ms_ns_get(c, req->namespace_, &ns) != MS_OK) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(INTERNAL),
                        "cannot create namespace");
        return;
    }
    if (!*id) {
        generate_id(ns, idbuf, sizeof(idbuf));
        id = idbuf;
    } else if (!peer_id_valid(id)) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(BAD_REQUEST),
                        "peer id must be 1 to 128 characters of A-Z a-z 0-9 . _ : @ -");
        goto done;
    }
    const char *ban_why = NULL;
    long banned_s = ms_ban_left(&c->bans, ns->name, id, ms_clock_mono_ms(), &ban_why);
    if (banned_s > 0) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(BANNED),
                        "peer id %s is banned from %s for %ld more seconds%s%s", id, ns->name,
                        banned_s, *ban_why ? ": " : "", ban_why);
        goto done;
    }
    if (hello && hello->policy && !hello_policy(c, ns, req, cid))
        goto done;
    int as_source = hello && hello->role == MESHSIG__V1__JOIN_ROLE__SOURCE;
    if (as_source && !j->may_be_source) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(FORBIDDEN),
                        "the token does not allow joining as the source (claim \"source\")");
        goto done;
    }
    if (as_source && !ms_ns_has_source_slot(ns)) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(BAD_REQUEST),
                        "namespace %s is a %s, not a tree: it has no source", ns->name,
                        ns->policy->topology);
        goto done;
    }
    if (ms_ns_face(ns, id)) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(ID_TAKEN),
                        "peer id %s is taken in namespace %s (by a backend)", id, ns->name);
        goto done;
    }
    ms_member_t *old = ms_ns_member(ns, id);
    if (old && j->resume &&
        (strcmp(old->gateway, req->gateway_id) || old->session != req->session)) {
        resume_session(c, ns, old, req, cid);
        return;
    }
    if (old) {
        if (!strcmp(old->gateway, req->gateway_id) && old->session == req->session) {
            /* A retried join: answer again, change nothing. */
            send_welcome(c, ns, old, cid);
            return;
        }
        /* The same claim is the same client reconnecting (PeerJS keeps its
         * id and token across a reconnect): it takes its id back. */
        if (ns->policy->id_replace || (j->claim.len && j->claim.len == old->claim_len &&
                                       !memcmp(j->claim.data, old->claim, old->claim_len))) {
            replace_session(c, ns, old, req, cid);
            return;
        }
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(ID_TAKEN),
                        "peer id %s is taken in namespace %s", id, ns->name);
        goto done;
    }

    m = ms_member_new(id);
    if (!m || !(m->gateway = ms_intern(req->gateway_id)))
        goto nomem;
    m->session = req->session;
    m->source = (uint8_t)as_source;
    if (j->claim.len) {
        m->claim_len = j->claim.len < sizeof(m->claim) ? (uint8_t)j->claim.len : sizeof(m->claim);
        memcpy(m->claim, j->claim.data, m->claim_len);
    }
    if (hello && hello->position)
        ms_member_set_client_pos(m, ms_ns_position_dup(hello->position));
    if (hello && hello->metadata) {
        size_t len = meshsig__v1__struct__get_packed_size(hello->metadata);
        if (len > 4096) {
            ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(TOO_LARGE),
                            "metadata is over 4096 bytes");
            goto done;
        }
        if (ms_member_set_metadata(m, hello->metadata, len) != MS_OK)
            goto nomem;
    }
    if ((ns->policy->positioning == MS_POS_CLIENT || ns->policy->positioning == MS_POS_GEO) &&
        (!hello || !hello->position) && !strcmp(ns->policy->topology, "delaunay")) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(BAD_REQUEST),
                        "namespace %s places peers by client position: hello.position %s "
                        "is required",
                        ns->name, ns->policy->positioning == MS_POS_GEO ? "{lat, lon}" : "{x, y}");
        goto done;
    }
    char why[128];
    if (hello && hello->position && !ms_ns_position_valid(ns, hello->position, why, sizeof(why))) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(BAD_REQUEST),
                        "hello.%s", why);
        goto done;
    }
    m->pos = ms_ns_position(ns, m->id, ms_member_rare(m)->client_pos);
    if (ms_ns_policy_network(ns)) {
        /* Network mode starts every peer at the origin of its coordinate. */
        m->pos = ms_member_network_origin(m);
    }
    ms_err_t herr = ms_ns_alloc_handle(ns, m);
    if (herr == MS_ERR_EXISTS) {
        ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(SOURCE_TAKEN),
                        "namespace %s has a source already (%s)", ns->name,
                        ns->by_handle[0] ? ns->by_handle[0]->id : "?");
        goto done;
    }
    if (herr != MS_OK || ms_ns_member_add(c, ns, m) != MS_OK) {
        if (herr == MS_OK)
            ms_ns_free_handle(ns, m);
        goto nomem;
    }
    ms_topo_diff_t *diff = ms_ns_diff(c);
    /* The cap is checked here for every engine (the full mesh also keeps its own). */
    ms_err_t err = ms_ns_full(c, ns) ? MS_ERR_FULL
                                     : ns->engine->ops->join(ns->engine, m->handle, m->pos, diff);
    if (err != MS_OK) {
        ms_ns_member_remove(c, ns, m);
        ms_ns_free_handle(ns, m);
        if (err == MS_ERR_FULL && ns->policy->overflow_wait) {
            enqueue_waiter(c, ns, req);
            goto done;
        }
        if (err == MS_ERR_FULL)
            c->members.n_cap_peers++;
        if (err == MS_ERR_FULL)
            ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid,
                            ERR(NAMESPACE_FULL), "namespace %s is full (%u peers)", ns->name,
                            ms_ns_cap(c, ns));
        else
            ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(INTERNAL),
                            "topology join failed: %s", ms_err_str(err));
        goto done;
    }
    ms_gw_seen(c, m->gateway);
    c->members.n_joins++;
    send_welcome(c, ns, m, cid);
    ms_ns_apply_diff(c, ns, diff, m, hello ? hello->offers : NULL, hello ? hello->n_offers : 0);
    ms_ns_member_joined(c, ns, m);
    if (m->source)
        ms_tree_source_notify(c, ns, NULL, m); /* to everyone: the source is here */
    else if (ms_ns_has_source_slot(ns) && !ms_ns_source(ns) && ms_tree_waiting(ns->engine))
        ms_tree_source_notify(c, ns, m, NULL); /* to the newcomer: waiting for it */
    ms_debug("join %s/%s via %s session %llu", ns->name, m->id, m->gateway,
             (unsigned long long)m->session);
    return;
nomem:
    ms_outbox_error(&c->outbox, shard, req->gateway_id, req->session, cid, ERR(INTERNAL),
                    "out of memory");
done:
    ms_member_free(m);
    if (ns)
        ms_ns_destroy_if_empty(c, ns);
}

static void send_peer_left(ms_coord_t *c, ms_ns_t *ns, const ms_member_t *to, const char *peer,
                           const char *reason)
{
    Meshsig__V1__PeerLeft pl = MESHSIG__V1__PEER_LEFT__INIT;
    pl.peer = (char *)peer;
    pl.reason = (char *)reason;
    Meshsig__V1__ServerMessage sm = MESHSIG__V1__SERVER_MESSAGE__INIT;
    sm.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_PEER_LEFT;
    sm.peer_left = &pl;
    ms_outbox_deliver(&c->outbox, ns->shard, to->gateway, to->session, to->id, &sm, 0);
}

/* Removes m from ns: topology repair events to the others, peerLeft to its former neighbours. */
void ms_member_leave(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *reason)
{
    ms_ns_member_gone(c, ns, m);
    ms_topo_diff_t *diff = ms_ns_diff(c);
    ms_err_t err = ns->engine->ops->leave(ns->engine, m->handle, diff);
    if (err != MS_OK)
        ms_error("topology leave of %s/%s failed: %s", ns->name, m->id, ms_err_str(err));
    /* Edges of the departed peer: its neighbours get disconnect + peerLeft. */
    for (size_t i = 0; i < diff->n_disconnect; i++) {
        const ms_edge_t *e = &diff->disconnect[i];
        ms_peer_t other = e->a == m->handle ? e->b : e->b == m->handle ? e->a : MS_PEER_NONE;
        if (other == MS_PEER_NONE || other >= ns->n_handles || !ns->by_handle[other])
            continue;
        ms_member_t *o = ns->by_handle[other];
        ms_sm_disconnect_t d;
        ms_deliver(c, ns, o, ms_sm_disconnect(&d, m->id));
        send_peer_left(c, ns, o, m->id, reason);
    }
    /* The rest of the diff (repair edges between the others) goes out as usual;
     * the departed peer is no longer resolvable, so its own edges are skipped. */
    int was_source = m->source && ms_ns_has_source_slot(ns);
    ms_ns_free_handle(ns, m);
    ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
    ms_ns_member_remove(c, ns, m);
    if (was_source)
        ms_tree_source_notify(c, ns, NULL, NULL); /* to everyone: the source is gone */
    c->members.n_leaves++;
    ms_debug("leave %s/%s (%s)", ns->name, m->id, reason);
    ms_member_free(m);
    admit_waiting(c, ns);
    ms_ns_destroy_if_empty(c, ns);
}

/* WebSocket close codes of the operator actions (README "Operator actions"). */
#define CLOSE_KICKED 4002
#define CLOSE_NS_CLOSED 4003

void ms_member_kick(ms_coord_t *c, ms_ns_t *ns, ms_member_t *m, const char *reason)
{
    ms_sm_error_t e;
    if (!m->detached_ms)
        ms_outbox_deliver(&c->outbox, ns->shard, m->gateway, m->session, m->id,
                          ms_sm_error(&e, NULL, ERR(KICKED), reason), CLOSE_KICKED);
    ms_member_leave(c, ns, m, "kicked");
}

size_t ms_member_close_ns(ms_coord_t *c, ms_ns_t *ns, const char *reason)
{
    size_t n = 0;
    ms_sm_error_t e;
    ms_member_t *m;
    MS_NS_MEMBERS_FOREACH(ns, i, m)
    {
        if (!m->detached_ms)
            ms_outbox_deliver(&c->outbox, ns->shard, m->gateway, m->session, m->id,
                              ms_sm_error(&e, NULL, ERR(NAMESPACE_CLOSED), reason),
                              CLOSE_NS_CLOSED);
        n++;
    }
    for (ms_waiter_t *w = ms_ns_mods(ns)->waiting; w; w = w->next, n++)
        ms_outbox_deliver(&c->outbox, ns->shard, w->gateway, w->session, NULL,
                          ms_sm_error(&e, w->client_id, ERR(NAMESPACE_CLOSED), reason),
                          CLOSE_NS_CLOSED);
    /* Everyone goes at once: no repair events among peers that are all leaving. */
    c->members.n_leaves += ns->members.n;
    ms_ns_destroy(c, ns);
    return n;
}

int ms_member_is_prev(const ms_member_t *m, const char *gateway, uint64_t session, uint64_t now_ms)
{
    const ms_member_rare_t *r = ms_member_rare(m);
    return r->prev_gateway && r->prev_session == session && !strcmp(r->prev_gateway, gateway) &&
           (!now_ms || now_ms < r->prev_until_ms);
}

void ms_member_leave_request(ms_coord_t *c, const Meshsig__Bus__ShardRequest *req)
{
    ms_ns_t *ns = ms_ns_find(c, req->namespace_);
    if (ns && remove_waiter(c, ns, req->gateway_id, req->session)) {
        ms_ns_destroy_if_empty(c, ns);
        return;
    }
    ms_member_t *m = ns ? ms_ns_member(ns, req->peer_id) : NULL;
    if (m && ms_member_is_prev(m, req->gateway_id, req->session, 0)) {
        /* m's previous session has closed: its gateway sends nothing more for it. */
        send_retired(c, ns, m, m->rare->prev_gateway, m->rare->prev_session, 0);
        prev_clear(m);
        return;
    }
    /* Only the session that holds the id may end it: a stale leave is ignored. */
    if (!m || strcmp(m->gateway, req->gateway_id) || m->session != req->session)
        return;
    ms_member_leave(c, ns, m, req->leave && *req->leave->reason ? req->leave->reason : "left");
}

/* A gateway went silent: its peers wait out the resume grace period, queued by the time
 * (c->members.detached). Only its own members, from its list (gwmembers.h): nothing here
 * changes a member's namespace or gateway. */
static void detach_members_of(ms_coord_t *c, const char *gateway, uint64_t now)
{
    size_t n = 0;
    ms_gwm_list_t *l = ms_gwm_of(&c->members.by_gw, gateway);
    for (uint32_t k = 0; l && k < l->n; k++) {
        ms_ns_t *ns = l->v[k].ns;
        ms_member_t *m = l->v[k].m;
        c->members.n_lost_visited++;
        if (m->detached_ms)
            continue;
        if (ms_detq_push(&c->members.detached, now, ns->name, m->id))
            c->members.detached_unqueued = 1;
        m->detached_ms = now;
        n++;
    }
    if (c->members.detached_unqueued)
        ms_error("out of memory queueing detached peers: every member is walked until they go");
    ms_warn("gateway %s is silent: %zu peers may resume elsewhere within %ld ms", gateway, n,
            c->cfg->resume_grace_ms);
}

/* The member an entry of c->members.detached names, when it is still detached since then. */
static ms_member_t *detached_member(ms_coord_t *c, const ms_detached_t *d, ms_ns_t **ns_out)
{
    ms_ns_t *ns = ms_ns_find(c, d->ns);
    ms_member_t *m = ns ? ms_ns_member(ns, d->id) : NULL;
    if (!m || m->detached_ms != d->at_ms)
        return NULL;
    *ns_out = ns;
    return m;
}

/* The gateway was silent but is back, the same process: its peers' sessions
 * lived on, so those still waiting out their grace (not resumed elsewhere)
 * are attached again instead of leaving when it runs out. Their entries stay
 * queued and are dropped when due. */
static void reattach_members_of(ms_coord_t *c, const char *gateway)
{
    size_t n = 0;
    ms_gwm_list_t *l = ms_gwm_of(&c->members.by_gw, gateway);
    for (uint32_t k = 0; l && k < l->n; k++) {
        if (l->v[k].m->detached_ms) {
            ms_member_reattach(l->v[k].m);
            n++;
        }
    }
    if (n)
        ms_info("gateway %s is back: %zu peers attached again", gateway, n);
}

/* The slow way, only after a detached peer could not be queued: every member of every
 * namespace, a batch at a time. Clears detached_unqueued once nobody is detached. */
static void leave_due_walk(ms_coord_t *c, uint64_t now)
{
    size_t still = 0;
    ms_ns_t *ns;
    MS_NS_FOREACH(c, ns, w)
    {
        /* A leave moves members within the index: they are collected first,
         * a batch at a time (a leave removes only the member leaving, so the
         * others collected stay valid), until a pass finds none. */
        for (int gone = 0; !gone;) {
            ms_member_t *due[64], *m;
            size_t n = 0;
            MS_NS_MEMBERS_FOREACH(ns, i, m)
            if (n < sizeof(due) / sizeof(due[0]) && m->detached_ms &&
                now - m->detached_ms >= (uint64_t)c->cfg->resume_grace_ms)
                due[n++] = m;
            if (!n) {
                MS_NS_MEMBERS_FOREACH(ns, i, m)
                still += m->detached_ms != 0;
                break;
            }
            for (size_t k = 0; k < n && !gone; k++) {
                /* The last leave frees the namespace: stop there. */
                gone = ns->members.n == 1 && !ms_ns_mods(ns)->waiting;
                ms_member_leave(c, ns, due[k], "gateway lost");
            }
        }
    }
    if (!still)
        c->members.detached_unqueued = 0;
}

void ms_member_liveness(ms_coord_t *c, uint64_t now)
{
    /* Every 250 ms is plenty for second-scale timeouts. */
    if (now < c->members.next_liveness_ms)
        return;
    c->members.next_liveness_ms = now + 250;
    ms_gw_sweep(c, now, detach_members_of, reattach_members_of);
    /* Detached peers whose grace ran out leave as usual: those detached at or before
     * now - grace, the head of the queue (entries of peers that resumed, came back or left
     * meanwhile are dropped). */
    uint64_t grace = (uint64_t)c->cfg->resume_grace_ms;
    if (now >= grace) {
        ms_detached_t *d;
        while ((d = ms_detq_pop_due(&c->members.detached, now - grace)) != NULL) {
            ms_ns_t *ns;
            ms_member_t *m = detached_member(c, d, &ns);
            if (m)
                ms_member_leave(c, ns, m, "gateway lost");
            free(d);
        }
    }
    if (c->members.detached_unqueued)
        leave_due_walk(c, now);
}

void ms_member_cleanup(ms_coord_t *c)
{
    ms_detq_cleanup(&c->members.detached);
    ms_gwm_cleanup(&c->members.by_gw);
}

const ms_ns_hooks_t ms_member_hooks = {.name = "waiting joins", .cleanup = waiting_cleanup};

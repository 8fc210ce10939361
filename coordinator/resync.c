/* SPDX-License-Identifier: Apache-2.0 */
/* Takeover rebuild: a new owner asks every gateway what it holds of the shard and rebuilds
 * members, topology and registry from those reports, sending only the difference.
 *
 * The gateways hold the truth about who is connected and which edges each
 * client was told about (DESIGN.md §2). The engine restores from the reported
 * neighbours and parents (ops->restore, else ms_topo_restore_generic), whose
 * diff is relative to what the peers reported: an edge that exists on both
 * sides produces no event, so no working WebRTC connection moves. Requests
 * for the shard wait (cluster.c) until the rebuild is done.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "intern.h"
#include "internal.h"
#include "log.h"
#include "subject.h"

struct ms_resync {
    uint64_t epoch;
    uint64_t deadline;
    char **answered; /* gateways whose last part arrived */
    size_t n_answered;
    Meshsig__Bus__ResyncReport **reports;
    size_t n_reports, cap_reports;
};

void ms_resync_free(ms_resync_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_answered; i++)
        free(r->answered[i]);
    free(r->answered);
    for (size_t i = 0; i < r->n_reports; i++)
        meshsig__bus__resync_report__free_unpacked(r->reports[i], NULL);
    free(r->reports);
    free(r);
}

/* A ResyncRequest for shard at epoch, to every gateway (gateway NULL) or one. */
static void send_request(ms_coord_t *c, uint32_t shard, uint64_t epoch, const char *gateway)
{
    char reply[200], subj[200];
    ms_subject(reply, sizeof(reply), c->cfg->prefix, MS_SUBJ_COORD_RESYNC, c->id);
    ms_subject(subj, sizeof(subj), c->cfg->prefix, MS_SUBJ_GW_RESYNC, NULL);
    Meshsig__Bus__ResyncRequest rq = MESHSIG__BUS__RESYNC_REQUEST__INIT;
    rq.shard = shard;
    rq.epoch = epoch;
    rq.coordinator_id = c->id;
    rq.reply_to = reply;
    rq.shards = (uint32_t)c->cfg->shards;
    rq.gateway_id = (char *)(gateway ? gateway : "");
    rq.bus_version = MS_BUS_VERSION;
    uint8_t buf[512];
    size_t len = meshsig__bus__resync_request__get_packed_size(&rq);
    if (len <= sizeof(buf)) {
        meshsig__bus__resync_request__pack(&rq, buf);
        ms_bus_publish(c->bus, subj, NULL, buf, len);
    }
}

ms_resync_t *ms_resync_begin(ms_coord_t *c, uint32_t shard, uint64_t epoch)
{
    ms_resync_t *r = calloc(1, sizeof(*r));
    if (!r) {
        ms_error("shard %u: out of memory; serving it without a rebuild", shard);
        return NULL; /* poll finds no resync and reports done */
    }
    r->epoch = epoch;
    r->deadline = ms_clock_mono_ms() + (uint64_t)c->cfg->resync_timeout_ms;
    send_request(c, shard, epoch, NULL);
    return r;
}

void ms_resync_ask(ms_coord_t *c, uint32_t shard, uint64_t epoch, const char *gateway)
{
    send_request(c, shard, epoch, gateway);
}

size_t ms_resync_n_answered(const ms_resync_t *r)
{
    return r ? r->n_answered : 0;
}

const char *ms_resync_answered_at(const ms_resync_t *r, size_t i)
{
    return r->answered[i];
}

void ms_resync_add(ms_resync_t *r, const Meshsig__Bus__ResyncReport *rr)
{
    if (rr->epoch != r->epoch)
        return; /* an answer to an earlier takeover */
    /* Kept as a copy: the caller frees rr. */
    size_t len = meshsig__bus__resync_report__get_packed_size(rr);
    uint8_t *buf = malloc(len ? len : 1);
    Meshsig__Bus__ResyncReport *copy = NULL;
    if (buf) {
        meshsig__bus__resync_report__pack(rr, buf);
        copy = meshsig__bus__resync_report__unpack(NULL, len, buf);
    }
    free(buf);
    if (copy && r->n_reports == r->cap_reports) {
        size_t ncap = r->cap_reports ? r->cap_reports * 2 : 8;
        Meshsig__Bus__ResyncReport **nv = realloc(r->reports, ncap * sizeof(*nv));
        if (nv) {
            r->reports = nv;
            r->cap_reports = ncap;
        }
    }
    if (!copy || r->n_reports == r->cap_reports) {
        ms_error("shard %u: out of memory keeping a resync report from %s", rr->shard,
                 rr->gateway_id);
        if (copy)
            meshsig__bus__resync_report__free_unpacked(copy, NULL);
        return;
    }
    r->reports[r->n_reports++] = copy;
    if (rr->last) {
        char **nv = realloc(r->answered, (r->n_answered + 1) * sizeof(*nv));
        if (nv) {
            r->answered = nv;
            if ((r->answered[r->n_answered] = strdup(rr->gateway_id)))
                r->n_answered++;
        }
    }
}

static int answered(const ms_resync_t *r, const char *gw)
{
    for (size_t i = 0; i < r->n_answered; i++)
        if (!strcmp(r->answered[i], gw))
            return 1;
    return 0;
}

/* Every live gateway answered. Right after start the coordinator may not
 * have heard every gateway's heartbeat yet (they come once a second), so an
 * empty list counts only once it has listened that long. */
static int complete(ms_coord_t *c, const ms_resync_t *r, uint64_t now, uint64_t listening_since)
{
    size_t live = 0;
    ms_gw_info_t *g, *tmp;
    MS_GW_FOREACH(c, g, tmp)
    {
        if (g->dead)
            continue;
        live++;
        if (!answered(r, g->id))
            return 0;
    }
    return live > 0 || now - listening_since >= 1100;
}

ms_member_t *ms_resync_member_from(ms_ns_t *ns, const char *gateway,
                                   const Meshsig__Bus__SessionReport *sr)
{
    ms_member_t *m = ms_member_new(sr->peer_id);
    if (!m || !(m->gateway = ms_intern(gateway)))
        goto fail;
    m->session = sr->session;
    if (sr->position)
        ms_member_set_client_pos(m, ms_ns_position_dup(sr->position));
    if (sr->metadata) {
        /* Over 4096 bytes was never accepted at join: not from a real session, dropped. */
        size_t len = meshsig__v1__struct__get_packed_size(sr->metadata);
        if (len <= 4096 && ms_member_set_metadata(m, sr->metadata, len) != MS_OK)
            goto fail;
    }
    m->pos = ms_ns_position(ns, m->id, ms_member_rare(m)->client_pos);
    if (ms_ns_policy_network(ns))
        m->pos = ms_member_network_origin(m);
    return m;
fail:
    ms_member_free(m);
    return NULL;
}

typedef struct {
    const Meshsig__Bus__SessionReport *sr;
    ms_member_t *m;
} rb_peer_t;

static ms_peer_t handle_of(ms_ns_t *ns, const char *id)
{
    ms_member_t *m = *id ? ms_ns_member(ns, id) : NULL;
    return m ? m->handle : MS_PEER_NONE;
}

static void restore_pairs(ms_coord_t *c, ms_ns_t *ns, const rb_peer_t *peers, size_t n)
{
    ms_member_t **placed = calloc(n ? n : 1, sizeof(*placed));
    const Meshsig__Bus__SessionReport **srs = calloc(n ? n : 1, sizeof(*srs));
    size_t k = 0;
    if (!placed || !srs) {
        ms_error("%s: out of memory restoring ad-hoc pairs; they are made again as signals come",
                 ns->name);
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        if (peers[i].m) {
            placed[k] = peers[i].m;
            srs[k++] = peers[i].sr;
        }
    ms_pairs_restore(c, ns, placed, srs, k);
done:
    free(placed);
    free(srs);
}

/* Rebuilds one namespace from its sessions' reports. Returns the number of
 * topology events sent (the difference), or -1. */
static long rebuild_ns(ms_coord_t *c, const char *name, rb_peer_t *peers, size_t n)
{
    ms_ns_t *ns = NULL;
    ms_topo_report_t *rep = NULL;
    ms_peer_t *nb = NULL;
    long events = -1;
    if (ms_ns_get(c, name, &ns) != MS_OK)
        return -1;
    size_t n_nb = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        if (!peers[i].m)
            continue;
        /* The tree's source takes its slot (handle 0) again. */
        peers[i].m->source = (uint8_t)peers[i].sr->source;
        if (ms_ns_member(ns, peers[i].m->id) || ms_ns_alloc_handle(ns, peers[i].m) != MS_OK) {
            /* Two sessions report one id (a stale one on a dying gateway): keep the first. */
            ms_member_free(peers[i].m);
            peers[i].m = NULL;
            continue;
        }
        if (ms_ns_member_add(c, ns, peers[i].m) != MS_OK) {
            /* Out of memory: left out, as above; its gateway's next report brings it. */
            ms_ns_free_handle(ns, peers[i].m);
            ms_member_free(peers[i].m);
            peers[i].m = NULL;
            continue;
        }
        ms_gw_seen(c, peers[i].m->gateway);
        n_nb += peers[i].sr->n_neighbours;
    }
    rep = calloc(n ? n : 1, sizeof(*rep));
    nb = calloc(n_nb ? n_nb : 1, sizeof(*nb));
    if (!rep || !nb)
        goto done;
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        ms_member_t *m = peers[i].m;
        if (!m)
            continue;
        const Meshsig__Bus__SessionReport *sr = peers[i].sr;
        rep[k].peer = m->handle;
        rep[k].pos = m->pos;
        rep[k].parent = handle_of(ns, sr->parent);
        rep[k].neighbours = nb + used;
        for (size_t j = 0; j < sr->n_neighbours; j++) {
            ms_peer_t h = handle_of(ns, sr->neighbours[j]);
            if (h != MS_PEER_NONE)
                nb[used + rep[k].n_neighbours++] = h;
            else if (*sr->neighbours[j] && ms_member_dangling_add(m, sr->neighbours[j]) != MS_OK)
                ms_error("%s/%s: out of memory keeping a neighbour", name, m->id);
        }
        used += rep[k].n_neighbours;
        k++;
        if (ms_ns_restore_member(c, ns, m, sr) != MS_OK)
            ms_error("%s/%s: out of memory restoring rooms and services", name, m->id);
    }
    ms_topo_diff_t *diff = ms_ns_diff(c);
    ms_err_t err = ns->engine->ops->restore ? ns->engine->ops->restore(ns->engine, rep, k, diff)
                                            : ms_topo_restore_generic(ns->engine, rep, k, diff);
    if (err != MS_OK) {
        ms_error("%s: topology restore failed: %s", name, ms_err_str(err));
        goto done;
    }
    /* The edge health the gateways kept, and the repairs around edges failed for good. */
    for (size_t i = 0; i < n; i++)
        if (peers[i].m)
            ms_edges_restore(ns, peers[i].m, peers[i].sr);
    ms_edges_restore_repairs(ns, diff);
    ms_topo_diff_normalize(diff);
    events = (long)(diff->n_connect + diff->n_disconnect);
    ms_ns_apply_diff(c, ns, diff, NULL, NULL, 0);
    /* The ad-hoc pairs the gateways hold (signals:any namespaces). */
    restore_pairs(c, ns, peers, n);
    /* Persistent emits stored for them while they were here (the old owner
     * could not deliver, or lost the shard between fetch and delivery). */
    for (size_t i = 0; i < n; i++)
        if (peers[i].m)
            ms_emit_member_restored(c, ns, peers[i].m);
    ms_info("%s rebuilt: %zu peers, %zu edges added, %zu dropped", name, k, diff->n_connect,
            diff->n_disconnect);
done:
    free(rep);
    free(nb);
    /* On failure the members (already in ns) go with it; the gateways' next
     * requests get NOT_JOINED and their clients join again. */
    if (events < 0)
        ms_ns_destroy(c, ns);
    else
        ms_ns_destroy_if_empty(c, ns);
    for (size_t i = 0; i < n; i++)
        peers[i].m = NULL; /* owned by the namespace, or freed with it */
    return events;
}

long ms_resync_rebuild(ms_coord_t *c, uint32_t shard, Meshsig__Bus__ResyncReport **reports,
                       size_t n_reports)
{
    size_t total = 0;
    for (size_t i = 0; i < n_reports; i++)
        total += reports[i]->n_sessions;
    rb_peer_t *peers = calloc(total ? total : 1, sizeof(*peers));
    long events = 0;
    if (!peers)
        return -1;
    /* One pass per namespace, in the order the reports name them. */
    for (size_t i = 0; i < n_reports; i++) {
        for (size_t s = 0; s < reports[i]->n_sessions; s++) {
            const char *name = reports[i]->sessions[s]->namespace_;
            if (ms_bus_shard_of(name, (uint32_t)c->cfg->shards) != shard || ms_ns_find(c, name))
                continue; /* another shard's, or rebuilt already */
            /* The members are made before their namespace (rebuild_ns): a stand-in with its
             * name and policy gives them their positions. */
            size_t len = strlen(name);
            ms_ns_t *tmp_ns = calloc(1, sizeof(*tmp_ns) + len + 1);
            if (!tmp_ns) {
                events = -1;
                continue;
            }
            memcpy(tmp_ns->name, name, len + 1);
            tmp_ns->policy = ms_policies_for(c, name); /* borrowed: not a shared copy */
            size_t n = 0;
            for (size_t a = 0; a < n_reports; a++)
                for (size_t b = 0; b < reports[a]->n_sessions; b++) {
                    const Meshsig__Bus__SessionReport *sr = reports[a]->sessions[b];
                    if (strcmp(sr->namespace_, name) || !*sr->peer_id)
                        continue;
                    peers[n].sr = sr;
                    peers[n].m = ms_resync_member_from(tmp_ns, reports[a]->gateway_id, sr);
                    n++;
                }
            free(tmp_ns);
            long e = rebuild_ns(c, name, peers, n);
            for (size_t k = 0; k < n; k++)
                ms_member_free(peers[k].m); /* only those the namespace did not take */
            if (e < 0)
                events = -1;
            else if (events >= 0)
                events += e;
        }
    }
    free(peers);
    return events;
}

int ms_resync_poll(ms_coord_t *c, ms_resync_t *r, uint32_t shard, uint64_t now,
                   uint64_t listening_since)
{
    if (!r)
        return 1;
    if (now < r->deadline && !complete(c, r, now, listening_since))
        return 0;
    long ev = ms_resync_rebuild(c, shard, r->reports, r->n_reports);
    ms_info("shard %u (epoch %llu) rebuilt from %zu reports of %zu gateways: %ld topology "
            "events",
            shard, (unsigned long long)r->epoch, r->n_reports, r->n_answered, ev);
    return 1;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Resync: a new owner of a shard asks what we hold in it; we report our sessions in batches. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "edgehealth.h"
#include "internal.h"
#include "log.h"

#define RESYNC_BATCH 200

static void resync_send(ms_gateway_t *gw, const Meshsig__Bus__ResyncRequest *rq,
                        Meshsig__Bus__SessionReport **reps, size_t n, int last)
{
    Meshsig__Bus__ResyncReport rr = MESHSIG__BUS__RESYNC_REPORT__INIT;
    rr.gateway_id = gw->id;
    rr.shard = rq->shard;
    rr.epoch = rq->epoch;
    rr.n_sessions = n;
    rr.sessions = reps;
    rr.last = last;
    rr.bus_version = MS_BUS_VERSION;
    size_t len = meshsig__bus__resync_report__get_packed_size(&rr);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        ms_error("out of memory answering a resync of shard %u", rq->shard);
        return;
    }
    meshsig__bus__resync_report__pack(&rr, buf);
    if (ms_bus_publish(gw->bus, rq->reply_to, NULL, buf, len) != MS_OK)
        ms_warn("resync report for shard %u not sent", rq->shard);
    free(buf);
}

static void report_free(Meshsig__Bus__SessionReport *r)
{
    if (r->position)
        meshsig__v1__position__free_unpacked(r->position, NULL);
    if (r->metadata)
        meshsig__v1__struct__free_unpacked(r->metadata, NULL);
    free(r->edge_health);
    free(r->neighbours);
    free(r->pairs);
    free(r->rooms);
    free(r->services);
    free(r->subscriptions);
}

/* A set's entries for a report (freed by report_free). */
static char **report_list(const ms_strset_t *set, size_t *n)
{
    char **v = ms_strset_list(set);
    if (set->n && !v)
        ms_error("out of memory reporting a session; the new owner is told fewer of its peers");
    *n = v ? set->n : 0;
    return v;
}

/* The edge health of s's neighbours, same order, when any was reported (else none sent). */
static void report_edge_health(const ms_session_t *s, Meshsig__Bus__SessionReport *r)
{
    uint32_t *v = NULL;
    for (uint32_t i = 0; r->neighbours && i < s->neighbours.n; i++) {
        uint8_t h = ms_strset_tag_at(&s->neighbours, i);
        if (!h)
            continue;
        if (!v && !(v = calloc(s->neighbours.n, sizeof(*v)))) {
            ms_error("out of memory reporting edge health; the new owner counts them pending");
            return;
        }
        v[i] = h;
    }
    r->edge_health = v;
    r->n_edge_health = v ? s->neighbours.n : 0;
}

void ms_gw_resync_report(ms_gateway_t *gw, const Meshsig__Bus__ResyncRequest *rq)
{
    if (!*rq->reply_to || (*rq->gateway_id && strcmp(rq->gateway_id, gw->id)))
        return; /* asked of another gateway */
    if (rq->shards && rq->shards != (uint32_t)gw->cfg->shards)
        ms_warn("coordinator %s uses %u shards, this gateway %ld: fix --shards", rq->coordinator_id,
                rq->shards, gw->cfg->shards);
    Meshsig__Bus__SessionReport reps[RESYNC_BATCH], *ptrs[RESYNC_BATCH];
    size_t n = 0, total = 0;
    ms_session_t *s;
    MS_PIDX_FOREACH(&gw->sessions, i, s)
    {
        if (s->state != MS_SESSION_JOINED || s->shard != rq->shard || !s->peer_id)
            continue;
        Meshsig__Bus__SessionReport *r = &reps[n];
        meshsig__bus__session_report__init(r);
        r->session = s->id;
        r->namespace_ = s->ns;
        r->peer_id = s->peer_id;
        static const ms_session_ext_t none;
        const ms_session_ext_t *x = s->ext ? s->ext : &none;
        r->position = x->hello_pos
                          ? meshsig__v1__position__unpack(NULL, x->hello_pos_len, x->hello_pos)
                          : NULL;
        r->metadata = x->hello_meta
                          ? meshsig__v1__struct__unpack(NULL, x->hello_meta_len, x->hello_meta)
                          : NULL;
        r->neighbours = report_list(&s->neighbours, &r->n_neighbours);
        report_edge_health(s, r);
        r->pairs = report_list(&s->pairs, &r->n_pairs);
        r->parent = x->parent ? x->parent : (char *)"";
        r->source = s->source;
        r->rooms = report_list(&x->rooms, &r->n_rooms);
        r->services = report_list(&x->services, &r->n_services);
        r->subscriptions = report_list(&x->subscriptions, &r->n_subscriptions);
        ptrs[n++] = r;
        total++;
        if (n == RESYNC_BATCH) {
            resync_send(gw, rq, ptrs, n, 0);
            for (size_t i = 0; i < n; i++)
                report_free(&reps[i]);
            n = 0;
        }
    }
    resync_send(gw, rq, ptrs, n, 1);
    for (size_t i = 0; i < n; i++)
        report_free(&reps[i]);
    ms_info("resync of shard %u for %s (epoch %llu): %zu sessions reported", rq->shard,
            rq->coordinator_id, (unsigned long long)rq->epoch, total);
}

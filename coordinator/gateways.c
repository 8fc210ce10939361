/* SPDX-License-Identifier: Apache-2.0 */
/* Gateways as seen through their heartbeats: a silent one is dead, its peers wait out the
 * resume grace period (to come back through another gateway) and then leave. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "log.h"

static ms_gw_info_t *gw_get(ms_coord_t *c, const char *id)
{
    ms_gw_info_t *g;
    HASH_FIND_STR(c->gateways, id, g);
    if (g)
        return g;
    g = calloc(1, sizeof(*g));
    if (!g || !(g->id = strdup(id))) {
        free(g);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, c->gateways, g->id, strlen(g->id), g);
    return g;
}

void ms_gw_seen(ms_coord_t *c, const char *gateway)
{
    ms_gw_info_t *g = gw_get(c, gateway);
    if (g && !g->last_seen_ms)
        g->last_seen_ms = ms_now_ms(); /* known before its first heartbeat */
}

void ms_gw_heartbeat(ms_coord_t *c, const Meshsig__Bus__Heartbeat *hb)
{
    if (!*hb->gateway_id)
        return;
    ms_gw_info_t *g = gw_get(c, hb->gateway_id);
    if (!g)
        return;
    if (g->dead)
        ms_info("gateway %s is back", g->id);
    g->last_seen_ms = ms_now_ms();
    g->started_ms = hb->started_ms;
    g->sessions = hb->sessions;
    g->bus_version = hb->bus_version;
    g->bus_refused = hb->bus_refused;
    snprintf(g->release, sizeof(g->release), "%s", hb->release);
    g->dead = 0;
}

static void detach_members_of(ms_coord_t *c, const char *gateway, uint64_t now)
{
    size_t n = 0;
    ms_ns_t *ns, *ntmp;
    HASH_ITER(hh, c->namespaces, ns, ntmp)
    {
        ms_member_t *m, *mtmp;
        HASH_ITER(hh, ns->members, m, mtmp)
        if (!m->detached_ms && !strcmp(m->gateway, gateway)) {
            m->detached_ms = now;
            c->n_detached++;
            n++;
        }
    }
    ms_warn("gateway %s is silent: %zu peers may resume elsewhere within %ld ms", gateway, n,
            c->cfg->resume_grace_ms);
}

void ms_gw_liveness(ms_coord_t *c, uint64_t now)
{
    /* Every 250 ms is plenty for second-scale timeouts. */
    if (now < c->next_liveness_ms)
        return;
    c->next_liveness_ms = now + 250;
    ms_gw_info_t *g, *gtmp;
    HASH_ITER(hh, c->gateways, g, gtmp)
    {
        if (!g->dead && now - g->last_seen_ms > (uint64_t)c->cfg->gateway_timeout_ms) {
            g->dead = 1;
            detach_members_of(c, g->id, now);
        }
    }
    /* Detached peers whose grace ran out leave as usual. */
    if (!c->n_detached)
        return;
    ms_ns_t *ns, *ntmp;
    HASH_ITER(hh, c->namespaces, ns, ntmp)
    {
        ms_member_t *m, *mtmp;
        HASH_ITER(hh, ns->members, m, mtmp)
        {
            if (!m->detached_ms || now - m->detached_ms < (uint64_t)c->cfg->resume_grace_ms)
                continue;
            /* The last leave may free the namespace: stop iterating it then. */
            int last = HASH_COUNT(ns->members) == 1 && !ns->waiting;
            ms_member_leave(c, ns, m, "gateway lost");
            if (last)
                break;
        }
    }
}

void ms_gw_cleanup(ms_coord_t *c)
{
    ms_gw_info_t *g, *tmp;
    HASH_ITER(hh, c->gateways, g, tmp)
    {
        HASH_DEL(c->gateways, g);
        free(g->id);
        free(g);
    }
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Gateways as seen through their heartbeats: a silent one is dead (member.c then lets its
 * peers wait out the resume grace period). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "internal.h"
#include "log.h"

static ms_gw_info_t *gw_get(ms_coord_t *c, const char *id)
{
    ms_gw_info_t *g;
    HASH_FIND_STR(c->gws.by_id, id, g);
    if (g)
        return g;
    g = calloc(1, sizeof(*g));
    if (!g || !(g->id = strdup(id))) {
        free(g);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, c->gws.by_id, g->id, strlen(g->id), g);
    c->gws.gen++;
    return g;
}

void ms_gw_seen(ms_coord_t *c, const char *gateway)
{
    ms_gw_info_t *g = gw_get(c, gateway);
    if (g && !g->last_seen_ms)
        g->last_seen_ms = ms_clock_mono_ms(); /* known before its first heartbeat */
}

void ms_gw_heartbeat(ms_coord_t *c, const Meshsig__Bus__Heartbeat *hb)
{
    if (!*hb->gateway_id)
        return;
    ms_gw_info_t *g = gw_get(c, hb->gateway_id);
    if (!g)
        return;
    if (g->dead) {
        int same = g->started_ms && g->started_ms == hb->started_ms;
        g->returned = same;
        ms_info("gateway %s is back%s", g->id, same ? "" : " (restarted: its sessions are gone)");
    }
    if (g->dead || g->started_ms != hb->started_ms)
        c->gws.gen++;
    g->last_seen_ms = ms_clock_mono_ms();
    g->started_ms = hb->started_ms;
    g->sessions = hb->sessions;
    g->bus_version = hb->bus_version;
    g->bus_refused = hb->bus_refused;
    snprintf(g->release, sizeof(g->release), "%s", hb->release);
    g->dead = 0;
}

void ms_gw_sweep(ms_coord_t *c, uint64_t now,
                 void (*died)(ms_coord_t *c, const char *gateway, uint64_t now_ms),
                 void (*back)(ms_coord_t *c, const char *gateway))
{
    ms_gw_info_t *g, *gtmp;
    HASH_ITER(hh, c->gws.by_id, g, gtmp)
    {
        if (g->returned && !g->dead) {
            g->returned = 0;
            back(c, g->id);
        }
        if (!g->dead && now - g->last_seen_ms > (uint64_t)c->cfg->gateway_timeout_ms) {
            g->dead = 1;
            g->deaths++;
            c->gws.gen++;
            died(c, g->id, now);
        }
    }
}

void ms_gw_cleanup(ms_coord_t *c)
{
    ms_gw_info_t *g, *tmp;
    HASH_ITER(hh, c->gws.by_id, g, tmp)
    {
        HASH_DEL(c->gws.by_id, g);
        free(g->id);
        free(g);
    }
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Takeover rebuild: a new owner asks every gateway what it holds of a shard and rebuilds the
 * shard's namespaces from the reports (resync.c has the reasoning). Loop thread only. */
#ifndef MS_COORD_RESYNC_H
#define MS_COORD_RESYNC_H

#include <stddef.h>
#include <stdint.h>

#include "bus.pb-c.h"

typedef struct ms_coord ms_coord_t;
typedef struct ms_resync ms_resync_t;

/* Asks the gateways for shard's sessions (a ResyncRequest for this epoch). NULL when out of
 * memory: the shard is then served without a rebuild. */
ms_resync_t *ms_resync_begin(ms_coord_t *c, uint32_t shard, uint64_t epoch);
void ms_resync_free(ms_resync_t *r);
/* Asks one gateway for its sessions of shard at epoch, outside a takeover (gwsync.c); the
 * answer comes like a takeover's, to ms_cluster_resync_report. */
void ms_resync_ask(ms_coord_t *c, uint32_t shard, uint64_t epoch, const char *gateway);
/* The gateways whose last part arrived (r may be NULL: none). */
size_t ms_resync_n_answered(const ms_resync_t *r);
const char *ms_resync_answered_at(const ms_resync_t *r, size_t i);
/* Keeps a copy of a gateway's report when it answers this takeover (same epoch). */
void ms_resync_add(ms_resync_t *r, const Meshsig__Bus__ResyncReport *rr);
/* 1 once the shard is rebuilt (every live gateway answered, or the wait is
 * over); listening_since: when this coordinator started hearing heartbeats. */
int ms_resync_poll(ms_coord_t *c, ms_resync_t *r, uint32_t shard, uint64_t now,
                   uint64_t listening_since);
/* Rebuilds every namespace of shard named in reports (borrowed) and sends the
 * difference. Returns the number of topology events sent, or -1. */
/* A member record for a reported session (position, metadata, id, gateway) of ns; no handle
 * yet. NULL when out of memory. */
struct ms_member *ms_resync_member_from(struct ms_ns *ns, const char *gateway,
                                        const Meshsig__Bus__SessionReport *sr);
long ms_resync_rebuild(ms_coord_t *c, uint32_t shard, Meshsig__Bus__ResyncReport **reports,
                       size_t n_reports);

#endif

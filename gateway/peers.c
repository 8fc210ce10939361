/* SPDX-License-Identifier: Apache-2.0 */
/* The index of joined sessions by (namespace, peer id), for relaying between neighbours. */
#include <string.h>
#include <uthash.h>

#include "hash.h"
#include "internal.h"

static uint64_t peer_key(const char *ns, const char *peer)
{
    uint64_t h = ms_fnv1a64(ns, strlen(ns) + 1); /* the NUL separates the two */
    h ^= ms_fnv1a64(peer, strlen(peer));
    return h * 0x9e3779b97f4a7c15ULL;
}

void ms_gw_peer_index_remove(ms_gateway_t *gw, ms_session_t *s)
{
    if (!s->peer_indexed)
        return;
    HASH_DELETE(hh_peer, gw->by_peer, s);
    s->peer_indexed = 0;
}

/* A session that has just joined. A session still indexed under the same
 * (namespace, peer) holds a peer that was replaced or is closing: it loses
 * its entry. */
void ms_gw_peer_index_add(ms_gateway_t *gw, ms_session_t *s)
{
    ms_gw_peer_index_remove(gw, s);
    if (!s->ns || !s->peer_id)
        return;
    s->peer_key = peer_key(s->ns, s->peer_id);
    ms_session_t *old;
    HASH_FIND(hh_peer, gw->by_peer, &s->peer_key, sizeof(s->peer_key), old);
    if (old)
        ms_gw_peer_index_remove(gw, old);
    HASH_ADD(hh_peer, gw->by_peer, peer_key, sizeof(s->peer_key), s);
    s->peer_indexed = 1;
}

/* The joined session of this gateway holding peer in ns, or NULL. */
ms_session_t *ms_gw_peer_index_find(ms_gateway_t *gw, const char *ns, const char *peer)
{
    uint64_t key = peer_key(ns, peer);
    ms_session_t *t;
    HASH_FIND(hh_peer, gw->by_peer, &key, sizeof(key), t);
    if (!t || t->state != MS_SESSION_JOINED || t->closing || strcmp(t->peer_id, peer) ||
        strcmp(t->ns, ns))
        return NULL;
    return t;
}

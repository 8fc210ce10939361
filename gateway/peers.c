/* SPDX-License-Identifier: Apache-2.0 */
/* The index of joined sessions by (namespace, peer id), for relaying between neighbours. */
#include <string.h>

#include "hash.h"
#include "intern.h"
#include "internal.h"

/* The key of (namespace, peer) from the namespace's keyed hash (ns_h, hash.h) and the
 * peer's: clients choose both, and a key they cannot predict keeps them from piling their
 * sessions into one run of the index. A session's namespace is interned (hello.c), with its
 * hash kept: a lookup hashes only the peer id. */
static uint64_t peer_key_h(uint64_t ns_h, const char *peer)
{
    uint64_t h = ns_h * 0x9e3779b97f4a7c15ULL;
    h ^= ms_hash_keyed(peer, strlen(peer));
    return h * 0x9e3779b97f4a7c15ULL;
}

uint64_t ms_gw_peer_hash(const void *s)
{
    return ((const ms_session_t *)s)->peer_key;
}

static int peer_key_is(const void *s, const void *key)
{
    return ((const ms_session_t *)s)->peer_key == *(const uint64_t *)key;
}

void ms_gw_peer_index_remove(ms_gateway_t *gw, ms_session_t *s)
{
    if (!s->peer_indexed)
        return;
    ms_pidx_remove(&gw->by_peer, s);
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
    s->peer_key = peer_key_h(ms_intern_hash(s->ns), s->peer_id);
    ms_session_t *old = ms_pidx_find(&gw->by_peer, s->peer_key, peer_key_is, &s->peer_key);
    if (old)
        ms_gw_peer_index_remove(gw, old);
    /* Out of memory: not indexed, so its neighbours here reach it through
     * the owner (by session id) instead of directly. */
    if (ms_pidx_add(&gw->by_peer, s) == 0)
        s->peer_indexed = 1;
}

static ms_session_t *find(ms_gateway_t *gw, uint64_t key, const char *peer)
{
    ms_session_t *t = ms_pidx_find(&gw->by_peer, key, peer_key_is, &key);
    if (!t || t->state != MS_SESSION_JOINED || t->closing || strcmp(t->peer_id, peer))
        return NULL;
    return t;
}

/* ns is interned: equal names are one pointer while both are held. */
ms_session_t *ms_gw_peer_index_find(ms_gateway_t *gw, const char *ns, const char *peer)
{
    if (!ns)
        return NULL; /* the session's namespace was not interned: out of memory */
    ms_session_t *t = find(gw, peer_key_h(ms_intern_hash(ns), peer), peer);
    return t && t->ns == ns ? t : NULL;
}

ms_session_t *ms_gw_peer_index_find_name(ms_gateway_t *gw, const char *ns, const char *peer)
{
    ms_session_t *t = find(gw, peer_key_h(ms_hash_keyed(ns, strlen(ns)), peer), peer);
    return t && !strcmp(t->ns, ns) ? t : NULL;
}

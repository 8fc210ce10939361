/* SPDX-License-Identifier: Apache-2.0 */
/* Peer-id bans per namespace with a monotonic deadline. */
#include <stdlib.h>
#include <string.h>

#include "ban.h"
#include "table.h"

struct ms_ban {
    char *key; /* "<ns>\0<peer>" */
    size_t key_len;
    uint64_t until_ms;
    char *reason;
    UT_hash_handle hh;
};

static char *make_key(const char *ns, const char *peer, size_t *len)
{
    size_t nl = strlen(ns), pl = strlen(peer);
    char *k = malloc(nl + 1 + pl + 1);
    if (!k)
        return NULL;
    memcpy(k, ns, nl + 1);
    memcpy(k + nl + 1, peer, pl + 1);
    *len = nl + 1 + pl;
    return k;
}

static void ban_free(ms_ban_t *e)
{
    free(e->key);
    free(e->reason);
    free(e);
}

static void drop(ms_bans_t *b, ms_ban_t *e)
{
    HASH_DEL(b->by_key, e);
    b->n--;
    ban_free(e);
}

static void purge_expired(ms_bans_t *b, uint64_t now_ms)
{
    ms_ban_t *e, *tmp;
    HASH_ITER(hh, b->by_key, e, tmp)
    if (e->until_ms <= now_ms)
        drop(b, e);
}

static ms_ban_t *find(ms_bans_t *b, const char *ns, const char *peer)
{
    size_t len = 0;
    char *k = make_key(ns, peer, &len);
    ms_ban_t *e = NULL;
    if (k)
        HASH_FIND(hh, b->by_key, k, len, e);
    free(k);
    return e;
}

ms_err_t ms_ban_add(ms_bans_t *b, const char *ns, const char *peer, long seconds,
                    const char *reason, uint64_t now_ms)
{
    if (seconds < 1 || seconds > MS_BAN_MAX_S)
        return MS_ERR_INVAL;
    ms_ban_t *e = find(b, ns, peer);
    if (e)
        drop(b, e);
    if (b->n >= MS_BAN_MAX)
        purge_expired(b, now_ms);
    if (b->n >= MS_BAN_MAX)
        return MS_ERR_FULL;
    if (!(e = calloc(1, sizeof(*e))) || !(e->key = make_key(ns, peer, &e->key_len)) ||
        !(e->reason = strdup(reason ? reason : ""))) {
        if (e)
            ban_free(e);
        return MS_ERR_NOMEM;
    }
    e->until_ms = now_ms + (uint64_t)seconds * 1000;
    HASH_ADD_KEYPTR(hh, b->by_key, e->key, e->key_len, e);
    b->n++;
    return MS_OK;
}

long ms_ban_left(ms_bans_t *b, const char *ns, const char *peer, uint64_t now_ms,
                 const char **reason)
{
    ms_ban_t *e = b->n ? find(b, ns, peer) : NULL;
    if (!e)
        return 0;
    if (e->until_ms <= now_ms) {
        drop(b, e);
        return 0;
    }
    if (reason)
        *reason = e->reason;
    return (long)((e->until_ms - now_ms + 999) / 1000);
}

void ms_bans_cleanup(ms_bans_t *b)
{
    ms_ban_t *e, *tmp;
    HASH_ITER(hh, b->by_key, e, tmp)
    drop(b, e);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Client requests a gateway may send again: the record of each and of its first answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dedupe.h"
#include "table.h"

typedef struct ms_dedupe_rec {
    UT_hash_handle hh;                 /* by_key: the gateway's req_id */
    UT_hash_handle hp;                 /* by_pending: pkey, while pending and indexed */
    struct ms_dedupe_rec *prev, *next; /* in pending or answered */
    uint64_t stamp_ms;                 /* created (pending) or answered */
    uint32_t shard;
    uint32_t answer_len;
    uint8_t *answer; /* NULL while pending */
    uint8_t indexed; /* in by_pending */
    char *pkey;      /* "<gateway>\x1f<session>\x1f<client id>", after key */
    size_t pkey_len;
    char key[];
} rec_t;

/* The key into buf (cap bytes); 0 when it does not fit (such a request is not recorded). */
static size_t make_key(char *buf, size_t cap, const char *gateway, uint64_t session,
                       const char *cid)
{
    int n = snprintf(buf, cap, "%s\x1f%llu\x1f%s", gateway, (unsigned long long)session, cid);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

void ms_dedupe_init(ms_dedupe_t *d)
{
    memset(d, 0, sizeof(*d));
}

static void list_del(rec_t **head, rec_t **tail, rec_t *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        *head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        *tail = r->prev;
    r->prev = r->next = NULL;
}

static void list_add(rec_t **head, rec_t **tail, rec_t *r)
{
    r->next = NULL;
    r->prev = *tail;
    if (*tail)
        (*tail)->next = r;
    else
        *head = r;
    *tail = r;
}

static void unindex(ms_dedupe_t *d, rec_t *r)
{
    if (r->indexed)
        HASH_DELETE(hp, d->by_pending, r);
    r->indexed = 0;
}

static void rec_free(ms_dedupe_t *d, rec_t *r)
{
    HASH_DEL(d->by_key, r);
    unindex(d, r);
    if (r->answer) {
        list_del(&d->answered, &d->a_tail, r);
    } else {
        list_del(&d->pending, &d->p_tail, r);
        d->n_pending--;
    }
    d->n--;
    free(r->answer);
    free(r);
}

void ms_dedupe_cleanup(ms_dedupe_t *d)
{
    while (d->answered)
        rec_free(d, d->answered);
    while (d->pending)
        rec_free(d, d->pending);
}

ms_dedupe_seen_t ms_dedupe_seen(ms_dedupe_t *d, uint32_t shard, const char *req_id,
                                const char *gateway, uint64_t session, const char *cid,
                                uint64_t now_ms, const uint8_t **answer, size_t *len)
{
    char pkey[512];
    size_t kl = strlen(req_id), pl = make_key(pkey, sizeof(pkey), gateway, session, cid);
    if (!kl || !pl)
        return MS_DEDUPE_NEW;
    rec_t *r;
    HASH_FIND(hh, d->by_key, req_id, kl, r);
    if (r && r->answer) {
        d->n_again++;
        *answer = r->answer;
        *len = r->answer_len;
        return MS_DEDUPE_ANSWERED;
    }
    if (r) {
        d->n_received++;
        return MS_DEDUPE_PENDING;
    }
    if (d->n >= MS_DEDUPE_MAX) {
        d->n_evicted++;
        rec_free(d, d->answered ? d->answered : d->pending);
    }
    if (!(r = calloc(1, sizeof(*r) + kl + 1 + pl + 1)))
        return MS_DEDUPE_NEW;
    memcpy(r->key, req_id, kl + 1);
    r->pkey = r->key + kl + 1;
    memcpy(r->pkey, pkey, pl + 1);
    r->pkey_len = pl;
    r->shard = shard;
    r->stamp_ms = now_ms;
    HASH_ADD_KEYPTR(hh, d->by_key, r->key, kl, r);
    /* The answer is found by the client's id, which a client may use again once answered (the
     * JS SDK does for signals): only the newest request with it waits here. */
    rec_t *older;
    HASH_FIND(hp, d->by_pending, pkey, pl, older);
    if (older)
        unindex(d, older);
    HASH_ADD_KEYPTR(hp, d->by_pending, r->pkey, pl, r);
    r->indexed = 1;
    list_add(&d->pending, &d->p_tail, r);
    d->n++;
    d->n_pending++;
    return MS_DEDUPE_NEW;
}

void ms_dedupe_answer(ms_dedupe_t *d, const char *gateway, uint64_t session,
                      const Meshsig__V1__ServerMessage *msg, uint64_t now_ms)
{
    if (!d->n_pending || !msg->id || !*msg->id)
        return;
    char pkey[512];
    size_t pl = make_key(pkey, sizeof(pkey), gateway, session, msg->id);
    rec_t *r = NULL;
    if (pl)
        HASH_FIND(hp, d->by_pending, pkey, pl, r);
    if (!r)
        return; /* not recorded, or a later message with the same id: not the answer */
    size_t len = meshsig__v1__server_message__get_packed_size(msg);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        /* Without its answer the record would make copies wait: better applied again. */
        rec_free(d, r);
        return;
    }
    meshsig__v1__server_message__pack(msg, buf);
    unindex(d, r);
    list_del(&d->pending, &d->p_tail, r);
    d->n_pending--;
    r->answer = buf;
    r->answer_len = (uint32_t)len;
    r->stamp_ms = now_ms;
    list_add(&d->answered, &d->a_tail, r);
}

void ms_dedupe_expire(ms_dedupe_t *d, uint64_t now_ms)
{
    while (d->answered && now_ms - d->answered->stamp_ms > MS_DEDUPE_ANSWERED_TTL_MS)
        rec_free(d, d->answered);
    while (d->pending && now_ms - d->pending->stamp_ms > MS_DEDUPE_PENDING_TTL_MS)
        rec_free(d, d->pending);
}

void ms_dedupe_forget_shard(ms_dedupe_t *d, uint32_t shard)
{
    rec_t *r, *tmp;
    HASH_ITER(hh, d->by_key, r, tmp)
    {
        if (r->shard == shard)
            rec_free(d, r);
    }
}

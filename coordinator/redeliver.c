/* SPDX-License-Identifier: Apache-2.0 */
/* Stored emits handed to a gateway without a receipt yet, per peer, and when to fetch them again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "redeliver.h"
#include "uthash_keyed.h"

typedef struct rd_peer {
    char *key; /* "<ns>\x1f<peer>" */
    size_t n_seqs;
    unsigned tries;
    uint64_t next_ms; /* when to fetch again if a receipt is still missing */
    UT_hash_handle hh;
} rd_peer_t;

typedef struct rd_seq {
    uint64_t seq;
    rd_peer_t *peer;
    UT_hash_handle hh;
} rd_seq_t;

void ms_redeliver_init(ms_redeliver_t *r)
{
    memset(r, 0, sizeof(*r));
}

static void forget_peer(ms_redeliver_t *r, rd_peer_t *p)
{
    rd_seq_t *s, *tmp;
    if (p->n_seqs) {
        HASH_ITER(hh, r->seqs, s, tmp)
        {
            if (s->peer != p)
                continue;
            HASH_DEL(r->seqs, s);
            free(s);
            r->n_seqs--;
        }
    }
    HASH_DEL(r->peers, p);
    free(p->key);
    free(p);
}

void ms_redeliver_cleanup(ms_redeliver_t *r)
{
    rd_seq_t *s, *stmp;
    HASH_ITER(hh, r->seqs, s, stmp)
    {
        HASH_DEL(r->seqs, s);
        free(s);
    }
    rd_peer_t *p, *ptmp;
    HASH_ITER(hh, r->peers, p, ptmp)
    {
        HASH_DEL(r->peers, p);
        free(p->key);
        free(p);
    }
    r->n_seqs = 0;
}

void ms_redeliver_sent(ms_redeliver_t *r, const char *ns, const char *peer, uint64_t seq,
                       uint64_t now)
{
    rd_seq_t *s = NULL;
    HASH_FIND(hh, r->seqs, &seq, sizeof(seq), s);
    if (s || !seq || r->n_seqs >= MS_REDELIVER_MAX_SEQS)
        return;
    char key[512];
    int kl = snprintf(key, sizeof(key), "%s\x1f%s", ns, peer);
    if (kl < 0 || (size_t)kl >= sizeof(key))
        return;
    rd_peer_t *p = NULL;
    HASH_FIND(hh, r->peers, key, (size_t)kl, p);
    if (!p) {
        if (!(p = calloc(1, sizeof(*p))) || !(p->key = strdup(key))) {
            free(p);
            return; /* untracked: its peer's next session fetches it */
        }
        p->next_ms = now + MS_REDELIVER_FIRST_MS;
        HASH_ADD_KEYPTR(hh, r->peers, p->key, (size_t)kl, p);
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        if (!p->n_seqs)
            forget_peer(r, p);
        return;
    }
    s->seq = seq;
    s->peer = p;
    HASH_ADD(hh, r->seqs, seq, sizeof(s->seq), s);
    p->n_seqs++;
    r->n_seqs++;
}

void ms_redeliver_fetched(ms_redeliver_t *r, const char *ns, const char *peer, uint64_t now)
{
    char key[512];
    int kl = snprintf(key, sizeof(key), "%s\x1f%s", ns, peer);
    rd_peer_t *p = NULL;
    if (kl > 0 && (size_t)kl < sizeof(key))
        HASH_FIND(hh, r->peers, key, (size_t)kl, p);
    if (p && p->next_ms < now + MS_REDELIVER_FIRST_MS)
        p->next_ms = now + MS_REDELIVER_FIRST_MS;
}

void ms_redeliver_receipted(ms_redeliver_t *r, uint64_t seq)
{
    rd_seq_t *s = NULL;
    HASH_FIND(hh, r->seqs, &seq, sizeof(seq), s);
    if (!s)
        return;
    rd_peer_t *p = s->peer;
    HASH_DEL(r->seqs, s);
    free(s);
    r->n_seqs--;
    if (!--p->n_seqs)
        forget_peer(r, p);
}

void ms_redeliver_tick(ms_redeliver_t *r, uint64_t now,
                       int (*refetch)(const char *ns, const char *peer, void *ud), void *ud)
{
    /* Due times are seconds apart: a scan twice a second is soon enough. */
    if (!r->peers || now < r->next_scan_ms)
        return;
    r->next_scan_ms = now + 500;
    rd_peer_t *p, *tmp;
    HASH_ITER(hh, r->peers, p, tmp)
    {
        if (now < p->next_ms)
            continue;
        char key[512];
        snprintf(key, sizeof(key), "%s", p->key);
        char *sep = strchr(key, '\x1f');
        if (!sep) {
            forget_peer(r, p);
            continue;
        }
        *sep = '\0';
        if (p->tries >= MS_REDELIVER_MAX_TRIES) {
            ms_warn("%zu stored emits for %s/%s still have no receipt after %u deliveries; they "
                    "wait for its next session",
                    p->n_seqs, key, sep + 1, p->tries + 1);
            r->n_given_up++;
            forget_peer(r, p);
            continue;
        }
        if (!refetch(key, sep + 1, ud)) {
            forget_peer(r, p); /* not here: its next join (or owner) fetches them */
            continue;
        }
        ms_info("%zu stored emits for %s/%s have no receipt yet: delivered again (try %u)",
                p->n_seqs, key, sep + 1, p->tries + 1);
        r->n_refetched++;
        uint64_t wait = (uint64_t)MS_REDELIVER_FIRST_MS << (p->tries < 5 ? p->tries + 1 : 5);
        p->next_ms = now + (wait < MS_REDELIVER_MAX_MS ? wait : MS_REDELIVER_MAX_MS);
        p->tries++;
    }
}

/* SPDX-License-Identifier: Apache-2.0 */
/* Which offline-stream subjects hold stored emits (offknown.h). */
#include "offknown.h"

#include <stdlib.h>
#include <string.h>

typedef struct ok_subject {
    char *subject;
    uint64_t noted_ms; /* the last publish seen on it (0: none) */
    UT_hash_handle hh;
} ok_subject_t;

void ms_offknown_init(ms_offknown_t *k)
{
    memset(k, 0, sizeof(*k));
}

void ms_offknown_skip_free(ms_offknown_skip_t *s)
{
    free(s); /* its strings are in the same block */
}

void ms_offknown_cleanup(ms_offknown_t *k)
{
    ok_subject_t *e, *te;
    HASH_ITER(hh, k->known, e, te)
    {
        HASH_DEL(k->known, e);
        free(e->subject);
        free(e);
    }
    ms_offknown_skip_t *s, *ts;
    HASH_ITER(hh, k->skips, s, ts)
    {
        HASH_DEL(k->skips, s);
        ms_offknown_skip_free(s);
    }
    memset(k, 0, sizeof(*k));
}

static ok_subject_t *find(const ms_offknown_t *k, const char *subject)
{
    ok_subject_t *e = NULL;
    HASH_FIND_STR(k->known, subject, e);
    return e;
}

/* Out of memory: not added (a join that then skips its fetch gets its emits at a later one,
 * as when a note is lost). */
static ok_subject_t *add(ms_offknown_t *k, const char *subject)
{
    ok_subject_t *e = find(k, subject);
    if (e)
        return e;
    e = calloc(1, sizeof(*e));
    if (!e || !(e->subject = strdup(subject))) {
        free(e);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, k->known, e->subject, strlen(e->subject), e);
    return e;
}

static ms_offknown_skip_t *take_skip(ms_offknown_t *k, const char *subject)
{
    ms_offknown_skip_t *s = NULL;
    HASH_FIND_STR(k->skips, subject, s);
    if (s) {
        HASH_DEL(k->skips, s);
        k->n_skips--;
        s->next = NULL;
    }
    return s;
}

/* Forgets the skips older than MS_OFFKNOWN_SKIP_MS (uthash iterates in insertion order: the
 * oldest first), and the oldest past the cap. */
static void expire_skips(ms_offknown_t *k, uint64_t now)
{
    ms_offknown_skip_t *s, *ts;
    HASH_ITER(hh, k->skips, s, ts)
    {
        if (now - s->at_ms < MS_OFFKNOWN_SKIP_MS && k->n_skips < MS_OFFKNOWN_MAX_SKIPS)
            break;
        HASH_DEL(k->skips, s);
        k->n_skips--;
        ms_offknown_skip_free(s);
    }
}

int ms_offknown_look(const ms_offknown_t *k, const char *subject)
{
    return !k->loaded || find(k, subject) != NULL;
}

void ms_offknown_skipped(ms_offknown_t *k, const char *subject, const char *ns, const char *peer,
                         uint64_t now)
{
    /* Again on one subject: the newest goes last, for whoever skipped it last. */
    ms_offknown_skip_free(take_skip(k, subject));
    expire_skips(k, now);
    /* One block for the record and its three strings: every join that skips its fetch makes
     * one, so a join storm holds one per join for MS_OFFKNOWN_SKIP_MS (four allocations took
     * ~260 B each, a block ~180). */
    size_t ls = strlen(subject) + 1, ln = strlen(ns) + 1, lp = strlen(peer) + 1;
    ms_offknown_skip_t *s = calloc(1, sizeof(*s) + ls + ln + lp);
    if (!s)
        return;
    s->subject = memcpy((char *)(s + 1), subject, ls);
    s->ns = memcpy(s->subject + ls, ns, ln);
    s->peer = memcpy(s->ns + ln, peer, lp);
    s->at_ms = now;
    HASH_ADD_KEYPTR(hh, k->skips, s->subject, strlen(s->subject), s);
    k->n_skips++;
}

void ms_offknown_add(ms_offknown_t *k, const char *subject)
{
    (void)add(k, subject);
}

void ms_offknown_own_store(ms_offknown_t *k, const char *subject)
{
    (void)add(k, subject);
    ms_offknown_skip_free(take_skip(k, subject));
}

ms_offknown_skip_t *ms_offknown_note(ms_offknown_t *k, const char *subject, uint64_t now)
{
    ok_subject_t *e = add(k, subject);
    if (e)
        e->noted_ms = now ? now : 1;
    expire_skips(k, now);
    return take_skip(k, subject);
}

int ms_offknown_drop(ms_offknown_t *k, const char *subject, uint64_t now)
{
    ok_subject_t *e = find(k, subject);
    if (!e)
        return 0;
    if (e->noted_ms && now - e->noted_ms < MS_OFFKNOWN_HOLD_MS)
        return 0; /* its publish may not be in the stream yet */
    HASH_DEL(k->known, e);
    free(e->subject);
    free(e);
    return 1;
}

void ms_offknown_invalidate(ms_offknown_t *k)
{
    k->gen++;
    k->loaded = 0;
}

int ms_offknown_is_loaded(const ms_offknown_t *k)
{
    return k->loaded;
}

uint64_t ms_offknown_load_begin(const ms_offknown_t *k)
{
    return k->gen;
}

ms_offknown_skip_t *ms_offknown_load_end(ms_offknown_t *k, uint64_t gen,
                                         const char *const *subjects, size_t n, uint64_t now,
                                         int *loaded)
{
    for (size_t i = 0; i < n; i++)
        (void)add(k, subjects[i]);
    /* A reload asked for since this one began: its list may predate what that was about,
     * and joins keep reading the stream until the reload asked for ends. */
    if (gen == k->gen)
        k->loaded = 1;
    if (loaded)
        *loaded = gen == k->gen;
    expire_skips(k, now);
    ms_offknown_skip_t *due = NULL, *s, *ts;
    HASH_ITER(hh, k->skips, s, ts)
    {
        if (!find(k, s->subject))
            continue;
        HASH_DEL(k->skips, s);
        k->n_skips--;
        s->next = due;
        due = s;
    }
    return due;
}

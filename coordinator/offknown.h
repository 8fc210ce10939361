/* SPDX-License-Identifier: Apache-2.0 */
/* Which offline-stream subjects hold stored emits: the list a join consults before it reads
 * the stream (coordinator/offline.c).
 *
 * A join reads the stream only when its subject is known to hold messages, or when the list
 * is not loaded. The list is loaded from the stream's info (at start, after a shard takeover,
 * after the notification subscription may have lost messages), and kept current by the
 * coordinator's own stores and by notes: every publish into the stream, whoever made it, seen
 * by a core NATS subscription made before the first load (offline.c says why this is enough).
 *
 * Three races are this module's:
 *  - A reload requested (ms_offknown_invalidate) while a load is reading the stream must not
 *    be marked loaded by that load: its list may predate what the request is about. Each
 *    request bumps a generation; a load marks the list loaded only for the generation it
 *    began in (ms_offknown_load_begin / ms_offknown_load_end).
 *  - A note can come before the publish it announces is stored (the subscriber's copy and the
 *    stream's take different paths), so a fetch that finds a subject empty forgets it only
 *    when no note came for it within MS_OFFKNOWN_HOLD_MS (ms_offknown_drop).
 *  - A join that skipped its fetch (subject not known) just before it heard of a store that was
 *    acknowledged before the join: the skip is remembered for MS_OFFKNOWN_SKIP_MS, and a note
 *    or load that makes its subject known hands it back to be fetched after all.
 *
 * Pure bookkeeping: times come in as arguments; the caller locks. */
#ifndef MS_COORD_OFFKNOWN_H
#define MS_COORD_OFFKNOWN_H

#include <stddef.h>
#include <stdint.h>

#include "uthash_keyed.h"

/* A subject noted this recently may have a message on its way into the stream. */
#define MS_OFFKNOWN_HOLD_MS 10000u
/* How long a skipped fetch is remembered: longer than a note takes to arrive, and than a lost
 * connection takes to be noticed (2 missed pings of 2 s) and the list reloaded. */
#define MS_OFFKNOWN_SKIP_MS 15000u
/* Skipped fetches remembered at once; past it the oldest are forgotten first. */
#define MS_OFFKNOWN_MAX_SKIPS 65536u

/* A fetch that was skipped, handed back to be made after all (the caller frees it). */
typedef struct ms_offknown_skip {
    char *subject, *ns, *peer; /* in the record's own block, after it */
    uint64_t at_ms;
    struct ms_offknown_skip *next; /* in a list handed back */
    UT_hash_handle hh;
} ms_offknown_skip_t;

typedef struct ms_offknown {
    struct ok_subject *known;
    ms_offknown_skip_t *skips; /* by subject, oldest first */
    size_t n_skips;
    uint64_t gen; /* bumped by every reload request */
    int loaded;   /* the list is complete for gen */
} ms_offknown_t;

void ms_offknown_init(ms_offknown_t *k);
void ms_offknown_cleanup(ms_offknown_t *k);
void ms_offknown_skip_free(ms_offknown_skip_t *s);

/* Whether a join on subject must read the stream: the subject is known, or the list is not
 * loaded. */
int ms_offknown_look(const ms_offknown_t *k, const char *subject);
/* A fetch for (ns, peer) on subject was skipped at now: remembered for MS_OFFKNOWN_SKIP_MS. */
void ms_offknown_skipped(ms_offknown_t *k, const char *subject, const char *ns, const char *peer,
                         uint64_t now);
/* subject holds (or is about to hold) messages: this coordinator's store, a fetch that found
 * some, an emit fetched for somebody else. */
void ms_offknown_add(ms_offknown_t *k, const char *subject);
/* This coordinator stores on subject (its loop, before the publish): known, and a skip on it
 * is forgotten. The store itself reaches a receiver that is present (its outcome delivers it)
 * and one that joins later (known): a fetch made on its note would hand a present receiver a
 * second copy. */
void ms_offknown_own_store(ms_offknown_t *k, const char *subject);
/* A publish into the stream on subject was seen at now. Returns the fetch skipped on it
 * lately, if any (the caller fetches it and frees it), else NULL. */
ms_offknown_skip_t *ms_offknown_note(ms_offknown_t *k, const char *subject, uint64_t now);
/* A fetch found subject empty at now: forgotten unless noted within MS_OFFKNOWN_HOLD_MS.
 * Returns 1 when it was forgotten. */
int ms_offknown_drop(ms_offknown_t *k, const char *subject, uint64_t now);
/* The list may be missing subjects: not loaded until a load begun after this ends. */
void ms_offknown_invalidate(ms_offknown_t *k);
int ms_offknown_is_loaded(const ms_offknown_t *k);
/* A load begins (it reads the stream after this): its generation. */
uint64_t ms_offknown_load_begin(const ms_offknown_t *k);
/* A load begun in gen read these subjects: they are known; the list is loaded if no reload
 * was requested since gen. Returns the skipped fetches whose subjects are known now (a list
 * by next; the caller fetches and frees them), NULL if none. *loaded says whether it was
 * marked loaded. */
ms_offknown_skip_t *ms_offknown_load_end(ms_offknown_t *k, uint64_t gen,
                                         const char *const *subjects, size_t n, uint64_t now,
                                         int *loaded);

#endif

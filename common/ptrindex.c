/* SPDX-License-Identifier: Apache-2.0 */
/* An index of records by a hash of their key: open addressing, linear probing. */
#include <stdlib.h>
#include <string.h>

#include "ptrindex.h"

#define MS_PIDX_MIN                                                                                \
    4u /* slots of a new table (most namespaces are small); the least it shrinks to */

/* Fibonacci hashing: the slot is the product's high bits, which every bit of
 * the hash reaches (session ids, for one, are consecutive integers). */
static uint32_t home(uint64_t h, uint32_t cap)
{
    return (uint32_t)((h * 0x9e3779b97f4a7c15ULL) >> (64 - __builtin_ctz(cap)));
}

static void place(void **slot, uint32_t cap, uint64_t h, void *rec)
{
    uint32_t i = home(h, cap);
    while (slot[i])
        i = (i + 1) & (cap - 1);
    slot[i] = rec;
}

/* Moves every record into a table of cap slots. -1: out of memory (unchanged). */
static int resize(ms_pidx_t *x, uint32_t cap)
{
    void **slot = calloc(cap, sizeof(*slot));
    if (!slot)
        return -1;
    for (uint32_t i = 0; i < x->cap; i++)
        if (x->slot[i])
            place(slot, cap, x->hash(x->slot[i]), x->slot[i]);
    free(x->slot);
    x->slot = slot;
    x->cap = cap;
    return 0;
}

void ms_pidx_init(ms_pidx_t *x, ms_pidx_hash_fn hash)
{
    memset(x, 0, sizeof(*x));
    x->hash = hash;
}

void ms_pidx_cleanup(ms_pidx_t *x)
{
    free(x->slot);
    x->slot = NULL;
    x->cap = x->n = 0;
}

int ms_pidx_add(ms_pidx_t *x, void *rec)
{
    /* At most 3/4 full, so a probe always meets an empty slot. */
    if ((uint64_t)(x->n + 1) * 4 > (uint64_t)x->cap * 3) {
        if (x->cap >= (1u << 31) || resize(x, x->cap ? x->cap * 2 : MS_PIDX_MIN) < 0)
            return -1;
    }
    place(x->slot, x->cap, x->hash(rec), rec);
    x->n++;
    return 0;
}

void *ms_pidx_find(const ms_pidx_t *x, uint64_t h, ms_pidx_match_fn match, const void *key)
{
    if (!x->n)
        return NULL;
    /* Bounded: the table is never full. */
    for (uint32_t i = home(h, x->cap);; i = (i + 1) & (x->cap - 1)) {
        void *rec = x->slot[i];
        if (!rec || match(rec, key))
            return rec;
    }
}

void ms_pidx_remove(ms_pidx_t *x, const void *rec)
{
    if (!x->n)
        return;
    uint32_t mask = x->cap - 1, i = home(x->hash(rec), x->cap);
    while (x->slot[i] != rec) {
        if (!x->slot[i])
            return; /* not indexed */
        i = (i + 1) & mask;
    }
    /* Backward shift: each later record of the run whose home is not in
     * (i, j] moves into the hole, so every record stays reachable from its
     * home without crossing an empty slot. */
    for (uint32_t j = (i + 1) & mask; x->slot[j]; j = (j + 1) & mask) {
        uint32_t k = home(x->hash(x->slot[j]), x->cap);
        if (i <= j ? (i < k && k <= j) : (i < k || k <= j))
            continue;
        x->slot[i] = x->slot[j];
        i = j;
    }
    x->slot[i] = NULL;
    x->n--;
    /* Shrinking is best effort: on failure the larger table stays valid. */
    if (x->cap > MS_PIDX_MIN && (uint64_t)x->n * 8 < x->cap)
        (void)resize(x, x->cap / 2);
}

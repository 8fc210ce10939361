/* SPDX-License-Identifier: Apache-2.0 */
/* Reference-counted shared strings in an open-addressing index (ptrindex.h). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "intern.h"
#include "ptrindex.h"

/* 12 bytes and the string: one interned namespace name of up to 11
 * characters is a 32-byte chunk (it was 80 with a UT_hash_handle). The hash
 * is the string's keyed hash (ms_intern_hash, hash.h: the names are clients'),
 * kept so that neither a lookup keyed by it nor the index's growth hashes the
 * string again. */
typedef struct intern_entry {
    uint64_t hash;
    uint32_t refs; /* one per record holding it: sessions, members */
    char str[];
} intern_entry_t;
/* Allocated to the end of the string, not to sizeof (which pads to 16). */
#define ENTRY_HEAD offsetof(intern_entry_t, str)
_Static_assert(ENTRY_HEAD == 12, "intern_entry_t: 8 + 4 bytes before the string");

static uint64_t str_hash(const char *s)
{
    return ms_hash_keyed(s, strlen(s));
}

static inline intern_entry_t *entry_of(const char *s)
{
    return (intern_entry_t *)(void *)(s - ENTRY_HEAD);
}

static uint64_t entry_hash(const void *e)
{
    return ((const intern_entry_t *)e)->hash;
}

static int entry_is(const void *e, const void *s)
{
    return !strcmp(((const intern_entry_t *)e)->str, s);
}

static ms_pidx_t table = {.hash = entry_hash};

const char *ms_intern(const char *s)
{
    uint64_t h = str_hash(s);
    intern_entry_t *e = ms_pidx_find(&table, h, entry_is, s);
    if (!e) {
        size_t len = strlen(s);
        if (!(e = malloc(ENTRY_HEAD + len + 1)))
            return NULL;
        e->hash = h;
        e->refs = 0;
        memcpy(e->str, s, len + 1);
        if (ms_pidx_add(&table, e) != 0) {
            free(e);
            return NULL;
        }
    }
    e->refs++;
    return e->str;
}

void ms_intern_release(const char *s)
{
    if (!s)
        return;
    intern_entry_t *e = entry_of(s);
    if (--e->refs == 0) {
        ms_pidx_remove(&table, e);
        free(e);
    }
}

uint64_t ms_intern_hash(const char *s)
{
    return entry_of(s)->hash;
}

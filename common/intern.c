/* SPDX-License-Identifier: Apache-2.0 */
/* Reference-counted shared strings in an open-addressing index (ptrindex.h). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "intern.h"
#include "ptrindex.h"

/* 8 bytes and the string: one interned namespace name of a few characters
 * is a 32-byte chunk (it was 80 with a UT_hash_handle). */
typedef struct intern_entry {
    uint64_t refs;
    char str[];
} intern_entry_t;

static uint64_t str_hash(const char *s)
{
    return ms_fnv1a64(s, strlen(s));
}

static uint64_t entry_hash(const void *e)
{
    return str_hash(((const intern_entry_t *)e)->str);
}

static int entry_is(const void *e, const void *s)
{
    return !strcmp(((const intern_entry_t *)e)->str, s);
}

static ms_pidx_t table = {.hash = entry_hash};

const char *ms_intern(const char *s)
{
    intern_entry_t *e = ms_pidx_find(&table, str_hash(s), entry_is, s);
    if (!e) {
        size_t len = strlen(s);
        if (!(e = malloc(sizeof(*e) + len + 1)))
            return NULL;
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
    intern_entry_t *e = (intern_entry_t *)(void *)(s - offsetof(intern_entry_t, str));
    if (--e->refs == 0) {
        ms_pidx_remove(&table, e);
        free(e);
    }
}

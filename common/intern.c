/* SPDX-License-Identifier: Apache-2.0 */
/* Reference-counted shared strings in a uthash table. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "intern.h"

typedef struct intern_entry {
    UT_hash_handle hh;
    size_t refs;
    char str[];
} intern_entry_t;

static intern_entry_t *table;

const char *ms_intern(const char *s)
{
    intern_entry_t *e;
    size_t len = strlen(s);
    HASH_FIND(hh, table, s, len, e);
    if (!e) {
        if (!(e = malloc(sizeof(*e) + len + 1)))
            return NULL;
        e->refs = 0;
        memcpy(e->str, s, len + 1);
        HASH_ADD_KEYPTR(hh, table, e->str, len, e);
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
        HASH_DELETE(hh, table, e);
        free(e);
    }
}

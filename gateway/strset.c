/* SPDX-License-Identifier: Apache-2.0 */
/* A small set of strings kept in an array. */
#include <stdlib.h>
#include <string.h>

#include "strset.h"

int ms_strset_has(const ms_strset_t *s, const char *str)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], str))
            return 1;
    return 0;
}

uint8_t *ms_strset_tag(ms_strset_t *s, const char *str)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], str))
            return (uint8_t *)s->v[i] + strlen(str) + 1;
    return NULL;
}

uint8_t ms_strset_tag_at(const ms_strset_t *s, uint32_t i)
{
    return (uint8_t)s->v[i][strlen(s->v[i]) + 1];
}

int ms_strset_add(ms_strset_t *s, const char *str)
{
    if (ms_strset_has(s, str))
        return 0;
    if (s->n == s->cap) {
        if (s->cap >= UINT32_MAX / 2)
            return -1;
        uint32_t ncap = s->cap ? s->cap * 2 : 2;
        char **nv = realloc(s->v, ncap * sizeof(*nv));
        if (!nv)
            return -1;
        s->v = nv;
        s->cap = ncap;
    }
    /* One byte after the terminator: the entry's tag (ms_strset_tag). */
    size_t len = strlen(str);
    char *copy = malloc(len + 2);
    if (!copy)
        return -1;
    memcpy(copy, str, len + 1);
    copy[len + 1] = 0;
    s->v[s->n++] = copy;
    return 0;
}

int ms_strset_remove(ms_strset_t *s, const char *str)
{
    for (uint32_t i = 0; i < s->n; i++) {
        if (strcmp(s->v[i], str))
            continue;
        free(s->v[i]);
        s->v[i] = s->v[--s->n];
        return 1;
    }
    return 0;
}

void ms_strset_clear(ms_strset_t *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

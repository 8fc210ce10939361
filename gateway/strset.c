/* SPDX-License-Identifier: Apache-2.0 */
/* A small set of strings: none, one held inside the struct or by its copy, or an array. */
#include <stdlib.h>
#include <string.h>

#include "strset.h"

enum { ARRAY, SMALL, ONE }; /* ARRAY: u.v, or nothing when n == 0 */

/* The inline entry: small[] and the bytes of u after it, contiguous. */
#define SMALL_BYTES (sizeof(ms_strset_t) - offsetof(ms_strset_t, small))
_Static_assert(SMALL_BYTES == MS_STRSET_SMALL_MAX + 2, "an inline entry, its NUL and its tag");
_Static_assert(offsetof(ms_strset_t, u) ==
                   offsetof(ms_strset_t, small) + sizeof(((ms_strset_t *)0)->small),
               "small[] runs into u");

static char *small_of(const ms_strset_t *s)
{
    return (char *)s + offsetof(ms_strset_t, small);
}

const char *ms_strset_at(const ms_strset_t *s, uint32_t i)
{
    return s->kind == SMALL ? small_of(s) : s->kind == ONE ? s->u.one : s->u.v[i];
}

int ms_strset_has(const ms_strset_t *s, const char *str)
{
    if (s->kind != ARRAY)
        return !strcmp(ms_strset_at(s, 0), str);
    for (uint32_t i = 0; i < s->n; i++)
        if (!strcmp(s->u.v[i], str))
            return 1;
    return 0;
}

static int find(const ms_strset_t *s, const char *str)
{
    for (uint32_t i = 0; i < s->n; i++)
        if (!strcmp(ms_strset_at(s, i), str))
            return (int)i;
    return -1;
}

uint8_t *ms_strset_tag(ms_strset_t *s, const char *str)
{
    int i = find(s, str);
    return i < 0 ? NULL : (uint8_t *)ms_strset_at(s, (uint32_t)i) + strlen(str) + 1;
}

uint8_t ms_strset_tag_at(const ms_strset_t *s, uint32_t i)
{
    const char *e = ms_strset_at(s, i);
    return (uint8_t)e[strlen(e) + 1];
}

/* A heap copy of entry e: its string, NUL and tag. */
static char *copy_entry(const char *e)
{
    size_t len = strlen(e);
    char *c = malloc(len + 2);
    if (c)
        memcpy(c, e, len + 2);
    return c;
}

/* The set's one entry e (a heap copy, owned by the set from here), inline when short. */
static void set_one(ms_strset_t *s, char *e)
{
    size_t len = strlen(e);
    if (len <= MS_STRSET_SMALL_MAX) {
        memcpy(small_of(s), e, len + 2);
        free(e);
        s->kind = SMALL;
    } else {
        s->u.one = e;
        s->kind = ONE;
    }
    s->n = 1;
}

static int is_pow2(uint32_t n)
{
    return (n & (n - 1)) == 0;
}

int ms_strset_add(ms_strset_t *s, const char *str)
{
    if (ms_strset_has(s, str))
        return 0;
    size_t len = strlen(str);
    if (s->n == 0 && len <= MS_STRSET_SMALL_MAX) {
        memcpy(small_of(s), str, len + 1);
        small_of(s)[len + 1] = 0; /* the entry's tag (ms_strset_tag) */
        s->kind = SMALL;
        s->n = 1;
        return 0;
    }
    char *copy = malloc(len + 2);
    if (!copy)
        return -1;
    memcpy(copy, str, len + 1);
    copy[len + 1] = 0;
    if (s->n == 0) {
        s->u.one = copy;
        s->kind = ONE;
        s->n = 1;
        return 0;
    }
    if (s->n == 1) {
        char **v = malloc(2 * sizeof(*v));
        char *first = s->kind == SMALL ? copy_entry(small_of(s)) : s->u.one;
        if (!v || !first) {
            free(v);
            free(copy);
            if (s->kind == SMALL)
                free(first);
            return -1;
        }
        v[0] = first;
        v[1] = copy;
        s->u.v = v;
        s->kind = ARRAY;
        s->n = 2;
        return 0;
    }
    /* An array of n >= 2 holds at least n rounded up to a power of two. */
    if (is_pow2(s->n)) {
        char **nv = s->n < UINT32_MAX / 2 ? realloc(s->u.v, 2 * (size_t)s->n * sizeof(*nv)) : NULL;
        if (!nv) {
            free(copy);
            return -1;
        }
        s->u.v = nv;
    }
    s->u.v[s->n++] = copy;
    return 0;
}

int ms_strset_remove(ms_strset_t *s, const char *str)
{
    int i = find(s, str);
    if (i < 0)
        return 0;
    if (s->n == 1) {
        ms_strset_clear(s);
        return 1;
    }
    char **v = s->u.v;
    free(v[i]);
    v[i] = v[--s->n];
    if (s->n == 1) {
        char *last = v[0];
        free(v);
        set_one(s, last);
    }
    return 1;
}

char **ms_strset_list(const ms_strset_t *s)
{
    if (!s->n)
        return NULL;
    char **v = malloc(s->n * sizeof(*v));
    if (v)
        for (uint32_t i = 0; i < s->n; i++)
            v[i] = (char *)ms_strset_at(s, i);
    return v;
}

void ms_strset_clear(ms_strset_t *s)
{
    if (s->kind == ONE) {
        free(s->u.one);
    } else if (s->kind == ARRAY) {
        for (uint32_t i = 0; i < s->n; i++)
            free(s->u.v[i]);
        free(s->u.v);
    }
    memset(s, 0, sizeof(*s));
}

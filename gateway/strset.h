/* SPDX-License-Identifier: Apache-2.0 */
/* A small set of strings (a session's neighbours, rooms, ...): an array, because it stays short.
 *
 * Every entry is a copy with one byte after its terminator, the entry's tag.
 * Most sets of an idle session hold nothing or one entry (a native session's
 * one neighbour in a 2-peer namespace), so one entry takes no array: an entry
 * of up to MS_STRSET_SMALL_MAX characters is held inside the struct itself,
 * a longer one by its copy alone; two or more are an array of copies whose
 * capacity is n rounded up to a power of two. */
#ifndef MS_STRSET_H
#define MS_STRSET_H

#include <stddef.h>
#include <stdint.h>

/* The longest entry held inside the struct (its NUL and tag follow). */
#define MS_STRSET_SMALL_MAX 9

typedef struct {
    uint32_t n; /* entries */
    /* Private: how they are held (ms_strset_at reads them). */
    uint8_t kind;
    char small[3]; /* with the 8 bytes after it, an entry held inside the struct */
    union {
        char **v;  /* n >= 2 */
        char *one; /* n == 1, longer than MS_STRSET_SMALL_MAX */
    } u;
} ms_strset_t;

/* 0 on success (also when already present), -1 when out of memory. */
int ms_strset_add(ms_strset_t *s, const char *str);
/* 1 if it was there. */
int ms_strset_remove(ms_strset_t *s, const char *str);
int ms_strset_has(const ms_strset_t *s, const char *str);
/* Entry i (i < s->n); valid until the set changes. */
const char *ms_strset_at(const ms_strset_t *s, uint32_t i);
/* The byte kept with str (0 when added; a neighbour's edge health), NULL if str is absent. */
uint8_t *ms_strset_tag(ms_strset_t *s, const char *str);
/* The tag of entry i (i < s->n). */
uint8_t ms_strset_tag_at(const ms_strset_t *s, uint32_t i);
/* The entries as an array of s->n pointers for a protobuf message (valid until the
 * set changes; free() the array, not the strings); NULL when empty or out of memory. */
char **ms_strset_list(const ms_strset_t *s);
void ms_strset_clear(ms_strset_t *s);

#endif

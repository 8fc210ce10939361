/* SPDX-License-Identifier: Apache-2.0 */
/* A small set of strings (a session's neighbours, rooms, ...): an array, because it stays short. */
#ifndef MS_STRSET_H
#define MS_STRSET_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char **v;
    uint32_t n, cap; /* one per idle session: kept small */
} ms_strset_t;

/* 0 on success (also when already present), -1 when out of memory. */
int ms_strset_add(ms_strset_t *s, const char *str);
/* 1 if it was there. */
int ms_strset_remove(ms_strset_t *s, const char *str);
int ms_strset_has(const ms_strset_t *s, const char *str);
/* The byte kept with str (0 when added; a neighbour's edge health), NULL if str is absent. */
uint8_t *ms_strset_tag(ms_strset_t *s, const char *str);
/* The tag of entry i (i < s->n). */
uint8_t ms_strset_tag_at(const ms_strset_t *s, uint32_t i);
void ms_strset_clear(ms_strset_t *s);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* A bump allocator for protobuf-c unpacking (pbarena.h). */
#include "pbarena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

#define ALIGN (alignof(max_align_t))
#define MIN_CAP (16 * 1024)

static void *arena_alloc(void *ud, size_t size)
{
    ms_pbarena_t *a = ud;
    size_t n = (size + ALIGN - 1) & ~(ALIGN - 1);
    if (n < size)
        return NULL;
    if (a->buf && n <= a->cap - a->used) {
        void *p = a->buf + a->used;
        a->used += n;
        return p;
    }
    /* Spilled: a header word for the list, padded to keep the alignment. */
    if (n > SIZE_MAX - ALIGN)
        return NULL;
    unsigned char *blk = malloc(ALIGN + n);
    if (!blk)
        return NULL;
    *(void **)(void *)blk = a->spill;
    a->spill = blk;
    a->spilled += n;
    return blk + ALIGN;
}

static void arena_free(void *ud, void *ptr)
{
    (void)ud; /* everything goes at the reset */
    (void)ptr;
}

void ms_pbarena_init(ms_pbarena_t *a, size_t max_cap)
{
    *a = (ms_pbarena_t){0};
    a->alloc.alloc = arena_alloc;
    a->alloc.free = arena_free;
    a->alloc.allocator_data = a;
    a->max_cap = max_cap < MIN_CAP ? MIN_CAP : max_cap;
}

static void free_spill(ms_pbarena_t *a)
{
    while (a->spill) {
        void *next = *(void **)a->spill;
        free(a->spill);
        a->spill = next;
    }
}

void ms_pbarena_reset(ms_pbarena_t *a)
{
    size_t want = a->used + a->spilled;
    free_spill(a);
    if (want > a->cap && a->cap < a->max_cap) {
        /* Room for the message that spilled, and some. */
        size_t ncap = a->cap ? a->cap : MIN_CAP;
        while (ncap < want && ncap < a->max_cap)
            ncap *= 2;
        if (ncap > a->max_cap)
            ncap = a->max_cap;
        unsigned char *nb = malloc(ncap);
        if (nb) {
            free(a->buf);
            a->buf = nb;
            a->cap = ncap;
        }
    }
    a->used = 0;
    a->spilled = 0;
}

void ms_pbarena_cleanup(ms_pbarena_t *a)
{
    free_spill(a);
    free(a->buf);
    a->buf = NULL;
    a->cap = a->used = a->spilled = 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* lws's header tables ("ah struct", "ah data") from fixed slots outside the heap (ahslab.h). */
#include "ahslab.h"
#include "rxslab.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <libwebsockets.h>

enum { AH_STRUCT, AH_DATA, KINDS };

typedef struct {
    unsigned char *base; /* slots * size bytes, page-aligned */
    size_t size;         /* of one slot */
    uint32_t *free;      /* slot numbers not in use (a stack) */
    uint32_t n_free, slots;
} slab_t;

static slab_t slab[KINDS];

static int slab_of(const void *p)
{
    for (int k = 0; k < KINDS; k++)
        if (slab[k].base && (const unsigned char *)p >= slab[k].base &&
            (const unsigned char *)p < slab[k].base + (size_t)slab[k].slots * slab[k].size)
            return k;
    return -1;
}

static void slab_put(int k, void *p)
{
    slab_t *s = &slab[k];
    uint32_t i = (uint32_t)(((unsigned char *)p - s->base) / s->size);
    /* Whole pages: the kernel takes them back now, and a later table gets
     * zero pages (what lws does not write it does not read). */
    if (s->size % (size_t)sysconf(_SC_PAGESIZE) == 0)
        madvise(s->base + (size_t)i * s->size, s->size, MADV_DONTNEED);
    s->free[s->n_free++] = i;
}

void *ms_gw_ahslab_realloc(void *ptr, size_t size, const char *reason)
{
    if (ptr && ms_gw_rxslab_owns(ptr)) {
        if (!size) {
            ms_gw_rxslab_put(ptr);
            return NULL;
        }
        void *n = malloc(size); /* lws does not resize a receive buffer */
        if (n) {
            ms_gw_rxslab_stats_t st;
            ms_gw_rxslab_stats(&st);
            memcpy(n, ptr, size < st.slot_size ? size : st.slot_size);
            ms_gw_rxslab_put(ptr);
        }
        return n;
    }
    if (ptr) {
        int k = slab_of(ptr);
        if (k < 0) {
            if (size)
                return realloc(ptr, size);
            free(ptr);
            return NULL;
        }
        if (!size) {
            slab_put(k, ptr);
            return NULL;
        }
        /* lws does not resize a table; if it did, the copy moves to the heap. */
        void *n = malloc(size);
        if (!n)
            return NULL;
        memcpy(n, ptr, size < slab[k].size ? size : slab[k].size);
        slab_put(k, ptr);
        return n;
    }
    if (!size)
        return NULL;
    if (reason && !strcmp(reason, "rx_ubuf")) {
        void *p = ms_gw_rxslab_take(size);
        return p ? p : malloc(size);
    }
    int k = !reason                        ? -1
            : !strcmp(reason, "ah data")   ? AH_DATA
            : !strcmp(reason, "ah struct") ? AH_STRUCT
                                           : -1;
    if (k >= 0 && size <= slab[k].size && slab[k].n_free)
        return slab[k].base + (size_t)slab[k].free[--slab[k].n_free] * slab[k].size;
    return malloc(size);
}

ms_err_t ms_gw_ahslab_init(size_t slots, size_t struct_size, size_t data_size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE), sizes[KINDS] = {struct_size, data_size};
    if (!slots || slots > UINT32_MAX || slab[0].base)
        return MS_ERR_INVAL;
    for (int k = 0; k < KINDS; k++) {
        slab_t *s = &slab[k];
        s->size = (sizes[k] + 15) & ~(size_t)15;
        if (k == AH_DATA)
            s->size = (s->size + page - 1) / page * page;
        s->free = malloc(slots * sizeof(*s->free));
        void *base =
            mmap(NULL, slots * s->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (!s->free || base == MAP_FAILED) {
            free(s->free);
            s->free = NULL;
            return MS_ERR_NOMEM;
        }
        s->base = base;
        s->slots = (uint32_t)slots;
        for (uint32_t i = 0; i < s->slots; i++)
            s->free[i] = s->slots - 1 - i; /* slot 0 first */
        s->n_free = s->slots;
    }
    lws_set_allocator(ms_gw_ahslab_realloc);
    return MS_OK;
}

size_t ms_gw_ahslab_in_use(void)
{
    size_t n = 0;
    for (int k = 0; k < KINDS; k++)
        n += slab[k].slots - slab[k].n_free;
    return n;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* lws's receive buffers from slots whose pages are released while quiet (rxslab.h). */
#include "rxslab.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define NONE UINT32_MAX

enum { FREE, TAKEN, BOUND };

static struct {
    unsigned char *base; /* slots * size bytes, page-aligned */
    size_t size, page;
    unsigned page_shift; /* page = 1 << page_shift */
    uint32_t slots;
    uint32_t *free; /* slots given back (a stack); then those never used, from `fresh` */
    uint32_t n_free, fresh, pending;
    /* By slot (one mapping for these tables: pages are touched as slots are used). */
    uint8_t *state;
    void **owner;
    int32_t *fd;
    /* By descriptor: its bound slot + 1, or 0. */
    uint32_t *by_fd;
    int max_fd;
    /* By page. */
    uint64_t *touched_us;
    uint8_t *resident;
    uint32_t used_pages, cursor; /* pages below used_pages have held a slot */
    uint64_t release_after_us, released;
    size_t pages_resident;
} rx;

static void *map(size_t bytes)
{
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* The next n bytes of the bookkeeping mapping at *at (8-byte aligned); NULL base: only counts. */
static void *carve(unsigned char *base, size_t *at, size_t n)
{
    void *p = base ? base + *at : NULL;
    *at += (n + 7) & ~(size_t)7;
    return p;
}

/* The tables by slot, by descriptor and by page, in one mapping from meta (NULL: only sizes
 * them); returns its size. */
static size_t lay_out(unsigned char *meta, size_t slots, size_t n_pages, int max_fd)
{
    size_t at = 0;
    rx.owner = carve(meta, &at, slots * sizeof(*rx.owner));
    rx.touched_us = carve(meta, &at, n_pages * sizeof(*rx.touched_us));
    rx.free = carve(meta, &at, slots * sizeof(*rx.free));
    rx.fd = carve(meta, &at, slots * sizeof(*rx.fd));
    rx.by_fd = carve(meta, &at, (size_t)max_fd * sizeof(*rx.by_fd));
    rx.state = carve(meta, &at, slots);
    rx.resident = carve(meta, &at, n_pages);
    return at;
}

ms_err_t ms_gw_rxslab_init(size_t slots, size_t slot_size, int max_fd, uint64_t release_after_us)
{
    if (rx.base)
        return MS_ERR_INVAL;
    if (!slots || slots >= NONE || !slot_size || max_fd < 1)
        return MS_ERR_INVAL;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), size = (slot_size + 15) & ~(size_t)15;
    size_t bytes = slots * size, n_pages = (bytes + page - 1) / page;
    if (bytes / size != slots || n_pages >= NONE)
        return MS_ERR_INVAL;
    size_t meta_bytes = lay_out(NULL, slots, n_pages, max_fd);
    unsigned char *base = map(bytes), *meta = map(meta_bytes);
    if (!base || !meta) {
        if (base)
            munmap(base, bytes);
        if (meta)
            munmap(meta, meta_bytes);
        return MS_ERR_NOMEM;
    }
    lay_out(meta, slots, n_pages, max_fd);
    rx.base = base;
    rx.size = size;
    rx.page = page;
    rx.page_shift = (unsigned)__builtin_ctzl(page);
    rx.slots = (uint32_t)slots;
    rx.pending = NONE;
    rx.max_fd = max_fd;
    rx.release_after_us = release_after_us;
    return MS_OK;
}

int ms_gw_rxslab_owns(const void *p)
{
    const unsigned char *c = p;
    return rx.base && c >= rx.base && c < rx.base + (size_t)rx.slots * rx.size;
}

/* The pages slot i spans: [*first, *last]. */
static void pages_of(uint32_t i, uint32_t *first, uint32_t *last)
{
    size_t off = (size_t)i * rx.size;
    *first = (uint32_t)(off >> rx.page_shift);
    *last = (uint32_t)((off + rx.size - 1) >> rx.page_shift);
}

static void mark(uint32_t i, uint64_t now_us)
{
    uint32_t a, b;
    pages_of(i, &a, &b);
    for (uint32_t p = a; p <= b; p++) {
        if (!rx.resident[p]) {
            rx.resident[p] = 1;
            rx.pages_resident++;
        }
        if (now_us > rx.touched_us[p])
            rx.touched_us[p] = now_us;
    }
    if (b + 1 > rx.used_pages)
        rx.used_pages = b + 1;
}

void *ms_gw_rxslab_take(size_t size)
{
    if (!rx.base || size > rx.size || (!rx.n_free && rx.fresh == rx.slots))
        return NULL;
    /* The last given back first, then from the start: the pages in use stay few and dense. */
    uint32_t i = rx.n_free ? rx.free[--rx.n_free] : rx.fresh++;
    rx.state[i] = TAKEN;
    rx.pending = i;
    mark(i, 0); /* lws may write it from now on; not released while unbound */
    return rx.base + (size_t)i * rx.size;
}

void ms_gw_rxslab_put(void *p)
{
    uint32_t i = (uint32_t)(((unsigned char *)p - rx.base) / rx.size);
    if (rx.state[i] == BOUND) {
        int fd = rx.fd[i];
        if (fd >= 0 && fd < rx.max_fd && rx.by_fd[fd] == i + 1)
            rx.by_fd[fd] = 0;
    }
    if (rx.pending == i)
        rx.pending = NONE;
    rx.state[i] = FREE;
    rx.owner[i] = NULL;
    rx.free[rx.n_free++] = i;
}

void ms_gw_rxslab_bind(int fd, void *owner, uint64_t now_us)
{
    if (!rx.base || rx.pending == NONE || fd < 0 || fd >= rx.max_fd)
        return;
    uint32_t i = rx.pending;
    rx.pending = NONE;
    rx.state[i] = BOUND;
    rx.owner[i] = owner;
    rx.fd[i] = fd;
    rx.by_fd[fd] = i + 1;
    mark(i, now_us);
}

void ms_gw_rxslab_touch(int fd, uint64_t now_us, uint64_t prev_us)
{
    if (!rx.base || fd < 0 || fd >= rx.max_fd || !rx.by_fd[fd])
        return;
    mark(rx.by_fd[fd] - 1, now_us - prev_us >= rx.release_after_us ? 0 : now_us);
}

/* Page p may go: quiet long enough, and every slot on it free or bound to an owner between
 * two frames. */
static int releasable(uint32_t p, uint64_t now_us, int (*busy)(void *owner))
{
    if (!rx.resident[p] || now_us < rx.touched_us[p] + rx.release_after_us)
        return 0;
    size_t start = (size_t)p * rx.page, end = start + rx.page;
    uint32_t first = (uint32_t)(start / rx.size), last = (uint32_t)((end - 1) / rx.size);
    if (last >= rx.slots)
        last = rx.slots - 1;
    for (uint32_t i = first; i <= last; i++) {
        if (rx.state[i] == TAKEN)
            return 0;
        if (rx.state[i] == BOUND && busy(rx.owner[i]))
            return 0;
    }
    return 1;
}

size_t ms_gw_rxslab_sweep(uint64_t now_us, int (*busy)(void *owner), size_t max_pages)
{
    if (!rx.base || !rx.release_after_us || !rx.pages_resident)
        return 0;
    size_t released = 0;
    for (size_t n = 0; n < max_pages && n < rx.used_pages; n++) {
        uint32_t p = rx.cursor++;
        if (rx.cursor >= rx.used_pages)
            rx.cursor = 0;
        if (!releasable(p, now_us, busy))
            continue;
        if (madvise(rx.base + (size_t)p * rx.page, rx.page, MADV_DONTNEED) != 0)
            continue;
        rx.resident[p] = 0;
        rx.pages_resident--;
        rx.released++;
        released++;
    }
    return released;
}

void ms_gw_rxslab_stats(ms_gw_rxslab_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    if (!rx.base)
        return;
    st->slots_in_use = rx.fresh - rx.n_free;
    st->pages_resident = rx.pages_resident;
    st->pages_released = rx.released;
    st->slot_size = rx.size;
    st->slots = rx.slots;
}

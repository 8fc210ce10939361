/* SPDX-License-Identifier: Apache-2.0 */
/* lws's per-connection receive buffers from slots outside the heap, whose pages go back to the
 * kernel while their connections are quiet.
 *
 * lws 4.1 gives every WebSocket connection a receive buffer of --rx-buffer
 * bytes (+ LWS_PRE + 4), allocated when the upgrade completes ("rx_ubuf") and
 * kept until the connection closes: a message's payload is copied into it and
 * handed to the callback from there once the frame ends (or the buffer is
 * full). At 19k idle connections it was ~1,056 B of the gateway's ~2,600 B per
 * connection, while between two messages it holds nothing that is read again.
 *
 * Here those buffers are fixed slots in one mapping (packed, so a slot may
 * span two pages). A page whose slots' connections have received nothing for
 * `release_after_us` and are each between two frames (the owner's `busy` says
 * no: lws is not inside a frame's payload and reads are not paused) is handed
 * back with MADV_DONTNEED; the next byte lws copies into it faults in a zero
 * page. An active connection's page is never released; an idle one costs one
 * syscall per page (about four connections) and, when it speaks again, a page
 * fault. A slot taken but not yet bound to its connection, and a page with such
 * a slot, are never released.
 *
 * Single-threaded: the lws service thread (lws allocates and frees receive
 * buffers there; binding, touching and sweeping are the gateway's, on the same
 * thread).
 */
#ifndef MS_GW_RXSLAB_H
#define MS_GW_RXSLAB_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Reserves `slots` slots of slot_size bytes (address space; pages are touched
 * as lws writes them) and a table by descriptor up to max_fd. release_after_us
 * 0: pages are never released (the slots are still used). Once per process. */
ms_err_t ms_gw_rxslab_init(size_t slots, size_t slot_size, int max_fd, uint64_t release_after_us);
/* A free slot for a receive buffer of size bytes, or NULL (none free, too
 * large, not initialised): the caller allocates elsewhere. */
void *ms_gw_rxslab_take(size_t size);
/* 1 if p is a slot (then only ms_gw_rxslab_put frees it). */
int ms_gw_rxslab_owns(const void *p);
void ms_gw_rxslab_put(void *p);
/* The slot taken last and not bound yet becomes fd's, owned by owner (lws
 * allocates the receive buffer just before LWS_CALLBACK_ESTABLISHED, where
 * this is called). Without such a slot (lws allocated it elsewhere) nothing
 * happens. Counts as a touch. */
void ms_gw_rxslab_bind(int fd, void *owner, uint64_t now_us);
/* fd received something at now_us (lws copied it into the buffer), the last time before at
 * prev_us: its pages stay for release_after_us. A connection that had been quiet that long
 * (a keepalive every few seconds) keeps them only for the next sweep, so that a client's
 * heartbeat does not hold its page for a whole release_after_us. */
void ms_gw_rxslab_touch(int fd, uint64_t now_us, uint64_t prev_us);
/* Looks at up to max_pages pages after the last one looked at, and releases
 * those quiet since release_after_us whose bound slots' owners are not busy.
 * Returns the pages released. */
size_t ms_gw_rxslab_sweep(uint64_t now_us, int (*busy)(void *owner), size_t max_pages);

typedef struct {
    size_t slots_in_use;     /* taken, bound or not */
    size_t pages_resident;   /* pages that may hold memory (touched since released) */
    uint64_t pages_released; /* MADV_DONTNEED calls, since the start */
    size_t slot_size, slots; /* 0 when not initialised */
} ms_gw_rxslab_stats_t;
void ms_gw_rxslab_stats(ms_gw_rxslab_stats_t *st);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* lws's HTTP header tables from a slab outside the heap.
 *
 * Every handshake holds a header table from lws's pool (an "ah struct" of
 * ~1 KiB and 4 KiB of "ah data"), allocated when the connection's first bytes
 * are read and freed when the upgrade completes, in between the connection's
 * long-lived allocations (its wsi, receive buffer, WebSocket struct and
 * session) and those of the connections around it. Freed, the 5 KiB holes were
 * split by what came next and left pieces that nothing of that size reused:
 * after a burst of 19k joins the heap held ~80 bytes of free chunks per
 * connection. lws passes every allocation through one hook with a reason
 * (lws_set_allocator): these two come from fixed slots here instead, as many
 * as lws's pool may hold at once (--max-handshakes), and a freed data slot is
 * handed back to the kernel (MADV_DONTNEED: one syscall per handshake). Every
 * other allocation, and a table beyond the slots, goes to malloc, but for the
 * connections' receive buffers ("rx_ubuf"), which come from rxslab.h when it
 * was set up.
 *
 * The slots are taken and freed on the lws service thread only (handshakes);
 * a free from any thread of memory that is not in a slot passes to free().
 */
#ifndef MS_GW_AHSLAB_H
#define MS_GW_AHSLAB_H

#include <stddef.h>

#include "err.h"

/* Reserves slots tables of at most struct_size and data_size bytes (address
 * space; pages are touched as used) and installs the hook with
 * lws_set_allocator. Before the lws context is created; once per process. */
ms_err_t ms_gw_ahslab_init(size_t slots, size_t struct_size, size_t data_size);
/* The hook: lws_realloc's contract (size 0 frees; ptr NULL allocates). */
void *ms_gw_ahslab_realloc(void *ptr, size_t size, const char *reason);
/* Slots in use, of each kind (tests, metrics). */
size_t ms_gw_ahslab_in_use(void);

#endif

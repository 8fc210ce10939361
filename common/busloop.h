/* SPDX-License-Identifier: Apache-2.0 */
/* cnats driven by its owner's event loop (libev or libevent), reads handed back on that loop.
 *
 * cnats's own threads cost a cross-gateway signal about 1 ms per publish (its
 * flusher thread waits 1 ms to batch writes) and two thread hops per receive
 * (the reader thread hands each message to a delivery thread, which hands it
 * to the owner's loop). With an adapter from here the loop reads the NATS
 * socket, the bus takes the parsed messages off synchronous subscriptions right
 * after each read (ms_busloop_read_fn), and the publishes of a loop turn go out
 * in one write when the loop next sees the socket writable.
 *
 * Threads: cnats calls the adapter from the loop thread (reads, writes, most
 * publishes) and from its own threads (reconnect, pings). The libev backend
 * applies those calls on the loop thread through an ev_async; the libevent
 * backend relies on evthread (ms_bus_global_init).
 *
 * Linking: the libev backend is the library ms_busloop_ev, apart from
 * ms_common, because libev exports a libevent emulation (event_add, ...) that
 * must not shadow the real libevent in the coordinator.
 */
#ifndef MS_BUSLOOP_H
#define MS_BUSLOOP_H

#include <nats/nats.h>

#include "err.h"

typedef struct ms_busloop ms_busloop_t;
/* Loop thread, after each read of the NATS socket. */
typedef void (*ms_busloop_read_fn)(void *ud);

/* On the loop's thread. base: a struct event_base * (ms_common). */
ms_err_t ms_busloop_libevent_create(void *base, ms_busloop_t **out);
/* On the loop's thread. loop: a struct ev_loop * (ms_busloop_ev). */
ms_err_t ms_busloop_libev_create(void *loop, ms_busloop_t **out);

/* Before install. */
void ms_busloop_set_reader(ms_busloop_t *l, ms_busloop_read_fn after_read, void *ud);
/* Makes o use this loop (natsOptions_SetEventLoop) and send as soon as the loop can. */
ms_err_t ms_busloop_install(ms_busloop_t *l, natsOptions *o);
/* Loop thread, outside the loop's callbacks: writes what cnats has buffered for
 * nc without running the loop, until nothing is left or timeout_ms passes. */
ms_err_t ms_busloop_flush(ms_busloop_t *l, natsConnection *nc, int timeout_ms);
/* Loop thread: writes what cnats has buffered for nc now, once, as the socket's
 * next writable event would; what the socket does not take waits for that
 * event. Nothing when disconnected or nothing is buffered. */
void ms_busloop_send_now(ms_busloop_t *l, natsConnection *nc);
/* Before connecting: fn(ud) runs on the loop thread soon after each ms_busloop_post. */
void ms_busloop_set_post(ms_busloop_t *l, ms_busloop_read_fn fn, void *ud);
/* Any thread: asks the loop to run the post callback (several posts may run it once). */
void ms_busloop_post(ms_busloop_t *l);
/* Loop thread, after the connection is closed (cnats has detached). NULL is fine. */
void ms_busloop_destroy(ms_busloop_t *l);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* The NATS connection both binaries use: connect with reconnect, publish, subscribe.
 *
 * Subjects are built and parsed in subject.h. Publishing is thread-safe (cnats).
 *
 * Two ways to receive. Driven by the owner's event loop (opts.loop or
 * opts.event_base, with opts.on_msg): the loop reads the socket and on_msg
 * runs on the loop thread right after each read, and publishes go out at the
 * loop's next turn (common/busloop.h): no thread hop and no flusher delay.
 * Without a loop, cnats's own threads read and flush (its flusher waits up to
 * 1 ms to batch) and messages are pushed into the caller's mailbox.
 */
#ifndef MS_BUS_H
#define MS_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <nats/nats.h>

#include "busloop.h"
#include "err.h"
#include "mailbox.h"
#include "natsauth.h"
#include "subject.h"

typedef struct ms_bus ms_bus_t;

/* Loop thread. msg is borrowed: the bus destroys it when fn returns. */
typedef void (*ms_bus_msg_fn)(natsMsg *msg, void *ud);
/* Loop thread, after the messages of one read (at least one) were handed to on_msg. */
typedef void (*ms_bus_batch_fn)(void *ud);

typedef struct {
    const char *urls;           /* comma-separated nats:// URLs */
    const char *name;           /* connection name shown by the server */
    const ms_nats_auth_t *auth; /* credentials, or NULL (borrowed during connect) */
    /* At most one loop; NULL for both: cnats threads. ms_bus_connect runs on
     * the loop's thread, and the loop outlives the bus. */
    void *event_base;         /* a libevent event_base */
    ms_busloop_t *loop;       /* any other loop's adapter (busloop.h); the bus takes it */
    ms_bus_msg_fn on_msg;     /* required with a loop */
    ms_bus_batch_fn on_batch; /* optional */
    void *ud;
    /* While disconnected, ms_bus_publish fails at once (MS_ERR_BUS) instead
     * of buffering for the reconnect: a caller on an event loop must not wait
     * for cnats' lock through reconnect attempts, and can tell its client to
     * retry. Off: buffered (up to 32 MiB) and sent once reconnected. */
    int fail_fast;
} ms_bus_opts_t;

/* Once per process, before any libevent event_base is created. */
void ms_bus_global_init(void);
/* Connects (retrying in the background if no server answers yet). Takes
 * o->loop, also when it fails. */
ms_err_t ms_bus_connect(const ms_bus_opts_t *opts, ms_bus_t **out);
void ms_bus_destroy(ms_bus_t *b);
/* Any thread. reply may be NULL. b may be NULL (a process part built without
 * NATS, as unit tests and fuzz targets build a coordinator): MS_ERR_BUS;
 * ms_bus_connected and ms_bus_reconnects then say 0. */
ms_err_t ms_bus_publish(ms_bus_t *b, const char *subject, const char *reply, const void *data,
                        size_t len);
/* Subscribes subject (wildcards allowed). queue may be NULL. Messages go to
 * mb without a loop; with a loop they go to opts.on_msg and mb must be NULL. */
ms_err_t ms_bus_subscribe(ms_bus_t *b, const char *subject, const char *queue, ms_mailbox_t *mb);
/* Stops every subscription and waits (up to timeout_ms) until no handler is
 * running, so that nothing pushes into a mailbox afterwards. Publishing still works. */
void ms_bus_drain_subscriptions(ms_bus_t *b, int timeout_ms);
/* Flushes pending publishes to the server, waiting up to timeout_ms. With a
 * loop: only on the loop thread outside its callbacks (else MS_ERR_STATE), and
 * it writes what is buffered without waiting for the server's answer. */
ms_err_t ms_bus_flush(ms_bus_t *b, int timeout_ms);
/* With a loop, on its thread: what was published so far leaves now, in one write, instead
 * of at the socket's next writable event, which costs turning the loop's write watcher on
 * and off (two epoll_ctl) and one more loop wakeup per turn that publishes. Call it at the
 * end of a loop turn. Without a loop, or disconnected: nothing (cnats's flusher, or the
 * reconnect, sends it). */
void ms_bus_send_now(ms_bus_t *b);
/* Any thread, never blocks: as of cnats' last (dis)connect callback. */
int ms_bus_connected(ms_bus_t *b);
uint64_t ms_bus_reconnects(ms_bus_t *b);
natsConnection *ms_bus_nats(ms_bus_t *b);

/* fnv1a64(namespace) mod shards (DESIGN.md §2). */
uint32_t ms_bus_shard_of(const char *ns, uint32_t shards);

#endif

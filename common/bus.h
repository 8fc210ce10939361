/* SPDX-License-Identifier: Apache-2.0 */
/* The NATS connection both binaries use: connect with reconnect, publish, subscribe into a mailbox.
 *
 * Subjects are built and parsed in subject.h. Publishing is thread-safe (cnats); subscription
 * messages are pushed into the caller's mailbox and processed on its thread.
 */
#ifndef MS_BUS_H
#define MS_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <nats/nats.h>

#include "err.h"
#include "mailbox.h"
#include "subject.h"

typedef struct ms_bus ms_bus_t;

typedef struct {
    const char *urls; /* comma-separated nats:// URLs */
    const char *name; /* connection name shown by the server */
    void *event_base; /* a libevent event_base to drive the socket, or NULL (cnats threads) */
} ms_bus_opts_t;

/* Once per process, before any libevent event_base is created. */
void ms_bus_global_init(void);
/* Connects (retrying in the background if no server answers yet). */
ms_err_t ms_bus_connect(const ms_bus_opts_t *opts, ms_bus_t **out);
void ms_bus_destroy(ms_bus_t *b);
/* Any thread. reply may be NULL. */
ms_err_t ms_bus_publish(ms_bus_t *b, const char *subject, const char *reply, const void *data,
                        size_t len);
/* Subscribes subject (wildcards allowed); messages go to mb. queue may be NULL. */
ms_err_t ms_bus_subscribe(ms_bus_t *b, const char *subject, const char *queue, ms_mailbox_t *mb);
/* Stops every subscription and waits (up to timeout_ms) until no handler is
 * running, so that nothing pushes into a mailbox afterwards. Publishing still works. */
void ms_bus_drain_subscriptions(ms_bus_t *b, int timeout_ms);
/* Flushes pending publishes to the server, waiting up to timeout_ms. Not for a
 * connection driven by an event loop (MS_ERR_STATE): the loop reads the reply. */
ms_err_t ms_bus_flush(ms_bus_t *b, int timeout_ms);
int ms_bus_connected(ms_bus_t *b);
uint64_t ms_bus_reconnects(ms_bus_t *b);
natsConnection *ms_bus_nats(ms_bus_t *b);

/* The gateway's names for two subject.h builders, until it includes subject.h itself. */
static inline const char *ms_bus_subject_shard(char *buf, size_t cap, const char *prefix,
                                               uint32_t shard)
{
    return ms_subject_shard(buf, cap, prefix, shard);
}
static inline const char *ms_bus_subject_gw(char *buf, size_t cap, const char *prefix,
                                            const char *gateway_id)
{
    return ms_subject_gw(buf, cap, prefix, gateway_id);
}

/* fnv1a64(namespace) mod shards (DESIGN.md §2). */
uint32_t ms_bus_shard_of(const char *ns, uint32_t shards);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* Hands NATS messages from cnats threads to the one thread that owns the state.
 *
 * cnats calls subscription handlers on its own threads; the gateway's state
 * belongs to the libwebsockets service thread and the coordinator's to the
 * libevent loop. A handler pushes the message here; the owning thread drains
 * it. push() wakes the owner only when the queue goes from empty to non-empty,
 * so a burst costs one wake-up. No allocation per message: two vectors swap.
 */
#ifndef MS_MAILBOX_H
#define MS_MAILBOX_H

#include <stddef.h>
#include <nats/nats.h>

#include "err.h"

typedef struct ms_mailbox ms_mailbox_t;
/* Called from a cnats thread: must be thread-safe (lws_cancel_service, event_active). */
typedef void (*ms_mailbox_wake_fn)(void *ud);
typedef void (*ms_mailbox_msg_fn)(natsMsg *msg, void *ud);

ms_err_t ms_mailbox_create(ms_mailbox_wake_fn wake, void *ud, ms_mailbox_t **out);
/* Destroys any message still queued. No push may run concurrently. */
void ms_mailbox_destroy(ms_mailbox_t *m);
/* Any thread. Takes ownership of msg. On allocation failure the message is
 * dropped and counted (ms_mailbox_dropped). */
void ms_mailbox_push(ms_mailbox_t *m, natsMsg *msg);
/* Owner thread. Calls fn for every queued message in order, then destroys it.
 * Returns how many were processed. */
size_t ms_mailbox_drain(ms_mailbox_t *m, ms_mailbox_msg_fn fn, void *ud);
/* NULL (no mailbox) counts 0. */
size_t ms_mailbox_dropped(ms_mailbox_t *m);

#endif

/* SPDX-License-Identifier: Apache-2.0 */
/* The event loop under the gateway's libwebsockets context: libev (epoll) or lws's poll(). */
#ifndef MS_EVLOOP_H
#define MS_EVLOOP_H

#include <libwebsockets.h>

#include "err.h"

typedef struct ms_evloop ms_evloop_t;

/* name: "auto" (also NULL or ""), "libev" or "poll".
 * auto is libev, or poll with a warning when lws's libev plugin cannot be
 * loaded; an explicit "libev" fails instead (MS_ERR_UNSUPPORTED). Call after
 * lws_set_log_level. */
ms_err_t ms_evloop_create(const char *name, ms_evloop_t **out);
/* Sets the event-lib option and the foreign loop of the context to be created. */
void ms_evloop_configure(ms_evloop_t *l, struct lws_context_creation_info *info);
/* One iteration: waits for socket I/O, an lws timer or lws_cancel_service(),
 * and handles what is ready. Negative when lws fails. */
int ms_evloop_run_once(ms_evloop_t *l, struct lws_context *ctx);
/* Handles what is ready now without waiting; 0 on lws's poll loop, which
 * does nothing here (it cannot poll without waiting through lws). */
int ms_evloop_run_ready(ms_evloop_t *l);
/* The libev loop (a struct ev_loop *), for other watchers on the service
 * thread such as the NATS connection's; NULL on lws's poll loop. */
void *ms_evloop_libev(const ms_evloop_t *l);
/* "libev (epoll)", "poll": for logs. */
const char *ms_evloop_name(const ms_evloop_t *l);
/* After lws_context_destroy. NULL is fine. */
void ms_evloop_destroy(ms_evloop_t *l);

#endif

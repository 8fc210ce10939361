/* SPDX-License-Identifier: Apache-2.0 */
/* What the bus's event-loop backends (busloop.c: libevent, busloop_ev.c: libev) share. */
#ifndef MS_BUSLOOP_IMPL_H
#define MS_BUSLOOP_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "busloop.h"

/* A backend embeds this as its first member. */
struct ms_busloop {
    natsEvLoop_Attach attach;
    natsEvLoop_ReadAddRemove read;
    natsEvLoop_WriteAddRemove write;
    natsEvLoop_Detach detach;
    void (*cleanup)(ms_busloop_t *l); /* stops the backend's watchers and frees l */
    ms_busloop_read_fn after_read;    /* set by the bus before connecting */
    void *ud;
    pthread_t owner;    /* the loop's thread */
    natsConnection *nc; /* set by the first attach; the same connection for life */
    atomic_int fd;      /* the attached socket, -1 while detached (for flush) */
    /* ms_busloop_post: post() makes the loop run on_post(post_ud) soon, once per posting. */
    void (*post)(ms_busloop_t *l); /* any thread */
    ms_busloop_read_fn on_post;
    void *post_ud;
    atomic_int posted;
};

/* Loop thread: runs on_post if something was posted since the last call. */
void ms_busloop_run_posted(ms_busloop_t *l);

/* Fills the shared fields (owner: the calling thread). cnats hands l back to
 * attach as its "loop". */
void ms_busloop_base_init(ms_busloop_t *l);

#endif

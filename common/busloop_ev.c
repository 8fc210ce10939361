/* SPDX-License-Identifier: Apache-2.0 */
/* The bus's libev backend: cnats's calls from any thread applied on the loop thread.
 *
 * libev is not thread-safe, and cnats calls the adapter from its reconnect and
 * ping threads too. Every call records what cnats wants (socket, read, write)
 * under a lock; on the loop thread the watchers are set to match at once,
 * from another thread an ev_async makes the loop do it. Since the record is a
 * state, not a queue of changes, the last wish wins whatever the order.
 */
#include <stdlib.h>
#include <ev.h>

#include "busloop_impl.h"

typedef struct {
    ms_busloop_t base;
    struct ev_loop *ev;
    ev_io rd, wr;
    ev_async async;
    pthread_mutex_t lock;
    int want_fd, want_read, want_write; /* guarded by lock */
    unsigned want_gen;                  /* guarded by lock; bumped when the socket changes */
    unsigned cur_gen;                   /* loop thread: the socket the watchers are set for */
} evl_t;

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    evl_t *l = w->data;
    natsConnection_ProcessReadEvent(l->base.nc);
    l->base.after_read(l->base.ud);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    evl_t *l = w->data;
    natsConnection_ProcessWriteEvent(l->base.nc);
}

/* Loop thread: makes the watchers what cnats last asked for. */
static void apply(evl_t *l)
{
    pthread_mutex_lock(&l->lock);
    int fd = l->want_fd, r = l->want_read, w = l->want_write;
    unsigned gen = l->want_gen;
    pthread_mutex_unlock(&l->lock);
    if (gen != l->cur_gen) {
        /* A new socket, perhaps with the old one's number: set the watchers
         * up afresh so that libev registers it again. */
        ev_io_stop(l->ev, &l->rd);
        ev_io_stop(l->ev, &l->wr);
        l->cur_gen = gen;
        if (fd >= 0) {
            ev_io_set(&l->rd, fd, EV_READ);
            ev_io_set(&l->wr, fd, EV_WRITE);
        }
    }
    if (fd < 0)
        return;
    if (r)
        ev_io_start(l->ev, &l->rd);
    else
        ev_io_stop(l->ev, &l->rd);
    if (w)
        ev_io_start(l->ev, &l->wr);
    else
        ev_io_stop(l->ev, &l->wr);
}

static void on_async(struct ev_loop *loop, ev_async *w, int revents)
{
    apply(w->data);
}

/* Any thread, after recording a wish under the lock. */
static void kick(evl_t *l)
{
    if (pthread_equal(pthread_self(), l->base.owner))
        apply(l);
    else
        ev_async_send(l->ev, &l->async);
}

static natsStatus evl_attach(void **userData, void *loop, natsConnection *nc, natsSock sock)
{
    evl_t *l = loop;
    pthread_mutex_lock(&l->lock);
    l->base.nc = nc;
    l->want_fd = (int)sock;
    l->want_read = 1;
    l->want_gen++;
    pthread_mutex_unlock(&l->lock);
    atomic_store(&l->base.fd, (int)sock);
    *userData = l;
    kick(l);
    return NATS_OK;
}

static natsStatus evl_read(void *userData, bool add)
{
    evl_t *l = userData;
    pthread_mutex_lock(&l->lock);
    l->want_read = add;
    pthread_mutex_unlock(&l->lock);
    kick(l);
    return NATS_OK;
}

static natsStatus evl_write(void *userData, bool add)
{
    evl_t *l = userData;
    pthread_mutex_lock(&l->lock);
    l->want_write = add;
    pthread_mutex_unlock(&l->lock);
    kick(l);
    return NATS_OK;
}

static natsStatus evl_detach(void *userData)
{
    evl_t *l = userData;
    atomic_store(&l->base.fd, -1);
    pthread_mutex_lock(&l->lock);
    l->want_fd = -1;
    l->want_read = l->want_write = 0;
    l->want_gen++;
    pthread_mutex_unlock(&l->lock);
    kick(l);
    return NATS_OK;
}

static void evl_cleanup(ms_busloop_t *base)
{
    evl_t *l = (evl_t *)base;
    ev_io_stop(l->ev, &l->rd);
    ev_io_stop(l->ev, &l->wr);
    ev_async_stop(l->ev, &l->async);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

ms_err_t ms_busloop_libev_create(void *loop, ms_busloop_t **out)
{
    if (!loop)
        return MS_ERR_INVAL;
    evl_t *l = calloc(1, sizeof(*l));
    if (!l)
        return MS_ERR_NOMEM;
    ms_busloop_base_init(&l->base);
    l->base.attach = evl_attach;
    l->base.read = evl_read;
    l->base.write = evl_write;
    l->base.detach = evl_detach;
    l->base.cleanup = evl_cleanup;
    l->ev = loop;
    l->want_fd = -1;
    pthread_mutex_init(&l->lock, NULL);
    ev_io_init(&l->rd, on_read, -1, EV_READ);
    ev_io_init(&l->wr, on_write, -1, EV_WRITE);
    l->rd.data = l->wr.data = l;
    ev_async_init(&l->async, on_async);
    l->async.data = l;
    ev_async_start(l->ev, &l->async);
    *out = &l->base;
    return MS_OK;
}

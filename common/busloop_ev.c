/* SPDX-License-Identifier: Apache-2.0 */
/* The bus's libev backend: cnats's calls from any thread applied on the loop thread.
 *
 * libev is not thread-safe, and cnats calls the adapter from its reconnect and
 * ping threads too. Every call records what cnats wants (socket, read, write)
 * under a lock; on the loop thread the watchers are set to match at once,
 * from another thread an ev_async makes the loop do it. Since the record is a
 * state, not a queue of changes, the last wish wins whatever the order.
 *
 * The watchers are on a duplicate of cnats's socket, owned by the loop
 * thread. cnats closes its socket on its own threads (a stale connection
 * found by the ping timer, a reconnect): had libev the same descriptor, the
 * loop could still (re)arm a watcher on it before the detach reached the
 * loop, and libev aborts on epoll_ctl's EBADF ("I/O watcher with invalid fd
 * found in epoll_ctl"; seen under partitions and a stalled gateway). The
 * duplicate stays open until the loop has stopped the watchers; the
 * connection itself ends with cnats's shutdown of the socket.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <ev.h>

#include "busloop_impl.h"

typedef struct {
    ms_busloop_t base;
    struct ev_loop *ev;
    ev_io rd, wr;
    ev_async async;
    pthread_mutex_t lock;
    int want_fd, want_read, want_write; /* guarded by lock; want_fd: a duplicate, or -1 */
    int want_taken;                     /* guarded by lock; the loop took want_fd */
    unsigned want_gen;                  /* guarded by lock; bumped when the socket changes */
    unsigned cur_gen;                   /* loop thread: the socket the watchers are set for */
    int cur_fd;                         /* loop thread: the duplicate they watch, or -1 */
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
    int r = l->want_read, w = l->want_write;
    unsigned gen = l->want_gen;
    int fd = -1;
    if (gen != l->cur_gen) {
        fd = l->want_fd; /* ours from now on: the loop closes it */
        l->want_taken = 1;
    }
    pthread_mutex_unlock(&l->lock);
    if (gen != l->cur_gen) {
        /* A new socket, perhaps with the old one's number: set the watchers
         * up afresh so that libev registers it again. Stopped before the
         * old duplicate is closed (libev ignores a removal it cannot do). */
        ev_io_stop(l->ev, &l->rd);
        ev_io_stop(l->ev, &l->wr);
        if (l->cur_fd >= 0)
            close(l->cur_fd);
        l->cur_fd = fd;
        l->cur_gen = gen;
        if (fd >= 0) {
            ev_io_set(&l->rd, fd, EV_READ);
            ev_io_set(&l->wr, fd, EV_WRITE);
        }
    }
    if (l->cur_fd < 0)
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
    evl_t *l = w->data;
    apply(l);
    ms_busloop_run_posted(&l->base);
}

static void evl_post(ms_busloop_t *base)
{
    ev_async_send(((evl_t *)base)->ev, &((evl_t *)base)->async);
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
    /* Duplicated here, while cnats's socket is surely open. */
    int dup = fcntl((int)sock, F_DUPFD_CLOEXEC, 0);
    if (dup < 0)
        return NATS_SYS_ERROR;
    pthread_mutex_lock(&l->lock);
    if (!l->want_taken && l->want_fd >= 0)
        close(l->want_fd); /* an earlier socket the loop never took */
    l->base.nc = nc;
    l->want_fd = dup;
    l->want_taken = 0;
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
    if (!l->want_taken && l->want_fd >= 0)
        close(l->want_fd);
    l->want_fd = -1;
    l->want_taken = 0;
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
    if (l->cur_fd >= 0)
        close(l->cur_fd);
    if (!l->want_taken && l->want_fd >= 0)
        close(l->want_fd);
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
    l->base.post = evl_post;
    l->ev = loop;
    l->want_fd = l->cur_fd = -1;
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

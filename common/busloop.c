/* SPDX-License-Identifier: Apache-2.0 */
/* The bus's event-loop adapter: what every backend shares, and the libevent backend. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <time.h>
#include <event2/event.h>

#include "busloop_impl.h"

void ms_busloop_base_init(ms_busloop_t *l)
{
    l->owner = pthread_self();
    atomic_init(&l->fd, -1);
    atomic_init(&l->posted, 0);
}

void ms_busloop_set_post(ms_busloop_t *l, ms_busloop_read_fn fn, void *ud)
{
    l->on_post = fn;
    l->post_ud = ud;
}

void ms_busloop_post(ms_busloop_t *l)
{
    atomic_store(&l->posted, 1);
    l->post(l);
}

void ms_busloop_run_posted(ms_busloop_t *l)
{
    if (atomic_exchange(&l->posted, 0) && l->on_post)
        l->on_post(l->post_ud);
}

void ms_busloop_set_reader(ms_busloop_t *l, ms_busloop_read_fn after_read, void *ud)
{
    l->after_read = after_read;
    l->ud = ud;
}

ms_err_t ms_busloop_install(ms_busloop_t *l, natsOptions *o)
{
    if (!l->after_read)
        return MS_ERR_STATE;
    natsStatus s = natsOptions_SetEventLoop(o, l, l->attach, l->read, l->write, l->detach);
    /* With a loop, "as soon as possible" means: ask the loop for the socket's
     * next writable event, so a turn's publishes leave together, without the
     * flusher thread's 1 ms wait. */
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(o, true);
    return s == NATS_OK ? MS_OK : MS_ERR_BUS;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

ms_err_t ms_busloop_flush(ms_busloop_t *l, natsConnection *nc, int timeout_ms)
{
    if (!pthread_equal(pthread_self(), l->owner))
        return MS_ERR_STATE;
    int64_t end = mono_ms() + timeout_ms;
    for (;;) {
        int fd = atomic_load(&l->fd);
        if (fd < 0)
            return MS_ERR_BUS; /* disconnected: cnats keeps it for the reconnect */
        if (natsConnection_Buffered(nc) <= 0)
            return MS_OK;
        int64_t left = end - mono_ms();
        if (left <= 0)
            return MS_ERR_TIMEOUT;
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno != EINTR)
            return MS_ERR_IO;
        if (n > 0)
            natsConnection_ProcessWriteEvent(nc);
    }
}

void ms_busloop_send_now(ms_busloop_t *l, natsConnection *nc)
{
    /* The fd first: while cnats reconnects it holds the connection's lock,
     * and Buffered would wait for it. A zero-byte write would read as a
     * closed connection, hence Buffered. */
    if (!pthread_equal(pthread_self(), l->owner) || atomic_load(&l->fd) < 0 ||
        natsConnection_Buffered(nc) <= 0)
        return;
    natsConnection_ProcessWriteEvent(nc);
}

void ms_busloop_destroy(ms_busloop_t *l)
{
    if (l)
        l->cleanup(l);
}

/* ---- libevent: thread-safe itself once evthread is on ---------------------- */

typedef struct {
    ms_busloop_t base;
    struct event_base *evb;
    struct event *rd, *wr;
    struct event *posted; /* made active by ms_busloop_post from any thread */
} le_loop_t;

static void le_on_posted(evutil_socket_t fd, short what, void *arg)
{
    ms_busloop_run_posted(arg);
}

static void le_post(ms_busloop_t *base)
{
    event_active(((le_loop_t *)base)->posted, EV_READ, 0);
}

static void le_on_event(evutil_socket_t fd, short what, void *arg)
{
    le_loop_t *l = arg;
    if (what & EV_READ) {
        natsConnection_ProcessReadEvent(l->base.nc);
        l->base.after_read(l->base.ud);
    }
    if (what & EV_WRITE)
        natsConnection_ProcessWriteEvent(l->base.nc);
}

static void le_finalized(struct event *ev, void *arg) {}

/* cnats attaches and detaches on its own threads with the connection's lock held. A plain
 * event_free there waits for the event's callback if the loop is running it, and that
 * callback may be waiting for the same lock (a publish after a read): both coordinators of
 * the 100k run hung so, for good, on a reconnect. Events made with EV_FINALIZE are freed by
 * the loop once their callback is done, without waiting here. */
static void le_free_events(le_loop_t *l)
{
    if (l->rd)
        event_free_finalize(0, l->rd, le_finalized);
    if (l->wr)
        event_free_finalize(0, l->wr, le_finalized);
    l->rd = l->wr = NULL;
}

static natsStatus le_attach(void **userData, void *loop, natsConnection *nc, natsSock sock)
{
    le_loop_t *l = loop;
    l->base.nc = nc;
    le_free_events(l); /* a reconnect: the old socket's events */
    l->rd = event_new(l->evb, sock, EV_READ | EV_PERSIST | EV_FINALIZE, le_on_event, l);
    l->wr = event_new(l->evb, sock, EV_WRITE | EV_PERSIST | EV_FINALIZE, le_on_event, l);
    if (!l->rd || !l->wr || event_add(l->rd, NULL) != 0) {
        le_free_events(l);
        return NATS_NO_MEMORY;
    }
    atomic_store(&l->base.fd, (int)sock);
    *userData = l;
    return NATS_OK;
}

static natsStatus le_read(void *userData, bool add)
{
    le_loop_t *l = userData;
    if (!l->rd)
        return NATS_ERR;
    return (add ? event_add(l->rd, NULL) : event_del_noblock(l->rd)) == 0 ? NATS_OK : NATS_ERR;
}

static natsStatus le_write(void *userData, bool add)
{
    le_loop_t *l = userData;
    if (!l->wr)
        return NATS_ERR;
    return (add ? event_add(l->wr, NULL) : event_del_noblock(l->wr)) == 0 ? NATS_OK : NATS_ERR;
}

static natsStatus le_detach(void *userData)
{
    le_loop_t *l = userData;
    atomic_store(&l->base.fd, -1);
    le_free_events(l);
    return NATS_OK;
}

static void le_cleanup(ms_busloop_t *base)
{
    le_loop_t *l = (le_loop_t *)base;
    /* Loop thread, outside the events' callbacks: freed at once. */
    if (l->rd)
        event_free(l->rd);
    if (l->wr)
        event_free(l->wr);
    l->rd = l->wr = NULL;
    if (l->posted)
        event_free(l->posted);
    free(l);
}

ms_err_t ms_busloop_libevent_create(void *event_base, ms_busloop_t **out)
{
    if (!event_base)
        return MS_ERR_INVAL;
    le_loop_t *l = calloc(1, sizeof(*l));
    if (!l)
        return MS_ERR_NOMEM;
    ms_busloop_base_init(&l->base);
    l->evb = event_base;
    l->base.attach = le_attach;
    l->base.read = le_read;
    l->base.write = le_write;
    l->base.detach = le_detach;
    l->base.cleanup = le_cleanup;
    l->base.post = le_post;
    if (!(l->posted = event_new(l->evb, -1, 0, le_on_posted, &l->base))) {
        free(l);
        return MS_ERR_NOMEM;
    }
    *out = &l->base;
    return MS_OK;
}

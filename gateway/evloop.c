/* SPDX-License-Identifier: Apache-2.0 */
/* The event loop under the gateway's libwebsockets context.
 *
 * lws's own loop calls poll() over every socket on every wakeup, which at tens
 * of thousands of mostly idle connections costs more than the work. With libev
 * (epoll on Linux) a wakeup costs O(ready sockets). Debian builds lws 4.1 with
 * its event libs as plugins (libwebsockets-evlib_ev.so, package
 * libwebsockets-evlib-ev) that lws_create_context dlopen()s.
 *
 * The libev loop is ours (lws calls it "foreign"): we run it one iteration at a
 * time, exactly like lws_service() on the poll loop, so the gateway's run,
 * stop and drain loops stay the same for both. lws_service() itself would run
 * ev_run() until the loop is broken. Nothing here is called off the service
 * thread: other threads and signal handlers wake the loop with
 * lws_cancel_service(), which writes to lws's event pipe, and the loop watches
 * that pipe like any socket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ev.h>

#include "evloop.h"
#include "log.h"

struct ms_evloop {
    struct ev_loop *ev; /* NULL: lws's poll loop */
    void *foreign[1];   /* info.foreign_loops, one per service thread */
    int kicked;
    char name[32];
};

/* Whether lws_create_context will find the libev event lib. */
static int libev_loadable(void)
{
#if defined(LWS_WITH_EVLIB_PLUGINS)
    /* The same lookup lws_create_context makes. */
    static const char *const dirs[] = {LWS_INSTALL_LIBDIR, NULL};
    struct lws_plugin *list = NULL;
    lws_plugins_init(&list, dirs, "lws_evlib_plugin", "evlib_ev", NULL, NULL);
    int ok = list != NULL;
    lws_plugins_destroy(&list, NULL, NULL);
    return ok;
#elif defined(LWS_WITH_LIBEV)
    return 1; /* built into libwebsockets */
#else
    return 0;
#endif
}

static const char *backend_name(unsigned int b)
{
    switch (b) {
    case EVBACKEND_EPOLL:
        return "epoll";
    case EVBACKEND_POLL:
        return "poll";
    case EVBACKEND_SELECT:
        return "select";
    case EVBACKEND_KQUEUE:
        return "kqueue";
    default:
        return "other";
    }
}

ms_err_t ms_evloop_create(const char *name, ms_evloop_t **out)
{
    *out = NULL;
    int required = 0;
    if (name && !strcmp(name, "libev"))
        required = 1;
    else if (name && *name && strcmp(name, "auto") && strcmp(name, "poll")) {
        ms_error("--event-lib must be auto, libev or poll, got '%s'", name);
        return MS_ERR_INVAL;
    }
    ms_evloop_t *l = calloc(1, sizeof(*l));
    if (!l)
        return MS_ERR_NOMEM;
    snprintf(l->name, sizeof(l->name), "poll");
    if (name && !strcmp(name, "poll"))
        goto done;
    if (!libev_loadable()) {
#if defined(LWS_WITH_EVLIB_PLUGINS)
        const char *why = "cannot load " LWS_INSTALL_LIBDIR "/libwebsockets-evlib_ev.so "
                          "(Debian package libwebsockets-evlib-ev)";
#else
        const char *why = "this libwebsockets is built without libev";
#endif
        if (required) {
            ms_error("--event-lib libev: %s", why);
            free(l);
            return MS_ERR_UNSUPPORTED;
        }
        ms_warn("event loop: %s; falling back to poll(), which scans every socket on every "
                "wakeup (slow with many connections). --event-lib poll silences this",
                why);
        goto done;
    }
    /* EVFLAG_NOENV: LIBEV_FLAGS in the environment does not pick the backend. */
    l->ev = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
    if (!l->ev) {
        ms_error("event loop: libev cannot create a loop");
        free(l);
        return MS_ERR_LWS;
    }
    l->foreign[0] = l->ev;
    snprintf(l->name, sizeof(l->name), "libev (%s)", backend_name(ev_backend(l->ev)));
    if (ev_backend(l->ev) != EVBACKEND_EPOLL)
        ms_warn("event loop: libev chose %s, not epoll", backend_name(ev_backend(l->ev)));
done:
    *out = l;
    return MS_OK;
}

void ms_evloop_configure(ms_evloop_t *l, struct lws_context_creation_info *info)
{
    if (!l->ev)
        return;
    info->options |= LWS_SERVER_OPTION_LIBEV;
    info->foreign_loops = l->foreign;
}

int ms_evloop_run_once(ms_evloop_t *l, struct lws_context *ctx)
{
    if (!l->ev)
        return lws_service(ctx, 0) < 0 ? -1 : 0;
    if (!l->kicked) {
        /* lws (4.1) arms its libev timer only after handling I/O, so timers
         * scheduled before the loop first runs would wait for the first
         * socket event: make one. */
        l->kicked = 1;
        lws_cancel_service(ctx);
    }
    /* Returns after one round of waiting and callbacks, also on EINTR. */
    ev_run(l->ev, EVRUN_ONCE);
    return 0;
}

int ms_evloop_run_ready(ms_evloop_t *l)
{
    if (!l->ev)
        return 0;
    ev_run(l->ev, EVRUN_NOWAIT);
    return 1;
}

void *ms_evloop_libev(const ms_evloop_t *l)
{
    return l->ev;
}

const char *ms_evloop_name(const ms_evloop_t *l)
{
    return l->name;
}

void ms_evloop_destroy(ms_evloop_t *l)
{
    if (!l)
        return;
    if (l->ev)
        ev_loop_destroy(l->ev);
    free(l);
}

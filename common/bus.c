/* SPDX-License-Identifier: Apache-2.0 */
/* The NATS connection: connect with reconnect, publish, subscribe into a mailbox or a loop. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <nats/adapters/libevent.h>

#include "bus.h"
#include "busloop.h"
#include "clock.h"
#include "hash.h"
#include "log.h"
#include "natsmsg.h"

#define MS_BUS_MAX_SUBS 16
/* Handled messages kept before they are destroyed together (deliver). */
#define MS_BUS_DEAD_MSGS 256
#define MS_BUS_DEAD_BYTES (1024 * 1024)

struct ms_bus {
    natsConnection *nc;
    /* Driven by an event loop: no blocking call (flush, request) may run on
     * the loop's thread, because only that thread reads the replies. */
    int on_loop;
    natsOptions *opts;
    natsSubscription *subs[MS_BUS_MAX_SUBS];
    int n_subs;
    /* With a loop: the adapter, and the subscriptions are synchronous ones
     * that deliver() empties on the loop thread after each read. */
    ms_busloop_t *loop;
    ms_bus_msg_fn on_msg;
    ms_bus_batch_fn on_batch;
    void *ud;
    atomic_ullong reconnects;
    /* cnats runs the disconnected/reconnected/closed callbacks on its own
     * thread, in order; one may still be queued when the connection is
     * destroyed. The closed callback is the last, so destroy waits for it
     * before it frees what the callbacks point to. */
    atomic_int closed;
    /* Set by cnats' callbacks: reading it takes no cnats lock. cnats holds the
     * connection's lock while it tries to reconnect (each attempt up to its
     * connect timeout when a partition swallows the SYN), so asking the
     * connection itself, or publishing through it, would stall the caller. */
    atomic_int up;
    int fail_fast; /* see ms_bus_opts_t */
    /* Handled messages not destroyed yet (deliver); loop thread only. */
    natsMsg *dead[MS_BUS_DEAD_MSGS];
    int n_dead;
    size_t dead_bytes;
    /* Published since the last ms_bus_send_now: only then is cnats asked
     * (each ask takes the connection's lock). Any thread may set it. */
    atomic_int unsent;
    /* Renewed connections (loop-driven and fail_fast: see renew()). The
     * subscriptions' subjects, to make them again; the rest is loop thread
     * only but for what the connecting thread hands over through next_*. */
    int renew;
    char *sub_subject[MS_BUS_MAX_SUBS], *sub_queue[MS_BUS_MAX_SUBS];
    atomic_int destroying, want_renew, next_done;
    pthread_t conn_thread;
    int conn_running;
    natsConnection *next_nc; /* written by the connecting thread before next_done */
    natsStatus next_status;
    char next_why[128];      /* and the reason it gave when not connected at once */
    natsConnection *retired; /* the previous connection, destroyed at the next renewal */
    char *urls;              /* the configured server list, for renewals' order */
    char cur_url[256];       /* the server of the current connection */
    unsigned shuffle_seed;   /* rand_r state for renew's order, seeded per process and bus */
    char refused[128];       /* the reason last said by say_refused; loop thread */
    uint64_t connect_at;     /* the last renewal's connect started no earlier (monotonic ms);
                                set by the loop thread before it starts the connecting thread */
};

static void deliver(void *ud);
static void bury(ms_bus_t *b);

static void on_disconnected(natsConnection *nc, void *closure)
{
    ms_bus_t *b = closure;
    atomic_store(&b->up, 0);
    ms_warn("NATS connection lost; reconnecting");
}

static void on_connected(natsConnection *nc, void *closure)
{
    ms_bus_t *b = closure;
    atomic_store(&b->up, 1);
    ms_info("NATS connected");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    ms_bus_t *b = closure;
    atomic_store(&b->up, 1);
    atomic_fetch_add(&b->reconnects, 1);
    char url[256] = "";
    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    ms_info("NATS reconnected to %s", url);
}

static void on_closed(natsConnection *nc, void *closure)
{
    ms_bus_t *b = closure;
    atomic_store(&b->closed, 1);
    if (b->renew && !atomic_load(&b->destroying)) {
        atomic_store(&b->want_renew, 1);
        ms_busloop_post(b->loop);
    }
}

static void on_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    ms_warn("NATS async error: %s", natsStatus_GetText(err));
}

/* host:port of a server URL (no scheme, no credentials). */
static const char *url_hostport(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    const char *at = strrchr(p, '@');
    return at ? at + 1 : p;
}

/* The server list; last (host:port of a server that was just lost, or NULL; seed: rand_r state
 * for the shuffle, with last): that one goes to
 * the end and the others are shuffled here, so that a renewal does not spend its connect
 * timeout on a server that is down or cut off (cnats's own reconnect also tries the server it
 * lost last), while gateways still spread over the rest. */
static ms_err_t set_servers(natsOptions *o, const char *urls, const char *last, unsigned *seed)
{
    char *copy = strdup(urls);
    const char *list[32];
    int n = 0;
    if (!copy)
        return MS_ERR_NOMEM;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t && n < 32;
         t = strtok_r(NULL, ",", &save))
        list[n++] = t;
    if (last && *last && n > 1 && seed) {
        int k = -1;
        for (int i = 0; i < n; i++)
            if (!strcmp(url_hostport(list[i]), last))
                k = i;
        if (k >= 0) {
            const char *lost = list[k];
            list[k] = list[n - 1];
            list[n - 1] = lost;
            for (int i = n - 2; i > 0; i--) {
                int j = (int)(rand_r(seed) % (unsigned)(i + 1));
                const char *t = list[i];
                list[i] = list[j];
                list[j] = t;
            }
            natsOptions_SetNoRandomize(o, true);
        }
    }
    natsStatus s = n ? natsOptions_SetServers(o, list, n) : NATS_INVALID_ARG;
    free(copy);
    return s == NATS_OK ? MS_OK : MS_ERR_INVAL;
}

/* Remembers the current connection's server (for renew's order). */
static void note_server(ms_bus_t *b)
{
    char url[256] = "";
    if (natsConnection_GetConnectedUrl(b->nc, url, sizeof(url)) == NATS_OK && *url)
        snprintf(b->cur_url, sizeof(b->cur_url), "%s", url_hostport(url));
}

void ms_bus_global_init(void)
{
    /* Makes libevent thread-aware (evthread_use_pthreads): must run before any
     * event_base is created, so that cnats threads may activate events. */
    natsLibevent_Init();
}

/* Connects with b->opts (cnats's retry on), first once without the retry, for the reason a
 * refusal gives (in why, "" when connected at once). With the retry on, a failed attempt starts
 * cnats's reconnect thread before Connect returns, and that thread clears the connection's
 * last error (and may set its own, "No server available") before this thread can read it, so
 * a refused login could read as a server not reachable (test_nats_auth
 * gateway_says_its_credentials_were_refused: 4 of 53 runs with two busy loops on the two
 * cores). Without the retry the reason is this thread's own (cnats keeps it per thread, as
 * jsworker.c reads it); then the same connect with the retry, as before, but for a renewal
 * whose login was refused (renewal set): that one ends there (*nc NULL), as the connection with
 * the retry would have been refused and closed in turn, and renew() starts the next one, paced.
 * Used by the first connect and by renewals (connect_thread): only the calling thread touches
 * b->opts then. */
static natsStatus connect_for_reason(ms_bus_t *b, natsConnection **nc, char *why, size_t cap,
                                     int renewal)
{
    why[0] = '\0';
    natsOptions_SetRetryOnFailedConnect(b->opts, false, NULL, NULL);
    natsStatus s = natsConnection_Connect(nc, b->opts);
    natsOptions_SetRetryOnFailedConnect(b->opts, true, on_connected, b);
    if (s == NATS_OK)
        return s;
    natsStatus ls = NATS_OK;
    const char *text = nats_GetLastError(&ls);
    const char *at = text && text[0] == '(' ? strstr(text, "): ") : NULL;
    if (at)
        text = at + 3; /* past cnats' "(conn.c:1905): " */
    snprintf(why, cap, "%s", text && *text ? text : natsStatus_GetText(s));
    if (s == NATS_CONNECTION_AUTH_FAILED && !strcasestr(why, "auth"))
        snprintf(why, cap, "%s", natsStatus_GetText(s));
    *nc = NULL;
    if (renewal && strcasestr(why, "auth"))
        return s;
    return natsConnection_Connect(nc, b->opts);
}

/* Renewed connections. cnats, driven by an event loop, keeps its protocol parser from one
 * connection to the next (its reader thread, which would reset it, does not exist then: nats.c
 * issue #1007). A connection lost while a message was half read (a stale one, found by the
 * ping timer while the loop was behind) leaves the parser inside that message: the next
 * connection's bytes are taken for the rest of its payload, PONGs and messages included, so
 * that connection goes stale in turn, and so on for as long as it takes to fill a payload of
 * up to a megabyte (seen at 100k peers: gateways reconnecting every 6 s for minutes, reading
 * nothing). So a bus that fails fast (no buffering across a reconnect to keep) lets cnats
 * close a lost connection instead of reconnecting it, and opens a new one, with a new parser,
 * on a thread of its own (a connect may wait on an unreachable server); the loop then makes
 * the subscriptions again on it. Destroying the old connection frees its parser, but not
 * (cnats 3.4, parser.c) the buffer of a split message larger than 4 KiB it was inside: up to
 * one message per renewal, rare, and the price of reading again. */
static void *connect_thread(void *arg)
{
    ms_bus_t *b = arg;
    /* Paced as cnats paces its own reconnects: a server that refuses the login closes each
     * new connection at once, and renewing at the speed of that refusal would hammer it. */
    uint64_t now = ms_clock_mono_ms();
    if (b->connect_at > now) {
        uint64_t ms = b->connect_at - now;
        nanosleep(&(struct timespec){.tv_sec = (time_t)(ms / 1000),
                                     .tv_nsec = (long)(ms % 1000) * 1000000},
                  NULL);
    }
    natsConnection *nc = NULL;
    /* Why now, from this thread's own attempt: cnats goes on trying, and its reconnect thread
     * replaces the connection's last error (a later failure says only that no server was left). */
    char why[sizeof(b->next_why)];
    natsStatus s = connect_for_reason(b, &nc, why, sizeof(why), 1);
    snprintf(b->next_why, sizeof(b->next_why), "%s", *why ? why : natsStatus_GetText(s));
    b->next_nc = nc;
    b->next_status = s;
    atomic_store(&b->next_done, 1);
    ms_busloop_post(b->loop);
    return NULL;
}

/* Says that NATS refused a renewed connection's login (why, from the connecting thread), once
 * until a connection is made: wrong credentials must not read like a server that is down, also
 * when the first attempt at startup only timed out on a slow server. Loop thread. */
static void say_refused(ms_bus_t *b, const char *why)
{
    if (!strcasestr(why, "auth") || !strcmp(why, b->refused))
        return;
    snprintf(b->refused, sizeof(b->refused), "%s", why);
    char shown[512];
    ms_nats_urls_redact(b->urls, shown, sizeof(shown));
    ms_warn("NATS at %s refused the connection (%s); retrying in the background"
            " (check --nats-user/--nats-password/--nats-creds)",
            shown, why);
}

static void subscribe_again(ms_bus_t *b)
{
    for (int i = 0; i < b->n_subs; i++) {
        natsSubscription_Destroy(b->subs[i]);
        b->subs[i] = NULL;
        natsStatus s = b->sub_queue[i]
                           ? natsConnection_QueueSubscribeSync(&b->subs[i], b->nc,
                                                               b->sub_subject[i], b->sub_queue[i])
                           : natsConnection_SubscribeSync(&b->subs[i], b->nc, b->sub_subject[i]);
        if (s == NATS_OK)
            natsSubscription_SetPendingLimits(b->subs[i], -1, -1);
        else if (s != NATS_CONNECTION_CLOSED) /* closed already: renewed again, said there */
            ms_error("NATS subscription to %s not made again: %s", b->sub_subject[i],
                     natsStatus_GetText(s));
    }
    /* A subscription that failed stays NULL: deliver() skips it. */
}

/* Loop thread, after each ms_busloop_post. */
static void renew(void *ud)
{
    ms_bus_t *b = ud;
    if (atomic_load(&b->destroying))
        return;
    if (b->conn_running) {
        if (!atomic_load(&b->next_done))
            return;
        pthread_join(b->conn_thread, NULL);
        b->conn_running = 0;
        if (!b->next_nc) {
            if (strcasestr(b->next_why, "auth"))
                say_refused(b, b->next_why); /* once until connected */
            else
                ms_warn("NATS: a new connection could not be made (%s); trying again",
                        natsStatus_GetText(b->next_status));
            atomic_store(&b->want_renew, 1);
        } else {
            bury(b); /* the old connection's messages */
            natsConnection_Destroy(b->retired);
            b->retired = b->nc;
            b->nc = b->next_nc;
            b->next_nc = NULL;
            atomic_store(&b->closed, 0);
            subscribe_again(b);
            atomic_fetch_add(&b->reconnects, 1);
            if (b->next_status == NATS_OK) {
                atomic_store(&b->up, 1);
                note_server(b);
                b->refused[0] = '\0';
                ms_info("NATS reconnected to %s (a new connection)", b->cur_url);
            } else {
                say_refused(b, b->next_why);
            }
            /* Closed already (a refused login), its closed callback's post taken by this same
             * call: renew again now, or no post would come and the bus would stay closed. */
            if (!atomic_load(&b->want_renew))
                return;
        }
    }
    if (!atomic_exchange(&b->want_renew, 0))
        return;
    /* 250 ms after the previous renewal's start at the earliest (at once after a quiet spell). */
    uint64_t now = ms_clock_mono_ms();
    b->connect_at = b->connect_at + 250 > now ? b->connect_at + 250 : now;
    atomic_store(&b->next_done, 0);
    /* Only this thread touches the options while no connect runs (Connect copies them). */
    if (set_servers(b->opts, b->urls, b->cur_url, &b->shuffle_seed) != MS_OK)
        ms_warn("NATS: the server list could not be reordered; renewing in the configured order");
    if (pthread_create(&b->conn_thread, NULL, connect_thread, b) != 0) {
        ms_error("NATS: no thread to connect again");
        return;
    }
    b->conn_running = 1;
}

ms_err_t ms_bus_connect(const ms_bus_opts_t *o, ms_bus_t **out)
{
    ms_err_t err = MS_ERR_BUS;
    ms_bus_t *b = calloc(1, sizeof(*b));
    if (!b) {
        ms_busloop_destroy(o->loop);
        return MS_ERR_NOMEM;
    }
    b->loop = o->loop; /* ours from here on, also on failure */
    if (natsOptions_Create(&b->opts) != NATS_OK)
        goto fail;
    /* rand() unseeded would give every gateway the same order after losing the same server. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    b->shuffle_seed = (unsigned)ts.tv_nsec ^ (unsigned)ts.tv_sec ^ (unsigned)(uintptr_t)b;
    b->urls = strdup(o->urls ? o->urls : NATS_DEFAULT_URL);
    if (!b->urls) {
        err = MS_ERR_NOMEM;
        goto fail;
    }
    if ((err = set_servers(b->opts, b->urls, NULL, NULL)) != MS_OK) {
        char shown[512];
        ms_error("bad NATS server list '%s'", ms_nats_urls_redact(o->urls, shown, sizeof(shown)));
        goto fail;
    }
    if ((err = ms_nats_auth_apply(o->auth, b->opts)) != MS_OK) {
        ms_error("NATS credentials cannot be used (a creds file that does not load?)");
        goto fail;
    }
    err = MS_ERR_BUS;
    if (o->name)
        natsOptions_SetName(b->opts, o->name);
    natsOptions_SetMaxReconnect(b->opts, -1);
    natsOptions_SetReconnectWait(b->opts, 250);
    natsOptions_SetReconnectJitter(b->opts, 100, 1000);
    natsOptions_SetRetryOnFailedConnect(b->opts, true, on_connected, b);
    b->fail_fast = o->fail_fast;
    natsOptions_SetReconnectBufSize(b->opts, 32 * 1024 * 1024);
    /* Stale after 4-6 s without an answer: a gateway cut off from NATS then
     * sends its clients elsewhere well within their resume grace, and a
     * process starved of CPU for a second or two keeps its connection. */
    natsOptions_SetPingInterval(b->opts, 2000);
    natsOptions_SetMaxPingsOut(b->opts, 2);
    natsOptions_SetMaxPendingMsgs(b->opts, 1000000);
    natsOptions_SetDisconnectedCB(b->opts, on_disconnected, b);
    natsOptions_SetReconnectedCB(b->opts, on_reconnected, b);
    natsOptions_SetClosedCB(b->opts, on_closed, b);
    natsOptions_SetErrorHandler(b->opts, on_error, b);
    if (o->event_base || o->loop) {
        if (!o->on_msg || (o->event_base && o->loop)) {
            err = MS_ERR_INVAL;
            goto fail;
        }
        b->on_loop = 1;
        b->on_msg = o->on_msg;
        b->on_batch = o->on_batch;
        b->ud = o->ud;
        if (!b->loop && (err = ms_busloop_libevent_create(o->event_base, &b->loop)) != MS_OK)
            goto fail;
        ms_busloop_set_reader(b->loop, deliver, b);
        if (b->fail_fast) {
            b->renew = 1;
            natsOptions_SetAllowReconnect(b->opts, false); /* renew() makes a new one */
            ms_busloop_set_post(b->loop, renew, b);
        }
        if ((err = ms_busloop_install(b->loop, b->opts)) != MS_OK)
            goto fail;
        err = MS_ERR_BUS;
    }
    char first_why[128] = "";
    natsStatus s = connect_for_reason(b, &b->nc, first_why, sizeof(first_why), 0);
    char shown[512];
    ms_nats_urls_redact(o->urls ? o->urls : NATS_DEFAULT_URL, shown, sizeof(shown));
    if (s == NATS_OK) {
        atomic_store(&b->up, 1);
        note_server(b);
    }
    if (s == NATS_NOT_YET_CONNECTED) {
        /* cnats retries a refused login too: say why, or wrong credentials
         * look like a server that is down. */
        const char *why = first_why;
        /* Only an authorisation error is a refusal (as in say_refused): a server that took
         * the TCP connection and then said nothing in time leaves a timeout here, and that
         * is a server not reachable, not wrong credentials. */
        if (why && strcasestr(why, "auth")) {
            ms_warn("NATS at %s refused the connection (%s); retrying in the background"
                    " (check --nats-user/--nats-password/--nats-creds)",
                    shown, why);
            snprintf(b->refused, sizeof(b->refused), "%s", why); /* said: not again on renewal */
        } else if (why && *why)
            ms_warn("NATS not reachable at %s yet (%s); retrying in the background", shown, why);
        else
            ms_warn("NATS not reachable at %s yet; retrying in the background", shown);
    } else if (s != NATS_OK) {
        /* Refused credentials end here too (cnats does not retry those). */
        ms_error("NATS connect to %s failed: %s", shown, natsStatus_GetText(s));
        goto fail;
    }
    *out = b;
    return MS_OK;
fail:
    ms_bus_destroy(b);
    return err;
}

void ms_bus_destroy(ms_bus_t *b)
{
    if (!b)
        return;
    atomic_store(&b->destroying, 1);
    if (b->conn_running) {
        pthread_join(b->conn_thread, NULL);
        b->conn_running = 0;
        if (b->next_nc) {
            natsConnection_Close(b->next_nc);
            natsConnection_Destroy(b->next_nc);
            b->next_nc = NULL;
        }
    }
    for (int i = 0; i < b->n_subs; i++) {
        natsSubscription_Unsubscribe(b->subs[i]);
        natsSubscription_Destroy(b->subs[i]);
    }
    if (b->nc) {
        /* With a loop, write out what is buffered first: Close would wait
         * 500 ms for a PONG that only the loop could read. */
        if (b->on_loop)
            ms_busloop_flush(b->loop, b->nc, 1000);
        else
            natsConnection_FlushTimeout(b->nc, 1000);
        natsConnection_Close(b->nc);
        /* Bounded: the callback thread runs it soon after Close. */
        for (int i = 0; i < 400 && !atomic_load(&b->closed); i++)
            nanosleep(&(struct timespec){.tv_nsec = 5 * 1000 * 1000}, NULL);
        natsConnection_Destroy(b->nc);
    }
    bury(b);
    natsConnection_Destroy(b->retired);
    for (int i = 0; i < MS_BUS_MAX_SUBS; i++) {
        free(b->sub_subject[i]);
        free(b->sub_queue[i]);
    }
    ms_busloop_destroy(b->loop);
    natsOptions_Destroy(b->opts);
    free(b->urls);
    free(b);
}

ms_err_t ms_bus_publish(ms_bus_t *b, const char *subject, const char *reply, const void *data,
                        size_t len)
{
    if (!b)
        return MS_ERR_BUS; /* a coordinator built without NATS (unit tests, fuzz targets) */
    if (b->fail_fast && !atomic_load(&b->up))
        return MS_ERR_BUS;
    natsStatus s;
    if (reply)
        s = natsConnection_PublishRequest(b->nc, subject, reply, data, (int)len);
    else
        s = natsConnection_Publish(b->nc, subject, data, (int)len);
    if (b->on_loop)
        atomic_store_explicit(&b->unsent, 1, memory_order_relaxed);
    return s == NATS_OK ? MS_OK : MS_ERR_BUS;
}

void ms_bus_send_now(ms_bus_t *b)
{
    if (!b || !b->on_loop || !atomic_exchange_explicit(&b->unsent, 0, memory_order_relaxed))
        return;
    if (atomic_load(&b->up))
        ms_busloop_send_now(b->loop, b->nc);
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    ms_mailbox_push(closure, msg);
}

static void bury(ms_bus_t *b)
{
    for (int j = 0; j < b->n_dead; j++)
        ms_natsmsg_free(b->dead[j]); /* on the loop thread, not cnats's collector (natsmsg.h) */
    b->n_dead = 0;
    b->dead_bytes = 0;
}

/* Loop thread, after each read: what that read parsed, subscription by subscription. */
static void deliver(void *ud)
{
    ms_bus_t *b = ud;
    int n_total = 0;
    for (int i = 0; i < b->n_subs; i++) {
        int pending = 0;
        /* Counted first: NextMsg on an empty subscription records an error. */
        if (!b->subs[i] || natsSubscription_GetPending(b->subs[i], &pending, NULL) != NATS_OK)
            continue;
        for (int k = 0; k < pending; k++) {
            natsMsg *msg = NULL;
            if (natsSubscription_NextMsg(&msg, b->subs[i], 0) != NATS_OK)
                break;
            b->on_msg(msg, b->ud);
            n_total++;
            /* natsMsg_Destroy hands a received message to cnats's
             * garbage-collector thread and wakes it (a futex call, two context
             * switches) whenever it waits. Freed here after the batch where
             * libnats exports its free (MS_HAVE_NATSMSG_FREE); otherwise
             * destroyed in hundreds, not after every read. Even so the
             * collector woke ~20 times per hundreds on two busy cores (it
             * empties the list faster than the loop fills it) and the loop
             * waited for its lock: runs of futex calls on the receiving
             * gateway every ~250 ms at 1,000 messages/s, in 8% of the slowest
             * 1% of signals across two gateways. Bounded in count and bytes;
             * the rest go when the bus does. */
            if (b->n_dead == MS_BUS_DEAD_MSGS || b->dead_bytes >= MS_BUS_DEAD_BYTES)
                bury(b);
            b->dead[b->n_dead++] = msg;
            b->dead_bytes += (size_t)natsMsg_GetDataLength(msg);
        }
    }
    if (n_total && b->on_batch)
        b->on_batch(b->ud);
#ifdef MS_HAVE_NATSMSG_FREE
    bury(b); /* on this thread, after the batch: no other thread wakes */
#endif
}

ms_err_t ms_bus_subscribe(ms_bus_t *b, const char *subject, const char *queue, ms_mailbox_t *mb)
{
    if (b->n_subs == MS_BUS_MAX_SUBS)
        return MS_ERR_FULL;
    natsSubscription *sub = NULL;
    natsStatus s;
    if (b->on_loop != (mb == NULL))
        return MS_ERR_INVAL;
    if (b->on_loop)
        s = queue ? natsConnection_QueueSubscribeSync(&sub, b->nc, subject, queue)
                  : natsConnection_SubscribeSync(&sub, b->nc, subject);
    else
        s = queue ? natsConnection_QueueSubscribe(&sub, b->nc, subject, queue, on_msg, mb)
                  : natsConnection_Subscribe(&sub, b->nc, subject, on_msg, mb);
    if (s == NATS_CONNECTION_CLOSED && b->renew)
        sub = NULL; /* closed already (a first connect that failed): the renewal its closed
                       callback asked for makes it (subscribe_again); deliver() skips NULL */
    else if (s != NATS_OK)
        return MS_ERR_BUS;
    /* Signalling bursts are large; never let cnats drop for slow consumption. */
    if (sub)
        natsSubscription_SetPendingLimits(sub, -1, -1);
    if (b->renew && (!(b->sub_subject[b->n_subs] = strdup(subject)) ||
                     (queue && !(b->sub_queue[b->n_subs] = strdup(queue))))) {
        natsSubscription_Destroy(sub);
        free(b->sub_subject[b->n_subs]);
        b->sub_subject[b->n_subs] = NULL;
        return MS_ERR_NOMEM;
    }
    b->subs[b->n_subs++] = sub;
    return MS_OK;
}

void ms_bus_drain_subscriptions(ms_bus_t *b, int timeout_ms)
{
    for (int i = 0; i < b->n_subs; i++) {
        /* A loop-driven connection cannot wait here: its loop is the reader.
         * Its owner waits for cnats's threads with nats_CloseAndWait instead. */
        if (b->on_loop)
            natsSubscription_Unsubscribe(b->subs[i]);
        else if (natsSubscription_Drain(b->subs[i]) == NATS_OK)
            natsSubscription_WaitForDrainCompletion(b->subs[i], timeout_ms);
        natsSubscription_Destroy(b->subs[i]);
    }
    b->n_subs = 0;
}

ms_err_t ms_bus_flush(ms_bus_t *b, int timeout_ms)
{
    if (b->on_loop)
        return ms_busloop_flush(b->loop, b->nc, timeout_ms);
    return natsConnection_FlushTimeout(b->nc, timeout_ms) == NATS_OK ? MS_OK : MS_ERR_TIMEOUT;
}

int ms_bus_connected(ms_bus_t *b)
{
    return b && atomic_load(&b->up);
}

uint64_t ms_bus_reconnects(ms_bus_t *b)
{
    return b ? atomic_load(&b->reconnects) : 0;
}

natsConnection *ms_bus_nats(ms_bus_t *b)
{
    return b->nc;
}

uint32_t ms_bus_shard_of(const char *ns, uint32_t shards)
{
    return shards ? (uint32_t)(ms_fnv1a64(ns, strlen(ns)) % shards) : 0;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The admin port's connections: how many may be open, and how long one request may take.
 *
 * evhttp 2.1 has neither. Its timeout (evhttp_set_timeout, admin.c) is a read timeout that
 * every byte received starts again: a client sending one header byte every 5 s held its
 * connection for as long as it liked, and any number of clients could do so, each holding a
 * socket and a buffer (and the coordinator's file descriptors are its NATS links' too).
 *
 * So each connection is tracked from its accept (evhttp_set_bevcb: the one hook 2.1 gives
 * before the request), in a uthash keyed by its bufferevent:
 *   - at most cfg->admin_max_conns are open. When one more arrives, the oldest connection
 *     still waiting for a request it has not had whole is closed to make room (evicted,
 *     counted): one that has never had a request answered, or whose next request has begun to
 *     arrive (bytes read since its last answer), oldest by the time it became ready for it.
 *     Only when there is none (every connection is mid-answer, or idle between requests
 *     after an answer) is the newcomer closed as soon as the loop comes round to it, without
 *     being read (refused, counted). A head or body trickled by 64 clients so held the port
 *     for the whole deadline against every other client, the /metrics scraper and /healthz
 *     among them; a connection with nothing of a request yet has cost the coordinator
 *     nothing but a socket, so closing it loses no work. An idle keep-alive connection
 *     (a scraper between scrapes) and one being answered are left alone: closing them would
 *     lose an answer or churn a well-behaved client for whoever connects next;
 *   - a request must have arrived whole and been answered (its reply written) within
 *     cfg->admin_request_timeout_ms of the connection becoming ready for it (the accept, or
 *     the previous reply written), or the connection is closed (counted). That bounds a
 *     trickled head or body, and a reader too slow to take its reply. Nothing on the admin
 *     port is long-lived: the admin page polls (admin-ui, fetch every 1 and 3 s, no SSE or
 *     WebSocket), and a cluster-wide view waits at most ADMIN_DEADLINE_MS (admin_cluster.c).
 *
 * evhttp builds the connection (evcon) right after the bufferevent, so the connection is
 * "attached" (its close callback set, through which it is forgotten) at the first of: the next
 * loop iteration (a zero timer), or its first request reaching the routes. Until then a
 * reference on the bufferevent keeps it readable here: evhttp clears its callbacks when it
 * frees the connection, which is how a connection gone before that is told apart.
 *
 * The connection's one close callback is ours: admin_cluster.c's, for a request it holds,
 * is called through it (ms_admin_conn_on_close).
 */
#include <stdlib.h>
#include <sys/time.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>

#include "internal.h"
#include "log.h"
#include "metrics.h"
#include "uthash_keyed.h"

struct ms_admin_conn {
    struct bufferevent *bev; /* the key */
    ms_coord_t *c;
    struct evhttp_connection *evcon; /* NULL until attached */
    struct event *timer;             /* the attach, then the request deadline */
    int refused;                     /* over the cap: closed at attach */
    int evicted;                     /* closed to make room: closed at the next loop round */
    int answered;                    /* a request of it was answered */
    int in_request;                  /* a request arrived whole, its answer not yet written */
    int partial;                     /* bytes read since it became ready for a request */
    uint64_t ready_seq;              /* when it became ready for a request (a.next_ready) */
    struct evbuffer_cb_entry *on_input;
    void (*on_close)(struct evhttp_connection *, void *); /* admin_cluster.c's, or NULL */
    void *on_close_arg;
    UT_hash_handle hh;
};

static void arm(ms_admin_conn_t *k, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(k->timer, &tv);
}

static void conn_free(ms_admin_conn_t *k)
{
    ms_admin_t *a = &k->c->admin;
    HASH_DEL(a->conns, k);
    if (!k->refused && !k->evicted)
        a->n_open--;
    if (k->on_input) /* the bufferevent is still there: freed after the close callback */
        evbuffer_remove_cb_entry(bufferevent_get_input(k->bev), k->on_input);
    if (k->timer)
        event_free(k->timer);
    if (!k->evcon)
        bufferevent_decref(k->bev); /* ours until attached */
    free(k);
}

/* The connection goes (evhttp frees it: the client left, a timeout, our close, evhttp_free). */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
    ms_admin_conn_t *k = arg;
    if (k->on_close)
        k->on_close(evcon, k->on_close_arg);
    conn_free(k);
}

/* The connection's deadline starts again: it is ready for a request (accepted, or answered). */
static void attach(ms_admin_conn_t *k, struct evhttp_connection *evcon)
{
    k->evcon = evcon;
    evhttp_connection_set_closecb(evcon, on_conn_close, k);
    bufferevent_decref(k->bev); /* the connection holds it now; on_conn_close says when it goes */
    evtimer_del(k->timer);
    arm(k, k->refused || k->evicted ? 0 : k->c->cfg->admin_request_timeout_ms);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    ms_admin_conn_t *k = arg;
    ms_admin_t *a = &k->c->admin;
    (void)fd;
    (void)what;
    if (!k->evcon) {
        void (*readcb)(struct bufferevent *, void *) = NULL;
        void *cbarg = NULL;
        bufferevent_getcb(k->bev, &readcb, NULL, NULL, &cbarg);
        if (!readcb) { /* freed by evhttp before it was ours to watch, or never made */
            conn_free(k);
            return;
        }
        attach(k, cbarg); /* evhttp's callbacks take the connection as their argument */
        if (!k->refused && !k->evicted)
            return; /* its deadline runs */
    }
    struct evhttp_connection *evcon = k->evcon;
    if (k->refused) {
        a->n_refused++;
        ms_debug("admin connection refused: %zu open (--admin-max-connections)", a->n_open);
    } else if (k->evicted) {
        a->n_evicted++;
        ms_debug("admin connection closed for a newer one: no whole request yet, %zu open "
                 "(--admin-max-connections)",
                 a->n_open);
    } else {
        a->n_timed_out++;
        ms_debug("admin connection closed: no whole request answered in %ld ms "
                 "(--admin-request-timeout-ms)",
                 k->c->cfg->admin_request_timeout_ms);
    }
    evhttp_connection_free(evcon); /* on_conn_close frees k */
}

/* Bytes of a request arrived (evhttp reads, then parses: the head may be incomplete). */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    ms_admin_conn_t *k = arg;
    (void)buf;
    if (info->n_added)
        k->partial = 1;
}

/* The connection to close for a newcomer over the cap: the oldest waiting for a request it
 * has not had whole, or NULL. A scan of at most the cap, made only when it is full. */
static ms_admin_conn_t *victim(ms_admin_t *a)
{
    ms_admin_conn_t *k, *tmp, *best = NULL;
    HASH_ITER(hh, a->conns, k, tmp)
    {
        if (k->refused || k->evicted || k->in_request || (k->answered && !k->partial))
            continue;
        if (!best || k->ready_seq < best->ready_seq)
            best = k;
    }
    return best;
}

static void evict(ms_admin_conn_t *k)
{
    ms_admin_t *a = &k->c->admin;
    k->evicted = 1;
    a->n_open--;
    /* Closed from the loop, not inside evhttp's accept: unattached, the timer attaches it first. */
    evtimer_del(k->timer);
    arm(k, 0);
}

static struct bufferevent *on_accept(struct event_base *base, void *arg)
{
    ms_coord_t *c = arg;
    ms_admin_t *a = &c->admin;
    /* Options as evhttp's own (0): evhttp closes the socket when it frees the connection,
     * whoever still holds a reference to the bufferevent. */
    struct bufferevent *bev = bufferevent_socket_new(base, -1, 0);
    ms_admin_conn_t *k = bev ? calloc(1, sizeof(*k)) : NULL;
    if (!k || !(k->timer = evtimer_new(base, on_timer, k))) {
        free(k);
        return bev; /* untracked, rare: evhttp's timeout still applies */
    }
    k->bev = bev;
    k->c = c;
    k->ready_seq = a->next_ready++;
    if (a->n_open >= (size_t)c->cfg->admin_max_conns) {
        ms_admin_conn_t *old = victim(a);
        if (old)
            evict(old);
        else
            k->refused = 1;
    }
    if (!k->refused) {
        k->on_input = evbuffer_add_cb(bufferevent_get_input(bev), on_input, k);
        a->n_open++;
    }
    bufferevent_incref(bev);
    HASH_ADD_PTR(a->conns, bev, k);
    arm(k, 0); /* the connection exists once evhttp returns to the loop */
    return bev;
}

void ms_admin_conn_start(ms_coord_t *c)
{
    evhttp_set_bevcb(c->admin.http, on_accept, c);
}

static ms_admin_conn_t *find(ms_coord_t *c, struct evhttp_connection *evcon)
{
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    ms_admin_conn_t *k = NULL;
    if (bev)
        HASH_FIND_PTR(c->admin.conns, &bev, k);
    if (k && !k->evcon)
        attach(k, evcon);
    return k;
}

static void on_complete(struct evhttp_request *r, void *arg)
{
    ms_admin_conn_t *k = find(arg, evhttp_request_get_connection(r));
    if (k && !k->refused && !k->evicted) { /* answered: the next request has its own time */
        k->answered = 1;
        k->in_request = 0;
        /* A pipelined next request already read counts as begun. */
        k->partial = evbuffer_get_length(bufferevent_get_input(k->bev)) > 0;
        k->ready_seq = k->c->admin.next_ready++;
        arm(k, k->c->cfg->admin_request_timeout_ms);
    }
}

int ms_admin_conn_request(ms_coord_t *c, struct evhttp_request *r)
{
    ms_admin_conn_t *k = find(c, evhttp_request_get_connection(r));
    if (!k)
        return 1;
    if (k->refused || k->evicted)
        return 0; /* read before its close came round: not answered, closed by the timer */
    k->in_request = 1;
    k->partial = 0;
    evhttp_request_set_on_complete_cb(r, on_complete, c);
    return 1;
}

void ms_admin_conn_on_close(ms_coord_t *c, struct evhttp_connection *evcon,
                            void (*cb)(struct evhttp_connection *, void *), void *arg)
{
    ms_admin_conn_t *k = find(c, evcon);
    if (!k) { /* untracked (on_accept ran out of memory) */
        evhttp_connection_set_closecb(evcon, cb, arg);
        return;
    }
    k->on_close = cb;
    k->on_close_arg = arg;
}

void ms_admin_conn_cleanup(ms_coord_t *c)
{
    /* After evhttp_free, which closed every attached connection (on_conn_close): these never
     * were, and hold the last reference to their bufferevent. */
    ms_admin_conn_t *k, *tmp;
    HASH_ITER(hh, c->admin.conns, k, tmp)
    {
        conn_free(k);
    }
}

void ms_admin_conn_metrics(ms_coord_t *c, ms_metrics_t *m)
{
    ms_admin_t *a = &c->admin;
    ms_metrics_gauge(m, "meshsig_coordinator_admin_connections",
                     "connections open on the admin port (at most --admin-max-connections)",
                     (double)a->n_open);
    ms_metrics_family(m, "meshsig_coordinator_admin_connections_closed_total", MS_METRIC_COUNTER,
                      "admin connections closed by the coordinator, by reason: refused (over "
                      "--admin-max-connections, every open one idle or being answered), "
                      "evicted (the oldest with no whole request yet, for one more over "
                      "--admin-max-connections), request_timeout (no whole request answered "
                      "within --admin-request-timeout-ms)");
    ms_metrics_u64(m, "reason", "refused", a->n_refused);
    ms_metrics_u64(m, "reason", "evicted", a->n_evicted);
    ms_metrics_u64(m, "reason", "request_timeout", a->n_timed_out);
}

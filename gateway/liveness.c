/* SPDX-License-Identifier: Apache-2.0 */
/* Deadlines (hello, join) and liveness (idle ping, drop), swept every 100 ms from FIFO lists.
 *
 * lws's own idle policy (retry_and_idle_policy) keeps one timer per connection
 * in a sorted list: every new connection walked all of them (a third of the
 * gateway's CPU while 19k clients connected). All sessions share one ping
 * delay, and all entries of a deadline list share one timeout, so each list
 * stays ordered as a FIFO and every step is O(1). */
#include <stdint.h>

#include "internal.h"
#include "log.h"
#include "rxslab.h"

void ms_gw_deadline_arm(ms_gateway_t *gw, ms_session_t *s, ms_dlist_t *list, uint64_t after_us)
{
    ms_dnode_remove(&s->deadline_node);
    s->deadline_us = ms_clock_mono_us() + after_us;
    ms_dlist_add_tail(list, &s->deadline_node);
}

void ms_gw_deadline_cancel(ms_session_t *s)
{
    ms_dnode_remove(&s->deadline_node);
}

void ms_gw_idle_touch(ms_gateway_t *gw, ms_session_t *s)
{
    uint64_t prev = s->last_rx_us;
    s->last_rx_us = ms_clock_mono_us();
    ms_dlist_add_tail(&gw->idle, &s->idle_node);
    ms_gw_rxslab_touch(lws_get_socket_fd(s->wsi), s->last_rx_us, prev);
}

/* rxslab's question for a bound receive buffer: may it hold part of a message? Inside a
 * frame's payload lws keeps what it has read there; while a session's reads are paused lws
 * holds the rest of a read and goes on with it later. */
static int rx_busy(void *owner)
{
    struct lws *wsi = owner;
    const ms_session_t *s = lws_wsi_user(wsi);
    return lws_remaining_packet_payload(wsi) != 0 || !s || s->throttled;
}

static void idle_sweep(ms_gateway_t *gw, uint64_t now)
{
    uint64_t ping_us = (uint64_t)gw->cfg->idle_ping_ms * 1000u;
    uint64_t drop_us = (uint64_t)gw->cfg->idle_timeout_ms * 1000u;
    if (!ping_us || !drop_us)
        return;
    for (int n = 0; n < 100000; n++) {
        ms_dnode_t *head = ms_dlist_first(&gw->pinged);
        if (!head)
            break;
        ms_session_t *s = lws_container_of(head, ms_session_t, idle_node);
        if (now - s->last_rx_us < drop_us)
            break;
        ms_dnode_remove(&s->idle_node);
        ms_info("session %llu (%s): silent for %ld ms; dropped", (unsigned long long)s->id,
                s->peer_id ? s->peer_id : "-", gw->cfg->idle_timeout_ms);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    }
    for (int n = 0; n < 100000; n++) {
        ms_dnode_t *head = ms_dlist_first(&gw->idle);
        if (!head)
            break;
        ms_session_t *s = lws_container_of(head, ms_session_t, idle_node);
        if (now - s->last_rx_us < ping_us)
            break;
        ms_dlist_add_tail(&gw->pinged, &s->idle_node);
        s->ping_due = 1;
        lws_callback_on_writable(s->wsi);
    }
}

/* Every 100 ms: sessions whose hello or join deadline passed, oldest first. */
static void on_sweep(lws_sorted_usec_list_t *sul)
{
    ms_gateway_t *gw = lws_container_of(sul, ms_gateway_t, sul_sweep);
    ms_gw_check_nats(gw);
    uint64_t now = ms_clock_mono_us();
    ms_dlist_t *lists[] = {&gw->hello_waits, &gw->join_waits};
    for (int l = 0; l < 2; l++) {
        /* Bounded: a re-armed session goes to the tail with a later deadline. */
        for (int n = 0; n < 100000; n++) {
            ms_dnode_t *head = ms_dlist_first(lists[l]);
            if (!head)
                break;
            ms_session_t *s = lws_container_of(head, ms_session_t, deadline_node);
            if (s->deadline_us > now)
                break;
            ms_gw_deadline_cancel(s);
            ms_gw_hello_deadline(gw, s);
        }
    }
    idle_sweep(gw, now);
    ms_gw_ice_sweep(gw, now);
    ms_gw_direct_sweep(gw, now);
    ms_gw_inflight_sweep(gw, now);
    /* 1024 pages (~3.8k connections) a tick, ~2-10 us: 19k connections in half a second */
    ms_gw_rxslab_sweep(now, rx_busy, 1024);
    lws_sul_schedule(gw->ctx, 0, &gw->sul_sweep, on_sweep, 100 * LWS_US_PER_MS);
}

void ms_gw_liveness_start(ms_gateway_t *gw)
{
    lws_sul_schedule(gw->ctx, 0, &gw->sul_sweep, on_sweep, 100 * LWS_US_PER_MS);
}

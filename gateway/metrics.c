/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's /metrics (Prometheus text through common/metrics) and its relay latency
 * histogram. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "metrics.h"
#include "rxslab.h"
#include "version.h"

static const uint64_t lat_bounds_us[12] = {100,   250,   500,   1000,   2500,   5000,
                                           10000, 25000, 50000, 100000, 250000, 1000000};

/* Wall clocks: exact on one host, off by the clock skew between hosts. */
void ms_gw_record_latency(ms_gateway_t *gw, uint64_t origin_us)
{
    uint64_t now = ms_clock_wall_us();
    if (!origin_us || now < origin_us)
        return;
    uint64_t d = now - origin_us;
    /* One bucket per signal, the first whose bound holds d (most signals: the first
     * compare); cumulated when /metrics is written. */
    int i = 0;
    while (i < 12 && d > lat_bounds_us[i])
        i++;
    if (i < 12)
        gw->lat_buckets[i]++;
    gw->lat_count++;
    gw->lat_sum_us += d;
}

static int version_text(char *buf, size_t cap, void *ud)
{
    (void)ud;
    return ms_version_metrics(buf, cap);
}

static int busver_text(char *buf, size_t cap, void *ud)
{
    return ms_busver_metrics(ud, buf, cap);
}

char *ms_gw_metrics_text(ms_gateway_t *gw, size_t *len)
{
    size_t queued = 0, pairs = 0;
    ms_session_t *s;
    MS_PIDX_FOREACH(&gw->sessions, i, s)
    {
        queued += s->queued;
        pairs += s->pairs.n;
    }
    ms_metrics_t m;
    ms_metrics_init(&m);
    ms_metrics_gauge(&m, "meshsig_gateway_sessions", "open client sessions",
                     (double)gw->n_sessions);
    ms_gw_rxslab_stats_t rx;
    ms_gw_rxslab_stats(&rx);
    ms_metrics_gauge(&m, "meshsig_gateway_rx_buffers",
                     "connections' receive buffers in the slab (rxslab.h)",
                     (double)rx.slots_in_use);
    ms_metrics_gauge(&m, "meshsig_gateway_rx_buffer_pages_resident",
                     "pages of receive buffers that may hold memory (4 KiB each); the others were "
                     "handed back while their connections were quiet (--rx-release-ms)",
                     (double)rx.pages_resident);
    ms_metrics_counter(&m, "meshsig_gateway_rx_buffer_pages_released_total",
                       "receive buffer pages handed back to the kernel", rx.pages_released);
    ms_metrics_gauge(&m, "meshsig_gateway_queued_bytes",
                     "bytes queued for clients, over all sessions", (double)queued);
    ms_metrics_counter(&m, "meshsig_gateway_messages_in_total", "client frames received", gw->n_in);
    ms_metrics_counter(&m, "meshsig_gateway_messages_out_total", "messages queued for clients",
                       gw->n_out);
    ms_metrics_family(&m, "meshsig_gateway_dropped_total", MS_METRIC_COUNTER,
                      "messages dropped, by reason");
    ms_metrics_u64(&m, "reason", "stale_epoch", gw->n_dropped_epoch);
    ms_metrics_u64(&m, "reason", "no_session", gw->n_dropped_session);
    ms_metrics_u64(&m, "reason", "rate_limited", gw->n_rate_limited);
    ms_metrics_u64(&m, "reason", "inbox_full", ms_mailbox_dropped(gw->inbox));
    ms_metrics_u64(&m, "reason", "unencodable", gw->n_undeliverable);
    ms_metrics_u64(&m, "reason", "answered_already", gw->n_dropped_again);
    ms_metrics_counter(&m, "meshsig_gateway_requests_resent_total",
                       "client requests sent again to a shard's new owner, unanswered by the old",
                       gw->n_resent);
    ms_metrics_counter(&m, "meshsig_gateway_requests_retried_total",
                       "copies of client requests sent again to the same owner for want of an "
                       "answer (a request or answer lost in NATS)",
                       gw->n_inflight_retried);
    ms_metrics_counter(&m, "meshsig_gateway_requests_copies_withheld_total",
                       "copies of client requests not sent: the owner's bus version is not known "
                       "to apply a copy once (a 1.0 coordinator)",
                       gw->n_inflight_withheld);
    ms_metrics_counter(&m, "meshsig_gateway_requests_unanswered_total",
                       "client requests answered UNAVAILABLE because no copy got an answer",
                       gw->n_inflight_gave_up);
    ms_metrics_counter(&m, "meshsig_gateway_no_responders_total",
                       "joins that nats-server answered with no responders (no coordinator "
                       "subscription had reached the gateway's NATS node)",
                       gw->n_no_responders);
    ms_metrics_counter(&m, "meshsig_gateway_slow_readers_closed_total",
                       "sessions closed because their outbound queue was full", gw->n_closed_slow);
    ms_metrics_counter(&m, "meshsig_gateway_signals_local_total",
                       "signals relayed between two sessions of this gateway without the shard "
                       "owner",
                       gw->n_signals_local);
    ms_metrics_family(&m, "meshsig_gateway_signals_direct_total", MS_METRIC_COUNTER,
                      "signals between neighbours on two gateways that went gateway to gateway, "
                      "without the shard owner");
    ms_metrics_u64(&m, "dir", "out", gw->n_direct_out);
    ms_metrics_u64(&m, "dir", "in", gw->n_direct_in);
    ms_metrics_counter(&m, "meshsig_gateway_direct_batches_total",
                       "NATS messages that carried this gateway's direct signals (and path "
                       "markers) to other gateways: one per destination gateway per loop turn",
                       gw->n_direct_batches);
    ms_metrics_counter(&m, "meshsig_gateway_signals_direct_to_owner_total",
                       "direct signals this gateway could not vouch for (or deliver) and handed "
                       "to the shard owner",
                       gw->n_direct_to_owner);
    ms_metrics_gauge(&m, "meshsig_gateway_direct_pairs",
                     "ad-hoc pairs (signals:any namespaces) that sessions of this gateway hold as "
                     "the owner announced them, one per session and peer",
                     (double)pairs);
    ms_metrics_counter(&m, "meshsig_gateway_signals_direct_held_total",
                       "direct signals that waited for the owner's announcement of their edge",
                       gw->n_direct_held);
    ms_metrics_counter(&m, "meshsig_gateway_signals_direct_retire_timeouts_total",
                       "peers that moved whose old place sent no END in time (its gateway died): "
                       "their new place's signals went on without it",
                       gw->n_direct_retire_timeouts);
    ms_metrics_counter(&m, "meshsig_nats_reconnects_total", "reconnections to NATS",
                       ms_bus_reconnects(gw->bus));
    ms_metrics_gauge(&m, "meshsig_nats_connected", "1 while connected to NATS",
                     ms_bus_connected(gw->bus));
    double le[12];
    uint64_t cum[12], below = 0;
    for (int i = 0; i < 12; i++) {
        le[i] = (double)lat_bounds_us[i] / 1e6;
        cum[i] = below += gw->lat_buckets[i];
    }
    ms_metrics_histogram(&m, "meshsig_gateway_relay_latency_seconds",
                         "signal relay time, client frame in at a gateway to out at this one", le,
                         cum, 12, (double)gw->lat_sum_us / 1e6, gw->lat_count);
    ms_metrics_family(&m, "meshsig_gateway_cap_refused_total", MS_METRIC_COUNTER,
                      "connections, sessions and requests refused at an operator cap "
                      "(--max-sessions, --max-sessions-per-ip, --max-rooms, ...)");
    ms_metrics_u64(&m, "cap", "sessions", gw->n_cap_refused[MS_GW_CAP_SESSIONS]);
    ms_metrics_u64(&m, "cap", "rooms", gw->n_cap_refused[MS_GW_CAP_ROOMS]);
    ms_metrics_u64(&m, "cap", "services", gw->n_cap_refused[MS_GW_CAP_SERVICES]);
    ms_metrics_u64(&m, "cap", "subscriptions", gw->n_cap_refused[MS_GW_CAP_SUBSCRIPTIONS]);
    ms_metrics_u64(&m, "cap", "handshakes_per_ip", gw->n_cap_refused[MS_GW_CAP_HANDSHAKES_PER_IP]);
    ms_metrics_u64(&m, "cap", "sessions_per_ip", gw->n_cap_refused[MS_GW_CAP_SESSIONS_PER_IP]);
    ms_metrics_gauge(&m, "meshsig_gateway_client_addresses",
                     "client addresses (IPv6: /64 prefixes) with connections counted against "
                     "--max-handshakes-per-ip or --max-sessions-per-ip",
                     (double)ms_addrlimit_addresses(gw->addrlimit));
    ms_metrics_counter(&m, "meshsig_gateway_throttled_total",
                       "pauses in reading a client that went over its rate", gw->n_throttled);
    /* The fence per shard: the highest owner epoch accepted (shards not heard from yet: none). */
    ms_metrics_family(&m, "meshsig_gateway_shard_epoch", MS_METRIC_GAUGE,
                      "highest shard owner epoch accepted");
    for (long i = 0; i < gw->cfg->shards; i++) {
        char shard[24];
        snprintf(shard, sizeof(shard), "%ld", i);
        if (gw->epochs[i])
            ms_metrics_u64(&m, "shard", shard, gw->epochs[i]);
    }
    ms_metrics_append(&m, version_text, NULL);
    ms_metrics_append(&m, busver_text, &gw->busver);
    char *out = NULL;
    if (m.err != MS_ERR_NOMEM && m.buf) {
        out = m.buf; /* the caller frees it */
        *len = m.len;
        m.buf = NULL;
    }
    ms_metrics_cleanup(&m);
    return out;
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's /metrics text (Prometheus exposition) and its relay latency histogram. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#include "internal.h"
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
    for (int i = 0; i < 12; i++)
        if (d <= lat_bounds_us[i])
            gw->lat_buckets[i]++;
    gw->lat_count++;
    gw->lat_sum_us += d;
}

char *ms_gw_metrics_text(ms_gateway_t *gw, size_t *len)
{
    size_t queued = 0;
    ms_session_t *s, *tmp;
    HASH_ITER(hh, gw->sessions, s, tmp)
    queued += s->queued;
    char *out = NULL;
    int n = asprintf(
        &out,
        "# HELP meshsig_gateway_sessions open client sessions\n"
        "# TYPE meshsig_gateway_sessions gauge\n"
        "meshsig_gateway_sessions %zu\n"
        "# HELP meshsig_gateway_queued_bytes bytes queued for clients, over all sessions\n"
        "# TYPE meshsig_gateway_queued_bytes gauge\n"
        "meshsig_gateway_queued_bytes %zu\n"
        "# HELP meshsig_gateway_messages_in_total client frames received\n"
        "# TYPE meshsig_gateway_messages_in_total counter\n"
        "meshsig_gateway_messages_in_total %llu\n"
        "# HELP meshsig_gateway_messages_out_total messages queued for clients\n"
        "# TYPE meshsig_gateway_messages_out_total counter\n"
        "meshsig_gateway_messages_out_total %llu\n"
        "# HELP meshsig_gateway_dropped_total messages dropped, by reason\n"
        "# TYPE meshsig_gateway_dropped_total counter\n"
        "meshsig_gateway_dropped_total{reason=\"stale_epoch\"} %llu\n"
        "meshsig_gateway_dropped_total{reason=\"no_session\"} %llu\n"
        "meshsig_gateway_dropped_total{reason=\"rate_limited\"} %llu\n"
        "meshsig_gateway_dropped_total{reason=\"inbox_full\"} %zu\n"
        "meshsig_gateway_dropped_total{reason=\"unencodable\"} %llu\n"
        "# HELP meshsig_gateway_slow_readers_closed_total sessions closed because their outbound "
        "queue was full\n"
        "# TYPE meshsig_gateway_slow_readers_closed_total counter\n"
        "meshsig_gateway_slow_readers_closed_total %llu\n"
        "# HELP meshsig_gateway_signals_local_total signals relayed between two sessions of "
        "this gateway without the shard owner\n"
        "# TYPE meshsig_gateway_signals_local_total counter\n"
        "meshsig_gateway_signals_local_total %llu\n"
        "# HELP meshsig_gateway_signals_direct_total signals between neighbours on two "
        "gateways that went gateway to gateway, without the shard owner\n"
        "# TYPE meshsig_gateway_signals_direct_total counter\n"
        "meshsig_gateway_signals_direct_total{dir=\"out\"} %llu\n"
        "meshsig_gateway_signals_direct_total{dir=\"in\"} %llu\n"
        "# HELP meshsig_gateway_signals_direct_to_owner_total direct signals this gateway "
        "could not vouch for (or deliver) and handed to the shard owner\n"
        "# TYPE meshsig_gateway_signals_direct_to_owner_total counter\n"
        "meshsig_gateway_signals_direct_to_owner_total %llu\n"
        "# HELP meshsig_gateway_signals_direct_held_total direct signals that waited for the "
        "owner's announcement of their edge\n"
        "# TYPE meshsig_gateway_signals_direct_held_total counter\n"
        "meshsig_gateway_signals_direct_held_total %llu\n"
        "# HELP meshsig_nats_reconnects_total reconnections to NATS\n"
        "# TYPE meshsig_nats_reconnects_total counter\n"
        "meshsig_nats_reconnects_total %llu\n"
        "# HELP meshsig_nats_connected 1 while connected to NATS\n"
        "# TYPE meshsig_nats_connected gauge\n"
        "meshsig_nats_connected %d\n",
        gw->n_sessions, queued, (unsigned long long)gw->n_in, (unsigned long long)gw->n_out,
        (unsigned long long)gw->n_dropped_epoch, (unsigned long long)gw->n_dropped_session,
        (unsigned long long)gw->n_rate_limited, ms_mailbox_dropped(gw->inbox),
        (unsigned long long)gw->n_undeliverable, (unsigned long long)gw->n_closed_slow,
        (unsigned long long)gw->n_signals_local, (unsigned long long)gw->n_direct_out,
        (unsigned long long)gw->n_direct_in, (unsigned long long)gw->n_direct_to_owner,
        (unsigned long long)gw->n_direct_held, (unsigned long long)ms_bus_reconnects(gw->bus),
        ms_bus_connected(gw->bus));
    if (n < 0)
        return NULL;
    /* The relay latency histogram, appended. */
    char hist[1536];
    size_t hl = (size_t)snprintf(hist, sizeof(hist),
                                 "# HELP meshsig_gateway_relay_latency_seconds signal relay "
                                 "time, client frame in at a gateway to out at this one\n"
                                 "# TYPE meshsig_gateway_relay_latency_seconds histogram\n");
    for (int i = 0; i < 12 && hl < sizeof(hist); i++)
        hl += (size_t)snprintf(hist + hl, sizeof(hist) - hl,
                               "meshsig_gateway_relay_latency_seconds_bucket{le=\"%g\"} %llu\n",
                               (double)lat_bounds_us[i] / 1e6,
                               (unsigned long long)gw->lat_buckets[i]);
    if (hl < sizeof(hist))
        hl += (size_t)snprintf(hist + hl, sizeof(hist) - hl,
                               "meshsig_gateway_relay_latency_seconds_bucket{le=\"+Inf\"} %llu\n"
                               "meshsig_gateway_relay_latency_seconds_sum %g\n"
                               "meshsig_gateway_relay_latency_seconds_count %llu\n",
                               (unsigned long long)gw->lat_count, (double)gw->lat_sum_us / 1e6,
                               (unsigned long long)gw->lat_count);
    char info[768];
    int il = ms_version_metrics(info, sizeof(info));
    if (il > 0 && (size_t)il < sizeof(info))
        il += ms_busver_metrics(&gw->busver, info + il, sizeof(info) - (size_t)il);
    if (il < 0 || (size_t)il >= sizeof(info))
        il = 0;
    /* The fence per shard: the highest owner epoch accepted (0: none yet). */
    size_t ecap = 96 + (size_t)gw->cfg->shards * 64, el = 0;
    char *ep = malloc(ecap);
    if (ep) {
        el = (size_t)snprintf(ep, ecap,
                              "# HELP meshsig_gateway_shard_epoch highest shard owner epoch "
                              "accepted\n# TYPE meshsig_gateway_shard_epoch gauge\n");
        for (long i = 0; i < gw->cfg->shards && el < ecap; i++)
            if (gw->epochs[i])
                el += (size_t)snprintf(ep + el, ecap - el,
                                       "meshsig_gateway_shard_epoch{shard=\"%ld\"} %llu\n", i,
                                       (unsigned long long)gw->epochs[i]);
    }
    char *both = NULL;
    int m = asprintf(&both, "%s%.*s%.*s%.*s", out, (int)(hl < sizeof(hist) ? hl : sizeof(hist) - 1),
                     hist, il, info, (int)(el < ecap ? el : 0), ep ? ep : "");
    free(out);
    free(ep);
    if (m < 0)
        return NULL;
    *len = (size_t)m;
    return both;
}

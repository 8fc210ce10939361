/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's lifecycle: create (a list of named steps), run, drain on SIGTERM, destroy.
 *
 * The gateway terminates client WebSockets on one lws service thread that owns
 * every session, and bridges them to the coordinators over NATS (DESIGN.md §1,
 * §8). internal.h says which file holds each concept.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "ahslab.h"
#include "rxslab.h"
#include "internal.h"
#include "log.h"
#include "opts.h"
#include "wsguard.h"

#define MS_GW_MERGE_TURNS 3 /* turns after the first that may share its writes */

/* No lws idle policy: without one lws applies its default (ping at 300 s),
 * which costs a sorted timer insert per connection (see liveness.c). */
static const lws_retry_bo_t no_lws_idle_policy = {.secs_since_valid_hangup = 0};

/* The rx_buffer_size of the two WebSocket protocols is --rx-buffer (set in
 * create_context, on the gateway's copy of this table). lws allocates that much
 * per connection (from rxslab.c's slots, whose pages go back to the kernel
 * while the connection is quiet); larger messages arrive in pieces that the
 * session reassembles into one buffer per message (freed after it). It also
 * caps each recv() from the socket: in the relay benchmark (~450 B frames, 8
 * in flight per pair) a gateway made 0.55 reads per signal with 1 KiB, 0.34
 * with 2028 B (the default: a 2 KiB slot, two to a page) and 0.94 with 512 B.
 * Idle connections cost the same with any of them (their pages are handed
 * back); a busy one holds its slot.
 * tx_packet_size (the last field) is what lws sends at most per send(); left
 * 0, it is rx_buffer_size, so a turn's frames for one client (ws.c writes them
 * in one lws_write) left in 1 KiB pieces: lws copied the rest into its own
 * buffer and asked for POLLOUT (two epoll_ctl calls and a loop turn per
 * piece), and the last frames waited for those turns. lws allocates nothing
 * by it. */
static const struct lws_protocols protocols[] = {
    /* The first is also the default for clients that name no subprotocol. */
    {"meshsig.v1.json", ms_gw_ws_callback, sizeof(ms_session_t), 1024, 0, NULL, MS_GW_WRITE_BATCH},
    {"meshsig.v1.proto", ms_gw_ws_callback, sizeof(ms_session_t), 1024, 1, NULL, MS_GW_WRITE_BATCH},
    /* An answer (/metrics is 7 KB) leaves in one send: lws caps a write at the
     * protocol's tx_packet_size, else 4 KiB, keeps the rest, and completes the
     * transaction when it is sent, but then leaves a pipelined request after it
     * unread until the keep-alive timeout. */
    {"meshsig-http", ms_gw_http_callback, sizeof(ms_gw_http_pss_t), 0, 2, NULL, 1 << 20},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log_bridge(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        n--;
    ms_log(level == LLL_ERR ? MS_LOG_ERROR : MS_LOG_WARN, "lws: %.*s", (int)n, line);
}

/* The gateway id (--id, else host and pid) and our subject, <prefix>.gw.<id>. */
static ms_err_t name_gateway(ms_gateway_t *gw)
{
    const ms_gw_config_t *cfg = gw->cfg;
    if (cfg->id && *cfg->id) {
        snprintf(gw->id, sizeof(gw->id), "%s", cfg->id);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        snprintf(gw->id, sizeof(gw->id), "gw-%s-%d", host, (int)getpid());
    }
    for (char *p = gw->id; *p; p++)
        if (*p == '.' || *p == '*' || *p == '>' || *p == ' ')
            *p = '-'; /* the id is a NATS subject token */
    /* <prefix>.gw.heartbeat and .gw.resync are taken (common/subject.h). */
    if (!ms_subject_id_ok(gw->id) || !strcmp(gw->id, "heartbeat") || !strcmp(gw->id, "resync")) {
        ms_error("--id '%s' cannot name a gateway", gw->id);
        return MS_ERR_INVAL;
    }
    ms_subject_gw(gw->subject, sizeof(gw->subject), cfg->prefix, gw->id);
    return MS_OK;
}

/* Per-shard fencing epochs, the per-session rate rules and the per-address limits. */
static ms_err_t set_limits(ms_gateway_t *gw)
{
    const ms_gw_config_t *cfg = gw->cfg;
    ms_err_t err;
    if (!(gw->epochs = calloc((size_t)cfg->shards, sizeof(*gw->epochs))))
        return MS_ERR_NOMEM;
    /* Request ids ("<gateway-id>/<n>") name one request to the owners, which answer copies of
     * one by it (coordinator/dedupe.c): they must not repeat when a gateway restarts with the
     * same id, so they count on from the wall clock's microseconds. */
    gw->next_req = ms_clock_wall_us();
    if ((err = ms_gw_inflight_init(gw)) != MS_OK)
        return err;
    if ((err = ms_ratelimit_rule(&gw->rule_msgs, (uint64_t)cfg->rate_msgs,
                                 (uint64_t)cfg->rate_msgs * 2)) != MS_OK ||
        (err = ms_ratelimit_rule(&gw->rule_bytes, (uint64_t)cfg->rate_bytes,
                                 (uint64_t)cfg->rate_bytes * 2)) != MS_OK) {
        ms_error("--rate-msgs or --rate-bytes is out of range");
        return err;
    }
    ms_addrlimit_config_t al = {
        .exempt = cfg->per_ip_exempt,
        .trusted = cfg->trusted_proxies,
        .max_handshakes = cfg->max_hs_per_ip,
        .max_sessions = cfg->max_sessions_per_ip,
    };
    char why[160];
    if ((err = ms_addrlimit_create(&al, &gw->addrlimit, why, sizeof(why))) != MS_OK) {
        ms_error("--per-ip-exempt or --trusted-proxies: %s", why);
        return err;
    }
    return MS_OK;
}

/* The event loop and the lws context listening on --listen. */
static ms_err_t create_context(ms_gateway_t *gw)
{
    const ms_gw_config_t *cfg = gw->cfg;
    ms_err_t err;
    char host[128];
    int port, v6;
    /* [v6]:port: lws wants the address without its brackets ("[::1]" was taken for an
     * interface name that does not exist, and the gateway ran listening nowhere). */
    if (ms_opts_hostport(cfg->listen, host, sizeof(host), &port, &v6) != MS_OK) {
        ms_error("--listen must be HOST:PORT (an IPv6 address in brackets: [::1]:8080), got '%s'",
                 cfg->listen);
        return MS_ERR_INVAL;
    }

    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_bridge);
    if ((err = ms_evloop_create(cfg->event_lib, &gw->loop)) != MS_OK)
        return err;
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.port = port;
    info.iface = *host ? host : NULL;
    memcpy(gw->protocols, protocols, sizeof(protocols));
    gw->protocols[0].rx_buffer_size = gw->protocols[1].rx_buffer_size = (size_t)cfg->rx_buffer;
    info.protocols = gw->protocols;
    info.user = gw;
    /* Text messages are checked for UTF-8 in ws.c, whole (text_valid). */
    /* An address it cannot listen on stops the gateway at start-up (lws logged "iface ...
     * DOESN'T EXIST" and went on, listening nowhere). */
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6 | LWS_SERVER_OPTION_FAIL_UPON_UNABLE_TO_BIND;
    if (v6)
        info.options &= ~(uint64_t)LWS_SERVER_OPTION_DISABLE_IPV6;
    info.retry_and_idle_policy = &no_lws_idle_policy;
    info.fd_limit_per_thread = 0;
    info.timeout_secs = 10;
    /* Handshakes in flight each hold a header table (~5 KiB: 4 KiB of header
     * data and its index) from the pool; the default pool is as large as the
     * fd limit, so a burst of connections left megabytes of freed tables
     * scattered through the heap under the connections that followed. Further
     * connections are accepted and wait in lws's queue (without being read)
     * until a table is free. A connection still without a complete handshake
     * after timeout_secs_ah_idle (--handshake-timeout-s, counted from when
     * it got its table, not from its last byte) is closed, which frees its
     * table: clients that send their headers slowly (a slowloris) can hold
     * up other handshakes by that long, no more, and need --max-handshakes
     * sockets (test_abuse measures it). */
    info.max_http_header_pool = (unsigned short)cfg->max_handshakes;
    info.timeout_secs_ah_idle = (unsigned int)cfg->handshake_timeout_s;
    /* The tables themselves come from slots outside the heap (ahslab.h): lws's
     * ah struct is 976 bytes here, its data lws's default 4096. */
    static int slab_made;
    if (!slab_made) {
        slab_made = 1;
        if (ms_gw_ahslab_init((size_t)cfg->max_handshakes, 1024, 4096) != MS_OK)
            ms_warn("header tables come from the heap (no room for their slots)");
        /* The receive buffers from slots released while quiet (rxslab.h): as many as
         * sessions, and those over the cap that are upgraded to be told so. */
        struct rlimit rl;
        rlim_t fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 65536;
        int max_fd = fds < 65536 ? 65536 : fds > (1u << 21) ? (1 << 21) : (int)fds;
        if (ms_gw_rxslab_init((size_t)(cfg->max_sessions + cfg->max_handshakes),
                              (size_t)cfg->rx_buffer + LWS_PRE + 4, max_fd,
                              (uint64_t)cfg->rx_release_ms * 1000u) != MS_OK)
            ms_warn("receive buffers come from the heap (no room for their slots)");
    }
    info.mounts = ms_gw_http_mounts(gw);
    ms_evloop_configure(gw->loop, &info);
    /* Pings, pongs and fragments per connection and second: four times the message rate
     * (twice its burst) and one per KiB of the byte rate (a large message in 1 KiB
     * fragments at full rate); 1,824 by default. */
    long frames = 4 * cfg->rate_msgs + cfg->rate_bytes / 1024;
    if (ms_wsguard_init(frames > 65535 ? 65535u : (unsigned)frames) != MS_OK)
        return MS_ERR_NOMEM;
    gw->ctx = lws_create_context(&info);
    if (!gw->ctx) {
        ms_error("cannot listen on %s", cfg->listen);
        return MS_ERR_LWS;
    }
    return MS_OK;
}

ms_err_t ms_gw_create(const ms_gw_config_t *cfg, ms_gateway_t **out)
{
    ms_err_t err;
    ms_gateway_t *gw = calloc(1, sizeof(*gw));
    if (!gw)
        return MS_ERR_NOMEM;
    gw->cfg = cfg;
    ms_pidx_init(&gw->sessions, ms_gw_session_hash);
    ms_pidx_init(&gw->by_peer, ms_gw_peer_hash);
    gw->started_ms = ms_clock_wall_ms();
    if ((err = name_gateway(gw)) != MS_OK || (err = set_limits(gw)) != MS_OK ||
        (err = ms_gw_hello_init(gw)) != MS_OK ||  /* tokens and the resume key */
        (err = ms_gw_ice_setup(gw)) != MS_OK ||   /* STUN/TURN for the welcome */
        (err = ms_gw_direct_init(gw)) != MS_OK || /* edge records, direct batches */
        (err = ms_gw_peerjs_init(gw)) != MS_OK || /* before the mounts */
        (err = create_context(gw)) != MS_OK ||    /* listening */
        (err = ms_gw_intake_start(gw)) != MS_OK)  /* NATS, subscribed */
        goto fail;
    ms_gw_heartbeat_start(gw);
    ms_gw_liveness_start(gw);
    ms_info("gateway %s: ws://%s/ws%s%s, event loop %s", gw->id, cfg->listen,
            cfg->static_dir ? ", files from " : "", cfg->static_dir ? cfg->static_dir : "",
            ms_evloop_name(gw->loop));
    *out = gw;
    return MS_OK;
fail:
    ms_gw_destroy(gw);
    return err == MS_OK ? MS_ERR_NOMEM : err;
}

void ms_gw_send_all_elsewhere(ms_gateway_t *gw, const char *reason)
{
    ms_session_t *s;
    MS_PIDX_FOREACH(&gw->sessions, i, s)
    {
        if (s->closing)
            continue; /* told already */
        Meshsig__V1__Reconnect rc = MESHSIG__V1__RECONNECT__INIT;
        rc.reason = (char *)reason;
        Meshsig__V1__ServerMessage m = MESHSIG__V1__SERVER_MESSAGE__INIT;
        m.msg_case = MESHSIG__V1__SERVER_MESSAGE__MSG_RECONNECT;
        m.reconnect = &rc;
        ms_gw_send(gw, s, &m);
        ms_gw_session_close(s, CLOSE_GOING_AWAY);
    }
}

/* Cut off from NATS, nothing a client sends reaches its owner, and the owners
 * count this gateway dead after --gateway-timeout-ms; its peers leave after
 * the resume grace. So once NATS has been unreachable for --nats-lost-ms
 * (longer than a reconnect to another node takes), clients are sent to
 * another gateway while their grace holds, and /healthz turns the load
 * balancer away until NATS is back. */
void ms_gw_check_nats(ms_gateway_t *gw)
{
    uint64_t now = ms_clock_mono_us();
    if (ms_bus_connected(gw->bus)) {
        if (gw->cut_off)
            ms_info("NATS reachable again after %llu ms: serving",
                    (unsigned long long)((now - gw->nats_lost_us) / 1000));
        gw->nats_lost_us = 0;
        gw->cut_off = 0;
        return;
    }
    if (!gw->nats_lost_us) {
        gw->nats_lost_us = now;
        return;
    }
    if (now - gw->nats_lost_us < (uint64_t)gw->cfg->nats_lost_ms * 1000u)
        return;
    if (!gw->cut_off)
        ms_warn("NATS unreachable for %llu ms: telling %zu clients to reconnect to another "
                "gateway",
                (unsigned long long)((now - gw->nats_lost_us) / 1000), gw->n_sessions);
    gw->cut_off = 1;
    ms_gw_send_all_elsewhere(gw, "gateway lost NATS; reconnect to another gateway");
}

/* Graceful shutdown: every client is told to reconnect elsewhere and closed
 * with 1001 once its queue is written; new connections are refused. Returns
 * when all sessions are gone or after the deadline. */
static void drain(ms_gateway_t *gw, long deadline_ms)
{
    gw->draining = 1;
    ms_info("draining %zu sessions (deadline %ld ms)", gw->n_sessions, deadline_ms);
    ms_gw_send_all_elsewhere(gw, "gateway shutting down; reconnect to another gateway");
    uint64_t end = ms_clock_mono_us() + (uint64_t)deadline_ms * 1000u;
    /* Each round ends within 100 ms: the deadline sweep is a timer. */
    while (gw->n_sessions > 0 && ms_clock_mono_us() < end) {
        if (ms_evloop_run_once(gw->loop, gw->ctx) < 0)
            break;
        ms_gw_dout_flush(gw);
        ms_bus_send_now(gw->bus);
        ms_gw_write_flush(gw);
    }
    if (gw->n_sessions)
        ms_warn("%zu sessions still open at the drain deadline; closing them", gw->n_sessions);
}

/* When a turn moved frames (in from clients or NATS, out to clients) and
 * more is ready already (a poll that does not wait finds it), that is handled
 * before the turn's writes, so its frames share the same NATS messages and
 * client writes: a busy gateway makes fewer, larger writes, which is what
 * costs it and nats-server CPU. The writes wait only for handling what had
 * arrived, at most MS_GW_MERGE_TURNS more turns, never for the loop to block;
 * an idle turn (a timer) costs no extra poll. */
static void merge_ready(ms_gateway_t *gw, uint64_t moved_before)
{
    for (int i = 0; i < MS_GW_MERGE_TURNS && gw->n_in + gw->n_out != moved_before; i++) {
        moved_before = gw->n_in + gw->n_out;
        if (!ms_evloop_run_ready(gw->loop))
            return;
    }
}

ms_err_t ms_gw_run(ms_gateway_t *gw)
{
    while (!gw->stop) {
        uint64_t moved = gw->n_in + gw->n_out;
        if (ms_evloop_run_once(gw->loop, gw->ctx) < 0)
            return MS_ERR_LWS;
        merge_ready(gw, moved);
        /* The end of a loop turn: one batch per gateway for its direct
         * signals, the turn's publishes in one write to NATS, one write per
         * client for its frames. */
        ms_gw_dout_flush(gw);
        ms_bus_send_now(gw->bus);
        ms_gw_write_flush(gw);
    }
    drain(gw, gw->cfg->drain_ms);
    return MS_OK;
}

void ms_gw_stop(ms_gateway_t *gw)
{
    gw->stop = 1;
    if (gw->ctx)
        lws_cancel_service(gw->ctx);
}

void ms_gw_destroy(ms_gateway_t *gw)
{
    if (!gw)
        return;
    /* Stop deliveries first (their wake-ups touch the lws context), then close
     * every session: their CLOSED callbacks publish leaves, so the bus stays up
     * until those are flushed. */
    if (gw->bus)
        ms_bus_drain_subscriptions(gw->bus, 2000);
    if (gw->ctx) {
        lws_context_destroy(gw->ctx);
        gw->ctx = NULL;
    }
    ms_gw_dout_flush(gw);    /* signals the closed sessions handed to the owner */
    ms_bus_destroy(gw->bus); /* writes what is buffered first; its watchers are on the loop */
    ms_pbarena_cleanup(&gw->batch_arena);
    ms_evloop_destroy(gw->loop); /* after the context: lws stops its watchers on it */
    ms_wsguard_cleanup();
    ms_mailbox_destroy(gw->inbox);
    ms_gw_hello_cleanup(gw);
    ms_gw_ice_cleanup(&gw->ice);
    ms_gw_direct_cleanup(gw);
    ms_gw_receipt_cleanup(gw);
    ms_gw_inflight_cleanup(gw);
    ms_gw_peerjs_cleanup(gw);
    ms_pidx_cleanup(&gw->sessions); /* empty: the context's end closed every session */
    ms_pidx_cleanup(&gw->by_peer);
    ms_addrlimit_release(gw->addrlimit, &gw->al_pending);
    ms_addrlimit_destroy(gw->addrlimit); /* after the context: its wsis gave their tags back */
    free(gw->epochs);
    free(gw->out);
    free(gw->pub);
    free(gw->wbuf);
    free(gw->wsoon);
    free(gw);
}

/* SPDX-License-Identifier: Apache-2.0 */
/* The coordinator's lifecycle: event loop, NATS subscriptions, dispatch to shards, flushing. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/http.h>

#include "clock.h"
#include "internal.h"
#include "log.h"
#include "subject.h"
#include "pblimit.h"

/* The modules whose state lives in namespaces, in the order their hooks run
 * (a leaving member first leaves its rooms, then services, topics, waits, streams). */
static const ms_ns_hooks_t *const ns_modules[] = {
    &ms_member_hooks,  &ms_room_hooks,   &ms_service_hooks, &ms_topic_hooks,
    &ms_pending_hooks, &ms_stream_hooks, &ms_emit_hooks,    &ms_edges_hooks,
    &ms_p2p_hooks,     &ms_pairs_hooks,  &ms_hold_hooks,    &ms_backend_hooks,
};

ms_err_t ms_coord_core_init(ms_coord_t *c, const ms_coord_config_t *cfg, const char *id)
{
    c->cfg = cfg;
    c->started_ms = ms_clock_wall_ms(); /* told to peers: wall */
    snprintf(c->id, sizeof(c->id), "%s", id);
    ms_ns_reg_init(&c->ns, (uint32_t)cfg->shards, ns_modules,
                   sizeof(ns_modules) / sizeof(ns_modules[0]));
    ms_hold_init(&c->hold);
    ms_dedupe_init(&c->dedupe);
    ms_redeliver_init(&c->redeliver);
    ms_err_t err = ms_outbox_init(&c->outbox, NULL, cfg->prefix, c->id, (uint32_t)cfg->shards);
    c->outbox.dedupe = &c->dedupe;
    if (err == MS_OK)
        err = ms_cluster_init(c);
    return err;
}

void ms_coord_core_cleanup(ms_coord_t *c)
{
    ms_ns_reg_cleanup(c);
    ms_hold_cleanup(&c->hold);
    ms_dedupe_cleanup(&c->dedupe);
    ms_redeliver_cleanup(&c->redeliver);
    ms_bans_cleanup(&c->bans);
    ms_policies_cleanup(c);
    ms_cluster_cleanup(c);
    ms_gw_cleanup(c);
    ms_member_cleanup(c);
    ms_outbox_cleanup(&c->outbox);
}

/* A message from a node of another bus major is refused before anything decodes it
 * (busver.h); the subject says which kind of node sent it. */
static int bus_version_ok(ms_coord_t *c, const ms_subject_t *sj, const uint8_t *data, size_t dlen)
{
    ms_subject_kind_t k = sj->kind;
    int from_gw = k == MS_SUBJ_SHARD || k == MS_SUBJ_GW || k == MS_SUBJ_GW_HEARTBEAT ||
                  k == MS_SUBJ_GW_RESYNC || k == MS_SUBJ_COORD_RESYNC;
    int named = k == MS_SUBJ_GW_HEARTBEAT || k == MS_SUBJ_COORD_HEARTBEAT;
    return ms_busver_accept(&c->loop.busver, from_gw ? "gateway" : "coordinator", named, data, dlen,
                            ms_clock_mono_ms());
}

/* Decodes the message as bus type T (within the bus limits: a buggy or
 * hostile peer must not crash us), hands it to fn, frees it; undecodable
 * input is dropped. */
#define DISPATCH(T, t, fn)                                                                         \
    do {                                                                                           \
        Meshsig__Bus__##T *m_ = (Meshsig__Bus__##T *)ms_pblimit_unpack(                            \
            &meshsig__bus__##t##__descriptor, data, dlen, &ms_pblimit_bus, NULL, 0);               \
        if (m_) {                                                                                  \
            fn(c, m_);                                                                             \
            meshsig__bus__##t##__free_unpacked(m_, NULL);                                          \
        }                                                                                          \
    } while (0)

void ms_coord_bus_in(ms_coord_t *c, const char *subject, const char *reply, const uint8_t *data,
                     size_t dlen)
{
    ms_subject_t sj;
    ms_subject_parse(c->cfg->prefix, subject, &sj);
    /* Backends speak their own contract, versioned in the subject and in each message. */
    int backend = sj.kind == MS_SUBJ_BACKEND_SHARD || sj.kind == MS_SUBJ_BACKEND_INFO;
    if (sj.kind != MS_SUBJ_PROBE && sj.kind != MS_SUBJ_UNKNOWN && !backend &&
        !bus_version_ok(c, &sj, data, dlen))
        return;
    switch (sj.kind) {
    case MS_SUBJ_BACKEND_SHARD:
        if (sj.shard >= (uint32_t)c->cfg->shards) {
            c->backends.n_bad++;
            return;
        }
        ms_cluster_backend_request(c, sj.shard, reply, data, dlen);
        return;
    case MS_SUBJ_BACKEND_INFO:
        ms_backend_info(c, reply);
        return;
    case MS_SUBJ_SHARD:
        if (sj.shard >= (uint32_t)c->cfg->shards) {
            ms_shard_count_bad(c);
            return;
        }
        ms_cluster_request(c, sj.shard, data, dlen);
        return;
    case MS_SUBJ_GW_HEARTBEAT:
        DISPATCH(Heartbeat, heartbeat, ms_gw_heartbeat);
        return;
    case MS_SUBJ_COORD_HEARTBEAT:
        DISPATCH(CoordinatorHeartbeat, coordinator_heartbeat, ms_cluster_heartbeat_in);
        return;
    case MS_SUBJ_COORD_POLICY:
        DISPATCH(PolicyUpdate, policy_update, ms_cluster_policy_in);
        return;
    case MS_SUBJ_COORD_RESYNC:
        DISPATCH(ResyncReport, resync_report, ms_cluster_resync_report);
        return;
    case MS_SUBJ_ADMIN_QUERY:
        DISPATCH(AdminQuery, admin_query, ms_admin_cluster_query_in);
        return;
    case MS_SUBJ_ADMIN_REPLY: /* only our own reply subject is subscribed */
        DISPATCH(AdminReply, admin_reply, ms_admin_cluster_reply_in);
        return;
    case MS_SUBJ_PROBE:
        if (!c->loop.ready)
            ms_info("subscriptions confirmed: ready");
        c->loop.ready = 1;
        return;
    default:
        ms_shard_count_bad(c);
        return;
    }
}

static void on_bus_msg(natsMsg *msg, void *ud)
{
    ms_coord_bus_in(ud, natsMsg_GetSubject(msg), natsMsg_GetReply(msg),
                    (const uint8_t *)natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg));
}

/* After the messages of one NATS read: the deliveries they made leave in one
 * batch per gateway. */
static void on_bus_batch(void *ud)
{
    ms_coord_t *c = ud;
    ms_outbox_flush(&c->outbox);
}

static void offline_wake(void *ud)
{
    ms_coord_t *c = ud;
    event_active(c->loop.offline_ev, EV_READ, 0);
}

static void on_offline(evutil_socket_t fd, short what, void *ud)
{
    ms_coord_t *c = ud;
    ms_emit_offline_drain(c);
    ms_outbox_flush(&c->outbox);
}

static void lease_wake(void *ud)
{
    ms_coord_t *c = ud;
    event_active(c->loop.lease_ev, EV_READ, 0);
}

static void on_lease(evutil_socket_t fd, short what, void *ud)
{
    ms_coord_t *c = ud;
    ms_cluster_lease_results(c);
    ms_outbox_flush(&c->outbox);
}

static void on_tick(evutil_socket_t fd, short what, void *ud)
{
    ms_coord_t *c = ud;
    /* Every deadline below is monotonic: a wall-clock step (NTP) must not
     * expire a pending ack or declare a live gateway lost. */
    uint64_t now = ms_clock_mono_ms();
    ms_cluster_tick(c, now);
    ms_admin_cluster_tick(c, now);
    if (!c->loop.ready && now % 500 < 50)
        ms_bus_publish(c->bus, c->loop.probe_subject, NULL, "", 0);
    ms_pending_tick(c, now);
    ms_hold_tick(c, now);
    ms_dedupe_expire(&c->dedupe, now);
    ms_ns_tick_all(c, now);
    ms_member_liveness(c, now);
    ms_backend_tick(c, now);
    ms_emit_tick(c, now);
    ms_outbox_flush(&c->outbox);
}

static void on_sighup(evutil_socket_t sig, short what, void *ud)
{
    ms_coord_t *c = ud;
    if (ms_policies_reload(c) == MS_OK)
        ms_ns_policies_reapply(c);
    ms_outbox_flush(&c->outbox);
}

static void on_signal(evutil_socket_t sig, short what, void *ud)
{
    ms_coord_t *c = ud;
    ms_info("signal %d: releasing shards and stopping", (int)sig);
    ms_cluster_shutdown(c);
    ms_outbox_flush(&c->outbox);
    event_base_loopexit(c->loop.base, NULL);
}

/* subject: NULL when it did not fit its buffer. */
static ms_err_t subscribe(ms_coord_t *c, const char *subject)
{
    ms_err_t err = subject ? ms_bus_subscribe(c->bus, subject, NULL, c->loop.inbox) : MS_ERR_INVAL;
    if (err != MS_OK)
        ms_error("cannot subscribe %s", subject ? subject : "(subject too long)");
    return err;
}

ms_err_t ms_coord_create(const ms_coord_config_t *cfg, ms_coord_t **out)
{
    ms_err_t err = MS_ERR_NOMEM;
    ms_coord_t *c = calloc(1, sizeof(*c));
    if (!c)
        return MS_ERR_NOMEM;
    char id[96];
    if (cfg->id && *cfg->id) {
        snprintf(id, sizeof(id), "%s", cfg->id);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof(host) - 1);
        snprintf(id, sizeof(id), "coord-%s-%d", host, (int)getpid());
    }
    if ((err = ms_coord_core_init(c, cfg, id)) != MS_OK)
        goto fail;
    /* Before anything connects: a bad policy file stops the start. */
    if ((err = ms_policies_load(c)) != MS_OK)
        goto fail;
    err = MS_ERR_NOMEM;
    ms_bus_global_init();
    if (!(c->loop.base = event_base_new()))
        goto fail;
    if (!(c->loop.offline_ev = event_new(c->loop.base, -1, 0, on_offline, c)))
        goto fail;
    ms_offline_config_t oc = {.nats_urls = cfg->nats_urls,
                              .auth = &cfg->nats_auth,
                              .prefix = cfg->prefix,
                              .max_msgs = cfg->offline_max_msgs,
                              .max_age_s = cfg->offline_max_age_s,
                              .replicas = cfg->js_replicas};
    if ((err = ms_offline_create(&oc, offline_wake, c, &c->offline)) != MS_OK) {
        ms_error("cannot start offline storage");
        goto fail;
    }
    if (!(c->loop.lease_ev = event_new(c->loop.base, -1, 0, on_lease, c)))
        goto fail;
    ms_lease_config_t lc = {.nats_urls = cfg->nats_urls,
                            .auth = &cfg->nats_auth,
                            .owner_id = c->id,
                            .ttl_ms = cfg->lease_ttl_ms,
                            .replicas = cfg->js_replicas,
                            .shards = cfg->shards};
    if ((err = ms_lease_create(&lc, lease_wake, c, &c->cluster.lease)) != MS_OK) {
        ms_error("cannot start the lease worker");
        goto fail;
    }
    /* The loop reads the NATS socket and on_bus_msg runs right after each read
     * (no cnats delivery thread, no hand-over); publishes leave at the next turn. */
    ms_bus_opts_t bo = {.urls = cfg->nats_urls,
                        .auth = &cfg->nats_auth,
                        .name = c->id,
                        .event_base = c->loop.base,
                        .on_msg = on_bus_msg,
                        .on_batch = on_bus_batch,
                        .ud = c};
    if ((err = ms_bus_connect(&bo, &c->bus)) != MS_OK)
        goto fail;
    ms_outbox_set_bus(&c->outbox, c->bus);
    if (!ms_subject_id_ok(c->id)) {
        ms_error("coordinator id '%s' may not hold '.', '*', '>' or spaces", c->id);
        err = MS_ERR_INVAL;
        goto fail;
    }
    char subj[200];
    if ((err = subscribe(c, ms_subject_shard_any(subj, sizeof(subj), cfg->prefix))) != MS_OK)
        goto fail;
    if ((err = subscribe(c, ms_subject_backend_shard_any(subj, sizeof(subj), cfg->prefix))) !=
        MS_OK)
        goto fail;
    /* Any one coordinator answers a backend's Info: a queue group. */
    if (!ms_subject(subj, sizeof(subj), cfg->prefix, MS_SUBJ_BACKEND_INFO, NULL) ||
        (err = ms_bus_subscribe(c->bus, subj, "meshsig-coordinators", c->loop.inbox)) != MS_OK)
        goto fail;
    static const ms_subject_kind_t kinds[] = {MS_SUBJ_GW_HEARTBEAT, MS_SUBJ_COORD_HEARTBEAT,
                                              MS_SUBJ_COORD_POLICY, MS_SUBJ_COORD_RESYNC};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if ((err = subscribe(c, ms_subject(subj, sizeof(subj), cfg->prefix, kinds[i], c->id))) !=
            MS_OK)
            goto fail;
    if ((err = ms_admin_cluster_init(c)) != MS_OK)
        goto fail;
    /* The server handles one connection's protocol in order: once a message
     * published after the SUBs comes back, the shard subscription is live.
     * (A blocking flush is impossible here: the loop reads the reply.) */
    if (!ms_subject(c->loop.probe_subject, sizeof(c->loop.probe_subject), cfg->prefix,
                    MS_SUBJ_PROBE, c->id) ||
        (err = ms_bus_subscribe(c->bus, c->loop.probe_subject, NULL, c->loop.inbox)) != MS_OK)
        goto fail;
    ms_bus_publish(c->bus, c->loop.probe_subject, NULL, "", 0);
    if ((err = ms_admin_start(c)) != MS_OK)
        goto fail;
    c->loop.sigint_ev = evsignal_new(c->loop.base, SIGINT, on_signal, c);
    c->loop.sigterm_ev = evsignal_new(c->loop.base, SIGTERM, on_signal, c);
    c->loop.sighup_ev = evsignal_new(c->loop.base, SIGHUP, on_sighup, c);
    if (!c->loop.sigint_ev || !c->loop.sigterm_ev || !c->loop.sighup_ev)
        goto fail;
    /* Deadlines of acks and calls are checked every 50 ms. */
    c->loop.tick_ev = event_new(c->loop.base, -1, EV_PERSIST, on_tick, c);
    if (!c->loop.tick_ev)
        goto fail;
    struct timeval tick = {.tv_sec = 0, .tv_usec = MS_CLUSTER_TICK_MS * 1000};
    event_add(c->loop.tick_ev, &tick);
    event_add(c->loop.sigint_ev, NULL);
    event_add(c->loop.sigterm_ev, NULL);
    event_add(c->loop.sighup_ev, NULL);
    ms_info("coordinator %s serving %ld shards (subject %s)", c->id, cfg->shards,
            ms_subject_shard_any(subj, sizeof(subj), cfg->prefix));
    *out = c;
    return MS_OK;
fail:
    ms_coord_destroy(c);
    return err == MS_OK ? MS_ERR_NOMEM : err;
}

ms_err_t ms_coord_run(ms_coord_t *c)
{
    return event_base_dispatch(c->loop.base) < 0 ? MS_ERR_IO : MS_OK;
}

void ms_coord_stop(ms_coord_t *c)
{
    event_base_loopbreak(c->loop.base);
}

void ms_coord_destroy(ms_coord_t *c)
{
    if (!c)
        return;
    /* Subscriptions and connections first, then wait for every cnats thread:
     * none may touch the mailbox or the wake events after this. */
    if (c->bus)
        ms_bus_drain_subscriptions(c->bus, 0);
    /* Releases queued at shutdown run here, on the lease connection, before
     * its worker stops. */
    ms_lease_destroy(c->cluster.lease);
    c->cluster.lease = NULL;
    ms_cluster_left(c); /* before the bus goes: its last heartbeat says leaving */
    ms_offline_destroy(c->offline);
    ms_bus_destroy(c->bus);
    if (nats_CloseAndWait(2000) != NATS_OK)
        ms_warn("NATS library threads did not stop within 2 s");
    ms_admin_stop(c);
    ms_mailbox_destroy(c->loop.inbox);
    ms_coord_core_cleanup(c);
    if (c->loop.tick_ev)
        event_free(c->loop.tick_ev);
    if (c->loop.offline_ev)
        event_free(c->loop.offline_ev);
    if (c->loop.lease_ev)
        event_free(c->loop.lease_ev);
    if (c->loop.sigint_ev)
        event_free(c->loop.sigint_ev);
    if (c->loop.sigterm_ev)
        event_free(c->loop.sigterm_ev);
    if (c->loop.sighup_ev)
        event_free(c->loop.sighup_ev);
    if (c->loop.base)
        event_base_free(c->loop.base);
    free(c);
}
